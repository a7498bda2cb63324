"""Kernel 2 (heatmap decode + flip merge): native == NumPy twin == an independent reference."""
import importlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import edgepose
from edgepose.geometry import get_affine_transform
from edgepose.keypoints import COCO, MPII

dec = importlib.import_module("edgepose.decode")
native = pytest.mark.skipif(not edgepose.native_available(), reason="edgepose._native not built")


@pytest.fixture(autouse=True)
def _auto_impl():
    edgepose.set_implementation("auto")
    yield
    edgepose.set_implementation("auto")


def reference_decode(hm, inv=None):
    """Reference get_max_preds + quarter offset + back-transform, written from the conventions."""
    n, k, h, w = hm.shape
    out = np.zeros((n, k, 2))
    sc = np.zeros((n, k), np.float32)
    for i in range(n):
        for j in range(k):
            m = hm[i, j].astype(np.float64)
            idx = int(np.argmax(m.reshape(-1)))
            v = m.reshape(-1)[idx]
            sc[i, j] = hm[i, j].reshape(-1)[idx]
            if v <= 0:
                continue
            x, y = float(idx % w), float(idx // w)
            px, py = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
            if 1 < px < w - 1 and 1 < py < h - 1:
                x += np.sign(m[py, px + 1] - m[py, px - 1]) * 0.25
                y += np.sign(m[py + 1, px] - m[py - 1, px]) * 0.25
            out[i, j] = x, y
        if inv is not None:
            out[i] = out[i] @ inv[i, :, :2].T + inv[i, :, 2]
    return out.astype(np.float32), sc


def gaussian_maps(rng, n, k, h=64, w=48, dtype=np.float32):
    ys, xs = np.mgrid[0:h, 0:w]
    cx = rng.uniform(-2, w + 1, (n, k, 1, 1))
    cy = rng.uniform(-2, h + 1, (n, k, 1, 1))
    amp = rng.uniform(-0.2, 1.0, (n, k, 1, 1))
    hm = amp * np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / 8.0) + rng.normal(0, 0.01, (n, k, h, w))
    return hm.astype(dtype)


def inv_mats(rng, n, hw=(48, 64)):
    c = rng.uniform(0, 1000, (n, 2))
    s = rng.uniform(0.3, 3, (n, 2))
    return get_affine_transform(c, s, rng.uniform(-30, 30, n), hw, inv=True).reshape(n, 2, 3)


def both(hm, inv=None, **kw):
    """Native result, asserted identical to the twin's."""
    c1, s1 = edgepose.decode(hm, inv, **kw)
    c2, s2 = dec.decode_numpy(hm, inv, **kw)
    assert c1.dtype == np.float32 and s1.dtype == np.float32
    assert c1.shape == hm.shape[:2] + (2,) and s1.shape == hm.shape[:2]
    np.testing.assert_array_equal(c1, c2)
    np.testing.assert_array_equal(s1, s2)
    return c1, s1


@native
@pytest.mark.parametrize("n", [0, 1, 4, 64])
@pytest.mark.parametrize("k", [16, 17])
def test_float32_equals_twin_and_reference(n, k):
    rng = np.random.default_rng(n * 100 + k)
    hm = gaussian_maps(rng, n, k)
    inv = inv_mats(rng, n)
    c, s = both(hm, inv)
    rc, rs = reference_decode(hm, inv)
    np.testing.assert_array_equal(s, rs)
    np.testing.assert_allclose(c, rc, rtol=1e-6, atol=1e-3)
    c0, _ = both(hm)  # heatmap pixels without matrices
    np.testing.assert_array_equal(c0, reference_decode(hm)[0])


