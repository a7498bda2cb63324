"""MJPEG preview server for headless boards: ``/`` is a page with an ``<img>``, ``/stream.mjpg``
streams the annotated frames as ``multipart/x-mixed-replace``, ``/frame.jpg`` is the latest one.

Binds 127.0.0.1 unless an address is given (a camera feed is private). With a token, every
request must carry it as ``?token=T``, ``X-Edgepose-Token: T`` or ``Authorization: Bearer T``;
others get 403.
"""
from __future__ import annotations

import hmac
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional, Tuple
from urllib.parse import parse_qs, quote, urlsplit

import cv2
import numpy as np

BOUNDARY = "edgeposeframe"


def parse_address(text: str, default_host: str = "127.0.0.1") -> Tuple[str, int]:
    """``"8080"``, ``":8080"`` or ``"0.0.0.0:8080"`` -> ``(host, port)``."""
    s = str(text).strip()
    host, _, port = s.rpartition(":") if ":" in s else ("", "", s)
    host = host.strip("[]") or default_host
    try:
        p = int(port)
    except ValueError:
        raise ValueError(f"--serve {text!r}: expected [HOST:]PORT, e.g. :8080 or 0.0.0.0:8080") from None
    if not 0 <= p <= 65535:
        raise ValueError(f"--serve {text!r}: port must be 0..65535")
    return host, p


class FrameHub:
    """Latest JPEG and a condition that wakes streaming clients when a new one arrives."""

    def __init__(self, quality: int = 80) -> None:
        self.quality = int(quality)
        self._cond = threading.Condition()
        self._jpeg: Optional[bytes] = None
        self._seq = 0
        self.closed = False

    def publish(self, frame: np.ndarray) -> None:
        ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            return
        with self._cond:
            self._jpeg = buf.tobytes()
            self._seq += 1
            self._cond.notify_all()

    def wait(self, after: int, timeout: float = 1.0) -> Tuple[int, Optional[bytes]]:
        """Block until a frame newer than ``after`` (or timeout); returns (seq, jpeg)."""
        with self._cond:
            self._cond.wait_for(lambda: self._seq > after or self.closed, timeout)
            return self._seq, self._jpeg

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


def _page(token: Optional[str]) -> bytes:
    q = f"?token={quote(token)}" if token else ""
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>edgepose preview</title>"
        "<style>body{background:#111;color:#ddd;font-family:sans-serif;margin:1em}img{max-width:100%}</style>"
        f"</head><body><h1>edgepose preview</h1><img id='stream' src='/stream.mjpg{q}' alt='pose stream'>"
        "</body></html>"
    ).encode()


def make_handler(hub: FrameHub, token: Optional[str]):
    class Handler(BaseHTTPRequestHandler):
        server_version = "edgepose"

        def log_message(self, *args) -> None:  # keep stderr for the status line
            pass

        def _authorised(self, query: dict) -> bool:
            if not token:
                return True
            given = (query.get("token") or [""])[0] or self.headers.get("X-Edgepose-Token", "")
            auth = self.headers.get("Authorization", "")
            if not given and auth.lower().startswith("bearer "):
                given = auth[7:].strip()
            return hmac.compare_digest(given.encode(), token.encode())

        def _send(self, code: int, ctype: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            if not self._authorised(query):
                self._send(403, "text/plain", b"forbidden: pass the token as ?token=... or X-Edgepose-Token\n")
                return
            if url.path in ("/", "/index.html"):
                self._send(200, "text/html; charset=utf-8", _page((query.get("token") or [None])[0]))
            elif url.path == "/frame.jpg":
                _, jpeg = hub.wait(0, timeout=5.0)
                if jpeg is None:
                    self._send(503, "text/plain", b"no frame yet\n")
                else:
                    self._send(200, "image/jpeg", jpeg)
            elif url.path == "/stream.mjpg":
                self._stream()
            else:
                self._send(404, "text/plain", b"not found\n")

        def _stream(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            seq = 0
            try:
                while not hub.closed:
                    new, jpeg = hub.wait(seq)
                    if jpeg is None or new == seq:
                        continue
                    seq = new
                    self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                                     .encode() + jpeg + b"\r\n")
                    self.wfile.flush()
            except OSError:  # the client went away (broken pipe, reset, abort)
                pass

    return Handler


class PreviewServer:
    """Background HTTP server over a :class:`FrameHub`.

    Args:
        address: ``[HOST:]PORT``; the host defaults to 127.0.0.1; port 0 picks a free one.
        token: required on every request when set.
    """

    def __init__(self, address: str = ":8080", token: Optional[str] = None, quality: int = 80) -> None:
        self.host, port = parse_address(address)
        self.token = token or None
        self.hub = FrameHub(quality)
        try:
            self.httpd = ThreadingHTTPServer((self.host, port), make_handler(self.hub, self.token))
        except OSError as exc:
            raise OSError(f"--serve {address}: cannot listen on {self.host}:{port} ({exc.strerror or exc})") from None
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="edgepose-preview", daemon=True)

    @property
    def url(self) -> str:
        q = f"?token={quote(self.token)}" if self.token else ""
        return f"http://{self.host}:{self.port}/{q}"

    def start(self) -> "PreviewServer":
        self._thread.start()
        return self

    def publish(self, frame: np.ndarray) -> None:
        self.hub.publish(frame)

    def close(self) -> None:
        self.hub.close()
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> "PreviewServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
