"""All outputs of a multi-output model (the person detectors), behind one small interface.

The pose :class:`~edgepose.backends.Backend` hands back one heatmap tensor; a YOLO detector has
one to nine output tensors, each with its own quantization. :class:`OutputRunner` runs one
input batch and returns every output as the runtime gives it (float32, or the raw int8/uint8
of an RKNN model that keeps integer outputs); the caller pairs each integer output with its
``(scale, zero_point)`` from the sidecar. Two adapters:

* :class:`OnnxOutputs`: onnxruntime on CPU, float32 NCHW input, output shapes known at load;
* :class:`RknnLiteOutputs`: RKNNLite on the board, uint8 NHWC input (mean/std inside the model),
  the same load / init_runtime / inference / release sequence and one-line errors as the pose
  backend (:func:`edgepose.backends.rknnlite.open_runtime`). RKNNLite (2.x) returns float32
  outputs by default; its Python API has no query of the output attributes, so their shapes are
  known from the sidecar or after the first inference.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, List, Optional, Tuple, Union

import numpy as np

from . import BackendError, choose_backend

Shape = Tuple[Optional[int], ...]


class OutputRunner(ABC):
    """One loaded multi-output model. Not thread-safe (one per thread).

    Attributes:
        input_layout: ``"nchw"`` (float32 normalised) or ``"nhwc"`` (uint8 pixels).
        input_shape: the model's input shape (None entries unknown), e.g. ``(1, 3, 640, 640)``.
        output_names, output_shapes: per output, in model order (empty when unknown before a run).
    """

    name = "?"
    input_layout = "nchw"

    def __init__(self) -> None:
        self.input_shape: Shape = ()
        self.output_names: List[str] = []
        self.output_shapes: List[Shape] = []

    @abstractmethod
    def run(self, batch: np.ndarray) -> List[np.ndarray]:
        """All outputs for one batch, in model order (new arrays, safe to keep)."""

    def close(self) -> None:
        """Free the runtime (idempotent)."""

    def describe(self) -> str:
        return self.name


def _dim(d: Any) -> Optional[int]:
    return d if isinstance(d, int) and d > 0 else None


class OnnxOutputs(OutputRunner):
    """onnxruntime CPU session of a one-input ONNX model; ``run`` takes float32 NCHW."""

    name = "onnxruntime"
    input_layout = "nchw"

    def __init__(self, path: Union[str, Path], threads: int = 0, spin: bool = False) -> None:
        super().__init__()
        from .onnxruntime import make_session

        self.path = Path(path)
        self._sess = make_session(self.path, threads, spin)
        inputs = self._sess.get_inputs()
        if len(inputs) != 1:
            raise BackendError(f"{self.path}: expected one input tensor, found {len(inputs)} "
                               f"({', '.join(i.name for i in inputs)})")
        self._input = inputs[0].name
        self.input_shape = tuple(_dim(d) for d in inputs[0].shape)
        outs = self._sess.get_outputs()
        self.output_names = [o.name for o in outs]
        self.output_shapes = [tuple(_dim(d) for d in o.shape) for o in outs]

    def run(self, batch: np.ndarray) -> List[np.ndarray]:
        if self._sess is None:
            raise BackendError(f"{self.path}: onnxruntime session was closed")
        return [np.asarray(o) for o in self._sess.run(None, {self._input: batch})]

    def close(self) -> None:
        self._sess = None

    def describe(self) -> str:
        return "onnxruntime (CPU)"


class RknnLiteOutputs(OutputRunner):
    """RKNNLite runtime of a ``.rknn`` model; ``run`` takes uint8 NHWC ``(1, H, W, 3)``.

    Args:
        core_mask: NPU cores (RK3588), as for the pose backend.
        rknnlite_cls: the RKNNLite class (tests pass a double; default imports the real one).
    """

    name = "rknnlite"
    input_layout = "nhwc"

    def __init__(self, path: Union[str, Path], core_mask: Union[str, int] = "auto",
                 rknnlite_cls: Optional[type] = None) -> None:
        super().__init__()
        from .rknnlite import _import_rknnlite, open_runtime

        self.path = Path(path)
        self.core_mask = core_mask
        self._rt = open_runtime(self.path, rknnlite_cls or _import_rknnlite(), core_mask)

    def run(self, batch: np.ndarray) -> List[np.ndarray]:
        if self._rt is None:
            raise BackendError(f"{self.path}: RKNNLite runtime was released")
        if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[3] != 3:
            raise ValueError(f"batch: expected (N, H, W, 3) uint8 NHWC, got {batch.shape} {batch.dtype}")
        try:
            outs = self._rt.inference(inputs=[batch], data_format="nhwc")
        except Exception as exc:
            raise BackendError(f"{self.path}: RKNNLite.inference failed ({exc})") from None
        if not outs:
            raise BackendError(f"{self.path}: RKNNLite.inference returned no outputs (runtime error; see its log; "
                               "is the sidecar's input_size the model's?)")
        arrays = [np.array(o, copy=True) for o in outs]
        self.output_shapes = [tuple(a.shape) for a in arrays]
        return arrays

    def close(self) -> None:
        if self._rt is not None:
            rt, self._rt = self._rt, None
            rt.release()

    def describe(self) -> str:
        return f"rknnlite (NPU, core_mask {self.core_mask})"


def open_outputs(path: Union[str, Path], backend: str = "auto", **options: Any) -> OutputRunner:
    """The adapter for ``path`` (``.onnx`` -> onnxruntime, ``.rknn`` -> rknnlite).

    Options: onnxruntime ``threads``; rknnlite ``core_mask``, ``rknnlite_cls`` (a test double).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: model file not found")
    name = "rknnlite" if "rknnlite_cls" in options else choose_backend(p, backend)
    if name == "onnxruntime":
        return OnnxOutputs(p, threads=int(options.get("threads", 0)))
    return RknnLiteOutputs(p, core_mask=options.get("core_mask", "auto"), rknnlite_cls=options.get("rknnlite_cls"))
