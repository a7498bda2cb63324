"""Kernel 4 (person detector decode + IoU NMS): native == NumPy twin, both == an independent
reference written plainly below (textbook softmax / expectation on dequantized tensors, a
Python NMS loop), on random, planted and adversarial outputs."""
import importlib
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import edgepose

yolo = importlib.import_module("edgepose.yolo")
ROOT = Path(__file__).resolve().parents[1]
native = pytest.mark.skipif(not edgepose.native_available(), reason="edgepose._native not built")
IMPLS = ["numpy", pytest.param("native", marks=native)]
STRIDES = (8, 16, 32)
INT8_CLS = (1 / 255, -128)  # what RKNN gives sigmoid outputs in int8


@pytest.fixture(autouse=True)
def _auto_impl():
    edgepose.set_implementation("auto")
    yield
    edgepose.set_implementation("auto")


# ----------------------------------------------------------------------------- the reference

def ref_dequant(a, q):
    return a.astype(np.float64) if a.dtype == np.float32 else (a.astype(np.float64) - q[1]) * q[0]


def ref_decode_dfl(boxes, classes, strides, thr, class_id=0, box_quant=None, cls_quant=None, score_sum=None,
                   sum_quant=None):
    """Anchor by anchor: dequantize, test the class score, softmax each side, expectation."""
    n = len(boxes)
    box_quant = box_quant or [None] * n
    cls_quant = cls_quant or [None] * n
    sum_quant = sum_quant or [None] * n
    out_b, out_s = [], []
    for i in range(n):
        b = ref_dequant(boxes[i][0], box_quant[i])
        c = ref_dequant(classes[i][0, class_id], cls_quant[i])
        sm = None if score_sum is None else ref_dequant(score_sum[i][0, 0], sum_quant[i])
        reg = b.shape[0] // 4
        h, w = c.shape
        s = strides[i]
        for gy in range(h):
            for gx in range(w):
                score = np.float32(c[gy, gx])
                if not score >= np.float32(thr):
                    continue
                if sm is not None and not np.float32(sm[gy, gx]) >= np.float32(thr):
                    continue
                d = []
                for side in range(4):
                    x = b[side * reg:(side + 1) * reg, gy, gx]
                    p = np.exp(x - x.max())
                    p /= p.sum()
                    d.append(float(np.dot(np.arange(reg), p)))
                l, t, r, bb = d
                out_b.append([(gx + 0.5 - l) * s, (gy + 0.5 - t) * s, (gx + 0.5 + r) * s, (gy + 0.5 + bb) * s])
                out_s.append(score)
    return np.asarray(out_b, np.float64).reshape(-1, 4), np.asarray(out_s, np.float32)


def ref_decode_anchor_free(out, thr, class_id=0, quant=None):
    v = ref_dequant(out.reshape(out.shape[-2:]), quant)
    bs, ss = [], []
    for a in range(v.shape[1]):
        score = np.float32(v[4 + class_id, a])
        if score >= np.float32(thr):
            cx, cy, w, h = v[:4, a]
            bs.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
            ss.append(score)
    return np.asarray(bs, np.float64).reshape(-1, 4), np.asarray(ss, np.float32)


def ref_iou(a, b):
    a = [float(v) for v in a]
    b = [float(v) for v in b]
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1]) + max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1]) - inter
    if union <= 0:
        return 1.0 if a == b else 0.0
    return inter / union


def ref_nms(boxes, scores, thr, top_k):
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    keep = []
    for i in order:
        if len(keep) == top_k:
            break
        if all(ref_iou(boxes[i], boxes[j]) <= thr for j in keep):
            keep.append(i)
    return np.asarray(keep, np.int64)


# ----------------------------------------------------------------------------- outputs

def quantize(x, q, dtype):
    lo, hi = (-128, 127) if dtype == np.int8 else (0, 255)
    return np.clip(np.rint(x / q[0]) + q[1], lo, hi).astype(dtype)


