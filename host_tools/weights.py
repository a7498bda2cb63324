"""Weights from every common source, mapped onto PoseResNet's names and checked on shapes.

Layouts understood (after any DataParallel ``module.`` prefix is removed):

* **edgepose / original**: ``conv1, bn1, layer1..4, deconv_layers.{0,1,3,4,...}, final_layer``
  (the original project's ``pose_resnet_*.pth.tar`` carry ``module.``; host_tools files do not).
* **mmpose 1.x** top-down heatmap models (``TopdownPoseEstimator`` + ``ResNet`` + ``HeatmapHead``):
  ``backbone.<torchvision names>``, ``head.deconv_layers.*``, ``head.final_layer.*``, wrapped as
  ``{"meta": {...}, "state_dict": ...}``. ``meta["cfg"]`` is the config text, from which the
  input colour order, mean/std (``data_preprocessor``) and the codec are read.
* **mmpose 0.x** (``TopDown`` + ``TopdownHeatmapSimpleHead``): ``backbone.*``, ``keypoint_head.*``;
  ``meta["config"]`` holds the config text (``NormalizeTensor`` mean/std, ``use_udp``).
* **torchvision / timm** ImageNet ResNets: ``conv1, bn1, layer1..4`` (+ ``fc.*``, ignored), bare or
  inside timm's training wrapper (``state_dict`` / ``state_dict_ema``, ``arch``), ``.pth`` or
  ``.safetensors``.

Deep-stem variants (mmpose ``ResNetV1c/V1d`` ``backbone.stem.*``, timm ``resnet*d`` ``conv1.0``)
and heads with extra conv layers are refused with one line naming them.
"""
from __future__ import annotations

import ast
import json
import pickle
import re
import sys
import types
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch

from edgepose.metadata import IMAGENET_MEAN_RGB, IMAGENET_STD_RGB
from host_tools.errors import UserError

BLOCKS_TO_DEPTH = {((2, 2, 2, 2), False): 18, ((3, 4, 6, 3), False): 34, ((3, 4, 6, 3), True): 50,
                   ((3, 4, 23, 3), True): 101, ((3, 8, 36, 3), True): 152}
MMPOSE_DEFAULT = "RGB input (bgr_to_rgb=True), mean [123.675, 116.28, 103.53], std [58.395, 57.12, 57.375], MSRAHeatmap codec"


@dataclass
class Conventions:
    """How a checkpoint's network was fed and supervised.

    Attributes:
        color: ``"rgb"`` or ``"bgr"``, the channel order of the network input.
        mean, std: per-channel normalisation in that order, 0..255 scale.
        codec: heatmap codec (``"MSRAHeatmap"``, ``"UDPHeatmap"``, ...).
        unbiased: the MSRA codec's DARK (unbiased) decoding was configured.
        input_size: ``(w, h)`` the codec was configured for, if recorded.
        recorded: True when read from the file, False when assumed.
        source: where they were read from (``"meta cfg"``, ``"edgepose config"``) or what was assumed.
    """

    color: str = "rgb"
    mean: Tuple[float, float, float] = IMAGENET_MEAN_RGB
    std: Tuple[float, float, float] = IMAGENET_STD_RGB
    codec: str = "MSRAHeatmap"
    unbiased: bool = False
    input_size: Optional[Tuple[int, int]] = None
    recorded: bool = False
    source: str = ""
    assumed: List[str] = field(default_factory=list)
    caffe_style: bool = False

    def text(self) -> str:
        m = ", ".join(f"{v:g}" for v in self.mean)
        s = ", ".join(f"{v:g}" for v in self.std)
        extra = " (unbiased/DARK)" if self.unbiased else ""
        size = f", input {self.input_size[0]}x{self.input_size[1]}" if self.input_size else ""
        return f"{self.color.upper()} input, mean [{m}], std [{s}], codec {self.codec}{extra}{size}"


