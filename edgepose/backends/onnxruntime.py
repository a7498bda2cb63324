"""onnxruntime backend (CPU): float32 NCHW normalised crops in, float32 heatmaps out."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import numpy as np

from ..metadata import MetadataError, ModelMeta
from . import Backend, BackendError, InferResult, InputSpec


def _dim(d) -> Optional[int]:
    """A concrete ONNX dimension, or None when symbolic/unknown."""
    return d if isinstance(d, int) and d > 0 else None


def make_session(path: Path, threads: int = 0, spin: bool = False):
    """A CPU ``onnxruntime.InferenceSession`` for ``path`` (quiet log; ``threads`` 0 = its default;
    ``spin`` see :class:`OnnxRuntimeBackend`); an unreadable model is one :class:`BackendError`."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads > 0:
        opts.intra_op_num_threads = int(threads)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise BackendError(f"{path}: onnxruntime cannot load it ({str(exc).splitlines()[0]})") from None


class OnnxRuntimeBackend(Backend):
    """Runs an edgepose ONNX export (input ``(B, 3, H, W)``, output ``(B, K, Hh, Wh)``).

    Args:
        threads: intra-op threads for onnxruntime (0 = its default).
        spin: let onnxruntime's worker threads spin-wait after a run (its default). Off here:
            the spinning threads steal the cores from the warp/decode/draw work that follows
            each inference (measured on 2 shared cores: PoseResNet-18 infer 109 -> 64 ms).
    """

    name = "onnxruntime"

    def __init__(self, threads: int = 0, spin: bool = False) -> None:
        self.threads = int(threads)
        self.spin = bool(spin)
        self._sess = None
        self._spec: Optional[InputSpec] = None
        self._input_name = ""
        self.meta: Optional[ModelMeta] = None
        self.output_shape: List[Optional[int]] = []

    def load(self, path: str | Path) -> ModelMeta:
        path = Path(path)
        sess = make_session(path, self.threads, self.spin)
        props = dict(sess.get_modelmeta().custom_metadata_map)
        if "edgepose" not in props:
            raise MetadataError(f"{path}: no edgepose metadata in the ONNX file; export it with host_tools export-onnx, "
                                "or stamp a foreign model with host_tools import-onnx (docs/IMPORT.md)")
        meta = ModelMeta.from_json(props["edgepose"])
        inputs, outputs = sess.get_inputs(), sess.get_outputs()
        if len(inputs) != 1 or len(outputs) < 1:
            raise MetadataError(f"{path}: expected 1 input and >= 1 output, got {len(inputs)} and {len(outputs)}")
        ishape = list(inputs[0].shape)
        oshape = list(outputs[0].shape)
        if len(ishape) != 4 or len(oshape) != 4:
            raise MetadataError(f"{path}: expected 4-d input and output, got {ishape} and {oshape}")
        w, h = meta.input_size
        if meta.layout != "nchw":
            raise MetadataError(f"{path}: metadata layout {meta.layout!r} but an ONNX model takes NCHW float input")
        if [_dim(d) for d in ishape[1:]] != [3, h, w]:
            raise MetadataError(f"{path}: model input {ishape} does not match metadata input_size (w, h)={meta.input_size}: "
                                f"expected [B, 3, {h}, {w}]; re-export the model")
        hw, hh = meta.heatmap_size
        expect = [meta.num_joints, hh, hw]
        got = [_dim(d) for d in oshape[1:]]
        if any(g is not None and g != e for g, e in zip(got, expect)):
            raise MetadataError(f"{path}: model output {oshape} does not match metadata (num_joints, heatmap h, w)="
                                f"{tuple(expect)}; re-export the model")
        fixed = _dim(ishape[0])
        if fixed is not None and meta.batch not in (0, fixed):
            raise MetadataError(f"{path}: model batch {fixed} but metadata batch {meta.batch}")
        self._sess = sess
        self._input_name = inputs[0].name
        self.output_shape = [_dim(d) for d in oshape]
        self._spec = InputSpec("nchw", np.float32, fixed or 0, (w, h))
        self.meta = meta
        return meta

    @property
    def input_spec(self) -> InputSpec:
        if self._spec is None:
            raise BackendError("onnxruntime backend: load() a model first")
        return self._spec

    def infer(self, batch: np.ndarray) -> InferResult:
        if self._sess is None:
            raise BackendError("onnxruntime backend: load() a model first (or it was closed)")
        out = self._sess.run(None, {self._input_name: batch})[0]
        if out.dtype != np.float32:
            out = out.astype(np.float32)
        return InferResult(np.ascontiguousarray(out))

    def close(self) -> None:
        self._sess = None

    def describe(self) -> str:
        b = self._spec.batch if self._spec else "?"
        return f"onnxruntime (CPU, batch {'dynamic' if b == 0 else b})"
