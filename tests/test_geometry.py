"""edgepose.geometry against the reference three-point construction and its own inverses."""
import math

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgepose.geometry import (
    affine_points,
    box_to_center_scale,
    center_scale_to_box,
    crop_matrices,
    get_affine_transform,
    invert_affine,
)


def reference_affine(center, scale, rot, output_size, inv=False, shift=(0.0, 0.0)):
    """The Simple Baselines construction: three point pairs handed to cv2.getAffineTransform."""
    src_w = scale[0] * 200.0
    dst_w, dst_h = output_size
    r = math.radians(rot)
    # the "up" vector of the box, (0, -src_w / 2), rotated by rot
    sx, sy = 0.0, src_w * -0.5
    src_dir = np.array([sx * math.cos(r) - sy * math.sin(r), sx * math.sin(r) + sy * math.cos(r)])
    dst_dir = np.array([0.0, dst_w * -0.5])
    shift_px = np.asarray(scale) * 200.0 * np.asarray(shift)

    def third(a, b):
        d = a - b
        return b + np.array([-d[1], d[0]])

    src = np.zeros((3, 2), np.float32)
    dst = np.zeros((3, 2), np.float32)
    src[0] = np.asarray(center) + shift_px
    src[1] = np.asarray(center) + src_dir + shift_px
    dst[0] = [dst_w * 0.5, dst_h * 0.5]
    dst[1] = dst[0] + dst_dir
    src[2] = third(src[0], src[1])
    dst[2] = third(dst[0], dst[1])
    return cv2.getAffineTransform(dst, src) if inv else cv2.getAffineTransform(src, dst)


@pytest.mark.parametrize("rot", [0.0, 30.0, -45.0, 90.0, 179.0])
@pytest.mark.parametrize("inv", [False, True])
@pytest.mark.parametrize("out", [(192, 256), (48, 64), (288, 384)])
def test_affine_matches_three_point_construction(rot, inv, out):
    center, scale = np.array([320.5, 211.25]), np.array([1.3, 1.7333])
    ours = get_affine_transform(center, scale, rot, out, inv=inv)
    ref = reference_affine(center, scale, rot, out, inv=inv)
    # the reference goes through float32 points; agreement is to float32 precision
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=2e-3)


def test_affine_shift_matches_reference():
    c, s = np.array([100.0, 80.0]), np.array([0.9, 1.2])
    ours = get_affine_transform(c, s, 15.0, (192, 256), shift=(0.1, -0.05))
    np.testing.assert_allclose(ours, reference_affine(c, s, 15.0, (192, 256), shift=(0.1, -0.05)), atol=2e-3)


@settings(max_examples=60, deadline=None)
@given(
    cx=st.floats(-500, 2500), cy=st.floats(-500, 2500), sw=st.floats(0.05, 10), rot=st.floats(-180, 180),
    ow=st.integers(1, 400), oh=st.integers(1, 400),
)
def test_forward_inverse_roundtrip(cx, cy, sw, rot, ow, oh):
    c, s = np.array([cx, cy]), np.array([sw, sw * 1.3])
    fwd = get_affine_transform(c, s, rot, (ow, oh))
    back = get_affine_transform(c, s, rot, (ow, oh), inv=True)
    # composing the two 2x3 matrices gives the identity
    full = np.vstack([fwd, [0, 0, 1]])
    np.testing.assert_allclose((np.vstack([back, [0, 0, 1]]) @ full)[:2], np.eye(3)[:2], atol=1e-9 * max(1, abs(cx), abs(cy)))
    np.testing.assert_allclose(invert_affine(fwd), back, rtol=1e-9, atol=1e-7)
    pts = np.array([[cx, cy], [cx + 10, cy - 3], [0.0, 0.0]])
    np.testing.assert_allclose(affine_points(affine_points(pts, fwd), back), pts, atol=1e-7 * max(1, abs(cx), abs(cy)))
    # the box centre lands on the crop centre
    np.testing.assert_allclose(affine_points(np.array([cx, cy]), fwd), [ow / 2, oh / 2], atol=1e-8 * max(1, abs(cx), abs(cy)))


def test_batched_matches_single():
    c = np.array([[10.0, 20.0], [300.0, 40.0]])
    s = np.array([[1.0, 1.3], [0.4, 0.6]])
    rot = np.array([0.0, 33.0])
    batch = get_affine_transform(c, s, rot, (192, 256))
    for i in range(2):
        np.testing.assert_array_equal(batch[i], get_affine_transform(c[i], s[i], rot[i], (192, 256)))
    pts = np.random.default_rng(0).uniform(0, 100, (2, 5, 2))
    mapped = affine_points(pts, batch)
    for i in range(2):
        np.testing.assert_allclose(mapped[i], affine_points(pts[i], batch[i]))


@pytest.mark.parametrize(
    "box,expected_wh",
    [
        ((0, 0, 100, 100), (100.0, 100.0 / 0.75)),  # square box: too wide, height grows to w / aspect
        ((0, 0, 300, 100), (300.0, 400.0)),  # wide box: height grows to w / aspect
        ((0, 0, 30, 200), (150.0, 200.0)),  # tall box: width grows to h * aspect
        ((7, 3, 150, 200), (150.0, 200.0)),  # exact aspect: unchanged
    ],
)
def test_box_to_center_scale_aspect_padding(box, expected_wh):
    c, s = box_to_center_scale(box, 192 / 256)
    x, y, w, h = box
    np.testing.assert_allclose(c, [x + w / 2, y + h / 2])
    np.testing.assert_allclose(s, np.array(expected_wh) / 200 * 1.25)
    np.testing.assert_allclose(s[0] / s[1], 0.75)


def test_box_to_center_scale_batch_and_inverse():
    boxes = np.array([[10, 20, 50, 150], [0, 0, 400, 100], [5, 5, 75, 100]], float)
    c, s = box_to_center_scale(boxes, 0.75)
    assert c.shape == (3, 2) and s.shape == (3, 2)
    back = center_scale_to_box(c, s)
    np.testing.assert_allclose(back[:, :2] + back[:, 2:] / 2, c)
    np.testing.assert_allclose(back[2], boxes[2])  # already at the aspect: round-trips exactly


def test_box_errors_name_the_argument():
    with pytest.raises(ValueError, match="boxes"):
        box_to_center_scale(np.zeros((2, 3)), 0.75)
    with pytest.raises(ValueError, match="aspect_ratio"):
        box_to_center_scale((0, 0, 1, 1), 0)
    with pytest.raises(ValueError, match="scale"):
        get_affine_transform((0, 0), (0, 0), 0, (192, 256))


def test_invert_affine_singular():
    with pytest.raises(ValueError, match="singular"):
        invert_affine(np.array([[1.0, 2.0, 0.0], [2.0, 4.0, 0.0]]))


def test_crop_matrices_centre_box():
    c, s, m = crop_matrices([[100, 50, 60, 80]], (192, 256))
    assert m.shape == (1, 2, 3)
    np.testing.assert_allclose(affine_points(c[0], m[0]), [96, 128])
