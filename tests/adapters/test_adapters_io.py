"""Adapter files: exact round trip, refusal of another base, merged export, ensembles, and peft interop."""

from __future__ import annotations

import hashlib
from functools import partial
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from helpers import tiny_config
from vitkit import VisionTransformer, load_pretrained, save_pretrained
from vitkit.adapters import AdapterConfig, add_adapters, attach_adapters, backbone_hash, load_ensemble, save_adapters
from vitkit.families import build_model
from vitkit.weights.errors import CheckpointError


def _x(batch: int = 3, size: int = 16) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))


def _base(tmp_path: Path, seed: int = 0, name: str = "base.safetensors") -> Path:
    torch.manual_seed(seed)
    return save_pretrained(VisionTransformer(tiny_config()), tmp_path / name)


def _train(model: torch.nn.Module, steps: int = 3, size: int = 16) -> None:
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(_x(4, size)), torch.tensor([0, 1, 2, 1])).backward()
        opt.step()
    model.eval()


def _adapted(base: Path, cfg: AdapterConfig, **overrides) -> torch.nn.Module:
    model = load_pretrained(base, num_classes=3, **overrides)
    add_adapters(model, cfg)
    _train(model, size=overrides.get("img_size", 16))
    return model


@pytest.mark.parametrize(
    "cfg",
    [
        AdapterConfig(method="lora", rank=4, lora_mlp=True, dropout=0.1),
        AdapterConfig(method="bottleneck", bottleneck=8),
        AdapterConfig(method="parallel", bottleneck=8),
        AdapterConfig(method="prompt", num_prompts=2, deep=True),
        AdapterConfig(method="bottleneck", bottleneck=8, head_adapter=8),  # encoder -> adapter -> head too
        AdapterConfig(method="lora", rank=2, head_adapter=4),
    ],
    ids=lambda c: c.method + ("+head_adapter" if c.head_adapter else ""),
)
def test_save_and_load_round_trip_exactly(tmp_path: Path, cfg: AdapterConfig) -> None:
    base = _base(tmp_path)
    model = _adapted(base, cfg)
    path = save_adapters(model, tmp_path / "adapters.safetensors")
    restored = attach_adapters(partial(load_pretrained, base), path)
    with torch.no_grad():
        assert torch.equal(restored(_x()), model(_x()))
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        keys = set(f.keys())
    assert {"head.weight", "head.bias"} <= keys
    assert ("head_adapter.up.weight" in keys) == bool(cfg.head_adapter)
    assert not any(k.startswith(("blocks.0.norm1", "patch_embed", "pos_embed")) for k in keys)  # no base weights
    assert not any(k.endswith("attn.qkv.weight") for k in keys)


def test_resolution_change_travels_with_the_adapters(tmp_path: Path) -> None:
    base = _base(tmp_path)
    model = _adapted(base, AdapterConfig(method="lora", rank=2), img_size=24)
    path = save_adapters(model, tmp_path)
    restored = attach_adapters(partial(load_pretrained, base), path)
    assert restored.cfg.img_size == (24, 24)
    with torch.no_grad():
        assert torch.equal(restored(_x(2, 24)), model(_x(2, 24)))


def test_adapters_for_another_base_are_refused(tmp_path: Path) -> None:
    base, other = _base(tmp_path), _base(tmp_path, seed=1, name="other.safetensors")
    path = save_adapters(_adapted(base, AdapterConfig(method="lora", rank=2)), tmp_path / "a.safetensors")
    with pytest.raises(CheckpointError, match="trained on another base.*load it onto the checkpoint"):
        attach_adapters(partial(load_pretrained, other), path)


def test_backbone_hash_matches_an_independent_sha256(tmp_path: Path) -> None:
    """The tag is sha256 over name|dtype|shape lines and raw bytes in sorted key order, head excluded."""
    model = VisionTransformer(tiny_config())
    digest = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        if name.startswith("head"):
            continue
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        digest.update(t.numpy().tobytes())
    assert backbone_hash(model, exclude=["head.weight", "head.bias"]) == digest.hexdigest()
    add_adapters(model, AdapterConfig(method="lora", rank=2))
    with torch.no_grad():
        model.blocks[0].attn.qkv.lora_B.fill_(0.3)
        model.blocks[0].attn.qkv.merge()  # a merged model still hashes as its base
    keys = ["head.weight", "head.bias"] + [k for k in model.state_dict() if "lora_" in k]
    assert backbone_hash(model, exclude=keys) == digest.hexdigest()


def test_merged_export_is_a_plain_checkpoint_with_the_same_logits(tmp_path: Path) -> None:
    from vitkit.adapters import merge_adapters

    base = _base(tmp_path)
    model = _adapted(base, AdapterConfig(method="lora", rank=4, lora_mlp=True))
    with torch.no_grad():
        expected = model(_x())
    out = save_pretrained(merge_adapters(model), tmp_path / "merged.safetensors")
    plain = load_pretrained(out)
    assert type(plain.blocks[0].attn.qkv) is torch.nn.Linear
    with torch.no_grad():
        torch.testing.assert_close(plain(_x()), expected, atol=1e-5, rtol=0)


def test_ensemble_averages_member_probabilities(tmp_path: Path) -> None:
    base = _base(tmp_path)
    cfg = AdapterConfig(method="bottleneck", bottleneck=4)
    paths, probs = [], []
    for seed in range(3):
        torch.manual_seed(seed)
        model = _adapted(base, cfg)
        with torch.no_grad():
            probs.append(model(_x()).double().softmax(-1))
        paths.append(save_adapters(model, tmp_path / f"member{seed}.safetensors"))
    ensemble = load_ensemble(partial(load_pretrained, base), paths)
    expected = torch.stack(probs).mean(0)
    got = ensemble(_x()).double().exp()
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    assert not torch.allclose(probs[0], probs[1], atol=1e-3)  # members really differ


