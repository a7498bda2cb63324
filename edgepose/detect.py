"""Person detection as a stage of edgepose: YOLO detector models and OpenCV's HOG.

:class:`PersonDetector` runs the detector models users have, on the same runtimes as the pose
models (onnxruntime for ``.onnx``, RKNNLite for ``.rknn``), and tells their head layout from the
output shapes (:func:`identify_head`):

* ``"ultralytics"``: the Ultralytics YOLOv8 / YOLO11 ONNX export, one output ``(1, 4 + nc, A)``:
  centre x, y, width, height in input pixels, then per-class probabilities;
* ``"dfl"``: the Rockchip model zoo's YOLOv8 layout, per stride 8/16/32 a DFL box tensor
  ``(1, 4*16, h, w)``, a class-probability tensor ``(1, nc, h, w)`` and optionally a score-sum
  tensor ``(1, 1, h, w)`` (6 or 9 outputs), float or int8 with per-output scale / zero point;
* ``"yolox"``: YOLOX ``(1, A, 5 + nc)`` (what rtmlib ships), grid-relative boxes decoded with the
  strides;
* ``"yolox_split"``: the same YOLOX head split per stride into box ``(1, 4, h, w)``, objectness
  ``(1, 1, h, w)`` and class ``(1, nc, h, w)`` outputs (9 for 3 strides), what ``host_tools
  build-rknn`` makes of a single-output YOLOX export so that INT8 gives each its own scale
  (a single-output Ultralytics export becomes the ``"dfl"`` layout, 6 outputs).

``A`` is the number of grid cells, the sum over strides 8, 16, 32 of ``(H/s)(W/s)`` (8400 at
640x640). The frame is letterboxed (:class:`edgepose.geometry.Letterbox`) by edgepose's own warp
kernel with the padding value of the model (grey 114), decoded by :mod:`edgepose.yolo`, NMS'd,
and the boxes are mapped back through the inverse letterbox to frame pixels.

A JSON sidecar ``FILE.json`` beside the model (``det.onnx.json``, ``det.rknn.json``; written by
``host_tools build-rknn``) may set any :class:`DetectorMeta` field; keys it does not name keep
the defaults of the layout. Boxes are always ``(N, 5)`` float64 ``x, y, w, h, score`` in frame
pixels, ``(x, y)`` the top-left corner, as :mod:`edgepose.boxes` defines.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .geometry import Letterbox
from .metadata import MetadataError, sidecar_path

HEADS = ("ultralytics", "dfl", "yolox", "yolox_split")
STRIDES = (8, 16, 32)
DFL_BINS = 16
ACCEPTED = ("Ultralytics YOLOv8/YOLO11 ONNX (1, 4+nc, A); Rockchip model zoo YOLOv8 per stride (1, 64, h, w) box + "
            "(1, nc, h, w) class [+ (1, 1, h, w) score sum] (6 or 9 outputs); YOLOX (1, A, 5+nc); YOLOX split per "
            "stride (1, 4, h, w) box + (1, 1, h, w) objectness + (1, nc, h, w) class (9 outputs); "
            "A = sum over strides 8/16/32 of (H/s)(W/s)")

# per head: colour order, normalisation (model colour order, 0..255 scale), padding, placement
_HEAD_DEFAULTS: Dict[str, Dict[str, Any]] = {
    "ultralytics": dict(color="rgb", mean=(0.0, 0.0, 0.0), std=(255.0, 255.0, 255.0), pad_value=114, pad_align="center"),
    "dfl": dict(color="rgb", mean=(0.0, 0.0, 0.0), std=(255.0, 255.0, 255.0), pad_value=114, pad_align="center"),
    # YOLOX as rtmlib / mmdet feed it: BGR pixels unnormalised, image in the top-left corner
    "yolox": dict(color="bgr", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), pad_value=114, pad_align="topleft"),
}
_HEAD_DEFAULTS["yolox_split"] = dict(_HEAD_DEFAULTS["yolox"])


class DetectorError(MetadataError):
    """A detector model whose outputs or sidecar edgepose cannot use (one line: what, fix)."""


@dataclass
class DetectorMeta:
    """What the runtime must know to feed a detector and read its outputs (the sidecar's keys).

    Attributes:
        task: always ``"detect"`` (tells a detector sidecar from a pose one).
        head: ``"ultralytics"``, ``"dfl"`` or ``"yolox"`` (see the module docstring).
        input_size: model input ``(w, h)`` pixels.
        color: channel order the model takes (``"rgb"`` or ``"bgr"``; frames are BGR).
        mean, std: ``(v - mean) / std`` per channel in that order, 0..255 scale; inside the model
            for an RKNN build (uint8 input).
        pad_value: letterbox padding, one grey level or three values in the model colour order.
        pad_align: ``"center"`` (Ultralytics) or ``"topleft"`` (YOLOX).
        num_classes: nc; ``class_id``: the person class (0 in COCO-trained models).
        strides: the head's strides.
        outputs: per output in model order ``{"name", "shape", "scale", "zero_point"}``; scale 0
            means float. Integer outputs need their scale / zero point here.
        quantized: output dtype of an RKNN build (``"int8"``, ``"float16"``, ...), else ``"float32"``.
        target, build: RKNN target chip and build options (``host_tools build-rknn``).
        split: how ``build-rknn`` split a single-output head (``from``: the export family,
            ``source_output``, ``outputs``), empty when the model was used as it is.
    """

    task: str = "detect"
    head: str = ""
    input_size: Tuple[int, int] = (640, 640)
    color: str = "rgb"
    mean: Tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: Tuple[float, float, float] = (255.0, 255.0, 255.0)
    pad_value: Any = 114
    pad_align: str = "center"
    num_classes: int = 80
    class_id: int = 0
    strides: List[int] = field(default_factory=lambda: list(STRIDES))
    outputs: List[Dict[str, Any]] = field(default_factory=list)
    batch: int = 1
    quantized: str = "float32"
    target: str = ""
    build: Dict[str, Any] = field(default_factory=dict)
    split: Dict[str, Any] = field(default_factory=dict)
    schema: int = 1

    def validate(self) -> "DetectorMeta":
        if self.task != "detect":
            raise DetectorError(f"detector metadata task: expected 'detect', got {self.task!r}")
        if self.head and self.head not in HEADS:
            raise DetectorError(f"detector metadata head: expected one of {HEADS}, got {self.head!r}")
        if len(self.input_size) != 2 or min(int(v) for v in self.input_size) <= 0:
            raise DetectorError(f"detector metadata input_size: expected (w, h) > 0, got {self.input_size}")
        self.input_size = (int(self.input_size[0]), int(self.input_size[1]))
        if self.color not in ("rgb", "bgr"):
            raise DetectorError(f"detector metadata color: expected 'rgb' or 'bgr', got {self.color!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or any(float(s) == 0 for s in self.std):
            raise DetectorError(f"detector metadata mean/std: 3 values each, std non-zero; got {self.mean} / {self.std}")
        self.mean = tuple(float(v) for v in self.mean)
        self.std = tuple(float(v) for v in self.std)
        if self.pad_align not in ("center", "topleft"):
            raise DetectorError(f"detector metadata pad_align: expected 'center' or 'topleft', got {self.pad_align!r}")
        if not 0 <= int(self.class_id) < max(int(self.num_classes), 1):
            raise DetectorError(f"detector metadata class_id {self.class_id}: outside 0..{self.num_classes - 1}")
        return self

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["input_size"], d["mean"], d["std"] = list(self.input_size), list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: Dict[str, Any], where: str = "detector metadata") -> "DetectorMeta":
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise DetectorError(f"{where}: unknown keys {unknown}; known: {sorted(cls.__dataclass_fields__)}")
        kw = dict(d)
        for key in ("input_size", "mean", "std"):
            if key in kw:
                kw[key] = tuple(kw[key])
        return cls(**kw).validate()

    def quant(self, i: int) -> Optional[Tuple[float, int]]:
        """``(scale, zero_point)`` of output ``i``, or None when the sidecar records none."""
        if i < len(self.outputs) and float(self.outputs[i].get("scale", 0) or 0) > 0:
            return float(self.outputs[i]["scale"]), int(self.outputs[i].get("zero_point", 0))
        return None


def read_detector_sidecar(model_path: Union[str, Path]) -> Optional[Dict[str, Any]]:
    """The JSON object of ``model_path + '.json'`` when it is a detector sidecar
    (``"task": "detect"``), None when there is none or it describes a pose model."""
    p = sidecar_path(model_path)
    if not p.is_file():
        return None
    text = p.read_text(encoding="utf-8", errors="replace")
    try:
        d = json.loads(text)
    except json.JSONDecodeError as exc:
        why = "empty" if not text.strip() else ("truncated" if not text.rstrip().endswith("}") else "malformed")
        raise DetectorError(f"{p}: metadata sidecar is {why} (not valid JSON: {exc}); copy it again from the host, "
                            "or rebuild with host_tools build-rknn") from None
    if not isinstance(d, dict) or d.get("task") != "detect":
        return None
    return d


# --------------------------------------------------------------------------- layouts

def num_anchors(input_size: Sequence[int], strides: Sequence[int] = STRIDES) -> int:
    """Grid cells of a YOLO head: sum over strides of ``ceil(H/s) * ceil(W/s)``."""
    w, h = int(input_size[0]), int(input_size[1])
    return int(sum(-(-h // s) * -(-w // s) for s in strides))


@dataclass
class HeadLayout:
    """Where each decode input sits among the outputs. ``dfl``: per stride (box, class, sum or
    None) output indices; ``yolox_split``: per stride (box, objectness, class) indices; others:
    the one output's index 0."""

    head: str
    num_classes: int
    strides: List[int]
    dfl: List[Tuple[int, int, Optional[int]]] = field(default_factory=list)
    yolox: List[Tuple[int, int, int]] = field(default_factory=list)


def _shapes_text(shapes: Sequence[Sequence[Any]]) -> str:
    return ", ".join(str(tuple(s)) for s in shapes) or "no outputs"


def identify_head(shapes: Sequence[Sequence[Optional[int]]], input_size: Sequence[int],
                  head: str = "", strides: Sequence[int] = STRIDES, where: str = "detector") -> HeadLayout:
    """Tell the head layout from the output shapes (``head`` forces one).

    Args:
        shapes: output shapes in model order (batch first; None for unknown dimensions).
        input_size: model input ``(w, h)``.
        head: ``""`` (detect) or one of :data:`HEADS`.

    Raises:
        DetectorError: no layout fits; the message lists the shapes found and the layouts accepted.
    """
    w, h = int(input_size[0]), int(input_size[1])
    a = num_anchors((w, h), strides)
    sh = [tuple(s) for s in shapes]
    tried = [head] if head else list(HEADS)
    if len(sh) == 1 and len(sh[0]) == 3 and sh[0][0] in (1, None):
        _, d1, d2 = sh[0]
        if "ultralytics" in tried and d2 == a and isinstance(d1, int) and d1 > 4:
            return HeadLayout("ultralytics", d1 - 4, list(strides))
        if "yolox" in tried and d1 == a and isinstance(d2, int) and d2 > 5:
            return HeadLayout("yolox", d2 - 5, list(strides))
    if "dfl" in tried and len(sh) in (6, 9) and all(len(s) == 4 and s[0] in (1, None) for s in sh):
        per = len(sh) // 3
        groups: List[Tuple[int, int, Optional[int]]] = []
        nc = None
        ok = True
        for s in strides:
            grid = (-(-h // s), -(-w // s))
            idx = [i for i, t in enumerate(sh) if tuple(t[2:]) == grid]
            if len(idx) != per:
                ok = False
                break
            box = [i for i in idx if sh[i][1] == 4 * DFL_BINS]
            if not box:
                ok = False
                break
            rest = [i for i in idx if i != box[0]]
            cls_i = rest[0] if per == 2 else next((i for i in rest if sh[i][1] != 1), rest[0])
            sum_i = None if per == 2 else next(i for i in rest if i != cls_i)
            if per == 3 and sh[sum_i][1] != 1:
                ok = False
                break
            if nc is not None and sh[cls_i][1] != nc:
                ok = False
                break
            nc = sh[cls_i][1]
            groups.append((box[0], cls_i, sum_i))
        if ok and isinstance(nc, int) and nc > 0:
            return HeadLayout("dfl", nc, list(strides), groups)
    if "yolox_split" in tried and len(sh) == 3 * len(strides) and all(len(s) == 4 and s[0] in (1, None) for s in sh):
        ygroups: List[Tuple[int, int, int]] = []
        nc = None
        for s in strides:
            grid = (-(-h // s), -(-w // s))
            idx = [i for i, t in enumerate(sh) if tuple(t[2:]) == grid]
            box = [i for i in idx if sh[i][1] == 4]
            if len(idx) != 3 or not box:
                break
            rest = [i for i in idx if i != box[0]]
            obj = [i for i in rest if sh[i][1] == 1]
            if not obj:
                break
            cls_i = next(i for i in rest if i != obj[0])
            if not isinstance(sh[cls_i][1], int) or (nc is not None and sh[cls_i][1] != nc):
                break
            nc = sh[cls_i][1]
            ygroups.append((box[0], obj[0], cls_i))
        if len(ygroups) == len(strides) and isinstance(nc, int) and nc > 0:
            return HeadLayout("yolox_split", nc, list(strides), yolox=ygroups)
    raise DetectorError(f"{where}: outputs {_shapes_text(sh)} (input {w}x{h}) match no detector layout"
                        f"{' ' + repr(head) if head else ''}; accepted: {ACCEPTED} (= {a} here)")


# --------------------------------------------------------------------------- pre/post-processing

def letterbox_input(frame: np.ndarray, meta: DetectorMeta, layout: str) -> Tuple[np.ndarray, Letterbox]:
    """Letterbox one BGR frame into the detector input with edgepose's warp kernel.

    Returns ``(batch, letterbox)``: ``(1, 3, H, W)`` float32 normalised for ``layout="nchw"``
    or ``(1, H, W, 3)`` uint8 for ``"nhwc"`` (RKNN), in the model colour order.
    """
    from .crop import warp_crops

    lb = Letterbox(frame.shape, meta.input_size, center=meta.pad_align == "center")
    pad = np.broadcast_to(np.asarray(meta.pad_value, np.float64), (3,))
    border = pad[::-1] if meta.color == "rgb" else pad  # the warp takes BGR (frame order) values
    rgb = meta.color == "rgb"
    m = lb.matrix()[None]
    if layout == "nchw":
        x = warp_crops(frame, m, meta.input_size, rgb, meta.mean, meta.std, "nchw", border_value=border.tolist())
    else:
        x = warp_crops(frame, m, meta.input_size, rgb, layout="nhwc", border_value=border.tolist())
    return x, lb


def _as_float(a: np.ndarray, q: Optional[Tuple[float, int]], what: str):
    """int8/uint8 stay raw with their quant for the kernel; wider ints are dequantized here."""
    if a.dtype in (np.int8, np.uint8):
        if q is None:
            raise DetectorError(f"{what} is {a.dtype} but the sidecar gives no scale/zero_point for it; "
                                "rebuild with host_tools build-rknn (it records them) or add them to 'outputs'")
        return a, q
    if a.dtype.kind in "iu":
        if q is None:
            raise DetectorError(f"{what} is {a.dtype} but the sidecar gives no scale/zero_point for it")
        return ((a.astype(np.float32) - q[1]) * np.float32(q[0])), None
    return (a if a.dtype == np.float32 else a.astype(np.float32)), None


def decode_outputs(outputs: Sequence[np.ndarray], meta: DetectorMeta, layout: HeadLayout, score_thr: float,
                   iou_thr: float, top_k: int = 100) -> Tuple[np.ndarray, np.ndarray]:
    """Raw outputs -> person boxes ``(M, 4)`` x0, y0, x1, y1 in *input* pixels and ``(M,)``
    scores after NMS, best first."""
    from . import yolo

    outs = [_as_float(np.asarray(o), meta.quant(i), f"output {i}") for i, o in enumerate(outputs)]
    cid = int(meta.class_id)
    if layout.head == "ultralytics":
        xyxy, sc = yolo.decode_anchor_free(outs[0][0], score_thr, class_id=cid, quant=outs[0][1])
    elif layout.head == "yolox":
        fn = getattr(yolo, "decode_yolox", None)
        if fn is None:
            raise DetectorError("YOLOX layout: this edgepose has no YOLOX decode yet (edgepose.yolo.decode_yolox)")
        xyxy, sc = fn(outs[0][0], meta.input_size, score_thr, class_id=cid, strides=tuple(layout.strides),
                      quant=outs[0][1])
    elif layout.head == "yolox_split":
        g3 = layout.yolox
        xyxy, sc = yolo.decode_yolox_split([outs[b][0] for b, _, _ in g3], [outs[o][0] for _, o, _ in g3],
                                           [outs[c][0] for _, _, c in g3], layout.strides, score_thr, class_id=cid,
                                           box_quant=[outs[b][1] for b, _, _ in g3],
                                           obj_quant=[outs[o][1] for _, o, _ in g3],
                                           cls_quant=[outs[c][1] for _, _, c in g3])
    else:
        g = layout.dfl
        sums = [outs[s][0] for _, _, s in g] if g[0][2] is not None else None
        xyxy, sc = yolo.decode_dfl([outs[b][0] for b, _, _ in g], [outs[c][0] for _, c, _ in g], layout.strides,
                                   score_thr, class_id=cid, box_quant=[outs[b][1] for b, _, _ in g],
                                   cls_quant=[outs[c][1] for _, c, _ in g], score_sum=sums,
                                   sum_quant=[outs[s][1] for _, _, s in g] if sums is not None else None)
    xyxy = np.asarray(xyxy, np.float32).reshape(-1, 4)
    sc = np.asarray(sc, np.float32).reshape(-1)
    if len(sc) == 0:
        return xyxy, sc
    keep = yolo.nms_boxes(xyxy, sc, iou_thr, top_k)
    return xyxy[keep], sc[keep]


# --------------------------------------------------------------------------- the detector

def _meta_for(path: Path, runner, override: Optional[Dict[str, Any]]) -> DetectorMeta:
    """The sidecar's keys (if any) with the input size from the model's input shape, when the
    model states it (an ONNX with fixed sizes); a sidecar that contradicts it is refused."""
    d = dict(override or {})
    in_shape = tuple(runner.input_shape)
    if len(in_shape) == 4:
        hh, ww = (in_shape[2], in_shape[3]) if runner.input_layout == "nchw" else (in_shape[1], in_shape[2])
        if isinstance(hh, int) and isinstance(ww, int):
            if "input_size" in d and tuple(d["input_size"]) != (ww, hh):
                raise DetectorError(f"{sidecar_path(path)}: input_size {list(d['input_size'])} but the model takes "
                                    f"{ww}x{hh}; fix or drop the key")
            d["input_size"] = (ww, hh)
    return DetectorMeta.from_dict(d, str(sidecar_path(path)) if override else str(path))


class PersonDetector:
    """A YOLO person detector on onnxruntime or RKNNLite.

    Args:
        model_path: ``.onnx`` (Ultralytics export, model zoo layout or YOLOX) or ``.rknn``
            (``host_tools build-rknn`` output with its sidecar, or a model zoo file; without a
            sidecar a 640x640 input is assumed).
        backend: ``"auto"`` (by file type), ``"onnxruntime"`` or ``"rknnlite"``.
        score_thr: minimum person probability.
        iou_thr: box NMS IoU threshold.
        top_k: at most this many boxes per frame.
        min_size: boxes thinner than this (frame pixels, after clipping) are dropped.
        backend_options: onnxruntime ``threads``; rknnlite ``core_mask``, ``rknnlite_cls``.

    Raises:
        FileNotFoundError; DetectorError (outputs match no layout, bad sidecar) or BackendError
        at load.

    Calling it on a BGR ``(H, W, 3)`` uint8 frame gives ``(N, 5)`` float64 boxes
    ``x, y, w, h, score`` in frame pixels, best first. ``last_timings`` holds the last call's
    ``letterbox``, ``infer`` and ``decode`` milliseconds.
    """

    def __init__(self, model_path: Union[str, Path], backend: str = "auto", score_thr: float = 0.25,
                 iou_thr: float = 0.45, top_k: int = 100, min_size: float = 2.0, **backend_options: Any) -> None:
        from .backends.outputs import open_outputs

        self.model_path = Path(model_path)
        if not 0 <= score_thr <= 1 or not 0 < iou_thr <= 1:
            raise ValueError(f"score_thr {score_thr} / iou_thr {iou_thr}: expected 0 <= score_thr <= 1 and 0 < iou_thr <= 1")
        self.score_thr, self.iou_thr, self.top_k, self.min_size = float(score_thr), float(iou_thr), int(top_k), float(min_size)
        override = read_detector_sidecar(self.model_path)
        self.runner = open_outputs(self.model_path, backend, **backend_options)
        try:
            meta = _meta_for(self.model_path, self.runner, override)
            shapes = list(self.runner.output_shapes)
            if not shapes:  # RKNNLite: shapes from the sidecar, else from one probe inference
                shapes = [tuple(o["shape"]) for o in meta.outputs if "shape" in o]
            if not shapes or any(None in s for s in shapes):  # dynamic ONNX export, or no sidecar
                w, h = meta.input_size
                probe = (np.zeros((1, h, w, 3), np.uint8) if self.runner.input_layout == "nhwc"
                         else np.zeros((1, 3, h, w), np.float32))
                shapes = [a.shape for a in self.runner.run(probe)]
            self.layout = identify_head(shapes, meta.input_size, meta.head, meta.strides, str(self.model_path))
            given = set(override or {})
            for k, v in _HEAD_DEFAULTS[self.layout.head].items():
                if k not in given:
                    setattr(meta, k, v)
            meta.head = self.layout.head
            meta.num_classes = self.layout.num_classes
            self.meta = meta.validate()
        except BaseException:
            self.runner.close()
            raise
        self.last_timings: Dict[str, float] = {}

    def detect_input(self, frame: np.ndarray) -> Tuple[np.ndarray, np.ndarray, Letterbox]:
        """``(xyxy (M, 4) input pixels, scores (M,), letterbox)`` for one frame (before the
        inverse letterbox): what :meth:`__call__` maps back, and what verify compares."""
        if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"frame: expected (H, W, 3) uint8 BGR, got {getattr(frame, 'shape', type(frame).__name__)}")
        t0 = time.perf_counter()
        x, lb = letterbox_input(frame, self.meta, self.runner.input_layout)
        t1 = time.perf_counter()
        outs = self.runner.run(x)
        t2 = time.perf_counter()
        xyxy, sc = decode_outputs(outs, self.meta, self.layout, self.score_thr, self.iou_thr, self.top_k)
        t3 = time.perf_counter()
        self.last_timings = {"letterbox": (t1 - t0) * 1e3, "infer": (t2 - t1) * 1e3, "decode": (t3 - t2) * 1e3}
        return xyxy, sc, lb

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        xyxy, sc, lb = self.detect_input(frame)
        b = np.concatenate([lb.boxes_to_frame(xyxy), sc[:, None].astype(np.float64)], axis=1)
        return b[(b[:, 2] >= self.min_size) & (b[:, 3] >= self.min_size)]

    def describe(self) -> str:
        w, h = self.meta.input_size
        return (f"{self.model_path.name}: {self.meta.head} head, {self.layout.num_classes} classes (person = "
                f"{self.meta.class_id}), input {w}x{h} {self.meta.color}, {len(self.runner.output_shapes)} outputs, "
                f"{self.runner.describe()}")

    def close(self) -> None:
        self.runner.close()

    def __enter__(self) -> "PersonDetector":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- HOG

class HogDetector:
    """OpenCV's built-in HOG + linear SVM people detector (Dalal & Triggs): no weights to
    download, CPU only, slow (about 0.5 s per frame at the default width on one x86 core) and
    weak: it finds upright, whole, fairly large people and misses sitting, occluded or small
    ones (on the 7 test photos with 28 annotated people: 5 found at IoU >= 0.5, 15 boxes; see
    docs/DETECT.md). For trying multi-person on a PC without a detector model.

    The frame is resized to ``width`` pixels wide (up or down: the 64x128 window then fits
    people down to about 128 / (width / frame width) pixels tall). Score: the SVM margin ``m``
    of ``detectMultiScale`` mapped to ``m / (1 + m)`` (0 at the decision boundary, 0.5 at
    margin 1): monotone, not a calibrated probability. Boxes are the detection windows (they
    include the window's margin around the person; the pose crop pads boxes anyway).

    Args:
        width: detection width in pixels (smaller is faster and misses small people).
        hit_threshold: minimum SVM margin.
        win_stride, scale: ``detectMultiScale`` step and pyramid factor.
        iou_thr: box NMS over the returned windows.
    """

    def __init__(self, width: int = 960, hit_threshold: float = 0.0, win_stride: Tuple[int, int] = (8, 8),
                 scale: float = 1.05, iou_thr: float = 0.45) -> None:
        import cv2

        if not hasattr(cv2, "HOGDescriptor"):
            raise DetectorError(f"--detector hog: this OpenCV ({cv2.__version__}) has no HOGDescriptor (OpenCV 5 moved "
                                "it out of the main module); use a YOLO ONNX instead: `host_tools pull yolox_nano`, "
                                "then --detector <the yolox_nano .onnx it wrote> (docs/DETECT.md), or "
                                "pip install 'opencv-python-headless<5' for HOG")
        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        self.width, self.hit_threshold = int(width), float(hit_threshold)
        self.win_stride, self.scale, self.iou_thr = tuple(win_stride), float(scale), float(iou_thr)
        self.last_timings: Dict[str, float] = {}

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """``(N, 5)`` boxes ``x, y, w, h, score`` in frame pixels for a BGR frame."""
        import cv2

        from .boxes import clip_boxes
        from .yolo import nms_boxes

        t0 = time.perf_counter()
        h, w = frame.shape[:2]
        f = self.width / float(w)
        img = frame if f == 1.0 else cv2.resize(frame, (self.width, max(int(round(h * f)), 1)),
                                                interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
        rects, weights = self.hog.detectMultiScale(img, hitThreshold=self.hit_threshold, winStride=self.win_stride,
                                                   padding=(8, 8), scale=self.scale)
        self.last_timings = {"hog": (time.perf_counter() - t0) * 1e3}
        if len(rects) == 0:
            return np.zeros((0, 5))
        r = np.asarray(rects, np.float64).reshape(-1, 4) / f
        m = np.maximum(np.asarray(weights, np.float64).reshape(-1), 0.0)
        xyxy = np.concatenate([r[:, :2], r[:, :2] + r[:, 2:]], axis=1)
        score = m / (1.0 + m)
        keep = nms_boxes(xyxy.astype(np.float32), score.astype(np.float32), self.iou_thr)
        return clip_boxes(np.concatenate([r[keep], score[keep, None]], axis=1), frame.shape)

    def close(self) -> None:
        pass

    def describe(self) -> str:
        return f"OpenCV HOG people detector (CPU, width {self.width})"


def is_detector_model(path: Union[str, Path]) -> bool:
    """Whether ``path`` is a detector: a detector sidecar, or an ONNX without edgepose pose
    metadata (a pose ONNX always carries it)."""
    p = Path(path)
    if read_detector_sidecar(p) is not None:
        return True
    if p.suffix.lower() != ".onnx" or not p.is_file():
        return False
    from .metadata import read_onnx_metadata

    try:
        return read_onnx_metadata(p) is None
    except Exception:  # unreadable or broken metadata: the pose path gives its own message
        return False


def print_detector_info(path: Union[str, Path], backend: str = "auto", core_mask: str = "auto") -> Dict[str, Any]:
    """What ``edgepose info --model DET`` prints for a detector; returns it (``ready`` False when
    the runtime is missing here, e.g. a ``.rknn`` on a PC: its sidecar is shown instead)."""
    from . import __version__, implementation, native_available
    from .backends import BackendError, installed

    p = Path(path)
    opts = {"core_mask": core_mask} if p.suffix.lower() == ".rknn" else {}
    info: Dict[str, Any] = {"edgepose": __version__, "model": str(p), "kind": "person detector",
                            "kernels": implementation(), "native_built": native_available()}
    side = read_detector_sidecar(p)
    if p.suffix.lower() == ".rknn" and backend in ("auto", "rknnlite") and not installed("rknnlite"):
        if side is None:
            raise DetectorError(f"{p}: no detector sidecar ({sidecar_path(p).name}) and no rknnlite here to read the model")
        info.update(backend="rknnlite (not installed here: on the board pip install rknn-toolkit-lite2)", ready=False,
                    metadata=DetectorMeta.from_dict(side, str(sidecar_path(p))).to_dict())
    else:
        try:
            det = PersonDetector(p, backend, **opts)
        except BackendError as exc:
            if side is None:
                raise
            info.update(backend=f"NOT READY ({exc})", ready=False, metadata=DetectorMeta.from_dict(side).to_dict())
        else:
            info.update(backend=det.runner.describe(), ready=True, summary=det.describe(), metadata=det.meta.to_dict(),
                        outputs=[list(s) for s in det.runner.output_shapes])
            det.close()
    print(f"model:    {info['model']} (person detector)")
    print(f"backend:  {info['backend']}")
    if "summary" in info:
        print(f"detector: {info['summary']}")
        print(f"outputs:  {', '.join(str(tuple(s)) for s in info['outputs'])}")
    print(f"kernels:  {info['kernels']} (native extension {'built' if info['native_built'] else 'NOT built: NumPy twins'})")
    print(f"edgepose: {info['edgepose']}")
    print("metadata:")
    for k, v in info["metadata"].items():
        print(f"  {k}: {json.dumps(v) if isinstance(v, (list, dict)) else v}")
    return info
