"""``host_tools import-onnx``: a foreign top-down heatmap ONNX -> an edgepose-ready ONNX.

Models exported elsewhere (mmdeploy's ``end2end.onnx`` of an mmpose heatmap model, HRNet and
Lite-HRNet exports, EfficientPose converted from TFLite) carry no edgepose metadata. This
command writes a copy with the :class:`edgepose.metadata.ModelMeta` JSON in its
``metadata_props`` (key ``edgepose``, the writer of ``export-onnx``), so ``edgepose run``,
``build-rknn`` and ``verify`` take it like an exported model.

What the user states (flags): input colour order, mean/std (0..255 scale), keypoint set (or
K and flip pairs), and the input size when the model leaves it open. What is read from the
model: the input size when fixed, the heatmap size (one run of onnxruntime on a zero input),
the batch. The two are checked against each other; a mismatch is one line naming both.

Known export quirks are repaired, each with a one-line note, and the outputs before and after
the repair are compared (onnxruntime on the same random input). Where the original cannot run
(onnxruntime refuses ``spatial=0``), every repaired node is checked instead against an
independent NumPy computation of what it must give, on the node's real input in the model:

* ``BatchNormalization`` with MXNet's ``spatial=0`` and per-channel ``(C,)`` parameters: the
  attribute goes (per-channel BN is what those files mean; onnxruntime 1.26 refuses them and
  ``spatial`` does not exist from opset 9 on);
* ``ConvTranspose`` whose ``output_shape`` has four values (tflite2onnx writes the whole
  ``N, C, H, W`` or ``N, H, W, C`` shape): the spatial two are kept;
* a dynamic batch: fixed to ``--batch`` (default 1; rknn-toolkit2 needs a fixed batch,
  ``--batch 0`` keeps it dynamic for onnxruntime);
* a dynamic input height/width: fixed to ``--input-size``.
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from host_tools.errors import UserError

# mmpose (0.x configs and 1.x data_preprocessor): bgr_to_rgb=True, ImageNet mean/std on 0..255, COCO 17
PRESETS: Dict[str, Dict[str, Any]] = {
    "mmpose": dict(color="rgb", mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375), keypoints="coco"),
}
STRIDES = (1, 2, 4, 8)  # heatmap strides of top-down heatmap models (EfficientPose 1, PoseResNet/HRNet 4)
REL_TOL = 1e-4  # the repairs change no arithmetic: float32 noise only


@dataclass
class ImportSpec:
    """What the user states about a foreign model.

    Attributes:
        color: ``"rgb"`` or ``"bgr"``, the channel order the network was trained on.
        mean, std: per channel in that order, 0..255 scale.
        keypoints: ``"coco"``, ``"mpii"``, or ``""`` with ``num_joints``/``flip_pairs``.
        num_joints: K for a custom keypoint set (0 when ``keypoints`` names one).
        flip_pairs: (left, right) pairs for a custom set.
        input_size: ``(w, h)``, or None to take it from the model.
        batch: the batch to fix a dynamic one to (0 keeps it dynamic).
        output: name of the heatmap output when the model has several heatmap-like ones.
        arch: name recorded in the metadata (default ``imported:<file stem>``).
    """

    color: str
    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]
    keypoints: str = ""
    num_joints: int = 0
    flip_pairs: List[List[int]] = field(default_factory=list)
    input_size: Optional[Tuple[int, int]] = None
    batch: int = 1
    output: str = ""
    arch: str = ""


# EfficientPose RT Lite (MPII), as converted from its TFLite release: RGB, x / 127.5 - 1, 16 MPII
# joints (docs/IMPORT.md); used by the demo, the tests and benchmarks/track_real.py
EFFICIENTPOSE_SPEC = ImportSpec(color="rgb", mean=(127.5,) * 3, std=(127.5,) * 3, keypoints="mpii",
                                arch="efficientpose_rt_lite")


@dataclass
class ImportResult:
    """What :func:`import_onnx` did: the file, its metadata, the repair notes and the check."""

    path: Path
    meta: Any
    notes: List[str]
    check: str
    max_abs_diff: float


# --------------------------------------------------------------------------- graph helpers

def _dims(value_info) -> List[Any]:
    """Dims of a graph input/output: int for a fixed dim, the symbol (or None) for an open one."""
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return []
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or None) for d in t.shape.dim]


def _fixed(d: Any) -> bool:
    return isinstance(d, int) and d > 0


def _session(model_or_bytes):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    data = model_or_bytes if isinstance(model_or_bytes, (bytes, str)) else model_or_bytes.SerializeToString()
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


def _first_line(exc: BaseException, limit: int = 120) -> str:
    line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return line if len(line) <= limit else line[:limit - 3] + "..."


def _initializer(graph, name: str) -> Optional[np.ndarray]:
    from onnx import numpy_helper

    for t in graph.initializer:
        if t.name == name:
            return numpy_helper.to_array(t)
    for node in graph.node:  # exporters may keep weights in Constant nodes
        if node.op_type == "Constant" and node.output[0] == name:
            for a in node.attribute:
                if a.name == "value":
                    return numpy_helper.to_array(a.t)
    return None


def _attr(node, name: str):
    for a in node.attribute:
        if a.name == name:
            return a
    return None


def _drop_attr(node, name: str) -> None:
    keep = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend(keep)


# --------------------------------------------------------------------------- repairs

def repair_batchnorm_spatial(model) -> Tuple[List[str], List[str]]:
    """Remove ``spatial`` from BatchNormalization nodes. Returns ``(node output names repaired
    from spatial=0, notes)``; ``spatial=1`` (the default, invalid from opset 9) goes silently
    into the same note. A ``spatial=0`` node with per-element ``(C, H, W)`` parameters is a
    true non-spatial BN, which edgepose does not repair (UserError)."""
    fixed0, fixed1 = [], 0
    for node in model.graph.node:
        if node.op_type != "BatchNormalization":
            continue
        a = _attr(node, "spatial")
        if a is None:
            continue
        if a.i == 0:
            scale = _initializer(model.graph, node.input[1])
            if scale is not None and scale.ndim != 1:
                raise UserError(f"BatchNormalization {node.name or node.output[0]!r}: spatial=0 with per-element "
                                f"parameters {scale.shape}; only per-channel (C,) parameters can be repaired")
            fixed0.append(node.output[0])
        else:
            fixed1 += 1
        _drop_attr(node, "spatial")
    notes = []
    if fixed0:
        notes.append(f"repaired: {len(fixed0)} BatchNormalization node(s) with MXNet's spatial=0 and per-channel "
                     "parameters made per-channel (attribute removed; onnxruntime refuses spatial=0)")
    if fixed1:
        notes.append(f"repaired: {fixed1} BatchNormalization node(s) carried spatial=1 (the default); attribute removed")
    return fixed0, notes


def repair_convtranspose_output_shape(model) -> Tuple[List[str], List[str]]:
    """Keep the spatial part of a ConvTranspose ``output_shape`` written with batch and channel
    (``N, C, H, W`` or ``N, H, W, C``, told apart by the output channel count of the weight).
    Returns ``(node output names repaired, notes)``."""
    done, layouts = [], set()
    for node in model.graph.node:
        if node.op_type != "ConvTranspose":
            continue
        a = _attr(node, "output_shape")
        if a is None:
            continue
        vals = list(a.ints)
        w = _initializer(model.graph, node.input[1])
        nsp = (w.ndim - 2) if w is not None else (len(_attr(node, "kernel_shape").ints) if _attr(node, "kernel_shape") else 2)
        if len(vals) == nsp:
            continue
        if len(vals) != nsp + 2:
            raise UserError(f"ConvTranspose {node.name or node.output[0]!r}: output_shape {vals} has {len(vals)} values; "
                            f"expected {nsp} (spatial) or {nsp + 2} (with batch and channel)")
        g = _attr(node, "group")
        cout = int(w.shape[1]) * (g.i if g is not None else 1) if w is not None else None
        if cout is None or vals[1] == cout:
            spatial, layout = vals[2:], "N, C, H, W"
        elif vals[-1] == cout:
            spatial, layout = vals[1:-1], "N, H, W, C"
        else:
            raise UserError(f"ConvTranspose {node.name or node.output[0]!r}: output_shape {vals} names no channel "
                            f"count {cout} of its weight; cannot tell its spatial part")
        _drop_attr(node, "output_shape")
        from onnx import helper

        node.attribute.append(helper.make_attribute("output_shape", [int(v) for v in spatial]))
        done.append(node.output[0])
        layouts.add(layout)
    notes = []
    if done:
        notes.append(f"repaired: {len(done)} ConvTranspose output_shape(s) written with four values "
                     f"({' / '.join(sorted(layouts))}) kept to their spatial part")
    return done, notes


def fix_input_dims(model, batch: int, size: Optional[Tuple[int, int]]) -> List[str]:
    """Fix an open batch (to ``batch``, unless 0) and open height/width (to ``size`` (w, h)) of the
    one input, drop stale intermediate shapes and re-infer them. Returns notes."""
    import onnx

    inp = model.graph.input[0]
    dims = inp.type.tensor_type.shape.dim
    notes = []
    if not (dims[0].HasField("dim_value") and dims[0].dim_value > 0) and batch > 0:
        old = dims[0].dim_param or "?"
        dims[0].Clear()
        dims[0].dim_value = batch
        notes.append(f"repaired: dynamic batch ({old!r}) fixed to {batch} (build-rknn needs a fixed batch; "
                     "--batch 0 keeps it dynamic for onnxruntime)")
        for out in model.graph.output:
            od = out.type.tensor_type.shape.dim
            if len(od) and not (od[0].HasField("dim_value") and od[0].dim_value > 0):
                od[0].Clear()
                od[0].dim_value = batch
    if size is not None:
        opened = []
        for i, v in ((2, size[1]), (3, size[0])):
            if not (dims[i].HasField("dim_value") and dims[i].dim_value > 0):
                opened.append(dims[i].dim_param or "?")
                dims[i].Clear()
                dims[i].dim_value = int(v)
        if opened:
            notes.append(f"repaired: dynamic input height/width ({', '.join(map(repr, opened))}) fixed to "
                         f"--input-size {size[0]} {size[1]}")
    if notes:
        del model.graph.value_info[:]
        for out in model.graph.output:  # let inference fill the output shapes again
            for i, d in enumerate(out.type.tensor_type.shape.dim):
                if i > 0 and not d.HasField("dim_value"):
                    d.Clear()
        try:
            inferred = onnx.shape_inference.infer_shapes(model)
            model.graph.value_info.extend(inferred.graph.value_info)
        except Exception:  # shapes are a hint for runtimes; onnxruntime infers its own
            pass
    return notes


# --------------------------------------------------------------------------- independent node references

def batchnorm_reference(x: np.ndarray, scale, bias, mean, var, eps: float) -> np.ndarray:
    """Per-channel BN of ``x (N, C, ...)`` in float64: ``scale * (x - mean) / sqrt(var + eps) + bias``."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    x = x.astype(np.float64)
    r = lambda a: np.asarray(a, np.float64).reshape(shape)  # noqa: E731
    return r(scale) * (x - r(mean)) / np.sqrt(r(var) + eps) + r(bias)


