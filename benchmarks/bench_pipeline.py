"""Per-frame latency of the runtime by stage, 1 and 4 persons, native kernels vs NumPy twins.

    .venv/bin/python benchmarks/bench_pipeline.py [--layers 18] [--frames 20]
    .venv/bin/python -m pytest -q benchmarks/bench_pipeline.py      (pytest-benchmark)

Stages: capture (JPEG-decode the next 1280x720 frame of the PoseTrack clip), boxes (detector
stand-in: fixed boxes with scores), warp, infer (onnxruntime CPU, PoseResNet-18 untrained,
dynamic batch), decode, nms (rescoring + OKS NMS), track (PoseTracker), draw (overlay).
Prints the median ms of each stage, the CPU work outside inference per person, and the
NumPy / native ratio. Aim: CPU work outside inference <= 1 ms per person and < 10% of the
PoseResNet-18 inference time.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import edgepose  # noqa: E402
from edgepose.boxes import BoxSource  # noqa: E402
from host_tools.demo import export_untrained_onnx  # noqa: E402
from edgepose.draw import draw_poses  # noqa: E402
from edgepose.estimator import PoseEstimator  # noqa: E402
from edgepose.tracking import PoseTracker  # noqa: E402

from _data import DATA  # noqa: E402  (third-party sample data, read in place)
CLIP = DATA / "posetrack_mini" / "videos" / "000001_mpiinew_test" / "000001_mpiinew_test.mp4"
BOXES = np.array([[380, 240, 200, 430, 0.95], [640, 280, 260, 260, 0.9], [100, 200, 150, 380, 0.8],
                  [900, 150, 160, 400, 0.7]])
STAGES = ("capture", "boxes", "warp", "infer", "decode", "nms", "track", "draw")


class Clip:
    """The clip's frames as JPEG bytes; ``read`` decodes the next one (what a USB camera in
    MJPEG mode costs), looping, so capture time does not include reopening the file."""

    def __init__(self, path: Path) -> None:
        cap = cv2.VideoCapture(str(path))
        self.jpegs = []
        while True:
            ok, f = cap.read()
            if not ok:
                break
            self.jpegs.append(cv2.imencode(".jpg", f)[1])
        cap.release()
        assert self.jpegs, f"cannot read {path}"
        self.i = 0

    def read(self) -> np.ndarray:
        f = cv2.imdecode(self.jpegs[self.i % len(self.jpegs)], cv2.IMREAD_COLOR)
        self.i += 1
        return f


def run_frames(est: PoseEstimator, persons: int, frames: int) -> Dict[str, List[float]]:
    """Time ``frames`` frames through every stage; returns ms lists per stage."""
    clip = Clip(CLIP)
    src = BoxSource(detector=lambda f: BOXES[:persons])
    tracker = PoseTracker(est.sigmas)
    skel = est.keypoint_set.skeleton if est.keypoint_set else ()
    out: Dict[str, List[float]] = {s: [] for s in STAGES}
    for i in range(frames + 2):  # 2 warm-up frames
        t0 = time.perf_counter()
        frame = clip.read()
        t1 = time.perf_counter()
        boxes = src(frame, i)
        t2 = time.perf_counter()
        poses = est(frame, boxes)
        t3 = time.perf_counter()
        tracker.update(poses, i)
        t4 = time.perf_counter()
        draw_poses(frame, poses, skel, thr=-1)
        t5 = time.perf_counter()
        if i < 2:
            continue
        for k, v in (("capture", t1 - t0), ("boxes", t2 - t1), ("track", t4 - t3), ("draw", t5 - t4)):
            out[k].append(v * 1e3)
        for k, v in est.last_timings.items():
            out[k].append(v)
    return out


def summarise(times: Dict[str, List[float]]) -> Dict[str, float]:
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=18, help="PoseResNet depth (0: tiny test net)")
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0, help="onnxruntime threads")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        model = export_untrained_onnx(Path(d) / "m.onnx", layers=args.layers)
        est = PoseEstimator(model, threads=args.threads)
        rows = {}
        for impl in ("auto", "numpy"):
            edgepose.set_implementation(impl)
            name = edgepose.implementation()
            for n in (1, 4):
                rows[(name, n)] = summarise(run_frames(est, n, args.frames))
        edgepose.set_implementation("auto")
    print(f"median ms per frame, PoseResNet-{args.layers} untrained, onnxruntime CPU, 1280x720 frames, "
          f"{args.frames} frames each")
    cpu_stages = [s for s in STAGES if s not in ("infer", "capture", "draw")]
    print(f"{'kernels':8} {'persons':>7} " + " ".join(f"{s:>8}" for s in STAGES)
          + f" {'cpu/pers':>9} {'+draw':>7} {'cpu/infer':>9}")
    for (name, n), r in rows.items():
        cpu = sum(r[s] for s in cpu_stages)
        print(f"{name:8} {n:>7} " + " ".join(f"{r[s]:8.3f}" for s in STAGES)
              + f" {cpu / n:9.3f} {(cpu + r['draw']) / n:7.3f} {cpu / r['infer']:8.1%}")
    if ("native", 1) in rows:
        for n in (1, 4):
            a, b = rows[("native", n)], rows[("numpy", n)]
            ratio = {s: b[s] / a[s] for s in ("warp", "decode", "nms") if a[s] > 0}
            print(f"numpy / native, {n} person(s): " + ", ".join(f"{s} x{v:.1f}" for s, v in ratio.items()))
    print("cpu/pers: boxes+warp+decode+nms+track per person; +draw: with the overlay (only for --out/--serve); "
          "cpu/infer: cpu/pers x persons / infer. Capture (the JPEG decode) is excluded.")
    return 0


# ---------------------------------------------------------------- pytest-benchmark entry points

def _bench_setup(tmp_path, layers=0):
    return PoseEstimator(export_untrained_onnx(tmp_path / "m.onnx", layers=layers))


def _one_frame(est, frame, persons, tracker):
    p = est(frame, BOXES[:persons])
    tracker.update(p)
    return p


def test_pipeline_cpu_stages(benchmark, tmp_path):
    """Whole frame (4 persons) with the tiny net, so the CPU stages dominate."""
    est = _bench_setup(tmp_path)
    frame = Clip(CLIP).read()
    tracker = PoseTracker(est.sigmas)
    p = benchmark(_one_frame, est, frame, 4, tracker)
    assert len(p) >= 1


if __name__ == "__main__":
    sys.exit(main())
