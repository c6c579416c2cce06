"""The HTTP service: a FastAPI app around an :class:`~vitkit.serve.engine.Engine`, and ``serve`` to run it.

Routes: ``POST /v1/predict`` and ``POST /v1/explain`` take an image as a multipart upload (field ``file``) or
as the raw body; ``GET /v1/model``, ``GET /healthz``, ``GET /metrics`` (Prometheus text) and the page at ``/``.
Predictions go through the dynamic batcher; every model call runs in one model thread, so the event loop only
moves bytes. Errors are JSON ``{"error": code, "detail": sentence}``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from vitkit.serve.batching import BatcherClosed, DynamicBatcher
from vitkit.serve.engine import Engine, ServeSettings, parse_layers
from vitkit.serve.guard import ERROR_KEY, Guard
from vitkit.serve.metrics import Metrics
from vitkit.serve.segment import SegmentEngine
from vitkit.serve.uploads import RequestError

STATIC = Path(str(resources.files("vitkit.serve") / "static"))
_HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "upload_too_large"}


async def read_upload(request: Request) -> tuple[bytes, str]:
    """(image bytes, file name) from a multipart field ``file`` (or the only file sent) or the raw body."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=8)  # a malformed form raises HTTPException(400)
        files = [v for k, v in form.multi_items() if isinstance(v, UploadFile) and k in ("file", "image")]
        files = files or [v for v in form.values() if isinstance(v, UploadFile)]
        if not files:
            raise RequestError(400, "no_file", "the multipart form has no file; send the image as the field 'file'")
        return await files[0].read(), files[0].filename or "upload"
    return await request.body(), request.headers.get("x-filename", "upload")


def _error(request: Request, err: RequestError) -> JSONResponse:
    request.scope[ERROR_KEY] = err.code
    return JSONResponse(err.to_dict(), err.status)


def create_app(engine: Engine | SegmentEngine) -> FastAPI:
    """The app serving ``engine``; its batcher and model thread live as long as the app's lifespan. A classifier
    answers ``/v1/predict`` and ``/v1/explain``, a segmentor ``/v1/segment``; each route says which server to ask
    when the checkpoint is of the other task."""
    settings = engine.settings
    metrics = Metrics()
    model_thread = ThreadPoolExecutor(1, thread_name_prefix="vitkit-model")
    segments = isinstance(engine, SegmentEngine)
    batcher = (
        None
        if segments
        else DynamicBatcher(  # segmentation answers one image per call (sizes differ)
            engine.probabilities, model_thread, settings.max_batch, settings.max_wait_ms, metrics.batch
        )
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await asyncio.get_running_loop().run_in_executor(model_thread, engine.warm_up)
        if batcher is not None:
            batcher.start()
        yield
        if batcher is not None:
            await batcher.stop()  # requests already queued still get their answers
        model_thread.shutdown(wait=True)

    # No /docs or /redoc: their pages load scripts from a CDN, and this server works offline.
    app = FastAPI(title="vitkit", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.batcher = batcher
    app.add_middleware(Guard, metrics=metrics, max_upload_bytes=settings.max_upload_bytes)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    async def on_model_thread(fn: Callable, *args: Any) -> Any:
        future = asyncio.get_running_loop().run_in_executor(model_thread, fn, *args)
        return await _limited(future, settings.timeout_s)

    async def decode(fn: Callable, data: bytes) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, fn, data)

    @app.exception_handler(RequestError)
    async def request_error(request: Request, err: RequestError) -> JSONResponse:
        return _error(request, err)

    @app.exception_handler(RequestValidationError)
    async def bad_parameter(request: Request, err: RequestValidationError) -> JSONResponse:
        where = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors())
        return _error(request, RequestError(422, "bad_parameter", f"invalid request parameter ({where})"))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(err.status_code, f"http_{err.status_code}")
        return _error(request, RequestError(err.status_code, code, str(err.detail)))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, err: Exception) -> JSONResponse:
        detail = f"the server failed on this request ({type(err).__name__}: {err}); please report it"
        return _error(request, RequestError(500, "internal_error", detail))

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        if batcher is not None and batcher.closed:
            return JSONResponse({"status": "stopping"}, 503)
        return JSONResponse({"status": "ok", "model": engine.name})

    @app.get("/metrics")
    async def prometheus() -> PlainTextResponse:
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/v1/model")
    async def model_info() -> dict[str, Any]:
        return engine.describe()

    def needs(task: str) -> None:
        if engine.task != task:
            route = "/v1/segment" if segments else "/v1/predict or /v1/explain"
            raise RequestError(409, "wrong_task", f"this server's checkpoint is a {engine.task} model: POST {route}")

    @app.post("/v1/segment")
    async def segment(request: Request) -> Response:
        needs("segmentation")
        data, _ = await read_upload(request)
        image = await decode(engine.decode, data)
        png, shares = await on_model_thread(engine.segment, image)
        return Response(png, media_type="image/png", headers={"X-Vitkit-Shares": json.dumps(shares)})

    @app.post("/v1/predict")
    async def predict(request: Request, topk: int | None = None) -> dict[str, Any]:
        needs("classification")
        k = settings.topk if topk is None else topk
        if k < 1:
            raise RequestError(422, "bad_parameter", f"topk must be at least 1, got {k}")
        data, name = await read_upload(request)
        image = await decode(engine.preprocess, data)  # (3, H, W) uint8
        try:
            probs = await _limited(batcher.submit(image), settings.timeout_s)
        except BatcherClosed:
            raise RequestError(503, "shutting_down", "the server is shutting down; retry on another instance") from None
        return {"image": name, "model": engine.name, "top": engine.top(probs, k)}

    @app.post("/v1/explain")
    async def explain(request: Request, layers: str | None = None, head_fusion: str = "mean") -> Response:
        from vitkit.viz.rollout import HEAD_FUSIONS

        needs("classification")
        try:
            span = parse_layers(layers, engine.model.cfg.depth)
        except ValueError as err:
            raise RequestError(422, "bad_parameter", str(err)) from None
        if head_fusion not in HEAD_FUSIONS:
            raise RequestError(422, "bad_parameter", f"head_fusion must be one of {list(HEAD_FUSIONS)}")
        data, _ = await read_upload(request)
        image, pixels = await decode(engine.explain_inputs, data)
        png = await on_model_thread(engine.explain, image, pixels, span, head_fusion)
        headers = {"X-Vitkit-Layers": f"{span[0]}-{span[1]}"}
        return Response(png, media_type="image/png", headers=headers)

    return app


