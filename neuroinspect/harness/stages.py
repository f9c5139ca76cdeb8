"""The pipeline's stages: small functions with plain inputs and outputs, each cached on disk by the hash of its inputs.

A stage is ``run(params, deps, ctx) -> StageResult``:

- ``params``: a JSON-able dict, the stage's own inputs (dataset name and parameters, method name and
  settings, seed, ...);
- ``deps``: role → :class:`NodeOutput`, the committed outputs of the upstream stages it reads
  (``model``, ``train`` / ``val`` / ``test`` features, ``evaluate``, ``find``, ``select``, ...);
- ``ctx``: a :class:`StageContext` (device, logging, and the folder ``ctx.work`` where the stage
  writes its artifacts);
- the result: a JSON-able ``result`` dict and, for the stages that produce result records (``edit``,
  ``recovery``, ``visualize``), the ``records``.

:class:`StageStore` caches them: a node's key is ``sha256(stage, stage version, params, {role: the
dependency's key})``, so two cells that need the same training, the same feature split or the same
finder run share one node. A node is computed in a private temporary folder and committed by one
atomic ``rename`` to ``ROOT/<stage>/<key>/`` (``output.json``, ``records.jsonl`` and the artifacts): a
killed process leaves either a complete node or none, never half of one.

The stages (``STAGES``). Each computes through the same functions as ``run_experiment``
(:mod:`neuroinspect.harness.pipeline`, :mod:`neuroinspect.harness.choice`), so a sweep and ``demo``
give the same class, neurons and records for the same config and seed:

============  ==========================================  ========================================
stage         params                                      deps → result
============  ==========================================  ========================================
train         dataset, root, dataset_params, model,       — → checkpoint (``model/best.pt`` or a
              image_size, pretrained, preset, train,      given file), its sha256, the record's
              seed; or ``checkpoint`` (a file to load)    model name, classes, training summary
features      dataset, root, dataset_params, split,       model → ``features/<key>.pt``: a
              batch_size                                  :class:`FeatureSet` (N×D, N×K, N labels)
evaluate      class_idx (int or None = worst on the       model, train, val, test → the class and
              finder split), n_boot, seed                 its rule, the metrics before editing,
                                                          the mistakes (``pipeline.choose_class``)
find          finder (``name`` or ``name:variant``),      model, val, evaluate → ``finder.pt``
              settings, seed                              (``pipeline.run_finder``)
truth         dataset, root, dataset_params, split,       model → ``truth.json`` (per-neuron
              n_samples, seed, batch_size                 attribute-ratio labels; descriptive)
causal        dataset, root, dataset_params, split,       model, val, evaluate → ``effects.npz``:
              threshold, batch_size                       E_n of the mistakes and the causal truth
                                                          (``pipeline.measure_causal``; bundled
                                                          benchmarks)
attributes    dataset, root, dataset_params, settings,    — → attribute classifiers (concept
              seed                                        recovery of visualizations)
clip          dataset, root, dataset_params, clip         — → the CLIP's description; the CLIP is
                                                          ready (a synthetic one trained into the
                                                          cache) for the nodes that read it
select        a (finder, selector) choice: finder,        model, val, evaluate, find, [render] → one
              selector, settings, num_neurons,            set (key, neurons, candidates, the
              neuron_list, candidate_pool, gamma, clip,   selector's labels) and its γ
              seed, dataset; or a control: ``control``    (``pipeline.select_pair``); a control:
              (oracle-neurons, random-neurons), finder    model, find (γ), [causal] →
              (whose ``imp`` gives γ), num_neurons, seed  ``pipeline.control_set``
render        dataset, split, num_neurons, neuron_list,   model, evaluate, find → ``visuals.pt``:
              candidate_pool, method, settings,           one Visualization per candidate, read by
              conditioned, clip, seed                     every visual selector of that finder run
recovery      ks, experiment, finder_split, neuron_list,  model, evaluate, causal, [truth] and
              candidate_pool, seed, [finder]              ``find`` → the finder's per-list
                                                          ``neuron_recovery`` records, or
                                                          ``select`` → the edited set's record
edit          editor (``name`` or ``name:variant``),      model, train, val, test, evaluate,
              settings, seed, n_boot, ...                 [select], [fc] → a ``mitigation``
                                                          record (``pipeline.edit_and_measure``,
                                                          ``edit_record``; ``after_minus_fc``
                                                          from the model's plain ``fc`` edit)
visualize     visualizer, settings, seed, split,          model, features, evaluate, select,
              [max_neurons], ...                          [truth, attributes] → visualization
                                                          records, images
============  ==========================================  ========================================

Selectors are the registry of :mod:`neuroinspect.methods.selectors` (``top``, ``core-sensitivity``,
``clip``, ``concept``, ``labels``); a sweep's selector entry may carry the selection step's own
settings (:data:`CHOICE_KEYS`), the rest go to the selector's constructor. Visual selectors get the
:class:`~neuroinspect.methods.selectors.SelectionContext` that ``run_experiment`` builds
(``pipeline.selection_context``) and the CLIP that ``choice.resolve_clip`` resolves; their
CLIP-Illusion images come from one ``render`` node per finder run, shared by every visual selector
of that run (``run_experiment`` batches every finder's candidates in one call, so the pictures, not
the rule, can differ between the two paths).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from neuroinspect.errors import UserError
from neuroinspect.fileio import atomic_write_json, atomic_write_text

Log = Callable[[str], None]

#: Bump a stage's version when its computation changes, so that old cached nodes are not reused.
STAGE_VERSIONS: dict[str, int] = {
    "train": 1,
    "features": 1,
    "evaluate": 2,
    "find": 2,
    "truth": 1,
    "causal": 1,
    "attributes": 1,
    "clip": 1,
    "select": 2,
    "render": 1,
    "recovery": 2,
    "edit": 2,
    "visualize": 1,
}


def _quiet(_: str) -> None:
    return None


@dataclass
class StageContext:
    """Run-time facts a stage needs that are not part of its inputs (they do not enter the key).

    ``work``: the folder the stage writes its artifacts to (becomes the node's folder on commit);
    ``final``: where that folder will be once committed (for paths written into records);
    ``key``: the node's key (leaf stages derive their records' ``run_id`` from it).
    """

    device: str = "cpu"
    show_progress: bool = False
    log: Log = _quiet
    work: Path = Path(".")
    final: Path = Path(".")
    key: str = ""


@dataclass
class NodeOutput:
    """A committed node: its folder, its ``result`` dict and its records."""

    stage: str
    key: str
    dir: Path
    result: dict[str, Any]
    records: list[dict[str, Any]] = field(default_factory=list)
    wall_seconds: float = 0.0
    cached: bool = False

    def path(self, name: str) -> Path:
        """An artifact of this node (relative names resolve inside its folder; absolute ones stay)."""
        p = Path(name)
        return p if p.is_absolute() else self.dir / p


@dataclass
class StageResult:
    result: dict[str, Any]
    records: list[dict[str, Any]] = field(default_factory=list)


# -- keys ------------------------------------------------------------------------------------------
def canonical_json(obj: Any) -> str:
    """The JSON text that keys hash: sorted keys, no whitespace, tuples as lists."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_plain)


