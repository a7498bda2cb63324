"""Kernel 3: OKS NMS over person poses, and the reference rescoring.

Conventions (the reference's ``oks_iou`` / ``oks_nms`` / rescoring):

* OKS between poses g and d: ``mean_k exp(-e_k)`` with ``e_k = d_k^2 / (2 * var_k * (a_g +
  a_d) / 2 + eps)`` written as the reference computes it: ``(dx^2 + dy^2) / (2 sigma_k)^2 /
  ((a_g + a_d) / 2 + eps) / 2`` with ``eps = np.spacing(1)``.
* With ``vis_thr``, only joints whose *candidate* score exceeds it count. (The reference
  wrote ``list(vg > t) and list(vd > t)``, which Python evaluates to the second list; we keep
  that behaviour so results match, and document it.) No joint counted -> OKS 0.
* Greedy: order by score, highest first; ties go to the *higher* index (what the reference's
  ``argsort()[::-1]`` does for short arrays, made deterministic here); keep the first, drop
  every remaining pose whose OKS with it is ``> thr``; repeat.
* Rescoring: ``box_score * mean(joint scores > 0.2)`` (0 when no joint passes).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from . import _dispatch

COCO_SIGMAS = np.array(
    [0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89]
) / 10.0
SOFT_METHODS = ("gaussian", "linear")


def _check(keypoints, scores, areas, sigmas):
    k = np.asarray(keypoints, dtype=np.float64)
    if k.ndim != 3 or k.shape[2] != 3:
        raise ValueError(f"keypoints: expected (N, K, 3) as x, y, score; got {np.shape(keypoints)}")
    n, nk = k.shape[:2]
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    a = np.asarray(areas, dtype=np.float64).reshape(-1)
    if s.shape[0] != n or a.shape[0] != n:
        raise ValueError(f"scores/areas: expected {n} values each (one per pose), got {s.shape[0]} and {a.shape[0]}")
    if sigmas is None:
        if nk != len(COCO_SIGMAS):
            raise ValueError(f"sigmas: required for {nk} joints (the COCO default has 17)")
        sig = COCO_SIGMAS
    else:
        sig = np.asarray(sigmas, dtype=np.float64).reshape(-1)
        if sig.shape[0] != nk:
            raise ValueError(f"sigmas: expected {nk} values, got {sig.shape[0]}")
        if np.any(~(sig > 0)):
            raise ValueError("sigmas: must be > 0")
    for name, arr in (("keypoints", k), ("scores", s), ("areas", a)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name}: contain NaN or inf")
    return np.ascontiguousarray(k), np.ascontiguousarray(s), np.ascontiguousarray(a), np.ascontiguousarray(sig)


def oks_numpy(g: np.ndarray, d: np.ndarray, area_g: float, area_d: np.ndarray, sigmas: np.ndarray,
              vis_thr: Optional[float] = None) -> np.ndarray:
    """OKS of one pose ``g (K, 3)`` against poses ``d (M, K, 3)`` -> ``(M,)`` float64."""
    var = (sigmas * 2) ** 2
    dx = d[:, :, 0] - g[None, :, 0]
    dy = d[:, :, 1] - g[None, :, 1]
    e = (dx ** 2 + dy ** 2) / var / ((area_g + area_d[:, None]) / 2 + np.spacing(1)) / 2
    if vis_thr is None:
        return np.exp(-e).mean(axis=1) if e.shape[1] else np.zeros(len(d))
    mask = d[:, :, 2] > vis_thr
    cnt = mask.sum(axis=1)
    tot = (np.exp(-e) * mask).sum(axis=1)
    return np.where(cnt > 0, tot / np.maximum(cnt, 1), 0.0)


def _order(scores: np.ndarray) -> np.ndarray:
    return np.argsort(scores, kind="stable")[::-1]


def oks_nms_numpy(keypoints, scores, areas, thr: float, sigmas=None, vis_thr: Optional[float] = None) -> np.ndarray:
    """Readable twin of :func:`oks_nms`."""
    k, s, a, sig = _check(keypoints, scores, areas, sigmas)
    order = _order(s)
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(i)
        ovr = oks_numpy(k[i], k[order[1:]], a[i], a[order[1:]], sig, vis_thr)
        order = order[1:][ovr <= thr]
    return np.asarray(keep, dtype=np.int64)


def soft_oks_nms_numpy(keypoints, scores, areas, thr: float, sigmas=None, vis_thr: Optional[float] = None,
                       method: str = "gaussian", sigma: float = 0.5, score_thr: float = 0.0):
    """Readable twin of :func:`soft_oks_nms`."""
    k, s, a, sig = _check(keypoints, scores, areas, sigmas)
    s = s.copy()
    remaining = list(range(len(s)))
    keep, new_scores = [], []
    while remaining:
        rem = np.asarray(remaining)
        # highest current score; ties -> higher index, as in oks_nms
        best = rem[np.lexsort((rem, s[rem]))[-1]]
        if s[best] <= score_thr:
            break
        keep.append(best)
        new_scores.append(s[best])
        remaining.remove(best)
        if not remaining:
            break
        rem = np.asarray(remaining)
        ovr = oks_numpy(k[best], k[rem], a[best], a[rem], sig, vis_thr)
        if method == "gaussian":
            s[rem] *= np.exp(-(ovr ** 2) / sigma)
        else:
            s[rem] *= np.where(ovr > thr, 1.0 - ovr, 1.0)
    return np.asarray(keep, dtype=np.int64), np.asarray(new_scores, dtype=np.float64)


def oks_nms(keypoints: np.ndarray, scores: np.ndarray, areas: np.ndarray, thr: float = 0.9,
            sigmas: Optional[np.ndarray] = None, vis_thr: Optional[float] = None) -> np.ndarray:
    """Greedy OKS NMS.

    Args:
        keypoints: ``(N, K, 3)`` x, y (frame pixels) and joint score.
        scores: ``(N,)`` person scores.
        areas: ``(N,)`` person areas in square pixels (the reference uses
            ``scale_w * scale_h * 200**2``).
        thr: poses with OKS ``> thr`` to a kept pose are removed (0.9 in the reference).
        sigmas: ``(K,)`` per-joint sigmas; COCO's by default (17 joints).
        vis_thr: count only joints of the candidate with score ``> vis_thr``.

    Returns:
        ``(M,)`` int64 indices of the kept poses, highest score first.
    """
    k, s, a, sig = _check(keypoints, scores, areas, sigmas)
    if k.shape[0] == 0:
        return np.zeros(0, np.int64)
    nat = _dispatch.native()
    if nat is None:
        return oks_nms_numpy(k, s, a, thr, sig, vis_thr)
    return nat.oks_nms(k, s, a, sig, float(thr), -np.inf if vis_thr is None else float(vis_thr), vis_thr is not None)


def soft_oks_nms(keypoints: np.ndarray, scores: np.ndarray, areas: np.ndarray, thr: float = 0.9,
                 sigmas: Optional[np.ndarray] = None, vis_thr: Optional[float] = None,
                 method: str = "gaussian", sigma: float = 0.5, score_thr: float = 0.0):
    """Soft OKS NMS: instead of dropping overlapping poses, decay their scores.

    ``gaussian``: ``score *= exp(-oks^2 / sigma)``; ``linear``: ``score *= 1 - oks`` where
    ``oks > thr``. Poses are picked highest current score first until the best remaining
    score is ``<= score_thr``.

    Returns:
        ``(keep (M,) int64, new_scores (M,) float64)`` in pick order.
    """
    if method not in SOFT_METHODS:
        raise ValueError(f"method: expected one of {SOFT_METHODS}, got {method!r}")
    if not sigma > 0:
        raise ValueError(f"sigma: must be > 0, got {sigma}")
    k, s, a, sig = _check(keypoints, scores, areas, sigmas)
    if k.shape[0] == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float64)
    nat = _dispatch.native()
    if nat is None:
        return soft_oks_nms_numpy(k, s, a, thr, sig, vis_thr, method, sigma, score_thr)
    return nat.soft_oks_nms(k, s, a, sig, float(thr), -np.inf if vis_thr is None else float(vis_thr),
                            vis_thr is not None, SOFT_METHODS.index(method), float(sigma), float(score_thr))


def rescore(box_scores: np.ndarray, joint_scores: np.ndarray, thr: float = 0.2) -> np.ndarray:
    """Reference person score: ``box_score * mean(joint_scores > thr)`` -> ``(N,)`` float64.

    Args:
        box_scores: ``(N,)`` detector scores.
        joint_scores: ``(N, K)`` keypoint scores (heatmap maxima).
    """
    b = np.asarray(box_scores, dtype=np.float64).reshape(-1)
    j = np.asarray(joint_scores, dtype=np.float64)
    if j.ndim != 2 or j.shape[0] != b.shape[0]:
        raise ValueError(f"joint_scores: expected ({b.shape[0]}, K), got {j.shape}")
    mask = j > thr
    cnt = mask.sum(axis=1)
    mean = np.where(cnt > 0, (j * mask).sum(axis=1) / np.maximum(cnt, 1), 0.0)
    return b * mean