def zoo_outputs(rng, size=(640, 640), nc=80, dtype=np.float32, persons=3, box_q=(0.12, -20), cls_q=INT8_CLS,
                background=0.05, with_sum=False):
    """Model-zoo-style outputs: random DFL logits, low background class scores and a few
    anchors with a high person score. Returns (boxes, classes, sums, box_quant, cls_quant)."""
    w, h = size
    boxes, classes, sums = [], [], []
    for s in STRIDES:
        gh, gw = h // s, w // s
        logits = rng.normal(0, 3, (1, 64, gh, gw))
        probs = rng.uniform(0, background, (1, nc, gh, gw))
        for _ in range(persons):
            y, x = rng.integers(0, gh), rng.integers(0, gw)
            probs[0, 0, y, x] = rng.uniform(0.3, 1.0)
        if dtype == np.float32:
            boxes.append(logits.astype(np.float32))
            classes.append(probs.astype(np.float32))
            sums.append(probs.sum(1, keepdims=True).clip(0, 1).astype(np.float32))
        else:
            cq = cls_q if dtype == np.int8 else (cls_q[0], 0)
            bq = box_q if dtype == np.int8 else (box_q[0], 128)
            boxes.append(quantize(logits, bq, dtype))
            classes.append(quantize(probs, cq, dtype))
            sums.append(quantize(probs.sum(1, keepdims=True).clip(0, 1), cq, dtype))
    if dtype == np.float32:
        bq = cq = None
    else:
        bq = [box_q if dtype == np.int8 else (box_q[0], 128)] * 3
        cq = [cls_q if dtype == np.int8 else (cls_q[0], 0)] * 3
    return boxes, classes, (sums if with_sum else None), bq, cq


def decode_both(*args, **kw):
    edgepose.set_implementation("numpy")
    a = yolo.decode_dfl(*args, **kw)
    b = yolo.decode_dfl_numpy(*args, **kw)
    if edgepose.native_available():
        edgepose.set_implementation("native")
        c = yolo.decode_dfl(*args, **kw)
        np.testing.assert_array_equal(c[0], b[0])
        np.testing.assert_array_equal(c[1], b[1])
    edgepose.set_implementation("auto")
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[0].dtype == np.float32 and a[1].dtype == np.float32 and a[0].shape == (len(a[1]), 4)
    return b


def check_against_ref(got, ref, atol=2e-4):
    assert got[0].shape == ref[0].shape
    np.testing.assert_array_equal(got[1], ref[1])
    np.testing.assert_allclose(got[0], ref[0], rtol=0, atol=atol)


# ----------------------------------------------------------------------------- exp

def test_exp_nonpos_matches_libm():
    x = np.concatenate([-np.geomspace(1e-300, 707.9, 20001), [0.0, -0.5, -1.0, -708.0]])
    np.testing.assert_allclose(yolo.exp_nonpos(x), np.exp(x), rtol=2e-15, atol=0)
    assert yolo.exp_nonpos(np.array([0.0]))[0] == 1.0
    assert np.all(yolo.exp_nonpos(np.array([-708.5, -1e6, -np.inf])) == 0.0)


# ----------------------------------------------------------------------------- DFL decode

@pytest.mark.parametrize("dtype", [np.float32, np.int8, np.uint8])
@pytest.mark.parametrize("nc", [1, 80])
@pytest.mark.parametrize("size", [(640, 640), (640, 384)])
def test_dfl_random_equals_reference(dtype, nc, size):
    rng = np.random.default_rng(hash((np.dtype(dtype).name, nc, size)) % 2 ** 32)
    boxes, classes, _, bq, cq = zoo_outputs(rng, size, nc, dtype, persons=5, background=0.3)
    got = decode_both(boxes, classes, STRIDES, 0.25, box_quant=bq, cls_quant=cq)
    assert len(got[1]) > 5
    check_against_ref(got, ref_decode_dfl(boxes, classes, STRIDES, 0.25, 0, bq, cq))


