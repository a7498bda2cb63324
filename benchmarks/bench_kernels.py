"""Each native kernel against its NumPy twin, a numba-jitted version of the same loop, and what
a savvy user writes instead. Run: ``pytest benchmarks`` (prints the ratio table at the end).

Numbers depend on the machine and its load; every ratio in the table is measured in one process.
"""
from __future__ import annotations

import importlib
import math
import statistics
import time

import cv2
import numpy as np
import pytest

import edgepose
from edgepose.geometry import crop_matrices, get_affine_transform
from edgepose.keypoints import COCO

numba = pytest.importorskip("numba")
njit = numba.njit

crop = importlib.import_module("edgepose.crop")
dec = importlib.import_module("edgepose.decode")
nms = importlib.import_module("edgepose.nms")

if not edgepose.native_available():  # pragma: no cover
    pytest.skip("edgepose._native is not built: nothing to compare", allow_module_level=True)

PERSONS = [1, 4, 16]
IN_W, IN_H = 192, 256
MEAN = np.array([123.675, 116.28, 103.53])  # RGB order
STD = np.array([58.395, 57.12, 57.375])


@pytest.fixture(autouse=True)
def _native_impl():
    edgepose.set_implementation("native")
    yield
    edgepose.set_implementation("auto")


# ----------------------------------------------------------------------------- numba twins

@njit(cache=False, nogil=True)
def _decode_numba(hm, inv, scale, zp, quantized):
    n, k, h, w = hm.shape
    coords = np.zeros((n, k, 2), np.float32)
    scores = np.zeros((n, k), np.float32)
    for i in range(n):
        for j in range(k):
            m = hm[i, j]
            best = m[0, 0]
            by = 0
            bx = 0
            for y in range(h):
                for x in range(w):
                    if m[y, x] > best:
                        best = m[y, x]
                        by = y
                        bx = x
            s = np.float32((np.int32(best) - zp) * scale) if quantized else np.float32(best)
            scores[i, j] = s
            fx = 0.0
            fy = 0.0
            if s > 0:
                fx = float(bx)
                fy = float(by)
                if 1 < bx < w - 1 and 1 < by < h - 1:
                    dx = float(m[by, bx + 1]) - float(m[by, bx - 1])
                    dy = float(m[by + 1, bx]) - float(m[by - 1, bx])
                    fx += 0.25 * ((dx > 0) - (dx < 0))
                    fy += 0.25 * ((dy > 0) - (dy < 0))
            t = inv[i]
            coords[i, j, 0] = t[0, 0] * fx + t[0, 1] * fy + t[0, 2]
            coords[i, j, 1] = t[1, 0] * fx + t[1, 1] * fy + t[1, 2]
    return coords, scores


@njit(cache=False, nogil=True)
def _warp_numba(frame, invs, out_w, out_h, lut, to_rgb):
    """Same fixed-point bilinear as the native kernel, NCHW float32 through a per-channel LUT."""
    n = invs.shape[0]
    h, w = frame.shape[0], frame.shape[1]
    out = np.empty((n, 3, out_h, out_w), np.float32)
    for i in range(n):
        a = invs[i]
        adx = np.empty(out_w, np.int64)
        ady = np.empty(out_w, np.int64)
        for x in range(out_w):
            adx[x] = np.int64(np.rint(a[0, 0] * x * 1024.0))
            ady[x] = np.int64(np.rint(a[1, 0] * x * 1024.0))
        for y in range(out_h):
            x0 = np.int64(np.rint((a[0, 1] * y + a[0, 2]) * 1024.0)) + 16
            y0 = np.int64(np.rint((a[1, 1] * y + a[1, 2]) * 1024.0)) + 16
            for x in range(out_w):
                X = (x0 + adx[x]) >> 5
                Y = (y0 + ady[x]) >> 5
                ix = X >> 5
                iy = Y >> 5
                fx = X & 31
                fy = Y & 31
                for c in range(3):
                    src = 2 - c if to_rgb else c
                    acc = 0
                    for r in range(2):
                        yy = iy + r
                        if yy < 0 or yy >= h:
                            continue
                        wy = fy if r == 1 else 32 - fy
                        for q in range(2):
                            xx = ix + q
                            if xx < 0 or xx >= w:
                                continue
                            wx = fx if q == 1 else 32 - fx
                            acc += wx * wy * np.int64(frame[yy, xx, src])
                    v = (acc + 512) >> 10
                    if ix < -1 or ix >= w or iy < -1 or iy >= h:
                        v = 0
                    out[i, c, y, x] = lut[c, v]
    return out


