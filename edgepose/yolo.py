"""Kernel 4: person-detector outputs -> person boxes (decode + class-agnostic IoU NMS).

Three output layouts are decoded, persons only (one class, ``class_id``, 0 in COCO):

* ``decode_dfl``: the Rockchip model zoo's YOLOv8 RKNN layout. Per stride ``s`` a DFL box
  tensor ``(1, 4*R, h, w)`` (R = reg_max bins per side, 16 normally), a class tensor
  ``(1, nc, h, w)`` of probabilities and optionally a score-sum tensor ``(1, 1, h, w)``.
* ``decode_anchor_free``: the Ultralytics YOLOv8 / YOLO11 ONNX export ``(1, 4 + nc, A)``:
  rows 0..3 centre x, centre y, width, height in input pixels, rows 4.. probabilities.
* ``decode_yolox``: a raw YOLOX head ``(1, A, 5 + nc)`` (grid offsets, log sizes,
  objectness, class probabilities), or the same tensor already decoded to input pixels.
* ``decode_yolox_split``: the same head split per stride into a box tensor ``(1, 4, h, w)``
  (grid offsets, log sizes), an objectness tensor ``(1, 1, h, w)`` and a class tensor
  ``(1, nc, h, w)`` (probabilities), each with its own int8 scale: what ``host_tools build-rknn``
  makes of a single-output YOLOX export (``host_tools/det_split.py``).

Conventions, the same in the NumPy twins here and in ``csrc/yolo.cpp``:

* Boxes are ``x0, y0, x1, y1`` float32 in input (model) pixels, pixel-edge coordinates as the
  models regress them; results are in a fixed order: level by level in the order given
  (stride-major), then row-major over the grid (anchor order for the flat layouts).
* An anchor passes when ``score >= float32(score_thr)``, compared in float32 (``>=`` everywhere,
  as the model zoo's ``filter_boxes``). Scores are probabilities already (the exported graphs
  apply the sigmoid).
* Quantized tensors (int8/uint8 with ``(scale, zero_point)``, ``real = (q - zp) * scale``,
  ``scale > 0``) are never dequantized whole: the threshold becomes the smallest integer ``q``
  whose score ``float32(float64(q - zp) * scale)`` passes (dequantization is monotonic), the
  tensor is scanned as integers and only the survivors are dequantized, by that same formula.
* DFL: per side, ``softmax`` over the R bins and the expectation ``sum(k p_k)``, in float64:
  ``e_k = exp(t_k)`` with ``t_k = x_k - max(x)`` (float) or ``(q_k - max(q)) * scale``
  (quantized; the zero point cancels), then ``sum(k e_k) / sum(e_k)`` accumulated k = 0, 1, ...
  ``exp`` is :func:`exp_nonpos`, one fixed sequence of float64 operations, so the twin and the
  kernel agree to the last bit. The box is ``x0 = (gx + 0.5 - l) * s``,
  ``y0 = (gy + 0.5 - t) * s``, ``x1 = (gx + 0.5 + r) * s``, ``y1 = (gy + 0.5 + b) * s`` in float64,
  then rounded to float32 (the model zoo's ``box_process``).
* YOLOX split: score ``float32(float64(obj) * float64(cls))`` (dequantized values); the box is
  ``cx = (x + gx) s``, ``cy = (y + gy) s``, ``w = exp(lw) s``, ``h = exp(lh) s`` in float64 with
  :func:`exp_fixed` (NaN stays NaN, above 708 gives inf, below -708 gives 0), then
  ``cx -+ w / 2, cy -+ h / 2`` rounded to float32. For int8/uint8 objectness and classes the
  kernel first skips every objectness integer whose product with the largest and the smallest
  class value of its type fails (exact: the product is monotone in the class value).
* The score-sum tensor is only a fast skip: an anchor needs ``sum >= thr`` too (a trained
  model's sum is never below one of its class scores, so this changes nothing there).
* NMS (:func:`nms_boxes`): class-agnostic, greedy, highest score first, equal scores in index
  order (lower first); a box is dropped when its IoU with a kept box is ``> iou_thr``. IoU is
  computed in float64: widths are ``max(x1 - x0, 0)``, ``inter / (area_a + area_b - inter)``;
  when that union is 0 (both boxes have zero area) IoU is 1 for identical boxes, else 0, so
  zero-size boxes never give NaN. At most ``top_k`` boxes are kept.
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import numpy as np

from . import _dispatch

Quant = Optional[Tuple[float, int]]
_INT_RANGE = {np.dtype(np.int8): (-128, 127), np.dtype(np.uint8): (0, 255)}
LAYOUTS = ("dfl", "anchor_free", "yolox", "yolox_split")
MAX_REG = 64  # DFL bins per side (16 in YOLOv8/YOLO11); the kernel's fixed buffers

# exp_nonpos: exp(x) = 2^k exp(r), k = rint(x / ln 2), r = x - k ln 2 (ln 2 in two parts, the
# high part with trailing zero bits so k * LN2_HI is exact), exp(r) by its Taylor series to r^12
# (|r| <= 0.347: truncation below 1e-15 relative).
_INV_LN2 = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_EXP_COEF = tuple(1.0 / math.factorial(n) for n in range(13))  # c0 .. c12
_EXP_MIN = -708.0  # below: 0 (keeps 2^k normal; e^-708 is far below any softmax weight that counts)
_EXP_MAX = 708.0  # above: inf (exp_fixed; 2^k stays a normal double up to here)


def _exp_core(x: np.ndarray) -> np.ndarray:
    """2^k exp(r) for float64 ``x`` in [-708, 708] (or NaN, which stays NaN)."""
    with np.errstate(invalid="ignore"):
        k = np.rint(x * _INV_LN2)
        r = (x - k * _LN2_HI) - k * _LN2_LO
        p = np.full_like(r, _EXP_COEF[12])
        for c in _EXP_COEF[11::-1]:
            p = p * r + c
        return np.ldexp(p, np.where(np.isnan(k), 0, k).astype(np.int32))


def exp_nonpos(x: np.ndarray) -> np.ndarray:
    """``exp(x)`` for float64 ``x <= 0``, to ~1e-15 relative, in a fixed order of float64
    operations (``csrc/yolo.cpp`` does the same ones, so both give the same bits)."""
    x = np.asarray(x, np.float64)
    small = x < _EXP_MIN
    x = np.where(small, 0.0, x)  # (their result is 0; this keeps -inf out of the arithmetic)
    return np.where(small, 0.0, _exp_core(x))


def exp_fixed(x: np.ndarray) -> np.ndarray:
    """``exp(x)`` for any float64 ``x`` by the operations of :func:`exp_nonpos`: NaN stays NaN,
    ``x > 708`` gives inf, ``x < -708`` gives 0 (``csrc/yolo.cpp``: the same bits)."""
    x = np.asarray(x, np.float64)
    core = _exp_core(np.clip(x, _EXP_MIN, _EXP_MAX))
    with np.errstate(invalid="ignore"):
        return np.where(x > _EXP_MAX, np.inf, np.where(x < _EXP_MIN, 0.0, core))


# --------------------------------------------------------------------------- validation

def _tensor(a, name: str) -> np.ndarray:
    """A float32/int8/uint8 contiguous array (float16/float64 are cast to float32)."""
    if not isinstance(a, np.ndarray):
        raise ValueError(f"{name}: expected a numpy array, got {type(a).__name__}")
    ch = a.dtype.char  # (dtype codes: a few hundred ns cheaper than dtype comparisons, per tensor)
    if ch not in "fbB":
        if ch not in "ed":
            raise ValueError(f"{name}: expected float32, int8 or uint8, got {a.dtype}")
        a = a.astype(np.float32)
    return a if a.flags.c_contiguous else np.ascontiguousarray(a)


def _quant(a: np.ndarray, quant, name: str) -> Tuple[float, int]:
    """``(scale, zero_point)`` of a quantized tensor; ``(1.0, 0)`` for float32 (quant ignored)."""
    if a.dtype.char == "f":
        return 1.0, 0
    if quant is None:
        raise ValueError(f"{name}: required for a {a.dtype} tensor, as (scale, zero_point) of that output")
    try:
        scale, zp = quant
        scale = float(scale)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected (scale, zero_point), got {quant!r}") from None
    if not (scale > 0 and math.isfinite(scale)):
        raise ValueError(f"{name}: scale must be a positive finite number, got {scale}")
    if int(zp) != zp:
        raise ValueError(f"{name}: zero_point must be an integer, got {zp!r}")
    lo, hi = (-128, 127) if a.dtype.char == "b" else (0, 255)
    if not lo <= int(zp) <= hi:
        raise ValueError(f"{name}: zero_point {zp} outside the {a.dtype} range [{lo}, {hi}]")
    return scale, int(zp)


def _per_level(q, n: int, name: str) -> List:
    if q is None:
        return [None] * n
    if len(q) != n:
        raise ValueError(f"{name}: expected one (scale, zero_point) or None per level ({n}), got {len(q)}")
    return list(q)


def _check_thr(score_thr) -> np.float32:
    t = float(score_thr)
    if not math.isfinite(t):
        raise ValueError(f"score_thr: must be a finite number, got {score_thr}")
    return np.float32(t)


def _check_class(class_id, nc: int, name: str) -> int:
    c = int(class_id)
    if not 0 <= c < nc:
        raise ValueError(f"class_id: {class_id} out of range for {nc} classes in {name}")
    return c


def _empty() -> Tuple[np.ndarray, np.ndarray]:
    return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)


# --------------------------------------------------------------------------- quantized helpers

def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """``float64(q - zero_point) * scale`` as float64 (applied to survivors only)."""
    return (q.astype(np.int64) - zero_point).astype(np.float64) * scale


def quantized_threshold(dtype: np.dtype, scale: float, zero_point: int, thr: np.float32) -> int:
    """Smallest integer ``q`` of ``dtype`` with ``float32((q - zp) * scale) >= thr``, or one past
    the largest value when none passes (dequantization is monotonic, so ``q >= result`` is exactly
    the float test)."""
    lo, hi = _INT_RANGE[np.dtype(dtype)]
    values = np.arange(lo, hi + 1)
    ok = np.nonzero(dequantize(values, scale, zero_point).astype(np.float32) >= thr)[0]
    return int(values[ok[0]]) if ok.size else hi + 1


def _passing(plane: np.ndarray, scale: float, zp: int, thr: np.float32) -> np.ndarray:
    """Flat indices of ``plane`` whose score passes, in increasing order."""
    if plane.dtype == np.float32:
        return np.nonzero(plane.reshape(-1) >= thr)[0]
    return np.nonzero(plane.reshape(-1) >= quantized_threshold(plane.dtype, scale, zp, thr))[0]


def _scores_at(plane: np.ndarray, idx: np.ndarray, scale: float, zp: int) -> np.ndarray:
    v = plane.reshape(-1)[idx]
    return v.astype(np.float32) if v.dtype == np.float32 else dequantize(v, scale, zp).astype(np.float32)


# --------------------------------------------------------------------------- DFL (model zoo)

def dfl_expectation(bins: np.ndarray, scale: Optional[float]) -> np.ndarray:
    """``(M, 4, R)`` logits (float32, or integers with ``scale``) -> ``(M, 4)`` float64 expected
    distances in grid cells: softmax over R, then ``sum(k p_k)``, accumulated in bin order."""
    if scale is None:
        x = bins.astype(np.float64)
        t = x - bins.max(axis=2, keepdims=True).astype(np.float64)
    else:
        q = bins.astype(np.int64)
        t = (q - q.max(axis=2, keepdims=True)).astype(np.float64) * scale
    e = exp_nonpos(t)
    num = np.zeros(e.shape[:2])
    den = np.zeros(e.shape[:2])
    for k in range(e.shape[2]):
        den = den + e[:, :, k]
        num = num + float(k) * e[:, :, k]
    return num / den


def _check_level(b: np.ndarray, c: np.ndarray, class_id: int, stride, i: int) -> Tuple[int, int]:
    """The checks every per-stride head shares: class tensor ``(1, nc, h, w)`` like the box
    tensor, ``class_id`` in range, a positive integer stride. Returns ``(class_id, stride)``."""
    if c.ndim != 4 or c.shape[0] != 1 or c.shape[2:] != b.shape[2:]:
        raise ValueError(f"classes[{i}]: expected (1, nc, {b.shape[2]}, {b.shape[3]}) like boxes[{i}], got {c.shape}")
    cid = _check_class(class_id, c.shape[1], f"classes[{i}]")
    s = int(stride)
    if s <= 0 or s != stride:
        raise ValueError(f"strides[{i}]: expected a positive integer, got {stride!r}")
    return cid, s


def _check_dfl(boxes, classes, strides, class_id, box_quant, cls_quant, score_sum, sum_quant):
    n = len(boxes)
    if n == 0:
        raise ValueError("boxes: expected one DFL box tensor per stride, got none")
    if len(classes) != n or len(strides) != n:
        raise ValueError(f"classes/strides: expected {n} entries each (one per box tensor), got {len(classes)} and {len(strides)}")
    bq, cq = _per_level(box_quant, n, "box_quant"), _per_level(cls_quant, n, "cls_quant")
    if score_sum is not None and len(score_sum) != n:
        raise ValueError(f"score_sum: expected {n} tensors (one per stride) or None, got {len(score_sum)}")
    sq = _per_level(sum_quant, n, "sum_quant")
    levels = []
    for i in range(n):
        b = _tensor(boxes[i], f"boxes[{i}]")
        c = _tensor(classes[i], f"classes[{i}]")
        if b.ndim != 4 or b.shape[0] != 1 or b.shape[1] % 4 or not 0 < b.shape[1] <= 4 * MAX_REG:
            raise ValueError(f"boxes[{i}]: expected (1, 4*reg_max, h, w) with reg_max <= {MAX_REG}, got {b.shape}")
        cid, s = _check_level(b, c, class_id, strides[i], i)
        sm = None
        smq = (1.0, 0)
        if score_sum is not None and score_sum[i] is not None:
            sm = _tensor(score_sum[i], f"score_sum[{i}]")
            if sm.shape != (1, 1) + b.shape[2:]:
                raise ValueError(f"score_sum[{i}]: expected (1, 1, {b.shape[2]}, {b.shape[3]}), got {sm.shape}")
            smq = _quant(sm, sq[i], f"sum_quant[{i}]")
        levels.append((b, _quant(b, bq[i], f"box_quant[{i}]"), c, _quant(c, cq[i], f"cls_quant[{i}]"),
                       sm, smq, s, cid))
    return levels


def decode_dfl_numpy(boxes, classes, strides, score_thr, class_id=0, box_quant=None, cls_quant=None,
                     score_sum=None, sum_quant=None) -> Tuple[np.ndarray, np.ndarray]:
    """Readable twin of :func:`decode_dfl` (same arguments, same result)."""
    thr = _check_thr(score_thr)
    levels = _check_dfl(boxes, classes, strides, class_id, box_quant, cls_quant, score_sum, sum_quant)
    out_b, out_s = [], []
    for b, (bs, bzp), c, (cs, czp), sm, (ss, szp), stride, cid in levels:
        h, w = b.shape[2:]
        plane = c[0, cid]
        idx = _passing(plane, cs, czp, thr)
        if sm is not None:
            idx = idx[np.isin(idx, _passing(sm[0, 0], ss, szp, thr))]
        if idx.size == 0:
            continue
        reg = b.shape[1] // 4
        bins = b[0].reshape(4, reg, h * w)[:, :, idx].transpose(2, 0, 1)  # (M, 4, R)
        d = dfl_expectation(bins, None if b.dtype == np.float32 else bs)
        gx = (idx % w).astype(np.float64) + 0.5
        gy = (idx // w).astype(np.float64) + 0.5
        xyxy = np.stack([(gx - d[:, 0]) * stride, (gy - d[:, 1]) * stride,
                         (gx + d[:, 2]) * stride, (gy + d[:, 3]) * stride], axis=1)
        out_b.append(xyxy.astype(np.float32))
        out_s.append(_scores_at(plane, idx, cs, czp))
    if not out_b:
        return _empty()
    return np.concatenate(out_b), np.concatenate(out_s)


def decode_dfl(boxes: Sequence[np.ndarray], classes: Sequence[np.ndarray], strides: Sequence[int],
               score_thr: float, class_id: int = 0,
               box_quant: Optional[Sequence[Quant]] = None, cls_quant: Optional[Sequence[Quant]] = None,
               score_sum: Optional[Sequence[np.ndarray]] = None,
               sum_quant: Optional[Sequence[Quant]] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Decode the model zoo's YOLOv8 RKNN outputs (per stride: DFL boxes, class scores).

    Args:
        boxes: per level ``(1, 4*R, h, w)`` DFL logits, sides in the order left, top, right,
            bottom, R bins each (R inferred from the channel count).
        classes: per level ``(1, nc, h, w)`` class probabilities.
        strides: per level the stride in input pixels (8, 16, 32).
        score_thr: keep anchors with ``score >= score_thr`` (compared in float32).
        class_id: the class decoded (person = 0 in COCO); the other classes are not read.
        box_quant, cls_quant, sum_quant: per level ``(scale, zero_point)`` for int8/uint8
            tensors (required there, ignored for float ones), or None when all are float.
        score_sum: optional per level ``(1, 1, h, w)`` score sums, used to skip anchors.

    Returns:
        ``boxes (M, 4)`` float32 ``x0, y0, x1, y1`` in input pixels and ``scores (M,)`` float32,
        level by level, row-major within a level.
    """
    thr = _check_thr(score_thr)
    levels = _check_dfl(boxes, classes, strides, class_id, box_quant, cls_quant, score_sum, sum_quant)
    nat = _dispatch.native()
    if nat is None:
        return decode_dfl_numpy(boxes, classes, strides, score_thr, class_id, box_quant, cls_quant,
                                score_sum, sum_quant)
    args = [(b, bq[0], bq[1], c, cq[0], cq[1], sm, sq[0], sq[1], s, cid)
            for b, bq, c, cq, sm, sq, s, cid in levels]
    return nat.yolo_decode_dfl(args, float(thr))


