"""The long-format response table: one row per response, the contract between the study app
(``neuroinspect study export``) and the analysis (``neuroinspect study analyze``).

Columns (``REQUIRED`` must be present; the others are optional and filled with nulls when absent):

=====================  ===========================================================================
column                 meaning
=====================  ===========================================================================
participant            participant id (e.g. Prolific's ``PROLIFIC_PID``), a string
condition              the explanation condition shown (a visualizer name, or the baseline's name)
unit                   what the trial is about, e.g. ``"neuron:12"`` or ``"neuron:12/class:1"``
trial_id               the trial's id, unique within the study
trial_kind             ``main`` | ``practice`` | ``catch`` | ``repeated``
block                  the block number (0-based) in the participant's counterbalanced order
response               the answer as shown to the participant (e.g. ``"A"``, ``"background"``, ``"4"``)
correct                1 / 0, or empty where a trial has no right answer (ratings)
confidence             the confidence level (1 = guessing … 6 = certain for 2AFC), or empty
rt_s                   seconds from when the trial was first shown (on the server) to the answer
---------------------  ---------------------------------------------------------------------------
study_id               the study's id
simulated              1 for a simulated participant, 0 for a person
task                   ``2afc`` | ``labelling`` | ``mistake`` | ``rating``
n_options              the number of answer options (chance = 1 / n_options); empty for ratings
position               0-based position of the trial in the participant's sequence
repeat_of              for a ``repeated`` trial, the ``trial_id`` it repeats
truth                  the right answer, where there is one
shown_at, answered_at  ISO 8601 UTC timestamps
instructions_s         seconds the participant spent on the instructions (per participant)
session_started_at     ISO 8601 UTC, when the participant's session began (per participant)
session_completed_at   ISO 8601 UTC, when the participant finished; empty if they did not
=====================  ===========================================================================
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from neuroinspect.errors import UserError

REQUIRED: tuple[str, ...] = (
    "participant",
    "condition",
    "unit",
    "trial_id",
    "trial_kind",
    "block",
    "response",
    "correct",
    "confidence",
    "rt_s",
)
OPTIONAL: tuple[str, ...] = (
    "study_id",
    "simulated",
    "task",
    "n_options",
    "position",
    "repeat_of",
    "truth",
    "shown_at",
    "answered_at",
    "instructions_s",
    "session_started_at",
    "session_completed_at",
)
COLUMNS: tuple[str, ...] = REQUIRED + OPTIONAL
TRIAL_KINDS: tuple[str, ...] = ("main", "practice", "catch", "repeated")
TASKS: tuple[str, ...] = ("2afc", "labelling", "mistake", "rating")

_STRING = (
    "participant",
    "condition",
    "unit",
    "trial_id",
    "trial_kind",
    "response",
    "study_id",
    "task",
    "repeat_of",
    "truth",
)
_NUMERIC = ("block", "correct", "confidence", "rt_s", "simulated", "n_options", "position", "instructions_s")
_TIMES = ("shown_at", "answered_at", "session_started_at", "session_completed_at")


def normalize_responses(df: Any, source: str = "the response table") -> Any:
    """Check and coerce a long-format response table (a pandas DataFrame); returns a new DataFrame
    with every column of :data:`COLUMNS` (optional ones filled with nulls), numeric columns as floats,
    timestamps as UTC datetimes. Raises :class:`UserError` naming the column and the fix."""
    import pandas as pd

    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise UserError(
            f"{source} lacks the column(s) {', '.join(missing)}; a response table needs "
            f"{', '.join(REQUIRED)} (see `neuroinspect study export` and the README's column list)."
        )
    out = df.copy()
    for col in OPTIONAL:
        if col not in out.columns:
            out[col] = None
    for col in _STRING:
        out[col] = out[col].map(lambda v: None if v is None or (isinstance(v, float) and v != v) else str(v))
    for col in _NUMERIC:
        converted = pd.to_numeric(out[col], errors="coerce")
        bad = converted.isna() & out[col].notna() & (out[col].astype(str).str.strip() != "")
        if bool(bad.any()):
            row = int(bad.to_numpy().nonzero()[0][0])
            raise UserError(
                f"{source}: column '{col}' must be numeric; row {row + 1} has {out[col].iloc[row]!r}."
            )
        out[col] = converted.astype(float)
    for col in _TIMES:
        try:
            out[col] = pd.to_datetime(out[col], utc=True, errors="raise", format="ISO8601")
        except (ValueError, TypeError) as err:
            raise UserError(f"{source}: column '{col}' must hold ISO 8601 timestamps ({err}).") from None
    kinds = set(out["trial_kind"].dropna()) - set(TRIAL_KINDS)
    if kinds:
        raise UserError(
            f"{source}: unknown trial_kind {sorted(kinds)[0]!r}; use one of {', '.join(TRIAL_KINDS)}."
        )
    tasks = set(out["task"].dropna()) - set(TASKS)
    if tasks:
        raise UserError(f"{source}: unknown task {sorted(tasks)[0]!r}; use one of {', '.join(TASKS)}.")
    correct = out["correct"].dropna()
    if not correct.isin([0.0, 1.0]).all():
        raise UserError(f"{source}: column 'correct' must be 1, 0 or empty.")
    if out["participant"].isna().any():
        raise UserError(f"{source}: every row needs a participant id.")
    return out[list(COLUMNS) + [c for c in out.columns if c not in COLUMNS]]


def read_responses(path: str | Path) -> Any:
    """Read a long-format response CSV (see the module docstring) into a normalized DataFrame."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"response file {path} does not exist; write one with `neuroinspect study export SPEC --out {path}`."
        )
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as err:
        raise UserError(f"could not read {path} as CSV: {err}") from None
    return normalize_responses(df, source=str(path))
