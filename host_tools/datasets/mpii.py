"""MPII human pose as top-down samples (json layout of the original project / mmpose).

Each entry: ``image``, ``center`` [x, y], ``scale`` (person height / 200), ``joints`` (16, 2)
and ``joints_vis`` (16,). The coordinates are MATLAB 1-based; like the original project (and
mmpose), we move the centre down by ``15 * scale`` pixels and enlarge the scale by 1.25 to avoid
cutting limbs, then subtract 1 from the centre and the joints to get 0-based pixels.
The scale is isotropic (``[scale, scale]``), as in the original.

Files: ``DATASET.TRAIN_ANN`` / ``TEST_ANN`` and ``TRAIN_IMAGES`` / ``TEST_IMAGES`` when set,
else the original layout ``ROOT/annot/<set>.json`` and ``ROOT/images/``.
"""
from __future__ import annotations

import json
import os
from typing import Any, List

import numpy as np

from edgepose.keypoints import MPII
from host_tools.datasets.base import JointsDataset, PersonRecord
from host_tools.errors import UserError


def read_mpii_json(path: str) -> List[dict]:
    if not os.path.isfile(path):
        raise UserError(f"annotation file {path} not found (set DATASET.ROOT, or DATASET.TRAIN_ANN/TEST_ANN)")
    try:
        with open(path) as f:
            data = json.load(f)
    except json.JSONDecodeError as exc:
        raise UserError(f"annotation file {path} is not valid JSON ({exc})") from None
    if not isinstance(data, list) or not data or not all(isinstance(a, dict) and {"image", "center", "scale"} <= set(a) for a in data):
        raise UserError(f"annotation file {path}: expected a list of {{image, center, scale, joints, joints_vis}} entries")
    return data


def mpii_center_scale(center, scale: float):
    """0-based center and ``[s, s]`` scale of one MPII entry (see module docstring)."""
    c = np.asarray(center, dtype=np.float64).copy()
    s = np.array([scale, scale], dtype=np.float64)
    if c[0] != -1:
        c[1] = c[1] + 15 * s[1]
        s = s * 1.25
    return c - 1, s


class MPIIDataset(JointsDataset):
    keypoints = MPII
    upper_body_ids = (7, 8, 9, 10, 11, 12, 13, 14, 15)

    def __init__(self, cfg: Any, is_train: bool) -> None:
        super().__init__(cfg, is_train)
        ds = cfg.DATASET
        image_set = ds.TRAIN_SET if is_train else ds.TEST_SET
        self.ann_file = (ds.TRAIN_ANN if is_train else ds.TEST_ANN) or os.path.join(ds.ROOT, "annot", f"{image_set}.json")
        self.image_dir = (ds.TRAIN_IMAGES if is_train else ds.TEST_IMAGES) or os.path.join(ds.ROOT, "images")
        entries = read_mpii_json(self.ann_file)
        names = sorted({a["image"] for a in entries})
        ids = {n: i for i, n in enumerate(names)}
        k = self.num_joints
        for a in entries:
            c, s = mpii_center_scale(a["center"], float(a["scale"]))
            joints = np.zeros((k, 2))
            vis = np.zeros(k)
            if "joints" in a:
                j = np.asarray(a["joints"], dtype=np.float64)
                if j.shape != (k, 2):
                    raise UserError(f"annotation file {self.ann_file}: {a['image']} has joints of shape {j.shape}, expected ({k}, 2)")
                joints = j - 1
                vis = np.minimum(np.asarray(a.get("joints_vis", np.ones(k)), dtype=np.float64), 1.0)
            self.db.append(PersonRecord(
                image=os.path.join(self.image_dir, a["image"]), center=c, scale=s, joints=joints,
                joints_vis=vis, score=1.0, image_id=ids[a["image"]]))
        self.check_images()
