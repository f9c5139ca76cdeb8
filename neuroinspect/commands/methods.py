"""``neuroinspect methods list``: every registered finder, selector, visualizer, editor and dataset, with its summary."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import pkgutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neuroinspect.errors import UserError

EXAMPLE = """\
Examples:
  neuroinspect methods list
  neuroinspect methods list --kind visualizers
"""

#: family → (module, registry attribute). Modules are imported only when listed, so a family whose
#: package is not there (or registers nothing) is shown as "(none registered)".
FAMILIES: dict[str, tuple[str, str]] = {
    "finders": ("neuroinspect.methods.finders", "FINDERS"),
    "visualizers": ("neuroinspect.methods.visualizers", "VISUALIZERS"),
    "selectors": ("neuroinspect.methods.selectors", "SELECTORS"),
    "editors": ("neuroinspect.methods.editors", "EDITORS"),
    "datasets": ("neuroinspect.datasets", "DATASETS"),
}


@dataclass
class Family:
    """The entries of one registry: ``(name, summary, kind)`` triples, and modules that failed to import.

    ``details``: per entry, values a listing shows besides the summary (datasets: ``splits``,
    ``has_groups``).
    """

    name: str
    entries: list[tuple[str, str, str | None]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    details: dict[str, dict[str, Any]] = field(default_factory=dict)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from neuroinspect.cli import _Formatter

    p = subparsers.add_parser(
        "methods",
        help="list registered finders, visualizers, editors and datasets",
        description="The registered methods of each family, with their one-line summaries.",
        epilog=EXAMPLE,
        formatter_class=_Formatter,
    )
    sub = p.add_subparsers(dest="methods_command", metavar="ACTION")
    lst = sub.add_parser(
        "list",
        help="list every registered entry, grouped by family",
        description="List every registered entry with its one-line summary, grouped by family.",
        epilog=EXAMPLE,
        formatter_class=_Formatter,
    )
    lst.add_argument(
        "--kind", choices=list(FAMILIES), default=argparse.SUPPRESS, help="only this family (none given: all)"
    )
    lst.set_defaults(func=run)
    # `neuroinspect methods` alone lists everything too.
    p.set_defaults(func=run, kind=None)
    return p


def _import_submodules(package: Any) -> list[str]:
    """Import each module of ``package`` on its own; returns ``module: error`` for those that fail."""
    errors = []
    for mod in pkgutil.iter_modules(getattr(package, "__path__", [])):
        if mod.name.startswith("_") or mod.name == "base":
            continue
        full = f"{package.__name__}.{mod.name}"
        try:
            importlib.import_module(full)
        except Exception as err:  # a broken plug-in must not hide the others
            errors.append(f"{full}: {type(err).__name__}: {err}")
    return errors


def collect(family: str, cache: bool = True) -> Family:
    """The registered entries of ``family`` (one of :data:`FAMILIES`).

    Importing a family imports torch and every method (seconds); a listing does not need that. So
    when the family is not imported in this process yet, the listing comes from a catalog cached on
    disk (``$NEUROINSPECT_CACHE/catalog``) under a key made of the package's source files (path,
    size, modification time) and the versions of the libraries the methods import: any change
    rebuilds it. A family whose modules fail to import is never cached, so its errors show every time.
    """
    module_name, _ = FAMILIES[family]
    path = _catalog_path(family) if cache and module_name not in sys.modules else None
    if path is not None and path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return Family(
                family,
                [(e[0], e[1], e[2]) for e in data["entries"]],
                [],
                dict(data.get("details") or {}),
            )
        except (OSError, ValueError, KeyError, IndexError):
            pass  # a damaged cache entry is rebuilt below
    fam = _collect_live(family)
    if path is not None and not fam.errors:
        from neuroinspect.fileio import atomic_write_json

        with contextlib.suppress(OSError):  # an unwritable cache only costs time
            atomic_write_json(path, {"entries": fam.entries, "details": fam.details})
    return fam


#: Libraries whose installation changes what the families register (an upgrade rewrites their files).
_CATALOG_PACKAGES = ("torch", "timm", "captum", "lucent", "open_clip", "sklearn", "PIL")


def _catalog_path(family: str) -> Path | None:
    """The catalog file of ``family`` for the installed sources and libraries (``None``: no cache)."""
    import hashlib
    import importlib.util

    import neuroinspect

    root = Path(neuroinspect.__file__).resolve().parent
    h = hashlib.sha256(f"{neuroinspect.__version__} {sys.version}".encode())
    for name in _CATALOG_PACKAGES:
        # the package's __init__ file and its modification time, found without importing it (cheaper
        # than reading its version from the installed metadata)
        spec = importlib.util.find_spec(name)
        origin = spec.origin if spec is not None else None
        stamp = os.stat(origin).st_mtime_ns if origin and os.path.exists(origin) else None
        h.update(f"{name}={origin}:{stamp};".encode())
    try:  # the sources that register entries: the families' packages and the registry
        for entry in _py_files(root, ("methods", "datasets", "registry.py")):
            st = entry.stat()
            h.update(f"{entry.path}:{st.st_size}:{st.st_mtime_ns};".encode())
    except OSError:
        return None
    env = os.environ.get("NEUROINSPECT_CACHE")
    base = Path(env).expanduser() if env else Path.home() / ".cache" / "neuroinspect"
    return base / "catalog" / f"{family}-{h.hexdigest()[:16]}.json"


def _py_files(root: Path, names: tuple[str, ...]) -> list[os.DirEntry[str]]:
    """The ``.py`` files under ``root/<name>`` for each name (a folder, searched recursively, or a file)."""
    out: list[os.DirEntry[str]] = []
    stack = [e for e in os.scandir(root) if e.name in names]
    while stack:
        entry = stack.pop()
        if entry.is_dir():
            stack.extend(os.scandir(entry.path))
        elif entry.name.endswith(".py"):
            out.append(entry)
    return sorted(out, key=lambda e: e.path)


def _collect_live(family: str) -> Family:
    """:func:`collect` from the registry itself, importing the family's modules."""
    module_name, attr = FAMILIES[family]
    out = Family(family)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and module_name.startswith(err.name):
            return out  # the family's package does not exist (yet)
        out.errors.append(f"{module_name}: {type(err).__name__}: {err}")
        return out
    except Exception as err:
        out.errors.append(f"{module_name}: {type(err).__name__}: {err}")
        return out
    load_all = getattr(module, "load_all", None)
    if callable(load_all):
        try:
            load_all()
        except Exception:
            # load_all stops at the first broken module: import the rest one by one to name the culprits.
            out.errors.extend(_import_submodules(module))
    registry = getattr(module, attr, None)
    if registry is None:
        return out
    for name in registry.names():
        entry = registry.get(name)
        kind = getattr(entry, "kind", None)
        summary = registry.summary(name) if hasattr(registry, "summary") else ""
        out.entries.append((name, summary or "(no summary)", kind if isinstance(kind, str) else None))
        if family == "datasets":
            out.details[name] = {
                "splits": list(getattr(entry, "splits", ())),
                "has_groups": bool(getattr(entry, "has_groups", False)),
            }
    out.entries.sort(key=lambda e: e[0])
    return out


def format_family(fam: Family) -> str:
    lines = [f"{fam.name} ({len(fam.entries)})"]
    if not fam.entries:
        lines.append("  (none registered)")
    width = max((len(n) for n, _, _ in fam.entries), default=0)
    for name, summary, kind in fam.entries:
        tag = f"[{kind}] " if kind else ""
        lines.append(f"  {name.ljust(width)}  {tag}{summary}")
    lines += [f"  ! could not import {e}" for e in fam.errors]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    families = [args.kind] if getattr(args, "kind", None) else list(FAMILIES)
    if any(f not in FAMILIES for f in families):
        raise UserError(f"unknown family {args.kind!r}; choose one of {', '.join(FAMILIES)}.")
    collected = [collect(f) for f in families]
    print("\n\n".join(format_family(f) for f in collected))
    broken = [e for f in collected for e in f.errors]
    if broken:
        print(f"{len(broken)} module(s) failed to import; their entries are missing above.", file=sys.stderr)
        return 1
    return 0
