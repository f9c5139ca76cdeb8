"""CLIP-Illusion: class-conditional feature visualization guided by CLIP (NeuroInspect, spec §4).

For a neuron n and a class c, images x are optimized (Fourier + decorrelated-colour
parameterization, the reference's augmentations) to maximize

    (S(x, c) + ε) · (a_n(x) + γ_cls · z_c(x))

with a_n the neuron's pooled activation, z_c the class logit and S the cosine similarity between
CLIP's embedding of x and the class's text embedding (mean of 32 templates). The neuron's
activation map then gives a mask (§4.4) of where the feature sits.

Differences from the reference, each a setting:

- one optimization serves MANY (neuron, class) pairs: the batch is pairs × ``images_per_pair``
  images and each pair's loss keeps the scale it would have alone (the reference runs one neuron at a
  time); ``max_batch`` splits very long lists into several optimizations;
- the objective is per sample by default; ``ref=True`` gives the reference's coupled loss
  −(mean S + ε)(mean A) over each pair's images (``coupling="batch"``: over the whole batch, as the
  reference does when it puts several neurons in one batch; spec §4.2, bug 11);
- the classifier and CLIP are frozen for the duration (eval, no parameter gradients; bug 22) and
  restored afterwards; the only hook (``layer=...``) is removed even when the run fails;
- the noise schedule ends at zero instead of wrapping to full strength on the last step (bug 23;
  ``ref=True`` restores the wrap-around);
- images are made at the classifier's input size, normalized with its own data config, and resized
  to CLIP's input size with CLIP's mean/std (the reference feeds 224 px to both).

Token models (ViT): the neuron is channel n of the pooled (CLS) feature and its map is channel n of
the final patch tokens on their grid (:meth:`ModelSurface.spatial_maps`); the reference reads its
ViT masks from ``blocks[-2]`` instead, and does not mask ViT images (neither is ``thresholding``
applied to them here).

Ablations are configurations: ``use_clip=False`` (no CLIP term), ``class_gamma=0`` (no class
term), ``param="pixel"`` (pixel instead of Fourier parameterization).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
from torch import nn

from neuroinspect.clip.loader import DEFAULT_CLIP, ClipModel
from neuroinspect.errors import UserError
from neuroinspect.harness.models import ModelSurface
from neuroinspect.methods.visualizers.base import Visualization, Visualizer, pair_classes, register_visualizer
from neuroinspect.methods.visualizers.masks import activation_masks, apply_mask
from neuroinspect.methods.visualizers.objectives import (
    Objective,
    ObjectiveInputs,
    illusion_objective,
    per_group,
)
from neuroinspect.methods.visualizers.params import PARAMS, Augmentation, make_param
from neuroinspect.runtime import progress


# -- helpers shared with other callers -------------------------------------------------------------
@contextmanager
def frozen_modules(*modules: nn.Module | None) -> Iterator[None]:
    """Eval mode and ``requires_grad=False`` on every parameter for the block; the previous state after."""
    saved: list[tuple[nn.Module, bool, list[tuple[torch.Tensor, bool]]]] = []
    for m in modules:
        if m is None:
            continue
        saved.append((m, m.training, [(p, p.requires_grad) for p in m.parameters()]))
        m.eval()
        for p in m.parameters():
            p.requires_grad_(False)
    try:
        yield
    finally:
        for m, training, flags in saved:
            for param, flag in flags:
                param.requires_grad_(flag)
            m.train(training)


class LayerTap:
    """A forward hook on one module that keeps its latest output; a context manager that always removes it.

    >>> with LayerTap(surface.model.layer3) as tap:  # doctest: +SKIP
    ...     surface(x); tap.output.shape
    """

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.output: torch.Tensor | None = None
        self._handle: Any = None

    def _hook(self, module: nn.Module, inputs: Any, output: Any) -> None:
        self.output = output[0] if isinstance(output, (tuple, list)) else output

    def __enter__(self) -> LayerTap:
        self._handle = self.module.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self.output = None


def resolve_layer(surface: ModelSurface, layer: str) -> nn.Module:
    """The module of ``surface.model`` called ``layer`` (dots or Lucent-style underscores)."""
    modules = dict(surface.model.named_modules())
    for name in (layer, layer.replace("_", ".")):
        if name in modules and name:
            return modules[name]
    top = [n for n in modules if n and "." not in n]
    raise UserError(
        f"the model has no layer {layer!r}; top-level layers: {', '.join(top)} (use dotted paths such as layer3.1)."
    )


def pooled_probe(output: torch.Tensor, surface: ModelSurface) -> torch.Tensor:
    """A hooked layer's output → B×C pooled activations (spatial mean; patch-token mean for B×T×C)."""
    if output.ndim == 4:
        return output.mean(dim=(2, 3))
    if output.ndim == 3:
        return output[:, surface.num_prefix_tokens :].mean(dim=1)
    if output.ndim == 2:
        return output
    raise ValueError(f"cannot pool a layer output of shape {tuple(output.shape)}")


