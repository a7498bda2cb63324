"""Random-weight detectors whose heads are built the way the real single-output exports build
them, for the head split (``host_tools/det_split.py``) and the split decodes.

Written here from the published structure of the two heads, not copied from their projects:

* ``yolox``: per stride a box conv (4 channels: x, y offsets in cells, log w, log h), an
  objectness conv and a class conv, both through a sigmoid, concatenated on channels, flattened,
  concatenated over strides and transposed to ``(1, A, 5 + nc)``;
* ``ultralytics``: per stride a DFL box conv (4 x 16 logits) and a class conv concatenated on
  channels, flattened and concatenated over strides, split again into box and class rows; the
  box rows go through the DFL (softmax over the 16 bins, a 1x1 conv with weights 0..15), the
  anchor points and the strides into centre x, y, width, height in input pixels; the class rows
  through a sigmoid; both concatenated to ``(1, 4 + nc, A)``.

``bias`` shifts the objectness / class logits so that a random net still has confident anchors.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

STRIDES = (8, 16, 32)


def yolo_net(family: str, nc: int = 3, input_wh: Sequence[int] = (128, 96), seed: int = 0, bias: float = 0.0,
             single_conv: bool = False):
    """The torch module (eval mode). ``single_conv``: YOLOX whose per-stride head is one conv of
    5 + nc channels (no branch Concat): the pattern the split must refuse."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    w, h = input_wh

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.SiLU(), nn.Conv2d(8, 16, 3, 2, 1), nn.SiLU(),
                                      nn.Conv2d(16, 16, 3, 2, 1), nn.SiLU())
            self.down = nn.ModuleList([nn.Identity(), nn.Sequential(nn.Conv2d(16, 16, 3, 2, 1), nn.SiLU()),
                                       nn.Sequential(nn.Conv2d(16, 16, 3, 2, 1), nn.SiLU(), nn.Conv2d(16, 16, 3, 2, 1),
                                                     nn.SiLU())])
            if family == "yolox":
                if single_conv:
                    self.one = nn.ModuleList([nn.Conv2d(16, 5 + nc, 1) for _ in STRIDES])
                self.reg = nn.ModuleList([nn.Conv2d(16, 4, 1) for _ in STRIDES])
                self.obj = nn.ModuleList([nn.Conv2d(16, 1, 1) for _ in STRIDES])
                self.cls = nn.ModuleList([nn.Conv2d(16, nc, 1) for _ in STRIDES])
                for m in list(self.obj) + list(self.cls):
                    nn.init.constant_(m.bias, bias)
            else:
                self.box = nn.ModuleList([nn.Conv2d(16, 64, 1) for _ in STRIDES])
                self.cls = nn.ModuleList([nn.Conv2d(16, nc, 1) for _ in STRIDES])
                for m in self.cls:
                    nn.init.constant_(m.bias, bias)
                for m in self.box:  # spread the DFL logits so boxes are not all the same size
                    nn.init.normal_(m.weight, 0, 0.5)
                self.dfl = nn.Conv2d(16, 1, 1, bias=False)
                self.dfl.weight.data[:] = torch.arange(16, dtype=torch.float32).view(1, 16, 1, 1)
                pts, st = [], []
                for s in STRIDES:
                    gh, gw = -(-h // s), -(-w // s)
                    ys, xs = torch.meshgrid(torch.arange(gh) + 0.5, torch.arange(gw) + 0.5, indexing="ij")
                    pts.append(torch.stack([xs.reshape(-1), ys.reshape(-1)]))
                    st.append(torch.full((1, gh * gw), float(s)))
                self.register_buffer("anchors", torch.cat(pts, 1).unsqueeze(0))
                self.register_buffer("strides", torch.cat(st, 1).unsqueeze(0))

        def forward(self, x):
            f = self.stem(x)
            feats = [self.down[i](f) for i in range(len(STRIDES))]
            if family == "yolox":
                if single_conv:
                    outs = [self.one[i](g) for i, g in enumerate(feats)]
                else:
                    outs = [torch.cat([self.reg[i](g), self.obj[i](g).sigmoid(), self.cls[i](g).sigmoid()], 1)
                            for i, g in enumerate(feats)]
                return torch.cat([o.flatten(start_dim=2) for o in outs], 2).permute(0, 2, 1)
            outs = [torch.cat([self.box[i](g), self.cls[i](g)], 1) for i, g in enumerate(feats)]
            n = outs[0].shape[0]
            cat = torch.cat([o.view(n, 64 + nc, -1) for o in outs], 2)
            box, cls = cat.split((64, nc), 1)
            a = box.shape[2]
            dist = self.dfl(box.view(n, 4, 16, a).transpose(2, 1).softmax(1)).view(n, 4, a)
            lt, rb = dist.chunk(2, 1)
            p0, p1 = self.anchors - lt, self.anchors + rb
            dbox = torch.cat([(p0 + p1) / 2, p1 - p0], 1) * self.strides
            return torch.cat([dbox, cls.sigmoid()], 1)

    return Net().eval()


def export_yolo(path: Path, family: str, nc: int = 3, input_wh: Sequence[int] = (128, 96), seed: int = 0,
                bias: float = 0.0, opset: int = 13, single_conv: bool = False) -> Path:
    """Export :func:`yolo_net` as the single-output ONNX users bring (no edgepose metadata)."""
    import torch

    m = yolo_net(family, nc, input_wh, seed, bias, single_conv)
    x = torch.zeros(1, 3, input_wh[1], input_wh[0])
    torch.onnx.export(m, x, str(path), input_names=["images"], output_names=["output"], opset_version=opset,
                      dynamo=False)
    return path
