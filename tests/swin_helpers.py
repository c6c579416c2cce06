"""Swin test fixtures built independently of vitkit's converters: transformers models with random weights, their
tensors renamed by hand into timm's two layouts and the original release's, and brute-force references."""

from __future__ import annotations

import re

import numpy as np
import torch

# A Swin small enough for exhaustive checks: 32 px, 2x2 patches -> 16x16, 8x8, 4x4 maps, 4x4 windows (the last
# stage is a single window, so its blocks do not shift: the original code's rule).
TINY = dict(image_size=32, patch_size=2, embed_dim=16, depths=[2, 2, 1], num_heads=[2, 2, 4], window_size=4)


def hf_swin(num_labels: int = 5, seed: int = 0, **changes):
    """transformers' SwinForImageClassification with every parameter random (its init zeros the bias tables)."""
    import transformers

    torch.manual_seed(seed)
    config = transformers.SwinConfig(**{**TINY, **changes}, num_labels=num_labels)
    model = (transformers.SwinForImageClassification if num_labels else transformers.SwinModel)(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(1.0 if "norm" in name and name.endswith("weight") else 0.0, 0.2)
    return model


def hf_logits(model, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = model(x)
    return out.logits if hasattr(out, "logits") else out.pooler_output


def timm_state(hf_model, original: bool = False) -> dict[str, torch.Tensor]:
    """transformers' in-memory tensors renamed to timm's current layout, or (``original``) to the layout of the
    microsoft/Swin-Transformer release: merging at the end of a stage, ``head.*``, with its index buffers."""
    depths = hf_model.config.depths
    out: dict[str, torch.Tensor] = {}
    for key, value in hf_model.state_dict().items():
        key = key.removeprefix("swin.")
        key = key.replace("embeddings.patch_embeddings.projection", "patch_embed.proj")
        key = key.replace("embeddings.norm", "patch_embed.norm").replace("encoder.layers", "layers")
        key = key.replace("layernorm_before", "norm1").replace("layernorm_after", "norm2")
        key = key.replace("attention.o_proj", "attn.proj").replace("attention.relative_position_bias.", "attn.")
        key = re.sub(r"^layernorm\.", "norm.", key).replace("classifier.", "head." if original else "head.fc.")
        if not original:
            key = re.sub(r"^layers\.(\d+)\.downsample", lambda m: f"layers.{int(m.group(1)) + 1}.downsample", key)
        out[key] = value.clone()
    window = hf_model.config.window_size
    for s, depth in enumerate(depths):
        for b in range(depth):
            p = f"layers.{s}.blocks.{b}."
            for kind in ("weight", "bias"):
                out[f"{p}attn.qkv.{kind}"] = torch.cat([out.pop(f"{p}attention.{n}_proj.{kind}") for n in "qkv"])
            if original:
                out[f"{p}attn.relative_position_index"] = torch.from_numpy(hand_index(window))
    if original:  # the release also stores each shifted block's mask; only its shape says something (nW)
        grid = hf_model.config.image_size // hf_model.config.patch_size
        if grid > window:
            out["layers.0.blocks.1.attn_mask"] = torch.zeros((grid // window) ** 2, window**2, window**2)
    return out


def hand_index(window: int) -> np.ndarray:
    """Relative position index by loops: offsets (dh, dw) in [-(M-1), M-1] numbered row-major."""
    tokens = [(r, c) for r in range(window) for c in range(window)]
    side = 2 * window - 1
    return np.array([[(a[0] - b[0] + window - 1) * side + (a[1] - b[1] + window - 1) for b in tokens] for a in tokens])


def brute_force_window_attention(x, qkv_w, qkv_b, proj_w, proj_b, table, heads, window, shift) -> np.ndarray:
    """Global attention over all H*W tokens in float64, where token p may attend to q only when both fall in the
    same MxM window of a grid displaced by ``shift`` (no wrap-around), plus the relative position bias.

    This is what shifted-window attention means on the unrolled map; x is (H, W, C), the result (H, W, C).
    """
    H, W, C = x.shape
    tokens = [(r, c) for r in range(H) for c in range(W)]
    flat = x.reshape(H * W, C)
    qkv = flat @ qkv_w.T + qkv_b
    q, k, v = np.split(qkv, 3, axis=1)
    hd = C // heads
    out = np.zeros((H * W, C))
    for h in range(heads):
        qh, kh, vh = (t[:, h * hd : (h + 1) * hd] for t in (q, k, v))
        scores = np.full((H * W, H * W), -np.inf)
        for i, (pr, pc) in enumerate(tokens):
            for j, (qr, qc) in enumerate(tokens):
                same = (pr - shift) // window == (qr - shift) // window and (pc - shift) // window == (
                    qc - shift
                ) // window
                if same:
                    bias = table[(pr - qr + window - 1) * (2 * window - 1) + (pc - qc + window - 1), h]
                    scores[i, j] = qh[i] @ kh[j] / np.sqrt(hd) + bias
        probs = np.exp(scores - scores.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        out[:, h * hd : (h + 1) * hd] = probs @ vh
    return (out @ proj_w.T + proj_b).reshape(H, W, C)


def cubic_resample_reference(table: np.ndarray, new_side: int) -> np.ndarray:
    """Bicubic resampling of each head's (S, S) grid to (new_side, new_side) in float64, written from the
    definition: Keys' cubic convolution (a = -0.75, PyTorch's), half-pixel centres, edges clamped."""
    a = -0.75

    def weights(t: float) -> list[float]:
        def k(d: float) -> float:
            d = abs(d)
            if d <= 1:
                return (a + 2) * d**3 - (a + 3) * d**2 + 1
            if d < 2:
                return a * d**3 - 5 * a * d**2 + 8 * a * d - 4 * a
            return 0.0

        return [k(t + 1), k(t), k(1 - t), k(2 - t)]

    side, heads = int(round(table.shape[0] ** 0.5)), table.shape[1]
    grid = table.T.reshape(heads, side, side)
    scale = side / new_side
    out = np.zeros((heads, new_side, new_side))
    for i in range(new_side):
        y = (i + 0.5) * scale - 0.5
        y0 = int(np.floor(y))
        wy = weights(y - y0)
        for j in range(new_side):
            x = (j + 0.5) * scale - 0.5
            x0 = int(np.floor(x))
            wx = weights(x - x0)
            acc = np.zeros(heads)
            for dy in range(4):
                for dx in range(4):
                    yy = min(max(y0 - 1 + dy, 0), side - 1)
                    xx = min(max(x0 - 1 + dx, 0), side - 1)
                    acc += wy[dy] * wx[dx] * grid[:, yy, xx]
            out[:, i, j] = acc
    return out.reshape(heads, new_side * new_side).T
