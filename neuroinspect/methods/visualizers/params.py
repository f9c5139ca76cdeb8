"""Image parameterizations and training-time augmentations for optimized visualizations (spec §4.1).

A parameterization owns the trainable tensors (:meth:`ImageParam.parameters`) and renders them as a
B×3×H×W image in (0, 1) when called, in Lucent's ``param.image`` style, so that swapping Fourier
for pixels is one argument (:func:`make_param`):

- :class:`FourierImage`: the reference's ``ImageParams``: a spectrum scaled by 1/|f|^1.5 on a
  frequency grid with spacing d = √0.5 whose Nyquist column is dropped, an orthonormal inverse real
  FFT, the decorrelated colour matrix of Lucid, and a sigmoid;
- :class:`PixelImage`: one parameter per pixel (optionally colour-decorrelated), then a sigmoid.

:class:`Augmentation` applies the reference's augmentations, in its order, to the whole batch:
RandomAffine (±15°, translate 15 %, nearest, fill 0, one draw per batch) → independent random
height/width resize in [0.6, 1.2] → CenterCrop back to H×W (zero padding) → per-image, per-channel
constant noise with a linearly decaying scale. The reference's noise counter wraps back to full
strength on the final call (spec bug 23); ``ref_noise=True`` keeps that, the default ends at zero.
(The reference's ``color_aug`` branch — roll jitter and colour shift — is off in every NeuroInspect
path and is not provided.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

import neuroinspect  # noqa: F401  (torchvision fix before torchvision is imported)

#: Frequency-grid spacing of the reference (``fftfreq(S, d)`` with d = √0.5).
FOURIER_D = math.sqrt(0.5)
#: φ = (fx² + fy²)^0.75, i.e. the spectrum decays as 1/|f|^1.5.
DECAY_POWER = 0.75
#: Lucid's colour correlation square root (columns: decorrelated channels).
COLOR_CORRELATION = torch.tensor(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=torch.float32
)


def color_matrix() -> torch.Tensor:
    """M = C / max_j ‖C[:, j]‖₂ (3×3); the maximal column norm of C is ≈ 0.4620."""
    return COLOR_CORRELATION / COLOR_CORRELATION.norm(dim=0).max()


def fourier_scale(
    height: int, width: int, d: float = FOURIER_D, decay_power: float = DECAY_POWER
) -> torch.Tensor:
    """The spectrum scale, H×(W//2) float32.

    fy = fftfreq(H, d) (rows), fx = rfftfreq(W, d)[: W//2] (the Nyquist column dropped),
    φ = (fx² + fy²)^decay_power, scale = 1 / max(φ, 1 / (max(H, W)·d)).
    """
    fy = np.fft.fftfreq(height, d)[:, None]
    fx = np.fft.rfftfreq(width, d)[: width // 2][None, :]
    phi = (fx * fx + fy * fy) ** decay_power
    scale = 1.0 / np.maximum(phi, 1.0 / (max(height, width) * d))
    return torch.from_numpy(scale.astype(np.float32))


def _size2(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    h, w = (int(v) for v in size)
    return (h, w)


def _decorrelate(u: torch.Tensor) -> torch.Tensor:
    """Per-pixel rgb = M·u for B×3×H×W ``u``."""
    m = color_matrix().to(device=u.device, dtype=u.dtype)
    return torch.einsum("ij,bjhw->bihw", m, u)


class ImageParam:
    """A batch of B images of size H×W, rendered from trainable tensors.

    ``param()`` → B×3×H×W in (0, 1), differentiable with respect to :meth:`parameters`.
    """

    kind: str = ""

    def __init__(self, batch: int, size: int | Sequence[int]) -> None:
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        self.batch = int(batch)
        self.size = _size2(size)

    def parameters(self) -> list[torch.Tensor]:
        raise NotImplementedError

    def __call__(self) -> torch.Tensor:
        raise NotImplementedError

    def settings(self) -> dict[str, Any]:
        return {"param": self.kind, "size": list(self.size)}


class FourierImage(ImageParam):
    """The reference's Fourier + decorrelated-colour parameterization (spec §4.1).

    P ~ N(0, sd²) of shape B×3×H×(W//2)×2 — for even W the reference's B×3×H×W tensor read as real and
    imaginary parts — is the spectrum X; u = irfft2(scale ⊙ X, s=(H, W), norm="ortho") (the missing
    Nyquist column is zero); image = sigmoid(M·u).
    """

    kind = "fourier"

    def __init__(
        self,
        batch: int,
        size: int | Sequence[int],
        sd: float = 1e-3,
        decorrelate: bool = True,
        generator: torch.Generator | None = None,
        device: str | torch.device = "cpu",
        d: float = FOURIER_D,
        decay_power: float = DECAY_POWER,
    ) -> None:
        super().__init__(batch, size)
        h, w = self.size
        self.sd = float(sd)
        self.decorrelate = bool(decorrelate)
        self.d = float(d)
        self.decay_power = float(decay_power)
        init = torch.randn(self.batch, 3, h, w // 2, 2, generator=generator) * self.sd
        self.spectrum = init.to(device).requires_grad_(True)
        self.scale = fourier_scale(h, w, d, decay_power).to(device)

    def parameters(self) -> list[torch.Tensor]:
        return [self.spectrum]

    def decorrelated(self) -> torch.Tensor:
        """u before colour mixing and sigmoid: B×3×H×W."""
        x = torch.view_as_complex(self.spectrum)
        return torch.fft.irfft2(self.scale * x, s=self.size, norm="ortho")

    def __call__(self) -> torch.Tensor:
        u = self.decorrelated()
        return torch.sigmoid(_decorrelate(u) if self.decorrelate else u)

    def settings(self) -> dict[str, Any]:
        return {
            **super().settings(),
            "sd": self.sd,
            "decorrelate": self.decorrelate,
            "d": self.d,
            "decay_power": self.decay_power,
        }


class PixelImage(ImageParam):
    """One parameter per pixel: image = sigmoid(M·P) (``decorrelate=True``, Lucent's default) or sigmoid(P)."""

    kind = "pixel"

    def __init__(
        self,
        batch: int,
        size: int | Sequence[int],
        sd: float = 1e-2,
        decorrelate: bool = True,
        generator: torch.Generator | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__(batch, size)
        h, w = self.size
        self.sd = float(sd)
        self.decorrelate = bool(decorrelate)
        self.pixels = (
            (torch.randn(self.batch, 3, h, w, generator=generator) * self.sd).to(device).requires_grad_(True)
        )

    def parameters(self) -> list[torch.Tensor]:
        return [self.pixels]

    def __call__(self) -> torch.Tensor:
        return torch.sigmoid(_decorrelate(self.pixels) if self.decorrelate else self.pixels)

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "sd": self.sd, "decorrelate": self.decorrelate}


PARAMS: dict[str, type[ImageParam]] = {"fourier": FourierImage, "pixel": PixelImage}


def make_param(kind: str, batch: int, size: int | Sequence[int], **kwargs: Any) -> ImageParam:
    """``make_param("fourier" | "pixel", batch, size, generator=..., device=..., sd=...)``."""
    if kind not in PARAMS:
        raise ValueError(f"unknown image parameterization {kind!r}; choose one of {', '.join(PARAMS)}")
    return PARAMS[kind](batch, size, **kwargs)


class Augmentation:
    """The reference's training-time augmentations (spec §4.1), one random draw per batch and call.

    ``aug(x, t)``: B×3×H×W → B×3×H×W at iteration ``t`` (0-based) of ``iters``. Draws come from
    ``generator`` (CPU), so a seed gives the same augmentations on every device.
    """

    def __init__(
        self,
        size: int | Sequence[int],
        iters: int,
        degrees: float = 15.0,
        translate: tuple[float, float] = (0.15, 0.15),
        scale_range: tuple[float, float] = (0.6, 1.2),
        noise_std: float = 0.2,
        ref_noise: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        if iters < 1:
            raise ValueError(f"iters must be >= 1, got {iters}")
        self.size = _size2(size)
        self.iters = int(iters)
        self.degrees = float(degrees)
        self.translate = (float(translate[0]), float(translate[1]))
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.noise_std = float(noise_std)
        self.ref_noise = bool(ref_noise)
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)

    def _uniform(self, low: float, high: float) -> float:
        return float(torch.empty(1).uniform_(low, high, generator=self.generator).item())

    def noise_factor(self, t: int) -> float:
        """σ_p · r_t / T with r_t = T − 2 − t; ``ref_noise``: r_t taken mod T (wraps to T − 1 at the last call),
        otherwise clamped at 0 (no noise on the last call)."""
        r = self.iters - 2 - int(t)
        r = r % self.iters if self.ref_noise else max(r, 0)
        return self.noise_std * r / self.iters

    def affine(self, x: torch.Tensor) -> torch.Tensor:
        """torchvision's RandomAffine (the same draw for the whole batch), nearest interpolation, fill 0."""
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as TF

        h, w = x.shape[-2:]
        angle = self._uniform(-self.degrees, self.degrees)
        max_dx, max_dy = self.translate[0] * w, self.translate[1] * h
        tx = int(round(self._uniform(-max_dx, max_dx)))
        ty = int(round(self._uniform(-max_dy, max_dy)))
        return TF.affine(
            x,
            angle=angle,
            translate=[tx, ty],
            scale=1.0,
            shear=[0.0, 0.0],
            interpolation=InterpolationMode.NEAREST,
            fill=0.0,
        )

    def resize_crop(self, x: torch.Tensor) -> torch.Tensor:
        """Independent height / width factors in ``scale_range`` (bilinear), then CenterCrop to the size (zero padding)."""
        from torchvision.transforms import functional as TF

        h, w = x.shape[-2:]
        fh = self._uniform(*self.scale_range)
        fw = self._uniform(*self.scale_range)
        new = (max(1, int(h * fh)), max(1, int(w * fw)))
        x = F.interpolate(x, size=new, mode="bilinear", align_corners=False)
        return TF.center_crop(x, list(self.size))

    def noise(self, x: torch.Tensor, t: int) -> torch.Tensor:
        """A constant offset per image and channel, N(0, 1)·``noise_factor(t)``; no clamping."""
        offset = torch.randn(x.shape[0], x.shape[1], 1, 1, generator=self.generator) * self.noise_factor(t)
        return x + offset.to(device=x.device, dtype=x.dtype)

    def __call__(self, x: torch.Tensor, t: int) -> torch.Tensor:
        return self.noise(self.resize_crop(self.affine(x)), t)

    def settings(self) -> dict[str, Any]:
        return {
            "degrees": self.degrees,
            "translate": list(self.translate),
            "scale_range": list(self.scale_range),
            "noise_std": self.noise_std,
            "ref_noise": self.ref_noise,
        }


__all__ = [
    "COLOR_CORRELATION",
    "DECAY_POWER",
    "FOURIER_D",
    "PARAMS",
    "Augmentation",
    "FourierImage",
    "ImageParam",
    "PixelImage",
    "color_matrix",
    "fourier_scale",
    "make_param",
]
