"""vitkit.optimize: the fast path computes what the model computes (float64 reference), int8 agrees with float32
on real CIFAR-10 images, and a machine that cannot compile falls back to eager with one warning."""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import vitkit
from helpers import numpy_vit_logits
from paths import CIFAR
from vitkit.config import ViTConfig
from vitkit.fast import compiler_problem

needs_torchao = pytest.mark.skipif(importlib.util.find_spec("torchao") is None, reason="int8 needs torchao")
TINY = ViTConfig(img_size=(32, 32), patch_size=(8, 8), embed_dim=32, depth=2, num_heads=2, mlp_dim=64, num_classes=10)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run ~10x faster on one thread than on two cores shared with other jobs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_model(seed: int = 0, **changes) -> vitkit.VisionTransformer:
    torch.manual_seed(seed)
    return vitkit.VisionTransformer(TINY.replace(**changes)).eval()


def float64_logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The reference: the same weights through an independent float64 NumPy forward pass."""
    return torch.from_numpy(numpy_vit_logits(model.state_dict(), model.cfg, x.numpy()))


def test_the_reference_agrees_with_the_eager_model():
    model = tiny_model()
    x = torch.randn(2, 3, 32, 32)
    ref = float64_logits(model, x)
    assert ref.abs().max() > 0.1  # not a degenerate output the comparisons could pass by accident
    torch.testing.assert_close(model(x).double(), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(compiler_problem(torch.device("cpu")) is not None, reason="needs a C++ compiler for Inductor")
def test_fp32_compiled_matches_float64_reference():
    model = tiny_model()
    x = torch.randn(3, 3, 32, 32)
    fast = vitkit.optimize(model, "fp32", compile=True)
    assert fast.compiled
    out = fast(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), float64_logits(model, x), atol=1e-5, rtol=1e-5)
    assert fast(x[:1]).shape == (1, 10)  # another batch size recompiles instead of failing


def test_bf16_weights_within_bf16_tolerance():
    model = tiny_model()
    x = torch.randn(4, 3, 32, 32)
    fast = vitkit.optimize(model, "bf16", compile=False)
    assert fast.eager.inner.head.weight.dtype == torch.bfloat16  # stored in bf16, not autocast
    assert model.head.weight.dtype == torch.float32  # the original is left alone
    ref = float64_logits(model, x)
    err = (fast(x).double() - ref).abs().max().item()
    # bf16 keeps 8 significant bits: per-op relative error 2^-9, a few dozen ops deep.
    assert err < 0.02 * ref.abs().max().item() + 1e-3, err


def test_compile_fallback_without_compiler():
    from torch._inductor import config as inductor_config

    model = tiny_model()
    x = torch.randn(2, 3, 32, 32)
    no_compiler = inductor_config.patch({"cpp.cxx": ("/nonexistent/vitkit-test-c++",)})
    with no_compiler, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fast = vitkit.optimize(model, "fp32", compile=True)
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and "no C++ compiler" in messages[0] and "\n" not in messages[0]
    assert not fast.compiled
    torch.testing.assert_close(fast(x).double(), float64_logits(model, x), atol=1e-5, rtol=1e-5)


def test_bad_arguments_name_the_fix():
    with pytest.raises(ValueError, match="calibration"):
        vitkit.optimize(tiny_model(), "int8")
    with pytest.raises(ValueError, match="fp32, bf16, int8"):
        vitkit.optimize(tiny_model(), "fp16")
    with pytest.raises(ValueError, match="inference only"):
        vitkit.optimize(tiny_model(), "fp32", compile=False).train()


def _cifar(split: str, per_class: int, skip: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_class`` images of each class after the first ``skip``, normalised to [-1, 1] (mean 0.5, std 0.5)."""
    images, labels = [], []
    for label, folder in enumerate(sorted(p for p in (CIFAR / split).iterdir() if p.is_dir())):
        for path in sorted(folder.glob("*.jpg"))[skip : skip + per_class]:
            with Image.open(path) as img:
                images.append(np.asarray(img.convert("RGB")))
            labels.append(label)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return x, torch.tensor(labels)


