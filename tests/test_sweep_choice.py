"""The neuron-choice pipeline in a sweep: selectors, the oracle and random controls, surgical and variant
editors, causal recovery records, after_minus_fc; and one implementation: the sweep and run_experiment
give the same neurons and metrics for the same config and seed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import TINY_SHAPES

from neuroinspect.cli import main
from neuroinspect.errors import UserError
from neuroinspect.harness.records import read_records
from neuroinspect.sweeps.config import load_sweep, parse_sweep
from neuroinspect.sweeps.plan import build_plan

K = 3


def _head(name: str) -> str:
    """The [sweep] lines every sweep of this file shares: seed 0 in this process, tiny truth and bootstrap."""
    return f"""
[sweep]
name = "{name}"
seeds = [0]
workers = 0
cpus_per_task = 1
truth_samples = 2
n_boot = 10
batch_size = 64
"""


def _sweep(ckpt: Path) -> str:
    params = "{ " + ", ".join(f"{k} = {v}" for k, v in TINY_SHAPES.items()) + " }"
    return f"""{_head("choice")}finders = ["counterfactual", "random"]
selectors = ["top"]
num_neurons = {K}
neuron_list = "both"
controls = ["oracle-neurons", "random-neurons"]

[[sweep.datasets]]
name = "spurious-shapes"
params = {params}

[[sweep.models]]
name = "resnet18"
checkpoint = "{ckpt}"

