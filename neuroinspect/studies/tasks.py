"""Task types: what a trial shows, what it asks, what the right answer is, and how a model observer answers.

Each task type is one small class registered with ``@register_task("name")`` (like the method
families). It turns the material the bundle builder prepared (explanation panels of a unit under a
condition, query images, ground truth) into trial entries of the bundle's manifest, and it answers
trials for the simulated *model observer* from image evidence (:mod:`neuroinspect.studies.observers`).

A trial entry (JSON, in ``manifest.json``) has: ``trial_id``, ``kind`` (``main`` | ``practice`` |
``catch``), ``condition``, ``unit`` (e.g. ``"neuron:12"``), ``prompt``, ``panels`` (each ``{"role",
"title", "images", "montage"}``: the explanation), optionally ``choice`` (2AFC's two query images),
``options`` (``[value, label]`` pairs), ``confidence`` (levels, 0 for none), ``truth`` (the right
answer's value or ``null``) and ``instructed`` (an attention check's requested answer).

- **2afc** (Borowski et al., ICLR'21): reference images of a unit under a condition (maximally and,
  where the condition has them, minimally activating), two natural query images from the held-out
  query split (one from the top, one from the bottom ``query_quantile`` of the unit's activations);
  which query makes the unit fire more? 6-level confidence. Catch trials reuse a reference image as
  a query (natural exemplars), so the answer is visible.
- **labelling**: a unit's explanation; does it show the object, the background, both or neither?
  Truth on the bundled benchmarks: the neuron ground truth (spurious -> background, core -> object,
  mixed -> both, dead -> neither).
- **mistake**: a misclassified image plus the explanations of the neurons the finder blames; was the
  mistake caused by the object or by the background? Truth on the bundled benchmarks: the same image
  re-rendered on the other backgrounds (counterfactual) -- "background" when some background makes
  the model right, "object" when none does.
- **rating**: Likert ratings (1..``task_options.scale``) of how understandable and how useful an
  explanation is, one trial per item; no right answer.

Catch trials of labelling, mistake and rating are instructed-response attention checks ("please
choose X").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from neuroinspect.errors import UserError
from neuroinspect.registry import Registry

if TYPE_CHECKING:
    from neuroinspect.studies.spec import Condition, StudySpec

Trial = dict[str, Any]

#: below this chance-corrected agreement a set of images shows neither attribute (as in concept recovery)
MIN_AGREEMENT = 0.25
TIE_TOLERANCE = 0.05


class TaskType:
    """Base class; subclasses set ``name`` and implement the trial builders and :meth:`observe`."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    confidence_levels: ClassVar[int] = 0

    # -- spec ----------------------------------------------------------------------------------------
    def n_options(self, spec: StudySpec) -> int | None:
        return len(self.options(spec))

    def options(self, spec: StudySpec) -> list[tuple[str, str]]:
        raise NotImplementedError

    def validate(self, spec: StudySpec) -> None:
        """Task-specific checks of a spec (a :class:`UserError` naming the key)."""
        if spec.task_options.get("items") is not None:
            raise UserError(
                f"task_options.items applies to rating studies only; drop it for task = {self.name!r}."
            )

    def instructions(self, spec: StudySpec) -> str:
        raise NotImplementedError

    def prompt(self, spec: StudySpec) -> str:
        raise NotImplementedError

    # -- building ------------------------------------------------------------------------------------
    def main_trials(self, ctx: Any, condition: Condition, unit: dict[str, Any]) -> list[Trial]:
        """The trial(s) about ``unit`` under ``condition`` (one for most tasks; one per item for ratings)."""
        raise NotImplementedError

    def catch_trial(self, ctx: Any, index: int, unit: dict[str, Any]) -> Trial:
        return self._instructed_catch(ctx, index, unit)

    def _base(
        self,
        ctx: Any,
        trial_id: str,
        kind: str,
        condition: str,
        unit: dict[str, Any],
        panels: list[dict[str, Any]],
    ) -> Trial:
        spec = ctx.spec
        return {
            "trial_id": trial_id,
            "kind": kind,
            "condition": condition,
            "unit": unit["key"],
            "neuron": unit.get("neuron"),
            "class_idx": unit.get("class_idx"),
            "prompt": self.prompt(spec),
            "panels": panels,
            "options": [list(o) for o in self.options(spec)],
            "confidence": self.confidence_levels,
            "truth": None,
            "instructed": None,
        }

    def _instructed_catch(self, ctx: Any, index: int, unit: dict[str, Any]) -> Trial:
        """An attention check: a real explanation, and a prompt that names the answer to pick."""
        options = self.options(ctx.spec)
        rng = ctx.rng("catch", index)
        value, label = options[int(rng.integers(len(options)))]
        cond = ctx.informative_conditions()[index % len(ctx.informative_conditions())]
        trial = self._base(
            ctx, f"catch/{index}", "catch", "catch", unit, ctx.explanation(cond, unit, roles=("max",))
        )
        trial["prompt"] = f"Attention check: whatever the images show, please choose «{label}» below."
        trial["truth"] = value
        trial["instructed"] = value
        return trial

    # -- answering (simulated model observer) ----------------------------------------------------------
    def observe(
        self, trial: Trial, evidence: Any, rng: np.random.Generator, noise: float
    ) -> tuple[str, int | None]:
        """A model observer's (response, confidence) from the images ``trial`` shows."""
        raise NotImplementedError

    @staticmethod
    def is_correct(trial: Trial, response: str) -> int | None:
        truth = trial.get("truth")
        return None if truth is None else int(str(response) == str(truth))

    def random_response(self, trial: Trial, rng: np.random.Generator) -> tuple[str, int | None]:
        values = [o[0] for o in trial["options"]]
        conf = int(rng.integers(1, self.confidence_levels + 1)) if self.confidence_levels else None
        return str(values[int(rng.integers(len(values)))]), conf