@dataclass
class WeightsInfo:
    """What a weights file holds, with its tensors renamed to PoseResNet's keys.

    Attributes:
        path: the file (or a label for an in-memory checkpoint).
        source: ``"edgepose"``, ``"original"``, ``"mmpose"``, ``"torchvision"`` or ``"timm"``.
        layout: one line naming the key layout that was recognised.
        state: the tensors under PoseResNet names (``fc.*`` of classifiers dropped).
        depth / blocks / bottleneck: the ResNet found (None when unknown).
        deconv: ``[(filters, kernel), ...]`` per transposed-conv stage; ``deconv_bias``.
        num_joints / final_kernel: the last conv (None for a backbone-only file).
        conventions: what the file records (or None when the layout implies nothing).
        dataset: ``dataset_meta['dataset_name']`` of an mmpose file, if any.
        notes: extra lines for ``inspect-weights``.
    """

    path: str
    source: str
    layout: str
    state: Dict[str, torch.Tensor]
    depth: Optional[int] = None
    blocks: Tuple[int, ...] = ()
    bottleneck: bool = False
    deconv: List[Tuple[int, int]] = field(default_factory=list)
    deconv_bias: bool = False
    num_joints: Optional[int] = None
    final_kernel: Optional[int] = None
    conventions: Optional[Conventions] = None
    dataset: str = ""
    notes: List[str] = field(default_factory=list)

    @property
    def has_head(self) -> bool:
        return self.num_joints is not None

    def arch_text(self) -> str:
        """``ResNet-50 (Bottleneck, blocks 3-4-6-3)``."""
        if not self.blocks:
            return "no ResNet backbone found"
        name = f"ResNet-{self.depth}" if self.depth else "an unknown ResNet"
        kind = "Bottleneck" if self.bottleneck else "BasicBlock"
        return f"{name} ({kind}, blocks {'-'.join(str(b) for b in self.blocks)})"

    def head_text(self) -> str:
        if not self.has_head:
            return "none (backbone only)"
        stages = (f"{len(self.deconv)} deconv stages {'/'.join(str(f) for f, _ in self.deconv)}, kernels "
                  f"{'/'.join(str(k) for _, k in self.deconv)}, {'with' if self.deconv_bias else 'no'} bias; "
                  if self.deconv else "no deconv stages; ")
        return stages + f"final conv {self.final_kernel}x{self.final_kernel} -> {self.num_joints} joints"

    def config_overrides(self) -> List[str]:
        """``KEY=value`` settings under which PoseResNet has exactly this file's shapes."""
        out = []
        if self.depth:
            out.append(f"MODEL.EXTRA.NUM_LAYERS={self.depth}")
        if self.has_head:
            out += [f"MODEL.NUM_JOINTS={self.num_joints}", f"MODEL.EXTRA.NUM_DECONV_LAYERS={len(self.deconv)}",
                    f"MODEL.EXTRA.NUM_DECONV_FILTERS=[{','.join(str(f) for f, _ in self.deconv)}]",
                    f"MODEL.EXTRA.NUM_DECONV_KERNELS=[{','.join(str(k) for _, k in self.deconv)}]",
                    f"MODEL.EXTRA.FINAL_CONV_KERNEL={self.final_kernel}",
                    f"MODEL.EXTRA.DECONV_WITH_BIAS={'true' if self.deconv_bias else 'false'}"]
        return out


# ---------------------------------------------------------------------------------- reading


class _Placeholder:
    """Stands in for a pickled object whose class is not installed (mmengine's HistoryBuffer in
    a checkpoint's ``message_hub``): keeps its state, is never used for weights."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _LenientUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError):
            return type(name, (_Placeholder,), {"__module__": module})


_lenient_pickle = types.SimpleNamespace(Unpickler=_LenientUnpickler, load=pickle.load, __name__="pickle")

_ST_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
              "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
              "BOOL": torch.bool}


def read_safetensors(path: Path) -> Dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file (8-byte little-endian header size, JSON header, raw data),
    read without the safetensors package."""
    data = path.read_bytes()
    try:
        n = int.from_bytes(data[:8], "little")
        header = json.loads(data[8:8 + n])
    except (ValueError, UnicodeDecodeError):
        raise UserError(f"checkpoint {path}: not a valid .safetensors file (bad header)") from None
    base = 8 + n
    out: Dict[str, torch.Tensor] = OrderedDict()
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        dtype = _ST_DTYPES.get(spec.get("dtype"))
        if dtype is None:
            raise UserError(f"checkpoint {path}: tensor {name} has dtype {spec.get('dtype')}, which edgepose does not read")
        start, end = spec["data_offsets"]
        buf = bytearray(data[base + start:base + end])
        t = torch.frombuffer(buf, dtype=dtype) if buf else torch.empty(0, dtype=dtype)
        out[name] = t.reshape(spec["shape"])
    return out


