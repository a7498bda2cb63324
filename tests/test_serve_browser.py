"""The preview page in a real headless browser (runs where chromium is installed; skipped
otherwise): the <img> must show the streamed frames."""
from __future__ import annotations

import shutil
import subprocess
import threading
import time

import cv2
import numpy as np
import pytest

from edgepose.serve import PreviewServer

BROWSER = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome", "chrome")
                if shutil.which(b)), None)


@pytest.mark.skipif(BROWSER is None, reason="no headless chromium on this machine")
def test_headless_browser_shows_the_stream(tmp_path):
    srv = PreviewServer(":0", token="tk").start()
    stop = threading.Event()

    def feed():
        while not stop.is_set():
            img = np.zeros((240, 320, 3), np.uint8)
            img[:, :] = (0, 0, 255)  # pure red frame (BGR)
            srv.publish(img)
            time.sleep(0.05)

    t = threading.Thread(target=feed, daemon=True)
    t.start()
    shot = tmp_path / "page.png"
    try:
        subprocess.run([BROWSER, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--window-size=640,480", "--virtual-time-budget=3000", f"--screenshot={shot}",
                        f"http://127.0.0.1:{srv.port}/?token=tk"], capture_output=True, timeout=60)
    finally:
        stop.set()
        t.join()
        srv.close()
    img = cv2.imread(str(shot))
    assert img is not None, "the browser wrote no screenshot"
    red = (img[..., 2] > 200) & (img[..., 1] < 60) & (img[..., 0] < 60)
    assert red.sum() > 0.5 * 320 * 240 * 0.5, "the streamed frame is not visible on the page"
