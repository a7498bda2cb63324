"""Calibration data: crops made as the device makes them, and every broken list refused in one line.

The list checks run before any toolkit call, so most of these tests need no rknn-toolkit2;
the ones that go through ``build-rknn`` need a toolkit only to get past the target check.
"""
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgepose.crop import warp_crops  # noqa: E402
from edgepose.geometry import crop_matrices  # noqa: E402
from edgepose.metadata import ModelMeta  # noqa: E402
from host_tools.calib import (MIN_IMAGES, crop_samples, load_samples, make_calibration,  # noqa: E402
                              validate_calibration_list)
from host_tools.cli import main  # noqa: E402
from host_tools.errors import UserError  # noqa: E402
from host_tools.export_onnx import export_model  # noqa: E402
from host_tools.rknn_build import BuildOptions, check_target, toolkit1_kwargs, toolkit2_kwargs  # noqa: E402
from conftest import DATA, needs_data

ROOT = Path(__file__).resolve().parents[1]
COCO = DATA / "coco_mini"
MPII = DATA / "mpii_mini"
W, H = 96, 128

try:
    import rknn.api  # noqa: F401
    HAVE_RKNN = True
except ImportError:
    HAVE_RKNN = False
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # rknn-toolkit2 on onnx 1.18
needs_toolkit = pytest.mark.skipif(not HAVE_RKNN, reason="rknn.api (rknn-toolkit2) not installed")


