"""The Streamlit study app (``neuroinspect study serve``): the participant's pages and the admin page.

Every page is drawn from the database (:class:`~neuroinspect.studies.session.StudyRuntime`), never
from Streamlit's session state alone: a reload (a new Streamlit session), a closed tab or a restarted
server resumes at the next unanswered trial. The participant id comes from the link
(``PROLIFIC_PID``, with ``STUDY_ID`` and ``SESSION_ID`` kept; or ``participant``; or an anonymous id
when the spec allows); the first visit adds the resume token to the link (``token=``) and to a
cookie of this browser, so that the same link (Prolific's, without the token) reopened in the same
browser resumes too, while the id alone, from another browser, is refused.

Pages: consent -> instructions -> trials (practice with feedback, main trials in the participant's
counterbalanced order, catch trials, repeated trials; a progress bar) -> questionnaire -> completion
code (and the button back to Prolific when ``completion.redirect_url`` is set). ``?page=admin``: the
admin page, behind the password in ``$NEUROINSPECT_STUDY_ADMIN_PASSWORD`` (compared in constant time;
never stored in the spec or the database): live progress, completion and exclusion counts, the CSV.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import sys
import time
from typing import Any

import streamlit as st

from neuroinspect.errors import UserError

ADMIN_PASSWORD_ENV = "NEUROINSPECT_STUDY_ADMIN_PASSWORD"
SPEC_ENV = "NEUROINSPECT_STUDY_SPEC"
ML_LABELS = {
    "none": "None: I have not worked with machine learning",
    "some": "Some: a course, a tutorial or a hobby project",
    "regular": "Regular: I use machine learning in my work or studies",
    "expert": "Expert: I develop or research machine-learning models",
}
CONFIDENCE_LABELS = {1: "1 guessing", 6: "6 certain"}

_CSS = """
<style>
  [data-testid="stImage"] img { image-rendering: pixelated; }
  .block-container { padding-top: 2.2rem; max-width: 760px; }
  div[data-testid="stCaptionContainer"] p { font-size: 0.95rem; }
</style>
"""


def spec_path() -> str:
    """The spec file: the argument after ``--`` of ``streamlit run``, or ``$NEUROINSPECT_STUDY_SPEC``."""
    args = [a for a in sys.argv[1:] if a.endswith(".toml")]
    if args:
        return args[-1]
    env = os.environ.get(SPEC_ENV)
    if env:
        return env
    raise UserError(
        f"no study spec: run the app through `neuroinspect study serve SPEC.toml` (or set ${SPEC_ENV})."
    )


@st.cache_resource(show_spinner=False)
def get_runtime(path: str) -> Any:
    """The study's runtime (spec, verified bundle, migrated database), once per server process."""
    from neuroinspect.studies.bundle import load_bundle
    from neuroinspect.studies.session import StudyRuntime
    from neuroinspect.studies.spec import load_spec
    from neuroinspect.studies.storage import open_store

    spec = load_spec(path, check_methods=False)  # `study serve` checked them; the bundle matches the spec
    bundle = load_bundle(spec, verify=True)
    return StudyRuntime(spec, bundle, open_store(spec.database_url))


def _cookie_name(study_id: str, pid: str) -> str:
    return "ni_" + hashlib.sha256(f"{study_id}|{pid}".encode()).hexdigest()[:20]


def _set_cookie(name: str, token: str) -> None:
    # The token is URL-safe base64 and the name hex: nothing to escape.
    st.html(
        f"<script>document.cookie = '{name}={token}; path=/; max-age=2592000; SameSite=Lax';</script>",
        unsafe_allow_javascript=True,
        width="content",
    )


def _scroll_to_top(key: str) -> None:
    """Show a new page from its top (Streamlit keeps the scroll position of the previous one, which on a
    phone would open the next trial at its answer buttons). ``key`` changes with the page, so the script
    runs again for each new page."""
    safe = "".join(ch for ch in key if ch.isalnum() or ch in "-_/:")
    st.html(
        f"<script>/* {safe} */ window.scrollTo(0, 0); document.querySelectorAll("
        '\'[data-testid="stMain"], [data-testid="stAppViewContainer"], section.main\')'
        ".forEach(function (e) { e.scrollTo(0, 0); });</script>",
        unsafe_allow_javascript=True,
        width="content",
    )


def _param(name: str) -> str | None:
    value = st.query_params.get(name)
    return str(value) if value not in (None, "") else None


def _message_page(title: str, body: str, kind: str = "info") -> None:
    st.title(title, anchor=False)
    getattr(st, kind)(body)


