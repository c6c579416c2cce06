"""Segmentation heads and necks against two independent references:

- transformers' ``UperNetForSemanticSegmentation`` (a tiny Swin backbone, random weights and BatchNorm statistics):
  its own backbone's maps through its heads and through vitkit's, loaded with the weights/upernet_hf.py converter;
- mmsegmentation 0.x's ``UPerHead`` / ``FCNHead`` / ``FPN`` + ``FPNHead`` and detectron2's ViTDet
  ``SimpleFeaturePyramid``, run in /tmp/ref_mmseg_heads (see its README.md; mmcv stood in for by shims), whose
  state dicts, inputs, outputs and full-size parameter counts are in tests/fixtures/mmseg_heads_tiny.pt. Their
  state dicts load into vitkit's modules unrenamed.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from paths import REPO
from vitkit.models.heads import FPN, ConvModule, FCNHead, FPNHead, SimplePyramid, UPerHead
from vitkit.models.heads.conv_module import resize
from vitkit.weights.errors import CheckpointError
from vitkit.weights.upernet_hf import convert_hf_upernet_heads, head_layout, to_hf_upernet_heads

FIXTURE = REPO / "tests" / "fixtures" / "mmseg_heads_tiny.pt"
TOL = dict(rtol=1e-5, atol=1e-5)  # float32: the same operations in the same order as the references


def randomise_(module: nn.Module, seed: int) -> nn.Module:
    """Every parameter and BatchNorm statistic drawn at random (so each one matters), then eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in [*module.named_parameters(), *module.named_buffers()]:
            if name.endswith("num_batches_tracked"):
                t.fill_(7)
            elif t.ndim > 1:
                t.copy_(torch.randn(t.shape, generator=gen) * (2.0 / t[0].numel()) ** 0.5)
            elif name.endswith(("running_var", "weight")):
                t.copy_(0.5 + torch.rand(t.shape, generator=gen))
            else:
                t.copy_(0.2 * torch.randn(t.shape, generator=gen))
    return module.eval()


def sub(state: dict, prefix: str) -> dict:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


# -------------------------------------------------------------------------------------------- transformers
def hf_upernet(aux_convs: int, aux_concat: bool):
    transformers = pytest.importorskip("transformers")
    backbone = transformers.SwinConfig(
        image_size=68, patch_size=4, embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2], window_size=2,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )  # fmt: skip
    config = transformers.UperNetConfig(
        backbone_config=backbone, hidden_size=64, auxiliary_channels=32, num_labels=5,
        auxiliary_num_convs=aux_convs, auxiliary_concat_input=aux_concat,
    )  # fmt: skip
    return randomise_(transformers.UperNetForSemanticSegmentation(config), seed=1)


@pytest.mark.parametrize("aux_convs, aux_concat", [(1, False), (2, True)], ids=["ade20k_aux", "concat_aux"])
def test_heads_match_transformers_upernet(aux_convs: int, aux_concat: bool) -> None:
    model = hf_upernet(aux_convs, aux_concat)
    images = torch.randn(2, 3, 68, 92)  # Swin pads: maps of 17x23, 9x12, 5x6, 3x3, so no resize is exactly 2x
    with torch.no_grad():
        feats = model.backbone(images).feature_maps
        ref_logits = model(images).logits
        ref_decode, ref_aux = model.decode_head(feats), model.auxiliary_head(feats)
    state, rest = convert_hf_upernet_heads(model.state_dict())
    assert sorted(rest) == sorted(k for k in model.state_dict() if k.startswith("backbone."))
    channels = list(model.backbone.channels)
    decode = UPerHead(channels, num_classes=5, channels=64, pool_scales=model.config.pool_scales).eval()
    aux = FCNHead(channels, num_classes=5, channels=32, num_convs=aux_convs, concat_input=aux_concat).eval()
    decode.load_state_dict(sub(state, "decode_head."), strict=True)
    aux.load_state_dict(sub(state, "auxiliary_head."), strict=True)
    with torch.no_grad():
        logits, aux_logits = decode(feats), aux(feats)
    assert logits.shape == (2, 5, 17, 23) and aux_logits.shape == (2, 5, 5, 6)  # strides 4 and 16
    torch.testing.assert_close(logits, ref_decode, **TOL)
    torch.testing.assert_close(aux_logits, ref_aux, **TOL)
    torch.testing.assert_close(resize(logits, images.shape[2:]), ref_logits, **TOL)  # the segmentor's last step


