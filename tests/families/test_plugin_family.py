"""A family from outside vitkit, registered here and nowhere else, goes through everything a built-in one does:
``create_model`` (and ``features_only``), save/load, ``vitkit train``, ``vitkit eval``, LoRA adapters and ONNX
export. If any of these needed a line of vitkit's source to know this family, this file would fail."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from safetensors import safe_open
from torch import nn

import vitkit
from train_data import make_image_folder, tiny_recipe
from vitkit.adapters import AdapterConfig, add_adapters, merge_adapters
from vitkit.cli.main import main
from vitkit.config import ModelConfig, ViTConfig
from vitkit.families import Family, adapt_state_dict, config_from_dict, family_of, register_family, unregister_family
from vitkit.weights.errors import CheckpointError
from vitkit.weights.export import export_model


@dataclasses.dataclass(frozen=True)
class MixerConfig(ModelConfig):
    """A toy token mixer: 4x4 patches, blocks of attention + MLP, mean pooling, a head."""

    family: ClassVar[str] = "toy_mixer"
    img_size: tuple[int, int] = (16, 16)
    in_chans: int = 3
    num_classes: int = 4
    width: int = 16
    depth: int = 2
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    crop_pct: float = 1.0
    extra: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:  # JSON gives lists back
        for name in ("img_size", "mean", "std"):
            object.__setattr__(self, name, tuple(getattr(self, name)))


class _Attention(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        return self.proj(torch.softmax(q @ k.transpose(1, 2) / q.shape[-1] ** 0.5, dim=-1) @ v)


class _Block(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), _Attention(dim)
        self.norm2, self.mlp = nn.LayerNorm(dim), nn.Sequential()
        self.mlp.fc1, self.mlp.act, self.mlp.fc2 = nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Mixer(nn.Module):
    def __init__(self, cfg: MixerConfig) -> None:
        super().__init__()
        self.cfg, self.num_classes = cfg, cfg.num_classes
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(cfg.in_chans, cfg.width, 4, 4)
        self.blocks = nn.Sequential(*[_Block(cfg.width) for _ in range(cfg.depth)])
        self.norm = nn.LayerNorm(cfg.width)
        self.head = nn.Linear(cfg.width, cfg.num_classes) if cfg.num_classes else nn.Identity()
        self.feature_info = [dict(num_chs=cfg.width, reduction=4, module=f"blocks.{i}") for i in range(cfg.depth)]

    def forward_intermediates(self, x, indices=None, *, norm=False, stop_early=False, intermediates_only=False):
        grid = (x.shape[-2] // 4, x.shape[-1] // 4)
        x = self.patch_embed.proj(x).flatten(2).transpose(1, 2)  # (B, N, D)
        wanted = set(range(len(self.blocks))) if indices is None else {i % len(self.blocks) for i in indices}
        maps = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in wanted:
                maps.append(x.transpose(1, 2).reshape(x.shape[0], -1, *grid))
        return maps if intermediates_only else (self.norm(x), maps)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_intermediates(x, [])[0]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return x.mean(dim=1) if pre_logits else self.head(x.mean(dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def no_weight_decay(self) -> set[str]:
        return set()

    def group_matcher(self, coarse: bool = False) -> dict[str, str]:
        return {"stem": r"^patch_embed", "blocks": r"^blocks\.(\d+)"}

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        pass

    def reset_classifier(self, num_classes: int, zero_init: bool = True) -> None:
        self.num_classes, self.head = num_classes, nn.Linear(self.cfg.width, num_classes)


FAMILY = Family("toy_mixer", MixerConfig, Mixer, block_pattern=r"blocks\.\d+")


@pytest.fixture(autouse=True, scope="module")
def registered():
    """The family exists while this file's tests run, as a user's plug-in would after its import."""
    register_family(FAMILY, models={"toy_mixer_tiny": MixerConfig()})
    yield
    unregister_family("toy_mixer")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("toy_data"), train_per_class=16, test_per_class=8)


def test_create_and_features_only():
    model = vitkit.create_model("toy_mixer_tiny", num_classes=3)
    assert isinstance(model, Mixer) and family_of(model) is FAMILY and model.head.out_features == 3
    maps = vitkit.create_model("toy_mixer_tiny", features_only=True)(torch.randn(2, 3, 16, 16))
    assert [tuple(m.shape) for m in maps] == [(2, 16, 4, 4), (2, 16, 4, 4)]
    # by hand: patches 3*16*16 + 16; per block 2 norms (2*32), qkv 16*48 + 48, proj 16*16 + 16, fc1 16*32 + 32,
    # fc2 32*16 + 16; final norm 32; 4-class head 16*4 + 4
    assert vitkit.count_parameters("toy_mixer_tiny") == 784 + 2 * (64 + 816 + 272 + 544 + 528) + 32 + 68


def test_save_load_round_trip_names_the_family(tmp_path):
    model = vitkit.create_model("toy_mixer_tiny").eval()
    path = vitkit.save_pretrained(model, tmp_path / "toy.safetensors")
    with safe_open(str(path), "pt") as f:
        assert f.metadata()["vitkit.family"] == "toy_mixer"
    again = vitkit.load_pretrained(path)
    x = torch.randn(2, 3, 16, 16)
    assert isinstance(again, Mixer)
    torch.testing.assert_close(again(x), model(x), rtol=0, atol=0)
    assert config_from_dict(json.loads(json.dumps(model.cfg.to_dict())), "toy_mixer") == model.cfg


def test_train_and_eval_through_the_command_line(folder, tmp_path, capsys):
    recipe = tiny_recipe(folder, tmp_path / "runs", train={"epochs": 2, "batch_size": 16})
    recipe["model"] = {"name": "toy_mixer_tiny", "width": 24}
    path = tmp_path / "toy.yaml"
    path.write_text(json.dumps(recipe))  # JSON is YAML
    assert main(["train", "--config", str(path)]) == 0
    run = tmp_path / "runs" / "tiny"
    assert (run / "model.safetensors").is_file() and (run / "checkpoints" / "last.pt").is_file()
    trained = vitkit.load_pretrained(run / "model.safetensors")
    assert isinstance(trained, Mixer) and trained.cfg.width == 24 and trained.cfg.extra["classes"][0] == "north_east"
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(run / "model.safetensors"), "--data", str(folder), "--json",
                 "--workers", "0"]) == 0  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert report["num_samples"] == 32 and 0.0 <= report["top1"] <= 1.0


def test_lora_adapters_find_its_blocks_and_merge():
    model = vitkit.create_model("toy_mixer_tiny").eval()
    report = add_adapters(model, AdapterConfig(method="lora", rank=2))
    lora = [n for n, p in model.named_parameters() if p.requires_grad and "lora" in n]
    assert len(lora) == 2 * 2 * 2  # two blocks x (qkv, proj) x (A, B)
    assert 0 < report.trainable < report.total
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_()
        x = torch.randn(2, 3, 16, 16)
        adapted = model(x)
        torch.testing.assert_close(merge_adapters(model)(x), adapted, rtol=1e-5, atol=1e-5)


def test_onnx_export_runs_in_onnxruntime(tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is in the test extra")
    model = vitkit.create_model("toy_mixer_tiny").eval()
    result = export_model(model, tmp_path / "toy.onnx")
    x = np.random.default_rng(0).standard_normal((3, 3, 16, 16)).astype(np.float32)
    got = ort.InferenceSession(str(result.path)).run(None, {"pixel_values": x})[0]
    np.testing.assert_allclose(got, model(torch.from_numpy(x)).detach().numpy(), rtol=1e-4, atol=1e-5)


def test_other_families_stay_apart():
    with pytest.raises(ValueError, match="unknown model family 'nope'"):
        config_from_dict({}, "nope")
    with pytest.raises(TypeError, match=r"unknown MixerConfig field\(s\) \['depthh'\]"):
        MixerConfig().replace(depthh=3)
    with pytest.raises(CheckpointError, match="a 'vit' checkpoint cannot load into a 'toy_mixer' model"):
        adapt_state_dict({}, ViTConfig(), MixerConfig())
