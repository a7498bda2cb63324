"""The person-detector stage: letterbox geometry, head layouts, planted-output detectors through
``edgepose run``, the RKNNLite adapter against a double, HOG, and ``edgepose info``."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from _detmodels import (export_random, planted_dfl, planted_ultralytics, planted_yolox, to_input_xyxy,
                        ultralytics_letterbox)
from _models import DATA, POSETRACK, load_posetrack_frame, tiny_onnx
from edgepose.cli import main
from edgepose.crop import warp_crops
from edgepose.detect import (DetectorError, DetectorMeta, HogDetector, PersonDetector, identify_head, num_anchors)
from edgepose.geometry import Letterbox
from edgepose.metadata import sidecar_path
from conftest import needs_data

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = [DATA / "coco_mini" / "000000040083.jpg", DATA / "coco_mini" / "000000196141.jpg",
          POSETRACK / "images" / "val" / "012834_mpii_test" / "000000.jpg", DATA / "mpii_mini" / "004645041.jpg"]


def _xyxy_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x0, y0 = np.maximum(a[:, None, 0], b[None, :, 0]), np.maximum(a[:, None, 1], b[None, :, 1])
    x1, y1 = np.minimum(a[:, None, 2], b[None, :, 2]), np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda z: (z[:, 2] - z[:, 0]) * (z[:, 3] - z[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None] - inter)


def _planted_boxes(frame: np.ndarray, n: int = 4, seed: int = 0) -> np.ndarray:
    """``(n, 4)`` xywh boxes inside the frame, of person-like sizes, not overlapping much."""
    rng = np.random.default_rng(seed)
    h, w = frame.shape[:2]
    out = []
    while len(out) < n:
        bw = rng.uniform(0.08, 0.3) * w
        bh = rng.uniform(1.2, 2.5) * bw
        if bh > 0.95 * h:
            continue
        b = [rng.uniform(0, w - bw), rng.uniform(0, h - bh), bw, bh]
        xyxy = np.array([[b[0], b[1], b[0] + b[2], b[1] + b[3]]])
        if out and _xyxy_iou(xyxy, np.array([[o[0], o[1], o[0] + o[2], o[1] + o[3]] for o in out])).max() > 0.3:
            continue
        out.append(b)
    return np.array(out)


# --------------------------------------------------------------------------- letterbox geometry

@needs_data
@pytest.mark.parametrize("photo,size", [(PHOTOS[2], (640, 640)), (PHOTOS[3], (640, 384)), (PHOTOS[1], (320, 320))])
def test_letterbox_warp_matches_resize_and_pad(photo, size):
    """The warp with the letterbox affine and border 114 is cv2.resize + copyMakeBorder (the
    Ultralytics preprocessing) when downscaling: same pixels, up to the warp's 1/32-px rounding."""
    frame = cv2.imread(str(photo))
    lb = Letterbox(frame.shape, size)
    x = warp_crops(frame, lb.matrix()[None], size, layout="nhwc", border_value=114)[0]
    sx, sy, left, top = ultralytics_letterbox((frame.shape[1], frame.shape[0]), size)
    nw, nh = int(round(frame.shape[1] * sx)), int(round(frame.shape[0] * sy))
    r = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_LINEAR)
    ref = cv2.copyMakeBorder(r, int(top), size[1] - nh - int(top), int(left), size[0] - nw - int(left),
                             cv2.BORDER_CONSTANT, value=(114, 114, 114))
    d = np.abs(x.astype(int) - ref.astype(int))
    assert d.max() <= 3 and d.mean() < 0.2
    assert (x[: int(top)] == 114).all() and (x[int(top) + nh:] == 114).all()


def test_letterbox_box_inverse():
    lb = Letterbox((1080, 1920, 3), (640, 640))
    assert lb.scale == (1 / 3, 1 / 3) and lb.pad == (0.0, 140.0)
    boxes = np.array([[10.0, 20.0, 300.0, 600.0], [1800.0, 900.0, 500.0, 500.0]])
    back = lb.boxes_to_frame(lb.boxes_to_input(boxes))
    np.testing.assert_allclose(back[0], boxes[0], atol=1e-9)
    np.testing.assert_allclose(back[1], [1800, 900, 120, 180], atol=1e-9)  # clipped to the frame
    tl = Letterbox((100, 200, 3), (64, 64), center=False)
    assert tl.pad == (0.0, 0.0)


# --------------------------------------------------------------------------- layouts

