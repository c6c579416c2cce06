"""Fixtures for the training and evaluation tests: a tiny learnable image folder and a matching tiny recipe."""

from __future__ import annotations

import contextlib
import io
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

CLASSES = ["north_east", "north_west", "south_east", "south_west"]  # sorted, as label indices are


def make_image_folder(root: Path, train_per_class: int = 48, test_per_class: int = 16, size: int = 16) -> Path:
    """``root/{train,test}/<class>/*.png``: noise with a square of the class's colour in the class's quadrant."""
    rng = np.random.default_rng(0)
    half = size // 2
    colours = np.array([[1, 0.2, 0.2], [0.2, 1, 0.2], [0.2, 0.2, 1], [1, 1, 0.2]])
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        for label, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                img = rng.integers(0, 90, (size, size, 3), dtype=np.uint8)
                top, left = (label // 2) * half, (label % 2) * half
                colour = (colours[label] * rng.integers(190, 256)).astype(np.uint8)
                img[top + 1 : top + half - 1, left + 1 : left + half - 1] = colour
                Image.fromarray(img).save(folder / f"{i}.png")
    return root


def tiny_recipe(data_root: Path, out_dir: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """A recipe dict for a 2-block width-32 ViT on :func:`make_image_folder` data; ``sections`` update it."""
    recipe = {
        "name": "tiny",
        "model": {"name": "vit_tiny_patch4_32", "embed_dim": 32, "depth": 2, "num_heads": 4, "mlp_dim": 64},
        "data": {
            "dataset": str(data_root),
            "img_size": 16,
            "crop_pct": 1.0,
            "train_crop": "pad",
            "padding": 0,
            "hflip": 0.0,
            "in_memory": True,
            "cache": False,
            "num_workers": 0,
        },
        "optim": {"name": "adamw", "lr": 3e-3, "weight_decay": 0.05},
        "schedule": {"decay": "cosine", "warmup_steps": 5},
        "train": {
            "epochs": 2,
            "batch_size": 16,
            "precision": "fp32",
            "output_dir": str(out_dir),
            "log_every_steps": 5,
            "progress": False,
        },
    }
    for section, values in sections.items():
        recipe[section] = {**recipe.get(section, {}), **values}
    return recipe


@pytest.fixture
def one_thread():
    """Tiny models gain nothing from threads, which only contend on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run_vitkit(*args: Any) -> subprocess.CompletedProcess:
    """``vitkit ARGS`` in this process, as the command line runs it (exit code, stdout, stderr), on one thread.

    A subprocess would spend two seconds importing torch per call; ``tests/cli/test_cli.py`` keeps the checks that
    need a real ``python -m vitkit`` process."""
    from vitkit.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([str(a) for a in args])
            except SystemExit as stop:  # argparse's own errors
                code = stop.code if isinstance(stop.code, int) else 1
    finally:
        torch.set_num_threads(threads)
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())
