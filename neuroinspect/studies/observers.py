"""Simulated participants: virtual observers that go through the SAME session logic and database as people.

Observers (``study simulate --observer``):

- ``model``: answers from the images a trial shows, through the task type's :meth:`observe`
  (:mod:`neuroinspect.studies.tasks`), with Gaussian decision noise (``simulation.noise``) and a
  lapse rate (``simulation.lapse``: that fraction of trials is answered at random). Its "eyes" are a
  fixed image embedding (:class:`Evidence`): on the bundled benchmarks the attribute classifiers of
  :mod:`neuroinspect.methods.concept_recovery` (trained on the benchmark's counterfactual renders,
  never on the studied model), whose probabilities of each shape and each background form the
  embedding and whose chance-corrected agreement over a set of images says what those images have in
  common; on other datasets an 8×8 colour thumbnail (no agreement: labelling and mistake answers are
  then guesses). 2AFC: the query nearer to the max references and farther from the min references in
  that embedding; labelling: the attribute the explanation's images agree on; mistake: the attribute
  the blamed neurons' images agree on; rating: higher for images that agree more. With no explanation
  (the baseline) it guesses, so more informative explanations give it higher accuracy. It reads
  attention checks. Response times: lognormal around ``simulation.rt_s`` seconds; 20-60 s on the
  instructions.
- ``random``: uniform answers (and confidence), the same times as ``model``.
- ``careless``: always the first option at the highest confidence, 0.1-0.3 s per trial and 2-4 s on
  the instructions: the exclusion rules (too fast, constant answers, catch trials) must catch it.

Simulated time: each participant has a virtual clock (starting now) that advances by its response
times, and every timestamp written is that clock's, so rt_s and the session times look like a
real session without waiting for one. Participants are marked ``simulated`` in the database and the
export. :func:`simulate` runs N of them on a thread pool (``--concurrency``).
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from neuroinspect.errors import UserError
from neuroinspect.studies.session import AccessDenied, StudyRuntime, _rng

OBSERVERS = ("model", "random", "careless")


class Evidence:
    """A fixed embedding of the bundle's images (see the module docstring), computed once for all of them."""

    def __init__(self, runtime: StudyRuntime, mode: str = "auto", *, show_progress: bool = False) -> None:
        from PIL import Image

        self.bundle = runtime.bundle
        spec = runtime.spec
        self._arrays: dict[str, np.ndarray] = {}
        for rel in self.bundle.manifest["images"]:
            self._arrays[rel] = np.asarray(Image.open(self.bundle.image(rel)).convert("RGB"))
        if mode == "auto":
            from neuroinspect.methods.concept_recovery import is_benchmark

            mode = "attributes" if is_benchmark(spec.dataset) else "pixels"
        self.mode = mode
        self._probs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.classifier_info: dict[str, Any] = {}
        if mode == "attributes":
            self._fit_classifiers(runtime, show_progress)

    def _fit_classifiers(self, runtime: StudyRuntime, show_progress: bool) -> None:
        import torch

        from neuroinspect.datasets import get_dataset
        from neuroinspect.methods import concept_recovery as cr

        spec = runtime.spec
        params = dict(self.bundle.manifest["model"]["dataset_params"])
        dspec = get_dataset(spec.dataset)
        train = dspec.load(spec.model_spec.root, "train", None, **params)
        heldout = dspec.load(spec.model_spec.root, "val", None, **params)
        settings = cr.classifier_settings(spec.simulation.get("classifier") or {})
        clf, info = cr.cached_classifiers(train, heldout, settings, spec.seed, show_progress=show_progress)
        self.classifier_info = {
            **info,
            "accuracy": {k: clf.accuracy[k]["accuracy"] for k in ("core", "spurious")},
        }
        by_shape: dict[tuple[int, ...], list[str]] = {}
        for rel in sorted(self._arrays):
            by_shape.setdefault(self._arrays[rel].shape, []).append(rel)
        for rels in by_shape.values():
            for start in range(0, len(rels), 256):
                chunk = rels[start : start + 256]
                x = torch.stack(
                    [
                        torch.from_numpy(self._arrays[r].astype(np.float32) / 255.0).permute(2, 0, 1)
                        for r in chunk
                    ]
                )
                p = clf.predict_proba(x)
                for i, r in enumerate(chunk):
                    self._probs[r] = (p["core"][i].numpy(), p["spurious"][i].numpy())

    def embed(self, rels: Sequence[str]) -> np.ndarray:
        """n×d embedding of the images ``rels`` (attribute probabilities, or 8×8 colour thumbnails)."""
        if self.mode == "attributes":
            return np.stack([np.concatenate(self._probs[r]) for r in rels])
        from PIL import Image

        out = []
        for r in rels:
            img = Image.fromarray(self._arrays[r]).resize((8, 8), Image.Resampling.BILINEAR)
            out.append(np.asarray(img, dtype=np.float64).ravel() / 255.0)
        return np.stack(out)

    def agreement(self, rels: Sequence[str]) -> tuple[float, float] | None:
        """(core, spurious) chance-corrected agreement of the images (1: all certainly the same value), or None."""
        if self.mode != "attributes" or not rels:
            return None
        out = []
        for which in (0, 1):
            p = np.stack([self._probs[r][which] for r in rels])
            k = p.shape[1]
            out.append(float((p.mean(axis=0).max() - 1.0 / k) / (1.0 - 1.0 / k)))
        return out[0], out[1]


