"""Bad input to ``predict``: a truncated JPEG, an empty file and a text file named .jpg are skipped with one line
each naming the file and the reason, the good images are still classified, and a directory is read as a folder of
images; from the command line the same comes out without a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import tiny_config
from vitkit.eval import predict
from vitkit.models.vit import VisionTransformer
from vitkit.weights.load import save_pretrained


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A checkpoint and a folder with two good images and three bad ones."""
    root = tmp_path_factory.mktemp("predict")
    torch.manual_seed(0)
    save_pretrained(VisionTransformer(tiny_config()), root / "model.safetensors")
    images = root / "images"
    (images / "more").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(images / "a.png")
    Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(images / "more" / "b.jpg", quality=95)
    jpeg = (images / "more" / "b.jpg").read_bytes()
    (images / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (images / "empty.jpg").write_bytes(b"")
    (images / "notes.jpg").write_text("not a picture")
    (images / "readme.txt").write_text("ignored: not an image name")
    return root


def test_bad_files_are_skipped_and_named(folder, caplog):
    images = folder / "images"
    given = [images / "a.png", images / "truncated.jpg", images / "empty.jpg", images / "notes.jpg"]
    with caplog.at_level("WARNING", logger="vitkit.eval"):
        out = predict(given, folder / "model.safetensors", topk=2)
    assert [p.path for p in out] == [str(images / "a.png")]
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        f"skipped {images / 'truncated.jpg'}: truncated image file",
        f"skipped {images / 'empty.jpg'}: not an image file (or an empty one)",
        f"skipped {images / 'notes.jpg'}: not an image file (or an empty one)",
    ]


def test_a_decompression_bomb_is_skipped_with_its_whole_reason(folder, tmp_path, caplog):
    bomb = tmp_path / "bomb.png"
    Image.new("1", (14_000, 14_000)).save(bomb)  # 24 kB on disk, 196 MP decoded: over twice Pillow's 89.5 MP guard
    with caplog.at_level("WARNING", logger="vitkit.eval"):
        out = predict([bomb, folder / "images" / "a.png"], folder / "model.safetensors", topk=1)
    assert len(out) == 1
    (line,) = [r.getMessage() for r in caplog.records]
    limit = 2 * Image.MAX_IMAGE_PIXELS  # Pillow refuses past twice its limit (and only warns below)
    assert line.startswith(f"skipped {bomb}: Image size (196000000 pixels) exceeds limit of {limit} pixels")


def test_a_directory_is_a_folder_of_images(folder):
    out = predict([folder / "images"], folder / "model.safetensors", topk=1)
    assert [os.path.relpath(p.path, folder / "images") for p in out] == ["a.png", os.path.join("more", "b.jpg")]
    with pytest.raises(ValueError, match="none of the 1 image"):
        predict([folder / "images" / "empty.jpg"], folder / "model.safetensors")


def test_the_command_line_prints_one_line_per_bad_file_and_no_traceback(folder):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "vitkit", "predict", str(folder / "images"), "--checkpoint",
           str(folder / "model.safetensors"), "--json"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)) == 2
    assert "Traceback" not in result.stderr and result.stderr.count("skipped ") == 3