TASKS: Registry[type[TaskType]] = Registry("study task")


def register_task(name: str) -> Callable[[type[TaskType]], type[TaskType]]:
    def deco(cls: type[TaskType]) -> type[TaskType]:
        cls.name = name
        return TASKS.register(name)(cls)

    return deco


def get_task(name: str) -> TaskType:
    return TASKS.get(name)()


def _factor_words(ctx_or_spec: Any) -> tuple[str, str]:
    """What the benchmark's core and spurious factors are called ("shape", "background")."""
    spec = getattr(ctx_or_spec, "spec", ctx_or_spec)
    try:
        from neuroinspect.datasets import get_dataset

        ds = get_dataset(spec.dataset)
        return str(getattr(ds, "core_factor", "object")), str(getattr(ds, "spurious_factor", "background"))
    except UserError:
        return "object", "background"


def _agreement_answer(core: float, spurious: float) -> str:
    top = max(core, spurious)
    shown = [
        name
        for name, v in (("object", core), ("background", spurious))
        if v >= MIN_AGREEMENT and v >= top - TIE_TOLERANCE
    ]
    return "both" if len(shown) == 2 else (shown[0] if shown else "neither")


def _panel_images(trial: Trial, role: str) -> list[str]:
    out: list[str] = []
    for p in trial["panels"]:
        if p["role"] == role:
            out.extend(p["images"])
    return out