def conv_transpose_reference(x: np.ndarray, w: np.ndarray, b: Optional[np.ndarray], strides: Sequence[int],
                             dilations: Sequence[int], group: int, output_shape: Sequence[int],
                             output_padding: Sequence[int] = (0, 0), auto_pad: str = "NOTSET") -> np.ndarray:
    """2-d transposed convolution of ``x (N, Cin, H, W)`` with ``w (Cin, Cout/group, kh, kw)`` to
    the spatial ``output_shape (h, w)``, in float64, by scattering each kernel tap (the ONNX
    definition: full output, then ``total_padding`` split as the spec says for ``auto_pad``)."""
    n, cin, ih, iw = x.shape
    _, cpg, kh, kw = w.shape
    sh, sw = strides
    dh, dw = dilations
    fh, fw = sh * (ih - 1) + (kh - 1) * dh + 1 + output_padding[0], sw * (iw - 1) + (kw - 1) * dw + 1 + output_padding[1]
    full = np.zeros((n, cpg * group, fh, fw))
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    ipg = cin // group
    for g in range(group):
        xs = x64[:, g * ipg:(g + 1) * ipg]
        for ky in range(kh):
            for kx in range(kw):
                contrib = np.einsum("nchw,co->nohw", xs, w64[g * ipg:(g + 1) * ipg, :, ky, kx])
                full[:, g * cpg:(g + 1) * cpg, ky * dh:ky * dh + sh * (ih - 1) + 1:sh,
                     kx * dw:kx * dw + sw * (iw - 1) + 1:sw] += contrib
    out = []
    for axis, (total_len, want) in enumerate(((fh, output_shape[0]), (fw, output_shape[1]))):
        total = total_len - int(want)
        begin = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
        out.append((begin, begin + int(want)))
    if out[0][0] < 0 or out[1][0] < 0:
        raise ValueError(f"output_shape {list(output_shape)} larger than the full transposed output {(fh, fw)}")
    y = full[:, :, out[0][0]:out[0][1], out[1][0]:out[1][1]]
    if b is not None:
        y = y + np.asarray(b, np.float64).reshape(1, -1, 1, 1)
    return y