def load_file(path: Union[str, Path]) -> Any:
    """The object in a weights file: ``torch.load`` (``weights_only`` first; then the full
    unpickler with classes that are not installed, e.g. mmengine's, replaced by placeholders)
    or a ``.safetensors`` reader. Raises UserError (one line) when missing or unreadable."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"checkpoint {p} not found (give a .pth/.pth.tar/.safetensors weights file)")
    if p.suffix == ".safetensors":
        return read_safetensors(p)
    try:
        return torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:
        if "weights_only" not in str(exc) and "Unsupported" not in str(exc):
            raise UserError(f"checkpoint {p} cannot be read by torch.load ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})") from None
    try:
        return torch.load(str(p), map_location="cpu", weights_only=False, pickle_module=_lenient_pickle)
    except Exception as exc:
        raise UserError(f"checkpoint {p} cannot be read by torch.load ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})") from None


def _tensor_dict(obj: Any) -> Optional[Dict[str, torch.Tensor]]:
    if isinstance(obj, Mapping) and obj and all(torch.is_tensor(v) for v in obj.values()):
        return dict(obj)
    return None


def unwrap(obj: Any, label: str) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    """``(tensors, wrapper)``: the state_dict inside a checkpoint object (bare, or under
    ``state_dict`` / ``model`` / ``model_state`` / timm's ``state_dict_ema``) and the wrapper dict
    (``meta``, ``config``, ``arch`` ...; empty for a bare state_dict)."""
    bare = _tensor_dict(obj)
    if bare is not None:
        return bare, {}
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "model_state", "state_dict_ema"):
            inner = _tensor_dict(obj.get(key))
            if inner is not None:
                return inner, dict(obj)
    raise UserError(f"checkpoint {label}: no state_dict inside (expected a dict of tensors or a dict with 'state_dict')")


# ------------------------------------------------------------------------------- layouts


def _strip(state: Mapping[str, torch.Tensor], prefix: str) -> Dict[str, torch.Tensor]:
    return OrderedDict((k[len(prefix):] if k.startswith(prefix) else k, v) for k, v in state.items())


def _refuse_variants(state: Mapping[str, torch.Tensor], label: str, prefix: str) -> None:
    keys = list(state)
    if any(k.startswith(prefix + "stem.") for k in keys):
        raise UserError(f"checkpoint {label}: an mmpose ResNetV1c/V1d backbone (deep stem, {prefix}stem.*): edgepose's "
                        "PoseResNet has the plain 7x7 ResNet stem; use a checkpoint with backbone type 'ResNet'")
    if any(k.startswith(prefix + "conv1.0.") for k in keys):
        raise UserError(f"checkpoint {label}: a deep-stem ResNet-D (timm resnet*d, {prefix}conv1.0.*): edgepose's "
                        "PoseResNet has the plain 7x7 ResNet stem; use a plain ResNet (resnet18/34/50/101/152)")
    if any(re.match(re.escape(prefix) + r"layer\d\.\d+\.downsample\.2\.", k) for k in keys):
        raise UserError(f"checkpoint {label}: a ResNet with average-pool downsampling (avg_down, downsample.2.*): "
                        "edgepose's PoseResNet uses the plain strided 1x1 shortcut")


def to_pose_resnet_keys(state: Mapping[str, torch.Tensor], label: str = "<checkpoint>") -> Tuple[Dict[str, torch.Tensor], str, str]:
    """Rename a state_dict of any supported layout to PoseResNet keys.

    Returns ``(state, source, layout text)``; ``source`` is ``"pose_resnet"`` (edgepose or the
    original), ``"mmpose"``, ``"mmpose-0.x"`` or ``"classifier"`` (torchvision/timm names with
    ``fc.*``, which is dropped). Raises UserError for deep-stem / avg-down backbones and heads
    with extra layers.
    """
    s = _strip(state, "module.")
    keys = list(s)
    head_prefix = next((p for p in ("head.", "keypoint_head.") if any(k.startswith(p) for k in keys)), None)
    if any(k.startswith("backbone.") for k in keys):
        _refuse_variants(s, label, "backbone.")
        out: Dict[str, torch.Tensor] = OrderedDict()
        extra = []
        for k, v in s.items():
            if k.startswith("backbone."):
                out[k[len("backbone."):]] = v
            elif head_prefix and k.startswith(head_prefix):
                rest = k[len(head_prefix):]
                if re.match(r"(deconv_layers\.\d+|final_layer)\.(weight|bias|running_mean|running_var|num_batches_tracked)$", rest):
                    out[rest] = v
                elif rest.startswith("fc."):  # an ImageNet classifier head (mmpretrain): not part of PoseResNet
                    continue
                else:
                    extra.append(k)
            elif k.startswith("data_preprocessor."):
                continue
            else:
                extra.append(k)
        if extra:
            raise UserError(f"checkpoint {label}: keys outside a Simple Baselines model ({', '.join(sorted(extra)[:2])}"
                            f"{' ...' if len(extra) > 2 else ''}): only ResNet + HeatmapHead (deconv layers + final conv) "
                            "mmpose models load")
        if head_prefix == "keypoint_head.":
            return out, "mmpose-0.x", "mmpose 0.x top-down heatmap model (backbone.*, keypoint_head.deconv_layers.*, keypoint_head.final_layer.*)"
        if head_prefix == "head." and any(k.startswith(("deconv_layers.", "final_layer.")) for k in out):
            return out, "mmpose", "mmpose 1.x top-down heatmap model (backbone.*, head.deconv_layers.*, head.final_layer.*)"
        return out, "mmpose", "OpenMMLab backbone (backbone.*; no pose head)"
    _refuse_variants(s, label, "")
    if any(k.startswith("fc.") for k in keys) and not any(k.startswith(("deconv_layers.", "final_layer.")) for k in keys):
        return (OrderedDict((k, v) for k, v in s.items() if not k.startswith("fc.")), "classifier",
                "ImageNet ResNet classifier (conv1, bn1, layer1..4, fc.*; fc ignored)")
    return s, "pose_resnet", "PoseResNet (conv1, bn1, layer1..4, deconv_layers.*, final_layer.*)"


def analyse(state: Mapping[str, torch.Tensor]) -> Dict[str, Any]:
    """Depth, blocks per layer, block type, deconv stages and final conv of a PoseResNet-keyed state."""
    blocks = []
    for i in range(1, 5):
        idx = {int(m.group(1)) for k in state for m in [re.match(rf"layer{i}\.(\d+)\.", k)] if m}
        blocks.append(max(idx) + 1 if idx else 0)
    bottleneck = any(re.match(r"layer\d\.\d+\.conv3\.weight$", k) for k in state)
    deconv = []
    bias = False
    i = 0
    while f"deconv_layers.{i}.weight" in state:
        w = state[f"deconv_layers.{i}.weight"]
        deconv.append((int(w.shape[1]), int(w.shape[2])))
        bias = bias or f"deconv_layers.{i}.bias" in state
        i += 3
    fw = state.get("final_layer.weight")
    return {
        "blocks": tuple(blocks) if any(blocks) else (),
        "depth": BLOCKS_TO_DEPTH.get((tuple(blocks), bottleneck)),
        "bottleneck": bottleneck,
        "deconv": deconv,
        "deconv_bias": bias,
        "num_joints": int(fw.shape[0]) if fw is not None else None,
        "final_kernel": int(fw.shape[-1]) if fw is not None else None,
    }


# --------------------------------------------------------------------------- conventions


def _config_dicts(text: str) -> List[Dict[str, Any]]:
    """Every ``dict(...)`` call / ``{...}`` literal in an OpenMMLab config text, with the
    keyword values that are literals (the config is parsed, never executed)."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return []
    out = []
    for node in ast.walk(tree):
        d: Dict[str, Any] = {}
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
            pairs = [(kw.arg, kw.value) for kw in node.keywords if kw.arg]
        elif isinstance(node, ast.Dict):
            pairs = [(k.value, v) for k, v in zip(node.keys, node.values) if isinstance(k, ast.Constant) and isinstance(k.value, str)]
        else:
            continue
        for key, value in pairs:
            try:
                d[key] = ast.literal_eval(value)
            except (ValueError, TypeError, SyntaxError, RecursionError):
                d[key] = _NonLiteral
        out.append(d)
    return out


class _NonLiteral:
    """Marks a config value that is not a literal."""


def _floats(v: Any) -> Optional[Tuple[float, float, float]]:
    if isinstance(v, (list, tuple)) and len(v) == 3 and all(isinstance(x, (int, float)) for x in v):
        return tuple(float(x) for x in v)  # type: ignore[return-value]
    return None


def mmpose_conventions(meta: Any) -> Optional[Conventions]:
    """Input colour order, mean/std and codec recorded in an mmpose checkpoint's ``meta``
    (1.x: ``meta['cfg']``; 0.x: ``meta['config']``, the config text). None when not recorded."""
    if not isinstance(meta, Mapping):
        return None
    text = meta.get("cfg") or meta.get("config")
    if not isinstance(text, str) or not text.strip():
        return None
    dicts = _config_dicts(text)
    conv = Conventions(recorded=True, source="mmpose config in the checkpoint's meta")
    found = pre = codec = False
    assumed: List[str] = []
    for d in dicts:
        typ = d.get("type")
        if typ == "PoseDataPreprocessor" or (isinstance(typ, str) and typ.endswith("DataPreprocessor")):
            mean, std = _floats(d.get("mean")), _floats(d.get("std"))
            if mean and std:
                conv.mean, conv.std = mean, std
            else:
                assumed.append("ImageNet mean/std")
            # mmengine's ImgDataPreprocessor default is bgr_to_rgb=False (images are loaded BGR).
            conv.color = "rgb" if d.get("bgr_to_rgb") is True else "bgr"
            found = pre = True
        elif typ == "NormalizeTensor":  # 0.x: mean/std on 0..1 images, loaded RGB by LoadImageFromFile
            mean, std = _floats(d.get("mean")), _floats(d.get("std"))
            if mean and std:
                conv.mean = tuple(round(v * 255, 4) for v in mean)  # type: ignore[assignment]
                conv.std = tuple(round(v * 255, 4) for v in std)  # type: ignore[assignment]
            else:
                assumed.append("ImageNet mean/std")
            found = pre = True
        elif typ == "LoadImageFromFile" and d.get("channel_order") == "bgr":
            conv.color = "bgr"
        elif isinstance(typ, str) and typ.endswith(("Heatmap", "Label", "Heatmaps")) and typ[0].isupper() and "Head" not in typ:
            conv.codec = typ
            conv.unbiased = conv.unbiased or d.get("unbiased") is True
            size = d.get("input_size")
            if isinstance(size, (list, tuple)) and len(size) == 2:
                conv.input_size = (int(size[0]), int(size[1]))
            found = codec = True
        if d.get("use_udp") is True or d.get("encoding") == "UDP":
            conv.codec = "UDP (0.x use_udp)"
            found = codec = True
        elif typ == "TopDownGenerateTarget" and not conv.codec.startswith("UDP"):
            codec = True  # 0.x MSRA targets (the default encoding)
        if d.get("post_process") == "unbiased":
            conv.unbiased = True
        if isinstance(typ, str) and typ.startswith("ResNet") and d.get("style") == "caffe":
            conv.caffe_style = True
    if not found:
        return None
    if not pre:
        assumed.append("RGB input with ImageNet mean/std (no data_preprocessor / NormalizeTensor in the config)")
    if not codec:
        assumed.append("MSRAHeatmap codec (none in the config)")
    conv.assumed = assumed
    return conv


def _edgepose_conventions(wrapper: Mapping[str, Any]) -> Optional[Conventions]:
    cfg = wrapper.get("config")
    if isinstance(cfg, Mapping) and isinstance(cfg.get("DATASET"), Mapping) and "COLOR_RGB" in cfg["DATASET"]:
        return Conventions(color="rgb" if cfg["DATASET"]["COLOR_RGB"] else "bgr", recorded=True,
                           source="host_tools training config in the checkpoint")
    return None


# ---------------------------------------------------------------------------------- entry


def identify(obj: Any, label: str, filename: str = "") -> WeightsInfo:
    """Recognise a loaded checkpoint object (see the module docstring for the layouts)."""
    raw, wrapper = unwrap(obj, label)
    state, kind, layout = to_pose_resnet_keys(raw, label)
    name = Path(filename or label).name
    notes: List[str] = []
    conv: Optional[Conventions] = None
    dataset = ""
    if kind in ("mmpose", "mmpose-0.x"):
        source = "mmpose"
        meta = wrapper.get("meta")
        conv = mmpose_conventions(meta)
        if isinstance(meta, Mapping) and isinstance(meta.get("dataset_meta"), Mapping):
            dm = meta["dataset_meta"]
            dataset = str(dm.get("dataset_name", ""))
            if dm.get("num_keypoints") is not None:
                notes.append(f"dataset_meta: {dataset or '?'} with {dm.get('num_keypoints')} keypoints")
    elif kind == "classifier":
        timm_hint = ("arch" in wrapper and "args" in wrapper) or "state_dict_ema" in wrapper or \
            name in ("pytorch_model.bin", "model.safetensors") or name.endswith(".safetensors")
        source = "timm" if timm_hint else "torchvision"
        layout = f"{'timm' if timm_hint else 'torchvision'} {layout}"
        if not timm_hint:
            notes.append("timm's resnet18/34/50/101/152 use the same key names; both load as ImageNet initialisation")
    else:
        had_module = any(k.startswith("module.") for k in raw)
        conv = _edgepose_conventions(wrapper)
        if conv is not None or (wrapper and "epoch" in wrapper and "optimizer" in wrapper and not had_module):
            source = "edgepose"
        elif had_module:
            source = "original"
            # the original project (cv2.imread, no conversion) trained every checkpoint on BGR
            conv = Conventions(color="bgr", recorded=True,
                               source="layout of an original Simple Baselines checkpoint, DataParallel `module.` keys")
            notes.append("the original project fed BGR with the RGB mean/std: export-onnx and valid use "
                         "DATASET.COLOR_RGB=false with its files")
        else:
            source = "edgepose"
            notes.append("a bare PoseResNet state_dict (host_tools model_best/final_state, or an original file saved "
                         "without DataParallel); its colour order is the config's DATASET.COLOR_RGB")
    a = analyse(state)
    info = WeightsInfo(path=str(label), source=source, layout=layout, state=state, conventions=conv, dataset=dataset,
                       notes=notes, **a)
    return info


def read_weights(path: Union[str, Path]) -> WeightsInfo:
    """Read and recognise a weights file; raises UserError (one line) if it is not one."""
    p = Path(path)
    return identify(load_file(p), str(p), p.name)


# ---------------------------------------------------------------------- shapes without a model


def _bn(prefix: str, c: int) -> List[Tuple[str, Tuple[int, ...]]]:
    return [(prefix + "weight", (c,)), (prefix + "bias", (c,)), (prefix + "running_mean", (c,)),
            (prefix + "running_var", (c,)), (prefix + "num_batches_tracked", ())]


# ResNet depth -> (block expansion: 1 basic / 4 bottleneck, blocks per stage); host_tools.model builds from it
RESNET_LAYERS: Dict[int, Tuple[int, List[int]]] = {
    18: (1, [2, 2, 2, 2]),
    34: (1, [3, 4, 6, 3]),
    50: (4, [3, 4, 6, 3]),
    101: (4, [3, 4, 23, 3]),
    152: (4, [3, 8, 36, 3]),
}


def guess_arch(state: Mapping[str, torch.Tensor]) -> str:
    """A short description of the network a state_dict holds, e.g. ``PoseResNet-50, 17 joints``."""
    a = analyse(state)
    parts = [f"PoseResNet-{a['depth']}" if a["depth"] else "an unknown backbone"]
    if a["num_joints"] is not None:
        parts.append(f"{a['num_joints']} joints, final kernel {a['final_kernel']}")
    return ", ".join(parts)


def _short(keys: Sequence[str], n: int = 3) -> str:
    keys = sorted(keys)
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def _check_fit(expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], path: Union[str, Path], what: str) -> None:
    def skip(k: str) -> bool:
        return k.endswith("num_batches_tracked")

    missing = [k for k in expected if k not in state and not skip(k)]
    unexpected = [k for k in state if k not in expected and not skip(k)]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
              for k, v in expected.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if not (missing or unexpected or shapes):
        return
    bits = []
    if missing:
        bits.append(f"{len(missing)} missing keys ({_short(missing, 2)})")
    if unexpected:
        bits.append(f"{len(unexpected)} unexpected keys ({_short(unexpected, 2)})")
    if shapes:
        bits.append(f"{len(shapes)} shape mismatches (checkpoint vs model: {_short(shapes, 1)})")
    raise UserError(f"checkpoint {path} does not fit {what}: it looks like {guess_arch(state)}; " + "; ".join(bits)
                    + " (match MODEL.EXTRA.* / MODEL.NUM_JOINTS to it)")


