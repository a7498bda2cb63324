"""How far each `warp_crops` rounding is from the installed OpenCV's warpAffine.

Prints, for three families of crops, the largest difference in grey levels and the share of
differing values for ``rounding="fixed"`` and ``rounding="float"``. Expected: one of the two
is 0 everywhere (fixed with OpenCV 4.x, float with 5.x, except rarely 1 in the scalar-tail
columns, see docs/KERNELS.md). Runs in a few seconds:

    .venv/bin/python benchmarks/warp_vs_opencv.py
    PYTHONPATH=/path/to/opencv5-site-packages:. python3 benchmarks/warp_vs_opencv.py
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterable, List, Tuple

import numpy as np

try:
    import cv2
except ImportError:  # pragma: no cover - a usage error, not a test
    sys.exit("warp_vs_opencv: OpenCV (cv2) is not importable; install opencv-python-headless or set PYTHONPATH")

import edgepose
from edgepose.geometry import crop_matrices

from _data import DATA  # noqa: E402  (third-party sample data, read in place)
FRAMES = DATA / "coco_mini"
Case = Tuple[np.ndarray, np.ndarray, int, int]


def _cv2_warp(frame: np.ndarray, m: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    return cv2.warpAffine(np.ascontiguousarray(frame), m, (out_w, out_h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def report(label: str, cases: Iterable[Case]) -> None:
    """Print max |diff| and the share of differing uint8 values per rounding."""
    stats = {r: [0, 0, 0] for r in ("fixed", "float")}
    for frame, m, out_w, out_h in cases:
        ref = _cv2_warp(frame, m, out_w, out_h).astype(np.int16)
        for r, st in stats.items():
            got = edgepose.warp_crops(frame, m[None], (out_w, out_h), layout="nhwc", rounding=r)[0]
            d = np.abs(got.astype(np.int16) - ref)
            st[0] = max(st[0], int(d.max()))
            st[1] += int((d > 0).sum())
            st[2] += d.size
    for r, (mx, nd, tot) in stats.items():
        print(f"{label}: {r}: max diff {mx}, differing {nd}/{tot} = {nd / tot:.2e}")


def _boxes(rng: np.random.Generator, w: int, h: int, n: int) -> np.ndarray:
    return np.stack([rng.uniform(-0.3 * w, w, n), rng.uniform(-0.3 * h, h, n),
                     rng.uniform(10, w, n), rng.uniform(10, h, n)], 1)


def main() -> None:
    print(f"cv2 {cv2.__version__}, numpy {np.__version__}, edgepose {edgepose.implementation()}")
    frames = [cv2.imread(str(p)) for p in sorted(FRAMES.glob("*.jpg"))]
    if not frames or any(f is None for f in frames):
        sys.exit(f"warp_vs_opencv: no readable frames in {FRAMES}")
    rng = np.random.default_rng(123)
    cases: List[Case] = []
    for f in frames:
        rot = rng.uniform(-60, 60, 10)
        rot[:4] = 0
        cases += [(f, m, 192, 256) for m in crop_matrices(_boxes(rng, f.shape[1], f.shape[0], 10), (192, 256), rot=rot)[2]]
    report("COCO frames, 192x256, 40% unrotated", cases)
    cases = []
    for f in frames:
        mats = crop_matrices(_boxes(rng, f.shape[1], f.shape[0], 10), (197, 131), rot=rng.uniform(-90, 90, 10))[2]
        cases += [(f, m, 197, 131) for m in mats]
    report("COCO frames, 197x131 (scalar-tail columns), rotated", cases)
    cases = []
    while len(cases) < 3000:
        a, b, c, d = rng.uniform(-3, 3, 4)
        if abs(a * d - b * c) < 1e-3:
            continue
        fw, fh = rng.integers(1, 61, 2)
        ow, oh = rng.integers(1, 41, 2)
        f = rng.integers(0, 256, (fh, fw, 3), dtype=np.uint8)
        cases.append((f, np.array([[a, b, rng.uniform(-300, 300)], [c, d, rng.uniform(-300, 300)]]), int(ow), int(oh)))
    report("3000 random affines on 1..60 px noise frames, 1..40 px crops", cases)


if __name__ == "__main__":
    main()
