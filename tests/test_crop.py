"""Kernel 1 (crop warp): native == NumPy twin (bit for bit, both roundings) == cv2.warpAffine.

cv2-comparison tests use the rounding of the installed OpenCV: "fixed" for 4.x (bit-exact),
"float" for 5.x (within 1 grey level: OpenCV 5 rounds the last out_w % 16 (AVX2) or % 8 (NEON)
columns of a row in a scalar loop that differs slightly from its vector loop)."""
import importlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import edgepose
from edgepose.geometry import crop_matrices, get_affine_transform
from conftest import DATA as _DATA, needs_data

crop = importlib.import_module("edgepose.crop")
DATA = _DATA / "coco_mini"
native = pytest.mark.skipif(not edgepose.native_available(), reason="edgepose._native not built")
IN_W, IN_H = 192, 256
CV_ROUNDING = "float" if int(cv2.__version__.split(".")[0]) >= 5 else "fixed"
ROUNDINGS = ["fixed", "float"]


def assert_like_cv2(got, ref):
    """Exact for the fixed rounding, <= 1 grey level for the float one (see module docstring)."""
    assert got.shape == ref.shape
    if CV_ROUNDING == "fixed":
        np.testing.assert_array_equal(got, ref)
    else:
        assert np.abs(got.astype(np.int16) - ref.astype(np.int16)).max(initial=0) <= 1


@pytest.fixture(scope="module")
def frames():
    imgs = [cv2.imread(str(p)) for p in sorted(DATA.glob("*.jpg"))]
    assert imgs and all(i is not None and i.ndim == 3 for i in imgs)
    return imgs


@pytest.fixture(autouse=True)
def _auto_impl():
    edgepose.set_implementation("auto")
    yield
    edgepose.set_implementation("auto")


def cv2_crops(frame, mats, size, to_rgb=False, border=0):
    out = []
    bv = tuple(int(v) for v in np.broadcast_to(border, 3))
    for m in mats:
        c = cv2.warpAffine(np.ascontiguousarray(frame), m, size, flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=bv)
        out.append(c[..., ::-1] if to_rgb else c)
    return np.stack(out) if out else np.zeros((0, size[1], size[0], 3), np.uint8)


def random_mats(rng, frame, n):
    """Boxes inside, partly outside and fully outside the frame, rotated."""
    h, w = frame.shape[:2]
    x = rng.uniform(-0.5 * w, 1.2 * w, n)
    y = rng.uniform(-0.5 * h, 1.2 * h, n)
    bw = rng.uniform(5, w, n)
    bh = rng.uniform(5, h, n)
    boxes = np.stack([x, y, bw, bh], 1)
    return crop_matrices(boxes, (IN_W, IN_H), rot=rng.uniform(-60, 60, n))[2]


@needs_data
@native
@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("to_rgb", [False, True])
def test_u8_equals_cv2_and_twin_on_real_frames(frames, to_rgb, rounding):
    rng = np.random.default_rng(1)
    for frame in frames:
        mats = random_mats(rng, frame, 6)
        got = edgepose.warp_crops(frame, mats, (IN_W, IN_H), to_rgb=to_rgb, layout="nhwc", rounding=rounding)
        assert got.shape == (6, IN_H, IN_W, 3) and got.dtype == np.uint8 and got.flags.c_contiguous
        if rounding == CV_ROUNDING:
            assert_like_cv2(got, cv2_crops(frame, mats, (IN_W, IN_H), to_rgb))
        twin = crop.warp_crops_numpy(frame, mats, (IN_W, IN_H), to_rgb, layout="nhwc", rounding=rounding)
        np.testing.assert_array_equal(got, twin)