@pytest.mark.parametrize("dtype", [np.float32, np.int8, np.uint8])
def test_dfl_score_sum_is_only_a_skip(dtype):
    rng = np.random.default_rng(7)
    boxes, classes, sums, bq, cq = zoo_outputs(rng, (320, 256), 80, dtype, persons=6, background=0.3,
                                               with_sum=True)
    plain = decode_both(boxes, classes, STRIDES, 0.25, box_quant=bq, cls_quant=cq)
    skipped = decode_both(boxes, classes, STRIDES, 0.25, box_quant=bq, cls_quant=cq, score_sum=sums, sum_quant=cq)
    np.testing.assert_array_equal(plain[0], skipped[0])  # the sums are >= each class score
    # a sum below the threshold drops that anchor even if its class score passes
    sums[0][...] = 0 if dtype == np.float32 else np.iinfo(dtype).min  # real value 0
    dropped = decode_both(boxes, classes, STRIDES, 0.25, box_quant=bq, cls_quant=cq, score_sum=sums, sum_quant=cq)
    check_against_ref(dropped, ref_decode_dfl(boxes, classes, STRIDES, 0.25, 0, bq, cq, sums, cq))
    assert len(dropped[1]) < len(plain[1])


def test_dfl_class_id_reads_only_that_class():
    rng = np.random.default_rng(3)
    boxes, classes, _, _, _ = zoo_outputs(rng, (256, 256), 5, np.float32, persons=0)
    classes[1][0, 3, 2, 5] = 0.9
    classes[1][0, 0, 4, 4] = 0.95
    b, s = decode_both(boxes, classes, STRIDES, 0.5, class_id=3)
    np.testing.assert_array_equal(s, np.float32([0.9]))
    check_against_ref((b, s), ref_decode_dfl(boxes, classes, STRIDES, 0.5, 3))


def planted_logits(dist, reg=16, dtype=np.float32, q=(0.5, 0)):
    """Logits of one side whose softmax puts all the mass on bin floor(dist) and, for a
    half distance, half of it on the next bin."""
    hi, lo = (30.0, -100.0) if dtype == np.float32 else ((127 - q[1]) * q[0], (-128 - q[1]) * q[0])
    x = np.full(reg, lo)
    k = int(math.floor(dist))
    x[k] = hi
    if dist != k:
        x[k + 1] = hi
    return x


@pytest.mark.parametrize("dtype", [np.float32, np.int8])
def test_dfl_planted_boxes(dtype):
    """Known distances (whole and half bins) at known cells, including the grid corners (boxes
    leaving the input: not clipped) and zero-size boxes (all mass on bin 0)."""
    size = (640, 384)
    bq = (0.5, 0)
    rng = np.random.default_rng(11)
    boxes, classes = [], []
    want = []
    plants = {8: [(0, 0, (3, 2.5, 7, 1)), (47, 79, (15, 0, 0.5, 15)), (10, 10, (0, 0, 0, 0))],
              16: [(5, 7, (4, 4, 4, 4)), (23, 39, (0, 0, 0, 0))],
              32: [(0, 19, (14.5, 2, 1, 9)), (11, 0, (1, 1, 1, 1))]}
    for s in STRIDES:
        gh, gw = size[1] // s, size[0] // s
        logit = np.zeros((64, gh, gw))
        prob = np.zeros((2, gh, gw))
        for gy, gx, dist in sorted(plants[s]):  # row-major: the decode's order within a level
            for side in range(4):
                logit[side * 16:(side + 1) * 16, gy, gx] = planted_logits(dist[side], dtype=dtype, q=bq)
            prob[0, gy, gx] = 0.75
            want.append((s, gy, gx, dist))
        if dtype == np.float32:
            boxes.append(logit[None].astype(np.float32))
            classes.append(prob[None].astype(np.float32))
        else:
            boxes.append(quantize(logit[None], bq, dtype))
            classes.append(quantize(prob[None], INT8_CLS, dtype))
    q = dict(box_quant=[bq] * 3, cls_quant=[INT8_CLS] * 3) if dtype == np.int8 else {}
    b, sc = decode_both(boxes, classes, STRIDES, 0.5, **q)
    assert len(sc) == len(want)
    for (s, gy, gx, (l, t, r, bb)), box in zip(want, b):  # level order, then row-major: as planted
        exp = [(gx + 0.5 - l) * s, (gy + 0.5 - t) * s, (gx + 0.5 + r) * s, (gy + 0.5 + bb) * s]
        np.testing.assert_allclose(box, exp, atol=1e-3)
    check_against_ref((b, sc), ref_decode_dfl(boxes, classes, STRIDES, 0.5, 0, q.get("box_quant"),
                                              q.get("cls_quant")))
    zero = (b[:, 2] == b[:, 0]) & (b[:, 3] == b[:, 1])
    assert zero.sum() == 2  # the two zero-size plants
    np.testing.assert_allclose(sc, 0.75 if dtype == np.float32 else np.float32((quantize(
        np.array(0.75), INT8_CLS, np.int8).astype(np.float64) + 128) / 255), rtol=0)


