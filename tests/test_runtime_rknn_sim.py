"""The rknnlite backend against the real Rockchip runtime code: rknn-toolkit2's x86 simulator
stands in for the NPU. ``RKNN`` and ``RKNNLite`` share ``init_runtime`` / ``inference`` /
``release``; a model loaded with ``load_rknn`` cannot run on the simulator, so the stand-in's
``load_rknn`` builds the INT8 model from the ONNX export in the same process instead. This
checks what the real runtime returns (list of float32 NCHW outputs for NHWC uint8 input with
mean/std inside the model) and that the estimator decodes it like the ONNX model."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from _models import load_posetrack_frame, rknn_from_onnx, tiny_onnx
from conftest import needs_data
from edgepose.crop import warp_crops
from edgepose.estimator import PoseEstimator
from edgepose.geometry import crop_matrices

rknn_api = pytest.importorskip("rknn.api", reason="rknn-toolkit2 (x86 converter) not installed")
pytestmark = [needs_data, pytest.mark.rknn, pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:pkg_resources is deprecated:UserWarning")]


def make_sim_class(onnx_path: Path, dataset: Path):
    class SimRKNNLite:
        NPU_CORE_AUTO = rknn_api.RKNN.NPU_CORE_AUTO
        NPU_CORE_0 = rknn_api.RKNN.NPU_CORE_0

        def __init__(self, verbose=False):
            self.rknn = rknn_api.RKNN(verbose=False)
            self.core_mask = None

        def load_rknn(self, path):
            meta = __import__("edgepose.metadata", fromlist=["read_sidecar"]).read_sidecar(path)
            ret = self.rknn.config(mean_values=[list(meta.mean)], std_values=[list(meta.std)], target_platform="rk3588")
            if ret == 0:
                ret = self.rknn.load_onnx(str(onnx_path))
            if ret == 0:
                ret = self.rknn.build(do_quantization=True, dataset=str(dataset))
            return ret

        def init_runtime(self, core_mask=NPU_CORE_AUTO):
            self.core_mask = core_mask  # the simulator has no cores to pick
            return self.rknn.init_runtime()

        def inference(self, inputs, data_format=None):
            return self.rknn.inference(inputs=inputs, data_format=data_format)

        def release(self):
            self.rknn.release()

    return SimRKNNLite


def test_int8_simulator_matches_onnx(tmp_path):
    import cv2

    onnx_path = tiny_onnx(tmp_path / "m.onnx", dynamic_batch=False)
    frame, boxes, _, _ = load_posetrack_frame("012834_mpii_test")
    _, _, mats = crop_matrices(boxes, (192, 256))
    crops = warp_crops(frame, mats, (192, 256), to_rgb=True, layout="nhwc")
    lines = []
    for i, c in enumerate(crops[:6]):  # calibration crops, in the RGB order the model is fed
        p = tmp_path / f"calib{i}.jpg"
        cv2.imwrite(str(p), c[..., ::-1])  # imwrite takes BGR; the toolkit reads it back as RGB
        lines.append(str(p))
    (tmp_path / "dataset.txt").write_text("\n".join(lines) + "\n")
    rk = tmp_path / "m.rknn"
    rknn_from_onnx(onnx_path, rk)
    sim = make_sim_class(onnx_path, tmp_path / "dataset.txt")
    with PoseEstimator(rk, backend="rknnlite", rknnlite_cls=sim, core_mask="0") as est:
        assert est.backend._rt.core_mask == sim.NPU_CORE_0
        res = est.backend.infer(crops[:1])
        assert res.heatmaps.dtype == np.float32 and res.heatmaps.shape == (1, 17, 64, 48)
        got = est(frame, boxes[:3])
    ref_est = PoseEstimator(onnx_path)
    ref = ref_est.backend.infer(warp_crops(frame, mats[:1], (192, 256), True, ref_est.meta.mean, ref_est.meta.std))
    a, b = res.heatmaps.ravel(), ref.heatmaps.ravel()
    cos = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    assert cos > 0.99, cos
    want = ref_est(frame, boxes[:3])
    assert got.keypoints.shape == want.keypoints.shape == (3, 17, 2)
    np.testing.assert_allclose(got.scores, want.scores, atol=0.05)