# -- 2AFC ---------------------------------------------------------------------------------------------
@register_task("2afc")
class TwoAFC(TaskType):
    """Which of two query images makes the unit fire more, given reference images (Borowski et al.)."""

    title = "two-alternative forced choice"
    confidence_levels = 6

    def options(self, spec: StudySpec) -> list[tuple[str, str]]:
        return [("A", "A"), ("B", "B")]

    def prompt(self, spec: StudySpec) -> str:
        return "Which query image, **A** or **B**, makes the neuron fire **more**?"

    def instructions(self, spec: StudySpec) -> str:
        n = spec.design.n_references
        return (
            "A neural network looks at images. Each of its *neurons* fires strongly for some images and weakly "
            "for others.\n\n"
            f"On each trial you see up to {n} images that make one neuron fire **most** (top) and, for some "
            f"explanations, {n} that make it fire **least**. Some explanations are computer-generated pictures; "
            "on some trials there is no explanation at all, then just make your best guess.\n\n"
            "Below them are two **query images, A and B**. One of them makes the neuron fire much more than the "
            "other. Choose it, then say how confident you are (1 = guessing, 6 = certain).\n\n"
            "The first trials are practice: you will be told the right answer. Some trials check your attention; "
            "they are easy if you look carefully."
        )

    def main_trials(self, ctx: Any, condition: Condition, unit: dict[str, Any]) -> list[Trial]:
        panels = [] if condition.baseline else ctx.explanation(condition, unit, roles=("max", "min"))
        qmax, qmin = ctx.queries(unit)
        return [
            self._with_queries(
                ctx, f"main/{condition.name}/{unit['key']}", "main", condition.name, unit, panels, qmax, qmin
            )
        ]

    def _with_queries(
        self,
        ctx: Any,
        trial_id: str,
        kind: str,
        condition: str,
        unit: dict[str, Any],
        panels: list[dict[str, Any]],
        qmax: str,
        qmin: str,
    ) -> Trial:
        trial = self._base(ctx, trial_id, kind, condition, unit, panels)
        a_is_max = bool(ctx.rng("2afc-position", trial_id).random() < 0.5)
        images = [qmax, qmin] if a_is_max else [qmin, qmax]
        trial["choice"] = {
            "title": "Query images",
            "labels": ["A", "B"],
            "images": images,
            "montage": ctx.labelled_montage(images, ["A", "B"]),
        }
        trial["truth"] = "A" if a_is_max else "B"
        return trial

    def catch_trial(self, ctx: Any, index: int, unit: dict[str, Any]) -> Trial:
        panels = ctx.natural_panels(unit)
        maxes = _panel_images({"panels": panels}, "max")
        mins = _panel_images({"panels": panels}, "min")
        return self._with_queries(ctx, f"catch/{index}", "catch", "catch", unit, panels, maxes[0], mins[0])

    def observe(
        self, trial: Trial, evidence: Any, rng: np.random.Generator, noise: float
    ) -> tuple[str, int | None]:
        maxes = _panel_images(trial, "max")
        if not maxes:
            return self.random_response(trial, rng)
        mins = _panel_images(trial, "min")
        queries = trial["choice"]["images"]
        q = evidence.embed(queries)  # 2 x d
        score = -_mean_dist(q, evidence.embed(maxes))
        if mins:
            score = score + _mean_dist(q, evidence.embed(mins))
        delta = (
            float(score[0] - score[1]) + float(rng.normal(0.0, noise))
            if noise > 0
            else float(score[0] - score[1])
        )
        response = "A" if delta > 0 else ("B" if delta < 0 else str(rng.choice(["A", "B"])))
        confidence = int(np.clip(1 + round(5 * math.tanh(abs(delta) / 0.3)), 1, 6))
        return response, confidence


