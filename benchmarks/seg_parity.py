"""Largest logit difference between vitkit and the code that wrote a segmentation checkpoint.

- the original ViT-Adapter + UperNet release file in tests/fixtures (written by mmsegmentation 0.20.2 and mmcv 1.4.2
  with ViT-Adapter's backbone, with that code's own input and logits stored beside it), read by
  ``vitkit.load_pretrained(PATH)`` alone;
- a transformers ``UperNetForSemanticSegmentation`` (Swin backbone, every tensor drawn at random) saved as a folder
  and read back by vitkit, against transformers itself on the same input.

    python benchmarks/seg_parity.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cpu_name  # noqa: E402

import vitkit  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"


def _release() -> tuple[float, float, float]:
    model = vitkit.load_pretrained(FIXTURES / "upernet_vit_adapter_release_tiny.pth")
    io = torch.load(FIXTURES / "upernet_vit_adapter_release_tiny_io.pt", weights_only=True)
    with torch.no_grad():
        logits, aux = model(io["input"], aux=True)
    scale = float(io["logits"].abs().max())
    return float((logits - io["logits"]).abs().max()), float((aux - io["aux_logits"]).abs().max()), scale


def _transformers() -> tuple[float, float]:
    import transformers

    stages = ["stage1", "stage2", "stage3", "stage4"]
    backbone = transformers.SwinConfig(embed_dim=32, depths=[2, 2, 2, 2], num_heads=[1, 2, 4, 8], window_size=7,
                                       image_size=224, out_features=stages)  # fmt: skip
    cfg = transformers.UperNetConfig(backbone_config=backbone, hidden_size=64, auxiliary_channels=32, num_labels=7)
    torch.manual_seed(0)
    reference = transformers.UperNetForSemanticSegmentation(cfg).eval()
    with torch.no_grad():  # random statistics and scales too, so that every tensor's mapping matters
        for name, tensor in reference.state_dict().items():
            if tensor.is_floating_point():
                one = ("norm" in name and name.endswith("weight")) or name.endswith("running_var")
                drawn = torch.randn_like(tensor) * 0.2
                tensor.copy_((drawn + 1.0).abs() if one else drawn)
    with tempfile.TemporaryDirectory() as tmp:
        reference.save_pretrained(tmp)
        model = vitkit.load_pretrained(tmp)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, got = reference(pixel_values=x).logits, model(x)
    return float((got - want).abs().max()), float(want.abs().max())


def main() -> None:
    print(f"CPU: {cpu_name()}, torch {torch.__version__}, float32")
    logits, aux, scale = _release()
    hf, hf_scale = _transformers()
    print("| checkpoint | compared with | largest logit difference | largest logit | relative |")
    print("|---|---|---|---|---|")
    rows = [("ViT-Adapter-Ti + UperNet release file (decode head)", "mmseg 0.20.2's output", logits, scale),
            ("ViT-Adapter-Ti + UperNet release file (FCN auxiliary head)", "mmseg 0.20.2's output", aux, scale),
            ("transformers UperNet + Swin folder (224 px)", f"transformers {_version()}", hf, hf_scale)]  # fmt: skip
    for name, peer, diff, top in rows:
        print(f"| {name} | {peer} | {diff:.2e} | {top:.1f} | {diff / top:.1e} |")


def _version() -> str:
    import transformers

    return transformers.__version__


if __name__ == "__main__":
    main()
