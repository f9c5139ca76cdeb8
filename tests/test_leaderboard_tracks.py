"""The four leaderboard tracks: compact tables of like with like, per-list neuron recovery, visualization
faithfulness pooled over pairs, and the human-understanding track with simulated and published rows."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from neuroinspect.cli import main
from neuroinspect.errors import RecordError
from neuroinspect.harness.records import VERSION_KEYS, make_record, validate_record
from neuroinspect.leaderboards import build_tables, render, render_compact_markdown

PROV = {
    "versions": {k: "0" for k in VERSION_KEYS},
    "git_commit": "abc",
    "device": "cpu",
    "started_at": "2026-01-01T00:00:00+00:00",
    "wall_seconds": 1.0,
}
NULL_PROV = {
    "versions": {k: None for k in VERSION_KEYS},
    "git_commit": None,
    "device": "reported",
    "started_at": None,
    "wall_seconds": 0,
}


def write(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def block(wga: float, test: float = 0.9, cls: float = 0.8) -> dict[str, float | None]:
    return {
        "test_acc": test,
        "class_acc": cls,
        "worst_class_acc": cls,
        "worst_group_acc": wga,
        "mean_acc_train_weighted": 0.95,
        "macro_acc": test,
    }


def edit_record(
    run_id: str, editor: str, seed: int, class_idx: int, wga: float, **config: Any
) -> dict[str, Any]:
    return make_record(
        "mitigation",
        "spurious-shapes",
        "resnet18@64px",
        {"finder": "counterfactual", "editor": editor},
        seed,
        {"before": block(0.5), "after": block(wga, test=0.9 + wga / 100)},
        {"selection": "val_acc", "uses_group_labels": False, "class_idx": class_idx, **config},
        PROV,
        class_idx=class_idx,
        run_id=run_id,
    )


def test_mitigation_compact_view_and_one_table_per_class(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the worst class was 0 on seed 0 and 1 on seeds 1 and 2: recorded as classes, not as a rule
    recs = [
        edit_record(f"{e}{s}", e, s, 0 if s == 0 else 1, wga)
        for e, base in (("neuroinspect", 0.7), ("cw", 0.6))
        for s, wga in ((0, base), (1, base + 0.02), (2, base + 0.04))
    ]
    tables = build_tables(recs)
    assert [t.title for t in tables] == [
        "Mitigation — spurious-shapes · resnet18@64px · class 0",
        "Mitigation — spurious-shapes · resnet18@64px · class 1",
    ]
    assert all(t.benchmark_seeds == 3 for t in tables)
    md = render(tables, "md")
    # the headline columns only, one row per method; fewer seeds than the benchmark's are marked
    assert "| Method | n | WGA after | Δ WGA | Test acc after | Δ Test acc | Class acc after |" in md
    assert "| counterfactual + neuroinspect | 2 of 3 | 73.00 ± 1.41 | +23.00 ± 1.41 |" in md
    assert "| counterfactual + neuroinspect | 1 of 3 | 70.00 | +20.00 |" in md
    assert "'k of 3' marks a row measured on fewer of them" in md
    assert "WGA before" not in md and "Macro" not in md
    full = render(tables, "md", columns="all")
    assert "WGA before" in full and "Δ Macro acc" in full and "| Model | Class |" in full

    # the same runs with the class chosen by a rule: one table, one row per method over all 3 seeds
    ruled = [dict(r, config={**r["config"], "class_rule": "worst_val"}) for r in recs]
    (table,) = build_tables(ruled)
    assert (
        table.title
        == "Mitigation — spurious-shapes · resnet18@64px · worst class per seed (on the finder split)"
    )
    assert [(r.method_label, r.n_seeds, r.class_text) for r in table.rows] == [
        ("counterfactual + neuroinspect", 3, "worst (0, 1)"),
        ("counterfactual + cw", 3, "worst (0, 1)"),
    ]
    assert table.rows[0].metrics["after.worst_group_acc"].mean == pytest.approx(0.72)
    assert any("chosen per seed" in n for n in table.notes)

    path = write(tmp_path / "r.jsonl", ruled)
    assert (
        main(
            ["leaderboard", "build", str(path), "--columns", "all", "--format", "csv", "--out", str(tmp_path)]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "WGA before" in out
    rows = list(csv.DictReader(io.StringIO((tmp_path / "leaderboard.csv").read_text(encoding="utf-8"))))
    assert [(r["class_rule"], r["classes"], r["class_idx"], r["track"]) for r in rows] == [
        ("worst_val", "0 1", "", "Mitigation")
    ] * 2
    with pytest.raises(SystemExit) as exc:
        main(["leaderboard", "build", str(path), "--columns", "wide"])
    assert exc.value.code == 2 and "--columns" in capsys.readouterr().err


def recovery_record(
    run_id: str, finder: str, seed: int, lists: dict[str, tuple[float, float, float]]
) -> dict[str, Any]:
    metrics = {
        "lists": {
            name: {
                "precision_at_k": {"5": p5, "10": p5 / 2},
                "margin_share": share,
                "chance_at_k": {"5": chance, "10": chance},
                "n_listed": 9,
            }
            for name, (p5, share, chance) in lists.items()
        },
        "n_relevant": 40,
    }
    return make_record(
        "neuron_recovery", "spurious-shapes", "resnet18@64px", {"finder": finder}, seed, metrics, {"ks": [5, 10]},
        PROV, class_idx=1, run_id=run_id,
    )  # fmt: skip


def test_neuron_recovery_per_list_precision_margin_share_and_chance() -> None:
    recs = [
        recovery_record(
            f"{f}{s}",
            f,
            s,
            {
                "edited": (0.6, 0.3, 0.1),
                "insufficient": (p + 0.1 * s, 0.5 + 0.1 * s, 0.2),
                "excessive": (0.2, 0.1, 0.2),
            },
        )
        for f, p in (("counterfactual", 0.6), ("random", 0.0))
        for s in (0, 1)
    ]
    (table,) = build_tables(recs)
    labels = [c.label for c in table.headline_columns()]
    assert labels == [
        "P@5 insufficient",
        "Margin share insufficient",
        "Chance@5 insufficient",
        "P@5 excessive",
        "Margin share excessive",
        "Chance@5 excessive",
        "P@5 edited",
        "Margin share edited",
        "Chance@5 edited",
    ]
    assert table.sort_key == "lists.insufficient.precision_at_k.5"
    cf, rnd = table.rows
    assert cf.method_label == "counterfactual" and rnd.method_label == "random"
    assert cf.metrics["lists.insufficient.precision_at_k.5"].mean == pytest.approx(0.65)
    assert cf.metrics["lists.insufficient.margin_share"].mean == pytest.approx(0.55)
    md = render([table], "md")
    assert "| counterfactual | 2 | 65.00 ± 7.07 | 55.00 ± 7.07 | 20.00 ± 0.00 | 20.00 ± 0.00 |" in md
    assert "P@10 insufficient" in render([table], "md", columns="all") and "P@10" not in md

    # a record with lists only validates; a bad precision names the list
    bad = json.loads(json.dumps(recs[0]))
    bad["metrics"]["lists"]["excessive"]["precision_at_k"]["5"] = 1.5
    with pytest.raises(RecordError, match=r"metrics\.lists\.excessive\.precision_at_k\.5"):
        validate_record(bad)
    del bad["metrics"]["lists"]
    with pytest.raises(RecordError, match=r"metrics\.precision_at_k"):
        validate_record(bad)


def vis_record(
    run_id: str, method: str, neuron: int, cls: int, truth: str, recovered: bool, pct: float
) -> dict[str, Any]:
    metrics = {
        "faithfulness_activation_percentile_mean": pct,
        "faithfulness_specificity_mean": 0.9,
        "faithfulness_class_prob_mean": 0.5,
        "faithfulness_diversity_feature": 0.1,
        "faithfulness_deletion_auc": 0.3 if method.startswith("captum") else None,
        "concept_recovered": recovered,
        "concept_recovery": {"truth_label": truth, "recovered": recovered},
        "n_images": 4,
    }
    return make_record(
        "visualization", "spurious-shapes", "resnet18", {"visualizer": method}, 0, metrics,
        {"neurons": [1, 2, 3, 4], "steps": 64}, PROV, class_idx=cls, run_id=run_id,
    )  # fmt: skip


def test_visualization_track_pools_neuron_class_pairs() -> None:
    pairs = [(1, 0, "spurious"), (2, 1, "spurious"), (3, 1, "core"), (4, 0, "core")]
    recs = [
        vis_record(f"{m}{n}", m, n, c, truth, ok(n), 90.0 + n)
        for m, ok in (("lucent", lambda n: n in (1, 3)), ("captum_saliency", lambda n: n != 4))
        for n, c, truth in pairs
    ]
    (table,) = build_tables(recs)
    assert table.title == "Visualization faithfulness — spurious-shapes · resnet18"  # classes differ per pair
    assert [(r.method_label, r.n_runs, r.n_seeds) for r in table.rows] == [
        ("captum_saliency", 4, 1),
        ("lucent", 4, 1),
    ]
    sal = table.rows[0]
    assert sal.metrics["concept_recovered"].mean == pytest.approx(0.75)
    assert sal.metrics["concept_recovered.spurious"].mean == pytest.approx(1.0)
    assert sal.metrics["concept_recovered.core"].mean == pytest.approx(0.5)
    md = render([table], "md")
    assert "| Method | n | Pairs | Recovery | Recovery spurious | Recovery core | Act. pct |" in md
    assert "| captum_saliency | 1 | 4 | 75.0 ± 50.0 | 100.0 ± 0.0 | 50.0 ± 70.7 | 92.5 ± 1.3 |" in md
    assert "Some runs share a seed" not in md  # pairs share a seed by design


def study_record(
    run_id: str,
    condition: str,
    visualizer: str,
    acc: float,
    participants: str | None = "simulated",
    task_type: str = "2afc",
    seed: int = 0,
    **kw: Any,
) -> dict[str, Any]:
    chance = 0.5 if task_type == "2afc" else 0.25
    metrics: dict[str, Any] = {
        "task_type": task_type,
        "accuracy": acc,
        "ci_low": acc - 0.03,
        "ci_high": acc + 0.025,
        "ci_method": "wilson",
        "participant_mean": acc + 0.001,
        "participant_2sem": 0.023,
        "boot_low": acc - 0.02,
        "boot_high": acc + 0.02,
        "n_participants": 50,
        "n_trials": 1500,
        "n_excluded": 2,
        "chance": chance,
        "p_value": 1e-9,
    }
    if participants is not None:
        metrics["participants"] = participants
    return make_record(
        "study", kw.pop("dataset", "spurious-shapes"), kw.pop("model", "resnet18@64px"),
        {"condition": condition, "visualizer": visualizer}, seed, metrics, {"spec": "configs/study.toml"},
        kw.pop("provenance", PROV), class_idx=None, run_id=run_id, **kw,
    )  # fmt: skip


def published_study(
    run_id: str, condition: str, visualizer: str, mean: float, sem2: float, cite: str
) -> dict[str, Any]:
    metrics = {
        "task_type": "2afc",
        "accuracy": mean,
        "participant_mean": mean,
        "participant_2sem": sem2,
        "n_participants": 10,
        "chance": 0.5,
        "participants": "human",
    }
    return make_record(
        "study", "imagenet", "googlenet", {"condition": condition, "visualizer": visualizer}, 0, metrics,
        {"n_seeds": None}, NULL_PROV, class_idx=None, run_id=run_id, source="reported", citation=cite,
    )  # fmt: skip


BOROWSKI = "Borowski, Zimmermann et al., Exemplary natural images explain CNN activations better than feature visualizations (ICLR 2021)"
ZIMMERMANN = "Zimmermann, Borowski et al., How well do feature visualizations support causal understanding of CNN activations? (NeurIPS 2021)"


def test_human_understanding_track(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a measured study record must say whether its participants were people (records validation)
    with pytest.raises(RecordError, match="'metrics.participants' is missing"):
        study_record("q-nat", "natural", "exemplars", 0.80, participants=None)
    measured = [
        study_record("s-nat", "natural", "exemplars", 0.90),
        study_record("s-syn", "synthetic", "lucent", 0.78),
        study_record("s-none", "none", "none", 0.52),
        study_record("h-nat", "natural", "exemplars", 0.86, participants="human"),
        study_record("l-clip", "clip_illusion", "clip_illusion", 0.61, task_type="labelling"),
    ]
    reported = [
        published_study("rep-b-nat", "natural", "exemplars", 0.92, 0.02, BOROWSKI),
        published_study("rep-b-syn", "synthetic", "feature visualization", 0.82, 0.04, BOROWSKI),
        published_study("rep-z-fv", "synthetic", "feature visualization", 0.67, 0.04, ZIMMERMANN),
        published_study("rep-z-none", "none", "none", 0.60, 0.03, ZIMMERMANN),
    ]
    tables = build_tables(measured, reported)
    assert [t.title for t in tables] == [
        "Human understanding — 2AFC · spurious-shapes · resnet18@64px",
        "Human understanding — 2AFC · imagenet — published results",
        "Human understanding — labelling · spurious-shapes · resnet18@64px",
    ]
    two, pub, lab = tables
    assert [(r.method_label, r.participants) for r in two.rows] == [
        ("natural (exemplars)", "simulated"),
        ("natural (exemplars)", "human"),
        ("synthetic (lucent)", "simulated"),
        ("none", "simulated"),
    ]
    assert {r.source for r in pub.rows} == {"reported"} and "not a like-for-like comparison" in pub.notes[0]
    assert lab.rows[0].metrics["chance"].mean == 0.25

    results = write(tmp_path / "study.jsonl", measured)
    reported_file = write(tmp_path / "reported.jsonl", reported)
    out_dir = tmp_path / "lb"
    argv = [
        "leaderboard",
        "build",
        str(results),
        "--reported-file",
        str(reported_file),
        "--out",
        str(out_dir),
    ]
    assert main([*argv, "--format", "md,html"]) == 0
    md = capsys.readouterr().out
    header = "| Method | Data | Accuracy [95% CI] | Mean ± 2 SEM | Participants | Trials | Chance |"
    assert header in md
    assert "| natural (exemplars) | simulated | 90.0 [87.0, 92.5] | 90.1 ± 2.3 | 50 | 1500 | 50.0 |" in md
    assert "| natural (exemplars) | human | 86.0 [83.0, 88.5] |" in md
    # simulated participants are never passed off as human data
    assert "| natural (exemplars) | human | 90.0" not in md
    assert "come from simulated participants (model observers), not people" in md
    pub_header = (
        "| Method | Model | Data | Source | Accuracy [95% CI] | Mean ± 2 SEM | Participants | Chance |"
    )
    assert pub_header in md
    assert "| natural (exemplars) | googlenet | human | reported [1] | 92.0 | 92.0 ± 2.0 | 10 | 50.0 |" in md
    assert "| none | googlenet | human | reported [2] | 60.0 | 60.0 ± 3.0 | 10 | 50.0 |" in md
    assert md.index("2AFC · spurious-shapes") < md.index("2AFC · imagenet — published results")
    assert BOROWSKI in md and ZIMMERMANN in md
    page = (out_dir / "leaderboard.html").read_text(encoding="utf-8")
    assert page.count('<tr class="simulated">') == 4 and page.count('<tr class="reported"') == 4
    assert '<section id="human-understanding">' in page

    # no published rows without --reported; measured ones unchanged
    assert main([*argv[:3], "--no-reported", "--quiet"]) == 0


def test_compact_markdown_for_reports() -> None:
    recs = [edit_record(f"n{s}", "neuroinspect", s, 1, 0.7 + 0.01 * s) for s in range(3)]
    text = render_compact_markdown(recs, title="Leaderboard of this run")
    assert text.startswith("## Leaderboard of this run\n")
    assert "### Mitigation" in text and "#### spurious-shapes · resnet18@64px · class 1" in text
    assert "| counterfactual + neuroinspect | 3 | 71.00 ± 1.00 | +21.00 ± 1.00 |" in text
    assert "WGA before" not in text
    with pytest.raises(RecordError, match="seed"):
        render_compact_markdown([{k: v for k, v in recs[0].items() if k != "seed"}])


def test_study_rows_over_several_simulations() -> None:
    recs = [study_record(f"sim{s}", "natural", "exemplars", acc, seed=s) for s, acc in ((0, 0.88), (1, 0.92))]
    (table,) = build_tables(recs)
    md = render([table], "md")
    assert (
        "| natural (exemplars) | simulated | 90.0 ± 2.8 | 90.1 ± 2.8 | 50 ± 0 | 1500 ± 0 | 50.0 ± 0.0 |" in md
    )
    assert "mean ± std over the runs instead of one run's interval" in md


def exemplars_record(run_id: str, finder: str, seed: int, neuron: int, cache: str) -> dict[str, Any]:
    """An ``exemplars`` pair as the sweep writes it: the visualizer's settings carry the key of the
    seed's feature cache (a hash that differs per seed, and per output folder)."""
    metrics = {
        "faithfulness_activation_percentile_mean": 90.0 + seed,
        "faithfulness_specificity_mean": 0.9,
        "concept_recovered": True,
        "concept_recovery": {"truth_label": "spurious", "recovered": True},
    }
    config = {
        "k": 4,
        "split": "val",
        "feature_cache_key": cache,
        "selector": {"name": "top", "clip_cache_key": f"c{seed}"},
        "finder": finder,
        "neurons": [neuron],
    }
    return make_record(
        "visualization", "spurious-shapes", "resnet18@64px", {"visualizer": "exemplars"}, seed, metrics,
        config, PROV, class_idx=seed % 2, run_id=run_id,
    )  # fmt: skip


