"""``host_tools build-rknn``: an ONNX -> ``.rknn`` + sidecar, pose model or person detector.

The command on top of the RKNN host tools (see :mod:`host_tools.rknn_toolkit` for the layers):
it makes the calibration set when asked (:mod:`host_tools.calib` person crops for a pose model,
letterboxed whole images for a detector), builds with :func:`host_tools.rknn_build.build_rknn`
or :func:`host_tools.det_build.build_detector_rknn`, and with ``--verify`` hands the live
toolkit object to :func:`host_tools.verify.verify_from_args`.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Optional

from host_tools.calib import load_onnx_meta, make_calibration
from host_tools.det_build import build_detector_rknn, is_detector_onnx, load_detector, make_detector_calibration
from host_tools.errors import UserError
from host_tools.rknn_build import add_build_arguments, build_rknn, options_from_args
from host_tools.rknn_toolkit import ToolkitError, check_output, check_target, toolkit_major
from host_tools.verify import add_verify_data_arguments, verify_from_args


def _handler(args: argparse.Namespace) -> int:
    if args.max_calib < 1 or args.max_persons < 1:
        raise UserError("--max-calib/--max-persons: must be at least 1")
    detector = is_detector_onnx(args.model)
    opts = options_from_args(args, resolve_hybrid=not detector)
    made_calib: Optional[Path] = None
    if args.calib is None and detector and (args.images or args.calib_ann or args.calib_det):
        if not args.images or args.calib_det:
            raise UserError("a detector calibrates on whole images: pass --images DIR (optionally --calib-ann "
                            "to pick its images) or --calib LIST; --calib-det is for pose models")

        check_target(opts.target, *toolkit_major())
        out = check_output(args.output, args.force)
        cal_dir = out.with_name(out.stem + "_calib")
        existed = cal_dir.exists()
        lst, n = make_detector_calibration(load_detector(args.model)[0], cal_dir, args.images, args.calib_ann,
                                           args.max_calib, args.force)
        made_calib = None if existed else cal_dir
        print(f"build-rknn: calibration: {n} letterboxed images -> {lst}", file=sys.stderr)
        opts.calib = str(lst)
    elif args.calib is None and (args.calib_ann or args.calib_det):
        # what can be refused without the crops is refused before any crop is written
        check_target(opts.target, *toolkit_major())
        out = check_output(args.output, args.force)
        cal_dir = out.with_name(out.stem + "_calib")
        meta = load_onnx_meta(args.model)
        existed = cal_dir.exists()
        lst, n = make_calibration(meta, cal_dir, args.calib_ann, args.images, args.calib_det,
                                  max_images=args.max_calib, force=args.force)
        made_calib = None if existed else cal_dir
        print(f"build-rknn: calibration: {n} person crops -> {lst}", file=sys.stderr)
        opts.calib = str(lst)
    try:
        build = build_detector_rknn if detector else build_rknn
        res = build(args.model, args.output, opts, force=args.force, keep=args.verify)
    except ToolkitError as exc:
        print(f"host_tools build-rknn: error: {exc}", file=sys.stderr)
        return 1
    except UserError:
        # crops this run made for a build that was refused would only block the next try
        if made_calib is not None:
            shutil.rmtree(made_calib, ignore_errors=True)
        raise
    print(f"build-rknn: wrote {res.rknn_path} ({res.rknn_path.stat().st_size / 1e6:.1f} MB, {res.meta.quantized} "
          f"output, {res.seconds:.1f} s) and {res.sidecar}; toolkit log {res.log}")
    if args.verify:
        try:
            return verify_from_args(args, rknn_obj=res.rknn, rknn_meta=res.meta)
        finally:
            res.rknn.release()
    return 0


def register(subparsers) -> None:
    """Add ``host_tools build-rknn``."""
    p = subparsers.add_parser(
        "build-rknn", help="ONNX -> quantized .rknn for a Rockchip NPU (+ model.rknn.json)",
        description="Build an .rknn with rknn-toolkit2 (or toolkit 1.x for rk1808/rv1109/rv1126). The board "
                    "feeds uint8 NHWC crops in the colour order of the ONNX metadata; mean/std go into the model.")
    p.add_argument("model", help="ONNX from host_tools export-onnx")
    p.add_argument("-o", "--output", required=True, help="the .rknn to write (sidecar: <output>.json)")
    add_build_arguments(p)
    p.add_argument("--calib-ann", help="make the calibration crops from this COCO/MPII annotation file")
    p.add_argument("--calib-det", help="make the calibration crops from this detection json")
    p.add_argument("--images", help="frames folder for --calib-ann/--calib-det/--verify data; for a detector ONNX "
                                    "its images (letterboxed) are the calibration set")
    p.add_argument("--max-calib", type=int, default=200, help="at most this many calibration crops (default 200)")
    p.add_argument("--pre-compile", action="store_true", help="toolkit 1.x: pre-compile for the board")
    p.add_argument("--force", action="store_true", help="replace existing output files")
    p.add_argument("--verify", action="store_true", help="after the build, run host_tools verify in-process "
                                                         "(needs --ann/--det and --images for its crops)")
    add_verify_data_arguments(p, with_images=False)
    p.set_defaults(func=_handler)
