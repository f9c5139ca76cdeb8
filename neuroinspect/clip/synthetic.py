"""A small CLIP trained offline on a bundled benchmark, for CLIP-Illusion guidance without the hub.

No real CLIP weights can be downloaded on offline machines, so ``neuroinspect clip train`` builds a
tiny open_clip model (a ViT image tower and a transformer text tower, a few million parameters,
from a custom config dict) and trains it contrastively on texts generated from the benchmark's
known factors (:mod:`neuroinspect.datasets.groundtruth`):

- full captions ``caption(core, spurious)`` ("a photo of a triangle on water");
- the 32 CLIP-Illusion templates filled with the class string (``dataset.prompts``), i.e. exactly
  the texts that guidance encodes (spec §4.2), so class text embeddings are in distribution;
- the templates filled with the spurious attribute's name.

A batch holds several images per text (a benchmark has few distinct captions), so the loss is the
symmetric CLIP loss with *soft* targets: image i and text j match when every factor that text j
names equals image i's (a class-only text matches every image of that class). With one image per
text this is exactly open_clip's ``ClipLoss``.

The file (:func:`save_synthetic_clip`) holds the config, the weights, the preprocessing, the
training settings and the held-out retrieval metrics; it is written atomically and read with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from neuroinspect.clip.loader import CLIP_MEAN, CLIP_STD, ClipModel, ClipUnavailableError
from neuroinspect.clip.prompts import TEMPLATES, class_text_embeddings
from neuroinspect.errors import UserError
from neuroinspect.fileio import atomic_torch_save
from neuroinspect.runtime import progress

if TYPE_CHECKING:
    from open_clip.model import CLIP

FORMAT = "neuroinspect-synthetic-clip"
FORMAT_VERSION = 1


# -- the model -------------------------------------------------------------------------------------
TINY_CNN = "neuroinspect_tiny_cnn"


class TinyConvNet(nn.Module):
    """A small full-resolution CNN with timm's classifier interface (the synthetic CLIP's image trunk).

    Three conv3×3 + ReLU layers at full, 1/2 and 1/4 resolution (no normalization layers, so
    guidance behaves the same in train and eval mode), then global pooling (``"avg"``,
    ``"max"``, ``"avgmax"`` or ``"catavgmax"``, timm's names). Small objects (the benchmarks' shapes
    are ~8 px at 32 px) survive the stem, unlike in ResNet or ViT stems.
    ``forward``: B×3×H×W → B×num_classes (B×num_features when ``num_classes=0``).
    """

    def __init__(
        self, num_classes: int = 0, global_pool: str = "catavgmax", width: int = 16, in_chans: int = 3
    ) -> None:
        super().__init__()
        w = int(width)
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, w, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU(inplace=True),
        )  # fmt: skip
        self.width = 2 * w
        self.default_cfg: dict[str, Any] = {"pool_size": None}
        self.pretrained_cfg = self.default_cfg
        self.reset_classifier(num_classes, global_pool)

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        if global_pool is not None:
            if global_pool not in ("avg", "max", "avgmax", "catavgmax"):
                raise ValueError(f"unsupported global_pool {global_pool!r}")
            self.global_pool = global_pool
        self.num_features = self.width * (2 if self.global_pool == "catavgmax" else 1)
        self.head: nn.Module = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def pool(self, h: torch.Tensor) -> torch.Tensor:
        avg, mx = h.mean(dim=(2, 3)), h.amax(dim=(2, 3))
        if self.global_pool == "avg":
            return avg
        if self.global_pool == "max":
            return mx
        if self.global_pool == "avgmax":
            return 0.5 * (avg + mx)
        return torch.cat([avg, mx], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.forward_features(x)))


def neuroinspect_tiny_cnn(pretrained: bool = False, **kwargs: Any) -> TinyConvNet:
    """timm entrypoint of :class:`TinyConvNet` (no pretrained weights exist)."""
    if pretrained:
        raise ValueError(f"{TINY_CNN} has no pretrained weights")
    keep = {k: v for k, v in kwargs.items() if k in ("num_classes", "global_pool", "width", "in_chans")}
    return TinyConvNet(**keep)


def _register_tiny_cnn() -> None:
    import timm
    from timm.models import register_model

    if not timm.is_model(TINY_CNN):
        register_model(neuroinspect_tiny_cnn)


def tiny_clip_config(
    image_size: int = 32,
    embed_dim: int = 128,
    vision: str = "cnn",
    vision_width: int = 128,
    vision_layers: int = 3,
    text_width: int = 128,
    text_layers: int = 2,
    context_length: int = 24,
    grid: int = 4,
) -> dict[str, Any]:
    """An open_clip model config (``embed_dim``, ``vision_cfg``, ``text_cfg``) small enough to train on CPU.

    ``vision="cnn"`` (default): open_clip's timm tower around :class:`TinyConvNet` (registered with
    timm as ``neuroinspect_tiny_cnn``), concatenated average + max pooling and a linear projection.
    ``vision="vit"``: open_clip's own ViT with ``vision_width`` / ``vision_layers`` and a
    ``grid``×``grid`` patch grid. The text tower is open_clip's transformer with its BPE vocabulary
    (49,408 tokens), so the stock tokenizer works unchanged.
    """
    if image_size < 16:
        raise ValueError(f"image_size must be >= 16, got {image_size}")
    if vision == "cnn":
        vision_cfg: dict[str, Any] = {
            "timm_model_name": TINY_CNN,
            "timm_model_pretrained": False,
            "timm_pool": "catavgmax",
            "timm_proj": "linear",
            "image_size": int(image_size),
        }
    elif vision == "vit":
        patch = max(2, image_size // grid)
        while image_size % patch:
            patch -= 1
        vision_cfg = {
            "image_size": int(image_size),
            "layers": int(vision_layers),
            "width": int(vision_width),
            "head_width": 32,
            "patch_size": int(patch),
        }
    else:
        raise ValueError(f"vision must be 'cnn' or 'vit', got {vision!r}")
    return {
        "embed_dim": int(embed_dim),
        "vision_cfg": vision_cfg,
        "text_cfg": {
            "context_length": int(context_length),
            "vocab_size": 49408,
            "width": int(text_width),
            "heads": max(1, text_width // 32),
            "layers": int(text_layers),
        },
    }


def build_clip_module(config: Mapping[str, Any]) -> CLIP:
    """open_clip's ``CLIP`` built from a config dict (random init with the current torch seed)."""
    import open_clip  # noqa: F401  (registers open_clip's modules; torchvision fix applied by neuroinspect)
    from open_clip.model import CLIP

    if config["vision_cfg"].get("timm_model_name") == TINY_CNN:
        _register_tiny_cnn()

    return CLIP(
        embed_dim=int(config["embed_dim"]),
        vision_cfg=dict(config["vision_cfg"]),
        text_cfg=dict(config["text_cfg"]),
        quick_gelu=bool(config.get("quick_gelu", False)),
    )


