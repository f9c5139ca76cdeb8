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


# -- the neuron choice: causal truth, selection, edited neurons, edit grid ------------------------------

SCORE_MEANINGS = {
    "Prec@5": (
        "Prec@5 (counterfactual) = the share of the class's corrected mistakes whose counterfactual shift has the "
        "neuron among its 5 largest increases (insufficient list) or decreases (excessive list); it is not a precision "
        "against any ground truth."
    ),
    "margin deficit": (
        "margin deficit = the neuron's share (logits) of the margin gap between the class's correct samples and its "
        "mistakes, d·(mean correct feature − mistake feature)."
    ),
}


def finder_score_notes(result: Any) -> list[str]:
    """What each finder's printed score means, and the two-class notice."""
    names = {getattr(f, "score_name", "") for f in result.finder_results.values()}
    lines = [SCORE_MEANINGS[n] for n in ("Prec@5", "margin deficit") if n in names]
    others = sorted(n for n in names if n not in SCORE_MEANINGS)
    if others:
        lines.append("The baselines print their own scores (" + ", ".join(f"`{n}`" for n in others) + ").")
    if len(result.class_names) == 2 and any(
        getattr(f, "method", "") == "counterfactual" for f in result.finder_results.values()
    ):
        lines.append(
            "**Two classes:** every mistake's counterfactual shift is parallel to W[c] − W[k], so the counterfactual's "
            "lists rank decision weights, not what the mistakes look like (the `margin-deficit` finder is activation-aware)."
        )
    return [" ".join(lines), ""] if lines else []


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
            else f"finder `{main.finder}` ({cfg.neuron_list} list) → selector `{main.selector}`"
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
                title=f"Edited neurons of class {cname}: one {viz0.method} image each",
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


def _num(x: Any, digits: int = 2) -> str:
    if x is None:
        return "–"
    return f"{float(x):.{digits}f}"


def json_params(params: Mapping[str, Any]) -> str:
    return "(" + ", ".join(f"{k}={v}" for k, v in params.items()) + ")" if params else "(default parameters)"
