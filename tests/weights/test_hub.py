"""Hub names resolve through a Hugging Face cache that the tests build themselves (no network): transformers
and timm repositories load with their reference outputs, offline uses the cache, and a missing file raises one
line naming it and where it would go."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

import vitkit
from vitkit.weights import CheckpointError
from vitkit.weights.hub import DEFAULT_TAGS, is_hub_name, parse_hub_name, timm_repo

pytest.importorskip("huggingface_hub", reason="hub names need huggingface_hub")
transformers = pytest.importorskip("transformers")

GOOGLE = "google/vit-base-patch16-224"
TIMM_TINY = "timm/vit_tiny_patch4_32.test_in1k"  # a made-up tag: the cache holds a 2-layer vit_tiny_patch4_32


def snapshot(cache: Path, repo: str) -> Path:
    """An empty snapshot folder laid out as huggingface_hub's cache: refs/main names the commit."""
    commit = hashlib.sha1(repo.encode()).hexdigest()
    folder = cache / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    snap = folder / "snapshots" / commit
    snap.mkdir(parents=True)
    return snap


@pytest.fixture
def hub(tmp_path, monkeypatch) -> Path:
    """A fresh cache, offline."""
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def _google(cache: Path) -> torch.nn.Module:
    """A tiny random transformers ViT with class names, saved where google/vit-base-patch16-224 would be cached."""
    torch.manual_seed(0)
    cfg = transformers.ViTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, image_size=16, patch_size=4,
        num_labels=3, id2label={0: "cat", 1: "dog", 2: "fox"}, label2id={"cat": 0, "dog": 1, "fox": 2},
    )  # fmt: skip
    hf = transformers.ViTForImageClassification(cfg).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.normal_(0.0, 0.2)
    snap = snapshot(cache, GOOGLE)
    hf.save_pretrained(snap)
    prep = {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "size": {"height": 16, "width": 16}}
    (snap / "preprocessor_config.json").write_text(json.dumps(prep))
    return hf


def _timm(cache: Path, repo: str = TIMM_TINY) -> dict[str, torch.Tensor]:
    """A timm hub folder (config.json with 'architecture' and pretrained_cfg, model.safetensors with timm's key
    names and no vitkit metadata), as timm's push_to_hf_hub writes it."""
    from safetensors.torch import save_file

    torch.manual_seed(1)
    state = {k: v.contiguous() for k, v in vitkit.create_model("vit_tiny_patch4_32", depth=2).state_dict().items()}
    snap = snapshot(cache, repo)
    save_file(state, snap / "model.safetensors")
    pretrained = {"mean": [0.1, 0.2, 0.3], "std": [0.4, 0.5, 0.6], "crop_pct": 0.95, "num_classes": 10}
    config = {"architecture": "vit_tiny_patch4_32", "num_classes": 10, "pretrained_cfg": pretrained}
    (snap / "config.json").write_text(json.dumps(config))
    return state


def test_names():
    assert parse_hub_name("hf-hub:google/vit-base-patch16-224") == (GOOGLE, None)
    assert parse_hub_name("hf-hub:google/vit-base-patch16-224@abc") == (GOOGLE, "abc")
    assert timm_repo("vit_base_patch16_224") == "timm/vit_base_patch16_224.augreg2_in21k_ft_in1k"  # timm's default
    assert timm_repo("vit_small_patch16_224.augreg_in1k") == "timm/vit_small_patch16_224.augreg_in1k"
    assert is_hub_name("timm/vit_base_patch16_224.augreg2_in21k_ft_in1k") and not is_hub_name("runs/model")
    assert all(name in vitkit.list_models() for name in DEFAULT_TAGS)
    with pytest.raises(ValueError, match="hf-hub:ORG/NAME"):
        parse_hub_name("hf-hub:vit")
    with pytest.raises(ValueError, match="tag"):
        timm_repo("vit_cifar_convstem_32")


def test_local_folder_named_like_timm_wins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "timm" / "mine").mkdir(parents=True)
    assert not is_hub_name("timm/mine")


def test_hf_hub_name_loads_from_the_offline_cache_with_transformers_logits(hub):
    hf = _google(hub)
    model = vitkit.load_pretrained("hf-hub:google/vit-base-patch16-224")
    assert model.cfg.extra["classes"] == ["cat", "dog", "fox"]
    from vitkit.eval.loading import load_classifier  # what vitkit predict / eval / serve load through

    assert load_classifier("hf-hub:google/vit-base-patch16-224")[1] == ["cat", "dog", "fox"]
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        want = hf(pixel_values=x).logits
        torch.testing.assert_close(model(x), want, rtol=1e-5, atol=1e-5 * float(want.abs().max()))


def test_timm_name_and_create_model_pretrained(hub):
    state = _timm(hub)
    for model in (
        vitkit.load_pretrained(TIMM_TINY),
        vitkit.create_model("vit_tiny_patch4_32.test_in1k", pretrained=True),
    ):
        assert model.cfg.depth == 2 and model.cfg.mean == (0.1, 0.2, 0.3) and model.cfg.crop_pct == 0.95
        got = model.state_dict()
        assert all(torch.equal(got[k], v) for k, v in state.items()) and set(got) == set(state)
    fresh = vitkit.create_model("vit_tiny_patch4_32.test_in1k", pretrained=True, num_classes=4)
    assert fresh.head.weight.shape == (4, 192) and not fresh.head.weight.any()  # a new zero head (paper Sec. 3.2)
    assert torch.equal(fresh.pos_embed, state["pos_embed"])


def test_missing_files_name_the_file_and_where_it_would_go(hub):
    name = "timm/vit_base_patch16_224.augreg2_in21k_ft_in1k"
    with pytest.raises(CheckpointError) as err:
        vitkit.load_pretrained(name)
    message = str(err.value)
    assert "\n" not in message and "offline" in message
    want = hub / "models--timm--vit_base_patch16_224.augreg2_in21k_ft_in1k" / "snapshots" / "<commit>" / "config.json"
    assert "config.json is not in the Hugging Face cache" in message and str(want) in message
    with pytest.raises(CheckpointError, match="timm/vit_base_patch16_224.augreg2_in21k_ft_in1k: config.json"):
        vitkit.create_model("vit_base_patch16_224", pretrained=True)  # the same repository, by timm's default tag
    # config.json cached, weights not: the weights file is named, in the snapshot the cache refers to.
    snap = snapshot(hub, GOOGLE)
    (snap / "config.json").write_text(json.dumps({"model_type": "vit"}))
    with pytest.raises(CheckpointError) as err:
        vitkit.load_pretrained("hf-hub:" + GOOGLE)
    assert str(snap / "model.safetensors") in str(err.value) and "\n" not in str(err.value)


def test_unreachable_hub_falls_back_to_the_cache(hub, monkeypatch):
    """Online but the hub cannot be reached (a closed local port): cached files serve; others are named."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again at once: connections are refused, no waiting
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    state = _timm(hub)
    model = vitkit.load_pretrained(TIMM_TINY)
    assert torch.equal(model.pos_embed, state["pos_embed"])
    with pytest.raises(CheckpointError, match="could not be reached"):
        vitkit.load_pretrained("timm/vit_tiny_patch4_32.other_tag")
