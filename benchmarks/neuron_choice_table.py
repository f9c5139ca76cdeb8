"""Does the neuron choice matter? The table of issue 10, from result records.

Reads the records that ``neuroinspect bench run configs/neuron-choice-*.toml --seeds 0,1,2`` writes
(committed under ``leaderboards/measured/``) and prints, per dataset, mean ± std over seeds:

1. **Finders per list**: P@5 and margin share of each finder's ``insufficient`` and ``excessive``
   lists against that list's causal truth on the mistakes, with chance rates.
2. **Edited sets**: per (finder, selector) and per control, the share of the edited neurons that are
   causal, their margin share and the core neurons let through.
3. **Edits**: WGA and test accuracy after each editor (surgical, neuroinspect at each λ3, fc, dfr)
   for oracle, random and every (finder, selector), with Δ against ``fc``; then the verdict the issue
   asks for: does an automatic pipeline beat ``fc`` and random neurons under the same editor with
   non-overlapping 95% t-intervals, close at least half the random → oracle gap, and come within 5
   points of ``dfr``?

    python benchmarks/neuron_choice_table.py leaderboards/measured/neuron-choice-*.jsonl [--out FILE.md]
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from neuroinspect.harness.records import read_records

#: selectors that read the benchmark's attribute annotation (through a classifier or a synthetic CLIP
#: trained on attribute captions): automatic, but not label-free in the strict sense
ATTRIBUTE_AWARE = {"concept": "‡", "clip": "§"}
CONTROLS = ("oracle-neurons", "random-neurons")


def t95(n: int) -> float:
    """Two-sided 97.5% quantile of Student's t with n − 1 degrees of freedom (n ≥ 2)."""
    from scipy import stats

    return float(stats.t.ppf(0.975, n - 1)) if n >= 2 else math.inf


class Stat:
    """Mean, sample std and 95% t half-width of some values (in percentage points when ``scale`` = 100)."""

    def __init__(self, values: Iterable[float], scale: float = 100.0) -> None:
        self.values = [float(v) * scale for v in values if v is not None]
        self.n = len(self.values)
        self.mean = float(np.mean(self.values)) if self.values else math.nan
        self.std = float(np.std(self.values, ddof=1)) if self.n >= 2 else 0.0
        self.half = t95(self.n) * self.std / math.sqrt(self.n) if self.n >= 2 else math.inf

    @property
    def lo(self) -> float:
        return self.mean - self.half

    @property
    def hi(self) -> float:
        return self.mean + self.half

    def __str__(self) -> str:
        if not self.values:
            return "–"
        return f"{self.mean:.1f} ± {self.std:.1f}"


def _variant(rec: dict[str, Any]) -> str:
    editor = rec["method"]["editor"]
    cfg = rec["config"]
    if editor == "neuroinspect":
        return f"neuroinspect λ3={cfg.get('lambda3'):g}"
    return editor


def _source(rec: dict[str, Any]) -> str:
    m = rec["method"]
    if m.get("finder") in CONTROLS or "selector" not in m:
        return m.get("finder", "none")
    return f"{m['finder']} + {m['selector']}"


def _mark(source: str) -> str:
    for sel, mark in ATTRIBUTE_AWARE.items():
        if source.endswith(f"+ {sel}"):
            return f"{source} {mark}"
    return source