@njit(cache=False, nogil=True)
def _oks_nms_numba(kpts, scores, areas, sigmas, thr):
    n, k = kpts.shape[0], kpts.shape[1]
    var = (sigmas * 2) ** 2
    order = np.argsort(scores, kind="mergesort")[::-1].copy()
    keep = np.empty(n, np.int64)
    nk = 0
    m = n
    eps = 2.220446049250313e-16
    while m > 0:
        g = order[0]
        keep[nk] = g
        nk += 1
        out = 0
        for t in range(1, m):
            d = order[t]
            tot = 0.0
            for j in range(k):
                dx = kpts[d, j, 0] - kpts[g, j, 0]
                dy = kpts[d, j, 1] - kpts[g, j, 1]
                e = (dx * dx + dy * dy) / var[j] / ((areas[g] + areas[d]) / 2 + eps) / 2
                tot += math.exp(-e)
            if tot / k <= thr:
                order[out] = d
                out += 1
        m = out
    return keep[:nk]


# ----------------------------------------------------------------------------- what users write

def _reference_affine(center, scale, output_size, inv):
    """The original project's get_affine_transform (rot 0, shift 0): three point pairs (centre,
    a point up the box's vertical at half its width, the third point perpendicular to those)
    handed to cv2.getAffineTransform, once per person."""
    src_w = scale[0] * 200.0
    dst_w, dst_h = output_size
    src_dir = np.array([0.0, src_w * -0.5])
    dst_dir = np.array([0.0, dst_w * -0.5], np.float32)
    src = np.zeros((3, 2), np.float32)
    dst = np.zeros((3, 2), np.float32)
    src[0] = center
    src[1] = center + src_dir
    dst[0] = [dst_w * 0.5, dst_h * 0.5]
    dst[1] = np.array([dst_w * 0.5, dst_h * 0.5]) + dst_dir
    for pts in (src, dst):  # third point: the second turned 90 degrees about the first
        d = pts[0] - pts[1]
        pts[2] = pts[1] + np.array([-d[1], d[0]], np.float32)
    return cv2.getAffineTransform(dst, src) if inv else cv2.getAffineTransform(src, dst)


def reference_decode(hm, centers, scales, heatmap_size):
    """What the original project's get_final_preds does (written here from its steps): argmax
    and amax over the flattened maps, a mask for maxima <= 0, a Python loop for the quarter
    offset, then per person its inverse affine applied point by point (transform_preds)."""
    n, k, h, w = hm.shape
    flat = hm.reshape(n, k, -1)
    idx = np.argmax(flat, 2).reshape(n, k, 1)
    maxvals = np.amax(flat, 2).reshape(n, k, 1)
    preds = np.tile(idx, (1, 1, 2)).astype(np.float32)
    preds[:, :, 0] = preds[:, :, 0] % w
    preds[:, :, 1] = np.floor(preds[:, :, 1] / w)
    preds *= np.tile(np.greater(maxvals, 0.0), (1, 1, 2)).astype(np.float32)
    for i in range(n):
        for j in range(k):
            m = hm[i, j]
            px, py = int(math.floor(preds[i, j, 0] + 0.5)), int(math.floor(preds[i, j, 1] + 0.5))
            if 1 < px < w - 1 and 1 < py < h - 1:
                diff = np.array([m[py][px + 1] - m[py][px - 1], m[py + 1][px] - m[py - 1][px]])
                preds[i, j] += np.sign(diff) * 0.25
    out = np.zeros(preds.shape)
    for i in range(n):
        t = _reference_affine(centers[i], scales[i], heatmap_size, inv=True)
        for j in range(k):
            out[i, j, 0:2] = np.dot(t, np.array([preds[i, j, 0], preds[i, j, 1], 1.0]).T)[:2]
    return out, maxvals


def reference_oks_nms(kpts, scores, areas, thr, sigmas):
    """Reference-project style OKS NMS: one Python loop iteration per candidate pair."""
    var = (sigmas * 2) ** 2
    flat = kpts.reshape(len(kpts), -1)
    order = scores.argsort()[::-1]
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(i)
        g = flat[i]
        ious = np.zeros(order.size - 1)
        for t, j in enumerate(order[1:]):
            d = flat[j]
            dx, dy = d[0::3] - g[0::3], d[1::3] - g[1::3]
            e = (dx ** 2 + dy ** 2) / var / ((areas[i] + areas[j]) / 2 + np.spacing(1)) / 2
            ious[t] = np.sum(np.exp(-e)) / e.shape[0]
        order = order[np.where(ious <= thr)[0] + 1]
    return keep


