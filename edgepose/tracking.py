"""PoseTracker: identities across frames, and who is a person at all (box propagation, ghosts).

Identity (the paper's section 3, extended): each frame's poses are matched greedily to the
tracks' last poses by OKS similarity (highest pair first, each track and pose used once, pairs
below ``oks_thr`` never match). Poses left over (a low-confidence pose, fast motion) are then
matched greedily by box IoU (``iou_thr``). Both stages also see tracks lost for up to
``max_age`` frames, so a person who reappears near where it was takes its id back. The
poses the detector backs are matched first and what is left of them opens new ids; then the
poses that propagation alone carries are matched to the remaining tracks, and one left over is
dropped (a duplicate of a detected person, or nobody): propagation never opens an id.

Boxes: on a frame where the detector runs, the boxes propagated from the last poses are merged
with the detector's boxes by IoU (:func:`merge_boxes`): a propagated box that overlaps a
detector box by ``merge_iou`` or more *defers* to it (the detector box is fresh evidence from
this frame; the propagated one is a frame old and only as large as the joints the pose model
was sure of). In between detector runs the propagated boxes alone carry the people.

Ghosts: a person whose box is only propagated (no detector box this frame confirmed it) dies
when its pose score (mean of its joint scores above ``vis_thr``) falls below ``prop_thr``, or
when the detector has run ``confirm_k`` times without confirming it. A person confirmed by the
detector's last run keeps the detector's backing until the next run.

Person threshold: a person is reported, tracked and propagated only when its evidence reaches
``person_thr``: the larger of its person score and, when the detector backs it, the detector's
box score. The pose model alone cannot veto a person the detector is sure of (a close-up or
cut-off person often has no confident joint), and a pose the detector does not back must stand
on its own score.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

from .boxes import boxes_from_keypoints, box_iou_matrix, clip_boxes
from .estimator import Poses
from .nms import oks_numpy

# defaults measured on the real models (docs/RUNTIME.md, benchmarks/track_real.py)
PERSON_THR = 0.25
PROP_THR = 0.4
CONFIRM_K = 2
MERGE_IOU = 0.5
IOU_THR = 0.2
MAX_AGE = 60


@dataclass
class Track:
    """One identity.

    Attributes:
        id: the identity.
        keypoints: ``(K, 3)`` last pose (x, y frame pixels, score).
        box: ``(4,)`` last box x, y, w, h (frame pixels).
        area: OKS area of the last pose (box w x h).
        last_seen: frame index of the last pose.
        misses: detector runs since the detector last confirmed this person.
        det_score: the box score of the detector box that last confirmed it (0: never).
        retired: a ghost rule ended its propagation; only a detector box brings it back (under
            its id, by the matching below).
    """

    id: int
    keypoints: np.ndarray
    box: np.ndarray
    area: float
    last_seen: int
    misses: int = 0
    det_score: float = 0.0
    retired: bool = False


@dataclass
class BoxPlan:
    """The boxes one frame is estimated on, and where each came from.

    Attributes:
        boxes: ``(M, 5)`` x, y, w, h, score (frame pixels); give them to the estimator.
        track_ids: ``(M,)`` the track whose propagated box this row is (for a detector box
            that a propagated box deferred to: that track), -1 for a detector box alone.
        detected: ``(M,)`` whether the row is a detector box of this frame.
        detector_ran: whether the detector ran on this frame.
    """

    boxes: np.ndarray
    track_ids: np.ndarray
    detected: np.ndarray
    detector_ran: bool

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


@dataclass
class Propagation:
    """Boxes propagated from one frame's tracked poses: ``boxes (M, 5)`` and their
    ``track_ids (M,)``; ``detect``: whether the detector should run on the target frame."""

    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 5)))
    track_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    detect: bool = True


def merge_boxes(detections: Optional[np.ndarray], prop: Propagation, merge_iou: float = MERGE_IOU,
                frame_shape: Optional[Sequence[int]] = None) -> BoxPlan:
    """Merge a frame's detector boxes (None: the detector did not run) with propagated boxes.

    Pairs are taken greedily by IoU, highest first; a propagated box whose IoU with a detector
    box is ``>= merge_iou`` is dropped and the detector box inherits its track id. Propagated
    boxes left over are appended (``detected`` False). Boxes are clipped to ``frame_shape``.
    """
    pb = np.asarray(prop.boxes, np.float64).reshape(-1, 5)
    pt = np.asarray(prop.track_ids, np.int64).reshape(-1)
    if frame_shape is not None and len(pb):
        keep = np.flatnonzero((np.minimum(pb[:, 0] + pb[:, 2], frame_shape[1]) - np.maximum(pb[:, 0], 0) >= 2)
                              & (np.minimum(pb[:, 1] + pb[:, 3], frame_shape[0]) - np.maximum(pb[:, 1], 0) >= 2))
        pb, pt = clip_boxes(pb[keep], frame_shape), pt[keep]
    if detections is None:
        return BoxPlan(pb, pt.copy(), np.zeros(len(pb), bool), False)
    db = np.asarray(detections, np.float64).reshape(-1, 5)
    dt = np.full(len(db), -1, np.int64)
    used = np.zeros(len(pb), bool)
    if len(db) and len(pb):
        iou = box_iou_matrix(pb[:, :4], db[:, :4])
        taken = np.zeros(len(db), bool)
        for flat in np.argsort(-iou, axis=None, kind="stable"):
            i, j = divmod(int(flat), len(db))
            if iou[i, j] < merge_iou:
                break
            if used[i] or taken[j]:
                continue
            used[i] = taken[j] = True
            dt[j] = pt[i]
    rest = ~used
    return BoxPlan(np.concatenate([db, pb[rest]]), np.concatenate([dt, pt[rest]]),
                   np.concatenate([np.ones(len(db), bool), np.zeros(int(rest.sum()), bool)]), True)


def pose_scores(scores: np.ndarray, vis_thr: float) -> np.ndarray:
    """``(N,)`` pose score: the mean of each pose's joint scores above ``vis_thr`` (0: none)."""
    s = np.asarray(scores, np.float64)
    m = s > vis_thr
    return np.where(m.any(axis=1), (s * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1), 0.0)


