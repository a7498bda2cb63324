"""The YOLOX split decode (edgepose.yolo.decode_yolox_split): native == NumPy twin to the bit,
both == an independent reference written plainly below (anchor by anchor, math.exp), on random,
planted and adversarial outputs: float32, int8 and uint8, ties, the threshold border, all-negative,
empty levels, NaN, a non-monotone int8 prefilter; and == the single-output YOLOX decode on the
same values."""
import importlib
import math

import numpy as np
import pytest

import edgepose

yolo = importlib.import_module("edgepose.yolo")
native = pytest.mark.skipif(not edgepose.native_available(), reason="edgepose._native not built")
IMPLS = ["numpy", pytest.param("native", marks=native)]
STRIDES = (8, 16, 32)
INT8_PROB = (1 / 255, -128)  # how RKNN quantizes a sigmoid output


@pytest.fixture(autouse=True)
def _auto_impl():
    edgepose.set_implementation("auto")
    yield
    edgepose.set_implementation("auto")


def ref_decode(boxes, objs, classes, strides, thr, class_id=0, bq=None, oq=None, cq=None):
    """Anchor by anchor, level by level: dequantize, score = obj * cls, grid decode."""
    n = len(boxes)
    bq, oq, cq = bq or [None] * n, oq or [None] * n, cq or [None] * n

    def val(a, q):
        return float(a) if q is None or a.dtype == np.float32 else (int(a) - q[1]) * q[0]

    out_b, out_s = [], []
    for li in range(n):
        _, _, h, w = boxes[li].shape
        s = strides[li]
        for gy in range(h):
            for gx in range(w):
                sc = np.float32(val(objs[li][0, 0, gy, gx], oq[li]) * val(classes[li][0, class_id, gy, gx], cq[li]))
                if not sc >= np.float32(thr):
                    continue
                x, y, lw, lh = (val(boxes[li][0, k, gy, gx], bq[li]) for k in range(4))
                cx, cy = (x + gx) * s, (y + gy) * s
                bw, bh = math.exp(lw) * s, math.exp(lh) * s
                out_b.append([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2])
                out_s.append(sc)
    return np.asarray(out_b, np.float32).reshape(-1, 4), np.asarray(out_s, np.float32)


