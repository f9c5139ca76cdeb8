"""Make torchvision (and so timm, open_clip and lucent) importable on CPU-only torch.

PyPI's torchvision wheel is a CUDA build. On a CPU-only torch its compiled ``_C`` extension fails to
load (it links CUDA libraries); torchvision swallows that failure, then registers fake kernels for
``torchvision::nms`` unconditionally and dies with ``operator torchvision::nms does not exist``.

:func:`ensure_torchvision_ops` runs before torchvision is first imported: ``import neuroinspect``
installs :func:`install_torchvision_hook`, an import hook that calls it the moment something imports
torchvision (and then removes itself), so that importing the package does not import torch (the
command line starts in a fraction of a second; see ``benchmarks/startup.py``). It first tries to load
torchvision's own extension; only when that fails does it define the schemas of the two operators
that torchvision's meta registrations need, in a library fragment kept alive for the process.
Where the extension loads (any CUDA machine, or a CPU torchvision build) it changes nothing.
Without the extension, ``torchvision.ops.nms`` and ``torchvision.io.decode_*`` still raise; the
package decodes images with PIL and never calls them.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

_FRAGMENT = None  # keeps the torch.library.Library alive; a collected fragment deregisters its schemas
_DONE = False


def _has_op(name: str) -> bool:
    import torch

    try:
        getattr(torch.ops.torchvision, name)
    except (AttributeError, RuntimeError):
        return False
    return True


def _try_load_extension() -> bool:
    import torch

    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return False
    folder = list(spec.submodule_search_locations)[0]
    for entry in sorted(os.listdir(folder)):
        if entry.startswith("_C") and entry.endswith((".so", ".pyd")):
            try:
                torch.ops.load_library(os.path.join(folder, entry))
            except (OSError, RuntimeError):
                return False
            return _has_op("nms")
    return False


def ensure_torchvision_ops() -> None:
    """Define ``torchvision::nms`` / ``qnms`` schemas if torchvision's extension cannot provide them.

    Idempotent; a no-op once torchvision is imported or where its extension loads.
    """
    global _FRAGMENT, _DONE
    if _DONE:
        return
    _DONE = True
    if "torchvision" in sys.modules:
        return
    try:
        import torch
    except ImportError:  # torch missing: let the real import error surface where torch is used
        return
    if _has_op("nms") or _try_load_extension():
        return
    lib = torch.library.Library("torchvision", "FRAGMENT")  # noqa: TOR901 - kept alive on purpose
    for op in ("nms", "qnms"):
        if not _has_op(op):
            lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _FRAGMENT = lib


class _TorchvisionHook:  # an importlib.abc.MetaPathFinder (duck-typed: importing importlib.abc is slow)
    """Runs :func:`ensure_torchvision_ops` just before torchvision is imported, then steps aside."""

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: Any = None) -> None:
        if fullname == "torchvision":
            if self in sys.meta_path:
                sys.meta_path.remove(self)
            ensure_torchvision_ops()
        return None  # the regular finders import the module


def install_torchvision_hook() -> None:
    """Make :func:`ensure_torchvision_ops` run before the first ``import torchvision`` (or now, if
    torchvision is already imported there is nothing to fix). Idempotent."""
    if _DONE or "torchvision" in sys.modules:
        return
    if not any(isinstance(f, _TorchvisionHook) for f in sys.meta_path):
        sys.meta_path.insert(0, _TorchvisionHook())