def expected_shapes(cfg: Any) -> Dict[str, Tuple[int, ...]]:
    """The state_dict key -> shape of the PoseResNet ``cfg`` describes, worked out from the
    architecture (no model is built). Same keys, order and shapes as ``get_pose_net(cfg).state_dict()``."""
    ex = cfg.MODEL.EXTRA
    exp, layers = RESNET_LAYERS[int(ex.NUM_LAYERS)]
    out: List[Tuple[str, Tuple[int, ...]]] = [("conv1.weight", (64, 3, 7, 7))] + _bn("bn1.", 64)
    inplanes = 64
    for li, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
        for b in range(n):
            p = f"layer{li + 1}.{b}."
            if exp == 4:
                out += [(p + "conv1.weight", (planes, inplanes, 1, 1))] + _bn(p + "bn1.", planes)
                out += [(p + "conv2.weight", (planes, planes, 3, 3))] + _bn(p + "bn2.", planes)
                out += [(p + "conv3.weight", (planes * 4, planes, 1, 1))] + _bn(p + "bn3.", planes * 4)
            else:
                out += [(p + "conv1.weight", (planes, inplanes, 3, 3))] + _bn(p + "bn1.", planes)
                out += [(p + "conv2.weight", (planes, planes, 3, 3))] + _bn(p + "bn2.", planes)
            if b == 0 and (li > 0 or inplanes != planes * exp):
                out += [(p + "downsample.0.weight", (planes * exp, inplanes, 1, 1))] + _bn(p + "downsample.1.", planes * exp)
            inplanes = planes * exp
    n = int(ex.NUM_DECONV_LAYERS)
    for i, (f, k) in enumerate(zip(ex.NUM_DECONV_FILTERS[:n], ex.NUM_DECONV_KERNELS[:n])):
        out.append((f"deconv_layers.{3 * i}.weight", (inplanes, int(f), int(k), int(k))))
        if ex.DECONV_WITH_BIAS:
            out.append((f"deconv_layers.{3 * i}.bias", (int(f),)))
        out += _bn(f"deconv_layers.{3 * i + 1}.", int(f))
        inplanes = int(f)
    fk = int(ex.FINAL_CONV_KERNEL)
    out += [("final_layer.weight", (int(cfg.MODEL.NUM_JOINTS), inplanes, fk, fk)), ("final_layer.bias", (int(cfg.MODEL.NUM_JOINTS),))]
    return OrderedDict(out)


