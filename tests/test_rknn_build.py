"""build-rknn and verify with the real rknn-toolkit2, on a PoseResNet-18 trained a few steps.

The model: PoseResNet-18 at 128x96 (heatmaps 32x24) whose final layer is trained here for
TRAIN_STEPS Adam steps on the 12 annotated persons of the COCO mini sample (EDGEPOSE_TEST_DATA) (crops by edgepose's
warp, Gaussian targets by edgepose's codec), so its heatmaps have real peaks, unlike the
original head init whose outputs sit near 1e-7 and say nothing about quantization.
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rknn.api", reason="rknn-toolkit2 (rknn.api) not installed: pip install --no-deps rknn-toolkit2==2.5.0")
torch = pytest.importorskip("torch")

from edgepose.codec import HeatmapCodec  # noqa: E402
from edgepose.geometry import affine_points, get_affine_transform  # noqa: E402
from edgepose.metadata import read_onnx_metadata, read_sidecar  # noqa: E402
from host_tools.calib import crop_samples, load_samples, make_calibration  # noqa: E402
from host_tools.cli import main  # noqa: E402
from host_tools.config import load_config, model_meta  # noqa: E402
from host_tools.export_onnx import export_model  # noqa: E402
from host_tools.model import get_pose_net  # noqa: E402
from conftest import DATA, needs_data

# rknn-toolkit2 2.5.0 calls onnx.mapping APIs that onnx 1.18 deprecates: thousands of warnings per build
pytestmark = [needs_data, pytest.mark.rknn, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

ROOT = Path(__file__).resolve().parents[1]
COCO = DATA / "coco_mini"
ANN = COCO / "test_coco.json"
TRAIN_STEPS = 200
SMALL = ["MODEL.IMAGE_SIZE=[96,128]", "MODEL.EXTRA.HEATMAP_SIZE=[24,32]", "MODEL.EXTRA.NUM_LAYERS=18"]


def _train_few_steps(cfg, steps: int):
    """Adam on the mini set's crops; returns the model in eval mode and the loss curve.

    Full backprop through ResNet-18 costs seconds per step on the shared 2-core CI box, so
    the backbone and deconv head keep their (torch default) random init with BatchNorm in
    eval mode and only ``final_layer`` (the 1x1 conv to 17 heatmaps) is trained, on
    features computed once: that is what gives the maps real Gaussian-like peaks.
    """
    meta = model_meta(cfg)
    samples = load_samples(ANN, COCO).samples
    crops, centers, scales = crop_samples(samples, meta.input_size, meta.color, progress=False)
    codec = HeatmapCodec(meta.input_size, meta.heatmap_size, sigma=2.0)
    m = get_affine_transform(centers, scales, 0.0, meta.input_size).reshape(-1, 2, 3)
    targets, weights = [], []
    for i, s in enumerate(samples):
        joints = affine_points(s.keypoints[:, :2], m[i])
        t, w = codec.encode(joints, s.keypoints[:, 2])
        targets.append(t)
        weights.append(w)
    x = (crops.astype(np.float32) - np.float32(meta.mean)) / np.float32(meta.std)
    x = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    t = torch.from_numpy(np.stack(targets))
    w = torch.from_numpy(np.stack(weights))[..., None]
    torch.manual_seed(0)
    net = get_pose_net(cfg, is_train=False).eval()
    with torch.no_grad():
        f = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        f = net.deconv_layers(net.layer4(net.layer3(net.layer2(net.layer1(f)))))
    opt = torch.optim.Adam(net.final_layer.parameters(), lr=3e-2)
    losses = []
    for _ in range(steps):
        loss = 0.5 * (((net.final_layer(f) - t) * w) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return net.eval(), losses


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """(onnx path, calibration list) for the trained PoseResNet-18."""
    d = tmp_path_factory.mktemp("rknn")
    cfg = load_config(None, SMALL)
    torch.set_num_threads(2)
    net, losses = _train_few_steps(cfg, TRAIN_STEPS)
    assert losses[-1] < losses[0]
    onnx_path, _ = export_model(net, model_meta(cfg), d / "pose_resnet18.onnx")
    lst, _ = make_calibration(read_onnx_metadata(onnx_path), d / "calib", ann=ANN, images=COCO)
    return onnx_path, lst


@pytest.mark.parametrize("target", ["rk3566", "rk3588"])
def test_build_int8_for_two_targets(model, target, tmp_path, capsys):
    onnx_path, lst = model
    out = tmp_path / f"pose_{target}.rknn"
    if target == "rk3566":  # calibration crops made from the annotations by build-rknn itself
        calib = ["--calib-ann", str(ANN), "--images", str(COCO)]
        lst = tmp_path / f"pose_{target}_calib" / "dataset.txt"
    else:
        calib = ["--calib", str(lst)]
    rc = main(["build-rknn", str(onnx_path), "-o", str(out), "--target", target] + calib)
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert len(lst.read_text().split()) == 12
    assert out.is_file() and out.stat().st_size > 1_000_000
    assert "[3/5] build INT8 with 12 calibration crops" in cap.err
    assert "[5/5] done" in cap.err
    # toolkit noise stays in the log, not on the terminal
    assert "I Loading" not in cap.err and "W build" not in cap.err
    assert (tmp_path / f"pose_{target}.rknn.log").stat().st_size > 0
    onnx_meta, meta = read_onnx_metadata(onnx_path), read_sidecar(out)
    assert meta.layout == "nhwc" and meta.quantized == "int8" and meta.target == target
    assert meta.color == onnx_meta.color and meta.mean == onnx_meta.mean and meta.std == onnx_meta.std
    assert meta.input_size == onnx_meta.input_size and meta.flip_pairs == onnx_meta.flip_pairs
    assert meta.build["calib"] == str(lst) and meta.build["calib_count"] == 12
    assert meta.build["algorithm"] == "normal" and meta.build["method"] == "channel"
    # int8 output quantization for runtimes that read the raw output (checked on the simulator at build)
    assert meta.output_scale > 0 and -128 <= meta.output_zero_point <= 127
    # a second build must not replace the first
    before = out.read_bytes()
    rc = main(["build-rknn", str(onnx_path), "-o", str(out), "--target", target, "--calib", str(lst)])
    assert rc == 2 and "already exists" in capsys.readouterr().err
    assert out.read_bytes() == before


def test_build_float16_and_layer_mmse(model, tmp_path, capsys):
    onnx_path, lst = model
    out = tmp_path / "fp16.rknn"
    assert main(["build-rknn", str(onnx_path), "-o", str(out), "--target", "rk3588"]) == 0
    assert "build float16 (no --calib)" in capsys.readouterr().err
    assert read_sidecar(out).quantized == "float16"
    out2 = tmp_path / "mmse.rknn"
    eight = tmp_path / "eight.txt"  # mmse's minimum, to keep its search short
    eight.write_text("\n".join(lst.read_text().split()[:8]) + "\n")
    assert main(["build-rknn", str(onnx_path), "-o", str(out2), "--target", "rk3568", "--calib", str(eight),
                 "--algorithm", "mmse", "--method", "layer", "--optimization-level", "2", "--batch", "2"]) == 0
    b = read_sidecar(out2)
    assert b.build["algorithm"] == "mmse" and b.build["method"] == "layer" and b.batch == 2
    assert b.build["optimization_level"] == 2


def _verify(args, tmp_path):
    cmd = [sys.executable, "-m", "host_tools"] + [str(a) for a in args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_verify_reports_oks_agreement(model, tmp_path):
    onnx_path, lst = model
    rknn = tmp_path / "pose.rknn"
    assert main(["build-rknn", str(onnx_path), "-o", str(rknn), "--target", "rk3588", "--calib", str(lst)]) == 0
    report = tmp_path / "report.json"
    r = _verify(["verify", onnx_path, rknn, "--ann", ANN, "--images", COCO, "--report", report,
                 "--accuracy-analysis", tmp_path / "aa"], tmp_path)
    assert r.returncode == 0, r.stderr
    line = [ln for ln in r.stdout.splitlines() if "OKS agreement" in ln][0]
    print(line)  # the figure, for the CI log
    rep = json.loads(report.read_text())
    for key in ("persons", "heatmap_cosine", "keypoint_error_input_px", "oks", "per_joint", "ap", "build", "plot"):
        assert key in rep, key
    assert rep["persons"] == 12 and rep["test_backend"] == "rknn-toolkit2 simulator"
    assert len(rep["per_joint"]) == 17 and rep["per_joint"][0]["joint"] == "nose"
    assert 0.0 < rep["oks"]["mean"] <= 1.0
    assert 0.5 < rep["heatmap_cosine"]["mean"] <= 1.0 + 1e-6
    assert rep["keypoint_error_input_px"]["mean"] >= 0
    assert set(rep["ap"]) == {"reference", "test"}
    assert Path(rep["plot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "aa" / "error_analysis.txt").is_file()  # accuracy_analysis output kept


def test_verify_float_against_itself_is_oks_one(model, tmp_path):
    onnx_path, _ = model
    report = tmp_path / "self.json"
    r = _verify(["verify", onnx_path, onnx_path, "--ann", ANN, "--images", COCO, "--report", report], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "OKS agreement 1.0000" in r.stdout
    rep = json.loads(report.read_text())
    assert rep["oks"]["mean"] == 1.0 and rep["oks"]["min_person"] == 1.0
    assert rep["keypoint_error_input_px"]["max"] == 0.0
    assert abs(rep["heatmap_cosine"]["min"] - 1.0) < 1e-9
    assert rep["ap"]["reference"] == rep["ap"]["test"]


def test_build_hybrid_final_layer_with_inprocess_verify(model, tmp_path, capsys):
    onnx_path, lst = model
    out = tmp_path / "hybrid.rknn"
    rc = main(["build-rknn", str(onnx_path), "-o", str(out), "--target", "rk3566", "--calib", str(lst),
               "--hybrid", "final", "--verify", "--ann", str(ANN), "--images", str(COCO)])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert "hybrid step 1" in cap.err and "OKS agreement" in cap.out
    meta = read_sidecar(out)
    assert meta.build["hybrid"] and meta.build["hybrid"][0][1] == "heatmaps"
    assert meta.quantized == "float16"  # the float span reaches the output
    rep = json.loads((tmp_path / "hybrid.rknn.verify.json").read_text())
    assert rep["persons"] == 12 and 0.0 < rep["oks"]["mean"] <= 1.0


def test_verify_bad_inputs(model, tmp_path, capsys):
    onnx_path, _ = model
    rc = main(["verify", str(onnx_path), str(tmp_path / "none.rknn"), "--ann", str(ANN), "--images", str(COCO)])
    assert rc == 2 and "not found" in capsys.readouterr().err
    rc = main(["verify", str(onnx_path), str(onnx_path)])
    assert rc == 2 and "--ann" in capsys.readouterr().err
    rc = main(["verify", str(onnx_path), str(onnx_path), "--ann", str(ANN), "--images", str(tmp_path / "nope")])
    assert rc == 2 and "not a folder" in capsys.readouterr().err


def test_toolkit_refusals_are_one_line(model, tmp_path, capsys):
    onnx_path, lst = model
    out = tmp_path / "w8a16.rknn"
    rc = main(["build-rknn", str(onnx_path), "-o", str(out), "--target", "rk3566", "--calib", str(lst),
               "--dtype", "w8a16"])
    err = [ln for ln in capsys.readouterr().err.splitlines() if "error" in ln]
    assert rc == 2 and len(err) == 1
    assert "options refused by the toolkit" in err[0] and "w8a16" in err[0] and "rk3566" in err[0]
    assert not out.exists()


def test_verify_refuses_an_rknn_built_from_another_onnx(model, tmp_path, capsys):
    import shutil

    from host_tools.export_onnx import embed_metadata

    onnx_path, lst = model
    rknn = tmp_path / "a.rknn"
    assert main(["build-rknn", str(onnx_path), "-o", str(rknn), "--target", "rk3588", "--calib", str(lst)]) == 0
    other = tmp_path / "other.onnx"
    shutil.copy(onnx_path, other)
    meta = read_onnx_metadata(other)
    meta.arch = "something_else"
    embed_metadata(other, meta)
    capsys.readouterr()
    rc = main(["verify", str(other), str(rknn), "--ann", str(ANN), "--images", str(COCO)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and "was built from another ONNX" in err[-1]


def test_png_and_npy_calibration_see_the_same_colours(model, tmp_path):
    """The colour contract: .npy crops (model order) and ordinary PNG crops (BGR on disk, read as
    RGB by the toolkit) must calibrate an RGB model identically; a channel-swapped PNG must not."""
    import cv2

    from host_tools.rknn_build import BuildOptions, build_rknn

    onnx_path, lst = model
    npys = lst.read_text().split()
    png, swapped = [], []
    for i, p in enumerate(npys):
        rgb = np.load(p)[0].transpose(1, 2, 0)
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.ascontiguousarray(rgb[..., ::-1]))
        cv2.imwrite(str(tmp_path / f"s{i}.png"), np.ascontiguousarray(rgb))
        png.append(str(tmp_path / f"{i}.png"))
        swapped.append(str(tmp_path / f"s{i}.png"))
    ranges = {}
    for name, entries in (("npy", npys), ("png", png), ("swapped", swapped)):
        lp = tmp_path / f"{name}.txt"
        lp.write_text("\n".join(entries) + "\n")
        res = build_rknn(onnx_path, tmp_path / f"{name}.rknn", BuildOptions(target="rk3588", calib=str(lp)), keep=True)
        try:
            tab = res.rknn.rknn_base.quantizer.quant_tab  # calibrated ranges (toolkit internals, 2.5.0)
            ranges[name] = np.array([v["min"][:1] + v["max"][:1] for k, v in sorted(tab.items())
                                     if k.endswith("_output_0") and v.get("min")], np.float64)
        finally:
            res.rknn.release()
    assert len(ranges["npy"]) > 10
    np.testing.assert_allclose(ranges["png"], ranges["npy"], rtol=1e-6, atol=1e-9)
    assert np.abs(ranges["swapped"] - ranges["npy"]).max() > 1e-3 * np.abs(ranges["npy"]).max()


def test_refused_builds_leave_no_calibration_crops_behind(model, tmp_path, capsys):
    """A build refused for its target or for too few crops must not leave a crops folder that
    blocks the corrected command."""
    onnx_path, _ = model
    ann = ["--calib-ann", str(ANN), "--images", str(COCO)]
    rc = main(["build-rknn", str(onnx_path), "-o", str(tmp_path / "a.rknn"), "--target", "rk1808"] + ann)
    assert rc == 2 and "rknn-toolkit 1.x" in capsys.readouterr().err
    assert not (tmp_path / "a_calib").exists()
    rc = main(["build-rknn", str(onnx_path), "-o", str(tmp_path / "b.rknn"), "--target", "rk3588",
               "--algorithm", "kl_divergence", "--max-calib", "4"] + ann)
    assert rc == 2 and "needs at least 16" in capsys.readouterr().err
    assert not (tmp_path / "b_calib").exists() and not (tmp_path / "b.rknn").exists()