@functools.cache
def _tokenizer(context_length: int) -> Any:
    """open_clip's BPE tokenizer (building its vocabulary takes a tenth of a second: one per length)."""
    from open_clip import SimpleTokenizer

    return SimpleTokenizer(context_length=context_length)


def _clip_from(
    module: torch.nn.Module, config: Mapping[str, Any], spec: str, info: dict[str, Any]
) -> ClipModel:
    size = int(config["vision_cfg"]["image_size"])
    return ClipModel(
        model=module,
        tokenizer=_tokenizer(int(config["text_cfg"]["context_length"])),
        mean=CLIP_MEAN,
        std=CLIP_STD,
        image_size=(size, size),
        spec=spec,
        info=info,
    )


def random_clip(seed: int = 0, image_size: int = 64, config: Mapping[str, Any] | None = None) -> ClipModel:
    """An untrained tiny CLIP (seeded, frozen). It gives no meaningful guidance: benchmarks and tests only."""
    cfg = dict(config) if config is not None else tiny_clip_config(image_size=image_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = build_clip_module(cfg)
    info = {"source": "synthetic", "trained": False, "config": cfg, "seed": seed}
    return _clip_from(module, cfg, "synthetic-clip:random", info).freeze()


# -- files -----------------------------------------------------------------------------------------
def save_synthetic_clip(
    path: str | Path,
    clip: ClipModel,
    config: Mapping[str, Any],
    dataset: str,
    dataset_params: Mapping[str, Any] | None = None,
    train_config: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
) -> Path:
    """Write the model, its config and its metrics atomically; returns the path."""
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": dict(config),
        "mean": list(clip.mean),
        "std": list(clip.std),
        "dataset": dataset,
        "dataset_params": dict(dataset_params or {}),
        "train_config": dict(train_config or {}),
        "metrics": dict(metrics or {}),
        "state_dict": {k: v.detach().cpu() for k, v in clip.model.state_dict().items()},
    }
    return atomic_torch_save(path, payload)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - a foreign file fails in many ways
        return None
    if isinstance(payload, dict) and payload.get("format") == FORMAT:
        return payload
    return None


