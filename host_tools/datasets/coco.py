"""COCO keypoints (person category) as top-down samples.

Training and GT-box validation use the annotated boxes of people with at least one labelled
keypoint, cleaned as in the reference (clipped to the image, zero-area boxes dropped).
Validation with a detector uses a COCO results json (``image_id``, ``bbox`` xywh, ``score``,
``category_id``); boxes with ``score < TEST.IMAGE_THRE`` are dropped, as in the reference.

Files: ``DATASET.TRAIN_ANN`` / ``TEST_ANN`` and ``TRAIN_IMAGES`` / ``TEST_IMAGES`` when set,
else the original layout ``ROOT/annotations/person_keypoints_<set>.json`` and ``ROOT/images/<set>/``.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
from typing import Any, List

import numpy as np

from edgepose.geometry import box_to_center_scale
from edgepose.keypoints import COCO
from host_tools.datasets.base import JointsDataset, PersonRecord
from host_tools.errors import UserError


def load_coco(ann_file: str):
    """A ``pycocotools.coco.COCO`` for ``ann_file``, quietly; UserError if missing/broken."""
    from pycocotools.coco import COCO as _COCO

    if not os.path.isfile(ann_file):
        raise UserError(f"annotation file {ann_file} not found (set DATASET.ROOT, or DATASET.TRAIN_ANN/TEST_ANN)")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return _COCO(ann_file)
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"annotation file {ann_file} is not COCO keypoint json ({type(exc).__name__}: {exc})") from None


class COCODataset(JointsDataset):
    keypoints = COCO
    upper_body_ids = tuple(range(11))

    def __init__(self, cfg: Any, is_train: bool, use_gt_bbox: bool = True, det_file: str = "") -> None:
        super().__init__(cfg, is_train)
        ds = cfg.DATASET
        image_set = ds.TRAIN_SET if is_train else ds.TEST_SET
        ann = (ds.TRAIN_ANN if is_train else ds.TEST_ANN) or os.path.join(ds.ROOT, "annotations", f"person_keypoints_{image_set}.json")
        self.image_dir = (ds.TRAIN_IMAGES if is_train else ds.TEST_IMAGES) or os.path.join(ds.ROOT, "images", image_set)
        self.ann_file = ann
        self.coco = load_coco(ann)
        self.image_ids = sorted(self.coco.getImgIds())
        if is_train or use_gt_bbox:
            self.db = self._gt_records()
        else:
            self.db = self._det_records(det_file, float(cfg.TEST.IMAGE_THRE))
        self.check_images()

    def image_path(self, image_id: int) -> str:
        return os.path.join(self.image_dir, self.coco.loadImgs(image_id)[0]["file_name"])

    def _gt_records(self) -> List[PersonRecord]:
        out: List[PersonRecord] = []
        for image_id in self.image_ids:
            info = self.coco.loadImgs(image_id)[0]
            width, height = info["width"], info["height"]
            for obj in self.coco.loadAnns(self.coco.getAnnIds(imgIds=image_id, iscrowd=False)):
                if obj.get("category_id", 1) != 1:
                    continue
                kp = np.asarray(obj.get("keypoints", []), dtype=np.float64).reshape(-1, 3)
                if kp.shape[0] != self.num_joints or kp[:, 2].max() == 0:
                    continue
                x, y, w, h = obj["bbox"]
                x1, y1 = max(0.0, x), max(0.0, y)
                x2 = min(width - 1.0, x1 + max(0.0, w - 1))
                y2 = min(height - 1.0, y1 + max(0.0, h - 1))
                if obj.get("area", 1) <= 0 or x2 < x1 or y2 < y1:
                    continue
                c, s = box_to_center_scale([x1, y1, x2 - x1, y2 - y1], self.aspect_ratio)
                out.append(PersonRecord(
                    image=self.image_path(image_id), center=c, scale=s, joints=kp[:, :2].copy(),
                    joints_vis=np.minimum(kp[:, 2], 1.0), score=1.0, image_id=image_id,
                    area=float(obj.get("area", 0.0))))
        if not out:
            raise UserError(f"annotation file {self.ann_file}: no person with labelled keypoints")
        return out

    def _det_records(self, det_file: str, thr: float) -> List[PersonRecord]:
        if not det_file:
            raise UserError("detector boxes asked for but no file given: set TEST.COCO_BBOX_FILE or pass --det-file")
        if not os.path.isfile(det_file):
            raise UserError(f"detection file {det_file} not found (TEST.COCO_BBOX_FILE / --det-file)")
        try:
            with open(det_file) as f:
                dets = json.load(f)
        except json.JSONDecodeError as exc:
            raise UserError(f"detection file {det_file} is not valid JSON ({exc})") from None
        if not isinstance(dets, list):
            raise UserError(f"detection file {det_file}: expected a COCO results list [{{image_id, bbox, score}}, ...]")
        known = set(self.image_ids)
        k = self.num_joints
        out: List[PersonRecord] = []
        for d in dets:
            if d.get("category_id", 1) != 1 or d["image_id"] not in known:
                continue
            if d["score"] < thr:
                continue
            c, s = box_to_center_scale(d["bbox"], self.aspect_ratio)
            out.append(PersonRecord(
                image=self.image_path(d["image_id"]), center=c, scale=s, joints=np.zeros((k, 2)),
                joints_vis=np.ones(k), score=float(d["score"]), image_id=int(d["image_id"])))
        if not out:
            raise UserError(f"detection file {det_file}: no person boxes for the images of {self.ann_file} above TEST.IMAGE_THRE={thr}")
        return out
