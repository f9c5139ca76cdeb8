"""Selectors: the registry and each selector on a tiny model (top, core-sensitivity, clip, concept, labels)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import TINY_SHAPES

from neuroinspect.cli import main
from neuroinspect.errors import UserError
from neuroinspect.methods.selectors import LABELS, SELECTORS, NeuronVisuals, SelectionContext
from neuroinspect.methods.selectors.base import Selector
from neuroinspect.methods.selectors.labels import read_labels, write_labels
from neuroinspect.methods.visualizers.base import Visualization


@pytest.fixture(scope="module")
def tiny(tiny_shapes_ckpt: Path) -> dict[str, Any]:
    from neuroinspect.datasets import get_dataset
    from neuroinspect.harness.checkpoint import load_checkpoint
    from neuroinspect.harness.evaluation import checkpoint_eval_transform

    ckpt = load_checkpoint(tiny_shapes_ckpt)
    surface = ckpt.surface.eval()
    tr = checkpoint_eval_transform(ckpt, "spurious-shapes")
    spec = get_dataset("spurious-shapes")
    val = spec.load(None, "val", tr, **TINY_SHAPES)
    train = spec.load(None, "train", tr, **TINY_SHAPES)
    x = torch.stack([val[i]["image"] for i in range(len(val))])
    with torch.no_grad():
        f = surface.features(x)
    y = torch.tensor([s.label for s in val.samples])
    means = torch.stack([f[y == k].mean(0) for k in range(2)])
    return {"surface": surface, "val": val, "train": train, "means": means}


def _ctx(tiny: dict[str, Any], visuals: Any = None, clip: Any = None, **kw: Any) -> SelectionContext:
    s = tiny["surface"]
    return SelectionContext(
        surface=s,
        decision=s.decision,
        class_idx=1,
        class_names=["triangle", "square"],
        prompts=["triangle", "square"],
        class_means=tiny["means"],
        dataset=tiny["val"],
        attributes=["water", "land"],
        visuals=visuals,
        clip=clip,
        benchmark_train=tiny["train"],
        show_progress=False,
        **kw,
    )


class FixedVisuals:
    """Visualizations given in advance (one per neuron), standing in for the shared NeuronVisuals."""

    def __init__(self, by_neuron: dict[int, Visualization]) -> None:
        self.by_neuron = by_neuron

    def get(
        self, neurons: Any, method: str = "", settings: Any = None, conditioned: bool = True
    ) -> list[Any]:
        return [self.by_neuron[int(n)] for n in neurons]


def _viz(n: int, images: torch.Tensor, masks: torch.Tensor | None = None) -> Visualization:
    return Visualization(
        method="fixed", neuron=n, class_idx=1, images=images, activations=[1.0] * len(images), masks=masks
    )


def test_registry_lists_every_selector(capsys: pytest.CaptureFixture[str]) -> None:
    assert {"top", "core-sensitivity", "clip", "concept", "labels"} <= set(SELECTORS.names())
    assert main(["methods", "list", "--kind", "selectors"]) == 0
    out = capsys.readouterr().out
    assert "selectors (" in out and "core-sensitivity" in out and "labels" in out


def test_top_keeps_the_first_k_unseen() -> None:
    sel = SELECTORS.get("top")().select([7, 3, 9, 1], 2, _bare_ctx())
    assert sel.neurons == [7, 3] and sel.labels == {} and sel.counts()["not_judged"] == 4


def test_every_visual_selector_runs_on_clip_illusion_images_of_a_tiny_model(tiny: dict[str, Any]) -> None:
    from neuroinspect.clip.loader import load_clip

    clip = load_clip("synthetic-clip:random")
    visuals = NeuronVisuals(
        tiny["surface"],
        1,
        dataset=tiny["val"],
        class_names=["triangle", "square"],
        clip=clip,
        show_progress=False,
    )
    settings = {"visualizer_settings": {"iters": 2, "images_per_pair": 2}}
    ctx = _ctx(tiny, visuals=visuals, clip=clip)
    cand = [5, 11, 40]
    out = {}
    for name, extra in (
        ("clip", {}),  # first: it renders the images itself (a sweep runs each selector alone)
        ("core-sensitivity", {}),
        ("concept", {"classifier_settings": {"method": "logreg", "max_train": 8, "image_size": 8}}),
    ):
        with torch.no_grad():  # the caller's grad mode does not matter: the images are optimized
            sel = SELECTORS.get(name)(**settings, **extra).select(cand, 2, ctx)
        assert set(sel.labels) == set(cand) and set(sel.labels.values()) <= set(LABELS)
        assert sel.neurons == [n for n in cand if sel.labels[n] == "spurious"][:2]
        out[name] = sel
    # the three selectors read the same images: optimized once
    assert len(visuals._cache) == len(cand)
    assert all(0.0 <= v <= 1.0 for v in out["clip"].scores.values())


class _ToyClip:
    """A deterministic CLIP double: an image embeds as its mean colour, a text as the colour it names."""

    COLORS = {"square": (1.0, 0.0, 0.0), "water": (0.0, 0.0, 1.0), "land": (0.0, 1.0, 0.0)}
    model = torch.nn.Identity()
    device = torch.device("cpu")

    def encode_image(self, images01: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(images01.mean(dim=(2, 3)), dim=1)

    def encode_text(self, texts: Any) -> torch.Tensor:
        rows = []
        for t in texts:
            name = next(k for k in self.COLORS if k in t)
            rows.append(torch.tensor(self.COLORS[name]))
        return torch.nn.functional.normalize(torch.stack(rows), dim=1)


def test_clip_selector_calls_background_images_spurious_and_object_images_core() -> None:
    def solid(rgb: tuple[float, float, float]) -> torch.Tensor:
        return torch.tensor(rgb).view(1, 3, 1, 1).expand(2, 3, 8, 8).clone()

    visuals = FixedVisuals(
        {
            1: _viz(1, solid((0.1, 0.1, 0.9))),
            2: _viz(2, solid((0.9, 0.1, 0.1))),
            3: _viz(3, solid((0.5, 0.5, 0.5))),
        }
    )
    sel = SELECTORS.get("clip")(logit_scale=50.0, margin=0.1).select(
        [2, 1, 3], 5, _bare_ctx(visuals=visuals, clip=_ToyClip(), attributes=["water", "land"])
    )
    assert sel.labels == {1: "spurious", 2: "core", 3: "unclear"}
    assert sel.neurons == [1] and sel.scores[1] > 0.9 > 0.1 > sel.scores[2]
    no_attributes = _bare_ctx(visuals=visuals, clip=_ToyClip())
    no_attributes.attributes = None
    with pytest.raises(UserError, match="attribute names"):
        SELECTORS.get("clip")().select([1], 1, no_attributes)


def test_core_sensitivity_of_an_unmasked_image_is_one(tiny: dict[str, Any]) -> None:
    g = torch.Generator().manual_seed(0)
    imgs = torch.rand(2, 3, 32, 32, generator=g)
    half = torch.zeros(2, 32, 32)
    half[:, :, :16] = 1
    visuals = FixedVisuals({4: _viz(4, imgs, torch.ones(2, 32, 32)), 6: _viz(6, imgs, half)})
    cs = SELECTORS.get("core-sensitivity")()
    scores = cs.scores([4, 6], _ctx(tiny, visuals))
    assert scores[4] == pytest.approx(1.0, abs=1e-5)  # X ⊙ M = X: every ratio s_k is 1
    labels, signed = cs.label([4, 6], _ctx(tiny, visuals))
    assert labels[4] == "core" and labels[6] == ("spurious" if scores[6] < 1 else "core")
    assert signed == {4: -scores[4], 6: -scores[6]}  # larger = more spurious-looking
    strict = SELECTORS.get("core-sensitivity")(threshold=1.5).label([4], _ctx(tiny, visuals))[0]
    assert strict[4] == "spurious"


def test_concept_selector_reads_what_the_images_agree_on(tiny: dict[str, Any]) -> None:
    from neuroinspect.datasets.groundtruth import counterfactual_grid

    val = tiny["val"]
    grid = (
        torch.from_numpy(counterfactual_grid(val, np.arange(4))).float() / 255.0
    )  # (4, 2 shapes, 2 bgs, H, W, 3)
    grid = grid.permute(0, 1, 2, 5, 3, 4)
    same_bg = grid[:, :, 0].reshape(-1, 3, 32, 32)  # every shape on water
    same_shape = grid[:, 1, :].reshape(-1, 3, 32, 32)  # squares on every background
    visuals = FixedVisuals({1: _viz(1, same_bg), 2: _viz(2, same_shape)})
    sel = SELECTORS.get("concept")(
        classifier_settings={"method": "logreg", "max_train": 40, "image_size": 32}
    )
    out = sel.select([2, 1], 2, _ctx(tiny, visuals))
    assert out.labels[1] == "spurious" and out.labels[2] == "core" and out.neurons == [1]


def test_labels_selector_reads_the_study_file(tmp_path: Path) -> None:
    path = write_labels(
        tmp_path / "labels.csv",
        [
            {"neuron": 3, "label": "spurious", "class_idx": None, "n_votes": 5, "agreement": 0.8},
            {"neuron": 3, "label": "core", "class_idx": 0, "n_votes": 5, "agreement": 0.9},  # another class
            {"neuron": 4, "label": "core", "class_idx": None, "n_votes": 4, "agreement": 0.75},
            {"neuron": 4, "label": "spurious", "class_idx": 1, "n_votes": 6, "agreement": 0.66},  # overrides
            {
                "neuron": 8,
                "label": "spurious",
                "class_idx": 1,
                "n_votes": 1,
                "agreement": 1.0,
            },  # too few votes
            {"neuron": 9, "label": "unclear", "class_idx": "", "n_votes": "", "agreement": ""},
        ],
    )
    assert path.read_text().splitlines()[0] == "neuron,label,class_idx,n_votes,agreement"
    sel = SELECTORS.get("labels")(file=str(path), min_votes=2).select([8, 4, 3, 9, 12], 5, _bare_ctx())
    assert sel.labels == {8: "unclear", 4: "spurious", 3: "spurious", 9: "unclear", 12: "unclear"}
    assert sel.neurons == [4, 3] and sel.info["source"] == str(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("neuron,label\n1,spurious\n", "header lacks class_idx, n_votes, agreement"),
        ("neuron,label,class_idx,n_votes,agreement\n1,weird,,,\n", ":2: label 'weird'"),
        ("neuron,label,class_idx,n_votes,agreement\nx,core,,,\n", ":2: neuron 'x'"),
        ("neuron,label,class_idx,n_votes,agreement\n1,core,,,1.5\n", "outside [0, 1]"),
    ],
)
def test_a_bad_labels_file_is_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "l.csv"
    path.write_text(text)
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
        read_labels(path)
    with pytest.raises(UserError):
        SELECTORS.get("labels")(file=str(path))


def test_labels_selector_asks_on_a_terminal_and_refuses_without_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = iter(["12 x", "99", "7, 5"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(answers))
    sel = SELECTORS.get("labels")().select([5, 7, 9], 3, _bare_ctx(interactive=True))
    assert sel.neurons == [5, 7] and sel.labels[9] == "unclear" and sel.info["source"] == "prompt"
    out = capsys.readouterr().out
    assert "neuron 9" in out and "not a candidate" in out
    with pytest.raises(UserError, match="labels file"):
        SELECTORS.get("labels")().select([5], 1, _bare_ctx(interactive=False))


def _bare_ctx(**kw: Any) -> SelectionContext:
    """A context for selectors that read no model (labels, top)."""
    return SelectionContext(
        surface=None,
        decision=torch.nn.Linear(4, 2),
        class_idx=1,
        class_names=["triangle", "square"],
        prompts=["triangle", "square"],
        **kw,
    )


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("-1,core,,,", ":2: neuron -1 is negative"),
        ("1,core,x,,", ":2: class_idx 'x' is not an integer"),
        ("1,core,,2.5,", ":2: n_votes '2.5' is not an integer"),
        ("1,core,,-1,", ":2: n_votes is negative"),
        ("1,core,,,high", ":2: agreement 'high' is not a number"),
        ("1,core,,,-0.1", "agreement -0.1 is outside"),
        ("1,weird,,,", ":2: label 'weird' is not one of spurious, core, unclear."),
    ],
)
def test_each_bad_field_of_a_labels_row_is_named(tmp_path: Path, row: str, message: str) -> None:
    path = tmp_path / "l.csv"
    path.write_text("neuron,label,class_idx,n_votes,agreement\n" + row + "\n")
    with pytest.raises(UserError, match=message.replace("[", r"\[")):
        read_labels(path)


def test_labels_rows_are_read_with_their_types_and_bounds(tmp_path: Path) -> None:
    from neuroinspect.methods.selectors.labels import NeuronLabel, labels_for_class

    path = tmp_path / "l.csv"
    # spaces around the header and the values, a label in capitals, the bounds 0 and 1 of agreement
    path.write_text(
        " neuron , label ,class_idx,n_votes,agreement\n0, Spurious ,2,0,0\n3,core,,7,1\n3,unclear,1,,\n"
    )
    rows = read_labels(path)
    assert rows == [
        NeuronLabel(0, "spurious", 2, 0, 0.0),
        NeuronLabel(3, "core", None, 7, 1.0),
        NeuronLabel(3, "unclear", 1, None, None),
    ]
    # the class's own row wins over the row for every class, whatever their order
    assert labels_for_class(rows, 1)[3].label == "unclear"
    assert labels_for_class(list(reversed(rows)), 1)[3].label == "unclear"
    assert labels_for_class(rows, 0) == {3: rows[1]}  # neuron 0's row is for class 2 only
    # two rows for every class: the first one counts
    first = [NeuronLabel(5, "core", None, 1, None), NeuronLabel(5, "spurious", None, 1, None)]
    assert labels_for_class(first, 0)[5].label == "core"
    with pytest.raises(UserError, match="does not exist"):
        read_labels(tmp_path / "missing.csv")
    (tmp_path / "short.csv").write_text("neuron,label,n_votes\n")
    with pytest.raises(
        UserError,
        match="the header lacks class_idx, agreement; a labels file has the columns "
        "neuron,label,class_idx,n_votes,agreement.",
    ):
        read_labels(tmp_path / "short.csv")


def test_labels_selector_weak_rows_scores_and_k(tmp_path: Path) -> None:
    path = write_labels(
        tmp_path / "labels.csv",
        [
            {"neuron": 1, "label": "spurious", "class_idx": None, "n_votes": 3, "agreement": 0.6},
            {"neuron": 2, "label": "spurious", "class_idx": None, "n_votes": 3, "agreement": 0.5},  # weak
            {"neuron": 3, "label": "core", "class_idx": None, "n_votes": 2, "agreement": 0.9},
            {"neuron": 4, "label": "spurious", "class_idx": None, "n_votes": 2, "agreement": None},
            {"neuron": 5, "label": "spurious", "class_idx": None, "n_votes": None, "agreement": 0.7},
        ],
    )
    sel = SELECTORS.get("labels")(file=str(path), min_votes=2, min_agreement=0.6)
    out = sel.select([5, 2, 3, 1, 4], 2, _bare_ctx())
    assert out.labels == {5: "spurious", 2: "unclear", 3: "core", 1: "spurious", 4: "spurious"}
    assert out.neurons == [5, 1]  # the spurious ones in the finder's order, at most k
    # the score is the agreement, signed: for the spurious label +, against it −
    assert out.scores == {5: 0.7, 2: 0.5, 3: -0.9, 1: 0.6}
    assert out.settings == {"file": str(path), "min_votes": 2, "min_agreement": 0.6}
    assert out.selector == "labels" and 0.0 < out.wall_seconds < 3600.0  # an elapsed time
    assert out.counts() == {"spurious": 3, "core": 1, "unclear": 1, "not_judged": 0}
    assert SELECTORS.get("labels")(file="").file is None
    with pytest.raises(UserError, match="k >= 1"):
        sel.select([1], 0, _bare_ctx())


def test_top_selector_needs_k_and_keeps_no_more_than_it_has() -> None:
    top = SELECTORS.get("top")()
    assert top.select([4, 2], 5, _bare_ctx()).neurons == [4, 2]
    assert top.select([4, 2, 7], 1, _bare_ctx()).neurons == [4]
    assert top.select([4, 2], 2, _bare_ctx()).candidates == [4, 2]
    with pytest.raises(UserError, match="k >= 1 neurons to choose, got 0"):
        top.select([4, 2], 0, _bare_ctx())


def test_selector_settings_are_its_plain_hyperparameters() -> None:
    cs = SELECTORS.get("core-sensitivity")(threshold=0.8, top_classes=3, reduce="mean")
    assert cs.settings() == {
        "threshold": 0.8,
        "top_classes": 3,
        "reduce": "mean",
        "visualizer": "clip_illusion",
        "visualizer_settings": {"iters": 96, "images_per_pair": 2},
        "conditioned": True,
    }
    assert SELECTORS.get("core-sensitivity")(visualizer_settings={"iters": 4}).visualizer_settings == {
        "iters": 4,
        "images_per_pair": 2,
    }
    defaults = SELECTORS.get("core-sensitivity")()
    assert (defaults.threshold, defaults.top_classes, defaults.reduce) == (1.0, 20, "max")
    for kw, message in (
        ({"reduce": "sum"}, "^core-sensitivity: reduce must be 'max' or 'mean', got 'sum'.$"),
        ({"top_classes": 0}, "^core-sensitivity: top_classes must be >= 1.$"),
    ):
        with pytest.raises(UserError, match=message):
            SELECTORS.get("core-sensitivity")(**kw)
    assert SELECTORS.get("core-sensitivity")(top_classes=1).top_classes == 1
    clip = SELECTORS.get("clip")(margin=0.0, logit_scale=20, attributes=("sea",))
    assert (clip.margin, clip.logit_scale, clip.attributes) == (0.0, 20.0, ["sea"])
    for bad in (-0.1, 0.5):
        with pytest.raises(UserError, match=r"margin must be in \[0, 0.5\)"):
            SELECTORS.get("clip")(margin=bad)
    assert SELECTORS.get("clip")(margin=0.49).margin == 0.49


class _BadLabels(Selector):
    name = "bad"

    def label(self, candidates: Any, ctx: Any) -> tuple[dict[int, str], dict[int, float]]:
        return {int(n): ("spurious" if n % 2 else "maybe") for n in candidates}, {}


def test_settings_leave_out_private_and_non_plain_attributes() -> None:
    sel = _BadLabels()
    sel.k = 3  # type: ignore[attr-defined]
    sel.names = ["a"]  # type: ignore[attr-defined]
    sel._cache = {1: 2}  # type: ignore[attr-defined]
    sel.model = torch.nn.Linear(1, 1)  # type: ignore[attr-defined]
    sel.scale = torch.tensor(2.0)  # type: ignore[attr-defined]
    assert sel.settings() == {"k": 3, "names": ["a"]}


def test_a_selector_returning_an_unknown_label_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"selector 'bad' returned unknown labels \['maybe'\]"):
        _BadLabels().select([1, 2], 1, _bare_ctx())


class _HalvesSurface:
    """A model whose two features are the mean of the left and of the right half of the red channel."""

    model = torch.nn.Linear(1, 1)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x[:, 0, :, :2].mean(dim=(1, 2)), x[:, 0, :, 2:].mean(dim=(1, 2))], dim=1)


def _halves(*pairs: tuple[float, float]) -> torch.Tensor:
    """One 3×4×4 image per (left, right) value pair."""
    out = torch.zeros(len(pairs), 3, 4, 4)
    for i, (a, b) in enumerate(pairs):
        out[i, :, :, :2], out[i, :, :, 2:] = a, b
    return out


def _halves_ctx(visuals: Any) -> SelectionContext:
    # prototypes (normalized by the selector): class 0 = left only, class 1 = right only, class 2 = both
    means = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    return SelectionContext(
        surface=_HalvesSurface(),
        decision=torch.nn.Linear(2, 3),
        class_idx=2,
        class_names=["l", "r", "both"],
        prompts=["l", "r", "both"],
        class_means=means,
        visuals=visuals,
    )


def test_core_sensitivity_on_a_model_whose_features_are_known() -> None:
    # the mask keeps the left half: g' = [1, 0], so ρ'_k = μ_k[0] = (1, 0, 1/√2)
    left = torch.zeros(2, 4, 4)
    left[:, :, :2] = 1
    r5, r10 = 5**0.5, 10**0.5
    # image (1, 2): ρ = (1/√5, 2/√5, 3/√10); s = ρ'/ρ = (√5, 0, √5/3)
    # image (3, 1): ρ = (3/√10, 1/√10, 4/√20); s = (√10/3, 0, √10/4)
    both = Visualization(
        method="fixed",
        neuron=1,
        class_idx=2,
        images=_halves((1, 2), (3, 1)),
        activations=[1.0, 5.0],
        masks=left,
    )
    ctx = _halves_ctx(FixedVisuals({1: both, 2: both}))
    # "max" reads image 2 (activation 5): the 2 classes most like it are 0 and 2
    cs = SELECTORS.get("core-sensitivity")(top_classes=2).scores([1], ctx)[1]
    assert cs == pytest.approx((r10 / 4) / ((r10 / 3 + r10 / 4) / 2), rel=1e-5)
    # every class (top_classes above K is K)
    cs3 = SELECTORS.get("core-sensitivity")(top_classes=20).scores([1], ctx)[1]
    assert cs3 == pytest.approx((r10 / 4) / ((r10 / 3 + r10 / 4) / 3), rel=1e-5)
    # "mean" averages ρ and s over the two images: ρ̄ ranks classes 2 and 0 first
    s0, s2 = (r5 + r10 / 3) / 2, (r5 / 3 + r10 / 4) / 2
    csm = SELECTORS.get("core-sensitivity")(top_classes=2, reduce="mean").scores([1], ctx)[1]
    assert csm == pytest.approx(s2 / ((s0 + s2) / 2), rel=1e-5)
    # image 1 alone at top_classes=2: classes 2 and 1 (s = 0), so s_c over their mean is 2
    first = Visualization(
        method="fixed",
        neuron=3,
        class_idx=2,
        images=_halves((1, 2), (3, 1)),
        activations=[5.0, 1.0],
        masks=left,
    )
    ctx1 = _halves_ctx(FixedVisuals({3: first}))
    assert SELECTORS.get("core-sensitivity")(top_classes=2).scores([3], ctx1)[3] == pytest.approx(
        2.0, rel=1e-5
    )
    labels, signed = SELECTORS.get("core-sensitivity")(top_classes=2, threshold=2.5).label([3], ctx1)
    assert labels == {3: "spurious"} and signed[3] == pytest.approx(-2.0, rel=1e-5)
    assert SELECTORS.get("core-sensitivity")(top_classes=2, threshold=2.0).label([3], ctx1)[0] == {3: "core"}
    # the most similar class has s = 0: no denominator, the neuron is core
    flat = Visualization(
        method="fixed", neuron=4, class_idx=2, images=_halves((1, 10)), activations=[1.0], masks=left[:1]
    )
    ctx4 = _halves_ctx(FixedVisuals({4: flat}))
    assert SELECTORS.get("core-sensitivity")(top_classes=1).scores([4], ctx4)[4] == float("inf")
    # the most similar class is class c itself with s = 0: 0 over 0 is reported as inf, not NaN
    ctx_r = _halves_ctx(FixedVisuals({4: flat}))
    ctx_r.class_idx = 1
    assert SELECTORS.get("core-sensitivity")(top_classes=1).scores([4], ctx_r)[4] == float("inf")
    # a prototype orthogonal to the image (ρ = 0) but not to its masked part: s is ρ' / 1e-8, huge
    ortho = _halves_ctx(
        FixedVisuals(
            {
                1: Visualization(
                    method="fixed",
                    neuron=1,
                    class_idx=2,
                    images=_halves((1, 1)),
                    activations=[1.0],
                    masks=left[:1],
                )
            }
        )
    )
    ortho.class_means = torch.tensor([[1.0, -1.0], [0.0, 1.0], [1.0, 1.0]])
    assert SELECTORS.get("core-sensitivity")(top_classes=3).scores([1], ortho)[1] < 1e-3
    no_masks = Visualization(method="fixed", neuron=5, class_idx=2, images=_halves((1, 2)), activations=[1.0])
    with pytest.raises(UserError, match="gives no activation masks"):
        SELECTORS.get("core-sensitivity")().scores([5], _halves_ctx(FixedVisuals({5: no_masks})))
    for missing in ("visuals", "class_means"):
        bare = _halves_ctx(FixedVisuals({1: both}))
        setattr(bare, missing, None)
        with pytest.raises(
            UserError,
            match=r"^core-sensitivity needs visualizations and class prototypes \(run it through the experiment\)\.$",
        ):
            SELECTORS.get("core-sensitivity")().scores([1], bare)
    # the selector asks for its own visualizer, settings and conditioning
    calls: list[tuple] = []

    class Recording(FixedVisuals):
        def get(
            self, neurons: Any, method: str = "", settings: Any = None, conditioned: bool = True
        ) -> list[Any]:
            calls.append((list(neurons), method, settings, conditioned))
            return super().get(neurons)

    SELECTORS.get("core-sensitivity")(
        visualizer="exemplars", visualizer_settings={"iters": 3}, conditioned=False
    ).scores([1], _halves_ctx(Recording({1: both})))
    assert calls == [([1], "exemplars", {"iters": 3, "images_per_pair": 2}, False)]


class _ScaledToyClip(_ToyClip):
    """The toy CLIP with a learned logit scale of 10 (stored as its log, as open_clip does)."""

    def __init__(self) -> None:
        self.model = torch.nn.Module()
        self.model.logit_scale = torch.nn.Parameter(torch.tensor(float(np.log(10.0))))


def test_clip_selector_reads_the_learned_scale_and_its_margin() -> None:
    def solid(rgb: tuple[float, float, float]) -> torch.Tensor:
        return torch.tensor(rgb).view(1, 3, 1, 1).expand(2, 3, 4, 4).clone()

    # unit colours: s_class = red part, s_attr = blue part; p_attr = sigmoid(scale · (s_attr − s_class))
    visuals = FixedVisuals({1: _viz(1, solid((0.6, 0.0, 0.8))), 2: _viz(2, solid((0.8, 0.0, 0.6)))})
    ctx = _bare_ctx(visuals=visuals, clip=_ScaledToyClip(), attributes=["water", "land"])
    hi, lo = 1 / (1 + np.exp(-2.0)), 1 / (1 + np.exp(2.0))  # scale 10 × ±0.2
    sel = SELECTORS.get("clip")(margin=0.3).select([1, 2], 2, ctx)
    assert sel.scores == {1: pytest.approx(hi, rel=1e-5), 2: pytest.approx(lo, rel=1e-5)}
    assert sel.labels == {1: "spurious", 2: "core"}
    wide = SELECTORS.get("clip")(margin=0.4).select([1, 2], 2, ctx)  # 0.88 < 0.9 and 0.12 > 0.1
    assert wide.labels == {1: "unclear", 2: "unclear"} and wide.neurons == []
    fixed = SELECTORS.get("clip")(logit_scale=5.0).select([1], 1, ctx)  # the setting wins
    assert fixed.scores[1] == pytest.approx(1 / (1 + np.exp(-1.0)), rel=1e-5)
    own = SELECTORS.get("clip")(attributes=["land"]).select([1], 1, ctx)  # green: s_attr = 0
    assert own.scores[1] == pytest.approx(1 / (1 + np.exp(6.0)), rel=1e-5)
    with pytest.raises(UserError, match="needs a CLIP model"):
        SELECTORS.get("clip")().select([1], 1, _bare_ctx(visuals=visuals, attributes=["water"]))


def test_labels_prompt_shows_the_candidates_and_reads_the_answer(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts: list[str] = []

    def answer_with(*answers: str) -> None:
        it = iter(answers)

        def fake_input(prompt: str = "") -> str:
            prompts.append(prompt)
            return next(it)

        monkeypatch.setattr("builtins.input", fake_input)

    answer_with("oops", "8", "  NONE ")
    ctx = _bare_ctx(interactive=True, finder_scores={5: 0.123456, 9: 2.0})
    sel = SELECTORS.get("labels")().select([5, 7, 9], 3, ctx)
    assert sel.neurons == [] and sel.labels == {5: "unclear", 7: "unclear", 9: "unclear"}
    out = capsys.readouterr().out.splitlines()
    assert "Candidate neurons for class 1 (square), in the finder's order:" in out
    assert "    1. neuron 5  (score 0.1235)" in out and "    2. neuron 7" in out
    assert "    3. neuron 9  (score 2)" in out
    assert "  please type neuron ids, e.g. 12 40 7" in out
    assert "  8 is not a candidate; choose among 5, 7, 9" in out
    assert prompts[0] == "Neurons that look spurious (ids separated by spaces or commas; 'none'): "
    answer_with("")  # an empty answer: none
    assert SELECTORS.get("labels")().select([5], 1, _bare_ctx(interactive=True)).neurons == []
    # a class without a name is shown by its index
    answer_with("4")
    nameless = _bare_ctx(interactive=True)
    nameless.class_idx, nameless.class_names = 2, ["a", "b"]
    assert SELECTORS.get("labels")().select([4], 1, nameless).neurons == [4]
    assert "Candidate neurons for class 2 (2), in the finder's order:" in capsys.readouterr().out
