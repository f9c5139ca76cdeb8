"""Storage and session logic of the study app, against SQLite AND a real PostgreSQL server.

The session logic is what the Streamlit app and the simulated participants share: participants,
resume tokens, Latin-square assignment, first-shown times, idempotent answers, time limits, export.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa
from _study import fake_study

from neuroinspect.errors import UserError
from neuroinspect.studies import storage as db
from neuroinspect.studies.export import labels_frame, raw_frame, responses_frame
from neuroinspect.studies.responses import COLUMNS
from neuroinspect.studies.session import AccessDenied, InvalidParticipant, StudyRuntime, latin_square


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(db_url: str):  # noqa: ANN201
    s = db.Store(db_url)
    yield s
    s.dispose()


T0 = dt.datetime(2025, 3, 1, 12, 0, 0, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def _runtime(tmp_path: Path, store: db.Store, task: str = "2afc", **kw: object) -> StudyRuntime:
    spec, bundle = fake_study(tmp_path, task, **kw)
    return StudyRuntime(spec, bundle, store, clock=lambda: T0)


def _finish(rt: StudyRuntime, p, start: float = 0.0) -> float:  # noqa: ANN001
    """Answer every trial with its first option; returns the (virtual) time at the end."""
    t = start
    rt.consent(p, True, now=at(t))
    rt.show_instructions(p, now=at(t))
    t += 30
    rt.finish_instructions(p, now=at(t))
    while (view := rt.current_trial(p, now=at(t))) is not None:
        t += 2.5
        conf = 3 if view.trial["confidence"] else None
        res = rt.answer(p, view.trial_id, str(view.trial["options"][0][0]), conf, now=at(t))
        assert res.recorded and not res.duplicate
    rt.submit_questionnaire(p, "some", "fine", now=at(t + 5))
    rt.complete(p, now=at(t + 5))
    return t


def test_schema_matches_the_models_and_is_at_head(store: db.Store) -> None:
    """The migrations create exactly the tables and columns the code queries (no drift)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with store.engine.connect() as conn:
        assert db.current_revision(conn) == db.head_revision()
        diffs = compare_metadata(MigrationContext.configure(conn), db.metadata)
    relevant = [d for d in diffs if d[0] in ("add_table", "remove_table", "add_column", "remove_column")]
    assert relevant == []
    assert set(sa.inspect(store.engine).get_table_names()) >= {
        "study",
        "participant",
        "assignment",
        "trial",
        "response",
        "event",
    }


def test_database_of_the_first_migration_is_upgraded_in_place(db_url: str, tmp_path: Path) -> None:
    """A study running on schema 0001 keeps every row when neuroinspect opens it with the newest schema."""
    old = db.Store(db_url, migrate_to="0001")
    with old.write() as conn:
        assert db.current_revision(conn) == "0001"
        assert "event" not in sa.inspect(conn).get_table_names()
        tables = {
            n: sa.Table(n, sa.MetaData(), autoload_with=conn) for n in ("study", "participant", "response")
        }
        conn.execute(
            tables["study"]
            .insert()
            .values(id="s", title="t", task="2afc", bundle_hash="h" * 64, n_assigned=1, created_at=T0)
        )
        conn.execute(
            tables["participant"]
            .insert()
            .values(
                study_id="s",
                participant_id="P1",
                token_hash="x" * 64,
                assignment_index=0,
                condition_order="[]",
                simulated=False,
                created_at=T0,
            )
        )
        pk = conn.execute(sa.select(tables["participant"].c.pk)).scalar_one()
        conn.execute(
            tables["response"]
            .insert()
            .values(
                participant_pk=pk,
                trial_id="main/a",
                position=0,
                response="A",
                correct=1,
                rt_s=1.5,
                shown_at=T0,
                answered_at=T0,
            )
        )
    old.dispose()
    new = db.Store(db_url)
    try:
        with new.read() as conn:
            assert db.current_revision(conn) == db.head_revision() == "0002"
            assert conn.execute(
                sa.select(db.participant.c.participant_id, db.participant.c.last_seen_at)
            ).all() == [("P1", None)]
            row = conn.execute(sa.select(db.response)).one()
            assert (row.trial_id, row.response, row.correct, row.rt_s) == ("main/a", "A", 1, 1.5)
            assert row.shown_at == T0
            assert "event" in sa.inspect(conn).get_table_names()
    finally:
        new.dispose()


def test_unreachable_database_is_one_clear_error(tmp_path: Path) -> None:
    from _services import free_port

    with pytest.raises(UserError, match="cannot open the study database") as err:
        db.Store(f"postgresql+psycopg://someone:secret@127.0.0.1:{free_port()}/nope")
    assert "secret" not in str(err.value)  # the password never reaches a message
    with pytest.raises(UserError, match="not a database URL"):
        db.Store("not a url")


