"""Detector test models: ONNX graphs whose outputs hold planted boxes, in each real head layout,
and randomly initialised torch heads of the same layouts.

Planted boxes are given in *frame* pixels of a given frame; they are moved into the letterboxed
input space with :class:`edgepose.geometry.Letterbox` (written here independently as the
Ultralytics numbers, not through edgepose's code, so a wrong inverse fails the tests) and
encoded the way each head would emit them. The graphs ignore their input values (the output is
a constant plus 0 x the input's mean, so the input is still a real input of the graph).
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

STRIDES = (8, 16, 32)


def ultralytics_letterbox(frame_wh: Sequence[int], input_wh: Sequence[int] = (640, 640)) -> Tuple[float, float, float, float]:
    """``(sx, sy, left, top)`` of the Ultralytics LetterBox for a frame: resize to
    ``round(w * r), round(h * r)`` with ``r = min(in_w / w, in_h / h)``, pad ``round(d/2 - 0.1)``."""
    w, h = frame_wh
    r = min(input_wh[0] / w, input_wh[1] / h)
    nw, nh = int(round(w * r)), int(round(h * r))
    return nw / w, nh / h, float(round((input_wh[0] - nw) / 2 - 0.1)), float(round((input_wh[1] - nh) / 2 - 0.1))


def to_input_xyxy(boxes_xywh: np.ndarray, frame_wh: Sequence[int], input_wh: Sequence[int] = (640, 640),
                  topleft: bool = False) -> np.ndarray:
    """Frame xywh -> letterboxed input xyxy (``topleft``: YOLOX's placement, no leading padding)."""
    sx, sy, left, top = ultralytics_letterbox(frame_wh, input_wh)
    if topleft:
        left = top = 0.0
    b = np.asarray(boxes_xywh, np.float64).reshape(-1, 4)
    x0, y0 = b[:, 0] * sx + left, b[:, 1] * sy + top
    return np.stack([x0, y0, x0 + b[:, 2] * sx, y0 + b[:, 3] * sy], 1)


def _const_model(path: Path, outputs: List[Tuple[str, np.ndarray]], input_wh: Sequence[int], opset: int = 13) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w, h = input_wh
    nodes = [helper.make_node("ReduceMean", ["images"], ["m"], keepdims=0),
             helper.make_node("Mul", ["m", "zero"], ["z"])]
    inits = [numpy_helper.from_array(np.zeros((), np.float32), "zero")]
    outs = []
    for name, arr in outputs:
        inits.append(numpy_helper.from_array(arr.astype(np.float32), name + "_c"))
        nodes.append(helper.make_node("Add", [name + "_c", "z"], [name]))
        outs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(arr.shape)))
    graph = helper.make_graph(nodes, "planted", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, h, w])],
                              outs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def planted_ultralytics(path: Path, xyxy: np.ndarray, scores: Sequence[float], nc: int = 80,
                        input_wh: Sequence[int] = (640, 640), decoy_class: Optional[int] = 2) -> Path:
    """``(1, 4 + nc, A)``: the planted persons at anchors spread over the grid, plus one decoy
    box of another class (``decoy_class``) that a person detector must ignore."""
    from edgepose.detect import num_anchors

    a = num_anchors(input_wh)
    out = np.zeros((1, 4 + nc, a), np.float32)
    xyxy = np.asarray(xyxy, np.float64).reshape(-1, 4)
    idx = np.linspace(10, a - 10, len(xyxy) + 1).astype(int)
    for k, (b, s) in enumerate(zip(xyxy, scores)):
        i = idx[k]
        out[0, :4, i] = [(b[0] + b[2]) / 2, (b[1] + b[3]) / 2, b[2] - b[0], b[3] - b[1]]
        out[0, 4, i] = s
    if decoy_class is not None:
        i = idx[-1]
        out[0, :4, i] = [input_wh[0] / 2, input_wh[1] / 2, 100, 100]
        out[0, 4 + decoy_class, i] = 0.95
    return _const_model(path, [("output0", out)], input_wh)


def _dfl_logits(d: float) -> np.ndarray:
    """16 logits whose softmax expectation over bins 0..15 is ``d`` (weights on floor/ceil)."""
    d = float(np.clip(d, 0, 15 - 1e-6))
    lo = int(np.floor(d))
    p = np.full(16, 1e-9)
    p[lo] += 1 - (d - lo)
    p[lo + 1] += d - lo
    return np.log(p / p.sum())