def test_cache_keys_never_split_visualization_rows() -> None:
    recs = [
        exemplars_record(f"{f}{s}{n}", f, s, n, cache=f"{s:x}a5b86ae77a255d15ba2a8c1")
        for f in ("counterfactual", "random")
        for s in (0, 1, 2)
        for n in (7, 9)
    ]
    (table,) = build_tables(recs)
    assert [(r.method_label, r.setting, r.n_seeds, r.n_runs) for r in table.rows] == [
        ("exemplars", "finder=counterfactual", 3, 6),
        ("exemplars", "finder=random", 3, 6),
    ]
    md = render([table], "md")
    assert "cache_key" not in md and "of 3" not in md
    # one seed of another model on the same data is not "1 of 3": the 3 seeds were another model's
    other = dict(exemplars_record("other0", "random", 0, 7, cache="x"), model="resnet18")
    tables = build_tables([*recs, other])
    assert [(t.model, t.benchmark_seeds) for t in tables] == [("resnet18", 1), ("resnet18@64px", 3)]
    assert "of 3" not in render(tables, "md")


def list_record(
    run_id: str, finder: str, seed: int, which: str, p: dict[int, float], share: float, **method: str
) -> dict[str, Any]:
    """A flat per-list ``neuron_recovery`` record as the sweep writes it (``config.list``): a finder's
    ``insufficient`` / ``excessive`` ranking at several k, or the ``edited`` set at k = its size."""
    metrics: dict[str, Any] = {
        "list": which,
        "precision_at_k": {str(k): v for k, v in p.items()},
        "margin_share_at_k": {str(k): share * k / 5 for k in p},
        "chance_precision": 0.25 if which == "edited" else 0.15,
        "chance_margin_share_at_k": {str(k): 0.01 * k / 5 for k in p},
        "n_relevant": 80,
        "flip_rate": 1.0,
    }
    config: dict[str, Any] = {"list": which, "class_rule": "worst_val", "variant": None}
    if which == "edited":
        metrics.update(n_selected=max(p), causal_selected=round(max(p) * p[max(p)]), core_let_through=seed)
        config.update(k=max(p), source=finder, neurons=list(range(seed, seed + max(p))))
    return make_record(
        "neuron_recovery", "spurious-shapes", "resnet18@64px", {"finder": finder, **method}, seed,
        metrics, config, PROV, class_idx=seed % 2, run_id=run_id,
    )  # fmt: skip


