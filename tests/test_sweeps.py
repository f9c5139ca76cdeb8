"""Declarative sweeps (`neuroinspect bench run SWEEP.toml`): grid expansion and stage sharing, validation,
resume after SIGKILL, the folder lock, failing cells, Ray on loopback, and the paper configs' data check."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import TINY_SHAPES

from neuroinspect.cli import main
from neuroinspect.harness.records import read_records
from neuroinspect.harness.stages import pid_alive
from neuroinspect.sweeps.config import load_sweep, parse_sweep
from neuroinspect.sweeps.plan import build_plan

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs"


def _shapes_params() -> str:
    return "{ " + ", ".join(f"{k} = {v}" for k, v in TINY_SHAPES.items()) + " }"


def _from_checkpoint(ckpt: Path, name: str, extra: str = "", datasets: str | None = None) -> str:
    """A sweep on the shared tiny checkpoint (no training): one random finder, one fc edit."""
    data = datasets or f'[[sweep.datasets]]\nname = "spurious-shapes"\nparams = {_shapes_params()}\n'
    return f"""
[sweep]
name = "{name}"
seeds = [0]
workers = 0
cpus_per_task = 1
truth_samples = 2
n_boot = 10
batch_size = 64
finders = ["random"]
selectors = {{ top = {{ num_neurons = 2 }} }}
{extra}

{data}
[[sweep.models]]
name = "resnet18"
checkpoint = "{ckpt}"

[sweep.editors.fc]
epochs = 1
"""


def _write(tmp_path: Path, text: str, name: str = "sweep.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _run_ids_by_leaf(results: Path) -> Counter[str]:
    return Counter(json.loads(line)["run_id"] for line in results.read_text().splitlines() if line.strip())


# -- the grid and what it shares ---------------------------------------------------------------------
GRID = """
[sweep]
name = "grid"
seeds = [0, 1, 2]
finders = ["counterfactual", "random"]
selectors = ["top"]
visualizers = ["exemplars"]

[[sweep.datasets]]
name = "spurious-shapes"
grid = { align = [0.9, 0.95] }

[[sweep.datasets]]
name = "colored-digits"

[[sweep.models]]
name = "resnet18"

[[sweep.models]]
name = "resnet18"
label = "r18-48px"
image_size = 48

