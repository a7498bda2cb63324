"""Pipeline frames per second and memory while the preview server is abused (127.0.0.1 only).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/abuse_serve.py [--frames 300] [--clients 50]

Runs ``edgepose run --video $EDGEPOSE_TEST_DATA/video/arm_wrestling.mp4 --loop --serve 127.0.0.1:0
--max-frames N`` (PoseResNet-18, untrained weights, onnxruntime CPU) three times:

1. ``quiet``: nobody connected;
2. ``readers``: ``--clients`` MJPEG clients reading the stream as fast as they can;
3. ``abuse``: the same readers, plus 20 clients that never read, and a loop of malformed,
   oversized, wrong-token and unknown-path requests and connections opened and abandoned.

For each: the run's own fps (its summary line), the child's peak and last RSS and threads
(psutil, every 0.5 s), the frames the readers received, and the answers to the bad requests.
The clients run in this process, on the same CPUs as the pipeline (as on a board serving its
own preview), so the readers' CPU cost is part of what is measured.
"""
from __future__ import annotations

import argparse
import re
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
from _data import DATA  # noqa: E402  (third-party sample data, read in place)
CLIP = DATA / "video" / "arm_wrestling.mp4"
MARK = b"--edgeposeframe"
BAD = [b"\x00\x01 junk\r\n\r\n", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n",
       b"GET / HTTP/1.1\r\n" + b"X-Pad: " + b"p" * 20000 + b"\r\n\r\n",
       b"GET / HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n", b"POST / HTTP/1.1\r\n\r\n",
       b"GET /nope HTTP/1.1\r\n\r\n", b"GET /?token=wrong HTTP/1.1\r\n\r\n",
       b"GET /frame.jpg HTTP/1.1\r\nX-Edgepose-Token: wrong\r\n\r\n"]


def _reader(port: int, stop: threading.Event, frames: list, i: int) -> None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"GET /stream.mjpg?token=bench HTTP/1.1\r\nHost: x\r\n\r\n")
            tail = b""
            while not stop.is_set():
                data = s.recv(65536)
                if not data:
                    break
                chunk = tail + data
                frames[i] += chunk.count(MARK)
                tail = chunk[-len(MARK):]
    except OSError:
        pass


def _non_reader(port: int, stop: threading.Event) -> None:
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(b"GET /stream.mjpg?token=bench HTTP/1.1\r\n\r\n")
        stop.wait()
        s.close()
    except OSError:
        pass


def _storm(port: int, stop: threading.Event, answers: Counter) -> None:
    k = 0
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                if k % 3 == 2:
                    pass  # opened and abandoned
                else:
                    s.sendall(BAD[k % len(BAD)])
                    reply = s.recv(64)
                    answers[reply.split(b" ", 2)[1].decode() if reply.startswith(b"HTTP/") else "no reply"] += 1
        except OSError as exc:
            answers[type(exc).__name__] += 1
        k += 1
        time.sleep(0.005)


def run_phase(name: str, model: Path, frames: int, clients: int, abuse: bool) -> dict:
    cmd = [sys.executable, "-m", "edgepose", "run", "--video", str(CLIP), "--model", str(model), "--loop",
           "--serve", "127.0.0.1:0", "--token", "bench", "--max-frames", str(frames)]
    child = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=ROOT)
    first = child.stderr.readline()
    m = re.search(r"http://[\d.]+:(\d+)/", first)
    if not m:
        child.kill()
        raise SystemExit(f"abuse_serve: no preview URL from the run: {first.strip()}")
    port = int(m.group(1))
    lines: list = []
    threading.Thread(target=lambda: lines.extend(child.stderr), daemon=True).start()
    stop = threading.Event()
    got = [0] * clients
    answers: Counter = Counter()
    threads = [threading.Thread(target=_reader, args=(port, stop, got, i), daemon=True) for i in range(clients)]
    if abuse:
        threads += [threading.Thread(target=_non_reader, args=(port, stop), daemon=True) for _ in range(20)]
        threads.append(threading.Thread(target=_storm, args=(port, stop, answers), daemon=True))
    for t in threads:
        t.start()
    proc = psutil.Process(child.pid)
    rss, thr = [], []
    while child.poll() is None:
        try:
            rss.append(proc.memory_info().rss / 2**20)
            thr.append(proc.num_threads())
        except psutil.Error:
            break
        time.sleep(0.5)
    stop.set()
    child.wait()
    text = "".join(lines)
    fps = re.search(r"(\d+) frames in [\d.]+ s \(([\d.]+) fps\)", text)
    res = {"phase": name, "fps": float(fps.group(2)) if fps else float("nan"),
           "peak_rss_mb": round(max(rss), 1) if rss else 0.0, "last_rss_mb": round(rss[-1], 1) if rss else 0.0,
           "peak_threads": max(thr) if thr else 0, "reader_frames_min": min(got) if got else 0,
           "reader_frames_mean": round(sum(got) / len(got), 1) if got else 0, "answers": dict(answers),
           "exit": child.returncode}
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--model", help=".onnx (default: build the untrained PoseResNet-18 demo model in /tmp)")
    args = ap.parse_args()
    model = Path(args.model) if args.model else Path("/tmp/edgepose-abuse/pose_resnet_18_untrained.onnx")
    if not model.is_file():
        sys.path.insert(0, str(ROOT))
        from host_tools.demo import export_untrained_onnx

        export_untrained_onnx(model, layers=18)
    rows = [run_phase("quiet", model, args.frames, 0, False),
            run_phase("readers", model, args.frames, args.clients, False),
            run_phase("abuse", model, args.frames, args.clients, True)]
    base = rows[0]["fps"]
    print(f"{'phase':8} {'fps':>6} {'vs quiet':>8} {'peak RSS MB':>11} {'last RSS MB':>11} {'threads':>7} "
          f"{'frames/reader min/mean':>22}  bad-request answers")
    for r in rows:
        print(f"{r['phase']:8} {r['fps']:6.1f} {r['fps'] / base:8.2f} {r['peak_rss_mb']:11.1f} {r['last_rss_mb']:11.1f} "
              f"{r['peak_threads']:7d} {r['reader_frames_min']:>10} / {r['reader_frames_mean']:<9}  {r['answers']}"
              + ("" if r["exit"] == 0 else f"  EXIT {r['exit']}"))
    return 0 if all(r["exit"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