def test_edited_sets_get_their_own_table_beside_the_finders_lists(tmp_path: Path) -> None:
    recs = [
        list_record(f"{f}-{w}-{s}", f, s, w, {5: p5, 10: p5 / 2, 50: 0.1}, share=0.05 + 0.01 * s)
        for f, p5 in (("counterfactual", 0.8), ("random", 0.2))
        for w in ("insufficient", "excessive")
        for s in (0, 1, 2)
    ]
    recs += [
        list_record(f"{f}-ed-{s}", f, s, "edited", {50: p50 + 0.02 * s}, share=0.02, **sel)
        for f, p50, sel in (
            ("counterfactual", 0.6, {"selector": "top"}),
            ("oracle-neurons", 0.96, {}),
            ("random-neurons", 0.26, {}),
        )
        for s in (0, 1, 2)
    ]
    tables = build_tables(recs)
    head = "Neuron recovery — spurious-shapes · resnet18@64px · worst class per seed (on the finder split)"
    assert [t.title for t in tables] == [
        f"{head} · insufficient list",
        f"{head} · excessive list",
        f"{head} · edited sets (k = 50)",
    ]
    ins, _, edited = tables
    assert [c.label for c in ins.headline_columns()] == [
        "P@5",
        "Margin share@5",
        "Chance P",
        "Chance margin share@5",
    ]
    assert [c.label for c in edited.headline_columns()] == [
        "P@50",
        "Margin share@50",
        "Chance P",
        "Chance margin share@50",
    ]
    assert edited.sort_key == "precision_at_k.50"
    assert [(r.method_label, r.n_seeds, r.setting) for r in edited.rows] == [
        ("oracle-neurons", 3, ""),
        ("counterfactual + top", 3, ""),
        ("random-neurons", 3, ""),
    ]
    md = render(tables, "md")
    assert "| Method | n | P@5 | Margin share@5 | Chance P | Chance margin share@5 |" in md
    assert "| counterfactual | 3 | 80.00 ± 0.00 | 6.00 ± 1.00 | 15.00 ± 0.00 | 1.00 ± 0.00 |" in md
    assert "| oracle-neurons | 3 | 98.00 ± 2.00 | 20.00 ± 0.00 | 25.00 ± 0.00 | 10.00 ± 0.00 |" in md
    assert "| counterfactual + top | 3 | 62.00 ± 2.00 | 20.00 ± 0.00 | 25.00 ± 0.00 | 10.00 ± 0.00 |" in md
    assert "list=" not in md and "| – |" not in md  # no empty P@5 cells, no list in a Setting column
    # the CSV keeps every number of every record, counts included
    rows = list(csv.DictReader(io.StringIO(render(tables, "csv"))))
    ed = [r for r in rows if r["method"] == "counterfactual + top"]
    assert len(ed) == 1 and ed[0]["core_let_through"] == "1.0" and ed[0]["causal_selected"] == "31.0"
    assert [r["precision_at_k.10"] for r in rows if r["method"] == "random"] == ["10.0", "10.0"]

    # edited sets of another size are another table
    more = [
        list_record(f"top5-{s}", "counterfactual", s, "edited", {5: 0.8}, 0.02, selector="top")
        for s in (0, 1)
    ]
    titles = [t.title for t in build_tables(recs + more)]
    assert f"{head} · edited sets (k = 5)" in titles and f"{head} · edited sets (k = 50)" in titles


