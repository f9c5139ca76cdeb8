"""Screenshots of every page of the study app, at a laptop and a phone size (for looking, not for tests).

    python scripts/study_screenshots.py configs/studies/shapes-2afc.toml --out runs/screenshots
    NEUROINSPECT_STUDY_ADMIN_PASSWORD=... python scripts/study_screenshots.py SPEC --url http://127.0.0.1:8501/

The spec must be built (`neuroinspect study build`). Serves the app on 127.0.0.1 and a free port
(or drives the one `neuroinspect study serve` runs at ``--url``, with the admin password from
``$NEUROINSPECT_STUDY_ADMIN_PASSWORD``) with Debian's chromium through Playwright, walks one new participant per viewport through consent,
instructions, a practice trial and its feedback, main trials (a catch trial when one comes up), the
questionnaire and the completion page, then the admin page, and writes one PNG per page:
``<out>/<viewport>-<nn>-<page>.png``. The participants it creates are real rows of the spec's database
(ids ``screenshot-...``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import secrets
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VIEWPORTS = {"laptop": {"width": 1366, "height": 900}, "phone": {"width": 390, "height": 844}}


def _load(name: str, path: Path):  # noqa: ANN202
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("spec")
    ap.add_argument("--out", default="runs/screenshots")
    ap.add_argument(
        "--trials", type=int, default=3, help="main trials to screenshot before answering the rest"
    )
    ap.add_argument(
        "--every",
        type=int,
        default=1,
        help="screenshot every N-th main trial (the design's trials_per_condition: one per condition block)",
    )
    ap.add_argument("--url", default=None, help="a running `study serve` (default: start one here)")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT / "tests"))
    services = _load("_services", ROOT / "tests" / "_services.py")
    study = _load("_study", ROOT / "tests" / "_study.py")
    wait_idle, click = study.wait_idle, study.click
    from playwright.sync_api import sync_playwright

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.url:
        password = os.environ.get("NEUROINSPECT_STUDY_ADMIN_PASSWORD", "")
        srv = contextlib.nullcontext(argparse.Namespace(url=args.url.rstrip("/") + "/"))
    else:
        password = secrets.token_hex(8)
        env = {"NEUROINSPECT_STUDY_ADMIN_PASSWORD": password}
        srv = study.StreamlitServer(Path(args.spec), env=env)
    with srv as srv, sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=services.chromium_path(), headless=True, args=services.CHROMIUM_ARGS
        )
        for name, viewport in VIEWPORTS.items():
            page = browser.new_context(viewport=viewport, device_scale_factor=1).new_page()
            n = 0

            def shot(label: str, page=page, name=name, viewport=viewport) -> None:  # noqa: ANN001
                nonlocal n
                wait_idle(page)
                n += 1
                path = out / f"{name}-{n:02d}-{label}.png"
                # Streamlit scrolls inside its main container, so grow the window to the page's height
                tall = page.evaluate(
                    '() => Math.max(...[...document.querySelectorAll(\'[data-testid="stMain"], '
                    '[data-testid="stAppViewContainer"]\')].map(e => e.scrollHeight), 0)'
                )
                page.set_viewport_size(
                    {"width": viewport["width"], "height": max(viewport["height"], int(tall) + 40)}
                )
                page.wait_for_timeout(200)
                page.screenshot(path=str(path), full_page=True)
                page.set_viewport_size(viewport)
                print(path)

            pid = f"screenshot-{name}-{secrets.token_hex(3)}"
            page.goto(f"{srv.url}?PROLIFIC_PID={pid}&STUDY_ID=demo&SESSION_ID=s1", timeout=90_000)
            page.get_by_text("Consent").first.wait_for(timeout=90_000)
            shot("consent")
            page.get_by_text("I have read this information").click()
            wait_idle(page)
            click(page, page.get_by_role("button", name="Continue"), "button:has-text('Start')")
            shot("instructions")
            click(page, page.get_by_role("button", name="Start"), "button:has-text('Submit answer')")
            shown = 0
            for _ in range(200):
                if page.get_by_role("button", name="Continue").count():
                    shot("practice-feedback")
                    click(
                        page, page.get_by_role("button", name="Continue"), "button:has-text('Submit answer')"
                    )
                    continue
                if not page.get_by_role("button", name="Submit answer").count():
                    break
                heading = page.locator("h3").first.inner_text()
                catch = page.get_by_text("Attention check").count() > 0
                practice = heading.startswith("Practice")
                if practice or catch:
                    shot("catch" if catch else "practice")
                else:
                    if shown < args.trials * args.every and shown % args.every == 0:
                        shot("trial")
                    shown += 1
                study.answer_current(page)
            shot("questionnaire")
            if page.locator('[data-testid="stRadio"]').count():
                page.locator('[data-testid="stRadioOption"]').nth(1).click()
                wait_idle(page)
            click(page, page.get_by_role("button", name="Finish"), "text=Thank you!")
            page.locator("code").first.wait_for(timeout=30_000)  # st.code loads lazily
            shot("complete")
            if password:  # (a served app without the variable has no admin page)
                page.goto(f"{srv.url}?page=admin")
                page.get_by_role("button", name="Log in").wait_for()
                shot("admin-login")
                page.locator('input[type="password"]').fill(password)
                click(page, page.get_by_role("button", name="Log in"), "text=Participants")
                shot("admin")
            page.context.close()
        browser.close()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
