"""``study build``: a spec -> a frozen study bundle (images + a manifest with content hashes).

The bundle is everything a participant can see, made once, deterministically from the spec's seed:

    <out>/bundle/
        manifest.json    the study (task, conditions, units, model), every trial, every image's sha256
        build.json       how it was made: provenance (versions, device, wall time), cache hits, log
        images/<sha256[:20]>.png   each image once, named by its content

Serving reads the manifest and the PNGs and never regenerates an image; :func:`load_bundle` checks
every image against its hash. Steps (one line each on stderr, progress bars on a terminal):

1. the model: ``model.checkpoint``, or train the benchmark's model with the preset (cached under
   ``$NEUROINSPECT_CACHE/study_models/<settings hash>/``, so the next build reuses it);
2. features of the reference split (``units.split``) and the query split (``units.query_split``);
3. neuron ground truth on the query split (bundled benchmarks; cached by checkpoint hash);
4. the units: ``units.neurons``, or ``units.sample`` neurons drawn (seeded) from the finder's lists
   for ``units.class_idx`` (``source = "finder"``) or balanced between spurious and core neurons of
   the ground truth (``source = "truth"``); mistake studies draw misclassified query images instead,
   balanced between mistakes the background caused and those it did not;
5. every condition's visualizer on every unit it is needed for, through the method registry (cached
   under ``$NEUROINSPECT_CACHE/study_vis/``);
6. the trials (the task type's builders) and the images.

What 2AFC shows per condition (Borowski et al.): a *natural* visualizer (``exemplars``) gives
``n_references`` maximally and as many minimally activating images of the reference split; a
*synthetic* one (``lucent``, ``clip_illusion``) has no "min" mode, so its condition shows only its
maximally activating images unless the condition sets ``min_references = "natural"`` (then the
natural least-activating exemplars fill the min panel, mixing the two kinds; off by default); an
*attribution* one (``captum_*``) shows its heatmaps over the inputs it chose. Queries come from the
query split: one image drawn (seeded) from the top ``query_quantile`` of the unit's activations, one
from the bottom, the same two for every condition of a unit; their A/B position is drawn per trial.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neuroinspect.errors import UserError
from neuroinspect.fileio import atomic_write_bytes, atomic_write_json
from neuroinspect.studies.spec import Condition, StudySpec
from neuroinspect.studies.tasks import get_task

FORMAT = 1
MANIFEST = "manifest.json"
BUILD_INFO = "build.json"
#: cache format of visualizations and trained models; bump when their content changes meaning
CACHE_VERSION = 1
#: ground-truth label of a neuron -> the labelling answer that is right for it
TRUTH_ANSWER = {"spurious": "background", "core": "object", "mixed": "both", "dead": "neither"}
#: the caption of a unit's explanation, by what its images are (a visualizer's ``kind``): participants
#: must not take generated pictures or heatmaps for photographs
MAX_TITLES = {
    "natural": "Images that make the neuron fire most",
    "synthetic": "Pictures generated to make the neuron fire most",
    "attribution": "Images that make the neuron fire most, coloured where it responds (heatmap)",
}
#: constructor arguments that set how many images a visualizer makes per (neuron, class) pair
_COUNT_ARGS = ("images_per_pair", "n_images", "k", "top_k", "n_inputs")

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- the bundle ------------------------------------------------------------------------------------------
@dataclass
class Bundle:
    """A built bundle: its folder, its manifest, and the sha256 of ``manifest.json`` (the bundle's id)."""

    path: Path
    manifest: dict[str, Any]
    hash: str
    trials: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.trials:
            self.trials = {t["trial_id"]: t for t in self.manifest["trials"]}

    @property
    def conditions(self) -> list[dict[str, Any]]:
        return list(self.manifest["conditions"])

    @property
    def main_units(self) -> list[str]:
        return list(self.manifest["units"]["main"])

    def main_trials(self, condition: str, unit: str) -> list[str]:
        """The trial ids of ``unit`` under ``condition`` (one, or one per rating item)."""
        return list(self.manifest["index"][condition][unit])

    def trials_of_kind(self, kind: str) -> list[str]:
        return [t["trial_id"] for t in self.manifest["trials"] if t["kind"] == kind]

    def image(self, rel: str) -> Path:
        return self.path / rel

    def verify(self) -> None:
        """Every image present with the content its hash says; a :class:`UserError` otherwise."""
        for rel, digest in self.manifest["images"].items():
            p = self.path / rel
            if not p.is_file():
                raise UserError(
                    f"the study bundle {self.path} lacks {rel}; rebuild it with `neuroinspect study build`."
                )
            if hashlib.sha256(p.read_bytes()).hexdigest() != digest:
                raise UserError(
                    f"{p} does not match the hash in {self.path / MANIFEST} (the bundle was changed after it was built); "
                    "rebuild it with `neuroinspect study build` into a new `out` folder."
                )


def load_bundle(spec: StudySpec, verify: bool = True) -> Bundle:
    """The spec's built bundle; a :class:`UserError` when it is missing, foreign or damaged."""
    d = spec.bundle_dir
    path = d / MANIFEST
    if not path.is_file():
        raise UserError(
            f"the study is not built yet ({path} does not exist); run `neuroinspect study build {spec.path}` first."
        )
    data = path.read_bytes()
    try:
        manifest = json.loads(data)
    except json.JSONDecodeError:
        raise UserError(
            f"{path} is not valid JSON; rebuild with `neuroinspect study build {spec.path}`."
        ) from None
    if manifest.get("format") != FORMAT:
        raise UserError(
            f"{path} has bundle format {manifest.get('format')!r}; rebuild it with this neuroinspect."
        )
    if manifest.get("spec_hash") != spec.spec_hash():
        raise UserError(
            f"the bundle in {d} was built from a different version of {spec.path.name} (its units, design, conditions "
            f"or model changed); run `neuroinspect study build {spec.path}` with a new `out` folder."
        )
    bundle = Bundle(d, manifest, hashlib.sha256(data).hexdigest())
    if verify:
        bundle.verify()
    return bundle


# -- images ------------------------------------------------------------------------------------------------
def to_uint8(images01: Any) -> np.ndarray:
    """n×3×H×W float in [0, 1] (tensor or array) -> n×H×W×3 uint8."""
    import torch

    x = images01.detach().float().cpu() if isinstance(images01, torch.Tensor) else torch.as_tensor(images01)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


class ImageWriter:
    """Writes each distinct PNG once under ``root/images/``, named by its sha256; remembers the hashes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.hashes: dict[str, str] = {}

    def add(self, array: np.ndarray) -> str:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(array), mode="RGB").save(buf, format="PNG", optimize=False)
        data = buf.getvalue()
        digest = hashlib.sha256(data).hexdigest()
        rel = f"images/{digest[:20]}.png"
        if rel not in self.hashes:
            atomic_write_bytes(self.root / rel, data)
            self.hashes[rel] = digest
        return rel

    def read(self, rel: str) -> np.ndarray:
        from PIL import Image

        return np.asarray(Image.open(self.root / rel).convert("RGB"))

    def montage(
        self, rels: Sequence[str], cell: int, cols: int | None = None, labels: Sequence[str] | None = None
    ) -> str:
        """The images ``rels`` on one grid (nearest-upscaled to ``cell`` px, 4 px gaps), optionally labelled below."""
        from PIL import Image, ImageDraw, ImageFont

        n = len(rels)
        cols = cols or min(n, 3 if n != 4 else 2)
        rows = (n + cols - 1) // cols
        gap = 4
        label_h = 0 if not labels else max(20, cell // 5)
        w = cols * cell + (cols - 1) * gap
        h = rows * (cell + label_h) + (rows - 1) * gap
        sheet = Image.new("RGB", (w, h), (255, 255, 255))
        draw = ImageDraw.Draw(sheet)
        try:
            font: Any = ImageFont.load_default(size=max(12, label_h - 4))
        except TypeError:  # pragma: no cover - Pillow < 10.1
            font = ImageFont.load_default()
        for i, rel in enumerate(rels):
            img = Image.fromarray(self.read(rel)).resize((cell, cell), Image.Resampling.NEAREST)
            x = (i % cols) * (cell + gap)
            y = (i // cols) * (cell + label_h + gap)
            sheet.paste(img, (x, y))
            if labels:
                text = str(labels[i])
                tw = draw.textlength(text, font=font)
                draw.text((x + (cell - tw) / 2, y + cell + 1), text, fill=(0, 0, 0), font=font)
        return self.add(np.asarray(sheet))


# -- the model -------------------------------------------------------------------------------------------------
def _cache_root() -> Path:
    from neuroinspect.harness.features import default_cache_dir

    return default_cache_dir()


def _digest(obj: Any, n: int = 24) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


def study_checkpoint(
    spec: StudySpec, *, device: Any = "cpu", show_progress: bool = True, log: Log = _stderr
) -> Any:
    """The spec's model: ``model.checkpoint``, or the benchmark's model trained with the preset and cached by its settings."""
    from neuroinspect.harness.checkpoint import load_checkpoint

    m = spec.model_spec
    if m.checkpoint is not None:
        ckpt = load_checkpoint(m.checkpoint, expect_dataset=m.dataset)
        log(f"model: {m.checkpoint} ({ckpt.surface.spec.arch} at {ckpt.surface.data_config.image_size} px)")
        _check_model_matches(spec, ckpt)
        return ckpt
    from neuroinspect.datasets import get_dataset
    from neuroinspect.harness.models import create_model
    from neuroinspect.harness.presets import get_preset
    from neuroinspect.harness.training import build_datasets, train_classifier

    preset = get_preset(m.preset, m.dataset)
    if m.train:
        preset = preset.with_overrides(**m.train)
    image_size = spec.image_size
    key = _digest(
        {
            "v": CACHE_VERSION,
            "dataset": m.dataset,
            "params": m.dataset_params,
            "arch": m.arch,
            "image_size": image_size,
            "train": preset.as_dict(),
            "seed": m.train_seed,
        }
    )
    folder = _cache_root() / "study_models" / key
    best = folder / "best.pt"
    if best.is_file():
        log(f"model: cached {m.arch} for {m.dataset} ({best})")
        return load_checkpoint(best, expect_dataset=m.dataset)
    dspec = get_dataset(m.dataset)
    probe = dspec.load(m.root, "val" if "val" in dspec.splits else dspec.splits[0], None, **m.dataset_params)
    surface = create_model(
        m.arch, probe.num_classes, pretrained=preset.resolve_pretrained(m.arch), image_size=image_size
    )
    train_ds, val_ds = build_datasets(m.dataset, m.root, surface.data_config, preset, params=m.dataset_params)
    log(
        f"model: training {m.arch} at {image_size} px on {m.dataset} ({len(train_ds)} images, {preset.epochs} epochs, "
        f"seed {m.train_seed}); cached afterwards under {folder}"
    )
    # Train into a private folder and move it into place only when done: a killed build never leaves
    # a half-trained model where the next build would take it for a finished one.
    partial = folder.with_name(f"{key}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    res = train_classifier(
        surface,
        train_ds,
        val_ds,
        preset,
        device=device,
        seed=m.train_seed,
        out_dir=partial,
        show_progress=show_progress,
        class_names=train_ds.classes,
        dataset_name=m.dataset,
        dataset_params=dict(m.dataset_params),
    )
    if res.checkpoint_path is None:
        raise UserError("training produced no checkpoint; check model.train (epochs >= 1).")
    folder.parent.mkdir(parents=True, exist_ok=True)
    if folder.exists():  # another build finished the same model meanwhile
        shutil.rmtree(partial, ignore_errors=True)
    else:
        os.replace(partial, folder)
    acc = res.best_metrics.get("val_acc")
    log(
        f"model: trained, best epoch {res.best_epoch}"
        + (f", val accuracy {100 * acc:.1f}%" if acc is not None else "")
    )
    return load_checkpoint(best, expect_dataset=m.dataset)


def _check_model_matches(spec: StudySpec, ckpt: Any) -> None:
    arch = ckpt.surface.spec.arch
    size = ckpt.surface.data_config.image_size
    if arch != spec.model_spec.arch or size != spec.image_size:
        raise UserError(
            f"model.checkpoint is a {arch} at {size} px but the spec says {spec.model_spec.arch} at {spec.image_size} px; "
            f'set model.arch = "{arch}" and model.image_size = {size} (the export names the model by them).'
        )


# -- the builder ----------------------------------------------------------------------------------------------------
@dataclass
class _Vis:
    """A unit's explanation under one condition: uint8 images (n×H×W×3) for the max and min panels."""

    max: np.ndarray
    min: np.ndarray | None = None


def unit_key(neuron: int, class_idx: int | None) -> str:
    return f"neuron:{int(neuron)}" + ("" if class_idx is None else f"/class:{int(class_idx)}")


class Builder:
    """Builds one bundle (see the module docstring). Used through :func:`build_bundle`."""

    def __init__(self, spec: StudySpec, root: Path, *, show_progress: bool, log: Log, device: Any) -> None:
        self.spec = spec
        self.root = root
        self.show = show_progress
        self.log = log
        self.device = device
        self.writer = ImageWriter(root)
        self.task = get_task(spec.task)
        self.vis: dict[str, dict[str, _Vis]] = {}
        self.natural: dict[str, _Vis] = {}
        self._panel_cache: dict[tuple[str, str, tuple[str, ...]], list[dict[str, Any]]] = {}
        self._query_cache: dict[str, tuple[str, str]] = {}
        self.cache_hits: dict[str, bool] = {}
        self.truth: Any = None
        self.main_units: list[dict[str, Any]] = []
        self.practice_units: list[dict[str, Any]] = []

    # -- deterministic randomness ---------------------------------------------------------------------------
    def rng(self, *keys: Any) -> np.random.Generator:
        digest = hashlib.sha256(json.dumps([self.spec.seed, *keys], default=str).encode()).digest()
        return np.random.default_rng(int.from_bytes(digest[:8], "little"))

    def informative_conditions(self) -> list[Condition]:
        return [c for c in self.spec.conditions if not c.baseline]

    # -- stages ------------------------------------------------------------------------------------------------
    def load_model_and_data(self) -> None:
        from neuroinspect.datasets import get_dataset
        from neuroinspect.harness.evaluation import checkpoint_eval_transform
        from neuroinspect.harness.features import FeatureCache
        from neuroinspect.harness.transforms import describe

        spec = self.spec
        m = spec.model_spec
        self.ckpt = study_checkpoint(spec, device=self.device, show_progress=self.show, log=self.log)
        self.surface = self.ckpt.surface.to(self.device).eval()
        self.transform = checkpoint_eval_transform(self.ckpt, m.dataset)
        dspec = get_dataset(m.dataset)
        for key, split in (("units.split", spec.units.split), ("units.query_split", spec.units.query_split)):
            if split not in dspec.splits:
                raise UserError(f"{key} = {split!r}: {m.dataset} has the splits {', '.join(dspec.splits)}.")
        params = dict(self.ckpt.dataset_params) if self.ckpt.dataset == m.dataset else {}
        params.update(m.dataset_params)
        self.params = params
        self.ref_ds = dspec.load(m.root, spec.units.split, self.transform, **params)
        self.query_ds = dspec.load(m.root, spec.units.query_split, self.transform, **params)
        if self.ref_ds.num_classes != self.surface.num_classes:
            raise UserError(
                f"the model has {self.surface.num_classes} classes but {m.dataset} has {self.ref_ds.num_classes}; "
                "use a checkpoint trained on this dataset (and the same model.dataset_params)."
            )
        cache = FeatureCache()
        desc = describe(self.transform)
        self.ref_fs = cache.get_or_compute(
            self.surface,
            self.ckpt.sha256 or "",
            self.ref_ds,
            batch_size=64,
            device=self.device,
            transform_desc=desc,
            show_progress=self.show,
        )
        self.query_fs = cache.get_or_compute(
            self.surface,
            self.ckpt.sha256 or "",
            self.query_ds,
            batch_size=64,
            device=self.device,
            transform_desc=desc,
            show_progress=self.show,
        )
        self.log(
            f"data: {m.dataset} references from {spec.units.split} ({len(self.ref_ds)} images), queries from "
            f"{spec.units.query_split} ({len(self.query_ds)} images)"
        )
        self.class_names = list(getattr(self.ref_ds, "prompts", None) or self.ckpt.classes)

    def ground_truth(self) -> None:
        from neuroinspect.harness.transforms import describe
        from neuroinspect.methods import concept_recovery as cr

        if not cr.has_ground_truth(self.query_ds):
            self.log("ground truth: none (not a bundled benchmark)")
            return
        self.truth, info = cr.cached_truth(
            self.surface,
            self.ckpt.sha256,
            self.query_ds,
            self.transform,
            self.spec.units.truth_samples,
            self.spec.seed,
            transform_desc=describe(self.transform),
            device=self.device,
            batch_size=64,
            show_progress=self.show,
        )
        counts = ", ".join(f"{v} {k}" for k, v in self.truth.counts().items())
        self.log(f"ground truth: {counts} neurons{' (cached)' if info['cached'] else ''}")

    def _class_for_finder(self) -> int:
        c = self.spec.units.class_idx
        if isinstance(c, int):
            if not 0 <= c < self.surface.num_classes:
                raise UserError(
                    f"units.class_idx = {c} is out of range: the model has {self.surface.num_classes} classes "
                    f"(0..{self.surface.num_classes - 1})."
                )
            return c
        preds = self.ref_fs.preds.numpy()
        labels = self.ref_fs.labels.numpy()
        accs = [
            float((preds[labels == k] == k).mean()) if (labels == k).any() else np.inf
            for k in range(self.surface.num_classes)
        ]
        return int(np.argmin(accs))

    def _finder_neurons(self, class_idx: int, n: int, features: Any) -> list[int]:
        from neuroinspect.methods.finders import FINDERS
        from neuroinspect.methods.finders import load_all as load_finders

        load_finders()
        u = self.spec.units
        finder = FINDERS.get(u.finder)(**u.finder_settings)
        result = finder.find(
            self.surface.decision.cpu(), features, class_idx, seed=self.spec.seed, show_progress=self.show
        )
        listed: list[int] = []
        for name in ("insufficient", "excessive"):
            for row in getattr(result, name):
                if int(row["neuron"]) not in listed:
                    listed.append(int(row["neuron"]))
        if len(listed) < n:
            for nrn in result.ranking():
                if nrn not in listed:
                    listed.append(nrn)
                if len(listed) >= n:
                    break
        return listed

    def select_units(self) -> None:
        spec = self.spec
        u = spec.units
        d = spec.design
        on_class = u.condition_on_class if u.condition_on_class is not None else spec.task == "mistake"
        if spec.task == "mistake":
            self._select_mistakes()
            return
        n_main = u.sample
        if u.neurons is not None:
            from neuroinspect.commands.common import check_neurons

            try:
                check_neurons(list(u.neurons) + list(u.practice_neurons or []), self.surface.num_features)
            except UserError as err:
                raise UserError(f"units.neurons: {err}") from None
            classes = list(u.classes) if u.classes else [None]
            classes = classes * len(u.neurons) if len(classes) == 1 else classes
            for c in classes:
                if c is not None and not 0 <= c < self.surface.num_classes:
                    raise UserError(
                        f"units.classes: class {c} is out of range (0..{self.surface.num_classes - 1})."
                    )
            main = [(n, c) for n, c in zip(u.neurons, classes, strict=True)]
            practice = [(n, classes[0]) for n in (u.practice_neurons or [])]
            how = "listed in the spec"
        else:
            n_main = int(u.sample or d.trials_per_condition)
            n_practice = d.practice_trials if d.practice_trials and not u.practice_neurons else 0
            need = n_main + min(n_practice, max(1, n_main))
            if u.source == "truth":
                if self.truth is None:
                    raise UserError(
                        f'units.source = "truth" needs a bundled benchmark with ground truth; {spec.dataset} has none. '
                        'Use units.source = "finder" or list units.neurons.'
                    )
                picked = self._truth_sample(need)
                cls = None
                how = "drawn from the ground truth (balanced spurious / core)"
            else:
                cls = self._class_for_finder()
                pool = self._finder_neurons(cls, need, self.ref_fs)
                order = self.rng("units").permutation(len(pool[: max(need, len(pool))]))
                picked = [pool[i] for i in order][:need]
                how = f"sampled from the {u.finder} finder's lists for class {cls} ({self.ckpt.classes[cls]})"
            if len(picked) < n_main:
                raise UserError(
                    f"units.sample = {n_main} but only {len(picked)} neuron(s) are available; lower units.sample."
                )
            c = cls if on_class else None
            main = [(n, c) for n in picked[:n_main]]
            practice = [(n, c) for n in picked[n_main:]] + [(n, c) for n in (u.practice_neurons or [])]
        if len(main) < d.trials_per_condition:
            raise UserError(
                f"design.trials_per_condition = {d.trials_per_condition} but there are only {len(main)} units; "
                "add units or lower trials_per_condition."
            )
        self.main_units = [{"key": unit_key(n, c), "neuron": int(n), "class_idx": c} for n, c in main]
        self.practice_units = [{"key": unit_key(n, c), "neuron": int(n), "class_idx": c} for n, c in practice]
        self.log(
            f"units: {len(self.main_units)} main ({', '.join(x['key'] for x in self.main_units)}), "
            f"{len(self.practice_units)} practice; {how}"
        )

    def _truth_sample(self, need: int) -> list[int]:
        truth = self.truth
        effect = truth.spurious_effect + truth.core_effect
        rng = self.rng("truth-units")
        groups = []
        for label in ("spurious", "core"):
            idx = sorted(truth.neurons(label), key=lambda n: (-effect[n], n))
            groups.append(idx[: max(2 * need, 4)])
        out: list[int] = []
        shuffled = [list(np.asarray(g)[rng.permutation(len(g))]) if g else [] for g in groups]
        while len(out) < need and any(shuffled):
            for g in shuffled:
                if g and len(out) < need:
                    out.append(int(g.pop(0)))
        if len(out) < need:
            rest = sorted(truth.neurons("mixed"), key=lambda n: (-effect[n], n))
            out.extend(int(n) for n in rest[: need - len(out)])
        return out

    def _select_mistakes(self) -> None:
        import torch

        from neuroinspect.datasets.groundtruth import counterfactual_grid

        spec = self.spec
        d = spec.design
        fs = self.query_fs
        preds = fs.preds.numpy()
        labels = fs.labels.numpy()
        wrong = np.flatnonzero(preds != labels)
        need_main = int(spec.units.sample or d.trials_per_condition)
        need = need_main + min(d.practice_trials, max(1, need_main))
        if len(wrong) < need_main:
            raise UserError(
                f"the model makes {len(wrong)} mistake(s) on {spec.units.query_split} but the study needs "
                f"{need_main} (units.sample / design.trials_per_condition); lower them or use a larger split."
            )
        idx = fs.indices.numpy()[wrong]
        truth: list[str | None] = [None] * len(idx)
        if self.truth is not None or _is_benchmark(self.query_ds):
            # The same image on every other background: if one of them makes the model right, the
            # background caused the mistake; if none does, the object did.
            grid = counterfactual_grid(self.query_ds, idx)  # n, n_core, n_spurious, H, W, 3
            from PIL import Image

            for j, i in enumerate(idx.tolist()):
                c = int(labels[wrong[j]])
                own = int(self.query_ds.spurious[i])  # type: ignore[attr-defined]  # a benchmark split
                others = [s for s in range(grid.shape[2]) if s != own]
                x = torch.stack([self.transform(Image.fromarray(grid[j, c, s])) for s in others]).to(
                    self.device
                )
                with torch.no_grad():
                    p = self.surface(x).argmax(1).cpu().numpy()
                truth[j] = "background" if bool((p == c).any()) else "object"
        rng = self.rng("mistakes")
        order = rng.permutation(len(idx))
        by_truth: dict[str | None, list[int]] = {}
        for j in order.tolist():
            by_truth.setdefault(truth[j], []).append(j)
        picked: list[int] = []
        keys = sorted(by_truth, key=str)
        while len(picked) < need and any(by_truth[k] for k in keys):
            for k in keys:
                if by_truth[k] and len(picked) < need:
                    picked.append(by_truth[k].pop(0))
        blamed_cache: dict[int, list[int]] = {}
        units = []
        for j in picked:
            c = int(labels[wrong[j]])
            if c not in blamed_cache:
                blamed_cache[c] = self._finder_neurons(c, spec.design.blamed_neurons, self.query_fs)[
                    : spec.design.blamed_neurons
                ]
            cls = c if (spec.units.condition_on_class is None or spec.units.condition_on_class) else None
            units.append(
                {
                    "key": f"sample:{int(idx[j])}",
                    "sample": int(idx[j]),
                    "class_idx": cls,
                    "label": c,
                    "pred": int(preds[wrong[j]]),
                    "truth": truth[j],
                    "blamed": blamed_cache[c],
                }
            )
        self.main_units = units[:need_main]
        self.practice_units = units[need_main:]
        counts = {k: sum(1 for u in units if u["truth"] == k) for k in ("background", "object")}
        self.log(
            f"units: {len(self.main_units)} main and {len(self.practice_units)} practice mistakes of {len(wrong)} on "
            f"{spec.units.query_split} (caused by the background: {counts['background']}, by the object: "
            f"{counts['object']}); blamed neurons per class: {blamed_cache}"
        )

    def visual_units(self) -> list[tuple[int, int | None]]:
        """Every (neuron, class) pair some trial explains."""
        pairs: list[tuple[int, int | None]] = []
        for u in self.main_units + self.practice_units:
            if self.spec.task == "mistake":
                for n in u["blamed"]:
                    pairs.append((int(n), u["class_idx"]))
            else:
                pairs.append((int(u["neuron"]), u["class_idx"]))
        return list(dict.fromkeys(pairs))

    def run_visualizers(self) -> None:
        pairs = self.visual_units()
        for cond in self.informative_conditions():
            self.vis[cond.name] = self._visualize(cond, pairs)
        if self.spec.task == "2afc" or any(
            c.min_references == "natural" for c in self.informative_conditions()
        ):
            self.natural = self._natural(pairs)

    def _natural(self, pairs: list[tuple[int, int | None]]) -> dict[str, _Vis]:
        n = self.spec.design.n_references
        cond = Condition(name="_natural", visualizer="exemplars", settings={"k": n, "bottom_k": n})
        return self._visualize(cond, pairs, quiet=True)

    def _visualizer_kwargs(self, cond: Condition, cls: type) -> dict[str, Any]:
        import inspect

        params = inspect.signature(cls).parameters
        kwargs = dict(cond.settings)
        for k, v in list(kwargs.items()):
            if isinstance(v, list) and isinstance(params[k].default, tuple):
                kwargs[k] = tuple(v)
        d = self.spec.design
        count = d.n_references if self.spec.task == "2afc" else d.n_images
        if not any(k in kwargs for k in _COUNT_ARGS):
            target = next((k for k in _COUNT_ARGS if k in params), None)
            if target is not None:
                kwargs[target] = count
        if "bottom_k" in params and "bottom_k" not in kwargs:
            kwargs["bottom_k"] = d.n_references if self.spec.task == "2afc" else 0
        if "checkpoint_sha" in params and self.ckpt.sha256:
            kwargs.setdefault("checkpoint_sha", self.ckpt.sha256)
        return kwargs

    def _visualize(
        self, cond: Condition, pairs: list[tuple[int, int | None]], quiet: bool = False
    ) -> dict[str, _Vis]:
        import inspect

        from neuroinspect.methods.visualizers import VISUALIZERS, load_all
        from neuroinspect.methods.visualizers.output import overlays

        load_all()
        assert cond.visualizer is not None
        cls = VISUALIZERS.get(cond.visualizer)
        kwargs = self._visualizer_kwargs(cond, cls)
        neurons = [n for n, _ in pairs]
        classes = [c for _, c in pairs]
        key = _digest(
            {
                "v": CACHE_VERSION,
                "ckpt": self.ckpt.sha256,
                "visualizer": cond.visualizer,
                "kwargs": {k: v for k, v in kwargs.items() if k != "checkpoint_sha"},
                "pairs": pairs,
                "dataset": self.ref_ds.fingerprint(),
                "seed": self.spec.seed,
            }
        )
        path = _cache_root() / "study_vis" / f"{key}.npz"
        if path.is_file():
            try:
                cached = _read_vis(path, pairs)
                self.cache_hits[f"visualizer {cond.name}"] = True
                if not quiet:
                    self.log(f"condition {cond.name}: {cond.visualizer} on {len(pairs)} unit(s) (cached)")
                return cached
            except Exception:  # noqa: BLE001 - a damaged cache entry is recomputed, never trusted
                path.unlink(missing_ok=True)
        params = inspect.signature(cls).parameters
        if "clip" in params:
            use = kwargs.get("use_clip", params["use_clip"].default if "use_clip" in params else True)
            if use and (any(c is not None for c in classes) or kwargs.get("auto_class")):
                kwargs["clip"] = self._load_clip(kwargs.get("clip") or params["clip"].default, cond)
        t0 = time.perf_counter()
        if not quiet:
            self.log(f"condition {cond.name}: running {cond.visualizer} on {len(pairs)} unit(s)")
        visualizer = cls(**kwargs)
        try:
            visualizations = visualizer.visualize(
                self.surface,
                neurons,
                classes,
                dataset=self.ref_ds,
                class_names=self.class_names,
                seed=self.spec.seed,
                device=self.device,
                show_progress=self.show,
            )
        except UserError as err:
            raise UserError(f"condition {cond.name!r} ({cond.visualizer}): {err}") from None
        out: dict[str, _Vis] = {}
        for (n, c), v in zip(pairs, visualizations, strict=True):
            kind = getattr(cls, "kind", "synthetic")
            images = v.images.detach().float().cpu()
            if kind == "attribution" and v.activation_maps is not None:
                images = overlays(images, v.activation_maps)
            arr = to_uint8(images)
            roles = v.extra.get("role")
            if isinstance(roles, list) and len(roles) == len(arr):
                top = np.array([r != "bottom" for r in roles])
                out[unit_key(n, c)] = _Vis(arr[top], arr[~top] if (~top).any() else None)
            else:
                out[unit_key(n, c)] = _Vis(arr, None)
        _write_vis(path, out)
        self.cache_hits[f"visualizer {cond.name}"] = False
        if not quiet:
            self.log(f"condition {cond.name}: done in {time.perf_counter() - t0:.1f} s")
        return out

    def _load_clip(self, clip_spec: Any, cond: Condition) -> Any:
        from neuroinspect.clip.loader import (
            ClipModel,
            ClipUnavailableError,
            default_synthetic_path,
            load_clip,
        )

        if isinstance(clip_spec, ClipModel):
            return clip_spec
        text = str(clip_spec)
        try:
            return load_clip(text, device=self.device)
        except ClipUnavailableError:
            target = text.split(":", 1)[1] if text.startswith("synthetic-clip:") else ""
            if not (target and _is_benchmark_name(target)):
                raise
            from neuroinspect.clip.synthetic import train_synthetic_clip

            out = default_synthetic_path(target)
            self.log(f"condition {cond.name}: training the synthetic CLIP of {target} once (cached at {out})")
            train_synthetic_clip(target, out=out, device=self.device, show_progress=self.show)
            return load_clip(text, device=self.device)

    # -- material for the task builders ------------------------------------------------------------------------
    def _vis_for(self, cond: Condition, unit: dict[str, Any]) -> _Vis:
        key = unit_key(unit["neuron"], unit.get("class_idx"))
        return self.vis[cond.name][key]

    def explanation(
        self, cond: Condition, unit: dict[str, Any], roles: tuple[str, ...] = ("max",)
    ) -> list[dict[str, Any]]:
        """Panels of ``unit`` under ``cond``: ``max`` (and ``min`` when asked and available)."""
        ck = (cond.name, unit_key(unit["neuron"], unit.get("class_idx")), roles)
        if ck in self._panel_cache:
            return [dict(p) for p in self._panel_cache[ck]]
        v = self._vis_for(cond, unit)
        cell = self.spec.design.cell_px
        panels = []
        max_rels = [self.writer.add(a) for a in v.max]
        panels.append(
            {
                "role": "max",
                "title": MAX_TITLES.get(self._kind(cond), MAX_TITLES["natural"]),
                "images": max_rels,
                "montage": self.writer.montage(max_rels, cell),
            }
        )
        if "min" in roles:
            mins = v.min
            if mins is None and cond.min_references == "natural":
                mins = self.natural[unit_key(unit["neuron"], unit.get("class_idx"))].min
            if mins is not None and len(mins):
                min_rels = [self.writer.add(a) for a in mins]
                panels.append(
                    {
                        "role": "min",
                        "title": "Images that make the neuron fire least",
                        "images": min_rels,
                        "montage": self.writer.montage(min_rels, cell),
                    }
                )
        self._panel_cache[ck] = panels
        return [dict(p) for p in panels]

    @staticmethod
    def _kind(cond: Condition) -> str:
        """``natural``, ``synthetic`` or ``attribution``: what the condition's images are."""
        from neuroinspect.methods.visualizers import VISUALIZERS

        try:
            return str(getattr(VISUALIZERS.get(cond.visualizer or "exemplars"), "kind", "synthetic"))
        except UserError:
            return "natural"

    def natural_panels(self, unit: dict[str, Any]) -> list[dict[str, Any]]:
        cond = Condition(name="_natural", visualizer="exemplars")
        self.vis.setdefault("_natural", self.natural)
        return self.explanation(cond, unit, roles=("max", "min"))

    def queries(self, unit: dict[str, Any]) -> tuple[str, str]:
        """(max query, min query) of a unit from the query split (see the module docstring)."""
        from neuroinspect.methods.visualizers.exemplars import load_images01

        key = unit["key"]
        if key in self._query_cache:
            return self._query_cache[key]
        fs = self.query_fs
        acts = fs.features[:, int(unit["neuron"])].numpy()
        rows = np.arange(len(fs))
        if unit.get("class_idx") is not None:
            rows = rows[fs.labels.numpy() == unit["class_idx"]]
            if len(rows) < 2:
                raise UserError(
                    f"the query split has fewer than 2 images of class {unit['class_idx']}; use another units.query_split."
                )
        order = rows[np.argsort(-acts[rows], kind="stable")]
        pool = max(1, int(round(self.spec.design.query_quantile * len(order))))
        pool = min(pool, len(order) // 2)
        rng = self.rng("queries", key)
        top = int(order[int(rng.integers(pool))])
        bottom = int(order[len(order) - 1 - int(rng.integers(pool))])
        size = (self.surface.data_config.image_size, self.surface.data_config.image_size)
        imgs = load_images01(
            self.query_ds,
            [int(fs.indices[top]), int(fs.indices[bottom])],
            size,
            self.surface.data_config.interpolation,
        )
        arr = to_uint8(imgs)
        out = (self.writer.add(arr[0]), self.writer.add(arr[1]))
        self._query_cache[key] = out
        return out

    def labelled_montage(self, rels: Sequence[str], labels: Sequence[str]) -> str:
        return self.writer.montage(rels, self.spec.design.cell_px, cols=len(rels), labels=labels)

    def truth_answer(self, unit: dict[str, Any]) -> str | None:
        """The right labelling answer for a neuron unit: its ground truth as the participant's words."""
        label = self.unit_truth(unit)
        return None if label is None else TRUTH_ANSWER[label]

    def mistake_panel(self, unit: dict[str, Any]) -> dict[str, Any]:
        from neuroinspect.methods.visualizers.exemplars import load_images01

        size = (self.surface.data_config.image_size, self.surface.data_config.image_size)
        arr = to_uint8(
            load_images01(self.query_ds, [unit["sample"]], size, self.surface.data_config.interpolation)
        )
        rel = self.writer.add(arr[0])
        names = self.ckpt.classes
        title = f"The model called this image a «{names[unit['pred']]}»; it is a «{names[unit['label']]}»."
        return {
            "role": "input",
            "title": title,
            "images": [rel],
            "montage": self.writer.montage([rel], self.spec.design.cell_px * 2),
        }

    # -- trials ------------------------------------------------------------------------------------------------
    def trials(self) -> tuple[list[dict[str, Any]], dict[str, dict[str, list[str]]]]:
        spec = self.spec
        d = spec.design
        trials: list[dict[str, Any]] = []
        index: dict[str, dict[str, list[str]]] = {}
        for cond in spec.conditions:
            index[cond.name] = {}
            for unit in self.main_units:
                made = self.task.main_trials(self, cond, unit)
                trials.extend(made)
                index[cond.name][unit["key"]] = [t["trial_id"] for t in made]
        informative = self.informative_conditions()
        practice_pool = self.practice_units or self.main_units
        for j in range(d.practice_trials):
            cond = informative[j % len(informative)]
            unit = practice_pool[j % len(practice_pool)]
            made = self.task.main_trials(self, cond, unit)[:1]
            for t in made:
                t["trial_id"] = f"practice/{j}"
                t["kind"] = "practice"
            trials.extend(made)
        catch_pool = self.practice_units or self.main_units
        for j in range(d.catch_trials):
            trials.append(self.task.catch_trial(self, j, catch_pool[j % len(catch_pool)]))
        return trials, index

    def build(self) -> dict[str, Any]:
        """Run every stage and return the manifest (the images are written as they are made)."""
        stages = (
            ("model and data", self.load_model_and_data),
            ("ground truth", self.ground_truth),
            ("units", self.select_units),
            ("visualizers", self.run_visualizers),
        )
        t0 = time.perf_counter()
        for i, (name, fn) in enumerate(stages):
            self.log(f"[{i + 1}/{len(stages) + 1}] {name}")
            fn()
        self.log(f"[{len(stages) + 1}/{len(stages) + 1}] trials")
        manifest = self.assemble()
        trials = manifest["trials"]
        self.log(
            f"trials: {sum(1 for t in trials if t['kind'] == 'main')} main, "
            f"{sum(1 for t in trials if t['kind'] == 'practice')} practice, "
            f"{sum(1 for t in trials if t['kind'] == 'catch')} catch; {len(self.writer.hashes)} images "
            f"({time.perf_counter() - t0:.1f} s)"
        )
        return manifest

    def model_info(self) -> dict[str, Any]:
        spec = self.spec
        return {
            "name": spec.model,
            "arch": self.ckpt.surface.spec.arch,
            "image_size": self.ckpt.surface.data_config.image_size,
            "dataset": spec.dataset,
            "dataset_params": self.params,
            "checkpoint_sha256": self.ckpt.sha256,
            "classes": list(self.ckpt.classes),
        }

    def unit_truth(self, unit: dict[str, Any]) -> str | None:
        """The ground-truth label of a neuron unit (spurious / core / mixed / dead), or None."""
        if self.truth is None or unit.get("neuron") is None:
            return None
        return str(self.truth.labels[int(unit["neuron"])])

    def assemble(self) -> dict[str, Any]:
        """The manifest: the trials of the task type from the material prepared by the stages."""
        trials, index = self.trials()
        spec = self.spec
        units = self.main_units + self.practice_units
        return {
            "format": FORMAT,
            "study_id": spec.id,
            "title": spec.title,
            "task": spec.task,
            "n_options": spec.n_options,
            "confidence_levels": self.task.confidence_levels,
            "seed": spec.seed,
            "spec_hash": spec.spec_hash(),
            "model": self.model_info(),
            "conditions": [c.as_dict() for c in spec.conditions],
            "units": {
                "main": [u["key"] for u in self.main_units],
                "practice": [u["key"] for u in self.practice_units],
                "details": {u["key"]: u for u in units},
                "truth": {u["key"]: self.unit_truth(u) for u in units},
            },
            "design": {
                "trials_per_condition": spec.design.trials_per_condition,
                "practice_trials": spec.design.practice_trials,
                "catch_trials": spec.design.catch_trials,
                "repeated_trials": spec.design.repeated_trials,
                "counterbalance": spec.design.counterbalance,
            },
            "index": index,
            "trials": trials,
            "images": dict(sorted(self.writer.hashes.items())),
        }


def _is_benchmark(dataset: Any) -> bool:
    from neuroinspect.methods.concept_recovery import has_ground_truth

    return has_ground_truth(dataset)


def _is_benchmark_name(name: str) -> bool:
    from neuroinspect.methods.concept_recovery import is_benchmark

    return is_benchmark(name)


def _write_vis(path: Path, out: dict[str, _Vis]) -> None:
    arrays: dict[str, np.ndarray] = {}
    for i, v in enumerate(out.values()):
        arrays[f"max_{i}"] = v.max
        if v.min is not None:
            arrays[f"min_{i}"] = v.min
    arrays["keys"] = np.array(list(out), dtype=object).astype(str)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
    atomic_write_bytes(path, buf.getvalue())


def _read_vis(path: Path, pairs: list[tuple[int, int | None]]) -> dict[str, _Vis]:
    with np.load(path, allow_pickle=False) as data:
        keys = [str(k) for k in data["keys"]]
        if keys != [unit_key(n, c) for n, c in pairs]:
            raise ValueError("cache entry for other units")
        return {
            k: _Vis(data[f"max_{i}"], data[f"min_{i}"] if f"min_{i}" in data.files else None)
            for i, k in enumerate(keys)
        }


def build_bundle(
    spec: StudySpec, *, show_progress: bool = True, log: Log = _stderr, device: str | None = None
) -> Bundle:
    """Build the spec's bundle into ``<out>/bundle`` (see the module docstring); returns it.

    An existing bundle built from the same spec is kept as it is (a second build is a no-op); one
    built from another version of the spec is never overwritten (participants may have seen it).
    """
    from neuroinspect.runtime import Provenance, resolve_device, seed_everything

    target = spec.bundle_dir
    manifest_path = target / MANIFEST
    if manifest_path.is_file():
        try:
            old = json.loads(manifest_path.read_text())
        except json.JSONDecodeError:
            old = {}
        if old.get("spec_hash") == spec.spec_hash() and old.get("format") == FORMAT:
            bundle = load_bundle(spec)
            log(f"bundle {target} is up to date ({len(bundle.trials)} trials); nothing to do")
            return bundle
        raise UserError(
            f"{target} holds a bundle built from another version of {spec.path.name}; study build never overwrites a "
            "bundle participants may have seen. Set a new `out` folder in the spec, or delete the old bundle first."
        )
    if target.exists() and any(target.iterdir()):
        raise UserError(
            f"{target} exists and is not a study bundle; point `out` at a new folder or empty it."
        )
    dev = resolve_device(device or spec.model_spec.device)
    seed_everything(spec.seed)
    staging = target.with_name(f".{target.name}.building-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    lines: list[str] = []

    def logged(msg: str) -> None:
        lines.append(msg)
        log(msg)

    try:
        with Provenance(str(dev)) as prov:
            builder = Builder(spec, staging, show_progress=show_progress, log=logged, device=dev)
            manifest = builder.build()
        data = (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()
        atomic_write_bytes(staging / MANIFEST, data)
        atomic_write_json(
            staging / BUILD_INFO,
            {
                "provenance": prov.as_dict(),
                "cache_hits": builder.cache_hits,
                "log": lines,
                "spec": str(spec.path),
            },
        )
        if target.exists():
            target.rmdir()
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log(f"bundle written: {target} (manifest sha256 {hashlib.sha256(data).hexdigest()[:16]})")
    return load_bundle(spec)