class Tiny(torch.nn.Module):
    """(1, 3, 128, 96) -> (1, 17, 32, 24): enough graph for the list checks."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 17, 4, stride=4)

    def forward(self, x):
        return self.conv(x)


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("model")
    meta = ModelMeta(input_size=(W, H), heatmap_size=(24, 32), color="rgb", flip_pairs=[[1, 2]])
    torch.manual_seed(0)
    path, _ = export_model(Tiny().eval(), meta, d / "tiny.onnx")
    return path


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory, onnx_model):
    from host_tools.rknn_build import load_onnx_meta

    out = tmp_path_factory.mktemp("calib")
    lst, n = make_calibration(load_onnx_meta(onnx_model), out, ann=COCO / "test_coco.json", images=COCO)
    return lst, n


def _cli(capsys, *argv):
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    return rc, err


# --------------------------------------------------------------------------- making crops

@needs_data
def test_crops_are_the_runtime_warp_of_each_person(calib_dir):
    lst, n = calib_dir
    paths = lst.read_text().split()
    assert n == len(paths) == 12  # 14 annotations, 2 without keypoints
    assert all(Path(p).is_absolute() and "\\" not in p for p in paths)
    first = load_samples(COCO / "test_coco.json", COCO).samples[0]
    frame = cv2.imread(str(first.image))
    _, _, m = crop_matrices(np.array([first.box]), (W, H))
    want = warp_crops(frame, m, (W, H), to_rgb=True, layout="nhwc")[0]
    got = np.load(paths[0])
    assert got.shape == (1, 3, H, W) and got.dtype == np.uint8
    np.testing.assert_array_equal(got[0].transpose(1, 2, 0), want)
    # a person crop, not the frame squashed: differs from a resize of the whole frame
    squashed = cv2.resize(frame, (W, H))[..., ::-1]
    assert np.abs(got[0].transpose(1, 2, 0).astype(int) - squashed).mean() > 10


@needs_data
def test_detections_and_mpii_give_crops(tmp_path):
    det = load_samples(COCO / "test_coco.json", COCO, det=COCO / "test_coco_det_AP_H_56.json", det_thr=0.5)
    assert det.kind == "det" and len(det.samples) > 12 and all(s.score >= 0.5 for s in det.samples)
    mp = load_samples(MPII / "test_mpii.json", MPII)
    crops, centers, scales = crop_samples(mp.samples, (W, H), "bgr", progress=False)
    assert crops.shape == (5, H, W, 3) and crops.std() > 10
    np.testing.assert_allclose(centers[0], [mp.samples[0].box[0] + mp.samples[0].box[2] / 2,
                                            mp.samples[0].box[1] + mp.samples[0].box[3] / 2])


@needs_data
def test_make_calib_refuses_to_overwrite(calib_dir, onnx_model):
    lst, _ = calib_dir
    from host_tools.rknn_build import load_onnx_meta

    with pytest.raises(UserError, match="already holds calibration crops"):
        make_calibration(load_onnx_meta(onnx_model), lst.parent, ann=COCO / "test_coco.json", images=COCO)


# --------------------------------------------------------------------------- list validation

def _write(p: Path, lines):
    p.write_text("".join(line + "\n" for line in lines))
    return p


@needs_data
def test_relative_entries_resolve_against_the_list_folder(calib_dir, tmp_path):
    lst, _ = calib_dir
    names = [Path(p).name for p in lst.read_text().split()]
    rel = _write(lst.parent / "relative.txt", names[:3] + [""])  # blank line skipped
    got = validate_calibration_list(rel, "normal", (W, H))
    assert got == [lst.parent / n for n in names[:3]]
    assert all(p.is_absolute() for p in got)


@needs_data
@pytest.mark.parametrize("case, message", [
    ("missing", "does not exist"),
    ("unreadable", "cannot be read as an image"),
    ("empty", "the list is empty"),
    ("backslash", "Windows backslashes"),
    ("relative_missing", "does not exist"),
    ("wrong_shape", "expected NCHW (1, 3, 128, 96)"),
    ("wrong_size_image", "not the model input 96x128"),
    ("too_few_kl", f"needs at least {MIN_IMAGES['kl_divergence']}"),
    ("no_list", "list file not found"),
])
def test_bad_lists_one_line_each(case, message, calib_dir, tmp_path):
    lst, _ = calib_dir
    good = lst.read_text().split()
    algo = "normal"
    if case == "missing":
        p = _write(tmp_path / "l.txt", good[:2] + ["/nope/a.npy"])
    elif case == "unreadable":
        (tmp_path / "bad.png").write_bytes(b"not a png at all")
        p = _write(tmp_path / "l.txt", [str(tmp_path / "bad.png")])
    elif case == "empty":
        p = _write(tmp_path / "l.txt", ["", "   "])
    elif case == "backslash":
        p = _write(tmp_path / "l.txt", ["imgs\\0.npy"])
    elif case == "relative_missing":
        p = _write(tmp_path / "l.txt", ["crops/0.npy"])
    elif case == "wrong_shape":
        np.save(tmp_path / "hwc.npy", np.zeros((H, W, 3), np.uint8))
        p = _write(tmp_path / "l.txt", [str(tmp_path / "hwc.npy")])
    elif case == "wrong_size_image":
        cv2.imwrite(str(tmp_path / "frame.png"), np.zeros((480, 640, 3), np.uint8))
        p = _write(tmp_path / "l.txt", [str(tmp_path / "frame.png")])
    elif case == "too_few_kl":
        p = _write(tmp_path / "l.txt", good)
        algo = "kl_divergence"
    else:
        p = tmp_path / "absent.txt"
    with pytest.raises(UserError) as exc:
        validate_calibration_list(p, algo, (W, H))
    text = str(exc.value)
    assert message in text and "\n" not in text
    if case in ("missing", "relative_missing"):
        assert "line" in text  # names where in the list
    if case == "relative_missing":
        assert str(tmp_path / "crops" / "0.npy") in text  # resolved against the list's folder


@needs_data
def test_mean_std_lengths(onnx_model, calib_dir, capsys, tmp_path):
    lst, _ = calib_dir
    meta = ModelMeta(input_size=(W, H), heatmap_size=(24, 32))
    with pytest.raises(UserError, match="mean: 2 value"):
        toolkit2_kwargs(meta, BuildOptions(mean=[1.0, 2.0]))
    with pytest.raises(UserError, match="std: 4 value"):
        toolkit2_kwargs(meta, BuildOptions(std=[1.0, 2.0, 3.0, 4.0]))
    if HAVE_RKNN:
        rc, err = _cli(capsys, "build-rknn", onnx_model, "-o", tmp_path / "m.rknn", "--calib", lst, "--mean", "1", "2")
        assert rc == 2 and len(err) == 1 and "mean: 2 value(s)" in err[0]
        assert not (tmp_path / "m.rknn").exists()


# --------------------------------------------------------------------------- through the CLI

@needs_data
@needs_toolkit
@pytest.mark.rknn
def test_cli_bad_lists_exit_2_in_a_subprocess(calib_dir, onnx_model, tmp_path):
    lst, _ = calib_dir
    good = lst.read_text().split()
    missing = _write(tmp_path / "missing.txt", good[:1] + ["/nope/a.jpg"])
    empty = _write(tmp_path / "empty.txt", [])
    windows = _write(tmp_path / "win.txt", ["C:\\calib\\imgs\\0.jpg"])
    few = _write(tmp_path / "few.txt", good[:3])
    cases = [
        (["--calib", missing], "/nope/a.jpg does not exist"),
        (["--calib", empty], "the list is empty"),
        (["--calib", windows], "Windows backslashes"),
        (["--calib", few, "--algorithm", "mmse"], "--algorithm mmse needs at least 8"),
    ]
    for extra, message in cases:
        out = tmp_path / "m.rknn"
        cmd = [sys.executable, "-m", "host_tools", "build-rknn", str(onnx_model), "-o", str(out), "--target", "rk3588"]
        r = subprocess.run(cmd + [str(a) for a in extra], capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert r.returncode == 2, (extra, r.stderr)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and message in lines[0], (extra, r.stderr)
        assert "Traceback" not in r.stderr and not out.exists()


@needs_data
@needs_toolkit
@pytest.mark.rknn
def test_cli_targets_and_options(calib_dir, onnx_model, tmp_path, capsys):
    lst, _ = calib_dir
    out = tmp_path / "m.rknn"
    for argv, message in [
        (["--target", "rk1808"], "rk1808 needs rknn-toolkit 1.x"),
        (["--target", "rv1126"], "rv1126 needs rknn-toolkit 1.x"),
        (["--target", "rk9999"], "unknown chip"),
        (["--algorithm", "minmax"], "--algorithm minmax"),
        (["--method", "group"], "--method group"),
        (["--hybrid", "nope:heatmaps"], "'nope' is not in"),
    ]:
        rc, err = _cli(capsys, "build-rknn", onnx_model, "-o", out, "--calib", lst, *argv)
        assert rc == 2 and len(err) == 1 and message in err[0], (argv, err)
    rc, err = _cli(capsys, "build-rknn", tmp_path / "none.onnx", "-o", out)
    assert rc == 2 and "ONNX model not found" in err[0]
    assert not out.exists()


def test_toolkit_config_mapping():
    meta = ModelMeta(input_size=(W, H), heatmap_size=(24, 32), color="bgr", mean=(1.0, 2.0, 3.0), std=(4.0, 5.0, 6.0))
    k2 = toolkit2_kwargs(meta, BuildOptions(target="rk3566", algorithm="mmse", method="layer", optimization_level=2))
    assert k2["mean_values"] == [[1.0, 2.0, 3.0]] and k2["std_values"] == [[4.0, 5.0, 6.0]]
    assert k2["target_platform"] == "rk3566" and k2["quantized_dtype"] == "w8a8"
    assert k2["quantized_algorithm"] == "mmse" and k2["quantized_method"] == "layer"
    assert k2["optimization_level"] == 2 and k2["quant_img_RGB2BGR"] is False
    # jpg/png entries are read as RGB by the toolkit: a BGR model needs the swap
    assert toolkit2_kwargs(meta, BuildOptions(), calib_has_images=True)["quant_img_RGB2BGR"] is True
    k1 = toolkit1_kwargs(meta, BuildOptions(target="rv1126", dtype="w8a8", batch=4))
    assert k1["quantized_dtype"] == "asymmetric_affine-u8" and k1["target_platform"] == ["rv1126"]
    assert k1["reorder_channel"] == "0 1 2" and k1["batch_size"] == 4
    assert toolkit1_kwargs(meta, BuildOptions(dtype="dynamic_fixed_point-i8"))["quantized_dtype"] == \
        "dynamic_fixed_point-i8"
    with pytest.raises(UserError, match="not available in toolkit 1.x"):
        toolkit1_kwargs(meta, BuildOptions(dtype="w8a16"))
    with pytest.raises(UserError, match="toolkit 1.x type"):
        toolkit2_kwargs(meta, BuildOptions(dtype="asymmetric_affine-u8"))
    with pytest.raises(UserError, match="rk3588 needs rknn-toolkit2"):
        check_target("rk3588", 1, "1.7.5")
    with pytest.raises(UserError, match="no RKNN toolkit is installed"):
        check_target("rk3588", None)
    check_target("rv1109", 1, "1.7.5")
