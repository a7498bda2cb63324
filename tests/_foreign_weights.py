"""Synthetic weights in the layouts of other projects, written from their model definitions.

Independent of host_tools: the key names and shapes below follow

* torchvision ``models/resnet.py``: ``conv1`` 7x7/2, ``bn1``, ``layer1..4`` of ``BasicBlock``
  (``conv1`` 3x3, ``bn1``, ``conv2`` 3x3, ``bn2``) or ``Bottleneck`` (``conv1`` 1x1, ``conv2`` 3x3,
  ``conv3`` 1x1 to 4x, with ``bn1..3``), a ``downsample`` = ``Sequential(conv1x1, BatchNorm2d)``
  on the first block of a stage whose stride or width changes, and ``fc`` (1000 classes).
  Files before torchvision 0.4 (``resnet50-19c8e357.pth``) have no ``num_batches_tracked``.
* timm ``models/resnet.py``: the same names for resnet18/34/50/101/152 (``act*``, ``drop_block``,
  ``aa`` hold no tensors); ``resnet*d`` has a 3-conv deep stem ``conv1.{0,1,3,4,6}`` and an
  ``AvgPool`` in ``downsample``. Its training script saves ``{"epoch", "arch", "state_dict",
  "optimizer", "version", "args", ...}``.
* mmpose 1.x ``TopdownPoseEstimator``: ``backbone.`` (mmpose ``ResNet``: torchvision names,
  no ``fc``), ``head.`` = ``HeatmapHead``: ``deconv_layers`` = per stage ConvTranspose2d
  (bias=False), BatchNorm2d, ReLU -> ``deconv_layers.{0,1,3,4,6,7}``; ``final_layer`` Conv2d 1x1.
  mmengine saves ``{"meta": {"cfg": <config text>, "dataset_meta": ..., ...}, "state_dict": ...,
  "message_hub": ...}``. ``ResNetV1d`` has ``backbone.stem.*``.
* mmpose 0.x ``TopDown``: ``backbone.``, ``keypoint_head.`` = ``TopdownHeatmapSimpleHead`` (same
  children); mmcv saves ``{"meta": {"config": <config text>, ...}, "state_dict": ...}``.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict, List, Sequence, Tuple

import torch

SPEC = {18: ("basic", [2, 2, 2, 2]), 34: ("basic", [3, 4, 6, 3]), 50: ("bottleneck", [3, 4, 6, 3]),
        101: ("bottleneck", [3, 4, 23, 3]), 152: ("bottleneck", [3, 8, 36, 3])}


def _bn_entries(name: str, c: int, tracked: bool) -> List[Tuple[str, Tuple[int, ...]]]:
    out = [(f"{name}.weight", (c,)), (f"{name}.bias", (c,)), (f"{name}.running_mean", (c,)), (f"{name}.running_var", (c,))]
    if tracked:
        out.append((f"{name}.num_batches_tracked", ()))
    return out


def torchvision_resnet_shapes(depth: int, tracked: bool = True, fc: bool = True) -> "OrderedDict[str, Tuple[int, ...]]":
    """Key -> shape of torchvision's ``resnet<depth>().state_dict()`` (module registration order)."""
    kind, layers = SPEC[depth]
    expansion = 4 if kind == "bottleneck" else 1
    e: List[Tuple[str, Tuple[int, ...]]] = [("conv1.weight", (64, 3, 7, 7))] + _bn_entries("bn1", 64, tracked)
    inplanes = 64
    for stage, (planes, blocks) in enumerate(zip([64, 128, 256, 512], layers), start=1):
        stride = 1 if stage == 1 else 2
        for b in range(blocks):
            pre = f"layer{stage}.{b}"
            if kind == "bottleneck":
                e += [(f"{pre}.conv1.weight", (planes, inplanes, 1, 1))] + _bn_entries(f"{pre}.bn1", planes, tracked)
                e += [(f"{pre}.conv2.weight", (planes, planes, 3, 3))] + _bn_entries(f"{pre}.bn2", planes, tracked)
                e += [(f"{pre}.conv3.weight", (planes * 4, planes, 1, 1))] + _bn_entries(f"{pre}.bn3", planes * 4, tracked)
            else:
                e += [(f"{pre}.conv1.weight", (planes, inplanes, 3, 3))] + _bn_entries(f"{pre}.bn1", planes, tracked)
                e += [(f"{pre}.conv2.weight", (planes, planes, 3, 3))] + _bn_entries(f"{pre}.bn2", planes, tracked)
            if b == 0 and (stride != 1 or inplanes != planes * expansion):
                e += [(f"{pre}.downsample.0.weight", (planes * expansion, inplanes, 1, 1))]
                e += _bn_entries(f"{pre}.downsample.1", planes * expansion, tracked)
            inplanes = planes * expansion
    if fc:
        e += [("fc.weight", (1000, 512 * expansion)), ("fc.bias", (1000,))]
    return OrderedDict(e)


