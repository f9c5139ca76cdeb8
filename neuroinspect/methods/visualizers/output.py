"""Saving visualizations: images, overlays, a JSON sidecar, a contact sheet and result records.

Layout under an output directory ``DIR`` (one folder per (neuron, class) pair, spec bug 14 fixed:
file names and the sidecar's keys are the same strings)::

    DIR/<method>/<neuron>/<class_idx or 'none'>/
        image_<i>.png       the visualization's images (as returned: masked when thresholded)
        overlay_<i>.png     the neuron's activation map blended over image i (when there is a map)
        masked_<i>.png      image i ⊙ max(mask, 0.5), the reference's display (when there is a mask)
        meta.json           neuron, class, activations, logits, probabilities, CLIP scores, metrics,
                            settings, wall seconds, file names, and the JSON-able ``extra`` values
    DIR/<method>/contact_sheet.png    every pair of the run as a labelled block of a grid that fits a screen
    DIR/<method>/contact_sheet.html   the same with the numbers, linking the PNG files

:func:`visualization_record` turns one saved pair into a ``task="visualization"`` result record.
"""

from __future__ import annotations

import html
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from neuroinspect.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text
from neuroinspect.harness.records import make_record
from neuroinspect.methods.visualizers.base import Visualization

#: Contact-sheet cells are at least this many pixels wide (small images are upscaled, nearest).
MIN_CELL = 96


@dataclass
class SavedVisualization:
    """Where one pair was written: its folder, its files (relative to the folder) and the sidecar's content."""

    visualization: Visualization
    directory: Path
    files: dict[str, list[str]]
    meta: dict[str, Any] = field(default_factory=dict)

    def paths(self, kind: str) -> list[Path]:
        return [self.directory / f for f in self.files.get(kind, [])]


def pair_dir(root: str | Path, method: str, neuron: int, class_idx: int | None) -> Path:
    """``root/<method>/<neuron>/<class_idx or 'none'>``."""
    return Path(root) / method / str(int(neuron)) / ("none" if class_idx is None else str(int(class_idx)))


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """3×H×W float in [0, 1] → H×W×3 uint8."""
    x = image.detach().float().cpu().clamp(0.0, 1.0)
    return (x * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode="RGB").save(buf, format="PNG")
    return buf.getvalue()


