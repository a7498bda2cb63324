"""PoseEstimator through onnxruntime with an exported (untrained) model: shapes, batching,
consistency with a hand-run pipeline, flip test, NMS, metadata checks at load."""
from __future__ import annotations

import numpy as np
import pytest

import edgepose
from _models import CLIP, tiny_onnx
from edgepose.backends import BackendError
from edgepose.decode import decode
from edgepose.estimator import PoseEstimator, Poses
from edgepose.geometry import crop_matrices, get_affine_transform
from edgepose.crop import warp_crops
from edgepose.metadata import MetadataError
from conftest import needs_data


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("est")
    return {"dynamic": tiny_onnx(d / "dyn.onnx"), "fixed": tiny_onnx(d / "fixed.onnx", dynamic_batch=False), "dir": d}


@pytest.fixture(scope="module")
def frame():
    import cv2

    cap = cv2.VideoCapture(str(CLIP))
    ok, f = cap.read()
    cap.release()
    assert ok
    return f


BOXES = np.array([[20, 10, 150, 230], [170, 20, 160, 220], [100, 50, 90, 120]], np.float64)


@needs_data
def test_full_frame_default(models, frame):
    est = PoseEstimator(models["dynamic"])
    p = est(frame)
    assert isinstance(p, Poses) and len(p) == 1
    assert p.keypoints.shape == (1, 17, 2) and p.keypoints.dtype == np.float32
    assert p.scores.shape == (1, 17) and p.person_scores.shape == (1,)
    np.testing.assert_array_equal(p.boxes, [[0, 0, frame.shape[1], frame.shape[0]]])
    assert p.track_ids.tolist() == [-1]
    assert set(est.last_timings) == {"warp", "infer", "decode", "nms"}
    assert all(v >= 0 for v in est.last_timings.values())


@needs_data
def test_matches_hand_run_pipeline(models, frame):
    """The estimator = crop_matrices -> warp_crops -> onnxruntime -> decode(inverse heatmap affines)."""
    import onnxruntime as ort

    est = PoseEstimator(models["dynamic"])
    p = est(frame, BOXES[:, :4])
    m = est.meta
    c, s, mats = crop_matrices(BOXES, m.input_size)
    x = warp_crops(frame, mats, m.input_size, True, m.mean, m.std, "nchw")
    hm = ort.InferenceSession(str(models["dynamic"]), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    coords, scores = decode(hm, get_affine_transform(c, s, 0, m.heatmap_size, inv=True))
    np.testing.assert_allclose(p.keypoints, coords, atol=1e-4)
    np.testing.assert_allclose(p.scores, scores, atol=1e-6)
    # keypoints land inside each (aspect-padded, 1.25x) crop region
    half = s * 200 / 2
    assert np.all(np.abs(p.keypoints - c[:, None, :]) <= half[:, None, :] + 1)


@needs_data
def test_fixed_batch_loops_and_agrees_with_dynamic(models, frame):
    dyn = PoseEstimator(models["dynamic"])
    fix = PoseEstimator(models["fixed"])
    assert dyn.spec.batch == 0 and fix.spec.batch == 1
    calls = []
    real = fix.backend.infer
    fix.backend.infer = lambda b: (calls.append(b.shape[0]), real(b))[1]
    a, b = dyn(frame, BOXES), fix(frame, BOXES)
    assert calls == [1, 1, 1]
    np.testing.assert_allclose(a.keypoints, b.keypoints, atol=1e-3)


@needs_data
def test_dynamic_batch_is_one_inference(models, frame):
    est = PoseEstimator(models["dynamic"], flip_test=True)
    calls = []
    real = est.backend.infer
    est.backend.infer = lambda b: (calls.append(b.shape[0]), real(b))[1]
    est(frame, BOXES)
    assert calls == [6]  # 3 persons + their mirrored crops in one batch


@needs_data
def test_flip_test_merges_the_mirrored_pass(models, frame):
    import onnxruntime as ort

    est = PoseEstimator(models["dynamic"], flip_test=True)
    p = est(frame, BOXES)
    m = est.meta
    c, s, mats = crop_matrices(BOXES, m.input_size)
    x = warp_crops(frame, mats, m.input_size, True, m.mean, m.std, "nchw")
    sess = ort.InferenceSession(str(models["dynamic"]), providers=["CPUExecutionProvider"])
    hm = sess.run(None, {"input": x})[0]
    hf = sess.run(None, {"input": np.ascontiguousarray(x[..., ::-1])})[0]
    coords, _ = decode(hm, get_affine_transform(c, s, 0, m.heatmap_size, inv=True), flipped=hf,
                       flip_pairs=m.flip_pairs)
    np.testing.assert_allclose(p.keypoints, coords, atol=1e-3)
    plain = PoseEstimator(models["dynamic"])(frame, BOXES)
    assert not np.allclose(plain.keypoints, p.keypoints)


@needs_data
def test_numpy_and_native_kernels_agree(models, frame):
    est = PoseEstimator(models["dynamic"])
    a = est(frame, BOXES)
    edgepose.set_implementation("numpy")
    try:
        b = est(frame, BOXES)
    finally:
        edgepose.set_implementation("auto")
    np.testing.assert_allclose(a.keypoints, b.keypoints, atol=1e-3)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)


