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
    # room for a readable value on every bar: about a third of an inch per bar
    fig, ax = plt.subplots(figsize=(max(6.0, 0.34 * n_groups * n_series + 1.5), 4.2))
    cmap = plt.get_cmap("tab10")
    for i, (label, values) in enumerate(series.items()):
        vals = [np.nan if v is None else 100 * v for v in values]
        xs = np.arange(n_groups) + (i - (n_series - 1) / 2) * width
        bars = ax.bar(
            xs, vals, width=width, label=label, color="0.35" if label == "original" else cmap(i % 10)
        )
        ax.bar_label(bars, labels=["" if np.isnan(v) else f"{v:.0f}" for v in vals], fontsize=7, padding=1)
    ax.set_xticks(np.arange(n_groups))
    ax.set_xticklabels(group_names, rotation=20 if max(len(g) for g in group_names) > 12 else 0, ha="center")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 108)
    ax.set_yticks(range(0, 101, 20))
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
    from PIL import Image, ImageDraw

    font, title_font = _font(13), _font(17)
    n = max(1, len(images))
    ncols = min(ncols, n)
    nrows = (n + ncols - 1) // ncols
    line_h, pad = 16, 8
    cap_lines = max([len(c.splitlines()) for c in captions] or [1])
    cap_h = cap_lines * line_h + 4
    title_lines = title.splitlines() if title else []
    top = 24 * len(title_lines) + 6 if title else 0
    sheet = Image.new("RGB", (ncols * (cell + pad) + pad, top + nrows * (cell + cap_h + pad) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for j, line in enumerate(title_lines):
        draw.text((pad, 6 + 24 * j), line, fill="black", font=title_font if j == 0 else font)
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


def _font(size: int) -> Any:
    """Pillow's built-in font at ``size`` px (a scalable one since Pillow 10.1; the small bitmap before)."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - Pillow < 10.1
        return ImageFont.load_default()


def plot_neuron_truth(
    spurious_ratio: np.ndarray,
    weight: np.ndarray,
    highlighted: Mapping[str, Sequence[int]],
    path: str | Path,
    class_name: str = "c",
    ratio_thresholds: tuple[float, float] = (1.0 / 3.0, 2.0 / 3.0),
) -> Path:
    """Scatter of every neuron: ground-truth spurious ratio (x) against its decision weight for class c (y);
    the given neuron sets are highlighted; dashed lines at the core / spurious label thresholds."""
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
    for x in ratio_thresholds:
        ax.axvline(x, color="0.5", lw=0.8, ls="--")
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
    lines += plain_summary(result)
    ts = result.train_summary
    if ts.get("trained"):
        bm = ts.get("best_metrics") or {}
        lines.append(
            f"Training: preset `{ts.get('preset')}` ({ts['train_config'].get('description')}), "
            f"{ts.get('n_train')} images; the best epoch was {ts.get('best_epoch')} of {ts['train_config'].get('epochs')} "
            f"(validation accuracy {pct(bm.get('val_acc'))}%); {result.timings.get('train', 0.0):.0f} s."
        )
        lines.append("")
    elif ts.get("checkpoint"):
        lines += [f"Model: the checkpoint `{ts['checkpoint']}` (not trained in this run).", ""]

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
                f"called {result.class_names[m['pred']]}"
                + (f"\n{ds.group_names[ds.samples[m['index']].group]}" if ds.group_names else "")
                for m in shown
            ]
            split_name = "validation" if cfg.finder_split == "val" else cfg.finder_split
            plot_image_grid(
                imgs,
                caps,
                fig_dir / "mistakes.png",
                title=f"{cname} images the model gets wrong ({split_name} split, {len(shown)} of {len(result.mistakes)})\n"
                "under each: the class it predicted" + (" and the image's group" if ds.group_names else ""),
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
    lines += [
        "## Which neurons are behind the mistakes",
        "",
        f"Each finder ranks the neurons (inputs of the decision layer) behind the mistakes of {cname}, in two "
        f"lists: *insufficient* (raising the neuron would help {cname}: the mistaken images lack it) and "
        "*excessive* (lowering it would help: it pushes them towards another class). "
        f"**imp** is the knock-out ratio p / p₋ₙ of {cname}'s probability on the class's mean feature with the neuron "
        "and with it set to zero (imp 1.10: the probability is 10% lower without the neuron; below 1: the neuron "
        "works against the class).",
        "",
    ]
    for name, fres in result.finder_results.items():
        counts = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in fres.counts.items() if v is not None)
        lines.append(f"**{name}** ({counts}). Score: {_score_definition(name, fres)}")
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
                    else f"{ins['neuron']} ({fres.score_name} {_score(fres, ins)}, imp {_num(ins.get('imp'), 4)})",
                    "–"
                    if exc is None
                    else f"{exc['neuron']} ({fres.score_name} {_score(fres, exc)}, imp {_num(exc.get('imp'), 4)})",
                ]
            )
        lines += [
            markdown_table(
                ["rank", "insufficient (class lacks it)", "excessive (pushes to another class)"], frows
            ),
            "",
        ]
        for which in ("insufficient", "excessive"):
            if not getattr(fres, which):
                lines += [f"The {which} list of `{name}` is empty: {fres.empty_reason(which)}", ""]
    lines += finder_score_notes(result)

    # -- ground truth, the selection step and the edited neurons (harness.choice) --
    lines += choice_sections(result, fig_dir)

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
        lines += edit_grid_section(result)
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

    board = compact_leaderboard(result)
    if board:
        lines += ["## Leaderboard (this run)", "", *board, ""]
    lines += [
        "## Time",
        "",
        markdown_table(["stage", "seconds"], [[k, f"{v:.1f}"] for k, v in result.timings.items()]),
        "",
    ]
    files = ["`results.jsonl` (result records)", "`debug.json` (finder outputs)", "`summary.json`"]
    if ts.get("trained"):
        files.append("`model/best.pt` and `model/train_log.json` (the trained model)")
    if "neuroinspect" in result.edits:
        files.append("`edited/neuroinspect.pt` (the edited model)")
    if leaderboard_md:
        files.append("`leaderboard.md` / `leaderboard.csv` (every metric, with intervals)")
    lines += ["Files: " + ", ".join(files) + ".", ""]
    path = out / "report.md"
    from neuroinspect.fileio import atomic_write_text

    return atomic_write_text(path, "\n".join(lines))


# -- the neuron choice: causal truth, selection, edited neurons, edit grid ------------------------------


def finder_score_notes(result: Any) -> list[str]:
    """The two-class notice under the finders' lists (each finder's score is defined above its list)."""
    if len(result.class_names) == 2 and any(
        getattr(f, "method", "") == "counterfactual" for f in result.finder_results.values()
    ):
        return [
            "**Two classes:** every mistake's counterfactual shift is parallel to W[c] − W[k], so the counterfactual's "
            "lists rank decision weights, not what the mistakes look like (the `margin-deficit` finder is "
            "activation-aware), and its Prec@5 is a vote count, not a precision against any ground truth.",
            "",
        ]
    return []


def plot_causal_truth(
    spurious_ratio: np.ndarray,
    effect: np.ndarray,
    marked: Mapping[str, Sequence[int]],
    path: str | Path,
    *,
    ratio_thresholds: tuple[float, float] = (1.0 / 3.0, 2.0 / 3.0),
    causal_cutoff: float | None = None,
    class_name: str = "c",
) -> Path:
    """Every neuron: attribute-ratio ground truth (x, with the core / spurious label thresholds the labels
    use) against its causal margin effect E_n on the class's mistakes (y, with the causal cutoff); the
    ``marked`` sets (e.g. the edited neurons, the oracle's) are circled."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.scatter(spurious_ratio, effect, s=6, c="0.7", label="all neurons")
    markers = ["o", "s", "^", "D", "v", "P"]
    cmap = plt.get_cmap("tab10")
    for i, (label, idx) in enumerate(marked.items()):
        idx = [int(n) for n in idx]
        if idx:
            ax.scatter(
                spurious_ratio[idx],
                effect[idx],
                s=46 if i == 0 else 30,
                marker=markers[i % len(markers)],
                facecolors="none",
                edgecolors=cmap(i),
                linewidths=1.6 if i == 0 else 1.0,
                label=label,
            )
    lo, hi = ratio_thresholds
    ax.axvline(lo, color="0.5", lw=0.8, ls="--")
    ax.axvline(hi, color="0.5", lw=0.8, ls="--")
    ymax = float(np.max(effect)) if len(effect) else 1.0
    ax.text(lo, ymax, " core ≤", fontsize=7, ha="right", va="top", color="0.4")
    ax.text(hi, ymax, " ≥ spurious", fontsize=7, ha="left", va="top", color="0.4")
    if causal_cutoff is not None:
        ax.axhline(
            causal_cutoff, color="tab:red", lw=0.8, ls=":", label=f"causal cutoff ({causal_cutoff:.3g})"
        )
    ax.axhline(0.0, color="0.6", lw=0.6)
    ax.set_xlabel("attribute ratio: spurious effect / (spurious + core)  (labels at the dashed lines)")
    ax.set_ylabel(f"E_n: margin gain on {class_name}'s mistakes (logits)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _first_image(viz: Any) -> np.ndarray:
    img = viz.images[0].detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy()
    return (img * 255).astype(np.uint8)


def choice_sections(result: Any, fig_dir: Path) -> list[str]:
    """The causal truth, the per-list scores, the neuron sets and the edited neurons (Markdown lines)."""
    cfg = result.config
    c = result.class_idx
    cname = result.class_names[c]
    lines: list[str] = []
    main = result.sets.get(result.main_set) if result.sets else None
    if main is not None:
        how = (
            "the neurons given in the config"
            if result.main_set == "manual"
            else f"finder `{main.finder}` ({_list_words(cfg.neuron_list)}) → selector `{main.selector}`"
        )
        lines.append(
            f"Neurons edited ({how}): **{', '.join(map(str, result.neurons)) or 'none'}**; γ = {result.gamma:.4f}."
        )
        lines.append("")
    eff, ct = result.effects, result.causal
    if eff is None or ct is None:
        return lines
    counts = ct.counts()
    attr = result.truth.counts() if result.truth is not None else {}
    lines += [
        "## Ground truth: which neurons cause the mistakes?",
        "",
        f"Each of the {eff.num_mistakes} mistakes of class {cname} was re-rendered with the other value(s) of the "
        f"spurious attribute (nothing else changed): the model then gets {100 * eff.flip_rate:.0f}% of them right "
        f"(margin {eff.margin_before.mean():+.2f} → {eff.margin_after.mean():+.2f} logits). A neuron's causal effect "
        "E_n = (W[c] − W[k])_n · (its activation on the re-render − on the mistake), averaged over the mistakes, is "
        "its share of that margin gain. Causal = E_n ≥ "
        f"{ct.threshold:g} × the largest E_n: {counts['insufficient']} insufficient (the re-render raises them), "
        f"{counts['excessive']} excessive (it lowers them). P@5 below counts a list's top 5 that are causal *in that "
        "list's direction* (chance = their share of the neurons); margin share = Σ E of the top 5 / Σ of the positive E. "
        f"Attribute-ratio labels (descriptive only): {attr.get('spurious', 0)} spurious, {attr.get('core', 0)} core, "
        f"{attr.get('mixed', 0)} mixed, {attr.get('dead', 0)} dead.",
        "",
    ]
    rows = []
    for name in result.finder_results:
        rec = result.recovery.get(name, {})
        cells = [name]
        for which in ("insufficient", "excessive"):
            m = rec.get(which)
            if m is None:
                cells += ["–", "–"]
                continue
            cells.append(f"{pct(m['precision_at_k'].get('5'), 0)} (chance {pct(m['chance_precision'], 0)})")
            cells.append(f"{pct(m['margin_share_at_k'].get('5'))}")
        rows.append(cells)
    lines += [
        markdown_table(
            ["finder", "insufficient P@5 (%)", "margin share (%)", "excessive P@5 (%)", "margin share (%)"],
            rows,
        ),
        "",
    ]
    # -- the neuron sets actually edited --
    srows = []
    for key, ns in result.sets.items():
        m = result.recovery.get(key, {}).get("edited")
        if m is None:
            continue
        k = str(cfg.num_neurons)
        sel = ns.selection
        judged = ""
        if sel is not None and sel.labels:
            cnt = sel.counts()
            judged = f"{cnt['spurious']} / {cnt['core']} / {cnt['unclear']}"
        srows.append(
            [
                f"**{key}**" if key == result.main_set else key,
                ", ".join(map(str, ns.neurons)) or "none",
                pct(m["precision_at_k"].get(k), 0),
                pct(m["margin_share_at_k"].get(k)),
                m.get("core_let_through", "–"),
                judged or "–",
            ]
        )
    lines += [
        f"Neuron sets edited (k = {cfg.num_neurons}; a selector sees the first {cfg.candidate_pool * cfg.num_neurons} "
        "candidates of the finder's list and keeps the ones it calls spurious; chance P = "
        f"{pct(ct.either.mean(), 0)}%):",
        "",
        markdown_table(
            [
                "set",
                "neurons",
                "causal (%)",
                "margin share (%)",
                "core let through",
                "candidates spurious / core / unclear",
            ],
            srows,
        ),
        "",
    ]
    # -- the edited neurons, one by one --
    if result.neurons:
        fres = result.finder_results.get(main.finder) if main is not None else None
        n_ins = int(sum(bool(ct.insufficient[n]) for n in result.neurons))
        n_exc = int(sum(bool(ct.excessive[n]) for n in result.neurons))
        n_causal = n_ins + n_exc
        n_core = sum(
            1 for n in result.neurons if result.truth is not None and result.truth.labels[n] == "core"
        )
        erows, imgs, caps = [], [], []
        for n in result.neurons:
            label = result.truth.labels[n] if result.truth is not None else "–"
            ratio = float(result.truth.spurious_ratio[n]) if result.truth is not None else float("nan")
            causal = (
                "insufficient" if ct.insufficient[n] else ("excessive" if ct.excessive[n] else "not causal")
            )
            sel_label = (
                main.selection.labels.get(n, "–") if main is not None and main.selection is not None else "–"
            )
            erows.append(
                [
                    n,
                    f"{label} ({ratio:.2f})",
                    causal,
                    f"{eff.effect[n]:+.3f}",
                    pct(eff.margin_share([n])),
                    "–" if fres is None else _num(float(fres.scores[n]), 3),
                    sel_label,
                ]
            )
            viz = result.edited_visuals.get(n)
            if viz is not None:
                imgs.append(_first_image(viz))
                caps.append(f"neuron {n}\n{label}, {causal}")
        lines += [
            f"### The edited neurons of class {cname}",
            "",
            markdown_table(
                [
                    "neuron",
                    "attribute label (ratio)",
                    "causal truth",
                    "E_n (logits)",
                    "margin share (%)",
                    "finder score",
                    "selector said",
                ],
                erows,
            ),
            "",
            f"{n_causal} of the {len(result.neurons)} are causal ({n_ins} insufficient, {n_exc} excessive)"
            + (f"; {n_core} are core neurons by the attribute labels" if result.truth is not None else "")
            + f". Together they carry {pct(eff.margin_share(result.neurons))}% of the margin gain (the oracle's "
            f"{cfg.num_neurons}: {pct(eff.margin_share(eff.oracle(cfg.num_neurons)))}%).",
            "",
        ]
        if imgs:
            viz0 = next(iter(result.edited_visuals.values()))
            plot_image_grid(
                imgs,
                caps,
                fig_dir / "edited_neurons.png",
                title=f"Edited neurons of class {cname}: one picture each ({viz0.method})",
                ncols=min(10, len(imgs)),
            )
            lines += ["![edited neurons](figures/edited_neurons.png)", ""]
    if result.truth is not None:
        th = result.truth.thresholds
        marked = {"edited": result.neurons}
        if "oracle-neurons" in result.sets:
            marked["oracle (top k by E_n)"] = result.sets["oracle-neurons"].neurons
        plot_causal_truth(
            np.asarray(result.truth.spurious_ratio),
            np.asarray(eff.effect),
            marked,
            fig_dir / "neuron_truth.png",
            ratio_thresholds=(th.core_max, th.spurious_min),
            causal_cutoff=ct.cutoff,
            class_name=cname,
        )
        lines += ["![neuron ground truth](figures/neuron_truth.png)", ""]
    return lines


def edit_grid_section(result: Any) -> list[str]:
    """Worst-group (else worst-class) test accuracy after every editor on every neuron set, Δ against ``fc``."""
    grid = [e for e in result.grid if e.get("source")]
    if not grid or len(result.sets) < 2:
        return []
    key = "worst_group_acc" if result.before.get("worst_group_acc") is not None else "worst_class_acc"
    fc = next((e for e in result.grid if e["editor"] == "fc"), None)
    fc_v = fc["after"].get(key) if fc is not None else None
    editors = list(dict.fromkeys(e["editor"] for e in grid))
    rows = []
    for skey in result.sets:
        cells = [f"**{skey}**" if skey == result.main_set else skey]
        for ed in editors:
            e = next((x for x in grid if x["editor"] == ed and x["source"] == skey), None)
            v = None if e is None else e["after"].get(key)
            d = "" if v is None or fc_v is None else f" ({100 * (v - fc_v):+.1f})"
            cells.append("–" if v is None else f"{pct(v)}{d}")
        rows.append(cells)
    what = "worst-group" if key == "worst_group_acc" else "worst-class"
    head = f"Every editor on every neuron set: {what} test accuracy (%) after the edit"
    head += f", Δ against `fc` ({pct(fc_v)}) in brackets." if fc_v is not None else "."
    return ["", head, "", markdown_table(["neuron set", *editors], rows), ""]


def _score(fres: Any, row: dict[str, Any]) -> str:
    """A finder row's score: Prec@5 as a percentage, other scores as numbers."""
    if fres.score_name == "Prec@5" and row.get("prec5") is not None:
        return f"{100 * float(row['prec5']):.0f}%"
    return _num(row.get("prec5"))


def _num(x: Any, digits: int = 2) -> str:
    if x is None:
        return "–"
    return f"{float(x):.{digits}f}"


def json_params(params: Mapping[str, Any]) -> str:
    return "(" + ", ".join(f"{k}={v}" for k, v in params.items()) + ")" if params else "(default parameters)"


# -- the plain-language summary that opens the report ---------------------------------------------------
#: The paper's method and the controls it must beat on the same run (same neurons count, same data).
PAPER_EDITOR = "neuroinspect"
CONTROLS = {
    "fc": "`fc` (the same retraining without the neuron term)",
    "random-neurons": "`random-neurons` (the same editor on random neurons)",
}


def _group_facts(result: Any) -> dict[str, Any] | None:
    """For the debugged class c: its groups, each group's attribute value, test accuracy and share of
    class c's training images, and the worst one; ``None`` without group labels."""
    before = result.before
    names = result.group_names
    ds = result.datasets.get("test")
    if not names or before.get("group_acc") is None or ds is None:
        return None
    c = result.class_idx
    label_of = {s.group: s.label for s in ds.samples if s.group is not None and s.group >= 0}
    cname = result.class_names[c]

    def value(g: int) -> str:
        name = names[g]
        for cn in result.class_names:
            if name.startswith(f"{cn}/"):
                return name[len(cn) + 1 :]
        return name

    weights = before.get("train_group_weights")
    groups = [g for g, lab in sorted(label_of.items()) if lab == c and before["group_acc"][g] is not None]
    if not groups:
        return None
    class_w = sum(weights[g] for g in groups) if weights else 0.0
    facts = {
        g: {
            "value": value(g),
            "acc": before["group_acc"][g],
            "n": (before.get("group_n") or [0] * len(names))[g],
            "train_share": (weights[g] / class_w) if weights and class_w > 0 else None,
        }
        for g in groups
    }
    worst = min(groups, key=lambda g: facts[g]["acc"])
    best = max(groups, key=lambda g: facts[g]["acc"])
    # what the worst group's mistakes are called, and how other classes' training images share its value
    val_ds = result.datasets.get(result.config.finder_split)
    called: dict[int, int] = {}
    in_group = 0
    if val_ds is not None:
        for m in result.mistakes:
            if val_ds.samples[m["index"]].group == worst:
                in_group += 1
                called[m["pred"]] = called.get(m["pred"], 0) + 1
    top_pred = max(called, key=lambda k: called[k]) if called else None
    other_share = None
    if top_pred is not None and weights:
        other = [g for g, lab in label_of.items() if lab == top_pred]
        ow = sum(weights[g] for g in other)
        same = [g for g in other if value(g) == facts[worst]["value"]]
        if ow > 0:
            other_share = sum(weights[g] for g in same) / ow
    return {
        "class": cname,
        "groups": facts,
        "worst": worst,
        "best": best,
        "mistakes_in_worst": in_group,
        "mistakes": len(result.mistakes),
        "called": top_pred,
        "called_n": called.get(top_pred, 0) if top_pred is not None else 0,
        "called_share_of_value": other_share,
    }


def _factor_name(result: Any, which: str = "spurious_factor") -> str:
    """The dataset's name for its spurious (or core) attribute: "background", "color"; a generic word else."""
    try:
        from neuroinspect.datasets import get_dataset

        factor = getattr(get_dataset(result.config.dataset), which, None)
    except Exception:  # noqa: BLE001 - an unregistered dataset in a hand-made result
        factor = None
    if factor and factor not in ("spurious", "core"):
        return str(factor)
    return "group attribute" if which == "spurious_factor" else "object itself"


def _list_words(which: str) -> str:
    """``neuron_list`` in words: "its insufficient list", or "both its lists (merged)"."""
    return "both its lists (merged)" if which == "both" else f"its {which} list"


def _lead_editor(result: Any) -> str:
    """The editor of the pipeline: the config's first editor that edits chosen neurons (``neuroinspect``
    in the paper's pipeline, ``surgical`` in the demo's)."""
    for name in result.config.editors:
        if name.split(":", 1)[0] in ("neuroinspect", "surgical"):
            return str(name)
    return PAPER_EDITOR


def _verdict(a: dict[str, Any], b: dict[str, Any], key: str) -> tuple[float, str]:
    """``a`` − ``b`` on ``key`` in points and a word for it, judged against ``a``'s bootstrap interval."""
    diff = 100 * (a[key] - b[key])
    ci = (a.get("ci") or {}).get(key)
    half = 100 * (ci[1] - ci[0]) / 2 if ci else 0.0
    if diff > half > 0 or (half == 0 and diff > 0):
        return diff, "better than"
    if diff < -half < 0 or (half == 0 and diff < 0):
        return diff, "worse than"
    return diff, "no different from"


def plain_summary(result: Any) -> list[str]:
    """The opening of ``report.md`` in plain words: which class and group fail on which attribute
    and what they are mistaken for, what each edit changed, and whether the paper's method did better
    than its controls (``fc``, random neurons) on this run. Markdown lines."""
    c = result.class_idx
    cname = result.class_names[c]
    before = result.before
    lines = ["## In short", ""]
    facts = _group_facts(result)
    where = f"The model gets {pct(before['test_acc'])}% of the test images right. Its weakest class"
    split = "validation" if result.config.finder_split == "val" else result.config.finder_split
    where += f" on the {split} split" if result.config.class_idx is None else " (chosen)"
    where += f" is **{cname}** ({pct(before.get('class_acc'))}% correct on test)"
    if facts is None:
        preds: dict[int, int] = {}
        for m in result.mistakes:
            preds[m["pred"]] = preds.get(m["pred"], 0) + 1
        if preds:
            k = max(preds, key=lambda j: preds[j])
            where += (
                f"; {preds[k]} of its {len(result.mistakes)} {split} mistakes are called "
                f"**{result.class_names[k]}**"
            )
        lines += [f"- {where}.", ""]
    else:
        factor = _factor_name(result)
        w, b = facts["groups"][facts["worst"]], facts["groups"][facts["best"]]
        where += (
            f", and it fails most on **{cname}** images whose {factor} is **{w['value']}**: {pct(w['acc'])}% correct "
            f"(n = {w['n']}), against {pct(b['acc'])}% when it is {b['value']}."
        )
        lines.append(f"- {where}")
        if facts["called"] is not None:
            called = result.class_names[facts["called"]]
            text = (
                f"  {cname} images on {w['value']} are called **{called}**: {facts['called_n']} of the "
                f"{facts['mistakes_in_worst']} {split} mistakes in that group "
                f"({facts['mistakes']} mistakes of {cname} in all)."
            )
            share, other = w["train_share"], facts["called_share_of_value"]
            gap = 100 * (b["acc"] - w["acc"])
            if share is not None and share < 0.5 and gap >= 10:
                text += (
                    f" In training only {100 * share:.0f}% of the {cname} images had {factor} {w['value']}"
                    + (f", while {100 * other:.0f}% of the {called} images did" if other is not None else "")
                    + f": **the model uses the {factor}**, not only the {_factor_name(result, 'core_factor')}."
                )
            elif gap < 10:
                text += f" The {factor} makes little difference ({gap:.0f} points between its values)."
            lines.append(text)
        lines.append("")
    # neurons and finders
    if result.neurons:
        lines.append(
            f"- The edit targets {len(result.neurons)} neurons, chosen by `{result.main_set or result.config.finder}` "
            f"from {_list_words(result.config.neuron_list)} ({', '.join(map(str, result.neurons))}); γ = {result.gamma:.3f}."
        )
    finders = [n for n in result.finder_results if n in result.recovery]
    if finders:
        lists = [w for w in ("insufficient", "excessive") if all(w in result.recovery[n] for n in finders)]
        parts = [
            f"`{n}` "
            + " / ".join(f"{pct(result.recovery[n][w]['precision_at_k'].get('5'), 0)}%" for w in lists)
            for n in finders
        ]
        first = result.recovery[finders[0]]
        chance = " / ".join(f"{pct(first[w].get('chance_precision'), 0)}%" for w in lists)
        lines.append(
            f"- Do the finders point at the neurons behind the mistakes? Precision@5 of each finder's "
            f"{' / '.join(lists)} list against that list's causal truth (re-rendering each mistake with the "
            f"other {_factor_name(result)} and measuring every neuron's part of the margin it gains): "
            f"{', '.join(parts)} (chance {chance})."
        )
    edited = (result.recovery.get(result.main_set) or {}).get("edited")
    if edited is not None and result.neurons:
        p_k = next(iter((edited.get("precision_at_k") or {}).values()), None)
        share = next(iter((edited.get("margin_share_at_k") or {}).values()), None)
        if p_k is not None:
            lines.append(
                f"- Of the edited neurons, {pct(p_k, 0)}% are causal; together they carry "
                f"{pct(share, 0)}% of the margin the re-rendering gains."
            )
    # edits
    key = "worst_group_acc" if before.get("worst_group_acc") is not None else "class_acc"
    label = "worst-group" if key == "worst_group_acc" else f"{cname}"
    if result.edits:
        lines += [
            "",
            f"What each edit changed on the test split ({label} accuracy, then {cname} and overall accuracy, %):",
            "",
        ]
        lead = _lead_editor(result)
        for name, e in result.edits.items():
            a = e["after"]
            tag = (
                " (the paper's method)"
                if name == PAPER_EDITOR
                else (
                    " (the pipeline's editor)"
                    if name == lead
                    else (" (uses group labels)" if e["result"].get("uses_group_labels") else "")
                )
            )
            lines.append(
                f"- `{name}`{tag}: {label} {pct(before.get(key))} → **{pct(a.get(key))}**, "
                f"{cname} {pct(before.get('class_acc'))} → {pct(a.get('class_acc'))}, "
                f"overall {pct(before['test_acc'])} → {pct(a['test_acc'])}."
            )
        for name, why in result.skipped.items():
            lines.append(f"- `{name}` was not run: {why}.")
        ours = result.edits.get(lead)
        controls = {n: result.edits[n] for n in CONTROLS if n in result.edits}
        # the same editor on the random-neurons control set, where the run edited one
        same = next(
            (e for e in result.grid if e.get("editor") == lead and e.get("source") == "random-neurons"), None
        )
        if same is not None:
            controls["random-neurons"] = same
        if ours is not None and controls:
            who = "the paper's method" if lead == PAPER_EDITOR else f"the pipeline (`{lead}`)"
            parts = []
            for n, e in controls.items():
                diff, word = _verdict(ours["after"], e["after"], key)
                what = CONTROLS[n] if n != "random-neurons" or same is None else f"`{lead}` on random neurons"
                if (
                    n == "fc" and lead != PAPER_EDITOR
                ):  # fc is neuroinspect without its neuron term, not e.g. surgical
                    what = "`fc` (plain retraining of the decision layer)"
                parts.append(f"{word} {what} ({diff:+.1f} points)")
            ci = (ours["after"].get("ci") or {}).get(key)
            half = f" ±{100 * (ci[1] - ci[0]) / 2:.1f} points" if ci else ""
            verdict = (
                "**better than both controls**"
                if all(p.startswith("better") for p in parts)
                else "**not better than both controls**"
            )
            lines += [
                "",
                f"Did {who} beat its controls on this run? It was {verdict} on {label} accuracy: "
                + "; ".join(parts)
                + f". A difference counts when it exceeds the 95% bootstrap interval of the method's own"
                f" accuracy ({half.strip() or 'no interval'}); this is one seed, `neuroinspect bench run` repeats it over seeds.",
            ]
    lines.append("")
    return lines


def compact_leaderboard(result: Any) -> list[str]:
    """The run's methods ranked, in a table that fits a page: editors by worst-group (else class)
    accuracy after the edit, finders by precision@5. Every metric is in ``leaderboard.csv``."""
    before = result.before
    key = "worst_group_acc" if before.get("worst_group_acc") is not None else "class_acc"
    cname = result.class_names[result.class_idx]
    out: list[str] = []
    if result.edits:
        ranked = sorted(result.edits.items(), key=lambda kv: -(kv[1]["after"].get(key) or 0.0))
        rows = [
            [
                i,
                f"`{n}`" + (" †" if e["result"].get("uses_group_labels") else ""),
                _acc_cell(e["after"], key),
                pct(e["after"].get("class_acc")),
                pct(e["after"].get("test_acc")),
            ]
            for i, (n, e) in enumerate(ranked, start=1)
        ]
        rows.append(
            [
                "–",
                "original",
                _acc_cell(before, key),
                pct(before.get("class_acc")),
                pct(before.get("test_acc")),
            ]
        )
        head = "worst-group" if key == "worst_group_acc" else cname
        out += [
            markdown_table(
                ["rank", "editor", f"{head} acc (%) [95% CI]", f"{cname} acc (%)", "test acc (%)"], rows
            ),
            "",
        ]
    finders = {n: result.recovery[n] for n in result.finder_results if n in result.recovery}
    if finders:
        # ranked on the list that is edited (the merged choice "both" starts with the insufficient list)
        main_list = "excessive" if result.config.neuron_list == "excessive" else "insufficient"
        other = "excessive" if main_list == "insufficient" else "insufficient"

        def _p(m: Mapping[str, Any], which: str, k: str) -> float | None:
            return (m.get(which) or {}).get("precision_at_k", {}).get(k)

        ranked_f = sorted(finders.items(), key=lambda kv: -(_p(kv[1], main_list, "5") or 0.0))
        rows = [
            [
                i,
                f"`{n}`",
                pct(_p(m, main_list, "5")),
                pct(_p(m, main_list, "10")),
                pct((m.get(main_list) or {}).get("chance_precision")),
                pct(_p(m, other, "5")),
                pct((m.get(other) or {}).get("chance_precision")),
            ]
            for i, (n, m) in enumerate(ranked_f, start=1)
        ]
        out += [
            "Finders, scored per list against the causal truth of that list (precision = share of the list's first "
            "k neurons that are causal in the list's direction):",
            "",
            markdown_table(
                [
                    "rank",
                    "finder",
                    f"{main_list} P@5 (%)",
                    f"{main_list} P@10 (%)",
                    "chance (%)",
                    f"{other} P@5 (%)",
                    "chance (%)",
                ],
                rows,
            ),
            "",
        ]
    if out:
        out.append("† uses group labels. One seed; `leaderboard.csv` has every metric with its interval.")
    return out


def _score_definition(name: str, fres: Any) -> str:
    """What the number beside each neuron means, for each finder."""
    if fres.score_name == "Prec@5":
        return (
            "**Prec@5**, the share of the corrected mistakes whose 5 largest counterfactual shifts include the "
            "neuron (the counterfactual shift: the smallest change of a mistake's features that makes the model right); "
            "a vote count, not a precision against the ground truth (that is scored below)."
        )
    try:
        from neuroinspect.methods.finders import FINDERS

        summary = FINDERS.summary(name)
    except Exception:  # noqa: BLE001 - a finder that is not registered
        summary = ""
    return f"`{fres.score_name}`" + (f", {summary[0].lower()}{summary[1:]}" if summary else ".")
