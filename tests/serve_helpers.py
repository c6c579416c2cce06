"""A real ``vitkit serve`` process on a free loopback port, for the API and browser tests."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

from paths import CIFAR

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR_TEST = CIFAR / "test"
START_TIMEOUT_S = 90.0


def write_checkpoint(path: Path, depth: int = 2) -> Path:
    """A seeded random vit_tiny_patch4_32 (two blocks) with CIFAR-10 class names, as training would save it."""
    import torch

    import vitkit

    torch.manual_seed(0)
    model = vitkit.create_model("vit_tiny_patch4_32", depth=depth, extra={"classes": CIFAR_CLASSES})
    return vitkit.save_pretrained(model, path)


SEG_CLASSES = ["sky", "road", "tree"]


def write_segmentor(path: Path) -> Path:
    """A seeded random tiny UperNet + ViT (64 px crops, three named classes), as training would save it."""
    import torch

    import vitkit

    torch.manual_seed(0)
    model = vitkit.create_model("upernet_vit_tiny_patch16", num_classes=3, extra={"classes": SEG_CLASSES},
                                channels=16, aux_channels=8, embed_dim=32, depth=4, num_heads=2, mlp_dim=64,
                                img_size=64)  # fmt: skip
    return vitkit.save_pretrained(model.eval(), path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(url: str, data: bytes | None = None, headers: dict | None = None, timeout: float = 60.0):
    """(status, headers, body) of one request; HTTP errors are returned, not raised."""
    req = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def multipart(field: str, filename: str, content: bytes) -> tuple[bytes, dict]:
    """A multipart/form-data body with one file, and its headers."""
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


class Server:
    """``vitkit serve`` in a subprocess; ``url`` is its base address."""

    def __init__(self, checkpoint: Path, *args: str, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "vitkit", "serve", str(checkpoint), "--port", str(self.port), *args]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        self.log = log
        self.proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vitkit serve exited with {self.proc.returncode}:\n{log.read_text()}")
            with contextlib.suppress(OSError):
                if request(f"{self.url}/healthz", timeout=2)[0] == 200:
                    return
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"vitkit serve did not start within {START_TIMEOUT_S:.0f} s:\n{log.read_text()}")

    def json(self, path: str, data: bytes | None = None, headers: dict | None = None) -> tuple[int, dict]:
        status, _, body = request(self.url + path, data, headers)
        return status, json.loads(body)

    def metrics(self) -> dict[str, float]:
        """Prometheus samples as {'name{labels}': value}."""
        _, _, body = request(self.url + "/metrics")
        samples = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                key, value = line.rsplit(" ", 1)
                samples[key] = float(value)
        return samples

    def stop(self) -> int:
        """SIGTERM, then wait (bounded); the exit status."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


@contextlib.contextmanager
def running(checkpoint: Path, *args: str, log: Path) -> Iterator[Server]:
    server = Server(checkpoint, *args, log=log)
    try:
        yield server
    finally:
        server.stop()
