"""Concept recovery for visualizations on the bundled benchmarks, with cached ground truth and classifiers.

On a bundled benchmark (``spurious-shapes``, ``colored-digits``) every neuron has a ground-truth
label (:func:`neuroinspect.methods.groundtruth_scoring.neuron_attribute_scores`: ``spurious``,
``core``, ``mixed`` or ``dead``) and small attribute classifiers can read the core and the spurious
attribute off an image (:func:`neuroinspect.methods.visualizers.faithfulness.train_attribute_classifiers`).
Concept recovery asks, per visualization, whether the images show the attribute the neuron is known
to encode (:func:`~neuroinspect.methods.visualizers.faithfulness.concept_recovery`), and whether they
show the *value* it prefers (the background / shape / colour with the highest mean activation in the
ground truth's counterfactual grids).

Both ingredients are cached on disk, under ``$NEUROINSPECT_CACHE`` (``~/.cache/neuroinspect``), the
feature cache's root, and written atomically:

- ``attribute_classifiers/<key>.pt``: the classifiers (CNN weights, or the logistic regressions'
  fitted arrays), their held-out accuracy and settings. ``key`` hashes the benchmark's name, the
  resolved dataset parameters of both splits, a digest of their images and factors (so a change of
  the renderer is never read stale), the classifier settings and the seed; the checkpoint is not
  part of it (the classifiers read images, not the model), so every model of a benchmark shares them.
- ``neuron_truth/<key>.json``: a checkpoint's :class:`NeuronTruth`, keyed by the checkpoint's
  sha256, the split's fingerprint and image digest, the transform, the number of samples and the seed.

A damaged cache entry is recomputed, never trusted.

Defaults (:data:`CLASSIFIER_DEFAULTS`): the CNN on counterfactual renders of 600 training samples at
32 px for 10 epochs: 11-14 s on one (shared) CPU core, held-out accuracy core / spurious 1.00 / 1.00
on spurious-shapes (calibrated defaults; 0.94 / 1.00 with the earlier small, rotated, low-contrast
objects) and 0.90 / 1.00 on colored-digits (20 epochs: 0.93 / 1.00 in twice the time). With two
threads on a busy 2-core machine the same training took minutes: thread contention, not the work.
Concept recovery is flagged ``reliable: false`` when either classifier's held-out accuracy is below
:data:`RELIABLE_ACCURACY`.

What the images are judged on: synthetic methods (CLIP-Illusion, Lucent) are judged on their
optimized images; natural exemplars and attribution methods show dataset images, so for them the
result says what the *selected inputs* share (their attribution maps are scored by the deletion
metric, not here).
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neuroinspect.errors import UserError
from neuroinspect.fileio import atomic_torch_save, atomic_write_json
from neuroinspect.harness.features import default_cache_dir
from neuroinspect.methods.groundtruth_scoring import NeuronTruth, TruthThresholds, neuron_attribute_scores
from neuroinspect.methods.visualizers.base import Visualization
from neuroinspect.methods.visualizers.faithfulness import (
    AttributeClassifiers,
    _TinyCNN,
    concept_recovery,
    train_attribute_classifiers,
)

CACHE_FORMAT = 1
#: The attribute classifier settings ``neuroinspect visualize`` uses (``--attr-set key=value`` overrides).
CLASSIFIER_DEFAULTS: dict[str, Any] = {
    "method": "cnn",
    "counterfactual": True,
    "max_train": 600,
    "image_size": 32,
    "epochs": 10,
}
#: Below this held-out accuracy (either attribute), a concept-recovery result is flagged unreliable.
RELIABLE_ACCURACY = 0.8
#: ``train_attribute_classifiers`` arguments that are not settings (given by the caller).
_NOT_SETTINGS = ("self", "dataset", "heldout", "seed", "show_progress")


# -- which datasets have ground truth ------------------------------------------------------------------
def is_benchmark(name: str | None) -> bool:
    """Whether ``name`` is a registered bundled benchmark (a dataset with core / spurious ground truth)."""
    from neuroinspect.datasets import DATASETS
    from neuroinspect.datasets.groundtruth import BenchmarkSpec

    if not name or name not in DATASETS:
        return False
    spec = DATASETS.get(name)
    return isinstance(spec, type) and issubclass(spec, BenchmarkSpec)


def has_ground_truth(dataset: Any) -> bool:
    """Whether a loaded split is a bundled benchmark's split exactly as ``load`` returned it."""
    from neuroinspect.datasets.groundtruth import BenchmarkDataset

    return isinstance(dataset, BenchmarkDataset) and is_benchmark(getattr(dataset, "name", None))