@native
def test_adversarial_maps():
    h, w = 64, 48
    maps = []
    m = np.zeros((h, w), np.float32); m[10, 10] = m[30, 20] = 1.0; maps.append(m)       # tie: first wins
    m = np.zeros((h, w), np.float32); m[0, 7] = 2.0; maps.append(m)                    # border top
    m = np.zeros((h, w), np.float32); m[h - 1, w - 1] = 2.0; maps.append(m)            # corner
    m = np.zeros((h, w), np.float32); m[5, 1] = 1.0; m[5, 2] = 0.5; maps.append(m)     # px == 1: no offset
    m = np.zeros((h, w), np.float32); m[h - 2, w - 2] = 1.0; m[h - 2, w - 1] = 0.9; maps.append(m)
    maps.append(np.full((h, w), -0.5, np.float32))                                    # all negative
    maps.append(np.zeros((h, w), np.float32))                                         # all zero
    m = -np.ones((h, w), np.float32); m[40, 30] = -0.1; maps.append(m)                 # negative max
    m = np.zeros((h, w), np.float32); m[20, 20] = 1.0; m[20, 21] = m[20, 19] = 0.5; maps.append(m)  # equal neighbours
    m = np.zeros((h, w), np.float32); m[20, 20] = -0.0; m[3, 3] = 0.0; maps.append(m)  # signed zeros
    m = np.full((h, w), 1e-30, np.float32); m[17, 17] = 1e-29; maps.append(m)          # denormal-ish
    m = np.zeros((h, w), np.float32); m[9, 9] = np.inf; m[30, 30] = -np.inf; maps.append(m)  # inf is not NaN
    hm = np.stack(maps)[None]
    c, s = both(hm)
    rc, rs = reference_decode(hm)
    np.testing.assert_array_equal(c, rc)
    np.testing.assert_array_equal(s, rs)
    assert tuple(c[0, 0]) == (10.0, 10.0)
    assert tuple(c[0, 5]) == (0.0, 0.0) and s[0, 5] == np.float32(-0.5)
    assert tuple(c[0, 6]) == (0.0, 0.0)
    both(hm, refine="dark")
    both(hm, refine="none")


@native
@pytest.mark.parametrize("shape", [(1, 1), (2, 2), (1, 5), (5, 1), (3, 3), (4, 5)])
def test_tiny_maps(shape):
    rng = np.random.default_rng(7)
    for dtype in (np.float32, np.int8, np.uint8):
        if dtype == np.float32:
            hm = rng.normal(0, 1, (3, 17) + shape).astype(np.float32)
            kw = {}
        else:
            hm = rng.integers(np.iinfo(dtype).min, np.iinfo(dtype).max + 1, (3, 17) + shape).astype(dtype)
            kw = dict(scale=0.05, zero_point=3)
        for refine in dec.REFINE_MODES:
            both(hm, inv_mats(rng, 3), refine=refine, **kw)
            both(hm, inv_mats(rng, 3), refine=refine, flipped=hm[:, :, ::-1].copy(), flip_pairs=COCO.flip_pairs, **kw)


@native
@pytest.mark.parametrize("dtype,zps", [(np.int8, [0, -128, 127, -5]), (np.uint8, [0, 128, 255, 17])])
def test_quantized_equals_twin_and_dequantized_float(dtype, zps):
    rng = np.random.default_rng(11)
    info = np.iinfo(dtype)
    n, k = 4, 17
    inv = inv_mats(rng, n)
    for zp in zps:
        scale = 0.0123
        real = gaussian_maps(rng, n, k)
        q = np.clip(np.round(real / scale) + zp, info.min, info.max).astype(dtype)
        # extremes: a joint saturated everywhere, and one at the bottom of the range
        q[0, 0] = info.max
        q[0, 1] = info.min
        q[1, 2, 5, 6] = info.max
        c, s = both(q, inv, scale=scale, zero_point=zp)
        deq = ((q.astype(np.float64) - zp) * scale).astype(np.float32)
        cf, sf = edgepose.decode(deq, inv)
        np.testing.assert_array_equal(c, cf)  # argmax/offsets on the integers == on the real values
        np.testing.assert_allclose(s, sf, rtol=1e-6)
        # flip test on integers: scores equal the float merge of the dequantized maps (coordinates
        # may differ only where float rounding breaks an integer tie)
        qf = q[:, :, :, ::-1].copy()
        c2, s2 = both(q, inv, scale=scale, zero_point=zp, flipped=qf, flip_pairs=COCO.flip_pairs)
        _, sf2 = edgepose.decode(deq, inv, flipped=np.ascontiguousarray(deq[:, :, :, ::-1]), flip_pairs=COCO.flip_pairs)
        np.testing.assert_allclose(s2, sf2, rtol=1e-6, atol=1e-6)
        for refine in ("dark", "none"):
            both(q, inv, scale=scale, zero_point=zp, refine=refine)
            both(q, inv, scale=scale, zero_point=zp, refine=refine, flipped=qf, flip_pairs=COCO.flip_pairs)