def top_classes_for_neuron(surface: ModelSurface, neuron: int, k: int = 1, value: float = 30.0) -> list[int]:
    """The top-k classes of decision(v) for v = ``value``·e_neuron (spec §4.3; the notebook uses 25)."""
    with torch.no_grad():
        w = surface.decision
        v = torch.zeros(1, surface.num_features, device=w.weight.device, dtype=w.weight.dtype)
        v[0, neuron] = value
        return w(v)[0].topk(min(k, surface.num_classes)).indices.tolist()


def top_neurons_for_class(surface: ModelSurface, class_idx: int, k: int = 1) -> list[int]:
    """The top-k entries of W[class_idx] (spec §4.3)."""
    with torch.no_grad():
        return surface.decision.weight[class_idx].topk(min(k, surface.num_features)).indices.tolist()


@register_visualizer("clip_illusion")
class ClipIllusion(Visualizer):
    """CLIP-Illusion (NeuroInspect): Fourier-parameterized images maximizing (CLIP sim + eps) x (activation + gamma x class logit)."""

    kind = "synthetic"

    def __init__(
        self,
        clip: ClipModel | str | None = DEFAULT_CLIP,
        iters: int = 450,
        lr: float = 9e-3,
        weight_decay: float = 2e-4,
        class_gamma: float = 0.5,
        domain_eps: float = 0.05,
        images_per_pair: int = 4,
        use_clip: bool = True,
        param: str = "fourier",
        image_size: int | None = None,
        thresholding: bool = False,
        tau: float = 0.25,
        reduction: float = 0.0,
        ref: bool = False,
        coupling: str = "pair",
        layer: str | None = None,
        auto_class: bool = False,
        renormalize_text: bool = False,
        betas: tuple[float, float] = (0.5, 0.99),
        eta_min_ratio: float = 0.12,
        init_sd: float | None = None,
        augment: bool = True,
        scale_range: tuple[float, float] = (0.6, 1.2),
        degrees: float = 15.0,
        translate: float = 0.15,
        noise_std: float = 0.2,
        max_batch: int | None = None,
        amp: bool = False,
    ) -> None:
        """Hyperparameters (defaults: the debug flow of the reference, spec §4.5).

        ``clip``: a loaded :class:`ClipModel` or a spec for :func:`neuroinspect.clip.load_clip`
        (loaded on first use; ignored when ``use_clip=False``). ``iters`` AdamW steps at ``lr``
        (betas (0.5, 0.99), ``weight_decay``), cosine-annealed to ``eta_min_ratio``·lr.
        ``class_gamma``: weight of the class logit; ``domain_eps``: ε added to the CLIP similarity.
        ``images_per_pair``: images per (neuron, class) pair. ``param``: ``"fourier"`` or ``"pixel"``.
        ``image_size``: default the classifier's input size. ``thresholding``: return image ⊙
        mask(``tau``, ``reduction``) (CNNs only); otherwise the image and the binary mask(0.25, 0).
        ``ref``: the reference's coupled loss and noise wrap-around; ``coupling``: ``"pair"`` or
        ``"batch"`` (what ``ref`` couples). ``layer``: probe a named module's channels instead of the
        decision layer's inputs. ``auto_class``: condition unconditioned pairs on the neuron's top
        class (spec §4.3). ``renormalize_text``: unit-length class text embeddings (the reference
        leaves them < 1). ``max_batch``: most images per optimization. ``amp``: bf16 autocast on CUDA.
        """
        if iters < 1:
            raise UserError(f"clip_illusion needs iters >= 1, got {iters}.")
        if images_per_pair < 1:
            raise UserError(f"clip_illusion needs images_per_pair >= 1, got {images_per_pair}.")
        if lr <= 0:
            raise UserError(f"clip_illusion needs lr > 0, got {lr}.")
        if param not in PARAMS:
            raise UserError(f"unknown image parameterization {param!r}; choose one of {', '.join(PARAMS)}.")
        if coupling not in ("pair", "batch"):
            raise UserError(f"coupling must be 'pair' or 'batch', got {coupling!r}.")
        if image_size is not None and image_size < 8:
            raise UserError(f"image_size must be >= 8, got {image_size}.")
        if max_batch is not None and max_batch < 1:
            raise UserError(f"max_batch must be >= 1, got {max_batch}.")
        self._clip: ClipModel | None = clip if isinstance(clip, ClipModel) else None
        self.clip = clip.spec if isinstance(clip, ClipModel) else clip
        self.iters = int(iters)
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.class_gamma = float(class_gamma)
        self.domain_eps = float(domain_eps)
        self.images_per_pair = int(images_per_pair)
        self.use_clip = bool(use_clip)
        self.param = param
        self.image_size = image_size
        self.thresholding = bool(thresholding)
        self.tau = float(tau)
        self.reduction = float(reduction)
        self.ref = bool(ref)
        self.coupling = coupling
        self.layer = layer
        self.auto_class = bool(auto_class)
        self.renormalize_text = bool(renormalize_text)
        self.betas = (float(betas[0]), float(betas[1]))
        self.eta_min_ratio = float(eta_min_ratio)
        self.init_sd = init_sd
        self.augment = bool(augment)
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.degrees = float(degrees)
        self.translate = float(translate)
        self.noise_std = float(noise_std)
        self.max_batch = max_batch
        self.amp = bool(amp)

    # -- configuration ----------------------------------------------------------------------------
    def objective(self, with_clip: bool | None = None) -> Objective:
        """The objective this configuration optimizes (see :mod:`.objectives`).

        ``with_clip=False`` drops the CLIP term (a run whose pairs have no class has no class text to
        compare with: the objective is then the activation alone); default: ``use_clip``.
        """
        use_clip = self.use_clip if with_clip is None else (self.use_clip and with_clip)
        return illusion_objective(self.class_gamma, self.domain_eps, use_clip=use_clip, coupled=self.ref)

    def clip_model(self, device: str | torch.device = "cpu") -> ClipModel:
        """The guidance CLIP, loaded on first use (a :class:`UserError` if its weights are not available)."""
        if self._clip is None:
            from neuroinspect.clip.loader import load_clip

            if not self.clip:
                raise UserError(
                    "clip_illusion with use_clip=True needs a CLIP: pass --clip SPEC (see `neuroinspect clip --help`)."
                )
            self._clip = load_clip(str(self.clip), device=device)
        return self._clip.to(device)

    def settings(self) -> dict[str, Any]:
        out = super().settings()
        out["betas"] = list(self.betas)
        out["scale_range"] = list(self.scale_range)
        out["objective"] = self.objective().name
        if self.use_clip and self._clip is not None:
            out["clip"] = self._clip.describe()
            out["clip"].pop("config", None)
        return out

    # -- the call ---------------------------------------------------------------------------------
    def visualize(
        self,
        surface: ModelSurface,
        neurons: Sequence[int],
        class_idx: Sequence[int | None] | int | None = None,
        *,
        dataset: Any = None,
        class_names: Sequence[str] | None = None,
        seed: int = 0,
        device: str | torch.device = "cpu",
        show_progress: bool = True,
    ) -> list[Visualization]:
        """Optimize ``images_per_pair`` images for every (neuron, class) pair; one :class:`Visualization` per pair.

        ``class_names``: CLIP class strings (default ``dataset.prompts``). Each Visualization holds
        ``images`` n×3×H×W, ``activation_maps`` / ``masks`` n×H×W, the final activations, class
        logits / probabilities, and in ``extra``: ``clip_scores``, ``initial_activations``,
        ``loss_curve`` / ``activation_curve`` / ``clip_curve`` (per iteration, pair means),
        ``class_name`` and (with thresholding) ``raw_images``.
        """
        device = torch.device(device)
        neurons = [int(n) for n in neurons]
        if not neurons:
            raise UserError("clip_illusion needs at least one neuron.")
        classes = pair_classes(neurons, class_idx)
        probe_module = resolve_layer(surface, self.layer) if self.layer else None
        surface.to(device)
        size = self._size(surface)
        width, token_model = self._probe(surface, probe_module, size, device)
        for n in neurons:
            if not 0 <= n < width:
                where = f"layer {self.layer!r}" if self.layer else "the decision layer"
                raise UserError(
                    f"neuron index {n} is out of range: {where} has {width} neurons, 0..{width - 1}."
                )
        for c in classes:
            if c is not None and not 0 <= c < surface.num_classes:
                raise UserError(
                    f"class index {c} is out of range: the model has {surface.num_classes} classes, 0..{surface.num_classes - 1}."
                )
        if self.auto_class:
            classes = [
                top_classes_for_neuron(surface, n)[0] if c is None and probe_module is None else c
                for n, c in zip(neurons, classes, strict=True)
            ]
        needs_clip = self.use_clip and any(c is not None for c in classes)
        names = (
            list(class_names)
            if class_names is not None
            else (list(dataset.prompts) if dataset is not None and hasattr(dataset, "prompts") else None)
        )
        if needs_clip and names is None:
            raise UserError(
                "CLIP guidance needs the class strings: pass class_names= or a dataset (--dataset), or use_clip=False."
            )
        if needs_clip and names is not None and len(names) < surface.num_classes:
            raise UserError(f"{len(names)} class strings for a model with {surface.num_classes} classes.")

        clip = self.clip_model(device) if needs_clip else None
        gen = torch.Generator().manual_seed(int(seed))
        pairs = list(zip(neurons, classes, strict=True))
        per_chunk = len(pairs) if self.max_batch is None else max(1, self.max_batch // self.images_per_pair)
        out: list[Visualization] = []
        with frozen_modules(surface, clip.model if clip is not None else None):
            text_table = self._text_table(clip, names, classes) if clip is not None else {}
            tap_ctx = LayerTap(probe_module) if probe_module is not None else nullcontext(None)
            with tap_ctx as tap:
                for start in range(0, len(pairs), per_chunk):
                    chunk = pairs[start : start + per_chunk]
                    out.extend(
                        self._run_chunk(
                            surface,
                            clip,
                            tap,
                            chunk,
                            text_table,
                            names,
                            gen,
                            device,
                            size,
                            token_model,
                            show_progress,
                        )
                    )
        return out

    def _probe(
        self, surface: ModelSurface, module: nn.Module | None, size: tuple[int, int], device: torch.device
    ) -> tuple[int, bool]:
        """One forward at the target size: (the probed layer's width, whether the backbone gives tokens)."""
        probe = torch.zeros(1, 3, *size, device=device)
        with (
            frozen_modules(surface),
            torch.no_grad(),
            LayerTap(module) if module is not None else nullcontext(None) as tap,
        ):
            try:
                feats = surface.forward_features(surface.normalize(probe))
            except (RuntimeError, AssertionError, ValueError) as err:
                first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
                raise UserError(
                    f"the model cannot take {size[0]}x{size[1]} images ({first}); use its input size (drop --size)."
                ) from None
            if module is None:
                return surface.num_features, feats.ndim == 3
            if tap is None or tap.output is None:
                raise UserError(
                    f"layer {self.layer!r} is not part of the backbone's forward pass; pick a backbone layer."
                )
            return int(pooled_probe(tap.output, surface).shape[1]), feats.ndim == 3

    def _text_table(
        self, clip: ClipModel, names: Sequence[str] | None, classes: Sequence[int | None]
    ) -> dict[int, torch.Tensor]:
        from neuroinspect.clip.prompts import class_text_embeddings

        used = sorted({c for c in classes if c is not None})
        if not used or names is None:
            return {}
        emb = class_text_embeddings(clip, [names[c] for c in used], renormalize=self.renormalize_text)
        return {c: emb[i] for i, c in enumerate(used)}

    def _forward(
        self,
        surface: ModelSurface,
        clip: ClipModel | None,
        tap: LayerTap | None,
        x01: torch.Tensor,
        want_spatial: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """B×3×H×W images in [0, 1] → (probe activations B×C, logits B×K, CLIP embeddings B×E or None, spatial maps or None)."""
        feats = surface.forward_features(surface.normalize(x01))
        pooled = surface.pool(feats)
        logits = surface.decision(pooled)
        spatial = None
        if tap is not None:
            assert tap.output is not None
            acts = pooled_probe(tap.output, surface)
            if want_spatial:
                spatial = tap.output if tap.output.ndim == 4 else surface.spatial_maps(tap.output)
        else:
            acts = pooled
            if want_spatial:
                spatial = surface.spatial_maps(feats)
        emb = clip.encode_image(x01) if clip is not None else None
        return acts, logits, emb, spatial

    def _run_chunk(
        self,
        surface: ModelSurface,
        clip: ClipModel | None,
        tap: LayerTap | None,
        pairs: list[tuple[int, int | None]],
        text_table: dict[int, torch.Tensor],
        names: Sequence[str] | None,
        gen: torch.Generator,
        device: torch.device,
        size: tuple[int, int],
        token_model: bool,
        show_progress: bool,
    ) -> list[Visualization]:
        t0 = time.perf_counter()
        k = self.images_per_pair
        n_pairs = len(pairs)
        batch = n_pairs * k
        pair_id = torch.arange(n_pairs, device=device).repeat_interleave(k)
        neurons_t = torch.tensor([n for n, _ in pairs], device=device).repeat_interleave(k)
        classes_t = torch.tensor([-1 if c is None else c for _, c in pairs], device=device).repeat_interleave(
            k
        )
        groups = torch.zeros_like(pair_id) if (self.ref and self.coupling == "batch") else pair_id
        text = None
        if clip is not None:
            e = next(iter(text_table.values())) if text_table else None
            dim = e.shape[0] if e is not None else 1
            rows = [
                text_table.get(c, torch.zeros(dim, device=device))
                if c is not None
                else torch.zeros(dim, device=device)
                for _, c in pairs
            ]
            text = torch.stack(rows).to(device).repeat_interleave(k, dim=0)
        objective = self.objective(with_clip=clip is not None)
        use_clip_now = clip is not None and "clip" in objective.requires

        kwargs: dict[str, Any] = {"generator": gen, "device": device}
        if self.init_sd is not None:
            kwargs["sd"] = float(self.init_sd)
        image = make_param(self.param, batch, size, **kwargs)
        aug = Augmentation(
            size,
            self.iters,
            degrees=self.degrees,
            translate=(self.translate, self.translate),
            scale_range=self.scale_range,
            noise_std=self.noise_std,
            ref_noise=self.ref,
            generator=gen,
        )
        opt = torch.optim.AdamW(
            image.parameters(), lr=self.lr, betas=self.betas, eps=1e-8, weight_decay=self.weight_decay
        )
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(
            opt, T_max=self.iters, eta_min=self.eta_min_ratio * self.lr
        )
        autocast = (
            torch.autocast(device_type="cuda", dtype=torch.bfloat16)
            if (self.amp and device.type == "cuda")
            else nullcontext()
        )

        def inputs_for(x01: torch.Tensor) -> tuple[ObjectiveInputs, torch.Tensor | None]:
            with autocast:
                acts, logits, emb, spatial = self._forward(
                    surface, clip if use_clip_now else None, tap, x01, want_spatial=False
                )
            inp = ObjectiveInputs(
                activations=acts.float(),
                logits=logits.float(),
                neurons=neurons_t,
                classes=classes_t,
                groups=groups,
                image_emb=None if emb is None else emb.float(),
                text_emb=text,
            )
            return inp, spatial

        with torch.no_grad():
            inp0, _ = inputs_for(image())
            initial = inp0.activations.gather(1, neurons_t.view(-1, 1)).squeeze(1).cpu()

        loss_curve: list[list[float]] = []
        act_curve: list[list[float]] = []
        clip_curve: list[list[float]] = []
        label = f"clip_illusion ({n_pairs} pair{'s' if n_pairs > 1 else ''} x {k})"
        for t in progress(range(self.iters), desc=label, total=self.iters, enabled=show_progress):
            x = image()
            if self.augment:
                x = aug(x, t)
            inp, _ = inputs_for(x)
            values = objective(inp)
            loss = -per_group(values, inp.groups).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                a = inp.activations.gather(1, neurons_t.view(-1, 1)).squeeze(1)
                loss_curve.append((-per_group(values.detach(), pair_id)).tolist())
                act_curve.append(per_group(a, pair_id).tolist())
                if inp.image_emb is not None and inp.text_emb is not None:
                    clip_curve.append(per_group((inp.image_emb * inp.text_emb).sum(1), pair_id).tolist())
        if not torch.isfinite(torch.tensor(loss_curve[-1])).all():
            raise RuntimeError("clip_illusion diverged (non-finite loss); lower lr or check the model.")

        with torch.no_grad():
            x = image().detach()
            acts, logits, emb, spatial = self._forward(surface, clip, tap, x, want_spatial=True)
            final = acts.gather(1, neurons_t.view(-1, 1)).squeeze(1).float().cpu()
            probs = torch.softmax(logits.float(), dim=1)
            assert spatial is not None
            thresholded = self.thresholding and not token_model
            tau, red = (self.tau, self.reduction) if self.thresholding else (0.25, 0.0)
            maps, masks = activation_masks(spatial.float(), neurons_t, size, tau, red)
            shown = apply_mask(x, masks) if thresholded else x
            scores = (emb * text).sum(1).float().cpu() if (emb is not None and text is not None) else None
        wall = time.perf_counter() - t0
        settings = self.settings()
        settings.update(
            {
                "image_size": list(size),
                "batch": batch,
                "pairs_in_batch": n_pairs,
                "device": str(device),
                "objective": objective.name,
            }
        )
        out = []
        for p, (n, c) in enumerate(pairs):
            sl = slice(p * k, (p + 1) * k)
            extra: dict[str, Any] = {
                "initial_activations": initial[sl].tolist(),
                "loss_curve": [row[p] for row in loss_curve],
                "activation_curve": [row[p] for row in act_curve],
                "objective": objective.name,
                "thresholded": thresholded,
            }
            if clip_curve:
                extra["clip_curve"] = [row[p] for row in clip_curve]
            if c is not None:
                extra["class_name"] = names[c] if names is not None else None
                if scores is not None:
                    extra["clip_scores"] = scores[sl].tolist()
            if thresholded:
                extra["raw_images"] = x[sl].cpu()
            out.append(
                Visualization(
                    method=self.name,
                    neuron=n,
                    class_idx=c,
                    images=shown[sl].cpu(),
                    activations=final[sl].tolist(),
                    activation_maps=maps[sl].cpu(),
                    masks=masks[sl].cpu(),
                    class_logits=None if c is None else logits[sl, c].float().cpu().tolist(),
                    class_probs=None if c is None else probs[sl, c].cpu().tolist(),
                    settings=settings,
                    wall_seconds=wall / n_pairs,
                    extra=extra,
                )
            )
        return out

    def _size(self, surface: ModelSurface) -> tuple[int, int]:
        if self.image_size is not None:
            return (int(self.image_size), int(self.image_size))
        _, h, w = surface.data_config.input_size
        return (int(h), int(w))


__all__ = [
    "ClipIllusion",
    "LayerTap",
    "frozen_modules",
    "pooled_probe",
    "resolve_layer",
    "top_classes_for_neuron",
    "top_neurons_for_class",
]
