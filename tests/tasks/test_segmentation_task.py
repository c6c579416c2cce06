"""The segmentation task end to end on a tiny stand-in set: `vitkit train` a tiny ViT-Adapter + UperNet, `vitkit
eval` reports mIoU as an independent count of its own predictions gives it, `vitkit predict` writes label maps and
overlays at the image's size, the export to ONNX returns logits at the input size for any batch, and a classifier
given to the segmentation commands (or the reverse) is refused in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import vitkit
from train_data import one_thread  # noqa: F401 (fixture)
from vitkit.cli.main import main
from vitkit.data.seg_synth import make_seg

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = {  # ViT-Adapter 32 wide, 4 blocks, one per interaction; heads 16 / 8 wide
    "name": "upernet_vit_adapter_tiny_patch16", "channels": 16, "aux_channels": 8,
    "backbone": {"embed_dim": 32, "depth": 4, "num_heads": 2, "mlp_dim": 64, "deform_num_heads": 2,
                 "conv_inplane": 8, "deform_ratio": 0.5, "pretrain_size": 64, "drop_path_rate": 0.0,
                 "interaction_indexes": [[0, 0], [1, 1], [2, 2], [3, 3]]},
}  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("seg")
    make_seg(tmp / "synth", train=12, val=4, size=64, seed=0)
    recipe = {
        "name": "seg_tiny",
        "model": TINY,
        "data": {
            "dataset": str(tmp / "synth"),
            "img_size": 64,
            "scale": [128, 64],
            "num_workers": 0,
            "eval_mode": "slide",
            "eval_crop": 64,
            "eval_stride": 48,
            "eval_scale": [128, 64],
            "eval_size_divisor": 32,
        },  # fmt: skip
        "optim": {"name": "adamw", "lr": 1e-3, "weight_decay": 0.01},
        "train": {
            "epochs": 2,
            "batch_size": 4,
            "precision": "fp32",
            "output_dir": str(tmp / "runs"),
            "eval_split": "val",
            "progress": False,
            "log_every_steps": 1,
        },  # fmt: skip
    }
    config = tmp / "seg_tiny.yaml"
    config.write_text(yaml.safe_dump(recipe))
    assert main(["train", "--config", str(config)]) == 0
    return tmp, tmp / "runs" / "seg_tiny"


def test_training_writes_a_segmentation_checkpoint(trained):
    _, run = trained
    model = vitkit.load_pretrained(run / "model.safetensors")
    assert type(model).__name__ == "Segmentor" and model.cfg.num_classes == 10
    assert model.cfg.extra["classes"][0] == "floor" and len(model.cfg.extra["palette"]) == 10
    assert model.cfg.extra["eval"]["mode"] == "slide"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["kind"] == "epoch"] == [3, 6] and all("mIoU" in r for r in rows[-1:])
    assert {"train/decode_loss", "train/aux_loss"} <= set(rows[0]) or {"decode_loss", "aux_loss"} <= set(rows[0])


def test_eval_counts_pixels_as_an_independent_count_does(trained, capsys):
    tmp, run = trained
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(run / "model.safetensors"), "--data", str(tmp / "synth"), "--split",
                 "val", "--json", "--workers", "0", "--device", "cpu", "--precision", "fp32"]) == 0  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    # Independent count: predict every validation image with `vitkit predict`, read the label PNGs back and count
    # intersections and unions against the stored annotations in NumPy, over the whole set.
    out = tmp / "pred"
    images = sorted((tmp / "synth" / "images" / "validation").iterdir())
    assert main(["predict", *map(str, images), "--checkpoint", str(run / "model.safetensors"), "--out", str(out),
                 "--device", "cpu"]) == 0  # fmt: skip
    inter, union = np.zeros(10), np.zeros(10)
    for image in images:
        pred = np.asarray(Image.open(out / f"{image.stem}_mask.png")).astype(np.int64)
        label = np.asarray(Image.open(tmp / "synth" / "annotations" / "validation" / f"{image.stem}.png")).astype(int)
        label = np.where(label == 0, 255, label - 1)  # ADE20K's reduce_zero_label
        keep = label != 255
        assert pred.shape == label.shape == Image.open(image).size[::-1]
        for k in range(10):
            p, t = (pred == k) & keep, (label == k) & keep
            inter[k] += (p & t).sum()
            union[k] += (p | t).sum()
    present = union > 0
    assert report["mIoU"] == pytest.approx(float(np.mean(inter[present] / union[present])), abs=1e-6)
    overlay = Image.open(out / f"{images[0].stem}_overlay.png")
    assert overlay.mode == "RGB" and overlay.size == Image.open(images[0]).size


def test_onnx_export_gives_logits_at_the_input_size(tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is in the test extra")
    from vitkit.weights.export import export_model

    # Two interactions instead of TINY's four: the exporter's time grows with the graph, and two already carry
    # every kind of node (spatial prior, injector, extractor with its extra pair, UperNet, FCN head).
    backbone = {**TINY["backbone"], "depth": 2, "interaction_indexes": [[0, 0], [1, 1]], "add_vit_feature": False}
    options = {**{k: v for k, v in TINY.items() if k != "name"}, "img_size": 64}
    saved = vitkit.save_pretrained(vitkit.create_model(TINY["name"], **{**options, "backbone": backbone},
                                                       num_classes=10), tmp_path / "seg.safetensors")  # fmt: skip
    result = export_model(saved, tmp_path / "seg.onnx")
    model = vitkit.load_pretrained(saved)
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    got = ort.InferenceSession(str(result.path)).run(None, {"pixel_values": x.numpy()})[0]
    with torch.no_grad():
        want = model(x).numpy()
    assert got.shape == (3, 10, 64, 64)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)  # ONNX's own deformable sampling vs PyTorch's


def test_a_checkpoint_of_another_task_is_refused_in_one_line(trained, tmp_path, capsys):
    tmp, run = trained
    classifier = vitkit.save_pretrained(vitkit.create_model("vit_tiny_patch4_32", num_classes=10), tmp_path / "c.st")
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(classifier), "--data", str(tmp / "synth"), "--split", "val"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].endswith("is a segmentation set (image/label-map pairs) but the checkpoint is "
                                                 "a classifier; evaluate a segmentation checkpoint on it, or a "
                                                 "classifier on an image folder")  # fmt: skip
    segmentor = run / "model.safetensors"
    assert main(["eval", "--checkpoint", str(segmentor), "--data", str(tmp_path), "--split", "val"]) == 2
    assert "is not a segmentation data set" in capsys.readouterr().err.strip().splitlines()[-1]