@native
def test_int8_extremes_and_zero_point_edges():
    q = np.full((2, 16, 8, 8), -128, np.int8)
    q[0, :, 3, 4] = 127
    c, s = both(q, scale=1.0, zero_point=-128)
    assert np.all(s[0] == 255.0) and np.all(c[0] == [4.0, 3.0])
    assert np.all(s[1] == 0.0) and np.all(c[1] == 0.0)  # max at the zero point -> (0, 0)
    both(q, scale=0.5, zero_point=127, flipped=q, flip_pairs=MPII.flip_pairs)
    u = np.full((1, 17, 8, 8), 255, np.uint8)
    both(u, scale=0.1, zero_point=255)
    both(u, scale=0.1, zero_point=0, flipped=u, flip_pairs=COCO.flip_pairs)


@native
@pytest.mark.parametrize("shift", [True, False])
@pytest.mark.parametrize("refine", dec.REFINE_MODES)
def test_flip_fused_equals_merge_then_decode(shift, refine):
    rng = np.random.default_rng(13)
    hm, fl = gaussian_maps(rng, 4, 17), gaussian_maps(rng, 4, 17)
    inv = inv_mats(rng, 4)
    merged = edgepose.flip_merge(hm, fl, COCO.flip_pairs, shift=shift)
    np.testing.assert_array_equal(merged, dec.flip_merge_numpy(hm, fl, COCO.flip_pairs, shift))
    c, s = both(hm, inv, flipped=fl, flip_pairs=COCO.flip_pairs, shift=shift, refine=refine)
    cm, sm = edgepose.decode(merged, inv, refine=refine)
    np.testing.assert_array_equal(c, cm)
    np.testing.assert_array_equal(s, sm)


def test_flip_back_by_hand():
    """Flip back = mirror, swap pairs, shift right by one (column 0 kept)."""
    fl = np.arange(2 * 3 * 4, dtype=np.float32).reshape(1, 2, 3, 4)
    back = dec.flip_back_numpy(fl, [(0, 1)], shift=True)
    row = fl[0, 1, 0]  # channel 0 gets the mirrored channel 1
    np.testing.assert_array_equal(back[0, 0, 0], [row[3], row[3], row[2], row[1]])
    merged = edgepose.flip_merge(np.zeros_like(fl), fl, [(0, 1)])
    np.testing.assert_array_equal(merged, back * 0.5)


@native
def test_dark_equals_twin_and_improves_subpixel():
    # a Gaussian at a known sub-pixel spot: DARK lands within 0.05 px, quarter within 0.25 + rounding
    ys, xs = np.mgrid[0:64, 0:48]
    true = np.array([[20.3, 30.7], [11.8, 40.2], [33.1, 5.6]])
    hm = np.stack([np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / 8.0) for x, y in true])[None].astype(np.float32)
    c, _ = both(hm, refine="dark")
    np.testing.assert_allclose(c[0], true, atol=0.05)
    q, _ = both(hm, refine="quarter")
    assert np.abs(c[0] - true).max() < np.abs(q[0] - true).max()
    both(hm, refine="dark", dark_kernel=5)


@native
@settings(max_examples=60, deadline=None)
@given(
    hm=hnp.arrays(np.float32, hnp.array_shapes(min_dims=4, max_dims=4, min_side=1, max_side=9),
                  elements=st.floats(-4, 4, width=32).map(lambda v: float(np.round(v))) | st.floats(-2, 2, width=32)),
    refine=st.sampled_from(dec.REFINE_MODES),
    shift=st.booleans(),
)
def test_property_float(hm, refine, shift):
    both(hm, refine=refine)
    both(hm, refine=refine, flipped=hm[::-1].copy() if hm.shape[0] else hm, shift=shift)


@native
@settings(max_examples=60, deadline=None)
@given(
    hm=hnp.arrays(np.int8, hnp.array_shapes(min_dims=4, max_dims=4, min_side=1, max_side=9)),
    zp=st.integers(-128, 127),
    scale=st.floats(1e-4, 10),
    refine=st.sampled_from(dec.REFINE_MODES),
)
def test_property_int8(hm, zp, scale, refine):
    both(hm, scale=scale, zero_point=zp, refine=refine)
    both(hm, scale=scale, zero_point=zp, refine=refine, flipped=np.ascontiguousarray(hm[..., ::-1]))


