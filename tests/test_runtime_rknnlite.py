"""Contract tests of the rknnlite backend against a test double of RKNNLite.

The double keeps RKNNLite's call sequence, signatures, return codes (0 = success, -1 =
failure), core-mask constants and output conventions (a list of NCHW arrays, float32 by
default), as read in rknn-toolkit-lite2 2.5.0's ``rknnlite/api/rknn_lite.py`` (aarch64 wheel):
``load_rknn(path, key_path=None)``, ``init_runtime(target=None, device_id=None,
async_mode=False, core_mask=NPU_CORE_AUTO)``, ``inference(inputs, data_type=None,
data_format=None, inputs_pass_through=None, get_frame_id=False, reuse_outputs=False)`` (None on
any runtime error; ``reuse_outputs=True`` returns views of buffers that the next call
overwrites), ``release()``. Failure modes: ``init_runtime`` returning -1 off the board (x86:
"does not support simulator") or raising ``Please specify the target in init_runtime!`` (seen
on an aarch64 machine without NPU), non-zero return codes, ``inference`` returning None. It executes the
ONNX model named inside the fake ``.rknn`` file with onnxruntime, normalising the uint8 NHWC
input itself (an RKNN model carries mean/std inside).
"""
from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest

from _models import CLIP, rknn_from_onnx, tiny_onnx
from edgepose.backends import BackendError, choose_backend, create_backend, installed
from edgepose.backends.rknnlite import RknnLiteBackend, core_mask_value
from edgepose.estimator import PoseEstimator
from edgepose.metadata import MetadataError, read_onnx_metadata
from conftest import needs_data


class FakeRKNNLite:
    NPU_CORE_AUTO = 0
    NPU_CORE_0 = 1
    NPU_CORE_1 = 2
    NPU_CORE_2 = 4
    NPU_CORE_0_1 = 3
    NPU_CORE_0_1_2 = 7
    NPU_CORE_ALL = 0xFFFF

    # knobs for failure modes, set per test
    load_ret = 0
    init_exc: Exception | None = None
    init_ret = 0
    infer_none = False
    out_dtype = "float32"
    instances: list = []

    def __init__(self, verbose=False, verbose_file=None):
        self.calls = []
        self.sess = None
        self.released = False
        type(self).instances.append(self)

    def load_rknn(self, path, key_path=None):
        self.calls.append(("load_rknn", path))
        if self.load_ret != 0:
            return self.load_ret
        data = Path(path).read_bytes()
        if not data.startswith(b"FAKE-RKNN\n"):
            return -1
        import onnxruntime as ort

        self.sess = ort.InferenceSession(data.split(b"\n", 1)[1].decode(), providers=["CPUExecutionProvider"])
        self.meta = read_onnx_metadata(data.split(b"\n", 1)[1].decode())
        return 0

    def init_runtime(self, target=None, device_id=None, async_mode=False, core_mask=NPU_CORE_AUTO):
        self.calls.append(("init_runtime", core_mask))
        if self.init_exc is not None:
            raise self.init_exc
        return self.init_ret

    def inference(self, inputs, data_type=None, data_format=None, inputs_pass_through=None, get_frame_id=False,
                  reuse_outputs=False):
        self.calls.append(("inference", data_format, inputs[0].shape, inputs[0].dtype))
        if self.infer_none:
            return None
        x = inputs[0]
        assert data_format == "nhwc" and x.dtype == np.uint8 and x.shape[0] == 1, "the real runtime has batch 1 here"
        f = (x.astype(np.float32) - np.float32(self.meta.mean)) / np.float32(self.meta.std)
        out = self.sess.run(None, {"input": np.ascontiguousarray(f.transpose(0, 3, 1, 2))})[0]
        s, zp = getattr(self, "scale", 0.0), getattr(self, "zero_point", 0)
        if self.out_dtype == "int16":
            out = (np.round(out / s) + zp).astype(np.int16)
        elif self.out_dtype in ("int8", "dequantized"):
            out = np.clip(np.round(out / s) + zp, -128, 127).astype(np.int8)
            if self.out_dtype == "dequantized":  # what a float-output runtime would hand back
                out = ((out.astype(np.float32) - zp) * np.float32(s)).astype(np.float32)
        if reuse_outputs:  # like the real one: a staging buffer that the next call overwrites
            if getattr(self, "_buf", None) is None or self._buf.shape != out.shape or self._buf.dtype != out.dtype:
                self._buf = np.empty_like(out)
            self._buf[...] = out
            out = self._buf
        return [out]

    def release(self):
        self.released = True


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory) -> Path:
    return tiny_onnx(tmp_path_factory.mktemp("rk") / "tiny.onnx")


