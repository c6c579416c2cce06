"""Optional dependencies: which ``pip install 'vitkit[EXTRA]'`` brings a missing module, as one line for the CLI."""

from __future__ import annotations

# top-level module -> the extra that installs it (pyproject.toml [project.optional-dependencies])
EXTRAS = {
    "matplotlib": "viz",
    "yaml": "train",
    "tensorboard": "train",
    "onnx": "export",
    "onnxruntime": "export",
    "onnxscript": "export",
    "fastapi": "serve",
    "uvicorn": "serve",
    "multipart": "serve",
    "huggingface_hub": "hub",
}
_PACKAGES = {"yaml": "PyYAML", "multipart": "python-multipart"}


def missing_extra(err: ModuleNotFoundError) -> str | None:
    """``"needs matplotlib: pip install 'vitkit[viz]'"`` for a missing optional module, else None."""
    module = (err.name or "").split(".")[0]
    if module not in EXTRAS:
        return None
    return f"needs {_PACKAGES.get(module, module)}, which is not installed: pip install 'vitkit[{EXTRAS[module]}]'"
