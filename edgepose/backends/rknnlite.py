"""RKNNLite backend for Rockchip boards (rknn-toolkit-lite2, ``from rknnlite.api import RKNNLite``).

The call sequence is the board's (rknn-toolkit-lite2 2.x): ``RKNNLite()`` -> ``load_rknn(path)`` -> ``init_runtime(core_mask=..)``
-> ``inference(inputs=[nhwc uint8], data_format='nhwc')`` per batch -> ``release()``. Each of
the first two returns 0 on success; anything else (or an exception, e.g. ``Please specify the
target in init_runtime!`` off the board) becomes one :class:`BackendError` naming the step.

RKNNLite 2.x returns float32 outputs (its C runtime dequantizes); with ``reuse_outputs`` (2.5)
they are views of buffers that the next call overwrites, so :meth:`infer` results are only
valid until the next call (the estimator copies what it keeps). When a runtime hands back
int8/uint8 outputs instead, they are passed on with the sidecar's ``output_scale`` /
``output_zero_point`` for the decode kernel, never dequantized in Python.
"""
from __future__ import annotations

import contextlib
import inspect
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from ..metadata import MetadataError, ModelMeta, read_sidecar
from . import Backend, BackendError, InferResult, InputSpec

CORE_MASKS = ("auto", "0", "1", "2", "0_1", "0_1_2", "all")


@contextlib.contextmanager
def _captured_native_output(sink: list):
    """Hold what RKNNLite prints (its ``E ...`` tracebacks go straight to fds 1/2) so that a
    failure is reported as one line; the last lines are appended to ``sink``."""
    try:
        fds = (sys.stdout.fileno(), sys.stderr.fileno())
    except (AttributeError, ValueError, OSError):  # no real fds (e.g. pytest capture)
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        saved = [os.dup(fd) for fd in fds]
        try:
            for fd in fds:
                os.dup2(tmp.fileno(), fd)
            yield
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            for fd, old in zip(fds, saved):
                os.dup2(old, fd)
                os.close(old)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", "replace")
            sink.extend(ln.strip() for ln in text.splitlines() if ln.strip())


def _why(lines: list) -> str:
    """The most telling line of RKNNLite's output (its final exception), or ''."""
    for ln in reversed(lines):
        if ln.startswith(("Exception:", "E ")) and "Traceback" not in ln and "Catch exception" not in ln:
            return (ln[2:] if ln.startswith("E ") else ln).strip()
    return ""


def _import_rknnlite():
    try:
        from rknnlite.api import RKNNLite  # the board's runtime
    except ImportError as exc:
        raise BackendError(f"rknnlite is not installed ({exc}); on the board: pip install rknn-toolkit-lite2") from None
    return RKNNLite


def core_mask_value(cls: Any, core_mask: Union[str, int]) -> int:
    """``"auto"``, ``"0"``, ``"1"``, ``"2"``, ``"0_1"``, ``"0_1_2"``, ``"all"`` (or an int) -> the
    ``RKNNLite.NPU_CORE_*`` constant."""
    if isinstance(core_mask, int):
        return core_mask
    key = str(core_mask).strip().lower()
    if key not in CORE_MASKS:
        raise ValueError(f"core_mask: expected one of {CORE_MASKS}, got {core_mask!r}")
    attr = "NPU_CORE_" + key.upper()
    if not hasattr(cls, attr):
        raise BackendError(f"core_mask {key}: this rknnlite has no {attr}; use 'auto'")
    return int(getattr(cls, attr))


CORE_AUTO_INT = 0  # RKNNLite.NPU_CORE_AUTO in toolkit-lite2


def _takes_core_mask(cls: Any) -> bool:
    """toolkit-lite2's ``init_runtime`` takes ``core_mask``; toolkit-lite 1.x's (RK1808, RV1109/RV1126)
    does not and has no ``NPU_CORE_*`` constants."""
    try:
        params = inspect.signature(cls.init_runtime).parameters
    except (TypeError, ValueError, AttributeError):
        return hasattr(cls, "NPU_CORE_AUTO")
    if "core_mask" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return True
    return False


def open_runtime(path: Path, cls: Any, core_mask: Union[str, int] = "auto") -> Any:
    """``cls()`` -> ``load_rknn(path)`` -> ``init_runtime(core_mask=..)``; the loaded runtime, or one
    :class:`BackendError` line naming the failed step (shared by the pose and detector adapters)."""
    per_core = _takes_core_mask(cls)
    if per_core:
        mask = core_mask_value(cls, core_mask)
    elif str(core_mask).strip().lower() not in ("auto", str(CORE_AUTO_INT)):
        raise BackendError(f"core_mask {core_mask}: this rknnlite (toolkit-lite 1.x, RK1808/RV1109/RV1126) has no "
                           "per-core masks; use 'auto'")
    noise: list = []
    try:
        with _captured_native_output(noise):  # the constructor prints its version banner
            rt = cls()
            ret = rt.load_rknn(str(path))
    except Exception as exc:
        raise BackendError(f"{path}: RKNNLite.load_rknn failed ({exc})") from None
    if ret != 0:
        raise BackendError(f"{path}: RKNNLite.load_rknn returned {ret}; is it an .rknn file built for this toolkit?"
                           + (f" ({_why(noise)})" if _why(noise) else ""))
    try:
        with _captured_native_output(noise):
            ret = rt.init_runtime(core_mask=mask) if per_core else rt.init_runtime()
    except Exception as exc:
        rt.release()
        raise BackendError(f"{path}: RKNNLite.init_runtime failed ({exc}); run on the board with its NPU driver "
                           "(on a PC use the .onnx model)") from None
    if ret != 0:
        rt.release()
        why = _why(noise)
        raise BackendError(f"{path}: RKNNLite.init_runtime returned {ret} (core_mask={core_mask})"
                           + (f": {why}" if why else "")
                           + "; is this a Rockchip board with the NPU driver loaded (dmesg | grep -i rknpu)?")
    return rt


