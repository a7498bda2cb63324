"""The split-head decodes (what ``host_tools build-rknn`` makes of single-output YOLO exports)
against the single-output decode of the same head and against their NumPy twins, decode only
(the NMS after it is the same for all). Run: ``pytest benchmarks/bench_detect_split.py`` (ratio
table at the end; ``x`` = times slower than the native split decode).

* YOLOX at 416x416 (3549 anchors, 80 classes): split = per stride box (1, 4, h, w), objectness
  (1, 1, h, w), classes (1, 80, h, w) (``decode_yolox_split``); single = (1, 3549, 85)
  (``decode_yolox``, NumPy: it has no native kernel);
* Ultralytics at 640x640 (8400 anchors, 80 classes): split = per stride DFL box (1, 64, h, w)
  and classes (1, 80, h, w) (``decode_dfl``, the model zoo layout); single = (1, 84, 8400)
  (``decode_anchor_free``, native).

float32 (RKNNLite's default) or int8 with per-output scale / zero point; sparse = 3 persons of
12 neighbouring anchors each above the threshold, dense = 20 % of the anchors. Threshold 0.25.
"""
from __future__ import annotations

import importlib

import numpy as np
import pytest

import edgepose
from bench_detect import plant_persons

yolo = importlib.import_module("edgepose.yolo")

if not edgepose.native_available():  # pragma: no cover
    pytest.skip("edgepose._native is not built: nothing to compare", allow_module_level=True)

STRIDES = (8, 16, 32)
THR = 0.25
PROB_Q = (1 / 255, -128)
BOX_Q = {"yolox": (0.03, -20), "ultralytics": (0.11, -30)}
SIZE = {"yolox": 416, "ultralytics": 640}


def _q(a, q):
    return np.clip(np.rint(a / q[0]) + q[1], -128, 127).astype(np.int8)


def heads(family: str, dense: bool, int8: bool, nc: int = 80, seed: int = 0):
    """``(split outputs, their quant, single output, its quant)`` holding the same values."""
    rng = np.random.default_rng(seed)
    size = SIZE[family]
    split, sq = [], []
    for s in STRIDES:
        g = size // s
        prob = rng.uniform(0, 0.02, (1, nc, g, g))
        obj = rng.uniform(0.9, 1.0, (1, 1, g, g)) if family == "yolox" else None
        plant_persons(rng, prob, dense, s)
        if family == "yolox":
            box = np.concatenate([rng.uniform(0, 1, (1, 2, g, g)), rng.normal(1, 0.5, (1, 2, g, g))], 1)
            parts = [box, obj, prob]
            qs = [BOX_Q[family], PROB_Q, PROB_Q]
        else:
            parts = [rng.normal(0, 3, (1, 64, g, g)), prob]
            qs = [BOX_Q[family], PROB_Q]
        if int8:
            parts = [_q(p, q) for p, q in zip(parts, qs)]
        else:
            parts = [p.astype(np.float32) for p in parts]
        split += parts
        sq += qs
    # the single output: YOLOX (1, A, 85) raw head; Ultralytics (1, 84, A) decoded boxes + probs
    if family == "yolox":
        f = [np.concatenate([yolo._values(p, *q) if int8 else p.astype(np.float64) for p, q in
                             zip(split[i:i + 3], sq[i:i + 3])], 1).reshape(1, 85, -1) for i in range(0, 9, 3)]
        single = np.concatenate(f, 2).transpose(0, 2, 1)
        single_q = (0.03, -20)
    else:
        rows = []
        for li, s in enumerate(STRIDES):
            box, prob = split[2 * li], split[2 * li + 1]
            g = box.shape[2]
            lg = yolo._values(box, *sq[2 * li]) if int8 else box.astype(np.float64)
            d = yolo.dfl_expectation(lg[0].reshape(4, 16, -1).transpose(2, 0, 1), None)  # (g*g, 4)
            ys, xs = np.mgrid[0:g, 0:g]
            ax, ay = xs.reshape(-1) + 0.5, ys.reshape(-1) + 0.5
            x0, y0, x1, y1 = ax - d[:, 0], ay - d[:, 1], ax + d[:, 2], ay + d[:, 3]
            pr = yolo._values(prob, *sq[2 * li + 1]) if int8 else prob.astype(np.float64)
            rows.append(np.concatenate([np.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0]) * s,
                                        pr[0].reshape(nc, -1)], 0))
        single = np.concatenate(rows, 1)[None]
        single_q = (700 / 255, -128)
    single = _q(single, single_q) if int8 else single.astype(np.float32)
    return split, sq, np.ascontiguousarray(single), single_q


def split_decode(family, outs, q):
    if q is None:
        q = [None] * len(outs)
    if family == "yolox":
        return yolo.decode_yolox_split(outs[0::3], outs[1::3], outs[2::3], STRIDES, THR, 0, q[0::3], q[1::3], q[2::3])
    return yolo.decode_dfl(outs[0::2], outs[1::2], STRIDES, THR, 0, q[0::2], q[1::2])


def single_decode(family, out, q):
    if family == "yolox":
        return yolo.decode_yolox(out, (416, 416), THR, 0, STRIDES, q)
    return yolo.decode_anchor_free(out, THR, 0, q)


IMPLS = ["native", "numpy twin", "single-output decode"]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dense", [False, True], ids=["sparse", "dense"])
@pytest.mark.parametrize("int8", [False, True], ids=["float32", "int8"])
@pytest.mark.parametrize("family", ["yolox", "ultralytics"])
def test_split_decode(measure, impl, dense, int8, family):
    outs, q, single, sq = heads(family, dense, int8)
    qs = q if int8 else None
    group = (f"split-head decode, {family} {SIZE[family]}x{SIZE[family]} 80 classes, "
             f"{'int8' if int8 else 'float32'}, {'dense' if dense else 'sparse'}")

    def twin():
        edgepose.set_implementation("numpy")
        try:
            return split_decode(family, outs, qs)
        finally:
            edgepose.set_implementation("native")

    edgepose.set_implementation("native")
    fn = {"native": lambda: split_decode(family, outs, qs), "numpy twin": twin,
          "single-output decode": lambda: single_decode(family, single, sq if int8 else None)}[impl]
    b, s = measure(group, impl, fn)
    ref_b, ref_s = split_decode(family, outs, qs)
    if impl == "numpy twin":
        np.testing.assert_array_equal(s, ref_s)
        np.testing.assert_array_equal(b, ref_b)
    elif impl == "single-output decode" and not int8:  # the same persons (int8 single: one coarse scale)
        assert len(s) == len(ref_s)
    edgepose.set_implementation("auto")
