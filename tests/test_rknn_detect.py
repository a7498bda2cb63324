"""build-rknn and verify on a person detector, with the real rknn-toolkit2 (x86 simulator).

The detector is a randomly initialised tiny torch net with the Rockchip model zoo's YOLOv8 head
layout (9 outputs: DFL boxes, class probabilities, score sums per stride), exported to ONNX
without edgepose metadata, as users' detector exports come. Two toolkit builds in all.
"""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rknn.api", reason="rknn-toolkit2 (rknn.api) not installed: pip install --no-deps rknn-toolkit2==2.5.0")
pytest.importorskip("torch")

from _detmodels import export_random  # noqa: E402
from edgepose.detect import DetectorMeta, read_detector_sidecar  # noqa: E402
from host_tools.cli import main  # noqa: E402
from host_tools.det_build import box_agreement, match_boxes  # noqa: E402
from conftest import DATA, needs_data

pytestmark = [pytest.mark.rknn, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

ROOT = Path(__file__).resolve().parents[1]
COCO = DATA / "coco_mini"
MPII = DATA / "mpii_mini"


def test_match_boxes_greedy_one_to_one():
    ref = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float64)
    test = np.array([[0, 0, 10, 9], [1, 0, 10, 10], [50, 50, 60, 60]], np.float64)
    iou = match_boxes(ref, test)
    assert len(iou) == 1 and iou[0] == pytest.approx(0.9)  # two candidates for the first, one used
    r = box_agreement([ref], [test])
    assert r["recall_at_0.5"] == 0.5 and r["precision_at_0.5"] == pytest.approx(1 / 3)


@pytest.fixture(scope="module")
def det_onnx(tmp_path_factory) -> Path:
    return export_random(tmp_path_factory.mktemp("det") / "det.onnx", "dfl", nc=80, input_wh=(320, 320))


@needs_data
def test_build_rknn_detector_and_verify(det_onnx, tmp_path, capsys):
    # a calibration list of whole images of different sizes: letterboxed by build-rknn
    lst = tmp_path / "images.txt"
    lst.write_text("\n".join(str(p) for p in sorted(COCO.glob("*.jpg"))[:2] + sorted(MPII.glob("*.jpg"))[:1]) + "\n")
    out = tmp_path / "det.rknn"
    rc = main(["build-rknn", str(det_onnx), "-o", str(out), "--calib", str(lst), "--verify", "--images", str(COCO)])
    text = capsys.readouterr().out
    assert rc == 0, text
    side = read_detector_sidecar(out)
    meta = DetectorMeta.from_dict(side)
    assert meta.head == "dfl" and meta.input_size == (320, 320) and meta.quantized == "int8"
    assert meta.std == (255.0, 255.0, 255.0) and meta.build["calib_count"] == 3
    assert [o["shape"] for o in meta.outputs][:3] == [[1, 64, 40, 40], [1, 80, 40, 40], [1, 1, 40, 40]]
    assert all(o["scale"] > 0 and -128 <= o["zero_point"] <= 127 for o in meta.outputs)  # int8 params per output
    assert "recall@0.5" in text
    rep = json.loads((tmp_path / "det.rknn.verify.json").read_text())
    assert rep["images"] == 4 and rep["boxes_float"] > 0
    # INT8 of a random-weight head keeps most boxes (0.94 recall, IoU 0.80 measured)
    assert rep["recall_at_0.5"] > 0.8 and rep["mean_iou_matched"] > 0.7
    # verify on its own rebuilds the model from the sidecar for the simulator: the same numbers
    rc = main(["verify", str(det_onnx), str(out), "--images", str(COCO), "--report", str(tmp_path / "v.json")])
    assert rc == 0
    rep2 = json.loads((tmp_path / "v.json").read_text())
    assert rep2["recall_at_0.5"] == pytest.approx(rep["recall_at_0.5"]) and rep2["matched"] == rep["matched"]