def check_nodes(model, outputs: Sequence[str], x: np.ndarray) -> float:
    """Run ``model`` on ``x`` with each repaired node's data input and output exposed, compute the
    node's output independently (:func:`batchnorm_reference`, :func:`conv_transpose_reference`)
    and return the largest difference relative to that node's largest magnitude."""
    from onnx import TensorProto, helper

    m = copy.deepcopy(model)
    nodes = [n for n in m.graph.node if n.output[0] in set(outputs)]
    have = {o.name for o in m.graph.output}
    for name in {t for n in nodes for t in (n.input[0], n.output[0])} - have:
        m.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    sess = _session(m)
    names = [o.name for o in sess.get_outputs()]
    vals = dict(zip(names, sess.run(None, {sess.get_inputs()[0].name: x})))
    worst = 0.0
    for n in nodes:
        xin, got = vals[n.input[0]], vals[n.output[0]]
        if n.op_type == "BatchNormalization":
            eps = _attr(n, "epsilon")
            ref = batchnorm_reference(xin, *(_initializer(m.graph, t) for t in n.input[1:5]),
                                      eps=eps.f if eps is not None else 1e-5)
        else:
            w = _initializer(m.graph, n.input[1])
            b = _initializer(m.graph, n.input[2]) if len(n.input) > 2 and n.input[2] else None
            get = lambda k, d: list(_attr(n, k).ints) if _attr(n, k) is not None else d  # noqa: E731
            g = _attr(n, "group")
            ap = _attr(n, "auto_pad")
            ref = conv_transpose_reference(xin, w, b, get("strides", [1, 1]), get("dilations", [1, 1]),
                                           g.i if g is not None else 1, get("output_shape", None),
                                           get("output_padding", [0, 0]), ap.s.decode() if ap is not None else "NOTSET")
        if got.shape != ref.shape:
            raise RuntimeError(f"repaired node {n.output[0]!r}: output {got.shape} but the reference gives {ref.shape}")
        scale = float(np.abs(ref).max(initial=0.0)) or 1.0
        worst = max(worst, float(np.abs(got - ref).max(initial=0.0)) / scale)
    return worst