@needs_data
def test_detector_boxes_rescored_and_nms(models, frame):
    est = PoseEstimator(models["dynamic"])
    dup = np.array([[20, 10, 150, 230, 0.9], [20, 10, 150, 230, 0.8], [170, 20, 160, 220, 0.7]])
    p = est(frame, dup)
    assert len(p) == 2  # the identical pose is suppressed by OKS NMS
    np.testing.assert_allclose(p.boxes[:, 0], [20, 170])
    # rescoring: box score x mean of joint scores above 0.2
    js = p.scores.astype(np.float64)
    expect = np.array([0.9, 0.7]) * np.array([r[r > 0.2].mean() if (r > 0.2).any() else 0 for r in js])
    np.testing.assert_allclose(p.person_scores, expect, rtol=1e-5)
    # user boxes without scores are not NMS'd
    assert len(est(frame, dup[:, :4])) == 3


@needs_data
def test_no_boxes_gives_empty_poses(models, frame):
    p = PoseEstimator(models["dynamic"])(frame, np.zeros((0, 4)))
    assert len(p) == 0 and p.keypoints.shape == (0, 17, 2)
    assert p.to_list() == []


@needs_data
def test_to_list_schema(models, frame):
    p = PoseEstimator(models["dynamic"])(frame, BOXES[:1])
    (d,) = p.to_list()
    assert set(d) == {"id", "box", "box_score", "score", "keypoints", "scores"}
    assert len(d["keypoints"]) == 17 and len(d["keypoints"][0]) == 2 and len(d["scores"]) == 17


@pytest.mark.parametrize("override,match", [
    ({"input_size": (160, 256)}, "does not match metadata input_size"),
    ({"num_joints": 16, "keypoint_set": "mpii", "flip_pairs": []}, "does not match metadata"),
    ({"heatmap_size": (24, 32)}, "does not match metadata"),
])
def test_metadata_mismatch_fails_at_load(models, override, match):
    path = tiny_onnx(models["dir"] / f"bad{len(override)}{sorted(override)[0]}.onnx", **override)
    with pytest.raises(MetadataError, match=match):
        PoseEstimator(path)


def test_missing_metadata_and_bad_files(models, tmp_path):
    import onnx

    m = onnx.load(str(models["dynamic"]))
    del m.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(m, str(bare))
    with pytest.raises(MetadataError, match="no edgepose metadata"):
        PoseEstimator(bare)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(BackendError, match="onnxruntime cannot load"):
        PoseEstimator(junk)
    with pytest.raises(FileNotFoundError):
        PoseEstimator(tmp_path / "none.onnx")


@needs_data
def test_bad_frame_and_boxes(models, frame):
    est = PoseEstimator(models["dynamic"])
    with pytest.raises(ValueError, match="frame"):
        est(frame.astype(np.float32))
    with pytest.raises(ValueError, match="boxes"):
        est(frame, np.array([[0, 0, -5, 10]]))
    with pytest.raises(ValueError, match="boxes"):
        est(frame, np.zeros((2, 3)))


@needs_data
def test_posetrack_detector_boxes_through_nms(models):
    """The PoseTrack18 detections of one real frame (100 boxes with scores, many overlapping)
    through rescoring + OKS NMS: kept poses overlap by at most the threshold, and every dropped
    pose overlaps a kept, better-scored one by more. (Untrained poses of overlapping boxes are
    not near-identical, so the test uses thr 0.3 and vis_thr 0 so rescoring keeps every box.)"""
    import json

    from _models import POSETRACK, load_posetrack_frame
    from edgepose.nms import oks_numpy

    frame, _, _, _ = load_posetrack_frame("012834_mpii_test")
    dets = json.loads((POSETRACK / "annotations" / "test_posetrack18_human_detections.json").read_text())
    boxes = np.array([d["bbox"] + [d["score"]] for d in dets if d["image_id"] == 10128340000])
    assert len(boxes) == 100
    est = PoseEstimator(models["dynamic"], nms_thr=0.3, vis_thr=0.0)
    every = est(frame, boxes, from_detector=False)
    kept = est(frame, boxes)
    assert 0 < len(kept) < len(every) == 100
    assert np.all(np.diff(kept.person_scores) <= 1e-6)
    kp = np.concatenate([every.keypoints, every.scores[..., None]], axis=2).astype(np.float64)
    _, s, _ = crop_matrices(every.boxes, est.meta.input_size)
    areas = s[:, 0] * s[:, 1] * 200 ** 2
    idx = [int(np.flatnonzero((every.boxes == b).all(axis=1))[0]) for b in kept.boxes]

    def oks(i, js):  # OKS of kept pose i against candidates js, as the NMS computes it
        return oks_numpy(kp[i], kp[js], areas[i], areas[js], est.sigmas)  # every joint counts, as in the estimator

    for n, i in enumerate(idx):
        assert np.all(oks(i, np.array(idx[n + 1:], int)) <= 0.3)
    for j in sorted(set(range(100)) - set(idx)):
        better = [i for i in idx if every.person_scores[i] >= every.person_scores[j]]
        assert any(oks(i, np.array([j]))[0] > 0.3 for i in better), j
