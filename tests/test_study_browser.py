"""End to end in a real browser: Debian's chromium (Playwright) against `streamlit run` of the study app.

A participant arrives from a Prolific-style link, consents, practises, answers, reloads mid-study,
survives a SIGKILL of the server and its restart, reopens the link (without the token) after closing
the tab, finishes, and gets the completion code; a second browser with the same id is refused. The
test then reads the database.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from _study import StreamlitServer, answer_current, click, fake_study, heading, wait_idle

from neuroinspect.studies import storage as db

DESIGN = "trials_per_condition = 1\npractice_trials = 1\ncatch_trials = 1\nrepeated_trials = 0"


def _shown_at(store: db.Store, pid: str) -> dict[str, object]:
    a, p = db.assignment, db.participant
    with store.read() as conn:
        rows = conn.execute(
            sa.select(a.c.trial_id, a.c.shown_at)
            .select_from(a.join(p, p.c.pk == a.c.participant_pk))
            .where(p.c.participant_id == pid)
        ).all()
    return {r.trial_id: r.shown_at for r in rows}


@pytest.mark.long
def test_prolific_participant_reloads_survives_a_server_kill_and_finishes(browser, tmp_path: Path) -> None:  # noqa: ANN001
    extra = '[completion]\ncode = "E2ECODE"\nredirect_url = "https://app.prolific.com/submissions/complete?cc={code}"'
    spec, bundle = fake_study(tmp_path, "2afc", design=DESIGN, extra=extra)
    link_params = "PROLIFIC_PID=E2E1&STUDY_ID=STUDY9&SESSION_ID=SESS9"
    server = StreamlitServer(spec.path).start()
    store = db.Store(spec.database_url)
    try:
        context = browser.new_context(viewport={"width": 390, "height": 844})
        page = context.new_page()
        page.goto(f"{server.url}?{link_params}", timeout=90_000)
        page.get_by_text("Consent").first.wait_for(timeout=90_000)
        wait_idle(page)
        page.get_by_text("I have read this information").click()
        wait_idle(page)
        click(page, page.get_by_role("button", name="Continue"), "button:has-text('Start')")
        assert "token=" in page.url and "PROLIFIC_PID=E2E1" in page.url
        click(page, page.get_by_role("button", name="Start"), "button:has-text('Submit answer')")
        assert heading(page) == "Practice 1 of 1"
        answer_current(page)
        assert page.get_by_text("the right answer is").count() or page.get_by_text("Correct").count()
        click(page, page.get_by_role("button", name="Continue"), "button:has-text('Submit answer')")
        answer_current(page)
        current = heading(page)
        assert current == "Question 3 of 5"
        shown = _shown_at(store, "E2E1")
        first_shown = {k: v for k, v in shown.items() if v is not None}
        time.sleep(1.0)

        # 1. a reload: a new Streamlit session, the same trial, the same first-shown time
        page.reload()
        page.get_by_role("button", name="Submit answer").wait_for(timeout=90_000)
        wait_idle(page)
        assert heading(page) == current
        assert {k: v for k, v in _shown_at(store, "E2E1").items() if v is not None} == first_shown

        # 2. the server is killed (SIGKILL) and restarted on the same port: the page resumes
        port = server.port
        server.kill()
        server = StreamlitServer(spec.path, port=port).start()
        page.reload()
        page.get_by_role("button", name="Submit answer").wait_for(timeout=90_000)
        wait_idle(page)
        assert heading(page) == current

        # 3. the tab is closed; Prolific's link (no token) opened again in the same browser resumes (cookie)
        page.close()
        page = context.new_page()
        page.goto(f"{server.url}?{link_params}", timeout=90_000)
        page.get_by_role("button", name="Submit answer").wait_for(timeout=90_000)
        wait_idle(page)
        assert heading(page) == current

        # 4. the same id from another browser (no token, no cookie) is refused and sees nothing
        stranger = browser.new_context().new_page()
        stranger.goto(f"{server.url}?{link_params}", timeout=90_000)
        stranger.get_by_text("resume token").wait_for(timeout=90_000)
        assert (
            stranger.locator("img").count() == 0
            and stranger.get_by_role("button", name="Submit answer").count() == 0
        )
        stranger.context.close()

        # 5. finish
        while page.get_by_role("button", name="Submit answer").count():
            answer_current(page)
        page.locator('[data-testid="stRadioOption"]').nth(2).click()
        wait_idle(page)
        page.locator("textarea").fill("all clear")
        click(page, page.get_by_role("button", name="Finish"), "text=Thank you!")
        # st.code is a lazily loaded component: it can appear a moment after the page's script ended
        page.locator("code", has_text="E2ECODE").first.wait_for(timeout=30_000)
        href = page.get_by_role("link", name="Return to Prolific and submit").get_attribute("href")
        assert href == "https://app.prolific.com/submissions/complete?cc=E2ECODE"
        context.close()
    finally:
        server.stop()

    p, r, a, ev = db.participant, db.response, db.assignment, db.event
    with store.read() as conn:
        person = conn.execute(sa.select(p)).one()
        responses = conn.execute(sa.select(r).order_by(r.c.position)).all()
        n_assigned = conn.execute(sa.select(sa.func.count()).select_from(a)).scalar_one()
        events = [e.kind for e in conn.execute(sa.select(ev.c.kind))]
    store.dispose()
    assert (person.participant_id, person.prolific_study_id, person.prolific_session_id) == (
        "E2E1",
        "STUDY9",
        "SESS9",
    )
    assert (
        person.completed_at is not None
        and person.ml_experience == "regular"
        and person.comments == "all clear"
    )
    assert len(responses) == n_assigned == 5 and len({x.trial_id for x in responses}) == 5
    assert [x.position for x in responses] == list(range(5))
    resumed_trial = responses[2]
    # answered after a 1 s pause, a reload, a server restart and a reopened tab: time counts from the first show
    assert resumed_trial.shown_at == next(v for k, v in first_shown.items() if k == resumed_trial.trial_id)
    assert resumed_trial.rt_s > 1.0
    assert events.count("resumed") >= 3 and "refused_token" in events and events.count("start") == 1
