"""The model behind the server for a segmentation checkpoint: an upload in, the palette overlay (PNG) and the share
of pixels per class out, computed as ``vitkit predict`` does for a file (:mod:`vitkit.eval.seg_prediction`: the
checkpoint's evaluation scale, whole or sliding-window inference, the label map at the image's own size)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from vitkit.eval.loading import load_for_task
from vitkit.eval.seg_inference import overlay
from vitkit.eval.seg_prediction import label_map, palette_of
from vitkit.serve.engine import PRECISIONS, ServeSettings
from vitkit.serve.uploads import decoded
from vitkit.utils.device import resolve_device


class SegmentEngine:
    """A loaded segmentor; thread-confined like :class:`~vitkit.serve.engine.Engine`."""

    task = "segmentation"

    def __init__(self, checkpoint: str | Path, settings: ServeSettings | None = None) -> None:
        self.settings = settings or ServeSettings()
        self.checkpoint = Path(checkpoint)
        model, _ = load_for_task(checkpoint, "segmentation", command="vitkit serve")
        self.device = resolve_device(self.settings.device)
        self.model = model.to(self.device).eval()
        cfg = self.model.cfg
        self.classes = [str(c) for c in cfg.extra.get("classes") or range(cfg.num_classes)]
        self.palette = palette_of(cfg)
        dtype = PRECISIONS[self.settings.precision]
        self.autocast = dict(device_type=self.device.type, dtype=dtype or torch.float32, enabled=dtype is not None)

    @property
    def name(self) -> str:
        return str(self.model.cfg.extra.get("name") or self.checkpoint.name)

    def describe(self) -> dict[str, Any]:
        """What ``GET /v1/model`` reports for a segmentor."""
        cfg = self.model.cfg
        return {"name": self.name, "checkpoint": str(self.checkpoint), "task": self.task, "family": cfg.family,
                "config": cfg.to_dict(), "num_classes": cfg.num_classes, "classes": self.classes,
                "palette": [list(c) for c in self.palette], "preprocessing": {"img_size": list(cfg.img_size),
                "mean": list(cfg.mean), "std": list(cfg.std)}, "device": str(self.device)}  # fmt: skip

    def decode(self, data: bytes) -> Image.Image:
        """Upload bytes -> the RGB image (any client error raises a RequestError)."""
        return decoded(data, self.settings.max_pixels, lambda img: img.convert("RGB"))

    @torch.no_grad()
    def segment(self, image: Image.Image) -> tuple[bytes, dict[str, float]]:
        """(overlay PNG bytes, class -> share of the image's pixels, largest first)."""
        with torch.autocast(**self.autocast):
            labels = label_map(self.model, image, self.device)
        counts = torch.bincount(labels.flatten(), minlength=len(self.classes)).double() / labels.numel()
        shares = {self.classes[i]: float(counts[i]) for i in counts.argsort(descending=True).tolist() if counts[i] > 0}
        out = io.BytesIO()
        overlay(image, labels, self.palette).save(out, format="PNG")
        return out.getvalue(), shares

    def warm_up(self) -> None:
        h, w = self.model.cfg.img_size
        self.segment(Image.new("RGB", (w, h)))
