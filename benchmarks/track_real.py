"""Multi-person tracking on a real clip with real models: persons per frame, distinct ids, fps.

    python benchmarks/track_real.py --models ../shared/models --data ../shared/data [--frames N]

Runs ``edgepose.Pipeline`` (the path of ``edgepose run --video ... --detector ...``) on
``DATA/video/arm_wrestling.mp4`` with YOLOX-Nano (``MODELS/yolox_nano.onnx``) and, by default,
EfficientPose RT Lite (``MODELS/efficientpose_rt_lite_mpii.onnx``, its edgepose metadata
stamped into a temporary copy), or any edgepose model given with ``--pose``. For tracking on
and off it prints persons per frame (median, max), distinct ids and fps, with
``--detect-every 1`` and ``3`` and with ``--workers 2``; the tracker and the person threshold
at their defaults (``edgepose.tracking``). fps is wall time over the whole run, this
machine's CPU, onnxruntime.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

EFFICIENTPOSE = "efficientpose_rt_lite_mpii.onnx"
YOLOX_NANO = "yolox_nano.onnx"
CLIP = ("video", "arm_wrestling.mp4")
# a foreground wrestler's box covers a large part of the 340x256 frame: one centred in the left
# half is the left wrestler, one in the right half the right wrestler
BIG_AREA = 0.2


def wrestlers(poses, frame_shape) -> bool:
    """Whether both foreground wrestlers are among ``poses``: a box of at least ``BIG_AREA``
    of the frame centred in each half."""
    h, w = frame_shape[:2]
    b = poses.boxes
    big = b[:, 2] * b[:, 3] >= BIG_AREA * w * h
    cx = b[:, 0] + b[:, 2] / 2
    return bool(np.any(big & (cx < w / 2)) and np.any(big & (cx >= w / 2)))


def stamp_efficientpose(src: Path, out: Path) -> Path:
    """The EfficientPose ONNX with edgepose metadata, through ``host_tools import-onnx`` with the
    flags docs/IMPORT.md gives for it (224x224 RGB, x / 127.5 - 1, MPII)."""
    from host_tools.import_onnx import EFFICIENTPOSE_SPEC, import_onnx

    return import_onnx(src, out, EFFICIENTPOSE_SPEC, force=True, log=lambda line: None).path


def read_clip(path: Path, frames: int = 0) -> List[np.ndarray]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    out: List[np.ndarray] = []
    while not frames or len(out) < frames:
        ok, f = cap.read()
        if not ok:
            break
        out.append(f)
    cap.release()
    if not out:
        raise SystemExit(f"{path}: no frame could be read")
    return out


def measure(pose: Path, detector: Path, frames: List[np.ndarray], track: bool = True, detect_every: int = 1,
            workers: int = 1, **tracker_opts: Any) -> Dict[str, Any]:
    """One run of the pipeline over ``frames``: per-frame person counts, ids, fps."""
    from edgepose.detect import PersonDetector
    from edgepose.pipeline import Pipeline
    from edgepose.tracking import PoseTracker

    det = PersonDetector(detector)
    with Pipeline(pose, workers, det) as pipe:
        if track:
            pipe.tracker = PoseTracker(pipe.sigmas, detect_every=detect_every, **tracker_opts)
        t0 = time.perf_counter()
        results = [r for r in pipe.run(iter(frames))]
        dt = time.perf_counter() - t0
    counts = [len(r.poses) for r in results]
    both = [wrestlers(r.poses, frames[0].shape) for r in results]
    ids = {int(i) for r in results for i in r.poses.track_ids if i >= 0}
    med = statistics.median(counts)
    median_frames = [i for i, c in enumerate(counts) if c == med]
    return {"track": track, "detect_every": detect_every, "workers": workers, "frames": len(results),
            "median": med, "max": max(counts), "ids": len(ids), "fps": len(results) / dt, "counts": counts,
            "both": both, "median_frames": median_frames,
            "median_frames_with_both": sum(both[i] for i in median_frames),
            "errors": sum(r.error is not None for r in results), "poses": [r.poses for r in results]}


CONFIGS = [dict(track=True, detect_every=1, workers=1), dict(track=False, detect_every=1, workers=1),
           dict(track=True, detect_every=3, workers=1), dict(track=True, detect_every=1, workers=2),
           dict(track=False, detect_every=1, workers=2), dict(track=True, detect_every=3, workers=2)]


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=Path, required=True, help="folder with yolox_nano.onnx (and EfficientPose)")
    ap.add_argument("--data", type=Path, required=True, help="folder with video/arm_wrestling.mp4")
    ap.add_argument("--pose", type=Path, help="an edgepose pose model (default: EfficientPose from --models, stamped)")
    ap.add_argument("--frames", type=int, default=0, help="first N frames only (0: all)")
    args = ap.parse_args(argv)
    clip = args.data.joinpath(*CLIP)
    for p in (clip, args.models / YOLOX_NANO) + (() if args.pose else (args.models / EFFICIENTPOSE,)):
        if not p.is_file():
            print(f"track_real: {p}: not found (give --models / --data the shared folders)", file=sys.stderr)
            return 2
    frames = read_clip(clip, args.frames)
    with tempfile.TemporaryDirectory() as tmp:
        pose = args.pose or stamp_efficientpose(args.models / EFFICIENTPOSE, Path(tmp) / "efficientpose.onnx")
        print(f"{clip.name}: {len(frames)} frames, pose {pose.name}, detector {YOLOX_NANO}")
        print("| tracking | detect-every | workers | persons/frame median | max | distinct ids | frames with both "
              "wrestlers | median frames with both | fps |")
        print("|---|---|---|---|---|---|---|---|---|")
        for cfg in CONFIGS:
            r = measure(pose, args.models / YOLOX_NANO, frames, **cfg)
            print(f"| {'on' if r['track'] else 'off'} | {r['detect_every'] if r['track'] else 1} | {r['workers']} | "
                  f"{r['median']:g} | {r['max']} | {r['ids'] if r['track'] else '-'} | "
                  f"{sum(r['both'])} | {r['median_frames_with_both']}/{len(r['median_frames'])} | {r['fps']:.1f} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