@dataclass
class VirtualClock:
    """A participant's simulated time: starts at ``start`` and moves only when told."""

    now: dt.datetime

    def advance(self, seconds: float) -> dt.datetime:
        self.now = self.now + dt.timedelta(seconds=float(seconds))
        return self.now


@dataclass
class ParticipantRun:
    """What one simulated participant did (counts, and the seconds each answer took to be recorded)."""

    participant_id: str
    observer: str
    token: str = ""
    given: int = 0
    recorded: int = 0
    duplicates: int = 0
    resubmissions: int = 0
    completed: bool = False
    resumed: bool = False
    latencies: list[float] = field(default_factory=list)
    correct: dict[str, list[int]] = field(default_factory=dict)
    error: str | None = None


def _decide(
    runtime: StudyRuntime,
    evidence: Evidence | None,
    observer: str,
    trial: dict[str, Any],
    rng: np.random.Generator,
) -> tuple[str, int | None]:
    task = runtime.task
    sim = runtime.spec.simulation
    if observer == "careless":
        conf = task.confidence_levels or None
        return str(trial["options"][0][0]), conf
    if observer == "random" or evidence is None or rng.random() < float(sim["lapse"]):
        return task.random_response(trial, rng)
    response, conf = task.observe(trial, evidence, rng, float(sim["noise"]))
    if task.confidence_levels and conf is None:
        conf = int(rng.integers(1, task.confidence_levels + 1))
    return response, conf


def _rt(observer: str, rng: np.random.Generator, mean: float) -> float:
    if observer == "careless":
        return float(rng.uniform(0.1, 0.3))
    sigma = 0.5
    return float(np.exp(rng.normal(np.log(mean) - sigma**2 / 2, sigma)))


def run_participant(
    runtime: StudyRuntime,
    evidence: Evidence | None,
    participant_id: str,
    observer: str,
    seed: int,
    *,
    virtual_time: bool = True,
    token: str | None = None,
    resubmit: bool = False,
    on_token: Callable[[str, str], None] | None = None,
    on_answer: Callable[[str, str, str], None] | None = None,
    stop: threading.Event | None = None,
    think_s: float = 0.0,
) -> ParticipantRun:
    """Take one simulated participant through the study (or resume one with ``token``).

    ``virtual_time``: timestamps from a virtual clock (module docstring); otherwise the server clock.
    ``resubmit``: send every answer twice (a double click): the second must be recorded as a duplicate.
    ``on_token(pid, token)`` is called as soon as the session exists, ``on_answer(pid, trial_id,
    response)`` after each answer is committed (the client's own log, for the fault test).
    ``think_s``: real seconds to sleep between answers (load tests).
    """
    if observer not in OBSERVERS:
        raise UserError(f"unknown observer {observer!r}; choose one of {', '.join(OBSERVERS)}.")
    rng = np.random.default_rng(seed)
    mean_rt = float(runtime.spec.simulation["rt_s"])
    clock = VirtualClock(runtime.clock()) if virtual_time else None

    def now(advance: float = 0.0) -> dt.datetime | None:
        if clock is None:
            return None
        return clock.advance(advance)

    run = ParticipantRun(participant_id, observer)
    entry = runtime.enter(participant_id, token, simulated=True, observer=observer, now=now())
    run.token = entry.token
    run.resumed = not entry.created
    if on_token is not None:
        on_token(participant_id, entry.token)
    p = entry.participant
    for _ in range(100_000):
        if stop is not None and stop.is_set():
            break
        stage = runtime.stage(p, now=now())
        if stage == "consent":
            runtime.consent(p, True, now=now(float(rng.uniform(5, 15)) if observer != "careless" else 1.0))
        elif stage == "instructions":
            runtime.show_instructions(p, now=now())
            spent = float(rng.uniform(2, 4)) if observer == "careless" else float(rng.uniform(20, 60))
            runtime.finish_instructions(p, now=now(spent))
        elif stage == "trial":
            view = runtime.current_trial(p, now=now())
            assert view is not None
            response, conf = _decide(runtime, evidence, observer, view.trial, rng)
            when = now(_rt(observer, rng, mean_rt))
            t0 = time.perf_counter()
            res = runtime.answer(p, view.trial_id, response, conf, now=when)
            run.latencies.append(time.perf_counter() - t0)
            run.given += 1
            run.recorded += int(res.recorded)
            run.duplicates += int(res.duplicate)
            if res.correct is not None and view.kind in ("main", "repeated", "catch"):
                key = "catch" if view.kind == "catch" else view.condition
                run.correct.setdefault(key, []).append(int(res.correct))
            if on_answer is not None:
                on_answer(participant_id, view.trial_id, res.response)
            if resubmit:
                again = runtime.answer(p, view.trial_id, response, conf, now=now(0.05))
                run.resubmissions += 1
                if again.recorded:
                    run.error = f"a resubmission of {view.trial_id} was recorded twice"
            if think_s:
                time.sleep(think_s)
        elif stage == "questionnaire":
            exp = "none" if observer == "careless" else str(rng.choice(["none", "some", "regular", "expert"]))
            runtime.submit_questionnaire(p, exp, None, now=now(float(rng.uniform(3, 20))))
        elif stage == "complete":
            run.completed = True
            break
        else:  # declined or timed out
            break
    return run