def test_enter_issues_a_token_and_refuses_the_id_without_it(tmp_path: Path, store: db.Store) -> None:
    rt = _runtime(tmp_path, store)
    entry = rt.enter("PROLIFIC123", prolific_study_id="S1", prolific_session_id="X9")
    assert entry.created and len(entry.token) >= 20
    again = rt.enter("PROLIFIC123", entry.token)
    assert not again.created and again.participant.pk == entry.participant.pk
    for bad in (None, "", "wrong-token", entry.token[:-1]):
        with pytest.raises(AccessDenied, match="resume token"):
            rt.enter("PROLIFIC123", bad)
    with pytest.raises(InvalidParticipant):
        rt.enter("<script>alert(1)</script>")
    with store.read() as conn:
        rows = conn.execute(sa.select(db.participant)).all()
        refused = conn.execute(
            sa.select(sa.func.count()).select_from(db.event).where(db.event.c.kind == "refused_token")
        ).scalar_one()
    assert len(rows) == 1 and rows[0].token_hash != entry.token  # only a hash is stored
    assert (rows[0].prolific_study_id, rows[0].prolific_session_id) == ("S1", "X9")
    assert refused == 4


def test_same_id_arriving_twice_at_once_makes_one_participant(tmp_path: Path, store: db.Store) -> None:
    rt = _runtime(tmp_path, store)
    results: list[object] = []

    def go() -> None:
        try:
            results.append(rt.enter("TWICE"))
        except AccessDenied as err:
            results.append(err)

    threads = [threading.Thread(target=go) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(1 for r in results if not isinstance(r, Exception)) == 1
    with store.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(db.participant)).scalar_one() == 1


