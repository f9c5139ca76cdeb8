"""``neuroinspect edit``: edit the decision layer to mitigate a false correlation, measure before / after.

Flow: load the checkpoint → the train / val / test splits with the checkpoint's evaluation transform
→ pooled features from the feature cache (computed once per checkpoint, split and transform; the
backbone is frozen and in eval mode) → the editor (NeuroInspect's retaining-ratio loss or a
baseline) on the train features, selecting an epoch on val → test metrics of the original and the
edited layer → a before / after table, the edited checkpoint (``OUT/edited.pt``), the edit's
history (``OUT/edit.json``) and a ``mitigation`` record appended to ``--results``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neuroinspect.commands.common import (
    HelpFormatter,
    add_common,
    add_overwrite,
    check_class_idx,
    check_neurons,
    dataset_params,
    method_names,
    parse_int_list,
    parse_settings,
    progress_on,
)
from neuroinspect.errors import UserError

if TYPE_CHECKING:
    from neuroinspect.methods.editors import Editor

EXAMPLE = """\
Examples:
  neuroinspect edit --dataset spurious-shapes --ckpt runs/shapes/best.pt --class-idx 1 --neurons 12 40 7
  neuroinspect edit --dataset waterbirds --root data --ckpt wb.pt --class-idx 1 --neurons 6,915,1493 \\
      --variant waterbirds --gamma 1.0 --ref --device cuda
  neuroinspect edit --dataset spurious-shapes --ckpt runs/shapes/best.pt --class-idx 1 --editor dfr

Editors (`neuroinspect methods list --kind editors`): neuroinspect (default), random-neurons (the
same loss on random neurons: a control), cw, focal, fc (retraining baselines without the neuron
term) and dfr (Deep Feature Reweighting on the validation split; it uses group labels).

--gamma auto (the default, except for --variant metashift whose reference fixes γ = 1) sets the
editing target γ = 1 + (min_{n∈S} imp[n] − 1)/3 from the knock-out ratio imp of the neurons on the
validation split's class mean (the all-class mean with --ref), as the reference's debug flow does.

