"""Segmentors: every registered one has the parameter count of its backbone (checked against its own reference in
its family's tests), transformers' UperNet heads on the same pyramid, and its neck counted by hand; a pyramid for
every backbone family; configs that round-trip and forward fields to the backbone; one-line errors."""

from __future__ import annotations

import json

import pytest
import torch

import vitkit
from vitkit.config.segmentor import MODELS, SegmentorConfig
from vitkit.families import config_from_dict

transformers = pytest.importorskip("transformers", reason="transformers is in the test extra")


def _hf_heads(in_channels: list[int], cfg: SegmentorConfig) -> int:
    """transformers' UperNetHead + UperNetFCNHead (mmseg's UPerHead + FCNHead) parameters on ``in_channels``."""
    from transformers.models.upernet.modeling_upernet import UperNetFCNHead, UperNetHead

    hf = transformers.UperNetConfig(
        hidden_size=cfg.channels, pool_scales=list(cfg.pool_scales), auxiliary_channels=cfg.aux_channels,
        auxiliary_num_convs=cfg.aux_num_convs, auxiliary_concat_input=cfg.aux_concat_input, num_labels=cfg.num_classes,
    )  # fmt: skip
    with torch.device("meta"):
        heads = [UperNetHead(hf, in_channels=in_channels), UperNetFCNHead(hf, in_channels=in_channels)]
    return sum(p.numel() for h in heads for p in h.parameters())


def _neck(cfg: SegmentorConfig, width: int) -> int:
    """ViTDet's simple pyramid (D -> C) or per-stage LayerNorms, by hand."""
    if cfg.neck == "norms":
        return 2 * sum(96 * 2**s for s in range(4)) - 2 * 768  # four stage norms replace the final one (Swin-T)
    if cfg.neck == "none":
        return 0
    d, c = width, cfg.neck_channels
    convs = lambda c_in: c_in * c + 2 * c + 9 * c * c + 2 * c  # 1x1 conv + LN, 3x3 conv + LN (convs bias-free)
    x4 = (d * d // 2 * 4 + d // 2) + d + (d // 2 * d // 4 * 4 + d // 4)  # two 2x2 deconvs with the LN between
    x2 = d * d // 2 * 4 + d // 2
    return x4 + convs(d // 4) + x2 + convs(d // 2) + convs(d) + convs(d)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_registered_segmentor_counts_its_parts(name):
    cfg = MODELS[name]
    backbone = vitkit.count_parameters(cfg.backbone)
    width = getattr(cfg.backbone, "embed_dim", 0)
    if cfg.neck == "simple_pyramid":
        pyramid = [cfg.neck_channels] * 4
    elif cfg.backbone.family == "swin":
        pyramid = [cfg.backbone.embed_dim * 2**s for s in range(4)]
    else:
        pyramid = [width] * 4
    assert vitkit.count_parameters(name) == backbone + _neck(cfg, width) + _hf_heads(pyramid, cfg)


def test_the_adapter_upernet_is_the_papers_size():
    # ViT-Adapter's README: UperNet + ViT-Adapter-T 36M, -S 58M, -B 134M, -L 451M (ADE20K, 512 crop).
    counts = [vitkit.count_parameters(f"upernet_vit_adapter_{s}_patch16") for s in ("tiny", "small", "base")]
    assert [round(c / 1e6) for c in counts] == [36, 58, 134]


@pytest.mark.parametrize(
    "backbone, overrides",
    [
        ("upernet_vit_adapter_tiny_patch16", {"backbone": {"embed_dim": 48, "depth": 4, "num_heads": 3,
                                                           "mlp_dim": 96, "deform_num_heads": 3, "conv_inplane": 8,
                                                           "interaction_indexes": [[0, 0], [1, 1], [2, 2], [3, 3]]}}),
        ("upernet_vit_tiny_patch16", {"depth": 2, "embed_dim": 48, "num_heads": 3, "mlp_dim": 96,
                                      "neck_channels": 16}),
        ("upernet_swin_tiny_patch4_window8_512", {"depths": (2, 2, 2, 2), "embed_dim": 16, "num_heads": (1, 2, 2, 4),
                                                  "window_size": 4, "img_size": 128}),
    ],
    ids=["vit_adapter", "vit", "swin"],
)  # fmt: skip
def test_every_backbone_gives_the_heads_a_four_level_pyramid(backbone, overrides):
    model = vitkit.create_model(backbone, num_classes=7, channels=16, aux_channels=8, **overrides).eval()
    x = torch.randn(2, 3, 128, 128)
    maps = model.pyramid(x)
    assert [m.shape[-1] for m in maps] == [32, 16, 8, 4]  # strides 4, 8, 16, 32
    logits, aux = model(x, aux=True)
    assert logits.shape == aux.shape == (2, 7, 128, 128)
    loss = logits.logsumexp(1).mean() + aux.logsumexp(1).mean()
    loss.backward()
    frozen = [n for n, p in model.named_parameters() if p.grad is None]
    assert frozen == [n for n in frozen if "cls_token" in n], frozen  # the adapter's unused class-token row only


def test_configs_round_trip_and_forward_backbone_fields():
    cfg = vitkit.get_config("upernet_vit_adapter_tiny_patch16", img_size=640, drop_path_rate=0.2, num_classes=19)
    assert cfg.img_size == (640, 640) and cfg.backbone.drop_path_rate == 0.2 and cfg.num_classes == 19
    again = config_from_dict(json.loads(json.dumps(cfg.to_dict())), "segmentor")
    assert again == cfg and again.backbone == cfg.backbone
    with pytest.raises(TypeError, match=r"unknown SegmentorConfig field\(s\) \['depthh'\].*the backbone's"):
        cfg.replace(depthh=3)
    with pytest.raises(ValueError, match="neck must be one of"):
        SegmentorConfig(neck="fpn++")


def test_an_image_size_the_pyramid_cannot_divide_is_one_line():
    model = vitkit.create_model("upernet_vit_adapter_tiny_patch16", num_classes=3).eval()
    with pytest.raises(ValueError, match=r"image size 500x512 is not divisible by 32.*e\.g\. 512x512") as info:
        model(torch.randn(1, 3, 500, 512))
    assert "\n" not in str(info.value)