# --------------------------------------------------------------------------- Ultralytics export

def _check_flat(out, name: str, rows_first: bool, extra: int):
    a = _tensor(out, name)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    want = f"(1, {extra} + nc, A)" if rows_first else f"(1, A, {extra} + nc)"
    if a.ndim != 2 or (a.shape[0] if rows_first else a.shape[1]) <= extra:
        raise ValueError(f"{name}: expected {want}, got {np.shape(out)}")
    return np.ascontiguousarray(a)


def decode_anchor_free_numpy(out, score_thr, class_id=0, quant=None) -> Tuple[np.ndarray, np.ndarray]:
    """Readable twin of :func:`decode_anchor_free`."""
    thr = _check_thr(score_thr)
    a = _check_flat(out, "out", True, 4)
    cid = _check_class(class_id, a.shape[0] - 4, "out")
    scale, zp = _quant(a, quant, "quant")
    idx = _passing(a[4 + cid], scale, zp, thr)
    if idx.size == 0:
        return _empty()
    v = a[:4, idx]
    v = v.astype(np.float64) if a.dtype == np.float32 else dequantize(v, scale, zp)
    cx, cy, w, h = v
    xyxy = np.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], axis=1)
    return xyxy.astype(np.float32), _scores_at(a[4 + cid], idx, scale, zp)


