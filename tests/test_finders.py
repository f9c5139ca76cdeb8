"""Finders: the counterfactual (cap, batching, counts, voting), imp, γ, baselines, and `neuroinspect debug`."""

from __future__ import annotations

import json
import math
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from neuroinspect.cli import main
from neuroinspect.datasets.base import DATASETS, DatasetSpec, InMemoryImageDataset, Sample
from neuroinspect.errors import UserError
from neuroinspect.harness.checkpoint import save_checkpoint
from neuroinspect.harness.features import FeatureSet
from neuroinspect.harness.models import create_model
from neuroinspect.methods.finders import FINDERS, FinderResult, gamma_heuristic, importance, load_all
from neuroinspect.methods.finders.counterfactual import (
    aggregate_vote,
    build_list,
    counterfactual_shifts,
    vote_topk,
)

load_all()


def _featureset(
    feats: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor, split: str = "val"
) -> FeatureSet:
    n = feats.shape[0]
    return FeatureSet(
        features=feats.float(),
        logits=logits.float(),
        labels=labels.long(),
        groups=None,
        indices=torch.arange(n),
        paths=[f"s/{i:03d}" for i in range(n)],
        meta={"split": split},
    )


def _linear(W: list[list[float]] | torch.Tensor, b: list[float] | torch.Tensor) -> nn.Linear:
    W = torch.as_tensor(W, dtype=torch.float32)
    lin = nn.Linear(W.shape[1], W.shape[0])
    with torch.no_grad():
        lin.weight.copy_(W)
        lin.bias.copy_(torch.as_tensor(b, dtype=torch.float32))
    return lin


