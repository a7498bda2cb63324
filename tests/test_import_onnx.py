"""host_tools import-onnx: foreign heatmap ONNX files with their export quirks, stamped and run.

Small foreign models are made here with torch (classic exporter) and then given the quirks
seen in the field by editing the ONNX graph: MXNet's BatchNormalization ``spatial=0``, a
ConvTranspose ``output_shape`` with four values (tflite2onnx), a dynamic batch (mmdeploy).
The reference output of each is the torch module itself, which knows nothing of the quirks.
"""
import hashlib
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from conftest import need_data  # noqa: E402
from _real import EFFICIENTPOSE, stamp_efficientpose  # noqa: E402
from edgepose import PoseEstimator  # noqa: E402
from edgepose.decode import decode  # noqa: E402
from edgepose.geometry import crop_matrices, get_affine_transform  # noqa: E402
from edgepose.metadata import read_onnx_metadata  # noqa: E402
from host_tools.cli import main  # noqa: E402
from host_tools.errors import UserError  # noqa: E402
from host_tools.import_onnx import (ImportSpec, conv_transpose_reference, import_onnx)  # noqa: E402

MMPOSE = ImportSpec(color="rgb", mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375), keypoints="coco")


class Net(torch.nn.Module):
    """A PoseResNet-shaped toy: conv stride 4, ReLU, BN, ConvTranspose x2 and back, 1x1 to K maps."""

    def __init__(self, k: int = 17, deconv: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 4, stride=4 if not deconv else 8)
        self.bn = torch.nn.BatchNorm2d(8)
        with torch.no_grad():  # non-trivial running statistics
            self.bn.running_mean.uniform_(-0.5, 0.5)
            self.bn.running_var.uniform_(0.5, 2.0)
            self.bn.weight.uniform_(0.5, 1.5)
            self.bn.bias.uniform_(-0.2, 0.2)
        self.up = torch.nn.ConvTranspose2d(8, 6, 4, stride=2, padding=1, bias=False) if deconv else None
        self.head = torch.nn.Conv2d(6 if deconv else 8, k, 1)

    def forward(self, x):
        y = self.bn(torch.relu(self.conv(x)))  # BN after ReLU: the exporter cannot fold it into the conv
        if self.up is not None:
            y = self.up(y)
        return self.head(y)


def export(net, path, size=(24, 32), dynamic=False, opset=13):
    x = torch.zeros(1, 3, size[1], size[0])
    torch.onnx.export(net.eval(), (x,), str(path), input_names=["input"], output_names=["output"], opset_version=opset,
                      dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}} if dynamic else None, dynamo=False)
    return path


def torch_out(net, x):
    with torch.no_grad():
        return net.eval()(torch.from_numpy(x)).numpy()


def ort_out(path, x):
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


def sha(p):
    return hashlib.sha256(p.read_bytes()).hexdigest()


def lines(notes):
    return "\n".join(notes)


@pytest.fixture
def x():
    return np.random.default_rng(1).standard_normal((1, 3, 32, 24)).astype(np.float32)


# --------------------------------------------------------------------------- quirks

def test_batchnorm_spatial0_repaired_and_checked_against_numpy(tmp_path, x):
    net = Net()
    src = export(net, tmp_path / "mx.onnx")
    m = onnx.load(str(src))
    bn = [n for n in m.graph.node if n.op_type == "BatchNormalization"]
    assert len(bn) == 1
    bn[0].attribute.append(helper.make_attribute("spatial", 0))
    onnx.save(m, str(src))
    with pytest.raises(Exception):  # what users meet: onnxruntime refuses the file
        ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    before = sha(src)
    res = import_onnx(src, tmp_path / "ok.onnx", MMPOSE)
    assert sha(src) == before
    assert "spatial=0" in lines(res.notes) and len(res.notes) == 1
    assert "does not run in onnxruntime" in res.check and "NumPy" in res.check
    np.testing.assert_allclose(ort_out(res.path, x), torch_out(net, x), rtol=1e-4, atol=1e-5)
    assert all(a.name != "spatial" for n in onnx.load(str(res.path)).graph.node for a in n.attribute)


