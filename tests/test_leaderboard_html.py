"""The leaderboard's HTML page in a real browser (chromium through Playwright): it opens offline, shows
the tracks, sorts by a column and switches to every column."""

from __future__ import annotations

from pathlib import Path

from test_leaderboard_tracks import edit_record, study_record, write

from neuroinspect.cli import main


def test_html_page_sorts_in_a_browser(browser, tmp_path: Path) -> None:  # noqa: ANN001
    # WGA after: neuroinspect 0.70/0.72/0.74, cw 0.60/..., focal 0.65/...; test acc after follows WGA
    recs = [
        edit_record(f"{e}{s}", e, s, 1, base + 0.02 * s)
        for e, base in (("neuroinspect", 0.70), ("cw", 0.60), ("focal", 0.65))
        for s in range(3 if e != "focal" else 2)
    ]
    recs += [study_record("s1", "natural", "exemplars", 0.9), study_record("s2", "none", "none", 0.55)]
    results = write(tmp_path / "results.jsonl", recs)
    assert (
        main(["leaderboard", "build", str(results), "--format", "html", "--out", str(tmp_path), "--quiet"])
        == 0
    )

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto((tmp_path / "leaderboard.html").as_uri())
    assert all(u.startswith("file:") for u in requests)  # nothing fetched: it opens offline
    # the published human studies of leaderboards/reported.jsonl join their track, with references
    assert page.locator("section h2").all_inner_texts() == ["Mitigation", "Human understanding", "References"]

    table = page.locator("table.lb").first
    methods = table.locator("tbody tr td:first-child")
    # built sorted by WGA after, best first
    assert methods.all_inner_texts() == [
        "counterfactual + neuroinspect",
        "counterfactual + focal",
        "counterfactual + cw",
    ]
    n_cells = table.locator("tbody tr td:nth-child(2)").all_inner_texts()
    assert n_cells == ["3", "2 of 3", "3"]

    header = table.locator("thead th", has_text="Method")
    header.click()  # text column: descending first
    assert methods.all_inner_texts() == [
        "counterfactual + neuroinspect",
        "counterfactual + focal",
        "counterfactual + cw",
    ]
    header.click()
    assert methods.all_inner_texts() == [
        "counterfactual + cw",
        "counterfactual + focal",
        "counterfactual + neuroinspect",
    ]
    assert header.get_attribute("aria-sort") == "ascending"

    wga = table.locator("thead th", has_text="WGA after").first
    wga.click()  # numbers sort by value, not text: 72.00 > 67.00 > 62.00
    assert methods.all_inner_texts() == [
        "counterfactual + neuroinspect",
        "counterfactual + focal",
        "counterfactual + cw",
    ]
    wga.click()
    assert table.locator("tbody tr td:nth-child(3)").all_inner_texts() == [
        "62.00 ± 2.00",
        "66.00 ± 1.41",
        "72.00 ± 2.00",
    ]

    # the compact view hides the other columns until asked for
    before = table.locator("thead th", has_text="WGA before")
    assert before.count() == 1 and not before.is_visible()
    page.check("#all-columns")
    assert before.is_visible()
    sim = page.locator("table.lb").nth(1).locator("tr.simulated")
    assert sim.count() == 2 and "simulated" in sim.first.inner_text()
