"""Multi-scale deformable attention (Zhu et al. 2021, "Deformable DETR", Sec. 4.1, Eq. 3), as ViT-Adapter uses it.

Each query attends to a few points per head and level instead of to every key:

    MSDeformAttn(z_q, p_q, {x_l}) = W_o [ sum_l sum_k A_mlqk * x_l,m(p_q + dp_mlqk) ]_m        (concatenated heads m)

with offsets dp and weights A (softmax over the L*K points of a head) both linear in the query, and x_l,m(p) the
value map of level l and head m sampled bilinearly at p. Sampling follows ``grid_sample(align_corners=False,
padding_mode="zeros")``, the convention of the original CUDA op and of its pure-PyTorch reference: a location in
[0, 1]^2 spans the whole map (pixel centres at (i + 0.5) / W), and the map is zero outside.

The original needs a compiled CUDA extension. Here the sampling core is plain PyTorch in two formulations:

* :func:`ms_deform_attn_grid_sample`: one ``grid_sample`` per level, then weight and sum (the original's
  ``ms_deform_attn_core_pytorch`` written anew). Used on devices other than the CPU, and the benchmark's baseline.
* the CPU path of :func:`ms_deform_attn_sample`: every level is framed by one pixel of zeros, so the four bilinear
  corners of a point are rows ``r, r + 1, r + W+2, r + W+3`` of one flattened multi-level value table, and the
  weighted sum over all levels, points and corners is a single ``embedding_bag`` (gather, weight and sum fused: no
  queries x points x channels intermediate). The backward is written by hand: the corner dot products
  <dL/dout, value> come from one sampled dense-dense product (``torch.sparse.sampled_addmm``), and the value
  gradient is a transposed ``embedding_bag`` over the top-left corners sorted once, its four corners added as
  shifted slices. At ViT-Adapter-T's sizes (512 px, batch 2 and 8, one CPU thread) forward + backward is about
  1.8-3.7x faster than the per-level formulation and forward alone 2-4.4x (``benchmarks/deform_attn.py``).

Half-precision inputs are sampled in float32 (the CUDA op also casts them) and the result is cast back.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

Shapes = list[tuple[int, int]]


def level_shapes(spatial_shapes: torch.Tensor | Sequence[Sequence[int]]) -> Shapes:
    """(L, 2) tensor or sequence of (H, W) -> a list of int pairs."""
    rows = spatial_shapes.tolist() if isinstance(spatial_shapes, torch.Tensor) else spatial_shapes
    return [(int(h), int(w)) for h, w in rows]


def level_start_index(spatial_shapes: torch.Tensor) -> torch.Tensor:
    """(L, 2) long -> (L,): where each level's H*W tokens begin in the flattened multi-level sequence."""
    sizes = spatial_shapes.prod(1)
    return torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])


# --------------------------------------------------------------------------------------- per-level grid_sample
def ms_deform_attn_grid_sample(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor | Sequence[Sequence[int]],
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """The straightforward core: ``grid_sample`` each level, stack, weight and sum.

    value (B, S, M, Dh) with S = sum H_l W_l; sampling_locations (B, Lq, M, L, P, 2) as (x, y) in [0, 1];
    attention_weights (B, Lq, M, L, P). Returns (B, Lq, M * Dh).
    """
    B, _, M, Dh = value.shape
    _, Lq, _, L, P, _ = sampling_locations.shape
    shapes = level_shapes(spatial_shapes)
    grids = 2 * sampling_locations - 1  # grid_sample wants [-1, 1]
    samples = []
    for level, ((h, w), v) in enumerate(zip(shapes, value.split([h * w for h, w in shapes], dim=1))):
        v = v.flatten(2).transpose(1, 2).reshape(B * M, Dh, h, w)  # (B, HW, M, Dh) -> (B*M, Dh, H, W)
        grid = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)  # (B*M, Lq, P, 2)
        samples.append(F.grid_sample(v, grid, mode="bilinear", padding_mode="zeros", align_corners=False))
    weights = attention_weights.transpose(1, 2).reshape(B * M, 1, Lq, L * P)
    out = (torch.stack(samples, dim=-2).flatten(-2) * weights).sum(-1)  # (B*M, Dh, Lq)
    return out.view(B, M * Dh, Lq).transpose(1, 2)


# ------------------------------------------------------------------------------- one gather over all levels
def _frame_levels(value: torch.Tensor, shapes: Shapes) -> torch.Tensor:
    """(B, S, M, Dh) -> (B, S', M, Dh): each level's (H, W) map inside a one-pixel frame of zeros."""
    B, _, M, Dh = value.shape
    out = value.new_zeros(B, sum((h + 2) * (w + 2) for h, w in shapes), M, Dh)
    src = dst = 0
    for h, w in shapes:
        framed = out[:, dst : dst + (h + 2) * (w + 2)].view(B, h + 2, w + 2, M, Dh)
        framed[:, 1:-1, 1:-1] = value[:, src : src + h * w].view(B, h, w, M, Dh)
        src, dst = src + h * w, dst + (h + 2) * (w + 2)
    return out


