"""Named taps on a :class:`ModelSurface` for libraries that address layers as modules (Lucent, Captum).

:class:`SurfaceTaps` runs backbone ▸ pool ▸ decision and passes the three intermediate tensors
through identity modules called ``spatial`` (B×D×h×w), ``pooled`` (B×D, the neurons) and ``logits``
(B×K). Lucent's ``hook_model`` and Captum's ``Layer*`` / ``Neuron*`` classes then see the pooled
neuron as the output of one module, for CNNs and token models alike, without ``layer4`` hard-coding.

The surface is held outside the module tree on purpose: Lucent hooks *every* submodule of the model
it is given; here it hooks only the three taps.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from neuroinspect.harness.models import ModelSurface


class SurfaceTaps(nn.Module):
    """``forward(x)``: B×3×H×W normalized images → logits B×K (``output="logits"``) or pooled B×D.

    ``spatial`` sees the last spatial representation that still reaches the pooled output:

    - CNNs: the backbone output B×D×h×w;
    - token models (timm ViTs: ``patch_embed`` + ``blocks``): the patch tokens at the *input of the last
      block*, as a B×C×h×w grid, routed back into the block. The final tokens cannot be used: a
      class-token pool reads only token 0 of the last layer, so gradients to the final patch tokens
      are zero (Grad-CAM would be blank). This is the usual Grad-CAM layer for ViTs.
    """

    def __init__(self, surface: ModelSurface, output: str = "logits") -> None:
        super().__init__()
        if output not in ("logits", "pooled"):
            raise ValueError(f"output must be 'logits' or 'pooled', got {output!r}")
        object.__setattr__(self, "_surface", surface)  # not a submodule (see the module docstring)
        self.output = output
        self.spatial = nn.Identity()
        self.pooled = nn.Identity()
        self.logits = nn.Identity()
        self.last_error: BaseException | None = None
        model = surface.model
        blocks = getattr(model, "blocks", None)
        self.token_model = (
            hasattr(model, "patch_embed") and isinstance(blocks, nn.Sequential) and len(blocks) > 0
        )

    @property
    def surface(self) -> ModelSurface:
        return self.__dict__["_surface"]  # type: ignore[no-any-return]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        try:
            return self._forward(x)
        except Exception as err:
            # Lucent's render loop turns a RuntimeError in the forward into a warning; keep it so the
            # caller can re-raise the real cause instead of Lucent's "no saved feature maps".
            self.last_error = err
            raise

    def _route_tokens(self, module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        tokens = args[0]
        p = self.surface.num_prefix_tokens
        patches = tokens[:, p:, :]
        n = patches.shape[1]
        side = int(round(n**0.5))
        if side * side != n:
            raise ValueError(f"cannot arrange {n} patch tokens on a square grid")
        grid = self.spatial(patches.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], side, side))
        routed = torch.cat([tokens[:, :p], grid.flatten(2).transpose(1, 2)], dim=1)
        return (routed, *args[1:])

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.surface
        if self.token_model:
            blocks: nn.Sequential = s.model.blocks  # type: ignore[assignment]
            handle = blocks[-1].register_forward_pre_hook(self._route_tokens)
            try:
                feats = s.forward_features(x)
            finally:
                handle.remove()
        else:
            feats = s.forward_features(x)
            if feats.ndim == 4:
                feats = self.spatial(feats)
        pooled = self.pooled(s.pool(feats))
        if self.output == "pooled":
            return pooled
        return self.logits(s.decision(pooled))


@contextmanager
def frozen(surface: ModelSurface) -> Iterator[ModelSurface]:
    """Eval mode and no parameter gradients for the duration, then the caller's state again.

    Input-gradient methods must not accumulate ``.grad`` in the model (spec bug 22) nor leave the
    user's model frozen or in eval mode afterwards.
    """
    was_training = surface.training
    flags = [(p, p.requires_grad) for p in surface.parameters()]
    surface.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield surface
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        surface.train(was_training)


def input_size(surface: ModelSurface) -> tuple[int, int]:
    """(H, W) of the model's input, from its data config."""
    _, h, w = surface.data_config.input_size
    return int(h), int(w)


@contextmanager
def seeded(seed: int, device: str | torch.device = "cpu") -> Iterator[None]:
    """torch (CPU, and ``device`` if CUDA) and NumPy global RNGs seeded for the block, then restored.

    For libraries that draw from the global generators (Lucent's transforms, Captum's LIME and
    KernelSHAP sampling): reproducible results without changing the caller's random state.
    """
    device = torch.device(device)
    devices = [device] if device.type == "cuda" else []
    np_state = np.random.get_state()
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        np.random.seed(seed % (2**32))
        try:
            yield
        finally:
            np.random.set_state(np_state)