def test_identify_head_each_layout_and_refusal():
    assert num_anchors((640, 640)) == 8400
    assert identify_head([(1, 84, 8400)], (640, 640)).head == "ultralytics"
    assert identify_head([(1, 84, 8400)], (640, 640)).num_classes == 80
    assert identify_head([(1, 8400, 85)], (640, 640)).head == "yolox"
    nine = [s for g in (80, 40, 20) for s in ((1, 64, g, g), (1, 80, g, g), (1, 1, g, g))]
    lay = identify_head(nine, (640, 640))
    assert lay.head == "dfl" and lay.num_classes == 80 and lay.dfl == [(0, 1, 2), (3, 4, 5), (6, 7, 8)]
    six = [(1, 64, 40, 40), (1, 3, 40, 40), (1, 64, 20, 20), (1, 3, 20, 20), (1, 64, 10, 10), (1, 3, 10, 10)]
    lay = identify_head(six, (320, 320))
    assert lay.dfl == [(0, 1, None), (2, 3, None), (4, 5, None)] and lay.num_classes == 3
    with pytest.raises(DetectorError) as e:
        identify_head([(1, 17, 64, 48)], (192, 256), where="pose.onnx")
    msg = str(e.value)
    assert "\n" not in msg and "(1, 17, 64, 48)" in msg and "Ultralytics" in msg and "YOLOX" in msg
    with pytest.raises(DetectorError):
        identify_head([(1, 84, 8400)], (640, 640), head="dfl")  # a sidecar's forced head must fit


@needs_data
def test_random_torch_heads_are_recognised(tmp_path):
    pytest.importorskip("torch")
    frame = cv2.imread(str(PHOTOS[0]))
    for kind, head in (("ultralytics", "ultralytics"), ("dfl", "dfl")):
        p = export_random(tmp_path / f"{kind}.onnx", kind, nc=80, input_wh=(320, 320))
        with PersonDetector(p, score_thr=0.0) as det:
            assert det.layout.head == head and det.meta.input_size == (320, 320) and det.layout.num_classes == 80
            b = det(frame)
        assert b.shape[1] == 5 and len(b) > 0 and len(b) <= det.top_k
        assert (b[:, 0] >= 0).all() and (b[:, 0] + b[:, 2] <= frame.shape[1] + 1e-6).all()
        assert (b[:, 1] >= 0).all() and (b[:, 1] + b[:, 3] <= frame.shape[0] + 1e-6).all()
        assert np.all(np.diff(b[:, 4]) <= 0)  # best first


# --------------------------------------------------------------------------- planted detectors, end to end

@pytest.fixture(scope="module")
def pose_model(tmp_path_factory) -> Path:
    return tiny_onnx(tmp_path_factory.mktemp("pose") / "tiny.onnx")


def _plant(kind: str, path: Path, frame: np.ndarray, boxes: np.ndarray, scores: np.ndarray) -> Path:
    xyxy = to_input_xyxy(boxes, (frame.shape[1], frame.shape[0]), topleft=kind == "yolox")
    if kind == "yolox":
        return planted_yolox(path, xyxy, scores)
    if kind == "ultralytics":
        return planted_ultralytics(path, xyxy, scores)
    return planted_dfl(path, xyxy, scores, with_sum=kind == "dfl9")


def _run_jsonl(args, capsys):
    assert main(args) == 0
    lines = [json.loads(ln) for ln in capsys.readouterr().out.splitlines() if ln.startswith("{")]
    assert len(lines) == 1
    return lines[0]["persons"]


@needs_data
@pytest.mark.parametrize("kind", ["ultralytics", "dfl9", "dfl6", "yolox"])
@pytest.mark.parametrize("photo", PHOTOS, ids=lambda p: p.name)
def test_planted_detector_through_run(kind, photo, pose_model, tmp_path, capsys):
    frame = cv2.imread(str(photo))
    boxes = _planted_boxes(frame, 4, seed=len(photo.name))
    scores = np.array([0.92, 0.81, 0.66, 0.4])
    det = _plant(kind, tmp_path / f"{kind}.onnx", frame, boxes, scores)
    persons = _run_jsonl(["run", "--image", str(photo), "--model", str(pose_model), "--detector", str(det),
                          "--jsonl", "-", "--quiet", "--no-track"], capsys)
    got = np.array([p["box"] for p in persons])
    got_scores = np.array([p["box_score"] for p in persons])
    assert len(persons) == 4  # no box lost (the Ultralytics model's decoy of another class is no person)
    order = np.argsort(-got_scores)
    np.testing.assert_allclose(got[order], boxes, atol=0.02 if kind != "yolox" else 0.05)  # JSON: 0.01 px
    np.testing.assert_allclose(got_scores[order], scores, atol=1e-4)
    for p in persons:  # person score = box score x mean joint score above vis_thr (reference rescoring)
        js = np.array(p["scores"])
        mean = js[js > 0.2].mean() if (js > 0.2).any() else 0.0
        assert p["score"] == pytest.approx(p["box_score"] * mean, abs=2e-4)


