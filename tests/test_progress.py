"""Progress that suits where it goes: bars on a terminal, one line per epoch or stage in a log."""

from __future__ import annotations

from pathlib import Path

import pytest

from neuroinspect.cli import main
from neuroinspect.runtime import bars_wanted, progress, set_progress_bars


def test_outside_a_terminal_each_stage_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert not bars_wanted()  # pytest's stderr is not a terminal
    assert list(progress(range(5), "features x/train", total=5, unit="batches")) == [0, 1, 2, 3, 4]
    for _ in progress(range(100), "left early", total=100):
        break  # a stage left early (or failed) does not claim to be done
    assert list(progress(range(3), "too small to mention", enabled=False)) == [0, 1, 2]
    assert list(progress(iter(range(4)), "no length known", total=10)) == [0, 1, 2, 3]
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("features x/train: done in ") and lines[0].endswith(" s (5 batches)")
    assert lines[1].endswith("(4 of 10 steps)")


def test_a_failing_stage_leaves_its_error_the_only_line(capsys: pytest.CaptureFixture[str]) -> None:
    def broken():  # noqa: ANN202
        yield 1
        raise ValueError("corrupt image")

    with pytest.raises(ValueError):
        list(progress(broken(), "features x/test"))
    assert capsys.readouterr().err == ""


def test_no_progress_turns_bars_off_even_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.delenv("NEUROINSPECT_NO_PROGRESS", raising=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    try:
        set_progress_bars(True)
        assert bars_wanted()
        set_progress_bars(False)
        assert not bars_wanted()
    finally:
        set_progress_bars(True)


def test_training_prints_one_line_per_epoch_without_bars(capsys: pytest.CaptureFixture[str]) -> None:
    from test_training import prepared

    from neuroinspect.harness.models import create_model
    from neuroinspect.harness.presets import TrainConfig
    from neuroinspect.harness.training import train_classifier

    surface = create_model("test_resnet", num_classes=3, image_size=32)
    config = TrainConfig(epochs=2, batch_size=8)
    train_ds, val_ds = prepared(surface, config, n_train=8, n_val=3)
    train_classifier(surface, train_ds, val_ds, config, show_progress=True)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" | ")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"]  # and no bar redraws
    assert "val acc" in lines[0]


def test_data_check_has_no_progress_and_a_bar_only_when_it_opens_images(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["data", "make-fixture", "waterbirds", "--root", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["data", "check", "waterbirds", "--root", str(tmp_path), "--no-progress"]) == 0
    assert capsys.readouterr().err == ""
    assert (
        main(["data", "check", "waterbirds", "--root", str(tmp_path), "--verify-images", "--no-progress"])
        == 0
    )
    assert "verifying images: done in" in capsys.readouterr().err
