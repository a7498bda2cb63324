"""Real trained models from the shared models folder, made usable by edgepose for tests.

The files are read in place (``EDGEPOSE_TEST_MODELS``, default ``../shared/models``) and never
copied into the repository. EfficientPose RT Lite carries no edgepose metadata;
:func:`stamp_efficientpose` writes a copy through ``host_tools import-onnx`` with what its README
states (224x224 RGB, x / 127.5 - 1, 16 MPII joints; the stride-1 heatmaps are read from the model).
"""
from __future__ import annotations

from pathlib import Path

from conftest import MODELS, need_model

EFFICIENTPOSE = "efficientpose_rt_lite_mpii.onnx"
YOLOX_NANO = "yolox_nano.onnx"


def stamp_efficientpose(out: Path, src: Path | None = None) -> Path:
    """Write ``out``: the shared EfficientPose ONNX with edgepose metadata stamped in, through
    ``host_tools import-onnx`` (the command of docs/IMPORT.md)."""
    from host_tools.import_onnx import EFFICIENTPOSE_SPEC, import_onnx

    src = src or need_model(EFFICIENTPOSE)
    return import_onnx(src, out, EFFICIENTPOSE_SPEC, force=True, log=lambda line: None).path


__all__ = ["MODELS", "EFFICIENTPOSE", "YOLOX_NANO", "stamp_efficientpose"]