# --------------------------------------------------------------------------- the import

def _keypoints(spec: ImportSpec) -> Tuple[str, int, List[List[int]]]:
    from edgepose.keypoints import KEYPOINT_SETS, flip_pairs_list

    if spec.keypoints:
        ks = KEYPOINT_SETS.get(spec.keypoints.lower())
        if ks is None:
            raise UserError(f"--keypoints {spec.keypoints}: choose one of {', '.join(sorted(KEYPOINT_SETS))}, or give "
                            "--num-joints K and --flip-pairs L,R ...")
        if spec.num_joints and spec.num_joints != ks.num_joints:
            raise UserError(f"--num-joints {spec.num_joints} but --keypoints {ks.name} has {ks.num_joints} joints; "
                            "give one of them")
        return ks.name, ks.num_joints, flip_pairs_list(ks)
    if spec.num_joints <= 0:
        raise UserError("--keypoints: required (coco or mpii), or --num-joints K (with --flip-pairs L,R ...) "
                        "for another joint set")
    for p in spec.flip_pairs:
        if len(p) != 2 or not all(0 <= j < spec.num_joints for j in p) or p[0] == p[1]:
            raise UserError(f"--flip-pairs {p[0]},{p[1]}: joints must be two different indices in 0..{spec.num_joints - 1}")
    return "custom", spec.num_joints, [list(p) for p in spec.flip_pairs]