@needs_data
@native
def test_f32_equals_cv2_plus_normalise(frames):
    rng = np.random.default_rng(2)
    frame = frames[0]
    mats = random_mats(rng, frame, 4)
    mean, std = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]
    r = CV_ROUNDING
    got = edgepose.warp_crops(frame, mats, (IN_W, IN_H), to_rgb=True, mean=mean, std=std, rounding=r)
    assert got.shape == (4, 3, IN_H, IN_W) and got.dtype == np.float32 and got.flags.c_contiguous
    u8 = edgepose.warp_crops(frame, mats, (IN_W, IN_H), to_rgb=True, layout="nhwc", rounding=r)
    assert_like_cv2(u8, cv2_crops(frame, mats, (IN_W, IN_H), True))
    # the float batch is exactly the uint8 crop, normalised
    ref = (u8.astype(np.float32) - np.float32(mean)) / np.float32(std)
    np.testing.assert_array_equal(got, ref.transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(got, crop.warp_crops_numpy(frame, mats, (IN_W, IN_H), True, mean, std, rounding=r))
    # default = raw grey levels
    raw = edgepose.warp_crops(frame, mats, (IN_W, IN_H), rounding=r)
    bgr = edgepose.warp_crops(frame, mats, (IN_W, IN_H), layout="nhwc", rounding=r)
    np.testing.assert_array_equal(raw, bgr.astype(np.float32).transpose(0, 3, 1, 2))
    assert_like_cv2(bgr, cv2_crops(frame, mats, (IN_W, IN_H)))


@needs_data
@native
@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("view", ["every_other_column", "crop_of_bigger", "reversed_channels", "big_stride", "flipped_rows"])
def test_non_contiguous_frames(frames, view, rounding):
    rng = np.random.default_rng(3)
    base = frames[1]
    if view == "every_other_column":
        f = base[:, ::2]
    elif view == "crop_of_bigger":
        f = base[37:300, 51:410]
    elif view == "reversed_channels":
        f = base[..., ::-1]
    elif view == "big_stride":
        big = np.zeros((base.shape[0] * 3, base.shape[1] * 2 + 17, 5), np.uint8)
        big[::3, 3:3 + 2 * base.shape[1]:2, 1:4] = base
        f = big[::3, 3:3 + 2 * base.shape[1]:2, 1:4]
    else:
        f = base[::-1]
    assert not f.flags.c_contiguous
    fh, fw = f.shape[:2]
    upright = np.array([[-20, -30, fw / 2, fh / 2], [fw / 3, fh / 4, fw / 4, fh / 3], [fw - 40, fh - 60, 90, 120]])
    mats = np.concatenate([random_mats(rng, f, 5), crop_matrices(upright, (IN_W, IN_H))[2]])
    for rgb in (False, True):
        got = edgepose.warp_crops(f, mats, (IN_W, IN_H), to_rgb=rgb, layout="nhwc", rounding=rounding)
        if rounding == CV_ROUNDING:
            assert_like_cv2(got, cv2_crops(f, mats, (IN_W, IN_H), rgb))
        # the same crops from a contiguous copy of the view
        np.testing.assert_array_equal(got, edgepose.warp_crops(np.ascontiguousarray(f), mats, (IN_W, IN_H), to_rgb=rgb,
                                                               layout="nhwc", rounding=rounding))
        gf = edgepose.warp_crops(f, mats, (IN_W, IN_H), to_rgb=rgb, mean=[1, 2, 3], std=[2, 3, 4], rounding=rounding)
        np.testing.assert_array_equal(gf, crop.warp_crops_numpy(f, mats, (IN_W, IN_H), rgb, [1, 2, 3], [2, 3, 4],
                                                                rounding=rounding))


@needs_data
@native
@pytest.mark.parametrize("rounding", ROUNDINGS)
def test_fully_outside_is_zero_and_edges(frames, rounding):
    frame = frames[0]
    h, w = frame.shape[:2]
    boxes = np.array([[w + 500, h + 500, 50, 80], [-400, -400, 50, 80], [-30, -40, 80, 100], [w - 40, h - 50, 80, 100]])
    mats = crop_matrices(boxes, (IN_W, IN_H))[2]
    got = edgepose.warp_crops(frame, mats, (IN_W, IN_H), layout="nhwc", rounding=rounding)
    assert not got[:2].any()
    assert got[2:].any()
    if rounding == CV_ROUNDING:
        assert_like_cv2(got, cv2_crops(frame, mats, (IN_W, IN_H)))
    np.testing.assert_array_equal(got, crop.warp_crops_numpy(frame, mats, (IN_W, IN_H), layout="nhwc", rounding=rounding))


@native
@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (7, 1), (2, 2)])
def test_tiny_frames(shape, rounding):
    rng = np.random.default_rng(4)
    f = rng.integers(0, 256, shape + (3,), dtype=np.uint8)
    mats = np.array([[[1.0, 0, 0.3], [0, 1.0, 0.6]], [[0.5, 0.2, -0.4], [-0.1, 0.7, 0.2]], [[3.0, 0, 1], [0, 3.0, 1]]])
    got = edgepose.warp_crops(f, mats, (5, 4), layout="nhwc", rounding=rounding)
    if rounding == CV_ROUNDING:
        assert_like_cv2(got, cv2_crops(f, mats, (5, 4)))
    np.testing.assert_array_equal(got, crop.warp_crops_numpy(f, mats, (5, 4), layout="nhwc", rounding=rounding))


