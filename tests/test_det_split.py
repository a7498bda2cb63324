"""The head split of single-output YOLO exports (host_tools/det_split.py) on random-weight torch
exports of both families, and the split models through edgepose's detector (onnxruntime and the
RKNNLite adapter against a double, float and per-output int8). No toolkit needed; the builds
with rknn-toolkit2 are in tests/test_rknn_detect.py."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")

from _yolo_exports import export_yolo  # noqa: E402
from edgepose.detect import DetectorMeta, PersonDetector  # noqa: E402
from edgepose.metadata import sidecar_path  # noqa: E402
from host_tools.det_split import reassemble, split_head  # noqa: E402
from host_tools.errors import UserError  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
FAMILIES = {"yolox": ("yolox", "yolox_split", 9), "ultralytics": ("ultralytics", "dfl", 6)}


def _frame(seed: int = 0) -> np.ndarray:
    """A synthetic 200x300 BGR frame: smooth blobs, so a random net gives varied outputs."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:200, 0:300]
    f = np.zeros((200, 300, 3))
    for _ in range(6):
        cx, cy, r = rng.uniform(0, 300), rng.uniform(0, 200), rng.uniform(15, 60)
        f += rng.uniform(60, 200, 3) * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))[..., None]
    return np.clip(f + rng.normal(0, 8, f.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def split_pair(request, tmp_path_factory):
    fam = request.param
    d = tmp_path_factory.mktemp(fam)
    src = export_yolo(d / f"{fam}.onnx", fam, nc=3, input_wh=(128, 96), bias=1.5)
    before = src.read_bytes()
    head = split_head(src, d / f"{fam}_split.onnx")
    assert src.read_bytes() == before  # the float model is left as it is
    return fam, src, d / f"{fam}_split.onnx", head


def test_split_outputs_per_stride(split_pair):
    fam, src, dst, head = split_pair
    family, layout, n_out = FAMILIES[fam]
    assert head.family == family and head.head == layout and head.strides == [8, 16, 32]
    shapes = [s for _, s in head.outputs]
    assert len(shapes) == n_out
    grids = [(12, 16), (6, 8), (3, 4)]
    if fam == "yolox":
        assert shapes == [[1, c, gh, gw] for gh, gw in grids for c in (4, 1, 3)]
        assert head.sigmoid_added == []  # objectness and classes were sigmoided in the head already
    else:
        assert shapes == [[1, c, gh, gw] for gh, gw in grids for c in (64, 3)]
        assert len(head.sigmoid_added) == 3  # the export's sigmoid sits after its split: added per stride
    d = head.to_dict()
    assert d["source_output"]["shape"] == ([1, 252, 8] if fam == "yolox" else [1, 7, 252])
    import onnx

    m = onnx.load(str(dst))
    assert [o.name for o in m.graph.output] == [n for n, _ in head.outputs]
    assert not any(n.op_type == "Transpose" for n in m.graph.node)  # the tail after the cut is gone


def test_split_reproduces_the_single_output(split_pair):
    import onnxruntime as ort

    fam, src, dst, head = split_pair
    x = np.random.default_rng(3).uniform(0, 255, (1, 3, 96, 128)).astype(np.float32)
    ref = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]
    outs = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"]).run(None, {"images": x})
    got = reassemble(head, outs)
    if fam == "yolox":
        np.testing.assert_allclose(got, ref, atol=1e-5)
    else:
        np.testing.assert_allclose(got[:, :4], ref[:, :4], atol=1e-3)  # input pixels
        np.testing.assert_allclose(got[:, 4:], ref[:, 4:], atol=1e-6)


def test_split_model_detects_what_the_float_model_detects(split_pair):
    """The split ONNX through edgepose (its layout told from its 9 / 6 output shapes) gives the
    float model's boxes: the split decode vs the single-output decode on the same frames."""
    fam, src, dst, head = split_pair
    with PersonDetector(src, score_thr=0.3) as a, PersonDetector(dst, score_thr=0.3) as b:
        assert b.layout.head == head.head and a.meta.color == b.meta.color
        n = 0
        for seed in range(3):
            f = _frame(seed)
            ba, bb = a(f), b(f)
            assert ba.shape == bb.shape
            np.testing.assert_allclose(bb, ba, atol=2e-3)
            n += len(ba)
        assert n >= 5  # the comparison saw boxes


def _quant_of(outs):
    q = []
    for o in outs:
        lo, hi = min(float(o.min()), 0.0), max(float(o.max()), 0.0)
        s = (hi - lo) / 255.0 or 1.0
        q.append((s, int(round(-lo / s)) - 128))
    return q


class _NormFake:
    """The RKNNLite double of test_detect with the detector's own normalisation (YOLOX: none)."""

    @staticmethod
    def make(std: float, quant=None):
        from test_detect import FakeDetRKNNLite

        class Fake(FakeDetRKNNLite):
            inputs_seen: list = []

            def inference(self, inputs, data_type=None, data_format=None, inputs_pass_through=None,
                          get_frame_id=False, reuse_outputs=False):
                x = inputs[0]
                assert data_format == "nhwc" and x.dtype == np.uint8
                name = self.sess.get_inputs()[0]
                outs = self.sess.run(None, {name.name: np.ascontiguousarray(x.astype(np.float32).transpose(0, 3, 1, 2)
                                                                           / std)})
                if quant is None:
                    return outs
                return [np.clip(np.round(o / s) + z, -128, 127).astype(np.int8) for o, (s, z) in zip(outs, quant)]

        return Fake


def test_split_rknn_through_rknnlite_double_int8(split_pair, tmp_path, monkeypatch, capsys):
    """A split .rknn with its sidecar (head, per-output scale / zero point) runs through the
    RKNNLite adapter with int8 outputs read directly, and through ``edgepose run --detector``."""
    import onnxruntime as ort

    fam, src, dst, head = split_pair
    with PersonDetector(src, score_thr=0.3) as ref:
        meta = ref.meta
        frames = [_frame(s) for s in range(3)]
        want = [ref(f) for f in frames]
    from edgepose.detect import letterbox_input

    x, _ = letterbox_input(frames[0], meta, "nchw")
    outs = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"]).run(None, {"images": x})
    quant = _quant_of(outs)
    rk = tmp_path / "det.rknn"
    rk.write_bytes(b"FAKE-RKNN\n" + str(dst).encode())
    d = meta.to_dict()
    d.update(head=head.head, quantized="int8", target="rk3588", split=head.to_dict(),
             outputs=[{"name": n, "shape": s, "scale": q[0], "zero_point": q[1]} for (n, s), q in zip(head.outputs, quant)])
    sidecar_path(rk).write_text(json.dumps(d))
    fake = _NormFake.make(meta.std[0], quant)
    with PersonDetector(rk, score_thr=0.3, rknnlite_cls=fake) as det:
        assert det.layout.head == head.head and det.meta.split["from"] == head.family
        got = [det(f) for f in frames]
    # int8 outputs: the same persons, boxes within a few input pixels
    from host_tools.det_build import box_agreement

    xyxy = lambda b: np.c_[b[:, :2], b[:, :2] + b[:, 2:4]]  # noqa: E731
    r = box_agreement([xyxy(w) for w in want], [xyxy(g) for g in got], 0.5)
    assert r["boxes_float"] >= 5 and r["recall_at_0.5"] >= 0.8 and r["precision_at_0.5"] >= 0.8, r
    # the same model through `edgepose run --detector X.rknn`, nothing else to say
    import cv2

    import edgepose.backends as backends
    import edgepose.backends.rknnlite as rl
    from _models import tiny_onnx
    from edgepose.cli import main

    monkeypatch.setattr(backends, "installed", lambda name: True)  # this PC looks like a board ...
    monkeypatch.setattr(rl, "_import_rknnlite", lambda: fake)  # ... whose rknnlite is the double
    img = tmp_path / "f.png"
    cv2.imwrite(str(img), frames[0])
    pose = tiny_onnx(tmp_path / "pose.onnx")
    assert main(["run", "--image", str(img), "--model", str(pose), "--detector", str(rk), "--jsonl", "-"]) == 0
    lines = [json.loads(ln) for ln in capsys.readouterr().out.splitlines() if ln.startswith("{")]
    assert len(lines) == 1 and lines[0]["persons"]  # (rescoring + OKS NMS may merge some of the persons)
    with PersonDetector(rk, rknnlite_cls=fake) as det:  # run's default threshold
        scores = np.round(det(frames[0])[:, 4], 4)
    assert all(np.isclose(scores, p["box_score"], atol=1e-4).any() for p in lines[0]["persons"])


def test_heads_that_cannot_be_split_are_refused_in_one_line(tmp_path):
    bad = export_yolo(tmp_path / "one.onnx", "yolox", single_conv=True)
    with pytest.raises(UserError) as e:
        split_head(bad, tmp_path / "x.onnx")
    msg = str(e.value)
    assert "\n" not in msg and "Concat(axis=1)" in msg and "expected one output" in msg
    assert not (tmp_path / "x.onnx").exists()
    # a pose net (no detector head at all)
    import onnx
    from _models import tiny_onnx

    m = onnx.load(str(tiny_onnx(tmp_path / "p.onnx", dynamic_batch=False)))
    with pytest.raises(UserError, match="cannot split the detector head") as e:
        split_head(tmp_path / "p.onnx", tmp_path / "y.onnx")
    assert "\n" not in str(e.value)
    # a dynamic image size
    import torch

    from _yolo_exports import yolo_net

    net = yolo_net("yolox", bias=1.0)
    torch.onnx.export(net, torch.zeros(1, 3, 96, 128), str(tmp_path / "dyn.onnx"), input_names=["images"],
                      output_names=["output"], opset_version=13, dynamo=False,
                      dynamic_axes={"images": {2: "h", 3: "w"}, "output": {1: "a"}})
    with pytest.raises(UserError, match="fixed"):
        split_head(tmp_path / "dyn.onnx", tmp_path / "z.onnx")
    del m


def test_real_yolox_nano_splits_and_detects_the_same(tmp_path):
    """The real YOLOX-Nano (../shared/models, read in place): its head is found and split into
    9 outputs, and the split graph finds the float model's persons on real photos."""
    import cv2
    from conftest import need_data, need_model

    src = need_model("yolox_nano.onnx")
    photos = sorted(need_data("coco_mini").glob("*.jpg"))[:2]
    head = split_head(src, tmp_path / "yx_split.onnx")
    assert head.family == "yolox" and head.head == "yolox_split" and head.strides == [8, 16, 32]
    assert [s for _, s in head.outputs][:3] == [[1, 4, 52, 52], [1, 1, 52, 52], [1, 80, 52, 52]]
    with PersonDetector(src) as a, PersonDetector(tmp_path / "yx_split.onnx") as b:
        assert b.layout.head == "yolox_split" and b.meta.color == "bgr" and b.meta.pad_align == "topleft"
        n = 0
        for p in photos:
            f = cv2.imread(str(p))
            ba, bb = a(f), b(f)
            assert ba.shape == bb.shape
            np.testing.assert_allclose(bb, ba, atol=1e-3)
            n += len(ba)
    assert n >= 3