def _random_problem(
    seed: int = 0, n: int = 24, d: int = 32, k: int = 4, c: int = 1, scale: float = 0.5
) -> tuple[nn.Linear, FeatureSet]:
    g = torch.Generator().manual_seed(seed)
    dec = nn.Linear(d, k)
    with torch.no_grad():
        dec.weight.copy_(torch.randn(k, d, generator=g) * scale)
        dec.bias.copy_(torch.randn(k, generator=g))
    feats = torch.relu(torch.randn(n, d, generator=g))
    labels = torch.full((n,), c)
    labels[: n // 4] = (c + 1) % k
    with torch.no_grad():
        logits = dec(feats)
    return dec, _featureset(feats, labels, logits)


# -- the counterfactual optimisation ---------------------------------------------------------------
def test_counterfactual_that_can_never_flip_stops_at_the_cap_and_is_reported() -> None:
    # Class 2's logit is the mean of classes 0 and 1 minus 1, so it is never the argmax, whatever w is;
    # the gradient is not zero, so without a cap the loop would run for ever.
    W = torch.tensor([[1.0, -1.0, 0.5], [-1.0, 1.0, 0.25], [0.0, 0.0, 0.375]])
    dec = _linear(W, [0.0, 0.0, -1.0])
    feats = torch.tensor([[1.0, 0.0, 2.0], [0.0, 1.0, 1.0], [2.0, 2.0, 0.0]])
    fs = _featureset(feats, torch.tensor([2, 2, 0]), dec(feats).detach())
    result = FINDERS.get("counterfactual")(max_steps=40).find(dec, fs, 2, show_progress=False)
    assert result.counts == {
        "mistakes": 2,
        "corrected": 0,
        "never_flipped": 2,
        "already_correct": 0,
        "denominator": 0,
    }
    assert result.never_flipped == ["s/000", "s/001"]
    assert [s["status"] for s in result.samples] == ["never_flipped", "never_flipped"]
    assert [s["steps"] for s in result.samples] == [40, 40]
    assert result.shifts is not None and float(result.shifts.abs().sum()) > 0  # it did move
    assert result.insufficient == [] and result.excessive == []
    assert "Never flipped" in result.format_table()


def _reference_single(dec: nn.Linear, f: torch.Tensor, y: int, max_steps: int) -> tuple[torch.Tensor, int]:
    """The reference loop (spec §3) on one feature row with torch.optim.SGD."""
    D = f.numel()
    w = torch.zeros(1, D, requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.01, momentum=0.9)
    steps = 0
    while steps < max_steps:
        z = dec(f.view(1, -1) + w)
        if int(z.argmax(1)) == y:
            break
        loss = (
            F.cross_entropy(z, torch.tensor([y]))
            + 0.1 * torch.norm(w, p=1) / D
            + 0.01 * torch.norm(w, p=2) / D
        )
        loss.backward()
        opt.step()
        w.grad.zero_()
        steps += 1
    return w.detach()[0], steps


def test_batched_counterfactual_equals_running_each_sample_alone() -> None:
    dec, fs = _random_problem(seed=3, n=12, scale=0.15)
    for p in dec.parameters():
        p.requires_grad_(False)
    feats = fs.features
    threads = torch.get_num_threads()
    batched = counterfactual_shifts(dec, feats, 1, max_steps=300)
    assert torch.get_num_threads() == threads  # the one-thread optimisation restores the setting
    assert bool(batched.flipped.all()) and int((batched.steps > 0).sum()) >= 8
    assert int(batched.steps.max()) >= 20
    for i in range(feats.shape[0]):
        alone = counterfactual_shifts(dec, feats[i : i + 1], 1, max_steps=300)
        ref_w, ref_steps = _reference_single(dec, feats[i], 1, 300)
        # one sample alone: the very same iterates as torch.optim.SGD in the reference's loop
        assert int(alone.steps[0]) == ref_steps
        assert torch.equal(alone.shifts[0], ref_w)
        # in the batch: same number of steps, same shift (up to the batched matmul's float rounding)
        assert int(batched.steps[i]) == ref_steps
        torch.testing.assert_close(batched.shifts[i], ref_w, rtol=1e-5, atol=1e-6)


def test_counterfactual_chunks_give_the_batch_result() -> None:
    dec, fs = _random_problem(seed=5)
    whole = FINDERS.get("counterfactual")().find(dec, fs, 1, show_progress=False)
    chunked = FINDERS.get("counterfactual")(batch_size=3).find(dec, fs, 1, show_progress=False)
    assert [s["steps"] for s in whole.samples] == [s["steps"] for s in chunked.samples]
    torch.testing.assert_close(whole.shifts, chunked.shifts, rtol=1e-5, atol=1e-6)
    assert whole.insufficient == chunked.insufficient and whole.excessive == chunked.excessive


def test_already_correct_samples_are_counted_not_dropped() -> None:
    dec, fs = _random_problem(seed=1)
    with torch.no_grad():
        preds = dec(fs.features).argmax(1)
    wrong = torch.nonzero((fs.labels == 1) & (preds != 1)).flatten()
    right = torch.nonzero((fs.labels == 1) & (preds == 1)).flatten()
    assert len(wrong) >= 3 and len(right) >= 1
    # the stored logits (e.g. from a bf16 extraction) call sample `right[0]` a mistake; the decision layer does not
    logits = fs.logits.clone()
    logits[right[0]] = torch.tensor([0.0, -5.0, 5.0, 0.0])
    fs.logits = logits
    result = FINDERS.get("counterfactual")().find(dec, fs, 1, show_progress=False)
    c = result.counts
    assert c["mistakes"] == len(wrong) + 1
    assert c["already_correct"] == 1
    assert c["corrected"] + c["never_flipped"] + c["already_correct"] == c["mistakes"]
    status = {s["index"]: s["status"] for s in result.samples}
    assert status[int(right[0])] == "already_correct"
    assert all(status[int(i)] == "corrected" for i in wrong)
    assert c["denominator"] == c["corrected"]
    assert "denominator_value" not in result.settings  # outcomes never enter the settings
    # every baseline counts it too
    assert FINDERS.get("contribution")().find(dec, fs, 1).counts["already_correct"] == 1


# -- voting ------------------------------------------------------------------------------------------
A_HAND = torch.tensor(
    [
        [3.0, 2.0, 1.0, 0.5, -1.0, -2.0, -3.0],
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # all zero: skipped by both
        [2.0, -0.5, -0.25, -0.75, -0.125, -0.375, 0.0],  # sums to 0: the reference skips it
        [
            -1.0,
            -2.0,
            -3.0,
            -4.0,
            -5.0,
            -6.0,
            -7.0,
        ],  # no positive entry: only the reference's positive list votes
        [
            0.5,
            4.0,
            0.0,
            1.0,
            0.25,
            -1.0,
            0.125,
        ],  # negative list: w = 0 counts in the reference, w > 0 in neither
    ]
)


def _lists(A: torch.Tensor, ref: bool, cut: float = 3.0, top: int = 30) -> tuple[dict, dict, list, list]:
    pos, neg = vote_topk(A, negative=False, k=3, ref=ref), vote_topk(A, negative=True, k=3, ref=ref)
    denom = pos.rows if ref else pos.voting_rows
    pr, nr = aggregate_vote(pos, denom, cut, ref=ref), aggregate_vote(neg, denom, cut, ref=ref)
    imp = torch.arange(7, dtype=torch.float64)
    return pr, nr, build_list(pr, nr, imp, top, ref), build_list(nr, pr, imp, top, ref)


def test_reference_voting_on_a_hand_made_matrix() -> None:
    pr, nr, ins, exc = _lists(A_HAND, ref=True)
    assert pr == {0: 0.6, 1: 0.6, 2: 0.4, 3: 0.2}  # denominator 5 rows, skipped rows included
    assert nr == {5: 0.6, 6: 0.4, 4: 0.4, 2: 0.2}  # n6 before n4: the reference's stable sort
    assert [r["neuron"] for r in ins] == [0, 1, 3]  # n2 is in the other list
    assert [r["neuron"] for r in exc] == [5, 6, 4]
    assert ins[0] == {"neuron": 0, "prec5": 0.6, "imp": 0.0}
    # the reference's rank limit counts the skipped n2
    _, _, ins3, _ = _lists(A_HAND, ref=True, top=3)
    assert [r["neuron"] for r in ins3] == [0, 1]


def test_default_voting_on_a_hand_made_matrix() -> None:
    pr, nr, ins, exc = _lists(A_HAND, ref=False)
    assert pr == {0: 0.75, 1: 0.5, 2: 0.25, 3: 0.25}  # 4 voting rows; w > 0 required
    assert nr == {5: 1.0, 4: 0.5, 6: 0.5, 1: 0.25, 3: 0.25}  # w < 0 required
    assert [r["neuron"] for r in ins] == [0, 2]
    assert [r["neuron"] for r in exc] == [5, 4, 6]
    _, _, ins3, _ = _lists(A_HAND, ref=False, top=1)
    assert [r["neuron"] for r in ins3] == [0]
    pr30, nr30, ins30, exc30 = _lists(A_HAND, ref=False, cut=30.0)
    assert list(pr30) == [0, 1] and list(nr30) == [5, 4, 6]
    assert [r["neuron"] for r in ins30] == [0, 1]


def test_finder_ref_switch_changes_voting_and_imp_reference() -> None:
    dec, fs = _random_problem(seed=2)
    default = FINDERS.get("counterfactual")().find(dec, fs, 1, show_progress=False)
    ref = FINDERS.get("counterfactual")(ref=True).find(dec, fs, 1, show_progress=False)
    assert default.imp_reference == "class_mean" and ref.imp_reference == "all_mean"
    assert not torch.allclose(default.imp, ref.imp)
    corrected = default.counts["corrected"]
    for row in default.insufficient + default.excessive:
        assert 0 < row["prec5"] <= 1 and 100 * row["prec5"] > 3.0
        assert math.isclose(row["prec5"] * corrected, round(row["prec5"] * corrected))
    for row in default.insufficient:  # positive list: every vote came from a positive shift
        n = row["neuron"]
        assert all(
            float(default.shifts[i, n]) > 0
            for i, s in enumerate(default.samples)
            if n in s["top_insufficient"]
        )
    json.dumps(default.to_json())


# -- imp and γ ----------------------------------------------------------------------------------------
def test_imp_on_a_hand_checked_two_class_example() -> None:
    dec = _linear([[1.0, 0.0], [0.0, 1.0]], [0.0, 0.0])
    imp = importance(dec, torch.tensor([2.0, 1.0]), 0)
    # p = σ(1); without n0: z = (0, 1) → imp = (1+e)/(1+e^-1) = e; without n1: z = (2, 0) → (1+e^-2)/(1+e^-1)
    assert imp[0].item() == pytest.approx(math.e, rel=1e-12)
    assert imp[1].item() == pytest.approx((1 + math.exp(-2)) / (1 + math.exp(-1)), rel=1e-12)
    # class-c mean by default, the all-class mean with ref=True (bug 18)
    feats = torch.tensor([[2.0, 1.0], [2.0, 1.0], [0.0, 3.0], [0.0, 5.0]])
    labels = torch.tensor([0, 0, 1, 1])
    logits = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])  # sample 1 is a class-0 mistake
    fs = _featureset(feats, labels, logits)
    r = FINDERS.get("contribution")().find(dec, fs, 0)
    torch.testing.assert_close(r.imp, imp)
    r_ref = FINDERS.get("contribution")(ref=True).find(dec, fs, 0)
    torch.testing.assert_close(r_ref.imp, importance(dec, torch.tensor([1.0, 2.5]), 0))