def decode_anchor_free(out: np.ndarray, score_thr: float, class_id: int = 0,
                       quant: Quant = None) -> Tuple[np.ndarray, np.ndarray]:
    """Decode the Ultralytics YOLOv8 / YOLO11 ONNX export.

    Args:
        out: ``(1, 4 + nc, A)`` or ``(4 + nc, A)``: rows ``cx, cy, w, h`` in input pixels, then
            one row of probabilities per class.
        score_thr: keep anchors with ``score >= score_thr`` (compared in float32).
        class_id: the class decoded (person = 0).
        quant: ``(scale, zero_point)`` of an int8/uint8 output (one for the whole tensor).

    Returns:
        ``boxes (M, 4)`` float32 ``x0, y0, x1, y1`` = ``cx -+ w/2, cy -+ h/2`` (float64, then
        float32) and ``scores (M,)`` float32, in anchor order.
    """
    thr = _check_thr(score_thr)
    a = _check_flat(out, "out", True, 4)
    cid = _check_class(class_id, a.shape[0] - 4, "out")
    scale, zp = _quant(a, quant, "quant")
    nat = _dispatch.native()
    if nat is None:
        return decode_anchor_free_numpy(a, score_thr, cid, quant)
    return nat.yolo_decode_anchor_free(a, float(thr), cid, scale, zp)