def _mean_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean Euclidean distance of each row of ``a`` (n×d) to the rows of ``b`` (m×d) → n."""
    d = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=-1))
    return np.asarray(d.mean(axis=1))


# -- neuron labelling ------------------------------------------------------------------------------------
@register_task("labelling")
class Labelling(TaskType):
    """Does a neuron's explanation show the object, the background, both, or neither?"""

    title = "neuron labelling"

    def options(self, spec: StudySpec) -> list[tuple[str, str]]:
        core, spurious = _factor_words(spec)
        return [
            ("object", f"The object (its {core})"),
            (
                "background",
                f"The {spurious}" if spurious == "background" else f"The {spurious} (not the object)",
            ),
            ("both", "Both"),
            ("neither", "Neither / cannot tell"),
        ]

    def prompt(self, spec: StudySpec) -> str:
        core, spurious = _factor_words(spec)
        return f"What does this neuron respond to: the object (its {core}), the {spurious}, both, or neither?"

    def instructions(self, spec: StudySpec) -> str:
        core, spurious = _factor_words(spec)
        return (
            "A neural network classifies images of objects. Each of its *neurons* responds to something in the "
            f"images: the object itself (its {core}), the {spurious} around it, both, or nothing you can see.\n\n"
            "On each trial you see an explanation of one neuron: images that make it fire strongly (some are "
            "photos from the data, some are computer-generated). On some trials there is no explanation; then "
            f"give your best guess.\n\nTell us what the neuron responds to. Look at what the images **have in "
            f"common**: if they all share the same {spurious} but show different objects, the neuron responds "
            f"to the {spurious}."
        )

    def main_trials(self, ctx: Any, condition: Condition, unit: dict[str, Any]) -> list[Trial]:
        panels = [] if condition.baseline else ctx.explanation(condition, unit, roles=("max",))
        trial = self._base(ctx, f"main/{condition.name}/{unit['key']}", "main", condition.name, unit, panels)
        trial["truth"] = ctx.truth_answer(unit)
        return [trial]

    def observe(
        self, trial: Trial, evidence: Any, rng: np.random.Generator, noise: float
    ) -> tuple[str, int | None]:
        if trial.get("instructed"):
            return str(trial["instructed"]), None
        images = _panel_images(trial, "max")
        agree = evidence.agreement(images) if images else None
        if agree is None:
            return self.random_response(trial, rng)
        core, spurious = agree
        core += float(rng.normal(0.0, noise))
        spurious += float(rng.normal(0.0, noise))
        return _agreement_answer(core, spurious), None


# -- mistake explanation ----------------------------------------------------------------------------------
@register_task("mistake")
class MistakeExplanation(TaskType):
    """A misclassified image with explanations of the blamed neurons: did the object or the background cause it?"""

    title = "mistake explanation"

    def options(self, spec: StudySpec) -> list[tuple[str, str]]:
        core, spurious = _factor_words(spec)
        return [("object", f"The object (its {core})"), ("background", f"The {spurious}")]

    def prompt(self, spec: StudySpec) -> str:
        core, spurious = _factor_words(spec)
        return f"What made the model get this image wrong: the object (its {core}) or the {spurious}?"

    def instructions(self, spec: StudySpec) -> str:
        core, spurious = _factor_words(spec)
        return (
            "A neural network classifies images by the object they show. Sometimes it gets an image wrong. On each "
            "trial you see such an image, what the model said, and, for most trials, an explanation of the "
            "neurons that pushed the model to its wrong answer (images that make those neurons fire).\n\n"
            f"Decide what caused the mistake: the object itself (its {core}), or the {spurious}? If the neurons "
            f"respond to the {spurious}, the model probably judged the image by its {spurious}."
        )

    def main_trials(self, ctx: Any, condition: Condition, unit: dict[str, Any]) -> list[Trial]:
        panels = [ctx.mistake_panel(unit)]
        if not condition.baseline:
            for n in unit["blamed"]:
                sub = dict(unit, key=f"neuron:{n}", neuron=n)
                for p in ctx.explanation(condition, sub, roles=("max",)):
                    panels.append(dict(p, role="blamed", title=f"Neuron {n}: " + p["title"]))
        trial = self._base(ctx, f"main/{condition.name}/{unit['key']}", "main", condition.name, unit, panels)
        trial["truth"] = unit["truth"]
        trial["neuron"] = None
        trial["blamed"] = list(unit["blamed"])
        return [trial]

    def catch_trial(self, ctx: Any, index: int, unit: dict[str, Any]) -> Trial:
        options = self.options(ctx.spec)
        value, label = options[int(ctx.rng("catch", index).integers(len(options)))]
        trial = self._base(ctx, f"catch/{index}", "catch", "catch", unit, [ctx.mistake_panel(unit)])
        trial["prompt"] = f"Attention check: whatever the image shows, please choose «{label}» below."
        trial["truth"] = value
        trial["instructed"] = value
        trial["neuron"] = None
        return trial

    def observe(
        self, trial: Trial, evidence: Any, rng: np.random.Generator, noise: float
    ) -> tuple[str, int | None]:
        if trial.get("instructed"):
            return str(trial["instructed"]), None
        blamed = [p["images"] for p in trial["panels"] if p["role"] == "blamed"]
        agrees = [evidence.agreement(imgs) for imgs in blamed if imgs]
        if not agrees or any(a is None for a in agrees):
            return self.random_response(trial, rng)
        core = float(np.mean([a[0] for a in agrees])) + float(rng.normal(0.0, noise))
        spurious = float(np.mean([a[1] for a in agrees])) + float(rng.normal(0.0, noise))
        return ("background" if spurious > core else "object"), None


