"""Human-readable outputs of an experiment: PNG figures and a Markdown report.

Everything here takes plain data (dicts, arrays, lists), so the report does not reach back up the
pipeline: the experiment runner computes, this module draws and writes.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from neuroinspect.fileio import atomic_write_bytes


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def pct(x: float | None, digits: int = 1) -> str:
    """0.8312 → ``"83.1"``; ``None`` → ``"–"``."""
    return "–" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{100 * x:.{digits}f}"


def plot_group_accuracy(
    before: Sequence[float | None],
    after: Mapping[str, Sequence[float | None]],
    group_names: Sequence[str],
    path: str | Path,
    title: str = "Accuracy per group, before and after each edit",
) -> Path:
    """Grouped bars: one cluster per group, one bar for the original model and one per editor."""
    plt = _pyplot()
    series = {"original": before, **dict(after)}
    n_groups, n_series = len(group_names), len(series)
    width = 0.8 / n_series
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * n_groups + 2), 3.8))
    cmap = plt.get_cmap("tab10")
    for i, (label, values) in enumerate(series.items()):
        vals = [np.nan if v is None else 100 * v for v in values]
        xs = np.arange(n_groups) + (i - (n_series - 1) / 2) * width
        ax.bar(xs, vals, width=width, label=label, color="0.35" if label == "original" else cmap(i % 10))
    ax.set_xticks(np.arange(n_groups))
    ax.set_xticklabels(group_names, rotation=20, ha="right")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=min(4, n_series), loc="lower center", bbox_to_anchor=(0.5, 1.08))
    return _save(fig, path)


def plot_image_grid(
    images: Sequence[np.ndarray],
    captions: Sequence[str],
    path: str | Path,
    title: str = "",
    ncols: int = 6,
    cell: int = 128,
) -> Path:
    """A grid of H×W×3 uint8 (or [0, 1] float) images, each scaled to ``cell`` px, with its caption under it.

    Drawn with PIL (a contact sheet needs no plotting library, and this is many times faster than
    one matplotlib axes per image)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    n = max(1, len(images))
    ncols = min(ncols, n)
    nrows = (n + ncols - 1) // ncols
    line_h, pad = 12, 6
    cap_lines = max([len(c.splitlines()) for c in captions] or [1])
    cap_h = cap_lines * line_h + 4
    top = 22 if title else 0
    sheet = Image.new("RGB", (ncols * (cell + pad) + pad, top + nrows * (cell + cap_h + pad) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((pad, 5), title, fill="black", font=font)
    for i, (img, cap) in enumerate(zip(images, captions, strict=False)):
        r, c = divmod(i, ncols)
        x, y = pad + c * (cell + pad), top + pad + r * (cell + cap_h + pad)
        arr = np.asarray(img)
        if arr.dtype != np.uint8:
            arr = (np.clip(arr, 0, 1) * 255).astype(np.uint8)
        sheet.paste(
            Image.fromarray(arr).convert("RGB").resize((cell, cell), Image.Resampling.NEAREST), (x, y)
        )
        for j, line in enumerate(cap.splitlines()):
            draw.text((x, y + cell + 2 + j * line_h), line, fill="black", font=font)
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    return atomic_write_bytes(path, buf.getvalue())


def plot_neuron_truth(
    spurious_ratio: np.ndarray,
    weight: np.ndarray,
    highlighted: Mapping[str, Sequence[int]],
    path: str | Path,
    class_name: str = "c",
) -> Path:
    """Scatter of every neuron: ground-truth spurious ratio (x) against its decision weight for class c (y);
    the neurons each finder picked are highlighted."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    ax.scatter(spurious_ratio, weight, s=6, c="0.7", label="all neurons")
    markers = ["o", "s", "^", "D", "v", "P"]
    cmap = plt.get_cmap("tab10")
    for i, (label, idx) in enumerate(highlighted.items()):
        idx = list(idx)
        if idx:
            ax.scatter(
                spurious_ratio[idx],
                weight[idx],
                s=40,
                marker=markers[i % len(markers)],
                facecolors="none",
                edgecolors=cmap(i),
                linewidths=1.4,
                label=label,
            )
    ax.axvline(0.5, color="0.5", lw=0.8, ls="--")
    ax.set_xlabel("ground truth: spurious ratio (1 = background only, 0 = shape only)")
    ax.set_ylabel(f"decision weight for class {class_name}")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table."""
    out = ["| " + " | ".join(str(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


# -- the experiment report ---------------------------------------------------------------------------


def _acc_cell(m: Mapping[str, Any], key: str) -> str:
    v = m.get(key)
    ci = (m.get("ci") or {}).get(key)
    if v is None:
        return "–"
    return f"{pct(v)} [{pct(ci[0])}, {pct(ci[1])}]" if ci else pct(v)


def _delta(before: Mapping[str, Any], after: Mapping[str, Any], key: str) -> str:
    b, a = before.get(key), after.get(key)
    if b is None or a is None:
        return "–"
    return f"{100 * (a - b):+.1f}"


def _to_uint8(img: Any) -> np.ndarray:
    arr = np.asarray(img)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0, 1) * 255).astype(np.uint8)
    return arr


def write_experiment_report(result: Any, out_dir: str | Path, leaderboard_md: str | None = None) -> Path:
    """Figures (PNG) and ``report.md`` for one :class:`~neuroinspect.harness.experiment.ExperimentResult`."""
    out = Path(out_dir)
    fig_dir = out / "figures"
    cfg = result.config
    c = result.class_idx
    cname = result.class_names[c]
    before = result.before
    lines: list[str] = [f"# neuroinspect report: {cfg.name}", ""]
    lines.append(
        f"Dataset `{cfg.dataset}` {json_params(cfg.dataset_params)}, model `{cfg.model}`, seed {result.seed}. "
        f"The class debugged is **{c} ({cname})**{' (the worst class on the validation split)' if cfg.class_idx is None else ''}."
    )
    lines.append("")
    ts = result.train_summary
    if ts.get("trained"):
        bm = ts.get("best_metrics") or {}
        lines.append(
            f"Training: preset `{ts.get('preset')}`, {ts['train_config'].get('epochs')} epochs on {ts.get('n_train')} images, "
            f"best epoch {ts.get('best_epoch')} (validation accuracy {pct(bm.get('val_acc'))}%), {ts.get('wall_seconds')} s."
        )
        lines.append("")

    # -- the model before editing --
    lines += ["## The model before editing", ""]
    rows = [
        [k.replace("_", " "), _acc_cell(before, k)]
        for k in ("test_acc", "class_acc", "worst_class_acc", "worst_group_acc", "mean_acc_train_weighted")
    ]
    lines += [markdown_table(["test metric (%)", "value [95% bootstrap CI]"], rows), ""]
    if result.group_names and before.get("group_acc") is not None:
        grows = [[i, name, pct(before["group_acc"][i])] for i, name in enumerate(result.group_names)]
        lines += [markdown_table(["group", "name", "test accuracy (%)"], grows), ""]

    # -- mistakes --
    if result.mistakes:
        ds = result.datasets.get(cfg.finder_split)
        if ds is not None:
            shown = result.mistakes[:12]
            imgs = [_to_uint8(ds.load_image(m["index"])) for m in shown]
            caps = [
                f"pred: {result.class_names[m['pred']]}"
                + (f"\n{ds.group_names[ds.samples[m['index']].group]}" if ds.group_names else "")
                for m in shown
            ]
            plot_image_grid(
                imgs,
                caps,
                fig_dir / "mistakes.png",
                title=f"Mistakes of class {cname} ({cfg.finder_split} split)",
            )
            lines += [
                f"## Mistakes of class {cname}",
                "",
                f"{len(result.mistakes)} {cfg.finder_split} images of class {cname} are misclassified; the first {len(shown)}:",
                "",
                "![mistakes](figures/mistakes.png)",
                "",
            ]

    # -- finders --
    lines += ["## Which neurons are behind the mistakes", ""]
    for name, fres in result.finder_results.items():
        counts = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in fres.counts.items() if v is not None)
        lines.append(f"**{name}** ({counts})")
        lines.append("")
        frows = []
        for i in range(5):
            ins = fres.insufficient[i] if i < len(fres.insufficient) else None
            exc = fres.excessive[i] if i < len(fres.excessive) else None
            frows.append(
                [
                    i + 1,
                    "–"
                    if ins is None
                    else f"{ins['neuron']} ({fres.score_name} {_num(ins.get('prec5'))}, imp {_num(ins.get('imp'), 4)})",
                    "–"
                    if exc is None
                    else f"{exc['neuron']} ({fres.score_name} {_num(exc.get('prec5'))}, imp {_num(exc.get('imp'), 4)})",
                ]
            )
        lines += [
            markdown_table(
                ["rank", "insufficient (class lacks it)", "excessive (pushes to another class)"], frows
            ),
            "",
        ]
    lines.append(
        f"Neurons edited (the first {cfg.num_neurons} of `{cfg.finder}`'s {cfg.neuron_list} list): "
        f"**{', '.join(map(str, result.neurons))}**; γ = {result.gamma:.4f}."
    )
    lines.append("")

    # -- ground truth --
    if result.truth is not None and result.recovery:
        ks = [str(k) for k in cfg.recovery_k]
        rrows = []
        for name, m in result.recovery.items():
            rrows.append(
                [name, *[pct(m["precision_at_k"].get(k)) for k in ks], pct(m.get("chance_precision"))]
            )
        counts = result.truth.counts()
        lines += [
            "## Ground truth: do the finders recover the responsible neurons?",
            "",
            f"Every neuron's response to the spurious attribute and to the core object was measured on counterfactual renderings "
            f"({len(result.truth.indices)} test samples × every core value × every spurious value): "
            f"{counts['spurious']} spurious, {counts['core']} core, {counts['mixed']} mixed, {counts['dead']} dead neurons. "
            "Precision@k counts a finder's top-k neurons that are spurious *and* move class "
            f"{cname}'s margin (see `neuroinspect.methods.groundtruth_scoring`).",
            "",
            markdown_table(["finder", *[f"precision@{k} (%)" for k in ks], "chance (%)"], rrows),
            "",
        ]
        w = result.surface.decision.weight.detach().cpu().numpy()[c]
        picks = {name: fres.ranking()[:5] for name, fres in result.finder_results.items()}
        plot_neuron_truth(
            np.asarray(result.truth.spurious_ratio), w, picks, fig_dir / "neuron_truth.png", class_name=cname
        )
        lines += ["![neuron ground truth](figures/neuron_truth.png)", ""]

    # -- editors --
    if result.edits:
        lines += [
            "## Editing the decision layer",
            "",
            f"Test accuracy (%) before → after, with the change in points. Class = {cname}.",
            "",
        ]
        keys = ("test_acc", "class_acc", "worst_class_acc", "worst_group_acc", "mean_acc_train_weighted")
        erows = [["original", *[pct(before.get(k)) for k in keys], "–"]]
        for name, e in result.edits.items():
            a = e["after"]
            uses = e["result"].get("uses_group_labels")
            erows.append(
                [
                    name + (" †" if uses else ""),
                    *[f"{pct(a.get(k))} ({_delta(before, a, k)})" for k in keys],
                    ", ".join(map(str, e["result"]["neurons"])) or "–",
                ]
            )
        lines += [
            markdown_table(
                ["editor", "test", "class", "worst class", "worst group", "train-weighted", "neurons"], erows
            ),
            "",
        ]
        lines.append("† uses group labels of the validation split (an upper reference, not a peer).")
        for name, why in result.skipped.items():
            lines.append(f"- `{name}` skipped: {why}.")
        lines.append("")
        if result.group_names and before.get("group_acc") is not None:
            plot_group_accuracy(
                before["group_acc"],
                {n: e["after"]["group_acc"] for n, e in result.edits.items()},
                result.group_names,
                fig_dir / "group_accuracy.png",
            )
            lines += ["![per-group accuracy](figures/group_accuracy.png)", ""]

    if leaderboard_md:
        lines += ["## Leaderboard (this run)", "", leaderboard_md.strip(), ""]
    lines += [
        "## Time",
        "",
        markdown_table(["stage", "seconds"], [[k, f"{v:.1f}"] for k, v in result.timings.items()]),
        "",
    ]
    lines += [
        "Files: `results.jsonl` (result records), `debug.json` (finder outputs), `summary.json`, `model/best.pt`, `edited/neuroinspect.pt`.",
        "",
    ]
    path = out / "report.md"
    from neuroinspect.fileio import atomic_write_text

    return atomic_write_text(path, "\n".join(lines))


def _num(x: Any, digits: int = 2) -> str:
    if x is None:
        return "–"
    return f"{float(x):.{digits}f}"


def json_params(params: Mapping[str, Any]) -> str:
    return "(" + ", ".join(f"{k}={v}" for k, v in params.items()) + ")" if params else "(default parameters)"