--ref reproduces the reference's editing quirks on cached features: the per-epoch sawtooth
learning rate, the first epoch never selected, ties to the latest epoch, the reference script's settings
for the variant (waterbirds: lr 1e-4, weight decay 1e-4, batch 32, no schedule; metashift: batch
16, selection only after epoch 1 with val acc > 0.7) and its evaluation transforms. It does not
re-run the backbone in train mode: the reference's BatchNorm drift (spec bug 19) is not reproduced.
"""

#: The loss variants of ``neuroinspect_editor.VARIANTS`` (named here so that ``edit --help`` does not
#: import torch; a test keeps the two equal).
VARIANT_NAMES = ("flowers_food", "waterbirds", "metashift")

# CLI option → editor constructor argument; applied only when the option is given.
_EDITOR_OPTIONS = {
    "lr": "--lr",
    "weight_decay": "--weight-decay",
    "batch_size": "--batch-size",
    "epochs": "--epochs",
    "schedule": "--schedule",
    "patience": "--patience",
    "variant": "--variant",
    "lambda3": "--lambda3",
}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "edit",
        help="edit the decision layer to mitigate a false correlation (editors)",
        description=(
            "Edit the decision layer so that class C stops depending on neurons S (NeuroInspect's "
            "retaining-ratio loss) or run a baseline editor; report test metrics before and after, "
            "save the edited checkpoint and append a mitigation record."
        ),
        epilog=EXAMPLE,
        formatter_class=HelpFormatter,
    )
    p.add_argument("--dataset", required=True, help="registered dataset name (see `neuroinspect data list`)")
    p.add_argument("--ckpt", required=True, help="checkpoint written by `neuroinspect train`")
    p.add_argument(
        "--class-idx", type=int, required=True, help="the class whose false correlation is mitigated"
    )
    p.add_argument(
        "--neurons",
        nargs="+",
        default=None,
        metavar="N",
        help="neuron indices S (inputs of the decision layer), e.g. 12 40 7 or 12,40,7 (from `neuroinspect debug`)",
    )
    p.add_argument(
        "--editor",
        default="neuroinspect",
        help=f"one of: {', '.join(method_names('editors'))} (default neuroinspect)",
    )
    p.add_argument(
        "--gamma",
        default=None,
        help="editing target γ: a number or auto (default: auto; 1.0 for --variant metashift)",
    )
    p.add_argument(
        "--lambda3",
        type=float,
        default=None,
        help="weight of the retaining-ratio term (default: the variant's, 0.01; metashift 1)",
    )
    p.add_argument(
        "--variant",
        choices=list(VARIANT_NAMES),
        default=None,
        help="loss variant of the reference (default flowers_food)",
    )
    p.add_argument("--epochs", type=int, default=None, help="epochs (default 20)")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 1e-3)")
    p.add_argument("--batch-size", type=int, default=None, help="edit batch size (default 128)")
    p.add_argument("--weight-decay", type=float, default=None, help="Adam weight decay (default 0)")
    p.add_argument(
        "--schedule",
        choices=["warmup", "constant"],
        default=None,
        help="learning-rate schedule (default warmup)",
    )
    p.add_argument(
        "--patience",
        type=int,
        default=None,
        help="stop after this many epochs without a better val metric (0: never; default 5)",
    )
    p.add_argument(
        "--ref",
        action="store_true",
        help="reference parity: sawtooth lr, first epoch never kept, its settings and transforms",
    )
    p.add_argument(
        "--editor-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other editor hyperparameter (repeatable), e.g. other_weight=0.95",
    )
    p.add_argument(
        "--finder",
        default="manual",
        help='name of the finder that chose the neurons, for the record (default manual: a person chose them; "none" for editors without neurons)',
    )
    p.add_argument("--root", default=None, help="dataset root folder (real datasets)")
    p.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE", help="dataset parameter (repeatable)"
    )
    p.add_argument(
        "--out", default=None, help="output folder (default: <ckpt folder>/edits/<editor>_c<C>_s<seed>)"
    )
    p.add_argument(
        "--results",
        default=None,
        help="JSON Lines file the mitigation record is appended to (default: OUT/results.jsonl)",
    )
    p.add_argument(
        "--n-boot",
        type=int,
        default=1000,
        help="bootstrap resamples for the test intervals (0: none; default 1000)",
    )
    p.add_argument(
        "--feature-batch-size",
        type=int,
        default=128,
        help="batch size of the feature extraction (default 128)",
    )
    add_overwrite(p)
    add_common(p)
    p.set_defaults(func=run)
    return p


def _parse_neurons(tokens: list[str] | None) -> list[int]:
    if not tokens:
        return []
    return parse_int_list(" ".join(tokens), "--neurons")


def _editor_kwargs(cls: type[Editor], args: argparse.Namespace, device: Any) -> dict[str, Any]:
    """Constructor arguments from the options that were given; a clear error for one the editor does not take."""
    accepted = set(cls.hyperparameters())
    kwargs: dict[str, Any] = {}
    for key, flag in _EDITOR_OPTIONS.items():
        value = getattr(args, key)
        if value is None:
            continue
        if key not in accepted:
            raise UserError(f"{flag} does not apply to --editor {args.editor}; drop {flag}.")
        kwargs[key] = value
    if args.ref:
        if "ref" not in accepted:
            raise UserError(
                f"--ref does not apply to --editor {args.editor} (it has no reference quirks); drop --ref."
            )
        kwargs["ref"] = True
    if args.gamma is not None and "gamma" not in accepted:
        raise UserError(f"--gamma does not apply to --editor {args.editor}; drop --gamma.")
    if "device" in accepted:
        kwargs["device"] = str(device)
    for key, value in parse_settings(args.editor_param, "--editor-param").items():
        if key not in accepted:
            raise UserError(
                f"editor {args.editor!r} has no hyperparameter {key!r}; it takes: {', '.join(sorted(accepted))}."
            )
        kwargs[key] = value
    return kwargs


def _gamma_setting(args: argparse.Namespace, editor_cls: type[Editor]) -> str | float | None:
    """``"auto"``, a number, or ``None`` (the editor's default) for editors that take γ."""
    if "gamma" not in editor_cls.hyperparameters():
        return None
    if args.gamma is None:
        return None if (args.variant or "flowers_food") == "metashift" else "auto"
    if str(args.gamma).strip().lower() == "auto":
        return "auto"
    try:
        value = float(args.gamma)
    except ValueError:
        raise UserError(f"--gamma {args.gamma!r} is neither a number nor 'auto'.") from None
    if value <= 0:
        raise UserError(
            f"--gamma must be positive (a target ratio, typically slightly above 1), got {value}."
        )
    return value


def auto_gamma(decision: Any, val: Any, class_idx: int, neurons: list[int], ref: bool = False) -> float:
    """γ = 1 + (min_{n∈S} imp[n] − 1)/3 (spec §2.5), imp on the validation class-c mean (all-class mean with ``ref``)."""
    from neuroinspect.methods.finders import gamma_heuristic, importance

    feats = val.features.float()
    is_c = val.labels == class_idx
    if ref or not bool(is_c.any()):
        mean = feats.mean(dim=0)
    else:
        mean = feats[is_c].mean(dim=0)
    return gamma_heuristic(importance(decision, mean, class_idx), neurons)


def run(args: argparse.Namespace) -> int:
    from neuroinspect.datasets import get_dataset
    from neuroinspect.datasets.fingerprint import fingerprint_splits
    from neuroinspect.fileio import atomic_write_json
    from neuroinspect.harness.checkpoint import load_checkpoint
    from neuroinspect.harness.evaluation import check_compatible, checkpoint_eval_transform
    from neuroinspect.harness.features import FeatureCache
    from neuroinspect.harness.metrics import group_counts
    from neuroinspect.harness.mitigation import (
        format_mitigation_table,
        measure,
        mitigation_record,
        save_edited_checkpoint,
    )
    from neuroinspect.harness.models import model_name
    from neuroinspect.harness.records import append_records, check_new_runs
    from neuroinspect.harness.transforms import describe
    from neuroinspect.methods.editors import EDITORS
    from neuroinspect.outputs import Outputs
    from neuroinspect.runtime import Provenance, resolve_device, seed_everything

    editor_cls = EDITORS.get(args.editor)
    neurons = _parse_neurons(args.neurons)
    if editor_cls.uses_neurons and not neurons:
        raise UserError(
            f"--editor {args.editor} needs --neurons N ... (e.g. the insufficient neurons of `neuroinspect debug`)."
        )
    if args.n_boot < 0:
        raise UserError(f"--n-boot {args.n_boot} must be >= 0.")
    if args.feature_batch_size < 1:
        raise UserError(f"--feature-batch-size {args.feature_batch_size} must be at least 1.")
    device = resolve_device(args.device)
    gamma = _gamma_setting(args, editor_cls)
    kwargs = _editor_kwargs(editor_cls, args, device)
    if isinstance(gamma, float):
        kwargs["gamma"] = gamma
    editor = editor_cls(**kwargs)  # validates the hyperparameters before any heavy work

    spec = get_dataset(args.dataset)
    if editor_cls.uses_group_labels and not spec.has_groups:
        raise UserError(
            f"--editor {args.editor} needs group labels, but {args.dataset} has none. "
            "Use a dataset with groups (spurious-shapes, waterbirds, metashift) or another editor."
        )
    for split in ("train", "val", "test"):
        if split not in spec.splits:
            raise UserError(f"{args.dataset} has no {split!r} split; editing needs train, val and test.")

    ckpt = load_checkpoint(args.ckpt, expect_dataset=args.dataset, map_location="cpu")
    surface = ckpt.surface.freeze()
    check_class_idx(args.class_idx, surface.num_classes, ckpt.classes)
    check_neurons(neurons, surface.num_features)
    show = progress_on(args)
    outputs = Outputs(overwrite=args.overwrite)
    out = outputs.folder(
        args.out
        if args.out
        else Path(args.ckpt).expanduser().resolve().parent
        / "edits"
        / f"{args.editor}_c{args.class_idx}_s{args.seed}",
        "--out",
    )
    results_path = outputs.records(args.results or out / "results.jsonl", "--results")
    seed_everything(args.seed)
    params = {**ckpt.dataset_params, **dataset_params(args)}
    transform = checkpoint_eval_transform(ckpt, args.dataset, ref=True if args.ref else None)
    transform_desc = describe(transform)

    with outputs.guard(), Provenance(device=str(device)) as prov:
        cache = FeatureCache()
        feats, loaded = {}, {}
        for split in ("train", "val", "test"):
            ds = loaded[split] = spec.load(args.root, split, transform, **params)
            check_compatible(ckpt, ds)
            if len(ds) == 0:
                raise UserError(f"the {split} split of {args.dataset} is empty; check --root and --param.")
            feats[split] = cache.get_or_compute(
                surface,
                ckpt.sha256 or str(ckpt.path),
                ds,
                batch_size=args.feature_batch_size,
                device=device,
                transform_desc=transform_desc,
                show_progress=show,
            )
        train, val, test = feats["train"], feats["val"], feats["test"]
        if editor_cls.uses_group_labels and (val.groups is None or bool((val.groups < 0).all())):
            raise UserError(
                f"--editor {args.editor} needs group labels on the validation split of {args.dataset}; it has none."
            )
        decision = surface.decision
        if gamma == "auto":
            editor.gamma = auto_gamma(decision, val, args.class_idx, neurons, ref=args.ref)  # type: ignore[attr-defined]
        result = editor.edit(
            decision, train, val, args.class_idx, neurons, seed=args.seed, show_progress=show
        )

        train_counts = None
        if train.groups is not None and test.groups is not None and bool((train.groups >= 0).any()):
            num_groups = int(test.meta.get("num_groups") or 0) or None
            train_counts = group_counts(train.groups, num_groups)
        before = measure(decision, test, args.class_idx, train_counts, n_boot=args.n_boot, seed=args.seed)
        after = measure(
            result.decision, test, args.class_idx, train_counts, n_boot=args.n_boot, seed=args.seed
        )

    ckpt_path = out / "edited.pt"
    record = mitigation_record(
        result,
        before,
        after,
        dataset=args.dataset,
        model=model_name(surface),
        provenance=prov,
        finder=args.finder if editor_cls.uses_neurons else "none",
        seed=args.seed,
        gamma_rule="auto" if gamma == "auto" else None,
        dataset_fingerprint=fingerprint_splits(loaded),
        config={
            "dataset_params": params,
            "checkpoint": str(ckpt.path),
            "checkpoint_sha256": ckpt.sha256,
            "edited_checkpoint_path": str(ckpt_path),
            "transform": transform_desc,
            "splits": {"fit": "train", "select": "val", "measure": "test"},
            "n_boot": args.n_boot,
        },
    )
    # A run already recorded in a shared --results file is refused before anything is written.
    check_new_runs(results_path, [record], replace=args.overwrite)
    save_edited_checkpoint(
        ckpt_path,
        ckpt,
        result.decision,
        editor=result.editor,
        neurons=result.neurons,
        class_idx=args.class_idx,
        settings=result.settings,
        metrics={"test_before": _scalars(before), "test_after": _scalars(after)},
    )
    append_records(results_path, [record], replace=args.overwrite)
    atomic_write_json(
        out / "edit.json",
        {
            **result.summary(),
            "before": before,
            "after": after,
            "record_run_id": record["run_id"],
            "checkpoint": str(ckpt_path),
        },
    )

    cname = ckpt.classes[args.class_idx]
    print(
        f"{args.editor} edit of {surface.spec.arch} ({args.ckpt}) on {args.dataset}, class {args.class_idx} ({cname})"
    )
    if result.neurons:
        print(
            f"neurons S = {result.neurons}"
            + (f" (random draw avoiding {neurons})" if result.neurons != neurons else "")
        )
    if "gamma" in result.settings:
        how = " (auto: 1 + (min imp - 1)/3)" if gamma == "auto" else ""
        print(
            f"gamma = {result.settings['gamma']:.4f}{how}, lambda3 = {result.settings.get('lambda3')}, variant = {result.settings.get('variant')}"
        )
    if any("epoch" in row for row in result.history):
        sel = (
            str(result.selected_epoch)
            if result.selected_epoch is not None
            else "none eligible (last epoch kept)"
        )
    else:
        sel = "n/a (closed-form fit)"
    print(
        f"selected epoch: {sel}; val acc {100 * result.val_before['acc']:.2f} -> {100 * result.val_after['acc']:.2f}, "
        f"val worst-class {100 * result.val_before['worst_class_acc']:.2f} -> {100 * result.val_after['worst_class_acc']:.2f}"
    )
    for note in result.notes:
        print(f"note: {note}")
    print()
    print(format_mitigation_table(before, after, args.class_idx, ckpt.classes))
    print()
    print(f"edited checkpoint: {ckpt_path}")
    print(f"edit history:      {out / 'edit.json'}")
    print(f"mitigation record {record['run_id']} appended to {results_path}")
    return 0


def _scalars(m: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "test_acc",
        "class_acc",
        "worst_class_acc",
        "worst_group_acc",
        "mean_acc_train_weighted",
        "macro_acc",
    )
    return {k: m.get(k) for k in keys}
