"""``vitkit serve`` with a segmentation checkpoint: ``POST /v1/segment`` answers the overlay (a PNG at the upload's
size) and each class's share of the pixels, as the model's own per-pixel argmax gives them; the classifier routes
say which route to use instead, and a classifier's server refuses ``/v1/segment`` the same way."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi", reason="vitkit serve needs the serve extra: pip install 'vitkit[serve]'")
pytest.importorskip("uvicorn", reason="vitkit serve needs the serve extra: pip install 'vitkit[serve]'")

import vitkit  # noqa: E402
from serve_helpers import SEG_CLASSES as CLASSES  # noqa: E402
from serve_helpers import request, running, write_checkpoint, write_segmentor  # noqa: E402
from vitkit.data.augment import normalize  # noqa: E402


@pytest.fixture(scope="module")
def segmentor(tmp_path_factory):
    path = write_segmentor(tmp_path_factory.mktemp("seg") / "seg.safetensors")
    model = vitkit.load_pretrained(path).eval()
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8))  # W 96 x H 64: not square
    return model, path, image


def test_segment_route_answers_overlay_and_shares(segmentor, tmp_path):
    model, path, image = segmentor
    upload = io.BytesIO()
    image.save(upload, format="PNG")
    with running(path, log=tmp_path / "log") as srv:
        status, headers, body = request(srv.url + "/v1/segment", upload.getvalue())
        wrong, answer = srv.json("/v1/predict", upload.getvalue())
        _, info = srv.json("/v1/model")
    headers = {k.lower(): v for k, v in headers.items()}
    assert status == 200 and headers["content-type"] == "image/png", body[:200]
    assert Image.open(io.BytesIO(body)).size == image.size
    # The reference: the model's per-pixel argmax on the normalised image (64 x 96 needs no resizing).
    x = normalize(torch.from_numpy(np.asarray(image)).permute(2, 0, 1)[None], model.cfg.mean, model.cfg.std)
    with torch.no_grad():
        labels = model(x).argmax(1)[0].numpy()
    counts = np.bincount(labels.ravel(), minlength=3) / labels.size
    shares = json.loads(headers["x-vitkit-shares"])
    assert shares == pytest.approx({CLASSES[i]: counts[i] for i in range(3) if counts[i] > 0}, abs=1e-9)
    assert list(shares.values()) == sorted(shares.values(), reverse=True)  # largest first
    assert (wrong, answer["error"]) == (409, "wrong_task") and "/v1/segment" in answer["detail"]
    assert info["task"] == "segmentation" and info["classes"] == CLASSES


def test_a_classifier_server_refuses_segment(tmp_path):
    with running(write_checkpoint(tmp_path / "cls.safetensors"), log=tmp_path / "log") as srv:
        status, answer = srv.json("/v1/segment", b"anything")
    assert (status, answer["error"]) == (409, "wrong_task") and "/v1/predict" in answer["detail"]
