"""COCO keypoint evaluation: reference post-processing + pycocotools.

Post-processing per image (the reference's): a person's score is the box score times the
mean of its joint scores above ``in_vis_thre`` (:func:`edgepose.nms.rescore`); then greedy
OKS NMS at ``oks_thre`` (:func:`edgepose.nms.oks_nms`, areas ``scale_w * scale_h * 200**2``).
"""
from __future__ import annotations

import contextlib
import io
import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from edgepose.nms import oks_nms, rescore

COCO_STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")


def postprocess(
    keypoints: np.ndarray,
    box_scores: np.ndarray,
    areas: np.ndarray,
    image_ids: Sequence[int],
    in_vis_thre: float = 0.2,
    oks_thre: float = 0.9,
    sigmas: Optional[np.ndarray] = None,
    use_nms: bool = True,
) -> List[Dict[str, Any]]:
    """Per-person predictions -> COCO results entries.

    Args:
        keypoints: ``(N, K, 3)`` x, y in frame pixels and joint score.
        box_scores: ``(N,)`` box scores (1 for GT boxes).
        areas: ``(N,)`` box areas in square pixels, for OKS NMS.
        image_ids: ``(N,)`` COCO image ids.

    Returns:
        ``[{"image_id", "category_id": 1, "keypoints": [x, y, s] * K, "score"}]``.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    scores = rescore(np.asarray(box_scores, dtype=np.float64), kp[:, :, 2], in_vis_thre)
    by_image: Dict[int, List[int]] = defaultdict(list)
    for i, im in enumerate(image_ids):
        by_image[int(im)].append(i)
    results: List[Dict[str, Any]] = []
    for im, idx in sorted(by_image.items()):
        idx_a = np.asarray(idx)
        if use_nms and len(idx_a) > 1:
            keep = oks_nms(kp[idx_a], scores[idx_a], np.asarray(areas, dtype=np.float64)[idx_a], oks_thre, sigmas=sigmas)
            idx_a = idx_a[keep]
        for i in idx_a:
            results.append({
                "image_id": im,
                "category_id": 1,
                "keypoints": [round(float(v), 3) for v in kp[i].reshape(-1)],
                "score": float(scores[i]),
            })
    return results


def coco_keypoint_ap(coco_gt: Any, results: Union[List[Dict[str, Any]], str, Path],
                     per_image: Optional[Dict[int, float]] = None) -> Dict[str, float]:
    """Run pycocotools' keypoint evaluation.

    Args:
        coco_gt: a ``pycocotools.coco.COCO`` ground truth (or the path of its json).
        results: COCO results entries, or the path of a results json.

    Returns:
        ``{"AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl"}``; all -1 when
        there are no results.
        When ``per_image`` is a dict, it is filled with ``image_id -> mean over the image's GT
        people of their best OKS`` (for picking worst/best images).
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if isinstance(results, (str, Path)):
        results = json.loads(Path(results).read_text())
    if not results:
        return {k: -1.0 for k in COCO_STAT_NAMES}
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(coco_gt)) if isinstance(coco_gt, (str, Path)) else coco_gt
        dt = gt.loadRes(list(results))
        ev = COCOeval(gt, dt, "keypoints")
        ev.params.useSegm = None
        ev.params.imgIds = sorted({r["image_id"] for r in results} | set(gt.getImgIds()))
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    if per_image is not None:
        for im in gt.getImgIds():
            n_gt = len(gt.getAnnIds(imgIds=im, iscrowd=False))
            ious = ev.ious.get((im, 1))
            if n_gt == 0:
                continue
            if ious is None or len(ious) == 0:
                per_image[im] = 0.0
            else:
                per_image[im] = float(np.asarray(ious).max(axis=0).mean())
    return {k: float(v) for k, v in zip(COCO_STAT_NAMES, ev.stats)}


def format_table(stats: Dict[str, float]) -> str:
    """A two-line Markdown-ish table of the stats."""
    names = list(stats)
    head = "| " + " | ".join(names) + " |"
    sep = "|" + "|".join("---" for _ in names) + "|"
    vals = "| " + " | ".join(f"{stats[n]:.3f}" for n in names) + " |"
    return "\n".join([head, sep, vals])
