"""A long ``edgepose run --loop`` with the preview served and JSON lines written, sampled.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/long_run.py --frames 10000 --out-dir /tmp/longrun

Builds the demo model (PoseResNet-18, untrained weights) unless ``--model`` is given, starts
``edgepose run --video $EDGEPOSE_TEST_DATA/video/arm_wrestling.mp4 --loop --serve 127.0.0.1:0 --jsonl ...
--max-frames N`` as a child process, keeps one MJPEG client reading the stream, and every
``--every`` seconds samples the child's RSS (MB), open file descriptors, threads and the frames
written so far (JSON lines counted). Writes ``samples.csv`` into ``--out-dir`` and prints the
growth: RSS / fds / threads at the first sample after warm-up (10% of the frames) vs the last.
Not part of CI (a 10,000-frame run takes ~10 minutes).
"""
from __future__ import annotations

import argparse
import csv
import json
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
from _data import DATA  # noqa: E402  (third-party sample data, read in place)
CLIP = DATA / "video" / "arm_wrestling.mp4"


def _reader(host: str, port: int, stop: threading.Event, counter: dict) -> None:
    """One MJPEG client that reads the stream and counts bytes (reconnects if dropped)."""
    while not stop.is_set():
        try:
            with socket.create_connection((host, port), timeout=5) as s:
                s.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
                while not stop.is_set():
                    data = s.recv(65536)
                    if not data:
                        break
                    counter["bytes"] += len(data)
        except OSError:
            time.sleep(0.5)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=10000)
    ap.add_argument("--every", type=float, default=5.0, help="seconds between samples")
    ap.add_argument("--out-dir", default="/tmp/edgepose-longrun")
    ap.add_argument("--model", help=".onnx model (default: build the untrained PoseResNet-18 demo model)")
    ap.add_argument("--video", default=str(CLIP))
    args = ap.parse_args()
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = Path(args.model) if args.model else out / "pose_resnet_18_untrained.onnx"
    if not model.is_file():
        sys.path.insert(0, str(ROOT))
        from host_tools.demo import export_untrained_onnx

        export_untrained_onnx(model, layers=18)
    jsonl = out / "long_run.jsonl"
    cmd = [sys.executable, "-m", "edgepose", "run", "--video", args.video, "--model", str(model), "--loop",
           "--serve", "127.0.0.1:0", "--jsonl", str(jsonl), "--force", "--max-frames", str(args.frames)]
    print("$", " ".join(cmd), flush=True)
    err = open(out / "stderr.txt", "w")
    child = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=ROOT)
    url_line = child.stderr.readline()
    err.write(url_line)
    m = re.search(r"http://([\d.]+):(\d+)/", url_line)
    if not m:
        print("long_run: the run did not print its preview URL:", url_line.strip(), file=sys.stderr)
        child.kill()
        return 1
    # drain stderr in the background so the child never blocks on a full pipe
    threading.Thread(target=lambda: [err.write(line) for line in child.stderr], daemon=True).start()
    stop = threading.Event()
    counter = {"bytes": 0}
    threading.Thread(target=_reader, args=(m.group(1), int(m.group(2)), stop, counter), daemon=True).start()
    proc = psutil.Process(child.pid)
    rows = []
    t0 = time.monotonic()
    frames, pos = 0, 0
    with open(out / "samples.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["seconds", "frames", "rss_mb", "open_fds", "threads", "stream_mb"])
        while child.poll() is None:
            try:
                rss = proc.memory_info().rss / 2**20
                fds = proc.num_fds()
                thr = proc.num_threads()
            except psutil.Error:
                break
            if jsonl.is_file():
                with open(jsonl, "rb") as j:
                    j.seek(pos)
                    chunk = j.read()
                cut = chunk.rfind(b"\n") + 1
                frames += chunk[:cut].count(b"\n")
                pos += cut
            row = [round(time.monotonic() - t0, 1), frames, round(rss, 1), fds, thr, round(counter["bytes"] / 2**20, 1)]
            rows.append(row)
            w.writerow(row)
            f.flush()
            print("  t %6.1f s  frames %6d  rss %7.1f MB  fds %3d  threads %3d  stream %.1f MB" % tuple(row), flush=True)
            time.sleep(args.every)
    stop.set()
    rc = child.wait()
    err.close()
    n_lines = 0
    with open(jsonl, encoding="utf-8") as j:
        for line in j:
            json.loads(line)
            n_lines += 1
    print(f"exit {rc}; {n_lines} JSON lines, all valid; stream read {counter['bytes'] / 2**20:.1f} MB")
    warm = [r for r in rows if r[1] >= args.frames * 0.1] or rows
    if warm:
        a, b = warm[0], warm[-1]
        print(f"after warm-up (frame {a[1]}) -> last sample (frame {b[1]}): RSS {a[2]} -> {b[2]} MB "
              f"({b[2] - a[2]:+.1f}), fds {a[3]} -> {b[3]}, threads {a[4]} -> {b[4]}; "
              f"peak RSS {max(r[2] for r in rows)} MB")
    return rc


if __name__ == "__main__":
    sys.exit(main())
