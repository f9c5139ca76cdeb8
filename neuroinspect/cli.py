"""The ``neuroinspect`` command: one entry point, one module per subcommand under ``commands/``.

Every subcommand module exposes ``add_parser(subparsers) -> argparse.ArgumentParser`` and sets
``func=run`` on it; ``run(args) -> int`` returns the exit status. A :class:`UserError` anywhere is
printed as one line on stderr with exit status 2 and no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Iterable, Sequence

from neuroinspect import __version__
from neuroinspect.commands.common import HelpFormatter
from neuroinspect.errors import UserError

# (name, one-line help) in the order of DESIGN.md's command-line contract.
COMMANDS: list[tuple[str, str]] = [
    ("demo", "end-to-end on the bundled benchmark, on CPU, in minutes"),
    ("data", "list datasets, check a dataset root, write a tiny fixture"),
    ("train", "train a timm classifier on a dataset"),
    ("evaluate", "accuracy, per-class, worst-class and worst-group accuracy with confidence intervals"),
    ("debug", "rank the neurons behind a class's mistakes (finders)"),
    ("visualize", "show what neurons encode (visualizers)"),
    ("edit", "edit the decision layer to mitigate a false correlation (editors)"),
    ("bench", "run an experiment config over seeds and write result records"),
    ("leaderboard", "build leaderboard tables from result records"),
    ("study", "human-understanding study app and its analysis"),
    ("methods", "list registered finders, visualizers and editors"),
    ("clip", "train a small CLIP for a bundled benchmark (offline guidance)"),
]


class _Formatter(HelpFormatter):
    """The formatter of every ``neuroinspect`` parser (see :class:`commands.common.HelpFormatter`)."""


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(f"neuroinspect.commands.{name}") is not None


def build_parser(commands: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The parser with the full subparsers of ``commands`` (``None``: every command).

    The other commands get a placeholder that only carries their one-line help: building a command's
    parser imports its module, and some of those list registered methods (torch and every method:
    seconds), which ``neuroinspect --help`` or ``data list`` should not pay for. A command whose
    module does not exist (yet) is left out of the listing and answers with a clear error.
    """
    wanted = {n for n, _ in COMMANDS} if commands is None else set(commands)
    parser = argparse.ArgumentParser(
        prog="neuroinspect",
        description="Neuron-level debugging of image classifiers, and a harness for benchmarking the methods that explain them.",
        epilog="Examples:\n  neuroinspect demo --out runs/demo\n  neuroinspect train --help",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"neuroinspect {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS:
        if name not in wanted:
            if _has_module(name):
                sub.add_parser(name, help=help_text, add_help=False)
            continue
        try:
            module = importlib.import_module(f"neuroinspect.commands.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"neuroinspect.commands.{name}":
                raise
            p = sub.add_parser(name, formatter_class=_Formatter)
            p.set_defaults(func=_unavailable(name))
            continue
        p = module.add_parser(sub)
        p.set_defaults(_help=help_text)
    return parser


def _selected(argv: Sequence[str]) -> list[str]:
    """The command named in ``argv`` (its first word that is not an option), as a list of 0 or 1."""
    names = {n for n, _ in COMMANDS}
    for tok in argv:
        if not tok.startswith("-"):
            return [tok] if tok in names else []
    return []


def _unavailable(name: str):  # noqa: ANN202
    def run(args: argparse.Namespace) -> int:
        raise UserError(
            f"`neuroinspect {name}` is not available in this version of neuroinspect ({__version__})."
        )

    return run


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the subcommand; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_selected(argv))
    args = parser.parse_args(argv)
    _terminate_like_ctrl_c()
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        print(f"neuroinspect {args.command}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `neuroinspect methods list | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _terminate_like_ctrl_c() -> None:
    """``kill PID`` (SIGTERM) ends a run the way Ctrl-C does, so the same clean-up runs (no empty
    output folders, an interrupted training says how to resume)."""
    import signal
    import threading

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