@native
@settings(max_examples=80, deadline=None)
@given(
    a=st.floats(-3, 3), b=st.floats(-3, 3), c=st.floats(-3, 3), d=st.floats(-3, 3),
    tx=st.floats(-300, 300), ty=st.floats(-300, 300), ow=st.integers(1, 40), oh=st.integers(1, 40),
    fw=st.integers(1, 60), fh=st.integers(1, 60), seed=st.integers(0, 2**31), upright=st.booleans(),
    strided=st.booleans(), rounding=st.sampled_from(ROUNDINGS),
)
def test_property_random_affines(a, b, c, d, tx, ty, ow, oh, fw, fh, seed, upright, strided, rounding):
    if upright:  # no rotation/shear: the separable path
        b = c = 0.0
    if abs(a * d - b * c) < 1e-3:
        return  # near-singular: covered by the error test
    f = np.random.default_rng(seed).integers(0, 256, (fh, fw * (2 if strided else 1), 3), dtype=np.uint8)
    f = f[:, ::2] if strided else f
    m = np.array([[[a, b, tx], [c, d, ty]]])
    got = edgepose.warp_crops(f, m, (ow, oh), layout="nhwc", rounding=rounding)
    if rounding == CV_ROUNDING:
        assert_like_cv2(got, cv2_crops(f, m, (ow, oh)))
    np.testing.assert_array_equal(got, crop.warp_crops_numpy(f, m, (ow, oh), layout="nhwc", rounding=rounding))


@needs_data
@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("impl", ["numpy", "auto"])
def test_empty_batch(frames, impl, rounding):
    edgepose.set_implementation(impl)
    out = edgepose.warp_crops(frames[0], np.zeros((0, 2, 3)), (IN_W, IN_H), rounding=rounding)
    assert out.shape == (0, 3, IN_H, IN_W) and out.dtype == np.float32
    out = edgepose.warp_crops(frames[0], np.zeros((0, 2, 3)), (IN_W, IN_H), layout="nhwc", rounding=rounding)
    assert out.shape == (0, IN_H, IN_W, 3) and out.dtype == np.uint8