[sweep.editors.surgical]
[sweep.editors.fc]
epochs = 1
[sweep.editors."neuroinspect:l1"]
epochs = 1
lambda3 = 1.0
"""


def _experiment(ckpt: Path) -> Any:
    from neuroinspect.harness.config import ExperimentConfig

    return ExperimentConfig.from_dict(
        {
            "name": "choice",
            "dataset": "spurious-shapes",
            "dataset_params": dict(TINY_SHAPES),
            "checkpoint": str(ckpt),
            "finders": ["counterfactual", "random"],
            "num_neurons": K,
            "neuron_list": "both",
            "editors": ["surgical", "fc", "neuroinspect:l1"],
            "editor_settings": {"fc": {"epochs": 1}, "neuroinspect:l1": {"epochs": 1, "lambda3": 1.0}},
            "truth_samples": 2,
            "n_boot": 10,
            "batch_size": 64,
        }
    )


def _key(r: dict[str, Any]) -> tuple[Any, ...]:
    c = r["config"]
    return (
        r["task"],
        json.dumps(r["method"], sort_keys=True),
        c.get("variant"),
        c.get("source"),
        c.get("list"),
    )


def _comparable(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if k != "edit_wall_seconds"}  # a timing, not a result


def test_sweep_runs_the_neuron_choice_grid_as_run_experiment_does(
    tmp_path: Path, tiny_shapes_ckpt: Path
) -> None:
    from neuroinspect.harness.experiment import run_experiment

    path = tmp_path / "choice.toml"
    path.write_text(_sweep(tiny_shapes_ckpt))
    out = tmp_path / "sweep"
    assert main(["bench", "run", str(path), "--out", str(out), "--no-progress"]) == 0
    swept = read_records(out / "results.jsonl")

    # -- the records of the sweep ----------------------------------------------------------------------
    mitigation = [r for r in swept if r["task"] == "mitigation"]
    sources = {"counterfactual+top", "random+top", "oracle-neurons", "random-neurons"}
    for editor, variant in (("surgical", None), ("neuroinspect", "l1")):
        edits = [r for r in mitigation if r["method"]["editor"] == editor]
        assert {r["config"]["source"] for r in edits} == sources  # every neuron set, named
        assert {r["config"]["variant"] for r in edits} == {variant}
        assert all(len(r["config"]["neurons"]) <= K for r in edits)
    (fc,) = [r for r in mitigation if r["method"]["editor"] == "fc"]
    assert fc["config"]["source"] is None and fc["method"]["finder"] == "none"
    for r in mitigation:  # every edit also against plain fc retraining of the same model and seed
        diff = r["metrics"]["after_minus_fc"]
        assert diff["test_acc"] == pytest.approx(
            r["metrics"]["after"]["test_acc"] - fc["metrics"]["after"]["test_acc"]
        )
    assert fc["metrics"]["after_minus_fc"]["test_acc"] == 0.0

    # the oracle control is the top k neurons by their causal effect E_n on the mistakes
    store = out / "store"
    (causal_dir,) = (store / "causal").iterdir()
    with np.load(causal_dir / "effects.npz") as z:
        effect = z["effect"]
    order = np.lexsort((np.arange(effect.size), -effect))
    oracle = [int(n) for n in order[:K] if effect[n] > 0]
    assert oracle  # the tiny model makes mistakes whose background matters to some neuron
    ni_oracle = next(
        r
        for r in mitigation
        if r["config"]["source"] == "oracle-neurons" and r["method"]["editor"] == "surgical"
    )
    assert ni_oracle["config"]["neurons"] == oracle
    # the surgical edit names the neuron set it edited: the selection's neurons
    selects = {
        json.loads((d / "output.json").read_text())["result"]["key"]: json.loads(
            (d / "output.json").read_text()
        )["result"]
        for d in (store / "select").iterdir()
    }
    for r in mitigation:
        if r["config"]["source"]:
            assert r["config"]["neurons"] == selects[r["config"]["source"]]["neurons"]
    # per-list recovery for every finder, and an edited-set record for every set
    recovery = sorted(
        (r["method"]["finder"], r["config"]["list"]) for r in swept if r["task"] == "neuron_recovery"
    )
    assert recovery == sorted(
        [(f, w) for f in ("counterfactual", "random") for w in ("insufficient", "excessive")]
        + [(f, "edited") for f in ("counterfactual", "random", "oracle-neurons", "random-neurons")]
    )
    oracle_rec = next(
        r for r in swept if r["task"] == "neuron_recovery" and r["method"]["finder"] == "oracle-neurons"
    )
    assert oracle_rec["metrics"]["margin_share_at_k"][str(K)] == pytest.approx(
        float(effect[oracle].sum() / np.clip(effect, 0, None).sum())
    )

    # -- one implementation: run_experiment on the same config and seed gives the same records ----------
    res = run_experiment(
        _experiment(tiny_shapes_ckpt), 0, tmp_path / "exp", show_progress=False, log=lambda _: None
    )
    ours = {_key(r): r for r in swept}
    theirs = {_key(r): r for r in res.records}
    assert set(ours) == set(theirs)
    for k, r in theirs.items():
        assert ours[k]["config"].get("neurons") == r["config"].get("neurons"), k
        assert _comparable(ours[k]["metrics"]) == _comparable(r["metrics"]), k
        assert ours[k]["config"] == r["config"], k
        assert ours[k]["dataset_fingerprint"] == r["dataset_fingerprint"], k
    assert res.effects.oracle(K) == oracle
    # one feature step: run_experiment's cache holds exactly the entries the sweep's feature nodes made
    exp_keys = {p.stem for p in (tmp_path / "exp" / "cache" / "features").glob("*.pt")}
    swept_keys = {
        json.loads((d / "output.json").read_text())["result"]["cache_key"]
        for d in (store / "features").iterdir()
    }
    assert len(swept_keys) == 3 and exp_keys == swept_keys  # train, val and test


def _cfg(**sweep: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "p",
        "seeds": [0, 1],
        "finders": ["counterfactual", "random"],
        "selectors": {"top": {"grid": {"num_neurons": [5, 50]}}},
        "editors": {"surgical": {}, "fc": {}, "dfr": {}, "neuroinspect:l1": {"lambda3": 1.0}},
        "controls": ["oracle-neurons", "random-neurons"],
        "neuron_list": "both",
        "datasets": ["spurious-shapes"],
    }
    return {**base, **sweep}


def test_controls_are_planned_once_per_model_and_k_and_every_edit_reads_fc() -> None:
    plan = build_plan(parse_sweep(_cfg()))
    by = plan.by_stage()
    # 2 seeds: per seed 2 finds x 2 k selections + 2 controls x 2 k
    assert by["select"] == 2 * (4 + 4) and by["causal"] == 2 and by["find"] == 4
    # neuron editors (surgical, neuroinspect:l1) on the 8 sets, fc and dfr once: per seed 16 + 2
    assert by["edit"] == 2 * (16 + 2)
    # per seed: per-list records of 2 finders, edited-set records of the 8 sets
    assert by["recovery"] == 2 * (2 + 8)
    edits = [n for n in plan.nodes.values() if n.stage == "edit"]
    fc = {n.key for n in edits if n.params["editor"] == "fc"}
    assert len(fc) == 2
    assert all(n.deps.get("fc") in fc for n in edits if n.key not in fc)
    controls = [n for n in plan.nodes.values() if n.stage == "select" and n.params.get("control")]
    assert {(n.params["control"], n.params["num_neurons"]) for n in controls} == {
        (c, k) for c in ("oracle-neurons", "random-neurons") for k in (5, 50)
    }
    assert all("causal" in n.deps for n in controls if n.params["control"] == "oracle-neurons")
    cells = {(c.coords["finder"], c.coords["editor"]) for c in plan.cells if c.coords["seed"] == "0"}
    assert ("oracle-neurons[k=50]", "surgical") in cells and ("oracle-neurons[k=5]", "fc") not in cells


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"controls": ["best-neurons"]}, "sweep.controls: 'best-neurons' is not a control"),
        ({"neuron_list": "all"}, "sweep.neuron_list: is 'all'"),
        (
            {"selectors": {"clip": {"treshold": 0.5}}},
            "sweep.selectors.clip: _VisualSelector.__init__() got an unexpected keyword argument 'treshold'",
        ),
        ({"selectors": ["labels"]}, "sweep.selectors.labels"),
        (
            {"selectors": {"top": {"candidate_pool": 0}}},
            "sweep.selectors.top.candidate_pool: must be at least 1",
        ),
        (
            {"editors": {"neuroinspect:l1": {"lambda": 1.0}}},
            "sweep.editors.neuroinspect:l1.lambda: unknown setting",
        ),
        ({"causal_threshold": 2}, "sweep.causal_threshold: must be a number in [0, 1]"),
    ],
)
def test_choice_settings_are_checked_when_the_sweep_is_loaded(change: dict[str, Any], message: str) -> None:
    with pytest.raises(UserError) as err:
        parse_sweep(_cfg(**change))
    assert message in str(err.value)


@pytest.mark.slow  # CLIP-Illusion images of 6 candidates, twice: about 1.5 min on the shared 2 cores
def test_a_visual_selector_sees_in_a_sweep_what_it_sees_in_run_experiment(
    tmp_path: Path, tiny_shapes_ckpt: Path
) -> None:
    from neuroinspect.harness.config import ExperimentConfig
    from neuroinspect.harness.experiment import run_experiment

    settings = {"visualizer_settings": {"iters": 2, "images_per_pair": 2}, "threshold": 1.0}
    text = (
        _sweep(tiny_shapes_ckpt)
        .replace('finders = ["counterfactual", "random"]', 'finders = ["counterfactual"]')
        .replace('selectors = ["top"]', "")
        .replace("num_neurons = 3", 'num_neurons = 2\nclip = "synthetic-clip:random"')
        .replace('controls = ["oracle-neurons", "random-neurons"]', "")
        .split("[sweep.editors.surgical]")[0]
    )
    text += (
        "[sweep.editors.surgical]\n[sweep.selectors.core-sensitivity]\nthreshold = 1.0\n"
        "visualizer_settings = { iters = 2, images_per_pair = 2 }\n"
    )
    path = tmp_path / "visual.toml"
    path.write_text(text)
    out = tmp_path / "sweep"
    assert main(["bench", "run", str(path), "--out", str(out), "--no-progress"]) == 0
    swept = read_records(out / "results.jsonl")
    (edited,) = [r for r in swept if r["task"] == "neuron_recovery" and r["config"]["list"] == "edited"]
    assert edited["method"] == {"finder": "counterfactual", "selector": "core-sensitivity"}
    judged = edited["metrics"]["selection"]
    assert judged["candidates"] == 6 and judged["counts"]["not_judged"] == 0  # it looked at every candidate

    cfg = ExperimentConfig.from_dict(
        {
            "name": "choice",
            "dataset": "spurious-shapes",
            "dataset_params": dict(TINY_SHAPES),
            "checkpoint": str(tiny_shapes_ckpt),
            "finders": ["counterfactual"],
            "selector": "core-sensitivity",
            "selectors": ["core-sensitivity"],
            "selector_settings": {"core-sensitivity": settings},
            "clip": "synthetic-clip:random",
            "num_neurons": 2,
            "neuron_list": "both",
            "controls": [],
            "editors": ["surgical"],
            "truth_samples": 2,
            "n_boot": 10,
            "batch_size": 64,
        }
    )
    res = run_experiment(cfg, 0, tmp_path / "exp", show_progress=False, log=lambda _: None)
    theirs = {_key(r): r for r in res.records}
    for r in swept:
        assert r["config"].get("neurons") == theirs[_key(r)]["config"].get("neurons")
        assert _comparable(r["metrics"]) == _comparable(theirs[_key(r)]["metrics"])


def test_plan_prints_the_bundled_sweeps_nodes_without_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    bundled = Path(__file__).resolve().parent.parent / "configs" / "bundled.toml"
    assert main(["bench", "run", str(bundled), "--plan"]) == 0
    out = capsys.readouterr().out
    # 2 benchmarks x 3 seeds; per model 7 neuron sets x 3 neuron editors + fc + dfr; the visual part at
    # seed 0: per benchmark 3 finders x 4 selectors + 2 controls, each edited by surgical and neuroinspect
    assert "train 6 (of" in out and "causal 6 (of" in out and "render 6 (of" in out
    assert "select 70 (of" in out and f"edit {138 + 2 * 14 * 2} (of" in out
    assert not any(tmp_path.iterdir())  # nothing trained, nothing written


FAST = "{ iters = 2, images_per_pair = 1 }"  # CLIP-Illusion settings of seconds, for wiring tests


def _visual_sweep(ckpt: Path, name: str, finders: str, selectors: str, tail: str = "") -> str:
    """A sweep of visual selectors on the tiny checkpoint, with the random synthetic CLIP, k = 2."""
    params = "{ " + ", ".join(f"{k} = {v}" for k, v in TINY_SHAPES.items()) + " }"
    return f"""{_head(name)}finders = {finders}
