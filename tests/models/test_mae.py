"""MAE model: masking, loss, unshuffling, parity with transformers' ViTMAE, parameter counts, bad input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mae_helpers import hf_mae, tiny_mae_config
from vitkit.families import build_model
from vitkit.models.mae import MaskedAutoencoder, masked_mse, patchify, random_masking
from vitkit.registry import count_parameters, get_config, list_models
from vitkit.weights.load import load_pretrained
from vitkit.weights.mae import encoder_state, export_encoder

# Learnable parameters of the official models (transformers' ViTMAEForPreTraining with the matching config,
# counted with requires_grad; models_mae's total also holds the fixed sin-cos tables, +(1 + N) * (D + 512)).
PARAMS = {
    "mae_vit_base_patch16": (111_655_680, 111_907_840),
    "mae_vit_large_patch16": (329_239_296, 329_541_888),
    "mae_vit_huge_patch14": (656_613_964, 657_074_508),
    "mae_vit_cifar_patch4_32": (1_307_824, 1_320_304),
}


def test_every_registered_mae_has_a_parameter_count():
    assert sorted(list_models("mae_*")) == sorted(PARAMS)


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_parameter_counts(name):
    learnable, with_tables = PARAMS[name]
    cfg = get_config(name)
    tables = (1 + cfg.num_patches) * (cfg.embed_dim + cfg.decoder_embed_dim)
    assert count_parameters(name) == learnable
    assert learnable + tables == with_tables


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_counts_match_transformers(name):
    from transformers import ViTMAEConfig, ViTMAEForPreTraining

    c = get_config(name)
    hf_cfg = ViTMAEConfig(
        hidden_size=c.embed_dim, num_hidden_layers=c.depth, num_attention_heads=c.num_heads,
        intermediate_size=c.mlp_dim, image_size=c.img_size[0], patch_size=c.patch_size[0],
        decoder_hidden_size=c.decoder_embed_dim, decoder_num_hidden_layers=c.decoder_depth,
        decoder_num_attention_heads=c.decoder_num_heads, decoder_intermediate_size=c.decoder_mlp_dim,
    )  # fmt: skip
    with torch.device("meta"):
        hf = ViTMAEForPreTraining(hf_cfg)
    assert sum(p.numel() for p in hf.parameters()) == PARAMS[name][1]
    assert sum(p.numel() for p in hf.parameters() if p.requires_grad) == PARAMS[name][0]


@pytest.mark.parametrize("ratio", [0.0, 0.25, 0.5, 0.75, 0.9])
def test_mask_ratio_is_exact_per_sample(ratio):
    model = MaskedAutoencoder(tiny_mae_config()).eval()
    _, pred, mask = model(torch.randn(5, 3, 16, 16), mask_ratio=ratio)
    hidden = 16 - int(16 * (1 - ratio))  # N = 16 patches, int(N (1 - r)) stay visible
    assert mask.shape == (5, 16) and pred.shape == (5, 16, 4 * 4 * 3)
    assert mask.sum(dim=1).tolist() == [float(hidden)] * 5
    assert set(mask.unique().tolist()) <= {0.0, 1.0}


def test_masks_differ_between_samples():
    _, _, mask = MaskedAutoencoder(tiny_mae_config())(torch.randn(4, 3, 16, 16))
    assert len({tuple(row.tolist()) for row in mask}) > 1


def test_loss_ignores_visible_patches():
    pred, target = torch.randn(2, 16, 48), torch.randn(2, 16, 48)
    mask = torch.zeros(2, 16)
    mask[0, :5], mask[1, 3:12] = 1, 1
    loss = masked_mse(pred, target, mask)
    changed = pred.clone()
    changed[mask == 0] += 100.0
    assert masked_mse(changed, target, mask) == loss
    by_hand = sum(((pred[b, i].double() - target[b, i].double()) ** 2).mean() for b, i in mask.nonzero().tolist())
    assert loss.double().item() == pytest.approx(by_hand.item() / 14, rel=1e-6)


def test_model_loss_ignores_visible_predictions():
    model = MaskedAutoencoder(tiny_mae_config())
    x, noise = torch.randn(2, 3, 16, 16), torch.rand(2, 16)
    loss, pred, mask = model(x, noise=noise)
    pred.retain_grad()
    loss.backward()
    assert torch.all(pred.grad[mask == 0] == 0) and torch.any(pred.grad[mask == 1] != 0)


def test_unshuffling_restores_patch_order():
    x, noise = torch.randn(3, 16, 8), torch.rand(3, 16)
    visible, mask, ids_restore = random_masking(x, 0.75, noise)
    kept = noise.argsort(dim=1)[:, :4]  # the 4 smallest-noise patches stay, in noise order
    assert torch.equal(visible, torch.stack([x[b, kept[b]] for b in range(3)]))
    padded = torch.cat([visible, torch.zeros(3, 12, 8)], dim=1)
    restored = torch.gather(padded, 1, ids_restore[..., None].expand(-1, -1, 8))
    assert torch.equal(restored, x * (1 - mask)[..., None])


def test_patchify_layout():
    imgs = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    patches = patchify(imgs, (4, 4))  # (B, N, 4*4*3), rows of the patch, then columns, channels last
    assert patches[1, 3].reshape(4, 4, 3).permute(2, 0, 1).equal(imgs[1, :, 4:8, 4:8])
    model = MaskedAutoencoder(tiny_mae_config(img_size=8))
    assert torch.equal(model.unpatchify(patches), imgs)


def test_mask_ratio_zero_equals_the_exported_vit():
    model = MaskedAutoencoder(tiny_mae_config()).eval()
    x, noise = torch.randn(2, 3, 16, 16), torch.rand(2, 16)
    with torch.no_grad():
        latent, mask, ids_restore = model.forward_encoder(x, 0.0, noise)
        assert mask.sum() == 0
        patches = torch.gather(latent[:, 1:], 1, ids_restore[..., None].expand(-1, -1, 32))  # original order
        vit = export_encoder(model, global_pool="token")
        torch.testing.assert_close(vit.forward_features(x), torch.cat([latent[:, :1], patches], 1), rtol=0, atol=1e-5)
        # average pooling with fc_norm (MAE fine-tuning): LN of the mean of the un-normalised patch tokens
        avg = export_encoder(model, global_pool="avg")
        tokens = model.encoder.blocks(model.encoder.embed(x))[:, 1:].mean(dim=1)
        norm = model.encoder.norm
        expected = F.layer_norm(tokens, (32,), norm.weight, norm.bias, norm.eps)
        torch.testing.assert_close(avg.forward_head(avg.forward_features(x), pre_logits=True), expected)


@pytest.mark.parametrize("norm_pix", [True, False])
def test_parity_with_transformers(tmp_path, norm_pix):
    hf = hf_mae(norm_pix_loss=norm_pix)
    hf.save_pretrained(tmp_path)
    model = load_pretrained(tmp_path)
    assert isinstance(model, MaskedAutoencoder) and model.cfg.norm_pix_loss is norm_pix
    x, noise = torch.randn(3, 3, 16, 16), torch.rand(3, 16)
    with torch.no_grad():
        ref = hf(pixel_values=x, noise=noise, interpolate_pos_encoding=False)
        loss, pred, mask = model(x, mask_ratio=0.75, noise=noise)
    torch.testing.assert_close(mask, ref.mask, rtol=0, atol=0)
    torch.testing.assert_close(pred, ref.logits, rtol=0, atol=1e-5)
    torch.testing.assert_close(loss, ref.loss, rtol=0, atol=1e-5)
    assert ref.loss > 0.1  # a real loss, not a degenerate zero


def test_encoder_state_is_pure_and_complete():
    model = MaskedAutoencoder(tiny_mae_config())
    state, cfg = encoder_state(model.state_dict(), model.cfg)
    assert cfg.global_pool == "avg" and cfg.fc_norm and cfg.pos_embed == "learned" and cfg.num_classes == 0
    assert not any(k.startswith(("decoder", "mask_token", "norm.")) for k in state)
    assert set(state) == set(build_model(cfg).state_dict())


# ------------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5])
def test_bad_mask_ratio(ratio):
    model = MaskedAutoencoder(tiny_mae_config())
    with pytest.raises(ValueError, match=r"mask_ratio must lie in \[0, 1\).*0\.75"):
        model(torch.randn(1, 3, 16, 16), mask_ratio=ratio)
    with pytest.raises(ValueError, match=r"mask_ratio must lie in \[0, 1\)"):
        tiny_mae_config(mask_ratio=ratio)


def test_image_size_not_divisible_by_patch():
    with pytest.raises(ValueError, match="not divisible by patch size 4.*multiple of 4"):
        tiny_mae_config(img_size=18)
    model = MaskedAutoencoder(tiny_mae_config())
    with pytest.raises(ValueError, match="not divisible by the patch size"):
        model(torch.randn(1, 3, 18, 18))


def test_bad_noise_shape():
    with pytest.raises(ValueError, match=r"noise must have shape \(batch, patches\)"):
        MaskedAutoencoder(tiny_mae_config())(torch.randn(2, 3, 16, 16), noise=torch.rand(2, 15))