@pytest.mark.parametrize("dtype", [np.float32, np.int8, np.uint8])
def test_dfl_nothing_above_threshold(dtype):
    rng = np.random.default_rng(5)
    boxes, classes, _, bq, cq = zoo_outputs(rng, (320, 320), 80, dtype, persons=0, background=0.1)
    b, s = decode_both(boxes, classes, STRIDES, 0.5, box_quant=bq, cls_quant=cq)
    assert b.shape == (0, 4) and s.shape == (0,) and b.dtype == np.float32 and s.dtype == np.float32
    # a threshold no integer can reach
    b, s = decode_both(boxes, classes, STRIDES, 2.0, box_quant=bq, cls_quant=cq)
    assert b.shape == (0, 4)


@pytest.mark.parametrize("dtype", [np.float32, np.int8, np.uint8])
def test_dfl_every_anchor_above_threshold(dtype):
    rng = np.random.default_rng(6)
    size = (320, 192)
    boxes, classes, _, bq, cq = zoo_outputs(rng, size, 1, dtype, persons=0, background=0.1)
    b, s = decode_both(boxes, classes, STRIDES, -1.0, box_quant=bq, cls_quant=cq)
    assert len(s) == sum((size[0] // k) * (size[1] // k) for k in STRIDES)
    check_against_ref((b, s), ref_decode_dfl(boxes, classes, STRIDES, -1.0, 0, bq, cq))
    # the order: level by level, row-major: centres of the stride-8 boxes go along rows
    cx = (b[:, 0] + b[:, 2]) / 2  # not the cell centre (l != r) -- use the anchor count instead
    assert cx.shape[0] == len(s)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
def test_quantized_threshold_is_exact(dtype):
    """Survivors are exactly those whose dequantized score passes; their score is that value."""
    zp = -128 if dtype == np.int8 else 0
    q = (1 / 255, zp)
    vals = np.arange(-128, 128) if dtype == np.int8 else np.arange(256)
    cls = vals.astype(dtype).reshape(1, 1, 16, 16)
    box = np.zeros((1, 64, 16, 16), dtype)
    for thr in [0.25, float(np.float32((100 - zp) / 255 if zp else 100 / 255)), 0.0, 1.0, 0.999]:
        b, s = decode_both([box], [cls], [8], thr, box_quant=[(0.1, 0)], cls_quant=[q])
        deq = ((vals.astype(np.float64) - zp) * q[0]).astype(np.float32)
        np.testing.assert_array_equal(s, deq[deq >= np.float32(thr)])
        assert yolo.quantized_threshold(np.dtype(dtype), q[0], zp, np.float32(thr)) == (
            vals[deq >= np.float32(thr)][0] if np.any(deq >= np.float32(thr)) else vals[-1] + 1)


def test_int8_decode_equals_float_decode_of_dequantized():
    rng = np.random.default_rng(9)
    boxes, classes, _, bq, cq = zoo_outputs(rng, (640, 640), 80, np.int8, persons=8, background=0.2)
    qb = decode_both(boxes, classes, STRIDES, 0.25, box_quant=bq, cls_quant=cq)
    fb = [((x.astype(np.float64) - q[1]) * q[0]).astype(np.float32) for x, q in zip(boxes, bq)]
    fc = [((x.astype(np.float64) - q[1]) * q[0]).astype(np.float32) for x, q in zip(classes, cq)]
    fl = decode_both(fb, fc, STRIDES, 0.25)
    np.testing.assert_array_equal(qb[1], fl[1])
    np.testing.assert_allclose(qb[0], fl[0], atol=1e-4)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2 ** 31), reg=st.sampled_from([1, 2, 8, 16]), nc=st.integers(1, 4),
       dtype=st.sampled_from(["float32", "int8", "uint8"]), gw=st.integers(1, 9), gh=st.integers(1, 9),
       thr=st.floats(-0.5, 1.2))