def is_synthetic_file(path: str | Path) -> bool:
    """Whether ``path`` is a synthetic CLIP written by :func:`save_synthetic_clip`."""
    return _read(Path(path)) is not None


def load_synthetic_clip(
    path: str | Path, device: str | torch.device = "cpu", spec: str | None = None
) -> ClipModel:
    """Read a synthetic CLIP file; frozen, on ``device``. :class:`ClipUnavailableError` if it is not one."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ClipUnavailableError(
            f"synthetic CLIP file {path} does not exist. Train one with `neuroinspect clip train`."
        )
    payload = _read(path)
    if payload is None:
        raise ClipUnavailableError(
            f"{path} is not a synthetic CLIP written by `neuroinspect clip train`; retrain it."
        )
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise ClipUnavailableError(f"{path} was written by a newer neuroinspect; upgrade neuroinspect.")
    config = payload["config"]
    module = build_clip_module(config)
    module.load_state_dict(payload["state_dict"], strict=True)
    info = {
        "source": "synthetic",
        "trained": True,
        "path": str(path),
        "dataset": payload.get("dataset"),
        "config": config,
        "metrics": payload.get("metrics", {}),
    }
    clip = _clip_from(module, config, spec or f"synthetic-clip:{path}", info)
    clip.mean = tuple(payload.get("mean", CLIP_MEAN))  # type: ignore[assignment]
    clip.std = tuple(payload.get("std", CLIP_STD))  # type: ignore[assignment]
    return clip.to(device).freeze()


# -- texts -----------------------------------------------------------------------------------------
@dataclass
class TextBank:
    """Every training text with the factors it names: ``core[j]`` / ``spurious[j]`` (-1 = not named)."""

    texts: list[str]
    core: np.ndarray
    spurious: np.ndarray
    caption_index: np.ndarray  # (n_core, n_spurious) → index of the full caption in ``texts``
    n_templates: int  # class prompts start at caption_index.size, spurious prompts after them


def text_bank(dataset: Any, templates: Sequence[str] = TEMPLATES) -> TextBank:
    """Texts for a benchmark split: full captions, class prompts and spurious-attribute prompts."""
    from neuroinspect.datasets import groundtruth as gt

    cores, spurs = gt.core_names(dataset), gt.spurious_names(dataset)
    prompts = list(getattr(dataset, "prompts", cores))
    texts: list[str] = []
    core: list[int] = []
    spur: list[int] = []
    index = np.zeros((len(cores), len(spurs)), dtype=np.int64)
    for c, cname in enumerate(cores):
        for s, sname in enumerate(spurs):
            index[c, s] = len(texts)
            texts.append(gt.caption(cname, sname, dataset))
            core.append(c)
            spur.append(s)
    for c in range(len(cores)):
        for t in templates:
            texts.append(t.format(prompts[c]))
            core.append(c)
            spur.append(-1)
    for s, sname in enumerate(spurs):
        for t in templates:
            texts.append(t.format(sname))
            core.append(-1)
            spur.append(s)
    return TextBank(
        texts, np.array(core, dtype=np.int64), np.array(spur, dtype=np.int64), index, len(templates)
    )


def _sample_texts(
    bank: TextBank,
    core: np.ndarray,
    spur: np.ndarray,
    rng: np.random.Generator,
    p_caption: float = 0.5,
    p_class: float = 0.3,
) -> np.ndarray:
    """One text index per image: its full caption, a class prompt or a spurious-attribute prompt."""
    n = len(core)
    kind = rng.random(n)
    out = bank.caption_index[core, spur].copy()
    n_templates = bank.n_templates
    class_start = bank.caption_index.size
    spur_start = class_start + bank.caption_index.shape[0] * n_templates
    pick = rng.integers(0, n_templates, size=n)
    cls_rows = (kind >= p_caption) & (kind < p_caption + p_class)
    sp_rows = kind >= p_caption + p_class
    out[cls_rows] = class_start + core[cls_rows] * n_templates + pick[cls_rows]
    out[sp_rows] = spur_start + spur[sp_rows] * n_templates + pick[sp_rows]
    return out


def soft_clip_loss(
    image_emb: torch.Tensor, text_emb: torch.Tensor, match: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    """Symmetric CLIP loss with soft targets.

    ``image_emb`` B×E and ``text_emb`` B×E unit rows (text j was drawn for image j); ``match`` B×B
    bool, ``match[i, j]`` = image i fits text j (the diagonal is true). Targets are ``match``
    normalized per row (image → text) and per column (text → image).
    """
    logits = logit_scale * image_emb @ text_emb.t()
    m = match.float()
    i2t = -(m / m.sum(1, keepdim=True) * F.log_softmax(logits, dim=1)).sum(1).mean()
    t2i = -(m / m.sum(0, keepdim=True) * F.log_softmax(logits, dim=0)).sum(0).mean()
    return 0.5 * (i2t + t2i)


# -- data ------------------------------------------------------------------------------------------
def images_of(dataset: Any, size: int | None = None) -> torch.Tensor:
    """All images of an in-memory split as N×3×H×W float32 in [0, 1] (resized to ``size`` if given)."""
    arr = getattr(dataset, "images", None)
    if arr is None:
        raise UserError(
            f"dataset {getattr(dataset, 'name', '?')} is not an in-memory benchmark split; use a bundled benchmark."
        )
    x = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float().div_(255.0)
    if size is not None and tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Light augmentation per image: a random shift (reflect padding of H/8, then a crop) and a horizontal flip."""
    n, _, h, w = x.shape
    pad = max(1, h // 8)
    xp = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen).tolist()
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen).tolist()
    out = torch.stack([xp[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])
    flip = torch.rand(n, generator=gen) < 0.5
    out[flip] = out[flip].flip(-1)
    return out


def training_images(
    dataset: Any, counterfactual: bool = True
) -> tuple[torch.Tensor, np.ndarray, np.ndarray, int]:
    """Training images as N×3×H×W uint8 with their core / spurious labels, and the group size.

    With ``counterfactual``, sample i contributes its C×S renders in a row (group size C·S);
    otherwise each sample is its own group of 1.
    """
    from neuroinspect.datasets import groundtruth as gt

    core, spur = gt.attribute_labels(dataset)
    if counterfactual:
        grid = gt.counterfactual_grid(dataset, np.arange(len(dataset)))  # n×C×S×H×W×3
        n, c, s_, h, w, _ = grid.shape
        x = torch.from_numpy(np.ascontiguousarray(grid.reshape(n * c * s_, h, w, 3))).permute(0, 3, 1, 2)
        cores = np.tile(np.repeat(np.arange(c), s_), n)
        spurs = np.tile(np.arange(s_), n * c)
        return x, cores.astype(np.int64), spurs.astype(np.int64), c * s_
    arr = getattr(dataset, "images", None)
    if arr is None:
        raise UserError(
            f"dataset {getattr(dataset, 'name', '?')} is not an in-memory benchmark split; use a bundled benchmark."
        )
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2), core, spur, 1


