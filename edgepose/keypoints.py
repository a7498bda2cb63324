"""Keypoint sets: joint names, left/right flip pairs, skeleton edges and OKS sigmas."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import numpy as np


@dataclass(frozen=True)
class KeypointSet:
    """One dataset's joint convention. ``flip_pairs`` are (left, right) index pairs."""

    name: str
    joints: Tuple[str, ...]
    flip_pairs: Tuple[Tuple[int, int], ...]
    skeleton: Tuple[Tuple[int, int], ...]
    sigmas: Tuple[float, ...] = field(default=())

    @property
    def num_joints(self) -> int:
        return len(self.joints)

    def sigmas_array(self) -> np.ndarray:
        if self.sigmas:
            return np.asarray(self.sigmas, dtype=np.float64)
        return np.full(self.num_joints, 0.05)  # generic fallback for sets without published sigmas


COCO = KeypointSet(
    name="coco",
    joints=("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
            "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
            "right_knee", "left_ankle", "right_ankle"),
    flip_pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)),
    skeleton=((15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8),
              (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6)),
    sigmas=(0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107,
            0.087, 0.087, 0.089, 0.089),
)

MPII = KeypointSet(
    name="mpii",
    joints=("r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle", "pelvis", "thorax", "upper_neck",
            "head_top", "r_wrist", "r_elbow", "r_shoulder", "l_shoulder", "l_elbow", "l_wrist"),
    flip_pairs=((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13)),
    skeleton=((0, 1), (1, 2), (2, 6), (6, 3), (3, 4), (4, 5), (6, 7), (7, 8), (8, 9), (7, 12), (12, 11),
              (11, 10), (7, 13), (13, 14), (14, 15)),
    sigmas=(0.089, 0.087, 0.107, 0.107, 0.087, 0.089, 0.107, 0.107, 0.087, 0.087, 0.062, 0.072, 0.079,
            0.079, 0.072, 0.062),
)

KEYPOINT_SETS: Dict[str, KeypointSet] = {"coco": COCO, "mpii": MPII}


def get_keypoint_set(name: str) -> KeypointSet:
    try:
        return KEYPOINT_SETS[name.lower()]
    except KeyError:
        raise ValueError(f"keypoint set: unknown {name!r}; known: {sorted(KEYPOINT_SETS)}") from None


def flip_pairs_list(ks: KeypointSet) -> List[List[int]]:
    return [list(p) for p in ks.flip_pairs]
