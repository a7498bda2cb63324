"""``host_tools inspect-weights FILE``: what a weights file is and whether it would load.

Reads only the file's keys and shapes (``torch.load`` on CPU, weights-only first; no model is
built): the source (edgepose, original, mmpose, torchvision, timm), the ResNet depth, the deconv
head, the joints, the training conventions an mmpose file records, the config overrides that
match it, and, with ``--cfg`` / overrides, whether it fits that config.

Exit status: 0 when the file was read (and fits the config, if one was given), 1 when it does
not fit the given config, 2 when it cannot be read or is not a supported layout.
"""
from __future__ import annotations

import argparse
from typing import Any, List

from host_tools.errors import UserError


def report(path: str, cfg: Any = None) -> "tuple[List[str], bool]":
    """Lines describing ``path`` and whether it fits ``cfg`` (True when no cfg is given)."""
    from host_tools.weights import MMPOSE_DEFAULT, check_fit, read_weights

    info = read_weights(path)
    lines = [f"file:        {path}",
             f"source:      {info.source}",
             f"layout:      {info.layout}",
             f"backbone:    {info.arch_text()}",
             f"head:        {info.head_text()}"]
    if info.has_head:
        lines.append(f"joints:      {info.num_joints}" + (f" ({info.dataset})" if info.dataset else ""))
    if info.source == "mmpose" and info.has_head:
        c = info.conventions
        if c is None:
            lines.append(f"conventions: not recorded (no config in meta); export-onnx/valid assume {MMPOSE_DEFAULT}")
        else:
            lines.append(f"conventions: {c.text()} (from the {c.source})")
            if c.assumed:
                lines.append(f"             not recorded, assumed: {'; '.join(c.assumed)}")
            if c.codec != "MSRAHeatmap" or c.caffe_style:
                lines.append("             edgepose refuses this model (it decodes MSRA heatmaps of style='pytorch' ResNets)")
    elif info.conventions is not None:
        lines.append(f"conventions: {info.conventions.color.upper()} input (from the {info.conventions.source})")
    lines += [f"note:        {n}" for n in info.notes]
    if info.has_head:
        lines.append("fits:        " + " ".join(info.config_overrides()))
    else:
        lines.append(f"use:         MODEL.PRETRAINED={path} MODEL.EXTRA.NUM_LAYERS={info.depth} (ImageNet initialisation for train)")
    ok = True
    if cfg is not None:
        try:
            check_fit(info, cfg, backbone_only=not info.has_head)
            what = "as a pose model" if info.has_head else "as MODEL.PRETRAINED (backbone)"
            lines.append(f"config:      loads {what} with PoseResNet-{cfg.MODEL.EXTRA.NUM_LAYERS}, {cfg.MODEL.NUM_JOINTS} joints")
        except UserError as exc:
            ok = False
            lines.append(f"config:      would NOT load: {exc}")
    return lines, ok


def _main(args: argparse.Namespace) -> int:
    from host_tools.config import load_config

    cfg = load_config(args.cfg, args.opts) if (args.cfg or args.opts) else None
    lines, ok = report(args.file, cfg)
    print("\n".join(lines))
    return 0 if ok else 1


def register(subparsers: Any) -> None:
    """Add ``host_tools inspect-weights``."""
    p = subparsers.add_parser(
        "inspect-weights", help="what a weights file is (edgepose/original/mmpose/torchvision/timm) and whether it loads",
        description="Describe a weights file from its keys and shapes (no model is built): source, ResNet depth, "
                    "deconv head, joints, recorded conventions; with --cfg or KEY=VALUE overrides, whether it "
                    "would load with that config (exit 1 if not).")
    p.add_argument("file", help="weights file (.pth, .pth.tar, .bin, .safetensors)")
    p.add_argument("--cfg", default=None, help="experiment YAML to check the file against")
    p.add_argument("opts", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. MODEL.EXTRA.NUM_LAYERS=18")
    p.set_defaults(func=_main)
