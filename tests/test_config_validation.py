"""Experiment configs validated at load (types, typos, training settings) and honoured as written."""

from __future__ import annotations

from pathlib import Path

import pytest

from neuroinspect.cli import main
from neuroinspect.errors import UserError
from neuroinspect.harness.config import ExperimentConfig


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('num_neurons = "five"', 'num_neurons = "five" must be an integer (e.g. num_neurons = 5)'),
        ("num_neurons = true", "num_neurons = true must be an integer"),
        ('finders = "counterfactual"', 'finders = "counterfactual" must be a list of strings'),
        ("dataset_params = 5", "dataset_params = 5 must be a table"),
        ("neurons = [1, 2.5]", "neurons = [1, 2.5] must be a list of integers."),
        ("num_neuron = 5", "unknown key(s) num_neuron (did you mean 'num_neurons'?)"),
        ("epochs = 3", "epochs is a training setting: put it in the train table"),
        ('train = { lr = "fast" }', 'train.lr = "fast" must be a number (e.g. train.lr = 0.001)'),
        ("train = { epoch = 2 }", "unknown training setting(s) epoch in train (did you mean 'epochs'?)"),
        ("train = { epochs = 0 }", "epochs=0 is invalid: use a positive integer"),
    ],
)
def test_a_config_value_of_the_wrong_type_or_a_typo_is_named_at_load(
    tmp_path: Path, body: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f"[experiment]\n{body}\n")
    with pytest.raises(UserError) as err:
        ExperimentConfig.from_toml(path)
    assert message in str(err.value)
    assert main(["bench", "run", str(path), "--out", str(tmp_path / "out")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]  # before any seed starts
    assert not (tmp_path / "out").exists()


def test_pretrained_false_in_a_config_wins_over_a_pretrained_preset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`pretrained = false` on a dataset whose preset fine-tunes ImageNet weights: random init, offline,
    and the training config says so (no "pretrained" in its description)."""
    from neuroinspect.harness import experiment, training
    from neuroinspect.harness.presets import get_preset

    assert get_preset("default", "waterbirds").pretrained is True
    main(["data", "make-fixture", "waterbirds", "--root", str(tmp_path / "wb")])
    seen = {}

    class Stop(Exception):
        pass

    def fake_train(surface, train_ds, val_ds, config, **kw):  # noqa: ANN001, ANN003, ANN202
        seen["config"] = config
        raise Stop

    monkeypatch.setattr(training, "train_classifier", fake_train)
    cfg = ExperimentConfig(
        dataset="waterbirds", root=str(tmp_path / "wb"), pretrained=False, image_size=32, model="resnet18"
    )
    with pytest.raises(Stop):  # before the fix: a UserError asking for --pretrained PATH (offline)
        experiment._train_or_load(cfg, 0, tmp_path / "run", "cpu", False, print)
    config = seen["config"]
    assert config.pretrained is False and config.description.startswith("random initialisation")
    assert "pretrained" not in config.description


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "editor_settings = { fc = { lrr = 0.1 } }",
            "editor_settings.fc has no setting 'lrr' (did you mean 'lr'?)",
        ),
        (
            'editor_settings = { neuroinspect = { epochs = "two" } }',
            'editor_settings.neuroinspect = {"epochs": "two"} is not accepted by neuroinspect',
        ),
        (
            "finder_settings = { counterfactual = { k = 0 } }",
            "finder_settings.counterfactual: k (top-k shifts",
        ),
    ],
)
def test_method_settings_are_checked_before_training(
    tmp_path: Path, body: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f"[experiment]\n{body}\n")
    assert main(["bench", "run", str(path), "--out", str(tmp_path / "out")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert not (tmp_path / "out").exists()


def test_an_editor_variant_is_checked_as_its_editor() -> None:
    """``neuroinspect:l1`` (the neuroinspect editor at λ3 = 1, as the neuron-choice configs name it)."""
    ok = ExperimentConfig.from_dict(
        {
            "editors": ["neuroinspect", "neuroinspect:l1"],
            "editor_settings": {"neuroinspect:l1": {"lambda3": 1.0}},
        }
    )
    ok.check_methods()
    bad = ExperimentConfig.from_dict(
        {"editors": ["neuroinspect:l1"], "editor_settings": {"neuroinspect:l1": {"lambda_3": 1.0}}}
    )
    with pytest.raises(
        UserError, match=r"editor_settings.neuroinspect:l1 has no setting 'lambda_3' \(did you mean 'lambda3'"
    ):
        bad.check_methods()
    with pytest.raises(UserError, match="unknown editor 'neuroinspec'"):
        ExperimentConfig.from_dict({"editors": ["neuroinspec:l1"]}).check_methods()
