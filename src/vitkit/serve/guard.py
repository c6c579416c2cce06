"""The outermost layer of the app (pure ASGI): the upload size limit and the request metrics.

The size limit acts before any route reads the body: an announced ``Content-Length`` over the limit is refused
at once, a chunked body as soon as it crosses the limit. The rest of the body is read and dropped (up to a cap)
before answering, so the client, still sending, gets the 413 instead of a reset connection.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.responses import JSONResponse

from vitkit.serve.metrics import Metrics
from vitkit.serve.uploads import RequestError, too_large

ERROR_KEY = "vitkit.error"  # the scope entry where handlers leave their error code for the metrics
ROUTES = ("/", "/healthz", "/metrics", "/v1/model", "/v1/predict", "/v1/explain")
DRAIN_CAP = 64 * 2**20


def route_label(path: str) -> str:
    """A bounded label for the metrics: a known route, the static files, or 'other'."""
    if path in ROUTES:
        return path
    return "/static" if path.startswith("/static/") else "other"


class _TooLarge(Exception):
    def __init__(self, error: RequestError, done: bool) -> None:
        self.error, self.done = error, done


class Guard:
    """ASGI middleware: ``Guard(app, metrics, max_upload_bytes)``."""

    def __init__(self, app: Any, metrics: Metrics, max_upload_bytes: int) -> None:
        self.app, self.metrics, self.limit = app, metrics, max_upload_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]

        async def send_status(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        received = [0]

        async def limited() -> dict:
            message = await receive()
            if message["type"] == "http.request":
                received[0] += len(message.get("body", b""))
                if received[0] > self.limit:
                    raise _TooLarge(too_large(None, self.limit), not message.get("more_body", False))
            return message

        self.metrics.enter(1)
        try:
            length = _content_length(scope)
            if length is not None and length > self.limit:
                raise _TooLarge(too_large(length, self.limit), False)
            await self.app(scope, limited, send_status)
        except _TooLarge as big:
            if not big.done:
                await _drain(receive, DRAIN_CAP)
            scope[ERROR_KEY] = big.error.code
            await JSONResponse(big.error.to_dict(), big.error.status)(scope, receive, send_status)
        finally:
            self.metrics.enter(-1)
            self.metrics.record(
                route_label(scope["path"]), status[0], time.perf_counter() - start, scope.get(ERROR_KEY)
            )


def _content_length(scope: dict) -> int | None:
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _drain(receive: Any, cap: int) -> None:
    """Read and drop the rest of the request body, at most ``cap`` bytes."""
    seen = 0
    while seen <= cap:
        message = await receive()
        if message["type"] != "http.request":
            return
        seen += len(message.get("body", b""))
        if not message.get("more_body", False):
            return
