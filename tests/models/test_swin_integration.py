"""Swin through the same interfaces as ViT: train (with layer decay and gradient checkpointing), evaluate, predict,
few-shot, fine-tune at a new resolution and window, and `vitkit visualize` (what applies, and a one-line refusal
of what does not); on the tiny learnable image folder of the engine tests."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import vitkit
from train_data import CLASSES, make_image_folder, run_vitkit, tiny_recipe
from vitkit.models.swin import SwinTransformer
from vitkit.train import recipe_from_dict, train_model
from vitkit.viz.swin import swin_attention_distance, window_attention_at

SWIN = {"name": "swin_cifar_patch2_window4_32", "embed_dim": 16, "depths": [2, 2], "num_heads": [2, 4],
        "window_size": 4, "mlp_ratio": 2.0}  # fmt: skip  # 16 px: 8x8 then 4x4 maps


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(image folder, training result, recipe) of a tiny Swin trained by the engine, as `vitkit train` runs it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads only contend on a shared machine
    tmp = tmp_path_factory.mktemp("swin")
    data = make_image_folder(tmp / "images")
    spec = tiny_recipe(data, tmp / "runs", optim={"lr": 1e-2, "layer_decay": 0.9},
                       train={"epochs": 12, "grad_checkpointing": True})  # fmt: skip
    spec["model"] = dict(SWIN)
    recipe = recipe_from_dict(spec)
    yield data, train_model(recipe), recipe
    torch.set_num_threads(threads)


def test_training_learns_and_saves_a_swin(trained):
    data, result, _ = trained
    assert isinstance(result.model, SwinTransformer)
    assert result.final_eval.top1 >= 0.9  # four quadrant colours: a model that learns gets them all
    path = result.run_dir / "model.safetensors"
    model = vitkit.load_pretrained(path)
    assert isinstance(model, SwinTransformer) and model.cfg.extra["classes"] == CLASSES and model.cfg.depths == (2, 2)


def test_evaluate_predict_and_fewshot_take_the_swin_checkpoint(trained):
    data, result, _ = trained
    path = result.run_dir / "model.safetensors"
    metrics = vitkit.evaluate(path, str(data), device="cpu", num_workers=0, precision="fp32")
    assert metrics.top1 == pytest.approx(result.final_eval.top1, abs=1 / 64)
    images = [data / "test" / name / "0.png" for name in CLASSES]
    predictions = vitkit.predict(images, path, topk=2, device="cpu")
    assert [p.labels[0] for p in predictions] == CLASSES
    few = vitkit.fewshot_evaluate(path, str(data), shots=(5,), seeds=2, device="cpu", num_workers=0, precision="fp32")
    assert few.mean(5) >= 0.5  # pre-logits features of a trained model separate the classes linearly


def test_finetune_at_a_new_resolution_and_window(trained, tmp_path):
    data, result, recipe = trained
    model = dataclasses.replace(recipe.model, overrides={"window_size": 8})  # 32 px: 16x16 and 8x8 maps
    train = dataclasses.replace(recipe.train, epochs=1, output_dir=str(tmp_path), grad_checkpointing=False)
    tuned = vitkit.finetune(result.run_dir / "model.safetensors", dataclasses.replace(recipe, model=model, train=train),
                            img_size=32)  # fmt: skip
    assert tuned.model.cfg.img_size == (32, 32) and tuned.model.cfg.window_size == 8
    assert tuned.model.layers[0].blocks[0].attn.relative_position_bias_table.shape == (15 * 15, 2)


def test_window_attention_maps_and_distances_read_the_windows(trained):
    _, result, _ = trained
    model = result.model.eval()
    x = torch.randn(2, 3, 16, 16)
    maps = window_attention_at(model, x, point=(1, 1))  # the top-left token of every stage
    assert [tuple(m.shape) for m in maps] == [(2, 2, 8, 8), (2, 2, 8, 8), (2, 4, 4, 4), (2, 4, 4, 4)]
    torch.testing.assert_close(maps[0].sum(dim=(-2, -1)), torch.ones(2, 2))  # all of its window, nowhere else
    assert maps[0][..., 4:, :].sum() == 0 and maps[0][..., :, 4:].sum() == 0
    # The shifted block's window around (0, 0) is the wrapped one; the mask keeps only the 2x2 corner region.
    assert maps[1][..., 2:, :].sum() < 1e-6 and maps[1][..., :, 2:].sum() < 1e-6
    distances, uniform = swin_attention_distance(model, x)
    assert len(distances) == 4 and distances[2].shape == (4,)
    assert all(0 <= float(d.max()) <= 3 * u for d, u in zip(distances, uniform))
    assert uniform[2] == pytest.approx(2 * uniform[0])  # stage 2 tokens are twice as far apart


def test_visualize_cli_draws_windows_and_refuses_rollout_in_one_line(trained, tmp_path):
    data, result, _ = trained
    path = result.run_dir / "model.safetensors"
    image = data / "test" / CLASSES[0] / "0.png"
    run = lambda *args: run_vitkit("visualize", path, image, *args)
    done = run("--kind", "all", "--point", "4,12", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["distance.png", "filters.png", "windows-1-north_east-0-all.png"]
    refused = run("--kind", "rollout", "--out", str(tmp_path))
    assert refused.returncode != 0 and "Swin has no class token" in refused.stderr
    *before, error = refused.stderr.strip().splitlines()  # before: "loaded ..." where logging is on
    assert "Traceback" not in refused.stderr and all(line.startswith("loaded ") for line in before)
    assert error.startswith("vitkit visualize: error: ") and "Swin has no class token" in error
