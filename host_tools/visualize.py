"""Skeleton overlays (PNG) of the worst and best images of an evaluation."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import cv2
import numpy as np

from host_tools.datasets import JointsDataset

GT_COLOR = (0, 200, 0)      # BGR green: ground truth
PRED_COLOR = (0, 0, 255)    # BGR red: prediction


def draw_skeleton(img: np.ndarray, joints: np.ndarray, mask: np.ndarray, skeleton, color, radius: int = 3) -> None:
    """Draw joints ``(K, 2)`` (frame pixels) where ``mask`` and the limbs between them, in place."""
    for a, b in skeleton:
        if mask[a] and mask[b]:
            pa = tuple(int(round(v)) for v in joints[a])
            pb = tuple(int(round(v)) for v in joints[b])
            cv2.line(img, pa, pb, color, 2, cv2.LINE_AA)
    for j in np.flatnonzero(mask):
        cv2.circle(img, tuple(int(round(v)) for v in joints[j]), radius, color, -1, cv2.LINE_AA)


def save_overlays(dataset: JointsDataset, preds: Dict[str, np.ndarray], per_image: Dict[int, float],
                  out_dir: Path, n: int, vis_thre: float = 0.2) -> List[Path]:
    """Write ``worst_<rank>_<id>.png`` / ``best_<rank>_<id>.png`` for the ``n`` lowest and highest
    ``per_image`` qualities: GT skeletons in green, predictions (joints scoring > ``vis_thre``) in red."""
    if not per_image:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    order = sorted(per_image, key=lambda k: per_image[k])
    picks = [("worst", i, im) for i, im in enumerate(order[:n])] + [("best", i, im) for i, im in enumerate(order[::-1][:n])]
    skel = dataset.keypoints.skeleton
    written: List[Path] = []
    for tag, rank, im in picks:
        recs = [i for i, r in enumerate(dataset.db) if r.image_id == im]
        if not recs:
            continue
        img = dataset.read_image(dataset.db[recs[0]].image).copy()
        for i in recs:
            r = dataset.db[i]
            draw_skeleton(img, r.joints, r.joints_vis > 0, skel, GT_COLOR)
        for n_, i in enumerate(preds["index"]):
            if dataset.db[int(i)].image_id == im:
                kp = preds["keypoints"][n_]
                draw_skeleton(img, kp[:, :2], kp[:, 2] > vis_thre, skel, PRED_COLOR)
        cv2.putText(img, f"{tag} #{rank + 1}: {per_image[im]:.3f}", (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2)
        p = out_dir / f"{tag}_{rank + 1}_{im}.png"
        cv2.imwrite(str(p), img)
        written.append(p)
    return written
