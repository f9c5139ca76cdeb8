"""Faithfulness and concept recovery of every visualizer on a bundled-benchmark checkpoint: one table.

For a checkpoint trained on a bundled benchmark (``spurious-shapes``; ``colored-digits`` works too),
this script

1. measures the checkpoint's per-neuron ground truth on the split (``--truth-samples`` counterfactual
   samples, seeded; the same cached :func:`neuroinspect.methods.concept_recovery.cached_truth` the
   command uses) and, unless ``--neurons`` is given, picks the ``--n-spurious`` neurons labelled
   ``spurious`` with the largest spurious effect and the ``--n-core`` neurons labelled ``core`` with
   the largest core effect, each conditioned on its *top class* (the class its decision weight
   favours most, argmax_k W[k, n]) unless ``--class-idx`` is given;
2. runs every method (``--methods``, default: every registered visualizer) through the command itself,
   ``neuroinspect.cli.main(["visualize", ...])`` with ``--dataset`` = the benchmark, so faithfulness
   metrics and concept recovery are computed exactly as for a user; synthetic methods run ``--iters``
   steps (default 64, far below their defaults of 450 / 512, to keep the table to minutes on a CPU);
   ``clip_illusion`` gets ``--clip`` when given and runs with ``use_clip=false`` otherwise (said in the
   table's header);
3. reads the ``task="visualization"`` records back (:func:`neuroinspect.harness.records.read_records`)
   and writes one row per method to ``OUT/faithfulness.md`` (Markdown) and ``OUT/faithfulness.json``
   (rows, per-pair values and settings).

Columns (means over the method's (neuron, class) pairs):

- ``act pct``: the neuron's activation on the shown images as a percentile of its activations over the
  split (100: beyond every natural image);
- ``specificity``: 1 - (rank - 1)/(D - 1) of the target among all D neurons on the shown images;
- ``class p``: the classifier's probability of the conditioned class on the shown images;
- ``CLIP``: cosine between the shown images (the saved PNGs, top images only) and the class prompts,
  every method scored post hoc by the same ``--clip`` model (empty without ``--clip``);
- ``diversity``: mean pairwise 1 - cosine of the shown images' pooled features;
- ``recovery spurious`` / ``recovery core``: share of the pairs of spurious / core neurons whose images
  show the neuron's attribute (judged by the attribute classifiers, see
  :mod:`neuroinspect.methods.concept_recovery`); ``value match``: share of those pairs whose images
  show the neuron's preferred value (which background / shape);
- ``deletion AUC / random``: attribution methods only; the target as the most-attributed pixels are
  deleted, against a random order (lower = more faithful);
- ``s/pair``: the visualization's own wall seconds per pair (from the records); ``cmd s/pair``: the
  whole command (model and data loading, metrics, concept recovery, files) per pair.

Example::

    .venv/bin/python benchmarks/faithfulness_table.py --ckpt runs/shapes/best.pt \\
        --clip synthetic-clip:runs/clip.pt --out runs/faithfulness

The script ends with ``methods: <n> rows written to <OUT/faithfulness.md>``. Timings on a shared
machine are inflated by other processes.

``--smoke`` runs in seconds: without ``--ckpt`` it makes a random-init 32 px resnet18 for a tiny
spurious-shapes (``OUT/smoke-model.pt``), and it runs two fast methods (exemplars, captum_saliency)
with a random-init CLIP, 2 iterations and 4 ground-truth samples (a check that the script works; the
figures mean nothing).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import json
import math
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import add_smoke, apply_smoke  # noqa: E402  (benchmarks/ is on sys.path)

import neuroinspect  # noqa: E402,F401
from neuroinspect.cli import main as cli_main  # noqa: E402
from neuroinspect.commands import visualize as visualize_cmd  # noqa: E402
from neuroinspect.commands.common import parse_settings  # noqa: E402
from neuroinspect.datasets import get_dataset  # noqa: E402
from neuroinspect.fileio import atomic_write_json, atomic_write_text  # noqa: E402
from neuroinspect.harness.checkpoint import load_checkpoint  # noqa: E402
from neuroinspect.harness.features import FeatureCache  # noqa: E402
from neuroinspect.harness.records import read_records  # noqa: E402
from neuroinspect.harness.transforms import describe, eval_transform, transform_kind  # noqa: E402
from neuroinspect.methods import concept_recovery as cr  # noqa: E402
from neuroinspect.methods.visualizers import VISUALIZERS, load_all  # noqa: E402
from neuroinspect.runtime import progress, resolve_device  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument(
        "--ckpt", default=None, help="checkpoint trained on a bundled benchmark (required unless --smoke)"
    )
    p.add_argument(
        "--clip",
        default=None,
        help="CLIP spec (e.g. synthetic-clip:PATH); without it clip_illusion runs use_clip=false",
    )
    p.add_argument(
        "--methods", default=None, help="comma-separated visualizers (default: every registered one)"
    )
    p.add_argument(
        "--neurons", nargs="*", default=None, help="neuron indices (default: picked from the ground truth)"
    )
    p.add_argument(
        "--class-idx",
        nargs="*",
        default=None,
        help="one class for all neurons or one per neuron (default: each neuron's top class)",
    )
    p.add_argument(
        "--unconditioned",
        action="store_true",
        help="visualize every neuron without a class (natural and synthetic methods only: with a class, the "
        "class fixes the core attribute of the images and concept recovery cannot tell a core neuron from "
        "the conditioning)",
    )
    p.add_argument(
        "--n-spurious", type=int, default=3, help="spurious neurons picked when --neurons is not given"
    )
    p.add_argument("--n-core", type=int, default=3, help="core neurons picked when --neurons is not given")
    p.add_argument("--iters", type=int, default=64, help="optimization steps of the synthetic methods")
    p.add_argument(
        "--images-per-pair", type=int, default=None, help="images per pair (default: each method's own)"
    )
    p.add_argument(
        "--truth-samples", type=int, default=64, help="counterfactual samples for the neuron ground truth"
    )
    p.add_argument(
        "--attr-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="attribute classifier setting (passed to the command)",
    )
    p.add_argument("--split", default="val", help="dataset split")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="runs/faithfulness", help="output folder")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own)")
    p.add_argument("--progress", action="store_true", help="show the command's progress bars")
    add_smoke(p)
    args = p.parse_args(argv)
    tiny = {
        "methods": "exemplars,captum_saliency",
        "iters": 2,
        "truth_samples": 4,
        "n_spurious": 2,
        "n_core": 1,
        "clip": "synthetic-clip:random",
        "attr_set": ["epochs=2"],
    }
    apply_smoke(p, args, tiny)
    if args.ckpt is None and not args.smoke:
        p.error("--ckpt is required (or --smoke)")
    return args  # fmt: skip


#: ``--smoke`` without ``--ckpt``: the tiny benchmark its random-init model is made for
SMOKE_PARAMS = {"image_size": 32, "n_train": 24, "n_val": 8, "n_test": 8}


def smoke_checkpoint(out: Path) -> Path:
    """A random-init resnet18 at 32 px for spurious-shapes with :data:`SMOKE_PARAMS` (``OUT/smoke-model.pt``)."""
    from neuroinspect.harness.checkpoint import save_checkpoint
    from neuroinspect.harness.models import create_model

    path = out / "smoke-model.pt"
    if path.is_file():
        return path
    torch.manual_seed(0)
    surface = create_model("resnet18", num_classes=2, image_size=32)
    return save_checkpoint(path, surface, ["triangle", "square"], "spurious-shapes", SMOKE_PARAMS)


# -- neurons -------------------------------------------------------------------------------------------
def pick_neurons(truth: Any, n_spurious: int, n_core: int) -> list[int]:
    """The ``n_spurious`` strongest spurious neurons (by spurious effect), then the ``n_core`` strongest core ones."""
    spur = sorted(truth.neurons("spurious"), key=lambda n: (-truth.spurious_effect[n], n))[:n_spurious]
    core = sorted(truth.neurons("core"), key=lambda n: (-truth.core_effect[n], n))[:n_core]
    return spur + core


def top_classes(surface: Any, neurons: list[int]) -> list[int]:
    """argmax_k W[k, n] of the decision layer for each neuron (the class the neuron favours most)."""
    w = surface.decision.weight.detach().double().cpu()
    return [int(w[:, n].argmax()) for n in neurons]


# -- one method ----------------------------------------------------------------------------------------
def method_argv(args: argparse.Namespace, method: str, neurons: list[int], classes: list[int | None], dataset: str, results: Path) -> list[str]:  # fmt: skip
    cls = VISUALIZERS.get(method)
    argv = ["visualize", "--method", method, "--ckpt", str(args.ckpt)]
    argv += [
        "--neurons",
        *map(str, neurons),
        "--class-idx",
        *("none" if c is None else str(c) for c in classes),
    ]
    argv += ["--dataset", dataset, "--split", args.split, "--seed", str(args.seed), "--device", args.device]
    argv += [
        "--truth-samples",
        str(args.truth_samples),
        "--out",
        str(Path(args.out) / "vis"),
        "--results",
        str(results),
    ]
    for item in args.attr_set:
        argv += ["--attr-set", item]
    if getattr(cls, "kind", "") == "synthetic":
        argv += ["--iters", str(args.iters)]
    if args.images_per_pair is not None and _accepts(cls, ("images_per_pair", "n_images", "k", "top_k")):
        argv += ["--images-per-pair", str(args.images_per_pair)]
    if _accepts(cls, ("clip",)):
        argv += ["--clip", args.clip] if args.clip else ["--set", "use_clip=false"]
    if not args.progress:
        argv.append("--no-progress")
    return argv  # fmt: skip


def _accepts(cls: type, names: tuple[str, ...]) -> bool:
    import inspect

    params = inspect.signature(cls.__init__).parameters
    return any(n in params for n in names)


def run_method(argv: list[str]) -> tuple[int, float, str]:
    """``neuroinspect visualize`` in this process: (exit status, wall seconds, captured stderr)."""
    err = io.StringIO()
    t0 = time.perf_counter()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            rc = cli_main(argv)
    except SystemExit as exc:  # argparse
        rc = int(exc.code or 0)
    except Exception:  # noqa: BLE001 - one failing method becomes a failed row, the table goes on
        err.write(traceback.format_exc())
        rc = 1
    return rc, time.perf_counter() - t0, err.getvalue()


# -- scoring the records ---------------------------------------------------------------------------------
def _mean(values: list[Any]) -> float | None:
    v = [
        float(x)
        for x in values
        if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
    ]
    return float(np.mean(v)) if v else None


def _rate(pairs: list[dict[str, Any]], label: str, key: str = "recovered") -> tuple[int, int]:
    hits = [p[key] for p in pairs if p.get("truth_label") == label and p.get(key) is not None]
    return sum(bool(h) for h in hits), len(hits)


@torch.no_grad()
def clip_scores(clip: Any, record: dict[str, Any], class_strings: list[str], device: Any) -> float | None:
    """Mean CLIP score of a pair's saved top images against its class prompts (``None`` if unconditioned)."""
    from PIL import Image

    from neuroinspect.clip.prompts import prompts_for
    from neuroinspect.methods.visualizers.faithfulness import _clip_scores

    c = record.get("class_idx")
    if c is None:
        return None
    folder = Path(record["artifact_dir"])
    meta = json.loads((folder / "meta.json").read_text())
    roles = meta.get("extra", {}).get("role")
    names = meta["files"]["images"]
    keep = [
        n
        for i, n in enumerate(names)
        if not (isinstance(roles, list) and i < len(roles) and roles[i] == "bottom")
    ]
    if not keep:
        return None
    arrs = [np.asarray(Image.open(folder / n).convert("RGB"), dtype=np.float32) / 255.0 for n in keep]
    images = torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2)
    scores = _clip_scores(clip, images, prompts_for(class_strings[int(c)]), torch.device(device), 32)
    return float(scores.mean())  # fmt: skip