# --------------------------------------------------------------------------- YOLOX

def yolox_grid(input_size: Tuple[int, int], strides: Sequence[int]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Anchor order of a YOLOX head for ``input_size = (width, height)``: per stride, row-major
    grid cells. Returns ``gx, gy, stride`` as ``(A,)`` float64."""
    w, h = int(input_size[0]), int(input_size[1])
    gx, gy, st = [], [], []
    for s in strides:
        ys, xs = np.mgrid[0:h // s, 0:w // s]
        gx.append(xs.reshape(-1))
        gy.append(ys.reshape(-1))
        st.append(np.full(xs.size, s))
    return (np.concatenate(gx).astype(np.float64), np.concatenate(gy).astype(np.float64),
            np.concatenate(st).astype(np.float64))


def _check_yolox(out, input_size, strides, class_id, quant):
    a = _check_flat(out, "out", False, 5)
    if len(input_size) != 2 or int(input_size[0]) <= 0 or int(input_size[1]) <= 0:
        raise ValueError(f"input_size: expected (width, height) > 0, got {input_size}")
    if not strides or any(int(s) <= 0 for s in strides):
        raise ValueError(f"strides: expected positive integers, got {strides}")
    gx, gy, st = yolox_grid(input_size, [int(s) for s in strides])
    if gx.size != a.shape[0]:
        raise ValueError(f"out: {a.shape[0]} anchors, but input_size {tuple(input_size)} with strides "
                         f"{tuple(strides)} gives {gx.size}; pass the model's input size")
    cid = _check_class(class_id, a.shape[1] - 5, "out")
    return a, gx, gy, st, cid, _quant(a, quant, "quant")


def decode_yolox_numpy(out, input_size, score_thr, class_id=0, strides=(8, 16, 32), quant=None,
                       decoded=False) -> Tuple[np.ndarray, np.ndarray]:
    """Readable twin of :func:`decode_yolox`."""
    thr = _check_thr(score_thr)
    a, gx, gy, st, cid, (scale, zp) = _check_yolox(out, input_size, strides, class_id, quant)
    cols = a[:, [4, 5 + cid]]
    v = cols.astype(np.float64) if a.dtype == np.float32 else dequantize(cols, scale, zp)
    score = (v[:, 0] * v[:, 1]).astype(np.float32)
    idx = np.nonzero(score >= thr)[0]
    if idx.size == 0:
        return _empty()
    r = a[idx, :4]
    r = r.astype(np.float64) if a.dtype == np.float32 else dequantize(r, scale, zp)
    if decoded:
        cx, cy, w, h = r.T
    else:
        s = st[idx]
        cx, cy = (r[:, 0] + gx[idx]) * s, (r[:, 1] + gy[idx]) * s
        w, h = np.exp(r[:, 2]) * s, np.exp(r[:, 3]) * s
    xyxy = np.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], axis=1)
    return xyxy.astype(np.float32), score[idx]


def decode_yolox(out: np.ndarray, input_size: Tuple[int, int], score_thr: float, class_id: int = 0,
                 strides: Sequence[int] = (8, 16, 32), quant: Quant = None,
                 decoded: bool = False) -> Tuple[np.ndarray, np.ndarray]:
    """Decode a YOLOX head ``(1, A, 5 + nc)``: per anchor ``x, y, w, h, objectness, classes...``.

    Args:
        out: raw head (``decoded=False``): ``x, y`` offsets in grid cells, ``w, h`` as log
            sizes in cells; or, with ``decoded=True``, ``cx, cy, w, h`` already in input pixels
            (an export with the grid decode inside the graph). Objectness and class scores
            are probabilities in both.
        input_size: the model input ``(width, height)``; with ``strides`` it fixes the anchor
            grid (per stride, row-major) and must account for exactly A anchors.
        score_thr: keep anchors with ``float32(obj * cls) >= score_thr`` (float32 compare).
        quant: ``(scale, zero_point)`` of an int8/uint8 output.

    Returns:
        ``boxes (M, 4)`` float32 ``x0, y0, x1, y1`` and ``scores (M,)`` float32, anchor order.
        Raw boxes: ``cx = (x + gx) s``, ``w = exp(w) s`` (float64). This layout needs the
        product of two scores per anchor, so it is not thresholded on the integers.
    """
    return decode_yolox_numpy(out, input_size, score_thr, class_id, strides, quant, decoded)


# --------------------------------------------------------------------------- YOLOX split per stride

def _check_yolox_split(boxes, objs, classes, strides, class_id, box_quant, obj_quant, cls_quant):
    n = len(boxes)
    if n == 0:
        raise ValueError("boxes: expected one (1, 4, h, w) box tensor per stride, got none")
    if len(objs) != n or len(classes) != n or len(strides) != n:
        raise ValueError(f"objs/classes/strides: expected {n} entries each (one per box tensor), got "
                         f"{len(objs)}, {len(classes)} and {len(strides)}")
    bq, oq, cq = (_per_level(box_quant, n, "box_quant"), _per_level(obj_quant, n, "obj_quant"),
                  _per_level(cls_quant, n, "cls_quant"))
    levels = []
    for i in range(n):
        b, o, c = _tensor(boxes[i], f"boxes[{i}]"), _tensor(objs[i], f"objs[{i}]"), _tensor(classes[i], f"classes[{i}]")
        if b.ndim != 4 or b.shape[:2] != (1, 4):
            raise ValueError(f"boxes[{i}]: expected (1, 4, h, w), got {b.shape}")
        if o.shape != (1, 1) + b.shape[2:]:
            raise ValueError(f"objs[{i}]: expected (1, 1, {b.shape[2]}, {b.shape[3]}) like boxes[{i}], got {o.shape}")
        cid, s = _check_level(b, c, class_id, strides[i], i)
        levels.append((b, _quant(b, bq[i], f"box_quant[{i}]"), o, _quant(o, oq[i], f"obj_quant[{i}]"),
                       c, _quant(c, cq[i], f"cls_quant[{i}]"), s, cid))
    return levels


def _values(a: np.ndarray, scale: float, zp: int) -> np.ndarray:
    return a.astype(np.float64) if a.dtype == np.float32 else dequantize(a, scale, zp)


def decode_yolox_split_numpy(boxes, objs, classes, strides, score_thr, class_id=0, box_quant=None, obj_quant=None,
                             cls_quant=None) -> Tuple[np.ndarray, np.ndarray]:
    """Readable twin of :func:`decode_yolox_split` (same arguments, same result)."""
    thr = _check_thr(score_thr)
    out_b, out_s = [], []
    for b, (bs, bzp), o, (os_, ozp), c, (cs, czp), s, cid in _check_yolox_split(
            boxes, objs, classes, strides, class_id, box_quant, obj_quant, cls_quant):
        h, w = b.shape[2:]
        score = (_values(o[0, 0].reshape(-1), os_, ozp) * _values(c[0, cid].reshape(-1), cs, czp)).astype(np.float32)
        idx = np.nonzero(score >= thr)[0]
        if idx.size == 0:
            continue
        r = _values(b[0].reshape(4, h * w)[:, idx], bs, bzp)
        cx = (r[0] + (idx % w).astype(np.float64)) * s
        cy = (r[1] + (idx // w).astype(np.float64)) * s
        bw, bh = exp_fixed(r[2]) * s, exp_fixed(r[3]) * s
        out_b.append(np.stack([cx - 0.5 * bw, cy - 0.5 * bh, cx + 0.5 * bw, cy + 0.5 * bh], axis=1).astype(np.float32))
        out_s.append(score[idx])
    if not out_b:
        return _empty()
    return np.concatenate(out_b), np.concatenate(out_s)


def decode_yolox_split(boxes: Sequence[np.ndarray], objs: Sequence[np.ndarray], classes: Sequence[np.ndarray],
                       strides: Sequence[int], score_thr: float, class_id: int = 0,
                       box_quant: Optional[Sequence[Quant]] = None, obj_quant: Optional[Sequence[Quant]] = None,
                       cls_quant: Optional[Sequence[Quant]] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Decode a YOLOX head split per stride (``host_tools build-rknn`` of a YOLOX export).

    Args:
        boxes: per level ``(1, 4, h, w)``: x, y offsets in grid cells, log width, log height.
        objs: per level ``(1, 1, h, w)`` objectness probabilities.
        classes: per level ``(1, nc, h, w)`` class probabilities.
        strides: per level the stride in input pixels.
        score_thr: keep anchors with ``float32(obj * cls) >= score_thr``.
        class_id: the class decoded (person = 0); the other classes are not read.
        box_quant, obj_quant, cls_quant: per level ``(scale, zero_point)`` of int8/uint8 tensors
            (required there, ignored for float32 ones), or None when all are float.

    Returns:
        ``boxes (M, 4)`` float32 ``x0, y0, x1, y1`` in input pixels and ``scores (M,)`` float32,
        level by level, row-major within a level (the anchor order of the single-output head).
    """
    thr = _check_thr(score_thr)
    levels = _check_yolox_split(boxes, objs, classes, strides, class_id, box_quant, obj_quant, cls_quant)
    nat = _dispatch.native()
    if nat is None or not hasattr(nat, "yolo_decode_yolox_split"):
        return decode_yolox_split_numpy(boxes, objs, classes, strides, score_thr, class_id, box_quant, obj_quant,
                                        cls_quant)
    args = [(b, bq[0], bq[1], o, oq[0], oq[1], c, cq[0], cq[1], s, cid) for b, bq, o, oq, c, cq, s, cid in levels]
    return nat.yolo_decode_yolox_split(args, float(thr))


# --------------------------------------------------------------------------- NMS

def _check_nms(boxes, scores, iou_thr, top_k):
    b = np.asarray(boxes)
    s = np.asarray(scores)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"boxes: expected (N, 4) x0, y0, x1, y1, got {b.shape}")
    if s.ndim != 1 or s.shape[0] != b.shape[0]:
        raise ValueError(f"scores: expected ({b.shape[0]},), one per box, got {s.shape}")
    b = np.ascontiguousarray(b, np.float32)
    s = np.ascontiguousarray(s, np.float32)
    if not (np.all(np.isfinite(b)) and np.all(np.isfinite(s))):
        raise ValueError("boxes/scores: contain NaN or inf (check the detector output)")
    thr = float(iou_thr)
    if not math.isfinite(thr):
        raise ValueError(f"iou_thr: must be a finite number, got {iou_thr}")
    if int(top_k) < 0:
        raise ValueError(f"top_k: must be >= 0, got {top_k}")
    return b, s, thr, int(top_k)