@needs_data
@pytest.mark.parametrize("impl", ["numpy", "auto"])
def test_errors_name_the_argument(frames, impl):
    edgepose.set_implementation(impl)
    f = frames[0]
    good = crop_matrices([[0, 0, 50, 50]], (IN_W, IN_H))[2]
    singular = np.array([[[1.0, 2.0, 0.0], [2.0, 4.0, 0.0]]])
    cases = [
        (dict(frame=f, matrices=singular, out_size=(IN_W, IN_H)), "matrices"),
        (dict(frame=f, matrices=np.zeros((1, 2, 3)), out_size=(IN_W, IN_H)), "matrices"),
        (dict(frame=f, matrices=np.full((1, 2, 3), np.nan), out_size=(IN_W, IN_H)), "matrices"),
        (dict(frame=f, matrices=np.zeros((1, 3, 3)), out_size=(IN_W, IN_H)), "matrices"),
        (dict(frame=f, matrices=np.array([[[1e-15, 0, 0], [0, 1e-15, 0]]]), out_size=(IN_W, IN_H)), "matrices"),
        (dict(frame=f, matrices=np.array([[[1.0, 0, 0], [0, 1.0, 0]], [[1e-14, 1e-14, 0], [-1e-14, 1e-14, 0]]]),
              out_size=(IN_W, IN_H)), "affine 1"),
        (dict(frame=f.astype(np.float32), matrices=good, out_size=(IN_W, IN_H)), "frame"),
        (dict(frame=f[..., :2], matrices=good, out_size=(IN_W, IN_H)), "frame"),
        (dict(frame=f[:, :, 0], matrices=good, out_size=(IN_W, IN_H)), "frame"),
        (dict(frame=np.zeros((0, 5, 3), np.uint8), matrices=good, out_size=(IN_W, IN_H)), "frame"),
        (dict(frame=f, matrices=good, out_size=(0, IN_H)), "out_size"),
        (dict(frame=f, matrices=good, out_size=(IN_W, IN_H), std=[1, 0, 1]), "std"),
        (dict(frame=f, matrices=good, out_size=(IN_W, IN_H), layout="hwc"), "layout"),
        (dict(frame=f, matrices=good, out_size=(IN_W, IN_H), layout="nhwc", mean=[1, 2, 3]), "mean"),
        (dict(frame=f, matrices=good, out_size=(IN_W, IN_H), rounding="round"), "rounding"),
        (dict(frame=f, matrices=good, out_size=(IN_W, IN_H), rounding=None), "rounding"),
        (dict(frame=f, matrices=good, out_size=(IN_W, IN_H), border_value=256), "border_value"),
        (dict(frame=f, matrices=good, out_size=(IN_W, IN_H), border_value=(1, 2)), "border_value"),
        (dict(frame=f, matrices=good, out_size=(IN_W, IN_H), border_value=1.5), "border_value"),
        (dict(frame=f, matrices=good, out_size=(IN_W, IN_H), border_value="grey"), "border_value"),
    ]
    for kwargs, name in cases:
        with pytest.raises(ValueError, match=name):
            edgepose.warp_crops(**kwargs)
        with pytest.raises(ValueError, match=name):  # the twin checks the same
            crop.warp_crops_numpy(**kwargs)
    # the same errors in the float rounding
    for kwargs, name in cases[:10]:
        with pytest.raises(ValueError, match=name):
            edgepose.warp_crops(**kwargs, rounding="float")


@needs_data
@native
@pytest.mark.parametrize("rounding", ROUNDINGS)
def test_switching_gives_same_result(frames, rounding):
    mats = random_mats(np.random.default_rng(5), frames[2], 3)
    edgepose.set_implementation("native")
    a = edgepose.warp_crops(frames[2], mats, (IN_W, IN_H), to_rgb=True, mean=[0.5] * 3, std=[2.0] * 3, rounding=rounding)
    edgepose.set_implementation("numpy")
    b = edgepose.warp_crops(frames[2], mats, (IN_W, IN_H), to_rgb=True, mean=[0.5] * 3, std=[2.0] * 3, rounding=rounding)
    np.testing.assert_array_equal(a, b)


@native
def test_native_module_rechecks_memory_safety():
    from edgepose import _native

    with pytest.raises(ValueError, match="frame"):
        _native.warp_crops_u8(np.zeros((4, 4, 4), np.uint8), np.zeros((1, 2, 3)), 2, 2, False)
    with pytest.raises(ValueError, match="matrices"):
        _native.warp_crops_u8(np.zeros((4, 4, 3), np.uint8), np.zeros((1, 2, 3)), 2, 2, False)
    with pytest.raises(ValueError, match="rounding"):
        _native.warp_crops_u8(np.zeros((4, 4, 3), np.uint8), np.eye(2, 3)[None], 2, 2, False, 7)