def score_method(method: str, records: list[dict[str, Any]], clip: Any, class_strings: list[str], device: Any) -> dict[str, Any]:  # fmt: skip
    m = [r["metrics"] for r in records]
    pairs = []
    for r in records:
        c = r["metrics"].get("concept_recovery") or {}
        pairs.append(
            {
                "neuron": r["neuron"],
                "class_idx": r["class_idx"],
                "truth_label": c.get("truth_label"),
                "truth_value": c.get("truth_value"),
                "shown": c.get("shown"),
                "recovered": c.get("recovered"),
                "value_match": c.get("value_match"),
                "reliable": c.get("reliable"),
                "clip_score": clip_scores(clip, r, class_strings, device) if clip is not None else None,
                "artifact_dir": r.get("artifact_dir"),
            }
        )
    rs, ns = _rate(pairs, "spurious")
    rc, nc = _rate(pairs, "core")
    vs, nvs = _rate(pairs, "spurious", "value_match")
    vc, nvc = _rate(pairs, "core", "value_match")
    return {
        "method": method,
        "kind": getattr(VISUALIZERS.get(method), "kind", "?"),
        "pairs": len(records),
        "activation_percentile": _mean([x.get("faithfulness_activation_percentile_mean") for x in m]),
        "specificity": _mean([x.get("faithfulness_specificity_mean") for x in m]),
        "class_prob": _mean([x.get("faithfulness_class_prob_mean") for x in m]),
        "clip_score": _mean([p["clip_score"] for p in pairs]),
        "diversity": _mean([x.get("faithfulness_diversity_feature") for x in m]),
        "recovery_spurious": [rs, ns],
        "recovery_core": [rc, nc],
        "value_match": [vs + vc, nvs + nvc],
        "deletion_auc": _mean([x.get("faithfulness_deletion_auc") for x in m]),
        "deletion_auc_random": _mean([x.get("faithfulness_deletion_auc_random") for x in m]),
        "seconds_per_pair": _mean([x.get("wall_seconds") for x in m]),
        "reliable": all(p["reliable"] is not False for p in pairs),
        "pair_details": pairs,
    }  # fmt: skip