def test_committed_neuron_choice_records_render_their_edited_sets() -> None:
    """The older neuron-choice records (k = 5 edited sets) still read: P@5 in every row."""
    from neuroinspect.leaderboards import load_records

    root = Path(__file__).resolve().parents[1] / "leaderboards" / "measured" / "neuron-choice"
    tables = [
        t
        for t in build_tables(load_records([root / "spurious-shapes-k5.jsonl"]))
        if t.task == "neuron_recovery"
    ]
    assert [t.subtitle.rsplit(" · ", 1)[1] for t in tables] == [
        "insufficient list",
        "excessive list",
        "edited sets (k = 5)",
    ]
    for t in tables:
        assert [c.label for c in t.headline_columns()][:2] == ["P@5", "Margin share@5"]
        assert all(r.metrics["precision_at_k.5"].mean is not None for r in t.rows)


def variant_record(run_id: str, seed: int, variant: str | None, lambda3: float, wga: float) -> dict[str, Any]:
    return make_record(
        "mitigation", "spurious-shapes", "resnet18@64px",
        {"editor": "neuroinspect", "finder": "counterfactual", "selector": "top"}, seed,
        {"before": block(0.5), "after": block(wga)},
        {"selection": "val_acc", "uses_group_labels": False, "variant": variant, "lambda3": lambda3,
         "finder_variant": None, "class_rule": "worst_val"},
        PROV, class_idx=1, run_id=run_id,
    )  # fmt: skip