def _heatmap_output(sess, input_size: Tuple[int, int], x: np.ndarray, want: str, path: Path) -> Tuple[int, str, Tuple[int, ...]]:
    """``(index, name, shape)`` of the heatmap output, found by running the model once: 4-d,
    spatial size ``input_size / s`` for one stride ``s`` in :data:`STRIDES`."""
    outs = sess.get_outputs()
    vals = sess.run(None, {sess.get_inputs()[0].name: x})
    w, h = input_size
    found, seen = [], []
    for i, (o, v) in enumerate(zip(outs, vals)):
        seen.append(f"{o.name} {tuple(v.shape)}")
        if v.ndim == 4 and v.shape[2] > 0 and v.shape[3] > 0 and h % v.shape[2] == 0 and w % v.shape[3] == 0 \
                and h // v.shape[2] == w // v.shape[3] and h // v.shape[2] in STRIDES:
            found.append((i, o.name, tuple(v.shape)))
    if want:
        for f in found:
            if f[1] == want:
                return f
        raise UserError(f"--output-name {want}: not a heatmap-like output of {path.name} (outputs: {'; '.join(seen)})")
    if not found:
        raise UserError(f"{path.name}: no heatmap-like output (N, K, {h}/s, {w}/s) for input {w}x{h} among "
                        f"{'; '.join(seen)}; import-onnx takes top-down heatmap models (not SimCC/RTMPose or "
                        "regression heads)")
    if len(found) > 1:
        raise UserError(f"{path.name}: several heatmap-like outputs ({', '.join(f[1] for f in found)}); "
                        "choose one with --output-name NAME")
    return found[0]