def test_gamma_heuristic_reproduces_the_food101_value() -> None:
    imp = torch.ones(2048, dtype=torch.float64)
    imp[1039], imp[1172], imp[1549] = 1.1005, 1.0629, 1.0650
    gamma = gamma_heuristic(imp, [1039, 1172, 1549])
    assert round(gamma, 3) == 1.021
    assert gamma == pytest.approx(1 + 0.0629 / 3)
    with pytest.raises(UserError, match="out of range"):
        gamma_heuristic(imp, [4096])


# -- baselines -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["counterfactual", "contribution", "gradient", "random", "margin-deficit"])
def test_every_finder_returns_the_same_shapes(name: str) -> None:
    dec, fs = _random_problem(seed=4)
    r = FINDERS.get(name)(top=5).find(dec, fs, 1, seed=0, show_progress=False)
    assert isinstance(r, FinderResult) and r.method == name
    D = fs.num_features
    for vec in (r.scores, r.insufficient_scores, r.excessive_scores, r.imp):
        assert vec.shape == (D,)
    assert sorted(r.ranking()) == list(range(D))
    assert len(r.insufficient) <= 5 and len(r.excessive) <= 5
    assert not {x["neuron"] for x in r.insufficient} & {x["neuron"] for x in r.excessive}
    for row in r.insufficient + r.excessive:
        assert set(row) == {"neuron", "prec5", "imp"}
    assert r.counts["mistakes"] == int(((fs.labels == 1) & (fs.logits.argmax(1) != 1)).sum()) > 5
    json.dumps(r.to_json())


def test_random_finder_is_seeded() -> None:
    dec, fs = _random_problem(seed=4)
    f = FINDERS.get("random")()
    a, b, c = f.find(dec, fs, 1, seed=7), f.find(dec, fs, 1, seed=7), f.find(dec, fs, 1, seed=8)
    assert a.ranking() == b.ranking() and a.insufficient == b.insufficient
    assert a.ranking() != c.ranking()


def test_contribution_finder_on_a_hand_made_example() -> None:
    dec = _linear([[1.0, -1.0, 1.0, 0.5], [0.0, 0.0, 0.0, 0.0]], [0.0, 0.0])
    correct = torch.ones(2, 4)
    mistakes = torch.tensor([[0.5, 2.0, 1.0, 3.0], [0.5, 2.0, 1.0, 3.0]])
    feats = torch.cat([correct, mistakes])
    logits = torch.tensor([[1.0, 0.0]] * 2 + [[0.0, 1.0]] * 2)
    r = FINDERS.get("contribution")().find(dec, _featureset(feats, torch.zeros(4), logits), 0)
    # Δ = W[0]·(mean mistakes − mean correct) = (−0.5, −1, 0, +1)
    torch.testing.assert_close(r.scores, torch.tensor([0.5, 1.0, 0.0, 0.0], dtype=torch.float64))
    assert r.insufficient == [{"neuron": 0, "prec5": 0.5, "imp": pytest.approx(r.imp[0].item())}]
    assert [x["neuron"] for x in r.excessive] == [1]
    assert r.ranking()[:2] == [1, 0]