def test_latin_square_is_balanced() -> None:
    for k in (2, 3, 4, 5):
        rows = latin_square(k)
        assert len(rows) == (k if k % 2 == 0 else 2 * k)
        for r in rows:
            assert sorted(r) == list(range(k))
        for pos in range(k):  # every condition in every position equally often
            assert Counter(r[pos] for r in rows) == Counter({c: len(rows) // k for c in range(k)})
        pairs = Counter((r[i], r[i + 1]) for r in rows for i in range(k - 1))
        assert len(set(pairs.values())) == 1 and len(pairs) == k * (k - 1)  # first-order carryover balanced


def test_assignment_counterbalances_condition_order_and_units(tmp_path: Path, store: db.Store) -> None:
    rt = _runtime(tmp_path, store)
    orders = [rt.enter(f"P{i}").participant.condition_order for i in range(6)]
    assert orders[:6] == [[rt.spec.condition_names[k] for k in row] for row in latin_square(3)]
    with store.read() as conn:
        rows = conn.execute(
            sa.select(db.assignment).order_by(db.assignment.c.participant_pk, db.assignment.c.position)
        ).all()
    by_p: dict[int, list] = {}
    for r in rows:
        by_p.setdefault(r.participant_pk, []).append(r)
    seen_units: Counter = Counter()
    for seq in by_p.values():
        kinds = [r.kind for r in seq]
        assert kinds[0] == "practice" and kinds[-1] == "repeated"
        assert Counter(kinds) == Counter({"practice": 1, "main": 6, "catch": 1, "repeated": 1})
        mains = [r for r in seq if r.kind == "main"]
        assert len({r.unit for r in mains}) == 6  # 6 units >= 3 conditions x 2 trials: no unit twice
        rep = seq[-1]
        orig = next(r for r in mains if r.trial_id == rep.repeat_of)
        assert (rep.source_trial_id, rep.condition, rep.block) == (orig.trial_id, orig.condition, orig.block)
        blocks = [r.block for r in seq if r.kind == "main"]
        assert blocks == sorted(blocks)
        seen_units.update((r.condition, r.unit) for r in mains)
    assert len(seen_units) == 18  # over 6 participants every unit appeared under every condition


def test_response_time_counts_from_the_first_show_and_survives_a_reload(
    tmp_path: Path, store: db.Store
) -> None:
    rt = _runtime(tmp_path, store)
    e = rt.enter("RT1")
    p = e.participant
    rt.consent(p, True, now=at(0))
    rt.show_instructions(p, now=at(1))
    rt.show_instructions(p, now=at(50))  # a reload on the instructions keeps the first show
    rt.finish_instructions(p, now=at(21))
    assert rt.refresh(p).instructions_s == pytest.approx(20.0)
    first = rt.current_trial(p, now=at(30))
    # a reload (a new Streamlit session) 40 s later resumes the same trial with the same start
    p2 = rt.enter("RT1", e.token).participant
    again = rt.current_trial(p2, now=at(70))
    assert again.trial_id == first.trial_id and again.shown_at == at(30)
    res = rt.answer(p2, again.trial_id, "A", 4, now=at(75.5))
    assert res.recorded and res.rt_s == pytest.approx(45.5)


def test_answers_are_idempotent_and_checked(tmp_path: Path, store: db.Store) -> None:
    rt = _runtime(tmp_path, store)
    p = rt.enter("DUP").participant
    rt.consent(p, True)
    rt.finish_instructions(p)
    view = rt.current_trial(p)
    with pytest.raises(UserError, match="not one of"):
        rt.answer(p, view.trial_id, "C", 3)
    with pytest.raises(UserError, match="confidence"):
        rt.answer(p, view.trial_id, "A", None)
    with pytest.raises(AccessDenied):
        rt.answer(p, "main/none/neuron:99", "A", 3)
    unshown = [t for t in rt.bundle.trials if t.startswith("main/")]
    with store.read() as conn:
        mine = {
            r.trial_id
            for r in conn.execute(sa.select(db.assignment).where(db.assignment.c.participant_pk == p.pk))
        }
    later = next(t for t in unshown if t in mine)
    with pytest.raises(AccessDenied, match="not been shown"):
        rt.answer(p, later, "A", 3)
    out = []
    threads = [
        threading.Thread(target=lambda r=r: out.append(rt.answer(p, view.trial_id, r, 2)))
        for r in ("A", "B", "A", "B")
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.recorded for r in out) == 1 and sum(r.duplicate for r in out) == 3
    with store.read() as conn:
        rows = conn.execute(sa.select(db.response).where(db.response.c.participant_pk == p.pk)).all()
        dups = conn.execute(
            sa.select(sa.func.count()).select_from(db.event).where(db.event.c.kind == "duplicate")
        ).scalar_one()
    assert len(rows) == 1 and dups == 3
    assert rt.answer(p, view.trial_id, "B", 1).response == rows[0].response  # the first answer stands


def test_a_whole_session_and_its_export(tmp_path: Path, store: db.Store) -> None:
    rt = _runtime(tmp_path, store)
    entries = [rt.enter(f"P{i}", prolific_study_id="S") for i in range(3)]
    ends = [_finish(rt, e.participant, start=100 * i) + 5 for i, e in enumerate(entries[:2])]
    assert rt.stage(entries[0].participant) == "complete"
    assert rt.stage(entries[2].participant) == "consent"
    code = rt.completion_code(entries[0].participant)
    assert code == rt.completion_code(entries[0].participant) and code != rt.completion_code(
        entries[1].participant
    )
    df = responses_frame(rt.spec, store)
    assert list(df.columns) == list(COLUMNS)
    assert len(df) == 2 * 9 and set(df["participant"]) == {"P0", "P1"}
    assert not df.duplicated(["participant", "trial_id"]).any()
    assert set(df["trial_kind"]) == {"practice", "main", "catch", "repeated"}
    assert (df["task"] == "2afc").all() and (df["n_options"] == 2).all() and (df["simulated"] == 0).all()
    assert df["rt_s"].eq(2.5).all() and df["instructions_s"].eq(30.0).all()
    rep = df[df["trial_kind"] == "repeated"].iloc[0]
    assert rep["repeat_of"] in set(df["trial_id"]) and rep["trial_id"] == f"repeat/{rep['repeat_of']}"
    assert df["session_completed_at"].notna().all()
    raw = raw_frame(rt.spec, store)
    assert raw["shown_at"].str.endswith("Z").all()
    correct = df.dropna(subset=["truth"])
    assert (correct["correct"] == (correct["response"] == correct["truth"]).astype(float)).all()
    # the admin page's "last active": the latest visit, answer or completion of each participant
    from neuroinspect.studies.export import study_status

    p2 = entries[2].participant
    rt.consent(p2, True, now=at(500))
    rt.finish_instructions(p2, now=at(530))
    view = rt.current_trial(p2, now=at(530))
    rt.answer(p2, view.trial_id, "A", 2, now=at(537))
    last = {r["participant"]: r["last_seen"] for r in study_status(rt.spec, store)["rows"]}
    iso = {
        k: at(t).isoformat(timespec="microseconds").replace("+00:00", "Z")
        for k, t in [("P0", ends[0]), ("P1", ends[1]), ("P2", 537)]
    }
    assert last == iso


def test_time_limits(tmp_path: Path, store: db.Store) -> None:
    rt = _runtime(
        tmp_path,
        store,
        design="trials_per_condition = 2\npractice_trials = 0\ncatch_trials = 0\nrepeated_trials = 0\ntrial_time_limit_s = 10\ntotal_time_limit_s = 100",
    )
    p = rt.enter("LATE").participant
    rt.consent(p, True, now=at(0))
    rt.finish_instructions(p, now=at(5))
    v = rt.current_trial(p, now=at(5))
    res = rt.answer(p, v.trial_id, "A", 6, now=at(20))
    assert res.timed_out and res.response == "timeout" and res.correct == 0
    assert rt.stage(p, now=at(50)) == "trial"
    assert rt.stage(p, now=at(101)) == "timed_out"
    assert rt.refresh(p).timed_out_at == at(101)


def test_rebuilt_bundle_is_refused_once_participants_saw_the_old_one(tmp_path: Path, store: db.Store) -> None:
    rt = _runtime(tmp_path, store)
    rt.enter("P0")
    from dataclasses import replace

    changed = replace(rt.bundle, hash="0" * 64)
    with pytest.raises(UserError, match="another bundle"):
        StudyRuntime(rt.spec, changed, store)


def test_labels_file_from_labelling_answers(tmp_path: Path, store: db.Store) -> None:
    """Majority background -> spurious, object -> core, both / neither / a tie -> unclear; baseline answers ignored."""
    rt = _runtime(tmp_path, store, "labelling", exclusions={})
    fixed = {
        "neuron:1": "background",
        "neuron:2": "object",
        "neuron:3": "both",
        "neuron:5": "neither",
        "neuron:6": "background",
    }
    for i in range(3):
        p = rt.enter(f"L{i}").participant
        rt.consent(p, True)
        rt.finish_instructions(p)
        while (v := rt.current_trial(p)) is not None:
            if v.kind == "catch":
                ans = v.trial["instructed"]
            elif v.condition == "none":
                ans = "object"  # guesses under the baseline must not count
            else:
                ans = fixed.get(v.unit, ["background", "object", "background"][i])
            rt.answer(p, v.trial_id, ans)
        rt.submit_questionnaire(p, None, None)
        rt.complete(p)
    df = responses_frame(rt.spec, store)
    votes = df[df["trial_kind"].isin(["main", "repeated"]) & (df["condition"] != "none")]
    lab = labels_frame(rt.spec, store=store, apply_rules=False)
    assert list(lab.columns) == ["neuron", "label", "class_idx", "n_votes", "agreement"]
    assert list(lab["neuron"]) == sorted(int(u.split(":")[1]) for u in votes["unit"].unique())
    got = {int(r.neuron): r for r in lab.itertuples()}
    expected = {1: "spurious", 2: "core", 3: "unclear", 5: "unclear", 6: "spurious"}
    for n, label in expected.items():
        if n in got:
            assert (got[n].label, got[n].agreement) == (label, 1.0)
            assert got[n].n_votes == int((votes["unit"] == f"neuron:{n}").sum())
    if 4 in got:  # answers of neuron 4 depend on the participant
        answers = votes[votes["unit"] == "neuron:4"]["response"].map(
            {"background": "spurious", "object": "core"}
        )
        counts = answers.value_counts()
        top = counts[counts == counts.max()]
        assert got[4].label == (top.index[0] if len(top) == 1 else "unclear")
        assert got[4].agreement == pytest.approx(counts.max() / len(answers), abs=1e-4)
    assert (lab["class_idx"] == "").all()
    # the file `study export --labels` writes is what the debugging pipeline's `labels` selector reads
    from neuroinspect.methods.selectors.labels import read_labels
    from neuroinspect.studies.export import write_labels_csv

    path, n = write_labels_csv(rt.spec, tmp_path / "labels.csv", store=store, apply_rules=False)
    read = {x.neuron: (x.label, x.class_idx, x.n_votes, x.agreement) for x in read_labels(path)}
    assert n == len(read) == len(lab)
    assert read == {int(r.neuron): (r.label, None, int(r.n_votes), r.agreement) for r in lab.itertuples()}
    only_lucent = labels_frame(rt.spec, store=store, apply_rules=False, conditions=["lucent"])
    assert only_lucent["n_votes"].sum() == int((votes["condition"] == "lucent").sum())
    with pytest.raises(UserError, match="not a condition"):
        labels_frame(rt.spec, store=store, conditions=["nope"])
    with pytest.raises(UserError, match="labelling"):
        labels_frame(_runtime(tmp_path / "x", store).spec, store=store)
