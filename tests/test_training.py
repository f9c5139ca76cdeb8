"""Training, presets, transforms, evaluation and the `train` / `evaluate` commands."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch

from neuroinspect.cli import main
from neuroinspect.datasets.base import InMemoryImageDataset, Sample
from neuroinspect.errors import CheckpointError, UserError
from neuroinspect.harness import training
from neuroinspect.harness.checkpoint import load_checkpoint, save_checkpoint
from neuroinspect.harness.evaluation import evaluation_record, format_metrics_table
from neuroinspect.harness.models import DataConfig, create_model
from neuroinspect.harness.presets import PAPER_PRETRAINED_TAGS, TrainConfig, get_preset
from neuroinspect.harness.records import read_records
from neuroinspect.harness.training import lr_factor, train_classifier
from neuroinspect.harness.transforms import describe, eval_transform, train_transform
from neuroinspect.runtime import Provenance

SHAPES = ["--param", "n_train=48", "--param", "n_val=16", "--param", "n_test=32", "--param", "image_size=32"]


def toy(n: int, split: str, seed: int, size: int = 32, groups: bool = False) -> InMemoryImageDataset:
    """An easy 3-class task: a bright square whose colour channel is the class, on dim noise."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 80, size=(n, size, size, 3)).astype(np.uint8)
    labels = np.arange(n) % 3
    images[np.arange(n), size // 4 : 3 * size // 4, size // 4 : 3 * size // 4, labels] = 240
    samples = [
        Sample(f"toy/{split}/{i}", int(y), group=int(i % 2) if groups else None) for i, y in enumerate(labels)
    ]
    return InMemoryImageDataset(
        images,
        name="toy",
        split=split,
        samples=samples,
        classes=["red", "green", "blue"],
        group_names=["even", "odd"] if groups else None,
    )


def prepared(surface, config, n_train=48, n_val=24, groups=False):
    train_ds, val_ds = toy(n_train, "train", 0, groups=groups), toy(n_val, "val", 1, groups=groups)
    train_ds.transform = train_transform(surface.data_config, config, dataset_kind="benchmark")
    val_ds.transform = eval_transform(surface.data_config, "benchmark")
    return train_ds, val_ds


# -- presets --------------------------------------------------------------------------------------
def test_paper_presets_follow_the_spec():
    flowers = get_preset("paper", "flowers102")
    assert (flowers.batch_size, flowers.lr, flowers.eta_min, flowers.optimizer, flowers.weight_decay) == (
        128,
        2e-3,
        1e-4,
        "adam",
        0.0,
    )
    assert flowers.finetune == "all" and flowers.ref_transforms and flowers.augment == "ref"
    wb = get_preset("paper", "waterbirds")
    assert (wb.batch_size, wb.lr, wb.epochs, wb.weight_decay) == (32, 1e-4, 50, 1e-4)
    meta = get_preset("paper", "metashift")
    assert (meta.finetune, meta.optimizer, meta.batch_size, meta.epochs, meta.model) == (
        "head",
        "adam",
        8,
        20,
        "resnet18",
    )
    assert meta.resolve_pretrained("resnet18") == PAPER_PRETRAINED_TAGS["resnet18"] == "resnet18.tv_in1k"
    assert get_preset("default", "spurious-shapes").pretrained is False
    assert get_preset("default", "some-new-dataset") == get_preset("default", "*")


def test_preset_errors_are_user_errors():
    with pytest.raises(UserError, match="unknown training preset 'fast'; choose one of default, paper"):
        get_preset("fast", "flowers102")
    with pytest.raises(UserError, match="preset 'paper' has no settings for dataset 'spurious-shapes'"):
        get_preset("paper", "spurious-shapes")
    with pytest.raises(UserError, match="optimizer='lbfgs'"):
        TrainConfig().with_overrides(optimizer="lbfgs")
    with pytest.raises(UserError, match="unknown training setting"):
        TrainConfig().with_overrides(learning_rate=1.0)
    cfg = TrainConfig().with_overrides(epochs=3, lr=None)
    assert cfg.epochs == 3 and cfg.lr == TrainConfig().lr
    assert TrainConfig.from_dict(cfg.as_dict()) == cfg


def test_lr_schedule_warmup_then_cosine_to_eta_min():
    f = [lr_factor(s, 100, 10, 1e-3, 1e-5, True) for s in range(101)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert f[10] == pytest.approx(1.0)
    assert f[55] == pytest.approx((1e-5 + (1e-3 - 1e-5) * 0.5) / 1e-3)
    assert f[100] == pytest.approx(1e-2)
    assert all(a >= b for a, b in zip(f[10:], f[11:], strict=False))
    # As in ref: no decay when lr <= eta_min (the paper's Waterbirds row).
    assert lr_factor(50, 100, 0, 1e-4, 1e-4, True) == 1.0


# -- transforms -----------------------------------------------------------------------------------
def test_benchmark_eval_transform_normalizes():
    cfg = DataConfig(input_size=(3, 32, 32))
    img = toy(1, "test", 0).load_image(0)
    x = eval_transform(cfg, "benchmark")(img)
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    raw = torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255
    mean, std = torch.tensor(cfg.mean).view(3, 1, 1), torch.tensor(cfg.std).view(3, 1, 1)
    assert torch.allclose(x, (raw - mean) / std, atol=1e-6)


def test_real_transforms_timm_by_default_reference_on_request():
    from timm.data import create_transform

    cfg = DataConfig(
        input_size=(3, 224, 224),
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        interpolation="bicubic",
        crop_pct=0.9,
    )
    timm_tf = create_transform(
        input_size=(3, 224, 224), interpolation="bicubic", mean=cfg.mean, std=cfg.std, crop_pct=0.9
    )
    assert describe(eval_transform(cfg, "real")) == describe(timm_tf)
    ref = describe(eval_transform(cfg, "real", ref=True, dataset="flowers102"))
    assert (
        "Resize(size=(224, 224)" in ref and "CenterCrop" not in ref and "0.485" in ref
    )  # ImageNet norm, as in ref
    wb = describe(eval_transform(cfg, "real", ref=True, dataset="waterbirds"))
    assert "Resize(size=(256, 256)" in wb and "CenterCrop(size=(224, 224))" in wb
    aug = describe(train_transform(cfg, TrainConfig(augment="ref", ref_transforms=True), dataset="food101"))
    assert "RandomAffine(degrees=[-15.0, 15.0], translate=(0.15, 0.15))" in aug
    assert " at 0x" not in describe(lambda im: im)


# -- training -------------------------------------------------------------------------------------
def test_training_learns_an_easy_task_and_writes_its_files(tmp_path):
    torch.manual_seed(0)
    surface = create_model("test_resnet", num_classes=3, image_size=32)
    config = TrainConfig(epochs=2, batch_size=16, lr=1e-3)
    train_ds, val_ds = prepared(surface, config, n_train=96)
    result = train_classifier(
        surface, train_ds, val_ds, config, seed=0, out_dir=tmp_path, show_progress=False
    )
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0]
    assert result.best_metrics["val_acc"] > 0.6  # chance is 1/3
    log = json.loads((tmp_path / "train_log.json").read_text())
    assert [h["epoch"] for h in log["history"]] == [1, 2]  # counted from 1, as the console prints them
    assert log["best_epoch"] == result.best_epoch and log["config"]["lr"] == 1e-3
    ckpt = load_checkpoint(tmp_path / "best.pt", expect_dataset="toy", expect_num_classes=3)
    assert ckpt.train_config["seed"] == 0 and ckpt.train_config["batch_size"] == 16
    assert ckpt.metrics["best_epoch"] == result.best_epoch
    assert ckpt.metrics["val_acc"] == pytest.approx(result.best_metrics["val_acc"])
    x = torch.stack([val_ds[i]["image"] for i in range(4)])
    with torch.no_grad():
        assert torch.equal(ckpt.surface(x), result.surface(x))


def test_same_seed_gives_identical_weights():
    def run(seed):
        torch.manual_seed(123)  # the same initial weights; the training seed alone must fix the rest
        surface = create_model("test_resnet", num_classes=3, image_size=32)
        config = TrainConfig(epochs=1, batch_size=8, lr=1e-3, augment="light")
        train_ds, val_ds = prepared(surface, config, n_train=16, n_val=3)
        return train_classifier(
            surface, train_ds, val_ds, config, seed=seed, show_progress=False
        ).surface.state_dict()

    a, b, c = run(0), run(0), run(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def _scripted(monkeypatch, values, key="val_acc"):
    """Replace the validation pass with a scripted metric sequence."""
    it = iter(values)

    def fake(surface, val_ds, batch_size, device, amp):
        v = next(it)
        return {"val_acc": v, "val_worst_class_acc": v, "val_worst_group_acc": None, "val_macro_acc": v}

    monkeypatch.setattr(training, "_val_metrics", fake)


@pytest.mark.parametrize(
    ("values", "best", "patience", "epochs_run"),
    [
        ([0.5, 0.8, 0.8, 0.6], 2, None, 4),  # strictly better: the tie at epoch 3 is not taken
        ([0.9, 0.5, 0.6, 0.7], 1, None, 4),  # the first epoch is a candidate (spec bug 20)
        ([0.5, 0.4, 0.4, 0.9], 1, 2, 3),  # patience 2: stops after epoch 3, never sees 0.9
    ],
)
def test_checkpoint_selection(monkeypatch, tmp_path, values, best, patience, epochs_run):
    _scripted(monkeypatch, values)
    torch.manual_seed(0)
    surface = create_model("test_resnet", num_classes=3, image_size=32)
    config = TrainConfig(epochs=4, batch_size=8, lr=1e-3, patience=patience)
    train_ds, val_ds = prepared(surface, config, n_train=8, n_val=3)
    snapshots = []

    def snap(row):
        snapshots.append({k: v.clone() for k, v in surface.model.state_dict().items()})

    result = train_classifier(
        surface, train_ds, val_ds, config, out_dir=tmp_path, show_progress=False, on_epoch_end=snap
    )
    assert result.best_epoch == best
    assert len(result.history) == epochs_run and result.stopped_early == (patience is not None)
    seen = values[:epochs_run]
    expected = [v > max(seen[:i], default=-math.inf) for i, v in enumerate(seen)]
    assert [h["selected"] for h in result.history] == expected
    # The returned model and best.pt hold the selected epoch's weights, not the last ones.
    saved = torch.load(tmp_path / "best.pt", weights_only=True)["state_dict"]
    for k, v in snapshots[best - 1].items():
        assert torch.equal(saved[k], v), k
        assert torch.equal(result.surface.model.state_dict()[k], v), k


def test_min_val_metric_never_reached_keeps_last_and_flags_it(monkeypatch, tmp_path):
    _scripted(monkeypatch, [0.3, 0.4])
    surface = create_model("test_resnet", num_classes=3, image_size=32)
    config = TrainConfig(epochs=2, batch_size=8, min_val_metric=0.5)
    train_ds, val_ds = prepared(surface, config, n_train=8, n_val=3)
    result = train_classifier(surface, train_ds, val_ds, config, out_dir=tmp_path, show_progress=False)
    assert result.best_epoch == -1
    ckpt = load_checkpoint(tmp_path / "best.pt")
    assert ckpt.metrics["best_epoch"] == -1 and "min_val_metric" in ckpt.extra["warning"]


def test_head_only_training_leaves_the_backbone_untouched():
    surface = create_model("test_resnet", num_classes=3, image_size=32)
    before = {k: v.clone() for k, v in surface.model.state_dict().items()}
    config = TrainConfig(epochs=1, batch_size=8, lr=1e-2, finetune="head")
    train_ds, val_ds = prepared(surface, config, n_train=16, n_val=3)
    train_classifier(surface, train_ds, val_ds, config, show_progress=False)
    after = surface.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"fc.weight", "fc.bias"}  # BN running statistics included: no drift (spec bug 19)


def test_training_input_errors():
    surface = create_model("test_resnet", num_classes=2, image_size=32)
    config = TrainConfig(epochs=1)
    train_ds, val_ds = prepared(surface, config, n_train=6, n_val=3)
    with pytest.raises(UserError, match="the model has 2 outputs but the dataset has 3 classes"):
        train_classifier(surface, train_ds, val_ds, config, show_progress=False)
    surface3 = create_model("test_resnet", num_classes=3, image_size=32)
    with pytest.raises(UserError, match="needs group labels"):
        train_classifier(
            surface3,
            train_ds,
            val_ds,
            config.with_overrides(selection="val_worst_group_acc"),
            show_progress=False,
        )


def test_init_from_checkpoint_checks_the_architecture(tmp_path):
    donor = create_model("test_resnet", num_classes=3, image_size=32)
    path = save_checkpoint(tmp_path / "d.pt", donor, ["a", "b", "c"], "toy")
    other = create_model("test_resnet", num_classes=5, image_size=32)
    info = training.init_from_checkpoint(other, path)
    assert info["skipped"] == ["fc.bias", "fc.weight"]
    donor_state, other_state = donor.model.state_dict(), other.model.state_dict()
    assert all(torch.equal(v, other_state[k]) for k, v in donor_state.items() if not k.startswith("fc."))
    assert other_state["fc.weight"].shape == (5, donor.num_features)
    with pytest.raises(CheckpointError, match="holds a test_resnet but --model is resnet18"):
        training.init_from_checkpoint(create_model("resnet18", num_classes=3, image_size=32), path)


# -- evaluation helpers ---------------------------------------------------------------------------
def test_metrics_table_and_record(tmp_path):
    from neuroinspect.harness.metrics import classification_metrics

    m = classification_metrics(
        [0, 1, 1, 0], [0, 1, 0, 0], groups=[0, 1, 0, 1], class_idx=0, train_group_counts=[3, 1], n_boot=50
    )
    m.update(
        {
            "dataset": "toy",
            "split": "test",
            "classes": ["red", "green"],
            "group_names": ["a", "b"],
            "transform": "t",
        }
    )
    table = format_metrics_table(m)
    assert "test accuracy" in table and "75.00%" in table and "95% CI" in table
    assert "class accuracy (0 red)" in table and "worst-group accuracy (g0 a)" in table
    surface = create_model("test_resnet", num_classes=2, image_size=32)
    ckpt = load_checkpoint(save_checkpoint(tmp_path / "c.pt", surface, ["red", "green"], "toy"))
    with Provenance() as prov:
        record = evaluation_record(m, ckpt, prov, seed=3)
    assert record["task"] == "evaluation" and record["class_idx"] == 0 and record["seed"] == 3
    assert record["metrics"]["test_acc"] == 0.75 and record["config"]["checkpoint_sha256"] == ckpt.sha256


# -- the commands ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("train")
    rc = main(
        [
            "train",
            "--dataset",
            "spurious-shapes",
            "--model",
            "test_resnet",
            "--epochs",
            "1",
            "--batch-size",
            "16",
            *SHAPES,
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert rc == 0
    return out


def test_train_command_writes_checkpoint_and_log(trained):
    ckpt = load_checkpoint(trained / "best.pt")
    assert ckpt.dataset == "spurious-shapes" and ckpt.surface.spec.arch == "test_resnet"
    assert ckpt.dataset_params == {"n_train": 48, "n_val": 16, "n_test": 32, "image_size": 32}
    assert ckpt.surface.data_config.image_size == 32  # follows the benchmark's image_size parameter
    assert ckpt.extra["preset"] == "default" and ckpt.extra["train_group_counts"] is not None
    log = json.loads((trained / "train_log.json").read_text())
    assert len(log["history"]) == 1 and log["config"]["epochs"] == 1


def test_evaluate_command_prints_table_and_appends_a_record(trained, tmp_path, capsys):
    results, metrics_json = tmp_path / "results.jsonl", tmp_path / "m.json"
    argv = [
        "evaluate",
        "--dataset",
        "spurious-shapes",
        "--ckpt",
        str(trained / "best.pt"),
        "--class-idx",
        "1",
        "--n-boot",
        "200",
    ]
    rc = main([*argv, "--out", str(results), "--json", str(metrics_json), "--no-progress"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out and "worst-group accuracy" in out and "95% CI" in out
    # per-group intervals, and how each interval was made, next to them
    assert "stratified by (group, class) cell" in out and "Wilson score interval" in out
    assert re.search(r"g\d \S+\s+\d+\.\d\d%\s+\[\s*\d+\.\d\d,\s+\d+\.\d\d\]\s+\(n=8\)", out)
    (record,) = read_records(results)
    m = json.loads(metrics_json.read_text())
    assert (
        record["task"] == "evaluation" and record["dataset"] == "spurious-shapes" and record["class_idx"] == 1
    )
    assert m["n"] == 32 and m["group_n"] == [8, 8, 8, 8]
    assert record["metrics"]["test_acc"] == m["test_acc"]
    assert m["mean_acc_train_weighted"] is not None and 0 <= m["worst_group_acc"] <= m["test_acc"]
    lo, hi = m["ci"]["test_acc"]
    assert lo <= m["test_acc"] <= hi
    # A second run reads the cached features and gives the same numbers (--overwrite: the file exists).
    assert main([*argv, "--json", str(metrics_json), "--no-progress", "--overwrite"]) == 0
    assert json.loads(metrics_json.read_text())["test_acc"] == m["test_acc"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--class-idx", "7"], "--class-idx 7 is out of range: the model has 2 classes"),
        (["--dataset", "flowers102"], "was trained on 'spurious-shapes', not 'flowers102'"),
        (["--model", "vit_tiny_patch16_224"], "holds a test_resnet, not a vit_tiny_patch16_224"),
        (["--param", "shapes=triangle,square,circle"], "has 2 classes but spurious-shapes/test has 3"),
    ],
)
def test_evaluate_mismatches_exit_2(trained, capsys, extra, message):
    rc = main(["evaluate", "--ckpt", str(trained / "best.pt"), *extra, "--n-boot", "0", "--no-progress"])
    assert rc == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_evaluate_refuses_a_pickled_model(tmp_path, capsys):
    path = tmp_path / "model.pt"
    torch.save(torch.nn.Linear(2, 2), path)
    assert main(["evaluate", "--dataset", "spurious-shapes", "--ckpt", str(path)]) == 2
    assert "not a neuroinspect checkpoint" in capsys.readouterr().err


def test_train_user_errors_exit_2(tmp_path, trained, capsys):
    base = [
        "train",
        "--dataset",
        "spurious-shapes",
        "--model",
        "test_resnet",
        "--out",
        str(tmp_path),
        *SHAPES,
    ]
    assert main([*base, "--preset", "paper"]) == 2
    assert "preset 'paper' has no settings for dataset 'spurious-shapes'" in capsys.readouterr().err
    assert main([*base, "--pretrained", "true"]) == 2  # offline, not cached
    assert (
        "could not load pretrained weights" in (err := capsys.readouterr().err) and "--pretrained none" in err
    )
    assert main([*base, "--lr", "-1"]) == 2
    assert "lr=-1.0 is invalid" in capsys.readouterr().err
    assert (
        main(
            [
                "train",
                "--dataset",
                "spurious-shapes",
                "--model",
                "vit_tiny_patch16_224",
                "--pretrained",
                str(trained / "best.pt"),
                "--out",
                str(tmp_path),
                *SHAPES,
            ]
        )
        == 2
    )
    assert "holds a test_resnet but --model is vit_tiny_patch16_224" in capsys.readouterr().err
    assert not (tmp_path / "best.pt").exists()


def test_an_interrupted_training_resumes_to_the_same_weights_and_history(tmp_path):
    """`train --resume`: Ctrl-C after an epoch, then resume = the uninterrupted run (weights, history, best.pt)."""

    def setup():
        torch.manual_seed(7)
        surface = create_model("test_resnet", num_classes=3, image_size=32)
        config = TrainConfig(epochs=3, batch_size=8, lr=1e-3, augment="light", warmup_epochs=0.5)
        return (surface, config, *prepared(surface, config, n_train=16, n_val=3))

    surface, config, train_ds, val_ds = setup()
    full = train_classifier(
        surface, train_ds, val_ds, config, seed=3, out_dir=tmp_path / "a", show_progress=False
    )

    def stop_after_second(row):
        if row["epoch"] == 2:
            raise KeyboardInterrupt

    surface, config, train_ds, val_ds = setup()
    with pytest.raises(KeyboardInterrupt):
        train_classifier(
            surface,
            train_ds,
            val_ds,
            config,
            seed=3,
            out_dir=tmp_path / "b",
            show_progress=False,
            on_epoch_end=stop_after_second,
        )
    assert (tmp_path / "b" / training.LAST_NAME).is_file()
    # other settings than the interrupted run's are refused, naming the difference
    surface, config, train_ds, val_ds = setup()
    with pytest.raises(UserError, match=r"other settings \(lr 0.001 then, 0.01 now\)"):
        train_classifier(
            surface,
            train_ds,
            val_ds,
            config.with_overrides(lr=1e-2),
            seed=3,
            out_dir=tmp_path / "b",
            show_progress=False,
            resume=True,
        )
    surface, config, train_ds, val_ds = setup()
    resumed = train_classifier(
        surface, train_ds, val_ds, config, seed=3, out_dir=tmp_path / "b", show_progress=False, resume=True
    )
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in full.history]
    assert resumed.best_epoch == full.best_epoch
    a, b = full.surface.model.state_dict(), resumed.surface.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    saved = torch.load(tmp_path / "b" / "best.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(saved[k], b[k]) for k in b)
    assert not (tmp_path / "b" / training.LAST_NAME).exists()  # finished: nothing left to resume
    log = json.loads((tmp_path / "b" / "train_log.json").read_text())
    assert len(log["history"]) == 3


def test_scratch_64_preset_trains_any_dataset_offline_with_warmup_from_the_command_line(tmp_path, capsys):
    """A Waterbirds-format folder of one's own: `--preset scratch-64` is random init at 64 px with the
    bundled benchmarks' recipe; the default preset would need pretrained weights (offline: refused)."""
    root, out = tmp_path / "wb", tmp_path / "run"
    assert main(["data", "make-fixture", "waterbirds", "--root", str(root)]) == 0
    base = ["train", "--dataset", "waterbirds", "--root", str(root), "--epochs", "1", "--no-progress"]
    assert main([*base, "--out", str(out)]) == 2
    assert "--preset scratch-64" in capsys.readouterr().err
    assert main([*base, "--preset", "scratch-64", "--warmup-epochs", "0.25", "--out", str(out)]) == 0
    ckpt = load_checkpoint(out / "best.pt")
    assert ckpt.surface.spec.arch == "resnet18" and ckpt.surface.data_config.image_size == 64
    cfg = ckpt.train_config
    assert cfg["pretrained"] is False and cfg["warmup_epochs"] == 0.25 and cfg["lr"] == 2e-3
    assert (
        cfg["description"].startswith("random initialisation") and "warm-up 0.25 epochs" in cfg["description"]
    )
