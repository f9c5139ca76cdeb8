"""Session logic: one participant's way through a study, on the database, the same for people and simulations.

The Streamlit app and the simulated participants both go through :class:`StudyRuntime`; nothing a
participant has done lives only in a browser session:

- :meth:`StudyRuntime.enter`: the first visit of a participant id creates the participant, draws the
  next Latin-square row (an atomic counter in the ``study`` row), writes the whole trial sequence to
  ``assignment`` and issues a **resume token** (only its sha256 is stored). A later visit must bring the
  token back: an id without its token cannot resume (or see) someone else's session.
- :meth:`StudyRuntime.stage`: where the participant is (consent, instructions, trial, questionnaire,
  complete, declined, timed_out), derived from the database each time.
- :meth:`StudyRuntime.current_trial`: the next unanswered trial; the first time it is shown, its
  ``shown_at`` is written (server clock), so a reload does not reset the response time.
- :meth:`StudyRuntime.answer`: one transaction; the answer is committed when given. The response
  table is unique on (participant, trial): a double click, a resubmission or a retry writes nothing
  new and is reported as a duplicate. ``rt_s`` = answer time − first shown time, both server-side.

The trial sequence (:func:`trial_sequence`): practice trials first; then one block per condition in
the participant's counterbalanced order (a balanced Latin square, Williams design, over the
assignment index); within a block the units are shuffled (seeded by the study seed and the index)
and each block gets its share of the catch trials at seeded positions; repeated trials (test-retest)
of main trials close the sequence. Units rotate through conditions with the index: condition k of
participant m shows units ``U[(m·T + k·T + j) mod |U|]``, j < T, so with at least K·T units nobody sees
a unit twice in main trials and, over participants, every unit appears under every condition.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import sqlalchemy as sa

from neuroinspect.errors import UserError
from neuroinspect.studies import storage as db
from neuroinspect.studies.bundle import Bundle
from neuroinspect.studies.spec import StudySpec
from neuroinspect.studies.tasks import get_task

PID_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
ML_EXPERIENCE = ("none", "some", "regular", "expert")
STAGES = ("consent", "instructions", "trial", "questionnaire", "complete", "declined", "timed_out")
TIMEOUT_RESPONSE = "timeout"


class AccessDenied(UserError):
    """A participant id that exists, without its resume token (or with a wrong one)."""


class InvalidParticipant(UserError):
    """A participant id with characters or a length a panel would never send."""


# -- counterbalancing ----------------------------------------------------------------------------------
def latin_square(k: int) -> list[list[int]]:
    """A balanced Latin square (Williams design) for ``k`` conditions: ``k`` rows for even ``k``, ``2k``
    (each row and its reverse) for odd ``k``. Every condition appears once per row and once in every
    position per ``k`` rows, and (first-order) every condition follows every other equally often."""
    if k < 1:
        return []
    first = [0]
    lo, hi = 1, k - 1
    for i in range(1, k):
        if i % 2 == 1:
            first.append(lo)
            lo += 1
        else:
            first.append(hi)
            hi -= 1
    rows = [[(c + r) % k for c in first] for r in range(k)]
    if k % 2 == 1:
        rows += [list(reversed(r)) for r in rows]
    return rows


def condition_order(index: int, n_conditions: int, counterbalance: str) -> list[int]:
    if counterbalance == "none" or n_conditions < 2:
        return list(range(n_conditions))
    rows = latin_square(n_conditions)
    return rows[index % len(rows)]


def _rng(*keys: Any) -> np.random.Generator:
    digest = hashlib.sha256(json.dumps(keys, default=str).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def trial_sequence(spec: StudySpec, bundle: Bundle, index: int) -> tuple[list[str], list[dict[str, Any]]]:
    """(condition order by name, the assignment rows) of the participant with assignment ``index``."""
    conds = [c["name"] for c in bundle.conditions]
    order = condition_order(index, len(conds), spec.design.counterbalance)
    units = bundle.main_units
    T = spec.design.trials_per_condition
    rows: list[dict[str, Any]] = []
    trials = bundle.trials

    def row(trial_id: str, kind: str, block: int | None, source: str | None = None) -> dict[str, Any]:
        t = trials[source or trial_id]
        return {
            "trial_id": trial_id,
            "source_trial_id": source or trial_id,
            "kind": kind,
            "block": block,
            "condition": t["condition"],
            "unit": t["unit"],
            "repeat_of": source,
            "truth": t.get("truth"),
        }

    for tid in bundle.trials_of_kind("practice"):
        rows.append(row(tid, "practice", None))
    blocks: list[list[dict[str, Any]]] = []
    for b, k in enumerate(order):
        picked = [units[(index * T + k * T + j) % len(units)] for j in range(T)]
        picked = list(dict.fromkeys(picked))  # fewer units than K*T: never the same unit twice in a block
        perm = _rng(spec.seed, "block", index, b).permutation(len(picked))
        block = []
        for p in perm.tolist():
            for tid in bundle.main_trials(conds[k], picked[p]):
                block.append(row(tid, "main", b))
        blocks.append(block)
    catch = bundle.trials_of_kind("catch")
    for j, tid in enumerate(catch):
        b = j % len(blocks)
        rng = _rng(spec.seed, "catch", index, j)
        pos = int(rng.integers(1, len(blocks[b]) + 1)) if blocks[b] else 0
        blocks[b].insert(pos, row(tid, "catch", b))
    mains = [r for block in blocks for r in block if r["kind"] == "main"]
    for block in blocks:
        rows.extend(block)
    R = min(spec.design.repeated_trials, len(mains))
    if R:
        # spread over the sequence: every len/R-th main trial, starting at a seeded offset
        step = len(mains) / R
        start = float(_rng(spec.seed, "repeat", index).random()) * step
        for i in range(R):
            orig = mains[min(len(mains) - 1, int(start + i * step))]
            r = row(f"repeat/{orig['trial_id']}", "repeated", orig["block"], source=orig["trial_id"])
            r["repeat_of"] = orig["trial_id"]
            rows.append(r)
    for pos, r in enumerate(rows):
        r["position"] = pos
    return [conds[k] for k in order], rows


# -- what the app and the simulator see --------------------------------------------------------------------
class _Answer(NamedTuple):
    """The stored answer to a trial (what a resubmission gets back)."""

    response: str
    correct: int | None
    rt_s: float


@dataclass
class Participant:
    pk: int
    participant_id: str
    study_id: str
    assignment_index: int
    condition_order: list[str]
    simulated: bool
    created_at: dt.datetime
    consented_at: dt.datetime | None
    declined_at: dt.datetime | None
    instructions_shown_at: dt.datetime | None
    instructions_done_at: dt.datetime | None
    instructions_s: float | None
    questionnaire_at: dt.datetime | None
    completed_at: dt.datetime | None
    timed_out_at: dt.datetime | None

    @classmethod
    def from_row(cls, r: Any) -> Participant:
        return cls(
            pk=int(r.pk),
            participant_id=r.participant_id,
            study_id=r.study_id,
            assignment_index=int(r.assignment_index),
            condition_order=json.loads(r.condition_order),
            simulated=bool(r.simulated),
            created_at=r.created_at,
            consented_at=r.consented_at,
            declined_at=r.declined_at,
            instructions_shown_at=r.instructions_shown_at,
            instructions_done_at=r.instructions_done_at,
            instructions_s=r.instructions_s,
            questionnaire_at=r.questionnaire_at,
            completed_at=r.completed_at,
            timed_out_at=r.timed_out_at,
        )


@dataclass
class Entry:
    participant: Participant
    token: str
    created: bool


@dataclass
class TrialView:
    """The trial to show: its place in the sequence and its content (the manifest's trial entry)."""

    position: int
    trial_id: str
    kind: str
    block: int | None
    condition: str
    unit: str
    repeat_of: str | None
    shown_at: dt.datetime
    trial: dict[str, Any]
    answered: int
    total: int
    practice_number: int | None
    practice_total: int


@dataclass
class AnswerResult:
    recorded: bool
    duplicate: bool
    trial_id: str
    kind: str
    response: str
    correct: int | None
    truth: str | None
    rt_s: float
    timed_out: bool = False


def _nonempty(value: str | None, limit: int = 64) -> str | None:
    if value is None:
        return None
    v = str(value).strip()
    return v[:limit] if v else None


class StudyRuntime:
    """A study's spec, bundle and database, with the session logic (module docstring).

    ``clock``: where "now" comes from (the server's UTC clock; the simulator passes each method an
    explicit ``now`` instead, its participants' virtual time).
    """

    def __init__(
        self,
        spec: StudySpec,
        bundle: Bundle,
        store: db.Store,
        clock: Callable[[], dt.datetime] = db.utcnow,
    ) -> None:
        self.spec = spec
        self.bundle = bundle
        self.store = store
        self.clock = clock
        self.task = get_task(spec.task)
        self.study_id = spec.id
        self._register()

    # -- the study row -----------------------------------------------------------------------------------
    def _register(self) -> None:
        s = db.study
        for _ in range(2):
            with self.store.read() as conn:
                row = conn.execute(sa.select(s).where(s.c.id == self.study_id)).first()
            if row is not None and row.bundle_hash == self.bundle.hash:
                return
            try:
                with self.store.write() as conn:
                    if row is None:
                        conn.execute(
                            s.insert().values(
                                id=self.study_id,
                                title=self.spec.title,
                                task=self.spec.task,
                                bundle_hash=self.bundle.hash,
                                n_assigned=0,
                                created_at=self.clock(),
                            )
                        )
                    else:
                        n = conn.execute(
                            sa.select(sa.func.count())
                            .select_from(db.participant)
                            .where(db.participant.c.study_id == self.study_id)
                        ).scalar_one()
                        if n:
                            raise UserError(
                                f"the database {self.store.masked} holds {n} participant(s) of study {self.study_id!r} "
                                f"who saw another bundle (hash {row.bundle_hash[:12]}, now {self.bundle.hash[:12]}); "
                                "give the rebuilt study a new database_url (or a new id) so their answers stay interpretable."
                            )
                        conn.execute(
                            s.update().where(s.c.id == self.study_id).values(bundle_hash=self.bundle.hash)
                        )
                        conn.execute(db.trial.delete().where(db.trial.c.study_id == self.study_id))
                    conn.execute(
                        db.trial.insert(),
                        [
                            {
                                "study_id": self.study_id,
                                "trial_id": t["trial_id"],
                                "kind": t["kind"],
                                "condition": t["condition"],
                                "unit": t["unit"],
                                "truth": t.get("truth"),
                            }
                            for t in self.bundle.manifest["trials"]
                        ],
                    )
                return
            except sa.exc.IntegrityError:
                continue  # another process registered the study at the same moment: read it again

    def log_event(
        self, kind: str, participant_pk: int | None = None, detail: Any = None, now: dt.datetime | None = None
    ) -> None:
        with self.store.write() as conn:
            self._event(conn, kind, participant_pk, detail, now)

    def _event(
        self, conn: Any, kind: str, participant_pk: int | None, detail: Any, now: dt.datetime | None
    ) -> None:
        conn.execute(
            db.event.insert().values(
                study_id=self.study_id,
                participant_pk=participant_pk,
                at=now or self.clock(),
                kind=kind,
                detail=None if detail is None else json.dumps(detail, default=str)[:4000],
            )
        )

    # -- participants ---------------------------------------------------------------------------------------
    def _participant(self, conn: Any, pid: str) -> Any:
        p = db.participant
        return conn.execute(
            sa.select(p).where(p.c.study_id == self.study_id, p.c.participant_id == pid)
        ).first()

    def refresh(self, participant: Participant) -> Participant:
        p = db.participant
        with self.store.read() as conn:
            row = conn.execute(sa.select(p).where(p.c.pk == participant.pk)).first()
        return Participant.from_row(row)

    def enter(
        self,
        participant_id: str,
        token: str | None = None,
        *,
        prolific_study_id: str | None = None,
        prolific_session_id: str | None = None,
        simulated: bool = False,
        observer: str | None = None,
        now: dt.datetime | None = None,
    ) -> Entry:
        """Start (first visit) or resume (with the token) a participant's session; see the module docstring."""
        pid = str(participant_id or "").strip()
        if not PID_RE.match(pid):
            raise InvalidParticipant(
                "the participant id in the link is not valid (letters, digits, '_', '-', '.', '@'; at most 64); "
                "open the study from the link you were given."
            )
        now = now or self.clock()
        with self.store.read() as conn:
            row = self._participant(conn, pid)
        if row is None:
            token_new = secrets.token_urlsafe(18)
            try:
                with self.store.write() as conn:
                    n = conn.execute(
                        sa.update(db.study)
                        .where(db.study.c.id == self.study_id)
                        .values(n_assigned=db.study.c.n_assigned + 1)
                        .returning(db.study.c.n_assigned)
                    ).scalar_one()
                    index = int(n) - 1
                    order, rows = trial_sequence(self.spec, self.bundle, index)
                    pk = conn.execute(
                        db.participant.insert()
                        .values(
                            study_id=self.study_id,
                            participant_id=pid,
                            token_hash=db.token_hash(token_new),
                            assignment_index=index,
                            condition_order=json.dumps(order),
                            prolific_study_id=_nonempty(prolific_study_id),
                            prolific_session_id=_nonempty(prolific_session_id),
                            simulated=bool(simulated),
                            observer=observer,
                            created_at=now,
                            last_seen_at=now,
                        )
                        .returning(db.participant.c.pk)
                    ).scalar_one()
                    conn.execute(db.assignment.insert(), [{"participant_pk": pk, **r} for r in rows])
                    self._event(conn, "start", pk, {"assignment_index": index, "order": order}, now)
                    row = conn.execute(sa.select(db.participant).where(db.participant.c.pk == pk)).first()
                return Entry(Participant.from_row(row), token_new, created=True)
            except sa.exc.IntegrityError:
                with self.store.read() as conn:  # the same id arrived twice at once: the other visit won
                    row = self._participant(conn, pid)
                if row is None:
                    raise
        assert row is not None
        if not token or not hmac.compare_digest(db.token_hash(str(token)), row.token_hash):
            self.log_event("refused_token", int(row.pk), {"had_token": bool(token)}, now)
            raise AccessDenied(
                "this participant id already has a session, and this link does not carry its resume token. "
                "Continue in the browser tab where you started (or reload it); if you closed it, contact the "
                "researchers through the study page."
            )
        with self.store.write() as conn:
            conn.execute(
                db.participant.update().where(db.participant.c.pk == row.pk).values(last_seen_at=now)
            )
        return Entry(Participant.from_row(row), str(token), created=False)

    # -- where the participant is ------------------------------------------------------------------------------
    def _next(self, conn: Any, pk: int) -> tuple[Any, int, int]:
        a, r = db.assignment, db.response
        total = conn.execute(
            sa.select(sa.func.count()).select_from(a).where(a.c.participant_pk == pk)
        ).scalar_one()
        answered = conn.execute(
            sa.select(sa.func.count()).select_from(r).where(r.c.participant_pk == pk)
        ).scalar_one()
        nxt = conn.execute(
            sa.select(a)
            .select_from(
                a.outerjoin(
                    r, sa.and_(r.c.participant_pk == a.c.participant_pk, r.c.trial_id == a.c.trial_id)
                )
            )
            .where(a.c.participant_pk == pk, r.c.pk.is_(None))
            .order_by(a.c.position)
            .limit(1)
        ).first()
        return nxt, int(answered), int(total)

    def progress(self, participant: Participant) -> tuple[int, int]:
        with self.store.read() as conn:
            _, answered, total = self._next(conn, participant.pk)
        return answered, total

    def _time_is_up(self, p: Participant, now: dt.datetime) -> bool:
        limit = self.spec.design.total_time_limit_s
        start = p.consented_at or p.created_at
        return limit is not None and p.completed_at is None and (now - start).total_seconds() > limit

    def stage(self, participant: Participant, now: dt.datetime | None = None) -> str:
        p = self.refresh(participant)
        now = now or self.clock()
        if p.completed_at is not None:
            return "complete"
        if p.declined_at is not None:
            return "declined"
        if p.timed_out_at is not None:
            return "timed_out"
        if p.consented_at is None:
            return "consent"
        if self._time_is_up(p, now):
            with self.store.write() as conn:
                conn.execute(
                    db.participant.update()
                    .where(db.participant.c.pk == p.pk, db.participant.c.timed_out_at.is_(None))
                    .values(timed_out_at=now)
                )
                self._event(conn, "timed_out", p.pk, None, now)
            return "timed_out"
        if p.instructions_done_at is None:
            return "instructions"
        with self.store.read() as conn:
            nxt, _, _ = self._next(conn, p.pk)
        if nxt is not None:
            return "trial"
        if p.questionnaire_at is None and any(self.spec.questionnaire.values()):
            return "questionnaire"
        self.complete(p, now)
        return "complete"

    # -- consent and instructions ----------------------------------------------------------------------------------
    def consent(self, participant: Participant, agree: bool, now: dt.datetime | None = None) -> None:
        now = now or self.clock()
        col = "consented_at" if agree else "declined_at"
        pt = db.participant
        with self.store.write() as conn:
            res = conn.execute(
                pt.update()
                .where(pt.c.pk == participant.pk, pt.c.consented_at.is_(None), pt.c.declined_at.is_(None))
                .values(**{col: now})
            )
            if res.rowcount:
                self._event(conn, "consent" if agree else "declined", participant.pk, None, now)

    def show_instructions(self, participant: Participant, now: dt.datetime | None = None) -> None:
        pt = db.participant
        with self.store.write() as conn:
            conn.execute(
                pt.update()
                .where(pt.c.pk == participant.pk, pt.c.instructions_shown_at.is_(None))
                .values(instructions_shown_at=now or self.clock())
            )

    def finish_instructions(self, participant: Participant, now: dt.datetime | None = None) -> None:
        now = now or self.clock()
        pt = db.participant
        with self.store.write() as conn:
            row = conn.execute(sa.select(pt).where(pt.c.pk == participant.pk)).one()
            if row.instructions_done_at is not None:
                return
            shown = row.instructions_shown_at or now
            conn.execute(
                pt.update()
                .where(pt.c.pk == participant.pk)
                .values(
                    instructions_shown_at=shown,
                    instructions_done_at=now,
                    instructions_s=max(0.0, (now - shown).total_seconds()),
                )
            )

    # -- trials -------------------------------------------------------------------------------------------------------
    def current_trial(self, participant: Participant, now: dt.datetime | None = None) -> TrialView | None:
        """The next unanswered trial (``shown_at`` written the first time), or ``None`` when all are answered."""
        a = db.assignment
        with self.store.read() as conn:
            nxt, answered, total = self._next(conn, participant.pk)
        if nxt is None:
            return None
        shown = nxt.shown_at
        if shown is None:
            with self.store.write() as conn:
                conn.execute(
                    a.update()
                    .where(
                        a.c.participant_pk == participant.pk,
                        a.c.position == nxt.position,
                        a.c.shown_at.is_(None),
                    )
                    .values(shown_at=now or self.clock())
                )
                shown = conn.execute(
                    sa.select(a.c.shown_at).where(
                        a.c.participant_pk == participant.pk, a.c.position == nxt.position
                    )
                ).scalar_one()
        n_practice = len(self.bundle.trials_of_kind("practice"))
        return TrialView(
            position=int(nxt.position),
            trial_id=nxt.trial_id,
            kind=nxt.kind,
            block=nxt.block,
            condition=nxt.condition,
            unit=nxt.unit,
            repeat_of=nxt.repeat_of,
            shown_at=shown,
            trial=self.bundle.trials[nxt.source_trial_id],
            answered=answered,
            total=total,
            practice_number=int(nxt.position) + 1 if nxt.kind == "practice" else None,
            practice_total=n_practice,
        )

    def check_answer(self, trial: dict[str, Any], response: str, confidence: int | None) -> None:
        values = [str(o[0]) for o in trial["options"]]
        if str(response) not in values:
            raise UserError(f"answer {response!r} is not one of this trial's options ({', '.join(values)}).")
        levels = int(trial.get("confidence") or 0)
        if levels and confidence is not None and not 1 <= int(confidence) <= levels:
            raise UserError(f"confidence must be between 1 and {levels}, got {confidence}.")
        if levels and confidence is None:
            raise UserError("this trial asks for a confidence rating; choose one.")

    def answer(
        self,
        participant: Participant,
        trial_id: str,
        response: str,
        confidence: int | None = None,
        now: dt.datetime | None = None,
    ) -> AnswerResult:
        """Record an answer (committed before this returns); a second answer to the same trial writes nothing.

        One read (the assignment row, with its first-shown time, and any answer it has: one query),
        then one write transaction holding a single ``INSERT ... ON CONFLICT DO NOTHING``: the unique
        (participant, trial) key decides between a new answer and a duplicate, even when both arrive at
        the same moment.
        """
        a, r = db.assignment, db.response
        with self.store.read() as conn:
            row = conn.execute(
                sa.select(
                    a,
                    r.c.pk.label("answer_pk"),
                    r.c.response.label("answer_response"),
                    r.c.correct.label("answer_correct"),
                    r.c.rt_s.label("answer_rt_s"),
                )
                .select_from(
                    a.outerjoin(
                        r, sa.and_(r.c.participant_pk == a.c.participant_pk, r.c.trial_id == a.c.trial_id)
                    )
                )
                .where(a.c.participant_pk == participant.pk, a.c.trial_id == trial_id)
            ).first()
        old = None
        if row is not None and row.answer_pk is not None:
            old = _Answer(row.answer_response, row.answer_correct, row.answer_rt_s)
        if row is None:
            raise AccessDenied(f"trial {trial_id!r} is not part of this participant's session.")
        now = now or self.clock()
        if old is not None:
            return self._duplicate(participant, row, old, response, now)
        trial = self.bundle.trials[row.source_trial_id]
        self.check_answer(trial, response, confidence)
        shown = row.shown_at
        if shown is None:
            raise AccessDenied(
                f"trial {trial_id!r} has not been shown yet; answers come after the trial is shown."
            )
        rt = max(0.0, (now - shown).total_seconds())
        limit = self.spec.design.trial_time_limit_s
        timed_out = limit is not None and row.kind != "practice" and rt > limit
        value = TIMEOUT_RESPONSE if timed_out else str(response)
        correct = None if row.truth is None else (0 if timed_out else self.task.is_correct(trial, value))
        with self.store.write() as conn:
            res = conn.execute(
                self.store.insert_ignore(
                    r,
                    {
                        "participant_pk": participant.pk,
                        "trial_id": trial_id,
                        "position": int(row.position),
                        "response": value,
                        "correct": correct,
                        "confidence": None if timed_out or confidence is None else int(confidence),
                        "rt_s": rt,
                        "shown_at": shown,
                        "answered_at": now,
                    },
                    ["participant_pk", "trial_id"],
                )
            )
            recorded = res.first() is not None
            if timed_out and recorded:
                self._event(conn, "trial_timeout", participant.pk, {"trial_id": trial_id, "rt_s": rt}, now)
        if not recorded:  # the same answer arrived twice at once; the other one was stored
            with self.store.read() as conn:
                first = conn.execute(
                    sa.select(r.c.response, r.c.correct, r.c.rt_s).where(
                        r.c.participant_pk == participant.pk, r.c.trial_id == trial_id
                    )
                ).one()
            return self._duplicate(participant, row, _Answer(*first), response, now)
        return AnswerResult(
            recorded=True,
            duplicate=False,
            trial_id=trial_id,
            kind=row.kind,
            response=value,
            correct=correct,
            truth=row.truth,
            rt_s=rt,
            timed_out=timed_out,
        )

    def _duplicate(
        self, participant: Participant, row: Any, old: _Answer, response: str, now: dt.datetime
    ) -> AnswerResult:
        """A second answer to an answered trial: nothing is written but an event; the first answer stands."""
        self.log_event(
            "duplicate", participant.pk, {"trial_id": row.trial_id, "response": str(response)}, now
        )
        return AnswerResult(
            recorded=False,
            duplicate=True,
            trial_id=row.trial_id,
            kind=row.kind,
            response=old.response,
            correct=old.correct,
            truth=row.truth,
            rt_s=float(old.rt_s),
        )

    # -- the end ---------------------------------------------------------------------------------------------------------
    def submit_questionnaire(
        self,
        participant: Participant,
        ml_experience: str | None,
        comments: str | None,
        now: dt.datetime | None = None,
    ) -> None:
        if ml_experience is not None and ml_experience not in ML_EXPERIENCE:
            raise UserError(f"ML experience must be one of {', '.join(ML_EXPERIENCE)}.")
        now = now or self.clock()
        pt = db.participant
        with self.store.read() as conn:
            nxt, _, _ = self._next(conn, participant.pk)
        if nxt is not None:
            raise UserError("the questionnaire comes after the last trial.")
        with self.store.write() as conn:
            conn.execute(
                pt.update()
                .where(pt.c.pk == participant.pk, pt.c.questionnaire_at.is_(None))
                .values(
                    questionnaire_at=now,
                    ml_experience=ml_experience,
                    comments=(comments or "").strip()[:2000] or None,
                )
            )

    def complete(self, participant: Participant, now: dt.datetime | None = None) -> str:
        """Mark the session complete (once every trial is answered) and return the completion code."""
        now = now or self.clock()
        pt = db.participant
        with self.store.read() as conn:
            nxt, _, _ = self._next(conn, participant.pk)
        if nxt is not None:
            raise UserError("the study is not finished yet: some trials are unanswered.")
        with self.store.write() as conn:
            res = conn.execute(
                pt.update()
                .where(pt.c.pk == participant.pk, pt.c.completed_at.is_(None))
                .values(completed_at=now)
            )
            if res.rowcount:
                self._event(conn, "complete", participant.pk, None, now)
        return self.completion_code(participant)

    def completion_code(self, participant: Participant) -> str:
        """The spec's ``completion.code``; without one, a code derived from the study and the participant id."""
        if self.spec.completion_code:
            return self.spec.completion_code
        return (
            hashlib.sha256(f"{self.study_id}|{participant.participant_id}".encode()).hexdigest()[:8].upper()
        )

    def redirect_url(self, participant: Participant) -> str | None:
        url = self.spec.redirect_url
        return None if url is None else url.replace("{code}", self.completion_code(participant))