def main() -> None:
    try:
        path = spec_path()
        rt = get_runtime(path)
    except UserError as err:
        st.set_page_config(page_title="Study", layout="centered")
        _message_page("The study is not available", f"{err}", "error")
        return
    admin = _param("page") == "admin"
    st.set_page_config(
        page_title=rt.spec.title, layout="wide" if admin else "centered", initial_sidebar_state="collapsed"
    )
    st.html(_CSS if not admin else _CSS.replace("max-width: 760px", "max-width: 1200px"))
    try:
        if admin:
            admin_page(rt)
        else:
            participant_page(rt)
    except UserError as err:
        st.error(str(err))
    except Exception as err:  # noqa: BLE001 - a database outage must not show a traceback to participants
        import sqlalchemy as sa

        if not isinstance(err, sa.exc.SQLAlchemyError):
            raise
        st.error(
            "The study cannot reach its database at the moment. Your earlier answers are saved; please wait a "
            "minute and reload this page."
        )


# -- participant ---------------------------------------------------------------------------------------------
def _enter(rt: Any) -> Any | None:
    """The participant of this browser session (entering or resuming once per session); None when refused."""
    from neuroinspect.studies.session import AccessDenied, InvalidParticipant

    pid = _param("PROLIFIC_PID") or _param("participant")
    if pid is None:
        if not rt.spec.allow_anonymous:
            _message_page(
                rt.spec.title,
                "This link is missing your participant id. Please open the study from the link on Prolific "
                "(it adds ?PROLIFIC_PID=...).",
                "warning",
            )
            return None
        pid = "anon-" + secrets.token_hex(6)
        st.query_params["participant"] = pid
    cached = st.session_state.get("participant")
    if (
        cached is not None
        and cached.participant_id == pid
        and st.session_state.get("token") == _param("token")
    ):
        return cached
    token = _param("token") or st.context.cookies.get(_cookie_name(rt.study_id, pid))
    try:
        entry = rt.enter(
            pid, token, prolific_study_id=_param("STUDY_ID"), prolific_session_id=_param("SESSION_ID")
        )
    except InvalidParticipant as err:
        _message_page(rt.spec.title, str(err), "error")
        return None
    except AccessDenied as err:
        _message_page(rt.spec.title, str(err), "error")
        return None
    if not entry.created:
        rt.log_event("resumed", entry.participant.pk, {"via": "link" if _param("token") else "cookie"})
    if _param("token") != entry.token:
        st.query_params["token"] = entry.token
    st.session_state["participant"] = entry.participant
    st.session_state["token"] = entry.token
    _set_cookie(_cookie_name(rt.study_id, pid), entry.token)
    return entry.participant


def participant_page(rt: Any) -> None:
    p = _enter(rt)
    if p is None:
        return
    feedback = st.session_state.get("feedback")
    if feedback is not None:
        _feedback_page(rt, feedback)
        return
    stage = rt.stage(p)
    pages = {
        "consent": _consent_page,
        "declined": _declined_page,
        "instructions": _instructions_page,
        "trial": _trial_page,
        "questionnaire": _questionnaire_page,
        "complete": _complete_page,
        "timed_out": _timed_out_page,
    }
    pages[stage](rt, p)


def _consent_page(rt: Any, p: Any) -> None:
    st.title(rt.spec.title, anchor=False)
    st.subheader("Consent", anchor=False)
    st.markdown(rt.spec.consent)
    agree = st.checkbox("I have read this information and agree to take part.", key="consent-agree")
    c1, c2 = st.columns(2)
    go = c1.button("Continue", type="primary", key="consent-continue", width="stretch")
    no = c2.button("I do not want to take part", key="consent-decline", width="stretch")
    if go:
        if not agree:
            st.warning("Please tick the box to agree, or choose not to take part.")
            return
        rt.consent(p, True)
        st.rerun()
    if no:
        rt.consent(p, False)
        st.rerun()


def _declined_page(rt: Any, p: Any) -> None:
    _message_page(
        rt.spec.title,
        "You chose not to take part; nothing more is recorded. You can close this page"
        + (" and return the study on Prolific." if rt.spec.redirect_url else "."),
    )


def _study_length(rt: Any) -> str:
    _, total = rt.progress(rt.refresh(st.session_state["participant"]))
    return (
        f"There are **{total} questions**; most people need about {max(2, round(total * 12 / 60))} minutes."
    )


def _instructions_page(rt: Any, p: Any) -> None:
    rt.show_instructions(p)
    st.title("Instructions", anchor=False)
    st.markdown(rt.spec.instructions or rt.task.instructions(rt.spec))
    st.markdown(_study_length(rt))
    if rt.spec.design.trial_time_limit_s:
        st.markdown(f"Please answer each question within {rt.spec.design.trial_time_limit_s:g} seconds.")
    if st.button("Start", type="primary", key="instructions-start"):
        rt.finish_instructions(p)
        st.rerun()


