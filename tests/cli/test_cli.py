"""The ``vitkit`` command line, run as a user would."""

from __future__ import annotations

import subprocess
import sys


def _vitkit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vitkit", *args], capture_output=True, text=True, timeout=120)


def test_help_lists_commands():
    result = _vitkit("--help")
    assert result.returncode == 0
    assert "models" in result.stdout


def test_models_lists_registry_with_counts():
    result = _vitkit("models", "vit_base_patch16_224")
    assert result.returncode == 0, result.stderr
    assert "86,567,656" in result.stdout
    assert _vitkit("models", "nothing_matches*").returncode == 1
