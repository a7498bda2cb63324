"""The decode's vectorised first-maximum scans (csrc/argmax.cpp) on every instruction set this
build and CPU can run: index == np.argmax's, on the inputs that break careless SIMD (the maximum
in the tail after the last full block, ties across lanes and blocks, all-equal maps, signed
zeros, infinities, NaN, sizes that are no multiple of the vector width), and the whole decode
on them == the NumPy twin, bit for bit."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import edgepose
from edgepose.keypoints import COCO

nat = pytest.importorskip("edgepose._native", reason="edgepose._native not built")
dec = pytest.importorskip("edgepose.decode")

LEVELS = ["scalar", "sse2", "avx2", "neon"]
# every size from 1 to 70 (all block tails of SSE2/AVX2/NEON for 4-byte lanes), around the
# byte-lane blocks (64 and 128 bytes), and one heatmap (64 x 48) with its neighbours
SIZES = list(range(1, 71)) + [127, 128, 129, 255, 256, 257, 3071, 3072, 3073]


def _runnable():
    out = []
    for lv in LEVELS:
        try:
            nat.set_simd_level(lv)
            out.append(lv)
        except ValueError:
            pass
    nat.set_simd_level("auto")
    return out


RUNNABLE = _runnable()


@pytest.fixture(params=RUNNABLE)
def level(request):
    nat.set_simd_level(request.param)
    assert nat.simd_level() == request.param
    edgepose.set_implementation("auto")
    yield request.param
    nat.set_simd_level("auto")


def test_the_best_level_is_the_default_and_unknown_levels_are_refused():
    assert RUNNABLE[0] == "scalar" and nat.simd_level() == RUNNABLE[-1]
    with pytest.raises(ValueError, match="simd level: mmx cannot run"):
        nat.set_simd_level("mmx")
    for lv in set(LEVELS) - set(RUNNABLE):
        with pytest.raises(ValueError, match=f"simd level: {lv}"):
            nat.set_simd_level(lv)
    assert nat.simd_level() == RUNNABLE[-1]  # a refused level leaves the current one


def _check(a):
    want = -1 if a.dtype == np.float32 and np.isnan(a).any() else int(np.argmax(a))
    got = nat.argmax_first(a)
    assert got == want, (a.dtype, a.size, got, want)


def _positions(n):
    """Every position for small sizes, else the lane/block edges and the tail."""
    if n <= 140:
        return range(n)
    return sorted({0, 1, 7, 8, 15, 16, 31, 32, 33, 63, 64, 127, 128, n // 2, n - 33, n - 32, n - 31, n - 17,
                   n - 16, n - 9, n - 8, n - 2, n - 1} & set(range(n)))


@pytest.mark.parametrize("dtype", [np.float32, np.int8, np.uint8, np.int16])
def test_single_maximum_anywhere_and_ties(level, dtype):
    info = np.finfo(dtype) if dtype == np.float32 else np.iinfo(dtype)
    lo, hi = (-1.0, 2.0) if dtype == np.float32 else (info.min, info.max)
    for n in SIZES:
        for base in (lo, 0, hi - 1):
            a = np.full(n, base, dtype)
            _check(a)  # all equal: index 0
            for p in _positions(n):
                b = a.copy()
                b[p] = hi
                _check(b)  # one maximum at p (in a block, a lane, or the tail)
                c = b.copy()
                c[-1] = hi
                _check(c)  # tie with the last element: p wins
                if p + 5 < n:
                    c = b.copy()
                    c[p + 5] = hi
                    _check(c)  # a tie in another lane of the same or the next vector


def test_signed_zeros_infinities_and_negatives(level):
    for n in SIZES:
        for fill in (-0.0, 0.0, -np.inf, np.inf, -3.5, -1.2e-38):
            a = np.full(n, fill, np.float32)
            _check(a)
        for p in _positions(n):
            a = np.full(n, -0.0, np.float32)
            a[p] = 0.0
            _check(a)  # +0.0 ties -0.0: index 0
            a = np.full(n, -np.inf, np.float32)
            a[p] = -1e30
            _check(a)
            a = np.full(n, -2.0, np.float32)
            a[p] = -1.0
            _check(a)  # an all-negative map
            a = np.zeros(n, np.float32)
            a[p] = np.inf
            _check(a)


def test_nan_anywhere_is_reported(level):
    for n in SIZES:
        for p in _positions(n):
            for fill in (0.0, -np.inf, np.inf):
                a = np.full(n, fill, np.float32)
                a[p] = np.nan
                assert nat.argmax_first(a) == -1, (n, p, fill)
        a = np.full(n, np.nan, np.float32)
        assert nat.argmax_first(a) == -1


def test_int8_and_uint8_orders_around_the_sign_bit(level):
    # int8 is reduced on SSE2 as v ^ 0x80 in unsigned bytes: -1 / 0 / 127 / -128 must keep their order
    for n in SIZES:
        for vals in ([-1, 0], [127, -128], [-128, -127], [0, -1, 127], [-1, -128]):
            rng = np.random.default_rng(n)
            _check(rng.choice(np.array(vals, np.int8), n))
        for vals in ([127, 128], [0, 255], [128, 127, 129]):
            rng = np.random.default_rng(n)
            _check(rng.choice(np.array(vals, np.uint8), n))
        for vals in ([-1, 0], [32767, -32768], [255, 256]):
            rng = np.random.default_rng(n)
            _check(rng.choice(np.array(vals, np.int16), n))


@settings(max_examples=150, deadline=None)
@given(a=hnp.arrays(np.float32, st.integers(1, 300),
                    elements=st.sampled_from([-np.inf, -2.0, -1.0, -0.0, 0.0, float(np.float32(1.2e-38)), 1.0, 3.0, np.inf, np.nan])
                    | st.floats(-4, 4, width=32, allow_subnormal=False)),
       lv=st.sampled_from(RUNNABLE))
def test_property_float(a, lv):
    nat.set_simd_level(lv)
    try:
        _check(a)
    finally:
        nat.set_simd_level("auto")


@settings(max_examples=150, deadline=None)
@given(a=hnp.arrays(st.sampled_from([np.int8, np.uint8, np.int16]), st.integers(1, 300)),
       lv=st.sampled_from(RUNNABLE))
def test_property_int(a, lv):
    nat.set_simd_level(lv)
    try:
        _check(a)
    finally:
        nat.set_simd_level("auto")


def _both(hm, **kw):
    c1, s1 = edgepose.decode(hm, **kw)
    c2, s2 = dec.decode_numpy(hm, **kw)
    np.testing.assert_array_equal(c1, c2)
    assert s1.view(np.uint32).tolist() == s2.view(np.uint32).tolist()  # bit for bit: -0.0 stays -0.0
    return c1, s1


def test_decode_on_every_level_equals_the_twin(level):
    """Whole decode (float32, int8, uint8; the flip merge's float and int16 maps) on odd map
    sizes and on maps whose maximum sits in the tail, tied, or at a signed zero."""
    rng = np.random.default_rng(5)
    for h, w in [(64, 48), (7, 9), (1, 33), (5, 13), (3, 1)]:
        maps = []
        m = rng.normal(0, 1, (h, w)).astype(np.float32); maps.append(m)
        m = np.full((h, w), -0.5, np.float32); m.flat[-1] = 0.25; maps.append(m)         # max in the tail
        m = np.zeros((h, w), np.float32); m.flat[-1] = m.flat[h * w // 2] = 1.0; maps.append(m)  # tie
        m = np.full((h, w), -0.0, np.float32); m.flat[-1] = 0.0; maps.append(m)          # signed zeros
        m = np.full((h, w), -np.inf, np.float32); maps.append(m)
        m = np.full((h, w), 2.0, np.float32); maps.append(m)                                # all equal
        hm = np.stack(maps)[None]
        for refine in dec.REFINE_MODES:
            _both(hm, refine=refine)
            _both(hm, refine=refine, flipped=hm[:, ::-1].copy(), flip_pairs=[(0, 5), (1, 4)])
        q8 = np.clip(np.round(hm * 40), -128, 127)
        q8[~np.isfinite(q8)] = -128
        for dtype, zp in ((np.int8, -3), (np.uint8, 130)):
            q = np.clip(q8 + (128 if dtype == np.uint8 else 0), np.iinfo(dtype).min, np.iinfo(dtype).max).astype(dtype)
            _both(q, scale=0.02, zero_point=zp)
            _both(q, scale=0.02, zero_point=zp, flipped=q[:, ::-1].copy(), flip_pairs=[(0, 5), (1, 4)])


def test_decode_nan_in_the_tail_raises_on_every_level(level):
    for n in (17, 33, 3072):
        hm = np.zeros((1, 3, 1, n), np.float32)
        hm[0, 2, 0, n - 1] = np.nan
        with pytest.raises(ValueError, match="heatmaps: contain NaN"):
            edgepose.decode(hm)
        with pytest.raises(ValueError, match="heatmaps: contain NaN"):
            edgepose.decode(np.zeros_like(hm), flipped=hm, flip_pairs=[(0, 1)])


def test_levels_agree_on_real_looking_maps():
    rng = np.random.default_rng(9)
    ys, xs = np.mgrid[0:64, 0:48]
    cx, cy = rng.uniform(0, 48, (4, 17, 1, 1)), rng.uniform(0, 64, (4, 17, 1, 1))
    hm = (np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / 8.0) + rng.normal(0, 0.01, (4, 17, 64, 48))).astype(np.float32)
    out = {}
    for lv in RUNNABLE:
        nat.set_simd_level(lv)
        out[lv] = edgepose.decode(hm, flipped=hm[:, :, :, ::-1].copy(), flip_pairs=COCO.flip_pairs)
    nat.set_simd_level("auto")
    for lv in RUNNABLE[1:]:
        np.testing.assert_array_equal(out[lv][0], out["scalar"][0])
        np.testing.assert_array_equal(out[lv][1], out["scalar"][1])


def test_lean_entry_equals_the_general_one_and_refuses_the_rest():
    """edgepose.decode's common call goes through _native.decode_quarter; it must give the general
    entry's results, and refuse (ValueError, so that decode validates in full) all it does not take."""
    rng = np.random.default_rng(3)
    n, k = 3, 17
    hm = rng.normal(0, 1, (n, k, 64, 48)).astype(np.float32)
    inv = np.ascontiguousarray(rng.normal(0, 2, (n, 2, 3)))
    perm = np.arange(k, dtype=np.int64)
    q8 = rng.integers(-128, 128, hm.shape).astype(np.int8)
    u8 = rng.integers(0, 256, hm.shape).astype(np.uint8)
    for maps, scale, zp in ((hm, None, None), (q8, 0.03, -7), (u8, 0.5, 200), (q8, 2, None)):
        for m in (inv, None):
            a = nat.decode_quarter(maps, m, scale, zp)
            b = nat.decode(maps, None, m, perm, True, 1.0 if scale is None else float(scale), zp or 0, 0, 11)
            np.testing.assert_array_equal(a[0], b[0])
            np.testing.assert_array_equal(a[1], b[1])
    refused = [
        (hm[:, :, :, ::2], inv, None, None),                       # not C-contiguous
        (hm.astype(np.float64), inv, None, None),                  # dtype
        (hm[0], None, None, None),                                  # 3-D
        (hm.tolist(), None, None, None),                            # not an array
        (hm, inv.astype(np.float32), None, None),                   # matrices' dtype
        (hm, inv[:2], None, None),                                  # matrices' count
        (hm, np.asfortranarray(inv), None, None),                   # matrices' layout
        (hm, np.full((n, 2, 3), np.nan), None, None),               # NaN in the matrices
        (hm, None, 0.1, None),                                      # scale for float maps
        (q8, None, None, None),                                     # no scale for int8
        (q8, None, -1.0, 0),                                        # scale <= 0
        (q8, None, float("inf"), 0),
        (q8, None, 0.1, 128),                                       # zero point out of range
        (u8, None, 0.1, -1),
        (q8, None, 0.1, np.int64(3)),                               # not a Python int: the general path
        (np.zeros((1, 1, 0, 4), np.float32), None, None, None),     # empty maps
    ]
    for args in refused:
        with pytest.raises(ValueError):
            nat.decode_quarter(*args)
    bad = hm.copy()
    bad[2, 16, 63, 47] = np.nan
    with pytest.raises(ValueError, match="heatmaps: contain NaN"):
        nat.decode_quarter(bad, inv, None, None)
    # through edgepose.decode, the refused calls still work or fail with the general path's message
    c, s = edgepose.decode(q8, inv, scale=0.1, zero_point=np.int64(3))
    c2, s2 = dec.decode_numpy(q8, inv, scale=0.1, zero_point=3)
    np.testing.assert_array_equal(c, c2)
    np.testing.assert_array_equal(s, s2)
    with pytest.raises(ValueError, match=r"inv_matrices: expected \(3, 2, 3\)"):
        edgepose.decode(hm, inv[:2])
    with pytest.raises(ValueError, match="inv_matrices: contain NaN or inf"):
        edgepose.decode(hm, np.full((n, 2, 3), np.nan))
    with pytest.raises(ValueError, match="zero_point: 128 outside the int8 range"):
        edgepose.decode(q8, scale=0.1, zero_point=128)