def test_batchnorm_spatial0_opset8_graph(tmp_path):
    """An MXNet-era opset 8 graph: onnxruntime loads it but fails at run time."""
    rng = np.random.default_rng(0)
    c = 3
    p = [rng.uniform(0.5, 1.5, c), rng.uniform(-0.2, 0.2, c), rng.uniform(-0.5, 0.5, c), rng.uniform(0.5, 2, c)]
    w = rng.standard_normal((16, c, 1, 1)).astype(np.float32)
    inits = [numpy_helper.from_array(np.asarray(a, np.float32), n) for a, n in zip(p, "sbmv")] + \
        [numpy_helper.from_array(w, "w")]
    nodes = [helper.make_node("BatchNormalization", ["data", "s", "b", "m", "v"], ["bn"], epsilon=1e-3, spatial=0),
             helper.make_node("Conv", ["bn", "w"], ["hm"])]
    g = helper.make_graph(nodes, "mx", [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 16, 16])],
                          [helper.make_tensor_value_info("hm", TensorProto.FLOAT, [1, 16, 16, 16])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 8)])
    m.ir_version = 7
    onnx.save(m, str(tmp_path / "mx8.onnx"))
    spec = ImportSpec(color="bgr", mean=(0, 0, 0), std=(255, 255, 255), keypoints="mpii")
    res = import_onnx(tmp_path / "mx8.onnx", tmp_path / "out.onnx", spec)
    assert "NumPy" in res.check
    xi = np.random.default_rng(2).standard_normal((1, 3, 16, 16)).astype(np.float32)
    bnref = (p[0][None, :, None, None] * (xi - p[2][None, :, None, None]) / np.sqrt(p[3][None, :, None, None] + 1e-3)
             + p[1][None, :, None, None])
    want = np.einsum("nchw,oc->nohw", bnref, w[:, :, 0, 0])
    np.testing.assert_allclose(ort_out(res.path, xi), want, rtol=1e-4, atol=1e-5)
    assert res.meta.heatmap_size == (16, 16) and res.meta.keypoint_set == "mpii"


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_convtranspose_four_value_output_shape(tmp_path, x, layout):
    net = Net(deconv=True)
    src = export(net, tmp_path / "tfl.onnx")
    want = torch_out(net, x)
    m = onnx.load(str(src))
    ct = [n for n in m.graph.node if n.op_type == "ConvTranspose"][0]
    full = [1, 6, 8, 6] if layout == "nchw" else [1, 8, 6, 6]  # the deconv output is (1, 6, 8, 6)
    pads = [a for a in ct.attribute if a.name == "pads"]
    for a in pads:
        ct.attribute.remove(a)
    ct.attribute.append(helper.make_attribute("output_shape", full))
    onnx.save(m, str(src))
    res = import_onnx(src, tmp_path / "ok.onnx", MMPOSE)
    assert "ConvTranspose output_shape" in lines(res.notes)
    assert ("N, C, H, W" if layout == "nchw" else "N, H, W, C") in lines(res.notes)
    got = onnx.load(str(res.path))
    os_ = [list(a.ints) for n in got.graph.node if n.op_type == "ConvTranspose" for a in n.attribute if a.name == "output_shape"]
    assert os_ == [[8, 6]]
    # nhwc: the original computes a wrong shape -> the node is checked against NumPy instead.
    # nchw: onnxruntime up to 1.2x runs the original (it reads the last two values) and the
    # outputs are compared; newer releases refuse the four values, and NumPy checks the node
    ort_refused = "does not run in onnxruntime" in res.check
    if layout == "nchw" and not ort_refused:
        assert "equal" in res.check, res.check
    else:
        assert "NumPy" in res.check, res.check
    np.testing.assert_allclose(ort_out(res.path, x), want, rtol=1e-4, atol=1e-5)


