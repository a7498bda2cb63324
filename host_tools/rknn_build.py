"""The pose build of ``host_tools build-rknn``: ONNX (with edgepose metadata) -> ``.rknn`` + sidecar.

Input convention of the built model: the board feeds uint8 NHWC crops in the colour order
recorded in the metadata (``color``), cut by :func:`edgepose.crop.warp_crops` with
``to_rgb=(color == "rgb")``; the ONNX metadata's mean/std (same order) are baked into the rknn
config, so no normalisation happens on the CPU. The sidecar ``model.rknn.json`` repeats the
ONNX metadata with ``layout="nhwc"``, the output dtype, the target and the build options.

Toolkits: rk3562/rk3566/rk3568/rk3576/rk3588/rv1106/rv1103 use rknn-toolkit2;
rk1808/rv1109/rv1126 need rknn-toolkit 1.x (same ``from rknn.api import RKNN``), whose config
differs (see :func:`toolkit1_kwargs`). Whichever is installed decides what can be built.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

from host_tools.calib import RECOMMENDED_IMAGES, load_onnx_meta, validate_calibration_list, write_resolved_list
from host_tools.errors import UserError
# the toolkit wrapper's names, re-exported here for the callers that import them from this module
from host_tools.rknn_toolkit import (ALGORITHMS, DTYPES, METHODS, TOOLKIT1_TARGETS, TOOLKIT2_TARGETS,  # noqa: F401
                                     BuildOptions, BuildResult, RKNN_factory, Stages, ToolkitError, _call, _mean_std,
                                     check_output, check_target, file_sha256, final_conv_span, output_dtype,
                                     output_quantization, parse_hybrid, quant_params, run_build, toolkit1_kwargs,
                                     toolkit2_kwargs, toolkit_log, toolkit_major)


def prepare(onnx_path: str | Path, opts: BuildOptions, workdir: Path):
    """Validate everything before the toolkit runs. Returns ``(meta, major, resolved list or None)``."""
    meta = load_onnx_meta(onnx_path)
    major, version = toolkit_major()
    check_target(opts.target, major, version)
    if opts.algorithm not in ALGORITHMS:
        raise UserError(f"--algorithm {opts.algorithm}: choose one of {', '.join(ALGORITHMS)}")
    if opts.method not in METHODS:
        raise UserError(f"--method {opts.method}: choose channel or layer")
    if opts.dtype not in DTYPES:
        raise UserError(f"--dtype {opts.dtype}: choose one of {', '.join(DTYPES)}")
    if not 0 <= int(opts.optimization_level) <= 3:
        raise UserError(f"--optimization-level {opts.optimization_level}: choose 0, 1, 2 or 3")
    if opts.batch is not None and not 1 <= opts.batch <= 32:
        raise UserError(f"--batch {opts.batch}: choose 1..32")
    _mean_std(meta, opts)
    if opts.hybrid and not opts.quantize:
        raise UserError("--hybrid: only for a quantized build; add --calib (without it the whole model is float16)")
    if opts.hybrid and major == 1:
        raise UserError("--hybrid: edgepose drives hybrid quantization through rknn-toolkit2 only")
    resolved = None
    if opts.quantize:
        paths = validate_calibration_list(opts.calib, opts.algorithm, meta.input_size)
        resolved = write_resolved_list(paths, workdir / "dataset.txt")
        if len(paths) < RECOMMENDED_IMAGES:
            print(f"build-rknn: note: {len(paths)} calibration crops (< {RECOMMENDED_IMAGES}); "
                  "fine for a test, use 50-200 for a real model", file=sys.stderr)
    return meta, major, resolved


def build_rknn(onnx_path: str | Path, out_path: str | Path, opts: BuildOptions, force: bool = False,
               keep: bool = False, log_path: Optional[str | Path] = None) -> BuildResult:
    """Build ``out_path`` (.rknn) and its sidecar from an edgepose ONNX.

    Args:
        onnx_path: ONNX exported by ``host_tools export-onnx`` (metadata inside).
        out_path: the .rknn to write; refused if it exists unless ``force``.
        opts: :class:`BuildOptions`.
        keep: return the live RKNN object (toolkit2: ``init_runtime()`` works on the
            simulator, see :mod:`host_tools.verify`); the caller must ``release()`` it.
        log_path: where the toolkit's own output goes (default ``out_path + '.log'``).

    Raises:
        UserError: bad input, before the toolkit runs. ToolkitError: the toolkit failed.
    """
    from edgepose.metadata import ModelMeta

    t_start = time.perf_counter()
    out = check_output(out_path, force)
    log = Path(log_path) if log_path is not None else out.with_name(out.name + ".log")
    work = Path(tempfile.mkdtemp(prefix="edgepose_rknn_"))
    try:
        meta, major, dataset = prepare(onnx_path, opts, work)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise

    def make_meta(quants, out_dtype, build, mean, std):
        d = meta.to_dict()
        d.update(output_scale=quants[0][0], output_zero_point=quants[0][1])
        d.update(layout="nhwc", quantized=out_dtype, target=opts.target, batch=int(opts.batch or meta.batch or 1))
        d["build"] = build
        d["mean"], d["std"] = mean, std
        return ModelMeta.from_dict(d)

    return run_build(onnx_path, onnx_path, out, opts, meta, major, dataset, work, log, make_meta, keep, t_start)


# --------------------------------------------------------------------------- CLI arguments

def options_from_args(args: argparse.Namespace, resolve_hybrid: bool = True) -> BuildOptions:
    """BuildOptions from the parsed ``build-rknn`` (or ``verify``) arguments. With
    ``resolve_hybrid=False`` the ``--hybrid`` specs stay as given (a detector resolves them
    against the graph it builds, see :func:`host_tools.det_build.build_detector_rknn`)."""
    specs = list(getattr(args, "hybrid", None) or [])
    return BuildOptions(
        target=args.target.lower(), calib=args.calib, dtype=args.dtype, algorithm=args.algorithm,
        method=args.method, optimization_level=args.optimization_level,
        hybrid=(parse_hybrid(specs, args.model) if resolve_hybrid else specs) if specs else [],
        batch=args.batch, mean=args.mean, std=args.std, pre_compile=getattr(args, "pre_compile", False))


def add_build_arguments(p: argparse.ArgumentParser) -> None:
    """Options shared by ``build-rknn`` and ``verify`` (which rebuilds the model to simulate it)."""
    p.add_argument("--target", default="rk3588", help="chip: " + ", ".join(TOOLKIT2_TARGETS + TOOLKIT1_TARGETS))
    p.add_argument("--calib", help="calibration list (one .npy crop or image per line); omit for a float16 build")
    p.add_argument("--dtype", default="w8a8", help="quantized dtype: w8a8 (INT8, default), w8a16, w16a16i_dfp; "
                                                   "toolkit 1.x: asymmetric_affine-u8, dynamic_fixed_point-i8/-i16")
    p.add_argument("--algorithm", default="normal", help="normal | mmse | kl_divergence (default normal)")
    p.add_argument("--method", default="channel", help="channel | layer (default channel)")
    p.add_argument("--optimization-level", type=int, default=3, help="0..3 (default 3)")
    p.add_argument("--hybrid", action="append", metavar="START:END|final",
                   help="keep the subgraph between two ONNX tensors in float16; 'final' = the final 1x1 conv "
                        "(repeatable)")
    p.add_argument("--batch", type=int, help="rknn_batch_size (default: the ONNX batch)")
    p.add_argument("--mean", type=float, nargs="+", help="override the metadata mean (3 values, model colour order)")
    p.add_argument("--std", type=float, nargs="+", help="override the metadata std (3 values, model colour order)")

