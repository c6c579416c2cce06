"""Batch-level augmentation on the device: :class:`BatchAugment` turns uint8 batches into normalised inputs.

Order (as in timm's ImageNet recipe): [in-memory crop + flip] -> colour jitter -> RandAugment / TrivialAugment
-> normalise -> random erasing -> Mixup / CutMix with label smoothing.
"""

from __future__ import annotations

import math

import torch

from vitkit.data import ops
from vitkit.data.autoaugment import rand_augment, trivial_augment
from vitkit.data.config import DataConfig
from vitkit.data.geometry import pad_crop_flip, resized_crop, sample_rrc_boxes, uniform
from vitkit.data.mix import mix_batch, smooth_one_hot
from vitkit.data.sample_transforms import cover_box


def normalize(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """Pixels in [0, 255] (uint8 or float) -> float32 (x / 255 - mean) / std, channel by channel."""
    scale = torch.tensor([1.0 / (255.0 * s) for s in std], device=x.device).view(1, -1, 1, 1)
    shift = torch.tensor([-m / s for m, s in zip(mean, std, strict=True)], device=x.device).view(1, -1, 1, 1)
    return torch.addcmul(shift, x.float(), scale)


def color_jitter(
    x: torch.Tensor, strengths: tuple[float, ...], generator: torch.Generator | None = None
) -> torch.Tensor:
    """ColorJitter per image: brightness, contrast, saturation factors ~ U[1 - s, 1 + s], hue shift ~ U[-h, h],
    applied in a random order. (B, 3, H, W) in [0, 255]."""
    B = x.shape[0]
    jobs = []
    for fn, s in zip((ops.brightness, ops.mean_contrast, ops.color), strengths[:3], strict=True):
        if s > 0:
            jobs.append((fn, uniform((B,), generator, max(0.0, 1 - s), 1 + s)))
    if len(strengths) > 3 and strengths[3] > 0:
        jobs.append((ops.hue, uniform((B,), generator, -strengths[3], strengths[3])))
    for k in torch.randperm(len(jobs), generator=generator).tolist():
        fn, factor = jobs[k]
        x = fn(x, factor)
    return x


def random_erasing(
    x: torch.Tensor,
    prob: float,
    generator: torch.Generator | None = None,
    noise_generator: torch.Generator | None = None,
    area: tuple[float, float] = (0.02, 1 / 3),
    ratio: tuple[float, float] = (0.3, 1 / 0.3),
) -> torch.Tensor:
    """Random erasing (Zhong et al. 2020), timm's 'pixel' mode: one box per chosen image filled with N(0, 1)
    noise, i.e. on normalised inputs. Box area ~ U(area) of the image, log aspect ~ U(log ratio), ten tries."""
    B, C, H, W = x.shape
    tries = 10
    target = H * W * uniform((B, tries), generator, *area)
    aspect = torch.exp(uniform((B, tries), generator, math.log(ratio[0]), math.log(ratio[1])))
    h = torch.round(torch.sqrt(target * aspect))
    w = torch.round(torch.sqrt(target / aspect))
    ok = (h < H) & (w < W) & (h > 0) & (w > 0)
    first = ok.to(torch.int8).argmax(1, keepdim=True)
    h, w = h.gather(1, first)[:, 0].long(), w.gather(1, first)[:, 0].long()
    chosen = (uniform((B,), generator) < prob) & ok.any(1)
    u = uniform((B, 2), generator)
    top = torch.floor(u[:, 0] * (H - h + 1)).long()
    left = torch.floor(u[:, 1] * (W - w + 1)).long()
    if not chosen.any():
        return x
    x = x.clone()
    for b in chosen.nonzero().flatten().tolist():
        t, l, hh, ww = int(top[b]), int(left[b]), int(h[b]), int(w[b])
        shape = (C, hh, ww)
        x[b, :, t : t + hh, l : l + ww] = torch.randn(shape, generator=noise_generator, device=x.device, dtype=x.dtype)
    return x


class BatchAugment:
    """``(uint8 images (B, 3, H, W), labels (B,)) -> (normalised float images, targets)`` on the images' device.

    Targets are soft (B, K) rows summing to 1 when Mixup, CutMix or label smoothing is active in training,
    else int64 labels. With ``cfg.in_memory`` the batch holds stored images and the crop, flip (training) or
    resize and centre crop (evaluation) happen here. ``seed`` makes the parameters independent of the global RNG.
    """

    def __init__(self, cfg: DataConfig, num_classes: int, train: bool, *, seed: int | None = None) -> None:
        self.cfg = cfg
        self.num_classes = num_classes
        self.train = train
        self.seed = seed
        self.generator = None if seed is None else torch.Generator().manual_seed(seed)
        self._device_generators: dict[str, torch.Generator] = {}
        self.spec = cfg.randaugment_spec
        self.soft_targets = train and (cfg.mixing or cfg.label_smoothing > 0)

    def _noise_generator(self, device: torch.device) -> torch.Generator | None:
        if self.seed is None:
            return None
        if device.type == "cpu":
            return self.generator
        key = str(device)
        if key not in self._device_generators:
            self._device_generators[key] = torch.Generator(device=device).manual_seed(self.seed + 1)
        return self._device_generators[key]

    def geometry(self, images: torch.Tensor) -> torch.Tensor:
        """Crop and flip (training) or resize and centre-crop (evaluation) stored images: float (B, 3, h, w)."""
        cfg, gen = self.cfg, self.generator
        B, _, H, W = images.shape
        out_h, out_w = cfg.img_size
        if not self.train:
            left, top, right, bottom = cover_box(W, H, out_w, out_h, cfg.crop_pct)
            if (H, W) == (out_h, out_w) and (left, top, right, bottom) == (0, 0, W, H):
                return images.float()
            boxes = torch.tensor([[left, top, right - left, bottom - top]]).expand(B, 4)
            return resized_crop(images, boxes, (out_h, out_w), mode=cfg.interpolation)
        flip = uniform((B,), gen) < cfg.hflip
        if cfg.train_crop == "rrc":
            boxes = sample_rrc_boxes(B, H, W, cfg.scale, cfg.ratio, gen)
            return resized_crop(images, boxes, (out_h, out_w), flip, mode=cfg.interpolation)
        p = cfg.padding
        shift = torch.randint(-p, p + 1, (B, 2), generator=gen)
        if (H, W) == (out_h, out_w):
            return pad_crop_flip(images, shift, flip).float()
        # Stored at another size: the padded crop is a shifted resize (zeros brought in from outside).
        left, top, right, bottom = cover_box(W, H, out_w, out_h, 1.0)
        bw, bh = right - left, bottom - top
        boxes = torch.tensor([[left, top, bw, bh]]).repeat(B, 1)
        boxes[:, 0] += shift[:, 1] * (bw / out_w)
        boxes[:, 1] += shift[:, 0] * (bh / out_h)
        return resized_crop(images, boxes, (out_h, out_w), flip, mode=cfg.interpolation, zeros=True)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cfg, gen = self.cfg, self.generator
        labels = labels.to(images.device)
        x = self.geometry(images) if cfg.in_memory else images.float()
        if not self.train:
            return normalize(x, cfg.mean, cfg.std), labels.long()
        if max(cfg.color_jitter) > 0:
            x = color_jitter(x, cfg.color_jitter, gen)
        if self.spec is not None:
            x = rand_augment(x, self.spec.num_ops, self.spec.magnitude, self.spec.magnitude_std, gen)
        elif cfg.trivialaugment:
            x = trivial_augment(x, gen)
        x = normalize(x, cfg.mean, cfg.std)
        if cfg.random_erasing > 0:
            x = random_erasing(x, cfg.random_erasing, gen, self._noise_generator(x.device))
        if not self.soft_targets:
            return x, labels.long()
        if cfg.mixing:
            x, targets, _ = mix_batch(
                x,
                labels,
                self.num_classes,
                cfg.mixup_alpha,
                cfg.cutmix_alpha,
                cfg.mix_prob,
                cfg.switch_prob,
                cfg.label_smoothing,
                gen,
            )
            return x, targets
        return x, smooth_one_hot(labels, self.num_classes, cfg.label_smoothing)