async def _limited(awaitable: Any, seconds: float) -> Any:
    """``awaitable`` within ``seconds``, else a 503 naming the limit."""
    try:
        return await asyncio.wait_for(awaitable, seconds)
    except asyncio.TimeoutError:
        detail = f"the model did not answer within {seconds:g} s (server busy); retry later or raise --timeout"
        raise RequestError(503, "timeout", detail) from None


# The checkpoint's task -> what serves it.
ENGINES = {"classification": Engine, "segmentation": SegmentEngine}


def open_engine(checkpoint: str | Path, settings: ServeSettings) -> Engine | SegmentEngine:
    """The engine for ``checkpoint``'s task; a task without one is a one-line error naming the served ones."""
    from vitkit.eval.loading import load_for_task

    model, task = load_for_task(checkpoint, command="vitkit serve")
    if task.name not in ENGINES:
        raise ValueError(f"{checkpoint} is a {task.name} model; vitkit serve serves {sorted(ENGINES)} checkpoints")
    del model  # the engine loads it again onto its device
    return ENGINES[task.name](checkpoint, settings)


def serve(checkpoint: str | Path, settings: ServeSettings | None = None, log_level: str = "info") -> None:
    """Load ``checkpoint`` and serve it until SIGINT/SIGTERM; requests in flight finish before the process ends."""
    import uvicorn
    from PIL import Image

    settings = settings or ServeSettings()
    if settings.max_pixels > (Image.MAX_IMAGE_PIXELS or 0):  # Pillow's own guard would refuse first: this process
        Image.MAX_IMAGE_PIXELS = settings.max_pixels  # is the server, so its limit is the one asked for
    engine = open_engine(checkpoint, settings)
    app = create_app(engine)
    print(f"vitkit serve: {engine.name} on http://{settings.host}:{settings.port}/ (Ctrl+C to stop)", flush=True)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level=log_level, access_log=False)

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame) -> None:
            super().handle_exit(sig, frame)
            if app.state.batcher is not None:  # requests in flight must not wait for a batch that cannot fill
                app.state.batcher.hurry()

    Server(config).run()
