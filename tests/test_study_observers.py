"""The simulated model observer: more informative explanations must give it higher accuracy."""

from __future__ import annotations

import numpy as np

from neuroinspect.studies.tasks import get_task


class FakeEvidence:
    """Images named by their embedding: ``"x:0.9,0.1"`` embeds to [0.9, 0.1]; agreement = (core, spurious)
    read from names ``"agree:0.8,0.1"``."""

    def embed(self, rels):  # noqa: ANN001, ANN201
        return np.array([[float(v) for v in r.split(":")[1].split(",")] for r in rels])

    def agreement(self, rels):  # noqa: ANN001, ANN201
        vals = np.array([[float(v) for v in r.split(":")[1].split(",")] for r in rels]).mean(axis=0)
        return float(vals[0]), float(vals[1])


def _two_afc(panels: list[dict], truth: str, rng: np.random.Generator) -> dict:
    qmax, qmin = "x:1.0,0.0", "x:0.0,1.0"
    images = [qmax, qmin] if truth == "A" else [qmin, qmax]
    return {
        "panels": panels,
        "choice": {"images": images},
        "options": [["A", "A"], ["B", "B"]],
        "truth": truth,
    }


def test_2afc_model_observer_accuracy_follows_the_information_in_the_references() -> None:
    task = get_task("2afc")
    ev = FakeEvidence()
    rng = np.random.default_rng(0)
    informative = [
        {"role": "max", "images": ["x:0.9,0.1", "x:0.8,0.2", "x:1.0,0.1"]},
        {"role": "min", "images": ["x:0.1,0.9", "x:0.2,0.8"]},
    ]
    max_only = [{"role": "max", "images": ["x:0.7,0.4", "x:0.6,0.5"]}]
    noise_refs = [{"role": "max", "images": ["x:0.6,0.4", "x:0.4,0.6"]}]  # as near to both queries
    acc = {}
    for name, panels in (
        ("informative", informative),
        ("max only", max_only),
        ("uninformative", noise_refs),
        ("none", []),
    ):
        hits = []
        for i in range(400):
            trial = _two_afc(panels, "A" if i % 2 else "B", rng)
            response, conf = task.observe(trial, ev, rng, noise=0.15)
            assert 1 <= conf <= 6
            hits.append(response == trial["truth"])
        acc[name] = float(np.mean(hits))
    assert acc["informative"] > 0.95
    assert acc["informative"] > acc["max only"] > acc["uninformative"] + 0.1
    assert abs(acc["none"] - 0.5) < 0.08 and abs(acc["uninformative"] - 0.5) < 0.12


def test_labelling_and_mistake_observers_read_what_the_images_agree_on() -> None:
    rng = np.random.default_rng(1)
    ev = FakeEvidence()
    lab = get_task("labelling")
    trial = {
        "panels": [{"role": "max", "images": ["a:0.1,0.9", "a:0.0,0.8"]}],
        "options": [["object", ""], ["background", ""], ["both", ""], ["neither", ""]],
    }
    answers = [lab.observe(trial, ev, rng, 0.05)[0] for _ in range(100)]
    assert answers.count("background") > 90
    trial["panels"][0]["images"] = ["a:0.9,0.0", "a:0.8,0.1"]
    assert [lab.observe(trial, ev, rng, 0.05)[0] for _ in range(50)].count("object") > 45
    trial["panels"][0]["images"] = ["a:0.05,0.05"]
    assert [lab.observe(trial, ev, rng, 0.02)[0] for _ in range(50)].count("neither") > 45
    trial["instructed"] = "both"
    assert lab.observe(trial, ev, rng, 0.5)[0] == "both"  # reads attention checks
    mis = get_task("mistake")
    t = {
        "panels": [
            {"role": "input", "images": ["a:0,0"]},
            {"role": "blamed", "images": ["a:0.1,0.9"]},
            {"role": "blamed", "images": ["a:0.2,0.7"]},
        ],
        "options": [["object", ""], ["background", ""]],
    }
    assert [mis.observe(t, ev, rng, 0.1)[0] for _ in range(50)].count("background") > 45
    baseline = {
        "panels": [{"role": "input", "images": ["a:0,0"]}],
        "options": [["object", ""], ["background", ""]],
    }
    share = [mis.observe(baseline, ev, rng, 0.1)[0] for _ in range(400)].count("background") / 400
    assert 0.4 < share < 0.6  # no explanation: a guess


def test_rating_observer_rates_agreeing_images_higher() -> None:
    rng = np.random.default_rng(2)
    ev = FakeEvidence()
    task = get_task("rating")
    opts = [[str(i), str(i)] for i in range(1, 8)]
    clear = {"panels": [{"role": "max", "images": ["a:0.9,0.1"]}], "options": opts}
    vague = {"panels": [{"role": "max", "images": ["a:0.2,0.1"]}], "options": opts}
    r_clear = np.mean([int(task.observe(clear, ev, rng, 0.1)[0]) for _ in range(200)])
    r_vague = np.mean([int(task.observe(vague, ev, rng, 0.1)[0]) for _ in range(200)])
    assert r_clear > r_vague + 2
