"""Simulated presentation attacks on a real photo, for the stand-in anti-spoofing set (``vitkit data make-spoof``).

Every image, live or attack, is "captured" by the same simulated camera (downsampling, sensor noise, the
camera's own JPEG), so the resolution change or compression alone does not give attacks away. Work happens at
``SCALE`` times the output size, where halftone dots and screen sub-pixels are a few pixels wide.

- print: ink gamut (lower saturation and contrast, paper-white tint), CMY halftone dot screens at the
  classic 15/75/0 degree angles, dot gain blur, low-frequency paper texture;
- replay: display gamma, an RGB stripe sub-pixel grid resampled at a slight rotation and scale (the camera
  samples the grid, which aliases into moire), glare, and the video's JPEG compression.

Each function takes a float RGB array (H, W, 3) in [0, 1] and a NumPy generator, and is deterministic given both.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter

SCALE = 4


def to_pil(a: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(a * 255.0 + 0.5, 0, 255).astype(np.uint8))


def to_float(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0


def jpeg(a: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    to_pil(a).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    return to_float(Image.open(buf))


def blur(a: np.ndarray, sigma: float) -> np.ndarray:
    return to_float(to_pil(a).filter(ImageFilter.GaussianBlur(sigma)))


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    """Low-frequency noise in [-1, 1]: a coarse random grid upsampled bicubically."""
    coarse = rng.uniform(0, 255, size=(cells, cells)).astype(np.uint8)
    up = Image.fromarray(coarse).resize((shape[1], shape[0]), Image.BICUBIC)
    return np.asarray(up, dtype=np.float32) / 127.5 - 1.0


def upsample(photo: Image.Image, size: int) -> np.ndarray:
    """The photo at the working resolution, ``SCALE * size`` square."""
    return to_float(photo.convert("RGB").resize((size * SCALE, size * SCALE), Image.BICUBIC))


def capture(a: np.ndarray, size: int, rng: np.random.Generator, antialias: bool = True) -> np.ndarray:
    """The simulated camera shared by live and attack images: exposure jitter, downsampling to ``size``,
    sensor noise and the camera's JPEG (quality 88-97). Without ``antialias`` the camera samples point-wise,
    which is what turns a screen's pixel grid into moire."""
    a = a * rng.uniform(0.9, 1.1) + rng.uniform(-0.04, 0.04)
    if not antialias:  # the lens still blurs a little before the sensor samples
        a = blur(a, rng.uniform(1.0, 1.6))
    small = to_pil(a).resize((size, size), Image.BOX if antialias else Image.NEAREST)
    out = to_float(small) + rng.normal(0.0, rng.uniform(0.005, 0.02), size=(size, size, 3)).astype(np.float32)
    return jpeg(np.clip(out, 0, 1), rng.integers(88, 98))


def _screen(shape: tuple[int, int], period: float, angle_deg: float, phase: np.ndarray) -> np.ndarray:
    """A cosine dot screen in [0, 1] at ``angle_deg`` with cells of ``period`` pixels."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    t = np.deg2rad(angle_deg)
    u = xx * np.cos(t) + yy * np.sin(t) + phase[0]
    v = -xx * np.sin(t) + yy * np.cos(t) + phase[1]
    return 0.5 + 0.25 * (np.cos(2 * np.pi * u / period) + np.cos(2 * np.pi * v / period))


def print_attack(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A printed photo (working resolution in and out)."""
    gray = a.mean(axis=2, keepdims=True)
    a = gray + rng.uniform(0.55, 0.8) * (a - gray)  # ink gamut: less saturated
    paper = np.array([1.0, rng.uniform(0.96, 1.0), rng.uniform(0.86, 0.95)], dtype=np.float32)
    black = rng.uniform(0.08, 0.16)
    a = black + (paper - black) * a  # ink never reaches black, paper is off-white
    cmy = 1.0 - a / paper
    period = rng.uniform(2.6, 4.0)
    inked = np.empty_like(cmy)
    for c, angle in enumerate((15.0, 75.0, 0.0)):
        screen = _screen(a.shape[:2], period, angle + rng.uniform(-2, 2), rng.uniform(0, period, size=2))
        inked[..., c] = (cmy[..., c] > screen).astype(np.float32)
    out = paper * (1.0 - inked * (1.0 - black))
    out = blur(out, rng.uniform(0.8, 1.4))  # dot gain and the camera's focus on paper
    texture = 1.0 + 0.04 * _smooth_noise(rng, a.shape[:2], 6) + 0.015 * _smooth_noise(rng, a.shape[:2], 40)
    return np.clip(out * texture[..., None], 0, 1)


def replay_attack(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The photo shown on a screen and filmed (working resolution in and out)."""
    a = jpeg(a, rng.integers(35, 70))  # the video / image file on the display is compressed
    a = np.power(np.clip(a, 0, 1), rng.uniform(0.75, 1.3))  # display gamma
    h, w = a.shape[:2]
    sub = np.zeros((h, w, 3), dtype=np.float32)
    pitch = int(rng.integers(3, 5))  # display pixel = `pitch` columns of R, G, B stripes plus a dark gap
    cols = np.arange(w) % pitch
    for c in range(3):
        sub[:, cols == c, c] = 1.0
    rows = (np.arange(h) % pitch) == pitch - 1
    sub[rows] *= 0.35  # the black matrix between pixel rows
    depth = rng.uniform(0.25, 0.5)  # how much of the grid survives the screen's diffuser and the lens
    shown = a * (1.0 - depth + depth * sub * 2.4)
    img = to_pil(np.clip(shown, 0, 1))
    angle, zoom = rng.uniform(-4, 4), rng.uniform(0.93, 1.07)
    img = img.rotate(angle, resample=Image.BILINEAR, fillcolor=(10, 10, 10)).resize(
        (int(w * zoom), int(h * zoom)), Image.BILINEAR
    )
    left, top = (img.width - w) // 2, (img.height - h) // 2
    img = img.crop((left, top, left + w, top + h)) if zoom >= 1 else img.resize((w, h), Image.BILINEAR)
    out = to_float(img)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    glare = rng.uniform(0.08, 0.3) * np.exp(
        -((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (rng.uniform(0.15, 0.4) * h) ** 2)
    )
    return np.clip(out + glare[..., None], 0, 1)


ATTACKS = {"print": print_attack, "replay": replay_attack}


def render(photo: Image.Image, kind: str, size: int, rng: np.random.Generator) -> Image.Image:
    """``kind`` 'live', 'print' or 'replay' of ``photo`` as a ``size`` x ``size`` RGB image."""
    a = upsample(photo, size)
    if kind != "live":
        a = ATTACKS[kind](a, rng)
    return to_pil(capture(a, size, rng, antialias=kind != "replay"))