def person_filter(poses: Poses, person_thr: float, backing: Optional[np.ndarray] = None) -> np.ndarray:
    """Boolean ``(N,)``: which poses reach ``person_thr`` on their evidence, the larger of the
    person score and the detector's backing score (``(N,)``, 0 where the detector does not
    back the pose; default: the box scores, every box counting as the detector's or the user's)."""
    ev = poses.person_scores.astype(np.float64)
    back = poses.box_scores.astype(np.float64) if backing is None else np.asarray(backing, np.float64)
    return np.maximum(ev, back) >= person_thr


class PoseTracker:
    """Identities, box propagation and ghost retirement over a stream of poses.

    Args:
        sigmas: ``(K,)`` OKS sigmas (the keypoint set's, e.g. ``estimator.sigmas``; COCO's for
            17 joints, 0.05 each otherwise when None).
        oks_thr: minimum OKS for a pose to continue a track.
        iou_thr: minimum box IoU for the fallback match of poses OKS left unmatched.
        max_age: frames a lost track keeps its id (it takes it back when it reappears near
            where it was).
        detect_every: run the detector on every N-th frame (and whenever nothing is tracked).
        vis_thr: joint score threshold (propagated boxes, pose score, OKS joints).
        person_thr: minimum evidence for a person to be reported, tracked and propagated
            (see the module notes).
        prop_thr: minimum pose score of a person carried by propagation alone.
        confirm_k: detector runs without confirmation after which a propagated person dies.
        merge_iou: IoU from which a propagated box defers to a detector box.
        oks_vis_thr: count only the current pose's joints above this score in the OKS (None: all
            joints); a pose with none has OKS 0 and goes to the IoU fallback.
    """

    def __init__(self, sigmas: Optional[np.ndarray] = None, oks_thr: float = 0.3, max_age: int = MAX_AGE,
                 detect_every: int = 1, vis_thr: float = 0.2, oks_vis_thr: Optional[float] = 0.2, *,
                 iou_thr: float = IOU_THR, person_thr: float = PERSON_THR, prop_thr: float = PROP_THR,
                 confirm_k: int = CONFIRM_K, merge_iou: float = MERGE_IOU) -> None:
        if detect_every < 1:
            raise ValueError(f"detect_every: must be >= 1, got {detect_every}")
        if max_age < 0:
            raise ValueError(f"max_age: must be >= 0, got {max_age}")
        if confirm_k < 1:
            raise ValueError(f"confirm_k: must be >= 1, got {confirm_k}")
        for name, v in (("oks_thr", oks_thr), ("iou_thr", iou_thr), ("person_thr", person_thr),
                        ("prop_thr", prop_thr), ("merge_iou", merge_iou)):
            if not 0.0 <= float(v) <= 1.0:
                raise ValueError(f"{name}: must be in [0, 1], got {v}")
        self.sigmas = None if sigmas is None else np.asarray(sigmas, np.float64)
        self.oks_thr = float(oks_thr)
        self.iou_thr = float(iou_thr)
        self.max_age = int(max_age)
        self.detect_every = int(detect_every)
        self.vis_thr = float(vis_thr)
        self.oks_vis_thr = oks_vis_thr
        self.person_thr = float(person_thr)
        self.prop_thr = float(prop_thr)
        self.confirm_k = int(confirm_k)
        self.merge_iou = float(merge_iou)
        self.tracks: List[Track] = []
        self.frame = -1  # index of the last update
        self._next_id = 0
        self._last: Optional[Poses] = None

    def reset(self) -> None:
        self.tracks.clear()
        self.frame = -1
        self._next_id = 0
        self._last = None

    # ------------------------------------------------------------------ boxes
    def should_detect(self, index: Optional[int] = None) -> bool:
        """Whether frame ``index`` (default: the next one) should run the detector."""
        i = self.frame + 1 if index is None else int(index)
        return i % self.detect_every == 0 or self._last is None or len(self._last) == 0

    def propagation(self, index: Optional[int] = None, span: int = 1) -> Propagation:
        """The boxes the tracked people propagate to frame ``index`` (default: the next).

        Args:
            span: propagate every track seen in the last ``span`` updates (not retired). 1: the
                last frame's poses (the sequential loop); a :class:`~edgepose.pipeline.Pipeline`
                with ``workers`` workers propagates frame ``i - workers`` to frame ``i`` and
                passes ``span=workers``, so that each of the interleaved chains also gets the
                people the detector found on the frames in between.

        A pose with at least half its joints above ``vis_thr`` propagates the box around
        those joints (enlarged 15% a side); one with fewer (the pose model is unsure of it)
        propagates the box it was estimated in. The box score is the pose score (mean joint
        score above ``vis_thr``): a propagated box is not a detection. ``detect`` is True when
        ``index`` is a detector frame or nothing is propagated."""
        live = [t for t in self.tracks if not t.retired and self.frame - t.last_seen < max(int(span), 1)]
        if not live:
            return Propagation(detect=True)
        kp = np.stack([t.keypoints for t in live])
        k = kp.shape[1]
        boxes = np.concatenate([np.stack([t.box for t in live]), pose_scores(kp[..., 2], self.vis_thr)[:, None]], axis=1)
        kb, src = boxes_from_keypoints(kp[..., :2], kp[..., 2], self.vis_thr, min_joints=max(2, (k + 1) // 2))
        boxes[src, :4] = kb[:, :4]
        return Propagation(boxes, np.array([t.id for t in live], np.int64), self.should_detect(index))

    def plan(self, detections: Optional[np.ndarray], frame_shape: Optional[Sequence[int]] = None,
             prop: Optional[Propagation] = None) -> BoxPlan:
        """The next frame's boxes: ``detections`` (None when the detector did not run) merged
        with ``prop`` (default: :meth:`propagation` now)."""
        return merge_boxes(detections, self.propagation() if prop is None else prop, self.merge_iou, frame_shape)

    def propagated_boxes(self, frame_shape: Optional[tuple] = None) -> np.ndarray:
        """``(M, 5)`` boxes propagated from the last poses (:meth:`propagation`), clipped to
        ``frame_shape`` when given."""
        b = self.propagation().boxes
        return clip_boxes(b, frame_shape) if frame_shape is not None else b

    # ------------------------------------------------------------------ matching
    def _sigmas(self, k: int) -> np.ndarray:
        if self.sigmas is not None:
            return self.sigmas
        from .nms import COCO_SIGMAS

        return COCO_SIGMAS if k == len(COCO_SIGMAS) else np.full(k, 0.05)

    @staticmethod
    def _greedy(sim: np.ndarray, thr: float, ids: np.ndarray, tracks: List[Track], taken: set) -> List[tuple]:
        """Greedy pairs (pose i, track j) with ``sim >= thr``, skipping assigned poses/tracks."""
        pairs = []
        if sim.size == 0:
            return pairs
        for flat in np.argsort(-sim, axis=None, kind="stable"):
            i, j = divmod(int(flat), sim.shape[1])
            if sim[i, j] < thr:
                break
            if ids[i] >= 0 or j in taken:
                continue
            ids[i] = tracks[j].id
            taken.add(j)
            pairs.append((i, j))
        return pairs

    def _match_plan(self, poses: Poses, plan: Optional[BoxPlan]):
        """Per pose: (detected, the track its box came from) from the plan rows it was cropped from."""
        n = len(poses)
        detected = np.ones(n, bool)
        source = np.full(n, -1, np.int64)
        if plan is None:
            return detected, source
        detected[:] = plan.detector_ran
        free = np.ones(len(plan), bool)
        for i in range(n):
            hit = np.flatnonzero(free & np.all(np.abs(plan.boxes[:, :4] - poses.boxes[i, :4]) < 1e-6, axis=1))
            if len(hit):
                free[hit[0]] = False
                detected[i] = plan.detected[hit[0]]
                source[i] = plan.track_ids[hit[0]]
        return detected, source

    def update(self, poses: Poses, index: Optional[int] = None, plan: Optional[BoxPlan] = None) -> Poses:
        """Track frame ``index`` (default: the next): returns the persons kept, with
        ``track_ids`` set (a subset of ``poses``, which keeps ``-1`` ids).

        Args:
            poses: the estimator's output on ``plan.boxes`` (or on any boxes without a plan:
                every pose then counts as backed by its box, e.g. user boxes).
            plan: the :class:`BoxPlan` the frame was estimated on (:meth:`plan`,
                :func:`merge_boxes`); it tells detector boxes from propagated ones.
        """
        self.frame = self.frame + 1 if index is None else int(index)
        self.tracks = [t for t in self.tracks if self.frame - t.last_seen - 1 <= self.max_age]
        by_id: Dict[int, Track] = {t.id: t for t in self.tracks}
        det_ran = True if plan is None else plan.detector_ran
        detected, source = self._match_plan(poses, plan)
        # backing: a detector box now, or (between detector runs) a track the last run confirmed
        src_tracks = [by_id.get(int(s)) for s in source]
        backing = np.where(detected, poses.box_scores.astype(np.float64), 0.0)
        if not det_ran:
            carried = [t.det_score if t is not None and t.misses == 0 and not t.retired else 0.0 for t in src_tracks]
            backing = np.maximum(backing, np.asarray(carried, np.float64).reshape(-1))
        backed = detected | (backing > 0)
        keep = person_filter(poses, self.person_thr, backing)
        pscore = pose_scores(poses.scores, self.vis_thr)
        for i in np.flatnonzero(~backed):  # carried by propagation alone: ghost rules
            t = src_tracks[i]
            if plan is not None and source[i] >= 0 and (t is None or t.retired):
                keep[i] = False  # its track died after the box was propagated (workers > 1)
            elif pscore[i] < self.prop_thr:
                keep[i] = False
            elif det_ran and t is not None and t.misses + 1 >= self.confirm_k:
                keep[i] = False
            if not keep[i] and t is not None:
                t.retired = True
        out = poses.select(np.flatnonzero(keep))
        detected, backed, source = detected[keep], backed[keep], source[keep]
        n = len(out)
        ids = np.full(n, -1, np.int64)
        kp = np.concatenate([out.keypoints.astype(np.float64), out.scores[..., None].astype(np.float64)], axis=2)
        areas = np.maximum(out.boxes[:, 2] * out.boxes[:, 3], 1.0) if n else np.zeros(0)
        # the poses the detector backs (and poses of unknown origin) are matched first, by OKS
        # then IoU, and may open new ids; then the poses that propagation alone carries, over
        # the tracks left (retired ones excluded): such a pose never opens an id (it is a
        # duplicate of someone the detector already has, or nobody)
        carried = (~detected) & (source >= 0)
        taken: set = set()
        if self.tracks:
            sig = self._sigmas(kp.shape[1])
            boxes_t = np.stack([t.box for t in self.tracks])
            retired = [j for j, t in enumerate(self.tracks) if t.retired]  # closed to carried poses
            for stage in (np.flatnonzero(~carried), np.flatnonzero(carried)):
                if not len(stage):
                    continue
                sub = np.full(len(stage), -1, np.int64)
                sim = np.stack([oks_numpy(t.keypoints, kp[stage], t.area, areas[stage], sig, self.oks_vis_thr)
                                for t in self.tracks], 1)
                if carried[stage[0]]:
                    sim[:, retired] = -1.0
                self._greedy(sim, self.oks_thr, sub, self.tracks, taken)
                if np.any(sub < 0):
                    iou = box_iou_matrix(out.boxes[stage, :4], boxes_t)
                    if carried[stage[0]]:
                        iou[:, retired] = -1.0
                    self._greedy(iou, self.iou_thr, sub, self.tracks, taken)
                ids[stage] = sub
        drop = carried & (ids < 0)
        for i in range(n):
            if drop[i]:
                continue
            if ids[i] >= 0:
                t = by_id[int(ids[i])]
                if det_ran and not detected[i]:
                    t.misses += 1
            else:
                t = Track(self._next_id, kp[i], out.boxes[i, :4].copy(), float(areas[i]), self.frame)
                self._next_id += 1
                ids[i] = t.id
                self.tracks.append(t)
                by_id[t.id] = t
            t.keypoints, t.box, t.area, t.last_seen = kp[i], out.boxes[i, :4].copy(), float(areas[i]), self.frame
            if detected[i]:
                t.misses, t.det_score, t.retired = 0, float(out.box_scores[i]), False
        if np.any(drop):
            keep_i = np.flatnonzero(~drop)
            out, ids = out.select(keep_i), ids[keep_i]
        if det_ran:  # tracks the detector did not see this run
            seen = set(int(x) for x in ids)
            for t in self.tracks:
                if t.id not in seen and t.last_seen < self.frame:
                    t.misses += 1
        out.track_ids = ids
        self._last = out
        return out
