"""``host_tools npu-run`` against test doubles of the two toolkits' board connection.

The doubles keep the documented call signatures and return conventions:

* rknn-toolkit2 2.5.0 (``rknn/api/rknn.py``, checked against the installed package below):
  ``init_runtime(target=None, device_id=None, perf_debug=False, eval_mem=False, async_mode=False,
  core_mask=0, fallback_prior_device='cpu')``, ``eval_perf(is_print=True, fix_freq=True)`` (its
  printed table as text), ``eval_memory(is_print=True)`` -> ``{'total_weight_allocation',
  'total_internal_allocation', 'total_model_allocation'}`` (bytes), ``list_devices()`` ->
  ``(adb_ids, ntb_ids)``; 0 / -1 return codes.
* rknn-toolkit 1.x (1.7.x, RK1808/RV1109/RV1126; same ``rknn.api`` import, the signature of its
  ``init_runtime`` as in toolkit-lite 1.7's ``rknnlite/api/rknn_lite.py``): ``init_runtime(target=None,
  target_sub_class=None, device_id=None, perf_debug=False, eval_mem=False, async_mode=False)``
  (``target_sub_class='AICS'``: the RK1808 compute stick), ``eval_perf(inputs=None, data_type=None,
  data_format=None, is_print=True, loop_cnt=1)`` -> ``{'total_time': us, 'layers': {id: {'name',
  'operation', 'time'}}}``.

Their ``inference`` runs the ONNX named in the fake ``.rknn`` with onnxruntime (uint8 NHWC in,
mean/std applied as the model would), so the board-vs-float agreement must come out exact.
"""
from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pytest

from _models import rknn_from_onnx, tiny_onnx
from edgepose.metadata import read_onnx_metadata, read_sidecar, write_sidecar
from host_tools import npu_run as nr
from host_tools.cli import main
from conftest import DATA, needs_data

ROOT = Path(__file__).resolve().parents[1]
COCO = DATA / "coco_mini"
ANN = COCO / "test_coco.json"

PERF2 = """\
---------------------------------------------------------------------------------------------------
                                 Operator Time Consuming Ranking Table
---------------------------------------------------------------------------------------------------
ID   OpType           DataType Target InputShape            OutputShape           Cycles    Time(us)   MacUsage(%)   FullName
1    InputOperator    UINT8    CPU    \\                     (1,3,256,192)         0         9          \\             InputOperator:input
2    ConvRelu         INT8     NPU    (1,3,256,192),(8,3,3,3)  (1,8,128,96)       12000     310        3.2           Conv:conv1
3    ConvTranspose    INT8     NPU    (1,8,128,96)          (1,8,256,192)         20000     520        5.1           ConvTranspose:up
4    OutputOperator   INT8     CPU    (1,17,64,48)          \\                     0         41         \\             OutputOperator:heatmaps
Total Operator Elapsed Per Frame Time(us): 880
Total Memory Read/Write Per Frame Size(KB): 1200.50
"""
MEM2 = {"total_weight_allocation": 2_000_000, "total_internal_allocation": 1_500_000, "total_model_allocation": 3_500_000}


class _Board:
    """Shared part of both doubles: a board that runs the fake model."""

    adb: list = ["0123456789ABCDEF"]
    ntb: list = []
    load_ret = 0
    init_ret = 0
    init_exc = None
    perf_none = False
    out_dtype = "float32"
    log: list = []

    def _rec(self, *call):
        type(self).log.append(call)

    def load_rknn(self, path):
        self._rec("load_rknn", path)
        if self.load_ret:
            return self.load_ret
        import onnxruntime as ort

        onnx = Path(path).read_bytes().split(b"\n", 1)[1].decode()
        self.sess = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
        self.meta = read_onnx_metadata(onnx)
        return 0

    def list_devices(self):
        self._rec("list_devices")
        return list(self.adb), list(self.ntb)

    def inference(self, inputs, data_format=None, inputs_pass_through=None, get_frame_id=False):
        x = inputs[0]
        self._rec("inference", data_format, x.shape, str(x.dtype))
        assert self.runtime, "inference before init_runtime"
        f = (x.astype(np.float32) - np.float32(self.meta.mean)) / np.float32(self.meta.std)
        out = self.sess.run(None, {"input": np.ascontiguousarray(f.transpose(0, 3, 1, 2))})[0]
        if self.out_dtype == "int8":
            out = np.clip(np.round(out / self.scale) + self.zp, -128, 127).astype(np.int8)
        return [out]

    def release(self):
        self._rec("release")


