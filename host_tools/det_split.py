"""Split the head of a single-output YOLO detector ONNX into per-stride outputs (for INT8 builds).

A single ``(1, A, 5 + nc)`` (YOLOX) or ``(1, 4 + nc, A)`` (Ultralytics) output holds box
coordinates and probabilities side by side, so an INT8 build gives them one scale and the
probabilities collapse. Both exports build that tensor the same way: per stride, the head's box
and score branches are concatenated on the channel axis (``Concat(axis=1)``, a ``(1, C, h, w)``
tensor on the stride's grid), flattened, concatenated over the strides and (YOLOX) transposed;
Ultralytics then splits it again and decodes it (DFL softmax, anchors, strides, sigmoid).

:func:`split_head` finds that pattern from the graph alone (no node names): walking up from the
one output, the first tensors on a grid ``(ceil(H/s), ceil(W/s))`` must be, one per stride, the
outputs of a channel ``Concat`` whose grids account for all A anchors; their inputs are the
branches. It writes a copy of the graph whose outputs are those branches:

* YOLOX (branches ``4, 1, nc``): per stride box ``(1, 4, h, w)`` (raw: grid offsets and log
  sizes), objectness ``(1, 1, h, w)`` and classes ``(1, nc, h, w)`` (probabilities): edgepose's
  ``yolox_split`` head, 3 outputs per stride.
* Ultralytics (branches ``4 R, nc``): per stride the DFL box logits ``(1, 4 R, h, w)`` and the
  class probabilities ``(1, nc, h, w)`` (the sigmoid that the export applies after its split is
  added on each stride's branch): the Rockchip model zoo's layout, edgepose's ``dfl`` head with
  6 outputs, decoded by the kernel that already decodes the zoo's models.

Anything else is refused with one line naming what was expected. The split graph is checked
against the original on onnxruntime before it is used: reassembled (YOLOX) or decoded
(Ultralytics), its outputs must give the original output.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from host_tools.errors import UserError

GRID_STRIDES = (8, 16, 32, 64)
# ops that carry no values forward (their inputs are only read for shapes)
_SHAPE_ONLY = {"Shape", "Size"}
EXPECTED = ("one output (1, A, 5+nc) [YOLOX] or (1, 4+nc, A) [Ultralytics] built, per stride 8/16/32, from a "
            "Concat(axis=1) of the head's branches on the (H/s, W/s) grid: box (4), objectness (1), classes (nc) "
            "[YOLOX] or DFL box (4*R), classes (nc) [Ultralytics]")


@dataclass
class SplitHead:
    """What :func:`split_head` did: written into the detector sidecar (``split``).

    Attributes:
        family: ``"yolox"`` or ``"ultralytics"`` (the single-output export it came from).
        head: edgepose head of the split graph: ``"yolox_split"`` or ``"dfl"``.
        strides: per level, in output order (ascending).
        outputs: ``(name, shape)`` of each new output, per stride box, [objectness,] classes.
        source_output: name and shape of the original single output.
        sigmoid_added: names of the class branches a Sigmoid was added to.
    """

    family: str
    head: str
    strides: List[int]
    outputs: List[Tuple[str, List[int]]]
    source_output: Tuple[str, List[int]]
    sigmoid_added: List[str] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        return {"from": self.family, "head": self.head, "strides": list(self.strides),
                "source_output": {"name": self.source_output[0], "shape": list(self.source_output[1])},
                "outputs": [{"name": n, "shape": list(s)} for n, s in self.outputs],
                "sigmoid_added": list(self.sigmoid_added)}


def _refuse(path, why: str) -> UserError:
    return UserError(f"{path}: cannot split the detector head for INT8: {why}; expected {EXPECTED}")


def _attr(node, name: str, default=None):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _shapes(model, names: Sequence[str]) -> Dict[str, Tuple[int, ...]]:
    """Actual shapes of ``names`` from one onnxruntime run on zeros (robust to shapes that only
    exist at run time, e.g. Reshape targets computed in the graph)."""
    import onnx
    import onnxruntime as ort
    from onnx import helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    for n in names:
        if n not in have:
            m.graph.output.append(helper.make_empty_tensor_value_info(n))
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every tensor
    sess = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    x = np.zeros([int(d) for d in inp.shape], np.float32)
    outs = sess.run(None, {inp.name: x})
    return {o.name: tuple(v.shape) for o, v in zip(sess.get_outputs(), outs)}


def _input_hw(model, path) -> Tuple[int, int]:
    inits = {i.name for i in model.graph.initializer}
    ins = [i for i in model.graph.input if i.name not in inits]
    if len(ins) != 1:
        raise _refuse(path, f"{len(ins)} graph inputs (one image input expected)")
    dims = [d.dim_value if d.HasField("dim_value") else 0 for d in ins[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or dims[1] != 3 or dims[2] <= 0 or dims[3] <= 0 or dims[0] not in (0, 1):
        raise _refuse(path, f"input shape {dims} (a fixed (1, 3, H, W) expected; export with a fixed image size)")
    return dims[2], dims[3]


def _downstream_has(graph, tensor: str, op: str, stop: str) -> bool:
    """Whether an ``op`` node lies on some path from ``tensor`` to the tensor ``stop``."""
    consumers: Dict[str, List[Any]] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    stack, seen = [tensor], set()
    while stack:
        t = stack.pop()
        if t in seen or t == stop:
            continue
        seen.add(t)
        for n in consumers.get(t, []):
            if n.op_type == op:
                return True
            stack.extend(n.output)
    return False


def find_levels(model, path="detector") -> Tuple[Dict[str, Tuple[int, ...]], List[Tuple[int, Any]], Tuple[int, int]]:
    """The per-stride channel Concats of a single-output head: ``(shapes, [(stride, node)], (H, W))``,
    levels in ascending stride. Raises UserError (one line) when the pattern is not there."""
    g = model.graph
    if len(g.output) != 1:
        raise _refuse(path, f"{len(g.output)} outputs (this is for single-output exports)")
    h, w = _input_hw(model, path)
    grids = {(-(-h // s), -(-w // s)): s for s in reversed(GRID_STRIDES)}  # (small strides win a tie)
    producer = {t: n for n in g.node for t in n.output}
    consts = {i.name for i in g.initializer} | {t for n in g.node if n.op_type == "Constant" for t in n.output}
    inputs = {i.name for i in g.input} - consts
    shapes = _shapes(model, [t for n in g.node if n.op_type not in ("Constant",) for t in n.output])
    out = g.output[0].name
    found: List[str] = []
    stack, seen = [out], set()
    while stack:
        t = stack.pop()
        if t in seen or t in consts or not t:
            continue
        seen.add(t)
        if t in inputs:
            raise _refuse(path, "walking up from the output reached the image input without meeting per-stride "
                                "(1, C, H/s, W/s) tensors")
        sh = shapes.get(t)
        if sh is not None and len(sh) == 4 and sh[0] == 1 and (sh[2], sh[3]) in grids and t != out:
            found.append(t)
            continue
        node = producer.get(t)
        if node is None or node.op_type in _SHAPE_ONLY:
            continue
        stack.extend(node.input)
    by_stride: Dict[int, List[str]] = {}
    for t in found:
        by_stride.setdefault(grids[shapes[t][2:]], []).append(t)
    if not by_stride:
        raise _refuse(path, "no per-stride (1, C, H/s, W/s) tensor feeds the output")
    for s, ts in by_stride.items():
        if len(ts) != 1:
            raise _refuse(path, f"{len(ts)} tensors on the stride-{s} grid feed the output ({', '.join(ts)}), "
                                "expected one channel Concat per stride")
    levels = []
    for s in sorted(by_stride):
        t = by_stride[s][0]
        node = producer.get(t)
        if node is None or node.op_type != "Concat" or _attr(node, "axis") not in (1, -3):
            raise _refuse(path, f"the stride-{s} tensor {t!r} comes from "
                                f"{node.op_type if node is not None else 'no node'}, not a Concat(axis=1)")
        levels.append((s, node))
    anchors = sum(shapes[n.output[0]][2] * shapes[n.output[0]][3] for _, n in levels)
    osh = shapes[out]
    if len(osh) != 3 or osh[0] != 1 or anchors not in (osh[1], osh[2]):
        raise _refuse(path, f"output shape {osh}, but the strides {[s for s, _ in levels]} give {anchors} anchors")
    return shapes, levels, (h, w)


def plan_split(model, path="detector") -> Tuple[SplitHead, List[Tuple[str, bool]]]:
    """Which tensors become outputs: ``(SplitHead, [(tensor, add_sigmoid)])`` in output order."""
    shapes, levels, _ = find_levels(model, path)
    g = model.graph
    out = g.output[0].name
    osh = shapes[out]
    anchors = sum(shapes[n.output[0]][2] * shapes[n.output[0]][3] for _, n in levels)
    family = "yolox" if osh[1] == anchors and osh[2] > 5 else "ultralytics" if osh[2] == anchors and osh[1] > 4 else ""
    if not family:
        raise _refuse(path, f"output shape {osh} fits neither (1, A, 5+nc) nor (1, 4+nc, A) with A = {anchors}")
    nc = osh[2] - 5 if family == "yolox" else osh[1] - 4
    producer = {t: n for n in g.node for t in n.output}
    plan: List[Tuple[str, bool]] = []
    outs: List[Tuple[str, List[int]]] = []
    added: List[str] = []

    def prob(t: str, what: str, s: int) -> Tuple[str, bool]:
        p = producer.get(t)
        if p is not None and p.op_type == "Sigmoid":
            return t, False
        if _downstream_has(g, t, "Sigmoid", out):
            added.append(t)
            return t, True
        raise _refuse(path, f"the stride-{s} {what} branch {t!r} passes through no Sigmoid (probabilities expected)")

    for s, node in levels:
        br = [t for t in node.input]
        ch = [shapes[t][1] if len(shapes.get(t, ())) == 4 else -1 for t in br]
        if family == "yolox":
            if ch != [4, 1, nc]:
                raise _refuse(path, f"YOLOX stride {s}: the Concat joins channels {ch}, expected [4, 1, {nc}] "
                                    "(box, objectness, classes)")
            chosen = [(br[0], False), prob(br[1], "objectness", s), prob(br[2], "class", s)]
        else:
            if len(ch) != 2 or ch[1] != nc or ch[0] <= 0 or ch[0] % 4:
                raise _refuse(path, f"Ultralytics stride {s}: the Concat joins channels {ch}, expected "
                                    f"[4*R, {nc}] (DFL box logits, class logits)")
            if ch[0] // 4 > 64:
                raise _refuse(path, f"Ultralytics stride {s}: {ch[0] // 4} DFL bins per side (at most 64)")
            chosen = [(br[0], False), prob(br[1], "class", s)]
        for t, sig in chosen:
            plan.append((t, sig))
            outs.append((t + "_sigmoid" if sig else t, [int(v) for v in shapes[t]]))
    head = SplitHead(family, "yolox_split" if family == "yolox" else "dfl", [s for s, _ in levels], outs,
                     (out, [int(v) for v in osh]), added)
    return head, plan


def _prune(graph, keep_outputs: Sequence[str]) -> None:
    """Drop the nodes and initializers no kept output depends on."""
    producer = {t: i for i, n in enumerate(graph.node) for t in n.output}
    need, stack = set(), list(keep_outputs)
    used: set = set()
    while stack:
        t = stack.pop()
        if t in used:
            continue
        used.add(t)
        i = producer.get(t)
        if i is None or i in need:
            continue
        need.add(i)
        n = graph.node[i]
        stack.extend(x for x in n.input if x)
        for a in n.attribute:  # subgraphs (If/Loop) read outer tensors too
            if a.g is not None:
                stack.extend(x for sn in a.g.node for x in sn.input if x)
    nodes = [n for i, n in enumerate(graph.node) if i in need]
    del graph.node[:]
    graph.node.extend(nodes)
    inits = [x for x in graph.initializer if x.name in used]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    vis = [v for v in graph.value_info if v.name in used]
    del graph.value_info[:]
    graph.value_info.extend(vis)


def split_head(onnx_path: str | Path, out_path: str | Path, check: bool = True) -> SplitHead:
    """Write ``out_path``: the detector ``onnx_path`` with its head split (module docstring).

    Raises:
        UserError: one line, when the head is not the pattern described or the split graph does
            not reproduce the original output.
    """
    import onnx
    from onnx import TensorProto, helper

    try:
        model = onnx.load(str(onnx_path))
    except Exception as exc:  # protobuf / IO errors
        raise UserError(f"{onnx_path}: not a readable ONNX model ({type(exc).__name__})") from None
    head, plan = plan_split(model, onnx_path)
    g = model.graph
    for t, sig in plan:
        if sig:
            g.node.append(helper.make_node("Sigmoid", [t], [t + "_sigmoid"], name=f"edgepose_split_sigmoid_{t}"))
    del g.output[:]
    for name, shape in head.outputs:
        g.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))
    _prune(g, [n for n, _ in head.outputs])
    onnx.checker.check_model(model)
    onnx.save(model, str(out_path))
    if check:
        check_split(onnx_path, out_path, head)
    return head


# --------------------------------------------------------------------------- check

def _run(path, x: np.ndarray) -> List[np.ndarray]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})


def reassemble(head: SplitHead, outs: Sequence[np.ndarray]) -> np.ndarray:
    """The original single output rebuilt from the split outputs (float, numpy): YOLOX by
    concatenation; Ultralytics by the DFL expectation, the anchors and the sigmoided classes."""
    per = 3 if head.family == "yolox" else 2
    cols = []
    for li, s in enumerate(head.strides):
        grp = [np.asarray(o, np.float64)[0] for o in outs[li * per:(li + 1) * per]]
        c, hh, ww = grp[0].shape
        if head.family == "yolox":
            cols.append(np.concatenate(grp, 0).reshape(-1, hh * ww))
            continue
        r = c // 4
        logit = grp[0].reshape(4, r, hh * ww)
        e = np.exp(logit - logit.max(1, keepdims=True))
        d = (e * np.arange(r)[None, :, None]).sum(1) / e.sum(1)  # (4, hw) l, t, r, b in cells
        ys, xs = np.mgrid[0:hh, 0:ww]
        ax, ay = xs.reshape(-1) + 0.5, ys.reshape(-1) + 0.5
        x0, y0, x1, y1 = ax - d[0], ay - d[1], ax + d[2], ay + d[3]
        box = np.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0]) * s
        cols.append(np.concatenate([box, grp[1].reshape(-1, hh * ww)], 0))
    full = np.concatenate(cols, 1)[None]
    return full.transpose(0, 2, 1) if head.family == "yolox" else full


def check_split(onnx_path, split_path, head: SplitHead, atol_px: float = 0.05) -> float:
    """Run both graphs on one random input; the split outputs must rebuild the original output
    (probabilities within 1e-4, box values within ``atol_px`` input pixels). Returns the max error."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    shp = [int(d) if isinstance(d, int) and d > 0 else 1 for d in sess.get_inputs()[0].shape]
    del sess
    x = np.random.default_rng(0).uniform(0, 1, shp).astype(np.float32)
    ref = np.asarray(_run(onnx_path, x)[0], np.float64)
    got = reassemble(head, _run(split_path, x))
    if got.shape != ref.shape:
        raise UserError(f"{onnx_path}: the split head gives {got.shape}, the model {ref.shape}; "
                        f"not splitting this head (expected {EXPECTED})")
    if head.family == "yolox":
        err = float(np.abs(got - ref).max())
        ok = err <= 1e-4
    else:
        err_box = float(np.abs(got[:, :4] - ref[:, :4]).max())
        err = max(err_box / atol_px, float(np.abs(got[:, 4:] - ref[:, 4:]).max()) / 1e-4) * 1e-4
        ok = err_box <= atol_px and float(np.abs(got[:, 4:] - ref[:, 4:]).max()) <= 1e-4
    if not ok:
        raise UserError(f"{onnx_path}: the split head does not reproduce the model's output (max difference "
                        f"{err:.3g}); not splitting it. Expected {EXPECTED}")
    return err