# -- the table -------------------------------------------------------------------------------------------
COLUMNS = ["method", "kind", "act pct", "specificity", "class p", "CLIP", "diversity", "recovery spurious", "recovery core", "value match", "deletion AUC / random", "s/pair", "cmd s/pair"]  # fmt: skip


def _f(v: float | None, fmt: str = ".3f") -> str:
    return "-" if v is None else format(v, fmt)


def _frac(hit_n: list[int]) -> str:
    hit, n = hit_n
    return "-" if n == 0 else f"{hit}/{n} ({hit / n:.2f})"


def table_row(row: dict[str, Any]) -> list[str]:
    if row.get("failed"):
        return [row["method"], row["kind"], f"failed (exit {row['exit']}): {row['failed']}"] + [""] * (
            len(COLUMNS) - 3
        )
    deletion = (
        "-"
        if row["deletion_auc"] is None
        else f"{row['deletion_auc']:.3f} / {row['deletion_auc_random']:.3f}"
    )
    return [
        row["method"], row["kind"], _f(row["activation_percentile"], ".1f"), _f(row["specificity"]),
        _f(row["class_prob"]), _f(row["clip_score"]), _f(row["diversity"]), _frac(row["recovery_spurious"]),
        _frac(row["recovery_core"]), _frac(row["value_match"]), deletion, _f(row["seconds_per_pair"], ".2f"),
        _f(row["command_seconds_per_pair"], ".2f"),
    ]  # fmt: skip


