"""Top-down samples: one person box -> one normalised crop, its heatmap targets and meta.

Every geometric step goes through edgepose (one implementation shared with the device):
``edgepose.geometry.get_affine_transform`` builds the frame->crop matrix from center/scale/
rotation, ``edgepose.crop.warp_crops`` makes the crop, ``edgepose.geometry.affine_points``
moves the joints, and ``edgepose.codec.HeatmapCodec.encode`` draws the Gaussian targets.

Conventions: center/scale follow the reference (scale in units of 200 px, box enlarged 1.25);
joints are ``(K, 2)`` frame pixels (0-based, pixel centre at integer coordinates), visibility
``(K,)`` in {0, 1}. Colour: the crop is RGB when ``DATASET.COLOR_RGB`` (edgepose's default) and
BGR otherwise; both are normalised with the ImageNet RGB mean/std (0..255 scale).
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from edgepose.codec import HeatmapCodec
from edgepose.crop import warp_crops
from edgepose.geometry import PIXEL_STD, affine_points, get_affine_transform
from edgepose.keypoints import KeypointSet
from edgepose.metadata import IMAGENET_MEAN_RGB, IMAGENET_STD_RGB
from host_tools.errors import UserError


@dataclass
class PersonRecord:
    """One person instance.

    Attributes:
        image: path of the image file.
        center: ``(2,)`` box centre, frame pixels.
        scale: ``(2,)`` box size in units of 200 px (already enlarged by 1.25).
        joints: ``(K, 2)`` frame pixels (zeros when unknown, e.g. detector boxes).
        joints_vis: ``(K,)`` 1 for labelled joints, else 0.
        score: box score (1 for ground-truth boxes).
        image_id: dataset image id (COCO id, or the index of the image for MPII).
        area: annotated area in square pixels (COCO), else 0.
    """

    image: str
    center: np.ndarray
    scale: np.ndarray
    joints: np.ndarray
    joints_vis: np.ndarray
    score: float = 1.0
    image_id: int = 0
    area: float = 0.0
    extra: Dict[str, Any] = field(default_factory=dict)


def fliplr_joints(joints: np.ndarray, vis: np.ndarray, width: int, flip_pairs: Sequence[Sequence[int]]) -> Tuple[np.ndarray, np.ndarray]:
    """Mirror joints in an image ``width`` pixels wide (``x -> width - 1 - x``) and swap the
    left/right pairs. Returns new arrays."""
    j = joints.copy()
    v = vis.copy()
    j[:, 0] = width - 1 - j[:, 0]
    for a, b in flip_pairs:
        j[[a, b]] = j[[b, a]]
        v[[a, b]] = v[[b, a]]
    return j, v


class JointsDataset(Dataset):
    """Base of the COCO and MPII datasets (subclasses fill ``self.db`` and the keypoint set).

    ``__getitem__`` returns ``(input (3, H, W) float32, target (K, Hh, Wh) float32,
    target_weight (K, 1) float32, meta)`` where ``meta`` holds ``index, image_id, center,
    scale, rotation, score, area, joints, joints_vis`` (the latter two after augmentation, in
    frame pixels of the possibly mirrored image).
    """

    keypoints: KeypointSet
    upper_body_ids: Tuple[int, ...] = ()

    def __init__(self, cfg: Any, is_train: bool) -> None:
        self.cfg = cfg
        self.is_train = is_train
        self.image_size = (int(cfg.MODEL.IMAGE_SIZE[0]), int(cfg.MODEL.IMAGE_SIZE[1]))  # (w, h)
        self.heatmap_size = (int(cfg.MODEL.EXTRA.HEATMAP_SIZE[0]), int(cfg.MODEL.EXTRA.HEATMAP_SIZE[1]))
        self.aspect_ratio = self.image_size[0] / self.image_size[1]
        self.scale_factor = float(cfg.DATASET.SCALE_FACTOR)
        self.rotation_factor = float(cfg.DATASET.ROT_FACTOR)
        self.flip = bool(cfg.DATASET.FLIP)
        self.prob_half_body = float(cfg.DATASET.PROB_HALF_BODY)
        self.num_joints_half_body = int(cfg.DATASET.NUM_JOINTS_HALF_BODY)
        self.to_rgb = bool(cfg.DATASET.COLOR_RGB)
        self.use_target_weight = bool(cfg.LOSS.USE_TARGET_WEIGHT)
        if cfg.MODEL.EXTRA.TARGET_TYPE != "gaussian":
            raise UserError(f"config MODEL.EXTRA.TARGET_TYPE: only 'gaussian' is supported, got {cfg.MODEL.EXTRA.TARGET_TYPE!r}")
        self.codec = HeatmapCodec(self.image_size, self.heatmap_size, float(cfg.MODEL.EXTRA.SIGMA), cfg.TEST.REFINE)
        self.db: List[PersonRecord] = []

    # -- helpers for subclasses -------------------------------------------------------------
    @property
    def flip_pairs(self) -> List[List[int]]:
        return [list(p) for p in self.keypoints.flip_pairs]

    @property
    def num_joints(self) -> int:
        return self.keypoints.num_joints

    def check_images(self) -> None:
        """Fail early, with one line, when an image file is missing."""
        missing = sorted({r.image for r in self.db if not os.path.isfile(r.image)})
        if missing:
            more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
            raise UserError(f"image {missing[0]} not found{more} (check DATASET.ROOT or DATASET.TRAIN_IMAGES/TEST_IMAGES)")

    def __len__(self) -> int:
        return len(self.db)

    def read_image(self, path: str) -> np.ndarray:
        img = cv2.imread(path, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        if img is None:
            raise UserError(f"image {path} cannot be read (not an image file?)")
        return img

    def half_body(self, joints: np.ndarray, vis: np.ndarray) -> Optional[Tuple[np.ndarray, np.ndarray]]:
        """Center/scale of the upper or the lower body (reference half-body augmentation), or
        None when fewer than 2 labelled joints are on the chosen half."""
        upper = [joints[j] for j in range(self.num_joints) if vis[j] > 0 and j in self.upper_body_ids]
        lower = [joints[j] for j in range(self.num_joints) if vis[j] > 0 and j not in self.upper_body_ids]
        if np.random.randn() < 0.5 and len(upper) > 2:
            sel = upper
        else:
            sel = lower if len(lower) > 2 else upper
        if len(sel) < 2:
            return None
        pts = np.asarray(sel, dtype=np.float64)
        center = pts.mean(axis=0)
        w, h = pts.max(axis=0) - pts.min(axis=0)
        if w > self.aspect_ratio * h:
            h = w / self.aspect_ratio
        elif w < self.aspect_ratio * h:
            w = h * self.aspect_ratio
        return center, np.array([w, h]) / PIXEL_STD * 1.5

    # -- the sample ---------------------------------------------------------------------------
    def __getitem__(self, idx: int):
        rec = self.db[idx]
        img = self.read_image(rec.image)
        joints = rec.joints.astype(np.float64).copy()
        vis = rec.joints_vis.astype(np.float64).copy()
        c = rec.center.astype(np.float64).copy()
        s = rec.scale.astype(np.float64).copy()
        r = 0.0
        if self.is_train:
            if (self.prob_half_body > 0 and vis.sum() > self.num_joints_half_body
                    and np.random.rand() < self.prob_half_body):
                hb = self.half_body(joints, vis)
                if hb is not None:
                    c, s = hb
            sf, rf = self.scale_factor, self.rotation_factor
            s = s * np.clip(np.random.randn() * sf + 1, 1 - sf, 1 + sf)
            r = float(np.clip(np.random.randn() * rf, -rf * 2, rf * 2)) if random.random() <= 0.6 else 0.0
            if self.flip and random.random() <= 0.5:
                img = img[:, ::-1]
                joints, vis = fliplr_joints(joints, vis, img.shape[1], self.flip_pairs)
                c[0] = img.shape[1] - c[0] - 1
        m = get_affine_transform(c, s, r, self.image_size)
        inp = warp_crops(img, m[None], self.image_size, to_rgb=self.to_rgb,
                         mean=IMAGENET_MEAN_RGB, std=IMAGENET_STD_RGB, layout="nchw")[0]
        crop_joints = affine_points(joints, m)
        target, weight = self.codec.encode(crop_joints, vis)
        if not self.use_target_weight:
            weight = np.ones_like(weight)
        meta = {
            "index": idx,
            "image_id": int(rec.image_id),
            "center": c.astype(np.float32),
            "scale": s.astype(np.float32),
            "rotation": np.float32(r),
            "score": np.float32(rec.score),
            "area": np.float32(rec.area),
            "joints": joints.astype(np.float32),
            "joints_vis": vis.astype(np.float32),
        }
        return torch.from_numpy(inp), torch.from_numpy(target), torch.from_numpy(weight), meta