def test_editor_variant_is_named_in_the_method_and_nulls_are_not_settings() -> None:
    recs = [variant_record(f"a{s}", s, None, 0.01, 0.7) for s in (0, 1)]
    recs += [variant_record(f"b{s}", s, "l1", 1.0, 0.6) for s in (0, 1)]
    (table,) = build_tables(recs)
    assert [(r.method_label, r.setting) for r in table.rows] == [
        ("counterfactual + top + neuroinspect", ""),
        ("counterfactual + top + neuroinspect:l1", ""),
    ]
    md = render([table], "md")
    assert "Setting" not in md and "null" not in md
    # a finder's variant names the finder
    fv = [
        dict(r, config={**r["config"], "finder_variant": "deep"}, run_id=f"f{r['run_id']}") for r in recs[:2]
    ]
    labels = {r.method_label for r in build_tables(recs + fv)[0].rows}
    assert "counterfactual:deep + top + neuroinspect" in labels

    # a null is shown only where it is all that tells a row apart
    gamma = [
        dict(
            variant_record(f"g{g}{s}", s, None, 0.01, 0.7), config={**recs[0]["config"], "gamma": g, "lr": lr}
        )
        for g, lr in ((None, 0.1), (1.02, 0.01))
        for s in (0, 1)
    ]
    assert sorted(r.setting for r in build_tables(gamma)[0].rows) == ["gamma=1.02, lr=0.01", "lr=0.1"]
    alone = [dict(r, config={**r["config"], "lr": 0.1}) for r in gamma]
    assert sorted(r.setting for r in build_tables(alone)[0].rows) == ["gamma=1.02", "gamma=null"]