def markdown(header: list[str], rows: list[dict[str, Any]]) -> str:
    cells = [table_row(r) for r in rows]
    lines = [*header, "", "| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in cells]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load_all()
    methods = (
        [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else VISUALIZERS.names()
    )
    unknown = [m for m in methods if m not in VISUALIZERS]
    if unknown:
        sys.exit(f"unknown method {unknown[0]!r}; registered: {', '.join(VISUALIZERS.names())}")
    if args.ckpt is None:
        args.ckpt = str(smoke_checkpoint(Path(args.out)))
    if not Path(args.ckpt).is_file():
        sys.exit(
            f"checkpoint {args.ckpt} does not exist; train one with `neuroinspect train --dataset spurious-shapes ...`."
        )
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    device = resolve_device(args.device)
    ckpt = load_checkpoint(args.ckpt)
    surface = ckpt.surface
    name = ckpt.dataset
    if not cr.is_benchmark(name):
        sys.exit(
            f"{args.ckpt} was trained on {name!r}, which has no neuron ground truth; use a bundled benchmark checkpoint."
        )

    # ground truth and the neurons (the same cached truth the command reads back)
    spec = get_dataset(name)
    transform = eval_transform(surface.data_config, transform_kind(name), dataset=name)
    dataset = spec.load(None, args.split, transform, **dict(ckpt.dataset_params))
    truth, _ = cr.cached_truth(
        surface, ckpt.sha256, dataset, transform, args.truth_samples, args.seed,
        transform_desc=describe(transform), device=device, show_progress=args.progress,
    )  # fmt: skip
    if args.neurons:
        neurons = [int(t) for tok in args.neurons for t in tok.replace(",", " ").split()]
    else:
        neurons = pick_neurons(truth, args.n_spurious, args.n_core)
        if not neurons:
            sys.exit(
                f"the checkpoint has no neuron labelled spurious or core ({truth.counts()}); pass --neurons."
            )
    classes: list[int | None]
    if args.unconditioned and args.class_idx:
        sys.exit("--unconditioned and --class-idx exclude each other; give one.")
    if args.unconditioned:
        classes = [None] * len(neurons)
    elif args.class_idx:
        classes = [int(t) for tok in args.class_idx for t in tok.replace(",", " ").split()]
        classes = classes * len(neurons) if len(classes) == 1 else classes
    else:
        classes = top_classes(surface, neurons)
    labels = [truth.labels[n] if 0 <= n < truth.num_features else "?" for n in neurons]

    clip = None
    if args.clip:
        from neuroinspect.clip.loader import load_clip

        clip = load_clip(args.clip, device=device)
    class_strings = visualize_cmd.class_strings(ckpt, dataset)

    # one-time costs, paid here so that no method's timing includes them: the attribute classifiers
    # and the split's features, in the same caches (same keys) the command reads
    params = dict(ckpt.dataset_params)
    settings = cr.classifier_settings(parse_settings(args.attr_set, "--attr-set"))
    train = spec.load(None, "train", None, **params)
    heldout = dataset if args.split == "val" else spec.load(None, "val", None, **params)
    cr.cached_classifiers(train, heldout, settings, args.seed, show_progress=args.progress)
    FeatureCache().get_or_compute(
        surface, ckpt.sha256 or str(ckpt.path), dataset, batch_size=64, device=device,
        transform_desc=describe(transform), show_progress=args.progress,
    )  # fmt: skip

    rows: list[dict[str, Any]] = []
    classifier: dict[str, Any] = {}
    for method in progress(methods, desc="methods", enabled=True):
        results = out / "records" / f"{method}.jsonl"
        results.unlink(missing_ok=True)
        argv_m = method_argv(args, method, neurons, classes, name, results)
        rc, wall, err = run_method(argv_m)
        kind = getattr(VISUALIZERS.get(method), "kind", "?")
        if rc != 0 or not results.is_file():
            message = (err.strip().splitlines() or ["no records written"])[-1]
            print(f"{method}: exit {rc}: {err.strip()}", file=sys.stderr)
            rows.append({"method": method, "kind": kind, "failed": message, "exit": rc, "argv": argv_m})
            continue
        records = read_records(results)
        row = score_method(method, records, clip, class_strings, device)
        row["command_seconds"] = wall
        row["command_seconds_per_pair"] = wall / max(1, len(records))
        row["argv"] = argv_m
        rows.append(row)
        cfg = records[0]["config"].get("concept_recovery") or {}
        classifier = classifier or cfg.get("classifiers", {})

    acc = classifier.get("accuracy", {})
    header = [
        f"# Faithfulness and concept recovery of visualizers: {ckpt.surface.spec.arch} on {name}",
        "",
        f"- checkpoint: `{args.ckpt}` (sha256 {str(ckpt.sha256)[:12]}), split `{args.split}`, seed {args.seed}, "
        f"device {device}, {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}",
        "- neurons (truth label, class): "
        + ", ".join(f"{n} ({lab}, {c})" for n, lab, c in zip(neurons, labels, classes, strict=True))
        + ("" if args.neurons else f" — the {args.n_spurious} strongest spurious and {args.n_core} strongest core neurons, each on its top class"),
        f"- ground truth: {len(truth.indices)} counterfactual samples of {name}/{args.split}; counts {truth.counts()}",
        f"- synthetic methods ran **{args.iters} iterations** (defaults: clip_illusion 450, lucent 512); "
        "other methods use their defaults",
        f"- CLIP: `{args.clip}` (scores every method's saved images post hoc)" if args.clip else
        "- CLIP: none given: **clip_illusion ran with use_clip=false** and the CLIP column is empty",
        f"- attribute classifiers: {classifier.get('method', '?')}, {classifier.get('epochs', '?')} epochs, "
        f"held-out ({classifier.get('heldout', '?')}) accuracy core {_f(acc.get('core'), '.2f')}, "
        f"spurious {_f(acc.get('spurious'), '.2f')}"
        + ("" if all(r.get("reliable", True) for r in rows) else f" — below {cr.RELIABLE_ACCURACY}: recovery figures are unreliable"),
        "- s/pair: the visualization's own time; cmd s/pair: the whole command per pair (the ground truth, "
        "attribute classifiers and split features are cached before the first method); timings on a shared "
        f"machine are inflated by other processes ({torch.get_num_threads()} torch threads)",
    ]  # fmt: skip
    text = markdown(header, rows)
    md = atomic_write_text(out / "faithfulness.md", text)
    atomic_write_json(
        out / "faithfulness.json",
        {
            "checkpoint": str(args.ckpt),
            "checkpoint_sha256": ckpt.sha256,
            "dataset": name,
            "split": args.split,
            "seed": args.seed,
            "iters": args.iters,
            "clip": args.clip,
            "neurons": neurons,
            "classes": classes,
            "truth_labels": labels,
            "truth_counts": truth.counts(),
            "attribute_classifiers": classifier,
            "columns": COLUMNS,
            "rows": rows,
        },
    )
    print(text)
    print(f"methods: {len(rows)} rows written to {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