def _trained_tiny() -> vitkit.VisionTransformer:
    """A tiny ViT trained for a few seconds on 2,000 CIFAR-10 images: confident enough that agreement means
    something (an untrained model's near-tied logits flip under any perturbation)."""
    x, y = _cifar("train", 200)
    model = tiny_model(embed_dim=64, num_heads=4, mlp_dim=128).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.05)
    gen = torch.Generator().manual_seed(0)
    for _ in range(150):
        idx = torch.randint(0, len(x), (128,), generator=gen)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def _int8_agreement(compile: bool) -> tuple[float, float, float]:
    torch.manual_seed(0)
    model = _trained_tiny()
    calib, _ = _cifar("train", 30, skip=200)  # calibration on other training images, agreement on test images
    x, y = _cifar("test", 100)
    fast = vitkit.optimize(model, "int8", compile=compile, calibration=calib)
    with torch.no_grad():
        ref = model(x).argmax(-1)
    out = fast(x).argmax(-1)
    return (out == ref).float().mean().item(), (ref == y).float().mean().item(), (out == y).float().mean().item()


@pytest.mark.skipif(not CIFAR.is_dir(), reason="needs ../shared/data/cifar10")
@needs_torchao
def test_int8_agrees_with_float32_on_cifar10():
    agreement, acc_fp32, acc_int8 = _int8_agreement(compile=False)
    assert acc_fp32 > 0.2  # trained well above chance (10%), so top-1 is not a coin toss
    assert agreement >= 0.98, (agreement, acc_fp32, acc_int8)
    assert abs(acc_int8 - acc_fp32) < 0.03


@pytest.mark.slow
@needs_torchao
@pytest.mark.skipif(not CIFAR.is_dir(), reason="needs ../shared/data/cifar10")
@pytest.mark.skipif(compiler_problem(torch.device("cpu")) is not None, reason="needs a C++ compiler for Inductor")
def test_int8_compiled_agrees_with_float32_on_cifar10():
    agreement, acc_fp32, acc_int8 = _int8_agreement(compile=True)
    assert agreement >= 0.98, (agreement, acc_fp32, acc_int8)


def _folder_images(root) -> tuple[torch.Tensor, torch.Tensor]:
    """An image folder's images, normalised to [-1, 1] (the tiny model's mean 0.5, std 0.5), and labels."""
    images, labels = [], []
    for label, folder in enumerate(sorted(p for p in root.iterdir() if p.is_dir())):
        for path in sorted(folder.iterdir()):
            with Image.open(path) as img:
                images.append(np.asarray(img.convert("RGB")))
            labels.append(label)
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0, torch.tensor(labels)


def _trained_on(root, model: vitkit.VisionTransformer, steps: int = 60) -> vitkit.VisionTransformer:
    x, y = _folder_images(root)
    opt = torch.optim.AdamW(model.train().parameters(), lr=3e-3)
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@needs_torchao
def test_cli_precision_flags(tmp_path, capsys):
    """predict/eval --precision int8 agree with float32 on a tiny folder; export --precision bf16 writes a program
    whose logits match the float64 reference at bf16 tolerance."""
    from train_data import make_image_folder
    from vitkit.cli.main import main

    data = make_image_folder(tmp_path / "images", train_per_class=16, test_per_class=4, size=32)
    model = _trained_on(data / "train", tiny_model(num_classes=4))  # confident: untrained logits are near ties
    ckpt = tmp_path / "model.safetensors"
    vitkit.save_pretrained(model, ckpt)
    images = sorted(str(p) for p in (data / "test").rglob("*.png"))

    def top1(*flags: str) -> list[int]:
        assert main(["predict", *images, "--checkpoint", str(ckpt), "--topk", "1", "--json", *flags]) == 0
        import json

        return [p["top"][0]["index"] for p in json.loads(capsys.readouterr().out)]

    fp32 = top1("--precision", "fp32")
    assert np.mean(np.array(fp32) == _folder_images(data / "test")[1].numpy()) >= 0.9  # a model with answers
    assert top1("--precision", "int8") == fp32
    args = ["eval", "--checkpoint", str(ckpt), "--data", str(data), "--workers", "0", "--out", str(tmp_path / "ev")]
    assert main([*args, "--precision", "int8"]) == 0
    int8_line = capsys.readouterr().out.splitlines()[0]
    assert main([*args, "--precision", "fp32"]) == 0
    assert int8_line.split("loss")[0] == capsys.readouterr().out.splitlines()[0].split("loss")[0]  # same top-1/5

    out = tmp_path / "model_bf16.pt2"
    assert main(["export", str(ckpt), "--format", "torch_export", "--precision", "bf16", "--out", str(out)]) == 0
    x = torch.randn(2, 3, 32, 32)
    logits = torch.export.load(str(out)).module()(x)
    ref = float64_logits(model, x)
    assert logits.dtype == torch.float32
    assert (logits.double() - ref).abs().max().item() < 0.02 * ref.abs().max().item() + 1e-3