def test_gradient_finder_matches_autograd() -> None:
    dec, fs = _random_problem(seed=6)
    r = FINDERS.get("gradient")().find(dec, fs, 1)
    mask = (fs.labels == 1) & (fs.logits.argmax(1) != 1)
    f = fs.features[mask].double().clone().requires_grad_(True)
    logp = torch.log_softmax(F.linear(f, dec.weight.double(), dec.bias.double()), dim=1)[:, 1].sum()
    (g,) = torch.autograd.grad(logp, f)
    attribution = (g * f).mean(0).detach()
    torch.testing.assert_close(r.scores, (-attribution).clamp_min(0))
    # with a zero baseline and non-negative features every responsible neuron is excessive
    assert r.insufficient == [] and len(r.excessive) > 0
    both = FINDERS.get("gradient")(baseline="class_mean").find(dec, fs, 1)
    assert len(both.insufficient) > 0


# -- user errors -----------------------------------------------------------------------------------------
def test_no_mistakes_wrong_class_and_wrong_width_are_user_errors() -> None:
    dec, fs = _random_problem(seed=0)
    with torch.no_grad():
        fs.logits = F.one_hot(fs.labels, 4).float()  # everything correct
    with pytest.raises(
        UserError, match="class 1 has no mistakes on split 'val'.*choose another class or split"
    ):
        FINDERS.get("counterfactual")().find(dec, fs, 1)
    with pytest.raises(UserError, match="out of range"):
        FINDERS.get("counterfactual")().find(dec, fs, 4)
    with pytest.raises(UserError, match="width 32 but the decision layer has 16"):
        FINDERS.get("gradient")().find(nn.Linear(16, 4), fs, 1)


# -- `neuroinspect debug` end to end -----------------------------------------------------------------------
TINY = "test-finders-tiny"


def _tiny_images(n: int, size: int = 32) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, size=(n, size, size, 3), dtype=np.uint8)


if TINY not in DATASETS:

    @DATASETS.register(TINY)
    class _TinySpec(DatasetSpec):
        """Tiny in-memory dataset for the finder tests."""

        name = TINY
        kind = "benchmark"
        splits: ClassVar[tuple[str, ...]] = ("train", "val")

        @classmethod
        def load(cls, root: Any, split: str, transform: Any = None, **params: Any) -> InMemoryImageDataset:
            n = int(params.get("n", 18))
            samples = [Sample(path=f"{TINY}/{split}/{i:03d}", label=i % 3) for i in range(n)]
            return InMemoryImageDataset(
                _tiny_images(n),
                name=TINY,
                split=split,
                samples=samples,
                classes=["a", "b", "c"],
                transform=transform,
                params=params,
            )


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> str:
    torch.manual_seed(0)
    surface = create_model("resnet18", num_classes=3, image_size=32)
    with torch.no_grad():  # class 0 always wins → class 0 has no mistakes, classes 1 and 2 have only mistakes
        head = surface.decision
        head.weight.normal_(0, 1.0)
        head.bias.copy_(torch.tensor([100.0, 0.0, 0.0]))
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, surface, ["a", "b", "c"], TINY, dataset_params={"n": 12})
    return str(path)


