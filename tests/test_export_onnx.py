"""host_tools export-onnx: ONNX equals torch, metadata round-trips, official checkpoints load."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from host_tools.config import load_config, model_meta  # noqa: E402
from host_tools.errors import UserError  # noqa: E402
from host_tools.export_onnx import export_model  # noqa: E402
from host_tools.model import get_pose_net  # noqa: E402
from edgepose.metadata import METADATA_KEY, ModelMeta, read_onnx_metadata  # noqa: E402
from conftest import DATA, needs_data

ROOT = Path(__file__).resolve().parents[1]
COCO = DATA / "coco_mini"
SMALL = ["MODEL.IMAGE_SIZE=[96,128]", "MODEL.EXTRA.HEATMAP_SIZE=[24,32]", "MODEL.EXTRA.NUM_LAYERS=18"]
CFG_YAML = """MODEL:
  IMAGE_SIZE: [96, 128]
  EXTRA:
    NUM_LAYERS: 18
    HEATMAP_SIZE: [24, 32]
DATASET:
  DATASET: coco
  COLOR_RGB: false
"""


@pytest.fixture(scope="module")
def small_net():
    cfg = load_config(None, SMALL)
    torch.manual_seed(0)
    net = get_pose_net(cfg, is_train=False).eval()  # torch default init: heatmaps of order 1
    return cfg, net


def _real_crop(meta: ModelMeta) -> np.ndarray:
    """One real person crop from the mini COCO set, normalised NCHW as the ONNX wants."""
    from host_tools.calib import crop_samples, load_samples

    s = load_samples(COCO / "test_coco.json", COCO).samples[:1]
    crops, _, _ = crop_samples(s, meta.input_size, meta.color, progress=False)
    x = (crops.astype(np.float32) - np.float32(meta.mean)) / np.float32(meta.std)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


@needs_data
def test_export_matches_torch_on_a_real_crop(small_net, tmp_path):
    cfg, net = small_net
    meta = model_meta(cfg)
    out, diff = export_model(net, meta, tmp_path / "m.onnx")
    assert diff < 1e-4
    m = onnx.load(str(out))
    assert m.opset_import[0].version == 13
    assert [i.name for i in m.graph.input] == ["input"]
    assert [o.name for o in m.graph.output] == ["heatmaps"]
    dims = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 128, 96]
    x = _real_crop(meta)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x})[0]
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    assert got.shape == (1, 17, 32, 24)
    assert np.abs(want).max() > 1e-2  # a non-trivial output, so the comparison means something
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_metadata_round_trips(small_net, tmp_path):
    cfg, net = small_net
    meta = model_meta(cfg)
    export_model(net, meta, tmp_path / "m.onnx", batch=2)
    back = read_onnx_metadata(tmp_path / "m.onnx")
    assert back is not None
    assert back.to_dict() == meta.to_dict()
    assert back.input_size == (96, 128) and back.heatmap_size == (24, 32)
    assert back.batch == 2 and back.layout == "nchw" and back.quantized == "float32"
    assert back.keypoint_set == "coco" and back.flip_pairs[0] == [1, 2]
    assert back.source_config["MODEL"]["EXTRA"]["NUM_LAYERS"] == 18
    m = onnx.load(str(tmp_path / "m.onnx"))
    assert [p.key for p in m.metadata_props] == [METADATA_KEY]
    assert [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim][0] == 2


def test_dynamic_batch_and_refusals(small_net, tmp_path):
    cfg, net = small_net
    out, _ = export_model(net, model_meta(cfg), tmp_path / "d.onnx", batch=0)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert sess.run(None, {"input": np.zeros((3, 3, 128, 96), np.float32)})[0].shape == (3, 17, 32, 24)
    assert read_onnx_metadata(out).batch == 0
    before = out.read_bytes()
    with pytest.raises(UserError, match="already exists"):
        export_model(net, model_meta(cfg), out)
    assert out.read_bytes() == before
    with pytest.raises(UserError, match="HEATMAP_SIZE"):
        export_model(net, model_meta(cfg, heatmap_size=(48, 64)), tmp_path / "bad.onnx")
    assert not (tmp_path / "bad.onnx").exists()


def test_cli_exports_official_checkpoint_with_module_keys(small_net, tmp_path):
    cfg, _ = small_net
    (tmp_path / "cfg.yaml").write_text(CFG_YAML)
    torch.manual_seed(1)
    net = get_pose_net(load_config(tmp_path / "cfg.yaml"), is_train=False)
    # The original model_best.pth.tar: DataParallel keys, no num_batches_tracked.
    state = {"module." + k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "model_best.pth.tar")
    out = tmp_path / "official.onnx"
    cmd = [sys.executable, "-m", "host_tools", "export-onnx", "--cfg", str(tmp_path / "cfg.yaml"),
           "--weights", str(tmp_path / "model_best.pth.tar"), "-o", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "max abs diff" in r.stdout
    diff = float(r.stdout.split("max abs diff ")[1].split()[0])
    assert diff < 1e-4
    meta = read_onnx_metadata(out)
    assert meta.color == "bgr" and meta.arch == "pose_resnet_18"
    # the exported weights are the checkpoint's, not a fresh init
    x = np.random.default_rng(0).standard_normal((1, 3, 128, 96)).astype(np.float32)
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, net.eval()(torch.from_numpy(x)).numpy(), rtol=1e-4, atol=1e-4)
    # a second run must not overwrite the file
    mtime = os.path.getmtime(out)
    r2 = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r2.returncode == 2
    assert "already exists" in r2.stderr and "--force" in r2.stderr
    assert "Traceback" not in r2.stderr and len(r2.stderr.strip().splitlines()) == 1
    assert os.path.getmtime(out) == mtime


def test_large_outputs_are_compared_relative_to_their_magnitude(small_net, tmp_path):
    from host_tools.export_onnx import REL_TOL, output_difference

    ref = np.array([[1000.0, -2000.0], [3.0, 0.0]], np.float32)
    assert output_difference(ref + np.float32(0.5), ref) == pytest.approx((0.5, 0.5 / 2000))
    assert output_difference(ref, ref) == (0.0, 0.0)
    cfg, net = small_net

    class Loud(torch.nn.Module):  # the same network with outputs of order 1e4, as a trained ResNet-50's can be
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net(x) * 1e4

    small, loud = {}, {}
    export_model(net, model_meta(cfg), tmp_path / "a.onnx", report=small)
    export_model(Loud().eval(), model_meta(cfg), tmp_path / "b.onnx", report=loud)
    assert loud["max_output"] == pytest.approx(small["max_output"] * 1e4, rel=1e-3)
    assert loud["abs_diff"] > small["abs_diff"]  # absolute error grows with the outputs ...
    assert loud["rel_diff"] < REL_TOL and small["rel_diff"] < REL_TOL  # ... the relative one stays tiny
    assert loud["rel_diff"] == pytest.approx(loud["abs_diff"] / loud["max_output"])
