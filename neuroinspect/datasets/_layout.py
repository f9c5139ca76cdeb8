"""Shared plumbing of the real-dataset loaders: finding the dataset folder under ``--root``, checking
parameters, listing missing or unreadable files, and writing fixture trees.

Not a registry module (the leading underscore keeps it out of the auto-import in ``__init__``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from neuroinspect.errors import DataError
from neuroinspect.runtime import progress

MAX_LISTED = 10  # a check names at most this many missing files one by one, then counts the rest


def locate(name: str, root: str | Path | None, candidates: Sequence[str], marker: str, layout: str) -> Path:
    """The folder under ``root`` that holds ``marker`` (a file or folder name, may contain ``/``).

    ``candidates`` are relative folders tried in order (``""`` is ``root`` itself), so ``--root`` can be
    the dataset folder or any parent the reference used (e.g. ``data/``). Raises :class:`DataError`
    saying which paths were looked at and what the official layout is.
    """
    if root is None:
        raise DataError(
            f"{name} needs --root DIR: the folder that holds {layout} "
            f"(or write a tiny fixture with `neuroinspect data make-fixture {name} --root DIR`)."
        )
    base = Path(root).expanduser()
    if base.exists() and not base.is_dir():
        raise DataError(f"--root {base} is a file; pass the folder that holds {layout} (e.g. {base.parent}).")
    if not base.is_dir():
        raise DataError(
            f"dataset root {base} does not exist. Pass --root to the folder that holds {layout}, "
            f"or write a tiny fixture with `neuroinspect data make-fixture {name} --root {base}`."
        )
    tried = []
    for rel in candidates:
        folder = base / rel if rel else base
        tried.append(str(folder / marker))
        if (folder / marker).exists():
            return folder.resolve()
    raise DataError(
        f"{name}: no {marker} found; looked for {' and '.join(tried)}. Pass --root to the folder that holds "
        f"{layout} (the official layout), or check the download was fully extracted."
    )


def _as_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, np.integer)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in {
        "1",
        "true",
        "yes",
        "on",
        "0",
        "false",
        "no",
        "off",
    }:
        return value.strip().lower() in {"1", "true", "yes", "on"}
    raise DataError(f"parameter {key}={value!r} must be true or false.")


def parse_params(name: str, params: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """``defaults`` updated with ``params``, each cast to its default's type; unknown keys are a DataError.

    A default of ``None`` accepts any value (used for options whose default depends on another one).
    """
    unknown = sorted(set(params) - set(defaults))
    if unknown and not defaults:
        raise DataError(f"{name} takes no parameters; remove {unknown[0]}={params[unknown[0]]!r}.")
    if unknown:
        raise DataError(
            f"{name} has no parameter {unknown[0]!r}; accepted: {', '.join(f'{k}={v!r}' for k, v in defaults.items())}."
        )
    out = dict(defaults)
    for key, value in params.items():
        default = defaults[key]
        if default is None or value is None:
            out[key] = value
        elif isinstance(default, bool):
            out[key] = _as_bool(key, value)
        elif isinstance(default, int):
            try:
                out[key] = int(value)
            except (TypeError, ValueError):
                raise DataError(f"{name}: parameter {key}={value!r} must be an integer.") from None
            if isinstance(value, float) and value != int(value):
                raise DataError(f"{name}: parameter {key}={value!r} must be an integer.")
        elif isinstance(default, float):
            try:
                out[key] = float(value)
            except (TypeError, ValueError):
                raise DataError(f"{name}: parameter {key}={value!r} must be a number.") from None
        else:
            out[key] = str(value)
    return out


def missing_files(
    paths: Iterable[str | Path], what: str = "image file", total: int | None = None
) -> list[str]:
    """One problem per missing file (the first :data:`MAX_LISTED`), then a count of the rest."""
    missing: list[str] = []
    count = 0
    # Existence checks are quick: no bar (`data check` shows one only for --verify-images).
    for p in paths:
        if not os.path.isfile(p):
            count += 1
            if len(missing) < MAX_LISTED:
                missing.append(f"missing {what}: {p}")
    if count > MAX_LISTED:
        missing.append(f"... and {count - MAX_LISTED} more missing {what}s ({count} in all)")
    return missing


def unreadable_images(paths: Sequence[str | Path], show_progress: bool = True) -> list[str]:
    """One problem per file PIL cannot open and verify (the first :data:`MAX_LISTED`, then a count)."""
    bad: list[str] = []
    count = 0
    unique = list(dict.fromkeys(str(x) for x in paths))
    for p in progress(
        unique, desc="verifying images", total=len(unique), enabled=show_progress, unit="images"
    ):
        try:
            with Image.open(p) as img:
                img.verify()
        except FileNotFoundError:
            continue  # reported by missing_files
        except Exception as err:  # noqa: BLE001 - PIL raises many types for a broken file
            count += 1
            if len(bad) < MAX_LISTED:
                bad.append(f"unreadable image: {p} ({type(err).__name__}: {err})")
    if count > MAX_LISTED:
        bad.append(f"... and {count - MAX_LISTED} more unreadable images ({count} in all)")
    return bad


def fresh_dir(path: Path, name: str) -> Path:
    """Create ``path`` for a fixture; refuse to write into a non-empty folder (it may be a real dataset)."""
    if path.exists() and any(path.iterdir()):
        raise DataError(
            f"{path} already exists and is not empty; a fixture never overwrites files (it could be the real "
            f"{name}). Choose an empty --root for `neuroinspect data make-fixture {name}`."
        )
    path.mkdir(parents=True, exist_ok=True)
    return path


def class_color(index: int, count: int) -> tuple[int, int, int]:
    """A distinct RGB colour per class, so fixture images differ by class."""
    import colorsys

    r, g, b = colorsys.hsv_to_rgb((index / max(count, 1)) % 1.0, 0.8, 0.9)
    return int(r * 255), int(g * 255), int(b * 255)


def write_jpeg(path: Path, rng: np.random.Generator, color: tuple[int, int, int], size: int = 16) -> None:
    """A tiny noisy JPEG around ``color`` (fixtures: valid files in the official format, fast to write)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    noise = rng.integers(-40, 41, size=(size, size, 3))
    pixels = np.clip(np.asarray(color)[None, None, :] + noise, 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG", quality=90)