class RknnLiteBackend(Backend):
    """Runs a ``.rknn`` model with its ``.rknn.json`` sidecar on the NPU.

    Args:
        core_mask: NPU cores (RK3588): ``"auto"`` or ``"0"``, ``"1"``, ``"2"``, ``"0_1"``, ``"0_1_2"``.
        rknnlite_cls: the RKNNLite class (tests pass a double; default imports the real one).
    """

    name = "rknnlite"

    def __init__(self, core_mask: Union[str, int] = "auto", rknnlite_cls: Optional[type] = None) -> None:
        self.core_mask = core_mask
        self._cls = rknnlite_cls
        self._rt: Any = None
        self.reuse_outputs = False
        self._spec: Optional[InputSpec] = None
        self.meta: Optional[ModelMeta] = None

    def load(self, path: str | Path) -> ModelMeta:
        path = Path(path)
        meta = read_sidecar(path)
        if meta.layout != "nhwc":
            raise MetadataError(f"{path}: sidecar layout {meta.layout!r}; an RKNN model takes NHWC uint8 input "
                                "(rebuild with host_tools build-rknn)")
        # An int8 model without output_scale in its sidecar is fine as long as the runtime
        # hands back float32 (RKNNLite's default); integer outputs without it fail in infer().
        rt = open_runtime(path, self._cls or _import_rknnlite(), self.core_mask)
        self._rt = rt
        # lite2 >= 2.5 can hand back views of its staging buffers instead of new arrays;
        # the estimator copies chunk results before the next call, so that is safe here
        try:
            self.reuse_outputs = "reuse_outputs" in inspect.signature(rt.inference).parameters
        except (TypeError, ValueError):
            self.reuse_outputs = False
        self._spec = InputSpec("nhwc", np.uint8, meta.batch or 1, meta.input_size)
        self.meta = meta
        return meta

    @property
    def input_spec(self) -> InputSpec:
        if self._spec is None:
            raise BackendError("rknnlite backend: load() a model first")
        return self._spec

    def infer(self, batch: np.ndarray) -> InferResult:
        if self._rt is None or self.meta is None:
            raise BackendError("rknnlite backend: load() a model first (or it was released)")
        if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[3] != 3:
            raise ValueError(f"batch: expected (N, H, W, 3) uint8 NHWC, got {batch.shape} {batch.dtype}")
        try:
            kw = {"reuse_outputs": True} if self.reuse_outputs else {}
            outs = self._rt.inference(inputs=[batch], data_format="nhwc", **kw)
        except Exception as exc:
            raise BackendError(f"RKNNLite.inference failed ({exc})") from None
        if outs is None or len(outs) < 1:
            raise BackendError("RKNNLite.inference returned no outputs (runtime error; see its log above)")
        out = np.asarray(outs[0])
        k = self.meta.num_joints
        hw, hh = self.meta.heatmap_size
        expect = (batch.shape[0], k, hh, hw)
        if out.size != int(np.prod(expect)):
            raise MetadataError(f"RKNN output shape {out.shape} does not match the sidecar {expect} "
                                "(num_joints, heatmap_size); rebuild the model and sidecar together")
        out = out.reshape(expect)
        if out.dtype in (np.int8, np.uint8):
            if not self.meta.output_scale > 0:
                raise MetadataError(f"RKNN output is {out.dtype} but the sidecar has no output_scale; add the "
                                    "output's scale/zero point to the sidecar (output_scale, output_zero_point)")
            return InferResult(np.ascontiguousarray(out), self.meta.output_scale, self.meta.output_zero_point)
        if out.dtype.kind in "iu":
            # wider integers (int16 builds) have no decode kernel: dequantize here, the one exception
            if not self.meta.output_scale > 0:
                raise MetadataError(f"RKNN output is {out.dtype} but the sidecar has no output_scale")
            out = ((out.astype(np.float32) - self.meta.output_zero_point) * np.float32(self.meta.output_scale))
        elif out.dtype != np.float32:
            out = out.astype(np.float32)
        return InferResult(np.ascontiguousarray(out))

    def close(self) -> None:
        if self._rt is not None:
            rt, self._rt = self._rt, None
            rt.release()

    def describe(self) -> str:
        tgt = self.meta.target if self.meta and self.meta.target else "?"
        return f"rknnlite (NPU {tgt}, core_mask {self.core_mask}, batch {self._spec.batch if self._spec else '?'})"