num_neurons = 2
neuron_list = "both"
clip = "synthetic-clip:random"
concept_recovery = false

{selectors}
[[sweep.datasets]]
name = "spurious-shapes"
params = {params}

[[sweep.models]]
name = "resnet18"
checkpoint = "{ckpt}"
{tail}"""


def test_clip_selector_alone_and_clip_illusion_in_a_sweep_use_the_sweeps_clip(
    tmp_path: Path, tiny_shapes_ckpt: Path
) -> None:
    """The clip selector renders its own images (no other visual selector before it), a visualizer that
    needs a CLIP gets the sweep's, an empty selection is pictured as nothing, and every visualization
    record carries the data fingerprint."""
    text = _visual_sweep(
        tiny_shapes_ckpt,
        "clipped",
        '["counterfactual"]',
        f"[sweep.selectors.top]\n[sweep.selectors.clip]\nlogit_scale = 0.0001\nmargin = 0.1\nvisualizer_settings = {FAST}\n",
        "\n[sweep.editors.surgical]\n\n[sweep.visualizers.clip_illusion]\niters = 2\nimages_per_pair = 1\n",
    )
    path = tmp_path / "clipped.toml"
    path.write_text(text)
    out = tmp_path / "sweep"
    assert main(["bench", "run", str(path), "--out", str(out), "--no-progress"]) == 0
    assert not (out / "failures").exists()
    swept = read_records(out / "results.jsonl")
    (judged,) = [r for r in swept if r["task"] == "neuron_recovery" and r["method"].get("selector") == "clip"]
    # a logit scale of ~0 puts every candidate's p at 0.5: all unclear, none kept
    assert (
        judged["metrics"]["selection"]["counts"]["unclear"]
        == judged["metrics"]["selection"]["candidates"]
        > 0
    )
    assert judged["config"]["neurons"] == []
    vis = [r for r in swept if r["task"] == "visualization"]
    assert vis and {r["config"]["selector"]["name"] for r in vis} == {"top"}  # the empty set: no picture
    assert all(r["method"]["visualizer"] == "clip_illusion" for r in vis)
    assert all(r["dataset_fingerprint"] == swept[0]["dataset_fingerprint"] for r in vis)
    assert all(r["metrics"].get("faithfulness_clip_score_mean") is not None for r in vis)  # scored by CLIP


def test_visual_selectors_of_one_finder_run_read_one_render_node(
    tmp_path: Path, tiny_shapes_ckpt: Path
) -> None:
    """core-sensitivity and clip with the same picture settings: one ``render`` node per finder run, read
    by both select nodes (neither optimizes an image itself), and a select node given the render node
    chooses exactly what it chooses when it renders the candidates itself."""
    from neuroinspect.harness.stages import STAGES, StageContext, StageStore

    selectors = (
        f"[sweep.selectors.core-sensitivity]\nthreshold = 1.0\nvisualizer_settings = {FAST}\n"
        f"[sweep.selectors.clip]\nmargin = 0.0\nvisualizer_settings = {FAST}\n"
        '[sweep.selectors."clip:other"]\nvisualizer_settings = { iters = 3, images_per_pair = 1 }\n'
    )
    text = _visual_sweep(tiny_shapes_ckpt, "shared", '["counterfactual", "random"]', selectors)
    path = tmp_path / "shared.toml"
    path.write_text(text)
    plan = build_plan(load_sweep(path))
    renders = {k: n for k, n in plan.nodes.items() if n.stage == "render"}
    # per finder: one render for the two selectors that share settings, one for clip:other's
    assert len(renders) == 4
    selects = [n for n in plan.nodes.values() if n.stage == "select" and not n.params.get("control")]
    assert len(selects) == 6 and all(n.deps["render"] in renders for n in selects)
    # one clip node, read by every render (CLIP-guided images) and every select (CLIP-guided pictures)
    (clip,) = [k for k, n in plan.nodes.items() if n.stage == "clip"]
    assert all(n.deps["clip"] == clip for n in [*renders.values(), *selects])
    for f in ("counterfactual", "random"):
        shared = {
            n.deps["render"]
            for n in selects
            if n.params["finder"] == f and n.params["selector"] != "clip:other"
        }
        other = {
            n.deps["render"]
            for n in selects
            if n.params["finder"] == f and n.params["selector"] == "clip:other"
        }
        assert len(shared) == 1 and len(other) == 1 and shared != other

    out = tmp_path / "sweep"
    assert main(["bench", "run", str(path), "--out", str(out), "--no-progress"]) == 0
    assert not (out / "failures").exists()
    store = StageStore(out / "store")
    for n in selects:
        node = store.load("select", n.key)
        assert node.result["rendered_here"] == 0  # every picture came from the render node
        ask = store.load("render", n.deps["render"]).result
        assert node.result["candidates"] == ask["candidates"] and len(ask["candidates"]) == 6

    # the same select node without its render node: it optimizes the same 6 pictures itself
    n = next(n for n in selects if n.params["selector"] == "core-sensitivity")
    deps = {role: store.load(plan.nodes[k].stage, k) for role, k in n.deps.items() if role != "render"}
    work = tmp_path / "alone"
    work.mkdir()
    alone = STAGES["select"](dict(n.params), deps, StageContext(work=work, final=work, key=n.key)).result
    shared_result = store.load("select", n.key).result
    assert alone["rendered_here"] == 6
    assert alone["neurons"] == shared_result["neurons"]
    assert alone["selection"]["scores"] == shared_result["selection"]["scores"]
