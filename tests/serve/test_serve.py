"""``vitkit serve`` against a real server process on 127.0.0.1: answers equal ``vitkit.predict``, every bad upload
gets its 4xx with a JSON error, /metrics counts what was sent, batching and SIGTERM behave."""

from __future__ import annotations

import asyncio
import io
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi", reason="vitkit serve needs the serve extra: pip install 'vitkit[serve]'")
pytest.importorskip("uvicorn", reason="vitkit serve needs the serve extra: pip install 'vitkit[serve]'")
pytest.importorskip("multipart", reason="multipart uploads need python-multipart (the serve extra)")

import vitkit  # noqa: E402
from serve_helpers import CIFAR_TEST, multipart, request, running, write_checkpoint  # noqa: E402
from vitkit.serve.batching import DynamicBatcher  # noqa: E402
from vitkit.serve.overlay import colormap, overlay_png  # noqa: E402

MAX_UPLOAD_MB = 0.25  # the test server's upload limit, so an oversized upload stays small


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Images of several formats and shapes, plus a real CIFAR-10 test image when the data set is present."""
    root = tmp_path_factory.mktemp("serve")
    rng = np.random.default_rng(0)
    out = {"ckpt": write_checkpoint(root / "tiny.safetensors")}
    Image.fromarray(rng.integers(0, 256, (30, 44, 3), dtype=np.uint8)).save(root / "wide.jpg", quality=90)
    Image.fromarray(rng.integers(0, 256, (50, 40, 4), dtype=np.uint8), "RGBA").save(root / "tall.png")
    out["wide.jpg"], out["tall.png"] = root / "wide.jpg", root / "tall.png"
    cifar = sorted(CIFAR_TEST.glob("cat/*.jpg"))[:1]
    if cifar:
        out["cifar.jpg"] = cifar[0]
    return out


@pytest.fixture(scope="module")
def server(files, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve-log") / "server.log"
    with running(files["ckpt"], "--max-upload-mb", str(MAX_UPLOAD_MB), "--max-wait-ms", "20", log=log) as srv:
        yield srv


def _images(files) -> list[Path]:
    return [p for name, p in files.items() if name != "ckpt"]


def test_predict_equals_vitkit_predict(server, files):
    expected = vitkit.predict(_images(files), files["ckpt"], topk=3, device="cpu")
    for path, want in zip(_images(files), expected):
        body, headers = multipart("file", path.name, path.read_bytes())
        status, got = server.json("/v1/predict?topk=3", body, headers)
        assert status == 200, got
        status, raw = server.json("/v1/predict?topk=3", path.read_bytes())  # the raw-body form of the same
        assert status == 200, raw
        assert got["image"] == path.name
        for answer in (got, raw):
            assert [t["label"] for t in answer["top"]] == want.labels
            assert [t["index"] for t in answer["top"]] == want.indices
            np.testing.assert_allclose([t["prob"] for t in answer["top"]], want.probs, rtol=1e-5, atol=1e-6)


def _bomb() -> bytes:
    """A 10,000 x 10,000 one-bit PNG: 12 kB on the wire, 100 MP once decoded (over Pillow's 89.5 MP guard)."""
    out = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(out, format="PNG")
    return out.getvalue()


def _bad_uploads(files) -> dict[str, tuple[bytes, int, str]]:
    jpeg = files["wide.jpg"].read_bytes()
    noise = np.random.default_rng(1).integers(0, 256, (400, 400, 3), dtype=np.uint8)
    big = io.BytesIO()
    Image.fromarray(noise).save(big, format="PNG")  # ~480 kB of incompressible pixels
    assert len(big.getvalue()) > MAX_UPLOAD_MB * 2**20
    return {
        "empty": (b"", 400, "empty_upload"),
        "text": (b"this is not an image\n" * 20, 415, "not_an_image"),
        "truncated jpeg": (jpeg[: len(jpeg) // 2], 400, "corrupt_image"),
        "damaged png header": (files["tall.png"].read_bytes()[:40], 400, "corrupt_image"),
        "oversized": (big.getvalue(), 413, "upload_too_large"),
        "decompression bomb": (_bomb(), 413, "image_too_large"),
    }


@pytest.mark.parametrize("form", ["raw", "multipart"])
def test_bad_uploads_get_4xx_json_naming_the_problem(server, files, form):
    for name, (data, status, code) in _bad_uploads(files).items():
        body, headers = multipart("file", "x.bin", data) if form == "multipart" else (data, {})
        for route in ("/v1/predict", "/v1/explain"):
            got_status, got = server.json(route, body, headers)
            assert (got_status, got["error"]) == (status, code), f"{name} to {route}: {got}"
            assert len(got["detail"]) > 20
    assert server.proc.poll() is None  # still serving


def test_bad_requests(server, files):
    body, headers = multipart("other", "a.txt", b"")
    headers = {"Content-Type": headers["Content-Type"]}
    form_without_file = body.replace(b'; filename="a.txt"', b"")
    status, got = server.json("/v1/predict", form_without_file, headers)  # a text field, no file
    assert (status, got["error"]) == (400, "no_file")
    jpeg = files["wide.jpg"].read_bytes()
    for path, code in [
        ("/v1/predict?topk=0", "bad_parameter"),
        ("/v1/predict?topk=x", "bad_parameter"),
        ("/v1/explain?layers=3", "bad_parameter"),
        ("/v1/explain?layers=2-1", "bad_parameter"),
        ("/v1/explain?head_fusion=median", "bad_parameter"),
    ]:
        status, got = server.json(path, jpeg)
        assert (status, got["error"]) == (422, code), path
    status, got = server.json("/v1/nothing")
    assert (status, got["error"]) == (404, "not_found")


def _rollout_reference(model: torch.nn.Module, x: torch.Tensor, stop: int) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema 2020) in float64 NumPy from the model's attention maps: (gh, gw)."""
    with torch.no_grad():
        maps = [a[0].double().numpy().mean(axis=0) for a in model.get_attention_maps(x)]  # L x (T, T)
    rollout = np.eye(maps[0].shape[0])
    for a in maps[:stop]:
        a = a + np.eye(len(a))
        rollout = (a / a.sum(axis=-1, keepdims=True)) @ rollout
    return rollout[0, 1:].reshape(8, 8)  # class-token row, patch columns


def test_explain_is_the_rollout_overlay(server, files):
    from vitkit.data import DataConfig
    from vitkit.data.augment import normalize
    from vitkit.data.sample_transforms import EvalTransform

    model = vitkit.load_pretrained(files["ckpt"])
    data_cfg = DataConfig.from_model_config(model.cfg)
    path = files["tall.png"]
    with Image.open(path) as img:
        x = normalize(EvalTransform(data_cfg, crop_pct=1.0)(img)[None], model.cfg.mean, model.cfg.std)
    with Image.open(path) as img:
        display = EvalTransform(data_cfg, img_size=(384, 384), crop_pct=1.0)(img)
    for stop in (1, 2):
        status, headers, png = request(f"{server.url}/v1/explain?layers={stop}", path.read_bytes())
        assert status == 200 and headers["content-type"] == "image/png"
        got = np.asarray(Image.open(io.BytesIO(png)), dtype=np.int16)
        want = np.asarray(
            Image.open(io.BytesIO(overlay_png(display, torch.from_numpy(_rollout_reference(model, x, stop)))))
        )
        assert got.shape == (384, 384, 3)
        assert np.abs(got - want.astype(np.int16)).max() <= 1


def test_overlay_colours():
    # The colour map's ends and middle are its anchors; a flat map draws the darkest colour over the image.
    np.testing.assert_array_equal(colormap(np.array([0.0, 0.5, 1.0])), [[0, 0, 4], [188, 55, 84], [252, 255, 164]])
    pixels = torch.full((3, 4, 4), 200, dtype=torch.uint8)
    flat = np.asarray(Image.open(io.BytesIO(overlay_png(pixels, torch.ones(2, 2), alpha=0.5))))
    np.testing.assert_array_equal(flat[0, 0], [100, 100, 102])  # 0.5 * 200 + 0.5 * (0, 0, 4)


def test_model_and_health(server, files):
    status, info = server.json("/v1/model")
    assert status == 200
    assert info["classes"][3] == "cat" and info["depth"] == 2 and info["num_classes"] == 10
    assert info["preprocessing"]["img_size"] == [32, 32]
    assert info["serving"]["max_upload_bytes"] == int(MAX_UPLOAD_MB * 2**20)
    assert server.json("/healthz") == (200, {"status": "ok", "model": "tiny.safetensors"})
    status, _, page = request(server.url + "/")
    assert status == 200 and b'src="/static/app.js"' in page and b"http" not in page  # nothing from elsewhere


def test_metrics_count_what_was_sent(server, files):
    before = server.metrics()
    jpeg = files["wide.jpg"].read_bytes()
    for _ in range(3):
        assert server.json("/v1/predict", jpeg)[0] == 200
    for _ in range(2):
        assert server.json("/v1/predict", b"")[0] == 400
    assert server.json("/v1/predict", b"not an image")[0] == 415
    after = server.metrics()
    delta = lambda key: after.get(key, 0.0) - before.get(key, 0.0)
    assert delta('vitkit_requests_total{route="/v1/predict",code="200"}') == 3
    assert delta('vitkit_requests_total{route="/v1/predict",code="400"}') == 2
    assert delta('vitkit_request_errors_total{route="/v1/predict",error="empty_upload"}') == 2
    assert delta('vitkit_request_errors_total{route="/v1/predict",error="not_an_image"}') == 1
    assert delta('vitkit_request_duration_seconds_count{route="/v1/predict"}') == 6
    assert delta('vitkit_request_duration_seconds_bucket{route="/v1/predict",le="+Inf"}') == 6
    assert delta("vitkit_batch_size_sum") == 3  # only decodable images reach the model


def test_concurrent_requests_share_batches(server, files, tmp_path):
    """Eight requests at once on a server that waits for eight: the model runs once, on all of them, and each
    answer is the one the image gets alone. The wait is longer than any test, so no timing decides the batch."""
    paths = _images(files) * 4
    single = {p: server.json("/v1/predict?topk=2", p.read_bytes())[1]["top"] for p in set(paths)}
    with running(files["ckpt"], "--max-batch", str(len(paths)), "--max-wait-ms", "600000", log=tmp_path / "log") as srv:
        before = srv.metrics()
        with ThreadPoolExecutor(len(paths)) as pool:
            answers = list(pool.map(lambda p: srv.json("/v1/predict?topk=2", p.read_bytes()), paths))
        after = srv.metrics()
    for path, (status, got) in zip(paths, answers):
        assert status == 200
        assert [t["index"] for t in got["top"]] == [t["index"] for t in single[path]]
        np.testing.assert_allclose([t["prob"] for t in got["top"]], [t["prob"] for t in single[path]], atol=1e-6)
    assert after["vitkit_batch_size_count"] - before["vitkit_batch_size_count"] == 1  # one forward pass ...
    assert after["vitkit_batch_size_sum"] - before["vitkit_batch_size_sum"] == len(paths)  # ... of all eight


def test_batcher_groups_up_to_max_batch():
    seen: list[int] = []

    def run(items: list[int]) -> list[int]:
        seen.append(len(items))
        return [2 * i for i in items]

    async def main(max_batch: int) -> list[int]:
        with ThreadPoolExecutor(1) as pool:
            batcher = DynamicBatcher(run, pool, max_batch=max_batch, max_wait_ms=50)
            batcher.start()
            results = await asyncio.gather(*(batcher.submit(i) for i in range(5)))
            await batcher.stop()
        return results

    assert asyncio.run(main(4)) == [0, 2, 4, 6, 8] and seen == [4, 1]
    seen.clear()
    assert asyncio.run(main(1)) == [0, 2, 4, 6, 8] and seen == [1] * 5


def test_batcher_hurried_runs_a_batch_that_cannot_fill():
    """A shutting-down server hurries its batcher: the lone request is answered now, not after max_wait_ms."""

    async def main() -> tuple[list[int], bool]:
        with ThreadPoolExecutor(1) as pool:
            batcher = DynamicBatcher(lambda items: [2 * i for i in items], pool, max_batch=2, max_wait_ms=600_000)
            batcher.start()
            answer = asyncio.ensure_future(batcher.submit(21))
            await asyncio.sleep(0)  # the worker takes the item and waits for company
            waiting = not answer.done()
            batcher.hurry()
            result = await asyncio.wait_for(answer, 60)  # without hurry() it would wait 600 s: fail instead
            await batcher.stop()
        return [result], waiting

    assert asyncio.run(main()) == ([42], True)


def test_sigterm_finishes_requests_in_flight_and_timeouts(files, tmp_path):
    """A lone request waits for company that never comes (a batch of two, a wait longer than any test); SIGTERM
    arrives meanwhile and it is still answered. The same lone request with a short --timeout gets a 503: the
    batch cannot form, so no race between the two waits decides it."""
    jpeg = files["wide.jpg"].read_bytes()
    forever = ("--max-batch", "2", "--max-wait-ms", "600000")
    with running(files["ckpt"], *forever, "--timeout", "600", log=tmp_path / "log") as srv:
        answer: dict = {}
        client = threading.Thread(target=lambda: answer.update(r=srv.json("/v1/predict", jpeg)))
        client.start()
        deadline = time.monotonic() + 30
        while srv.metrics()["vitkit_requests_in_flight"] < 2 and time.monotonic() < deadline:  # it + this scrape
            time.sleep(0.05)
        assert srv.stop() in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it has shut down
        client.join(60)
    status, got = answer["r"]
    assert status == 200 and len(got["top"]) == 5
    assert "Finished server process" in (tmp_path / "log").read_text()
    with running(files["ckpt"], *forever, "--timeout", "0.2", log=tmp_path / "log2") as srv:
        status, got = srv.json("/v1/predict", jpeg)  # its batch never fills
        assert (status, got["error"]) == (503, "timeout")


def test_bf16_fast_path_stays_close_to_fp32(files):
    """--precision bf16 autocasts the batched forward; probabilities move by bf16 rounding only."""
    from vitkit.serve import Engine, ServeSettings

    data = files["wide.jpg"].read_bytes()
    full, half = (Engine(files["ckpt"], ServeSettings(precision=p, device="cpu")) for p in ("fp32", "bf16"))
    want, got = (e.probabilities([e.preprocess(data)] * 3) for e in (full, half))
    assert half.autocast["enabled"] and not full.autocast["enabled"]
    for w, g in zip(want, got):
        torch.testing.assert_close(g, w, atol=2e-2, rtol=0)
    assert not torch.equal(torch.stack(got), torch.stack(want))  # the bf16 path really ran