def _show_panels(rt: Any, trial: dict[str, Any]) -> None:
    panels = trial["panels"]
    explanation = [q for q in panels if q["role"] in ("max", "min")]
    other = [q for q in panels if q["role"] not in ("max", "min")]
    for q in other:
        if q["role"] == "input":
            st.markdown(q["title"])
            st.image(str(rt.bundle.image(q["montage"])), width=min(320, 2 * rt.spec.design.cell_px + 8))
    blamed = [q for q in other if q["role"] == "blamed"]
    if blamed:
        st.markdown("**Why? The neurons that pushed the model to its answer:**")
        cols = st.columns(len(blamed)) if len(blamed) <= 3 else st.columns(3)
        for i, q in enumerate(blamed):
            with cols[i % len(cols)]:
                st.caption(q["title"])
                st.image(str(rt.bundle.image(q["montage"])), width="stretch")
    if explanation:
        cols = st.columns(len(explanation))
        for col, q in zip(cols, explanation, strict=True):
            with col:
                st.caption(q["title"])
                st.image(str(rt.bundle.image(q["montage"])), width="stretch")
    elif trial["kind"] != "catch" and rt.task.name != "mistake":
        st.info("No explanation is shown for this neuron. Please give your best guess.")
    elif rt.task.name == "mistake" and not blamed and trial["kind"] != "catch":
        st.info("No explanation of the model's neurons is shown for this image. Please give your best guess.")
    choice = trial.get("choice")
    if choice:
        st.caption(choice["title"])
        st.image(str(rt.bundle.image(choice["montage"])), width=min(360, 2 * rt.spec.design.cell_px + 40))


def _option_label(options: list[list[str]]) -> Any:
    labels = {str(v): str(label) for v, label in options}
    return lambda v: labels.get(str(v), str(v))


def _trial_page(rt: Any, p: Any) -> None:
    view = rt.current_trial(p)
    if view is None:
        st.rerun()
        return
    trial = view.trial
    _scroll_to_top(f"trial-{view.trial_id}")
    st.progress(view.answered / max(1, view.total), text=f"{view.answered} of {view.total} answered")
    if view.kind == "practice":
        st.subheader(f"Practice {view.practice_number} of {view.practice_total}", anchor=False)
        st.caption("Practice questions do not count; you will see the right answer afterwards.")
    else:
        st.subheader(f"Question {view.answered + 1} of {view.total}", anchor=False)
    _show_panels(rt, trial)
    with st.form(key=f"form-{view.trial_id}", clear_on_submit=False, border=False):
        st.markdown(trial["prompt"])
        options = trial["options"]
        answer = st.radio(
            "Your answer",
            [str(o[0]) for o in options],
            index=None,
            format_func=_option_label(options),
            horizontal=len(options) <= 4 or rt.task.name == "rating",
            key=f"answer-{view.trial_id}",
        )
        confidence = None
        levels = int(trial.get("confidence") or 0)
        if levels:
            confidence = st.radio(
                "How confident are you?",
                list(range(1, levels + 1)),
                index=None,
                format_func=lambda v: CONFIDENCE_LABELS.get(v, str(v)),
                horizontal=True,
                key=f"confidence-{view.trial_id}",
            )
        submitted = st.form_submit_button("Submit answer", type="primary")
    if rt.spec.design.trial_time_limit_s and view.kind != "practice":
        st.caption(f"Please answer within {rt.spec.design.trial_time_limit_s:g} seconds.")
    if not submitted:
        return
    if answer is None or (levels and confidence is None):
        st.warning("Please choose an answer" + (" and a confidence level." if levels else "."))
        return
    res = rt.answer(p, view.trial_id, answer, confidence)
    if view.kind == "practice":
        st.session_state["feedback"] = {
            "trial_id": view.trial_id,
            "correct": res.correct,
            "truth": _option_label(options)(res.truth) if res.truth is not None else None,
            "response": _option_label(options)(res.response),
        }
    st.rerun()


def _feedback_page(rt: Any, feedback: dict[str, Any]) -> None:
    _scroll_to_top(f"feedback-{feedback.get('trial_id')}")
    st.subheader("Practice: feedback", anchor=False)
    if feedback["correct"] is None:
        st.info(f"You answered «{feedback['response']}». There is no right or wrong answer in this task.")
    elif feedback["correct"]:
        st.success(f"Correct: the answer is «{feedback['truth']}».")
    else:
        st.error(
            f"Not quite: you answered «{feedback['response']}», the right answer is «{feedback['truth']}»."
        )
    if st.button("Continue", type="primary", key="feedback-continue"):
        del st.session_state["feedback"]
        st.rerun()
    trial = rt.bundle.trials.get(feedback.get("trial_id", ""))
    if trial is not None and feedback["correct"] is not None:
        st.caption("The practice question again:")
        _show_panels(rt, trial)