def test_ensemble_refuses_mixed_configs(tmp_path: Path) -> None:
    base = _base(tmp_path)
    a = save_adapters(_adapted(base, AdapterConfig(method="lora", rank=2)), tmp_path / "a.safetensors")
    b = save_adapters(_adapted(base, AdapterConfig(method="lora", rank=4)), tmp_path / "b.safetensors")
    with pytest.raises(ValueError, match="another adapter config"):
        load_ensemble(partial(load_pretrained, base), [a, b])


def test_cli_export_merge_adapters_writes_a_plain_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from vitkit.cli.main import main

    base = _base(tmp_path)
    model = _adapted(base, AdapterConfig(method="lora", rank=2))
    adapters = save_adapters(model, tmp_path / "a.safetensors")
    out = tmp_path / "merged.safetensors"
    assert main(["export", str(base), "--adapters", str(adapters), "--merge-adapters", "--out", str(out)]) == 0
    assert "plain checkpoint" in capsys.readouterr().out
    with torch.no_grad():
        torch.testing.assert_close(load_pretrained(out)(_x()), model(_x()), atol=1e-5, rtol=0)
    assert main(["export", str(base), "--merge-adapters", "--out", str(out)]) == 2
    assert "pass --adapters" in capsys.readouterr().err


@pytest.mark.slow  # ONNX export and onnxruntime check: ~15 s; the merged-checkpoint export above is the fast check
def test_cli_exports_an_adapted_model_to_onnx(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from vitkit.cli.main import main

    base = _base(tmp_path)
    adapters = save_adapters(
        _adapted(base, AdapterConfig(method="bottleneck", bottleneck=4)), tmp_path / "a.safetensors"
    )
    assert main(["export", str(base), "--adapters", str(adapters), "--out", str(tmp_path / "m.onnx")]) == 0


def test_saving_a_merged_model_stores_the_factors_and_keeps_it_merged(tmp_path: Path) -> None:
    from vitkit.adapters import set_merged

    base = _base(tmp_path)
    model = _adapted(base, AdapterConfig(method="lora", rank=2))
    set_merged(model, True)
    path = save_adapters(model, tmp_path / "a.safetensors")
    assert model.blocks[0].attn.qkv.merged
    restored = attach_adapters(partial(load_pretrained, base), path)  # the hash matched: base weights were saved
    with torch.no_grad():
        torch.testing.assert_close(restored(_x()), model(_x()), atol=1e-5, rtol=0)


def test_swin_adapters_round_trip(tmp_path: Path) -> None:
    swin = pytest.importorskip("vitkit.config.swin")
    cfg = swin.SwinConfig(
        img_size=16, patch_size=2, embed_dim=16, depths=(1, 2), num_heads=(2, 4), window_size=4, num_classes=3
    )
    base = save_pretrained(build_model(cfg), tmp_path / "swin.safetensors")
    model = _adapted(base, AdapterConfig(method="parallel", bottleneck=4))
    path = save_adapters(model, tmp_path / "a.safetensors")
    restored = attach_adapters(partial(load_pretrained, base), path)
    with torch.no_grad():
        assert torch.equal(restored(_x()), model(_x()))


def test_load_pretrained_with_adapters_single_and_ensemble(tmp_path: Path) -> None:
    from vitkit.adapters import AdapterEnsemble

    base = _base(tmp_path)
    cfg = AdapterConfig(method="lora", rank=2)
    models = [_adapted(base, cfg) for _ in range(2)]
    paths = [save_adapters(m, tmp_path / f"m{i}.safetensors") for i, m in enumerate(models)]
    single = load_pretrained(base, adapters=paths[0])
    ensemble = load_pretrained(base, adapters=paths)
    assert isinstance(ensemble, AdapterEnsemble) and not single.training
    with torch.no_grad():
        assert torch.equal(single(_x()), models[0](_x()))
        mean = (models[0](_x()).softmax(-1) + models[1](_x()).softmax(-1)) / 2
        torch.testing.assert_close(ensemble(_x()).exp(), mean, atol=1e-6, rtol=0)


def test_cli_eval_with_adapters_and_their_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`vitkit eval --adapters`: the adapted model is evaluated; another base or resolution stops in one line."""
    from train_data import make_image_folder
    from vitkit.cli.main import main

    data = make_image_folder(tmp_path / "data", train_per_class=1, test_per_class=2)
    base, other = _base(tmp_path), _base(tmp_path, seed=1, name="other.safetensors")
    model = load_pretrained(base, num_classes=4)
    add_adapters(model, AdapterConfig(method="lora", rank=2))
    adapters = save_adapters(model, tmp_path / "a.safetensors")
    common = ["eval", "--data", str(data), "--adapters", str(adapters), "--workers", "0", "--device", "cpu"]
    assert main([*common, "--checkpoint", str(base), "--out", str(tmp_path / "r")]) == 0
    assert "(8 images)" in capsys.readouterr().out
    assert main([*common, "--checkpoint", str(other)]) == 2
    err = capsys.readouterr().err.strip()
    assert "trained on another base" in err and "\n" not in err
    assert main([*common, "--checkpoint", str(base), "--img-size", "24"]) == 2
    assert "was trained with img_size=(16, 16), not 24; leave img_size out" in capsys.readouterr().err