@pytest.fixture
def fake(monkeypatch):
    cls = type("FakeRKNNLiteT", (FakeRKNNLite,), {"instances": []})
    return cls


def _frame():
    import cv2

    cap = cv2.VideoCapture(str(CLIP))
    ok, frame = cap.read()
    cap.release()
    assert ok
    return frame


BOXES = np.array([[20, 10, 150, 230], [170, 20, 160, 220]], np.float64)


# rknn-toolkit-lite2 2.5.0, rknnlite/api/rknn_lite.py (parameters after self)
LITE2_SIGNATURES = {
    "load_rknn": ["path", "key_path"],
    "init_runtime": ["target", "device_id", "async_mode", "core_mask"],
    "inference": ["inputs", "data_type", "data_format", "inputs_pass_through", "get_frame_id", "reuse_outputs"],
    "release": [],
}
LITE2_CORES = {"NPU_CORE_AUTO": 0, "NPU_CORE_0": 1, "NPU_CORE_1": 2, "NPU_CORE_2": 4, "NPU_CORE_0_1": 3,
               "NPU_CORE_0_1_2": 7, "NPU_CORE_ALL": 0xFFFF}


def test_double_matches_real_signatures():
    for name, params in LITE2_SIGNATURES.items():
        assert list(inspect.signature(getattr(FakeRKNNLite, name)).parameters)[1:] == params
    for c, v in LITE2_CORES.items():
        assert getattr(FakeRKNNLite, c) == v
    rknn_api = pytest.importorskip("rknn.api")  # the x86 toolkit shares the constants
    for c, v in LITE2_CORES.items():
        assert getattr(rknn_api.RKNN, c) == v


@needs_data
def test_reused_output_buffers_are_not_mixed_up(tmp_path, onnx_model, fake):
    """With reuse_outputs the runtime overwrites its buffer on every call: the per-person calls
    of a fixed-batch model (and the flip pass) must still give each person its own maps."""
    rk = tmp_path / "m.rknn"
    rknn_from_onnx(onnx_model, rk)
    frame = _frame()
    ref = PoseEstimator(onnx_model, flip_test=True)(frame, BOXES)
    est = PoseEstimator(rk, backend="rknnlite", rknnlite_cls=fake, flip_test=True)
    assert est.backend.reuse_outputs
    got = est(frame, BOXES)
    np.testing.assert_allclose(got.keypoints, ref.keypoints, atol=1e-3)


@needs_data
def test_float_outputs_match_onnx_path(tmp_path, onnx_model, fake):
    rk = tmp_path / "m.rknn"
    rknn_from_onnx(onnx_model, rk)
    frame = _frame()
    ref = PoseEstimator(onnx_model)(frame, BOXES)
    with PoseEstimator(rk, backend="rknnlite", rknnlite_cls=fake, core_mask="0_1_2") as est:
        got = est(frame, BOXES)
        rt = fake.instances[0]
        assert rt.calls[0] == ("load_rknn", str(rk))
        assert rt.calls[1] == ("init_runtime", fake.NPU_CORE_0_1_2)
        infers = [c for c in rt.calls if c[0] == "inference"]
        assert len(infers) == 2  # fixed batch 1 -> one call per person
        assert all(c[1] == "nhwc" and c[2] == (1, 256, 192, 3) and c[3] == np.uint8 for c in infers)
    assert rt.released
    # same crops (uint8 then normalised the same way) and the same network: same keypoints
    np.testing.assert_allclose(got.keypoints, ref.keypoints, atol=1e-3)
    np.testing.assert_allclose(got.scores, ref.scores, atol=1e-4)


