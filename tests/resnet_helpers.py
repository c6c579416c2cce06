"""Fake BiT checkpoints in big_transfer's key layout, and an independent float64 NumPy forward pass written from
the BiT paper / big_transfer code (NHWC, HWIO kernels, pre-activation units, symmetric padding, weights
standardised as (w - mean) / sqrt(var + eps), GroupNorm eps 1e-5, zero pad + 3x3/2 max-pool after the root)."""

from __future__ import annotations

import math

import numpy as np

P = "resnet/"
CONV = "standardized_conv2d/kernel"


def _normal(rng: np.random.Generator, *shape: int, scale: float | None = None) -> np.ndarray:
    fan_in = math.prod(shape[:-1]) if len(shape) > 1 else 1
    return (rng.standard_normal(shape) * (scale if scale is not None else fan_in**-0.5)).astype(np.float32)


def fake_bit_npz(
    layers: tuple[int, ...] = (1, 1),
    width: int = 32,
    classes: int = 5,
    basic: bool = False,
    in_chans: int = 3,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """A BiT checkpoint (bottleneck units, or basic units with ``basic``) with random arrays."""
    rng = np.random.default_rng(seed)
    d: dict[str, np.ndarray] = {}

    def gn(name: str, c: int) -> None:
        d[f"{name}/gamma"] = 1 + _normal(rng, c, scale=0.2)
        d[f"{name}/beta"] = _normal(rng, c, scale=0.2)

    root_k = 3 if basic else 7
    d[P + "root_block/" + CONV] = _normal(rng, root_k, root_k, in_chans, width) + 0.05  # a non-zero mean
    chans = width
    for s, units in enumerate(layers):
        mid = width * 2**s
        out = mid if basic else 4 * mid
        for u in range(units):
            b = f"{P}block{s + 1}/unit{u + 1:02d}/"
            gn(b + "a/group_norm", chans)
            if chans != out or (s > 0 and u == 0):
                d[b + "a/proj/" + CONV] = _normal(rng, 1, 1, chans, out)
            if basic:
                d[b + "a/" + CONV], d[b + "b/" + CONV] = _normal(rng, 3, 3, chans, mid), _normal(rng, 3, 3, mid, mid)
                gn(b + "b/group_norm", mid)
            else:
                d[b + "a/" + CONV], d[b + "b/" + CONV] = _normal(rng, 1, 1, chans, mid), _normal(rng, 3, 3, mid, mid)
                d[b + "c/" + CONV] = _normal(rng, 1, 1, mid, out)
                gn(b + "b/group_norm", mid)
                gn(b + "c/group_norm", mid)
            chans = out
    gn(P + "group_norm", chans)
    if classes:
        d[P + "head/conv2d/kernel"] = _normal(rng, 1, 1, chans, classes)
        d[P + "head/conv2d/bias"] = _normal(rng, classes, scale=0.1)
    return d


# ------------------------------------------------------------------------------- NumPy float64 reference
def _conv(x: np.ndarray, k: np.ndarray, stride: int, ws_eps: float) -> np.ndarray:
    """Symmetric-padded convolution of NHWC x with a standardised HWIO kernel."""
    k = (k - k.mean(axis=(0, 1, 2))) / np.sqrt(k.var(axis=(0, 1, 2)) + ws_eps)
    kh = k.shape[0]
    pad = kh // 2
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    oh, ow = (x.shape[1] - kh) // stride + 1, (x.shape[2] - kh) // stride + 1
    out = 0
    for i in range(kh):
        for j in range(kh):
            out = out + x[:, i : i + stride * oh : stride, j : j + stride * ow : stride, :] @ k[i, j]
    return out


def _gn(x: np.ndarray, w: dict, name: str, groups: int, eps: float = 1e-5) -> np.ndarray:
    B, H, W, C = x.shape
    g = x.reshape(B, H, W, groups, C // groups)
    mu, var = g.mean(axis=(1, 2, 4), keepdims=True), g.var(axis=(1, 2, 4), keepdims=True)
    return ((g - mu) / np.sqrt(var + eps)).reshape(B, H, W, C) * w[f"{name}/gamma"] + w[f"{name}/beta"]


def bit_reference(w: dict, images_nchw: np.ndarray, layers: tuple[int, ...], groups: int = 32, ws_eps: float = 1e-10):
    """Logits of the BiT model ``w`` in float64 (features when it has no head)."""
    w = {k: v.astype(np.float64) for k, v in w.items()}
    relu = lambda t: np.maximum(t, 0)  # noqa: E731
    x = images_nchw.astype(np.float64).transpose(0, 2, 3, 1)
    root = w[P + "root_block/" + CONV]
    basic = root.shape[0] == 3
    x = _conv(x, root, 1 if basic else 2, ws_eps)
    if not basic:  # zero pad 1, then a 3x3/2 max-pool without padding
        x = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        oh, ow = (x.shape[1] - 3) // 2 + 1, (x.shape[2] - 3) // 2 + 1
        x = np.max([x[:, i : i + 2 * oh : 2, j : j + 2 * ow : 2] for i in range(3) for j in range(3)], axis=0)
    for s, units in enumerate(layers):
        for u in range(units):
            b, stride = f"{P}block{s + 1}/unit{u + 1:02d}/", 2 if (s > 0 and u == 0) else 1
            pre = relu(_gn(x, w, b + "a/group_norm", groups))
            res = _conv(pre, w[b + "a/proj/" + CONV], stride, ws_eps) if b + "a/proj/" + CONV in w else x
            if basic:
                y = _conv(pre, w[b + "a/" + CONV], stride, ws_eps)
                y = _conv(relu(_gn(y, w, b + "b/group_norm", groups)), w[b + "b/" + CONV], 1, ws_eps)
            else:
                y = _conv(pre, w[b + "a/" + CONV], 1, ws_eps)
                y = _conv(relu(_gn(y, w, b + "b/group_norm", groups)), w[b + "b/" + CONV], stride, ws_eps)
                y = _conv(relu(_gn(y, w, b + "c/group_norm", groups)), w[b + "c/" + CONV], 1, ws_eps)
            x = y + res
    x = relu(_gn(x, w, P + "group_norm", groups)).mean(axis=(1, 2))
    if P + "head/conv2d/kernel" in w:
        x = x @ w[P + "head/conv2d/kernel"][0, 0] + w[P + "head/conv2d/bias"]
    return x
