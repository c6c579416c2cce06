"""Where the tests find the repository and the shared data beside the checkout (../shared/data)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
CIFAR = SHARED_DATA / "cifar10"