def overlays(images: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """Activation maps (n×h×w) coloured and blended over images (n×3×H×W) → n×3×H×W in [0, 1].

    Non-negative maps (post-ReLU CNN channels) use a sequential colormap from 0 to their maximum;
    signed maps (token models) a diverging one.
    """
    from neuroinspect.methods.visualizers.heatmaps import overlay

    mode = "signed" if bool((maps < 0).any()) else "positive"
    blended, _ = overlay(images.float().cpu(), maps.float().cpu(), mode=mode, clip_percentile=None, alpha=0.5)
    return blended


def _jsonable(value: Any) -> Any:
    """``value`` if it can go into JSON (tensors as lists when small), else ``None`` (dropped)."""
    if isinstance(value, (str, bool, int, type(None))):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist() if value.numel() <= 4096 else None
    if isinstance(value, np.ndarray):
        return value.tolist() if value.size <= 4096 else None
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, Mapping):
        out = {str(k): _jsonable(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v is not None or value.get(k) is None}
    if isinstance(value, (list, tuple)):
        items = [_jsonable(v) for v in value]
        return items if all(i is not None or v is None for i, v in zip(items, value, strict=True)) else None
    if isinstance(value, Path):
        return str(value)
    return None


def class_name_of(vis: Visualization, class_names: Sequence[str] | None) -> str | None:
    if vis.class_idx is None:
        return None
    if "class_name" in vis.extra and vis.extra["class_name"]:
        return str(vis.extra["class_name"])
    if class_names is not None and 0 <= vis.class_idx < len(class_names):
        return str(class_names[vis.class_idx])
    return None


def summary_metrics(vis: Visualization) -> dict[str, Any]:
    """Per-pair numbers for sidecars, contact sheets and records (means over the pair's images)."""
    out: dict[str, Any] = {
        "n_images": int(vis.images.shape[0]),
        "wall_seconds": round(float(vis.wall_seconds), 4),
    }
    if vis.activations:
        out["mean_activation"] = float(np.mean(vis.activations))
    init = vis.extra.get("initial_activations")
    if init:
        out["mean_initial_activation"] = float(np.mean(init))
    if vis.class_logits:
        out["mean_class_logit"] = float(np.mean(vis.class_logits))
    if vis.class_probs:
        out["mean_class_prob"] = float(np.mean(vis.class_probs))
    scores = vis.extra.get("clip_scores")
    if scores:
        out["mean_clip_score"] = float(np.mean(scores))
    if vis.masks is not None:
        out["mask_coverage"] = float(vis.masks.float().mean())
    return out


def save_visualization(
    vis: Visualization,
    root: str | Path,
    class_names: Sequence[str] | None = None,
    metrics: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
) -> SavedVisualization:
    """Write one pair's PNGs and ``meta.json`` under :func:`pair_dir`; returns what was written.

    ``metrics``: extra numbers (e.g. faithfulness) for the sidecar; ``context``: run facts
    (checkpoint, dataset, seed) copied into it.
    """
    d = pair_dir(root, vis.method, vis.neuron, vis.class_idx)
    files: dict[str, list[str]] = {"images": [], "overlays": [], "masked": []}
    images = vis.images.detach().float().cpu()
    for i in range(images.shape[0]):
        name = f"image_{i}.png"
        atomic_write_bytes(d / name, png_bytes(to_uint8(images[i])))
        files["images"].append(name)
    base = vis.extra.get("raw_images")
    base = base.float().cpu() if isinstance(base, torch.Tensor) else images
    if vis.activation_maps is not None:
        blended = overlays(base, vis.activation_maps)
        for i in range(blended.shape[0]):
            name = f"overlay_{i}.png"
            atomic_write_bytes(d / name, png_bytes(to_uint8(blended[i])))
            files["overlays"].append(name)
    if vis.masks is not None and not vis.extra.get("thresholded", False):
        shown = base * vis.masks.float().cpu().clamp_min(0.5).unsqueeze(1)
        for i in range(shown.shape[0]):
            name = f"masked_{i}.png"
            atomic_write_bytes(d / name, png_bytes(to_uint8(shown[i])))
            files["masked"].append(name)
    files = {k: v for k, v in files.items() if v}
    extra = {k: _jsonable(v) for k, v in vis.extra.items() if k != "raw_images"}
    meta = {
        "method": vis.method,
        "neuron": int(vis.neuron),
        "class_idx": vis.class_idx,
        "class_name": class_name_of(vis, class_names),
        "activations": [float(a) for a in vis.activations],
        "class_logits": vis.class_logits,
        "class_probs": vis.class_probs,
        "summary": summary_metrics(vis),
        "metrics": _jsonable(dict(metrics or {})),
        "files": files,
        "wall_seconds": float(vis.wall_seconds),
        "settings": _jsonable(vis.settings),
        "extra": {k: v for k, v in extra.items() if v is not None},
        "context": _jsonable(dict(context or {})),
    }
    atomic_write_json(d / "meta.json", meta)
    return SavedVisualization(vis, d, files, meta)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - Pillow < 10.1
        return ImageFont.load_default()


def _label(saved: SavedVisualization) -> list[str]:
    m = saved.meta.get("summary", {})
    cls = saved.meta.get("class_idx")
    name = saved.meta.get("class_name")
    first = f"neuron {saved.meta['neuron']}" + (
        "" if cls is None else f" | class {cls}" + (f" ({name})" if name else "")
    )
    parts = []
    if "mean_activation" in m:
        parts.append(f"act {m['mean_activation']:.3g}")
    if "mean_class_prob" in m:
        parts.append(f"p {m['mean_class_prob']:.2f}")
    if "mean_clip_score" in m:
        parts.append(f"clip {m['mean_clip_score']:.3f}")
    lines = [first, " ".join(parts)]
    concept = _concept_text(saved)
    if concept:
        lines.append(concept)
    return lines


def _concept_text(saved: SavedVisualization) -> str:
    """One short line of concept recovery (bundled benchmarks): ``truth spurious/water: recovered``,
    ``truth core/square: shows spurious`` or ``truth mixed: not scored``; ``?`` marks unreliable classifiers."""
    c = (saved.meta.get("metrics") or {}).get("concept_recovery")
    if not isinstance(c, Mapping):
        return ""
    truth = str(c.get("truth_label")) + (f"/{c['truth_value']}" if c.get("truth_value") else "")
    rec = c.get("recovered")
    verdict = "not scored" if rec is None else ("recovered" if rec else f"shows {c.get('shown')}")
    return f"truth {truth}: {verdict}" + ("" if c.get("reliable", True) else " ?")


#: A contact sheet is at most this wide (a laptop screen); a pair with more images wraps onto more lines.
MAX_SHEET_WIDTH = 1600
#: Cells larger than this are scaled down (a 224-px exemplar needs no more to be recognised).
MAX_CELL = 160


def _column_labels(saved: SavedVisualization, n: int) -> list[str]:
    """``"#1 top 3.21"``: the image's number, its role (exemplars: top / bottom) and its activation."""
    meta = saved.meta
    roles = (meta.get("extra") or {}).get("role") or []
    acts = (meta.get("extra") or {}).get("activations_shown") or meta.get("activations") or []
    out = []
    for i in range(n):
        parts = [f"#{i + 1}"]
        if i < len(roles):
            parts.append(str(roles[i]))
        if i < len(acts):
            parts.append(f"{float(acts[i]):.3g}")
        out.append(" ".join(parts))
    return out


def contact_sheet(
    saved: Sequence[SavedVisualization], out_dir: str | Path, title: str = ""
) -> tuple[Path, Path]:
    """A PNG grid that fits a screen and an HTML page; returns both paths.

    One block per (neuron, class) pair: a header (neuron, class, the pair's numbers, concept
    recovery), then labelled rows, "images" and "activation maps", under column labels (image
    number, role, activation); a pair with more images than fit in :data:`MAX_SHEET_WIDTH` wraps
    onto further lines. Small images are upscaled (nearest) to at least :data:`MIN_CELL` px, large
    ones scaled down to :data:`MAX_CELL` px.
    """
    if not saved:
        raise ValueError("contact_sheet needs at least one saved visualization")
    out_dir = Path(out_dir)
    blocks = []
    for s in saved:
        images = [np.asarray(Image.open(p).convert("RGB")) for p in s.paths("images")]
        maps = [np.asarray(Image.open(p).convert("RGB")) for p in s.paths("overlays")]
        blocks.append((s, images, maps))
    side = max(max(max(a.shape[:2]) for a in imgs + maps) for _, imgs, maps in blocks)
    cell = min(MAX_CELL, max(MIN_CELL, side)) if side >= MIN_CELL else side * math.ceil(MIN_CELL / side)
    pad, label_w, line_h = 6, 118, 16
    font, small, big = _font(13), _font(11), _font(15)
    per_line = max(1, (MAX_SHEET_WIDTH - label_w - pad) // (cell + pad))
    n_cols = min(per_line, max(len(imgs) for _, imgs, _ in blocks))
    width = max(label_w + pad + n_cols * (cell + pad), 720)
    head = 30 if title else 0

    def block_height(imgs: list[np.ndarray], maps: list[np.ndarray], n_head: int) -> int:
        lines = math.ceil(len(imgs) / n_cols)
        rows = 2 if maps else 1
        return n_head * line_h + 6 + lines * (line_h + rows * (cell + pad)) + 2 * pad

    headers = [_label(s) for s, _, _ in blocks]
    height = (
        head + sum(block_height(i, m, len(h)) for (_, i, m), h in zip(blocks, headers, strict=True)) + pad
    )
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((pad, 7), title, fill=(0, 0, 0), font=big)
    y = head
    for (s, imgs, maps), header in zip(blocks, headers, strict=True):
        draw.line([(0, y), (width, y)], fill=(190, 190, 190))
        y += pad
        for j, line in enumerate(header):
            draw.text((pad, y + j * line_h), line, fill=(0, 0, 0) if j == 0 else (60, 60, 60), font=font)
        y += len(header) * line_h + 6
        labels = _column_labels(s, len(imgs))
        rows = [("images", imgs)] + ([("activation\nmaps", maps)] if maps else [])
        for start in range(0, len(imgs), n_cols):
            for c, text in enumerate(labels[start : start + n_cols]):
                draw.text((label_w + pad + c * (cell + pad), y), text, fill=(60, 60, 60), font=small)
            y += line_h
            for name, arrays in rows:
                draw.multiline_text((pad, y + cell // 2 - 10), name, fill=(0, 0, 0), font=font, spacing=2)
                for c, arr in enumerate(arrays[start : start + n_cols]):
                    size = (cell, round(cell * arr.shape[0] / arr.shape[1]))
                    resample = (
                        Image.Resampling.NEAREST if size[0] >= arr.shape[1] else Image.Resampling.LANCZOS
                    )
                    sheet.paste(
                        Image.fromarray(arr).resize(size, resample), (label_w + pad + c * (cell + pad), y)
                    )
                y += cell + pad
        y += pad
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    png = atomic_write_bytes(out_dir / "contact_sheet.png", buf.getvalue())
    page = atomic_write_text(out_dir / "contact_sheet.html", _html(saved, out_dir, title))
    return png, page


def _html(saved: Sequence[SavedVisualization], out_dir: Path, title: str) -> str:
    esc = html.escape
    lines = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title or 'neuroinspect visualizations')}</title>",
        "<style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px;vertical-align:top;font-size:13px}"
        "img{image-rendering:pixelated;width:128px;height:auto;margin:1px}</style>",
        "</head><body>",
        f"<h1>{esc(title or 'neuroinspect visualizations')}</h1>",
        '<p><img src="contact_sheet.png" alt="contact sheet" style="width:auto;max-width:100%"></p>',
        "<table><tr><th>neuron</th><th>class</th><th>numbers</th><th>images</th><th>activation maps</th></tr>",
    ]
    for s in saved:
        rel = (
            s.directory.relative_to(out_dir).as_posix()
            if s.directory.is_relative_to(out_dir)
            else s.directory.as_posix()
        )
        m = dict(s.meta.get("summary", {}))
        m.update(
            {
                k: v
                for k, v in (s.meta.get("metrics") or {}).items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)
            }
        )
        nums = "<br>".join(
            f"{esc(k)}: {v:.4g}" if isinstance(v, float) else f"{esc(k)}: {esc(str(v))}" for k, v in m.items()
        )
        concept = _concept_text(s)
        if concept:
            nums += f"<br>concept: {esc(concept)}"
        cls = s.meta.get("class_idx")
        cls_text = (
            "none"
            if cls is None
            else f"{cls}" + (f" ({esc(s.meta['class_name'])})" if s.meta.get("class_name") else "")
        )
        imgs = "".join(f'<img src="{esc(rel)}/{esc(f)}" alt="{esc(f)}">' for f in s.files.get("images", []))
        ovs = "".join(f'<img src="{esc(rel)}/{esc(f)}" alt="{esc(f)}">' for f in s.files.get("overlays", []))
        lines.append(
            f"<tr><td>{s.meta['neuron']}</td><td>{cls_text}</td><td>{nums}</td><td>{imgs}</td><td>{ovs}</td></tr>"
        )
    lines += ["</table>", "</body></html>", ""]
    return "\n".join(lines)


