"""Reading a study's database back: the long-format response table, neuron labels, and a status summary.

- :func:`responses_frame` (``study export --out``): one row per response, exactly the columns of
  :mod:`neuroinspect.studies.responses` (required and optional), normalized; the analysis reads it.
- :func:`labels_frame` (``study export --labels``): the neuron-labelling answers as the labels file
  that the debugging pipeline's ``labels`` selector reads: ``neuron,label,class_idx,n_votes,agreement``
  with ``label`` = ``spurious`` (the majority said background), ``core`` (object) or ``unclear`` (both,
  neither, or a tie); ``class_idx`` empty when the units carry no class. Votes come from main and
  repeated trials under the explanation conditions (not the baseline, where people guess), from the
  participants the spec's exclusion rules keep.
- :func:`study_status` (``study status`` and the admin page): participants started, in progress,
  completed, timed out, declined and excluded; responses per condition.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from neuroinspect.errors import UserError
from neuroinspect.fileio import atomic_write_text
from neuroinspect.studies import storage as db
from neuroinspect.studies.responses import COLUMNS, normalize_responses
from neuroinspect.studies.spec import StudySpec

LABELS_HEADER = ("neuron", "label", "class_idx", "n_votes", "agreement")
_ANSWER_TO_LABEL = {"background": "spurious", "object": "core", "both": "unclear", "neither": "unclear"}
_UNIT_RE = re.compile(r"^neuron:(\d+)(?:/class:(\d+))?$")


def _iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def raw_frame(spec: StudySpec, store: db.Store | None = None) -> Any:
    """The response table as stored (timestamps as ISO 8601 strings, integers as nullable ints), all participants."""
    import pandas as pd

    store = store or db.open_store(spec.database_url)
    p, a, r = db.participant, db.assignment, db.response
    q = (
        sa.select(
            p.c.participant_id,
            a.c.condition,
            a.c.unit,
            r.c.trial_id,
            a.c.kind,
            a.c.block,
            r.c.response,
            r.c.correct,
            r.c.confidence,
            r.c.rt_s,
            p.c.study_id,
            p.c.simulated,
            r.c.position,
            a.c.repeat_of,
            a.c.truth,
            r.c.shown_at,
            r.c.answered_at,
            p.c.instructions_s,
            p.c.created_at,
            p.c.completed_at,
        )
        .select_from(
            r.join(p, p.c.pk == r.c.participant_pk).join(
                a, sa.and_(a.c.participant_pk == r.c.participant_pk, a.c.trial_id == r.c.trial_id)
            )
        )
        .where(p.c.study_id == spec.id)
        .order_by(p.c.participant_id, r.c.position)
    )
    with store.read() as conn:
        rows = conn.execute(q).all()
    n_options = spec.n_options
    records = [
        {
            "participant": x.participant_id,
            "condition": x.condition,
            "unit": x.unit,
            "trial_id": x.trial_id,
            "trial_kind": x.kind,
            "block": x.block,
            "response": x.response,
            "correct": x.correct,
            "confidence": x.confidence,
            "rt_s": float(x.rt_s),
            "study_id": x.study_id,
            "simulated": int(bool(x.simulated)),
            "task": spec.task,
            "n_options": n_options,
            "position": x.position,
            "repeat_of": x.repeat_of,
            "truth": x.truth,
            "shown_at": _iso(x.shown_at),
            "answered_at": _iso(x.answered_at),
            "instructions_s": x.instructions_s,
            "session_started_at": _iso(x.created_at),
            "session_completed_at": _iso(x.completed_at),
        }
        for x in rows
    ]
    df = pd.DataFrame.from_records(records, columns=list(COLUMNS))
    for col in ("block", "correct", "confidence", "simulated", "n_options", "position"):
        df[col] = pd.array(df[col].tolist(), dtype="Int64") if len(df) else df[col].astype("Int64")
    return df


def responses_frame(spec: StudySpec, store: db.Store | None = None) -> Any:
    """The normalized long-format response table (:func:`~neuroinspect.studies.responses.normalize_responses`)
    of every participant of ``spec``, read from the spec's database."""
    return normalize_responses(raw_frame(spec, store), source=f"the database of study {spec.id}")


