"""Build a ViT, classify an image, and show the attention of its class token: the smallest end-to-end use."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

import vitkit


def main() -> None:
    torch.manual_seed(0)
    model = vitkit.create_model("vit_tiny_patch16_224").eval()
    cfg = model.cfg
    print(f"built vit_tiny_patch16_224: {vitkit.count_parameters(cfg):,} parameters")
    # A synthetic image (a gradient with a bright square) stands in for a photograph.
    y, x = np.mgrid[0:224, 0:224]
    rgb = np.stack([x, y, np.full_like(x, 128)], axis=-1).astype(np.uint8)
    rgb[80:144, 80:144] = 255
    image = Image.fromarray(rgb)
    pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255
    mean, std = torch.tensor(cfg.mean).view(3, 1, 1), torch.tensor(cfg.std).view(3, 1, 1)
    batch = ((pixels - mean) / std).unsqueeze(0)
    with torch.inference_mode():
        probs = model(batch).softmax(-1)[0]
        attn = model.get_attention_maps(batch)[-1][0]  # (heads, T, T)
    top = probs.topk(5)
    print("top-5 classes (random weights):", [(int(i), round(float(p), 5)) for p, i in zip(top.values, top.indices)])
    cls_attn = attn[:, 0, 1:].mean(0).reshape(cfg.grid_size)
    print(
        f"last-layer class-token attention over the {cfg.grid_size[0]}x{cfg.grid_size[1]} grid sums to "
        f"{float(cls_attn.sum()):.4f}"
    )


if __name__ == "__main__":
    main()