def check_fit(info: WeightsInfo, cfg: Any, backbone_only: bool = False) -> None:
    """Raise UserError (one line: missing / unexpected / mis-shaped keys) unless ``info`` loads
    into the PoseResNet of ``cfg`` (only its backbone with ``backbone_only``)."""
    shapes = expected_shapes(cfg)
    if backbone_only:
        shapes = OrderedDict((k, v) for k, v in shapes.items() if not k.startswith(("deconv_layers.", "final_layer.")))
    expected = {k: torch.empty(v, device="meta") for k, v in shapes.items()}
    state = info.state
    if backbone_only:
        state = {k: v for k, v in state.items() if not k.startswith(("deconv_layers.", "final_layer."))}
    what = f"a ResNet-{cfg.MODEL.EXTRA.NUM_LAYERS} backbone" if backbone_only else \
        f"the config's PoseResNet-{cfg.MODEL.EXTRA.NUM_LAYERS} with {cfg.MODEL.NUM_JOINTS} joints"
    _check_fit(expected, state, info.path, what)


# ------------------------------------------------------------------- conventions -> config


def warn(prog: str, text: str) -> None:
    print(f"{prog}: warning: {text}", file=sys.stderr)


def apply_conventions(cfg: Any, info: WeightsInfo, prog: str) -> None:
    """Make ``cfg`` feed the network as ``info``'s checkpoint was trained.

    ``DATASET.COLOR_RGB`` takes the colour order the file's conventions record (a note on stderr
    when that changes the config): an original project file's layout implies BGR, a host_tools
    training checkpoint carries its config, an mmpose file its mmpose config. Bare state_dicts
    record nothing and follow ``DATASET.COLOR_RGB``. For mmpose files, also raises UserError
    when the recorded normalisation is not the ImageNet one that edgepose applies, or the codec
    is UDP / not a heatmap codec edgepose decodes; without recorded conventions, assumes
    mmpose's defaults and prints ONE warning naming them.
    """
    if not info.has_head:
        return
    if info.source != "mmpose":
        if info.conventions is not None and info.conventions.recorded:
            _take_color(cfg, info.conventions, info.path, prog)
        return
    conv = info.conventions
    if conv is None:
        warn(prog, f"{info.path} records no mmpose config (meta['cfg']); assumed mmpose's defaults: {MMPOSE_DEFAULT} "
                   "(DATASET.COLOR_RGB=true)")
        conv = Conventions(color="rgb", recorded=False, source="assumed")
    if conv.codec.startswith("UDP"):
        raise UserError(f"checkpoint {info.path} was trained with mmpose's UDP codec ({conv.codec}): edgepose decodes "
                        "MSRA heatmaps (quarter offset / DARK), so its keypoints would be shifted; use an MSRAHeatmap model")
    if conv.codec != "MSRAHeatmap":
        raise UserError(f"checkpoint {info.path} was trained with mmpose's {conv.codec} codec: edgepose decodes "
                        "MSRA Gaussian heatmaps only; use an MSRAHeatmap model")
    if (tuple(round(v, 3) for v in conv.mean) != tuple(round(v, 3) for v in IMAGENET_MEAN_RGB)
            or tuple(round(v, 3) for v in conv.std) != tuple(round(v, 3) for v in IMAGENET_STD_RGB)):
        raise UserError(f"checkpoint {info.path} was trained with mean {list(conv.mean)} / std {list(conv.std)}: edgepose "
                        f"normalises with mean {list(IMAGENET_MEAN_RGB)} / std {list(IMAGENET_STD_RGB)} in the input's "
                        "channel order, so this model would be fed wrongly")
    if conv.caffe_style:
        raise UserError(f"checkpoint {info.path}: its ResNet has style='caffe' (stride on the first 1x1 conv): "
                        "edgepose's PoseResNet strides the 3x3 conv (style='pytorch'), so the same weights compute "
                        "something else")
    if conv.assumed:
        warn(prog, f"{info.path}: its mmpose config does not record everything; assumed " + "; ".join(conv.assumed))
    _take_color(cfg, conv, info.path, prog)
    if conv.input_size and tuple(conv.input_size) != tuple(cfg.MODEL.IMAGE_SIZE):
        warn(prog, f"{info.path} was trained at {conv.input_size[0]}x{conv.input_size[1]} (codec input_size), the config "
                   f"says MODEL.IMAGE_SIZE {list(cfg.MODEL.IMAGE_SIZE)}")


def _take_color(cfg: Any, conv: Conventions, path: str, prog: str) -> None:
    """``DATASET.COLOR_RGB`` from ``conv``; a note when a recorded order changes the config."""
    rgb = conv.color == "rgb"
    if bool(cfg.DATASET.COLOR_RGB) != rgb and conv.recorded:
        print(f"{prog}: {path} was trained on {conv.color.upper()} input ({conv.source}); using "
              f"DATASET.COLOR_RGB={'true' if rgb else 'false'}", file=sys.stderr)
    cfg.DATASET.COLOR_RGB = rgb


def prepare(cfg: Any, path: Union[str, Path], prog: str) -> WeightsInfo:
    """Read a pose checkpoint for ``export-onnx`` / ``valid``: recognise its layout, carry an
    mmpose file's conventions into ``cfg`` (:func:`apply_conventions`) and check it fits
    ``cfg``'s network. Returns the info; load ``info.state`` into the model."""
    info = read_weights(path)
    if not info.has_head:
        raise UserError(f"checkpoint {info.path} holds a {info.layout} without a pose head: it is an ImageNet "
                        "initialisation for training (MODEL.PRETRAINED), not a pose model")
    apply_conventions(cfg, info, prog)
    check_fit(info, cfg)
    return info
