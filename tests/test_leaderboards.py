"""Leaderboards: aggregation over seeds, reported rows beside measured ones, the four formats, errors."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import pytest

from neuroinspect.cli import main
from neuroinspect.errors import RecordError
from neuroinspect.harness.records import ACCURACY_KEYS, VERSION_KEYS, make_record, validate_record
from neuroinspect.leaderboards import (
    LocatedRecord,
    build_tables,
    load_records,
    load_reported,
    render,
    summarize,
    to_csv,
    to_html,
    to_latex,
)
from neuroinspect.leaderboards.render import latex_escape

T975 = {2: 4.302652729911275, 3: 3.182446305284263}  # Student t 0.975 quantiles (tables)

PROV = {
    "versions": {k: "0" for k in VERSION_KEYS},
    "git_commit": "abc",
    "device": "cpu",
    "started_at": "2026-01-01T00:00:00+00:00",
    "wall_seconds": 1.0,
}


def acc(**kw: float | None) -> dict[str, float | None]:
    block: dict[str, float | None] = {"test_acc": 0.9, "class_acc": None, "worst_class_acc": 0.8}
    block.update({k: None for k in ACCURACY_KEYS if k not in block})
    block.update(kw)
    return block


def mitigation(run_id: str, seed: int, before: dict, after: dict, **kw: Any) -> dict[str, Any]:
    config = {"selection": "val_worst_class_acc", "uses_group_labels": False, "gamma": 1.0, "lr": 1e-3}
    config.update(kw.pop("config", {}))
    return make_record(
        "mitigation",
        kw.pop("dataset", "waterbirds"),
        kw.pop("model", "resnet18"),
        kw.pop("method", {"finder": "counterfactual", "editor": "neuroinspect"}),
        seed,
        {"before": before, "after": after},
        config,
        PROV,
        class_idx=kw.pop("class_idx", 1),
        run_id=run_id,
        **kw,
    )


def write(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def three_seeds(tmp_path: Path, name: str = "results.jsonl", fingerprint: dict | None = None) -> Path:
    """WGA before 0.60/0.62/0.67, after 0.70/0.74/0.78 (gains 0.10/0.12/0.11); checkpoint paths and the
    neurons a finder picked differ per seed and must not split the row."""
    recs = [
        mitigation(
            f"r{s}",
            s,
            acc(test_acc=0.90, worst_group_acc=b),
            acc(test_acc=0.89, worst_group_acc=a),
            config={"checkpoint": f"/runs/seed{s}/model.pt", "neurons": [s, s + 1]},
            **({"dataset_fingerprint": fingerprint} if fingerprint else {}),
        )
        for s, b, a in ((0, 0.60, 0.70), (1, 0.62, 0.74), (2, 0.67, 0.78))
    ]
    return write(tmp_path / name, recs)


def test_summarize_mean_std_ci_exact() -> None:
    st = summarize([0.70, 0.74, 0.78])
    assert st.n == 3
    assert st.mean == pytest.approx(0.74, abs=1e-12)
    assert st.std == pytest.approx(0.04, abs=1e-12)  # ddof=1: sqrt((0.0016+0+0.0016)/2)
    assert st.ci95 == pytest.approx(T975[2] * 0.04 / math.sqrt(3), rel=1e-9)
    one = summarize([0.5])
    assert (one.mean, one.std, one.ci95, one.n) == (0.5, None, None, 1)
    assert summarize([None, 0.2, 0.4]).n == 2


def test_mitigation_aggregates_three_seeds_with_paired_gain(tmp_path: Path) -> None:
    tables = build_tables(load_records([three_seeds(tmp_path)]))
    assert len(tables) == 1 and len(tables[0].rows) == 1
    row = tables[0].rows[0]
    assert row.n_seeds == 3 and row.source == "measured"
    after, before, gain = (row.metrics[f"{p}.worst_group_acc"] for p in ("after", "before", "gain"))
    assert after.mean == pytest.approx(0.74) and after.std == pytest.approx(0.04)
    assert before.mean == pytest.approx(0.63) and before.std == pytest.approx(
        math.sqrt((0.03**2 + 0.01**2 + 0.04**2) / 2)
    )
    # the gain is averaged per seed: its spread is that of the paired differences 0.10, 0.12, 0.11
    assert gain.mean == pytest.approx(0.11) and gain.std == pytest.approx(0.01)
    assert gain.ci95 == pytest.approx(T975[2] * 0.01 / math.sqrt(3), rel=1e-9)
    assert row.metrics["gain.test_acc"].mean == pytest.approx(-0.01)
    assert tables[0].sort_key == "after.worst_group_acc"
    assert tables[0].notes[0] == "Model selection: best validation worst-class accuracy (no group labels)."
    md = render(tables, "md")
    assert "| 74.00 ± 4.00 |" in md and "| +11.00 ± 1.00 |" in md and "| 3 |" in md
    assert "± 9.94" in render(tables, "md", spread="ci95")  # 4.3027 * 4.00 / sqrt(3)


def test_rows_split_by_settings_and_by_hand_picked_neurons(tmp_path: Path) -> None:
    recs = [
        mitigation(f"g{g}s{s}", s, acc(), acc(worst_class_acc=0.8 + 0.01 * s), config={"gamma": g})
        for g in (1.0, 1.02)
        for s in (0, 1)
    ]
    # two hand-picked neuron sets evaluated on the same seed are different rows, not two "seeds"
    recs += [
        mitigation(f"n{i}", 0, acc(), acc(), method={"editor": "cw"}, config={"neurons": n})
        for i, n in enumerate(([1, 2], [3, 4]))
    ]
    (table,) = build_tables(load_records([write(tmp_path / "r.jsonl", recs)]))
    ni = sorted(r.setting for r in table.rows if r.method_label == "counterfactual + neuroinspect")
    assert ni == ["gamma=1.0", "gamma=1.02"]
    assert all(r.n_seeds == 2 for r in table.rows if r.method_label == "counterfactual + neuroinspect")
    cw = [r for r in table.rows if r.method_label == "cw"]
    assert len(cw) == 2 and sorted(r.setting for r in cw) == ["neurons=[1, 2]", "neurons=[3, 4]"]


#: Waterbirds as released (Sagawa et al.): split sizes and group counts, and a content hash.
OFFICIAL_WB = {
    "version": 1,
    "classes": 2,
    "splits": {"train": 4795, "val": 1199, "test": 5794},
    "groups": {"train": [3498, 184, 56, 1057], "val": [467, 466, 133, 133], "test": [2255, 2255, 642, 642]},
    "sha256": "0123456789abcdef",
}
#: A user's own small Waterbirds-format folder: same name, other data.
OWN_WB = {
    "version": 1,
    "classes": 2,
    "splits": {"train": 40, "val": 20, "test": 20},
    "groups": {"train": [19, 1, 1, 19], "val": [5, 5, 5, 5], "test": [5, 5, 5, 5]},
    "sha256": "fedcba9876543210",
}


def test_reported_and_measured_side_by_side(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = three_seeds(tmp_path, fingerprint=OFFICIAL_WB)
    dfr = mitigation(
        "dfr0",
        0,
        acc(worst_group_acc=0.6),
        acc(worst_group_acc=0.9),
        method={"editor": "dfr"},
        class_idx=1,
        config={"uses_group_labels": True, "selection": "val_worst_group_acc"},
        dataset_fingerprint=OFFICIAL_WB,
    )
    write(tmp_path / "dfr.jsonl", [dfr])
    assert (
        main(
            ["leaderboard", "build", str(results), str(tmp_path / "dfr.jsonl"), "--out", str(tmp_path / "lb")]
        )
        == 0
    )
    out = capsys.readouterr().out
    (table,) = [
        t for t in build_tables(load_records([results]), load_reported()) if t.dataset == "waterbirds"
    ]
    assert table.kind == "measured" and table.official is True
    sources = {r.source for r in table.rows}
    assert sources == {"measured", "reported"}
    ni = next(r for r in table.rows if r.run_ids == ["reported-neuroinspect-waterbirds-c1"])
    assert ni.metrics["before.worst_group_acc"].mean == pytest.approx(0.6604)
    assert ni.metrics["after.worst_group_acc"].mean == pytest.approx(0.7243)
    assert ni.metrics["gain.worst_group_acc"].mean == pytest.approx(0.0639)
    # the printed Markdown has both kinds of rows, the paper's numbers, the group-label marker and the rules
    assert "| measured |" in out and "reported [" in out
    assert "| 72.43 | +6.39 | 90.65 | -1.08 | 83.88 |" in out  # WGA after, Δ, test after, Δ, class after
    assert "dfr †" in out and "† uses group labels" in out
    assert "Selection" in out and "best validation worst-group accuracy" in out
    assert "Data: train 4795 · val 1199 · test 5794 (data 01234567); the official release." in out
    assert "## References" in out and "yeongjoonJu/NeuroInspect" in out
    # flowers102/food101 have no measured runs here: their published rows do not add tables
    assert "flowers102" not in out and "published results" not in out
    assert (tmp_path / "lb" / "leaderboard.md").read_text(encoding="utf-8").strip() == out.strip()

    assert main(["leaderboard", "build", str(results), "--no-reported", "--quiet"]) == 0
    assert main(["leaderboard", "build", str(results), "--reported"]) == 0
    assert "reported [" in capsys.readouterr().out
    assert main(["leaderboard", "build", str(results), "--no-reported"]) == 0
    assert "reported" not in capsys.readouterr().out.split("## ", 1)[1]


@pytest.mark.parametrize(
    ("fingerprint", "why"),
    [
        (OWN_WB, "train has 40 samples, the official release 4795"),
        (None, "the measured records carry no dataset fingerprint"),
        (
            dict(OFFICIAL_WB, groups={**OFFICIAL_WB["groups"], "test": [2255, 2254, 643, 642]}),
            "test group counts",
        ),
    ],
)
def test_published_rows_stay_apart_from_other_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fingerprint: dict | None, why: str
) -> None:
    """A user's own Waterbirds-format data is also called waterbirds: the published rows go to a
    separate table beside it, with the reason, instead of into the measured table."""
    results = three_seeds(tmp_path, fingerprint=fingerprint)
    tables = [t for t in build_tables(load_records([results]), load_reported()) if t.dataset == "waterbirds"]
    assert [t.kind for t in tables] == ["measured", "published"]
    measured, published = tables
    assert {r.source for r in measured.rows} == {"measured"}
    assert {r.source for r in published.rows} == {"reported"} and len(published.rows) > 5
    assert why in published.notes[0] and published.title.endswith("published results")
    assert main(["leaderboard", "build", str(results)]) == 0
    out = capsys.readouterr().out
    assert out.index("waterbirds · resnet18 · class 1") < out.index("waterbirds — published results")
    assert why in out


def test_two_sets_of_data_under_one_name_make_two_tables(tmp_path: Path) -> None:
    official = load_records([three_seeds(tmp_path, "a.jsonl", fingerprint=OFFICIAL_WB)])
    own = [
        LocatedRecord(
            dict(lr.record, run_id=f"own-{lr.record['run_id']}", dataset_fingerprint=OWN_WB), "b", i
        )
        for i, lr in enumerate(official)
    ]
    tables = [t for t in build_tables(official + own, load_reported()) if t.dataset == "waterbirds"]
    assert [(t.kind, t.data_tag, t.official) for t in tables] == [
        ("measured", "data 01234567", True),
        ("measured", "data fedcba98", False),
    ]
    assert {r.source for r in tables[0].rows} == {"measured", "reported"}
    assert {r.source for r in tables[1].rows} == {"measured"}
    assert "not the official release" in tables[1].notes[0]
    assert tables[0].subtitle == "waterbirds · data 01234567 · resnet18 · class 1"


def test_reported_rows_ship_with_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import neuroinspect
    from neuroinspect.leaderboards.reported import default_reported_path

    monkeypatch.delenv("NEUROINSPECT_REPORTED", raising=False)
    path = default_reported_path()
    assert path.is_file() and path.parent == Path(neuroinspect.__file__).parent / "leaderboards"
    repo_link = Path(__file__).resolve().parents[1] / "leaderboards" / "reported.jsonl"
    assert repo_link.resolve() == path.resolve()  # the repository's path names the same file


def test_reported_file_holds_the_papers_numbers() -> None:
    recs = {r.record["run_id"]: r.record for r in load_reported()}
    assert all(
        r["source"] == "reported" and r["citation"] and r["provenance"]["device"] == "reported"
        for r in recs.values()
    )
    assert all(
        r["provenance"]["wall_seconds"] == 0 and set(r["provenance"]["versions"].values()) == {None}
        for r in recs.values()
    )
    fl = recs["reported-neuroinspect-flowers102-c3"]["metrics"]
    assert (fl["before"]["test_acc"], fl["after"]["test_acc"]) == (0.8466, 0.8426)
    assert (fl["before"]["class_acc"], fl["after"]["class_acc"]) == (0.3333, 0.5833)
    fo = recs["reported-neuroinspect-food101-c93"]
    assert fo["class_idx"] == 93 and fo["metrics"]["after"]["class_acc"] == 0.58
    wb = recs["reported-neuroinspect-waterbirds-c1"]
    assert (
        wb["metrics"]["before"]["worst_class_acc"] == 0.7983
        and wb["metrics"]["after"]["worst_class_acc"] == 0.8388
    )
    assert (
        wb["config"]["neurons"] == [6, 915, 1493, 1039, 341, 623]
        and wb["config"]["uses_group_labels"] is False
    )
    dfr = recs["reported-peer-waterbirds-dfr"]
    assert (
        dfr["metrics"]["after"]["worst_group_acc"] == 0.929
        and dfr["metrics"]["std"]["after"]["worst_group_acc"] == 0.002
    )
    assert dfr["config"]["uses_group_labels"] is True
    erm_ms = recs["reported-peer-metashift-erm-subpopbench"]
    assert (
        erm_ms["metrics"]["after"]["worst_group_acc"] == 0.821
        and erm_ms["metrics"]["after"]["mean_acc_reported"] == 0.915
    )


def test_reported_records_need_a_citation_and_measured_ones_stay_strict() -> None:
    rec = mitigation("x", 0, acc(), acc(), source="reported", citation="Someone 2024")
    bad = {k: v for k, v in rec.items() if k != "citation"}
    with pytest.raises(RecordError, match="citation"):
        validate_record(bad)
    published = dict(
        rec, metrics={"before": None, "after": acc(test_acc=None, worst_class_acc=None, worst_group_acc=0.9)}
    )
    validate_record(published)  # a publication may give only WGA
    with pytest.raises(RecordError, match="'metrics.before' must be an object"):
        validate_record(dict(published, source="measured"))
    measured = dict(
        published, source="measured", metrics={"before": acc(), "after": published["metrics"]["after"]}
    )
    with pytest.raises(RecordError, match="metrics.after.test_acc"):
        validate_record(measured)


def test_all_formats_written_and_readable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recs = [
        mitigation(
            f"f{s}",
            s,
            acc(worst_group_acc=0.5),
            acc(worst_group_acc=0.6 + 0.02 * s),
            method={"editor": "fc_retrain"},
            config={"selection": "top_5% on val"},
        )
        for s in range(3)
    ]
    results = write(tmp_path / "r.jsonl", recs)
    out = tmp_path / "lb"
    rc = main(
        [
            "leaderboard",
            "build",
            str(results),
            "--format",
            "md,csv",
            "--format",
            "latex",
            "--format",
            "html",
            "--out",
            str(out),
            "--no-reported",
        ]
    )
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "leaderboard.csv",
        "leaderboard.html",
        "leaderboard.md",
        "leaderboard.tex",
    ]
    printed = capsys.readouterr().out
    # compact: method, n, then WGA after, Δ WGA, test acc after, Δ test acc (class acc is null here)
    assert "| Method | n | WGA after | Δ WGA | Test acc after | Δ Test acc |" in printed
    assert "| fc_retrain | 3 | 62.00 ± 2.00 | +12.00 ± 2.00 | 90.00 ± 0.00 | +0.00 ± 0.00 |" in printed

    rows = list(csv.DictReader(io.StringIO((out / "leaderboard.csv").read_text(encoding="utf-8"))))
    assert len(rows) == 1
    row = rows[0]
    assert (
        row["method"] == "fc_retrain"
        and row["source"] == "measured"
        and row["n_seeds"] == "3"
        and row["seeds"] == "0 1 2"
    )
    assert float(row["after.worst_group_acc"]) == pytest.approx(62.0)
    assert float(row["after.worst_group_acc_std"]) == pytest.approx(2.0)
    assert float(row["after.worst_group_acc_ci95"]) == pytest.approx(T975[2] * 2.0 / math.sqrt(3), rel=1e-5)
    assert float(row["gain.worst_group_acc"]) == pytest.approx(12.0) and row["gain.worst_group_acc_n"] == "3"

    tex = (out / "leaderboard.tex").read_text(encoding="utf-8")
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex
    assert "fc\\_retrain" in tex and "fc_retrain" not in tex.replace("fc\\_retrain", "")
    assert "top\\_5\\% on val" in tex
    assert "62.00 $\\pm$ 2.00" in tex
    assert (
        latex_escape("a_b & 50% #1 {x} ~ ^ \\")
        == "a\\_b \\& 50\\% \\#1 \\{x\\} \\textasciitilde{} \\textasciicircum{} \\textbackslash{}"
    )

    page = (out / "leaderboard.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and '<table class="lb"' in page and "<th" in page
    assert "<td" in page and ">fc_retrain<" in page and 'data-sort="62.0' in page
    assert "addEventListener" in page and "<script src" not in page and "http" not in page.lower()


def test_neuron_recovery_and_visualization_metrics(tmp_path: Path) -> None:
    recs = [
        make_record(
            "neuron_recovery",
            "spurious-shapes",
            "resnet18",
            {"finder": "counterfactual"},
            s,
            {"precision_at_k": {"5": p5, "10": 0.5}, "n_relevant": 7 + s},
            {"ks": [5, 10]},
            PROV,
            class_idx=0,
            run_id=f"nr{s}",
        )
        for s, p5 in ((0, 0.6), (1, 0.8))
    ]
    recs += [
        make_record(
            "visualization",
            "spurious-shapes",
            "resnet18",
            {"visualizer": name},
            s,
            {
                "faithfulness": {"insertion_auc": auc, "deletion_auc": 0.1},
                "activation_gain": 2.0 + s,
                "label": "x",
            },
            {"steps": 10},
            PROV,
            run_id=f"v{name}{s}",
        )
        for name, aucs in (("lucent", (0.3, 0.5)), ("exemplars", (0.7, 0.9)))
        for s, auc in enumerate(aucs)
    ]
    tables = build_tables(load_records([write(tmp_path / "r.jsonl", recs)]))
    assert [t.task for t in tables] == ["neuron_recovery", "visualization"]
    nr, vis = tables
    assert [c.label for c in nr.columns if c.display] == ["P@5", "P@10"]
    assert nr.rows[0].metrics["precision_at_k.5"].mean == pytest.approx(0.7)
    assert "n_relevant" in to_csv(tables).splitlines()[0]  # counts stay in the CSV
    assert [r.method_label for r in vis.rows] == [
        "exemplars",
        "lucent",
    ]  # sorted by the first metric, insertion AUC
    ex = vis.rows[0]
    assert ex.metrics["faithfulness.insertion_auc"].mean == pytest.approx(0.8)
    assert ex.metrics["activation_gain"].mean == pytest.approx(2.5) and ex.metrics[
        "activation_gain"
    ].std == pytest.approx(math.sqrt(0.5))
    md = render(tables, "md")
    assert "| 80.00 ± 14.14 |" not in md  # an AUC is not an accuracy: shown as a plain number
    assert "0.8 ± 0.14" in md and "2.5 ± 0.71" in md


def test_invalid_record_exits_2_naming_line_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = mitigation("a", 0, acc(), acc())
    missing = {k: v for k, v in mitigation("b", 1, acc(), acc()).items() if k != "seed"}
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps(good) + "\n\n" + json.dumps(missing) + "\n", encoding="utf-8")
    assert main(["leaderboard", "build", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"{path}:3" in err and "'seed'" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()

    broken = dict(
        good, metrics={"before": acc(), "after": {k: v for k, v in acc().items() if k != "worst_class_acc"}}
    )
    write(path, [broken])
    assert main(["leaderboard", "build", str(path)]) == 2
    assert "metrics.after.worst_class_acc" in capsys.readouterr().err

    path.write_text("{not json\n", encoding="utf-8")
    assert main(["leaderboard", "build", str(path)]) == 2
    assert f"{path}:1" in capsys.readouterr().err
    assert main(["leaderboard", "build", str(tmp_path / "nope.jsonl")]) == 2
    assert main(["leaderboard", "build", str(path.with_name("x.jsonl")), "--format", "pdf"]) == 2
    assert "--format 'pdf'" in capsys.readouterr().err


def test_duplicate_run_ids_are_rejected(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = three_seeds(tmp_path)
    assert main(["leaderboard", "build", str(results), str(results)]) == 2
    err = capsys.readouterr().err
    assert "duplicate run_id 'r0'" in err and f"{results}:1" in err
    with pytest.raises(RecordError, match=r"duplicate run_id 'same' at .*:1 and .*:2"):
        load_records(
            [
                write(
                    tmp_path / "d.jsonl",
                    [mitigation("same", 0, acc(), acc()), mitigation("same", 1, acc(), acc())],
                )
            ]
        )


def test_latex_and_html_render_every_table(tmp_path: Path) -> None:
    tables = build_tables(load_reported())
    tex, page = to_latex(tables), to_html(tables)
    # four tables of published mitigation numbers and one of published human studies
    assert tex.count("\\begin{tabular}") == len(tables) == page.count('<table class="lb"') == 5
    assert "\\textsuperscript{\\dag}" in tex and "group\\_dro" in tex
    assert page.count("<tr") - len(tables) == sum(len(t.rows) for t in tables)


def test_extra_block_metrics_and_neuron_free_editor_label(tmp_path: Path) -> None:
    recs = [
        mitigation(
            f"m{s}",
            s,
            dict(acc(), macro_acc=0.50),
            dict(acc(), macro_acc=0.45 + 0.01 * s),
            method={"finder": "none", "editor": "fc"},
        )
        for s in range(2)
    ]
    (table,) = build_tables(load_records([write(tmp_path / "r.jsonl", recs)]))
    assert table.rows[0].method_label == "fc"
    gain = next(c for c in table.columns if c.key == "gain.macro_acc")
    assert gain.percent and gain.signed and gain.label == "Δ Macro acc"
    assert "| -4.50 ± 0.71 |" in render(
        [table], "md", columns="all"
    )  # gains -0.05, -0.04 in percentage points
    assert "Macro" not in render([table], "md")  # not a headline column