def box_iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU (float64) of one float32 box ``(4,)`` with ``(M, 4)`` boxes, the NMS's definition."""
    a = box.astype(np.float64)
    o = others.astype(np.float64)
    iw = np.maximum(np.minimum(a[2], o[:, 2]) - np.maximum(a[0], o[:, 0]), 0.0)
    ih = np.maximum(np.minimum(a[3], o[:, 3]) - np.maximum(a[1], o[:, 1]), 0.0)
    inter = iw * ih
    area_a = max(a[2] - a[0], 0.0) * max(a[3] - a[1], 0.0)
    area_o = np.maximum(o[:, 2] - o[:, 0], 0.0) * np.maximum(o[:, 3] - o[:, 1], 0.0)
    union = (area_a + area_o) - inter
    same = np.all(o == a, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), np.where(same, 1.0, 0.0))


def nms_boxes_numpy(boxes, scores, iou_thr, top_k=300) -> np.ndarray:
    """Readable twin of :func:`nms_boxes`."""
    b, s, thr, top_k = _check_nms(boxes, scores, iou_thr, top_k)
    order = np.argsort(-s, kind="stable")
    keep: List[int] = []
    while order.size and len(keep) < top_k:
        i = order[0]
        keep.append(int(i))
        rest = order[1:]
        order = rest[box_iou(b[i], b[rest]) <= thr]
    return np.asarray(keep, dtype=np.int64)


