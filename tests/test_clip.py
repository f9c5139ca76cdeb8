"""CLIP for guidance: prompts and text embeddings, the loader's errors, the synthetic CLIP."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from neuroinspect.cli import main
from neuroinspect.clip import TEMPLATES, ClipUnavailableError, class_text_embeddings, load_clip, prompts_for
from neuroinspect.clip.loader import default_synthetic_path
from neuroinspect.clip.synthetic import (
    is_synthetic_file,
    load_synthetic_clip,
    random_clip,
    retrieval_metrics,
    soft_clip_loss,
    text_bank,
    tiny_clip_config,
    train_synthetic_clip,
)
from neuroinspect.errors import UserError

SMALL = {"n_train": 24, "n_val": 8, "n_test": 8, "image_size": 32}


@pytest.fixture(scope="module")
def clip32():  # noqa: ANN201
    cfg = tiny_clip_config(
        image_size=32, embed_dim=64, vision_width=64, vision_layers=1, text_width=64, text_layers=1
    )
    return random_clip(seed=0, config=cfg)


def test_templates_are_the_references_32() -> None:
    assert len(TEMPLATES) == 32 and len(set(TEMPLATES)) == 32
    assert TEMPLATES[0] == "a photo of a part of a {}."
    assert TEMPLATES[10] == "a picture of a part of a {}."  # the "picture" copies follow the 10 "photo" ones
    assert TEMPLATES[-1] == "a bright photo of the {}."
    assert prompts_for("food, steak")[2] == "a photo of a food, steak."  # the full class string


def test_text_embedding_is_the_mean_of_normalized_template_embeddings(clip32) -> None:  # noqa: ANN001
    emb = class_text_embeddings(clip32, ["triangle", "square"])
    assert emb.shape == (2, 64)
    with torch.no_grad():
        tokens = clip32.tokenizer(prompts_for("square"))
        manual = F.normalize(clip32.model.encode_text(tokens), dim=-1).mean(0)
    assert torch.allclose(emb[1], manual, atol=1e-5)
    assert float(emb[1].norm()) < 1.0  # not re-normalized, as in the reference
    unit = class_text_embeddings(clip32, ["square"], renormalize=True)
    assert float(unit[0].norm()) == pytest.approx(1.0, abs=1e-5)
    assert torch.allclose(unit[0], manual / manual.norm(), atol=1e-5)


def test_clip_model_resizes_and_normalizes(clip32) -> None:  # noqa: ANN001
    x = torch.rand(2, 3, 48, 48)
    pre = clip32.preprocess(x)
    assert pre.shape == (2, 3, 32, 32)
    e = clip32.encode_image(x)
    assert e.shape == (2, 64) and torch.allclose(e.norm(dim=1), torch.ones(2), atol=1e-5)
    assert all(not p.requires_grad for p in clip32.model.parameters())


def test_loader_errors_are_user_errors_and_fail_offline_at_once(tmp_path) -> None:  # noqa: ANN001
    # HF_HUB_OFFLINE=1 (conftest) and an empty cache: the reference's CLIP cannot be had
    with pytest.raises(ClipUnavailableError, match="not available offline") as err:
        load_clip("ViT-B-32:laion2b_s34b_b79k", cache_dir=tmp_path / "empty-cache")
    assert isinstance(err.value, UserError) and "synthetic-clip" in str(err.value)
    with pytest.raises(ClipUnavailableError, match="no architecture"):
        load_clip("ViT-Z-99:whatever")
    with pytest.raises(ClipUnavailableError, match="no pretrained tag"):
        load_clip("ViT-B-32:not_a_tag")
    with pytest.raises(ClipUnavailableError, match="does not exist"):
        load_clip(str(tmp_path / "missing.pt"))
    with pytest.raises(ClipUnavailableError, match="no synthetic CLIP for dataset"):
        load_clip("synthetic-clip:spurious-shapes")
    junk = tmp_path / "junk.pt"
    torch.save({"x": torch.zeros(1)}, junk)
    with pytest.raises(ClipUnavailableError, match="ARCH:"):
        load_clip(str(junk))
    assert load_clip("synthetic-clip:random").image_size == (64, 64)


def test_soft_clip_loss_is_clip_loss_with_one_text_per_image() -> None:
    from open_clip.loss import ClipLoss

    g = torch.Generator().manual_seed(0)
    img = F.normalize(torch.randn(5, 8, generator=g), dim=1)
    txt = F.normalize(torch.randn(5, 8, generator=g), dim=1)
    scale = torch.tensor(10.0)
    ours = soft_clip_loss(img, txt, torch.eye(5, dtype=torch.bool), scale)
    assert ours.item() == pytest.approx(ClipLoss()(img, txt, scale).item(), rel=1e-5)
    # several matching texts: targets spread evenly over them, in both directions
    match = torch.eye(5, dtype=torch.bool)
    match[0, 1] = match[1, 0] = match[2, 4] = True
    logits = scale * img @ txt.T
    m = match.float()
    i2t = -sum((m[i] / m[i].sum() * logits[i].log_softmax(0)).sum() for i in range(5)) / 5
    t2i = -sum((m[:, j] / m[:, j].sum() * logits[:, j].log_softmax(0)).sum() for j in range(5)) / 5
    assert soft_clip_loss(img, txt, match, scale).item() == pytest.approx(float(0.5 * (i2t + t2i)), rel=1e-5)


def test_synthetic_clip_trains_saves_and_loads(tmp_path) -> None:  # noqa: ANN001
    from neuroinspect.datasets import load_dataset

    cfg = tiny_clip_config(
        image_size=32, embed_dim=32, vision_width=32, vision_layers=1, text_width=32, text_layers=1
    )
    out = tmp_path / "clip.pt"
    res = train_synthetic_clip(
        "spurious-shapes",
        out,
        params=SMALL,
        config=cfg,
        batch_size=8,
        max_steps=3,
        seed=0,
        show_progress=False,
    )
    assert res.path == out and out.is_file() and is_synthetic_file(out)
    m = res.metrics
    assert m["n_images"] == 8 and m["n_captions"] == 4 and m["chance_top1"] == 0.25
    for key in ("top1", "core_acc", "spurious_acc", "zero_shot_class_acc"):
        assert 0.0 <= m[key] <= 1.0
    assert set(m["core_acc_by_value"]) == {"triangle", "square"} and set(m["spurious_acc_by_value"]) == {
        "water",
        "land",
    }
    assert (
        res.train_config["steps"] == 3
        and res.train_config["pretrain_steps"] == 3
        and res.train_config["seed"] == 0
    )
    assert (
        res.train_config["counterfactual"] and res.train_config["n_train"] == 4 * SMALL["n_train"]
    )  # 2 shapes x 2 backgrounds

    loaded = load_synthetic_clip(out)
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(loaded.encode_image(x), res.clip.encode_image(x), atol=1e-5)
    assert loaded.info["metrics"]["top1"] == m["top1"]
    for spec in (str(out), f"synthetic-clip:{out}"):
        assert torch.allclose(load_clip(spec).encode_image(x), res.clip.encode_image(x), atol=1e-5)
    test = load_dataset("spurious-shapes", None, "test", None, **SMALL)
    assert retrieval_metrics(loaded, test)["top1"] == m["top1"]
    bank = text_bank(test)
    assert bank.texts[0] == "a photo of a triangle on water" and len(bank.texts) == 4 + 2 * 32 + 2 * 32

    # same seed, same model
    again = train_synthetic_clip(
        "spurious-shapes",
        None,
        params=SMALL,
        config=cfg,
        batch_size=8,
        max_steps=3,
        seed=0,
        show_progress=False,
    )
    assert torch.allclose(again.clip.encode_image(x), res.clip.encode_image(x), atol=1e-6)


def test_clip_train_command(tmp_path, capsys) -> None:  # noqa: ANN001
    out = tmp_path / "c.pt"
    argv = [
        "clip",
        "train",
        "--dataset",
        "spurious-shapes",
        "--out",
        str(out),
        "--max-steps",
        "1",
        "--batch-size",
        "8",
    ]
    argv += [f"--param={k}={v}" for k, v in SMALL.items()]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "top-1 caption retrieval" in text and "core attribute" in text and str(out) in text
    assert is_synthetic_file(out)
    # the benchmark name resolves to the default location once a model is there
    default = default_synthetic_path("spurious-shapes")
    default.parent.mkdir(parents=True, exist_ok=True)
    default.write_bytes(out.read_bytes())
    assert load_clip("synthetic-clip:spurious-shapes").info["dataset"] == "spurious-shapes"
    assert main(["clip", "train", "--dataset", "flowers102", "--out", str(out)]) == 2
    assert "bundled benchmark" in capsys.readouterr().err