def test_hf_converter_round_trip() -> None:
    model = hf_upernet(2, True)
    ref = {k: v for k, v in model.state_dict().items() if not k.startswith("backbone.")}
    mine, _ = convert_hf_upernet_heads(model.state_dict())
    decode, aux = UPerHead([16, 32, 64, 128], 5, 64), FCNHead([16, 32, 64, 128], 5, 32, num_convs=2, concat_input=True)
    vitkit_keys = {f"decode_head.{k}" for k in decode.state_dict()} | {f"auxiliary_head.{k}" for k in aux.state_dict()}
    assert set(mine) == vitkit_keys  # every tensor of vitkit's heads, nothing else
    back, rest = to_hf_upernet_heads({**mine, "backbone.x": torch.zeros(1)})
    assert set(back) == set(ref) and list(rest) == ["backbone.x"]
    assert all(torch.equal(back[k], ref[k]) for k in ref)
    again, _ = convert_hf_upernet_heads(back)
    assert set(again) == set(mine) and all(torch.equal(again[k], mine[k]) for k in mine)


def test_hf_converter_refuses_unknown_or_missing_head_tensors() -> None:
    state = hf_upernet(1, False).state_dict()
    assert head_layout(state).levels == 4 and head_layout(state).pool_scales == 4
    with pytest.raises(CheckpointError, match="decode_head.extra.weight"):
        convert_hf_upernet_heads({**state, "decode_head.extra.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="missing"):
        convert_hf_upernet_heads({k: v for k, v in state.items() if "bottleneck.batch_norm.running_var" not in k})
    with pytest.raises(CheckpointError, match="decode_head"):
        convert_hf_upernet_heads({"backbone.x": torch.zeros(1)})


# -------------------------------------------------------------------------------------------- mmsegmentation
@pytest.fixture(scope="module")
def mmseg() -> dict:
    return torch.load(FIXTURE, weights_only=True)


def run(module: nn.Module, state: dict, x):
    module.load_state_dict(state, strict=True)  # mmseg's / detectron2's own key names, unrenamed
    with torch.no_grad():
        return module.eval()(x)


def test_upernet_and_fcn_match_mmseg(mmseg: dict) -> None:
    cfg, x, k = mmseg["config"], mmseg["inputs"], mmseg["config"]["num_classes"]
    up = cfg["upernet"]
    head = UPerHead(cfg["in_channels"], k, channels=up["channels"], pool_scales=up["pool_scales"])
    torch.testing.assert_close(run(head, mmseg["upernet"]["state"], x), mmseg["upernet"]["out"], **TOL)
    for name in ("fcn", "fcn_concat"):
        f = cfg[name]
        aux = FCNHead(cfg["in_channels"], k, f["channels"], f["in_index"], f["num_convs"], f["concat_input"])
        torch.testing.assert_close(run(aux, mmseg[name]["state"], x), mmseg[name]["out"], **TOL)


def test_semantic_fpn_matches_mmseg(mmseg: dict) -> None:
    cfg, ref = mmseg["config"], mmseg["fpn"]
    f = cfg["fpn"]
    neck_out = run(FPN(cfg["in_channels"], f["out_channels"]), ref["neck_state"], mmseg["inputs"])
    torch.testing.assert_close(neck_out, ref["neck_out"], **TOL)
    head = FPNHead([f["out_channels"]] * 4, cfg["num_classes"], f["head_channels"], f["feature_strides"])
    torch.testing.assert_close(run(head, ref["head_state"], ref["neck_out"]), ref["out"], **TOL)


def test_simple_pyramid_matches_vitdet(mmseg: dict) -> None:
    s, ref = mmseg["config"]["simple_fp"], mmseg["simple_fp"]
    pyramid = SimplePyramid(s["dim"], s["out_channels"], s["scale_factors"])
    assert pyramid.names == [f"simfp_{n[1:]}" for n in ref["names"]]  # detectron2's p2..p5 are simfp_2..simfp_5
    torch.testing.assert_close(run(pyramid, ref["state"], ref["input"]), ref["outs"], **TOL)


def test_parameter_counts_equal_mmseg_at_ade20k_settings(mmseg: dict) -> None:
    count = lambda m: sum(p.numel() for p in m.parameters())
    for name, chans in {"vit_adapter_tiny": [192] * 4, "swin_tiny": [96, 192, 384, 768]}.items():
        ref = mmseg["param_counts"][name]
        assert count(UPerHead(chans, 150, channels=512)) == ref["upernet"]
        assert count(FCNHead(chans, 150, channels=256, in_index=2)) == ref["fcn"]
        assert count(FPN(chans, 256)) == ref["fpn_neck"] and count(FPNHead([256] * 4, 150, 128)) == ref["fpn_head"]
    assert count(SimplePyramid(768, 256)) == mmseg["param_counts"]["vitdet_base_simple_fp"]


# -------------------------------------------------------------------------------------------- shapes, grads
def test_simple_pyramid_strides_and_widths() -> None:
    pyramid = SimplePyramid(in_channels=32, out_channels=24)
    outs = pyramid(torch.randn(2, 32, 7, 9))  # a 112x144 image at stride 16
    assert pyramid.strides == (4, 8, 16, 32) and pyramid.out_channels == (24,) * 4
    assert [tuple(o.shape) for o in outs] == [(2, 24, 28, 36), (2, 24, 14, 18), (2, 24, 7, 9), (2, 24, 3, 4)]
    assert [tuple(o.shape) for o in pyramid([torch.randn(1, 32, 4, 4)])] == [(1, 24, 16, 16), (1, 24, 8, 8),
                                                                             (1, 24, 4, 4), (1, 24, 2, 2)]  # fmt: skip
    with pytest.raises(ValueError, match="in_channels"):
        pyramid(torch.randn(1, 16, 4, 4))
    with pytest.raises(ValueError, match="scale_factors"):
        SimplePyramid(32, 24, scale_factors=(3.0,))


def test_pyramid_to_heads_gradients_reach_every_parameter() -> None:
    torch.manual_seed(0)
    pyramid = SimplePyramid(in_channels=32, out_channels=16)
    heads = [UPerHead([16] * 4, 3, channels=8), FCNHead([16] * 4, 3, channels=8), FPNHead([8] * 4, 3, channels=8)]
    neck = FPN([16] * 4, 8)
    maps = pyramid(torch.randn(2, 32, 4, 6))
    outs = [heads[0](maps), heads[1](maps), heads[2](neck(maps))]
    assert [tuple(o.shape) for o in outs] == [(2, 3, 16, 24), (2, 3, 4, 6), (2, 3, 16, 24)]
    sum(o.square().mean() for o in outs).backward()
    for module in [pyramid, neck, *heads]:
        for name, p in module.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{type(module).__name__}.{name} gets no gradient"


@torch.no_grad()
def test_initialisation_is_mmsegs() -> None:
    torch.manual_seed(0)
    head = UPerHead([64] * 4, 150, channels=64)
    w = head.bottleneck.conv.weight  # (64, 64 + 4 * 64, 3, 3): Kaiming normal, fan_out = 64 * 9, ReLU gain
    assert head.bottleneck.conv.bias is None  # no bias before a norm (mmcv's bias='auto')
    assert float(w.std()) == pytest.approx(math.sqrt(2 / (64 * 9)), rel=0.02)
    assert float(head.conv_seg.weight.std()) == pytest.approx(0.01, rel=0.05) and not head.conv_seg.bias.any()
    bn = head.bottleneck.bn
    assert torch.equal(bn.weight, torch.ones(64)) and not bn.bias.any()
    conv = FPN([256], 256).fpn_convs[0].conv  # Xavier uniform, bias 0: bound sqrt(6 / (fan_in + fan_out))
    bound = math.sqrt(6 / (2 * 256 * 9))
    assert float(conv.weight.abs().max()) <= bound and float(conv.weight.std()) == pytest.approx(bound / 3**0.5, 0.02)
    assert not conv.bias.any()


def test_heads_name_the_mismatch() -> None:
    head = UPerHead([8, 16, 32, 64], 3, channels=8)
    with pytest.raises(ValueError, match=r"channels \[8, 16, 32, 64\] but got \[8, 16, 32\]"):
        head([torch.randn(1, c, 4, 4) for c in (8, 16, 32)])
    with pytest.raises(ValueError, match="in_index"):
        FCNHead([8, 16], 3, in_index=2)
    with pytest.raises(ValueError, match="feature_strides"):
        FPNHead([8] * 4, 3, feature_strides=(8, 4, 16, 32))
    assert isinstance(ConvModule(4, 4, 1, norm=False).bn, nn.Identity)