@needs_data
def test_twin_matches_cv2_single_box(frames):
    """The NumPy twin alone (no native module needed) reproduces cv2.warpAffine."""
    m = get_affine_transform((200.3, 150.7), (1.1, 1.4), 25.0, (IN_W, IN_H))
    got = crop.warp_one_numpy(frames[3], m, IN_W, IN_H, CV_ROUNDING)
    assert_like_cv2(got, cv2_crops(frames[3], [m], (IN_W, IN_H))[0])


@needs_data
@native
@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("to_rgb", [False, True])
def test_axis_aligned_fast_path(frames, to_rgb, rounding):
    """Unrotated crops (the runtime's case) take a separable path; mirrored (flip-test) and
    zoomed-in/out crops, inside and across the frame edge, must still equal cv2 bit for bit."""
    rng = np.random.default_rng(6)
    f = frames[2]
    h, w = f.shape[:2]
    mats = []
    for _ in range(12):
        sx = rng.choice([-1, 1]) * rng.uniform(0.2, 4.0)
        sy = rng.uniform(0.2, 4.0)
        tx = rng.uniform(-0.5 * w, 0.5 * w) if sx > 0 else rng.uniform(0.5 * w, 1.5 * w) * abs(sx)
        mats.append([[sx, 0.0, tx * (1 if sx > 0 else 1)], [0.0, sy, rng.uniform(-sy * h, 0.5 * h)]])
    mats = np.array(mats)
    mats = np.concatenate([mats, crop_matrices(_boxes_inside(rng, w, h, 4), (IN_W, IN_H))[2]])
    got = edgepose.warp_crops(f, mats, (IN_W, IN_H), to_rgb=to_rgb, layout="nhwc", rounding=rounding)
    if rounding == CV_ROUNDING:
        assert_like_cv2(got, cv2_crops(f, mats, (IN_W, IN_H), to_rgb))
    gf = edgepose.warp_crops(f, mats, (IN_W, IN_H), to_rgb=to_rgb, mean=[9, 8, 7], std=[3, 2, 1], rounding=rounding)
    np.testing.assert_array_equal(gf, crop.warp_crops_numpy(f, mats, (IN_W, IN_H), to_rgb, [9, 8, 7], [3, 2, 1],
                                                            rounding=rounding))


def _boxes_inside(rng, w, h, n):
    bw = rng.uniform(20, w / 3, n)
    bh = rng.uniform(20, h / 3, n)
    return np.stack([rng.uniform(w / 4, w / 2, n), rng.uniform(h / 4, h / 2, n), bw, bh], 1)


@needs_data
@native
def test_concurrent_warps(frames):
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(8)
    jobs = [(frames[i % len(frames)], random_mats(rng, frames[i % len(frames)], 3)) for i in range(8)]
    serial = [edgepose.warp_crops(f, m, (IN_W, IN_H), to_rgb=True, mean=[1, 2, 3], std=[4, 5, 6]) for f, m in jobs]
    with ThreadPoolExecutor(4) as ex:
        threaded = list(ex.map(lambda j: edgepose.warp_crops(j[0], j[1], (IN_W, IN_H), to_rgb=True, mean=[1, 2, 3],
                                                             std=[4, 5, 6]), jobs))
    for a, b in zip(serial, threaded):
        np.testing.assert_array_equal(a, b)


def exact_bilinear(frame, m, out_w, out_h):
    """Independent reference for the float rounding: float64 bilinear by scipy at the source
    coordinates of the double-precision inverse. scipy's mode='grid-constant' blends with the
    0 beyond the edge as OpenCV's BORDER_CONSTANT does (its mode='constant' would return 0 for
    any point past the outer pixel centres instead)."""
    ndimage = pytest.importorskip("scipy.ndimage")
    inv = cv2.invertAffineTransform(np.asarray(m, np.float64))
    ys, xs = np.mgrid[0:out_h, 0:out_w].astype(np.float64)
    sx = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]
    sy = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
    chans = [ndimage.map_coordinates(frame[..., c].astype(np.float64), [sy, sx], order=1, mode="grid-constant", cval=0.0)
             for c in range(3)]
    return np.stack(chans, -1)


