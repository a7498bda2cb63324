"""The person-detector kernel (decode + IoU NMS, edgepose.yolo) against its NumPy twin and the
Rockchip model zoo's style of Python post-processing for YOLOv8, and the whole detector stage
(letterbox + decode + NMS, inference excluded). Run: ``pytest benchmarks`` (ratio table at the end).

Outputs are the model zoo's RKNN layout at 640x640 (per stride a (1, 64, h, w) DFL tensor and a
(1, nc, h, w) class tensor; 8400 anchors), float32 or int8 with per-output scale/zero point:

* sparse: 3 persons, each a cluster of 12 neighbouring anchors above the threshold (what a
  detector gives around a person), every other score below 0.02;
* dense: a crowd, 20% of the anchors above the threshold.

Threshold 0.25, IoU 0.45 (the model zoo's defaults).
"""
from __future__ import annotations

import importlib

import cv2
import numpy as np
import pytest

import edgepose

yolo = importlib.import_module("edgepose.yolo")
crop = importlib.import_module("edgepose.crop")

if not edgepose.native_available():  # pragma: no cover
    pytest.skip("edgepose._native is not built: nothing to compare", allow_module_level=True)

STRIDES = (8, 16, 32)
THR, IOU = 0.25, 0.45
BOX_Q = (0.11, -30)        # DFL logits in int8
CLS_Q = (1 / 255, -128)    # sigmoid outputs in int8 (RKNN's usual choice)


@pytest.fixture(autouse=True)
def _native_impl():
    edgepose.set_implementation("native")
    yield
    edgepose.set_implementation("auto")