[sweep.editors.neuroinspect]
grid = { lambda3 = [0.01, 0.1] }
[sweep.editors.cw]
[sweep.editors.dfr]
"""


def test_grid_expansion_shares_each_stage_once(tmp_path: Path) -> None:
    cfg = load_sweep(_write(tmp_path, GRID))
    plan = build_plan(cfg)
    # 3 dataset variants x 2 models x 3 seeds = 18 trained models
    assert plan.by_stage() == {
        "attributes": 3,  # one per dataset variant
        "train": 18,
        "features": 54,  # train, val, test per model (the visualizers' val split is the finders')
        "evaluate": 18,
        "truth": 18,  # one ground truth per model
        "causal": 18,  # one causal truth on the mistakes per model
        "find": 36,  # one per (model, finder)
        "select": 36,
        "recovery": 36 + 36,  # per finder (its two lists) and per selection (the edited set)
        "edit": 72 + 18 + 18,  # neuroinspect: 2 lambda3 x 36 selections; cw and dfr: once per model
        "visualize": 36,
    }
    assert len(plan.cells) == 18 * 2 * 1 * 4 * 1
    # each cell alone needs train, 3 feature passes, evaluate, truth, causal, attributes, find, select,
    # the finder's and the edited set's recovery, its edit and its visualization: 14 stages
    assert plan.naive_executions() == 144 * 14
    labels = {n.label for n in plan.nodes.values() if n.stage == "edit"}
    assert (
        "edit neuroinspect[lambda3=0.1] ← counterfactual/top · spurious-shapes[align=0.95]/r18-48px/seed2"
        in labels
    )
    # keys are stable, and changing an editor setting changes only the edits that use it
    again = build_plan(load_sweep(_write(tmp_path, GRID.replace("0.01, 0.1", "0.01, 0.2"), "g2.toml")))
    assert set(again.nodes) != set(plan.nodes)
    changed = {again.nodes[k].stage for k in set(again.nodes) - set(plan.nodes)}
    assert changed == {"edit"}
    assert len(set(again.nodes) - set(plan.nodes)) == 36


def test_a_checkpoint_is_loaded_once_for_all_seeds(tmp_path: Path, tiny_shapes_ckpt: Path) -> None:
    text = _from_checkpoint(tiny_shapes_ckpt, "ck").replace("seeds = [0]", "seeds = [0, 1, 2]")
    plan = build_plan(load_sweep(_write(tmp_path, text)))
    counts = plan.by_stage()
    assert counts["train"] == 1 and counts["features"] == 3  # one load, one feature pass per split
    assert counts["evaluate"] == 3 and counts["find"] == 3  # the seed matters from here on


def test_a_part_adds_a_grid_that_shares_the_stages_it_has_in_common(
    tmp_path: Path, tiny_shapes_ckpt: Path
) -> None:
    """[[sweep.parts]]: a second grid (here seed 1 only, k = 3) in the same run, results and store; the
    nodes both grids need (features, evaluation, the finder run of seed 0's class) run once."""
    text = _from_checkpoint(tiny_shapes_ckpt, "parted").replace("seeds = [0]", "seeds = [0, 1]")
    text += "\n[[sweep.parts]]\nseeds = [1]\nselectors = { top = { num_neurons = 3 } }\n"
    cfg = load_sweep(_write(tmp_path, text))
    plan = build_plan(cfg)
    alone = build_plan(dataclasses.replace(cfg, parts=[]))
    added = {plan.nodes[k].stage for k in set(plan.nodes) - set(alone.nodes)}
    assert added == {"select", "recovery"}  # seed 1's set of 3 and its score (fc reads no neurons: shared)
    out = tmp_path / "out"
    assert main(["bench", "run", str(_write(tmp_path, text)), "--out", str(out), "--no-progress"]) == 0
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    edited = [r for r in records if r["task"] == "neuron_recovery" and r["config"]["list"] == "edited"]
    assert sorted((r["seed"], len(r["config"]["neurons"])) for r in edited) == [(0, 2), (1, 2), (1, 3)]
    assert sum(r["task"] == "mitigation" for r in records) == 2  # one fc edit per seed, not one per grid


def test_a_seed_pattern_loads_each_seeds_own_checkpoint(
    tmp_path: Path, tiny_shapes_ckpt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from neuroinspect.harness.checkpoint import file_sha256

    for seed in (0, 1):
        (tmp_path / f"seed-{seed}").mkdir()
        shutil.copyfile(tiny_shapes_ckpt, tmp_path / f"seed-{seed}" / "best.pt")
    pattern = tmp_path / "seed-{seed}" / "best.pt"
    text = _from_checkpoint(pattern, "per-seed").replace("seeds = [0]", "seeds = [0, 1]")
    plan = build_plan(load_sweep(_write(tmp_path, text)))
    trains = [n for n in plan.nodes.values() if n.stage == "train"]
    assert sorted(n.params["checkpoint"] for n in trains) == [
        str((tmp_path / f"seed-{s}" / "best.pt").resolve()) for s in (0, 1)
    ]
    assert {n.params["checkpoint_sha256"] for n in trains} == {file_sha256(tiny_shapes_ckpt)}
    # a seed without its file stops the sweep before anything runs, naming the seed and the file
    out = tmp_path / "out"
    path = _write(tmp_path, text.replace("seeds = [0, 1]", "seeds = [0, 1, 2]"), "three.toml")
    assert main(["bench", "run", str(path), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "models.resnet18.checkpoint: has no file for seed 2" in err
    assert str(tmp_path / "seed-2" / "best.pt") in err and "drop checkpoint to train in the sweep" in err
    assert "Traceback" not in err and not out.exists()


@pytest.mark.parametrize(
    ("snippet", "needle"),
    [
        ("epochs = 3\n", "sweep.epochs: unknown key"),
        ('executor = "dask"\n', 'sweep.executor: is \'dask\'; use "local" or "ray"'),
        ("gpus_per_task = 1\n", 'sweep.gpus_per_task: applies to executor = "ray" only'),
        ('address = "local"\n', 'sweep.address: applies to executor = "ray" only'),
        ("seeds = []\n", "sweep.seeds: is empty"),
        ('editors = ["neuroinspect", "nope"]\n', "unknown editor 'nope'"),
        (
            "editors = { neuroinspect = { lamda3 = 0.1 } }\n",
            "sweep.editors.neuroinspect.lamda3: unknown setting",
        ),
        (
            "editors = { neuroinspect = { grid = { lambda3 = [] } } }\n",
            "sweep.editors.neuroinspect.grid.lambda3: must be a non-empty list",
        ),
        (
            "selectors = { top = { num_neurons = 0 } }\n",
            "sweep.selectors.top.num_neurons: must be at least 1",
        ),
        ("visualizers = { exemplars = { kk = 3 } }\n", "sweep.visualizers.exemplars.kk: unknown setting"),
        ('parts = [{ seeds = [0] }, { finders = ["nope"] }]\n', "part 2 ([[sweep.parts]]): sweep.finders"),
        (
            "parts = [{ workers = 1 }]\n",
            "sweep.workers: is where and how the whole sweep runs; set it in [sweep]",
        ),
        ("parts = [{}]\n", "part 1 ([[sweep.parts]]): sweep.parts: is empty"),
        ("parts = [{ epochs = 3 }]\n", "part 1 ([[sweep.parts]]): sweep.epochs: unknown key"),
        ('parts = "visual"\n', "sweep.parts: must be [[sweep.parts]] tables"),
        ('datasets = [{ name = "spurious-shapes", root2 = "x" }]\n', "sweep.datasets[0].root2: unknown key"),
        (
            'datasets = [{ name = "colored-digits", train = { epoch = 3 } }]\n',
            "sweep.datasets.colored-digits.train: unknown training setting(s) epoch",
        ),
    ],
)
def test_invalid_sweeps_name_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], snippet: str, needle: str
) -> None:
    editors = "" if snippet.startswith("editors") else 'editors = ["cw"]\n'
    path = _write(tmp_path, f'[sweep]\nname = "bad"\n{editors}{snippet}')
    assert main(["bench", "run", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()  # nothing is created before the sweep is valid


def test_shipped_sweep_configs_are_valid() -> None:
    bundled = load_sweep(CONFIGS / "bundled.toml")
    plan = build_plan(bundled)
    counts = plan.by_stage()
    assert counts["train"] == 2 * 3 and counts["causal"] == 6  # two benchmarks, three seeds
    # the neuron-choice comparison: every finder beside the random one, the controls, fc and dfr
    assert {f.name for f in bundled.finders} >= {"counterfactual", "margin-deficit", "random"}
    assert bundled.controls == ["oracle-neurons", "random-neurons"]
    assert {e.name for e in bundled.editors} >= {"surgical", "neuroinspect", "neuroinspect:l1", "fc", "dfr"}
    main_plan = build_plan(dataclasses.replace(bundled, parts=[]))
    main_counts = main_plan.by_stage()
    # per model: 7 neuron sets (5 finders, 2 controls) x 3 neuron editors, fc and dfr once
    assert main_counts["select"] == 6 * 7 and main_counts["edit"] == 6 * (7 * 3 + 2)
    assert plan.naive_executions() > 10 * len(plan.nodes)
    # the visual half is a part on seed 0 of the same models: it trains nothing, extracts no feature,
    # runs no finder of its own; it renders each finder's candidates once for its three visual selectors
    (visual,) = bundled.parts
    assert visual.seeds == [0] and visual.num_neurons == 5 and visual.name == bundled.name
    assert {s.name for s in visual.selectors} == {"top", "core-sensitivity", "clip", "concept"}
    assert {v.name for v in visual.visualizers} == {"clip_illusion", "lucent"}
    for stage in ("train", "features", "evaluate", "find", "truth", "causal"):
        assert counts[stage] == main_counts[stage], stage
    assert counts["render"] == 2 * 3  # (benchmark, finder) at seed 0
    assert counts["clip"] == 2  # one synthetic CLIP per benchmark, before every node that reads it
    clip_readers = {n.stage for n in plan.nodes.values() if "clip" in n.deps}
    assert clip_readers == {"render", "select", "visualize"}
    readers = [n.deps["render"] for n in plan.nodes.values() if n.stage == "select" and "render" in n.deps]
    assert len(readers) == 2 * 3 * 3 and all(readers.count(r) == 3 for r in set(readers))
    # per model at seed 0: 3 finders x 4 selectors + 2 controls at k = 5
    assert counts["select"] == main_counts["select"] + 2 * (3 * 4 + 2)
    for path in sorted((CONFIGS / "paper").glob("*.toml")):
        cfg = load_sweep(path)
        assert cfg.preset == "paper" and all(d.class_idx is not None for d in cfg.datasets), path.name


# -- the paper configs stop at once without their data -----------------------------------------------
@pytest.mark.parametrize("name", ["flowers102", "food101", "waterbirds", "metashift"])
def test_paper_sweeps_name_the_missing_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "run", str(CONFIGS / "paper" / f"{name}.toml"), "--out", "o"]) == 2
    err = capsys.readouterr().err
    root = "data/MetaShift" if name == "metashift" else "data"
    assert f"dataset root {root} does not exist" in err and "the data this sweep needs is not here" in err
    assert not (tmp_path / "o").exists()


def test_paper_sweep_names_a_missing_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from neuroinspect.datasets import get_dataset

    monkeypatch.chdir(tmp_path)
    get_dataset("flowers102").make_fixture(tmp_path / "data", num_classes=4)
    missing = next((tmp_path / "data").rglob("setid.mat"))
    missing.unlink()
    assert main(["bench", "run", str(CONFIGS / "paper" / "flowers102.toml"), "--out", "o"]) == 2
    err = capsys.readouterr().err
    assert str(missing.relative_to(tmp_path)) in err or str(missing) in err


# -- the lock ----------------------------------------------------------------------------------------
def test_a_live_lock_refuses_and_a_dead_one_is_taken_over(
    tmp_path: Path, tiny_shapes_ckpt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    from neuroinspect.sweeps.lock import LOCK_NAME, SweepLock, _start_time

    out = tmp_path / "o"
    out.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        owner = {
            "pid": sleeper.pid,
            "host": socket.gethostname(),
            "started": _start_time(sleeper.pid),
            "since": "t",
        }
        (out / LOCK_NAME).write_text(json.dumps(owner))
        path = _write(tmp_path, _from_checkpoint(tiny_shapes_ckpt, "lock"))
        assert main(["bench", "run", str(path), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"in use by another sweep (pid {sleeper.pid}" in err
        assert not (out / "results.jsonl").exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    # the owner is gone now: its lock is stale and taken over
    lock = SweepLock(out)
    with lock:
        assert lock.took_over is not None and lock.took_over["pid"] == sleeper.pid
        assert json.loads((out / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert not (out / LOCK_NAME).exists()


# -- resume after SIGKILL ----------------------------------------------------------------------------
def _committed(store: Path) -> dict[str, str]:
    """node key -> its output.json text, for every committed node."""
    return {p.parent.name: p.read_text() for p in store.glob("*/*/output.json")}


def _sweep_in_child(argv: list[str]) -> None:  # pragma: no cover - runs in a forked child
    os._exit(main(argv))


def test_resume_after_sigkill_redoes_only_what_was_in_flight(tmp_path: Path, tiny_shapes_ckpt: Path) -> None:
    import multiprocessing as mp

    # the default executor, a process pool (one worker: the test's CPU budget)
    text = _from_checkpoint(tiny_shapes_ckpt, "kill").replace("seeds = [0]", "seeds = [0, 1, 2]")
    text = text.replace("workers = 0", "workers = 1")
    text += "[sweep.editors.neuroinspect]\nepochs = 1\n"
    path = _write(tmp_path, text)
    out = tmp_path / "out"
    results = out / "results.jsonl"
    argv = ["bench", "run", str(path), "--out", str(out), "--no-progress"]
    # a forked child runs the command as the CLI would (torch is already imported: no start-up cost)
    child = mp.get_context("fork").Process(target=_sweep_in_child, args=(argv,))
    child.start()
    try:
        deadline = time.monotonic() + 240
        while not (results.is_file() and results.read_text().strip()):
            assert child.exitcode is None, "the sweep ended before any result was committed"
            assert time.monotonic() < deadline, "no result committed in time"
            time.sleep(0.01)
        os.kill(child.pid, signal.SIGKILL)  # mid-sweep
    finally:
        if child.exitcode is None:
            os.kill(child.pid, signal.SIGKILL)
        child.join()
    workers = {
        e["pid"] for e in map(json.loads, (out / "events.jsonl").read_text().splitlines()) if e.get("pid")
    }
    assert workers and child.pid not in workers
    deadline = time.monotonic() + 10
    while any(pid_alive(pid) for pid in workers):  # the pool's workers die with the coordinator
        assert time.monotonic() < deadline, "a pool worker outlived the killed sweep"
        time.sleep(0.05)
    plan = json.loads((out / "plan.json").read_text())
    leaves = {n["key"] for n in plan["nodes"] if n["stage"] in ("edit", "recovery", "visualize")}
    before = _committed(out / "store")
    assert 0 < len(before) < len(plan["nodes"]), "the kill should land mid-sweep"
    assert (out / ".sweep.lock").exists()  # left behind by the killed run

    assert main([*argv, "--workers", "0"]) == 0  # the re-run in this process (no second pool start-up)
    after = _committed(out / "store")
    assert set(after) == {n["key"] for n in plan["nodes"]}
    # nodes committed before the kill were not recomputed: same output (timestamps included)
    assert all(after[k] == text for k, text in before.items())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stages"]["already_done"] == len(before)
    assert summary["stages"]["executed"] == len(plan["nodes"]) - len(before)
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    second = events[-1]["run"]
    assert not {e["key"] for e in events if e["run"] == second and e["event"] == "start"} & set(before)
    # every result's records exactly once
    ids = _run_ids_by_leaf(results)
    assert set(ids.values()) == {1}
    assert {rid.rsplit("-", 1)[0] for rid in ids} == {k[:16] for k in leaves}
    assert {r["seed"] for r in read_records(results)} == {0, 1, 2}
    tmp = out / "store" / ".tmp"
    assert not tmp.exists() or not any(tmp.iterdir())  # the killed node's work folder was cleaned
    assert not (out / ".sweep.lock").exists()


# -- a failing cell does not stop the others ------------------------------------------------------------
def test_a_failing_cell_is_recorded_and_the_others_finish(
    tmp_path: Path, tiny_shapes_ckpt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    datasets = "\n".join(
        f'[[sweep.datasets]]\nname = "spurious-shapes"\nlabel = "{label}"\nparams = {_shapes_params()}\n{extra}'
        for label, extra in (("good", ""), ("bad", "class_idx = 7\n"))
    )
    extra = "visualizers = { exemplars = { k = 2 } }\nconcept_recovery = false"
    path = _write(tmp_path, _from_checkpoint(tiny_shapes_ckpt, "fail", extra=extra, datasets=datasets))
    out = tmp_path / "o"
    assert main(["bench", "run", str(path), "--out", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "FAILED  evaluate bad" in err and "class_idx 7 is out of range" in err
    summary = json.loads((out / "summary.json").read_text())
    assert [f["stage"] for f in summary["failures"]] == ["evaluate"]
    assert (
        summary["results"]["failed"] == 0 and summary["results"]["blocked"] == 4
    )  # bad: the finder's and the edited set's recovery, edit, visualize
    assert summary["results"]["done"] == 4
    records = read_records(out / "results.jsonl")
    # good: the finder's two lists and the edited set, the edit, one visualization per neuron
    assert Counter(r["task"] for r in records) == {"mitigation": 1, "neuron_recovery": 3, "visualization": 2}
    vis = [r for r in records if r["task"] == "visualization"]
    assert all(
        Path(r["artifact_dir"], "meta.json").is_file() for r in vis
    )  # paths point at the committed node
    assert "faithfulness_activation_percentile_mean" in vis[0]["metrics"]
    failure = Path(summary["failures"][0]["traceback"])
    assert "class_idx 7 is out of range" in failure.read_text()


# -- Ray, on loopback -------------------------------------------------------------------------------------
@pytest.mark.long
def test_a_sweep_under_a_local_ray_instance_matches_the_local_run(
    tmp_path: Path, tiny_shapes_ckpt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        from _services import services_required

        if services_required():
            pytest.fail("ray is not installed (pip install -e '.[ray]'); CI needs it")
        pytest.skip("ray is not installed (pip install -e '.[ray]')")
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # every port on 127.0.0.1
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    import ray  # after the variables: Ray reads them when it is imported

    local = _write(tmp_path, _from_checkpoint(tiny_shapes_ckpt, "ray"), "local.toml")
    remote = _write(
        tmp_path,
        _from_checkpoint(tiny_shapes_ckpt, "ray").replace(
            "workers = 0", 'executor = "ray"\naddress = "local"\nworkers = 1'
        ),
        "ray.toml",
    )
    assert main(["bench", "run", str(local), "--out", str(tmp_path / "local"), "--no-progress"]) == 0
    assert main(["bench", "run", str(remote), "--out", str(tmp_path / "ray"), "--no-progress"]) == 0
    assert not ray.is_initialized()  # the private instance was shut down
    summary = json.loads((tmp_path / "ray" / "summary.json").read_text())
    assert "Ray (a private local instance on 127.0.0.1" in summary["executor"]
    assert summary["stages"]["executed"] == summary["stages"]["planned"]

    # same nodes, same run ids, the same number in every metric (only timings may differ)
    assert main(["bench", "compare", str(tmp_path / "local"), str(tmp_path / "ray")]) == 0
    local_recs = read_records(tmp_path / "local" / "results.jsonl")
    assert len(local_recs) == len(read_records(tmp_path / "ray" / "results.jsonl")) > 0


# -- the progress display ---------------------------------------------------------------------------------
def test_progress_line_counts_results_and_estimates_time_left() -> None:
    from neuroinspect.sweeps.progress import SweepProgress

    stream = io.StringIO()
    p = SweepProgress(
        {"a": "train", "b": "edit", "c": "edit"}, ["b", "c"], 0, 2, slots=1, live=True, stream=stream
    )
    p.started("a")
    p.finished("a", "train x", {"elapsed": 10.0})
    p.started("b")
    p.finished("b", "edit y", {"elapsed": 2.0})
    assert p.eta() == pytest.approx(2.0)  # one edit left at the observed 2 s per edit
    p.failed("c", "edit z", "UserError: boom\nmore")
    text = stream.getvalue()
    assert "\r\x1b[2K" in text  # redrawn in place on a terminal
    assert "FAILED  edit z: UserError: boom" in text and "results 1/2 done" in text

    log = io.StringIO()
    q = SweepProgress({"a": "edit"}, ["a"], 0, 1, slots=2, live=False, stream=log)
    q.finished("a", "edit y", {"elapsed": 1.0})
    assert log.getvalue().count("\n") == 1 and "results 1/1 done" in log.getvalue()


def test_parse_sweep_accepts_lists_and_tables() -> None:
    cfg = parse_sweep(
        {
            "name": "x",
            "datasets": ["colored-digits"],
            "editors": {"neuroinspect": {"epochs": 2, "grid": {"lambda3": [0.1, 1.0]}}, "cw": {}},
        }
    )
    assert [e.label for e in cfg.editors] == ["neuroinspect[lambda3=0.1]", "neuroinspect[lambda3=1.0]", "cw"]
    assert cfg.editors[0].settings == {"epochs": 2, "lambda3": 0.1}
    assert cfg.seeds == [0, 1, 2] and cfg.executor == "local"


def test_a_folder_of_something_else_is_refused(
    tmp_path: Path, tiny_shapes_ckpt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, _from_checkpoint(tiny_shapes_ckpt, "mine"))
    other = tmp_path / "other"
    other.mkdir()
    (other / "plan.json").write_text(json.dumps({"config": {"name": "theirs"}}))
    assert main(["bench", "run", str(path), "--out", str(other)]) == 2
    assert "holds the sweep 'theirs', not 'mine'" in capsys.readouterr().err
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "results.jsonl").write_text("")
    assert main(["bench", "run", str(path), "--out", str(busy)]) == 2
    assert "is not empty and holds no sweep" in capsys.readouterr().err
    assert sorted(p.name for p in busy.iterdir()) == ["results.jsonl"]
