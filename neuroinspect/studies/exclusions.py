"""Participant exclusion rules, shared by the study app's admin page and the analysis.

Rules follow the checks of the published crowdsourced interpretability studies (Zimmermann et al.,
NeurIPS'21: instruction time, total time bounds, answer variability, catch-trial pass rate; Borowski
et al., ICLR'21: catch trials) plus a too-fast rule. A rule set to ``None`` (or ``False``) is off.
Rules are computed per participant on the long-format response table
(:mod:`neuroinspect.studies.responses`); a rule whose inputs are absent from the table (no catch
trials, no timestamps) is not applied to that participant and says so in :attr:`ExclusionResult.notes`.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from neuroinspect.errors import UserError


@dataclass(frozen=True)
class ExclusionRules:
    """Who is left out of the analysis, and why (units: seconds and fractions)."""

    #: least fraction of catch trials answered correctly
    min_catch_accuracy: float | None = 0.75
    #: bounds on a participant's total time (first trial shown to last answer, or session start to end)
    min_total_time_s: float | None = None
    max_total_time_s: float | None = None
    #: bounds on the time spent on the instructions page
    min_instruction_time_s: float | None = None
    max_instruction_time_s: float | None = None
    #: a main or repeated response faster than this is "too fast" ...
    too_fast_s: float | None = 0.3
    #: ... and a participant with more than this fraction of too-fast responses is excluded
    max_too_fast_fraction: float | None = 0.2
    #: the same answer on every main trial (no variability; needs at least 3 main trials)
    exclude_constant: bool = True
    #: leave out participants who did not reach the end (where completion times are recorded)
    require_complete: bool = True

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], where: str = "[exclusions]") -> ExclusionRules:
        """Rules from a TOML table; a :class:`UserError` names an unknown key, a wrong type or range."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        out: dict[str, Any] = {}
        for key, value in values.items():
            if key not in fields:
                close = difflib.get_close_matches(key, fields, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise UserError(f"{where}: unknown key {key!r}.{hint} Known keys: {', '.join(fields)}.")
            if key in ("exclude_constant", "require_complete"):
                if not isinstance(value, bool):
                    raise UserError(f"{where}: {key} must be true or false, got {value!r}.")
            elif value is not None:
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                    raise UserError(
                        f"{where}: {key} must be a non-negative number (or left out to switch it off), got {value!r}."
                    )
                if key in ("min_catch_accuracy", "max_too_fast_fraction") and value > 1:
                    raise UserError(f"{where}: {key} is a fraction in [0, 1], got {value!r}.")
                value = float(value)
            out[key] = value
        rules = cls(**out)
        for low, high in (
            ("min_total_time_s", "max_total_time_s"),
            ("min_instruction_time_s", "max_instruction_time_s"),
        ):
            lo, hi = getattr(rules, low), getattr(rules, high)
            if lo is not None and hi is not None and lo > hi:
                raise UserError(f"{where}: {low} ({lo}) is above {high} ({hi}); swap them.")
        return rules

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def describe(self) -> list[str]:
        """The rules in words, one line each (for reports)."""
        lines = []
        if self.min_catch_accuracy is not None:
            lines.append(f"fewer than {100 * self.min_catch_accuracy:.0f}% of catch trials correct")
        if self.min_total_time_s is not None:
            lines.append(f"total time under {self.min_total_time_s:g} s")
        if self.max_total_time_s is not None:
            lines.append(f"total time over {self.max_total_time_s:g} s")
        if self.min_instruction_time_s is not None:
            lines.append(f"under {self.min_instruction_time_s:g} s on the instructions")
        if self.max_instruction_time_s is not None:
            lines.append(f"over {self.max_instruction_time_s:g} s on the instructions")
        if self.too_fast_s is not None and self.max_too_fast_fraction is not None:
            lines.append(
                f"more than {100 * self.max_too_fast_fraction:.0f}% of responses faster than {self.too_fast_s:g} s"
            )
        if self.exclude_constant:
            lines.append("the same answer on every main trial")
        if self.require_complete:
            lines.append("did not finish the study")
        return lines


@dataclass
class ExclusionResult:
    """``kept``: the rows of participants who pass every rule; ``excluded``: one row per
    (participant, rule broken) with a ``detail`` in words; ``notes``: rules that could not be applied."""

    kept: Any
    excluded: Any
    notes: list[str] = field(default_factory=list)

    @property
    def excluded_participants(self) -> list[str]:
        return sorted(set(self.excluded["participant"]))

    def reasons(self) -> dict[str, list[str]]:
        """participant -> the rules they broke."""
        out: dict[str, list[str]] = {}
        for row in self.excluded.itertuples(index=False):
            out.setdefault(str(row.participant), []).append(str(row.rule))
        return out


MAIN_KINDS = ("main", "repeated")


def apply_exclusions(df: Any, rules: ExclusionRules) -> ExclusionResult:
    """Apply ``rules`` to a normalized long-format table (:func:`~neuroinspect.studies.responses.normalize_responses`).

    Practice trials count for nothing but the timing of the session.
    """
    import pandas as pd

    rows: list[dict[str, str]] = []
    notes: list[str] = []
    unapplied: dict[str, int] = {}

    def flag(pid: str, rule: str, detail: str) -> None:
        rows.append({"participant": pid, "rule": rule, "detail": detail})

    has_completion = bool(df["session_completed_at"].notna().any())
    for pid, part in df.groupby("participant", sort=True):
        pid = str(pid)
        main = part[part["trial_kind"].isin(MAIN_KINDS)]
        if rules.min_catch_accuracy is not None:
            catch = part[part["trial_kind"] == "catch"]["correct"].dropna()
            if len(catch):
                acc = float(catch.mean())
                if acc < rules.min_catch_accuracy:
                    flag(pid, "catch_accuracy", f"{int(catch.sum())}/{len(catch)} catch trials correct")
            else:
                unapplied["catch_accuracy"] = unapplied.get("catch_accuracy", 0) + 1
        if rules.min_total_time_s is not None or rules.max_total_time_s is not None:
            total = _total_time(part)
            if total is None:
                unapplied["total_time"] = unapplied.get("total_time", 0) + 1
            else:
                if rules.min_total_time_s is not None and total < rules.min_total_time_s:
                    flag(pid, "total_time", f"{total:.0f} s in total (< {rules.min_total_time_s:g} s)")
                if rules.max_total_time_s is not None and total > rules.max_total_time_s:
                    flag(pid, "total_time", f"{total:.0f} s in total (> {rules.max_total_time_s:g} s)")
        if rules.min_instruction_time_s is not None or rules.max_instruction_time_s is not None:
            inst = part["instructions_s"].dropna()
            if len(inst):
                spent = float(inst.iloc[0])
                if rules.min_instruction_time_s is not None and spent < rules.min_instruction_time_s:
                    flag(
                        pid,
                        "instruction_time",
                        f"{spent:.1f} s on the instructions (< {rules.min_instruction_time_s:g} s)",
                    )
                if rules.max_instruction_time_s is not None and spent > rules.max_instruction_time_s:
                    flag(
                        pid,
                        "instruction_time",
                        f"{spent:.1f} s on the instructions (> {rules.max_instruction_time_s:g} s)",
                    )
            else:
                unapplied["instruction_time"] = unapplied.get("instruction_time", 0) + 1
        if rules.too_fast_s is not None and rules.max_too_fast_fraction is not None:
            rts = main["rt_s"].dropna()
            if len(rts):
                frac = float((rts < rules.too_fast_s).mean())
                if frac > rules.max_too_fast_fraction:
                    flag(
                        pid,
                        "too_fast",
                        f"{100 * frac:.0f}% of responses faster than {rules.too_fast_s:g} s",
                    )
        if rules.exclude_constant:
            answers = part[part["trial_kind"] == "main"]["response"].dropna()
            if len(answers) >= 3 and answers.nunique() == 1:
                flag(pid, "constant", f"answered {answers.iloc[0]!r} on all {len(answers)} main trials")
        if rules.require_complete and has_completion and part["session_completed_at"].isna().all():
            flag(pid, "incomplete", f"did not finish ({len(main)} main trials answered)")
    for rule, n in sorted(unapplied.items()):
        notes.append(f"rule '{rule}' not applied to {n} participant(s): the table lacks its inputs")
    excluded = pd.DataFrame(rows, columns=["participant", "rule", "detail"])
    kept = df[~df["participant"].isin(set(excluded["participant"]))].copy()
    return ExclusionResult(kept=kept, excluded=excluded, notes=notes)


def _total_time(part: Any) -> float | None:
    """Seconds from session start (or first trial shown) to session end (or last answer)."""
    start = part["session_started_at"].dropna()
    end = part["session_completed_at"].dropna()
    if len(start) and len(end):
        return float((end.iloc[0] - start.iloc[0]).total_seconds())
    shown = part["shown_at"].dropna()
    answered = part["answered_at"].dropna()
    if len(shown) and len(answered):
        return float((answered.max() - shown.min()).total_seconds())
    return None
