"""A user with only ``pip install vitkit`` (no matplotlib, onnx or PyYAML) gets one line naming the extra to
install, never a traceback. The missing packages are hidden from a subprocess by a meta-path finder."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from helpers import tiny_config
from vitkit.models.vit import VisionTransformer
from vitkit.weights.load import save_pretrained

HIDE = """
import sys
class Hide:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {hidden!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Hide())
from vitkit.cli.main import main
raise SystemExit(main(sys.argv[1:]))
"""


def _run(hidden: set[str], *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    code = HIDE.format(hidden=sorted(hidden))
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=120)  # fmt: skip


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("extras") / "model.safetensors"
    torch.manual_seed(0)
    return save_pretrained(VisionTransformer(tiny_config()), path)


@pytest.mark.parametrize(
    "hidden, command, extra",
    [
        ({"matplotlib"}, ["visualize", "{ckpt}", "--kind", "posembed", "--out", "{tmp}"], "viz"),
        ({"onnx", "onnxscript", "onnxruntime"}, ["export", "{ckpt}", "--out", "{tmp}/model.onnx"], "export"),
        ({"yaml"}, ["train", "--config", "cifar10_vit"], "train"),
        ({"huggingface_hub"}, ["predict", "{ckpt}", "--checkpoint", "hf-hub:google/vit-base-patch16-224"], "hub"),
    ],
    ids=["visualize", "export", "train", "hub"],
)
def test_a_missing_optional_part_is_one_line_naming_the_extra(checkpoint, tmp_path, hidden, command, extra):
    args = [a.format(ckpt=checkpoint, tmp=tmp_path) for a in command]
    result = _run(hidden, *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line]  # progress lines may come first
    assert len(errors) == 1 and errors[0] == result.stderr.strip().splitlines()[-1]
    assert f"pip install 'vitkit[{extra}]'" in errors[0] and errors[0].startswith(f"vitkit {command[0]}: error:")
