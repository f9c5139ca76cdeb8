"""Output locations of a command: checked before any work starts, never silently overwritten.

Every command that writes declares its outputs on one :class:`Outputs` object right after it has
validated its inputs and before it does any work:

- :meth:`Outputs.folder`: a folder the command fills (``--out``). It must be creatable or writable
  (not a file, not below a file, not on a read-only or special file system), and a folder that
  already holds something is refused unless the user passed ``--overwrite`` (or ``--resume``, for
  commands that can continue an interrupted run).
- :meth:`Outputs.file`: a single file (``--json``, ``clip train --out``): refused when it exists,
  unless ``--overwrite``.
- :meth:`Outputs.records`: a JSON Lines file of result records that runs append to (``--results``).
  Its existing records must be valid; that a record of the same run is never appended twice is
  enforced by :func:`neuroinspect.harness.records.append_records`.

Nothing is created by the checks (a writability probe makes and removes one temporary file), and
:meth:`Outputs.guard` removes the folders this run created if the run fails before writing into
them (a config error, ``--device cuda`` without a GPU, Ctrl-C), so a failed run leaves no empty
folders behind. Every refusal is a :class:`~neuroinspect.errors.UserError` (one line, exit 2).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from neuroinspect.errors import UserError


def _nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists (the root always does)."""
    p = path
    while not p.exists() and not p.is_symlink():
        if p.parent == p:
            break
        p = p.parent
    return p


def _probe(folder: Path) -> str | None:
    """Try to create (and remove) a temporary file in ``folder``; the OS's reason if that fails.

    A real attempt instead of ``os.access``: root passes ``access`` checks on ``/proc`` and on
    read-only mounts, and still cannot write there.
    """
    try:
        fd, name = tempfile.mkstemp(prefix=".neuroinspect-probe-", dir=folder)
    except OSError as err:
        return err.strerror or type(err).__name__
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(name)
    return None


def _check_creatable(path: Path, flag: str, what: str) -> list[Path]:
    """Check that ``path`` (which does not exist) can be created; returns the folders that would be made."""
    anchor = _nearest_existing(path.parent)
    if not anchor.is_dir():
        raise UserError(
            f"{flag} {path}: cannot create the {what}, because {anchor} is a file. Choose another path."
        )
    reason = _probe(anchor)
    if reason is not None:
        raise UserError(
            f"{flag} {path}: cannot create the {what} under {anchor} ({reason.lower()}). Choose a writable location."
        )
    made, p = [], path.parent
    while p != anchor and p != p.parent:
        made.append(p)
        p = p.parent
    return made


def _listing(folder: Path, limit: int = 3) -> tuple[int, str]:
    entries = sorted(e.name for e in folder.iterdir() if not e.name.startswith("."))
    shown = ", ".join(entries[:limit]) + (", ..." if len(entries) > limit else "")
    return len(entries), shown


class Outputs:
    """The output locations of one command run (see the module docstring).

    ``overwrite`` / ``resume``: what the user passed (``--overwrite`` / ``--resume``); ``resume`` is
    ``None`` for a command that cannot resume, so its refusal does not suggest it.
    """

    def __init__(self, overwrite: bool = False, resume: bool | None = None) -> None:
        self.overwrite = bool(overwrite)
        self.resume = resume
        self._created: list[Path] = []  # folders that do not exist yet, deepest first per output

    # -- declarations ----------------------------------------------------------------------------
    def folder(self, path: str | os.PathLike[str], flag: str = "--out", *, reuse: bool = False) -> Path:
        """Check the folder ``path`` before any work: creatable or writable, not a file; a folder that
        already holds something is refused unless ``--overwrite`` / ``--resume`` (or ``reuse``: the
        command rewrites derived files there, e.g. leaderboard tables). Returns ``path``."""
        path = Path(path).expanduser()
        if path.exists() and not path.is_dir():
            raise UserError(f"{flag} {path} is a file, not a folder. Give a folder (or remove the file).")
        if not path.exists():
            self._created += [path, *_check_creatable(path, flag, "folder")]
            return path
        reason = _probe(path)
        if reason is not None:
            raise UserError(f"{flag} {path} is not writable ({reason.lower()}). Choose a writable folder.")
        n, shown = _listing(path)
        if n and not (reuse or self.overwrite or self.resume):
            how = "--overwrite to replace it" + (
                ", --resume to continue it" if self.resume is not None else ""
            )
            raise UserError(
                f"{flag} {path} already holds a previous run ({n} entr{'y' if n == 1 else 'ies'}: {shown}). "
                f"Pass {how}, or choose a new folder."
            )
        return path

    def file(
        self, path: str | os.PathLike[str], flag: str, *, append: bool = False, example: str = ""
    ) -> Path:
        """Check the file ``path`` before any work: not a folder, its folder creatable or writable; an
        existing file is refused unless ``append`` (records are added to it) or ``--overwrite``.
        ``example``: a file name suggested when ``path`` is a folder."""
        path = Path(path).expanduser()
        if path.is_dir():
            hint = f" (e.g. {path / example})" if example else ""
            raise UserError(f"{flag} {path} is a folder; give a file name{hint}.")
        if not path.exists():
            made = _check_creatable(path, flag, "file")
            self._created += made
            return path
        # Files are replaced atomically through a temporary sibling: the folder must be writable.
        reason = _probe(path.parent)
        if reason is not None:
            raise UserError(
                f"{flag} {path}: its folder {path.parent} is not writable ({reason.lower()}). Choose another path."
            )
        if not append and not self.overwrite:
            raise UserError(
                f"{flag} {path} already exists. Pass --overwrite to replace it, or another file name."
            )
        return path

    def records(self, path: str | os.PathLike[str], flag: str = "--results") -> Path:
        """An append target for result records: :meth:`file` with ``append``, and any records it
        already holds must be valid (a damaged file is named with its line before the work starts)."""
        path = self.file(path, flag, append=True, example="results.jsonl")
        if path.exists():
            from neuroinspect.harness.records import read_records

            read_records(path)
        return path

    # -- cleanup ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def guard(self) -> Iterator[Outputs]:
        """Run the work; if it fails (any exception, Ctrl-C included), remove the folders this run
        would have created that are still empty (never a file, never a folder that existed)."""
        try:
            yield self
        except BaseException:
            self.remove_empty()
            raise

    def remove_empty(self) -> list[Path]:
        """Remove the still-empty folders that this run created (deepest first); returns them."""
        removed = []
        for top in sorted(set(self._created), key=lambda p: len(p.parts), reverse=True):
            if not top.is_dir():
                continue
            for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda t: len(t[0]), reverse=True):
                with contextlib.suppress(OSError):
                    os.rmdir(dirpath)  # fails (and is skipped) unless empty
                    removed.append(Path(dirpath))
        return removed


__all__ = ["Outputs"]