def random_head(rng, wh=(96, 64), nc=3, dtype="float32", density=0.1):
    w, h = wh
    grids = [(h // s, w // s) for s in STRIDES]
    if dtype == "float32":
        b = [rng.normal(0, 1, (1, 4, gh, gw)).astype(np.float32) for gh, gw in grids]
        o = [np.where(rng.random((1, 1, gh, gw)) < density, rng.uniform(0.5, 1, (1, 1, gh, gw)),
                      rng.uniform(0, 0.2, (1, 1, gh, gw))).astype(np.float32) for gh, gw in grids]
        c = [rng.uniform(0, 1, (1, nc, gh, gw)).astype(np.float32) for gh, gw in grids]
        return b, o, c, None, None, None
    info = np.iinfo(dtype)
    b = [rng.integers(info.min, info.max + 1, (1, 4, gh, gw)).astype(dtype) for gh, gw in grids]
    o = [rng.integers(info.min, info.max + 1, (1, 1, gh, gw)).astype(dtype) for gh, gw in grids]
    c = [rng.integers(info.min, info.max + 1, (1, nc, gh, gw)).astype(dtype) for gh, gw in grids]
    zb, zp = (-10, -128) if dtype == "int8" else (118, 0)
    return b, o, c, [(0.03, zb)] * 3, [(1 / 255, zp)] * 3, [(1 / 255, zp)] * 3


def check_all(b, o, c, thr, cid=0, bq=None, oq=None, cq=None, min_hits=0):
    edgepose.set_implementation("numpy")
    twin = yolo.decode_yolox_split(b, o, c, STRIDES, thr, cid, bq, oq, cq)
    got = [twin]
    if edgepose.native_available():
        edgepose.set_implementation("native")
        nat = yolo.decode_yolox_split(b, o, c, STRIDES, thr, cid, bq, oq, cq)
        np.testing.assert_array_equal(nat[0], twin[0])  # to the bit (NaN == NaN here)
        np.testing.assert_array_equal(nat[1], twin[1])
        got.append(nat)
    rb, rs = ref_decode(b, o, c, STRIDES, thr, cid, bq, oq, cq)
    for gb, gs in got:
        assert gb.dtype == np.float32 and gs.dtype == np.float32 and gb.shape == (len(gs), 4)
        np.testing.assert_array_equal(gs, rs)  # the same anchors, in the same order, the same scores
        np.testing.assert_allclose(gb, rb, rtol=1e-6, atol=1e-4)
    assert len(rs) >= min_hits
    return twin


@pytest.mark.parametrize("dtype", ["float32", "int8", "uint8"])
@pytest.mark.parametrize("seed", range(3))
def test_random_heads(dtype, seed):
    rng = np.random.default_rng(seed)
    b, o, c, bq, oq, cq = random_head(rng, dtype=dtype)
    check_all(b, o, c, 0.3, 1, bq, oq, cq, min_hits=1)
    check_all(b, o, c, 0.0, 2, bq, oq, cq, min_hits=len(o[0].ravel()))  # dense: every anchor passes


def test_planted_boxes_come_back():
    w, h = 96, 64
    b = [np.zeros((1, 4, h // s, w // s), np.float32) for s in STRIDES]
    o = [np.zeros((1, 1, h // s, w // s), np.float32) for s in STRIDES]
    c = [np.zeros((1, 2, h // s, w // s), np.float32) for s in STRIDES]
    # a 40x24 box centred at (52, 20) at stride 8: cell (6, 2), offsets 0.5, 0.5
    b[0][0, :, 2, 6] = [0.5, 0.5, math.log(40 / 8), math.log(24 / 8)]
    o[0][0, 0, 2, 6], c[0][0, 0, 2, 6] = 0.9, 0.8
    c[1][0, 1, 1, 1], o[1][0, 0, 1, 1] = 0.99, 0.99  # another class: not a person
    bb, ss = check_all(b, o, c, 0.25)
    np.testing.assert_allclose(bb, [[32, 8, 72, 32]], atol=1e-5)
    assert ss.tolist() == [np.float32(np.float64(np.float32(0.9)) * np.float64(np.float32(0.8)))]


def test_ties_border_and_all_negative():
    rng = np.random.default_rng(5)
    b, o, c, bq, oq, cq = random_head(rng, dtype="int8")
    # the border: the score of a whole level is exactly the threshold (float32 compare, >=)
    o2 = [np.full_like(x, 127) for x in o]  # obj = 255/255 = 1.0
    c2 = [np.full_like(x, -128 + 100) for x in c]  # cls = 100/255
    thr = float(np.float32(1.0 * 100 / 255))
    t = check_all(b, o2, c2, thr, 0, bq, oq, cq)
    assert len(t[1]) == sum(x.size for x in o2) and (t[1] == t[1][0]).all()  # ties: all kept, in order
    assert len(check_all(b, o2, c2, np.nextafter(np.float32(thr), np.float32(1)), 0, bq, oq, cq)[1]) == 0
    # all-negative: every int8 at its minimum is probability 0
    neg = [np.full_like(x, -128) for x in o]
    assert len(check_all(b, neg, c, 0.01, 0, bq, oq, cq)[1]) == 0
    # float all-negative (logit-like junk) and an empty level
    fb, fo, fc, *_ = random_head(rng)
    fo = [-np.abs(x) for x in fo]
    assert len(check_all(fb, fo, fc, 0.01)[1]) == 0
    e = [x[:, :, :0] for x in fb], [x[:, :, :0] for x in fo], [x[:, :, :0] for x in fc]
    bb, ss = check_all(*e, 0.1)
    assert bb.shape == (0, 4) and ss.shape == (0,)


def test_int8_prefilter_that_is_not_a_threshold():
    """obj and cls int8 around zero: very negative obj x negative cls passes, obj near 0 fails,
    large obj x positive cls passes: the kernel's table is not 'q >= q0' and must stay exact."""
    rng = np.random.default_rng(9)
    b, o, c, bq, _, _ = random_head(rng, dtype="int8")
    q = [(0.1, 0)] * 3
    t = check_all(b, o, c, 1.0, 0, bq, q, q, min_hits=10)
    ob = np.concatenate([x.ravel() for x in o]).astype(int)
    assert (ob[ob < 0].size and ob[ob > 0].size)
    assert len(t[1]) < ob.size


def test_mixed_types_and_adversarial_floats():
    rng = np.random.default_rng(11)
    b, o, c, bq, oq, cq = random_head(rng, dtype="int8")
    fc = [x.astype(np.float32) / 255 + 0.5 for x in c]  # int8 objectness, float32 classes
    check_all(b, o, fc, 0.2, 0, bq, oq, None, min_hits=1)
    fb, fo, fc, *_ = random_head(rng)
    fo[0][0, 0, 0, :3] = [np.nan, np.inf, 1.0]
    fc[0][0, 0, 0, :3] = [1.0, 1.0, np.nan]
    fb[0][0, 2, 1, 1] = 800.0  # exp overflows: an infinite box (the NMS refuses it later)
    fo[0][0, 0, 1, 1] = fc[0][0, 0, 1, 1] = 1.0
    edgepose.set_implementation("numpy")
    tb, ts = yolo.decode_yolox_split(fb, fo, fc, STRIDES, 0.5)
    assert np.isinf(ts).sum() == 1 and np.isinf(tb).any()  # inf objectness x 1: score inf, kept
    if edgepose.native_available():
        edgepose.set_implementation("native")
        nb, ns = yolo.decode_yolox_split(fb, fo, fc, STRIDES, 0.5)
        np.testing.assert_array_equal(nb, tb)
        np.testing.assert_array_equal(ns, ts)


def test_exp_fixed_matches_math_exp():
    x = np.concatenate([np.linspace(-750, 750, 2001), [0.0, -0.0, 1e-300, 708.0, -708.0, np.nan]])
    y = yolo.exp_fixed(x)
    with np.errstate(over="ignore"):
        ref = np.exp(x)
    ok = np.isfinite(ref) & (x <= 708) & (x >= -708)
    np.testing.assert_allclose(y[ok], ref[ok], rtol=2e-15)
    assert (y[x > 708] == np.inf).all() and (y[x < -708] == 0).all() and np.isnan(y[-1])
    np.testing.assert_array_equal(yolo.exp_nonpos(x[x <= 0]), yolo.exp_fixed(x[x <= 0]))


@pytest.mark.parametrize("impl", IMPLS)
def test_split_equals_the_single_output_decode(impl):
    """The same head values as one (1, A, 5 + nc) tensor and as 9 tensors: same boxes, scores."""
    edgepose.set_implementation(impl)
    rng = np.random.default_rng(2)
    b, o, c, *_ = random_head(rng, nc=4)
    single = np.concatenate([np.concatenate([bb, oo, cc], 1).reshape(1, 9, -1) for bb, oo, cc in zip(b, o, c)],
                            2).transpose(0, 2, 1)
    sb, ss = yolo.decode_yolox(np.ascontiguousarray(single), (96, 64), 0.2, 3)
    pb, ps = yolo.decode_yolox_split(b, o, c, STRIDES, 0.2, 3)
    assert len(ss) >= 3
    np.testing.assert_array_equal(ps, ss)
    np.testing.assert_allclose(pb, sb, rtol=1e-6, atol=1e-4)
    kb, ks = yolo.postprocess("yolox_split", [t for lv in zip(b, o, c) for t in lv], 0.2, 0.45, class_id=3)
    assert len(ks) and (np.diff(ks) <= 0).all()


def test_bad_arguments_are_one_line():
    rng = np.random.default_rng(0)
    b, o, c, bq, oq, cq = random_head(rng, dtype="int8")
    with pytest.raises(ValueError, match="obj_quant"):
        yolo.decode_yolox_split(b, o, c, STRIDES, 0.5, 0, bq, None, cq)
    with pytest.raises(ValueError, match=r"objs\[0\]"):
        yolo.decode_yolox_split(b, c, c, STRIDES, 0.5, 0, bq, oq, cq)
    with pytest.raises(ValueError, match="class_id"):
        yolo.decode_yolox_split(b, o, c, STRIDES, 0.5, 7, bq, oq, cq)
    with pytest.raises(ValueError, match="one per box tensor"):
        yolo.decode_yolox_split(b, o[:2], c, STRIDES, 0.5, 0, bq, oq, cq)