def _as_float(x: torch.Tensor, size: int) -> torch.Tensor:
    out = x.float().div_(255.0)
    if tuple(out.shape[-2:]) != (size, size):
        out = F.interpolate(out, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return out


# -- training --------------------------------------------------------------------------------------
def pretrain_image_tower(
    clip: ClipModel,
    x_all: torch.Tensor,
    core: np.ndarray,
    spur: np.ndarray,
    unit: int,
    n_core: int,
    n_spur: int,
    embed_dim: int,
    size: int,
    steps: int,
    batch_size: int,
    gen: torch.Generator,
    device: str | torch.device,
    show_progress: bool = True,
    lr: float = 3e-3,
) -> list[float]:
    """Train the image tower (with two temporary linear heads on its embedding) to classify the core and
    the spurious attribute: cross-entropy on whole counterfactual groups, Adam(``lr``). Returns the loss curve."""
    visual: nn.Module = getattr(clip.model, "visual")  # noqa: B009 - nn.Module's __getattr__ is untyped
    with torch.random.fork_rng(devices=[]):  # the heads' init comes from ``gen``, not the global RNG
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
        heads = nn.ModuleList([nn.Linear(embed_dim, n) for n in (n_core, n_spur)]).to(device)
    opt = torch.optim.Adam(list(visual.parameters()) + list(heads.parameters()), lr=lr)
    yc, ys = torch.from_numpy(core), torch.from_numpy(spur)
    n_units = len(x_all) // unit
    per = max(1, batch_size // unit)
    curve: list[float] = []
    visual.train()
    for _ in progress(range(steps), desc="clip image tower", total=steps, enabled=show_progress):
        chosen = torch.randint(0, n_units, (per,), generator=gen)
        idx = (chosen.view(-1, 1) * unit + torch.arange(unit).view(1, -1)).flatten()
        emb = visual(clip.preprocess(_as_float(x_all[idx], size).to(device)))
        loss = F.cross_entropy(heads[0](emb), yc[idx].to(device)) + F.cross_entropy(
            heads[1](emb), ys[idx].to(device)
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        curve.append(float(loss.detach()))
    return curve


@dataclass
class SyntheticClipResult:
    """What :func:`train_synthetic_clip` returns: the model, its held-out metrics and the file."""

    clip: ClipModel
    metrics: dict[str, Any]
    path: Path | None
    train_config: dict[str, Any]


def train_synthetic_clip(
    dataset: str = "spurious-shapes",
    out: str | Path | None = None,
    *,
    root: str | Path | None = None,
    params: Mapping[str, Any] | None = None,
    epochs: int = 8,
    batch_size: int = 128,
    lr: float = 2e-3,
    weight_decay: float = 0.1,
    image_size: int | None = None,
    config: Mapping[str, Any] | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    train_split: str = "train",
    eval_split: str = "test",
    counterfactual: bool = True,
    augment: bool = False,
    pretrain_steps: int = 600,
    max_steps: int | None = None,
    show_progress: bool = True,
) -> SyntheticClipResult:
    """Train a tiny CLIP on a bundled benchmark's ``train_split`` and measure retrieval on ``eval_split``.

    AdamW(lr, wd) with a cosine schedule, ``epochs`` passes (or ``max_steps`` steps) over the split.
    ``pretrain_steps``: the image tower is first trained alone to classify both attributes
    (:func:`pretrain_image_tower`; the benchmark's analogue of an ImageNet-pretrained tower): trained
    contrastively from scratch, both towers settle on the large, easy background and the text tower
    maps "triangle" and "square" captions to the same vector, a symmetric solution the object never
    escapes (measured: top-1 0.50 = background only, with a ViT, a ModifiedResNet or a CNN tower).
    ``counterfactual``: every training sample is rendered with every core × spurious value
    (:func:`~neuroinspect.datasets.groundtruth.counterfactual_grid`) and a batch holds whole groups,
    so images that differ ONLY in the object must get different captions: without it a small CLIP
    learns the large, easy background and never the object (top-1 stays at 0.5 on spurious-shapes).
    Writes the model to ``out`` (atomically) when given. Returns the model and the metrics of
    :func:`retrieval_metrics` on the held-out split.
    """
    from neuroinspect.datasets import get_dataset, load_dataset

    spec = get_dataset(dataset)
    if getattr(spec, "kind", "real") != "benchmark":
        raise UserError(
            f"a synthetic CLIP needs a bundled benchmark with known attributes; {dataset!r} is a real dataset."
        )
    params = dict(params or {})
    t0 = time.perf_counter()
    train = load_dataset(dataset, root, train_split, None, **params)
    test = load_dataset(dataset, root, eval_split, None, **params)
    native = int(train.images.shape[1])  # type: ignore[attr-defined]
    size = int(image_size or min(native, 32))
    cfg = dict(config) if config is not None else tiny_clip_config(image_size=size)
    size = int(cfg["vision_cfg"]["image_size"])

    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = build_clip_module(cfg)
    clip = _clip_from(module, cfg, "synthetic-clip", {"source": "synthetic", "trained": True, "config": cfg})
    clip.to(device)
    module.train()

    bank = text_bank(train)
    tokens = clip.tokenizer(bank.texts)  # T×L
    x_all, core_all, spur_all, unit = training_images(train, counterfactual)
    n = len(x_all)
    bs = max(unit, min(batch_size, n) // unit * unit)  # whole counterfactual groups per batch
    units_per_batch = bs // unit
    n_units = n // unit
    steps_per_epoch = max(1, n // bs)
    total = max_steps if max_steps is not None else epochs * steps_per_epoch
    n_core, n_spur = int(core_all.max()) + 1, int(spur_all.max()) + 1
    pre_steps = pretrain_steps if max_steps is None else min(pretrain_steps, max_steps)
    pretrain_curve = pretrain_image_tower(
        clip,
        x_all,
        core_all,
        spur_all,
        unit,
        n_core,
        n_spur,
        int(cfg["embed_dim"]),
        size,
        pre_steps,
        bs,
        gen,
        device,
        show_progress,
    )
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, p in module.named_parameters():
        (no_decay if p.ndim < 2 or "embedding" in name or "logit_scale" in name else decay).append(p)
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr,
        betas=(0.9, 0.98),
        eps=1e-6,
    )
    warmup = max(1, total // 20)

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    losses: list[float] = []
    bar = progress(range(total), desc=f"clip train ({dataset})", total=total, enabled=show_progress)
    order = torch.randperm(n_units, generator=gen)
    pos = 0
    for _ in bar:
        if pos + units_per_batch > n_units:
            order, pos = torch.randperm(n_units, generator=gen), 0
        chosen = order[pos : pos + units_per_batch]
        pos += units_per_batch
        idx = (chosen.view(-1, 1) * unit + torch.arange(unit).view(1, -1)).flatten()
        xb = _as_float(x_all[idx], size)
        xb = (_augment(xb, gen) if augment else xb).to(device)
        cb, sb = core_all[idx.numpy()], spur_all[idx.numpy()]
        tj = _sample_texts(bank, cb, sb, rng)
        uniq, inverse = np.unique(tj, return_inverse=True)
        t_core, t_spur = bank.core[tj], bank.spurious[tj]
        match = ((t_core[None, :] < 0) | (t_core[None, :] == cb[:, None])) & (
            (t_spur[None, :] < 0) | (t_spur[None, :] == sb[:, None])
        )
        img = clip.encode_image(xb)
        txt_u = F.normalize(module.encode_text(tokens[torch.from_numpy(uniq)].to(device)), dim=-1)
        txt = txt_u[torch.from_numpy(inverse).to(device)]
        scale = module.logit_scale.exp().clamp(max=100.0)
        loss = soft_clip_loss(img, txt, torch.from_numpy(match).to(device), scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            module.logit_scale.clamp_(0, math.log(100.0))
        losses.append(float(loss.detach()))
    train_seconds = time.perf_counter() - t0
    clip.freeze()
    metrics = retrieval_metrics(clip, test)
    metrics["train_loss_first"] = losses[0] if losses else None
    metrics["train_loss_last"] = float(np.mean(losses[-max(1, steps_per_epoch // 4) :])) if losses else None
    metrics["train_seconds"] = round(train_seconds, 2)
    metrics["pretrain_loss_first"] = pretrain_curve[0] if pretrain_curve else None
    metrics["pretrain_loss_last"] = float(np.mean(pretrain_curve[-20:])) if pretrain_curve else None
    metrics["train_split"] = train_split
    metrics["eval_split"] = eval_split
    train_config = {
        "epochs": epochs,
        "steps": len(losses),
        "batch_size": bs,
        "lr": lr,
        "weight_decay": weight_decay,
        "seed": seed,
        "image_size": size,
        "train_split": train_split,
        "n_train": n,
        "counterfactual": bool(counterfactual and unit > 1),
        "pretrain_steps": pre_steps,
        "augment": bool(augment),
        "n_texts": len(bank.texts),
    }
    clip.info.update({"dataset": dataset, "metrics": metrics, "train_config": train_config})
    path = None
    if out is not None:
        path = save_synthetic_clip(out, clip, cfg, dataset, params, train_config, metrics)
        clip.info["path"] = str(path)
        clip.spec = f"synthetic-clip:{path}"
    return SyntheticClipResult(clip=clip, metrics=metrics, path=path, train_config=train_config)


@torch.no_grad()
def retrieval_metrics(clip: ClipModel, dataset: Any, batch_size: int = 256) -> dict[str, Any]:
    """Top-1 caption retrieval on a benchmark split.

    For each image, the caption (among all core × spurious captions) with the highest cosine
    similarity is its prediction. Returns ``top1`` (the exact caption), ``core_acc`` and
    ``spurious_acc`` (the predicted caption names the right attribute), per-value accuracies
    ``core_acc_by_value`` / ``spurious_acc_by_value``, and ``zero_shot_class_acc`` (argmax over the
    32-template class text embeddings, the texts that guidance uses).
    """
    from neuroinspect.datasets import groundtruth as gt

    clip.model.eval()
    cores, spurs = gt.core_names(dataset), gt.spurious_names(dataset)
    core, spur = gt.attribute_labels(dataset)
    captions = [gt.caption(c, s, dataset) for c in cores for s in spurs]
    cap_emb = clip.encode_text(captions)  # (C·S)×E
    prompts = list(getattr(dataset, "prompts", cores))
    cls_emb = class_text_embeddings(clip, prompts)
    x = images_of(dataset, clip.image_size[0])
    preds, cls_preds = [], []
    for i in range(0, len(x), batch_size):
        e = clip.encode_image(x[i : i + batch_size].to(clip.device))
        preds.append((e @ cap_emb.t()).argmax(1).cpu())
        cls_preds.append((e @ cls_emb.t()).argmax(1).cpu())
    pred = torch.cat(preds).numpy()
    pred_core, pred_spur = pred // len(spurs), pred % len(spurs)
    truth = core * len(spurs) + spur
    cls_pred = torch.cat(cls_preds).numpy()
    labels = dataset.labels
    return {
        "n_images": int(len(x)),
        "n_captions": len(captions),
        "chance_top1": 1.0 / len(captions),
        "top1": float((pred == truth).mean()),
        "core_acc": float((pred_core == core).mean()),
        "spurious_acc": float((pred_spur == spur).mean()),
        "core_acc_by_value": {
            name: float((pred_core[core == c] == c).mean())
            for c, name in enumerate(cores)
            if (core == c).any()
        },
        "spurious_acc_by_value": {
            name: float((pred_spur[spur == s] == s).mean())
            for s, name in enumerate(spurs)
            if (spur == s).any()
        },
        "zero_shot_class_acc": float((cls_pred == labels).mean()),
    }


__all__ = [
    "FORMAT",
    "SyntheticClipResult",
    "TextBank",
    "build_clip_module",
    "images_of",
    "is_synthetic_file",
    "load_synthetic_clip",
    "random_clip",
    "retrieval_metrics",
    "save_synthetic_clip",
    "soft_clip_loss",
    "text_bank",
    "tiny_clip_config",
    "train_synthetic_clip",
]
