"""MAE pre-training in the engine: an unlabelled image folder, the masked_reconstruction objective, resume, the
reconstruction picture, and the recipes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vitkit.config import ViTConfig
from vitkit.data.sources import UNLABELLED, image_folder, split_source
from vitkit.registry import get_config
from vitkit.train import load_recipe, train_model
from vitkit.train.callbacks import Callback
from vitkit.train.catalog import recipe_summary, resolve_recipe
from vitkit.train.objectives import MaskedReconstruction, build_objective
from vitkit.train.recipe import recipe_from_dict
from vitkit.train.state import load_checkpoint
from vitkit.weights import load_pretrained

TINY_MODEL = dict(
    name="mae_vit_cifar_patch4_32", embed_dim=32, depth=2, num_heads=2, mlp_dim=64, patch_size=4,
    decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2, decoder_mlp_dim=32,
)  # fmt: skip


def _unlabelled_folder(root: Path, count: int = 48, size: int = 16) -> Path:
    """``root/<image>.png`` with no class folders: smooth gradients plus noise, something to reconstruct."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    ramp = np.linspace(0, 1, size)
    for i in range(count):
        base = rng.uniform(0, 255, 3) * (ramp[:, None, None] if i % 2 else ramp[None, :, None])
        img = np.clip(base + rng.normal(0, 8, (size, size, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(root / f"{i:03d}.png")
    (root / "notes.txt").write_text("not an image")
    return root


def _recipe(data: Path, out: Path, **train) -> dict:
    return {
        "name": "tiny_mae",
        "model": TINY_MODEL,
        "objective": {"name": "masked_reconstruction", "mask_ratio": 0.75},
        "data": {
            "dataset": str(data),
            "img_size": 16,
            "crop_pct": 1.0,
            "train_crop": "rrc",
            "scale": [0.5, 1.0],
            "hflip": 0.5,
            "in_memory": True,
            "cache": False,
            "num_workers": 0,
        },  # fmt: skip
        "optim": {"name": "adamw", "lr": 2e-3, "weight_decay": 0.05, "betas": [0.9, 0.95]},
        "schedule": {"decay": "cosine", "warmup_steps": 3},
        "train": {
            "epochs": 3,
            "batch_size": 8,
            "precision": "fp32",
            "output_dir": str(out),
            "progress": False,
            "threads": 1,
            "log_every_steps": 2,
            "eval_every_epochs": 1,
            "eval_subset": 16,
            **train,
        },  # fmt: skip
    }


def test_a_folder_without_class_folders_is_an_unlabelled_set(tmp_path):
    root = _unlabelled_folder(tmp_path / "imgs", count=5)
    for source in (image_folder(root), split_source(root, "train")):
        assert source.classes == [] and source.targets == [UNLABELLED] * 5 and len(source.paths) == 5
    with pytest.raises(ValueError, match="no class folders"):
        image_folder((tmp_path / "empty").mkdir() or tmp_path / "empty")


def test_objective_options_and_bad_ratio():
    assert build_objective({"name": "masked_reconstruction"}).mask_ratio is None
    with pytest.raises(ValueError, match=r"mask_ratio must lie in \[0, 1\)"):
        build_objective({"name": "masked_reconstruction", "mask_ratio": 1.0})
    with pytest.raises(ValueError, match=r"mask_ratio must lie in \[0, 1\)"):
        recipe_from_dict({"model": {"name": "mae_vit_cifar_patch4_32"},
                          "objective": {"name": "masked_reconstruction", "mask_ratio": -0.5}})  # fmt: skip


def test_objective_uses_no_labels_and_evaluates_on_fixed_masks():
    from vitkit.models.mae import MaskedAutoencoder
    from vitkit.tasks import EvalContext, get_task

    cfg = recipe_from_dict({"model": TINY_MODEL}).model
    model = MaskedAutoencoder(get_config(cfg.name, img_size=16, **cfg.overrides))
    x = torch.randn(4, 3, 16, 16)
    objective = MaskedReconstruction(mask_ratio=0.5)
    loss, logs = objective.loss(model, (x, None))
    assert loss.ndim == 0 and loss.requires_grad and logs == {}
    loader = [(x, torch.full((4,), UNLABELLED))]
    task = get_task("masked_image_modeling")
    torch.manual_seed(1)
    first = task.evaluate(model, loader, EvalContext(), objective)
    after = torch.rand(3)
    torch.manual_seed(1)
    assert task.evaluate(model, loader, EvalContext(), objective) == first  # the same masks every evaluation ...
    assert torch.equal(torch.rand(3), after)  # ... drawn without moving the training random stream


class _Interrupt(Callback):
    def on_step(self, trainer, row):
        if trainer.global_step == 10:  # 6 steps per epoch: mid-epoch 2, two steps after the step-8 checkpoint
            raise KeyboardInterrupt


def test_pretrain_unlabelled_then_resume_bit_identical(tmp_path):
    data = _unlabelled_folder(tmp_path / "imgs")
    whole = train_model(recipe_from_dict(_recipe(data, tmp_path / "runs", run_name="whole")))
    rows = [r for r in whole.history if "eval_loss" in r]
    assert len(rows) == 3 and all(np.isfinite(r["eval_loss"]) for r in rows)

    recipe = recipe_from_dict(_recipe(data, tmp_path / "runs", run_name="cut", checkpoint_every_steps=4))
    with pytest.raises(KeyboardInterrupt):
        train_model(recipe, callbacks=[_Interrupt()])
    assert load_checkpoint(tmp_path / "runs" / "cut" / "checkpoints" / "last.pt")["progress"]["global_step"] == 8
    resumed = train_model(recipe, resume=True)
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert [r["eval_loss"] for r in resumed.history if "eval_loss" in r][-1] == rows[-1]["eval_loss"]

    model = load_pretrained(tmp_path / "runs" / "whole" / "model.safetensors")
    assert type(model).__name__ == "MaskedAutoencoder" and model.cfg.embed_dim == 32
    from vitkit.viz.draw import visualize

    written = visualize(model, [data], "reconstruction", tmp_path / "viz", max_images=3)
    assert [p.name for p in written] == ["reconstruction.png"] and written[0].stat().st_size > 1000


def test_finetune_takes_a_whole_mae_checkpoint(tmp_path, caplog):
    from train_data import make_image_folder
    from vitkit.train import finetune

    mae = train_model(recipe_from_dict(_recipe(_unlabelled_folder(tmp_path / "imgs"), tmp_path / "runs", epochs=1,
                                               eval_every_epochs=0, run_name="mae")))  # fmt: skip
    labelled = make_image_folder(tmp_path / "labelled", train_per_class=8, test_per_class=4)
    ft = recipe_from_dict({
        "model": {"name": "vit_tiny_patch4_32", "global_pool": "avg", "fc_norm": True, "drop_path_rate": 0.1},
        "data": {"dataset": str(labelled), "img_size": 16, "crop_pct": 1.0, "train_crop": "pad", "padding": 2,
                 "in_memory": True, "cache": False, "num_workers": 0, "label_smoothing": 0.1},
        "optim": {"name": "adamw", "lr": 1e-3, "layer_decay": 0.65},
        "train": {"epochs": 1, "batch_size": 8, "precision": "fp32", "output_dir": str(tmp_path / "runs"),
                  "run_name": "ft", "progress": False, "threads": 1},
    })  # fmt: skip
    with caplog.at_level("WARNING", logger="vitkit.weights"):
        result = finetune(mae.run_dir / "model.safetensors", ft)
    assert any("whole MAE" in r.getMessage() for r in caplog.records)
    assert result.model.cfg.num_classes == 4 and result.model.cfg.global_pool == "avg"
    torch.testing.assert_close(  # the encoder's weights were the starting point (layer decay keeps block 0 close)
        result.model.patch_embed.proj.weight, mae.model.encoder.patch_embed.proj.weight, atol=0.05, rtol=0
    )
    assert 0.0 <= result.final_eval.top1 <= 1.0


def test_reconstruction_kind_needs_an_mae(tmp_path):
    from vitkit.models.vit import VisionTransformer
    from vitkit.viz.draw import visualize

    data = _unlabelled_folder(tmp_path / "imgs", count=2)
    vit = VisionTransformer(ViTConfig(img_size=16, patch_size=4, embed_dim=32, depth=1, num_heads=2, mlp_dim=32))
    with pytest.raises(ValueError, match="needs an MAE checkpoint"):
        visualize(vit, [data], "reconstruction", tmp_path)


@pytest.mark.parametrize(
    "name", ["mae_cifar10", "finetune_mae_cifar10", "imagenet_mae_vit_b16_pretrain", "finetune_mae_vit_b16"]
)
def test_recipes_parse_and_state_their_command(name):
    summary = recipe_summary(resolve_recipe(name))  # shipped in vitkit/recipes/
    assert name in summary["command"] and summary["expected"] and summary["runtime"]
    assert load_recipe(name).name == name
