"""The native kernels fuzzed through their Python entry points (hypothesis): adversarial shapes,
strides, dtypes, NaN/inf, huge and tiny values. Every call returns a well-formed result or
raises a clean ValueError, nothing else; ``.ci/fuzz_asan.sh`` runs this module against a
build with AddressSanitizer + UBSan, where any out-of-bounds access aborts the run.

A few examples per test in the normal suite; ``EDGEPOSE_FUZZ_EXAMPLES=N`` sets how many
(the sanitizer run uses a few hundred).
"""
from __future__ import annotations

import os

import numpy as np
import pytest

hyp = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import edgepose  # noqa: E402
from edgepose.crop import warp_crops  # noqa: E402
from edgepose.decode import decode  # noqa: E402
from edgepose.nms import oks_nms, soft_oks_nms  # noqa: E402

# overflow/invalid warnings are the point of the inputs, not findings
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")
EXAMPLES = int(os.environ.get("EDGEPOSE_FUZZ_EXAMPLES", "25"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get("EDGEPOSE_FUZZ_RANDOM"),
                suppress_health_check=list(HealthCheck), database=None)
SPECIAL = [0.0, -0.0, 1.0, -1.0, 0.5, 1e-30, -1e-30, 1e-300, 1e30, -1e30, 1e300, 3.4e38, -3.4e38,
           float("nan"), float("inf"), float("-inf"), 2.0 ** 31, -(2.0 ** 31), 2.0 ** 63, 1e-45, 5e-324]
values = st.one_of(st.sampled_from(SPECIAL), st.floats(-1e4, 1e4, allow_nan=False), st.floats(allow_nan=True))


@pytest.fixture(autouse=True, scope="module")
def _native_if_built():
    """The fuzz targets the compiled kernels; the twins answer where the extension is absent."""
    before = edgepose.implementation()
    if edgepose.native_available():
        edgepose.set_implementation("native")
    yield
    edgepose.set_implementation("auto" if before == "native" else before)


def _array(draw, shape, dtype, special: bool) -> np.ndarray:
    """An array of ``shape``; random contents, or specials (NaN/inf/huge/tiny) mixed in."""
    n = int(np.prod(shape)) if len(shape) else 1
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    dt = np.dtype(dtype)
    if dt.kind == "u" or dt.kind == "i":
        info = np.iinfo(dt)
        a = rng.integers(info.min, int(info.max) + 1, n, dtype=np.int64).astype(dt)
    elif dt.kind == "b":
        a = rng.integers(0, 2, n).astype(bool)
    else:
        a = (rng.standard_normal(n) * draw(st.sampled_from([1e-3, 1.0, 10.0, 1e6]))).astype(dt)
        if special and n:
            k = draw(st.integers(1, min(n, 8)))
            with np.errstate(over="ignore", invalid="ignore"):
                a[rng.integers(0, n, k)] = np.array([draw(values) for _ in range(k)]).astype(dt)
    return a.reshape(shape)


def _strided(draw, a: np.ndarray) -> np.ndarray:
    """``a`` as is, or the same values behind a non-contiguous view (step, reversed, transposed)."""
    how = draw(st.sampled_from(["plain", "step", "reverse", "fortran"]))
    if how == "plain" or a.ndim == 0:
        return a
    if how == "fortran":
        return np.asfortranarray(a)
    if how == "reverse":
        big = np.ascontiguousarray(a[::-1])
        return big[::-1]
    big = np.repeat(a, 2, axis=0)
    return big[::2]


def _well_formed_or_value_error(fn, check):
    try:
        out = fn()
    except ValueError as exc:
        assert str(exc) and "\n" not in str(exc).strip(), repr(exc)
        event(f"ValueError: {str(exc).split(':')[0]}")  # --hypothesis-show-statistics lists them
        return None
    check(out)
    event("returned a result")
    return out


# ----------------------------------------------------------------------------- warp_crops

@st.composite
def warp_case(draw):
    h, w = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    ch = draw(st.sampled_from([3] * 12 + [1, 4]))
    dtype = draw(st.sampled_from([np.uint8] * 14 + [np.float32, np.int16]))
    frame = _strided(draw, _array(draw, (h, w, ch), dtype, False))
    if draw(st.booleans()) and frame.shape[0] > 1:
        frame = frame[:, ::-1] if draw(st.booleans()) else frame[::2]
    n = draw(st.integers(0, 3))
    base = np.array([[draw(st.floats(-4, 4)), draw(st.floats(-4, 4)), draw(st.floats(-100, 100))],
                     [draw(st.floats(-4, 4)), draw(st.floats(-4, 4)), draw(st.floats(-100, 100))]])
    m = np.repeat(base[None], n, axis=0)
    if n and draw(st.booleans()):
        m[draw(st.integers(0, n - 1)), draw(st.integers(0, 1)), draw(st.integers(0, 2))] = draw(values)
    m = m.astype(draw(st.sampled_from([np.float64, np.float32])))
    out_size = (draw(st.sampled_from([1, 2, 7, 48] * 4 + [0, -3])), draw(st.sampled_from([1, 3, 64] * 5 + [0])))
    layout = draw(st.sampled_from(["nchw", "nhwc"] * 8 + ["NCHW"]))
    mean = std = None
    if layout == "nchw" and draw(st.booleans()):
        mean = [draw(values) for _ in range(draw(st.sampled_from([3, 1, 2])))]
        std = [draw(values) for _ in range(len(mean))]
    border = draw(st.sampled_from([0, 114, 255, (1, 2, 3)] * 4 + [-1, 256, 1.5, (1, 2)]))
    return dict(frame=frame, matrices=m, out_size=out_size, to_rgb=draw(st.booleans()), mean=mean, std=std,
                layout=layout, rounding=draw(st.sampled_from(["fixed", "float"] * 8 + ["round"])), border_value=border)


@FUZZ
@given(warp_case())
def test_fuzz_warp_crops(case):
    def check(out):
        n, (w, h) = len(case["matrices"]), case["out_size"]
        if case["layout"] == "nhwc":
            assert out.dtype == np.uint8 and out.shape == (n, h, w, 3)
        else:
            assert out.dtype == np.float32 and out.shape == (n, 3, h, w)
        assert out.flags.c_contiguous

    _well_formed_or_value_error(lambda: warp_crops(**case), check)


# ----------------------------------------------------------------------------- decode

@st.composite
def decode_case(draw):
    n, k = draw(st.integers(0, 3)), draw(st.integers(1, 6))
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    dtype = draw(st.sampled_from([np.float32] * 6 + [np.int8, np.int8, np.uint8, np.uint8, np.float64, np.float16, np.int32]))
    shape = draw(st.sampled_from([(n, k, h, w)] * 10 + [(k, h, w), (n, k, h, w, 1)]))
    hm = _strided(draw, _array(draw, shape, dtype, draw(st.integers(0, 3)) == 0))
    kw = {}
    if draw(st.booleans()):
        inv = np.tile(np.array([[4.0, 0, 1], [0, 4.0, 2]]), (draw(st.sampled_from([n, n, n + 1])), 1, 1))
        if len(inv) and draw(st.booleans()):
            inv[0, draw(st.integers(0, 1)), draw(st.integers(0, 2))] = draw(values)
        kw["inv_matrices"] = inv
    if np.dtype(dtype).kind in "iu" or draw(st.integers(0, 9)) == 0:
        kw["scale"] = draw(st.sampled_from([0.01, 0.01, 0.01, 1.0, 1e-30, 1e30, 0.0, -1.0, float("nan"), float("inf")]))
        zp = [0, 0, 0, 127, -128] if np.dtype(dtype).kind == "i" else [0, 0, 0, 128, 255]
        kw["zero_point"] = draw(st.sampled_from(zp + [300, -1]))
    if draw(st.booleans()):
        kw["flipped"] = _strided(draw, _array(draw, hm.shape, dtype, draw(st.booleans())))
        hi = k if draw(st.integers(0, 4)) == 0 else k - 1
        pairs = [(draw(st.integers(0, hi)), draw(st.integers(0, hi))) for _ in range(draw(st.integers(0, 3)))]
        kw["flip_pairs"] = pairs
        kw["shift"] = draw(st.booleans())
    kw["refine"] = draw(st.sampled_from(["quarter", "quarter", "dark", "dark", "none", "udp"]))
    kw["dark_kernel"] = draw(st.sampled_from([3, 5, 11, 3, 5, 11, 4, 1, 99]))
    return hm, kw


@FUZZ
@given(decode_case())
def test_fuzz_decode(case):
    hm, kw = case

    def check(out):
        coords, scores = out
        n, k = hm.shape[0], hm.shape[1]
        assert coords.shape == (n, k, 2) and scores.shape == (n, k)
        assert coords.dtype.kind == "f" and scores.dtype.kind == "f"

    _well_formed_or_value_error(lambda: decode(hm, **kw), check)


@FUZZ
@given(n=st.integers(1, 700), dtype=st.sampled_from(["float32", "int8", "uint8", "int16"]),
       level=st.sampled_from(["scalar", "sse2", "avx2", "neon"]), data=st.data())
def test_fuzz_argmax_scans(n, dtype, level, data):
    """Every vectorised argmax scan the CPU has, on arrays of every size (each in its own
    allocation, so a read past the end lands in the sanitizer's red zone), == np.argmax."""
    if not edgepose.native_available():
        pytest.skip("edgepose._native not built")
    from edgepose import _native

    try:
        _native.set_simd_level(level)
    except ValueError:
        event(f"{level}: not on this CPU")
        return
    try:
        if dtype == "float32":
            a = np.array(data.draw(st.lists(values, min_size=n, max_size=n)), np.float32)
        else:
            info = np.iinfo(dtype)
            a = np.array(data.draw(st.lists(st.integers(int(info.min), int(info.max)), min_size=n, max_size=n)), dtype)
        a = a.copy()
        want = -1 if a.dtype == np.float32 and np.isnan(a).any() else int(np.argmax(a))
        assert _native.argmax_first(a) == want
    finally:
        _native.set_simd_level("auto")


# ----------------------------------------------------------------------------- OKS NMS

@st.composite
def nms_case(draw):
    n, k = draw(st.integers(0, 12)), draw(st.sampled_from([17, 17, 1, 5, 16]))
    dtype = draw(st.sampled_from([np.float32, np.float64, np.float64, np.float64, np.int64, np.float16]))
    kp = _strided(draw, _array(draw, (n, k, draw(st.sampled_from([3, 3, 3, 3, 3, 2]))), dtype, draw(st.integers(0, 2)) == 0))
    if n and draw(st.booleans()):  # duplicates: the NMS's reason to exist
        kp = np.concatenate([kp, kp[:1].repeat(3, 0)])
    m = len(kp)
    scores = _array(draw, (draw(st.sampled_from([m, m, m, m, m, m + 1])),), np.float64, draw(st.integers(0, 3)) == 0)
    areas = np.abs(_array(draw, (m,), np.float64, draw(st.integers(0, 3)) == 0)) * \
        draw(st.sampled_from([1e4, 1e4, 1e4, 1.0, 1e-30, 0.0, -1.0]))
    sigmas = None
    if draw(st.integers(0, 2)) == 0 or k != 17:
        sigmas = np.abs(_array(draw, (draw(st.sampled_from([k, k, k, k + 1])),), np.float64, draw(st.integers(0, 3)) == 0))
    return dict(keypoints=kp, scores=scores, areas=areas, thr=draw(values), sigmas=sigmas,
                vis_thr=draw(st.sampled_from([None, 0.2, float("nan"), -1.0])))


@FUZZ
@given(nms_case(), st.booleans())
def test_fuzz_oks_nms(case, soft):
    m = len(case["keypoints"])

    def check(out):
        keep = out[0] if soft else out
        keep = np.asarray(keep)
        assert keep.ndim == 1 and keep.dtype.kind == "i"
        assert len(set(keep.tolist())) == len(keep) and all(0 <= i < m for i in keep.tolist())
        if soft:
            assert len(out[1]) == len(keep)

    fn = soft_oks_nms if soft else oks_nms
    _well_formed_or_value_error(lambda: fn(**case), check)


# ----------------------------------------------------------------------------- detector (yolo)

yolo = pytest.importorskip("edgepose.yolo") if os.path.exists(os.path.join(os.path.dirname(edgepose.__file__), "yolo.py")) else None


@pytest.mark.skipif(yolo is None, reason="edgepose.yolo not in this checkout")
@FUZZ
@given(st.data())
def test_fuzz_box_nms(data):
    n = data.draw(st.integers(0, 20))
    boxes = _array(data.draw, (n, data.draw(st.sampled_from([4, 4, 5]))), data.draw(st.sampled_from([np.float32, np.float64])),
                   data.draw(st.booleans()))
    if n and data.draw(st.booleans()):
        boxes[:, 2:4] = boxes[:, 0:2] + np.abs(boxes[:, 2:4])
    scores = _array(data.draw, (data.draw(st.sampled_from([n, n, n + 1])),), np.float32, data.draw(st.booleans()))
    iou = data.draw(values)
    top_k = data.draw(st.sampled_from([300, 1, 0, -1]))

    def check(keep):
        keep = np.asarray(keep)
        assert keep.ndim == 1 and len(set(keep.tolist())) == len(keep) and all(0 <= i < n for i in keep.tolist())

    _well_formed_or_value_error(lambda: yolo.nms_boxes(boxes, scores, iou, top_k), check)


def _quant_for(draw, dtype):
    if np.dtype(dtype).kind in "iu" or draw(st.integers(0, 5)) == 0:
        return (draw(st.sampled_from([0.05, 1.0, 1e-30, 1e30, 0.0, -1.0, float("nan")])),
                draw(st.sampled_from([0, -128, 127, 255, 300])))
    return None


@pytest.mark.skipif(yolo is None, reason="edgepose.yolo not in this checkout")
@FUZZ
@given(st.data())
def test_fuzz_yolo_decode_dfl(data):
    d = data.draw
    levels = d(st.integers(1, 3))
    nc, r = d(st.sampled_from([1, 2, 80])), d(st.sampled_from([16, 16, 1, 3]))
    dtype = d(st.sampled_from([np.float32, np.float32, np.int8, np.uint8, np.float64]))
    boxes, classes, strides, bq, cq = [], [], [], [], []
    for i in range(levels):
        h, w = d(st.integers(1, 6)), d(st.integers(1, 6))
        boxes.append(_strided(d, _array(d, (1, 4 * r + d(st.sampled_from([0, 0, 0, 1])), h, w), dtype, d(st.booleans()))))
        classes.append(_array(d, (1, nc, h + d(st.sampled_from([0, 0, 0, 1])), w), dtype, d(st.booleans())))
        strides.append(d(st.sampled_from([8, 16, 32, 0, -8])))
        bq.append(_quant_for(d, dtype))
        cq.append(_quant_for(d, dtype))
    any_q = any(q is not None for q in bq + cq)
    thr, cid = d(values), d(st.sampled_from([0, 0, nc - 1, nc, -1]))

    def check(out):
        b, sc = out
        assert b.dtype == np.float32 and sc.dtype == np.float32 and b.shape == (len(sc), 4)

    _well_formed_or_value_error(lambda: yolo.decode_dfl(boxes, classes, strides, thr, cid, bq if any_q else None,
                                                        cq if any_q else None), check)


@pytest.mark.skipif(yolo is None, reason="edgepose.yolo not in this checkout")
@FUZZ
@given(st.data())
def test_fuzz_yolo_decode_anchor_free(data):
    d = data.draw
    nc, a = d(st.sampled_from([1, 2, 80])), d(st.integers(0, 50))
    dtype = d(st.sampled_from([np.float32, np.float32, np.int8, np.uint8, np.float64]))
    shape = d(st.sampled_from([(1, 4 + nc, a), (4 + nc, a), (1, a, 4 + nc), (2, 4 + nc, a), (3,)]))
    out = _strided(d, _array(d, shape, dtype, d(st.booleans())))
    q, thr, cid = _quant_for(d, dtype), d(values), d(st.sampled_from([0, nc - 1, nc, -1]))

    def check(res):
        b, sc = res
        assert b.dtype == np.float32 and sc.dtype == np.float32 and b.shape == (len(sc), 4)

    _well_formed_or_value_error(lambda: yolo.decode_anchor_free(out, thr, cid, q), check)