def test_one_method_at_two_set_sizes_reads_apart_even_when_the_seeds_classes_differ() -> None:
    """A sweep part at k = 5 on seed 0 beside the main grid at k = 50 on three seeds: the per-seed worst
    classes differ (``worst (1)`` against ``worst (0, 1)``), and the Setting column still names k."""
    main = [
        dict(
            variant_record(f"m{s}", s, None, 0.01, 0.7),
            class_idx=s % 2,
            config={**variant_record("x", 0, None, 0.01, 0.7)["config"], "k": 50},
        )
        for s in (0, 1, 2)
    ]
    part = [dict(variant_record("p0", 0, None, 0.01, 0.6), config={**main[0]["config"], "k": 5})]
    (table,) = build_tables(main + part)
    assert sorted((r.class_text, r.setting) for r in table.rows) == [
        ("worst (0, 1)", "k=50"),
        ("worst (1)", "k=5"),
    ]


def test_ties_on_the_sort_column_are_broken_by_the_next_headline_column() -> None:
    recs = [
        list_record(f"{f}{s}", f, s, "insufficient", {5: 1.0}, share=share)
        for f, share in (("alpha", 0.03), ("beta", 0.06), ("gamma", 0.01))
        for s in (0, 1)
    ]
    recs += [list_record(f"low{s}", "aardvark", s, "insufficient", {5: 0.8}, share=0.2) for s in (0, 1)]
    (table,) = build_tables(recs)
    assert [r.method_label for r in table.rows] == ["beta", "alpha", "gamma", "aardvark"]
