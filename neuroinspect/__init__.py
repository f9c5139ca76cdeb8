"""neuroinspect: neuron-level debugging of image classifiers and a harness for benchmarking the
methods that explain them (finders, visualizers, decision-layer editors, human studies).

Importing the package first makes torchvision importable on CPU-only torch (see ``_compat``).
"""

from neuroinspect._compat import ensure_torchvision_ops

ensure_torchvision_ops()

__version__ = "0.1.0"

__all__ = ["__version__"]
