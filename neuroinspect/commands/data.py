"""``neuroinspect data``: list the registered datasets, check a dataset root, write a tiny fixture tree."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from neuroinspect.commands.common import add_no_progress, dataset_params, progress_on
from neuroinspect.errors import DataError

LIST_EXAMPLE = """\
Examples:
  neuroinspect data list
  neuroinspect data list --kind real
"""

CHECK_EXAMPLE = """\
Examples:
  neuroinspect data check flowers102 --root data
  neuroinspect data check food101 --root data/food-101 --param val_source=file
  neuroinspect data check waterbirds --root data/cub --verify-images
  neuroinspect data check metashift --root data/metashifts                    # Cat-vs-Dog
  neuroinspect data check metashift --root MetaShift --param protocol=cce --param scenario=dog(water)

--root may be the folder that holds the dataset's folder (e.g. data/ with flowers-102/ inside) or the
dataset's folder itself. Prints each split's size and OK, or every problem (the exact missing or
malformed path or field) and exits with status 2.
"""

FIXTURE_EXAMPLE = """\
Examples:
  neuroinspect data make-fixture flowers102 --root /tmp/fixtures
  neuroinspect data make-fixture waterbirds --root /tmp/wb --param nested=true
  neuroinspect data make-fixture metashift --root /tmp/ms --param protocol=cce --param per_context=20

Writes a tiny tree in the dataset's official on-disk layout (a few small JPEGs per class), for tests and
for comparing with a real download. It never overwrites files: --root must not already hold the dataset.
"""

DATA_EXAMPLE = """\
Examples:
  neuroinspect data list
  neuroinspect data check flowers102 --root data
  neuroinspect data make-fixture food101 --root /tmp/fixtures
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    from neuroinspect.cli import _Formatter

    p = subparsers.add_parser(
        "data",
        help="list datasets, check a dataset root, write a tiny fixture",
        description="The dataset registry: real datasets read from their official layouts, and bundled benchmarks.",
        epilog=DATA_EXAMPLE,
        formatter_class=_Formatter,
    )
    sub = p.add_subparsers(dest="data_command", metavar="ACTION")

    lst = sub.add_parser(
        "list",
        help="every registered dataset with its kind, splits and groups",
        description="List every registered dataset: name, kind (real / benchmark), splits, groups, summary.",
        epilog=LIST_EXAMPLE,
        formatter_class=_Formatter,
    )
    lst.add_argument(
        "--kind", choices=["real", "benchmark"], default=None, help="only this kind (none given: all)"
    )

    chk = sub.add_parser(
        "check",
        help="validate a dataset root and print its split sizes",
        description="Validate the on-disk layout of a dataset, then load every split and print its size.",
        epilog=CHECK_EXAMPLE,
        formatter_class=_Formatter,
    )
    chk.add_argument("name", help="registered dataset name (see `neuroinspect data list`)")
    chk.add_argument("--root", default=None, help="dataset root folder (real datasets)")
    chk.add_argument("--param", action="append", metavar="KEY=VALUE", help="dataset parameter, repeatable")
    chk.add_argument(
        "--verify-images", action="store_true", help="also open every image file (slow on a full dataset)"
    )
    add_no_progress(chk)

    fix = sub.add_parser(
        "make-fixture",
        help="write a tiny tree in the dataset's official layout",
        description="Write a tiny fixture tree in the dataset's official on-disk format.",
        epilog=FIXTURE_EXAMPLE,
        formatter_class=_Formatter,
    )
    fix.add_argument("name", help="registered dataset name (see `neuroinspect data list`)")
    fix.add_argument("--root", required=True, help="folder to write into (must not already hold the dataset)")
    fix.add_argument("--seed", type=int, default=0, help="random seed of the fixture's images and ids")
    fix.add_argument("--param", action="append", metavar="KEY=VALUE", help="fixture parameter, repeatable")

    p.set_defaults(func=run, kind=None)
    return p


def _registry() -> Any:
    from neuroinspect.datasets import DATASETS

    return DATASETS


