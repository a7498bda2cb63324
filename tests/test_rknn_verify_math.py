"""The fidelity measures of host_tools verify, on heatmaps with known peaks (no toolkit needed)."""
import numpy as np
import pytest

from edgepose.metadata import ModelMeta
from edgepose.nms import oks_numpy
from host_tools.verify import compare, heatmap_cosine

K, HH, HW = 17, 32, 24
META = ModelMeta(input_size=(96, 128), heatmap_size=(HW, HH), keypoint_set="coco", num_joints=K)


def _peaks(xy: np.ndarray) -> np.ndarray:
    """(N, K, 2) integer peak positions -> (N, K, HH, HW) float32 maps with a 3x3 blob there."""
    n = xy.shape[0]
    hm = np.zeros((n, K, HH, HW), np.float32)
    for i in range(n):
        for k in range(K):
            x, y = xy[i, k]
            hm[i, k, y - 1:y + 2, x - 1:x + 2] = 0.5
            hm[i, k, y, x] = 1.0
    return hm


def test_same_maps_agree_perfectly():
    rng = np.random.default_rng(0)
    xy = np.stack([rng.integers(3, HW - 3, (2, K)), rng.integers(3, HH - 3, (2, K))], -1)
    hm = _peaks(xy)
    c = np.array([[100.0, 120.0], [300.0, 200.0]])
    s = np.array([[0.9, 1.2], [1.5, 2.0]])
    r = compare(hm, hm.copy(), c, s, np.array([5000.0, 9000.0]), META)
    assert r["oks"]["mean"] == 1.0 and r["keypoint_error_input_px"]["max"] == 0.0
    assert r["heatmap_cosine"]["min"] == pytest.approx(1.0)
    assert all(j["peak_agreement"] == 1.0 for j in r["per_joint"])


def test_shifted_peaks_give_the_coco_oks():
    rng = np.random.default_rng(1)
    xy = np.stack([rng.integers(4, HW - 4, (3, K)), rng.integers(4, HH - 4, (3, K))], -1)
    shifted = xy.copy()
    shifted[:, :, 0] += 2  # two heatmap pixels right on every joint
    ref, test = _peaks(xy), _peaks(shifted)
    centers = np.array([[200.0, 150.0], [50.0, 60.0], [400.0, 300.0]])
    scales = np.array([[1.0, 4 / 3], [0.5, 2 / 3], [2.0, 8 / 3]])
    areas = np.array([8000.0, 2000.0, 30000.0])
    r = compare(ref, test, centers, scales, areas, META)
    # stride 4: 2 heatmap px = 8 input px on every joint
    assert r["keypoint_error_input_px"]["mean"] == pytest.approx(8.0)
    assert r["keypoint_error_input_px"]["max"] == pytest.approx(8.0)
    # the per-person mean of the per-joint OKS equals the reference OKS formula (edgepose.nms)
    c_ref, _ = r["_preds"]["ref"]
    c_test, _ = r["_preds"]["test"]
    sig = np.array(
        [0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89]) / 10
    per_person = []
    for i in range(3):
        g = np.concatenate([c_ref[i], np.ones((K, 1))], 1)
        d = np.concatenate([c_test[i], np.ones((K, 1))], 1)[None]
        per_person.append(oks_numpy(g, d, areas[i], areas[i:i + 1], sig)[0])
    assert r["oks"]["mean"] == pytest.approx(np.mean(per_person), rel=1e-9)
    assert r["oks"]["min_person"] == pytest.approx(min(per_person), rel=1e-9)
    assert 0 < r["oks"]["mean"] < 1
    # frame-pixel displacement: 8 input px times the crop's zoom (scale*200 / input width)
    assert np.abs(c_test - c_ref)[..., 0] == pytest.approx(np.repeat(8 * scales[:, :1] * 200 / 96, K, 1), rel=1e-5)


def test_cosine():
    a = np.ones((2, 1, 2, 2), np.float32)
    b = a.copy()
    b[1] *= -1
    np.testing.assert_allclose(heatmap_cosine(a, b), [1.0, -1.0])
    z = np.zeros_like(a)
    np.testing.assert_allclose(heatmap_cosine(z, z), [1.0, 1.0])