@needs_data
def test_score_threshold_and_duplicates(tmp_path):
    frame = cv2.imread(str(PHOTOS[0]))
    boxes = _planted_boxes(frame, 3, seed=3)
    dup = np.concatenate([boxes, boxes[:1] + [2, 1, 0, 0]])  # a near-duplicate of the first
    p = _plant("ultralytics", tmp_path / "d.onnx", frame, dup, np.array([0.9, 0.5, 0.2, 0.8]))
    with PersonDetector(p, score_thr=0.3) as det:
        b = det(frame)
    assert len(b) == 2  # 0.2 below the threshold, the duplicate suppressed by box NMS
    np.testing.assert_allclose(b[:, :4], boxes[:2], atol=1e-3)


@needs_data
def test_sidecar_overrides_class_and_padding(tmp_path):
    frame = cv2.imread(str(PHOTOS[1]))
    boxes = _planted_boxes(frame, 2, seed=5)
    xyxy = to_input_xyxy(boxes, (frame.shape[1], frame.shape[0]))
    p = planted_ultralytics(tmp_path / "c.onnx", xyxy, [0.9, 0.8], decoy_class=2)
    sidecar_path(p).write_text(json.dumps({"task": "detect", "class_id": 2, "pad_value": 0}))
    with PersonDetector(p) as det:
        assert det.meta.pad_value == 0 and det.meta.class_id == 2 and det.meta.color == "rgb"
        b = det(frame)
    assert len(b) == 1 and b[0, 4] == pytest.approx(0.95)  # only the class-2 box
    sidecar_path(p).write_text(json.dumps({"task": "detect", "colour": "rgb"}))
    with pytest.raises(DetectorError, match="unknown keys"):
        PersonDetector(p)


# --------------------------------------------------------------------------- RKNNLite adapter

class FakeDetRKNNLite:
    """RKNNLite double for multi-output models (signatures as in rknn-toolkit-lite2 2.5.0, see
    tests/test_runtime_rknnlite.py): runs the ONNX named in the fake .rknn with onnxruntime on
    the uint8 NHWC input normalised by ``mean``/``std``, and hands back every output, float32
    or int8 quantized with the per-output ``quant`` list (what a model built to keep int8
    outputs would give)."""

    NPU_CORE_AUTO, NPU_CORE_0, NPU_CORE_1, NPU_CORE_2, NPU_CORE_0_1, NPU_CORE_0_1_2, NPU_CORE_ALL = 0, 1, 2, 4, 3, 7, 0xFFFF
    quant = None
    inputs_seen: list = []

    def __init__(self, verbose=False, verbose_file=None):
        self.sess = None

    def load_rknn(self, path, key_path=None):
        data = Path(path).read_bytes()
        if not data.startswith(b"FAKE-RKNN\n"):
            return -1
        import onnxruntime as ort

        self.sess = ort.InferenceSession(data.split(b"\n", 1)[1].decode(), providers=["CPUExecutionProvider"])
        return 0

    def init_runtime(self, target=None, device_id=None, async_mode=False, core_mask=NPU_CORE_AUTO):
        return 0

    def inference(self, inputs, data_type=None, data_format=None, inputs_pass_through=None, get_frame_id=False,
                  reuse_outputs=False):
        x = inputs[0]
        assert data_format == "nhwc" and x.dtype == np.uint8 and x.ndim == 4
        type(self).inputs_seen.append(x.copy())
        name = self.sess.get_inputs()[0]
        if tuple(x.shape[1:3]) != tuple(name.shape[2:4]):
            return None  # the runtime's answer to a wrong input size
        f = np.ascontiguousarray(x.astype(np.float32).transpose(0, 3, 1, 2) / 255.0)
        outs = self.sess.run(None, {name.name: f})
        if self.quant is None:
            return outs
        return [np.clip(np.round(o / s) + z, -128, 127).astype(np.int8) for o, (s, z) in zip(outs, self.quant)]

    def release(self):
        pass


