"""``study build`` on a real (tiny) model, simulated participants through the same session logic, and the CLI.

The tiny checkpoint is the shared random-init resnet18 at 32 px (``tiny_shapes_ckpt``); visualizers
run with one or two optimization steps. What is checked is the bundle's structure, its determinism
and integrity, and what simulated observers do with it, not the quality of the explanations.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from conftest import TINY_SHAPES

from neuroinspect.cli import main
from neuroinspect.errors import UserError
from neuroinspect.studies import storage as db
from neuroinspect.studies.bundle import BUILD_INFO, MANIFEST, TRUTH_ANSWER, build_bundle, load_bundle
from neuroinspect.studies.observers import simulate
from neuroinspect.studies.responses import COLUMNS
from neuroinspect.studies.session import StudyRuntime
from neuroinspect.studies.spec import load_spec
from neuroinspect.studies.tasks import get_task

CONDITIONS = {
    "2afc": [
        ("none", None, ""),
        ("exemplars", "exemplars", ""),
        ("lucent", "lucent", "settings = {iters = 1}"),
    ],
    "labelling": [("none", None, ""), ("exemplars", "exemplars", "")],
    "mistake": [("none", None, ""), ("exemplars", "exemplars", "")],
    "rating": [("exemplars", "exemplars", ""), ("saliency", "captum_neuron_saliency", "")],
}


def tiny_spec(folder: Path, task: str, ckpt: Path, *, out: str = "out", design: str = "") -> Path:
    params = ", ".join(f"{k} = {v}" for k, v in TINY_SHAPES.items())
    units = "sample = 3" if task == "mistake" else "neurons = [1, 2, 3, 4]\npractice_neurons = [5]"
    text = f"""