def cv2_warp_blob(frame, mats):
    """cv2.warpAffine per box + cv2.dnn.blobFromImages (swapRB, mean; blobFromImages takes one
    scalar scale, so the mean std stands in for the per-channel one)."""
    crops = [cv2.warpAffine(frame, m, (IN_W, IN_H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
             for m in mats]
    return cv2.dnn.blobFromImages(crops, 1.0 / float(STD.mean()), (IN_W, IN_H), MEAN[::-1].tolist(), swapRB=True)


def cv2_warp(frame, mats):
    return [cv2.warpAffine(frame, m, (IN_W, IN_H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            for m in mats]


# ----------------------------------------------------------------------------- inputs

def _heatmaps(n, seed=0):
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:64, 0:48]
    cx = rng.uniform(2, 46, (n, 17, 1, 1))
    cy = rng.uniform(2, 62, (n, 17, 1, 1))
    hm = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / 8.0) + rng.normal(0, 0.02, (n, 17, 64, 48))
    hm = hm.astype(np.float32)
    centers = rng.uniform(100, 900, (n, 2))
    scales = rng.uniform(0.5, 2.5, (n, 2))
    inv = get_affine_transform(centers, scales, 0.0, (48, 64), inv=True).reshape(n, 2, 3)
    return hm, centers, scales, inv


def _boxes(n, fw, fh, seed=0):
    rng = np.random.default_rng(seed)
    bw = rng.uniform(0.1, 0.4, n) * fw
    bh = np.minimum(bw * rng.uniform(1.5, 2.5, n), fh * 0.9)
    x = rng.uniform(0, fw - bw)
    y = rng.uniform(0, fh - bh)
    return np.stack([x, y, bw, bh], 1)


def _poses(n, seed=0):
    """n candidates around n/5 people (what duplicate detections look like)."""
    rng = np.random.default_rng(seed)
    people = max(1, n // 5)
    base = rng.uniform(100, 1000, (people, 17, 2))
    who = rng.integers(0, people, n)
    jitter = np.exp(rng.uniform(np.log(0.003), 0, (n, 1, 1)))
    xy = base[who] + rng.normal(0, 20, (n, 17, 2)) * jitter
    kp = np.concatenate([xy, rng.uniform(0, 1, (n, 17, 1))], 2)
    return kp, rng.uniform(0.1, 1, n), rng.uniform(5000, 40000, n)


# ----------------------------------------------------------------------------- decode

@pytest.mark.parametrize("n", PERSONS)
@pytest.mark.parametrize("impl", ["native", "numpy twin", "numba loop", "original get_final_preds (reimplemented)"])
def test_decode_float32(measure, n, impl):
    hm, centers, scales, inv = _heatmaps(n)
    group = f"decode 17x64x48 float32, {n} person(s)"
    if impl == "native":
        fn = lambda: edgepose.decode(hm, inv)  # noqa: E731
    elif impl == "numpy twin":
        fn = lambda: dec.decode_numpy(hm, inv)  # noqa: E731
    elif impl == "numba loop":
        fn = lambda: _decode_numba(hm, inv, 1.0, 0, False)  # noqa: E731
    else:
        fn = lambda: reference_decode(hm, centers, scales, (48, 64))  # noqa: E731
    coords, _ = measure(group, impl, fn)
    ref, _ = edgepose.decode(hm, inv)
    np.testing.assert_allclose(coords, ref, rtol=1e-5, atol=1e-2)


@pytest.mark.parametrize("n", PERSONS)
@pytest.mark.parametrize("impl", ["native", "native float32 decode of the same maps", "numpy twin", "numba loop",
                                  "dequantize + native float32"])
def test_decode_int8(measure, n, impl):
    hm, _, _, inv = _heatmaps(n)
    scale, zp = 1.0 / 120, -10
    q = np.clip(np.round(hm / scale) + zp, -128, 127).astype(np.int8)
    group = f"decode 17x64x48 int8, {n} person(s)"
    if impl == "native":
        fn = lambda: edgepose.decode(q, inv, scale=scale, zero_point=zp)  # noqa: E731
    elif impl == "native float32 decode of the same maps":
        fn = lambda: edgepose.decode(hm, inv)  # noqa: E731
    elif impl == "numpy twin":
        fn = lambda: dec.decode_numpy(q, inv, scale=scale, zero_point=zp)  # noqa: E731
    elif impl == "numba loop":
        fn = lambda: _decode_numba(q, inv, scale, zp, True)  # noqa: E731
    else:
        fn = lambda: edgepose.decode((q.astype(np.float32) - zp) * np.float32(scale), inv)  # noqa: E731
    measure(group, impl, fn)


@pytest.mark.parametrize("n", [4])
@pytest.mark.parametrize("impl", ["native", "native flip_merge + decode", "numpy twin"])
def test_decode_flip(measure, n, impl):
    hm, _, _, inv = _heatmaps(n)
    fl, _, _, _ = _heatmaps(n, seed=1)
    group = f"decode float32 with flip test, {n} person(s)"
    pairs = COCO.flip_pairs
    if impl == "native":
        fn = lambda: edgepose.decode(hm, inv, flipped=fl, flip_pairs=pairs)  # noqa: E731
    elif impl == "native flip_merge + decode":
        fn = lambda: edgepose.decode(edgepose.flip_merge(hm, fl, pairs), inv)  # noqa: E731
    else:
        fn = lambda: dec.decode_numpy(hm, inv, flipped=fl, flip_pairs=pairs)  # noqa: E731
    measure(group, impl, fn)


# ----------------------------------------------------------------------------- decode vs memcpy

FLOOR: "dict[tuple, tuple]" = {}


def _interleaved(fns, rounds=41, budget_s=0.5):
    """Time each of ``fns`` round by round, in alternation, so that a change of load on a shared
    machine hits all of them alike. Returns, per fn, the fastest round's seconds per call (the
    least disturbed) and the median of its per-round ratios to ``fns[0]``."""
    for f in fns:
        f()  # warm-up
    t0 = time.perf_counter()
    fns[0]()
    once = max(time.perf_counter() - t0, 1e-7)
    iters = max(1, int(budget_s / rounds / len(fns) / once))
    per = [[] for _ in fns]
    for _ in range(rounds):
        for i, f in enumerate(fns):
            t0 = time.perf_counter()
            for _ in range(iters):
                f()
            per[i].append((time.perf_counter() - t0) / iters)
    best = [min(p) for p in per]
    ratios = [statistics.median(a / b for a, b in zip(p, per[0])) for p in per]
    return best, ratios


def _floor_lines():
    level = importlib.import_module("edgepose._native").simd_level()
    out = [f"decode scans: {level}; timed in alternation in one process, 41 rounds: the fastest round's "
           "time per call, decode / memcpy of those, and (in brackets) the median of the 41 rounds' ratios",
           f"{'heatmaps':<32s}{'decode':>10s}{'memcpy':>10s}{'decode/memcpy':>20s}{'np.argmax alone':>17s}"]
    for (n, dt), (best, ratios) in sorted(FLOOR.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        out.append(f"{f'17x64x48 {dt}, {n} person(s)':<32s}{best[0] * 1e6:8.1f}us{best[1] * 1e6:8.1f}us"
                   f"{best[0] / best[1]:9.2f}x ({1 / ratios[1]:.2f}x){best[2] * 1e6:15.1f}us")
    return out


@pytest.mark.parametrize("dtype", ["float32", "int8"])
@pytest.mark.parametrize("n", PERSONS)
def test_decode_vs_memcpy(report_table, n, dtype):
    """The public ``edgepose.decode`` (validation included) against a memcpy of the same heatmaps
    into a preallocated array (``np.copyto``): the floor that any decode reading the maps meets."""
    hm, _, _, inv = _heatmaps(n)
    kw = {}
    if dtype == "int8":
        kw = dict(scale=1.0 / 120, zero_point=-10)
        hm = np.clip(np.round(hm * 120) - 10, -128, 127).astype(np.int8)
    dst = np.empty_like(hm)
    flat = hm.reshape(n, 17, -1)
    c, s = edgepose.decode(hm, inv, **kw)
    c2, s2 = dec.decode_numpy(hm, inv, **kw)
    np.testing.assert_array_equal(c, c2)
    np.testing.assert_array_equal(s, s2)
    FLOOR[(n, dtype)] = _interleaved([lambda: edgepose.decode(hm, inv, **kw), lambda: np.copyto(dst, hm),
                                      lambda: flat.argmax(2)])
    report_table("decode vs a memcpy of the same heatmaps (benchmarks/bench_kernels.py -k memcpy)", _floor_lines)


# ----------------------------------------------------------------------------- warp

FRAMES = {"640x480": (640, 480), "1920x1080": (1920, 1080)}


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(0)
    out = {}
    for name, (w, h) in FRAMES.items():
        # smooth content, like a camera frame, not noise
        small = rng.integers(0, 256, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
        out[name] = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    return out


def _warp_fn(impl, frame, mats):
    """The warp variants shared by the upright and rotated benchmarks (None for the others)."""
    if impl == "native":
        return lambda: edgepose.warp_crops(frame, mats, (IN_W, IN_H), to_rgb=True, mean=MEAN, std=STD)
    if impl == "native uint8 NHWC":
        return lambda: edgepose.warp_crops(frame, mats, (IN_W, IN_H), layout="nhwc")
    if impl.startswith("native, float"):
        return lambda: edgepose.warp_crops(frame, mats, (IN_W, IN_H), to_rgb=True, mean=MEAN, std=STD,
                                           rounding="float")
    if impl == "cv2.warpAffine per box + blobFromImages":
        return lambda: cv2_warp_blob(frame, mats)
    if impl == "cv2.warpAffine per box alone":
        return lambda: cv2_warp(frame, mats)
    return None


@pytest.mark.parametrize("n", PERSONS)
@pytest.mark.parametrize("fname", list(FRAMES))
@pytest.mark.parametrize("impl", ["native", "native uint8 NHWC", "native, float rounding (OpenCV 5)",
                                  "cv2.warpAffine per box + blobFromImages", "cv2.warpAffine per box alone",
                                  "numba loop", "numpy twin"])
def test_warp(measure, frames, fname, n, impl):
    frame = frames[fname]
    mats = crop_matrices(_boxes(n, *FRAMES[fname]), (IN_W, IN_H))[2]
    group = f"crop {IN_H}x{IN_W} from {fname}, {n} person(s) -> RGB float32 NCHW"
    mean, std = MEAN, STD
    fn = _warp_fn(impl, frame, mats)
    if impl == "numba loop":
        invs = np.stack([crop._inverse_cv(m) for m in mats])
        lut = ((np.arange(256, dtype=np.float32)[None] - mean[:, None].astype(np.float32)) / std[:, None].astype(np.float32))
        fn = lambda: _warp_numba(frame, invs, IN_W, IN_H, lut.astype(np.float32), True)  # noqa: E731
    elif impl == "numpy twin":
        if n > 4 or fname != "640x480":
            pytest.skip("the NumPy twin is the readable spec: timed on the small cases only")
        fn = lambda: crop.warp_crops_numpy(frame, mats, (IN_W, IN_H), True, mean, std)  # noqa: E731
    out = measure(group, impl, fn)
    if impl in ("numba loop", "numpy twin"):
        np.testing.assert_array_equal(out, edgepose.warp_crops(frame, mats, (IN_W, IN_H), True, mean, std))
    if impl.startswith("native, float") and n == 1:
        twin = crop.warp_crops_numpy(frame, mats, (IN_W, IN_H), True, mean, std, rounding="float")
        np.testing.assert_array_equal(out, twin)


# ----------------------------------------------------------------------------- OKS NMS

@pytest.mark.parametrize("n", [20, 100])
@pytest.mark.parametrize("impl", ["native", "numpy twin", "numba loop", "reference Python loop"])
def test_oks_nms(measure, n, impl):
    kp, sc, ar = _poses(n)
    sig = np.asarray(COCO.sigmas)
    group = f"OKS NMS, {n} candidates, thr 0.9"
    if impl == "native":
        fn = lambda: edgepose.oks_nms(kp, sc, ar, 0.9)  # noqa: E731
    elif impl == "numpy twin":
        fn = lambda: nms.oks_nms_numpy(kp, sc, ar, 0.9)  # noqa: E731
    elif impl == "numba loop":
        fn = lambda: _oks_nms_numba(kp, sc, ar, sig, 0.9)  # noqa: E731
    else:
        fn = lambda: reference_oks_nms(kp, sc, ar, 0.9, sig)  # noqa: E731
    keep = measure(group, impl, fn)
    np.testing.assert_array_equal(np.asarray(keep), edgepose.oks_nms(kp, sc, ar, 0.9))


@pytest.mark.parametrize("impl", ["native", "native uint8 NHWC", "native, float rounding (OpenCV 5)",
                                  "cv2.warpAffine per box + blobFromImages", "cv2.warpAffine per box alone"])
def test_warp_rotated(measure, frames, impl):
    """Rotated crops (training-time augmentation) take the general per-pixel path."""
    frame = frames["1920x1080"]
    mats = crop_matrices(_boxes(4, 1920, 1080), (IN_W, IN_H), rot=np.array([20.0, -35.0, 10.0, 40.0]))[2]
    group = f"crop {IN_H}x{IN_W} from 1920x1080, 4 person(s), rotated"
    fn = _warp_fn(impl, frame, mats)
    measure(group, impl, fn)
