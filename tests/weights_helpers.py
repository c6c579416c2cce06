"""Fake original-format checkpoints built from the documented key layouts, and an independent float64 NumPy
forward pass written directly from vit_jax / big_vision (NHWC, HWIO kernels, einsum attention, tanh GELU), so
the converter's transposes and reshapes are checked against something that never saw them."""

from __future__ import annotations

import math

import numpy as np

# (LayerNorm indices, attention index, MLP index) inside an encoder block, and where the position table lives.
VIT_JAX = dict(ln=(0, 2), mha=1, mlp=3, pos="Transformer/posembed_input/pos_embedding", pos_before_cls=False)
BIG_VISION = dict(ln=(0, 1), mha=0, mlp=0, pos="pos_embedding", pos_before_cls=True)


def _normal(rng: np.random.Generator, *shape: int, scale: float | None = None) -> np.ndarray:
    fan_in = math.prod(shape[:-1]) if len(shape) > 1 else 1
    return (rng.standard_normal(shape) * (scale if scale is not None else fan_in**-0.5)).astype(np.float32)


def fake_vit_npz(
    *,
    layout: dict = VIT_JAX,
    prefix: str = "",
    width: int = 16,
    depth: int = 2,
    heads: int = 2,
    mlp: int = 32,
    patch: int = 4,
    grid: int = 2,
    in_chans: int = 3,
    classes: int = 3,
    cls: bool = True,
    pre_logits: int | None = None,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """A ViT checkpoint in the vit_jax (or big_vision) key layout with random arrays."""
    rng = np.random.default_rng(seed)
    d = {
        "embedding/kernel": _normal(rng, patch, patch, in_chans, width),
        "embedding/bias": _normal(rng, width, scale=0.1),
    }
    if cls:
        d["cls"] = _normal(rng, 1, 1, width, scale=1.0)
    tokens = grid * grid + (1 if cls and not layout["pos_before_cls"] else 0)
    d[layout["pos"]] = _normal(rng, 1, tokens, width, scale=0.5)
    dh = width // heads
    for i in range(depth):
        b = f"Transformer/encoderblock_{i}/"
        for ln in layout["ln"]:
            d[f"{b}LayerNorm_{ln}/scale"] = 1 + _normal(rng, width, scale=0.1)
            d[f"{b}LayerNorm_{ln}/bias"] = _normal(rng, width, scale=0.1)
        a = f"{b}MultiHeadDotProductAttention_{layout['mha']}/"
        for n in ("query", "key", "value"):
            d[f"{a}{n}/kernel"] = _normal(rng, width, heads, dh, scale=width**-0.5)
            d[f"{a}{n}/bias"] = _normal(rng, heads, dh, scale=0.1)
        d[f"{a}out/kernel"] = _normal(rng, heads, dh, width, scale=width**-0.5)
        d[f"{a}out/bias"] = _normal(rng, width, scale=0.1)
        m = f"{b}MlpBlock_{layout['mlp']}/"
        d[f"{m}Dense_0/kernel"], d[f"{m}Dense_0/bias"] = _normal(rng, width, mlp), _normal(rng, mlp, scale=0.1)
        d[f"{m}Dense_1/kernel"], d[f"{m}Dense_1/bias"] = _normal(rng, mlp, width), _normal(rng, width, scale=0.1)
    d["Transformer/encoder_norm/scale"] = 1 + _normal(rng, width, scale=0.1)
    d["Transformer/encoder_norm/bias"] = _normal(rng, width, scale=0.1)
    feat = width
    if pre_logits:
        d["pre_logits/kernel"], d["pre_logits/bias"] = _normal(rng, width, pre_logits), _normal(rng, pre_logits)
        feat = pre_logits
    if classes:
        d["head/kernel"], d["head/bias"] = _normal(rng, feat, classes), _normal(rng, classes, scale=0.1)
    return {prefix + k: v for k, v in d.items()}


def add_resnet(d: dict[str, np.ndarray], layers: tuple[int, ...], width: int, in_chans: int = 3, seed: int = 1):
    """Add the R50-style root and stages (vit_jax models_resnet layout); returns the stem's output channels."""
    rng = np.random.default_rng(seed)

    def gn(name: str, c: int) -> None:
        d[f"{name}/scale"] = 1 + _normal(rng, c, scale=0.2)
        d[f"{name}/bias"] = _normal(rng, c, scale=0.2)

    d["conv_root/kernel"] = _normal(rng, 7, 7, in_chans, width) + 0.05  # a non-zero mean: standardisation matters
    gn("gn_root", width)
    chans = width
    for s, units in enumerate(layers):
        mid = width * 2**s
        for u in range(units):
            b = f"block{s + 1}/unit{u + 1}/"
            if u == 0:
                d[b + "conv_proj/kernel"] = _normal(rng, 1, 1, chans, 4 * mid)
                gn(b + "gn_proj", 4 * mid)
            d[b + "conv1/kernel"], d[b + "conv2/kernel"] = _normal(rng, 1, 1, chans, mid), _normal(rng, 3, 3, mid, mid)
            d[b + "conv3/kernel"] = _normal(rng, 1, 1, mid, 4 * mid)
            for r, c in ((1, mid), (2, mid), (3, 4 * mid)):
                gn(b + f"gn{r}", c)
            chans = 4 * mid
    return chans


# ------------------------------------------------------------------------------- NumPy float64 reference
def _ln(x, w, name, eps=1e-6):
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w[f"{name}/scale"] + w[f"{name}/bias"]


def _gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def _same_pad(x, k, s, value=0.0):
    pads = []
    for size in x.shape[1:3]:
        total = max((math.ceil(size / s) - 1) * s + k - size, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, ((0, 0), *pads, (0, 0)), constant_values=value)


def _conv_same(x, k, s=1):
    """TF 'SAME' convolution of NHWC x with an HWIO kernel, standardised as vit_jax's StdConv does."""
    k = (k - k.mean(axis=(0, 1, 2))) / (k.std(axis=(0, 1, 2)) + 1e-5)
    kh, kw = k.shape[:2]
    oh, ow = math.ceil(x.shape[1] / s), math.ceil(x.shape[2] / s)
    x = _same_pad(x, kh, s)
    out = 0
    for i in range(kh):
        for j in range(kw):
            out = out + x[:, i : i + s * oh : s, j : j + s * ow : s, :] @ k[i, j]
    return out


def _gn(x, w, name, groups=32, eps=1e-6):
    B, H, W, C = x.shape
    g = x.reshape(B, H, W, groups, C // groups)
    mu, var = g.mean(axis=(1, 2, 4), keepdims=True), g.var(axis=(1, 2, 4), keepdims=True)
    return ((g - mu) / np.sqrt(var + eps)).reshape(B, H, W, C) * w[f"{name}/scale"] + w[f"{name}/bias"]


def _resnet(x, w, layers):
    relu = lambda t: np.maximum(t, 0)
    x = relu(_gn(_conv_same(x, w["conv_root/kernel"], 2), w, "gn_root"))
    x = _same_pad(x, 3, 2, value=-np.inf)
    oh, ow = (x.shape[1] - 3) // 2 + 1, (x.shape[2] - 3) // 2 + 1
    x = np.max([x[:, i : i + 2 * oh : 2, j : j + 2 * ow : 2] for i in range(3) for j in range(3)], axis=0)
    for s, units in enumerate(layers):
        for u in range(units):
            b, stride = f"block{s + 1}/unit{u + 1}/", 2 if (s > 0 and u == 0) else 1
            res = x
            if b + "conv_proj/kernel" in w:
                res = _gn(_conv_same(x, w[b + "conv_proj/kernel"], stride), w, b + "gn_proj")
            y = relu(_gn(_conv_same(x, w[b + "conv1/kernel"]), w, b + "gn1"))
            y = relu(_gn(_conv_same(y, w[b + "conv2/kernel"], stride), w, b + "gn2"))
            x = relu(res + _gn(_conv_same(y, w[b + "conv3/kernel"]), w, b + "gn3"))
    return x


def reference_forward(w: dict[str, np.ndarray], images_nchw: np.ndarray, layout: dict = VIT_JAX, layers=None):
    """Logits (or pre-logits features without a head) of the JAX model, in float64."""
    w = {k: v.astype(np.float64) for k, v in w.items()}
    x = images_nchw.astype(np.float64).transpose(0, 2, 3, 1)  # NHWC, as Flax
    if layers is not None:  # () is a root-only ResNet (R+Ti/16)
        x = _resnet(x, w, layers)
    k = w["embedding/kernel"]
    P, D = k.shape[0], k.shape[-1]
    B, H, W, C = x.shape
    patches = x.reshape(B, H // P, P, W // P, P, C).transpose(0, 1, 3, 2, 4, 5).reshape(B, -1, P * P * C)
    x = patches @ k.reshape(P * P * C, D) + w["embedding/bias"]
    pos = w[layout["pos"]]
    if layout["pos_before_cls"]:
        x = x + pos
    if "cls" in w:
        x = np.concatenate([np.repeat(w["cls"], B, axis=0), x], axis=1)
    if not layout["pos_before_cls"]:
        x = x + pos
    i = 0
    while f"Transformer/encoderblock_{i}/LayerNorm_0/scale" in w:
        b = f"Transformer/encoderblock_{i}/"
        a = f"{b}MultiHeadDotProductAttention_{layout['mha']}/"
        y = _ln(x, w, f"{b}LayerNorm_{layout['ln'][0]}")
        q, kk, v = (
            np.einsum("bnd,dhk->bnhk", y, w[f"{a}{n}/kernel"]) + w[f"{a}{n}/bias"] for n in ("query", "key", "value")
        )
        logits = np.einsum("bqhk,bthk->bhqt", q, kk) / math.sqrt(q.shape[-1])
        attn = np.exp(logits - logits.max(-1, keepdims=True))
        attn /= attn.sum(-1, keepdims=True)
        out = np.einsum("bhqt,bthk->bqhk", attn, v)
        x = x + np.einsum("bqhk,hkd->bqd", out, w[f"{a}out/kernel"]) + w[f"{a}out/bias"]
        m = f"{b}MlpBlock_{layout['mlp']}/"
        y = _ln(x, w, f"{b}LayerNorm_{layout['ln'][1]}")
        y = _gelu_tanh(y @ w[f"{m}Dense_0/kernel"] + w[f"{m}Dense_0/bias"])
        x = x + y @ w[f"{m}Dense_1/kernel"] + w[f"{m}Dense_1/bias"]
        i += 1
    x = _ln(x, w, "Transformer/encoder_norm")
    x = x[:, 0] if "cls" in w else x.mean(axis=1)
    if "pre_logits/kernel" in w:
        x = np.tanh(x @ w["pre_logits/kernel"] + w["pre_logits/bias"])
    if "head/kernel" in w:
        x = x @ w["head/kernel"] + w["head/bias"]
    return x
