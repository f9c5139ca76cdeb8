"""``neuroinspect train``: train a timm classifier on a registered dataset and save the best checkpoint."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from neuroinspect.commands.common import HelpFormatter, add_common, add_overwrite, dataset_params, progress_on
from neuroinspect.errors import UserError
from neuroinspect.harness.presets import AUGMENT_HELP, describe_augmentations, describe_presets, preset_names
from neuroinspect.outputs import Outputs

EPILOG = """\
Examples:
  # the bundled benchmark, random init, a few CPU minutes
  neuroinspect train --dataset spurious-shapes --model resnet18 --out runs/shapes-r18
  # the paper's Flowers102 recipe (ResNet-50, ImageNet weights from a local file)
  neuroinspect train --dataset flowers102 --root data --model resnet50 --preset paper \\
      --pretrained ~/weights/resnet50_a1_in1k.safetensors --device cuda --out runs/flowers-r50
  # override preset values
  neuroinspect train --dataset colored-digits --model resnet18 --epochs 3 --lr 1e-3 --out runs/digits

writes OUT/best.pt (the selected epoch's weights and metadata) and OUT/train_log.json (every epoch).
--pretrained takes a timm tag (e.g. resnet50.a1_in1k, needs the hub or its cache), a local weight
file, a neuroinspect checkpoint (its backbone is loaded), or `none` for random init.
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train",
        help="train a timm classifier on a dataset",
        description="Train (or fine-tune) a timm classifier; keep the epoch with the best validation metric.",
        epilog=EPILOG
        + "\nPresets (any setting can be changed with its option):\n"
        + describe_presets()
        + "\n\nAugmentation (--augment; default and scratch-64 use light; paper uses ref, none on Waterbirds and MetaShift):\n"
        + describe_augmentations()
        + "\n",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--dataset", required=True, help="registered dataset name (see `neuroinspect data list`)")
    p.add_argument(
        "--model",
        default=None,
        help="timm model name, e.g. resnet18, resnet50, vit_tiny_patch16_224 (default: the preset's)",
    )
    p.add_argument(
        "--preset",
        default="default",
        help=f"hyper-parameter preset: {', '.join(preset_names())} (see below)",
    )
    p.add_argument("--root", default=None, help="dataset root folder (real datasets)")
    p.add_argument("--param", action="append", metavar="KEY=VALUE", help="dataset parameter, repeatable")
    p.add_argument(
        "--pretrained",
        default=None,
        help="timm tag, weight file, neuroinspect checkpoint, or none (default: the preset's)",
    )
    p.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="input size in pixels (default: the preset's or the dataset's)",
    )
    p.add_argument("--epochs", type=int, default=None, help="epochs (default: the preset's)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate")
    p.add_argument(
        "--warmup-epochs",
        type=float,
        default=None,
        help="linear learning-rate warm-up, in epochs (fractions allowed; 0: none)",
    )
    p.add_argument("--eta-min", type=float, default=None, help="cosine floor of the learning rate")
    p.add_argument("--batch-size", type=int, default=None, help="training batch size")
    p.add_argument("--weight-decay", type=float, default=None, help="weight decay")
    p.add_argument("--optimizer", choices=("adam", "adamw", "sgd"), default=None, help="optimizer")
    p.add_argument(
        "--augment",
        choices=list(AUGMENT_HELP),
        default=None,
        help="training augmentation (default: the preset's; what each does: see below)",
    )
    p.add_argument(
        "--finetune",
        choices=("all", "head"),
        default=None,
        help="train every layer or the decision layer only",
    )
    p.add_argument(
        "--selection",
        choices=("val_acc", "val_worst_class_acc", "val_worst_group_acc", "last"),
        default=None,
        help="checkpoint selection rule",
    )
    p.add_argument(
        "--patience", type=int, default=None, help="stop after N epochs without a better validation metric"
    )
    p.add_argument("--val-split", default="val", help="split used for checkpoint selection")
    p.add_argument("--num-workers", type=int, default=None, help="data loader worker processes")
    p.add_argument("--out", required=True, help="output folder for best.pt and train_log.json")
    add_overwrite(p, resume="continue an interrupted training from its last completed epoch (same settings)")
    add_common(p)
    p.set_defaults(func=run)
    return p


def _pretrained_value(text: str | None) -> bool | str | None:
    if text is None:
        return None
    low = text.strip().lower()
    if low in ("none", "false", "no", "0", "random"):
        return False
    if low in ("true", "yes", "1", "default"):
        return True
    return text


def _is_neuroinspect_checkpoint(path: Path) -> bool:
    if not path.is_file():
        return False
    try:
        import torch

        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - a timm weight file or anything else: not ours
        return False
    from neuroinspect.harness.checkpoint import FORMAT

    return isinstance(payload, dict) and payload.get("format") == FORMAT