def test_property_dfl(seed, reg, nc, dtype, gw, gh, thr):
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    boxes, classes, bq, cq = [], [], [], []
    for k, s in enumerate(STRIDES):
        h, w = max(gh // (k + 1), 1), max(gw // (k + 1), 1)
        if dt == np.float32:
            boxes.append(rng.normal(0, 4, (1, 4 * reg, h, w)).astype(np.float32))
            classes.append(rng.uniform(0, 1, (1, nc, h, w)).astype(np.float32))
            bq.append(None)
            cq.append(None)
        else:
            info = np.iinfo(dt)
            boxes.append(rng.integers(info.min, info.max + 1, (1, 4 * reg, h, w)).astype(dt))
            classes.append(rng.integers(info.min, info.max + 1, (1, nc, h, w)).astype(dt))
            bq.append((float(rng.uniform(0.01, 1)), int(rng.integers(info.min, info.max + 1))))
            cq.append((float(rng.uniform(0.001, 0.01)), int(rng.integers(info.min, info.max + 1))))
    cid = int(rng.integers(0, nc))
    got = decode_both(boxes, classes, STRIDES, thr, class_id=cid, box_quant=bq, cls_quant=cq)
    check_against_ref(got, ref_decode_dfl(boxes, classes, STRIDES, thr, cid, bq, cq), atol=1e-3)


# ----------------------------------------------------------------------------- Ultralytics

def ultra_output(rng, n_anchor, nc, dtype=np.float32, q=(2.6, -128)):
    """One tensor, one scale: quantized, its box rows are small numbers (in real int8 exports
    the scores would not survive the coordinates' scale, which is why RKNN splits outputs)."""
    k = 1.0 if dtype == np.float32 else 1 / 640
    v = np.zeros((1, 4 + nc, n_anchor))
    v[0, 0] = rng.uniform(-20, 660, n_anchor) * k
    v[0, 1] = rng.uniform(-20, 660, n_anchor) * k
    v[0, 2:4] = rng.uniform(0, 300, (2, n_anchor)) * k
    v[0, 4:] = rng.uniform(0, 0.3, (nc, n_anchor))
    v[0, 4, rng.integers(0, n_anchor, 20)] = rng.uniform(0.3, 1, 20)
    if dtype == np.float32:
        return v.astype(np.float32), None
    return quantize(v, q, dtype), q


def anchor_free_both(out, thr, class_id=0, quant=None):
    edgepose.set_implementation("numpy")
    a = yolo.decode_anchor_free(out, thr, class_id, quant)
    if edgepose.native_available():
        edgepose.set_implementation("native")
        c = yolo.decode_anchor_free(out, thr, class_id, quant)
        np.testing.assert_array_equal(c[0], a[0])
        np.testing.assert_array_equal(c[1], a[1])
    edgepose.set_implementation("auto")
    return a


@pytest.mark.parametrize("dtype", [np.float32, np.int8, np.uint8])
@pytest.mark.parametrize("nc", [1, 80])
def test_anchor_free_equals_reference(dtype, nc):
    rng = np.random.default_rng(nc)
    q = (1 / 200, -10) if dtype == np.int8 else (1 / 200, 3)
    out, quant = ultra_output(rng, 8400, nc, dtype, q)
    got = anchor_free_both(out, 0.25, 0, quant)
    assert len(got[1]) >= 10
    check_against_ref(got, ref_decode_anchor_free(out, 0.25, 0, quant), atol=1e-4)
    got2 = anchor_free_both(out[0], 0.25, 0, quant)  # (4 + nc, A) accepted too
    np.testing.assert_array_equal(got[0], got2[0])
    empty = anchor_free_both(out, 5.0, 0, quant)
    assert empty[0].shape == (0, 4) and empty[1].shape == (0,)
    every = anchor_free_both(out, -1.0, 0, quant)
    assert len(every[1]) == 8400


# ----------------------------------------------------------------------------- YOLOX

def test_yolox_raw_and_decoded():
    rng = np.random.default_rng(4)
    size = (416, 320)
    gx, gy, st_ = yolo.yolox_grid(size, STRIDES)
    a = gx.size
    out = np.zeros((1, a, 7), np.float32)
    out[0, :, :2] = rng.uniform(-1, 1, (a, 2))
    out[0, :, 2:4] = rng.uniform(-1, 3, (a, 2))
    out[0, :, 4:] = rng.uniform(0, 0.5, (a, 3))
    out[0, 17, 4:6] = [0.9, 0.8]
    b, s = yolo.decode_yolox(out, size, 0.5)
    assert len(s) == 1 and s[0] == np.float32(np.float64(np.float32(0.9)) * np.float64(np.float32(0.8)))
    x, y, lw, lh = out[0, 17, :4].astype(np.float64)
    cx, cy, w, h = (x + gx[17]) * 8, (y + gy[17]) * 8, np.exp(lw) * 8, np.exp(lh) * 8
    np.testing.assert_allclose(b[0], [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], rtol=1e-6)
    dec = out.copy()
    dec[0, 17, :4] = [cx, cy, w, h]
    b2, _ = yolo.decode_yolox(dec, size, 0.5, decoded=True)
    np.testing.assert_allclose(b2, b, rtol=1e-6)
    with pytest.raises(ValueError, match="input_size"):
        yolo.decode_yolox(out, (640, 640), 0.5)


# ----------------------------------------------------------------------------- NMS

def nms_both(boxes, scores, thr, top_k=300):
    edgepose.set_implementation("numpy")
    a = yolo.nms_boxes(boxes, scores, thr, top_k)
    b = yolo.nms_boxes_numpy(boxes, scores, thr, top_k)
    np.testing.assert_array_equal(a, b)
    if edgepose.native_available():
        edgepose.set_implementation("native")
        np.testing.assert_array_equal(yolo.nms_boxes(boxes, scores, thr, top_k), b)
    edgepose.set_implementation("auto")
    assert b.dtype == np.int64
    return b


def random_boxes(rng, n, people=5):
    centre = rng.uniform(0, 640, (people, 2))[rng.integers(0, people, n)] + rng.normal(0, 15, (n, 2))
    wh = rng.uniform(0, 200, (n, 2))
    return np.concatenate([centre - wh / 2, centre + wh / 2], 1).astype(np.float32), rng.uniform(0, 1, n).astype(
        np.float32)


@pytest.mark.parametrize("n", [0, 1, 2, 50, 400])
@pytest.mark.parametrize("thr", [0.0, 0.45, 0.7, 1.0])
def test_nms_equals_reference(n, thr):
    rng = np.random.default_rng(n)
    b, s = random_boxes(rng, n)
    got = nms_both(b, s, thr)
    np.testing.assert_array_equal(got, ref_nms(b, s, thr, 300))


def test_nms_ties_zero_size_and_top_k():
    b = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [5, 5, 5, 5], [5, 5, 5, 5], [6, 6, 6, 6],
                  [100, 100, 110, 110], [200, 0, 210, 10]], np.float32)
    s = np.full(7, 0.5, np.float32)
    keep = nms_both(b, s, 0.5)
    # equal scores: index order; duplicates (IoU 1) removed, including identical zero-size boxes;
    # distinct zero-size boxes have IoU 0 with everything else
    np.testing.assert_array_equal(keep, [0, 2, 4, 5, 6])
    np.testing.assert_array_equal(keep, ref_nms(b, s, 0.5, 300))
    np.testing.assert_array_equal(nms_both(b, s, 0.5, top_k=2), [0, 2])
    assert nms_both(b, s, 0.5, top_k=0).shape == (0,)
    s2 = np.array([0.1, 0.9, 0.5, 0.5, 0.5, 0.9, 0.1], np.float32)
    np.testing.assert_array_equal(nms_both(b, s2, 0.5), ref_nms(b, s2, 0.5, 300))
    np.testing.assert_array_equal(nms_both(b, s2, 0.5), [1, 5, 2, 4, 6])
    # inverted boxes count as zero area: no NaN, no suppression by them
    inv = np.array([[10, 10, 0, 0], [0, 0, 10, 10]], np.float32)
    np.testing.assert_array_equal(nms_both(inv, np.float32([0.9, 0.8]), 0.1), [0, 1])


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2 ** 31), n=st.integers(0, 60), thr=st.floats(0, 1), top_k=st.integers(0, 70),
       grid=st.booleans())