def import_onnx(src: str | Path, out: str | Path, spec: ImportSpec, force: bool = False, seed: int = 0,
                log=None) -> ImportResult:
    """Write ``out``: ``src`` with its export quirks repaired and edgepose metadata stamped in.

    Args:
        src: the foreign ONNX (one NCHW float input ``(B, 3, H, W)``, a heatmap output
            ``(B, K, H/s, W/s)``, ``s`` in 1, 2, 4, 8).
        out: the ``.onnx`` to write; never ``src``; an existing file only with ``force``.
        spec: what the user states (:class:`ImportSpec`).
        seed: seed of the random test input of the equality check.
        log: callable taking one line (default: print to stderr).

    Returns:
        :class:`ImportResult`.

    Raises:
        UserError: one line for every problem the user can fix (paths, flags vs model shapes).
    """
    import onnx

    from edgepose.metadata import MetadataError, ModelMeta, file_sha256
    from host_tools.export_onnx import embed_metadata, output_difference

    say = log or (lambda line: print(f"import-onnx: {line}", file=sys.stderr))
    src, out = Path(src), Path(out)
    if not src.is_file():
        raise UserError(f"{src}: ONNX model not found")
    if out.suffix != ".onnx":
        raise UserError(f"-o {out}: the output name must end in .onnx")
    if out.resolve() == src.resolve():
        raise UserError(f"-o {out}: the same file as the input; write the stamped model to another name")
    if out.exists() and not force:
        raise UserError(f"-o {out}: already exists; choose another name or pass --force to replace it")
    if not out.parent.is_dir():
        raise UserError(f"-o {out}: folder {out.parent} does not exist; create it first")
    if spec.color not in ("rgb", "bgr"):
        raise UserError(f"--color {spec.color}: choose rgb or bgr (the channel order the network was trained on)")
    for name, v in (("--mean", spec.mean), ("--std", spec.std)):
        if len(v) != 3:
            raise UserError(f"{name}: {len(v)} value(s), expected 3 (one per channel, in the model's colour order)")
    if any(float(s) <= 0 for s in spec.std):
        raise UserError(f"--std {' '.join(map(str, spec.std))}: every value must be > 0")
    if max(map(abs, spec.mean)) <= 1.0 and max(spec.std) <= 1.0:
        raise UserError(f"--mean {' '.join(map(str, spec.mean))} --std {' '.join(map(str, spec.std))}: looks like the "
                        "0..1 scale; give them on the 0..255 scale (multiply by 255)")
    if spec.batch < 0:
        raise UserError(f"--batch {spec.batch}: use a positive batch, or 0 to keep a dynamic one")
    kset, k, pairs = _keypoints(spec)
    try:
        model = onnx.load(str(src))
    except Exception as exc:
        raise UserError(f"{src}: not a readable ONNX model ({_first_line(exc)})") from None
    from edgepose.metadata import METADATA_KEY

    if any(p.key == METADATA_KEY for p in model.metadata_props):
        say(f"note: {src.name} already carries edgepose metadata; it is replaced")
    inits = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise UserError(f"{src.name}: {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); import-onnx takes "
                        "a model with one image input")
    if model.graph.input[0].name != inputs[0].name:  # older exporters list initializers as inputs first
        rest = [i for i in model.graph.input if i.name != inputs[0].name]
        del model.graph.input[:]
        model.graph.input.extend([inputs[0]] + rest)
    idims = _dims(inputs[0])
    if inputs[0].type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise UserError(f"{src.name}: input {inputs[0].name!r} is not float32; edgepose feeds float32 NCHW crops")
    if len(idims) != 4 or idims[1] != 3:
        hint = " (NHWC: put a Transpose in front, or re-export as NCHW)" if len(idims) == 4 and idims[3] == 3 else ""
        raise UserError(f"{src.name}: input {inputs[0].name!r} shape {idims}; expected (B, 3, H, W) NCHW{hint}")
    model_size = (idims[3], idims[2]) if _fixed(idims[2]) and _fixed(idims[3]) else None
    if spec.input_size is not None:
        if any(int(v) <= 0 for v in spec.input_size):
            raise UserError(f"--input-size {spec.input_size[0]} {spec.input_size[1]}: width and height must be > 0")
        for flag_v, model_v, what in ((spec.input_size[0], idims[3], "width"), (spec.input_size[1], idims[2], "height")):
            if _fixed(model_v) and int(flag_v) != model_v:
                raise UserError(f"--input-size {spec.input_size[0]} {spec.input_size[1]} but the model input "
                                f"{inputs[0].name!r} is {idims[3]}x{idims[2]} (W x H, {what} differs); "
                                f"use --input-size {idims[3]} {idims[2]}")
    size = tuple(int(v) for v in spec.input_size) if spec.input_size is not None else model_size
    if size is None:
        raise UserError(f"{src.name}: the input {inputs[0].name!r} {idims} leaves height/width open; give "
                        "--input-size W H (the size the model was trained at)")
    model_batch = idims[0] if _fixed(idims[0]) else 0
    if model_batch and spec.batch not in (1, model_batch) and spec.batch != 0:
        raise UserError(f"--batch {spec.batch} but the model input has a fixed batch {model_batch}; drop --batch")

    original = copy.deepcopy(model)
    notes: List[str] = []
    bn_nodes, n1 = repair_batchnorm_spatial(model)
    ct_nodes, n2 = repair_convtranspose_output_shape(model)
    notes += n1 + n2 + fix_input_dims(model, spec.batch, size)
    for line in notes:
        say(line)

    w, h = size
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((model_batch or 1, 3, h, w)).astype(np.float32)
    try:
        sess = _session(model)
    except Exception as exc:
        raise UserError(f"{src.name}: onnxruntime cannot load it ({_first_line(exc)})") from None
    try:
        hidx, hname, hshape = _heatmap_output(sess, size, x, spec.output, src)
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"{src.name}: onnxruntime cannot run it on a {w}x{h} input ({_first_line(exc)}); "
                        "is --input-size the size the model was trained at?") from None
    if hshape[1] != k:
        raise UserError(f"{src.name}: output {hname!r} has {hshape[1]} heatmaps but --keypoints {kset} has {k} joints; "
                        f"pass the keypoint set the model was trained on"
                        + (" (mpii has 16)" if hshape[1] == 16 else " (coco has 17)" if hshape[1] == 17 else ""))
    keep_out = [o for o in model.graph.output if o.name == hname]
    if len(model.graph.output) > 1 or hidx != 0:
        dropped = [o.name for o in model.graph.output if o.name != hname]
        del model.graph.output[:]
        model.graph.output.extend(keep_out)
        notes.append(f"note: kept the heatmap output {hname!r}, dropped {', '.join(dropped)}")
        say(notes[-1])
        sess = _session(model)

    # outputs before and after the repair, on the same input
    got = sess.run([hname], {sess.get_inputs()[0].name: x})[0]
    check, diff = "no repair needed", 0.0
    if bn_nodes or ct_nodes or len(notes):
        try:
            ref = _session(original).run([hname], {inputs[0].name: x})[0]
            ran = ref.shape == got.shape
            why = f"gives {ref.shape}, the repaired {got.shape}" if not ran else ""
        except Exception as exc:
            ran, why = False, _first_line(exc)
        if ran:
            diff, rel = output_difference(got, ref)
            if rel > REL_TOL:
                raise RuntimeError(f"the repaired model's output differs from the original's by {diff:.3g} "
                                   f"({rel:.2g} relative); a bug of import-onnx, please report it")
            check = f"outputs before and after the repair equal (onnxruntime, max abs diff {diff:.3g})"
        elif bn_nodes or ct_nodes:
            rel = check_nodes(model, bn_nodes + ct_nodes, x)
            if rel > REL_TOL:
                raise RuntimeError(f"a repaired node differs from its NumPy reference by {rel:.2g} (relative); "
                                   "a bug of import-onnx, please report it")
            diff = rel
            check = (f"the original does not run in onnxruntime ({why}); each repaired node checked against "
                     f"NumPy on its real input: max relative diff {rel:.2g}")
        else:
            raise UserError(f"{src.name}: the original does not run in onnxruntime ({why})")
    say(check)

    meta = ModelMeta(input_size=(w, h), heatmap_size=(hshape[3], hshape[2]), color=spec.color,
                     mean=tuple(map(float, spec.mean)), std=tuple(map(float, spec.std)), keypoint_set=kset,
                     num_joints=k, flip_pairs=pairs, batch=model_batch or spec.batch, layout="nchw",
                     quantized="float32", arch=spec.arch or f"imported:{src.stem}",
                     source_config={"imported_from": src.name, "sha256": file_sha256(src),
                                    "repairs": notes})
    try:
        meta.validate()
    except MetadataError as exc:
        raise UserError(str(exc)) from None
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=str(out.parent))
    os.close(fd)
    try:
        onnx.save(model, tmp)
        embed_metadata(tmp, meta)
        try:
            onnx.checker.check_model(tmp)
        except onnx.checker.ValidationError as exc:
            say(f"warning: onnx.checker: {_first_line(exc)} (onnxruntime runs it)")
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return ImportResult(out, meta, notes, check, diff)


