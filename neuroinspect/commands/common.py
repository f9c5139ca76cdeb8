"""Argument helpers shared by subcommands, so every command spells the same option the same way."""

from __future__ import annotations

import argparse
from typing import Any

from neuroinspect.errors import UserError


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every command's help: the examples keep their layout, and an option's default is shown once,
    only where there is one (not for flags, unset options, required ones, or help that states it)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            action.option_strings
            and not action.required
            and not any(default is v for v in (None, False, True, argparse.SUPPRESS))  # 0 == False
            and default not in ([], ())
            and "default" not in text.lower()
            and "%(default)" not in text
        ):
            text += " (default: %(default)s)"
        return text


def add_common(p: argparse.ArgumentParser, device: bool = True, seed: bool = True) -> None:
    if device:
        p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto")
    if seed:
        p.add_argument("--seed", type=int, default=0, help="random seed")
    add_no_progress(p)


def add_no_progress(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bars, one line per epoch or stage instead (what a log gets anyway)",
    )


def progress_on(args: argparse.Namespace) -> bool:
    """Progress is always reported (``show_progress=True``): bars on a terminal, one line per stage
    elsewhere, and ``--no-progress`` turns the bars into those lines (:mod:`neuroinspect.runtime`)."""
    from neuroinspect.runtime import set_progress_bars

    set_progress_bars(not getattr(args, "no_progress", False))
    return True


def add_overwrite(p: argparse.ArgumentParser, resume: str = "") -> None:
    """``--overwrite`` (and ``--resume``, with the help text ``resume``): what a command may do with an
    output folder that a previous run already filled (see :mod:`neuroinspect.outputs`)."""
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the outputs (and result records) of a previous run of the same settings",
    )
    if resume:
        p.add_argument("--resume", action="store_true", help=resume)


def method_names(family: str) -> list[str]:
    """The registered names of a method family for help texts, from the cached catalog (building a
    parser must not import torch and every method; see :func:`neuroinspect.commands.methods.collect`)."""
    from neuroinspect.commands.methods import collect

    return [name for name, _, _ in collect(family).entries]


def parse_int_list(text: str, what: str = "values") -> list[int]:
    """``"1,2,3"`` or ``"1 2 3"`` → ``[1, 2, 3]`` with a clear error on anything else."""
    try:
        return [int(tok) for tok in text.replace(",", " ").split()]
    except ValueError:
        raise UserError(
            f"could not read {what} from {text!r}; give integers separated by commas, e.g. 0,1,2."
        ) from None


def check_class_idx(class_idx: int, num_classes: int, classes: list[str] | None = None) -> None:
    if not 0 <= class_idx < num_classes:
        names = (
            f" ({', '.join(f'{i}={c}' for i, c in enumerate(classes[:10]))}{', ...' if len(classes) > 10 else ''})"
            if classes
            else ""
        )
        raise UserError(
            f"--class-idx {class_idx} is out of range: the model has {num_classes} classes, 0..{num_classes - 1}{names}."
        )


def check_neurons(neurons: list[int], num_features: int) -> None:
    bad = [n for n in neurons if not 0 <= n < num_features]
    if bad:
        raise UserError(
            f"neuron index {bad[0]} is out of range: the decision layer has {num_features} input neurons, 0..{num_features - 1}."
        )


def parse_value(text: str) -> Any:
    """``"3"`` → 3, ``"0.5"`` → 0.5, ``"true"``/``"false"`` → bool, ``"none"`` → None, ``"a,b"`` → list."""
    low = text.strip().lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("none", "null"):
        return None
    if "," in text:
        return [parse_value(t) for t in text.split(",") if t.strip()]
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            continue
    return text


def parse_settings(items: list[str], flag: str) -> dict[str, Any]:
    """``key=value`` options (``--set``, ``--attr-set``, ``--editor-param``) as a dict: keys with ``-``
    turned into ``_``, values through :func:`parse_value`; a UserError naming ``flag`` for an item
    without ``=``."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise UserError(f"{flag} {item!r} must look like key=value.")
        key, raw = item.split("=", 1)
        out[key.strip().replace("-", "_")] = parse_value(raw)
    return out


def dataset_params(args: argparse.Namespace) -> dict[str, Any]:
    """``--param key=value`` pairs as a dict (numbers parsed)."""
    out: dict[str, Any] = {}
    for item in getattr(args, "param", None) or []:
        if "=" not in item:
            raise UserError(f"--param {item!r} must look like key=value.")
        k, v = item.split("=", 1)
        for cast in (int, float):
            try:
                out[k] = cast(v)
                break
            except ValueError:
                continue
        else:
            out[k] = v
    return out
