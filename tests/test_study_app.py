"""The Streamlit study app through Streamlit's AppTest: every page, every task type, the admin page."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from _study import fake_study

from neuroinspect.studies import storage as db

APP = str(Path(__file__).resolve().parent.parent / "neuroinspect" / "studies" / "app.py")


@pytest.fixture(autouse=True)
def _fresh_stores():  # noqa: ANN202
    yield
    db.close_stores()


@pytest.fixture(autouse=True, scope="module")
def _scan_components_once():  # noqa: ANN202
    """AppTest scans every installed distribution for Streamlit components before each script run
    (about half a second each here); the installed packages do not change while these tests run."""
    from streamlit.components.v2 import manifest_scanner

    scan = manifest_scanner.scan_component_manifests
    found = scan()
    manifest_scanner.scan_component_manifests = lambda max_workers=None: list(found)
    yield
    manifest_scanner.scan_component_manifests = scan


def _app(monkeypatch: pytest.MonkeyPatch, spec_path: Path, **params: str):  # noqa: ANN202
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("NEUROINSPECT_STUDY_SPEC", str(spec_path))
    at = AppTest.from_file(APP, default_timeout=60)
    for k, v in params.items():
        at.query_params[k] = v
    return at.run()


def _texts(at) -> str:  # noqa: ANN001
    parts = []
    for kind in ("title", "subheader", "markdown", "caption", "info", "success", "error", "warning", "code"):
        parts.extend(str(e.value) for e in getattr(at, kind))
    return "\n".join(parts)


def _submit(at, label: str):  # noqa: ANN001, ANN202
    button = next(b for b in at.button if b.label == label)
    return button.click().run()


def _answer_trial(at, pick: int = 0):  # noqa: ANN001, ANN202
    answer = next(r for r in at.radio if r.key.startswith("answer-"))
    answer.set_value(answer.options[pick])
    for r in at.radio:
        if r.key.startswith("confidence-"):
            r.set_value(r.options[2])
    return _submit(at, "Submit answer")


def _through_consent_and_instructions(at):  # noqa: ANN001, ANN202
    assert "Consent" in _texts(at)
    at.button(key="consent-continue").click().run()
    assert "Please tick the box" in _texts(at)  # consent is required
    at.checkbox(key="consent-agree").check().run()
    at.button(key="consent-continue").click().run()
    assert [t.value for t in at.title] == ["Instructions"]
    return at.button(key="instructions-start").click().run()


@pytest.mark.parametrize("task", ["2afc", "labelling", "mistake", "rating"])
def test_a_participant_completes_each_task_type(
    task: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    extra = '[completion]\ncode = "CODE77"\nredirect_url = "https://app.prolific.com/submissions/complete?cc={code}"'
    spec, bundle = fake_study(tmp_path, task, extra=extra)
    at = _app(monkeypatch, spec.path, PROLIFIC_PID="PPP1", STUDY_ID="STU", SESSION_ID="SES")
    assert not at.exception
    at = _through_consent_and_instructions(at)
    token = at.query_params["token"]
    assert token and len(token) >= 20  # the resume token is added to the link
    # practice with feedback
    assert "Practice 1 of 1" in _texts(at)
    assert at.get("progress")
    at = _answer_trial(at)
    fb = _texts(at)
    if task == "rating":
        assert "no right or wrong answer" in fb
    else:
        assert "Correct" in fb or "Not quite" in fb
    at = at.button(key="feedback-continue").click().run()
    seen_kinds = set()
    for _ in range(40):
        if not any(r.key.startswith("answer-") for r in at.radio):
            break
        key = next(r.key for r in at.radio if r.key.startswith("answer-"))
        seen_kinds.add(key.split("-", 1)[1].split("/")[0])
        assert at.get("image") or task == "mistake" or "No explanation" in _texts(at)
        if key.endswith("catch/0"):
            assert "Attention check" in _texts(at) or task == "2afc"
        at = _answer_trial(at)
        assert not at.exception
    assert seen_kinds == {"main", "catch", "repeat"}
    assert "Almost done" in _texts(at)
    at.radio(key="q-ml").set_value("some")
    at.text_area(key="q-comments").input("clear enough")
    at = _submit(at, "Finish")
    text = _texts(at)
    assert "Thank you!" in text and "CODE77" in text
    link = at.get("link_button")
    assert link and "cc=CODE77" in str(link[0].proto.url)
    store = db.open_store(spec.database_url)
    with store.read() as conn:
        p = conn.execute(sa.select(db.participant)).one()
        n_resp = conn.execute(sa.select(sa.func.count()).select_from(db.response)).scalar_one()
        n_assigned = conn.execute(sa.select(sa.func.count()).select_from(db.assignment)).scalar_one()
    assert (p.participant_id, p.prolific_study_id, p.prolific_session_id) == ("PPP1", "STU", "SES")
    assert p.completed_at is not None and p.ml_experience == "some" and p.comments == "clear enough"
    assert n_resp == n_assigned == 1 + len(spec.conditions) * 2 * (2 if task == "rating" else 1) + 1 + 1


def test_reload_resumes_and_a_foreign_link_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, _ = fake_study(tmp_path, "2afc")
    at = _through_consent_and_instructions(_app(monkeypatch, spec.path, PROLIFIC_PID="RELOAD1"))
    at = _answer_trial(at)
    at = at.button(key="feedback-continue").click().run()
    before = [s.value for s in at.subheader]
    token = at.query_params["token"]
    # a reload is a new Streamlit session: empty session state, the same link
    again = _app(monkeypatch, spec.path, PROLIFIC_PID="RELOAD1", token=token)
    assert [s.value for s in again.subheader] == before and not again.exception
    # the same id without the token (someone else's browser), or with a wrong one: refused, nothing shown
    for params in ({"PROLIFIC_PID": "RELOAD1"}, {"PROLIFIC_PID": "RELOAD1", "token": "x" * 24}):
        other = _app(monkeypatch, spec.path, **params)
        assert "resume token" in _texts(other) and not other.get("image") and not other.radio
    bad = _app(monkeypatch, spec.path, PROLIFIC_PID="../../etc")
    assert "not valid" in _texts(bad)


def test_links_without_an_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec, _ = fake_study(tmp_path / "a", "labelling")
    at = _app(monkeypatch, spec.path)
    assert "missing your participant id" in _texts(at) and not at.button
    spec2, _ = fake_study(tmp_path / "b", "labelling", allow_anonymous=True)
    at = _app(monkeypatch, spec2.path)
    assert at.query_params["participant"].startswith("anon-") and "Consent" in _texts(at)


def test_declining_consent_records_nothing_more(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec, _ = fake_study(tmp_path, "rating")
    at = _app(monkeypatch, spec.path, PROLIFIC_PID="NO1")
    at = at.button(key="consent-decline").click().run()
    assert "chose not to take part" in _texts(at)
    with db.open_store(spec.database_url).read() as conn:
        p = conn.execute(sa.select(db.participant)).one()
        assert p.declined_at is not None and p.consented_at is None
        assert conn.execute(sa.select(sa.func.count()).select_from(db.response)).scalar_one() == 0


def test_admin_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec, _ = fake_study(tmp_path, "2afc")
    monkeypatch.delenv("NEUROINSPECT_STUDY_ADMIN_PASSWORD", raising=False)
    at = _app(monkeypatch, spec.path, page="admin")
    assert "admin page is disabled" in _texts(at) and not at.text_input
    # one participant finishes, one is in progress
    done = _through_consent_and_instructions(_app(monkeypatch, spec.path, PROLIFIC_PID="A1"))
    for _ in range(20):
        if any(b.key == "feedback-continue" for b in done.button):
            done = done.button(key="feedback-continue").click().run()
        if not any(r.key.startswith("answer-") for r in done.radio):
            break
        done = _answer_trial(done)
    done.radio(key="q-ml").set_value("none")
    _submit(done, "Finish")
    _app(monkeypatch, spec.path, PROLIFIC_PID="A2")
    monkeypatch.setenv("NEUROINSPECT_STUDY_ADMIN_PASSWORD", "s3cret-pw")
    at = _app(monkeypatch, spec.path, page="admin")
    at.text_input(key="admin-password").input("wrong")
    at = _submit(at, "Log in")
    assert "Wrong password" in _texts(at) and not at.get("metric")
    at.text_input(key="admin-password").input("s3cret-pw")
    at = _submit(at, "Log in")
    metrics = {m.label: m.value for m in at.get("metric")}
    # A1 answered the first option on every trial within milliseconds: the exclusion rules drop them
    assert metrics == {"Participants": "2", "Complete": "1", "In progress": "1", "Excluded": "1"}
    people = at.dataframe[-1].value
    reasons = dict(zip(people["participant"], people["excluded"], strict=True))
    assert "constant" in reasons["A1"] and "too_fast" in reasons["A1"] and reasons["A2"] == ""
    assert at.get("download_button")
    with db.open_store(spec.database_url).read() as conn:
        kinds = [
            r.kind for r in conn.execute(sa.select(db.event.c.kind).where(db.event.c.kind.like("admin%")))
        ]
        assert sorted(kinds) == ["admin_login", "admin_refused"]
        assert "s3cret" not in " ".join(str(r.detail) for r in conn.execute(sa.select(db.event)))


def test_check_admin_password_is_constant_time_compare() -> None:
    from neuroinspect.studies.webapp import check_admin_password

    assert check_admin_password("pässwörd", "pässwörd")
    assert not check_admin_password("pässwörd ", "pässwörd") and not check_admin_password("", "x")


def test_a_database_outage_is_a_message_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from neuroinspect.studies.session import StudyRuntime

    spec, _ = fake_study(tmp_path, "labelling")

    def down(*args: object, **kwargs: object) -> None:
        raise sa.exc.OperationalError("SELECT 1", {}, Exception("connection refused"))

    monkeypatch.setattr(StudyRuntime, "stage", down)
    at = _app(monkeypatch, spec.path, PROLIFIC_PID="DOWN1")
    assert not at.exception and "cannot reach its database" in _texts(at)


def test_time_is_up_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    design = "trials_per_condition = 2\npractice_trials = 0\ncatch_trials = 0\nrepeated_trials = 0\ntotal_time_limit_s = 0.001"
    spec, _ = fake_study(tmp_path, "rating", design=design)
    at = _app(monkeypatch, spec.path, PROLIFIC_PID="SLOW1")
    at.checkbox(key="consent-agree").check().run()
    at = at.button(key="consent-continue").click().run()
    assert "has run out" in _texts(at) and not at.radio
    with db.open_store(spec.database_url).read() as conn:
        assert conn.execute(sa.select(db.participant.c.timed_out_at)).scalar_one() is not None
