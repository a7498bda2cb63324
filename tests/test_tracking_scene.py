"""Tracking against synthetic ground truth: a planted pose model and a planted detector on a
moving scene (a crossing, an occlusion gap, a person leaving and re-entering, detector misses
and false positives), scored with motmetrics. Runs everywhere: no real model needed."""
from __future__ import annotations

from typing import Dict, List

import numpy as np
import pytest

from _scene import SceneDetector, color_pose_onnx, crossing_scene, read_frame_number

mm = pytest.importorskip("motmetrics", reason="pip install motmetrics (requirements/host.txt)")

from edgepose.boxes import box_iou_matrix, boxes_from_keypoints  # noqa: E402
from edgepose.estimator import PoseEstimator, Poses  # noqa: E402
from edgepose.pipeline import Pipeline  # noqa: E402
from edgepose.tracking import PoseTracker  # noqa: E402

MAX_SWITCHES = 1  # crossing people may swap once when their crops hold both


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return color_pose_onnx(tmp_path_factory.mktemp("scene") / "color_pose.onnx")


@pytest.fixture(scope="module")
def scene():
    return crossing_scene()


def _sequential(model, scene, **tracker_opts) -> List[Poses]:
    """The per-frame loop of a library user: plan (detector + propagation), estimate, track."""
    est = PoseEstimator(model)
    tr = PoseTracker(est.sigmas, **tracker_opts)
    det = SceneDetector(scene)
    out = []
    for t in range(scene.frames):
        f = scene.frame(t)
        plan = tr.plan(det(f) if tr.should_detect(t) else None, f.shape)
        out.append(tr.update(est(f, plan.boxes), t, plan))
    return out


def _pipeline(model, scene, workers: int, **tracker_opts) -> List[Poses]:
    est_sigmas = PoseEstimator(model).sigmas
    with Pipeline(model, workers, SceneDetector(scene), tracker=PoseTracker(est_sigmas, **tracker_opts)) as pipe:
        res = list(pipe.run(scene.all_frames()))
    assert [read_frame_number(r.frame) for r in res] == list(range(scene.frames))
    assert all(r.error is None for r in res)
    return [r.poses for r in res]


def iou_distance(gt: np.ndarray, hyp: np.ndarray, max_dist: float = 0.5) -> np.ndarray:
    """``1 - IoU`` between ``(N, 4)`` and ``(M, 4)`` xywh boxes, NaN (do not pair) above
    ``max_dist``: the distance motmetrics pairs on. Not motmetrics' own ``iou_matrix``, which
    calls ``np.asfarray`` (gone in numpy 2); the counting stays motmetrics'."""
    if gt.size == 0 or hyp.size == 0:
        return np.empty((0, 0))
    dist = 1.0 - box_iou_matrix(gt, hyp)
    return np.where(dist > max_dist, np.nan, dist)


def test_iou_distance_is_motmetrics_pairing_distance():
    gt = np.array([[0, 0, 10, 10], [20, 20, 10, 10]], float)
    hyp = np.array([[5, 0, 10, 10], [0, 0, 10, 10], [100, 100, 5, 5]], float)
    d = iou_distance(gt, hyp)
    # IoU 50/150 = 1/3 -> distance 2/3 > 0.5: not paired; identical boxes: 0; disjoint: NaN
    assert np.isnan(d[0, 0]) and d[0, 1] == 0.0 and np.isnan(d[0, 2]) and np.isnan(d[1]).all()
    assert np.isclose(iou_distance(gt, hyp, max_dist=0.9)[0, 0], 2 / 3)
    assert iou_distance(gt[:0], hyp).shape == (0, 0)


def _score(scene, results: List[Poses]) -> Dict[str, float]:
    acc = mm.MOTAccumulator(auto_id=True)
    for t, poses in enumerate(results):
        gt = scene.visible(t)
        gt_ids = [g[0] for g in gt]
        gt_boxes = np.array([g[1] for g in gt]).reshape(-1, 4)
        # where the pose says the person is (the crop box may be a propagated one, a few frames old)
        boxes = poses.boxes[:, :4].copy()
        kb, src = boxes_from_keypoints(poses.keypoints, poses.scores, 0.2, margin=0.1, min_joints=1)
        boxes[src] = kb[:, :4]
        dist = iou_distance(gt_boxes, boxes, max_dist=0.5)
        acc.update(gt_ids, poses.track_ids.tolist(), dist)
    summary = mm.metrics.create().compute(acc, metrics=["num_switches", "num_misses", "num_false_positives",
                                                       "num_objects", "mota", "num_unique_objects"], name="s")
    return {k: float(summary[k].iloc[0]) for k in summary.columns}


def _check(m: Dict[str, float]) -> None:
    assert m["num_switches"] <= MAX_SWITCHES, m
    # the bound means something only if the people are reported at all
    assert m["num_misses"] <= 0.08 * m["num_objects"], m  # detect_every 3 sees a re-entry up to 2 frames late
    assert m["mota"] >= 0.85, m