def sharp_frame():
    """Random noise with saturated blocks and thin stripes: the edges where roundings differ most."""
    f = np.random.default_rng(10).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    f[40:80, 50:90] = 255
    f[60:70] = 0
    f[:, 100:103] = [255, 0, 128]
    return f


@needs_data
@pytest.mark.parametrize("impl", ["numpy", "auto"])
def test_float_rounding_is_exact_bilinear_within_one_level(frames, impl):
    edgepose.set_implementation(impl)
    rng = np.random.default_rng(11)
    for f in (sharp_frame(), frames[0][::3, ::3]):
        mats = random_mats(rng, f, 6)
        ow, oh = 37, 45  # not a multiple of any SIMD width
        flt = edgepose.warp_crops(f, mats, (ow, oh), layout="nhwc", rounding="float").astype(np.float64)
        fix = edgepose.warp_crops(f, mats, (ow, oh), layout="nhwc", rounding="fixed").astype(np.float64)
        ref = np.stack([exact_bilinear(f, m, ow, oh) for m in mats])
        assert np.abs(flt - np.rint(ref)).max() <= 1
        assert np.abs(flt - ref).max() < 0.6  # rounding to nearest plus float32 error
        if f.shape == (120, 160, 3):
            # the 1/32-pixel fixed point is several grey levels off at these edges
            assert np.abs(fix - ref).max() > 2


@native
@settings(max_examples=40, deadline=None)
@given(
    a=st.floats(-3, 3), b=st.floats(-3, 3), c=st.floats(-3, 3), d=st.floats(-3, 3),
    tx=st.floats(-300, 300), ty=st.floats(-300, 300), ow=st.integers(1, 40), oh=st.integers(1, 40),
    fw=st.integers(1, 60), fh=st.integers(1, 60), seed=st.integers(0, 2**31),
)
def test_property_float_rounding_near_exact_bilinear(a, b, c, d, tx, ty, ow, oh, fw, fh, seed):
    if abs(a * d - b * c) < 1e-3:
        return
    f = np.random.default_rng(seed).integers(0, 256, (fh, fw, 3), dtype=np.uint8)
    m = np.array([[a, b, tx], [c, d, ty]])
    got = edgepose.warp_crops(f, m[None], (ow, oh), layout="nhwc", rounding="float")[0]
    assert np.abs(got - np.rint(exact_bilinear(f, m, ow, oh))).max() <= 1


def test_fma32_rounds_once():
    """The twin's fused multiply-add: exact cases and ones where two roundings would differ."""
    one_ulp = np.float32(2.0 ** -23)
    a = np.float32(1) + one_ulp
    # (1 + u)^2 = 1 + 2u + u^2: two roundings lose the u^2; one rounding of a*a - (1 + 2u) keeps it
    assert crop.fma32(a, a, -(np.float32(1) + 2 * one_ulp)) == np.float32(2.0 ** -46)
    assert crop.fma32(np.float32(3), np.float32(5), np.float32(-1)) == np.float32(14)
    # the exact sum is 1 + 2**-24 + 2**-70, just above the float32 tie between 1 and 1 + 2**-23;
    # a plain float64 sum drops the 2**-70, lands on the tie and rounds to even (1.0)
    a = np.float32(1) + one_ulp
    b = -np.float32(2.0 ** -24) * (np.float32(1) - one_ulp)
    assert crop.fma32(a, b, a) == a
    assert np.float32(np.float64(a) * np.float64(b) + np.float64(a)) == np.float32(1)  # what it avoids
    # an exact tie still rounds to even, and arrays broadcast
    got = crop.fma32(np.float32(2.0 ** -24), np.ones(3, np.float32), np.float32(1))
    assert got.dtype == np.float32 and got.shape == (3,) and np.all(got == 1)


