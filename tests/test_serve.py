"""The MJPEG preview server answered by a real HTTP client (urllib on 127.0.0.1)."""
from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from edgepose.serve import BOUNDARY, PreviewServer, parse_address


@pytest.fixture
def server():
    srv = PreviewServer(":0", token="s3cret").start()
    stop = threading.Event()

    def feed():
        i = 0
        while not stop.is_set():
            img = np.full((48, 64, 3), i % 255, np.uint8)
            srv.publish(img)
            i += 1
            time.sleep(0.02)

    t = threading.Thread(target=feed, daemon=True)
    t.start()
    yield srv
    stop.set()
    t.join()
    srv.close()


def _get(url, headers=None, n=None):
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.status, r.headers, (r.read(n) if n else r.read())


def test_binds_localhost_by_default(server):
    assert server.host == "127.0.0.1"
    assert server.httpd.server_address[0] == "127.0.0.1"
    assert parse_address(":8080") == ("127.0.0.1", 8080)
    assert parse_address("0.0.0.0:9000") == ("0.0.0.0", 9000)
    with pytest.raises(ValueError, match="HOST"):
        parse_address("localhost:http")


def test_token_refused_without_it(server):
    base = f"http://127.0.0.1:{server.port}"
    for path in ("/", "/stream.mjpg", "/frame.jpg", "/?token=wrong"):
        with pytest.raises(urllib.error.HTTPError) as e:
            _get(base + path)
        assert e.value.code == 403


def test_index_page_and_snapshot_with_token(server):
    base = f"http://127.0.0.1:{server.port}"
    status, headers, body = _get(base + "/?token=s3cret")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b"<img" in body and b"/stream.mjpg?token=s3cret" in body
    status, headers, body = _get(base + "/frame.jpg", {"X-Edgepose-Token": "s3cret"})
    assert headers["Content-Type"] == "image/jpeg" and body[:2] == b"\xff\xd8"
    status, _, _ = _get(base + "/frame.jpg", {"Authorization": "Bearer s3cret"})
    assert status == 200


def test_mjpeg_stream_has_boundary_and_jpegs(server):
    url = f"http://127.0.0.1:{server.port}/stream.mjpg?token=s3cret"
    with urllib.request.urlopen(url, timeout=5) as r:
        assert r.headers["Content-Type"] == f"multipart/x-mixed-replace; boundary={BOUNDARY}"
        data = b""
        while data.count(b"--" + BOUNDARY.encode()) < 3:
            data += r.read1(65536)
    parts = data.split(b"--" + BOUNDARY.encode())[1:3]
    for p in parts:
        head, _, body = p.partition(b"\r\n\r\n")
        assert b"Content-Type: image/jpeg" in head
        length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
        assert body[:2] == b"\xff\xd8" and len(body) >= length


def test_no_token_server_is_open_and_busy_port_is_clear():
    with PreviewServer(":0") as srv:
        srv.publish(np.zeros((8, 8, 3), np.uint8))
        status, _, _ = _get(f"http://127.0.0.1:{srv.port}/frame.jpg")
        assert status == 200
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{srv.port}"):
            PreviewServer(f"127.0.0.1:{srv.port}")