class FakeRKNN2(_Board):
    """rknn-toolkit2 2.5.0's RKNN, board side."""

    def __init__(self, verbose=False, verbose_file=None):
        self.runtime = False

    def load_rknn(self, path):
        return super().load_rknn(path)

    def init_runtime(self, target=None, device_id=None, perf_debug=False, eval_mem=False, async_mode=False,
                     core_mask=0, fallback_prior_device="cpu"):
        self._rec("init_runtime", dict(target=target, device_id=device_id, perf_debug=perf_debug, eval_mem=eval_mem))
        if self.init_exc is not None:
            raise self.init_exc
        self.runtime = self.init_ret == 0
        return self.init_ret

    def eval_perf(self, is_print=True, fix_freq=True):
        self._rec("eval_perf", dict(is_print=is_print, fix_freq=fix_freq))
        return None if self.perf_none else PERF2

    def eval_memory(self, is_print=True):
        self._rec("eval_memory", dict(is_print=is_print))
        return dict(MEM2)

    def inference(self, inputs, data_format=None, inputs_pass_through=None, get_frame_id=False):
        return super().inference(inputs, data_format, inputs_pass_through, get_frame_id)

    def list_devices(self):
        return super().list_devices()

    def release(self):
        return super().release()


class FakeRKNN1(_Board):
    """rknn-toolkit 1.x's RKNN (RK1808 board or compute stick over ntb)."""

    adb: list = []
    ntb: list = ["TB-RK1808S0123"]

    def __init__(self, verbose=False, verbose_file=None):
        self.runtime = False

    def init_runtime(self, target=None, target_sub_class=None, device_id=None, perf_debug=False, eval_mem=False,
                     async_mode=False):
        self._rec("init_runtime", dict(target=target, target_sub_class=target_sub_class, device_id=device_id,
                                       perf_debug=perf_debug, eval_mem=eval_mem))
        self.runtime = self.init_ret == 0
        return self.init_ret

    def eval_perf(self, inputs=None, data_type=None, data_format=None, is_print=True, loop_cnt=1):
        self._rec("eval_perf", dict(shape=inputs[0].shape, data_format=data_format, is_print=is_print, loop_cnt=loop_cnt))
        return {"total_time": 5100, "layers": {"0": {"name": "convolution.relu.pooling.layer2_2",
                                                     "operation": "CONVOLUTION", "time": 3000},
                                               "1": {"name": "deconvolution.layer3", "operation": "DECONVOLUTION",
                                                     "time": 2100}}}

    def eval_memory(self, is_print=True):
        self._rec("eval_memory", dict(is_print=is_print))
        return {"system_memory": {"maximum_allocation": 12_000_000}}


# rknn-toolkit2 2.5.0 rknn/api/rknn.py, parameters after self
TOOLKIT2_SIGNATURES = {
    "__init__": ["verbose", "verbose_file"], "load_rknn": ["path"],
    "init_runtime": ["target", "device_id", "perf_debug", "eval_mem", "async_mode", "core_mask", "fallback_prior_device"],
    "eval_perf": ["is_print", "fix_freq"], "eval_memory": ["is_print"],
    "inference": ["inputs", "data_format", "inputs_pass_through", "get_frame_id"], "list_devices": [], "release": [],
}


def test_toolkit2_double_matches_the_installed_toolkit():
    for name, params in TOOLKIT2_SIGNATURES.items():
        assert list(inspect.signature(getattr(FakeRKNN2, name)).parameters)[1:] == params, name
    api = pytest.importorskip("rknn.api", reason="rknn-toolkit2 not installed")
    for name, params in TOOLKIT2_SIGNATURES.items():
        assert list(inspect.signature(getattr(api.RKNN, name)).parameters)[1:] == params, name


@pytest.fixture(scope="module")
def fake_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("npu")
    onnx = tiny_onnx(d / "tiny.onnx", dynamic_batch=False)
    rknn = d / "pose.rknn"
    rknn_from_onnx(onnx, rknn)
    return onnx, rknn


def _use(monkeypatch, cls, major, version="2.5.0", **attrs):
    double = type(cls.__name__ + "T", (cls,), {"log": [], **attrs})
    monkeypatch.setattr(nr, "RKNN_factory", lambda: double())
    monkeypatch.setattr(nr, "toolkit_major", lambda: (major, version))
    return double


def _calls(double):
    return [c[0] for c in double.log]