def nms_boxes(boxes_xyxy: np.ndarray, scores: np.ndarray, iou_thr: float, top_k: int = 300) -> np.ndarray:
    """Class-agnostic greedy IoU NMS.

    Args:
        boxes_xyxy: ``(N, 4)`` ``x0, y0, x1, y1`` (cast to float32).
        scores: ``(N,)`` (cast to float32).
        iou_thr: a box whose IoU with an already kept box is ``> iou_thr`` is dropped.
        top_k: keep at most this many.

    Returns:
        ``(K,)`` int64 indices of the kept boxes, highest score first (equal scores: lower
        index first). Rules in the module docstring.
    """
    b, s, thr, k = _check_nms(boxes_xyxy, scores, iou_thr, top_k)
    nat = _dispatch.native()
    if b.shape[0] == 0 or k == 0:
        return np.zeros(0, np.int64)
    if nat is None:
        return nms_boxes_numpy(b, s, thr, k)
    return nat.yolo_nms(b, s, thr, k)


# --------------------------------------------------------------------------- convenience

def postprocess(layout: str, outputs: Sequence[np.ndarray], score_thr: float, iou_thr: float,
                top_k: int = 300, class_id: int = 0, quant: Optional[Sequence[Quant]] = None,
                strides: Sequence[int] = (8, 16, 32), input_size: Optional[Tuple[int, int]] = None,
                decoded: bool = False) -> Tuple[np.ndarray, np.ndarray]:
    """Decode + NMS in one call -> ``(boxes (K, 4) float32, scores (K,) float32)``, best first.

    ``layout="dfl"``: ``outputs`` are the model zoo's 6 (box, class per stride) or 9 (box,
    class, score sum per stride) tensors in that order, ``quant`` one entry per output.
    ``"anchor_free"`` / ``"yolox"``: one output (``quant`` a one-entry list or None);
    ``"yolox"`` needs ``input_size``. ``"yolox_split"``: per stride box, objectness, classes.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout: expected one of {LAYOUTS}, got {layout!r}")
    outs = list(outputs)
    q = [None] * len(outs) if quant is None else list(quant)
    if len(q) != len(outs):
        raise ValueError(f"quant: expected one entry per output ({len(outs)}), got {len(q)}")
    if layout == "dfl":
        per = {6: 2, 9: 3}.get(len(outs)) if len(strides) == 3 else (
            len(outs) // len(strides) if len(outs) in (2 * len(strides), 3 * len(strides)) else None)
        if per is None:
            raise ValueError(f"outputs: expected 2 or 3 tensors per stride ({len(strides)} strides), got {len(outs)}")
        boxes, scores = decode_dfl(outs[0::per], outs[1::per], strides, score_thr, class_id, q[0::per], q[1::per],
                                   outs[2::per] if per == 3 else None, q[2::per] if per == 3 else None)
    elif layout == "yolox_split":
        if len(outs) != 3 * len(strides):
            raise ValueError(f"outputs: expected 3 tensors per stride ({len(strides)} strides), got {len(outs)}")
        boxes, scores = decode_yolox_split(outs[0::3], outs[1::3], outs[2::3], strides, score_thr, class_id,
                                           q[0::3], q[1::3], q[2::3])
    else:
        if len(outs) != 1:
            raise ValueError(f"outputs: the {layout} layout has one output, got {len(outs)}")
        if layout == "anchor_free":
            boxes, scores = decode_anchor_free(outs[0], score_thr, class_id, q[0])
        else:
            if input_size is None:
                raise ValueError("input_size: required for the yolox layout, as (width, height)")
            boxes, scores = decode_yolox(outs[0], input_size, score_thr, class_id, strides, q[0], decoded)
    keep = nms_boxes(boxes, scores, iou_thr, top_k)
    return boxes[keep], scores[keep]