@needs_data
def test_int8_outputs_go_to_decode_quantized(tmp_path, onnx_model, fake, monkeypatch):
    rk = tmp_path / "q.rknn"
    scale, zp = 0.01, -5
    rknn_from_onnx(onnx_model, rk, quantized="int8", scale=scale, zero_point=zp)
    fake.out_dtype, fake.scale, fake.zero_point = "int8", scale, zp
    seen = {}
    import edgepose.estimator as est_mod

    real_decode = est_mod.decode

    def spy(hm, inv, **kw):
        seen["dtype"], seen["scale"], seen["zp"] = hm.dtype, kw["scale"], kw["zero_point"]
        return real_decode(hm, inv, **kw)

    monkeypatch.setattr(est_mod, "decode", spy)
    frame = _frame()
    est = PoseEstimator(rk, backend="rknnlite", rknnlite_cls=fake)
    got = est(frame, BOXES)
    assert seen == {"dtype": np.int8, "scale": scale, "zp": zp}  # never dequantized in Python
    # the same int8 maps dequantized first give the same answer: decoding on the integers is exact
    deq = type("FakeDeq", (fake,), {"instances": [], "out_dtype": "dequantized"})
    rk_f = tmp_path / "f.rknn"
    rknn_from_onnx(onnx_model, rk_f)
    ref = PoseEstimator(rk_f, backend="rknnlite", rknnlite_cls=deq)(frame, BOXES)
    np.testing.assert_allclose(got.keypoints, ref.keypoints, atol=1e-3)
    np.testing.assert_allclose(got.scores, ref.scores, rtol=1e-5, atol=1e-6)
    # and they stay near the float model (quantization only)
    flt = PoseEstimator(onnx_model)(frame, BOXES)
    np.testing.assert_allclose(got.scores, flt.scores, atol=scale)


@needs_data
def test_int16_outputs(tmp_path, onnx_model, fake):
    """int16 builds have no integer decode kernel: the backend dequantizes them (sidecar scale)."""
    rk = tmp_path / "w16.rknn"
    rknn_from_onnx(onnx_model, rk, quantized="int16", scale=1e-4, zero_point=3)
    fake.out_dtype, fake.scale, fake.zero_point = "int16", 1e-4, 3
    frame = _frame()
    got = PoseEstimator(rk, backend="rknnlite", rknnlite_cls=fake)(frame, BOXES)
    ref = PoseEstimator(onnx_model)(frame, BOXES)
    np.testing.assert_allclose(got.scores, ref.scores, atol=2e-4)


@needs_data
def test_flip_test_runs_on_rknn(tmp_path, onnx_model, fake):
    rk = tmp_path / "m.rknn"
    rknn_from_onnx(onnx_model, rk)
    frame = _frame()
    ref = PoseEstimator(onnx_model, flip_test=True)(frame, BOXES)
    got = PoseEstimator(rk, backend="rknnlite", rknnlite_cls=fake, flip_test=True)(frame, BOXES)
    assert len([c for c in fake.instances[0].calls if c[0] == "inference"]) == 4
    np.testing.assert_allclose(got.keypoints, ref.keypoints, atol=1e-3)


def test_init_runtime_off_board_is_one_clear_error(tmp_path, onnx_model, fake):
    rk = tmp_path / "m.rknn"
    rknn_from_onnx(onnx_model, rk)
    fake.init_exc = Exception("Please specify the target in init_runtime!")
    with pytest.raises(BackendError, match="init_runtime failed.*Please specify the target.*on the board"):
        RknnLiteBackend(rknnlite_cls=fake).load(rk)
    assert fake.instances[0].released


@pytest.mark.parametrize("knob,value,match", [
    ("load_ret", -1, "load_rknn returned -1"),
    ("init_ret", -1, "init_runtime returned -1"),  # e.g. lite2 on x86: no simulator
])
def test_nonzero_return_codes(tmp_path, onnx_model, fake, knob, value, match):
    rk = tmp_path / "m.rknn"
    rknn_from_onnx(onnx_model, rk)
    setattr(fake, knob, value)
    with pytest.raises(BackendError, match=match):
        RknnLiteBackend(rknnlite_cls=fake).load(rk)


@needs_data
def test_inference_none_is_an_error(tmp_path, onnx_model, fake):
    rk = tmp_path / "m.rknn"
    rknn_from_onnx(onnx_model, rk)
    fake.infer_none = True
    est = PoseEstimator(rk, backend="rknnlite", rknnlite_cls=fake)
    with pytest.raises(BackendError, match="no outputs"):
        est(_frame(), BOXES)


@needs_data
def test_sidecar_problems(tmp_path, onnx_model, fake):
    rk = tmp_path / "m.rknn"
    rk.write_bytes(b"FAKE-RKNN\n" + str(onnx_model).encode())
    with pytest.raises(MetadataError, match="sidecar missing"):
        RknnLiteBackend(rknnlite_cls=fake).load(rk)
    # what build-rknn writes for an INT8 model: dtype int8, no output scale. Fine with float
    # outputs (RKNNLite's default); integer outputs then cannot be decoded and say so.
    rknn_from_onnx(onnx_model, rk, quantized="int8", scale=0.0)
    est = PoseEstimator(rk, backend="rknnlite", rknnlite_cls=fake)
    assert len(est(_frame(), BOXES)) == 2
    fake.out_dtype, fake.scale, fake.zero_point = "int8", 0.01, 0
    with pytest.raises(MetadataError, match="no output_scale"):
        est(_frame(), BOXES)
    fake.out_dtype = "float32"
    # sidecar that disagrees with the model's output: caught at the first inference, clearly
    meta = rknn_from_onnx(onnx_model, rk)
    meta.heatmap_size = (24, 32)
    from edgepose.metadata import write_sidecar

    write_sidecar(rk, meta)
    est = PoseEstimator(rk, backend="rknnlite", rknnlite_cls=fake)
    with pytest.raises(MetadataError, match="does not match the sidecar"):
        est(_frame(), BOXES)