def recovery_tables(records: Sequence[dict[str, Any]], k: int) -> list[str]:
    lines: list[str] = []
    per_list: dict[tuple[str, str], dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
    edited: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
    seen: set[tuple[str, str, str, int]] = set()
    for r in records:
        if r["task"] != "neuron_recovery" or "list" not in r["config"]:
            continue
        m = r["metrics"]
        if r["config"]["list"] in ("insufficient", "excessive"):
            # a finder's lists do not depend on k: two runs (k = 5 and k = 50) of one seed count once
            once = (
                r["method"]["finder"],
                str(r["config"].get("variant")),
                r["config"]["list"],
                int(r["seed"]),
            )
            if once in seen:
                continue
            seen.add(once)
            cell = per_list[(r["method"]["finder"], r["config"]["list"])]
            cell["p"].append(m["precision_at_k"].get("5"))
            cell["share"].append(m["margin_share_at_k"].get("5"))
            cell["chance"].append(m["chance_precision"])
            cell["chance_share"].append(m["chance_margin_share_at_k"].get("5"))
        elif r["config"]["list"] == "edited" and int(r["config"].get("k", -1)) == k:
            cell = edited[_source(r)]
            cell["p"].append(m["precision_at_k"].get(str(k)))
            cell["share"].append(m["margin_share_at_k"].get(str(k)))
            cell["n"].append(m.get("n_selected"))
            cell["core"].append(m.get("core_let_through"))
            cell["chance"].append(m["chance_precision"])
    if per_list:
        finders = sorted({f for f, _ in per_list})
        rows = []
        for f in finders:
            row = [f]
            for which in ("insufficient", "excessive"):
                c = per_list.get((f, which))
                if c is None:
                    row += ["–", "–"]
                    continue
                row.append(f"{Stat(c['p'])} ({Stat(c['chance']).mean:.0f})")
                row.append(f"{Stat(c['share'])} ({Stat(c['chance_share']).mean:.1f})")
            rows.append(row)
        lines += [
            "P@5 and margin share (%) of each finder's lists against the causal truth of that list (chance in brackets):",
            "",
            _md(
                ["finder", "insufficient P@5", "insufficient share@5", "excessive P@5", "excessive share@5"],
                rows,
            ),
            "",
        ]
    if edited:
        rows = []
        for src in _order(edited):
            c = edited[src]
            rows.append(
                [
                    _mark(src),
                    f"{Stat(c['n'], 1).mean:.1f}",
                    f"{Stat(c['p'])}",
                    f"{Stat(c['share'])}",
                    f"{Stat(c['core'], 1).mean:.1f}" if any(v is not None for v in c["core"]) else "–",
                ]
            )
        chance = Stat(next(iter(edited.values()))["chance"]).mean
        lines += [
            f"The sets actually edited (k = {k}): neurons edited, causal share (%, chance ≈ {chance:.0f}), margin "
            "share (%), core neurons (attribute-ratio label) let through, mean over seeds:",
            "",
            _md(["neuron set", "edited", "causal %", "margin share %", "core let through"], rows),
            "",
        ]
    return lines


def _order(keys: Iterable[str]) -> list[str]:
    keys = list(keys)
    ctl = [c for c in CONTROLS if c in keys]
    return ctl + sorted(k for k in keys if k not in CONTROLS)


def edit_tables(records: Sequence[dict[str, Any]], k: int) -> tuple[list[str], list[str]]:
    """The editors table and the verdict lines."""
    cells: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    single: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    before: dict[str, list[float]] = defaultdict(list)
    seeds_seen = set()
    for r in records:
        if r["task"] != "mitigation":
            continue
        a, b = r["metrics"]["after"], r["metrics"]["before"]
        var = _variant(r)
        if r["config"].get("source") is None:  # editors without neurons (fc, dfr, ...)
            if r["seed"] not in seeds_seen and var == "fc":
                before["wga"].append(b["worst_group_acc"])
                before["acc"].append(b["test_acc"])
                seeds_seen.add(r["seed"])
            if (
                r["seed"] in single[var]["seed"]
            ):  # the same edit in a second run (k = 5 and k = 50) counts once
                continue
            single[var]["wga"].append(a["worst_group_acc"])
            single[var]["acc"].append(a["test_acc"])
            single[var]["seed"].append(r["seed"])
            continue
        if int(r["config"].get("k") or -1) != k:
            continue
        cell = cells[(_source(r), var)]
        cell["wga"].append(a["worst_group_acc"])
        cell["acc"].append(a["test_acc"])
        cell["seed"].append(r["seed"])
    if not cells:
        return [], []
    fc = single.get("fc")
    fc_by_seed = dict(zip(fc["seed"], fc["wga"], strict=True)) if fc else {}
    variants = sorted({v for _, v in cells}, key=lambda v: (v != "surgical", v))
    sources = _order({s for s, _ in cells})
    rows = []
    for src in sources:
        row = [_mark(src)]
        for var in variants:
            c = cells.get((src, var))
            if c is None:
                row.append("–")
                continue
            d = [w - fc_by_seed[s] for w, s in zip(c["wga"], c["seed"], strict=True) if s in fc_by_seed]
            row.append(
                f"{Stat(c['wga'])} / {Stat(c['acc'])} (Δfc {Stat(d).mean:+.1f})"
                if d
                else f"{Stat(c['wga'])} / {Stat(c['acc'])}"
            )
        rows.append(row)
    lines = [
        f"WGA / test accuracy (%) after the edit, k = {k} neurons, mean ± std over seeds; Δfc = paired mean difference "
        "in WGA against `fc` (plain last-layer retraining):",
        "",
        _md(["neuron set", *variants], rows),
        "",
    ]
    ref_rows = [["original", f"{Stat(before['wga'])} / {Stat(before['acc'])}"]]
    for var in sorted(single):
        ref_rows.append(
            [var + (" †" if var == "dfr" else ""), f"{Stat(single[var]['wga'])} / {Stat(single[var]['acc'])}"]
        )
    lines += [_md(["reference (no neuron choice)", "WGA / test acc"], ref_rows), ""]

    # -- the verdict --
    verdict: list[str] = []
    dfr = Stat(single["dfr"]["wga"]) if "dfr" in single else None
    fc_s = Stat(fc["wga"]) if fc else None
    for var in variants:
        oracle = cells.get(("oracle-neurons", var))
        rnd = cells.get(("random-neurons", var))
        if oracle is None or rnd is None:
            continue
        o, r_ = Stat(oracle["wga"]), Stat(rnd["wga"])
        matters = o.lo > r_.hi
        verdict.append(
            f"- **{var}**: oracle {o} vs random {r_} WGA (95% t-intervals ±{o.half:.1f} / ±{r_.half:.1f}) — "
            + (
                "one seed: no interval, so no verdict on overlap."
                if min(o.n, r_.n) < 2
                else "the choice matters for the oracle (intervals apart)."
                if matters
                else "the intervals overlap: under this editor the choice does not clearly matter, even for the oracle."
            )
        )
        best = None
        for src in sources:
            if src in CONTROLS:
                continue
            c = cells.get((src, var))
            if c is None:
                continue
            s = Stat(c["wga"])
            if best is None or s.mean > best[1].mean:
                best = (src, s)
        if best is None:
            continue
        src, s = best
        c = cells[(src, var)]
        paired = Stat(
            [w - fc_by_seed[sd] for w, sd in zip(c["wga"], c["seed"], strict=True) if sd in fc_by_seed]
        )
        rnd_by_seed = dict(zip(rnd["seed"], rnd["wga"], strict=True))
        paired_rnd = Stat(
            [w - rnd_by_seed[sd] for w, sd in zip(c["wga"], c["seed"], strict=True) if sd in rnd_by_seed]
        )
        gap = o.mean - r_.mean
        closed = (
            f"closes {100 * (s.mean - r_.mean) / gap:.0f}% of the random → oracle gap"
            + (" (beyond the oracle)" if s.mean > o.mean else "")
            if gap > 1e-9
            else "no random → oracle gap to close (the oracle is not ahead)"
        )
        beats_fc = fc_s is not None and s.lo > fc_s.hi
        beats_rnd = s.lo > r_.hi
        near_dfr = dfr is not None and s.mean >= dfr.mean - 5.0
        verdict.append(
            f"  best pipeline `{_mark(src)}`: {s} — beats fc ({fc_s}) with 95% intervals apart: "
            f"{'yes' if beats_fc else 'no'}; beats random neurons: {'yes' if beats_rnd else 'no'}; {closed}; "
            f"within 5 points of dfr ({dfr}): {'yes' if near_dfr else 'no'}. Paired per seed: "
            f"{paired.mean:+.1f} [{paired.lo:+.1f}, {paired.hi:+.1f}] against fc, "
            f"{paired_rnd.mean:+.1f} [{paired_rnd.lo:+.1f}, {paired_rnd.hi:+.1f}] against random neurons (95% t)."
        )
    return lines, verdict


def _md(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def build(paths: Sequence[str | Path]) -> str:
    """The Markdown of every table and verdict, one section per dataset."""
    records = [r for p in paths for r in read_records(p)]
    by_ds: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_ds[r["dataset"]].append(r)
    out: list[str] = []
    # spurious-shapes first: the dfr goal is stated on it
    for ds, recs in sorted(by_ds.items(), key=lambda kv: (kv[0] != "spurious-shapes", kv[0])):
        seeds = sorted({r["seed"] for r in recs})
        ks = sorted({int(r["config"]["k"]) for r in recs if r["config"].get("k") is not None})
        out += [f"#### {ds} (seeds {', '.join(map(str, seeds))})", ""]
        for i, k in enumerate(ks):
            # the per-list finder scores do not depend on k: print them once per dataset
            out += recovery_tables(
                recs if i == 0 else [r for r in recs if r["config"].get("list") == "edited"], k
            )
            table, verdict = edit_tables(recs, k)
            out += table
            if verdict:
                out += [f"Verdict, k = {k}:", "", *verdict, ""]
    out += [
        "† uses group labels. ‡ `concept` reads the benchmark's attribute classifiers and § `clip` a synthetic CLIP "
        "trained on the benchmark's attribute captions: automatic, but they know the attribute names.",
    ]
    return "\n".join(out)


SMOKE = """
[experiment]
name = "neuron-choice-smoke"
dataset = "spurious-shapes"
dataset_params = {{ n_train = 48, n_val = 24, n_test = 24 }}
model = "resnet18"
image_size = 32
train = {{ epochs = 1, batch_size = 32 }}
finders = ["margin-deficit", "random"]
selectors = ["top"]
num_neurons = 3
neuron_list = "both"
editors = ["surgical", "neuroinspect", "fc", "dfr"]
editor_settings = {{ neuroinspect = {{ epochs = 2 }}, fc = {{ epochs = 2 }}, dfr = {{ c_grid = [1.0], num_retrains = 1 }} }}
truth_samples = 8
n_boot = 20
"""


def smoke(work: Path) -> list[Path]:
    """One tiny seed through the real experiment runner (1-epoch model at 32 px), for ``--smoke``."""
    from neuroinspect.harness.config import ExperimentConfig
    from neuroinspect.harness.experiment import run_experiment

    work.mkdir(parents=True, exist_ok=True)
    cfg_path = work / "smoke.toml"
    cfg_path.write_text(SMOKE.format(), encoding="utf-8")
    cfg = ExperimentConfig.from_toml(cfg_path)
    run_experiment(cfg, 0, work / "seed-0", show_progress=False, log=lambda m: None)
    return [work / "seed-0" / "results.jsonl"]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("records", nargs="*", help="results.jsonl files (bench run output)")
    p.add_argument("--out", default=None, help="also write the Markdown here")
    p.add_argument(
        "--smoke", action="store_true", help="one tiny seed through the real runner, then its table"
    )
    p.add_argument("--work", default=None, help="--smoke: working folder (default: a temporary one)")
    args = p.parse_args(argv)
    if args.smoke:
        import tempfile

        work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="neuron-choice-smoke-"))
        args.records = smoke(work)
    elif not args.records:
        p.error("give the results.jsonl files to read (or --smoke)")
    text = build(args.records)
    print(text)
    n = text.count("best pipeline")
    print(f"verdicts: {n}")
    if args.out:
        from neuroinspect.fileio import atomic_write_text

        atomic_write_text(args.out, text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