def test_conv_transpose_reference_equals_torch():
    """The NumPy reference of the ConvTranspose check against torch, odd padding split included
    (ONNX NOTSET puts the odd pixel of total padding at the start, torch's output_padding at the end)."""
    rng = np.random.default_rng(3)
    xi = rng.standard_normal((2, 4, 5, 7)).astype(np.float32)
    w = rng.standard_normal((4, 3, 4, 3)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    ref = conv_transpose_reference(xi, w, None, (2, 2), (1, 1), 1, (10, 14))  # full (12, 15): pads h 1/1, w 1/0
    t = torch.nn.functional.conv_transpose2d(torch.from_numpy(xi), torch.from_numpy(w), stride=2, padding=1,
                                             output_padding=(0, 1)).numpy()
    np.testing.assert_allclose(ref, t, rtol=1e-5, atol=1e-5)
    g = conv_transpose_reference(xi, w, b, (2, 2), (1, 1), 2, (12, 15))
    tg = torch.nn.functional.conv_transpose2d(torch.from_numpy(xi), torch.from_numpy(w), torch.from_numpy(b),
                                              stride=2, groups=2).numpy()
    np.testing.assert_allclose(g, tg, rtol=1e-5, atol=1e-5)


def test_dynamic_batch_fixed_to_one_or_kept(tmp_path, x):
    net = Net()
    src = export(net, tmp_path / "mmdeploy.onnx", dynamic=True)
    res = import_onnx(src, tmp_path / "b1.onnx", MMPOSE)
    assert "dynamic batch" in lines(res.notes) and "fixed to 1" in lines(res.notes)
    assert "equal" in res.check
    assert res.meta.batch == 1
    assert onnx.load(str(res.path)).graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1
    np.testing.assert_allclose(ort_out(res.path, x), torch_out(net, x), rtol=1e-4, atol=1e-5)
    dyn = import_onnx(src, tmp_path / "b0.onnx", ImportSpec(**{**MMPOSE.__dict__, "batch": 0}))
    assert dyn.meta.batch == 0 and dyn.notes == []
    est = PoseEstimator(dyn.path)
    assert est.spec.batch == 0
    frame = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    assert est(frame, np.array([[10, 10, 40, 60], [50, 20, 60, 90], [0, 0, 160, 120]])).keypoints.shape == (3, 17, 2)


def test_dynamic_height_width_need_input_size(tmp_path):
    net = Net()
    src = tmp_path / "open.onnx"
    torch.onnx.export(net.eval(), (torch.zeros(1, 3, 32, 24),), str(src), input_names=["input"], output_names=["output"],
                      opset_version=13, dynamic_axes={"input": {0: "b", 2: "h", 3: "w"}}, dynamo=False)
    with pytest.raises(UserError, match="--input-size W H"):
        import_onnx(src, tmp_path / "o.onnx", MMPOSE)
    res = import_onnx(src, tmp_path / "o.onnx", ImportSpec(**{**MMPOSE.__dict__, "input_size": (48, 64)}))
    assert res.meta.input_size == (48, 64) and res.meta.heatmap_size == (12, 16)
    assert "height/width" in lines(res.notes)


# --------------------------------------------------------------------------- one-line errors

def run_cli(capsys, *argv):
    rc = main(["import-onnx", *map(str, argv)])
    err = capsys.readouterr().err.strip()
    return rc, err


def test_flag_errors_are_one_line_naming_both(tmp_path, capsys):
    src = export(Net(), tmp_path / "m.onnx")
    before = sha(src)
    cases = [
        (["--preset", "mmpose", "--input-size", "192", "256"], ["--input-size 192 256", "24x32"]),
        (["--preset", "mmpose", "--keypoints", "mpii"], ["17 heatmaps", "mpii has 16"]),
        (["--color", "rgb", "--keypoints", "coco"], ["--mean --std: required", "--preset mmpose"]),
        (["--preset", "mmpose", "--mean", "0.485", "0.456", "0.406", "--std", "0.229", "0.224", "0.225"], ["0..1 scale"]),
        (["--preset", "mmpose", "--keypoints", "h36m"], ["--keypoints h36m", "coco, mpii"]),
        (["--preset", "mmpose", "--keypoints", "", "--num-joints", "17", "--flip-pairs", "1,17"], ["--flip-pairs 1,17"]),
    ]
    for flags, needles in cases:
        rc, err = run_cli(capsys, src, "-o", tmp_path / "out.onnx", *flags)
        assert rc == 2, flags
        assert len(err.splitlines()) == 1, err
        for n in needles:
            assert n in err, (flags, err)
        assert not (tmp_path / "out.onnx").exists()
    assert sha(src) == before


def test_output_paths_never_overwrite(tmp_path, capsys):
    src = export(Net(), tmp_path / "m.onnx")
    before = sha(src)
    rc, err = run_cli(capsys, src, "-o", src, "--preset", "mmpose")
    assert rc == 2 and "same file as the input" in err and len(err.splitlines()) == 1
    out = tmp_path / "out.onnx"
    out.write_bytes(b"mine")
    rc, err = run_cli(capsys, src, "-o", out, "--preset", "mmpose")
    assert rc == 2 and "already exists" in err and "--force" in err and out.read_bytes() == b"mine"
    rc, err = run_cli(capsys, src, "-o", out, "--preset", "mmpose", "--force")
    assert rc == 0 and read_onnx_metadata(out).keypoint_set == "coco"
    assert sha(src) == before
    assert not list(tmp_path.glob("tmp*.onnx"))


def test_no_heatmap_like_output_is_refused(tmp_path, capsys):
    class SimCC(torch.nn.Module):  # RTMPose-like: (N, K, 2W) vectors, no 4-d maps
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(3 * 32 * 24, 17 * 48)

        def forward(self, x):
            return self.fc(x.flatten(1)).reshape(-1, 17, 48)

    src = export(SimCC(), tmp_path / "simcc.onnx")
    rc, err = run_cli(capsys, src, "-o", tmp_path / "o.onnx", "--preset", "mmpose")
    assert rc == 2 and len(err.splitlines()) == 1
    assert "no heatmap-like output" in err and "(1, 17, 48)" in err


def test_several_heatmap_outputs_need_a_choice(tmp_path, x):
    class Two(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = Net()

        def forward(self, x):
            y = self.net(x)
            return y * 0.5, y

    src = tmp_path / "two.onnx"
    torch.onnx.export(Two().eval(), (torch.zeros(1, 3, 32, 24),), str(src), input_names=["input"],
                      output_names=["aux", "final"], opset_version=13, dynamo=False)
    with pytest.raises(UserError, match="--output-name NAME"):
        import_onnx(src, tmp_path / "o.onnx", MMPOSE)
    res = import_onnx(src, tmp_path / "o.onnx", ImportSpec(**{**MMPOSE.__dict__, "output": "final"}))
    assert [o.name for o in onnx.load(str(res.path)).graph.output] == ["final"]
    assert "dropped aux" in lines(res.notes)
    np.testing.assert_allclose(ort_out(res.path, x), torch_out(Net(), x), rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- through the runtime

def test_stamped_model_runs_through_the_estimator_as_the_flags_say(tmp_path):
    """The estimator's keypoints equal torch on crops made by hand with the stated colour order
    and mean/std: the metadata is what the runtime uses."""
    net = Net()
    src = export(net, tmp_path / "m.onnx", dynamic=True)
    res = import_onnx(src, tmp_path / "s.onnx", MMPOSE)
    frame = np.random.default_rng(5).integers(0, 255, (90, 120, 3), dtype=np.uint8)
    boxes = np.array([[10.0, 5.0, 50.0, 70.0], [60.0, 10.0, 40.0, 60.0]])
    est = PoseEstimator(res.path)
    got = est(frame, boxes)
    import cv2

    c, s, mats = crop_matrices(boxes, (24, 32))
    crops = [cv2.warpAffine(frame, m, (24, 32), flags=cv2.INTER_LINEAR)[..., ::-1] for m in mats]
    xin = ((np.stack(crops).astype(np.float32) - np.float32(MMPOSE.mean)) / np.float32(MMPOSE.std)).transpose(0, 3, 1, 2)
    hm = torch_out(net, np.ascontiguousarray(xin))
    inv = get_affine_transform(c, s, 0.0, (6, 8), inv=True).reshape(-1, 2, 3)
    want, _ = decode(hm, inv)
    np.testing.assert_allclose(got.keypoints, want, atol=0.2)  # warp rounding: crops may differ by 1 level
    assert est.flip_shift  # stride 4: the reference one-pixel shift applies


def test_stride_one_flip_test_has_no_shift(tmp_path):
    """A stride-1 model that is exactly mirror-symmetric (1x1 conv, paired channels with equal
    weights): flip test must give the plain keypoints exactly; the stride-4 shift would move
    every joint by half a heatmap pixel."""
    rng = np.random.default_rng(7)
    w = np.repeat(np.abs(rng.standard_normal((1, 3, 1, 1))).astype(np.float32), 16, axis=0)
    g = helper.make_graph([helper.make_node("Conv", ["img", "w"], ["hm"])], "s1",
                          [helper.make_tensor_value_info("img", TensorProto.FLOAT, [1, 3, 40, 40])],
                          [helper.make_tensor_value_info("hm", TensorProto.FLOAT, [1, 16, 40, 40])],
                          [numpy_helper.from_array(w, "w")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(m, str(tmp_path / "s1.onnx"))
    spec = ImportSpec(color="rgb", mean=(127.5,) * 3, std=(127.5,) * 3, keypoints="mpii")
    res = import_onnx(tmp_path / "s1.onnx", tmp_path / "o.onnx", spec)
    assert res.meta.heatmap_size == (40, 40)
    frame = np.zeros((100, 100, 3), np.uint8)
    frame[30:34, 55:58] = 255  # an off-centre bright spot: one peak, same for every channel
    box = np.array([[20.0, 20.0, 60.0, 60.0]])
    plain = PoseEstimator(res.path)(frame, box)
    est = PoseEstimator(res.path, flip_test=True)
    assert not est.flip_shift
    flip = est(frame, box)
    np.testing.assert_allclose(flip.keypoints, plain.keypoints, atol=1e-3)


# --------------------------------------------------------------------------- the real EfficientPose

def _pckh(est, ann, root):
    import cv2

    hits = total = 0
    for a in ann:
        img = cv2.imread(str(root / a["image"]))
        c, s = np.asarray(a["center"]), a["scale"] * 200.0
        p = est(img, np.array([[c[0] - s / 2, c[1] - s / 2, s, s]]))
        gt, vis = np.asarray(a["joints"]), np.asarray(a["joints_vis"]) > 0
        head = np.linalg.norm(gt[9] - gt[8])  # upper neck - head top, the MPII head size's stand-in
        ok = (np.linalg.norm(p.keypoints[0] - gt, axis=1) <= 0.5 * head) & vis
        hits, total = hits + ok.sum(), total + vis.sum()
    return hits / total


def test_real_efficientpose_imports_and_finds_mpii_joints(tmp_path, capsys):
    from conftest import need_model

    src = need_model(EFFICIENTPOSE)
    root = need_data("mpii_mini")
    ann = json.loads((root / "test_mpii.json").read_text())
    out = tmp_path / "ep.onnx"
    rc = main(["import-onnx", str(src), "-o", str(out), "--color", "rgb", "--mean", "127.5", "127.5", "127.5",
               "--std", "127.5", "127.5", "127.5", "--keypoints", "mpii"])
    assert rc == 0, capsys.readouterr().err
    meta = read_onnx_metadata(out)
    assert (meta.input_size, meta.heatmap_size, meta.num_joints, meta.batch) == ((224, 224), (224, 224), 16, 1)
    assert meta.flip_pairs == [[0, 5], [1, 4], [2, 3], [10, 15], [11, 14], [12, 13]]
    plain = _pckh(PoseEstimator(out), ann, root)
    flip = _pckh(PoseEstimator(out, flip_test=True), ann, root)
    # measured 0.855 plain and 0.882 with flip on these 5 people (77 visible joints); a wrong colour
    # order, normalisation or box convention falls far below, swapped flip pairs too
    assert plain >= 0.75, plain
    assert flip >= 0.78, flip
    # the flip pairs matter: a set that swaps no left/right joints (only pelvis/thorax) merges each
    # limb with its mirror twin and drops PCKh to 0.49 here
    wrong = tmp_path / "wrong.onnx"
    assert main(["import-onnx", str(src), "-o", str(wrong), "--color", "rgb", "--mean", "127.5", "127.5", "127.5",
                 "--std", "127.5", "127.5", "127.5", "--num-joints", "16", "--flip-pairs", "6,7"]) == 0
    assert _pckh(PoseEstimator(wrong, flip_test=True), ann, root) < 0.6


def test_real_stamp_helper_goes_through_import(tmp_path):
    out = stamp_efficientpose(tmp_path / "ep.onnx")
    meta = read_onnx_metadata(out)
    assert meta.source_config["imported_from"] == EFFICIENTPOSE
    assert (meta.color, meta.mean, meta.std, meta.keypoint_set) == ("rgb", (127.5,) * 3, (127.5,) * 3, "mpii")


@pytest.mark.rknn
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_imported_model_builds_for_the_npu(tmp_path, capsys):
    """A dynamic-batch export with MXNet's BN quirk, imported, goes through build-rknn (INT8) and
    the simulator agrees with onnxruntime on the crops (mean/std from the stamped metadata)."""
    pytest.importorskip("rknn.api", reason="rknn-toolkit2 (x86 converter) not installed")
    from edgepose.metadata import read_sidecar
    from host_tools.rknn_build import BuildOptions, build_rknn
    from host_tools.verify import heatmap_cosine, rknn_runner

    src = export(Net(), tmp_path / "m.onnx", dynamic=True)
    m = onnx.load(str(src))
    next(n for n in m.graph.node if n.op_type == "BatchNormalization").attribute.append(
        helper.make_attribute("spatial", 0))
    onnx.save(m, str(src))
    imported = import_onnx(src, tmp_path / "i.onnx", MMPOSE).path
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 255, (6, 32, 24, 3), dtype=np.uint8)  # NHWC RGB, as the board feeds them
    lst = tmp_path / "calib.txt"
    names = []
    for i, c in enumerate(crops):
        np.save(tmp_path / f"c{i}.npy", np.ascontiguousarray(c.transpose(2, 0, 1)[None]))
        names.append(str(tmp_path / f"c{i}.npy"))
    lst.write_text("\n".join(names) + "\n")
    res = build_rknn(imported, tmp_path / "i.rknn", BuildOptions(target="rk3588", calib=str(lst)), keep=True)
    try:
        meta = read_sidecar(tmp_path / "i.rknn")
        assert (meta.batch, meta.heatmap_size, meta.layout, meta.quantized) == (1, (6, 8), "nhwc", "int8")
        sim = rknn_runner(res.rknn, 1, res.log)(crops)
    finally:
        res.rknn.release()
    x = ((crops.astype(np.float32) - np.float32(MMPOSE.mean)) / np.float32(MMPOSE.std)).transpose(0, 3, 1, 2)
    ref = np.concatenate([ort_out(imported, np.ascontiguousarray(x[i:i + 1])) for i in range(len(x))])
    assert sim.shape == ref.shape
    assert float(np.mean(heatmap_cosine(sim, ref))) > 0.99
