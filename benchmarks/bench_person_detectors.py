"""The two person detectors a user without trained weights of their own can run on a PC:
``--detector hog`` (OpenCV's HOG people detector, where OpenCV has it) and the YOLOX-Nano ONNX
(onnxruntime, CPU), timed per frame on the same photos in one process, in alternation, with
the ratio HOG / YOLOX-Nano. Both on one thread (the onnxruntime session and OpenCV).

Run: ``pytest benchmarks/bench_person_detectors.py`` (needs the shared data and models, see
tests/conftest.py: EDGEPOSE_TEST_DATA / EDGEPOSE_TEST_MODELS; skips with one line without them).
"""
from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import cv2
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _shared(var: str, sub: str) -> Path:
    env = os.environ.get(var)
    return Path(env).resolve() if env else (ROOT.parent / "shared" / sub).resolve()


DATA = _shared("EDGEPOSE_TEST_DATA", "data")
MODELS = _shared("EDGEPOSE_TEST_MODELS", "models")
PHOTOS = [DATA / "coco_mini" / "000000040083.jpg", DATA / "coco_mini" / "000000196141.jpg",
          DATA / "posetrack_mini" / "images" / "val" / "012834_mpii_test" / "000000.jpg",
          DATA / "mpii_mini" / "004645041.jpg"]
ROWS = []


def _lines():
    out = [f"OpenCV {cv2.__version__} on {cv2.getNumThreads()} thread(s); onnxruntime on 1 thread; "
           "median per frame, timed in alternation in one process",
           f"{'photo':<40s}{'size':>11s}{'HOG':>10s}{'YOLOX-Nano':>12s}{'HOG / YOLOX-Nano':>18s}"]
    for name, size, hog, yolo, ratio in ROWS:
        out.append(f"{name:<40s}{size:>11s}{hog * 1e3:8.1f}ms{yolo * 1e3:10.1f}ms{ratio:17.1f}x")
    return out


@pytest.mark.parametrize("photo", PHOTOS, ids=lambda p: p.parent.name + "/" + p.name)
def test_hog_vs_yolox_nano(photo, report_table):
    model = MODELS / "yolox_nano.onnx"
    if not model.is_file() or not photo.is_file():
        pytest.skip(f"needs {model} and {photo} (set EDGEPOSE_TEST_MODELS / EDGEPOSE_TEST_DATA)")
    if not hasattr(cv2, "HOGDescriptor"):
        pytest.skip(f"OpenCV {cv2.__version__} has no HOGDescriptor (OpenCV 5): nothing to compare")
    from edgepose.detect import HogDetector, PersonDetector

    frame = cv2.imread(str(photo))
    hog, yolo = HogDetector(), PersonDetector(model, threads=1)
    hog(frame), yolo(frame)  # warm-up
    t_hog, t_yolo = [], []
    for _ in range(5):
        t0 = time.perf_counter()
        hog(frame)
        t1 = time.perf_counter()
        yolo(frame)
        t2 = time.perf_counter()
        t_hog.append(t1 - t0)
        t_yolo.append(t2 - t1)
    ratio = statistics.median(a / b for a, b in zip(t_hog, t_yolo))
    ROWS.append((f"{photo.parent.name}/{photo.name}", f"{frame.shape[1]}x{frame.shape[0]}",
                 statistics.median(t_hog), statistics.median(t_yolo), ratio))
    report_table("person detectors per frame: --detector hog vs YOLOX-Nano ONNX "
                 "(benchmarks/bench_person_detectors.py)", _lines)
