"""Serving a trained classifier over HTTP (``vitkit serve``): predictions, attention-rollout explanations, a
Prometheus endpoint and a small offline web page. The HTTP parts need the ``serve`` extra (FastAPI, uvicorn)."""

from __future__ import annotations

from typing import Any

from vitkit.serve.engine import Engine, ServeSettings
from vitkit.serve.uploads import RequestError

__all__ = ["Engine", "RequestError", "ServeSettings", "create_app", "serve"]


def __getattr__(name: str) -> Any:
    if name in ("create_app", "serve"):
        try:
            from vitkit.serve import app
        except ImportError as err:
            raise RuntimeError(  # the CLI prints RuntimeErrors as one line
                f"vitkit serve needs FastAPI and uvicorn ({err}); install them with pip install 'vitkit[serve]'"
            ) from None
        return getattr(app, name)
    raise AttributeError(f"module 'vitkit.serve' has no attribute {name!r}")