def test_property_nms(seed, n, thr, top_k, grid):
    rng = np.random.default_rng(seed)
    b, s = random_boxes(rng, n, people=3)
    if grid:  # coarse values: many exact ties in scores and coordinates
        b = np.round(b / 40) * 40
        s = np.round(s * 4) / 4
    np.testing.assert_array_equal(nms_both(b, s, thr, top_k), ref_nms(b, s, thr, top_k))


# ----------------------------------------------------------------------------- postprocess, errors

def test_postprocess_layouts():
    rng = np.random.default_rng(12)
    boxes, classes, sums, bq, cq = zoo_outputs(rng, (640, 640), 80, np.int8, persons=4, with_sum=True)
    outs, quant = [], []
    for i in range(3):
        outs += [boxes[i], classes[i], sums[i]]
        quant += [bq[i], cq[i], cq[i]]
    b, s = yolo.postprocess("dfl", outs, 0.25, 0.45, quant=quant)
    db, ds = yolo.decode_dfl(boxes, classes, STRIDES, 0.25, box_quant=bq, cls_quant=cq)
    keep = yolo.nms_boxes(db, ds, 0.45)
    np.testing.assert_array_equal(b, db[keep])
    b6, _ = yolo.postprocess("dfl", [x for i in range(3) for x in (boxes[i], classes[i])], 0.25, 0.45,
                             quant=[x for i in range(3) for x in (bq[i], cq[i])])
    np.testing.assert_array_equal(b6, b)
    out, q = ultra_output(rng, 8400, 80)
    b, s = yolo.postprocess("anchor_free", [out], 0.25, 0.45)
    db, ds = yolo.decode_anchor_free(out, 0.25)
    np.testing.assert_array_equal(b, db[yolo.nms_boxes(db, ds, 0.45)])
    with pytest.raises(ValueError, match="layout"):
        yolo.postprocess("yolov5", [out], 0.25, 0.45)


