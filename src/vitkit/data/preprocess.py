"""Inference-time preprocessing with the model's own settings: the evaluation transform, then normalisation."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image

from vitkit.data.augment import normalize
from vitkit.data.config import DataConfig
from vitkit.data.sample_transforms import EvalTransform

ImageLike = str | os.PathLike | Image.Image


def preprocess(images: ImageLike | Sequence[ImageLike], cfg: DataConfig | Any) -> torch.Tensor:
    """Files or PIL images -> normalised float batch (B, 3, H, W) as the model saw in evaluation.

    ``cfg`` is a DataConfig, or a ViTConfig (or registered model name) whose img_size, mean, std and crop_pct
    are used, so inference matches the preprocessing the weights were trained with.
    """
    if not isinstance(cfg, DataConfig):
        cfg = DataConfig.from_model_config(cfg)
    if isinstance(images, (str, os.PathLike, Image.Image)):
        images = [images]
    transform = EvalTransform(cfg)
    batch = []
    for item in images:
        if isinstance(item, Image.Image):
            batch.append(transform(item))
        else:
            with Image.open(item) as img:
                batch.append(transform(img))
    return normalize(torch.stack(batch), cfg.mean, cfg.std)