def classifier_settings(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """:data:`CLASSIFIER_DEFAULTS` with ``overrides``; a :class:`UserError` naming the valid keys for an unknown one."""
    params = inspect.signature(train_attribute_classifiers).parameters
    valid = [p for p in params if p not in _NOT_SETTINGS]
    out = dict(CLASSIFIER_DEFAULTS)
    for key, value in (overrides or {}).items():
        k = str(key).replace("-", "_")
        if k not in valid:
            raise UserError(
                f"the attribute classifiers have no setting {key!r}; valid ones: {', '.join(valid)} "
                "(pass them as --attr-set key=value)."
            )
        default = params[k].default
        kind = type(default)
        ok = (
            isinstance(value, bool)
            if kind is bool
            else (isinstance(value, int) and not isinstance(value, bool))
            if kind is int
            else (isinstance(value, (int, float)) and not isinstance(value, bool))
            if kind is float
            else isinstance(value, kind)
        )
        if not ok:
            raise UserError(
                f"attribute classifier setting {k}={value!r} must be a {kind.__name__} (default {default!r})."
            )
        out[k] = float(value) if kind is float else value
    return out


def _digest(dataset: Any) -> str:
    """sha256 of a benchmark split's pixels and factors (catches renderer changes that keep the parameters)."""
    h = hashlib.sha256()
    for arr in (dataset.images, dataset.core, dataset.spurious):
        a = np.ascontiguousarray(arr)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def _key(parts: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


# -- attribute classifiers: save / load / cache --------------------------------------------------------
def save_classifiers(path: str | Path, clf: AttributeClassifiers) -> Path:
    """Write ``clf`` atomically as a ``torch.load(weights_only=True)``-readable payload."""
    meta = {
        "format": CACHE_FORMAT,
        "method": clf.method,
        "core_names": list(clf.core_names),
        "spurious_names": list(clf.spurious_names),
        "image_size": int(clf.image_size),
        "accuracy": json.loads(json.dumps(clf.accuracy)),
        "settings": json.loads(json.dumps(clf.settings)),
    }
    if clf.method == "cnn":
        state = {k: v.detach().cpu().clone() for k, v in clf._model.state_dict().items()}
    elif clf.method == "logreg":
        state = {}
        for name, pipe in zip(("core", "spurious"), clf._model, strict=True):
            scaler, lr = pipe.steps[0][1], pipe.steps[-1][1]
            for attr in ("mean_", "scale_", "var_"):
                state[f"{name}.scaler.{attr}"] = torch.from_numpy(
                    np.asarray(getattr(scaler, attr), np.float64)
                )
            state[f"{name}.lr.coef_"] = torch.from_numpy(np.asarray(lr.coef_, np.float64))
            state[f"{name}.lr.intercept_"] = torch.from_numpy(np.asarray(lr.intercept_, np.float64))
            state[f"{name}.lr.classes_"] = torch.from_numpy(np.asarray(lr.classes_, np.int64))
    else:
        raise ValueError(f"cannot save attribute classifiers of method {clf.method!r}")
    return atomic_torch_save(path, {"meta": meta, "state": state})


def _logreg_from_state(state: Mapping[str, torch.Tensor], name: str) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler()
    for attr in ("mean_", "scale_", "var_"):
        setattr(scaler, attr, state[f"{name}.scaler.{attr}"].numpy())
    scaler.n_features_in_ = int(scaler.mean_.shape[0])
    scaler.n_samples_seen_ = 1
    lr = LogisticRegression()
    lr.coef_ = state[f"{name}.lr.coef_"].numpy()
    lr.intercept_ = state[f"{name}.lr.intercept_"].numpy()
    lr.classes_ = state[f"{name}.lr.classes_"].numpy()
    lr.n_features_in_ = int(lr.coef_.shape[1])
    return make_pipeline(scaler, lr)


def load_classifiers(path: str | Path) -> AttributeClassifiers:
    """Read classifiers written by :func:`save_classifiers`."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    meta, state = payload["meta"], payload["state"]
    if meta.get("format") != CACHE_FORMAT:
        raise ValueError(f"{path}: cache format {meta.get('format')!r}, expected {CACHE_FORMAT}")
    model: Any
    if meta["method"] == "cnn":
        model = _TinyCNN(len(meta["core_names"]), len(meta["spurious_names"]), int(meta["settings"]["width"]))
        model.load_state_dict(state)
        model.eval()
    else:
        model = (_logreg_from_state(state, "core"), _logreg_from_state(state, "spurious"))
    return AttributeClassifiers(
        method=meta["method"],
        core_names=list(meta["core_names"]),
        spurious_names=list(meta["spurious_names"]),
        image_size=int(meta["image_size"]),
        accuracy=meta["accuracy"],
        settings=meta["settings"],
        _model=model,
    )


def classifier_cache_key(train: Any, heldout: Any, settings: Mapping[str, Any], seed: int) -> str:
    """The cache key of classifiers trained on ``train`` and scored on ``heldout`` (module docstring)."""
    return _key(
        {
            "format": CACHE_FORMAT,
            "dataset": train.name,
            "train": [train.split, train.params, _digest(train)],
            "heldout": [heldout.split, heldout.params, _digest(heldout)],
            "settings": dict(settings),
            "seed": int(seed),
        }
    )


def cached_classifiers(
    train: Any,
    heldout: Any,
    settings: Mapping[str, Any] | None = None,
    seed: int = 0,
    *,
    cache_root: str | Path | None = None,
    show_progress: bool = True,
) -> tuple[AttributeClassifiers, dict[str, Any]]:
    """Attribute classifiers for a benchmark, read from the cache or trained (seeded) and stored.

    ``train`` / ``heldout``: the benchmark's train and val splits (any transform: the classifiers
    read the raw images). ``settings``: :func:`classifier_settings` (the defaults when ``None``).
    Returns ``(classifiers, info)``, ``info = {"cache_key", "path", "cached"}`` (``cached``: read
    from disk rather than trained by this call).
    """
    cfg = classifier_settings(settings)
    key = classifier_cache_key(train, heldout, cfg, seed)
    root = Path(cache_root) if cache_root is not None else default_cache_dir()
    path = root / "attribute_classifiers" / f"{key}.pt"
    if path.is_file():
        try:
            return load_classifiers(path), {"cache_key": key, "path": str(path), "cached": True}
        except Exception:  # noqa: BLE001 - a damaged entry is retrained, never trusted
            path.unlink(missing_ok=True)
    clf = train_attribute_classifiers(train, heldout=heldout, seed=seed, show_progress=show_progress, **cfg)
    save_classifiers(path, clf)
    return clf, {"cache_key": key, "path": str(path), "cached": False}


# -- neuron ground truth: cache ------------------------------------------------------------------------
def truth_to_json(truth: NeuronTruth) -> dict[str, Any]:
    """Everything in ``truth`` as JSON-able values (floats round-trip exactly)."""
    return {
        "format": CACHE_FORMAT,
        "spurious_effect": truth.spurious_effect.tolist(),
        "core_effect": truth.core_effect.tolist(),
        "spurious_ratio": truth.spurious_ratio.tolist(),
        "labels": list(truth.labels),
        "mean_activation": truth.mean_activation.tolist(),
        "spurious_means": truth.spurious_means.tolist(),
        "core_means": truth.core_means.tolist(),
        "core_names": list(truth.core_names),
        "spurious_names": list(truth.spurious_names),
        "indices": [int(i) for i in truth.indices],
        "thresholds": asdict(truth.thresholds),
        "dataset": truth.dataset,
        "split": truth.split,
    }


def truth_from_json(d: Mapping[str, Any]) -> NeuronTruth:
    if d.get("format") != CACHE_FORMAT:
        raise ValueError(f"neuron truth cache format {d.get('format')!r}, expected {CACHE_FORMAT}")
    arr = {
        k: np.asarray(d[k], dtype=np.float64)
        for k in ("spurious_effect", "core_effect", "spurious_ratio", "mean_activation")
    }
    return NeuronTruth(
        **arr,
        labels=list(d["labels"]),
        spurious_means=np.asarray(d["spurious_means"], dtype=np.float64),
        core_means=np.asarray(d["core_means"], dtype=np.float64),
        core_names=list(d["core_names"]),
        spurious_names=list(d["spurious_names"]),
        indices=[int(i) for i in d["indices"]],
        thresholds=TruthThresholds(**d["thresholds"]),
        dataset=d.get("dataset"),
        split=d.get("split"),
    )


def cached_truth(
    surface: Any,
    checkpoint_sha: str | None,
    dataset: Any,
    transform: Any,
    n_samples: int = 64,
    seed: int = 0,
    *,
    transform_desc: str | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 128,
    cache_root: str | Path | None = None,
    show_progress: bool = True,
) -> tuple[NeuronTruth, dict[str, Any]]:
    """:func:`neuron_attribute_scores` of a checkpoint on a benchmark split, cached by checkpoint hash.

    Without ``checkpoint_sha`` nothing is cached (a path is not a safe key). Returns ``(truth, info)``,
    ``info = {"cache_key", "path", "cached"}``.
    """
    if n_samples < 1:
        raise UserError(f"--truth-samples must be at least 1, got {n_samples}.")
    key = path = None
    if checkpoint_sha:
        key = _key(
            {
                "format": CACHE_FORMAT,
                "checkpoint": checkpoint_sha,
                "split": [dataset.fingerprint(), _digest(dataset)],
                "transform": transform_desc if transform_desc is not None else repr(transform),
                "n_samples": int(n_samples),
                "seed": int(seed),
                "thresholds": asdict(TruthThresholds()),
            }
        )
        root = Path(cache_root) if cache_root is not None else default_cache_dir()
        path = root / "neuron_truth" / f"{key}.json"
        if path.is_file():
            try:
                truth = truth_from_json(json.loads(path.read_text()))
                return truth, {"cache_key": key, "path": str(path), "cached": True}
            except Exception:  # noqa: BLE001 - a damaged entry is recomputed, never trusted
                path.unlink(missing_ok=True)
    truth = neuron_attribute_scores(
        surface,
        dataset,
        transform,
        n_samples,
        seed,
        batch_size=batch_size,
        device=device,
        show_progress=show_progress,
    )
    if path is not None:
        atomic_write_json(path, truth_to_json(truth), indent=None)
    return truth, {"cache_key": key, "path": None if path is None else str(path), "cached": False}


# -- per visualization ---------------------------------------------------------------------------------
def preferred_value(truth: NeuronTruth, neuron: int, label: str) -> int | None:
    """Index of the value of attribute ``label`` (``"spurious"``/``"core"``) with the neuron's highest mean
    activation over the counterfactual grids; ``None`` for other labels."""
    if label == "spurious":
        return int(np.argmax(truth.spurious_means[:, int(neuron)]))
    if label == "core":
        return int(np.argmax(truth.core_means[:, int(neuron)]))
    return None


def recovery(
    viz: Visualization,
    truth: NeuronTruth,
    classifiers: AttributeClassifiers,
    classifier_info: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Concept recovery of one visualization: the neuron's ground truth, what its images show, the verdict.

    Keys: ``truth_label``, ``truth_value`` (name of the preferred value; spurious/core neurons only),
    ``spurious_ratio`` / ``spurious_effect`` / ``core_effect`` of the neuron, ``shown`` (the attribute
    the images agree on: core, spurious, both or neither), ``recovered`` (``truth_label`` is among the
    attributes shown; ``None`` for mixed / dead neurons),
    ``value_match``, ``agreement_core`` / ``agreement_spurious``, ``attributes`` (per-image
    predictions), ``classifier_accuracy`` (held-out), ``reliable`` (both accuracies ≥
    :data:`RELIABLE_ACCURACY`) and ``classifier`` (method, cache key, whether it was cached, held-out split).
    """
    n = int(viz.neuron)
    if not 0 <= n < truth.num_features:
        raise UserError(
            f"neuron {n} is out of range for the ground truth ({truth.num_features} neurons); "
            "measure the ground truth with the same model."
        )
    label = truth.labels[n]
    value = preferred_value(truth, n, label)
    out = concept_recovery(viz, classifiers, label, value)
    if value is None:
        out["truth_value"] = None
    acc = out["classifier_accuracy"]
    out.update(
        {
            "spurious_ratio": float(truth.spurious_ratio[n]),
            "spurious_effect": float(truth.spurious_effect[n]),
            "core_effect": float(truth.core_effect[n]),
            "reliable": min(acc["core"], acc["spurious"]) >= RELIABLE_ACCURACY,
            "classifier": {
                "method": classifiers.method,
                "heldout": classifiers.accuracy.get("heldout"),
                "worst_group": {k: classifiers.accuracy[k].get("worst_group") for k in ("core", "spurious")},
                **{k: v for k, v in (classifier_info or {}).items() if k in ("cache_key", "cached")},
            },
        }
    )
    return out


__all__ = [
    "CLASSIFIER_DEFAULTS",
    "RELIABLE_ACCURACY",
    "cached_classifiers",
    "cached_truth",
    "classifier_cache_key",
    "classifier_settings",
    "has_ground_truth",
    "is_benchmark",
    "load_classifiers",
    "preferred_value",
    "recovery",
    "save_classifiers",
    "truth_from_json",
    "truth_to_json",
]
