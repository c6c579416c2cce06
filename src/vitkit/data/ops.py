"""Image operations of AutoAugment-style policies on float batches (B, 3, H, W) of pixels in [0, 255].

Each follows the Pillow function that the RandAugment / AutoAugment reference code applies (ImageEnhance,
ImageOps, Image.transform with NEAREST), so that an integer image gives Pillow's result to within rounding;
magnitudes are per sample, tensors of shape (B,).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

FILL = 128.0  # grey for pixels that geometric ops bring in from outside the image


def _per_sample(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return v.to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1)


def blend(image: torch.Tensor, degenerate: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """ImageEnhance: degenerate + factor * (image - degenerate), clipped; factor 1 is the identity."""
    return (degenerate + _per_sample(factor, image) * (image - degenerate)).clamp(0, 255)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """Pillow's ITU-R 601-2 luma with its fixed-point rounding: (B, 3, H, W) -> (B, 1, H, W)."""
    r, g, b = x.unbind(1)
    return torch.floor((r * 19595 + g * 38470 + b * 7471 + 32768) / 65536).unsqueeze(1)


def brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return blend(x, torch.zeros_like(x), factor)


def color(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Saturation: blend with the grayscale image."""
    return blend(x, grayscale(x).expand_as(x), factor)


def contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with a flat image at the (rounded) mean luma."""
    mean = torch.floor(grayscale(x).mean(dim=(1, 2, 3), keepdim=True) + 0.5)
    return blend(x, mean.expand_as(x), factor)


def sharpness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with ImageFilter.SMOOTH (3x3 kernel, centre 5, divisor 13); the border is left as is."""
    kernel = torch.ones(3, 3, dtype=x.dtype, device=x.device)
    kernel[1, 1] = 5
    kernel = (kernel / 13).expand(x.shape[1], 1, 3, 3)
    smooth = torch.floor(F.conv2d(x, kernel, groups=x.shape[1]) + 0.5)
    degenerate = x.clone()
    degenerate[..., 1:-1, 1:-1] = smooth
    return blend(x, degenerate, factor)


def posterize(x: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """Keep the top ``bits`` bits of each channel."""
    step = 2.0 ** (8 - _per_sample(bits, x))
    return torch.floor(x / step) * step


def solarize(x: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """Invert pixels at or above ``threshold`` (256 leaves the image unchanged)."""
    return torch.where(x >= _per_sample(threshold, x), 255 - x, x)


def autocontrast(x: torch.Tensor) -> torch.Tensor:
    """Stretch each channel to [0, 255]; a flat channel is left alone (ImageOps.autocontrast, cutoff 0)."""
    lo = x.amin(dim=(2, 3), keepdim=True)
    hi = x.amax(dim=(2, 3), keepdim=True)
    flat = hi <= lo
    # Written as Pillow computes it (255.0 / n, then + offset): torch's scalar / tensor multiplies by a
    # reciprocal, which rounds differently and moves values that land on an integer.
    scale = torch.full_like(hi, 255.0) / torch.where(flat, torch.ones_like(hi), hi - lo)
    offset = -lo * scale
    out = torch.floor(x * scale + offset).clamp(0, 255)
    return torch.where(flat, x, out)


def equalize(x: torch.Tensor) -> torch.Tensor:
    """Histogram equalisation per channel with ImageOps.equalize's look-up table.

    step = (pixels - count of the top occupied level) // 255; lut[i] = (step // 2 + #pixels below i) // step.
    """
    B, C, H, W = x.shape
    levels = x.round().clamp(0, 255).long().view(B, C, H * W)
    hist = torch.zeros(B, C, 256, device=x.device, dtype=torch.long)
    hist.scatter_add_(2, levels, torch.ones_like(levels))
    top = hist.gather(2, levels.amax(2, keepdim=True))  # (B, C, 1) count of the highest occupied level
    step = (H * W - top) // 255
    below = hist.cumsum(2) - hist
    lut = ((step // 2 + below) // step.clamp(min=1)).clamp(max=255)
    lut = torch.where(step > 0, lut, torch.arange(256, device=x.device).expand(B, C, 256))
    return lut.gather(2, levels).view(B, C, H, W).to(x.dtype)


def affine(x: torch.Tensor, matrix: torch.Tensor, fill: float = FILL) -> torch.Tensor:
    """Image.transform(AFFINE, NEAREST): output pixel (x, y) takes input at floor(M @ (x + .5, y + .5, 1)).

    ``matrix`` (B, 2, 3) maps output to input coordinates as Pillow's ``data`` tuple does; float64 coordinates
    reproduce Pillow's double-precision rounding.
    """
    B, C, H, W = x.shape
    m = matrix.to(device=x.device, dtype=torch.float64)
    xs = torch.arange(W, device=x.device, dtype=torch.float64) + 0.5
    ys = torch.arange(H, device=x.device, dtype=torch.float64) + 0.5
    coef = lambda i, j: m[:, i, j].view(B, 1, 1)
    xin = coef(0, 0) * xs.view(1, 1, W) + coef(0, 1) * ys.view(1, H, 1) + coef(0, 2)  # (B, H, W)
    yin = coef(1, 0) * xs.view(1, 1, W) + coef(1, 1) * ys.view(1, H, 1) + coef(1, 2)
    inside = (xin >= 0) & (xin < W) & (yin >= 0) & (yin < H)
    flat = (yin.floor().clamp(0, H - 1) * W + xin.floor().clamp(0, W - 1)).long().view(B, 1, H * W)
    out = x.reshape(B, C, H * W).gather(2, flat.expand(B, C, H * W)).view(B, C, H, W)
    return torch.where(inside.unsqueeze(1), out, torch.full_like(out, fill))


def _matrix(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, d: torch.Tensor, e: torch.Tensor, f: torch.Tensor):
    return torch.stack([torch.stack([a, b, c], 1), torch.stack([d, e, f], 1)], 1)


def shear_x(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Pillow data (1, s, 0, 0, 1, 0): row y shifts by s * y (about the top-left corner, as AutoAugment does)."""
    one, zero = torch.ones_like(factor), torch.zeros_like(factor)
    return affine(x, _matrix(one, factor, zero, zero, one, zero))


def shear_y(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    one, zero = torch.ones_like(factor), torch.zeros_like(factor)
    return affine(x, _matrix(one, zero, zero, factor, one, zero))


def translate(x: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """Content moves by (-dx, -dy) pixels: Pillow data (1, 0, dx, 0, 1, dy)."""
    one, zero = torch.ones_like(dx), torch.zeros_like(dx)
    return affine(x, _matrix(one, zero, dx, zero, one, dy))


def rotate(x: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Counter-clockwise rotation about the image centre, as Image.rotate (cos/sin rounded to 15 digits)."""
    H, W = x.shape[-2:]
    rad = -torch.deg2rad(degrees.to(torch.float64))
    cos, sin = torch.round(torch.cos(rad), decimals=15), torch.round(torch.sin(rad), decimals=15)
    cx, cy = W / 2.0, H / 2.0
    c = cos * -cx + sin * -cy + cx
    f = -sin * -cx + cos * -cy + cy
    return affine(x, _matrix(cos, sin, c, -sin, cos, f))


# --------------------------------------------------------------------------------------- colour jitter
def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> HSV in [0, 1], as colorsys.rgb_to_hsv per pixel."""
    r, g, b = x.unbind(1)
    maxc, _ = x.max(1)
    minc, _ = x.min(1)
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(delta > 0, (h / 6.0) % 1.0, torch.zeros_like(h))
    s = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), torch.zeros_like(maxc))
    return torch.stack([h, s, maxc], 1)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_hsv` (colorsys.hsv_to_rgb)."""
    h, s, v = x.unbind(1)
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    i = i.long() % 6
    choices = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = torch.zeros_like(x)
    for k, (r, g, b) in enumerate(choices):
        sel = (i == k).unsqueeze(1)
        out = torch.where(sel, torch.stack([r, g, b], 1), out)
    return out


def hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the hue by ``shift`` turns (per sample, in [-0.5, 0.5]); pixels in [0, 255]."""
    hsv = rgb_to_hsv(x / 255.0)
    h = (hsv[:, 0] + _per_sample(shift, x)[:, 0]) % 1.0
    return hsv_to_rgb(torch.stack([h, hsv[:, 1], hsv[:, 2]], 1)) * 255.0


def mean_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """ColorJitter's contrast: blend with the mean luma, unrounded (torchvision's tensor convention)."""
    r, g, b = x.unbind(1)
    mean = (0.299 * r + 0.587 * g + 0.114 * b).mean(dim=(1, 2)).view(-1, 1, 1, 1)
    return blend(x, mean.expand_as(x), factor)