def run(args: argparse.Namespace) -> int:
    from neuroinspect.datasets import get_dataset
    from neuroinspect.harness.models import create_model
    from neuroinspect.harness.presets import get_preset
    from neuroinspect.harness.training import LAST_NAME, init_from_checkpoint, train_classifier
    from neuroinspect.harness.transforms import eval_transform, train_transform, transform_kind
    from neuroinspect.runtime import Provenance, resolve_device

    spec = get_dataset(args.dataset)
    params = dataset_params(args)
    base = get_preset(args.preset, args.dataset)
    if args.epochs is not None and args.epochs < 1:
        raise UserError(f"--epochs {args.epochs} must be at least 1.")
    pretrained = _pretrained_value(args.pretrained)
    init_ckpt: Path | None = None
    if isinstance(pretrained, str) and _is_neuroinspect_checkpoint(Path(pretrained).expanduser()):
        init_ckpt, pretrained = Path(pretrained).expanduser(), False
    config = base.with_overrides(
        epochs=args.epochs,
        lr=args.lr,
        warmup_epochs=args.warmup_epochs,
        eta_min=args.eta_min,
        batch_size=args.batch_size,
        weight_decay=args.weight_decay,
        optimizer=args.optimizer,
        augment=args.augment,
        finetune=args.finetune,
        selection=args.selection,
        patience=args.patience,
        image_size=args.image_size,
        num_workers=args.num_workers,
        model=args.model,
    )
    if pretrained is not None:
        config = config.with_overrides(pretrained=pretrained)
    arch = config.model
    if not arch:
        raise UserError(f"preset {args.preset!r} names no model for {args.dataset}; pass --model TIMM_NAME.")
    kind = transform_kind(args.dataset)
    if args.image_size is None and kind == "benchmark" and "image_size" in params:
        # A benchmark rendered at another size: train the model at that size.
        config = config.with_overrides(image_size=int(params["image_size"]))
    image_size = config.image_size or spec.default_image_size
    config = config.with_overrides(image_size=image_size)
    device = resolve_device(args.device)
    show = progress_on(args)
    if args.resume and args.overwrite:
        raise UserError("--resume continues the run in --out and --overwrite replaces it; pass one of them.")
    outputs = Outputs(overwrite=args.overwrite, resume=bool(args.resume))
    out = outputs.folder(args.out, "--out")
    if args.resume and not (out / LAST_NAME).is_file():
        raise UserError(
            f"nothing to resume in {out}: there is no {LAST_NAME} (the run finished, or never completed an "
            "epoch). Pass --overwrite to train again."
        )

    spec.check_split("train")
    train_ds = spec.load(args.root, "train", None, **params)
    val_ds = spec.load(args.root, args.val_split, None, **params) if args.val_split in spec.splits else None
    if val_ds is None:
        print(
            f"note: {args.dataset} has no {args.val_split!r} split; the last epoch is kept.", file=sys.stderr
        )

    try:
        surface = create_model(
            arch, train_ds.num_classes, config.resolve_pretrained(arch), image_size=image_size
        )
    except UserError as err:
        if not config.pretrained:
            raise
        raise UserError(
            f"{err} Or pass --pretrained none to train from random initialisation (--preset scratch-64: the "
            "bundled benchmarks' recipe at 64 px, for any dataset)."
        ) from None
    extra: dict[str, Any] = {"preset": args.preset}
    if init_ckpt is not None:
        extra.update(init_from_checkpoint(surface, init_ckpt))
    train_ds.transform = train_transform(surface.data_config, config, dataset_kind=kind, dataset=args.dataset)
    if val_ds is not None:
        val_ds.transform = eval_transform(
            surface.data_config, kind, ref=config.ref_transforms, dataset=args.dataset
        )

    print(
        f"training {arch} on {args.dataset} ({len(train_ds)} train / {len(val_ds) if val_ds is not None else 0} val images, "
        f"{train_ds.num_classes} classes, {image_size} px) with preset {args.preset!r} on {device}",
        file=sys.stderr,
    )
    with outputs.guard(), Provenance(device=str(device)) as prov:
        try:
            result = train_classifier(
                surface,
                train_ds,
                val_ds,
                config,
                device=device,
                seed=args.seed,
                out_dir=out,
                show_progress=show,
                dataset_name=args.dataset,
                dataset_params=params,
                extra_metadata=extra,
                resume=bool(args.resume),
            )
        except KeyboardInterrupt:
            if (out / LAST_NAME).is_file():
                print(
                    f"interrupted; {out / LAST_NAME} holds the last completed epoch. Continue with the same "
                    "command and --resume.",
                    file=sys.stderr,
                )
            raise
    summary = {
        "checkpoint": str(result.checkpoint_path),
        "log": str(result.log_path),
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "stopped_early": result.stopped_early,
        "selection": config.selection if val_ds is not None else "last",
        "best": {k: v for k, v in result.best_metrics.items() if not isinstance(v, list)},
        "wall_seconds": round(prov.wall_seconds or 0.0, 1),
    }
    if result.best_epoch < 0:
        print(
            f"warning: no epoch reached min_val_metric={config.min_val_metric}; best.pt holds the last epoch.",
            file=sys.stderr,
        )
    print(json.dumps(summary, indent=2))
    return 0