def test_debug_cli_end_to_end(tiny_ckpt: str, tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "dbg"
    argv = [
        "debug",
        "--dataset",
        TINY,
        "--ckpt",
        tiny_ckpt,
        "--class-idx",
        "1",
        "--max-steps",
        "20000",
        "--top",
        "5",
    ]
    assert main([*argv, "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert (
        "Insufficient properties" in text and "Excessive properties" in text and "Counts: mistakes 4" in text
    )
    report = json.loads((out / "debug.json").read_text())
    assert report["class_idx"] == 1 and report["class_name"] == "b" and report["split"] == "val"
    assert (
        report["counts"]["mistakes"] == 4
    )  # n=12 from the checkpoint's dataset params, every 3rd is class 1
    assert report["counts"]["corrected"] + report["counts"]["never_flipped"] == 4
    assert report["provenance"]["device"].startswith("cpu")
    assert len(report["samples"]) == 4 and report["num_features"] == 512
    if report["insufficient"]:
        assert report["gamma_suggested"]["gamma"] == pytest.approx(
            1 + (min(r["imp"] for r in report["insufficient"][:5]) - 1) / 3
        )
    # a second run reads the cached features and gives the same answer
    assert main([*argv, "--out", str(tmp_path / "again"), "--no-progress"]) == 0
    again = json.loads((tmp_path / "again" / "debug.json").read_text())
    assert (
        again["insufficient"] == report["insufficient"]
        and again["feature_cache_key"] == report["feature_cache_key"]
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--class-idx", "7"], "--class-idx 7 is out of range"),
        (["--class-idx", "0"], "class 0 has no mistakes on split 'val'"),
        (
            ["--class-idx", "1", "--finder", "random", "--max-steps", "5"],
            "--max-steps applies to the counterfactual finder",
        ),
        (["--class-idx", "1", "--finder", "nope"], "unknown finder 'nope'"),
    ],
)
def test_debug_cli_user_errors_exit_2(
    tiny_ckpt: str, extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["debug", "--dataset", TINY, "--ckpt", tiny_ckpt, "--no-progress", *extra]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    # one error line, the last; a cold feature cache may log its progress line before it
    assert message in lines[-1] and lines[-1].startswith("neuroinspect debug: error: ")
    assert not any("Traceback" in line or ": error: " in line for line in lines[:-1])


def test_debug_passes_finder_settings_and_prints_gamma_for_the_neurons_edit_uses(
    tiny_ckpt: str, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from neuroinspect.harness.config import ExperimentConfig
    from neuroinspect.methods.finders.base import GAMMA_TOP

    assert ExperimentConfig().num_neurons == GAMMA_TOP  # debug's γ is the one the demo and bench use
    base = ["debug", "--dataset", TINY, "--ckpt", tiny_ckpt, "--class-idx", "1", "--finder", "gradient"]
    out = tmp_path / "g"
    assert main([*base, "--finder-param", "baseline=class_mean", "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    report = json.loads((out / "debug.json").read_text())
    assert report["settings"]["baseline"] == "class_mean"
    if report["gamma_suggested"]:
        assert len(report["gamma_suggested"]["neurons"]) == min(GAMMA_TOP, len(report["insufficient"]))
        assert f"the first {len(report['gamma_suggested']['neurons'])} insufficient neurons" in text
    # the default zero baseline leaves the insufficient list empty, and the table says why and what to do
    assert main([*base, "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "(empty: with the zero baseline" in text and "--finder-param baseline=class_mean" in text
    assert "imp: the class's probability on its mean feature" in text
    assert main([*base, "--finder-param", "baselin=zero", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--finder gradient has no setting 'baselin'; it takes: baseline." in err and "Traceback" not in err


# -- the class-c mistakes and the baselines' result ------------------------------------------------------
def _split_with_known_mistakes(meta: dict[str, Any] | None = None) -> tuple[nn.Linear, FeatureSet]:
    """Six samples, three classes over two neurons; class 1: rows 0, 1, 2, 5, of which the stored
    logits got 1 and 2 wrong (predicted 0 and 2). A layer without bias that reads neuron 1 as class 1:
    row 2 (neuron 1 high) is already class 1 under it, row 1 is not."""
    dec = nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        dec.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
    feats = torch.tensor([[0.0, 2.0], [3.0, 1.0], [1.0, 4.0], [5.0, 0.0], [0.0, 0.0], [1.0, 3.0]])
    labels = torch.tensor([1, 1, 1, 0, 2, 1])
    logits = F.one_hot(torch.tensor([1, 0, 2, 0, 1, 1]), 3).float()
    fs = FeatureSet(
        features=feats,
        logits=logits,
        labels=labels,
        groups=None,
        indices=torch.arange(20, 26),
        paths=[f"img/{i}" for i in range(6)],
        meta={"split": "val"} if meta is None else meta,
    )
    return dec, fs


def test_select_mistakes_on_a_hand_made_split() -> None:
    from neuroinspect.methods.finders.base import select_mistakes

    dec, fs = _split_with_known_mistakes()
    m = select_mistakes(dec, fs, 1)
    assert m.class_idx == 1 and m.split == "val" and len(m) == 2
    assert m.positions.tolist() == [1, 2] and m.indices.tolist() == [21, 22]
    assert m.paths == ["img/1", "img/2"] and m.stored_preds.tolist() == [0, 2]
    assert m.features.tolist() == [[3.0, 1.0], [1.0, 4.0]] and m.features.dtype == torch.float32
    assert m.already_correct.tolist() == [False, True]
    # the class mean is over every class-1 sample, right or wrong; the all-mean over the split
    torch.testing.assert_close(m.class_mean, torch.tensor([1.25, 2.5]))
    torch.testing.assert_close(m.all_mean, torch.tensor([10.0, 10.0]) / 6)
    assert m.correct_features.tolist() == [[0.0, 2.0], [1.0, 3.0]]  # the class-1 samples the logits got right
    # the counterfactual reports the mistakes in the same order, with their stored predictions
    r = FINDERS.get("counterfactual")().find(dec, fs, 1, show_progress=False)
    assert [(s["index"], s["path"], s["stored_pred"]) for s in r.samples] == [
        (21, "img/1", 0),
        (22, "img/2", 2),
    ]
    assert [s["status"] for s in r.samples] == ["corrected", "already_correct"]
    assert r.split == "val"


def test_no_mistakes_says_why_and_where() -> None:
    from neuroinspect.methods.finders.base import select_mistakes

    dec, fs = _split_with_known_mistakes()
    with pytest.raises(
        UserError,
        match=r"^class 0 has no mistakes on split 'val' \(all 1 of its samples are classified correctly\); "
        r"choose another class or split\.$",
    ):
        select_mistakes(dec, fs, 0)
    fs.labels = torch.tensor([1, 1, 1, 0, 0, 1])  # no class-2 sample left
    with pytest.raises(UserError, match=r"^class 2 has no mistakes on split 'val' \(it has no samples\)"):
        select_mistakes(dec, fs, 2)
    dec, unnamed = _split_with_known_mistakes(meta={})
    with pytest.raises(UserError, match=r"^class 0 has no mistakes on this split \("):
        select_mistakes(dec, unnamed, 0)
    assert select_mistakes(dec, unnamed, 1).split is None


@pytest.mark.parametrize("name", ["contribution", "gradient", "random", "margin-deficit"])
def test_a_baseline_reports_its_mistakes_counts_and_settings(name: str) -> None:
    dec, fs = _split_with_known_mistakes()
    r = FINDERS.get(name)(top=1).find(dec, fs, 1, seed=5, show_progress=False)
    assert r.method == name and r.class_idx == 1 and r.split == "val"
    assert r.samples == [
        {"index": 21, "path": "img/1", "stored_pred": 0, "status": "mistake"},
        {"index": 22, "path": "img/2", "stored_pred": 2, "status": "already_correct"},
    ]
    assert r.counts["mistakes"] == 2 and r.counts["already_correct"] == 1
    assert r.counts["corrected"] is None and r.counts["never_flipped"] is None and r.never_flipped == []
    assert r.settings["seed"] == 5 and r.settings["top"] == 1
    assert r.score_name == FINDERS.get(name).score_name and r.imp_reference == "class_mean"
    assert r.tiebreak is None and r.shifts is None and 0 < r.wall_seconds < 60
    # the lists: at most `top` rows, neurons with a positive score only, split by direction
    assert len(r.insufficient) <= 1 and len(r.excessive) <= 1
    assert r.scores.dtype == torch.float64 and float(r.scores.min()) >= 0
    torch.testing.assert_close(r.insufficient_scores + r.excessive_scores, r.scores)
    assert not bool(((r.insufficient_scores > 0) & (r.excessive_scores > 0)).any())
    for row in r.insufficient:
        assert row["prec5"] == float(r.insufficient_scores[row["neuron"]]) > 0
        assert row["imp"] == float(r.imp[row["neuron"]])
    for row in r.excessive:
        assert row["prec5"] == float(r.excessive_scores[row["neuron"]]) > 0
    if name in ("contribution", "margin-deficit"):
        assert r.counts["correct"] == 2
    ref = FINDERS.get(name)(ref=True).find(dec, fs, 1, seed=5, show_progress=False)
    assert ref.imp_reference == "all_mean" and ref.settings["ref"] is True


def test_baseline_lists_rank_by_score_then_index_and_stop_at_top() -> None:
    from neuroinspect.methods.finders.baselines import _rows

    resp = torch.tensor([0.5, 2.0, 0.0, 2.0, -1.0, 0.25], dtype=torch.float64)
    mask = torch.tensor([True, True, True, True, True, False])
    imp = torch.arange(6, dtype=torch.float64) / 10
    rows = _rows(resp, mask, imp, 10)
    assert [(r["neuron"], r["prec5"], r["imp"]) for r in rows] == [
        (1, 2.0, 0.1),
        (3, 2.0, 0.3),
        (0, 0.5, 0.0),
    ]
    assert [r["neuron"] for r in _rows(resp, mask, imp, 2)] == [1, 3]
    assert [r["neuron"] for r in _rows(resp, ~mask, imp, 10)] == [5]


def test_gamma_heuristic_checks_its_neurons_and_computes_in_float64() -> None:
    imp = [1.3, 0.7, 1.6]
    assert gamma_heuristic(imp, [0]) == pytest.approx(1.1)  # neuron 0 is a neuron
    assert gamma_heuristic(imp, [2, 0]) == pytest.approx(1.1)
    for bad in ([3], [-1], [0, 3]):
        with pytest.raises(
            UserError,
            match=rf"^neuron index {bad[-1]} is out of range: the decision layer has 3 input neurons, 0\.\.2\.$",
        ):
            gamma_heuristic(imp, bad)
    with pytest.raises(UserError, match="^select at least one neuron to compute the editing target γ.$"):
        gamma_heuristic(imp, [])
    # a float32 imp gives the γ of its values computed in float64 (the value records store)
    imp32 = torch.tensor([1.1, 1.7], dtype=torch.float32)
    assert gamma_heuristic(imp32, [0, 1]) == 1.0 + (float(imp32[0]) - 1.0) / 3.0


def test_imp_with_a_bias_chunked_and_without_a_bias() -> None:
    dec = _linear([[1.0, 0.0, 2.0, -1.0, 0.5], [0.0, 1.0, -1.0, 1.0, 0.0]], [0.75, -0.5])
    f = torch.tensor([2.0, 1.0, 0.5, 1.5, 3.0])
    W, b = dec.weight.detach().double(), dec.bias.detach().double()

    def p0(x: torch.Tensor) -> float:
        return float(torch.softmax(W @ x.double() + b, dim=0)[0])

    by_hand = []
    for n in range(5):
        knocked = f.clone()
        knocked[n] = 0.0
        by_hand.append(p0(f) / p0(knocked))
    expected = torch.tensor(by_hand, dtype=torch.float64)
    torch.testing.assert_close(importance(dec, f, 0), expected)
    torch.testing.assert_close(importance(dec, f, 0, chunk=2), expected)  # chunks of 2, 2, 1
    torch.testing.assert_close(importance(dec, f, 0, chunk=3), expected)
    # no bias: the same as a zero bias
    nobias = nn.Linear(5, 2, bias=False)
    with torch.no_grad():
        nobias.weight.copy_(dec.weight)
    zero = _linear(dec.weight.detach(), [0.0, 0.0])
    torch.testing.assert_close(importance(nobias, f, 1, chunk=2), importance(zero, f, 1))


def test_select_mistakes_reads_the_bias_and_a_missing_split_or_prediction() -> None:
    from neuroinspect.methods.finders.base import select_mistakes

    dec, fs = _split_with_known_mistakes(meta=None)  # type: ignore[arg-type]
    fs.meta = None  # type: ignore[assignment]
    assert select_mistakes(dec, fs, 1).split is None
    # a bias toward class 0 makes row 2 a mistake under this layer too
    biased = _linear(dec.weight.detach(), [4.0, 0.0, 0.0])
    assert select_mistakes(biased, fs, 1).already_correct.tolist() == [False, False]
    # features cached without logits: every class-c sample counts as a mistake, with prediction -1
    fs.logits = torch.zeros(0, 3)
    m = select_mistakes(dec, fs, 1)
    assert m.positions.tolist() == [0, 1, 2, 5] and m.stored_preds.tolist() == [-1] * 4


def _listed(ins: int, exc: int, d: int = 16) -> FinderResult:
    zeros = torch.zeros(d, dtype=torch.float64)
    return FinderResult(
        method="hand",
        class_idx=0,
        insufficient=[{"neuron": n, "prec5": 1.0, "imp": 1.0} for n in reversed(range(ins))],
        excessive=[{"neuron": d - 1 - n, "prec5": 1.0, "imp": 1.0} for n in range(exc)],
        scores=zeros,
        insufficient_scores=zeros,
        excessive_scores=zeros,
        imp=torch.ones(d, dtype=torch.float64),
        counts={},
    )


def test_top_neurons_and_ordered_read_the_whole_printed_list() -> None:
    r = _listed(ins=12, exc=3)  # insufficient rows 11, 10, ..., 0; all scores 0, so the ranking is by index
    assert r.top_neurons() == list(range(11, 1, -1))  # the insufficient list, 10 rows by default
    assert r.top_neurons("excessive") == [15, 14, 13]
    assert r.ordered("insufficient") == [
        *range(11, -1, -1),
        12,
        13,
        14,
        15,
    ]  # every printed row first, not 10
    assert sorted(r.ordered("insufficient")) == list(range(16))
    with pytest.raises(ValueError, match="which must be 'both', 'insufficient' or 'excessive', got 'all'"):
        r.ranking("all")


def test_vote_topk_defaults_rows_and_first_appearance() -> None:
    votes = vote_topk(A_HAND, negative=False)  # defaults: k = 5, the fixed rules
    assert votes.counts.dtype == torch.int64
    assert votes.counts.tolist() == vote_topk(A_HAND, negative=False, k=5, ref=False).counts.tolist()
    assert vote_topk(torch.arange(1.0, 8.0)[None], negative=False).per_row == [[6, 5, 4, 3, 2]]  # top 5
    assert votes.counts.tolist() != vote_topk(A_HAND, negative=False, ref=True).counts.tolist()
    v = vote_topk(A_HAND, negative=False, k=3)
    assert v.rows == 5 and v.voting_rows == 4
    assert v.per_row == [[0, 1, 2], [], [0], [], [1, 3, 0]]  # skipped and all-negative rows: empty
    assert v.first_seen == [0, 1, 3, 2]  # rank 1 row by row (0, 0, 1), then rank 2 (1, 3), rank 3 (2, 0)
    ref = vote_topk(A_HAND, negative=True, k=3, ref=True)
    assert ref.per_row == [[6, 5, 4], [], [], [6, 5, 4], [5, 2]]
    assert ref.first_seen == [6, 5, 2, 4]  # n2 is a rank-2 vote, n4 only rank 3


def test_aggregate_vote_default_cut_and_denominators() -> None:
    # one row of 200 shifts: n0..n4 voted; with 28 such rows and a denominator of 800, each has 3.5%
    A = torch.zeros(28, 8)
    A[:, :5] = torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0])
    votes = vote_topk(A, negative=False)
    assert list(aggregate_vote(votes, 800)) == [0, 1, 2, 3, 4]  # 3.5% > the default cut of 3%
    assert aggregate_vote(votes, 800, cut_ratio=4.0) == {}
    assert aggregate_vote(votes, 0) == {}  # no denominator: nothing is voted for
    one = vote_topk(A[:1], negative=False, k=2)
    assert aggregate_vote(one, 1) == {0: 1.0, 1: 1.0}  # a single corrected mistake
    # build_list keeps 30 rows by default
    ranked = {n: 1.0 - n / 100 for n in range(31)}
    rows = build_list(ranked, {}, torch.ones(31, dtype=torch.float64))
    assert [r["neuron"] for r in rows] == list(range(30))


@pytest.mark.parametrize("name", ["counterfactual", "contribution", "gradient", "random", "margin-deficit"])
def test_a_finder_called_without_a_seed_records_seed_0(name: str) -> None:
    dec, fs = _split_with_known_mistakes()
    assert FINDERS.get(name)().find(dec, fs, 1, show_progress=False).settings["seed"] == 0


def _correct_count_case(n_correct: int) -> tuple[nn.Linear, FeatureSet]:
    """Class 0 over three neurons: two mistakes (rows of M) and ``n_correct`` correct samples (rows of C)."""
    dec = _linear([[1.0, -2.0, 0.5], [-1.0, 2.0, 0.0]], [0.0, 0.0])
    M = torch.tensor([[1.0, 3.0, 2.5], [3.0, 1.0, 1.5]])  # mean (2, 2, 2)
    C = torch.tensor([[4.0, 1.0, 1.25], [2.0, 2.0, 2.75], [0.0, 0.0, 0.0]])[:n_correct]
    feats = torch.cat([M, C])
    logits = torch.tensor([[0.0, 1.0]] * 2 + [[1.0, 0.0]] * n_correct)
    return dec, _featureset(feats, torch.zeros(2 + n_correct), logits)


def test_contribution_against_no_one_or_several_correct_samples() -> None:
    w0 = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    mistakes = torch.tensor([2.0, 2.0, 2.0], dtype=torch.float64)
    for n_correct, ref_mean, reference in (
        (0, torch.zeros(3, dtype=torch.float64), "zero"),
        (1, torch.tensor([4.0, 1.0, 1.25], dtype=torch.float64), "correct_class_mean"),
        (2, torch.tensor([3.0, 1.5, 2.0], dtype=torch.float64), "correct_class_mean"),
    ):
        dec, fs = _correct_count_case(n_correct)
        r = FINDERS.get("contribution")().find(dec, fs, 0)
        delta_f = mistakes - ref_mean
        torch.testing.assert_close(r.scores, (-w0 * delta_f).clamp_min(0))
        assert r.settings["reference"] == reference and r.counts["correct"] == n_correct
        # the list follows where the activation moved: lower on the mistakes -> insufficient
        for row in r.insufficient:
            assert delta_f[row["neuron"]] < 0
        for row in r.excessive:
            assert delta_f[row["neuron"]] >= 0
    # 2 correct: Δf = (−1, 0.5, 0); n1 rose by less than 1 and opposes class 0: excessive
    dec, fs = _correct_count_case(2)
    r = FINDERS.get("contribution")().find(dec, fs, 0)
    assert r.top_neurons("insufficient") == [0] and r.top_neurons("excessive") == [1]


def test_gradient_with_the_class_mean_baseline_matches_autograd() -> None:
    for n_correct in (0, 1, 2):
        dec, fs = _correct_count_case(n_correct)
        r = FINDERS.get("gradient")(baseline="class_mean").find(dec, fs, 0)
        f = fs.features[:2].double().clone().requires_grad_(True)
        logp = torch.log_softmax(F.linear(f, dec.weight.double(), dec.bias.double()), dim=1)[:, 0].sum()
        (g,) = torch.autograd.grad(logp, f)
        base = fs.features[2:].double().mean(0) if n_correct else torch.zeros(3, dtype=torch.float64)
        dev = f.detach() - base
        torch.testing.assert_close(r.scores, (-(g * dev).mean(0)).clamp_min(0))
        insufficient = dev.mean(0) < 0
        assert all(bool(insufficient[x["neuron"]]) for x in r.insufficient)
        assert not any(bool(insufficient[x["neuron"]]) for x in r.excessive)
    # the two mistakes sit symmetrically around the correct samples' mean on n1 (mean deviation 0) but their
    # gradients differ: responsible, and (not lower on average) excessive
    dec, fs = _correct_count_case(2)
    fs.features[:2, 1] = torch.tensor([2.5, 0.5])  # around 1.5
    r = FINDERS.get("gradient")(baseline="class_mean").find(dec, fs, 0)
    assert float(r.scores[1]) > 0 and 1 in [x["neuron"] for x in r.excessive]


def test_margin_deficit_direction_with_one_correct_sample_and_a_zero_mean_gap() -> None:
    # three classes; the two class-0 mistakes were predicted as 1 and 2 (d differs), one correct sample
    dec = nn.Linear(3, 3, bias=False)
    with torch.no_grad():
        dec.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.5, 2.0, 0.0], [0.0, 0.0, 3.0]]))
    feats = torch.tensor([[3.0, 3.0, 0.0], [1.0, 0.0, 1.0], [2.0, 1.0, 2.0]])
    logits = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    r = FINDERS.get("margin-deficit")().find(dec, _featureset(feats, torch.zeros(3), logits), 0)
    assert r.settings["prototype"] == "correct_class_mean" and r.counts["correct"] == 1
    # d = W[0] − W[k]: (0.5, −2, 0) and (1, 0, −3); proto − f: (−1, −2, 2) and (1, 1, 1)
    torch.testing.assert_close(r.scores, torch.tensor([0.25, 2.0, 0.0], dtype=torch.float64))
    # n0: the mistakes' mean equals the prototype (a zero gap), yet it is responsible: not lacking, so
    # excessive; n1 is above the prototype: excessive; n2 (−1.5) is not responsible
    assert r.top_neurons("excessive") == [1, 0] and r.insufficient == []
    # no correct sample: the prototype is 0
    none = FINDERS.get("margin-deficit")().find(dec, _featureset(feats[:2], torch.zeros(2), logits[:2]), 0)
    assert none.settings["prototype"] == "zero" and none.counts["correct"] == 0


def test_random_finder_scores_lie_in_0_1_and_fill_both_lists() -> None:
    dec, fs = _random_problem(seed=4)
    r = FINDERS.get("random")(top=32).find(dec, fs, 1, seed=2)
    assert float(r.scores.min()) > 0 and float(r.scores.max()) < 1
    assert len(r.insufficient) + len(r.excessive) == 32  # every neuron is listed, on one side or the other
    assert 4 < len(r.insufficient) < 28
