"""Relative position bias: one learned logit per head and 2D offset between two tokens (Shaw et al. 2018).

Swin (Liu et al. 2021, Eq. 4) adds it inside each MxM window; BEiT (Bao et al. 2021, Sec. 2.2) adds it to a plain
ViT's global attention, with three more entries for pairs involving the class token (class -> patch, patch -> class,
class -> class), so a model needs no absolute position embedding. Both read a ((2Gh-1)*(2Gw-1) [+ 3], heads) table
through a fixed index of token pairs; this module is the one home of that index and of the table's resampling.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

PREFIX_ENTRIES = 3  # BEiT: class -> patch, patch -> class, class -> class

Grid = tuple[int, int]


def _as_grid(size: int | Grid) -> Grid:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def offset_count(grid: int | Grid) -> int:
    """(2Gh-1) * (2Gw-1): how many distinct 2D offsets two tokens of a Gh x Gw grid can have."""
    gh, gw = _as_grid(grid)
    return (2 * gh - 1) * (2 * gw - 1)


def relative_table_size(grid: int | Grid, num_prefix_tokens: int = 0) -> int:
    """Rows of the bias table: one per offset, plus BEiT's three prefix entries when there are prefix tokens."""
    return offset_count(grid) + (PREFIX_ENTRIES if num_prefix_tokens else 0)


def relative_position_index(grid: int | Grid, num_prefix_tokens: int = 0, device=None) -> torch.Tensor:
    """(T, T) index into the bias table, T = prefix + Gh*Gw: (dh + Gh-1) * (2Gw-1) + (dw + Gw-1) between patches i
    and j (dh, dw: i's row and column minus j's); an int ``grid`` is a square window (Swin).

    Every prefix token ([class], [dist]) uses BEiT's entries: class -> patch is the first row after the offsets,
    patch -> class the second, class -> class the third.
    """
    gh, gw = _as_grid(grid)
    rows, cols = torch.meshgrid(torch.arange(gh, device=device), torch.arange(gw, device=device), indexing="ij")
    coords = torch.stack([rows.flatten(), cols.flatten()])  # (2, N)
    rel = coords[:, :, None] - coords[:, None, :]  # (2, N, N): query minus key
    patches = (rel[0] + gh - 1) * (2 * gw - 1) + (rel[1] + gw - 1)
    if not num_prefix_tokens:
        return patches
    first = offset_count((gh, gw))
    index = torch.full((num_prefix_tokens + gh * gw,) * 2, first + 2, dtype=patches.dtype, device=device)
    index[num_prefix_tokens:, num_prefix_tokens:] = patches
    index[:num_prefix_tokens, num_prefix_tokens:] = first  # class -> patch
    index[num_prefix_tokens:, :num_prefix_tokens] = first + 1  # patch -> class
    return index


def gather_bias(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """((rows, heads) table, (T, T) index) -> (heads, T, T) bias B of softmax(QK^T / sqrt(d) + B)."""
    T = index.shape[0]
    return table[index.reshape(-1)].reshape(T, T, table.shape[1]).permute(2, 0, 1)


def resample_bias_table(
    table: torch.Tensor, new_grid: int | Grid, old_grid: int | Grid | None = None, num_prefix_tokens: int = 0
) -> torch.Tensor:
    """Bicubically resample a ((2Gh-1)*(2Gw-1) [+ 3], heads) table to ``new_grid``, the prefix entries kept.

    This is how Swin fine-tunes a 224 px model at 384 px with 12x12 windows (``load_pretrained`` in the official
    utils.py) and BEiT at a higher resolution (``resize_rel_pos_bias_table``). An int grid is a square window;
    ``old_grid`` may be left out when it is square. Runs in float32 and returns the input dtype.
    """
    extra = PREFIX_ENTRIES if num_prefix_tokens else 0
    n = table.shape[0] - extra
    if old_grid is None:
        side = round(n**0.5)
        if side * side != n or side % 2 == 0:
            raise ValueError(f"a bias table of {n} offset rows is not (2M-1)^2 for a square grid; pass old_grid")
        old_grid = (side + 1) // 2
    old, new = _as_grid(old_grid), _as_grid(new_grid)
    if offset_count(old) != n:
        raise ValueError(f"a {old[0]}x{old[1]} grid has {offset_count(old)} offsets but the table has {n} rows")
    if old == new:
        return table
    heads = table.shape[1]
    size = (2 * new[0] - 1, 2 * new[1] - 1)
    grid = table[:n].float().T.reshape(1, heads, 2 * old[0] - 1, 2 * old[1] - 1)  # (1, heads, 2Gh-1, 2Gw-1)
    grid = F.interpolate(grid, size=size, mode="bicubic", align_corners=False)
    resampled = grid.reshape(heads, size[0] * size[1]).T.to(table.dtype)
    return torch.cat([resampled, table[n:]]).contiguous()
