"""MPII PCKh (percentage of correct keypoints, normalised by head size).

The MPII mini json has no head boxes, so the head size is *derived* from the annotated joints:

    head_size = 0.6 * sqrt(2) * || head_top - upper_neck ||

i.e. MPII's own rule (0.6 x the diagonal of the head box) with the head box taken as a square
whose side is the upper-neck-to-head-top length. A joint is correct when its distance to the
ground truth is <= thr * head_size. People without both head joints labelled are skipped.
Like the original evaluation, the mean leaves out pelvis (6) and thorax (7).
"""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np

from edgepose.keypoints import MPII

HEAD_TOP, UPPER_NECK = 9, 8
HEAD_RULE = "head size = 0.6 * sqrt(2) * |head_top - upper_neck| (derived: the json has no head boxes)"
GROUPS = {
    "Head": (8, 9), "Shoulder": (12, 13), "Elbow": (11, 14), "Wrist": (10, 15),
    "Hip": (2, 3), "Knee": (1, 4), "Ankle": (0, 5),
}


def head_sizes(gt: np.ndarray, vis: np.ndarray) -> np.ndarray:
    """``(N,)`` head sizes in pixels (0 where a head joint is not labelled)."""
    d = np.linalg.norm(gt[:, HEAD_TOP] - gt[:, UPPER_NECK], axis=1)
    ok = (vis[:, HEAD_TOP] > 0) & (vis[:, UPPER_NECK] > 0)
    return np.where(ok, 0.6 * np.sqrt(2.0) * d, 0.0)


def pckh(pred: np.ndarray, gt: np.ndarray, vis: np.ndarray, thresholds: Sequence[float] = (0.5, 0.1)) -> Dict[str, object]:
    """PCKh per joint, per group and mean.

    Args:
        pred: ``(N, 16, 2)`` predicted joints, frame pixels.
        gt: ``(N, 16, 2)`` ground-truth joints, same pixel convention.
        vis: ``(N, 16)`` 1 where the joint is labelled.

    Returns:
        ``{"PCKh@<t>": {"per_joint": {name: pct}, "groups": {name: pct}, "Mean": pct}, "head_rule": str,
        "num_people": n}`` with percentages 0..100 (NaN for a joint never labelled).
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    vis = np.asarray(vis, dtype=np.float64) > 0
    hs = head_sizes(gt, vis.astype(np.float64))
    use = hs > 0
    pred, gt, vis, hs = pred[use], gt[use], vis[use], hs[use]
    dist = np.linalg.norm(pred - gt, axis=2) / hs[:, None]
    out: Dict[str, object] = {"head_rule": HEAD_RULE, "num_people": int(use.sum())}
    names = MPII.joints
    counted = [j for j in range(len(names)) if j not in (6, 7)]
    for t in thresholds:
        hit = (dist <= t) & vis
        cnt = vis.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            per = 100.0 * hit.sum(axis=0) / cnt
        groups = {}
        for g, js in GROUPS.items():
            c = cnt[list(js)].sum()
            groups[g] = float(100.0 * hit[:, list(js)].sum() / c) if c else float("nan")
        c_all = cnt[counted].sum()
        mean = float(100.0 * hit[:, counted].sum() / c_all) if c_all else float("nan")
        out[f"PCKh@{t}"] = {"per_joint": {n: float(p) for n, p in zip(names, per)}, "groups": groups, "Mean": mean}
    return out


def format_table(res: Dict[str, object]) -> str:
    """Group table (Head .. Ankle, Mean) for each threshold, plus the head-size rule."""
    keys = [k for k in res if k.startswith("PCKh@")]
    cols = list(GROUPS) + ["Mean"]
    lines = ["| metric | " + " | ".join(cols) + " |", "|---|" + "|".join("---" for _ in cols) + "|"]
    for k in keys:
        r = res[k]
        vals = [r["groups"][g] for g in GROUPS] + [r["Mean"]]
        lines.append(f"| {k} | " + " | ".join(f"{v:.1f}" for v in vals) + " |")
    lines.append(f"({res['head_rule']}; {res['num_people']} people)")
    return "\n".join(lines)