# --------------------------------------------------------------------------- CLI

def _pair(text: str) -> List[int]:
    try:
        a, b = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: write a pair as L,R (two joint indices)") from None
    return [a, b]


def spec_from_args(args: argparse.Namespace) -> ImportSpec:
    """:class:`ImportSpec` from the flags; a preset fills what the flags leave out."""
    preset = PRESETS[args.preset] if args.preset else {}
    missing = [f for f, v in (("--color", args.color or preset.get("color")), ("--mean", args.mean or preset.get("mean")),
                              ("--std", args.std or preset.get("std"))) if not v]
    if missing:
        raise UserError(f"{' '.join(missing)}: required for a foreign model (how it was trained), or --preset mmpose "
                        "for mmpose exports (RGB, ImageNet mean/std, COCO 17)")
    kp = args.keypoints or ("" if args.num_joints else preset.get("keypoints", ""))
    return ImportSpec(color=args.color or preset["color"], mean=tuple(args.mean or preset["mean"]),
                      std=tuple(args.std or preset["std"]), keypoints=kp, num_joints=args.num_joints or 0,
                      flip_pairs=args.flip_pairs or [], input_size=tuple(args.input_size) if args.input_size else None,
                      batch=args.batch, output=args.output_name or "", arch=args.arch or "")