def _fake_rknn(onnx_path: Path, rknn_path: Path, quant=None) -> Path:
    rknn_path.write_bytes(b"FAKE-RKNN\n" + str(onnx_path).encode())
    if quant is not None:
        meta = DetectorMeta(head="dfl", quantized="int8", target="rk3588",
                            outputs=[{"name": f"o{i}", "scale": s, "zero_point": z} for i, (s, z) in enumerate(quant)])
        sidecar_path(rknn_path).write_text(json.dumps(meta.to_dict()))
    return rknn_path


@needs_data
def test_rknnlite_adapter_float_and_int8(tmp_path):
    frame = cv2.imread(str(PHOTOS[2]))
    boxes = _planted_boxes(frame, 3, seed=7)
    onnx_p = _plant("dfl9", tmp_path / "z.onnx", frame, boxes, np.array([0.9, 0.7, 0.5]))
    fake = type("Fake", (FakeDetRKNNLite,), {"inputs_seen": []})
    # a model zoo file without a sidecar: 640x640 assumed, shapes from a probe inference
    det = PersonDetector(_fake_rknn(onnx_p, tmp_path / "zoo.rknn"), rknnlite_cls=fake)
    assert det.layout.head == "dfl" and det.runner.input_layout == "nhwc"
    b = det(frame)
    np.testing.assert_allclose(b[:, :4], boxes, atol=1e-3)
    x = fake.inputs_seen[-1][0]
    assert (x[:139] == 114).all() and (x[-139:] == 114).all()  # 1920x1080 -> pad 140 / 139.. rows grey
    # int8 outputs, each with its own scale / zero point from the sidecar
    outs = det.runner.run(x[None])
    quant = []
    for o in outs:
        lo, hi = min(float(o.min()), 0.0), max(float(o.max()), 0.0)
        s = (hi - lo) / 255.0 or 1.0
        quant.append((s, int(round(-lo / s)) - 128))
    det.close()
    fake8 = type("Fake8", (FakeDetRKNNLite,), {"inputs_seen": [], "quant": quant})
    with PersonDetector(_fake_rknn(onnx_p, tmp_path / "q.rknn", quant), rknnlite_cls=fake8) as d8:
        b8 = d8(frame)
    assert len(b8) == 3
    iou = _xyxy_iou(np.c_[b8[:, :2], b8[:, :2] + b8[:, 2:4]], np.c_[boxes[:, :2], boxes[:, :2] + boxes[:, 2:]])
    assert iou.diagonal().min() > 0.9  # int8 DFL logits: a fraction of a bin off at most
    np.testing.assert_allclose(b8[:, 4], [0.9, 0.7, 0.5], atol=0.01)
    sidecar_path(tmp_path / "q.rknn").write_text(json.dumps({"task": "detect"}))  # int8 without quant
    with PersonDetector(tmp_path / "q.rknn", rknnlite_cls=fake8) as d8:
        with pytest.raises(DetectorError, match="scale/zero_point"):
            d8(frame)


# --------------------------------------------------------------------------- HOG, CLI, info

@needs_data
@pytest.mark.skipif(not hasattr(cv2, "HOGDescriptor"), reason="this OpenCV has no HOGDescriptor (OpenCV 5)")
def test_hog_finds_people_on_a_multi_person_photo(pose_model, capsys):
    from host_tools.det_build import match_boxes

    frame, gt, _, _ = load_posetrack_frame("012834_mpii_test")  # 11 annotated people
    photo = POSETRACK / "images" / "val" / "012834_mpii_test" / "000000.jpg"
    persons = _run_jsonl(["run", "--image", str(photo), "--model", str(pose_model), "--detector", "hog",
                          "--jsonl", "-", "--quiet"], capsys)
    got = np.array([p["box"] for p in persons]).reshape(-1, 4)
    matched = match_boxes(np.c_[gt[:, :2], gt[:, :2] + gt[:, 2:]], np.c_[got[:, :2], got[:, :2] + got[:, 2:]])
    assert len(matched) >= 3 and len(persons) <= 11  # weak but real: 3 of 11 found one-to-one (measured)
    assert all(0 < p["box_score"] < 1 for p in persons)
    assert len({p["id"] for p in persons}) == len(persons)
    assert HogDetector()(np.full((240, 320, 3), 128, np.uint8)).shape == (0, 5)  # a blank frame: nobody


