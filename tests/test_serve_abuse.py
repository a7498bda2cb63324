"""The preview server under abuse, on 127.0.0.1 with bounded loops: many stream clients,
clients that never read, malformed and oversized requests, wrong tokens, abandoned sockets.
The pipeline side (publish) must never wait for a client."""
from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest

from edgepose.serve import BOUNDARY, PreviewServer

TOKEN = "s3cret"


@pytest.fixture
def server():
    srv = PreviewServer(":0", token=TOKEN, client_timeout=1.0, max_clients=80).start()
    yield srv
    srv.close()


def _raw(port: int, data: bytes, read: int = 4096) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        out = b""
        try:
            while len(out) < read:
                chunk = s.recv(read)
                if not chunk:
                    break
                out += chunk
        except socket.timeout:
            pass
    return out


def _status(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1])


def _wait_for(cond, limit_s: float = 10.0) -> bool:
    t_end = time.monotonic() + limit_s
    while time.monotonic() < t_end:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def _publisher(srv, stop: threading.Event, size=(48, 64), counter=None):
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (*size, 3), np.uint8)  # noise: large JPEGs that fill socket buffers
    while not stop.is_set():
        srv.publish(noise)
        if counter is not None:
            counter[0] += 1
        time.sleep(0.01)


def test_fifty_stream_clients_all_get_frames(server):
    stop = threading.Event()
    threading.Thread(target=_publisher, args=(server, stop), daemon=True).start()
    got = [0] * 50
    marker = b"--" + BOUNDARY.encode()

    def client(i):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(f"GET /stream.mjpg?token={TOKEN} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            data = b""
            while data.count(marker) < 3:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            got[i] = data.count(marker)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(50)]
    [t.start() for t in threads]
    [t.join(30) for t in threads]
    stop.set()
    assert all(n >= 3 for n in got), got
    assert server.hub.sent >= 150


def test_clients_that_never_read_do_not_block_publish_and_are_dropped(server):
    socks = []
    for _ in range(10):
        s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(f"GET /stream.mjpg HTTP/1.1\r\nX-Edgepose-Token: {TOKEN}\r\n\r\n".encode())
        socks.append(s)
    assert _wait_for(lambda: server.httpd.active == 10)
    stop, n = threading.Event(), [0]
    t = threading.Thread(target=_publisher, args=(server, stop, (480, 640), n), daemon=True)
    t.start()
    # publish keeps going (a blocked publish would stall n) while every client thread is stuck
    # in a send to a full socket; those threads are dropped after client_timeout (1 s)
    assert _wait_for(lambda: n[0] >= 100)
    assert _wait_for(lambda: server.httpd.active == 0), server.httpd.active
    stop.set()
    t.join()
    assert server.hub.dropped > 0  # the frames they could not take were skipped, not queued
    for s in socks:
        s.close()


@pytest.mark.parametrize("request_bytes, code", [
    (b"\x00\x01\x02 garbage\r\n\r\n", 400),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\n" + b"".join(b"X-Pad-%d: %s\r\n" % (i, b"p" * 1000) for i in range(20)) + b"\r\n", 431),
    (b"GET /?token=s3cret HTTP/1.1\r\nContent-Length: 100000000\r\n\r\n", 413),
    (b"GET /?token=s3cret HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 413),
    (b"POST /?token=s3cret HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 405),
    (b"DELETE /stream.mjpg HTTP/1.1\r\n\r\n", 405),
    (b"GET /nope?token=s3cret HTTP/1.1\r\n\r\n", 404),
    (b"GET /../../etc/passwd?token=s3cret HTTP/1.1\r\n\r\n", 404),
    (b"GET /?token=s3creT HTTP/1.1\r\n\r\n", 403),
    (b"GET /?token= HTTP/1.1\r\n\r\n", 403),
    (b"GET /frame.jpg HTTP/1.1\r\nX-Edgepose-Token: s3cret-and-more\r\n\r\n", 403),
    (b"GET /frame.jpg HTTP/1.1\r\nAuthorization: Bearer nope\r\n\r\n", 403),
    (b"GET /?token=%ff%fe HTTP/1.1\r\n\r\n", 403),
])
def test_bad_requests_get_clean_answers(server, request_bytes, code):
    reply = _raw(server.port, request_bytes)
    assert reply.startswith(b"HTTP/1."), reply[:80]
    assert _status(reply) == code, reply[:200]


def test_abandoned_and_idle_connections_are_reclaimed(server):
    for _ in range(100):  # opened and closed at once
        socket.create_connection(("127.0.0.1", server.port), timeout=5).close()
    idle = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(30)]  # never send
    half = []
    for _ in range(10):  # half a request line, then silence
        s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        s.sendall(b"GET /frame.jpg HT")
        half.append(s)
    server.publish(np.zeros((8, 8, 3), np.uint8))
    # the server still answers a real client while they hang around
    reply = _raw(server.port, f"GET /frame.jpg?token={TOKEN} HTTP/1.0\r\n\r\n".encode(), read=1 << 20)
    assert _status(reply) == 200 and b"\r\n\r\n\xff\xd8" in reply
    assert _wait_for(lambda: server.httpd.active == 0), server.httpd.active  # all timed out (1 s)
    for s in idle + half:
        s.close()


def test_connections_beyond_the_limit_get_503():
    with PreviewServer(":0", max_clients=3, client_timeout=2.0) as srv:
        held = [socket.create_connection(("127.0.0.1", srv.port), timeout=5) for _ in range(3)]
        assert _wait_for(lambda: srv.httpd.active == 3)
        reply = _raw(srv.port, b"GET / HTTP/1.0\r\n\r\n")
        assert _status(reply) == 503 and srv.httpd.refused == 1
        for s in held:
            s.close()
        assert _wait_for(lambda: srv.httpd.active == 0)
        assert _status(_raw(srv.port, b"GET / HTTP/1.0\r\n\r\n")) == 200
