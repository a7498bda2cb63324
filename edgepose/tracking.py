"""PoseTracker: identities across frames, the Simple Baselines way (paper, section 3).

Each frame's poses are matched to the tracks' last poses greedily by OKS similarity
(highest pair first, each track and pose used once, pairs below ``oks_thr`` never match);
unmatched poses start new tracks; a track unseen for more than ``max_age`` frames is dropped.
Between detector runs (every ``detect_every`` frames) the next frame's boxes are the last
poses' boxes (box propagation), merged with the detector's boxes on detection frames.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import numpy as np

from .boxes import boxes_from_keypoints, clip_boxes
from .estimator import Poses
from .nms import oks_numpy


@dataclass
class Track:
    """One identity: its last pose (frame pixels), box and the frame it was last seen on."""

    id: int
    keypoints: np.ndarray  # (K, 3) x, y, score
    area: float
    last_seen: int


class PoseTracker:
    """Greedy OKS matching between consecutive frames' poses.

    Args:
        sigmas: ``(K,)`` OKS sigmas (the keypoint set's; COCO's by default).
        oks_thr: minimum OKS for a pose to continue a track.
        max_age: frames a track survives without a match (lost-track timeout).
        detect_every: run the detector on every N-th frame (and whenever nothing is tracked).
        vis_thr: joint score threshold for the propagated boxes.
        oks_vis_thr: count only joints above this score in the OKS (None: all joints, which
            keeps matching meaningful for low-confidence models).
    """

    def __init__(self, sigmas: Optional[np.ndarray] = None, oks_thr: float = 0.3, max_age: int = 30,
                 detect_every: int = 1, vis_thr: float = 0.2, oks_vis_thr: Optional[float] = None) -> None:
        if detect_every < 1:
            raise ValueError(f"detect_every: must be >= 1, got {detect_every}")
        if max_age < 0:
            raise ValueError(f"max_age: must be >= 0, got {max_age}")
        self.sigmas = None if sigmas is None else np.asarray(sigmas, np.float64)
        self.oks_thr = float(oks_thr)
        self.max_age = int(max_age)
        self.detect_every = int(detect_every)
        self.vis_thr = float(vis_thr)
        self.oks_vis_thr = oks_vis_thr
        self.tracks: List[Track] = []
        self.frame = -1  # index of the last update
        self._next_id = 0
        self._last: Optional[Poses] = None

    def reset(self) -> None:
        self.tracks.clear()
        self.frame = -1
        self._next_id = 0
        self._last = None

    def should_detect(self, index: Optional[int] = None) -> bool:
        """Whether frame ``index`` (default: the next one) should run the detector."""
        i = self.frame + 1 if index is None else int(index)
        return i % self.detect_every == 0 or self._last is None or len(self._last) == 0

    def propagated_boxes(self, frame_shape: Optional[tuple] = None) -> np.ndarray:
        """``(M, 5)`` boxes around the last frame's poses (joints above ``vis_thr``), clipped to
        ``frame_shape`` when given; their score is the pose's mean confident joint score."""
        if self._last is None or len(self._last) == 0:
            return np.zeros((0, 5))
        boxes, _ = boxes_from_keypoints(self._last.keypoints, self._last.scores, self.vis_thr)
        return clip_boxes(boxes, frame_shape) if frame_shape is not None else boxes

    def _similarity(self, kp: np.ndarray, areas: np.ndarray) -> np.ndarray:
        """OKS ``(N current, T tracks)``."""
        sim = np.zeros((kp.shape[0], len(self.tracks)))
        sig = self.sigmas
        if sig is None:
            from .nms import COCO_SIGMAS

            sig = COCO_SIGMAS if kp.shape[1] == len(COCO_SIGMAS) else np.full(kp.shape[1], 0.05)
        for j, tr in enumerate(self.tracks):
            sim[:, j] = oks_numpy(tr.keypoints, kp, tr.area, areas, sig, self.oks_vis_thr)
        return sim

    def update(self, poses: Poses, index: Optional[int] = None) -> Poses:
        """Assign ``poses.track_ids`` (in place, also returned) for frame ``index`` (default: next)."""
        self.frame = self.frame + 1 if index is None else int(index)
        n = len(poses)
        ids = np.full(n, -1, np.int64)
        # tracks past the timeout are gone before matching
        self.tracks = [t for t in self.tracks if self.frame - t.last_seen - 1 <= self.max_age]
        kp = np.concatenate([poses.keypoints.astype(np.float64), poses.scores[..., None].astype(np.float64)], axis=2)
        areas = np.maximum(poses.boxes[:, 2] * poses.boxes[:, 3], 1.0) if n else np.zeros(0)
        if n and self.tracks:
            sim = self._similarity(kp, areas)
            order = np.argsort(-sim, axis=None, kind="stable")
            used_p, used_t = set(), set()
            for flat in order:
                i, j = divmod(int(flat), sim.shape[1])
                if sim[i, j] < self.oks_thr:
                    break
                if i in used_p or j in used_t:
                    continue
                used_p.add(i)
                used_t.add(j)
                tr = self.tracks[j]
                ids[i] = tr.id
                tr.keypoints, tr.area, tr.last_seen = kp[i], float(areas[i]), self.frame
        for i in np.flatnonzero(ids < 0):
            ids[i] = self._next_id
            self.tracks.append(Track(self._next_id, kp[i], float(areas[i]), self.frame))
            self._next_id += 1
        poses.track_ids = ids
        self._last = poses
        return poses
