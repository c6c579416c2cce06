"""Every dependency of the ``test`` extra is installed. Tests that need one skip without it (a user who installed
only part of vitkit can still run the rest), so this check is what turns a missing dependency into a failure
instead of a quiet skip: `make test` installs the extra, and CI must run everything."""

from __future__ import annotations

import importlib.util
import re

import tomllib

from paths import REPO

# distribution name -> the module it installs, where the two differ
MODULES = {"pyyaml": "yaml", "python-multipart": "multipart", "huggingface_hub": "huggingface_hub"}


def _requirements(extras: dict[str, list[str]], name: str) -> list[str]:
    """The distributions of extra ``name``, following ``vitkit[...]`` references."""
    out = []
    for requirement in extras[name]:
        inner = re.fullmatch(r"vitkit\[(.+)\]", requirement)
        if inner:
            out += [d for extra in inner.group(1).split(",") for d in _requirements(extras, extra.strip())]
        else:
            out.append(re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0])
    return out


def test_the_test_extra_is_installed():
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    distributions = _requirements(extras, "test")
    assert {"pytest", "transformers", "onnxruntime", "fastapi", "torchao"} <= set(distributions)  # the parse works
    missing = [d for d in distributions if importlib.util.find_spec(MODULES.get(d, d).replace("-", "_")) is None]
    assert not missing, f"missing from the test extra: {missing}; install it with: pip install -e '.[test]'"
