"""precision: auto picks bf16 only where it trains faster (GPU, AMX CPU); the recipe default and the log say so."""

import torch

from vitkit.train.recipe import TrainConfig
from vitkit.utils import device as device_mod
from vitkit.utils.device import resolve_precision


def test_explicit_precisions_pass_through():
    for p in ("fp32", "bf16"):
        assert resolve_precision(p, torch.device("cpu")) == p


def test_auto_on_cpu_follows_the_matrix_units(monkeypatch):
    monkeypatch.setattr(device_mod, "cpu_has_bf16_matrix_units", lambda: True)
    assert resolve_precision("auto", torch.device("cpu")) == "bf16"
    monkeypatch.setattr(device_mod, "cpu_has_bf16_matrix_units", lambda: False)
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"


def test_auto_on_cuda_follows_bf16_support(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert resolve_precision("auto", torch.device("cuda")) == "fp32"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"


def test_cpuinfo_flag_is_read(monkeypatch, tmp_path):
    fake = tmp_path / "cpuinfo"
    fake.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 amx_bf16 amx_tile\n")
    real_open = open
    monkeypatch.setattr("builtins.open", lambda p, *a, **k: real_open(fake if p == "/proc/cpuinfo" else p, *a, **k))
    assert device_mod.cpu_has_bf16_matrix_units()
    fake.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16\n")
    assert not device_mod.cpu_has_bf16_matrix_units()


def test_recipe_default_is_auto():
    assert TrainConfig().precision == "auto"


def test_evaluation_defaults_to_auto_and_resolves_it(monkeypatch):
    """evaluate_model's default precision is auto: float32 logits without matrix units, bf16 autocast with them."""
    from torch import nn

    from vitkit.eval.classification import evaluate_model

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 4))
    x = torch.randn(8, 3, 2, 2)
    batches = [(x, torch.arange(8) % 4)]
    seen = []
    model.register_forward_hook(lambda m, a, out: seen.append(out.dtype))
    monkeypatch.setattr(device_mod, "cpu_has_bf16_matrix_units", lambda: False)
    evaluate_model(model, batches, progress=False)
    monkeypatch.setattr(device_mod, "cpu_has_bf16_matrix_units", lambda: True)
    evaluate_model(model, batches, progress=False)
    assert seen == [torch.float32, torch.bfloat16]
