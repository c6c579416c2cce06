"""The model behind the server: load, preprocess, classify a batch, explain one image. No HTTP here.

Preprocessing and the forward pass are those of ``vitkit predict`` (:func:`vitkit.eval.predict`): the
checkpoint's eval transform, the same normalisation, softmax over the logits, so a served answer equals the
command-line one for the same file. Explanations use the whole picture, as ``vitkit visualize`` does (no crop
margin), and attention rollout from :mod:`vitkit.viz`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from vitkit.serve.overlay import overlay_png
from vitkit.serve.uploads import DEFAULT_MAX_PIXELS, DEFAULT_MAX_UPLOAD_BYTES, decoded

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
DISPLAY_SIDE = 384  # the shorter side of the explanation overlay, in pixels


@dataclass(frozen=True)
class ServeSettings:
    """Everything ``vitkit serve`` can set besides the checkpoint."""

    host: str = "127.0.0.1"
    port: int = 8000
    max_batch: int = 16
    max_wait_ms: float = 5.0
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    timeout_s: float = 30.0
    topk: int = 5
    device: str = "auto"
    precision: str = "fp32"
    compile: bool = False

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be at least 1 (1 turns dynamic batching off), got {self.max_batch}")
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")
        if self.max_upload_bytes < 1 or self.max_pixels < 1 or self.timeout_s <= 0:
            raise ValueError("max_upload_bytes, max_pixels and timeout_s must be positive")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {self.precision!r}")


def parse_layers(text: str | None, depth: int) -> tuple[int, int]:
    """``"END"`` or ``"START-END"`` (1-based, inclusive; default all) -> (start, end) layers to roll out."""
    if text is None or text == "":
        return 1, depth
    parts = text.split("-")
    try:
        start, end = (1, int(parts[0])) if len(parts) == 1 else (int(parts[0]), int(parts[1]))
        if len(parts) > 2:
            raise ValueError
    except ValueError:
        raise ValueError(f"layers must look like '6' or '2-6', got {text!r}") from None
    if not 1 <= start <= end <= depth:
        raise ValueError(f"layers {text!r} are outside 1..{depth}: this model has {depth} layers")
    return start, end


class Engine:
    """A loaded classifier with its preprocessing; thread-confined (call the model methods from one thread)."""

    task = "classification"

    def __init__(self, checkpoint: str | Path, settings: ServeSettings | None = None) -> None:
        from vitkit.data import BatchAugment, DataConfig
        from vitkit.data.sample_transforms import EvalTransform
        from vitkit.eval.loading import load_classifier
        from vitkit.utils.device import resolve_device

        self.settings = settings or ServeSettings()
        self.checkpoint = Path(checkpoint)
        model, self.classes = load_classifier(checkpoint)
        self.device = resolve_device(self.settings.device)
        self.model = model.to(self.device)
        cfg = self.model.cfg
        self.data_cfg = DataConfig.from_model_config(cfg)
        self.transform = EvalTransform(self.data_cfg)
        self.normalise = BatchAugment(self.data_cfg, cfg.num_classes, train=False)
        self.explain_input = EvalTransform(self.data_cfg, crop_pct=1.0)
        scale = DISPLAY_SIDE / min(cfg.img_size)
        display = (round(cfg.img_size[0] * scale), round(cfg.img_size[1] * scale))
        self.explain_display = EvalTransform(self.data_cfg, img_size=display, crop_pct=1.0)
        dtype = PRECISIONS[self.settings.precision]
        self.autocast = dict(device_type=self.device.type, dtype=dtype or torch.float32, enabled=dtype is not None)
        self.forward = torch.compile(self.model, dynamic=True) if self.settings.compile else self.model

    @property
    def name(self) -> str:
        return str(self.model.cfg.extra.get("name") or self.checkpoint.name)

    def describe(self) -> dict[str, Any]:
        """What ``GET /v1/model`` reports: name, config, classes, preprocessing and serving limits."""
        cfg, data = self.model.cfg, self.data_cfg
        return {
            "name": self.name,
            "checkpoint": str(self.checkpoint),
            "task": self.task,
            "family": cfg.family,
            "config": cfg.to_dict(),
            "depth": cfg.depth,
            "num_classes": cfg.num_classes,
            "classes": self.classes,
            "preprocessing": {
                "img_size": list(data.img_size),
                "crop_pct": data.crop_pct,
                "interpolation": data.interpolation,
                "mean": list(data.mean),
                "std": list(data.std),
                "scale": "x / 255, then (x - mean) / std",
            },
            "serving": asdict(self.settings),
            "device": str(self.device),
        }

    def preprocess(self, data: bytes) -> torch.Tensor:
        """Upload bytes -> (3, H, W) uint8 model input; any client error raises an RequestError."""
        return decoded(data, self.settings.max_pixels, self.transform)

    @torch.no_grad()
    def probabilities(self, images: list[torch.Tensor]) -> list[torch.Tensor]:
        """B preprocessed images -> B class-probability vectors (K,), in one forward pass."""
        batch = torch.stack(images).to(self.device)  # (B, 3, H, W) uint8
        x, _ = self.normalise(batch, torch.zeros(len(images), dtype=torch.long, device=self.device))
        with torch.autocast(**self.autocast):
            probs = self.forward(x).float().softmax(dim=-1)  # (B, K)
        return list(probs.cpu())

    def top(self, probs: torch.Tensor, k: int) -> list[dict[str, Any]]:
        """The ``k`` most likely classes, as ``vitkit predict --json`` lists them."""
        values, indices = probs.topk(min(k, len(probs)))
        return [{"label": self.classes[i], "index": i, "prob": p} for p, i in zip(values.tolist(), indices.tolist())]

    def explain_inputs(self, data: bytes) -> tuple[torch.Tensor, torch.Tensor]:
        """Upload bytes -> ((3, h, w) model input, (3, H, W) display pixels) of the same uncropped region."""
        limit = self.settings.max_pixels
        return decoded(data, limit, self.explain_input), decoded(data, limit, self.explain_display)

    @torch.no_grad()
    def explain(self, image: torch.Tensor, pixels: torch.Tensor, layers: tuple[int, int], head_fusion: str) -> bytes:
        """Attention rollout over ``layers`` (1-based, inclusive) to what the classifier reads, over the image."""
        from vitkit.viz import attention_maps, attention_rollout, rollout_map

        cfg = self.model.cfg
        x, _ = self.normalise(image[None].to(self.device), torch.zeros(1, dtype=torch.long, device=self.device))
        maps = attention_maps(self.model, x)  # (L, 1, heads, T, T)
        rolled = attention_rollout(maps[layers[0] - 1 : layers[1]], head_fusion)  # (1, T, T)
        grid = (x.shape[-2] // cfg.patch_stride[0], x.shape[-1] // cfg.patch_stride[1])
        heat = rollout_map(rolled, grid, self.model.num_prefix_tokens, cfg.global_pool)[0]  # (gh, gw)
        return overlay_png(pixels, heat)

    def warm_up(self) -> None:
        """One forward pass on a blank image, so the first request does not pay for allocation or compilation."""
        h, w = self.model.cfg.img_size
        self.probabilities([torch.zeros(3, h, w, dtype=torch.uint8)])