def _handler(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    res = import_onnx(args.model, args.output, spec_from_args(args), force=args.force)
    m = res.meta
    print(f"import-onnx: wrote {res.path}: input {m.input_size[0]}x{m.input_size[1]} {m.color} mean {list(m.mean)} "
          f"std {list(m.std)}, heatmaps {m.num_joints}x{m.heatmap_size[1]}x{m.heatmap_size[0]} "
          f"(stride {m.input_size[0] // m.heatmap_size[0]}), keypoints {m.keypoint_set}, batch "
          f"{'dynamic' if m.batch == 0 else m.batch}; {len(res.notes)} note(s) ({time.perf_counter() - t0:.1f} s)")
    return 0


def register(subparsers) -> None:
    """Add ``host_tools import-onnx``."""
    p = subparsers.add_parser(
        "import-onnx", help="foreign top-down heatmap ONNX (mmdeploy, HRNet, EfficientPose) -> edgepose ONNX",
        description="Stamp edgepose metadata onto an ONNX pose model exported elsewhere, repairing known export "
                    "quirks (BatchNormalization spatial=0, 4-value ConvTranspose output_shape, dynamic batch) with "
                    "the outputs checked equal. See docs/IMPORT.md for the flags of common exports.")
    p.add_argument("model", help="the foreign .onnx (never modified)")
    p.add_argument("-o", "--output", required=True, help="the .onnx to write")
    p.add_argument("--preset", choices=sorted(PRESETS), help="mmpose: RGB, ImageNet mean/std (0..255), COCO 17")
    p.add_argument("--input-size", nargs=2, type=int, metavar=("W", "H"),
                   help="model input width and height (default: from the model; required when it is open)")
    p.add_argument("--color", choices=("rgb", "bgr"), help="channel order the network was trained on")
    p.add_argument("--mean", nargs=3, type=float, metavar="M", help="per-channel mean, 0..255 scale, model order")
    p.add_argument("--std", nargs=3, type=float, metavar="S", help="per-channel std, 0..255 scale, model order")
    p.add_argument("--keypoints", help="keypoint set: coco or mpii")
    p.add_argument("--num-joints", type=int, help="K, for a keypoint set other than coco/mpii")
    p.add_argument("--flip-pairs", nargs="*", type=_pair, metavar="L,R", help="left/right joint pairs (with --num-joints)")
    p.add_argument("--batch", type=int, default=1, help="batch to fix a dynamic batch to (default 1; 0 keeps it dynamic)")
    p.add_argument("--output-name", help="the heatmap output, when the model has several")
    p.add_argument("--arch", help="architecture name recorded in the metadata")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.set_defaults(func=_handler)