def test_no_board_is_one_line(monkeypatch, fake_model, capsys):
    _, rknn = fake_model
    double = _use(monkeypatch, FakeRKNN2, 2, adb=[], ntb=[])
    assert main(["npu-run", str(rknn), "--target", "rk3588"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("host_tools npu-run: no board: list_devices() sees no adb or ntb")
    assert _calls(double) == ["list_devices", "release"]  # nothing loaded, probe released
    assert not Path(str(rknn) + ".npu.json").exists()


@needs_data
def test_toolkit2_board_sequence_perf_memory_agreement(monkeypatch, fake_model, tmp_path, capsys):
    onnx, rknn = fake_model
    double = _use(monkeypatch, FakeRKNN2, 2)
    report = tmp_path / "r.json"
    rc = main(["npu-run", str(rknn), "--target", "rk3588", "--onnx", str(onnx), "--ann", str(ANN),
               "--images", str(COCO), "--max-persons", "3", "--report", str(report)])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    calls = double.log
    assert _calls(double) == (["list_devices", "release", "load_rknn", "init_runtime", "eval_perf"]
                              + ["inference"] * 3 + ["release", "load_rknn", "init_runtime", "eval_memory", "release"])
    dev = "0123456789ABCDEF"
    assert calls[2] == ("load_rknn", str(rknn))
    assert calls[3][1] == dict(target="rk3588", device_id=dev, perf_debug=True, eval_mem=False)
    assert calls[4][1] == dict(is_print=False, fix_freq=True)  # toolkit2's eval_perf takes no inputs
    assert all(c[1] == "nhwc" and c[2] == (1, 256, 192, 3) and c[3] == "uint8" for c in calls[5:8])
    assert calls[10][1] == dict(target="rk3588", device_id=dev, perf_debug=False, eval_mem=True)
    assert calls[11][1] == dict(is_print=False)
    rep = json.loads(report.read_text())
    assert rep["device_id"] == dev and rep["connection"] == "adb" and rep["perf"]["total_us"] == 880.0
    assert [ly["time_us"] for ly in rep["perf"]["layers"]] == [9.0, 310.0, 520.0, 41.0]
    assert rep["perf"]["layers"][2]["op"] == "ConvTranspose" and rep["perf"]["layers"][2]["name"] == "ConvTranspose:up"
    assert rep["memory"] == MEM2
    ag = rep["agreement"]
    assert ag["persons"] == 3 and ag["oks"]["mean"] == 1.0 and ag["keypoint_error_input_px"]["max"] == 0.0
    assert "ap" in ag
    out = cap.out
    assert "eval_perf: 0.88 ms per frame (perf_debug), 4 layers; slowest: ConvTranspose 520 us" in out
    assert "weights 2.0 MB, internal 1.5 MB, total 3.5 MB" in out
    assert "npu-run: board vs float: OKS agreement 1.0000" in out
    # a report is never replaced silently
    assert main(["npu-run", str(rknn), "--target", "rk3588", "--report", str(report)]) == 2
    assert "already exists" in capsys.readouterr().err


@needs_data
def test_int8_board_outputs_are_dequantized_with_the_sidecar(monkeypatch, fake_model, tmp_path):
    onnx, rknn = fake_model
    q = tmp_path / "q.rknn"
    q.write_bytes(rknn.read_bytes())
    meta = read_sidecar(rknn)
    meta.output_scale, meta.output_zero_point, meta.quantized = 0.01, -5, "int8"
    write_sidecar(q, meta)
    _use(monkeypatch, FakeRKNN2, 2, out_dtype="int8", scale=0.01, zp=-5)
    rep = nr.npu_run(q, "rk3588", onnx=str(onnx), ann=ANN, images=COCO, max_persons=2, log=tmp_path / "l.log")
    # int8 grid error only: the peaks agree closely, far from a misread (e.g. undequantized) output
    assert rep["agreement"]["heatmap_cosine"]["min"] > 0.9


def test_toolkit1_compute_stick(monkeypatch, fake_model, tmp_path):
    onnx, rknn = fake_model
    stick = tmp_path / "stick.rknn"
    stick.write_bytes(rknn.read_bytes())
    meta = read_sidecar(rknn)
    meta.target, meta.quantized = "rk1808", "uint8"
    write_sidecar(stick, meta)
    double = _use(monkeypatch, FakeRKNN1, 1, "1.7.5")
    rep = nr.npu_run(stick, "rk1808", compute_stick=True, loops=7, log=tmp_path / "l.log")
    calls = double.log
    assert _calls(double) == ["list_devices", "release", "load_rknn", "init_runtime", "eval_perf", "release",
                              "load_rknn", "init_runtime", "eval_memory", "release"]
    assert calls[3][1] == dict(target="rk1808", target_sub_class="AICS", device_id="TB-RK1808S0123",
                               perf_debug=True, eval_mem=False)
    # 1.x's eval_perf runs the model itself: it gets an input crop and the loop count
    assert calls[4][1] == dict(shape=(1, 256, 192, 3), data_format="nhwc", is_print=False, loop_cnt=7)
    assert rep["connection"] == "ntb" and rep["perf"]["total_us"] == 5100.0
    assert [(ly["op"], ly["time_us"]) for ly in rep["perf"]["layers"]] == [("CONVOLUTION", 3000.0),
                                                                          ("DECONVOLUTION", 2100.0)]
    assert "agreement" not in rep and rep["memory"]["system_memory"]["maximum_allocation"] == 12_000_000
    # toolkit2 has no compute-stick class: refused in one line, nothing run
    d2 = _use(monkeypatch, FakeRKNN2, 2)
    with pytest.raises(nr.UserError, match="rk1808 needs rknn-toolkit 1.x"):
        nr.npu_run(stick, "rk1808", compute_stick=True, log=tmp_path / "l.log")
    assert d2.log == []


@pytest.mark.parametrize("knob,value,expect", [
    ("init_ret", -1, "init_runtime(target=rk3588, device_id=0123456789ABCDEF) failed (returned -1)"),
    ("init_exc", RuntimeError("RKNN init failed. error code: RKNN_ERR_MODEL_INVALID"),
     "init_runtime(target=rk3588, device_id=0123456789ABCDEF) failed: RKNN init failed. error code"),
    ("load_ret", -1, "load_rknn failed (returned -1)"),
    ("perf_none", True, "eval_perf returned nothing"),
])
def test_toolkit_failures_are_one_line_and_release(monkeypatch, fake_model, capsys, tmp_path, knob, value, expect):
    _, rknn = fake_model
    double = _use(monkeypatch, FakeRKNN2, 2, **{knob: value})
    assert main(["npu-run", str(rknn), "--target", "rk3588", "--report", str(tmp_path / "r.json")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    # progress lines ("npu-run: ...") may come first; the failure itself is one line, no traceback
    bad = [ln for ln in err if not ln.startswith("npu-run: ")]
    assert len(bad) == 1 and bad[0].startswith("host_tools npu-run: error: ") and expect in bad[0], err
    assert _calls(double)[-1] == "release" and not (tmp_path / "r.json").exists()


@needs_data
def test_device_choice_and_bad_input(monkeypatch, fake_model, capsys, tmp_path):
    _, rknn = fake_model
    _use(monkeypatch, FakeRKNN2, 2, adb=["A1", "B2"])
    assert main(["npu-run", str(rknn), "--target", "rk3588"]) == 2
    assert "2 devices connected (A1, B2); choose one with --device-id" in capsys.readouterr().err
    assert main(["npu-run", str(rknn), "--target", "rk3588", "--device-id", "C3"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--device-id C3: not connected; the toolkit sees A1, B2" in err[0]
    assert main(["npu-run", str(rknn), "--target", "rk3566"]) == 2
    assert "was built for rk3588" in capsys.readouterr().err
    assert main(["npu-run", str(tmp_path / "none.rknn"), "--target", "rk3588"]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["npu-run", str(rknn), "--target", "rk3588", "--ann", str(ANN)]) == 2
    assert "also pass --images" in capsys.readouterr().err


@pytest.mark.rknn
def test_real_toolkit2_without_a_board_says_so(fake_model, tmp_path):
    """The installed rknn-toolkit2 itself: this host has no board (and no adb), so npu-run stops
    at list_devices with its one line."""
    api = pytest.importorskip("rknn.api", reason="rknn-toolkit2 not installed")
    import subprocess
    import sys

    _, rknn = fake_model
    with nr.toolkit_log(tmp_path / "probe.log"):
        probe = api.RKNN()
        adb, ntb = probe.list_devices()
        probe.release()
    if adb or ntb:
        pytest.skip(f"a board is connected ({adb + ntb})")
    r = subprocess.run([sys.executable, "-m", "host_tools", "npu-run", str(rknn), "--target", "rk3588",
                        "--report", str(tmp_path / "r.json")], capture_output=True, text=True, cwd=ROOT, timeout=120)
    err = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert r.returncode == 1 and len(err) == 1 and "no board" in err[0], r.stderr
