"""MJPEG preview server for headless boards: ``/`` is a page with an ``<img>``, ``/stream.mjpg``
streams the annotated frames as ``multipart/x-mixed-replace``, ``/frame.jpg`` is the latest one.

Binds 127.0.0.1 unless an address is given (a camera feed is private). With a token, every
request must carry it as ``?token=T``, ``X-Edgepose-Token: T`` or ``Authorization: Bearer T``;
others get 403 (compared in constant time).

Under abuse the pipeline never waits for a client: :meth:`FrameHub.publish` only swaps the
latest JPEG, and every client thread sends the newest frame when it is ready for one, so a slow
client skips frames (counted per client) instead of queueing them. A client that sends nothing
or reads nothing for ``client_timeout`` seconds is dropped; at most ``max_clients`` connections
are served at once (503 beyond); a request line over 8 KB gets 414, headers over 16 KB 431, a
request body 413, other methods than GET 405, unknown paths 404.
"""
from __future__ import annotations

import hashlib
import hmac
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional, Tuple
from urllib.parse import parse_qs, quote, urlsplit

import cv2
import numpy as np

BOUNDARY = "edgeposeframe"
MAX_REQUEST_LINE = 8192
MAX_HEADER_BYTES = 16384


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
        self.sent = 0  # frames sent to stream clients, all together
        self.dropped = 0  # frames a stream client skipped because it was not ready for them
        self._count_lock = threading.Lock()

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

    @property
    def seq(self) -> int:
        """Frames published so far."""
        return self._seq

    def count(self, sent: int, dropped: int) -> None:
        """A stream client sent ``sent`` frames and skipped ``dropped`` published ones."""
        with self._count_lock:
            self.sent += sent
            self.dropped += dropped

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


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).digest()


def make_handler(hub: FrameHub, token: Optional[str], client_timeout: float = 10.0):
    want = _digest(token) if token else b""

    class Handler(BaseHTTPRequestHandler):
        server_version = "edgepose"
        timeout = client_timeout  # socket timeout: an idle or non-reading client is dropped

        def log_message(self, *args) -> None:  # keep stderr for the status line
            pass

        def _reject(self, code: int, why: str) -> bool:
            self.requestline, self.request_version, self.command = "", "HTTP/1.0", "GET"
            self.close_connection = True
            self.send_error(code, why)
            return False

        def parse_request(self) -> bool:
            if len(self.raw_requestline) > MAX_REQUEST_LINE:
                return self._reject(414, "request line too long")
            words = self.raw_requestline.split()
            if len(words) != 3 or not words[2].startswith(b"HTTP/1."):  # no HTTP/0.9: its replies have no status
                return self._reject(400, "malformed request line")
            if not super().parse_request():
                return False
            if sum(len(k) + len(v) + 4 for k, v in self.headers.items()) > MAX_HEADER_BYTES:
                self.close_connection = True
                self.send_error(431, "request headers too large")
                return False
            length = self.headers.get("Content-Length", "0").strip() or "0"
            if self.headers.get("Transfer-Encoding") or not length.isdigit() or int(length) > 0:
                self.close_connection = True
                self.send_error(413, "request bodies are not accepted")
                return False
            return True

        def _refuse_method(self) -> None:
            self.close_connection = True
            self.send_response(405)
            self.send_header("Allow", "GET")
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _refuse_method  # noqa: N815

        def _authorised(self, query: dict) -> bool:
            if not token:
                return True
            given = (query.get("token") or [""])[0] or self.headers.get("X-Edgepose-Token", "")
            auth = self.headers.get("Authorization", "")
            if not given and auth.lower().startswith("bearer "):
                given = auth[7:].strip()
            # digests first: equal lengths, so the comparison time says nothing about the token
            return hmac.compare_digest(_digest(given), want)

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
                    hub.count(1, new - seq - 1 if seq else 0)  # skipped: published while this client was busy
                    seq = new
                    self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                                     .encode() + jpeg + b"\r\n")
                    self.wfile.flush()
            except OSError:  # the client went away (broken pipe, reset, abort) or stopped reading (timeout)
                self.close_connection = True
            finally:
                if seq:
                    hub.count(0, max(hub.seq - seq, 0))  # published after its last frame: never sent

    return Handler


class _Server(ThreadingHTTPServer):
    """One thread per connection, at most ``max_clients`` at once (503 and close beyond)."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address, handler, max_clients: int) -> None:
        self.max_clients = int(max_clients)
        self.active = 0
        self.refused = 0
        self._lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request, client_address) -> None:
        with self._lock:
            full = self.active >= self.max_clients
            if not full:
                self.active += 1
        if full:
            self.refused += 1
            try:
                request.settimeout(1.0)
                request.sendall(b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
                                b"Content-Length: 17\r\nRetry-After: 5\r\n\r\ntoo many clients\n")
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._lock:
                self.active -= 1


class PreviewServer:
    """Background HTTP server over a :class:`FrameHub`.

    Args:
        address: ``[HOST:]PORT``; the host defaults to 127.0.0.1; port 0 picks a free one.
        token: required on every request when set.
        client_timeout: seconds a client may send or read nothing before it is dropped.
        max_clients: connections served at once; more get 503.
    """

    def __init__(self, address: str = ":8080", token: Optional[str] = None, quality: int = 80,
                 client_timeout: float = 10.0, max_clients: int = 128) -> None:
        self.host, port = parse_address(address)
        self.token = token or None
        self.hub = FrameHub(quality)
        try:
            self.httpd = _Server((self.host, port), make_handler(self.hub, self.token, client_timeout), max_clients)
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