def test_core_mask_names():
    assert core_mask_value(FakeRKNNLite, "auto") == 0
    assert core_mask_value(FakeRKNNLite, "0_1") == 3
    assert core_mask_value(FakeRKNNLite, "2") == 4
    with pytest.raises(ValueError, match="core_mask"):
        core_mask_value(FakeRKNNLite, "3")


def test_auto_choice_by_file_type(tmp_path, onnx_model):
    assert choose_backend(onnx_model) == "onnxruntime"
    rk = tmp_path / "m.rknn"
    rknn_from_onnx(onnx_model, rk)
    if installed("rknnlite"):
        assert choose_backend(rk) == "rknnlite"
    else:  # a PC: the board runtime is absent, say so and what to do
        with pytest.raises(BackendError, match="rknn-toolkit-lite2"):
            create_backend(rk)
    with pytest.raises(ValueError, match="cannot run on backend"):
        choose_backend(rk, "onnxruntime")
    with pytest.raises(ValueError, match="unknown model type"):
        choose_backend(tmp_path / "m.pt")


def test_runtime_noise_becomes_part_of_one_error_line(tmp_path):
    """RKNNLite prints its own tracebacks straight to fd 2 when init_runtime fails off the board;
    the user must see one line that carries the reason. Runs in a subprocess so fds are real."""
    import subprocess
    import sys
    import textwrap

    from edgepose.metadata import ModelMeta, write_sidecar

    model = tmp_path / "m.rknn"
    model.write_bytes(b"RKNN")
    write_sidecar(model, ModelMeta(layout="nhwc", quantized="int8", target="rk3588"))
    script = textwrap.dedent(f"""
        import os, sys
        from edgepose.backends.rknnlite import RknnLiteBackend
        from edgepose.backends import BackendError
        class Noisy:
            NPU_CORE_AUTO = 0
            def load_rknn(self, path):
                os.write(1, b"W rknn-toolkit-lite2 version: 2.5.0\\n"); return 0
            def init_runtime(self, core_mask=0):
                os.write(2, b"E Catch exception when init runtime!\\nE Traceback (most recent call last):\\n"
                            b"Exception: Please specify the target in init_runtime!\\n")
                return -1
            def release(self): pass
        try:
            RknnLiteBackend(rknnlite_cls=Noisy).load({str(model)!r})
        except BackendError as exc:
            print("ERR", exc, file=sys.stderr)
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    lines = [ln for ln in (res.stdout + res.stderr).splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("ERR"), lines
    assert "Please specify the target in init_runtime!" in lines[0] and "returned -1" in lines[0]



class FakeRKNNLite1x(FakeRKNNLite):
    """toolkit-lite 1.x (RK1808, RV1109/RV1126): ``init_runtime(target=None, device_id=None,
    async_mode=False)``, no ``core_mask`` argument."""

    def init_runtime(self, target=None, device_id=None, async_mode=False):
        self.calls.append(("init_runtime", None))
        return self.init_ret



@needs_data
def test_toolkit_lite_1x_runtime_gets_no_core_mask(tmp_path, onnx_model):
    cls = type("Fake1x", (FakeRKNNLite1x,), {"instances": []})
    rk = tmp_path / "m.rknn"
    rknn_from_onnx(onnx_model, rk)
    frame = _frame()
    ref = PoseEstimator(onnx_model)(frame, BOXES)
    with PoseEstimator(rk, backend="rknnlite", rknnlite_cls=cls) as est:
        got = est(frame, BOXES)
        assert cls.instances[0].calls[1] == ("init_runtime", None)
    np.testing.assert_allclose(got.keypoints, ref.keypoints, atol=1e-3)
    with pytest.raises(BackendError, match="no per-core masks; use 'auto'"):
        PoseEstimator(rk, backend="rknnlite", rknnlite_cls=cls, core_mask="0_1")