@pytest.mark.parametrize("impl", ["numpy", "auto"])
def test_errors_name_the_argument(impl):
    edgepose.set_implementation(impl)
    hm = np.zeros((2, 17, 8, 8), np.float32)
    nan = hm.copy(); nan[1, 3, 2, 2] = np.nan
    with pytest.raises(ValueError, match="heatmaps"):
        edgepose.decode(nan)
    with pytest.raises(ValueError, match="heatmaps"):
        edgepose.decode(hm, flipped=nan, flip_pairs=COCO.flip_pairs)  # NaN only in the flipped pass
    with pytest.raises(ValueError, match="heatmaps"):
        edgepose.decode(hm.astype(np.float64))
    with pytest.raises(ValueError, match="heatmaps"):
        edgepose.decode(hm[0])
    with pytest.raises(ValueError, match="heatmaps"):
        edgepose.decode(np.zeros((2, 17, 0, 8), np.float32))
    with pytest.raises(ValueError, match="scale"):
        edgepose.decode(hm.astype(np.int8))
    with pytest.raises(ValueError, match="scale"):
        edgepose.decode(hm.astype(np.int8), scale=-1.0)
    with pytest.raises(ValueError, match="zero_point"):
        edgepose.decode(hm.astype(np.int8), scale=1.0, zero_point=200)
    with pytest.raises(ValueError, match="scale"):
        edgepose.decode(hm, scale=1.0)
    with pytest.raises(ValueError, match="inv_matrices"):
        edgepose.decode(hm, np.zeros((3, 2, 3)))
    with pytest.raises(ValueError, match="inv_matrices"):
        edgepose.decode(hm, np.full((2, 2, 3), np.inf))
    with pytest.raises(ValueError, match="flipped"):
        edgepose.decode(hm, flipped=hm[:1])
    with pytest.raises(ValueError, match="flip_pairs"):
        edgepose.decode(hm, flipped=hm, flip_pairs=[(1, 40)])
    with pytest.raises(ValueError, match="refine"):
        edgepose.decode(hm, refine="udp")
    with pytest.raises(ValueError, match="dark_kernel"):
        edgepose.decode(hm, refine="dark", dark_kernel=4)
    with pytest.raises(ValueError, match="flipped"):
        edgepose.flip_merge(hm, hm.astype(np.int8), COCO.flip_pairs)


@native
def test_non_contiguous_heatmaps():
    rng = np.random.default_rng(17)
    big = gaussian_maps(rng, 4, 34)
    hm = big[:, ::2]
    assert not hm.flags.c_contiguous
    both(hm, inv_mats(rng, 4))
    both(hm, inv_mats(rng, 4), flipped=big[:, 1::2], flip_pairs=COCO.flip_pairs)


@native
def test_switching_gives_same_result():
    rng = np.random.default_rng(19)
    hm, inv = gaussian_maps(rng, 3, 17), inv_mats(rng, 3)
    edgepose.set_implementation("native")
    assert edgepose.implementation() == "native"
    a = edgepose.decode(hm, inv, flipped=hm, flip_pairs=COCO.flip_pairs)
    edgepose.set_implementation("numpy")
    assert edgepose.implementation() == "numpy"
    b = edgepose.decode(hm, inv, flipped=hm, flip_pairs=COCO.flip_pairs)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


@native
def test_concurrent_calls_release_the_gil_safely():
    """The kernels run without the GIL: concurrent calls from threads give the serial results."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(23)
    jobs = [(gaussian_maps(rng, 4, 17), inv_mats(rng, 4)) for _ in range(8)]
    serial = [edgepose.decode(h, m, flipped=h, flip_pairs=COCO.flip_pairs) for h, m in jobs]
    with ThreadPoolExecutor(4) as ex:
        threaded = list(ex.map(lambda hm: edgepose.decode(hm[0], hm[1], flipped=hm[0], flip_pairs=COCO.flip_pairs), jobs))
    for (c1, s1), (c2, s2) in zip(serial, threaded):
        np.testing.assert_array_equal(c1, c2)
        np.testing.assert_array_equal(s1, s2)