@needs_data
@native
def test_float_rounding_tiny_and_half_weights(frames):
    """Weights below 2**-20 (source coordinates just past a pixel centre) take the native
    kernel's general fused multiply-add; weights of exactly 0 and 1/2 hit the round-half cases.
    Native and twin must still agree to the bit."""
    f = frames[1][100:140, 200:260]
    mats = []
    for t in (1e-7, 3e-9, -1e-7, 2.0 ** -30, 0.5, -0.5, 0.0, 1.5 + 2.0 ** -22):
        mats.append([[1.0, 0.0, -t], [0.0, 1.0, t / 3]])
        mats.append([[0.5, 0.0, -t], [0.0, 2.0, -t]])
    mats = np.array(mats)
    for layout in ("nhwc", "nchw"):
        got = edgepose.warp_crops(f, mats, (61, 41), layout=layout, rounding="float")
        np.testing.assert_array_equal(got, crop.warp_crops_numpy(f, mats, (61, 41), layout=layout, rounding="float"))


def letterbox_matrix(w, h, size):
    """Aspect-keeping scale of a w x h frame into size, centred (a YOLO letterbox)."""
    r = min(size[0] / w, size[1] / h)
    return np.array([[[r, 0, (size[0] - r * w) / 2], [0, r, (size[1] - r * h) / 2]]])


BORDERS = [114, (10, 200, 30), 255]


@needs_data
@native
@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("border", BORDERS[:2])
def test_border_value_equals_cv2(frames, rounding, border):
    """Samples outside the frame read the border value, blended with the frame at its edge as
    cv2.warpAffine(BORDER_CONSTANT, borderValue) does; both layouts, both roundings."""
    rng = np.random.default_rng(8)
    frame = frames[1]
    h, w = frame.shape[:2]
    cases = [(random_mats(rng, frame, 4), (IN_W, IN_H)),
             (np.array([[[1.3, 0, -0.37], [0, 1.3, -0.61]]]), (IN_W, IN_H)),  # sub-pixel frame edge
             (letterbox_matrix(w, h, (640, 640)), (640, 640)),
             (letterbox_matrix(w, h, (320, 640)), (320, 640))]
    for mats, size in cases:
        got = edgepose.warp_crops(frame, mats, size, layout="nhwc", rounding=rounding, border_value=border)
        twin = crop.warp_crops_numpy(frame, mats, size, layout="nhwc", rounding=rounding, border_value=border)
        np.testing.assert_array_equal(got, twin)
        if rounding == CV_ROUNDING:
            assert_like_cv2(got, cv2_crops(frame, mats, size, border=border))
    far = crop_matrices(np.array([[w + 500, h + 500, 50, 80]]), (IN_W, IN_H))[2]
    for impl in ("native", "numpy"):
        edgepose.set_implementation(impl)
        out = edgepose.warp_crops(frame, far, (IN_W, IN_H), layout="nhwc", rounding=rounding, border_value=border)
        assert np.all(out == np.broadcast_to(border, 3).astype(np.uint8))
    edgepose.set_implementation("auto")
    # the letterbox: frame in the middle, border above and below
    lb = edgepose.warp_crops(frame, letterbox_matrix(w, h, (640, 640)), (640, 640), layout="nhwc",
                             rounding=rounding, border_value=border)[0]
    assert np.all(lb[0] == np.broadcast_to(border, 3)) and np.all(lb[-1] == np.broadcast_to(border, 3))
    # float layout: the uint8 crop (border included), channel-swapped and normalised
    mats = cases[0][0]
    f32 = edgepose.warp_crops(frame, mats, (IN_W, IN_H), to_rgb=True, mean=[1, 2, 3], std=[2, 3, 4],
                              rounding=rounding, border_value=border)
    u8 = edgepose.warp_crops(frame, mats, (IN_W, IN_H), to_rgb=True, layout="nhwc", rounding=rounding,
                             border_value=border)
    ref = (u8.astype(np.float32) - np.float32([1, 2, 3])) / np.float32([2, 3, 4])
    np.testing.assert_array_equal(f32, np.ascontiguousarray(ref.transpose(0, 3, 1, 2)))
    np.testing.assert_array_equal(
        f32, crop.warp_crops_numpy(frame, mats, (IN_W, IN_H), True, [1, 2, 3], [2, 3, 4], rounding=rounding,
                                   border_value=border))