@needs_data
def test_detector_errors_are_one_line(pose_model, tmp_path, capsys):
    img = str(PHOTOS[0])
    base = ["run", "--image", img, "--model", str(pose_model), "--quiet"]
    assert main(base + ["--detector", str(tmp_path / "none.onnx")]) == 2
    assert "file not found" in capsys.readouterr().err
    assert main(base + ["--detector", str(pose_model)]) == 2  # a pose model is no detector
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "match no detector layout" in err and "17, 64, 48)" in err
    assert main(base + ["--detector", "nonsense"]) == 2
    assert "MODULE:NAME" in capsys.readouterr().err


@needs_data
def test_info_describes_a_detector(tmp_path, capsys):
    frame = cv2.imread(str(PHOTOS[0]))
    p = _plant("dfl9", tmp_path / "det.onnx", frame, _planted_boxes(frame, 1), np.array([0.9]))
    assert main(["info", "--model", str(p)]) == 0
    out = capsys.readouterr().out
    assert "person detector" in out and "dfl head" in out and "(1, 64, 80, 80)" in out
    r = tmp_path / "det.rknn"
    r.write_bytes(b"not a real rknn")
    sidecar_path(r).write_text(json.dumps(DetectorMeta(head="dfl", target="rk3588", quantized="int8").to_dict()))
    from edgepose.backends import installed

    rc = main(["info", "--model", str(r)])
    out = capsys.readouterr().out
    assert "person detector" in out and "target: rk3588" in out
    assert rc == (1 if not installed("rknnlite") else rc)


@needs_data
def test_dynamic_axes_export_is_probed(tmp_path):
    """An Ultralytics export with dynamic=True has symbolic input and output sizes: the layout
    comes from one probe inference at the sidecar's (or the default 640x640) input size."""
    import onnx

    frame = cv2.imread(str(PHOTOS[1]))
    boxes = _planted_boxes(frame, 2, seed=9)
    p = _plant("ultralytics", tmp_path / "dyn.onnx", frame, boxes, np.array([0.9, 0.8]))
    m = onnx.load(str(p))
    for vi in list(m.graph.input) + list(m.graph.output):
        for d in vi.type.tensor_type.shape.dim[2:]:
            d.ClearField("dim_value")
            d.dim_param = "n"
    onnx.save(m, str(p))
    with PersonDetector(p) as det:
        assert det.meta.input_size == (640, 640) and det.layout.head == "ultralytics"
        np.testing.assert_allclose(det(frame)[:, :4], boxes, atol=1e-3)


@needs_data
def test_detect_every_propagates_between_detections(pose_model, tmp_path, capsys):
    from _models import CLIP

    cap = cv2.VideoCapture(str(CLIP))
    ok, frame = cap.read()
    cap.release()
    assert ok
    boxes = _planted_boxes(frame, 2, seed=11)
    det = _plant("dfl9", tmp_path / "v.onnx", frame, boxes, np.array([0.9, 0.8]))
    assert main(["run", "--video", str(CLIP), "--model", str(pose_model), "--detector", str(det), "--detect-every",
                 "3", "--max-frames", "4", "--jsonl", "-", "--quiet"]) == 0
    recs = [json.loads(ln) for ln in capsys.readouterr().out.splitlines() if ln.startswith("{")]
    assert len(recs) == 4
    planted = lambda r: sorted(p["box_score"] for p in r["persons"] if p["box_score"] in (0.9, 0.8))  # noqa: E731
    assert planted(recs[0]) == [0.8, 0.9] and planted(recs[3]) == [0.8, 0.9]  # detector frames 0 and 3
    for r in recs[1:3]:  # in between: only boxes propagated from the last poses
        assert r["persons"] and planted(r) == []


def test_hog_without_hogdescriptor_is_one_line(monkeypatch):
    from edgepose.detect import DetectorError, HogDetector

    monkeypatch.delattr(cv2, "HOGDescriptor", raising=False)
    with pytest.raises(DetectorError, match="no HOGDescriptor") as exc:
        HogDetector()
    msg = str(exc.value)
    assert "\n" not in msg  # the working alternative, named in the same line
    assert "host_tools pull yolox_nano" in msg and "--detector <the yolox_nano .onnx" in msg


def test_hog_without_hogdescriptor_through_run_names_the_alternative(monkeypatch, pose_model, capsys):
    """What a user of OpenCV 5 sees: one line about the detector (not the pose model) that names
    the working alternative, and nothing run."""
    monkeypatch.delattr(cv2, "HOGDescriptor", raising=False)
    photo = PHOTOS[0]
    assert main(["run", "--image", str(photo), "--model", str(pose_model), "--detector", "hog", "--jsonl", "-"]) != 0
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1
    assert err.startswith("edgepose: error: --detector hog: ") and "host_tools pull yolox_nano" in err
