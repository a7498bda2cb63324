"""Where person boxes come from: the full frame, the user, a detector, or the last poses.

All boxes are ``(N, 5)`` float64 rows ``(x, y, w, h, score)`` in frame pixels, ``(x, y)`` the
top-left corner (the convention of :mod:`edgepose.geometry`); ``(N, 4)`` input gets score 1.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Protocol, Sequence, Tuple, Union, runtime_checkable

import numpy as np


@runtime_checkable
class Detector(Protocol):
    """A person detector plug-in: any callable ``frame (H, W, 3) uint8 BGR -> (N, 5)`` boxes
    ``(x, y, w, h, score)`` in frame pixels (``(N, 4)`` is accepted, score 1)."""

    def __call__(self, frame: np.ndarray) -> np.ndarray: ...


def as_boxes(boxes: Union[np.ndarray, Sequence[Sequence[float]]], name: str = "boxes") -> np.ndarray:
    """Validate ``(N, 4)`` / ``(N, 5)`` (or one ``(4,)`` / ``(5,)``) boxes -> ``(N, 5)`` float64."""
    b = np.asarray(boxes, dtype=np.float64)
    if b.size == 0:
        return np.zeros((0, 5), np.float64)
    if b.ndim == 1:
        b = b[None]
    if b.ndim != 2 or b.shape[1] not in (4, 5):
        raise ValueError(f"{name}: expected (N, 4) x, y, w, h or (N, 5) with a score; got shape {b.shape}")
    if not np.all(np.isfinite(b)):
        raise ValueError(f"{name}: contain NaN or inf")
    if b.shape[1] == 4:
        b = np.concatenate([b, np.ones((len(b), 1))], axis=1)
    if np.any(b[:, 2] <= 0) or np.any(b[:, 3] <= 0):
        bad = int(np.argmax((b[:, 2] <= 0) | (b[:, 3] <= 0)))
        raise ValueError(f"{name}: box {bad} has width/height <= 0 ({b[bad, :4].tolist()}); boxes are x, y, w, h")
    return b


def full_frame(frame_shape: Sequence[int]) -> np.ndarray:
    """One box covering the whole frame, ``(1, 5)``, score 1 (single-person default)."""
    h, w = int(frame_shape[0]), int(frame_shape[1])
    return np.array([[0.0, 0.0, float(w), float(h), 1.0]])


def clip_boxes(boxes: np.ndarray, frame_shape: Sequence[int], min_size: float = 2.0) -> np.ndarray:
    """Clip ``(N, 5)`` boxes to the frame; boxes left smaller than ``min_size`` px are dropped."""
    b = np.array(boxes, dtype=np.float64, copy=True).reshape(-1, 5)
    h, w = float(frame_shape[0]), float(frame_shape[1])
    x0 = np.clip(b[:, 0], 0, w)
    y0 = np.clip(b[:, 1], 0, h)
    x1 = np.clip(b[:, 0] + b[:, 2], 0, w)
    y1 = np.clip(b[:, 1] + b[:, 3], 0, h)
    b[:, 0], b[:, 1], b[:, 2], b[:, 3] = x0, y0, x1 - x0, y1 - y0
    return b[(b[:, 2] >= min_size) & (b[:, 3] >= min_size)]


def box_iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a (N, 4)`` with every box in ``b (M, 4)`` (x, y, w, h) -> ``(N, M)``."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    ix = np.minimum(a[:, None, 0] + a[:, None, 2], b[None, :, 0] + b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    iy = np.minimum(a[:, None, 1] + a[:, None, 3], b[None, :, 1] + b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(ix, 0, None) * np.clip(iy, 0, None)
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def boxes_from_keypoints(
    keypoints: np.ndarray,
    scores: np.ndarray,
    thr: float = 0.2,
    margin: float = 0.15,
    min_joints: int = 2,
) -> Tuple[np.ndarray, np.ndarray]:
    """Propagate poses to next-frame boxes (the paper's box propagation).

    Args:
        keypoints: ``(N, K, 2)`` frame pixels.
        scores: ``(N, K)`` joint scores; only joints ``> thr`` count.
        margin: enlargement of the joints' bounding box on each side, as a fraction of its size.
        min_joints: poses with fewer confident joints give no box.

    Returns:
        ``(M, 5)`` boxes ``(x, y, w, h, mean confident joint score)`` and, as a second array,
        the ``(M,)`` indices of the poses they came from.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    sc = np.asarray(scores, dtype=np.float64)
    out: List[List[float]] = []
    src: List[int] = []
    for i in range(kp.shape[0]):
        m = sc[i] > thr
        if int(m.sum()) < min_joints:
            continue
        p = kp[i][m]
        x0, y0 = p.min(axis=0)
        x1, y1 = p.max(axis=0)
        bw, bh = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
        out.append([x0 - margin * bw, y0 - margin * bh, bw * (1 + 2 * margin), bh * (1 + 2 * margin),
                    float(sc[i][m].mean())])
        src.append(i)
    return np.asarray(out, np.float64).reshape(-1, 5), np.asarray(src, np.int64)


def load_boxes_json(path: Union[str, Path]) -> Union[np.ndarray, Dict[int, np.ndarray]]:
    """Read user boxes from JSON.

    Accepted forms: ``[[x, y, w, h(, score)], ...]`` (the same boxes for every frame) or
    ``{"<frame index>": [[x, y, w, h(, score)], ...], ...}`` (per frame; frames not listed get
    no person). Returns ``(N, 5)`` or ``{frame: (N, 5)}``.
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{p}: boxes file not found") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{p}: not valid JSON ({exc}); expected [[x, y, w, h, score], ...]") from None
    if isinstance(data, dict):
        try:
            return {int(k): as_boxes(v, f"{p} frame {k}") for k, v in data.items()}
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{p}: {exc}") from None
    return as_boxes(data, str(p))


class BoxSource:
    """Boxes for each frame from user boxes (fixed or per frame), a detector, or the full frame.

    Args:
        boxes: fixed ``(N, 4|5)`` boxes, or ``{frame index: boxes}``; None for none.
        detector: a :class:`Detector`; used when no user boxes are given.
    """

    def __init__(self, boxes: Union[None, np.ndarray, Dict[int, np.ndarray]] = None,
                 detector: Optional[Detector] = None) -> None:
        if boxes is not None and detector is not None:
            raise ValueError("boxes/detector: give one or the other")
        self.per_frame: Optional[Dict[int, np.ndarray]] = None
        self.fixed: Optional[np.ndarray] = None
        if isinstance(boxes, dict):
            self.per_frame = {int(k): as_boxes(v) for k, v in boxes.items()}
        elif boxes is not None:
            self.fixed = as_boxes(boxes)
        self.detector = detector

    @property
    def from_detector(self) -> bool:
        return self.detector is not None

    def __call__(self, frame: np.ndarray, index: int) -> Optional[np.ndarray]:
        """``(N, 5)`` boxes for frame ``index``, or None for "no opinion" (the estimator then
        uses the full frame or the tracker's propagated boxes)."""
        if self.per_frame is not None:
            return self.per_frame.get(int(index), np.zeros((0, 5)))
        if self.fixed is not None:
            return self.fixed
        if self.detector is not None:
            return as_boxes(self.detector(frame), "detector output")
        return None
