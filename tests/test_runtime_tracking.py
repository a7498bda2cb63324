"""PoseTracker and box sources, on the PoseTrack18 mini data (real people, real track ids)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from _models import load_posetrack_frame, tiny_onnx
from edgepose.boxes import BoxSource, as_boxes, boxes_from_keypoints, clip_boxes, full_frame, load_boxes_json
from edgepose.estimator import PoseEstimator, Poses
from edgepose.keypoints import COCO
from edgepose.tracking import PoseTracker
from conftest import needs_data


def _poses(kps: np.ndarray, boxes: np.ndarray) -> Poses:
    k = kps[..., :2].astype(np.float32)
    s = np.where(kps[..., 2] > 0, 0.9, 0.05).astype(np.float32)
    return Poses(k, s, boxes.astype(np.float64), np.ones(len(k), np.float32))


@needs_data
def test_ids_follow_ground_truth_tracks_under_motion_and_shuffling():
    """11 annotated people move (each its own drift + noise) and come in a new order every
    frame: the tracker's ids must map one-to-one onto PoseTrack's track_id, all clip long."""
    _, boxes, kps, gt_ids = load_posetrack_frame("012834_mpii_test")
    rng = np.random.default_rng(0)
    drift = rng.uniform(-6, 6, size=(len(gt_ids), 2))
    tr = PoseTracker(COCO.sigmas_array(), oks_thr=0.3)
    mapping = {}
    for t in range(30):
        order = rng.permutation(len(gt_ids))
        k = kps[order].copy()
        k[..., :2] += drift[order][:, None, :] * t + rng.normal(0, 1.5, size=k[..., :2].shape)
        b = boxes[order].copy()
        b[:, :2] += drift[order] * t
        p = tr.update(_poses(k, b))
        for gid, tid in zip(gt_ids[order], p.track_ids):
            assert mapping.setdefault(int(gid), int(tid)) == int(tid), f"frame {t}: person {gid} changed id"
    assert sorted(mapping.values()) == list(range(len(gt_ids)))


@needs_data
def test_lost_track_timeout_and_reappearance():
    _, boxes, kps, _ = load_posetrack_frame("009473_mpii_test")
    tr = PoseTracker(COCO.sigmas_array(), max_age=3)
    first = tr.update(_poses(kps, boxes)).track_ids.copy()
    # person 1 is hidden for 3 frames (<= max_age): keeps its id
    for _ in range(3):
        tr.update(_poses(kps[:1], boxes[:1]))
    assert tr.update(_poses(kps, boxes)).track_ids.tolist() == first.tolist()
    # hidden for 5 frames (> max_age): comes back as a new identity
    for _ in range(5):
        tr.update(_poses(kps[:1], boxes[:1]))
    again = tr.update(_poses(kps, boxes)).track_ids
    assert again[0] == first[0] and again[1] not in first


@needs_data
def test_dissimilar_pose_starts_new_track():
    _, boxes, kps, _ = load_posetrack_frame("009473_mpii_test")
    tr = PoseTracker(COCO.sigmas_array())
    a = tr.update(_poses(kps[:1], boxes[:1])).track_ids[0]
    moved = kps[:1].copy()
    moved[..., 0] += 600  # far away: OKS ~ 0, and its box does not overlap the old one (no IoU fallback)
    far = boxes[:1].copy()
    far[:, 0] += 600
    assert tr.update(_poses(moved, far)).track_ids[0] != a


@needs_data
def test_detect_every_and_propagated_boxes():
    _, boxes, kps, _ = load_posetrack_frame("009473_mpii_test")
    tr = PoseTracker(COCO.sigmas_array(), detect_every=3)
    assert tr.should_detect(0)
    tr.update(_poses(kps, boxes), 0)
    assert not tr.should_detect(1) and not tr.should_detect(2) and tr.should_detect(3)
    prop = tr.propagated_boxes((1080, 1920))
    assert prop.shape == (2, 5)
    vis = kps[..., 2] > 0
    for i in range(2):  # the box holds every labelled joint
        p = kps[i][vis[i], :2]
        x, y, w, h = prop[i, :4]
        assert x <= p[:, 0].min() and y <= p[:, 1].min() and x + w >= p[:, 0].max() and y + h >= p[:, 1].max()
    tr.update(_poses(kps[:0], boxes[:0]), 1)
    assert tr.should_detect(2)  # nothing tracked: detect now


@needs_data
def test_pipeline_keeps_ids_on_posetrack_frame(tmp_path):
    """Estimator + tracker on the real 1920x1080 PoseTrack frame with its ground-truth boxes,
    the camera panning a few pixels per frame: every person keeps its id."""
    frame, boxes, _, gt_ids = load_posetrack_frame("012834_mpii_test")
    est = PoseEstimator(tiny_onnx(tmp_path / "m.onnx"))
    tr = PoseTracker(est.sigmas)
    seen = None
    for t in range(5):
        dx, dy = 4 * t, 2 * t
        shifted = np.zeros_like(frame)
        shifted[dy:, dx:] = frame[: frame.shape[0] - dy, : frame.shape[1] - dx]
        b = boxes.copy()
        b[:, :2] += (dx, dy)
        p = tr.update(est(shifted, b))
        assert len(p) == len(gt_ids)
        if seen is None:
            seen = p.track_ids.copy()
        np.testing.assert_array_equal(p.track_ids, seen)
    assert len(set(seen.tolist())) == len(gt_ids)


def test_box_helpers(tmp_path):
    np.testing.assert_array_equal(full_frame((480, 640, 3)), [[0, 0, 640, 480, 1]])
    assert as_boxes([1, 2, 3, 4]).shape == (1, 5)
    assert as_boxes([]).shape == (0, 5)
    with pytest.raises(ValueError, match="width/height"):
        as_boxes([[0, 0, 0, 5]])
    c = clip_boxes(np.array([[-10, -10, 50, 50, 1], [630, 470, 50, 50, 1], [700, 0, 5, 5, 1]]), (480, 640))
    np.testing.assert_array_equal(c[:, :4], [[0, 0, 40, 40], [630, 470, 10, 10]])
    b, src = boxes_from_keypoints(np.array([[[10, 20], [30, 60]], [[0, 0], [1, 1]]]), np.array([[0.9, 0.9], [0.9, 0.1]]))
    assert src.tolist() == [0] and b.shape == (1, 5)
    (tmp_path / "b.json").write_text(json.dumps({"0": [[1, 2, 30, 40, 0.5]], "2": []}))
    per = load_boxes_json(tmp_path / "b.json")
    src_boxes = BoxSource(per)
    assert src_boxes(None, 0).shape == (1, 5) and src_boxes(None, 1).shape == (0, 5)
    (tmp_path / "bad.json").write_text("[[1, 2, 3]]")
    with pytest.raises(ValueError, match="bad.json"):
        load_boxes_json(tmp_path / "bad.json")
    assert BoxSource()(np.zeros((4, 4, 3), np.uint8), 0) is None
    det = BoxSource(detector=lambda f: np.array([[0, 0, 2, 2, 0.4]]))
    assert det.from_detector and det(None, 5).tolist() == [[0, 0, 2, 2, 0.4]]
