"""Model metadata: what a runtime must know about a model, carried inside the model file.

Written by ``host_tools export-onnx`` into the ONNX ``metadata_props`` (key ``edgepose``, a
JSON string) and by ``host_tools build-rknn`` into the ``model.rknn.json`` sidecar, so no
device ever needs a hand-written config. Both carry the same JSON object.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

METADATA_KEY = "edgepose"
SCHEMA_VERSION = 1
SIDECAR_SUFFIX = ".json"  # model.rknn -> model.rknn.json

IMAGENET_MEAN_RGB = (123.675, 116.28, 103.53)
IMAGENET_STD_RGB = (58.395, 57.12, 57.375)


class MetadataError(ValueError):
    """Metadata missing, malformed or inconsistent with the model."""


@dataclass
class ModelMeta:
    """Everything a runtime needs to feed a pose model and read its output.

    Attributes:
        input_size: model input ``(w, h)`` pixels.
        heatmap_size: output heatmap ``(w, h)`` pixels.
        color: ``"rgb"`` or ``"bgr"``: the channel order the network was trained on
            (frames are BGR; ``"rgb"`` means the runtime swaps).
        mean, std: per-channel normalisation in that channel order, 0..255 scale.
        keypoint_set: ``"coco"``, ``"mpii"`` ...
        num_joints: K.
        flip_pairs: (left, right) joint pairs for the flip test.
        batch: fixed batch size of the model input, or 0 when dynamic.
        layout: ``"nchw"`` float input (ONNX) or ``"nhwc"`` uint8 (RKNN with mean/std inside).
        quantized: output dtype of the model (``"float32"``, ``"int8"``, ``"uint8"``, ``"float16"``).
        target: RKNN target platform, or ``""``.
        output_scale, output_zero_point: quantization of an int8/uint8 output
            (real = (q - zero_point) * scale); 0 / 0 when the output is float.
        source_config: the training config (dict) the model came from, for the record.
        build: how an RKNN model was built (target, dtype, algorithm, method, calibration list,
            ...), written by ``host_tools build-rknn``; empty for ONNX models.
    """

    input_size: Tuple[int, int] = (192, 256)
    heatmap_size: Tuple[int, int] = (48, 64)
    color: str = "rgb"
    mean: Tuple[float, float, float] = IMAGENET_MEAN_RGB
    std: Tuple[float, float, float] = IMAGENET_STD_RGB
    keypoint_set: str = "coco"
    num_joints: int = 17
    flip_pairs: List[List[int]] = field(default_factory=list)
    batch: int = 1
    layout: str = "nchw"
    quantized: str = "float32"
    target: str = ""
    arch: str = ""
    output_scale: float = 0.0
    output_zero_point: int = 0
    source_config: Dict[str, Any] = field(default_factory=dict)
    build: Dict[str, Any] = field(default_factory=dict)
    schema: int = SCHEMA_VERSION

    def validate(self) -> "ModelMeta":
        def pair(name: str, v: Sequence) -> Tuple[int, int]:
            if len(v) != 2 or int(v[0]) <= 0 or int(v[1]) <= 0:
                raise MetadataError(f"metadata {name}: expected (w, h) > 0, got {v}")
            return int(v[0]), int(v[1])

        self.input_size = pair("input_size", self.input_size)
        self.heatmap_size = pair("heatmap_size", self.heatmap_size)
        if self.color not in ("rgb", "bgr"):
            raise MetadataError(f"metadata color: expected 'rgb' or 'bgr', got {self.color!r}")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise MetadataError(f"metadata mean/std: expected 3 values each, got {len(self.mean)} and {len(self.std)}")
        if any(float(s) == 0 for s in self.std):
            raise MetadataError("metadata std: values must be non-zero")
        self.mean = tuple(float(v) for v in self.mean)
        self.std = tuple(float(v) for v in self.std)
        if self.num_joints <= 0:
            raise MetadataError(f"metadata num_joints: must be > 0, got {self.num_joints}")
        for p in self.flip_pairs:
            if len(p) != 2 or not all(0 <= int(j) < self.num_joints for j in p):
                raise MetadataError(f"metadata flip_pairs: pair {p} out of range for {self.num_joints} joints")
        if self.layout not in ("nchw", "nhwc"):
            raise MetadataError(f"metadata layout: expected 'nchw' or 'nhwc', got {self.layout!r}")
        if not float(self.output_scale) >= 0:
            raise MetadataError(f"metadata output_scale: must be >= 0, got {self.output_scale}")
        self.output_scale = float(self.output_scale)
        self.output_zero_point = int(self.output_zero_point)
        if self.batch < 0:
            raise MetadataError(f"metadata batch: must be >= 0, got {self.batch}")
        return self

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        d["heatmap_size"] = list(self.heatmap_size)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "ModelMeta":
        if not isinstance(d, dict):
            raise MetadataError("metadata: expected a JSON object")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise MetadataError(f"metadata: unknown keys {unknown} (written by a newer edgepose?)")
        kw = dict(d)
        for key in ("input_size", "heatmap_size", "mean", "std"):
            if key in kw:
                kw[key] = tuple(kw[key])
        return cls(**kw).validate()

    @classmethod
    def from_json(cls, text: str) -> "ModelMeta":
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise MetadataError(f"metadata: not valid JSON ({exc})") from None


def sidecar_path(model_path: str | Path) -> Path:
    """``model.rknn`` -> ``model.rknn.json``."""
    p = Path(model_path)
    return p.with_name(p.name + SIDECAR_SUFFIX)


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_sidecar(model_path: str | Path, meta: ModelMeta) -> Path:
    """Write ``model.rknn.json``; when the model file exists, its size and sha256 go into
    ``build`` (``model_bytes``, ``model_sha256``) so that a sidecar beside another model is
    caught by :func:`read_sidecar`. Written to a temporary file first, then renamed."""
    path = sidecar_path(model_path)
    model = Path(model_path)
    if model.is_file():
        meta.build = {**(meta.build or {}), "model_bytes": model.stat().st_size, "model_sha256": file_sha256(model)}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(meta.to_dict(), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def read_sidecar(model_path: str | Path, check_model: bool = True) -> ModelMeta:
    """The sidecar of ``model_path``; MetadataError (one line naming the file and the fix) when
    it is missing, truncated or malformed, or (``check_model``) records another model file."""
    path = sidecar_path(model_path)
    if not path.is_file():
        raise MetadataError(f"{path}: metadata sidecar missing; rebuild with host_tools build-rknn, which writes it "
                            "beside the .rknn, and copy both to the board")
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        meta = ModelMeta.from_json(text)
    except MetadataError as exc:
        why = "empty" if not text.strip() else ("truncated" if not text.rstrip().endswith("}") else "malformed")
        raise MetadataError(f"{path}: metadata sidecar is {why} ({exc}); copy it again from the host, "
                            "or rebuild with host_tools build-rknn") from None
    want = (meta.build or {}).get("model_sha256")
    model = Path(model_path)
    if check_model and want and model.is_file():
        size = (meta.build or {}).get("model_bytes")
        if (size is not None and model.stat().st_size != size) or file_sha256(model) != want:
            raise MetadataError(f"{path}: this sidecar belongs to another model (it records a {size}-byte file with "
                                f"sha256 {want[:12]}..., {model.name} is {model.stat().st_size} bytes); copy the "
                                ".rknn and its .rknn.json together from the same build")
    return meta


def read_onnx_metadata(model_path: str | Path) -> Optional[ModelMeta]:
    """Metadata from an ONNX file's ``metadata_props`` (via onnxruntime, or onnx), or None."""
    props: Dict[str, str] = {}
    try:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        sess = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
        props = dict(sess.get_modelmeta().custom_metadata_map)
    except ImportError:
        import onnx

        model = onnx.load(str(model_path), load_external_data=False)
        props = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY not in props:
        return None
    return ModelMeta.from_json(props[METADATA_KEY])
