"""``neuroinspect demo``: the main job, end to end on the bundled benchmark, on CPU, in minutes."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from neuroinspect.commands.common import add_common, add_overwrite, progress_on

EPILOG = """Examples:
  neuroinspect demo --out runs/demo
  neuroinspect demo --out runs/demo-digits --dataset colored-digits --seed 1
  neuroinspect demo --out runs/demo-ref --ref          (the paper's pipeline)

What it does, from nothing: generates the spurious-shapes benchmark (shape = class, background =
spurious attribute), trains a ResNet-18 at 64 px, picks the worst class, ranks the neurons behind its
mistakes with every finder, scores each list against the causal truth on the mistakes, edits the
first 50 neurons of the margin-deficit finder's lists with the surgical editor (the best pipeline of
the README's neuron-choice table; every other finder's neurons and the oracle / random controls
beside it, and every editor), and writes report.md (tables and figures), results.jsonl and a
leaderboard to --out.
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    from neuroinspect.cli import _Formatter

    p = subparsers.add_parser(
        "demo",
        help="end-to-end on the bundled benchmark, on CPU, in minutes",
        description="Run the whole pipeline on a bundled benchmark and write a readable report.",
        epilog=EPILOG,
        formatter_class=_Formatter,
    )
    p.add_argument("--out", default="runs/demo", help="output folder (created)")
    p.add_argument(
        "--dataset",
        default=None,
        choices=["spurious-shapes", "colored-digits"],
        help="bundled benchmark (default: spurious-shapes; not with --config, which names its own dataset)",
    )
    p.add_argument(
        "--config", default=None, help="an experiment TOML to run instead of the bundled demo config"
    )
    p.add_argument(
        "--ref",
        action="store_true",
        help="the paper's pipeline instead of the measured best: the counterfactual's first 5 insufficient "
        "neurons, edited by neuroinspect (λ3 = 0.01), beside every editor",
    )
    add_overwrite(p)
    add_common(p)
    p.set_defaults(func=run)
    return p


#: ``--ref``: the paper's neuron choice (NeuroInspect's counterfactual, the first 5 of its insufficient
#: list, no selection step) and its editor, beside the same baselines and controls
REF_SETTINGS: dict[str, Any] = {
    "finder": "counterfactual",
    "finders": ["counterfactual", "contribution", "gradient", "random"],
    "selector": "top",
    "selectors": ["top"],
    "num_neurons": 5,
    "neuron_list": "insufficient",
    "editors": ["neuroinspect", "cw", "focal", "fc", "dfr", "random-neurons"],
}


def demo_config(dataset: str, device: str, ref: bool = False) -> Any:
    """The bundled demo configuration (``configs/<dataset>.toml`` shipped with the package); ``ref``:
    with :data:`REF_SETTINGS`."""
    import dataclasses

    from neuroinspect.harness.config import ExperimentConfig

    path = Path(__file__).resolve().parent.parent / "configs" / f"{dataset}.toml"
    cfg = ExperimentConfig.from_toml(path)
    if ref:
        cfg = dataclasses.replace(cfg, name=f"{cfg.name}-ref", editor_settings={}, **REF_SETTINGS)
    cfg.device = device
    return cfg


def run(args: argparse.Namespace) -> int:
    from neuroinspect.errors import UserError
    from neuroinspect.harness.config import ExperimentConfig
    from neuroinspect.harness.experiment import run_experiment
    from neuroinspect.harness.report import write_experiment_report
    from neuroinspect.leaderboards import build_tables, load_records, render
    from neuroinspect.outputs import Outputs
    from neuroinspect.runtime import resolve_device

    if args.config and args.ref:
        raise UserError(
            f"--ref and --config {args.config} both given: --ref changes the bundled demo config. Drop --ref, "
            'or set finder = "counterfactual", num_neurons = 5, neuron_list = "insufficient" in the config.'
        )
    if args.config and args.dataset:
        raise UserError(
            f"--dataset {args.dataset} and --config {args.config} both given: the config names its own "
            "dataset. Drop --dataset, or set `dataset` in the config."
        )
    cfg = (
        ExperimentConfig.from_toml(args.config)
        if args.config
        else demo_config(args.dataset or "spurious-shapes", args.device, ref=args.ref)
    )
    if args.config:
        cfg.device = args.device
    resolve_device(cfg.device)
    cfg.check_methods(str(args.config or "the demo config"))
    outputs = Outputs(overwrite=args.overwrite)
    out = outputs.folder(args.out, "--out")
    results = out / "results.jsonl"
    t0 = time.perf_counter()
    with outputs.guard():
        res = run_experiment(
            cfg,
            args.seed,
            out,
            show_progress=progress_on(args),
            log=lambda m: print(m, file=sys.stderr),
            replace_records=args.overwrite,
        )
    tables = build_tables(load_records([results]))
    leaderboard = render(tables, "md", title=f"Leaderboard: {cfg.name}, seed {args.seed}")
    from neuroinspect.fileio import atomic_write_text

    atomic_write_text(out / "leaderboard.md", leaderboard)
    atomic_write_text(out / "leaderboard.csv", render(tables, "csv"))
    res.timings["total"] = time.perf_counter() - t0
    report = write_experiment_report(res, out, leaderboard_md=leaderboard)
    print(_summary(res))
    print(
        f"\nreport: {report}\nrecords: {results}\nleaderboard: {out / 'leaderboard.md'}\ntotal time: {res.timings['total']:.0f} s"
    )
    return 0


def _summary(res: Any) -> str:
    from neuroinspect.harness.report import pct

    b = res.before
    lines = [
        f"class {res.class_idx} ({res.class_names[res.class_idx]}); neurons {res.neurons}; gamma {res.gamma:.4f}",
        f"{'editor':<16}{'test':>8}{'class':>8}{'worst cls':>11}{'worst grp':>11}",
        f"{'original':<16}{pct(b['test_acc']):>8}{pct(b['class_acc']):>8}{pct(b['worst_class_acc']):>11}{pct(b['worst_group_acc']):>11}",
    ]
    for name, e in res.edits.items():
        a = e["after"]
        lines.append(
            f"{name:<16}{pct(a['test_acc']):>8}{pct(a['class_acc']):>8}{pct(a['worst_class_acc']):>11}{pct(a['worst_group_acc']):>11}"
        )
    for name, per in res.recovery.items():
        for which, m in per.items():  # P@5 against the causal truth of that list (or of the edited set)
            k = "5" if which != "edited" else str(res.config.num_neurons)
            lines.append(
                f"{name:<28} {which:<12} P@{k} {pct(m['precision_at_k'].get(k)):>5} (chance {pct(m['chance_precision'])})"
                f"  margin share {pct(m['margin_share_at_k'].get(k))}"
            )
    return "\n".join(lines)