def parse_observers(text: str, n: int) -> list[str]:
    """``"model"`` or ``"model=8,careless=2"`` (proportions) -> one observer per participant (n)."""
    parts = [t.strip() for t in str(text).split(",") if t.strip()]
    weights: dict[str, float] = {}
    for part in parts:
        name, _, w = part.partition("=")
        name = name.strip()
        if name not in OBSERVERS:
            raise UserError(
                f"--observer: unknown observer {name!r}; choose from {', '.join(OBSERVERS)} (e.g. model=8,careless=2)."
            )
        try:
            weights[name] = float(w) if w else 1.0
        except ValueError:
            raise UserError(f"--observer: {part!r} must look like name=weight, e.g. careless=2.") from None
        if weights[name] < 0:
            raise UserError(f"--observer: weight of {name} must be >= 0.")
    total = sum(weights.values())
    if not weights or total <= 0:
        raise UserError("--observer needs at least one observer with a positive weight.")
    counts = {k: int(np.floor(n * v / total)) for k, v in weights.items()}
    rest = n - sum(counts.values())
    for k in sorted(weights, key=lambda k: -(n * weights[k] / total - counts[k]))[:rest]:
        counts[k] += 1
    out: list[str] = []
    for k in weights:
        out.extend([k] * counts[k])
    return out


@dataclass
class SimulationResult:
    runs: list[ParticipantRun]
    wall_seconds: float
    evidence_mode: str
    classifier_info: dict[str, Any]

    def accuracy_table(self) -> list[tuple[str, str, int, float]]:
        """(observer, condition, n trials, accuracy) over main / repeated / catch trials with a right answer."""
        rows: dict[tuple[str, str], list[int]] = {}
        for r in self.runs:
            for cond, vals in r.correct.items():
                rows.setdefault((r.observer, cond), []).extend(vals)
        return [(o, c, len(v), float(np.mean(v))) for (o, c), v in sorted(rows.items()) if v]


def simulate(
    runtime: StudyRuntime,
    n: int,
    observers: Sequence[str],
    *,
    concurrency: int = 4,
    seed: int = 0,
    show_progress: bool = True,
    virtual_time: bool = True,
    resubmit: bool = False,
) -> SimulationResult:
    """Run ``n`` simulated participants (``observers[i]`` for participant i) on ``concurrency`` threads."""
    if n < 1:
        raise UserError(f"--participants must be at least 1, got {n}.")
    if concurrency < 1:
        raise UserError(f"--concurrency must be at least 1, got {concurrency}.")
    evidence = (
        Evidence(runtime, runtime.spec.simulation["embedding"], show_progress=show_progress)
        if "model" in observers
        else None
    )
    run_id = secrets.token_hex(3)
    t0 = time.perf_counter()
    runs: list[ParticipantRun] = []
    from neuroinspect.runtime import progress

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        futures = [
            pool.submit(
                run_participant,
                runtime,
                evidence,
                f"sim-{observers[i]}-{run_id}-{i:04d}",
                observers[i],
                int(_rng(runtime.spec.seed, seed, "participant", i).integers(2**31)),
                virtual_time=virtual_time,
                resubmit=resubmit,
            )
            for i in range(n)
        ]
        for fut in progress(
            as_completed(futures), desc="simulated participants", total=n, enabled=show_progress
        ):
            try:
                runs.append(fut.result())
            except AccessDenied as err:  # pragma: no cover - fresh ids never collide
                raise UserError(str(err)) from None
    runs.sort(key=lambda r: r.participant_id)
    return SimulationResult(
        runs=runs,
        wall_seconds=time.perf_counter() - t0,
        evidence_mode=evidence.mode if evidence else "none",
        classifier_info=evidence.classifier_info if evidence else {},
    )
