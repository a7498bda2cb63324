"""Inference backends behind one small interface.

A backend loads a model file, says what input it wants (:class:`InputSpec`) and turns a
batch of crops into raw heatmaps (:class:`InferResult`). Everything else (crops, decode,
NMS) is the estimator's job, so a backend stays a thin adapter around a runtime.

* ``onnxruntime``: ``.onnx`` files, CPU, float32 NCHW normalised input.
* ``rknnlite``: ``.rknn`` files on a Rockchip board (``from rknnlite.api import RKNNLite``),
  uint8 NHWC input (mean/std are inside the RKNN model).

:func:`create_backend` picks one by file type and what is installed (``backend="auto"``).
"""
from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Tuple

import numpy as np

from ..metadata import ModelMeta

BACKENDS = ("auto", "onnxruntime", "rknnlite")


class BackendError(RuntimeError):
    """A runtime failed to load or run a model (message names the step and the fix)."""


@dataclass(frozen=True)
class InputSpec:
    """What a backend's ``infer`` takes.

    Attributes:
        layout: ``"nchw"`` (float32, normalised) or ``"nhwc"`` (uint8 pixels).
        dtype: numpy dtype of the batch.
        batch: fixed batch size, or 0 when the model accepts any batch.
        size: model input ``(w, h)`` in pixels.
    """

    layout: str
    dtype: Any
    batch: int
    size: Tuple[int, int]


@dataclass
class InferResult:
    """Raw model output: ``heatmaps (N, K, Hh, Wh)`` float32, or int8/uint8 with ``scale`` and
    ``zero_point`` (real = (q - zero_point) * scale) for the decode kernel to use directly."""

    heatmaps: np.ndarray
    scale: Optional[float] = None
    zero_point: Optional[int] = None


class Backend(ABC):
    """One loaded model. Not thread-safe: use one backend (one estimator) per thread."""

    name: str = "?"

    @abstractmethod
    def load(self, path: str | Path) -> ModelMeta:
        """Load the model file and return its metadata (raises BackendError / MetadataError)."""

    @property
    @abstractmethod
    def input_spec(self) -> InputSpec:
        """The input this backend expects (valid after :meth:`load`)."""

    @abstractmethod
    def infer(self, batch: np.ndarray) -> InferResult:
        """Run one batch shaped as :attr:`input_spec` says; returns ``(N, K, Hh, Wh)`` maps."""

    def close(self) -> None:
        """Free the runtime's resources (idempotent)."""

    def describe(self) -> str:
        """One line for ``edgepose info`` and the status line."""
        return self.name

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def installed(name: str) -> bool:
    """Whether the runtime module behind backend ``name`` can be imported here."""
    module = {"onnxruntime": "onnxruntime", "rknnlite": "rknnlite"}[name]
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def choose_backend(path: str | Path, backend: str = "auto") -> str:
    """Backend name for ``path``: ``.rknn`` -> rknnlite, ``.onnx`` -> onnxruntime."""
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")
    suffix = Path(path).suffix.lower()
    wanted = {".onnx": "onnxruntime", ".rknn": "rknnlite"}.get(suffix)
    if backend == "auto":
        if wanted is None:
            raise ValueError(f"{path}: unknown model type {suffix!r}; expected a .onnx or .rknn file")
        backend = wanted
    elif wanted is not None and wanted != backend:
        raise ValueError(f"{path}: a {suffix} file cannot run on backend {backend!r}; use backend={wanted!r}")
    if not installed(backend):
        hint = {
            "onnxruntime": "pip install onnxruntime",
            "rknnlite": "on the board: pip install rknn-toolkit-lite2 (aarch64 wheel, see docs/RUNTIME.md); "
                        "on a PC run the .onnx model instead",
        }[backend]
        raise BackendError(f"backend {backend}: its runtime is not installed here ({hint})")
    return backend


def create_backend(path: str | Path, backend: str = "auto", **options: Any) -> Backend:
    """Create and load the backend for ``path``.

    Args:
        path: ``.onnx`` or ``.rknn`` model file.
        backend: ``"auto"``, ``"onnxruntime"`` or ``"rknnlite"``.
        options: backend specific (onnxruntime: ``threads``; rknnlite: ``core_mask``,
            ``rknnlite_cls`` for a test double).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: model file not found")
    name = choose_backend(p, backend) if "rknnlite_cls" not in options else "rknnlite"
    if name == "onnxruntime":
        from .onnxruntime import OnnxRuntimeBackend

        b: Backend = OnnxRuntimeBackend(**options)
    else:
        from .rknnlite import RknnLiteBackend

        b = RknnLiteBackend(**options)
    b.load(p)
    return b


__all__ = ["BACKENDS", "Backend", "BackendError", "InferResult", "InputSpec", "choose_backend",
           "create_backend", "installed"]
