"""A segmentor's backbone starts from a classifier's weights as the paper does: any file vitkit reads (a vitkit
DeiT, a timm state dict, an MAE checkpoint, whose encoder is taken), the ViT's tensors copied, its position table
resampled to the adapter's pre-training grid, everything else left as initialised; a ViT of another size is one
line naming the mismatch. Through a recipe: ``model.init_from``."""

from __future__ import annotations

import pytest
import torch

import vitkit
from vitkit.config.mae import MAEConfig
from vitkit.families import build_model
from vitkit.weights.convert import save_timm
from vitkit.weights.errors import CheckpointError
from vitkit.weights.load import init_from

SMALL = {"embed_dim": 32, "depth": 4, "num_heads": 2, "mlp_dim": 64}
ADAPTER = {**SMALL, "deform_num_heads": 2, "conv_inplane": 8, "pretrain_size": 64,
           "interaction_indexes": [[0, 0], [1, 1], [2, 2], [3, 3]]}  # fmt: skip


def _segmentor():
    torch.manual_seed(0)
    return vitkit.create_model("upernet_vit_adapter_tiny_patch16", num_classes=3, channels=8, aux_channels=8,
                               backbone=ADAPTER)  # fmt: skip


def _same_vit_part(segmentor, vit_state):
    for name in ("patch_embed.proj.weight", "blocks.2.attn.qkv.weight", "blocks.3.mlp.fc2.bias"):
        assert torch.equal(segmentor.backbone.state_dict()[name], vit_state[name]), name


@pytest.mark.parametrize("kind", ["vitkit", "timm"])
def test_a_classifier_file_starts_the_backbone(tmp_path, kind):
    torch.manual_seed(1)
    vit = vitkit.create_model("vit_tiny_patch16_224", img_size=64, **SMALL)  # a 4x4 grid, as the adapter's
    path = vitkit.save_pretrained(vit, tmp_path / "vit.safetensors") if kind == "vitkit" else None
    source = path
    if kind == "timm":  # a timm file records no head count: load it as a user would, then start from the model
        source = vitkit.load_pretrained(save_timm(vit, tmp_path / "vit.pth"), num_heads=2)
    vit_state = vit.state_dict()
    seg = _segmentor()
    before = {k: v.clone() for k, v in seg.state_dict().items()}
    init_from(seg, source)
    _same_vit_part(seg, vit_state)
    torch.testing.assert_close(seg.backbone.pos_embed, vit_state["pos_embed"])  # same grid: taken as it is
    for name in ("backbone.level_embed", "backbone.spm.fc1.weight", "decode_head.conv_seg.weight"):
        assert torch.equal(seg.state_dict()[name], before[name]), f"{name} should keep its initialisation"


def test_an_mae_checkpoint_gives_its_encoder(tmp_path):
    cfg = MAEConfig(img_size=64, patch_size=16, **SMALL, decoder_embed_dim=16, decoder_depth=1,
                    decoder_num_heads=2, decoder_mlp_dim=32)  # fmt: skip
    torch.manual_seed(2)
    mae = build_model(cfg)
    path = vitkit.save_pretrained(mae, tmp_path / "mae.safetensors")
    seg = _segmentor()
    init_from(seg, path)
    encoder = {k[len("encoder.") :]: v for k, v in mae.state_dict().items() if k.startswith("encoder.")}
    _same_vit_part(seg, encoder)


def test_a_vit_of_another_size_is_one_line(tmp_path):
    path = vitkit.save_pretrained(vitkit.create_model("vit_tiny_patch16_224", img_size=64), tmp_path / "t.st")
    with pytest.raises(CheckpointError, match="does not fit the adapter") as info:
        init_from(_segmentor(), path)
    assert "\n" not in str(info.value)
