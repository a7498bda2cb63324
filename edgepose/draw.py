"""Skeleton overlay on BGR frames (in place, OpenCV drawing)."""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import cv2
import numpy as np

from .estimator import Poses

# BGR colours, cycled by track id (untracked persons get the first)
PALETTE: Tuple[Tuple[int, int, int], ...] = (
    (0, 200, 255), (255, 128, 0), (0, 255, 0), (255, 0, 255), (0, 0, 255), (255, 255, 0), (128, 0, 255),
    (0, 128, 255), (255, 0, 128), (128, 255, 0),
)


def color_for(track_id: int) -> Tuple[int, int, int]:
    return PALETTE[max(int(track_id), 0) % len(PALETTE)]


def draw_poses(
    frame: np.ndarray,
    poses: Poses,
    skeleton: Sequence[Tuple[int, int]] = (),
    thr: float = 0.2,
    draw_boxes: bool = True,
    status: Optional[str] = None,
) -> np.ndarray:
    """Draw boxes, joints (score > ``thr``), skeleton edges and ids onto ``frame`` (modified
    in place and returned). ``skeleton`` holds joint index pairs (a KeypointSet's)."""
    h, w = frame.shape[:2]
    t = max(1, int(round(min(h, w) / 240)))
    for i in range(len(poses)):
        col = color_for(poses.track_ids[i])
        kp = poses.keypoints[i]
        ok = poses.scores[i] > thr
        pts = np.round(kp).astype(np.int32)
        if draw_boxes:
            x, y, bw, bh = poses.boxes[i]
            cv2.rectangle(frame, (int(x), int(y)), (int(x + bw), int(y + bh)), col, 1)
            label = f"#{int(poses.track_ids[i])} {poses.person_scores[i]:.2f}" if poses.track_ids[i] >= 0 \
                else f"{poses.person_scores[i]:.2f}"
            cv2.putText(frame, label, (int(x) + 2, max(int(y) - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * t, col, 1,
                        cv2.LINE_AA)
        for a, b in skeleton:
            if a < len(ok) and b < len(ok) and ok[a] and ok[b]:
                cv2.line(frame, tuple(pts[a]), tuple(pts[b]), col, t, cv2.LINE_AA)
        for j in np.flatnonzero(ok):
            cv2.circle(frame, tuple(pts[j]), t + 1, (255, 255, 255), -1, cv2.LINE_AA)
            cv2.circle(frame, tuple(pts[j]), t + 1, col, 1, cv2.LINE_AA)
    if status:
        cv2.putText(frame, status, (4, h - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return frame


def stage_text(timings: Dict[str, float]) -> str:
    """``"warp 0.4 infer 12.1 ..."`` in ms, for status lines."""
    return " ".join(f"{k} {v:.1f}" for k, v in timings.items())
