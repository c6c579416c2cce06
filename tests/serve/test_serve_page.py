"""The page at ``/`` in headless Chromium: upload a CIFAR-10 test image, wait for the top-k bars and the rollout
overlay, move the layer slider, save a screenshot.

Needs Debian's browser and driver (``apt-get install -y chromium chromium-driver``) and Selenium (the test
extra); skipped otherwise. ``VITKIT_SERVE_SCREENSHOT=docs/img/serve_page.png`` keeps the screenshot there.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="vitkit serve needs the serve extra: pip install 'vitkit[serve]'")
pytest.importorskip("multipart", reason="multipart uploads need python-multipart (the serve extra)")
webdriver = pytest.importorskip("selenium.webdriver", reason="the browser test drives Chromium with selenium")

from serve_helpers import CIFAR_TEST, SEG_CLASSES, request, running, write_checkpoint, write_segmentor  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER), reason="no Chromium: apt-get install -y chromium chromium-driver (see README)"
)
WAIT_S = 60


def _browser():
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1200,800",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(DRIVER), options=options)


def test_page_classifies_an_uploaded_image(tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    images = sorted(CIFAR_TEST.glob("cat/*.jpg"))
    if not images:
        pytest.skip(f"CIFAR-10 test images not found under {CIFAR_TEST}")
    checkpoint = Path(os.environ.get("VITKIT_SERVE_CHECKPOINT") or write_checkpoint(tmp_path / "tiny.safetensors"))
    with running(checkpoint, log=tmp_path / "server.log") as server, _browser() as browser:
        browser.get(server.url + "/")
        wait = WebDriverWait(browser, WAIT_S)
        wait.until(lambda b: "layers" in b.find_element(By.ID, "model-info").text)
        depth = int(browser.find_element(By.ID, "layer").get_attribute("max"))
        state = lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-state")
        (tmp_path / "notes.txt").write_text("not an image\n")
        browser.find_element(By.ID, "file").send_keys(str(tmp_path / "notes.txt"))  # the server's error, shown
        wait.until(lambda b: state(b) in ("done", "error"))
        assert state(browser) == "error" and "not_an_image" in browser.find_element(By.ID, "status").text
        browser.execute_script("document.body.dataset.state = '';")  # so the wait below sees this upload's end
        browser.find_element(By.ID, "file").send_keys(str(images[0]))
        wait.until(lambda b: state(b) in ("done", "error"))
        assert state(browser) == "done", browser.find_element(By.ID, "status").text
        bars = browser.find_elements(By.CSS_SELECTOR, "#topk li")
        assert len(bars) == 5
        status, top = server.json("/v1/predict", images[0].read_bytes())
        assert [b.text.split("\n")[0] for b in bars] == [t["label"] for t in top["top"]]  # the page shows the API's
        overlay = browser.find_element(By.ID, "overlay")
        wait.until(lambda b: b.execute_script("return arguments[0].complete && arguments[0].naturalWidth", overlay))
        assert overlay.get_attribute("naturalWidth") == "384"
        first = overlay.get_attribute("src")
        slider = browser.find_element(By.ID, "layer")
        browser.execute_script(  # move the slider to layer 1 as a user would, firing its input event
            "arguments[0].value = 1; arguments[0].dispatchEvent(new Event('input'));", slider
        )
        wait.until(lambda b: overlay.get_attribute("src") != first and b.find_element(By.ID, "layer-value").text == "1")
        assert depth >= 2
        browser.execute_script(  # and back to the last layer: served from the page's cache this time
            "arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input'));", slider, depth
        )
        wait.until(lambda b: overlay.get_attribute("src") == first)
        shot = Path(os.environ.get("VITKIT_SERVE_SCREENSHOT") or tmp_path / "serve_page.png")
        shot.parent.mkdir(parents=True, exist_ok=True)
        assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000


def test_page_segments_with_a_segmentation_checkpoint(tmp_path):
    """The same page on a segmentor's server: the class overlay at the upload's size and the pixel shares, as the
    API answers them."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    images = sorted(CIFAR_TEST.glob("ship/*.jpg"))
    if not images:
        pytest.skip(f"CIFAR-10 test images not found under {CIFAR_TEST}")
    with (
        running(write_segmentor(tmp_path / "seg.safetensors"), log=tmp_path / "server.log") as server,
        _browser() as browser,
    ):
        browser.get(server.url + "/")
        wait = WebDriverWait(browser, WAIT_S)
        wait.until(lambda b: "segments 3 classes" in b.find_element(By.ID, "model-info").text)
        browser.find_element(By.ID, "file").send_keys(str(images[0]))
        wait.until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-state") in ("done", "error"))
        assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "done"
        _, headers, _ = request(server.url + "/v1/segment", images[0].read_bytes())
        shares = json.loads({k.lower(): v for k, v in headers.items()}["x-vitkit-shares"])
        bars = [b.text.split("\n")[0] for b in browser.find_elements(By.CSS_SELECTOR, "#topk li")]
        assert bars == list(shares) and set(bars) <= set(SEG_CLASSES)
        overlay = browser.find_element(By.ID, "overlay")
        wait.until(lambda b: b.execute_script("return arguments[0].complete && arguments[0].naturalWidth", overlay))
        assert overlay.get_attribute("naturalWidth") == "32"  # CIFAR's 32 px, the upload's own size
        shot = tmp_path / "serve_page_seg.png"
        assert browser.save_screenshot(str(shot))