def visualization_record(
    saved: SavedVisualization,
    dataset: str,
    model: str,
    seed: int,
    provenance: Mapping[str, Any],
    config: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    run_id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A validated ``task="visualization"`` record for one saved pair.

    ``metrics`` = the pair's summary numbers (mean activation, class probability, CLIP score, mask
    coverage, wall seconds) plus ``metrics`` given here (e.g. faithfulness). ``config`` = the
    visualizer's settings plus ``config`` given here. The record also names the neuron and the
    folder it was saved to.
    """
    vis = saved.visualization
    all_metrics = dict(summary_metrics(vis))
    all_metrics.update(dict(metrics or {}))
    cfg = dict(_jsonable(vis.settings) or {})
    cfg.update(dict(config or {}))
    return make_record(
        task="visualization",
        dataset=dataset,
        model=model,
        method={"visualizer": vis.method},
        seed=int(seed),
        metrics=_jsonable(all_metrics),
        config=_jsonable(cfg),
        provenance=provenance,
        class_idx=vis.class_idx,
        run_id=run_id,
        neuron=int(vis.neuron),
        artifact_dir=str(saved.directory),
        **extra,
    )


__all__ = [
    "SavedVisualization",
    "class_name_of",
    "contact_sheet",
    "overlays",
    "pair_dir",
    "save_visualization",
    "summary_metrics",
    "to_uint8",
    "visualization_record",
]