# -- ratings -------------------------------------------------------------------------------------------------
RATING_ITEMS: dict[str, str] = {
    "understandable": "How well do these images let you understand what the neuron responds to?",
    "useful": "How useful would these images be to find out why the model makes mistakes?",
}


@register_task("rating")
class Rating(TaskType):
    """Likert ratings of how understandable and how useful an explanation is (one trial per item)."""

    title = "ratings"

    def n_options(self, spec: StudySpec) -> int | None:
        return None

    def scale(self, spec: StudySpec) -> int:
        return int(spec.task_options.get("scale") or 7)

    def items(self, spec: StudySpec) -> list[str]:
        return list(spec.task_options.get("items") or list(RATING_ITEMS))

    def validate(self, spec: StudySpec) -> None:
        scale = self.scale(spec)
        if not 2 <= scale <= 11:
            raise UserError(f"task_options.scale must be between 2 and 11 points, got {scale}.")
        items = self.items(spec)
        bad = [i for i in items if i not in RATING_ITEMS]
        if bad:
            raise UserError(
                f"task_options.items: unknown item {bad[0]!r}; choose from {', '.join(RATING_ITEMS)}."
            )
        if not items or len(set(items)) != len(items):
            raise UserError('task_options.items must list each item once, e.g. ["understandable", "useful"].')

    def options(self, spec: StudySpec) -> list[tuple[str, str]]:
        k = self.scale(spec)
        labels = {1: "not at all", k: "completely"}
        return [(str(i), f"{i}" + (f" ({labels[i]})" if i in labels else "")) for i in range(1, k + 1)]

    def prompt(self, spec: StudySpec) -> str:
        return RATING_ITEMS[self.items(spec)[0]]

    def instructions(self, spec: StudySpec) -> str:
        k = self.scale(spec)
        return (
            "A neural network classifies images. Its *neurons* respond to parts of what it sees. Different methods "
            "explain a neuron with images (photos from the data, or computer-generated pictures).\n\n"
            f"On each trial you see one explanation of one neuron and answer one question about it on a scale from "
            f"1 (not at all) to {k} (completely). There are no right or wrong answers; we want your honest judgement."
        )

    def main_trials(self, ctx: Any, condition: Condition, unit: dict[str, Any]) -> list[Trial]:
        panels = [] if condition.baseline else ctx.explanation(condition, unit, roles=("max",))
        out = []
        for item in self.items(ctx.spec):
            trial = self._base(
                ctx, f"main/{condition.name}/{unit['key']}/{item}", "main", condition.name, unit, panels
            )
            trial["prompt"] = RATING_ITEMS[item]
            trial["item"] = item
            out.append(trial)
        return out

    def observe(
        self, trial: Trial, evidence: Any, rng: np.random.Generator, noise: float
    ) -> tuple[str, int | None]:
        if trial.get("instructed"):
            return str(trial["instructed"]), None
        k = len(trial["options"])
        images = _panel_images(trial, "max")
        agree = evidence.agreement(images) if images else (0.0, 0.0)
        if agree is None:
            return self.random_response(trial, rng)
        informative = max(agree)
        value = 1 + (k - 1) * informative + float(rng.normal(0.0, noise * (k - 1)))
        return str(int(np.clip(round(value), 1, k))), None


def task_names() -> Sequence[str]:
    return TASKS.names()
