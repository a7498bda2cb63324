"""``host_tools export-onnx``: a trained PoseResNet -> ONNX with edgepose metadata inside.

The graph: input ``input`` float32 ``(B, 3, H, W)`` (B = 1 unless ``--batch``; 0 makes it
dynamic), normalised with the metadata's mean/std in its colour order; output ``heatmaps``
float32 ``(B, K, H/4, W/4)``. Exported with torch's classic TorchScript exporter
(``dynamo=False``, opset 13 by default: what rknn-toolkit2 and onnxruntime digest best),
checked with ``onnx.checker`` and compared with torch through onnxruntime.

The :class:`edgepose.metadata.ModelMeta` JSON goes into ``metadata_props`` under the key
``edgepose``: input/heatmap size, colour order, mean/std, keypoint set and flip pairs,
batch, architecture and the source config, so runtimes and ``build-rknn`` need no config.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from host_tools.errors import UserError

INPUT_NAME = "input"
OUTPUT_NAME = "heatmaps"
DEFAULT_OPSET = 13
REL_TOL = 1e-4  # float32 through ~50 layers stays near 1e-6 relative; 1e-4 means an op differs


def embed_metadata(onnx_path: str | Path, meta) -> None:
    """Write ``meta`` (ModelMeta) into the ONNX file's ``metadata_props`` (key ``edgepose``),
    replacing an older entry."""
    import onnx

    from edgepose.metadata import METADATA_KEY

    model = onnx.load(str(onnx_path))
    keep = [p for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    entry = model.metadata_props.add()
    entry.key = METADATA_KEY
    entry.value = meta.to_json()
    onnx.save(model, str(onnx_path))


def output_difference(got: np.ndarray, ref: np.ndarray) -> Tuple[float, float]:
    """``(max abs diff, that diff relative to the reference's largest magnitude)``: float32
    rounding grows with the outputs, so a model with large outputs (hundreds) differs by more
    than 1e-3 absolute while being as exact, relatively, as one with outputs near 1."""
    diff = float(np.abs(np.asarray(got, np.float64) - np.asarray(ref, np.float64)).max(initial=0.0))
    scale = float(np.abs(np.asarray(ref, np.float64)).max(initial=0.0))
    return diff, diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf"))


def export_model(model, meta, out_path: str | Path, opset: int = DEFAULT_OPSET, batch: int = 1,
                 force: bool = False, seed: int = 0, report: Optional[dict] = None) -> Tuple[Path, float]:
    """Export a torch model to ``out_path`` with metadata, check it, compare with torch.

    Args:
        model: ``nn.Module`` mapping ``(B, 3, h, w)`` -> ``(B, K, hh, hw)`` heatmaps.
        meta: :class:`edgepose.metadata.ModelMeta` (input_size ``(w, h)``; ``batch`` is set here).
        out_path: the .onnx to write; an existing file is refused unless ``force``.
        opset: ONNX opset (default 13).
        batch: fixed batch size, or 0 for a dynamic batch axis.
        seed: seed of the random test input.
        report: when given, filled with ``abs_diff``, ``rel_diff`` (relative to ``max|torch output|``)
            and ``max_output``.

    Returns:
        ``(path, max_abs_diff)`` between onnxruntime and torch on a random normalised input.

    Raises:
        UserError: existing output, bad opset/batch, output shape not matching the metadata.
    """
    import onnx
    import onnxruntime as ort
    import torch

    out = Path(out_path)
    if out.suffix != ".onnx":
        raise UserError(f"-o {out}: the output name must end in .onnx")
    if out.exists() and not force:
        raise UserError(f"-o {out}: already exists; choose another name or pass --force to replace it")
    if not out.parent.is_dir():
        raise UserError(f"-o {out}: folder {out.parent} does not exist; create it first")
    if not 11 <= opset <= 20:
        raise UserError(f"--opset {opset}: choose 11..20 (13 is what rknn-toolkit2 is tested with)")
    if batch < 0:
        raise UserError(f"--batch {batch}: use a positive batch, or 0 for a dynamic one")
    w, h = meta.input_size
    b = batch or 1
    model = model.eval().cpu()
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 3, h, w, generator=gen)
    with torch.no_grad():
        ref = model(x)
    want = (b, meta.num_joints, meta.heatmap_size[1], meta.heatmap_size[0])
    if tuple(ref.shape) != want:
        raise UserError(f"model output {tuple(ref.shape)} does not match the config's NUM_JOINTS/HEATMAP_SIZE {want}; "
                        "fix MODEL.EXTRA.HEATMAP_SIZE in the config")
    meta.batch = int(batch)
    meta.layout = "nchw"
    meta.quantized = "float32"
    meta.validate()
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=str(out.parent))
    os.close(fd)
    try:
        dyn = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if batch == 0 else None
        with warnings.catch_warnings():
            # the classic exporter is the deliberate choice (rknn-toolkit2 digests its graphs); silence its deprecation
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(model, (x,), tmp, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              opset_version=opset, dynamic_axes=dyn, do_constant_folding=True, dynamo=False)
        embed_metadata(tmp, meta)
        try:
            onnx.checker.check_model(tmp, full_check=True)
        except onnx.checker.ValidationError as exc:  # a bug of the exporter or the model, not the user
            raise RuntimeError(f"exported ONNX fails onnx.checker: {exc}") from None
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        sess = ort.InferenceSession(tmp, opts, providers=["CPUExecutionProvider"])
        got = sess.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]
        diff, rel = output_difference(got, ref.numpy())
        if report is not None:
            report.update(abs_diff=diff, rel_diff=rel, max_output=float(np.abs(ref.numpy()).max(initial=0.0)))
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out, diff


def _handler(args: argparse.Namespace) -> int:
    from host_tools.config import load_config, model_meta
    from host_tools.model import describe, get_pose_net, load_checkpoint
    from host_tools.weights import prepare

    t0 = time.perf_counter()
    if Path(args.output).exists() and not args.force:  # before the slow model load
        raise UserError(f"-o {args.output}: already exists; choose another name or pass --force to replace it")
    cfg = load_config(args.cfg, args.opts or [])
    weights = args.weights or cfg.TEST.MODEL_FILE
    if not weights:
        raise UserError("--weights: required (or set TEST.MODEL_FILE in the config); pass the trained checkpoint")
    info = prepare(cfg, weights, "export-onnx")  # mmpose files: their colour order goes into cfg and the metadata
    model = load_checkpoint(get_pose_net(cfg, is_train=False), {"state_dict": info.state}, name=str(weights))
    meta = model_meta(cfg)
    print(f"export-onnx: {describe(model)} from {weights}, input {meta.input_size[0]}x{meta.input_size[1]} "
          f"({meta.color}), heatmaps {meta.heatmap_size[0]}x{meta.heatmap_size[1]}", file=sys.stderr)
    rep: dict = {}
    out, diff = export_model(model, meta, args.output, args.opset, args.batch, args.force, report=rep)
    rel = rep["rel_diff"]
    print(f"export-onnx: wrote {out} (opset {args.opset}, batch {'dynamic' if args.batch == 0 else args.batch}, "
          f"onnx.checker ok, metadata key 'edgepose'); onnxruntime vs torch max abs diff {diff:.3g} "
          f"(relative {rel:.2g} of the largest output {rep['max_output']:.3g}) ({time.perf_counter() - t0:.1f} s)")
    if rel > REL_TOL:
        print(f"export-onnx: warning: onnxruntime differs from torch by {diff:.3g} absolute, {rel:.2g} relative to the "
              f"largest output (> {REL_TOL:g}); check the model for ops the exporter approximates", file=sys.stderr)
    return 0


def register(subparsers) -> None:
    """Add ``host_tools export-onnx``."""
    p = subparsers.add_parser(
        "export-onnx", help="trained checkpoint -> ONNX with edgepose metadata",
        description="Export PoseResNet to ONNX (classic exporter, opset 13), check it with onnx.checker and "
                    "onnxruntime, and embed the model metadata (sizes, colour, mean/std, keypoints).")
    p.add_argument("--cfg", required=True, help="experiment YAML (the training config)")
    p.add_argument("--weights", help="checkpoint (.pth/.pth.tar: host_tools, the original project's, mmpose 1.x/0.x ResNet; see docs/WEIGHTS.md)")
    p.add_argument("-o", "--output", required=True, help="the .onnx to write")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    p.add_argument("--batch", type=int, default=1, help="fixed batch size (default 1; 0 = dynamic)")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.add_argument("opts", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. MODEL.IMAGE_SIZE=[96,128]")
    p.set_defaults(func=_handler)