def _questionnaire_page(rt: Any, p: Any) -> None:
    _scroll_to_top("questionnaire")
    st.progress(1.0, text="All questions answered")
    st.title("Almost done", anchor=False)
    q = rt.spec.questionnaire
    with st.form(key="questionnaire", border=False):
        exp = None
        if q.get("ml_experience", True):
            exp = st.radio(
                "How much experience do you have with machine learning?",
                list(ML_LABELS),
                index=None,
                format_func=lambda v: ML_LABELS[v],
                key="q-ml",
            )
        comments = None
        if q.get("comments", True):
            comments = st.text_area(
                "Comments (optional): was anything unclear? How did you decide?",
                key="q-comments",
                max_chars=2000,
            )
        done = st.form_submit_button("Finish", type="primary")
    if done:
        if q.get("ml_experience", True) and exp is None:
            st.warning("Please tell us your machine-learning experience.")
            return
        rt.submit_questionnaire(p, exp, comments)
        rt.complete(p)
        st.rerun()


def _complete_page(rt: Any, p: Any) -> None:
    _scroll_to_top("complete")
    code = rt.completion_code(p)
    st.title("Thank you!", anchor=False)
    st.markdown("You have finished the study. Your answers are saved.")
    st.markdown("Your completion code:")
    st.code(code, language=None)
    url = rt.redirect_url(p)
    if url:
        st.link_button("Return to Prolific and submit", url, type="primary")
        st.caption("The button takes you back to Prolific with your completion code.")


def _timed_out_page(rt: Any, p: Any) -> None:
    limit = rt.spec.design.total_time_limit_s
    _message_page(
        rt.spec.title,
        f"The time for this study ({f'{limit / 60:.0f} minutes' if limit >= 120 else f'{limit:g} seconds'}) has run "
        "out, so it cannot be continued. "
        "Thank you for your time; please return the study on Prolific.",
        "warning",
    )


# -- admin ---------------------------------------------------------------------------------------------------
def check_admin_password(given: str, expected: str) -> bool:
    """Constant-time comparison of the typed password with the configured one."""
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def admin_page(rt: Any) -> None:
    from neuroinspect.studies.export import raw_frame, study_status

    st.title(f"Admin: {rt.spec.title}", anchor=False)
    expected = os.environ.get(ADMIN_PASSWORD_ENV, "")
    if not expected:
        st.error(f"The admin page is disabled: set ${ADMIN_PASSWORD_ENV} before `neuroinspect study serve`.")
        return
    if not st.session_state.get("admin"):
        with st.form("admin-login", border=False):
            given = st.text_input("Password", type="password", key="admin-password")
            ok = st.form_submit_button("Log in", type="primary")
        if ok:
            if check_admin_password(given or "", expected):
                st.session_state["admin"] = True
                rt.log_event("admin_login")
                st.rerun()
            else:
                rt.log_event("admin_refused")
                time.sleep(1.0)  # slows down guessing
                st.error("Wrong password.")
        return
    status = study_status(rt.spec, rt.store)
    c = st.columns(4)
    c[0].metric("Participants", status["participants"])
    c[1].metric("Complete", status["complete"])
    c[2].metric("In progress", status["in_progress"])
    c[3].metric("Excluded", status["excluded"])
    st.caption(
        f"{status['responses']} responses; {status['simulated']} simulated participants; "
        f"{status['timed_out']} timed out, {status['declined']} declined. Exclusion rules: "
        + "; ".join(rt.spec.exclusions.describe())
    )
    for note in status["exclusion_notes"]:
        st.caption(note)
    if status["per_condition"]:
        st.subheader("Per condition (main and repeated trials)", anchor=False)
        st.dataframe(
            status["per_condition"],
            hide_index=True,
            width="stretch",
            column_config={
                "kept": st.column_config.NumberColumn("kept (by the rules)"),
                "accuracy_kept": st.column_config.NumberColumn("accuracy (kept)", format="percent"),
            },
        )
    if status["rows"]:
        st.subheader("Participants", anchor=False)
        st.dataframe(
            status["rows"],
            hide_index=True,
            width="stretch",
            column_config={
                "simulated": st.column_config.CheckboxColumn("simulated"),
                "last_seen": st.column_config.TextColumn("last active"),
            },
        )
    df = raw_frame(rt.spec, rt.store)
    st.download_button(
        "Download responses (CSV)",
        df.to_csv(index=False, lineterminator="\n").encode(),
        file_name=f"{rt.study_id}-responses.csv",
        mime="text/csv",
        key="admin-download",
        on_click=lambda: rt.log_event("admin_export", detail={"rows": len(df)}),
    )
    c1, c2, _ = st.columns([1, 1, 4])
    if c1.button("Refresh", key="admin-refresh"):
        st.rerun()
    if c2.button("Log out", key="admin-logout"):
        st.session_state["admin"] = False
        st.rerun()


__all__ = ["main", "check_admin_password", "spec_path", "get_runtime"]
