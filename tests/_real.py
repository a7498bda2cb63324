"""Real trained models from the shared models folder, made usable by edgepose for tests.

The files are read in place (``EDGEPOSE_TEST_MODELS``, default ``../shared/models``) and never
copied into the repository. EfficientPose RT Lite carries no edgepose metadata; until
``host_tools import-onnx`` exists everywhere, :func:`stamp_efficientpose` writes a copy with the
metadata its README states (224x224 RGB, x / 127.5 - 1, 16 MPII joints, stride-1 heatmaps).
"""
from __future__ import annotations

from pathlib import Path

from conftest import MODELS, need_model

EFFICIENTPOSE = "efficientpose_rt_lite_mpii.onnx"
YOLOX_NANO = "yolox_nano.onnx"


def stamp_efficientpose(out: Path, src: Path | None = None) -> Path:
    """Write ``out``: the shared EfficientPose ONNX with edgepose metadata stamped in."""
    import onnx

    from edgepose.keypoints import MPII, flip_pairs_list
    from edgepose.metadata import METADATA_KEY, ModelMeta

    src = src or need_model(EFFICIENTPOSE)
    model = onnx.load(str(src))
    meta = ModelMeta(input_size=(224, 224), heatmap_size=(224, 224), color="rgb", mean=(127.5, 127.5, 127.5),
                     std=(127.5, 127.5, 127.5), keypoint_set="mpii", num_joints=MPII.num_joints,
                     flip_pairs=flip_pairs_list(MPII), batch=1, arch="efficientpose_rt_lite").validate()
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, meta.to_json()
    onnx.save(model, str(out))
    return out


__all__ = ["MODELS", "EFFICIENTPOSE", "YOLOX_NANO", "stamp_efficientpose"]