def _plain(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not a plain value: {type(obj).__name__}")


def node_key(stage: str, params: Mapping[str, Any], dep_keys: Mapping[str, str]) -> str:
    """``sha256(stage, version, params, {role: dependency key})``, 40 hex digits."""
    if stage not in STAGE_VERSIONS:
        raise ValueError(f"unknown stage {stage!r}")
    text = canonical_json(
        {"stage": stage, "version": STAGE_VERSIONS[stage], "params": params, "deps": dict(dep_keys)}
    )
    return hashlib.sha256(text.encode()).hexdigest()[:40]


# -- the store -------------------------------------------------------------------------------------
class StageStore:
    """Committed nodes under ``root/<stage>/<key>/``; work in progress under ``root/.tmp/``."""

    OUTPUT = "output.json"
    RECORDS = "records.jsonl"

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def node_dir(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def is_done(self, stage: str, key: str) -> bool:
        return (self.node_dir(stage, key) / self.OUTPUT).is_file()

    def load(self, stage: str, key: str) -> NodeOutput:
        d = self.node_dir(stage, key)
        meta = json.loads((d / self.OUTPUT).read_text(encoding="utf-8"))
        records = []
        rec_path = d / self.RECORDS
        if rec_path.is_file():
            records = [json.loads(line) for line in rec_path.read_text(encoding="utf-8").splitlines() if line]
        return NodeOutput(
            stage=stage,
            key=key,
            dir=d,
            result=meta["result"],
            records=records,
            wall_seconds=float(meta.get("wall_seconds", 0.0)),
            cached=True,
        )

    def wall_seconds(self, stage: str, key: str) -> float | None:
        """The committed node's compute time (``None`` when it is not committed)."""
        path = self.node_dir(stage, key) / self.OUTPUT
        if not path.is_file():
            return None
        return float(json.loads(path.read_text(encoding="utf-8")).get("wall_seconds", 0.0))

    def run(
        self,
        stage: str,
        params: Mapping[str, Any],
        deps: Mapping[str, NodeOutput],
        ctx: StageContext | None = None,
    ) -> NodeOutput:
        """The committed output of ``stage`` on these inputs: read from the store, or computed and committed."""
        from neuroinspect.harness.records import validate_record
        from neuroinspect.runtime import Provenance

        params = json.loads(canonical_json(params))  # exactly what the key hashes
        key = node_key(stage, params, {role: d.key for role, d in deps.items()})
        if self.is_done(stage, key):
            return self.load(stage, key)
        final = self.node_dir(stage, key)
        work = self.root / ".tmp" / f"{stage}-{key[:16]}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        work.mkdir(parents=True)
        base = ctx or StageContext()
        run_ctx = dataclasses.replace(base, work=work, final=final, key=key)
        try:
            with Provenance(base.device) as prov:
                out = STAGES[stage](dict(params), dict(deps), run_ctx)
            records = [validate_record(r, where=f" ({stage} {key[:12]})") for r in out.records]
            if records:
                atomic_write_text(
                    work / self.RECORDS, "".join(json.dumps(r, default=_plain) + "\n" for r in records)
                )
            atomic_write_json(
                work / self.OUTPUT,
                {
                    "stage": stage,
                    "version": STAGE_VERSIONS[stage],
                    "key": key,
                    "params": params,
                    "deps": {role: {"stage": d.stage, "key": d.key} for role, d in deps.items()},
                    "result": out.result,
                    "n_records": len(records),
                    "wall_seconds": round(prov.wall_seconds or 0.0, 3),
                    "provenance": prov.as_dict(),
                    "finished_at": time.time(),
                },
            )
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(work, final)
            except OSError:
                if not self.is_done(stage, key):
                    raise
                shutil.rmtree(work, ignore_errors=True)  # another process committed the same node first
                return self.load(stage, key)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        node = self.load(stage, key)
        node.cached = False
        return node

    def clean_tmp(self) -> int:
        """Remove work folders left by dead processes (a SIGKILL mid-node); returns how many."""
        tmp = self.root / ".tmp"
        if not tmp.is_dir():
            return 0
        removed = 0
        for d in tmp.iterdir():
            try:
                pid = int(d.name.split("-")[-2])
            except (IndexError, ValueError):
                continue
            if not pid_alive(pid):
                shutil.rmtree(d, ignore_errors=True)
                removed += 1
        return removed


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` is running on this machine (a zombie is not: an orphan killed with its
    coordinator may stay unreaped where nothing reaps orphans, e.g. a container's PID 1)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): the signal check is all there is
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# -- loaders (with a small per-process cache: a worker runs many nodes on the same model) ------------
_CACHE: OrderedDict[tuple[str, str], Any] = OrderedDict()
_CACHE_SIZE = 8


def _cached(kind: str, key: str, make: Callable[[], Any]) -> Any:
    k = (kind, key)
    if k in _CACHE:
        _CACHE.move_to_end(k)
        return _CACHE[k]
    value = make()
    _CACHE[k] = value
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return value


def load_model(node: NodeOutput) -> Any:
    """The :class:`~neuroinspect.harness.checkpoint.Checkpoint` of a ``train`` node (on the CPU, eval mode)."""
    from neuroinspect.harness.checkpoint import load_checkpoint

    path = node.path(node.result["checkpoint"])
    return _cached("ckpt", f"{path}|{node.result['sha256']}", lambda: load_checkpoint(path))


def load_features(node: NodeOutput) -> Any:
    """The :class:`~neuroinspect.harness.features.FeatureSet` of a ``features`` node."""
    from neuroinspect.harness.features import FeatureSet

    path = node.path(node.result["file"])
    return _cached(
        "features",
        str(path),
        lambda: FeatureSet.from_payload(torch.load(path, map_location="cpu", weights_only=True)),
    )


def load_finder_result(node: NodeOutput) -> Any:
    """The :class:`~neuroinspect.methods.finders.FinderResult` of a ``find`` node."""
    from neuroinspect.methods.finders import FinderResult

    payload = torch.load(node.path(node.result["file"]), map_location="cpu", weights_only=True)
    return FinderResult(**payload)


def load_truth(node: NodeOutput) -> Any:
    """The :class:`~neuroinspect.methods.groundtruth_scoring.NeuronTruth` of a ``truth`` node."""
    from neuroinspect.methods.concept_recovery import truth_from_json

    return truth_from_json(json.loads(node.path(node.result["file"]).read_text(encoding="utf-8")))


def model_name(ckpt: Any) -> str:
    """The records' model name, ``arch@SIZEpx`` (e.g. ``resnet18@64px``)."""
    return f"{ckpt.surface.spec.arch}@{ckpt.surface.data_config.image_size}px"


def _dataset_split(params: Mapping[str, Any], split: str, transform: Any) -> Any:
    from neuroinspect.datasets import get_dataset

    spec = get_dataset(params["dataset"])
    return spec.load(params.get("root"), split, transform, **dict(params.get("dataset_params") or {}))


def _run_id(ctx: StageContext, i: int) -> str:
    # Deterministic: the same cell always writes the same run ids, so a record appended twice is caught
    # by the leaderboard's duplicate check instead of silently counting twice.
    return f"{ctx.key[:16]}-{i}"


def _stamp(records: list[dict[str, Any]], evaluate: NodeOutput) -> None:
    """The data fingerprint of the model's splits on each record (``dataset_fingerprint``)."""
    fp = evaluate.result.get("fingerprint")
    if fp:
        from neuroinspect.datasets.fingerprint import stamp

        stamp(records, fp)


# -- train -----------------------------------------------------------------------------------------
def stage_train(params: dict[str, Any], deps: dict[str, NodeOutput], ctx: StageContext) -> StageResult:
    """Train a classifier (or load the given ``checkpoint``); the checkpoint's path and sha256."""
    from neuroinspect.harness.checkpoint import load_checkpoint
    from neuroinspect.runtime import resolve_device

    dataset = params["dataset"]
    if params.get("checkpoint"):
        ckpt = load_checkpoint(params["checkpoint"], expect_dataset=dataset)
        expected = params.get("checkpoint_sha256")
        if expected and ckpt.sha256 != expected:
            raise UserError(
                f"checkpoint {params['checkpoint']} changed since the sweep was planned (sha256 "
                f"{ckpt.sha256[:12] if ckpt.sha256 else '?'}, expected {expected[:12]}); re-run the sweep to re-plan."
            )
        return StageResult(
            {
                "checkpoint": str(Path(params["checkpoint"]).resolve()),
                "sha256": ckpt.sha256,
                "model_name": model_name(ckpt),
                "classes": list(ckpt.classes),
                "trained": False,
                "summary": {"checkpoint": str(params["checkpoint"]), "trained": False},
            }
        )
    from neuroinspect.harness.pipeline import train_model

    ckpt, summary = train_model(
        dataset=dataset,
        root=params.get("root"),
        dataset_params=dict(params.get("dataset_params") or {}),
        model=params["model"],
        image_size=params.get("image_size"),
        pretrained=params.get("pretrained"),
        preset=params.get("preset", "default"),
        train=dict(params.get("train") or {}),
        seed=int(params["seed"]),
        out_dir=ctx.work / "model",
        device=resolve_device(ctx.device),
        show_progress=ctx.show_progress,
        log=ctx.log,
    )
    return StageResult(
        {
            "checkpoint": "model/best.pt",
            "sha256": ckpt.sha256,
            "model_name": model_name(ckpt),
            "classes": list(ckpt.classes),
            "trained": True,
            "summary": summary,
        }
    )


# -- features --------------------------------------------------------------------------------------
def stage_features(params: dict[str, Any], deps: dict[str, NodeOutput], ctx: StageContext) -> StageResult:
    """Pooled features of one split through the model's evaluation transform (:func:`pipeline.split_features`)."""
    from neuroinspect.harness import pipeline as pl
    from neuroinspect.harness.evaluation import checkpoint_eval_transform
    from neuroinspect.harness.features import FeatureCache
    from neuroinspect.harness.transforms import describe
    from neuroinspect.runtime import resolve_device

    ckpt = load_model(deps["model"])
    transform = checkpoint_eval_transform(ckpt, params["dataset"])
    ds = _dataset_split(params, params["split"], transform)
    cache = FeatureCache(ctx.work)
    fs = pl.split_features(
        ckpt,
        ds,
        transform,
        cache,
        batch_size=int(params.get("batch_size", 256)),
        device=resolve_device(ctx.device),
        show_progress=ctx.show_progress,
    )
    key = fs.meta["cache_key"]
    desc = describe(transform)
    return StageResult(
        {
            "file": str(cache.path(key).relative_to(ctx.work)),
            "split": params["split"],
            "n": len(fs),
            "num_features": fs.num_features,
            "cache_key": key,
            "transform": desc,
        }
    )


# -- evaluate (the original model: the class to debug and the metrics before editing) ----------------
def stage_evaluate(params: dict[str, Any], deps: dict[str, NodeOutput], ctx: StageContext) -> StageResult:
    """The class to debug (given, or the worst on the finder split) and the test metrics before editing."""
    from neuroinspect.harness import pipeline as pl
    from neuroinspect.harness.mitigation import measure

    ckpt = load_model(deps["model"])
    train_fs, val_fs, test_fs = (load_features(deps[r]) for r in ("train", "val", "test"))
    decision = ckpt.surface.decision.cpu()
    counts = pl.train_group_counts(train_fs, test_fs.meta.get("num_groups") or None)
    seed = int(params["seed"])
    try:
        class_idx = pl.choose_class(decision, val_fs, params.get("class_idx"), seed=seed)
    except UserError as err:
        raise UserError(f"{err} Fix class_idx in the sweep config.") from None
    before = measure(
        decision, test_fs, class_idx, train_group_counts=counts, n_boot=int(params["n_boot"]), seed=seed
    )
    mistakes = pl.class_mistakes(val_fs, class_idx)
    fingerprint = None
    if params.get("dataset"):  # the data the records measure on, as run_experiment stamps it
        from neuroinspect.datasets.fingerprint import fingerprint_splits

        split = params.get("finder_split", "val")
        fingerprint = fingerprint_splits(
            {s: _dataset_split(params, s, None) for s in ("train", split, "test")}
        )
    return StageResult(
        {
            "fingerprint": fingerprint,
            "class_idx": class_idx,
            "class_name": ckpt.classes[class_idx],
            # as run_experiment writes it into records: a per-seed worst class is a rule, not a class
            "class_rule": "worst_val" if params.get("class_idx") is None else "fixed",
            "before": before,
            "train_group_counts": counts,
            "n_mistakes": len(mistakes),
            "mistakes": mistakes[:200],
        }
    )


# -- find ------------------------------------------------------------------------------------------
def stage_find(params: dict[str, Any], deps: dict[str, NodeOutput], ctx: StageContext) -> StageResult:
    """One finder on the finder split's features for the evaluated class; the whole :class:`FinderResult`."""
    from neuroinspect.fileio import atomic_torch_save
    from neuroinspect.harness.pipeline import run_finder
    from neuroinspect.runtime import seed_everything

    ckpt = load_model(deps["model"])
    val_fs = load_features(deps["val"])
    class_idx = int(deps["evaluate"].result["class_idx"])
    seed = int(params["seed"])
    seed_everything(seed)
    res = run_finder(
        params["finder"],
        dict(params.get("settings") or {}),
        ckpt.surface.decision.cpu(),
        val_fs,
        class_idx,
        seed=seed,
        show_progress=ctx.show_progress,
    )
    payload = {f.name: getattr(res, f.name) for f in dataclasses.fields(res)}
    atomic_torch_save(ctx.work / "finder.pt", payload)
    summary = res.to_json()
    summary.pop("samples", None)
    return StageResult({"file": "finder.pt", "class_idx": class_idx, "summary": summary})


# -- ground truth ----------------------------------------------------------------------------------
def stage_truth(params: dict[str, Any], deps: dict[str, NodeOutput], ctx: StageContext) -> StageResult:
    """Per-neuron ground truth of a model on a bundled benchmark's split (counterfactual grids)."""
    from neuroinspect.harness.evaluation import checkpoint_eval_transform
    from neuroinspect.methods.concept_recovery import truth_to_json
    from neuroinspect.methods.groundtruth_scoring import neuron_attribute_scores
    from neuroinspect.runtime import resolve_device

    ckpt = load_model(deps["model"])
    transform = checkpoint_eval_transform(ckpt, params["dataset"])
    ds = _dataset_split(params, params.get("split", "test"), transform)
    truth = neuron_attribute_scores(
        ckpt.surface,
        ds,
        transform,
        n_samples=int(params["n_samples"]),
        seed=int(params["seed"]),
        batch_size=int(params.get("batch_size", 256)),
        device=resolve_device(ctx.device),
        show_progress=ctx.show_progress,
    )
    atomic_write_json(ctx.work / "truth.json", truth_to_json(truth), indent=None)
    return StageResult({"file": "truth.json", "counts": truth.counts(), "n_samples": len(truth.indices)})


# -- causal truth on the mistakes (bundled benchmarks) -------------------------------------------------
_EFFECT_ARRAYS = (
    "effect",
    "per_mistake",
    "delta",
    "margin_weight",
    "margin_before",
    "margin_after",
    "flipped",
)


def stage_causal(params: dict[str, Any], deps: dict[str, NodeOutput], ctx: StageContext) -> StageResult:
    """The evaluated class's mistakes on the finder split re-rendered on the other spurious values: the
    per-neuron margin effects E_n and the direction-matched causal truth (:func:`pipeline.measure_causal`)."""
    import numpy as np

    from neuroinspect.harness.evaluation import checkpoint_eval_transform
    from neuroinspect.harness.pipeline import class_mistakes, measure_causal
    from neuroinspect.runtime import resolve_device

    ckpt = load_model(deps["model"])
    val_fs = load_features(deps["val"])
    class_idx = int(deps["evaluate"].result["class_idx"])
    transform = checkpoint_eval_transform(ckpt, params["dataset"])
    ds = _dataset_split(params, params["split"], transform)
    surface = ckpt.surface
    effects, truth = measure_causal(
        surface,
        ds,
        transform,
        surface.decision.cpu(),
        class_idx,
        class_mistakes(val_fs, class_idx),
        threshold=float(params["threshold"]),
        batch_size=int(params.get("batch_size", 256)),
        device=resolve_device(ctx.device),
        show_progress=ctx.show_progress,
    )
    surface.cpu()
    with open(ctx.work / "effects.npz", "wb") as fh:
        np.savez(fh, **{k: getattr(effects, k) for k in _EFFECT_ARRAYS})
    return StageResult(
        {
            "file": "effects.npz",
            "class_idx": class_idx,
            "indices": list(effects.indices),
            "preds": list(effects.preds),
            "split": effects.split,
            "threshold": float(params["threshold"]),
            "counts": truth.counts(),
            "flip_rate": effects.flip_rate,
            "n_mistakes": effects.num_mistakes,
        }
    )


def load_causal(node: NodeOutput) -> tuple[Any, Any]:
    """``(MistakeEffects, CausalTruth)`` of a ``causal`` node."""
    import numpy as np

    from neuroinspect.methods.causal_truth import MistakeEffects, causal_truth

    def make() -> tuple[Any, Any]:
        r = node.result
        with np.load(node.path(r["file"])) as z:
            arrays = {k: z[k] for k in _EFFECT_ARRAYS}
        effects = MistakeEffects(
            class_idx=int(r["class_idx"]),
            indices=[int(i) for i in r["indices"]],
            preds=[int(p) for p in r["preds"]],
            split=r.get("split"),
            **arrays,
        )
        return effects, causal_truth(effects, float(r["threshold"]))

    return _cached("causal", str(node.dir), make)  # type: ignore[no-any-return]


# -- attribute classifiers (concept recovery of visualizations) -----------------------------------------
def stage_attributes(params: dict[str, Any], deps: dict[str, NodeOutput], ctx: StageContext) -> StageResult:
    """Attribute classifiers (core / spurious) of a bundled benchmark, trained on its train split."""
    from neuroinspect.methods import concept_recovery as cr

    settings = cr.classifier_settings(params.get("settings") or {})
    train = _dataset_split(params, "train", None)
    heldout = _dataset_split(params, "val", None)
    clf, info = cr.cached_classifiers(
        train,
        heldout,
        settings,
        int(params["seed"]),
        cache_root=ctx.work,
        show_progress=ctx.show_progress,
    )
    return StageResult(
        {
            "file": str(Path(info["path"]).relative_to(ctx.work)),
            "cache_key": info["cache_key"],
            "settings": settings,
            "accuracy": {k: clf.accuracy[k]["accuracy"] for k in ("core", "spurious")},
        }
    )


def load_attributes(node: NodeOutput) -> Any:
    from neuroinspect.methods.concept_recovery import load_classifiers

    path = node.path(node.result["file"])
    return _cached("attributes", str(path), lambda: load_classifiers(path))


# -- select ----------------------------------------------------------------------------------------
#: settings of a sweep's selector entry that are the selection step's, not the selector's constructor's
CHOICE_KEYS = ("num_neurons", "neuron_list", "candidate_pool")


def neuron_set(result: Mapping[str, Any]) -> Any:
    """The :class:`~neuroinspect.harness.choice.NeuronSet` a ``select`` node's result describes."""
    from neuroinspect.harness.choice import NeuronSet
    from neuroinspect.methods.selectors import Selection

    sel = result.get("selection")
    selection = None
    if sel is not None:
        selection = Selection(
            selector=sel["selector"],
            neurons=[int(n) for n in sel["neurons"]],
            candidates=[int(n) for n in sel["candidates"]],
            labels={int(n): v for n, v in sel["labels"].items()},
            scores={int(n): float(v) for n, v in sel["scores"].items()},
            settings=dict(sel["settings"]),
            info=dict(sel["info"]),
            wall_seconds=float(sel.get("wall_seconds", 0.0)),
        )
    return NeuronSet(
        key=result["key"],
        finder=result["finder"],
        selector=result.get("selector"),
        neurons=[int(n) for n in result["neurons"]],
        imp_finder=result.get("imp_finder"),
        selection=selection,
        candidates=[int(n) for n in result.get("candidates", [])],
    )


def _clip_for(params: Mapping[str, Any], device: Any, ctx: StageContext) -> Any:
    """The CLIP a selector needs, resolved as ``run_experiment`` resolves it (``choice.resolve_clip``)."""
    from types import SimpleNamespace

    from neuroinspect.harness.choice import resolve_clip

    cfg = SimpleNamespace(
        clip=params.get("clip"),
        dataset=params["dataset"],
        dataset_params=dict(params.get("dataset_params") or {}),
    )
    return resolve_clip(cfg, device, ctx.log, ctx.show_progress)


def stage_clip(params: dict[str, Any], deps: dict[str, NodeOutput], ctx: StageContext) -> StageResult:
    """The CLIP that the CLIP-reading nodes of one dataset variant use (``clip``: the sweep's spec, or
    ``None`` for a bundled benchmark's synthetic CLIP), made ready before them: loaded, or trained once
    into the cache (``choice.resolve_clip``). As a node of its own, it is scheduled like any stage;
    before it, the first node that needed the CLIP trained it while a second worker sat waiting on the
    cache's lock (4.5 min of an idle worker in the bundled sweep under Ray)."""
    from neuroinspect.runtime import resolve_device

    clip = _clip_for(params, resolve_device(ctx.device), ctx)
    info = clip.describe()
    info.pop("config", None)
    return StageResult({"clip": info})


def stage_select(params: dict[str, Any], deps: dict[str, NodeOutput], ctx: StageContext) -> StageResult:
    """One neuron set and its editing target γ: a (finder, selector) choice from the finder's candidate
    pool (:func:`pipeline.select_pair`), or a control (``params["control"]``: ``oracle-neurons`` from the
    ``causal`` node, ``random-neurons``; :func:`pipeline.control_set`)."""
    from neuroinspect.harness import pipeline as pl
    from neuroinspect.harness.choice import make_selectors, needs_clip, split_variant
    from neuroinspect.runtime import resolve_device, seed_everything

    seed = int(params["seed"])
    seed_everything(seed)
    k = int(params["num_neurons"])
    res = load_finder_result(deps["find"])
    sctx = None
    if params.get("control"):
        ckpt = load_model(deps["model"])
        effects = load_causal(deps["causal"])[0] if "causal" in deps else None
        ns = pl.control_set(
            params["control"],
            k=k,
            num_features=ckpt.surface.decision.in_features,
            seed=seed,
            effects=effects,
            imp_finder=params["finder"],
        )
        if ns is None:
            raise UserError(
                f"control {params['control']} needs the causal truth of a bundled benchmark; "
                f"{params['dataset']} has none: drop it from controls."
            )
    else:
        name = params["selector"]
        from types import SimpleNamespace

        selectors = make_selectors(
            SimpleNamespace(selectors=[name], selector_settings={name: dict(params.get("settings") or {})}),
            interactive=False,
        )
        if split_variant(name)[0] != "top":  # top reads nothing but the candidates' order
            from neuroinspect.datasets import get_dataset
            from neuroinspect.harness.evaluation import checkpoint_eval_transform

            ckpt = load_model(deps["model"])
            device = resolve_device(ctx.device)
            surface = ckpt.surface.to(device).eval()
            transform = checkpoint_eval_transform(ckpt, params["dataset"])
            benchmark = get_dataset(params["dataset"]).kind == "benchmark"
            sctx = pl.selection_context(
                surface=surface,
                decision=surface.decision.cpu(),
                class_idx=int(deps["evaluate"].result["class_idx"]),
                class_names=list(ckpt.classes),
                val_fs=load_features(deps["val"]),
                finder_ds=_dataset_split(params, params["split"], transform),
                benchmark=benchmark,
                train_ds=_dataset_split(params, "train", transform) if benchmark else None,
                selectors=selectors,
                clip=_clip_for(params, device, ctx) if needs_clip(selectors) else None,
                seed=seed,
                device=device,
                show_progress=ctx.show_progress,
                log=ctx.log,
            )
            sctx.interactive = False
            if "render" in deps and sctx.visuals is not None:
                ask = deps["render"].result
                sctx.visuals.put(
                    [int(n) for n in ask["candidates"]],
                    load_rendered(deps["render"]),
                    ask["method"],
                    ask["settings"],
                    bool(ask["conditioned"]),
                )
        try:
            ns = pl.select_pair(
                params["finder"],
                res,
                name,
                selectors[name],
                sctx,
                k=k,
                neuron_list=params["neuron_list"],
                candidate_pool=int(params["candidate_pool"]),
                log=ctx.log,
            )
        finally:
            if sctx is not None:
                sctx.surface.cpu()
    gamma = params.get("gamma", "auto")
    visuals = sctx.visuals if sctx is not None else None
    return StageResult(
        {
            # pairs this node optimized itself; 0 when a `render` node gave every picture it read
            "rendered_here": 0 if visuals is None else int(visuals.rendered),
            "key": ns.key,
            "finder": ns.finder,
            "selector": ns.selector,
            "imp_finder": ns.imp_finder,
            "neurons": list(ns.neurons),
            "candidates": list(ns.candidates),
            "selection": None if ns.selection is None else ns.selection.to_json(),
            "num_neurons": k,
            "neuron_list": params.get("neuron_list"),
            "gamma": pl.set_gamma(res, ns.neurons, gamma),
            "gamma_rule": "auto" if gamma == "auto" else "given",
        }
    )


# -- render (the pictures the visual selectors of one finder run share) ------------------------------
RENDERED = "visuals.pt"


def stage_render(params: dict[str, Any], deps: dict[str, NodeOutput], ctx: StageContext) -> StageResult:
    """The visualizations every visual selector of one finder run reads, optimized once: ``method``
    (``settings``, ``conditioned`` on the evaluated class or not) on the finder's candidates
    (:func:`pipeline.candidates`: the first ``candidate_pool × num_neurons`` of ``neuron_list``), in one
    batch, through the same :class:`NeuronVisuals` a ``select`` node would build. Without it, each of
    ``core-sensitivity``, ``clip`` and ``concept`` optimized the same images again in its own node."""
    from neuroinspect.harness import pipeline as pl
    from neuroinspect.harness.choice import clip_guided
    from neuroinspect.harness.evaluation import checkpoint_eval_transform
    from neuroinspect.runtime import resolve_device, seed_everything

    seed = int(params["seed"])
    seed_everything(seed)
    res = load_finder_result(deps["find"])
    cand = pl.candidates(
        res, params["neuron_list"], int(params["num_neurons"]), int(params["candidate_pool"])
    )
    method, settings, conditioned = params["method"], dict(params["settings"]), bool(params["conditioned"])
    ckpt = load_model(deps["model"])
    device = resolve_device(ctx.device)
    surface = ckpt.surface.to(device).eval()
    finder_ds = _dataset_split(params, params["split"], checkpoint_eval_transform(ckpt, params["dataset"]))
    guided = clip_guided({"method": method, "settings": settings})
    visuals = pl.neuron_visuals(
        surface,
        int(deps["evaluate"].result["class_idx"]),
        finder_ds,
        ckpt.classes,
        _clip_for(params, device, ctx) if guided else None,
        seed=seed,
        device=device,
        show_progress=ctx.show_progress,
    )
    try:
        out = visuals.get(cand, method, settings, conditioned) if cand else []
    finally:
        surface.cpu()
    torch.save([_tensors_and_plain(dataclasses.asdict(v)) for v in out], ctx.work / RENDERED)
    return StageResult(
        {
            "candidates": cand,
            "method": method,
            "settings": settings,
            "conditioned": conditioned,
            "file": RENDERED,
            "wall_seconds": round(visuals.wall_seconds, 3),
        }
    )


def _tensors_and_plain(obj: Any) -> Any:
    """``obj`` with numpy arrays as tensors and numpy scalars as Python numbers, so that the file loads
    with ``weights_only=True`` (no pickled code runs when a store is read)."""
    import numpy as np

    if isinstance(obj, dict):
        return {k: _tensors_and_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_tensors_and_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.copy())
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def load_rendered(node: NodeOutput) -> list[Any]:
    """The :class:`~neuroinspect.methods.visualizers.Visualization` list of a ``render`` node, one per candidate."""
    from neuroinspect.methods.visualizers import Visualization

    rows = torch.load(node.path(node.result["file"]), map_location="cpu", weights_only=True)
    return [Visualization(**row) for row in rows]


# -- recovery (finders and edited sets against the causal truth) ------------------------------------------
def stage_recovery(params: dict[str, Any], deps: dict[str, NodeOutput], ctx: StageContext) -> StageResult:
    """``neuron_recovery`` records against the causal truth on the mistakes (``causal`` node): with a
    ``find`` dependency, the finder's per-list records (:func:`choice.list_records`); with a ``select``
    one, the edited set's record (:func:`choice.edited_record`). The attribute-ratio labels of the
    ``truth`` node are a descriptive column."""
    from neuroinspect.harness.choice import edited_record, list_records
    from neuroinspect.runtime import Provenance

    with Provenance(ctx.device) as prov:
        effects, truth = load_causal(deps["causal"])
        labels = list(load_truth(deps["truth"]).labels) if "truth" in deps else None
    common: dict[str, Any] = {
        "attribute_labels": labels,
        "dataset": params["dataset"],
        "model": deps["model"].result["model_name"],
        "seed": int(params["seed"]),
        "provenance": prov.as_dict(),
        "config": {
            "experiment": params["experiment"],
            "finder_split": params["finder_split"],
            "neuron_list": params["neuron_list"],
            "candidate_pool": params["candidate_pool"],
            "dataset_params": params.get("dataset_params") or {},
        },
    }
    if "select" in deps:
        ns = neuron_set(deps["select"].result)
        records = [edited_record(ns, effects, truth, k=int(deps["select"].result["num_neurons"]), **common)]
    else:
        res = load_finder_result(deps["find"])
        records = list_records(params["finder"], res, effects, truth, ks=tuple(params["ks"]), **common)
    for i, rec in enumerate(records):
        rec["config"]["class_rule"] = deps["evaluate"].result["class_rule"]
        rec["run_id"] = _run_id(ctx, i)
    _stamp(records, deps["evaluate"])
    return StageResult({"metrics": [r["metrics"] for r in records]}, records)


# -- edit ------------------------------------------------------------------------------------------
def stage_edit(params: dict[str, Any], deps: dict[str, NodeOutput], ctx: StageContext) -> StageResult:
    """One editor (``"name"`` or a variant ``"name:label"``) on one neuron set (``select``; none for
    editors that use no neurons), on the cached features: :func:`pipeline.edit_and_measure` and
    :func:`pipeline.edit_record`; with an ``fc`` dependency (the plain ``fc`` edit of the same model),
    ``metrics.after_minus_fc`` as :func:`pipeline.relative_to_fc` adds it in ``run_experiment``."""
    from neuroinspect.fileio import atomic_torch_save
    from neuroinspect.harness import pipeline as pl
    from neuroinspect.runtime import Provenance, seed_everything

    ckpt = load_model(deps["model"])
    train_fs, val_fs, test_fs = (load_features(deps[r]) for r in ("train", "val", "test"))
    ev = deps["evaluate"].result
    class_idx = int(ev["class_idx"])
    sel = deps["select"].result if "select" in deps else None
    ns = neuron_set(sel) if sel else None
    seed = int(params["seed"])
    seed_everything(seed)
    with Provenance(ctx.device) as prov:
        edit, after = pl.edit_and_measure(
            params["editor"],
            dict(params.get("settings") or {}),
            ckpt.surface.decision.cpu(),
            train_fs,
            val_fs,
            test_fs,
            class_idx,
            None if ns is None else ns.neurons,
            gamma=None if sel is None else float(sel["gamma"]),
            seed=seed,
            n_boot=int(params["n_boot"]),
            train_counts=ev["train_group_counts"],
            show_progress=ctx.show_progress,
        )
    extra: dict[str, Any] = {"class_rule": ev["class_rule"]}
    if ns is not None:
        if params.get("finder_settings"):
            extra["finder_settings"] = dict(params["finder_settings"])
        if params.get("selector_settings"):
            extra["selector_settings"] = dict(params["selector_settings"])
    rec = pl.edit_record(
        edit,
        ev["before"],
        after,
        editor=params["editor"],
        ns=ns,
        dataset=params["dataset"],
        model=deps["model"].result["model_name"],
        seed=seed,
        experiment=params["experiment"],
        dataset_params=params.get("dataset_params") or {},
        k=int(sel["num_neurons"]) if sel else 0,
        neuron_list=str(sel["neuron_list"]) if sel else "",
        gamma_auto=sel is not None and sel["gamma_rule"] == "auto",
        provenance=prov,
        extra_config=extra,
        run_id=_run_id(ctx, 0),
    )
    _stamp([rec], deps["evaluate"])
    if "fc" in deps:
        pl.relative_to_fc([rec], deps["fc"].result["after_block"])
    elif pl.is_plain_fc(rec):
        pl.relative_to_fc([rec])
    atomic_torch_save(
        ctx.work / "decision.pt", {k: v.detach().cpu() for k, v in edit.decision.state_dict().items()}
    )
    return StageResult(
        {
            "after": after,
            "after_block": rec["metrics"]["after"],
            "edit": edit.summary(),
            "decision": "decision.pt",
            "source": None if ns is None else ns.key,
        },
        [rec],
    )


# -- visualize -------------------------------------------------------------------------------------
def reads_shared_clip(cls: type, settings: Mapping[str, Any], clip: str | None, dataset: str) -> bool:
    """Whether a visualizer (class ``cls`` with ``settings``) reads the sweep's ``clip`` or, on a bundled
    benchmark, its synthetic CLIP (the selectors' one), rather than a CLIP of its own or none."""
    from neuroinspect.methods.concept_recovery import is_benchmark

    return (
        visualizer_uses_clip(cls, settings)
        and not settings.get("clip")
        and bool(clip or is_benchmark(dataset))
    )


def visualizer_uses_clip(cls: type, settings: Mapping[str, Any]) -> bool:
    import inspect

    accepted = inspect.signature(cls).parameters
    if "clip" not in accepted:
        return False
    return "use_clip" not in accepted or bool(settings.get("use_clip", accepted["use_clip"].default))


def stage_visualize(params: dict[str, Any], deps: dict[str, NodeOutput], ctx: StageContext) -> StageResult:
    """One visualizer on the selected neurons, conditioned on the evaluated class; faithfulness metrics,
    concept recovery (bundled benchmarks), images and one ``visualization`` record per neuron."""
    import inspect

    from neuroinspect.commands.visualize import class_strings, record_metrics
    from neuroinspect.harness.evaluation import checkpoint_eval_transform
    from neuroinspect.methods import concept_recovery as cr
    from neuroinspect.methods.visualizers import VISUALIZERS, faithfulness
    from neuroinspect.methods.visualizers import load_all as load_visualizers
    from neuroinspect.methods.visualizers.output import (
        contact_sheet,
        save_visualization,
        visualization_record,
    )
    from neuroinspect.runtime import Provenance, resolve_device, seed_everything

    load_visualizers()
    cls = VISUALIZERS.get(params["visualizer"])
    settings = dict(params.get("settings") or {})
    ckpt = load_model(deps["model"])
    surface = ckpt.surface
    device = resolve_device(ctx.device)
    class_idx = int(deps["evaluate"].result["class_idx"])
    neurons = [int(n) for n in deps["select"].result["neurons"]]
    if params.get("max_neurons"):  # the first N of the selection (a sweep's visualize_neurons)
        neurons = neurons[: int(params["max_neurons"])]
    if not neurons:  # a selector may keep no candidate: nothing to picture, no record
        return StageResult({"neurons": [], "class_idx": class_idx, "pairs": [], "wall_seconds_per_pair": []})
    seed = int(params["seed"])
    seed_everything(seed)
    with Provenance(ctx.device) as prov:
        clip = None
        if visualizer_uses_clip(cls, settings):
            from neuroinspect.clip.loader import DEFAULT_CLIP, load_clip

            if settings.get("clip"):  # the visualizer's own
                clip = load_clip(str(settings["clip"]), device=device)
            elif reads_shared_clip(cls, settings, params.get("clip"), params["dataset"]):
                # the sweep's `clip`, or a bundled benchmark's synthetic CLIP: the one the selectors use
                clip = _clip_for(params, device, ctx)
            else:
                spec = inspect.signature(cls).parameters["clip"].default or DEFAULT_CLIP
                clip = load_clip(str(spec), device=device)
            settings["clip"] = clip
        features = load_features(deps["features"])
        accepted = inspect.signature(cls).parameters
        if "features" in accepted:
            settings.setdefault("features", features)  # the split's cached features: no second backbone pass
        elif "checkpoint_sha" in accepted and ckpt.sha256:
            settings.setdefault("checkpoint_sha", ckpt.sha256)
        visualizer = cls(**settings)
        transform = checkpoint_eval_transform(ckpt, params["dataset"])
        dataset = _dataset_split(params, params["split"], transform)
        class_names = class_strings(ckpt, dataset)
        visualizations = visualizer.visualize(
            surface,
            neurons,
            class_idx,
            dataset=dataset,
            class_names=class_names,
            seed=seed,
            device=device,
            show_progress=ctx.show_progress,
        )
        truth = load_truth(deps["truth"]) if "truth" in deps else None
        clf = load_attributes(deps["attributes"]) if "attributes" in deps else None
        clf_info = (
            {"cache_key": deps["attributes"].result["cache_key"], "cached": True} if clf is not None else None
        )
        from neuroinspect.clip.prompts import prompts_for

        faith: list[dict[str, Any]] = []
        concepts: list[dict[str, Any] | None] = []
        for vis in visualizations:
            text = (
                prompts_for(class_names[vis.class_idx])
                if clip is not None and vis.class_idx is not None
                else None
            )
            faith.append(
                faithfulness.compute(
                    vis,
                    surface,
                    reference_activations=faithfulness.reference_activations(features, vis.neuron),
                    clip=clip,
                    class_text=text,
                    device=device,
                    batch_size=int(params.get("batch_size", 64)),
                    seed=seed,
                )
            )
            concepts.append(
                cr.recovery(vis, truth, clf, clf_info) if truth is not None and clf is not None else None
            )
    model = deps["model"].result["model_name"]
    context = {
        "checkpoint": {"sha256": ckpt.sha256, "arch": surface.spec.arch},
        "dataset": params["dataset"],
        "split": params["split"],
        "seed": seed,
        "device": str(device),
    }
    provenance = prov.as_dict()
    records, saved = [], []
    for i, (vis, metrics, concept) in enumerate(zip(visualizations, faith, concepts, strict=True)):
        sidecar = {**metrics, "concept_recovery": concept} if concept else metrics
        s = save_visualization(vis, ctx.work / "pairs", class_names, metrics=sidecar, context=context)
        saved.append(s)
        flat = {
            f"faithfulness_{k}": v
            for k, v in metrics.items()
            if k.endswith("_mean")
            or k
            in ("class_top1", "diversity_feature", "diversity_pixel", "deletion_auc", "deletion_auc_random")
        }
        rec = visualization_record(
            s,
            dataset=params["dataset"],
            model=model,
            seed=seed,
            provenance=provenance,
            config={
                "experiment": params["experiment"],
                "split": params["split"],
                "selector": {"name": params["selector"], **dict(params.get("selector_settings") or {})},
                "finder": params["finder"],
                "neurons": neurons,
                "dataset_params": params.get("dataset_params") or {},
            },
            metrics=record_metrics(flat, metrics, concept),
            run_id=_run_id(ctx, i),
        )
        rec["artifact_dir"] = str(ctx.final / s.directory.relative_to(ctx.work))
        records.append(rec)
    _stamp(records, deps["evaluate"])
    title = f"{params['visualizer']} | {model} on {params['dataset']} | class {class_idx} | seed {seed}"
    contact_sheet(saved, ctx.work / "pairs" / params["visualizer"], title=title)
    return StageResult(
        {
            "neurons": neurons,
            "class_idx": class_idx,
            "pairs": [str(s.directory.relative_to(ctx.work)) for s in saved],
            "wall_seconds_per_pair": [round(float(v.wall_seconds), 4) for v in visualizations],
        },
        records,
    )


StageFn = Callable[[dict[str, Any], dict[str, NodeOutput], StageContext], StageResult]

#: stage name → function
STAGES: dict[str, StageFn] = {
    "train": stage_train,
    "features": stage_features,
    "evaluate": stage_evaluate,
    "find": stage_find,
    "truth": stage_truth,
    "causal": stage_causal,
    "attributes": stage_attributes,
    "clip": stage_clip,
    "select": stage_select,
    "render": stage_render,
    "recovery": stage_recovery,
    "edit": stage_edit,
    "visualize": stage_visualize,
}
#: the stages whose nodes produce result records (a sweep's cells)
LEAF_STAGES = frozenset({"recovery", "edit", "visualize"})


__all__ = [
    "LEAF_STAGES",
    "CHOICE_KEYS",
    "STAGES",
    "STAGE_VERSIONS",
    "NodeOutput",
    "StageContext",
    "StageResult",
    "StageStore",
    "canonical_json",
    "load_causal",
    "load_features",
    "load_finder_result",
    "load_model",
    "load_rendered",
    "load_truth",
    "model_name",
    "neuron_set",
    "node_key",
]