@needs_data
@native
@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (7, 1), (3, 5)])
def test_border_value_tiny_and_strided_frames(frames, shape, rounding):
    rng = np.random.default_rng(9)
    f = rng.integers(0, 256, shape + (3,), dtype=np.uint8)
    mats = np.array([[[1.0, 0, 0.3], [0, 1.0, 0.6]], [[0.5, 0.2, -0.4], [-0.1, 0.7, 0.2]], [[3.0, 0, 1], [0, 3.0, 1]]])
    views = [f, np.ascontiguousarray(frames[0][::3, ::2][:40, :60])[:, ::-1], frames[0][10:70:2, 5:90:3, ::-1]]
    for v in views:
        got = edgepose.warp_crops(v, mats, (5, 4), layout="nhwc", rounding=rounding, border_value=(7, 114, 250))
        if rounding == CV_ROUNDING:
            assert_like_cv2(got, cv2_crops(v, mats, (5, 4), border=(7, 114, 250)))
        np.testing.assert_array_equal(got, crop.warp_crops_numpy(v, mats, (5, 4), layout="nhwc", rounding=rounding,
                                                                 border_value=(7, 114, 250)))


@native
@settings(max_examples=60, deadline=None)
@given(
    a=st.floats(-3, 3), b=st.floats(-3, 3), c=st.floats(-3, 3), d=st.floats(-3, 3),
    tx=st.floats(-60, 60), ty=st.floats(-60, 60), ow=st.integers(1, 30), oh=st.integers(1, 30),
    fw=st.integers(1, 40), fh=st.integers(1, 40), seed=st.integers(0, 2 ** 31), upright=st.booleans(),
    rounding=st.sampled_from(ROUNDINGS), border=st.sampled_from(BORDERS),
)
def test_property_border_value(a, b, c, d, tx, ty, ow, oh, fw, fh, seed, upright, rounding, border):
    if upright:
        b = c = 0.0
    if abs(a * d - b * c) < 1e-3:
        return
    f = np.random.default_rng(seed).integers(0, 256, (fh, fw, 3), dtype=np.uint8)
    m = np.array([[[a, b, tx], [c, d, ty]]])
    got = edgepose.warp_crops(f, m, (ow, oh), layout="nhwc", rounding=rounding, border_value=border)
    if rounding == CV_ROUNDING:
        assert_like_cv2(got, cv2_crops(f, m, (ow, oh), border=border))
    np.testing.assert_array_equal(got, crop.warp_crops_numpy(f, m, (ow, oh), layout="nhwc", rounding=rounding,
                                                             border_value=border))


@needs_data
@native
@pytest.mark.parametrize("to_rgb", [False, True])
def test_whole_pixel_shifts(frames, to_rgb):
    """Scale-1 letterboxes and integer shifts (the rows that are plain copies of frame pixels),
    with sub-pixel neighbours, on packed and strided frames, both layouts."""
    frame = frames[0][:200, :300]
    h, w = frame.shape[:2]
    shifts = [(0, 50), (-7, 3), (12, -9), (w + 5, 0), (-w - 5, 0), (0, -h - 2), (0.5, 20), (3, 0.25), (-1, -1)]
    for view in (np.ascontiguousarray(frame), frame[:, ::-1], np.asfortranarray(frame)):
        for tx, ty in shifts:
            m = np.array([[[1.0, 0, tx], [0, 1.0, ty]]])
            for size in [(300, 300), (31, 17)]:
                got = edgepose.warp_crops(view, m, size, to_rgb=to_rgb, layout="nhwc", border_value=(3, 114, 250))
                ref = cv2_crops(view, m, size, to_rgb, border=(3, 114, 250))
                if CV_ROUNDING == "fixed":
                    np.testing.assert_array_equal(got, ref)
                np.testing.assert_array_equal(got, crop.warp_crops_numpy(view, m, size, to_rgb, layout="nhwc",
                                                                         border_value=(3, 114, 250)))
                f32 = edgepose.warp_crops(view, m, size, to_rgb=to_rgb, mean=0, std=255, border_value=(3, 114, 250))
                np.testing.assert_array_equal(f32, (got.astype(np.float32) / np.float32(255)).transpose(0, 3, 1, 2))
