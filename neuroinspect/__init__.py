"""neuroinspect: neuron-level debugging of image classifiers and a harness for benchmarking the
methods that explain them (finders, visualizers, decision-layer editors, human studies).

Importing the package makes torchvision importable on CPU-only torch, without importing torch itself:
an import hook repairs it right before torchvision is first imported (see ``_compat``).
"""

from neuroinspect._compat import install_torchvision_hook

install_torchvision_hook()

__version__ = "0.1.0"

__all__ = ["__version__"]