@pytest.mark.parametrize("detect_every", [1, 3])
def test_ids_hold_through_crossing_occlusion_and_reentry(model, scene, detect_every):
    _check(_score(scene, _sequential(model, scene, detect_every=detect_every)))


@pytest.mark.parametrize("workers", [1, 2, 3])
@pytest.mark.parametrize("detect_every", [1, 3])
def test_pipeline_ids_hold_on_one_and_several_workers(model, scene, workers, detect_every):
    """The pipeline propagates frame i - workers to frame i; with workers == detect_every each
    of the interleaved chains still gets the people found by the detector in between."""
    _check(_score(scene, _pipeline(model, scene, workers, detect_every=detect_every)))


def test_metric_sees_switches_when_lost_tracks_are_forgotten(model, scene):
    """The same scene with max_age 0: the occluded and the re-entering person come back under
    new ids, which motmetrics counts as switches (the bound above is not vacuous)."""
    m = _score(scene, _sequential(model, scene, max_age=0))
    assert m["num_switches"] >= 2, m


def test_weak_false_positive_is_not_reported_confident_one_dies_next_frame(model, scene):
    res = _sequential(model, scene)
    fp5 = np.array(scene.false_pos[5][0][:4])
    assert not any(np.allclose(b, fp5) for b in res[5].boxes), "a 0.2 box with no pose passed person_thr 0.25"
    fp40 = np.array(scene.false_pos[40][0][:4])
    hit = [i for i, b in enumerate(res[40].boxes) if np.allclose(b, fp40)]
    assert len(hit) == 1  # the detector backs it at 0.9: reported on its frame
    ghost = int(res[40].track_ids[hit[0]])
    # nothing there for the pose model: propagation alone cannot carry it (pose score 0)
    assert ghost not in res[41].track_ids.tolist()


def _ghost_frames(results: List[Poses], box) -> List[int]:
    """Frames reporting the id that frame 0 gave to the person in ``box``."""
    first = results[0]
    i = int(np.argmin(np.abs(first.boxes[:, :4] - box).sum(axis=1)))
    gid = int(first.track_ids[i])
    return [t for t, p in enumerate(results) if gid in p.track_ids.tolist()]


@pytest.mark.parametrize("confirm_k", [1, 2, 3])
def test_unconfirmed_person_dies_after_k_detector_runs_on_any_worker_count(model, confirm_k):
    """A person the pose model sees clearly (a poster) but the detector reports only on frame
    0 is carried by propagation alone: it dies at the K-th detector run that does not confirm
    it, and several workers (a lag of ``workers`` frames) never keep it longer."""
    sc = crossing_scene(24)
    sc.undetected = (2,)
    det0 = SceneDetector(sc)(sc.frame(0))
    box = det0[2, :4]
    seq = _ghost_frames(_sequential(model, sc, confirm_k=confirm_k), box)
    assert seq == list(range(confirm_k)), seq
    for workers in (1, 2):
        frames = _ghost_frames(_pipeline(model, sc, workers, confirm_k=confirm_k), box)
        assert frames[0] == 0 and len(frames) <= confirm_k and max(frames) < confirm_k, (workers, frames)


@pytest.mark.parametrize("track", [True, False])
def test_cli_person_thr_decides_what_is_reported(model, scene, tmp_path, capsys, track):
    """``edgepose run --person-thr``: the planted 0.2 false positive of frame 5 (no pose in it)
    is reported below the threshold only; with and without tracking."""
    import json

    import cv2

    from edgepose.cli import main

    img = tmp_path / "f5.png"
    cv2.imwrite(str(img), scene.frame(5))
    fp = scene.false_pos[5][0]
    found = {}
    for thr in ("0.1", "0.25"):
        argv = ["run", "--image", str(img), "--model", str(model), "--detector", "_scene:CrossingDetector",
                "--person-thr", thr, "--jsonl", "-", "--quiet"] + ([] if track else ["--no-track"])
        assert main(argv) == 0
        rec = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        found[thr] = [p for p in rec["persons"] if abs(p["box_score"] - fp[4]) < 1e-6]
        assert len(rec["persons"]) - len(found[thr]) == len(scene.visible(5))
    assert len(found["0.1"]) == 1 and found["0.25"] == []


@pytest.mark.parametrize("flag,value", [("--person-thr", "1.5"), ("--prop-thr", "-0.1"), ("--confirm-k", "0"),
                                        ("--max-age", "-1")])
def test_cli_bad_tracking_option_is_one_line(model, tmp_path, capsys, flag, value):
    from edgepose.cli import main

    img = tmp_path / "x.png"
    import cv2

    cv2.imwrite(str(img), np.zeros((8, 8, 3), np.uint8))
    rc = main(["run", "--image", str(img), "--model", str(model), flag, value, "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("edgepose: error:") and flag in err[0], err
