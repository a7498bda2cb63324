"""Metrics: COCO keypoint AP through pycocotools (:mod:`.coco_eval`) and MPII PCKh (:mod:`.pckh`)."""
