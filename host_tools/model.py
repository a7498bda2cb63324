"""PoseResNet (Simple Baselines): a ResNet backbone + transposed-conv head + 1x1 (or 3x3) conv.

Parameter names are those of the original code, so its checkpoints load unchanged:
``conv1, bn1, layer1..layer4`` (torchvision ResNet names), ``deconv_layers.{0,1,3,4,6,7}``
(ConvTranspose2d, BatchNorm2d per stage; ReLUs at 2, 5, 8) and ``final_layer``.

Input: ``(N, 3, H, W)`` float32, normalised crops. Output: ``(N, K, H/4, W/4)`` heatmaps for
the default 3-stage head (each stage doubles the stride-32 feature map).
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Type, Union

import torch
import torch.nn as nn

from host_tools.errors import UserError
from host_tools.weights import RESNET_LAYERS, _check_fit, _short, guess_arch  # noqa: F401  (weights sits below)

BN_MOMENTUM = 0.1


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None) -> None:
        super().__init__()
        # Stride on the 3x3 conv, as torchvision (and the original pose_resnet) do.
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


# depth -> (block, blocks per stage); the counts are host_tools.weights.RESNET_LAYERS
RESNET_SPEC: Dict[int, Tuple[Type[nn.Module], List[int]]] = {
    d: (BasicBlock if expansion == 1 else Bottleneck, list(layers)) for d, (expansion, layers) in RESNET_LAYERS.items()}


def deconv_padding(kernel: int) -> Tuple[int, int]:
    """(padding, output_padding) of a stride-2 transposed conv so that it exactly doubles the
    size, for kernel 4, 3 or 2 (the original rule)."""
    if kernel == 4:
        return 1, 0
    if kernel == 3:
        return 1, 1
    if kernel == 2:
        return 0, 0
    raise ValueError(f"deconv kernel: expected 2, 3 or 4, got {kernel}")


class PoseResNet(nn.Module):
    """ResNet-``depth`` backbone + deconv head producing ``num_joints`` heatmaps.

    Args:
        depth: 18, 34, 50, 101 or 152.
        num_joints: K output channels.
        deconv_filters / deconv_kernels: one entry per deconv stage.
        final_conv_kernel: 1 or 3.
        deconv_with_bias: bias on the transposed convs (the original default is False).
    """

    def __init__(
        self,
        depth: int = 50,
        num_joints: int = 17,
        deconv_filters: Sequence[int] = (256, 256, 256),
        deconv_kernels: Sequence[int] = (4, 4, 4),
        final_conv_kernel: int = 1,
        deconv_with_bias: bool = False,
    ) -> None:
        super().__init__()
        if depth not in RESNET_SPEC:
            raise ValueError(f"depth: expected one of {sorted(RESNET_SPEC)}, got {depth}")
        if len(deconv_filters) != len(deconv_kernels):
            raise ValueError("deconv_filters and deconv_kernels must have the same length")
        if final_conv_kernel not in (1, 3):
            raise ValueError(f"final_conv_kernel: expected 1 or 3, got {final_conv_kernel}")
        block, layers = RESNET_SPEC[depth]
        self.depth = depth
        self.inplanes = 64
        self.deconv_with_bias = deconv_with_bias
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.deconv_layers = self._make_deconv(list(deconv_filters), list(deconv_kernels))
        last = deconv_filters[-1] if len(deconv_filters) else self.inplanes
        self.final_layer = nn.Conv2d(last, num_joints, final_conv_kernel, 1, 1 if final_conv_kernel == 3 else 0)

    def _make_layer(self, block: Type[nn.Module], planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion, momentum=BN_MOMENTUM),
            )
        mods = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        mods += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*mods)

    def _make_deconv(self, filters: List[int], kernels: List[int]) -> nn.Sequential:
        mods: List[nn.Module] = []
        for planes, k in zip(filters, kernels):
            pad, out_pad = deconv_padding(k)
            mods += [
                nn.ConvTranspose2d(self.inplanes, planes, k, 2, pad, out_pad, bias=self.deconv_with_bias),
                nn.BatchNorm2d(planes, momentum=BN_MOMENTUM),
                nn.ReLU(inplace=True),
            ]
            self.inplanes = planes
        return nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.final_layer(self.deconv_layers(x))

    def init_head(self) -> None:
        """Init of the original: deconv and final conv weights ~ N(0, 0.001), biases 0,
        BatchNorm weight 1 / bias 0."""
        for m in self.deconv_layers.modules():
            if isinstance(m, nn.ConvTranspose2d):
                nn.init.normal_(m.weight, std=0.001)
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        nn.init.normal_(self.final_layer.weight, std=0.001)
        nn.init.constant_(self.final_layer.bias, 0)

    def load_backbone(self, path: Union[str, Path]) -> str:
        """Load ImageNet (or any ResNet-compatible) backbone weights: torchvision
        (``resnet50-19c8e357.pth``, ``resnet50-0676ba61.pth``, ``resnet50-11ad3fa6.pth``), timm
        (bare, training wrapper or ``.safetensors``), OpenMMLab backbones, or the backbone of any
        pose checkpoint :mod:`host_tools.weights` reads. ``fc.*`` and head entries are ignored;
        every backbone key is required. Returns one line saying what was loaded.
        Raises UserError if the file is missing or does not fit."""
        from host_tools.weights import read_weights

        p = Path(path)
        if not p.is_file():
            raise UserError(f"MODEL.PRETRAINED: {p} not found (give a torchvision/timm ResNet .pth file, or MODEL.PRETRAINED='' to start from scratch)")
        info = read_weights(p)
        head = ("deconv_layers.", "final_layer.")
        state = {k: v for k, v in info.state.items() if not k.startswith(head)}
        backbone = {k: v for k, v in self.state_dict().items() if not k.startswith(head)}
        _check_fit(backbone, state, p, f"a ResNet-{self.depth} backbone")
        self.load_state_dict(state, strict=False)
        n = sum(1 for k in state if not k.endswith("num_batches_tracked"))
        return f"{info.arch_text()} backbone from {p} ({info.source}: {info.layout}; {n} tensors loaded)"


def get_pose_net(cfg: Any, is_train: bool = False) -> PoseResNet:
    """Build the PoseResNet a config describes (``MODEL.EXTRA.*``, ``MODEL.NUM_JOINTS``).

    With ``is_train`` and ``MODEL.INIT_WEIGHTS``, the head gets the original init and the
    backbone loads ``MODEL.PRETRAINED`` when that is set (the file must exist)."""
    ex = cfg.MODEL.EXTRA
    model = PoseResNet(
        depth=ex.NUM_LAYERS,
        num_joints=cfg.MODEL.NUM_JOINTS,
        deconv_filters=ex.NUM_DECONV_FILTERS[: ex.NUM_DECONV_LAYERS],
        deconv_kernels=ex.NUM_DECONV_KERNELS[: ex.NUM_DECONV_LAYERS],
        final_conv_kernel=ex.FINAL_CONV_KERNEL,
        deconv_with_bias=ex.DECONV_WITH_BIAS,
    )
    if is_train and cfg.MODEL.INIT_WEIGHTS:
        model.init_head()
        if cfg.MODEL.PRETRAINED:
            model.pretrained_info = model.load_backbone(cfg.MODEL.PRETRAINED)
    return model


build_model = get_pose_net


# ---------------------------------------------------------------------------------------------
# Checkpoints


def _torch_load(path: Path) -> Any:
    """``torch.load`` on CPU, weights-only first (see :func:`host_tools.weights.load_file`)."""
    from host_tools.weights import load_file

    return load_file(path)


def _extract_state_dict(obj: Any, path: Union[str, Path]) -> Dict[str, torch.Tensor]:
    """The tensor dict inside a checkpoint: a bare state_dict, or ``{"state_dict": ...}`` /
    ``{"model": ...}`` as training checkpoints store it."""
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "model_state"):
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(torch.is_tensor(v) for v in inner.values()):
                return dict(inner)
        if obj and all(torch.is_tensor(v) for v in obj.values()):
            return dict(obj)
    raise UserError(f"checkpoint {path}: no state_dict inside (expected a dict of tensors or a dict with 'state_dict')")


def strip_prefix(state: Mapping[str, torch.Tensor], prefix: str = "module.") -> Dict[str, torch.Tensor]:
    """Remove the ``module.`` prefix that ``nn.DataParallel`` / DDP add to every key."""
    return OrderedDict((k[len(prefix):] if k.startswith(prefix) else k, v) for k, v in state.items())


def describe(model: PoseResNet) -> str:
    """``PoseResNet-50, 17 joints, final kernel 1``."""
    return guess_arch(model.state_dict())


def load_checkpoint(
    model: nn.Module,
    source: Union[str, Path, Mapping[str, Any]],
    name: Optional[str] = None,
) -> nn.Module:
    """Load weights into ``model`` from a file path or an in-memory checkpoint.

    Accepts the original project's files (``pose_resnet_50_256x192.pth.tar``, ``model_best.pth.tar``
    with ``module.`` keys, with or without ``num_batches_tracked``), host_tools checkpoints
    (``{"state_dict": ..., ...}``) and mmpose 1.x / 0.x top-down ResNet checkpoints
    (:mod:`host_tools.weights`; use :func:`host_tools.weights.prepare` to carry their colour order
    into the config). A checkpoint that does not fit raises :class:`UserError` with
    one line: counts and a few examples of missing / unexpected / mis-shaped keys. ``name``
    labels an in-memory checkpoint in that message.
    """
    from host_tools.weights import load_file, to_pose_resnet_keys

    label: Union[str, Path]
    if isinstance(source, Mapping):
        obj, label = source, name or "<in-memory checkpoint>"
    else:
        label = Path(source)
        if not label.is_file():
            raise UserError(f"checkpoint {label} not found (give a .pth/.pth.tar file written by training or the original project)")
        obj = load_file(label)
    # mmpose layouts (backbone.*, head.* / keypoint_head.*) are renamed; the rest stays as is.
    state, _, _ = to_pose_resnet_keys(_extract_state_dict(obj, label), str(label))
    target = model.module if hasattr(model, "module") else model
    what = describe(target) if isinstance(target, PoseResNet) else type(target).__name__
    _check_fit(target.state_dict(), state, label, what)
    # strict=False only to tolerate absent num_batches_tracked; everything else was checked above.
    target.load_state_dict(state, strict=False)
    return model
