"""Test models: tiny untrained networks with PoseResNet's I/O, exported like the real ones.

The weights are random (no trained weights exist here), so tests check pipeline behaviour:
shapes, schema, consistency between paths, not accuracy.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgepose.demo import export_untrained_onnx
from edgepose.metadata import ModelMeta, read_onnx_metadata, write_sidecar

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
CLIP = DATA / "video" / "arm_wrestling.mp4"
POSETRACK = DATA / "posetrack_mini"


def tiny_onnx(path: Path, dynamic_batch: bool = True, **meta_overrides) -> Path:
    """Tiny stand-in net (same seed -> same weights), input 192x256, 17 COCO joints."""
    return export_untrained_onnx(path, layers=0, dynamic_batch=dynamic_batch, seed=0,
                                 meta_overrides=meta_overrides or None)


def rknn_from_onnx(onnx_path: Path, rknn_path: Path, quantized: str = "float32", scale: float = 0.0,
                   zero_point: int = 0) -> ModelMeta:
    """A fake ``.rknn`` file (bytes that name the ONNX model the fake runtime executes) with the
    sidecar that ``host_tools build-rknn`` would write (NHWC uint8 input, mean/std inside)."""
    meta = read_onnx_metadata(onnx_path)
    assert meta is not None
    meta.layout = "nhwc"
    meta.batch = 1
    meta.target = "rk3588"
    meta.quantized = quantized
    meta.output_scale = scale
    meta.output_zero_point = zero_point
    rknn_path.write_bytes(b"FAKE-RKNN\n" + str(onnx_path).encode())
    write_sidecar(rknn_path, meta)
    return meta


def load_posetrack_frame(name: str = "012834_mpii_test"):
    """(frame BGR, gt boxes (N, 4) xywh, gt keypoints (N, 17, 3), track ids (N,)) of one
    annotated PoseTrack18 frame."""
    import cv2

    ann = json.loads((POSETRACK / "annotations" / "val" / f"{name}.json").read_text())
    img = ann["images"][0]
    frame = cv2.imread(str(POSETRACK / img["file_name"]))
    people = [a for a in ann["annotations"] if a["image_id"] == img["id"] and a.get("bbox") and a["num_keypoints"] > 0]
    boxes = np.array([a["bbox"] for a in people], np.float64)
    kps = np.array([a["keypoints"] for a in people], np.float64).reshape(len(people), -1, 3)
    ids = np.array([a["track_id"] for a in people], np.int64)
    return frame, boxes, kps, ids


class SlowDetector:
    """Detector plug-in for CLI tests: two fixed boxes (xywh + score), 50 ms per frame so a
    run lasts long enough to be interrupted."""

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        import time

        time.sleep(0.05)
        return np.array([[20, 10, 150, 230, 0.9], [170, 20, 160, 220, 0.8]], np.float64)
