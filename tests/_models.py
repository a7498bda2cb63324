"""Test models: tiny untrained networks with PoseResNet's I/O, exported like the real ones.

The weights are random (no trained weights exist here), so tests check pipeline behaviour:
shapes, schema, consistency between paths, not accuracy.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from host_tools.demo import export_untrained_onnx
from edgepose.metadata import ModelMeta, read_onnx_metadata, write_sidecar

ROOT = Path(__file__).resolve().parents[1]
from conftest import DATA  # noqa: E402  (third-party: EDGEPOSE_TEST_DATA, read in place)
CLIP = DATA / "video" / "arm_wrestling.mp4"
POSETRACK = DATA / "posetrack_mini"


def tiny_onnx(path: Path, dynamic_batch: bool = True, **meta_overrides) -> Path:
    """Tiny stand-in net (same seed -> same weights), input 192x256, 17 COCO joints.

    Exported from torch where it is installed (the host); the device-side venv has no torch,
    so there the same architecture is written directly with ``onnx.helper``
    (:func:`tiny_onnx_without_torch`)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return tiny_onnx_without_torch(path, dynamic_batch=dynamic_batch, **meta_overrides)
    return export_untrained_onnx(path, layers=0, dynamic_batch=dynamic_batch, seed=0,
                                 meta_overrides=meta_overrides or None)


def tiny_onnx_without_torch(path: Path, dynamic_batch: bool = True, seed: int = 0, **meta_overrides) -> Path:
    """The tiny net of :func:`host_tools.demo._tiny_net` (conv 3->16 s2, ReLU, conv 16->32 s2, ReLU,
    1x1 conv 32->17) as an opset-13 ONNX graph with seeded uniform weights (PyTorch's default
    fan-in bound 1/sqrt(fan_in)) and the edgepose metadata; no torch needed."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgepose.keypoints import flip_pairs_list, get_keypoint_set
    from edgepose.metadata import METADATA_KEY

    ks = get_keypoint_set("coco")
    rng = np.random.default_rng(seed)
    inits, nodes = [], []
    x = "input"
    for i, (cin, cout, k, s) in enumerate([(3, 16, 3, 2), (16, 32, 3, 2), (32, ks.num_joints, 1, 1)]):
        bound = 1.0 / np.sqrt(cin * k * k)
        inits.append(numpy_helper.from_array(rng.uniform(-bound, bound, (cout, cin, k, k)).astype(np.float32), f"w{i}"))
        inits.append(numpy_helper.from_array(rng.uniform(-bound, bound, cout).astype(np.float32), f"b{i}"))
        y = "heatmaps" if i == 2 else f"c{i}"
        nodes.append(helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [y], kernel_shape=[k, k], strides=[s, s],
                                      pads=[k // 2] * 4))
        if i < 2:
            nodes.append(helper.make_node("Relu", [y], [f"r{i}"]))
            y = f"r{i}"
        x = y
    b = "batch" if dynamic_batch else 1
    graph = helper.make_graph(nodes, "tiny_test_net", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [b, 3, 256, 192])],
                              [helper.make_tensor_value_info("heatmaps", TensorProto.FLOAT, [b, ks.num_joints, 64, 48])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7  # readable by every onnxruntime since 1.6
    meta = ModelMeta(input_size=(192, 256), heatmap_size=(48, 64), keypoint_set=ks.name, num_joints=ks.num_joints,
                     flip_pairs=flip_pairs_list(ks), arch="tiny_test_net", batch=0 if dynamic_batch else 1,
                     layout="nchw", quantized="float32")
    meta.source_config = {"weights": f"untrained (random init, seed {seed}, onnx.helper)"}
    for k, v in meta_overrides.items():
        setattr(meta, k, v)
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, meta.to_json()
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


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