@pytest.fixture(autouse=True)
def _torch_one_thread():
    """The kernels are single-threaded, so torch runs on one thread too (as OpenCV does in
    conftest.py): a per-core figure, and stable on a shared machine, where torch's default
    thread pool measured 110 ms instead of 6.7 ms for the same sparse case."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ----------------------------------------------------------------------------- outputs

def plant_persons(rng: np.random.Generator, probs: np.ndarray, dense: bool, stride: int) -> None:
    """Person scores into ``probs`` ``(1, nc, h, w)`` (class 0), in place: dense, 20% of the cells
    above the threshold; sparse, three 3x4 blobs on the stride-16 level only."""
    h, w = probs.shape[2:]
    if dense:
        hit = rng.random((h, w)) < 0.2
        probs[0, 0][hit] = rng.uniform(0.3, 1, hit.sum())
    elif stride == 16:
        for _ in range(3):
            y, x = rng.integers(2, h - 3), rng.integers(2, w - 4)
            probs[0, 0, y:y + 3, x:x + 4] = rng.uniform(0.3, 0.95, (3, 4))


def zoo_outputs(nc: int, dense: bool, quantized: bool, size=(640, 640), seed=0):
    """(outputs in the model zoo's order box, class per stride; their (scale, zp) or None)."""
    rng = np.random.default_rng(seed)
    w, h = size
    outs, quant = [], []
    for s in STRIDES:
        gh, gw = h // s, w // s
        logits = rng.normal(0, 3, (1, 64, gh, gw))
        probs = rng.uniform(0, 0.02, (1, nc, gh, gw))
        plant_persons(rng, probs, dense, s)
        if quantized:
            outs += [np.clip(np.rint(logits / BOX_Q[0]) + BOX_Q[1], -128, 127).astype(np.int8),
                     np.clip(np.rint(probs / CLS_Q[0]) + CLS_Q[1], -128, 127).astype(np.int8)]
            quant += [BOX_Q, CLS_Q]
        else:
            outs += [logits.astype(np.float32), probs.astype(np.float32)]
            quant += [None, None]
    return outs, quant


# ----------------------------------------------------------------------------- the model zoo's way

def zoo_style_postprocess(outputs, quant, img_size=(640, 640)):
    """What the model zoo's Python YOLOv8 example does, written from its description: dequantize
    every output, DFL with torch's softmax, the grid decode per branch, flatten, keep anchors
    whose best class score passes, then NMS class by class with NumPy."""
    import torch

    outs = [o.astype(np.float32) if q is None else ((o.astype(np.float32) - q[1]) * q[0])
            for o, q in zip(outputs, quant)]
    boxes, confs = [], []
    for i in range(len(outs) // 2):
        pos, cls = outs[2 * i], outs[2 * i + 1]
        n, c, gh, gw = pos.shape
        y = torch.from_numpy(pos).reshape(n, 4, c // 4, gh, gw).softmax(2)
        bins = torch.arange(c // 4, dtype=torch.float32).reshape(1, 1, c // 4, 1, 1)
        dist = (y * bins).sum(2).numpy()
        col, row = np.meshgrid(np.arange(gw), np.arange(gh))
        grid = np.stack([col, row])[None]
        stride = np.array([img_size[1] // gh, img_size[0] // gw]).reshape(1, 2, 1, 1)
        xyxy = np.concatenate([(grid + 0.5 - dist[:, :2]) * stride, (grid + 0.5 + dist[:, 2:]) * stride], 1)
        boxes.append(xyxy.transpose(0, 2, 3, 1).reshape(-1, 4))
        confs.append(cls.transpose(0, 2, 3, 1).reshape(-1, cls.shape[1]))
    boxes, confs = np.concatenate(boxes), np.concatenate(confs)
    best, label = confs.max(-1), confs.argmax(-1)
    sel = np.where(best >= THR)
    boxes, label, best = boxes[sel], label[sel], best[sel]
    kept_b, kept_c, kept_s = [], [], []
    for c in set(label.tolist()):
        m = label == c
        keep = _zoo_nms(boxes[m], best[m])
        kept_b.append(boxes[m][keep])
        kept_c.append(label[m][keep])
        kept_s.append(best[m][keep])
    if not kept_b:
        return None, None, None
    return np.concatenate(kept_b), np.concatenate(kept_c), np.concatenate(kept_s)


def _zoo_nms(b, s):
    x0, y0, w, h = b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    area = w * h
    order = s.argsort()[::-1]
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        iw = np.maximum(0.0, np.minimum(x0[i] + w[i], x0[rest] + w[rest]) - np.maximum(x0[i], x0[rest]) + 1e-5)
        ih = np.maximum(0.0, np.minimum(y0[i] + h[i], y0[rest] + h[rest]) - np.maximum(y0[i], y0[rest]) + 1e-5)
        inter = iw * ih
        order = rest[inter / (area[i] + area[rest] - inter) <= IOU]
    return np.array(keep)


def edgepose_postprocess(outputs, quant):
    return yolo.postprocess("dfl", outputs, THR, IOU, quant=quant)


def twin_postprocess(outputs, quant):
    b, s = yolo.decode_dfl_numpy(outputs[0::2], outputs[1::2], STRIDES, THR, 0, quant[0::2], quant[1::2])
    return b[yolo.nms_boxes_numpy(b, s, IOU)]


# ----------------------------------------------------------------------------- decode + NMS

IMPLS = ["native", "numpy twin", "model zoo style (torch DFL, all classes)"]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dense", [False, True], ids=["sparse", "dense"])
@pytest.mark.parametrize("quantized", [False, True], ids=["float32", "int8"])
@pytest.mark.parametrize("nc", [80, 1])
def test_decode_nms(measure, impl, dense, quantized, nc):
    if impl.startswith("model zoo"):
        pytest.importorskip("torch")
    outs, quant = zoo_outputs(nc, dense, quantized)
    group = (f"detector decode + NMS 640x640, {nc} class{'es' if nc > 1 else ''}, "
             f"{'int8' if quantized else 'float32'}, {'dense' if dense else 'sparse'}")
    fn = {"native": lambda: edgepose_postprocess(outs, quant),
          "numpy twin": lambda: twin_postprocess(outs, quant),
          IMPLS[2]: lambda: zoo_style_postprocess(outs, quant)}[impl]
    out = measure(group, impl, fn)
    if impl == "native" and not dense:  # the persons the zoo's way finds are the ones edgepose keeps
        # (dense crowds differ: the zoo's IoU adds 1e-5 to widths and heights)
        b, _ = out
        zb, zc, _ = zoo_style_postprocess(outs, quant) if _has_torch() else (None, None, None)
        if zb is not None:
            zb = zb[zc == 0]
            assert len(zb) == len(b)
            np.testing.assert_allclose(np.sort(zb, 0), np.sort(b, 0), atol=1e-3)


def _has_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:  # pragma: no cover
        return False
    return True


# ----------------------------------------------------------------------------- NMS alone

@pytest.mark.parametrize("impl", ["native", "numpy twin"])
@pytest.mark.parametrize("n", [50, 1000])
def test_nms(measure, impl, n):
    rng = np.random.default_rng(n)
    centre = rng.uniform(0, 640, (max(n // 10, 1), 2))[rng.integers(0, max(n // 10, 1), n)] + rng.normal(0, 10, (n, 2))
    wh = rng.uniform(20, 200, (n, 2))
    b = np.concatenate([centre - wh / 2, centre + wh / 2], 1).astype(np.float32)
    s = rng.uniform(0.25, 1, n).astype(np.float32)
    fn = (lambda: yolo.nms_boxes(b, s, IOU)) if impl == "native" else (lambda: yolo.nms_boxes_numpy(b, s, IOU))
    measure(f"IoU NMS, {n} boxes around {max(n // 10, 1)} objects", impl, fn)


# ----------------------------------------------------------------------------- the whole stage

def letterbox_matrix(w: int, h: int, size=(640, 640)) -> np.ndarray:
    r = min(size[0] / w, size[1] / h)
    return np.array([[r, 0, (size[0] - r * w) / 2], [0, r, (size[1] - r * h) / 2]])


def cv2_letterbox(frame, size=(640, 640)):
    """The usual Python letterbox: resize, then copyMakeBorder with grey 114."""
    h, w = frame.shape[:2]
    r = min(size[0] / w, size[1] / h)
    nw, nh = int(round(w * r)), int(round(h * r))
    img = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_LINEAR) if (nw, nh) != (w, h) else frame
    top, left = (size[1] - nh) // 2, (size[0] - nw) // 2
    return cv2.copyMakeBorder(img, top, size[1] - nh - top, left, size[0] - nw - left, cv2.BORDER_CONSTANT,
                              value=(114, 114, 114))


STAGE = ["native", "numpy twin", "cv2 letterbox + model zoo style"]


@pytest.mark.parametrize("impl", STAGE)
def test_detector_stage(measure, impl):
    """Letterbox a 640x480 BGR frame into 640x640 (grey 114), decode + NMS planted sparse int8
    outputs, map the boxes back to the frame: everything the detector stage does but inference."""
    if impl.startswith("cv2"):
        pytest.importorskip("torch")
    frame = np.random.default_rng(1).integers(0, 256, (480, 640, 3), np.uint8)
    m = letterbox_matrix(640, 480)
    inv = crop._inverse_cv(m)
    outs, quant = zoo_outputs(80, dense=False, quantized=True)

    def native():
        img = edgepose.warp_crops(frame, m[None], (640, 640), layout="nhwc", border_value=114)
        b, s = yolo.postprocess("dfl", outs, THR, IOU, quant=quant)
        return img, b * inv[0, 0] + np.float32([inv[0, 2], inv[1, 2]] * 2), s

    def twin():
        img = crop.warp_crops_numpy(frame, m[None], (640, 640), layout="nhwc", border_value=114)
        b = twin_postprocess(outs, quant)
        return img, b * inv[0, 0] + np.float32([inv[0, 2], inv[1, 2]] * 2)

    def zoo():
        img = cv2_letterbox(frame)
        b, _, _ = zoo_style_postprocess(outs, quant)
        return img, b * inv[0, 0] + np.float32([inv[0, 2], inv[1, 2]] * 2)

    out = measure("detector stage: letterbox 640x480 -> 640x640 + decode + NMS (int8, 80 classes, sparse)", impl,
                  {"native": native, "numpy twin": twin, STAGE[2]: zoo}[impl])
    if impl == "native":
        np.testing.assert_array_equal(out[0][0], cv2_letterbox(frame))  # the same letterbox as OpenCV's