@pytest.mark.parametrize("impl", IMPLS)
def test_errors_name_the_argument(impl):
    edgepose.set_implementation(impl)
    rng = np.random.default_rng(0)
    boxes, classes, _, bq, cq = zoo_outputs(rng, (128, 128), 2, np.int8)
    cases = [
        (lambda: yolo.decode_dfl(boxes, classes, STRIDES, 0.5), "box_quant"),
        (lambda: yolo.decode_dfl(boxes, classes, STRIDES, 0.5, box_quant=bq), "cls_quant"),
        (lambda: yolo.decode_dfl(boxes, classes, STRIDES, 0.5, box_quant=bq, cls_quant=[(0, 0)] * 3), "cls_quant"),
        (lambda: yolo.decode_dfl(boxes, classes, STRIDES, 0.5, box_quant=bq, cls_quant=[(0.1, 300)] * 3), "zero_point"),
        (lambda: yolo.decode_dfl(boxes, classes, STRIDES, 0.5, class_id=2, box_quant=bq, cls_quant=cq), "class_id"),
        (lambda: yolo.decode_dfl(boxes[:2], classes, STRIDES, 0.5, box_quant=bq, cls_quant=cq), "classes/strides"),
        (lambda: yolo.decode_dfl([b[:, :63] for b in boxes], classes, STRIDES, 0.5, box_quant=bq, cls_quant=cq),
         r"boxes\[0\]"),
        (lambda: yolo.decode_dfl(boxes, [c[:, :, :3] for c in classes], STRIDES, 0.5, box_quant=bq, cls_quant=cq),
         r"classes\[0\]"),
        (lambda: yolo.decode_dfl(boxes, classes, (8, 0, 32), 0.5, box_quant=bq, cls_quant=cq), r"strides\[1\]"),
        (lambda: yolo.decode_dfl(boxes, classes, STRIDES, float("nan"), box_quant=bq, cls_quant=cq), "score_thr"),
        (lambda: yolo.decode_dfl([b.astype(np.int32) for b in boxes], classes, STRIDES, 0.5), r"boxes\[0\]"),
        (lambda: yolo.decode_anchor_free(np.zeros((1, 4, 10), np.float32), 0.5), "out"),
        (lambda: yolo.decode_anchor_free(np.zeros((1, 6, 10), np.int8), 0.5), "quant"),
        (lambda: yolo.decode_anchor_free(np.zeros((1, 6, 10), np.float32), 0.5, class_id=2), "class_id"),
        (lambda: yolo.nms_boxes(np.zeros((3, 5)), np.zeros(3), 0.5), "boxes"),
        (lambda: yolo.nms_boxes(np.zeros((3, 4)), np.zeros(2), 0.5), "scores"),
        (lambda: yolo.nms_boxes(np.full((1, 4), np.nan), np.zeros(1), 0.5), "NaN"),
        (lambda: yolo.nms_boxes(np.zeros((1, 4)), np.zeros(1), 0.5, top_k=-1), "top_k"),
    ]
    for fn, match in cases:
        with pytest.raises(ValueError, match=match) as e:
            fn()
        assert "\n" not in str(e.value)


def _run(code: str, **env) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if k != "EDGEPOSE_IMPL"}
    e.update(PYTHONPATH=str(ROOT), **env)
    return subprocess.run([sys.executable, "-c", code], env=e, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("impl", IMPLS)
def test_env_var_selects_implementation(impl):
    code = ("import numpy as np, edgepose\nfrom edgepose import yolo\n"
            "c = np.zeros((1, 1, 4, 4), np.float32); c[0, 0, 1, 2] = 0.9\n"
            "b, s = yolo.decode_dfl([np.zeros((1, 64, 4, 4), np.float32)], [c], [8], 0.5)\n"
            "print(edgepose.implementation(), b.tolist(), yolo.nms_boxes(b, s, 0.5).tolist())\n")
    r = _run(code, EDGEPOSE_IMPL=impl)
    assert r.returncode == 0, r.stderr
    # all bins equal: each distance is the mean bin 7.5, around the cell centre (2.5, 1.5) * 8
    assert r.stdout.split()[0] == impl
    assert "[[-40.0, -48.0, 80.0, 72.0]] [0]" in r.stdout
