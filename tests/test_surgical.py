"""The surgical editor: only the chosen neurons' columns change (every other weight bit-identical), and
on a planted spurious neuron it removes the shortcut while a wrong neuron leaves the layer alone."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from neuroinspect.errors import UserError
from neuroinspect.harness.features import FeatureSet
from neuroinspect.methods.editors import EDITORS
from neuroinspect.methods.editors.base import layer_accuracy
from neuroinspect.methods.editors.surgical import ablate

D, K, C, SPUR = 12, 3, 1, 0


def _planted(n: int, seed: int, align: float) -> FeatureSet:
    """Class k lights neuron 1+k; neuron 0 (spurious) fires with class 1 in ``align`` of the samples."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % K
    spur = torch.where(
        torch.rand(n, generator=g) < align, (y == C).long(), torch.randint(0, 2, (n,), generator=g)
    )
    f = 0.3 * torch.rand(n, D, generator=g)
    f[torch.arange(n), 1 + y] += 0.25 + 0.5 * torch.rand(n, generator=g)
    f[:, SPUR] += 1.5 * spur
    return FeatureSet(
        features=f,
        logits=torch.zeros(n, K),
        labels=y,
        groups=y * 2 + spur,
        indices=torch.arange(n),
        paths=[f"s{i}" for i in range(n)],
        meta={"num_groups": 2 * K},
    )


@pytest.fixture(scope="module")
def data() -> tuple[nn.Linear, FeatureSet, FeatureSet, FeatureSet]:
    train, val, test = _planted(300, 0, 0.97), _planted(150, 1, 0.5), _planted(300, 2, 0.5)
    torch.manual_seed(0)
    dec = nn.Linear(D, K)
    opt = torch.optim.Adam(dec.parameters(), 0.05)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(dec(train.features), train.labels).backward()
        opt.step()
    for p in dec.parameters():
        p.requires_grad_(False)
    return dec, train, val, test


def _worst_group(layer: nn.Linear, fs: FeatureSet) -> float:
    with torch.no_grad():
        ok = (layer(fs.features).argmax(1) == fs.labels).float()
    return min(float(ok[fs.groups == g].mean()) for g in fs.groups.unique())


def test_only_the_chosen_columns_change(data) -> None:  # noqa: ANN001
    dec, train, _, _ = data
    S = [0, 5, 7]
    mu = train.features.double().mean(0)
    for bias in ("keep", "compensate"):
        out = ablate(dec, S, 0.25, mu, bias=bias)
        others = [n for n in range(D) if n not in S]
        assert torch.equal(out.weight[:, others], dec.weight[:, others])  # bit-identical
        assert torch.allclose(out.weight[:, S], 0.25 * dec.weight[:, S])
        if bias == "keep":
            assert torch.equal(out.bias, dec.bias)
        else:  # the mean contribution of S stays in the bias
            expect = dec.bias.double() + 0.75 * (dec.weight[:, S].double() @ mu[S])
            assert torch.allclose(out.bias.double(), expect, atol=1e-6)
    only_c = ablate(dec, S, 0.0, mu, rows="class", class_idx=C)
    rows = [k for k in range(K) if k != C]
    assert torch.equal(only_c.weight[rows], dec.weight[rows]) and torch.equal(
        only_c.bias[rows], dec.bias[rows]
    )
    assert torch.equal(only_c.weight[C, S], torch.zeros(len(S)))


def test_surgical_editor_leaves_other_weights_and_the_input_alone(data) -> None:  # noqa: ANN001
    dec, train, val, _ = data
    w0, b0 = dec.weight.clone(), dec.bias.clone()
    res = EDITORS.get("surgical")(bias="keep").edit(
        dec, train, val, C, [SPUR, 3], seed=0, show_progress=False
    )
    assert torch.equal(dec.weight, w0) and torch.equal(dec.bias, b0)
    keep = [n for n in range(D) if n not in (SPUR, 3)]
    assert torch.equal(res.decision.weight[:, keep], w0[:, keep]) and torch.equal(res.decision.bias, b0)
    s = res.info["strength"]
    assert [r["strength"] for r in res.history if r["selected"]] == [s]
    # the kept strength has the best validation accuracy of the grid
    assert res.val_after["acc"] == max(r["val_acc"] for r in res.history)
    assert res.val_after["acc"] >= res.val_before["acc"]


def test_surgical_on_the_spurious_neuron_removes_the_shortcut_a_wrong_neuron_does_not(data) -> None:  # noqa: ANN001
    dec, train, val, test = data
    ed = EDITORS.get("surgical")()
    right = ed.edit(dec, train, val, C, [SPUR], show_progress=False)
    wrong = ed.edit(dec, train, val, C, [9], show_progress=False)
    before = _worst_group(dec, test)
    assert right.info["strength"] < 1.0
    assert _worst_group(right.decision, test) > before + 0.1
    assert wrong.info["strength"] == 1.0  # nothing to gain: the layer is left as it was
    assert torch.equal(wrong.decision.weight, dec.weight) and torch.equal(wrong.decision.bias, dec.bias)
    assert layer_accuracy(wrong.decision, test.features, test.labels) == layer_accuracy(
        dec, test.features, test.labels
    )


def test_surgical_settings_are_checked() -> None:
    with pytest.raises(UserError, match="strengths"):
        EDITORS.get("surgical")(strengths=[1.5])
    with pytest.raises(UserError, match="bias"):
        EDITORS.get("surgical")(bias="drop")


def test_prefixes_choose_how_many_of_the_ordered_neurons_to_edit(data) -> None:  # noqa: ANN001
    dec, train, val, test = data
    ed = EDITORS.get("surgical")(prefixes=[1, 3])
    res = ed.edit(dec, train, val, C, [SPUR, 9, 10], show_progress=False)
    assert res.info["neurons_edited"] == len(res.neurons) and res.neurons == [SPUR, 9, 10][: len(res.neurons)]
    assert {(r["neurons"], r["strength"]) for r in res.history} == {
        (n, s) for n in (1, 3) for s in ed.strengths
    }
    assert _worst_group(res.decision, test) > _worst_group(dec, test) + 0.1
    untouched = [n for n in range(D) if n not in res.neurons]
    assert torch.equal(res.decision.weight[:, untouched], dec.weight[:, untouched])