@needs_data
def test_build_rknn_detector_refusals(det_onnx, tmp_path, capsys):
    rc = main(["build-rknn", str(det_onnx), "-o", str(tmp_path / "x.rknn"), "--calib", str(COCO / "test_coco.json")])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1
    bad = tmp_path / "pose_like.onnx"
    from _models import tiny_onnx

    import onnx

    m = onnx.load(str(tiny_onnx(tmp_path / "p.onnx")))
    del m.metadata_props[:]  # a pose net without edgepose metadata: outputs fit no detector layout
    onnx.save(m, str(bad))
    rc = main(["build-rknn", str(bad), "-o", str(tmp_path / "y.rknn"), "--images", str(COCO)])
    err = capsys.readouterr().err
    assert rc == 2 and "match no detector layout" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "y_calib").exists()


# --------------------------------------------------------------------------- single-output exports: the head split

@pytest.fixture(scope="module", params=["yolox", "ultralytics"])
def single_output_det(request, tmp_path_factory):
    from _yolo_exports import export_yolo

    d = tmp_path_factory.mktemp(request.param)
    return request.param, export_yolo(d / f"{request.param}.onnx", request.param, nc=3, input_wh=(128, 96), bias=1.5)


@pytest.mark.slow
def test_build_rknn_splits_a_single_output_head(single_output_det, tmp_path, capsys):
    """One toolkit build per family (with --verify, no rebuild): the split layout and the
    per-output scale / zero point in the sidecar, the ONNX untouched, INT8 keeps the boxes."""
    from conftest import need_data
    from edgepose.metadata import file_sha256

    fam, onnx_p = single_output_det
    images = need_data("coco_mini")
    sha = file_sha256(onnx_p)
    out = tmp_path / "det.rknn"
    rc = main(["build-rknn", str(onnx_p), "-o", str(out), "--images", str(images), "--verify"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err[-2000:]
    assert file_sha256(onnx_p) == sha  # the float model is left as it is
    meta = DetectorMeta.from_dict(read_detector_sidecar(out))
    head, n = {"yolox": ("yolox_split", 9), "ultralytics": ("dfl", 6)}[fam]
    assert meta.head == head and meta.split["from"] == fam and len(meta.outputs) == n and meta.quantized == "int8"
    assert meta.split["source_output"]["shape"] == ([1, 252, 8] if fam == "yolox" else [1, 7, 252])
    assert all(o["scale"] > 0 and -128 <= o["zero_point"] <= 127 for o in meta.outputs), [(o["shape"], o["scale"], o["zero_point"]) for o in meta.outputs]
    chans = [o["shape"][1] for o in meta.outputs]
    assert chans == ([4, 1, 3] * 3 if fam == "yolox" else [64, 3] * 3)
    if fam == "yolox":  # probabilities get their own scale: about 1/255, not the box values' one
        assert max(o["scale"] for o in meta.outputs[1::3]) < 0.0045 < meta.outputs[0]["scale"]
    rep = json.loads((tmp_path / "det.rknn.verify.json").read_text())
    assert rep["test_head"] == head and rep["boxes_float"] > 0
    assert rep["recall_at_0.5"] >= 0.8 and rep["precision_at_0.5"] >= 0.8, rep
    # the sidecar build-rknn wrote is all the runtime needs: the same graph behind the RKNNLite
    # double, int8 outputs with the recorded scale / zero point, no flag
    from host_tools.det_split import split_head
    from test_det_split import _NormFake, _frame
    from edgepose.detect import PersonDetector
    from edgepose.metadata import sidecar_path

    split = split_head(onnx_p, tmp_path / "split.onnx")
    assert [n for n, _ in split.outputs] == [o["name"] for o in meta.outputs]
    fake_rknn = tmp_path / "board.rknn"
    fake_rknn.write_bytes(b"FAKE-RKNN\n" + str(tmp_path / "split.onnx").encode())
    sidecar_path(fake_rknn).write_text(sidecar_path(out).read_text())
    fake = _NormFake.make(meta.std[0], [(o["scale"], o["zero_point"]) for o in meta.outputs])
    with PersonDetector(onnx_p, score_thr=0.3) as ref, PersonDetector(fake_rknn, score_thr=0.3, rknnlite_cls=fake) as b:
        assert b.layout.head == head
        frames = [_frame(s) for s in range(3)]
        xy = lambda z: np.c_[z[:, :2], z[:, :2] + z[:, 2:4]]  # noqa: E731
        r = box_agreement([xy(ref(f)) for f in frames], [xy(b(f)) for f in frames])
    assert r["boxes_float"] > 0 and r["recall_at_0.5"] >= 0.8 and r["precision_at_0.5"] >= 0.8, r