title = "tiny {task}"
task = "{task}"
seed = 1
out = "{out}"
[model]
dataset = "spurious-shapes"
dataset_params = {{{params}}}
checkpoint = "{ckpt}"
image_size = 32
[units]
{units}
truth_samples = 4
[design]
trials_per_condition = 2
practice_trials = 1
catch_trials = 2
repeated_trials = 1
n_references = 3
n_images = 3
blamed_neurons = 2
query_quantile = 0.2
cell_px = 48
{design}
[simulation]
lapse = 0.0
classifier = {{method = "logreg", max_train = 40}}
"""
    for name, vis, extra in CONDITIONS[task]:
        text += f'[[conditions]]\nname = "{name}"\n' + (
            "baseline = true\n" if vis is None else f'visualizer = "{vis}"\n{extra}\n'
        )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"tiny-{task}.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def built_2afc(tiny_shapes_ckpt: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NEUROINSPECT_CACHE", str(tmp_path_factory.getbasetemp() / "ni-cache"))
        spec = load_spec(tiny_spec(tmp_path_factory.mktemp("study2afc"), "2afc", tiny_shapes_ckpt))
        lines: list[str] = []
        bundle = build_bundle(spec, show_progress=False, log=lines.append)
    yield spec, bundle, lines
    db.close_stores()


def test_2afc_bundle_structure(built_2afc) -> None:  # noqa: ANN001
    spec, bundle, lines = built_2afc
    assert [ln for ln in lines if ln.startswith("[")] == [
        "[1/5] model and data",
        "[2/5] ground truth",
        "[3/5] units",
        "[4/5] visualizers",
        "[5/5] trials",
    ]
    m = bundle.manifest
    kinds = [t["kind"] for t in m["trials"]]
    assert (kinds.count("main"), kinds.count("practice"), kinds.count("catch")) == (3 * 4, 1, 2)
    assert m["model"]["name"] == "resnet18@32px" and m["n_options"] == 2 and m["task"] == "2afc"
    assert set(m["index"]) == {"none", "exemplars", "lucent"}
    queries: dict[str, list[str]] = {}
    for t in m["trials"]:
        roles = [p["role"] for p in t["panels"]]
        if t["kind"] == "catch":
            assert roles == ["max", "min"]
            imgs = t["panels"][0]["images"] + t["panels"][1]["images"]
            assert set(t["choice"]["images"]) <= set(imgs)  # the answer is on the screen
            continue
        assert len(t["choice"]["images"]) == 2 and t["truth"] in ("A", "B") and t["confidence"] == 6
        if t["kind"] == "main":
            queries.setdefault(t["unit"], []).append(tuple(t["choice"]["images"]))
            expected = {"none": [], "exemplars": ["max", "min"], "lucent": ["max"]}[t["condition"]]
            assert roles == expected  # a synthetic visualizer has no "min" references
            if t["panels"]:  # generated pictures are never captioned as if they were photographs
                assert t["panels"][0]["title"].startswith(
                    {"exemplars": "Images that", "lucent": "Pictures generated"}[t["condition"]]
                )
            for p in t["panels"]:
                assert len(p["images"]) == 3
                assert not set(p["images"]) & set(t["choice"]["images"])  # queries held out
    for unit, pairs in queries.items():  # the same two queries for a unit under every condition
        assert len({frozenset(p) for p in pairs}) == 1, unit
    # every image present with its hash; provenance next to the manifest
    for rel, digest in m["images"].items():
        assert hashlib.sha256((bundle.path / rel).read_bytes()).hexdigest() == digest
    info = json.loads((bundle.path / BUILD_INFO).read_text())
    assert info["provenance"]["versions"]["torch"] and info["log"]


def test_2afc_queries_come_from_the_unit_activations(built_2afc) -> None:  # noqa: ANN001
    """The max query activates the unit more than the min query (on the model, as shown)."""
    import torch
    from PIL import Image

    from neuroinspect.harness.checkpoint import load_checkpoint

    spec, bundle, _ = built_2afc
    surface = load_checkpoint(spec.model_spec.checkpoint).surface.eval()
    checked = 0
    for t in bundle.manifest["trials"]:
        if t["kind"] != "main" or t["condition"] != "none":
            continue
        imgs = [
            np.asarray(Image.open(bundle.image(r)).convert("RGB"), dtype=np.float32) / 255
            for r in t["choice"]["images"]
        ]
        x = surface.normalize(torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2))
        with torch.no_grad():
            acts = surface.features(x)[:, t["neuron"]].tolist()
        right = 0 if t["truth"] == "A" else 1
        assert acts[right] >= acts[1 - right]
        checked += 1
    assert checked == 4


def test_build_is_deterministic_idempotent_and_never_overwrites(
    built_2afc, tmp_path: Path, tiny_shapes_ckpt: Path
) -> None:  # noqa: ANN001
    spec, bundle, _ = built_2afc
    lines: list[str] = []
    again = build_bundle(spec, show_progress=False, log=lines.append)
    assert again.hash == bundle.hash and "nothing to do" in lines[-1]
    twin = load_spec(tiny_spec(tmp_path, "2afc", tiny_shapes_ckpt))
    assert (
        build_bundle(twin, show_progress=False, log=lambda m: None).hash == bundle.hash
    )  # same spec, same bytes
    changed = load_spec(tiny_spec(tmp_path, "2afc", tiny_shapes_ckpt, design='counterbalance = "none"'))
    with pytest.raises(UserError, match="never overwrites"):
        build_bundle(changed, show_progress=False, log=lambda m: None)
    with pytest.raises(UserError, match="different version"):
        load_bundle(changed)
    victim = sorted(twin.bundle_dir.glob("images/*.png"))[0]
    victim.write_bytes(victim.read_bytes()[:-8] + b"tampered")
    with pytest.raises(UserError, match="does not match the hash"):
        load_bundle(twin)


def test_simulated_participants_validate_the_design(built_2afc) -> None:  # noqa: ANN001
    spec, bundle, _ = built_2afc
    rt = StudyRuntime(spec, bundle, db.open_store(spec.database_url))
    observers = ["model"] * 4 + ["random"] * 2 + ["careless"] * 2
    res = simulate(rt, len(observers), observers, concurrency=4, seed=0, show_progress=False)
    assert all(r.completed for r in res.runs) and res.evidence_mode == "attributes"
    assert sum(r.given for r in res.runs) == sum(r.recorded for r in res.runs) == 8 * (1 + 6 + 2 + 1)
    from neuroinspect.studies.exclusions import apply_exclusions
    from neuroinspect.studies.export import responses_frame

    df = responses_frame(spec)
    assert len(df) == 80 and (df["simulated"] == 1).all()
    careless = {r.participant_id for r in res.runs if r.observer == "careless"}
    model = {r.participant_id for r in res.runs if r.observer == "model"}
    reasons = apply_exclusions(df, spec.exclusions).reasons()
    assert careless <= set(reasons) and not model & set(reasons)  # the rules catch careless, keep attentive
    for pid in careless:
        assert {"too_fast", "constant"} <= set(reasons[pid])
    catch = df[(df["trial_kind"] == "catch") & df["participant"].isin(model)]
    assert catch["correct"].mean() == 1.0  # the model observer reads the answer off the screen
    rts = df[df["participant"].isin(careless)]["rt_s"]
    assert rts.max() < 0.3 <= df[df["participant"].isin(model)]["rt_s"].min()


def test_cli_export_status_and_serve_errors(
    built_2afc, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:  # noqa: ANN001
    spec, _, _ = built_2afc
    assert (
        main(
            [
                "study",
                "simulate",
                str(spec.path),
                "--participants",
                "2",
                "--observer",
                "random",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "answers given" in capsys.readouterr().out
    out = tmp_path / "responses.csv"
    assert main(["study", "export", str(spec.path), "--out", str(out)]) == 0
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == list(COLUMNS) and len(rows) >= 20
    from neuroinspect.studies.responses import read_responses

    assert len(read_responses(out)) == len(rows)  # the analysis reads what export writes
    out.write_text("mine")
    assert main(["study", "export", str(spec.path), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_text() == "mine"
    assert main(["study", "export", str(spec.path), "--out", str(out), "--overwrite"]) == 0
    assert len(read_responses(out)) == len(rows)
    assert main(["study", "export", str(spec.path), "--labels", str(tmp_path / "l.csv")]) == 2
    assert "labelling" in capsys.readouterr().err and not (tmp_path / "l.csv").exists()
    assert main(["study", "status", str(spec.path)]) == 0
    text = capsys.readouterr().out
    assert "participants:" in text and "exemplars" in text
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert main(["study", "serve", str(spec.path), "--port", str(s.getsockname()[1])]) == 2
    assert "in use" in capsys.readouterr().err


def test_serve_and_simulate_refuse_an_unbuilt_study(
    tmp_path: Path, tiny_shapes_ckpt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = tiny_spec(tmp_path, "labelling", tiny_shapes_ckpt)
    for argv in (["serve", str(p)], ["simulate", str(p), "--participants", "1"], ["status", str(p)]):
        assert main(["study", *argv]) == 2
        assert "study build" in capsys.readouterr().err


@pytest.mark.parametrize("task", ["labelling", "mistake", "rating"])
def test_other_task_types_build(task: str, tmp_path: Path, tiny_shapes_ckpt: Path) -> None:
    spec = load_spec(tiny_spec(tmp_path, task, tiny_shapes_ckpt))
    bundle = build_bundle(spec, show_progress=False, log=lambda m: None)
    m = bundle.manifest
    mains = [t for t in m["trials"] if t["kind"] == "main"]
    catches = [t for t in m["trials"] if t["kind"] == "catch"]
    assert len(catches) == 2 and all(t["instructed"] == t["truth"] for t in catches)
    values = [o[0] for o in get_task(task).options(spec)]
    assert all(t["instructed"] in values for t in catches)
    if task == "labelling":
        assert len(mains) == 2 * 4
        for t in mains:
            assert t["truth"] == TRUTH_ANSWER[m["units"]["truth"][t["unit"]]]
            assert [p["role"] for p in t["panels"]] == ([] if t["condition"] == "none" else ["max"])
    elif task == "mistake":
        assert len(mains) == 2 * 3
        for t in mains:
            unit = m["units"]["details"][t["unit"]]
            assert t["unit"].startswith("sample:") and t["truth"] in ("object", "background")
            assert unit["pred"] != unit["label"]  # a real mistake of the model
            roles = [p["role"] for p in t["panels"]]
            assert roles == ["input"] + ([] if t["condition"] == "none" else ["blamed"] * len(unit["blamed"]))
    else:
        assert len(mains) == 2 * 4 * 2 and {t["item"] for t in mains} == {"understandable", "useful"}
        assert all(t["truth"] is None and len(t["options"]) == 7 for t in mains)
        assert m["n_options"] is None
    rt = StudyRuntime(spec, bundle, db.Store(spec.database_url))
    res = simulate(rt, 2, ["model", "careless"], concurrency=2, show_progress=False)
    assert all(r.completed for r in res.runs)
    with rt.store.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(db.response)).scalar_one() == sum(
            r.given for r in res.runs
        )
    rt.store.dispose()
    assert (bundle.path / MANIFEST).is_file()


def test_clip_illusion_condition_with_class_conditioned_units(tmp_path: Path, tiny_shapes_ckpt: Path) -> None:
    """A CLIP-guided condition: the builder loads the CLIP the settings name (a random-init one here:
    the benchmark's trained synthetic CLIP is built by `study build` itself when missing)."""
    path = tiny_spec(tmp_path, "labelling", tiny_shapes_ckpt)
    text = path.read_text().replace("neurons = [1, 2, 3, 4]", "neurons = [1, 2]\nclasses = [1]")
    text = text.replace("trials_per_condition = 2", "trials_per_condition = 1")
    text += '[[conditions]]\nname = "illusion"\nvisualizer = "clip_illusion"\nsettings = {iters = 1, clip = "synthetic-clip:random"}\n'
    path.write_text(text)
    spec = load_spec(path)
    lines: list[str] = []
    bundle = build_bundle(spec, show_progress=False, log=lines.append)
    assert any("condition illusion: running clip_illusion on 3 unit(s)" in ln for ln in lines)
    trials = [t for t in bundle.manifest["trials"] if t["condition"] == "illusion" and t["kind"] == "main"]
    assert {t["unit"] for t in trials} == {"neuron:1/class:1", "neuron:2/class:1"}
    assert all(len(t["panels"][0]["images"]) == 3 for t in trials)