def planted_dfl(path: Path, xyxy: np.ndarray, scores: Sequence[float], nc: int = 80, with_sum: bool = True,
                input_wh: Sequence[int] = (640, 640)) -> Path:
    """Model zoo layout, per stride box ``(1, 64, h, w)``, class ``(1, nc, h, w)`` [, sum
    ``(1, 1, h, w)``]: each planted box goes to the cell holding its centre at the finest stride
    whose 16 bins reach its edges; box logits everywhere else are flat."""
    w, h = input_wh
    grids = [(-(-h // s), -(-w // s)) for s in STRIDES]
    box = [np.zeros((1, 64, gh, gw), np.float32) for gh, gw in grids]
    cls = [np.zeros((1, nc, gh, gw), np.float32) for gh, gw in grids]
    for b, sc in zip(np.asarray(xyxy, np.float64).reshape(-1, 4), scores):
        cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        for li, s in enumerate(STRIDES):
            j, i = int(cx // s), int(cy // s)
            ax, ay = (j + 0.5) * s, (i + 0.5) * s
            d = np.array([ax - b[0], ay - b[1], b[2] - ax, b[3] - ay]) / s
            if d.max() < 14.9 and d.min() >= 0:
                break
        else:
            raise ValueError(f"box {b} too large for the 16 DFL bins at stride 32")
        box[li][0, :, i, j] = np.concatenate([_dfl_logits(v) for v in d])
        cls[li][0, 0, i, j] = sc
    outs = []
    for li, s in enumerate(STRIDES):
        outs.append((f"box{s}", box[li]))
        outs.append((f"cls{s}", cls[li]))
        if with_sum:
            outs.append((f"sum{s}", np.clip(cls[li].sum(1, keepdims=True), 0, 1)))
    return _const_model(path, outs, input_wh)


def planted_yolox(path: Path, xyxy: np.ndarray, scores: Sequence[float], nc: int = 80,
                  input_wh: Sequence[int] = (640, 640)) -> Path:
    """Raw YOLOX head ``(1, A, 5 + nc)``: per anchor grid offsets, log sizes in cells,
    objectness, class probabilities; each box at the stride-8 cell holding its centre."""
    from edgepose.detect import num_anchors

    w, h = input_wh
    out = np.zeros((1, num_anchors(input_wh), 5 + nc), np.float32)
    out[0, :, 2:4] = -3.0  # tiny boxes elsewhere (score 0 anyway)
    for b, sc in zip(np.asarray(xyxy, np.float64).reshape(-1, 4), scores):
        s = 8
        cx, cy, bw, bh = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2, b[2] - b[0], b[3] - b[1]
        gx, gy = int(cx // s), int(cy // s)
        i = gy * (w // s) + gx
        out[0, i, :5] = [cx / s - gx, cy / s - gy, np.log(bw / s), np.log(bh / s), 1.0]
        out[0, i, 5] = sc
    return _const_model(path, [("output", out)], input_wh)


def random_heads(kind: str, nc: int = 80, input_wh: Sequence[int] = (320, 320), seed: int = 0):
    """A tiny randomly initialised torch detector with a real head layout: ``"ultralytics"``
    (decoded ``(1, 4+nc, A)`` as the Ultralytics export) or ``"dfl"`` (model zoo, 9 outputs)."""
    import torch
    from torch import nn

    torch.manual_seed(seed)

    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU(),
                                      nn.Conv2d(16, 16, 3, 2, 1), nn.ReLU())
            self.down = nn.ModuleList([nn.Identity(), nn.Sequential(nn.Conv2d(16, 16, 3, 2, 1), nn.ReLU()),
                                       nn.Sequential(nn.Conv2d(16, 16, 3, 4, 1), nn.ReLU())])
            self.box = nn.ModuleList([nn.Conv2d(16, 64, 1) for _ in STRIDES])
            self.cls = nn.ModuleList([nn.Conv2d(16, nc, 1) for _ in STRIDES])
            self.register_buffer("bins", torch.arange(16, dtype=torch.float32).view(1, 1, 16, 1))

        def forward(self, x):
            f = self.stem(x)
            outs, dec = [], []
            for li, s in enumerate(STRIDES):
                g = self.down[li](f)
                b, c = self.box[li](g), torch.sigmoid(self.cls[li](g))
                if kind == "dfl":
                    outs += [b, c, torch.clamp(c.sum(1, keepdim=True), 0, 1)]
                    continue
                n, _, gh, gw = b.shape
                dist = (torch.softmax(b.view(n, 4, 16, gh * gw), 2) * self.bins).sum(2)  # (n, 4, A_l)
                ys, xs = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
                anc = torch.stack([xs.reshape(-1), ys.reshape(-1)]).float().unsqueeze(0) + 0.5
                p0, p1 = anc - dist[:, :2], anc + dist[:, 2:]
                dec.append(torch.cat([(p0 + p1) / 2 * s, (p1 - p0) * s, c.view(n, nc, -1)], 1))
            return tuple(outs) if kind == "dfl" else torch.cat(dec, 2)

    return Tiny().eval()


def export_random(path: Path, kind: str, nc: int = 80, input_wh: Sequence[int] = (320, 320), seed: int = 0) -> Path:
    import torch

    m = random_heads(kind, nc, input_wh, seed)
    x = torch.zeros(1, 3, input_wh[1], input_wh[0])
    n_out = 9 if kind == "dfl" else 1
    names = [f"out{i}" for i in range(n_out)]
    torch.onnx.export(m, x, str(path), input_names=["images"], output_names=names, opset_version=13, dynamo=False)
    return path