def _level_constants(shapes: Shapes, P: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Per-level integers laid out (L, P), so that elementwise ops broadcast only over the leading (B, Lq, M)
    dims (a broadcast inside the tiny trailing (L, P) block is ~10x slower on the CPU)."""
    L = len(shapes)
    heights = torch.tensor([h for h, _ in shapes], device=device)
    widths = torch.tensor([w for _, w in shapes], device=device)
    starts = torch.tensor([0] + [(h + 2) * (w + 2) for h, w in shapes[:-1]], device=device).cumsum(0)
    per_point = {"h": heights, "w": widths, "start": starts}
    return {name: v[:, None].expand(L, P).contiguous() for name, v in per_point.items()}


def _corner_geometry(locations: torch.Tensor, shapes: Shapes, M: int):
    """Bilinear geometry of every point, in the framed layout.

    Returns ``top_left`` (B, Lq, M, L, P) int64 rows of the (B * S' * M, Dh) value table (the corners are
    ``top_left + shift``, ``shift`` (L, P, 4) for y0x0, y0x1, y1x0, y1x1), the fractional parts ``fx``/``fy``, and
    ``inside`` (B, Lq, M, L, P): False where no corner touches the map (all four are then zero).
    """
    B, _, _, L, P, _ = locations.shape
    k = _level_constants(shapes, P, locations.device)
    x = locations[..., 0] * k["w"].to(locations.dtype) - 0.5  # pixel coordinates, pixel centres at integers
    y = locations[..., 1] * k["h"].to(locations.dtype) - 0.5
    x0, y0 = x.floor(), y.floor()
    fx, fy = x - x0, y - y0
    ix, iy = x0.to(torch.int32), y0.to(torch.int32)
    inside = (ix >= -1) & (ix < k["w"]) & (iy >= -1) & (iy < k["h"])  # some corner on the map
    cx = torch.minimum(ix.clamp_(min=-1), k["w"] - 1) + 1  # column of the top-left corner in the framed map
    cy = torch.minimum(iy.clamp_(min=-1), k["h"] - 1) + 1
    within = (cy * (k["w"] + 2) + cx + k["start"]).to(torch.int64)  # (B, Lq, M, L, P) framed pixel
    total = sum((h + 2) * (w + 2) for h, w in shapes)
    batch_head = torch.arange(B, device=x.device)[:, None] * (total * M) + torch.arange(M, device=x.device)  # (B, M)
    top_left = within * M + batch_head[:, None, :, None, None].expand(B, 1, M, L, P)
    widths = torch.tensor([w for _, w in shapes], device=x.device)
    shift = torch.stack([0 * widths, 1 + 0 * widths, widths + 2, widths + 3], dim=-1) * M  # (L, 4)
    return top_left, shift[:, None].expand(L, P, 4).contiguous(), fx, fy, inside


def _bilinear(fx: torch.Tensor, fy: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """(..., 4) weights of the corners y0x0, y0x1, y1x0, y1x1, times ``scale`` (...)."""
    gx, fx = (1 - fx) * scale, fx * scale  # scaled before stacking: a broadcast into the last dim is slow on CPUs
    gy = 1 - fy
    return torch.stack([gy * gx, gy * fx, fy * gx, fy * fx], dim=-1)


class _GatherSample(torch.autograd.Function):
    """All levels' bilinear corners in one ``embedding_bag``; backward by SDDMM and a transposed bag sum."""

    @staticmethod
    def forward(ctx, value, shapes, locations, weights):
        B, S, M, Dh = value.shape
        _, Lq, _, L, P, _ = locations.shape
        top_left, shift, fx, fy, inside = _corner_geometry(locations, shapes, M)
        gate = weights * inside  # attention weight, zero where the point misses the map
        corner_w = _bilinear(fx, fy, gate)  # (B, Lq, M, L, P, 4)
        rows = top_left[..., None] + shift
        table = _frame_levels(value, shapes).view(-1, Dh)  # (B * S' * M, Dh)
        N, K = B * Lq * M, L * P * 4
        out = F.embedding_bag(rows.view(N, K), table, per_sample_weights=corner_w.view(N, K), mode="sum")
        ctx.save_for_backward(table, top_left, rows, fx, fy, gate, inside, corner_w)
        ctx.dims = (shapes, S)
        return out.view(B, Lq, M * Dh)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        table, top_left, rows, fx, fy, gate, inside, corner_w = ctx.saved_tensors
        shapes, S = ctx.dims
        B, Lq, M, L, P = top_left.shape
        N, K, Dh = B * Lq * M, L * P * 4, table.shape[1]
        grad = grad_out.reshape(N, Dh).contiguous()  # (B, Lq, M*Dh) -> one row per (query, head)
        grad_value = grad_loc = grad_weights = None
        if ctx.needs_input_grad[2] or ctx.needs_input_grad[3]:
            # <dL/dout_(q,m), value row> for every corner: a dense-dense product sampled at the corners' rows. A row's
            # columns are neither sorted nor unique (points may share a pixel); the CPU kernel computes each entry on
            # its own, which the finite-difference test checks.
            crow = torch.arange(0, N * K + 1, K, device=grad.device)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
                pattern = torch.sparse_csr_tensor(crow, rows.reshape(-1), corner_w.reshape(-1), size=(N, len(table)))
                dots = torch.sparse.sampled_addmm(pattern, grad, table.t(), beta=0.0).values()
            d00, d01, d10, d11 = dots.view(corner_w.shape).unbind(-1)
            if ctx.needs_input_grad[3]:
                gx, gy = 1 - fx, 1 - fy
                grad_weights = (gy * (gx * d00 + fx * d01) + fy * (gx * d10 + fx * d11)) * inside
            if ctx.needs_input_grad[2]:
                k = _level_constants(shapes, P, grad.device)
                d_x = (d01 - d00) * (1 - fy) + (d11 - d10) * fy  # d out / d x, per unit of attention weight
                d_y = (d10 - d00) * (1 - fx) + (d11 - d01) * fx
                grad_loc = torch.stack([d_x * gate * k["w"], d_y * gate * k["h"]], dim=-1)
        if ctx.needs_input_grad[0]:
            grad_value = _scatter_corners(grad, table.shape[0], top_left, corner_w, shapes, S)
        return grad_value, None, grad_loc, grad_weights


def _scatter_corners(grad: torch.Tensor, rows: int, top_left, corner_w, shapes: Shapes, S: int) -> torch.Tensor:
    """d loss / d value: (N, Dh) output gradients spread back onto the corners, (B, S, M, Dh).

    Points are sorted once by their top-left row; one ``embedding_bag`` per corner sums the weighted output
    gradients of all points sharing it (a bag per table row), and the four sums add up as shifted slices.
    """
    B, Lq, M, L, P = top_left.shape
    Dh = grad.shape[1]
    keys = top_left.reshape(-1)
    order = torch.argsort(keys.to(torch.int32) if rows < 2**31 else keys)
    counts = torch.bincount(keys, minlength=rows)
    offsets = counts.cumsum(0) - counts
    bag = order // (L * P)  # which (query, head) row of grad each sorted point belongs to
    weights = corner_w.reshape(-1, 4)[order].t().contiguous()  # (4, points)
    per_corner = [
        F.embedding_bag(bag, grad, offsets, per_sample_weights=weights[c], mode="sum").view(B, -1, M, Dh)
        for c in range(4)
    ]
    out = grad.new_empty(B, S, M, Dh)
    src = dst = 0
    for h, w in shapes:
        n = (h + 2) * (w + 2)
        t00, t01, t10, t11 = (t[:, src : src + n].view(B, h + 2, w + 2, M, Dh) for t in per_corner)
        # pixel (y, x) of the framed map is corner 00 of top-left (y, x), 01 of (y, x-1), 10 of (y-1, x), ...
        level = out[:, dst : dst + h * w].view(B, h, w, M, Dh)
        level.copy_(t00[:, 1:-1, 1:-1]).add_(t01[:, 1:-1, :-2]).add_(t10[:, :-2, 1:-1]).add_(t11[:, :-2, :-2])
        src, dst = src + n, dst + h * w
    return out


def ms_deform_attn_sample(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor | Sequence[Sequence[int]],
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Sample every head's points on every level and sum them with their attention weights.

    value (B, S, M, Dh), the levels' (H_l, W_l) maps flattened row-major and concatenated (S = sum H_l W_l);
    sampling_locations (B, Lq, M, L, P, 2) as (x, y) with [0, 1] spanning each map; attention_weights
    (B, Lq, M, L, P). Returns (B, Lq, M * Dh). Differentiable in all three tensors, on any device: the CPU uses
    the one-gather formulation, other devices the per-level ``grid_sample`` one (the gather path is timed on CPUs
    only; elsewhere ``grid_sample`` has native kernels).
    """
    shapes = level_shapes(spatial_shapes)
    if value.shape[1] != sum(h * w for h, w in shapes):
        raise ValueError(
            f"value has {value.shape[1]} tokens but the levels {shapes} hold {sum(h * w for h, w in shapes)}; "
            "pass the spatial shapes the value was flattened from"
        )
    dtype = value.dtype
    compute = torch.float64 if dtype == torch.float64 else torch.float32  # half types sample in float32
    value, locations, weights = (t.to(compute) for t in (value, sampling_locations, attention_weights))
    if value.device.type == "cpu" and not _tracing():
        out = _GatherSample.apply(value.contiguous(), shapes, locations, weights)
    else:
        out = ms_deform_attn_grid_sample(value, shapes, locations, weights)
    return out.to(dtype)


def _tracing() -> bool:
    """Exporting (ONNX, torch.export) or tracing (TorchScript): the per-level grid_sample formulation, whose ops
    every exporter knows, instead of the gather path's hand-written autograd function."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling()


# ------------------------------------------------------------------------------------------------- the module
class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention with the original's parameter names, shapes and initialisation.

    ``ratio`` scales the value projection's width (ViT-Adapter's ``deform_ratio``): values and the sampled
    features are ``int(d_model * ratio)`` wide, and ``output_proj`` maps them back to ``d_model``.
    """

    def __init__(self, d_model: int = 256, n_levels: int = 4, n_heads: int = 8, n_points: int = 4, ratio: float = 1.0):
        super().__init__()
        value_dim = int(d_model * ratio)
        if d_model % n_heads or value_dim % n_heads:
            raise ValueError(
                f"d_model {d_model} and its value width int(d_model * ratio) = {value_dim} must both be divisible "
                f"by n_heads {n_heads}; choose a head count that divides them"
            )
        self.d_model, self.ratio = d_model, ratio
        self.n_levels, self.n_heads, self.n_points = n_levels, n_heads, n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, value_dim)
        self.output_proj = nn.Linear(value_dim, d_model)
        self._reset_parameters()

    @torch.no_grad()
    def _reset_parameters(self) -> None:
        """Deformable DETR's initialisation: zero offset weights, and biases that put head m's k-th point k pixels
        away along direction 2 pi m / M (scaled so the larger coordinate is k); uniform attention; Xavier value
        and output projections with zero biases."""
        nn.init.zeros_(self.sampling_offsets.weight)
        bias = self.sampling_offsets.bias
        theta = torch.arange(self.n_heads, dtype=torch.float32, device=bias.device) * (2.0 * math.pi / self.n_heads)
        grid = torch.stack([theta.cos(), theta.sin()], dim=-1)
        grid = grid / grid.abs().max(-1, keepdim=True)[0]  # (M, 2) on the unit square's border
        scale = torch.arange(1, self.n_points + 1, dtype=torch.float32, device=bias.device)
        grid = grid[:, None, None, :] * scale[None, None, :, None]  # (M, 1, P, 2)
        bias.copy_(grid.expand(-1, self.n_levels, -1, -1).reshape(-1))
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for proj in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(proj.weight)
            nn.init.zeros_(proj.bias)

    def forward(
        self,
        query: torch.Tensor,
        reference_points: torch.Tensor,
        value: torch.Tensor,
        spatial_shapes: torch.Tensor | Sequence[Sequence[int]],
        level_start_index: torch.Tensor | Sequence[int] | None = None,
        padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, Lq, D) queries attend to (B, S, D) multi-level values -> (B, Lq, D).

        ``reference_points`` (B or 1, Lq, L or 1, 2) as (x, y) in [0, 1]; ``spatial_shapes`` (L, 2) long (H, W)
        per level, or the same as Python ints (what the ViT-Adapter passes, so that export sees constants);
        ``level_start_index`` is implied by the shapes and accepted for the original's signature; ``padding_mask``
        (B, S) is True at padding tokens, whose values are zeroed.
        """
        B, Lq, _ = query.shape
        S = value.shape[1]
        M, L, P = self.n_heads, self.n_levels, self.n_points
        if reference_points.shape[-1] != 2:
            raise ValueError(
                f"reference_points must end in (x, y), got shape {tuple(reference_points.shape)}; "
                "reference boxes (x, y, w, h) are not supported"
            )
        value = self.value_proj(value)  # (B, S, D') with D' = int(D * ratio)
        if padding_mask is not None:
            value = value.masked_fill(padding_mask[..., None], 0.0)
        value = value.view(B, S, M, -1)  # (B, S, M, Dh)
        offsets = self.sampling_offsets(query).view(B, Lq, M, L, P, 2)  # in pixels of each level
        weights = self.attention_weights(query).view(B, Lq, M, L * P).softmax(-1).view(B, Lq, M, L, P)
        shapes = level_shapes(spatial_shapes)
        size = torch.tensor([[w, h] for h, w in shapes], dtype=offsets.dtype, device=offsets.device)  # (L, 2)
        locations = reference_points[:, :, None, :, None, :] + offsets / size[None, None, None, :, None, :]
        out = ms_deform_attn_sample(value, shapes, locations, weights)  # (B, Lq, D')
        return self.output_proj(out)