def format_table(rows: list[list[str]], header: list[str]) -> str:
    """Columns padded to their widest cell; the last column is left ragged."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for r in [header, *rows]:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1])
    return "\n".join(line.rstrip() for line in lines)


def list_datasets(kind: str | None = None) -> str:
    """The registered datasets as a table (from the cached catalog: no torch import, see
    :func:`neuroinspect.commands.methods.collect`)."""
    from neuroinspect.commands.methods import collect

    fam = collect("datasets")
    if fam.errors:
        raise DataError(f"the dataset registry could not be loaded: {fam.errors[0]}")
    rows = []
    for name, summary, spec_kind in fam.entries:
        spec_kind = spec_kind or "real"
        if kind and spec_kind != kind:
            continue
        info = fam.details.get(name, {})
        rows.append(
            [
                name,
                spec_kind,
                ",".join(info.get("splits", [])),
                "yes" if info.get("has_groups") else "no",
                summary,
            ]
        )
    if not rows:
        return f"no {kind or ''} datasets registered".replace("  ", " ")
    return format_table(rows, ["name", "kind", "splits", "groups", "summary"])


def _location(spec: Any, root: str | None, params: dict[str, Any]) -> str | None:
    """The dataset folder a real loader resolved ``root`` to, for the report (None if it has no ``locate``)."""
    import inspect

    locate = getattr(spec, "locate", None)
    if locate is None or root is None:
        return None
    kwargs = {k: v for k, v in params.items() if k in inspect.signature(locate).parameters}
    try:
        return str(locate(root, **kwargs))
    except DataError:
        return None


def _split_lines(datasets: dict[str, Any]) -> list[str]:
    rows = []
    for split, ds in datasets.items():
        groups = "-"
        if ds.group_names is not None:
            counts = {g: 0 for g in range(ds.num_groups)}
            for g in ds.groups.tolist():
                if g >= 0:
                    counts[g] = counts.get(g, 0) + 1
            present = {g: n for g, n in counts.items() if n}
            if present:
                small = min(present, key=lambda g: present[g])
                name = ds.group_names[small] if small < len(ds.group_names) else str(small)
                groups = f"{len(present)} (smallest: {name}, {present[small]})"
            else:
                groups = "0"
        rows.append([split, str(len(ds)), str(len(set(ds.labels.tolist()))), groups])
    return format_table(rows, ["split", "images", "classes present", "groups present"]).splitlines()


def check(
    name: str,
    root: str | None,
    params: dict[str, Any],
    verify_images: bool = False,
    show_progress: bool = True,
) -> int:
    from neuroinspect.datasets import InMemoryImageDataset
    from neuroinspect.datasets._layout import unreadable_images

    registry = _registry()
    spec = registry.get(name)
    problems = list(spec.check(root, **params))
    datasets: dict[str, Any] = {}
    if not problems:
        available = getattr(spec, "available_splits", None)
        for split in available(**params) if available else spec.splits:
            try:
                datasets[split] = spec.load(root, split, None, **params)
            except DataError as err:
                problems.append(f"split {split}: {err}")
    if not problems and verify_images:
        paths = [
            s.path for ds in datasets.values() if not isinstance(ds, InMemoryImageDataset) for s in ds.samples
        ]
        problems += unreadable_images(paths, show_progress=show_progress)
    if problems:
        for problem in problems:
            print(f"problem: {problem}", file=sys.stderr)
        where = f" under {root}" if root else ""
        raise DataError(
            f"{name}: {len(problems)} problem(s){where}, listed above. Fix each named path or field (re-extract the "
            f"official archive, point --root at the folder that holds the dataset, or change --param); "
            f"`neuroinspect data make-fixture {name} --root EMPTY_DIR` writes the expected layout to compare with."
        )
    location = _location(spec, root, params)
    print(
        f"{name}"
        + (f" at {location}" if location else "")
        + (f" ({', '.join(f'{k}={v}' for k, v in params.items())})" if params else "")
    )
    first = next(iter(datasets.values()), None)
    if first is not None:
        print(
            f"{first.num_classes} classes"
            + (f", {first.num_groups} groups" if first.group_names is not None else "")
        )
    for line in _split_lines(datasets):
        print(f"  {line}")
    print("OK")
    return 0


def make_fixture(name: str, root: str, seed: int, params: dict[str, Any]) -> int:
    from neuroinspect.outputs import Outputs

    spec = _registry().get(name)
    # --root may hold other datasets; the fixture itself refuses to write over an existing one.
    outputs = Outputs()
    outputs.folder(root, "--root", reuse=True)
    with outputs.guard():
        out = Path(spec.make_fixture(root, seed=seed, **params))
    n_files = sum(1 for f in Path(root).rglob("*") if f.is_file())
    print(f"wrote a {name} fixture under {out} ({n_files} files under {root})")
    print(f"check it with: neuroinspect data check {name} --root {out}")
    return 0


def run(args: argparse.Namespace) -> int:
    action = getattr(args, "data_command", None)
    if action in (None, "list"):
        print(list_datasets(getattr(args, "kind", None)))
        return 0
    params = dataset_params(args)
    if action == "check":
        return check(
            args.name, args.root, params, verify_images=args.verify_images, show_progress=progress_on(args)
        )
    if action == "make-fixture":
        return make_fixture(args.name, args.root, args.seed, params)
    raise DataError(f"unknown action {action!r}; use list, check or make-fixture.")  # pragma: no cover
