"""Pose datasets: COCO keypoints and MPII, on top of :class:`~host_tools.datasets.base.JointsDataset`."""
from __future__ import annotations

from typing import Any

from host_tools.datasets.base import JointsDataset, PersonRecord
from host_tools.errors import UserError

__all__ = ["JointsDataset", "PersonRecord", "build_dataset"]


def build_dataset(cfg: Any, is_train: bool, use_gt_bbox: bool = True, det_file: str = "") -> JointsDataset:
    """The dataset ``DATASET.DATASET`` names, for training (``TRAIN_SET``, augmented) or
    validation (``TEST_SET``; COCO may use detector boxes from ``det_file``)."""
    name = cfg.DATASET.DATASET
    if name == "coco":
        from host_tools.datasets.coco import COCODataset

        return COCODataset(cfg, is_train, use_gt_bbox=use_gt_bbox, det_file=det_file)
    if name == "mpii":
        from host_tools.datasets.mpii import MPIIDataset

        return MPIIDataset(cfg, is_train)
    raise UserError(f"config DATASET.DATASET: unknown dataset {name!r} (use coco or mpii)")