def heatmap_head_shapes(in_channels: int, joints: int, filters: Sequence[int] = (256, 256, 256),
                        kernels: Sequence[int] = (4, 4, 4), tracked: bool = True) -> "OrderedDict[str, Tuple[int, ...]]":
    """Key -> shape of mmpose's HeatmapHead / TopdownHeatmapSimpleHead (and the original's head)."""
    e: List[Tuple[str, Tuple[int, ...]]] = []
    c = in_channels
    for i, (f, k) in enumerate(zip(filters, kernels)):
        e.append((f"deconv_layers.{3 * i}.weight", (c, f, k, k)))  # ConvTranspose2d: (in, out, k, k)
        e += _bn_entries(f"deconv_layers.{3 * i + 1}", f, tracked)
        c = f
    e += [("final_layer.weight", (joints, c, 1, 1)), ("final_layer.bias", (joints,))]
    return OrderedDict(e)


def fill(shapes: Dict[str, Tuple[int, ...]], seed: int = 0) -> "OrderedDict[str, torch.Tensor]":
    """Random tensors of those shapes (positive running_var, int64 num_batches_tracked)."""
    g = torch.Generator().manual_seed(seed)
    out = OrderedDict()
    for k, s in shapes.items():
        if k.endswith("num_batches_tracked"):
            out[k] = torch.tensor(7, dtype=torch.int64)
        elif k.endswith("running_var"):
            out[k] = torch.rand(s, generator=g) + 0.5
        else:
            out[k] = torch.randn(s, generator=g) * 0.05
    return out


MMPOSE1_CFG = """default_scope = 'mmpose'
codec = dict(type='{codec}', input_size=(192, 256), heatmap_size=(48, 64), sigma=2)
model = dict(
    type='TopdownPoseEstimator',
    data_preprocessor=dict(
        type='PoseDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb={bgr_to_rgb}),
    backbone=dict(
        type='ResNet',
        depth={depth},
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet{depth}')),
    head=dict(
        type='HeatmapHead',
        in_channels={in_channels},
        out_channels=17,
        loss=dict(type='KeypointMSELoss', use_target_weight=True),
        decoder=dict(type='{codec}', input_size=(192, 256), heatmap_size=(48, 64), sigma=2)),
    test_cfg=dict(flip_test=True, flip_mode='heatmap', shift_heatmap=True))
train_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale'),
    dict(type='RandomFlip', direction='horizontal'),
    dict(type='TopdownAffine', input_size=(192, 256)),
    dict(type='GenerateTarget', encoder=dict(type='{codec}', input_size=(192, 256), heatmap_size=(48, 64), sigma=2)),
    dict(type='PackPoseInputs')
]
"""

MMPOSE0_CFG = """channel_cfg = dict(num_output_channels=17, dataset_joints=17)
model = dict(
    type='TopDown',
    pretrained='torchvision://resnet{depth}',
    backbone=dict(type='ResNet', depth={depth}),
    keypoint_head=dict(
        type='TopdownHeatmapSimpleHead',
        in_channels={in_channels},
        out_channels=17,
        loss_keypoint=dict(type='JointsMSELoss', use_target_weight=True)),
    train_cfg=dict(),
    test_cfg=dict(flip_test=True, post_process='default', shift_heatmap=True, modulate_kernel=11{udp_test}))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='TopDownRandomFlip', flip_prob=0.5),
    dict(type='TopDownAffine'{udp_affine}),
    dict(type='ToTensor'),
    dict(type='NormalizeTensor', mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
    dict(type='TopDownGenerateTarget', sigma=2{udp_target}),
    dict(type='Collect', keys=['img', 'target', 'target_weight'], meta_keys=['image_file'])
]
"""


def mmpose1_config(depth: int, in_channels: int, codec: str = "MSRAHeatmap", bgr_to_rgb: bool = True) -> str:
    return MMPOSE1_CFG.format(depth=depth, in_channels=in_channels, codec=codec, bgr_to_rgb=bgr_to_rgb)


def mmpose0_config(depth: int, in_channels: int, udp: bool = False) -> str:
    return MMPOSE0_CFG.format(depth=depth, in_channels=in_channels, udp_test=", use_udp=True" if udp else "",
                              udp_affine=", use_udp=True" if udp else "",
                              udp_target=", encoding='UDP', target_type='GaussianHeatmap'" if udp else "")


def write_safetensors(path, tensors: Dict[str, torch.Tensor]) -> None:
    """A ``.safetensors`` file as the format specifies it: u64 little-endian header length, a
    JSON header ``{name: {dtype, shape, data_offsets}}``, then the raw little-endian bytes."""
    import json

    names = {torch.float32: "F32", torch.int64: "I64", torch.float16: "F16", torch.bfloat16: "BF16"}
    header, blobs, offset = {}, [], 0
    for k, t in tensors.items():
        raw = t.contiguous().view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[k] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text + b"".join(blobs))