def write_responses_csv(
    spec: StudySpec, out: str | Path, *, overwrite: bool = False, store: db.Store | None = None
) -> tuple[Path, int]:
    """Write the response table to ``out`` (atomically; never over an existing file unless ``overwrite``)."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise UserError(f"--out {out} already exists. Pass --overwrite to replace it, or another file name.")
    df = raw_frame(spec, store)
    normalize_responses(df, source=f"the database of study {spec.id}")  # the contract holds before writing
    buf = io.StringIO()
    df.to_csv(buf, index=False, lineterminator="\n")
    atomic_write_text(out, buf.getvalue())
    return out, len(df)


def labels_frame(
    spec: StudySpec,
    *,
    conditions: list[str] | None = None,
    apply_rules: bool = True,
    store: db.Store | None = None,
) -> Any:
    """The labels file (module docstring) as a DataFrame with :data:`LABELS_HEADER` columns."""
    import pandas as pd

    from neuroinspect.studies.exclusions import apply_exclusions

    if spec.task != "labelling":
        raise UserError(
            f'--labels needs a neuron-labelling study (task = "labelling"); {spec.path.name} is a {spec.task!r} study.'
        )
    df = responses_frame(spec, store)
    if apply_rules and len(df):
        df = apply_exclusions(df, spec.exclusions).kept
    if conditions:
        unknown = [c for c in conditions if c not in spec.condition_names]
        if unknown:
            raise UserError(
                f"--condition {unknown[0]!r} is not a condition of the study ({', '.join(spec.condition_names)})."
            )
        keep = set(conditions)
    else:
        keep = {c.name for c in spec.conditions if not c.baseline}
    votes = df[df["trial_kind"].isin(["main", "repeated"]) & df["condition"].isin(keep)]
    votes = votes[votes["response"].isin(list(_ANSWER_TO_LABEL))]
    rows = []
    for unit, part in votes.groupby("unit", sort=False):
        m = _UNIT_RE.match(str(unit))
        if m is None:
            continue
        counts = part["response"].map(_ANSWER_TO_LABEL).value_counts()
        top = int(counts.max())
        leaders = sorted(counts[counts == top].index)
        label = leaders[0] if len(leaders) == 1 else "unclear"
        rows.append(
            {
                "neuron": int(m.group(1)),
                "label": label,
                "class_idx": "" if m.group(2) is None else int(m.group(2)),
                "n_votes": int(len(part)),
                "agreement": round(top / len(part), 4),
            }
        )
    out = pd.DataFrame(rows, columns=list(LABELS_HEADER))
    return (
        out.sort_values(["neuron", "class_idx"], key=lambda s: s.astype(str)).reset_index(drop=True)
        if len(out)
        else out
    )


def write_labels_csv(
    spec: StudySpec, out: str | Path, *, overwrite: bool = False, **kwargs: Any
) -> tuple[Path, int]:
    """Write the labels file (:func:`labels_frame`) to ``out`` (atomically; never over an existing file
    unless ``overwrite``)."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise UserError(
            f"--labels {out} already exists. Pass --overwrite to replace it, or another file name."
        )
    df = labels_frame(spec, **kwargs)
    buf = io.StringIO()
    df.to_csv(buf, index=False, lineterminator="\n")
    atomic_write_text(out, buf.getvalue())
    return out, len(df)


def _latest(*times: dt.datetime | None) -> dt.datetime | None:
    # SQLite hands back naive UTC datetimes, PostgreSQL aware ones: compare them as UTC
    aware = [t if t.tzinfo else t.replace(tzinfo=dt.UTC) for t in times if t is not None]
    return max(aware) if aware else None


def study_status(spec: StudySpec, store: db.Store | None = None) -> dict[str, Any]:
    """Counts for ``study status`` and the admin page (module docstring)."""
    from neuroinspect.studies.exclusions import apply_exclusions

    store = store or db.open_store(spec.database_url)
    p, r = db.participant, db.response
    with store.read() as conn:
        parts = conn.execute(sa.select(p).where(p.c.study_id == spec.id).order_by(p.c.created_at)).all()
        answered: dict[int, tuple[int, dt.datetime | None]] = {
            pk: (int(n), last)
            for pk, n, last in conn.execute(
                sa.select(r.c.participant_pk, sa.func.count(), sa.func.max(r.c.answered_at))
                .select_from(r.join(p, p.c.pk == r.c.participant_pk))
                .where(p.c.study_id == spec.id)
                .group_by(r.c.participant_pk)
            ).all()
        }
        totals: dict[int, int] = dict(
            conn.execute(
                sa.select(db.assignment.c.participant_pk, sa.func.count())
                .select_from(db.assignment.join(p, p.c.pk == db.assignment.c.participant_pk))
                .where(p.c.study_id == spec.id)
                .group_by(db.assignment.c.participant_pk)
            ).all()
        )
    df = responses_frame(spec, store)
    excluded: dict[str, list[str]] = {}
    notes: list[str] = []
    if len(df):
        res = apply_exclusions(df, spec.exclusions)
        excluded = res.reasons()
        notes = res.notes
    rows = []
    for x in parts:
        state = (
            "complete"
            if x.completed_at
            else "declined"
            if x.declined_at
            else "timed out"
            if x.timed_out_at
            else "in progress"
        )
        rows.append(
            {
                "participant": x.participant_id,
                "simulated": bool(x.simulated),
                "observer": x.observer,
                "state": state,
                "answered": answered.get(x.pk, (0, None))[0],
                "trials": int(totals.get(x.pk, 0)),
                "started": _iso(x.created_at),
                # the latest visit, answer or completion (answers do not touch the participant row)
                "last_seen": _iso(_latest(x.last_seen_at, answered.get(x.pk, (0, None))[1], x.completed_at)),
                "excluded": ", ".join(excluded.get(x.participant_id, [])),
            }
        )
    per_condition = []
    if len(df):
        main = df[df["trial_kind"].isin(["main", "repeated"])]
        kept = set(df["participant"]) - set(excluded)
        for cond, part in main.groupby("condition", sort=True):
            k = part[part["participant"].isin(kept)]
            acc = k["correct"].dropna()
            per_condition.append(
                {
                    "condition": cond,
                    "responses": int(len(part)),
                    "kept": int(len(k)),
                    "accuracy_kept": None if acc.empty else round(float(acc.mean()), 4),
                }
            )
    return {
        "study_id": spec.id,
        "participants": len(rows),
        "complete": sum(1 for x in rows if x["state"] == "complete"),
        "in_progress": sum(1 for x in rows if x["state"] == "in progress"),
        "timed_out": sum(1 for x in rows if x["state"] == "timed out"),
        "declined": sum(1 for x in rows if x["state"] == "declined"),
        "simulated": sum(1 for x in rows if x["simulated"]),
        "excluded": len(excluded),
        "exclusion_notes": notes,
        "responses": int(len(df)),
        "per_condition": per_condition,
        "rows": rows,
    }
