"""``host_tools pull NAME`` and ``host_tools models``: public models, verified, cached, converted.

``pull`` downloads a registered file (:mod:`host_tools.registry`) into the cache
(``$EDGEPOSE_CACHE``, else ``$XDG_CACHE_HOME/edgepose``, else ``~/.cache/edgepose``) through
:func:`host_tools.download.fetch`, or takes it from there when it is already cached and its
hash still matches. Then, on request:

* ``-o DIR``: a copy in ``DIR`` (an existing different file there is kept unless ``--force``);
* ``--onnx``: a pose checkpoint exported to ``<NAME>.onnx`` with edgepose metadata, through
  the same steps as ``export-onnx`` and the config of its experiment with the overrides of
  its depth and size (:func:`host_tools.registry.export_config`);
* ``--rknn --target T``: that ONNX (or the detector ONNX) built by ``build-rknn`` into
  ``<NAME>_<T>.rknn``; ``--images`` / ``--calib-ann`` / ``--calib`` give the calibration data
  as for ``build-rknn`` (without any, it is a float16 build).

Converted files go into ``-o DIR``, or else into the cache's ``onnx/`` and ``rknn/`` folders.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional

from host_tools import registry
from host_tools.download import cached, digest_matches, fetch, file_digest
from host_tools.errors import UserError
from host_tools.registry import Entry


def ensure(entry: Entry, quiet: bool = False, timeout: float = 60.0) -> Path:
    """The verified file of ``entry`` in the cache, downloaded if needed (DownloadError otherwise)."""
    dest = registry.cache_dir() / entry.filename
    if cached(dest, entry.expected_digest):
        if not quiet:
            print(f"pull: {entry.name}: in the cache, {dest} (sha256 checked)", file=sys.stderr)
        return dest
    url = registry.resolve_url(entry.url)
    if not quiet:
        print(f"pull: {entry.name}: downloading {url}", file=sys.stderr)
    t0 = time.monotonic()
    fetch(url, dest, entry.expected_digest, entry.size, timeout=timeout, label=entry.name, quiet=quiet)
    if not quiet:
        what = "sha256" if entry.sha256 else f"sha256 prefix {entry.sha256_prefix}"
        print(f"pull: {entry.name}: {dest} ({dest.stat().st_size / 1e6:.1f} MB, {what} ok, "
              f"{time.monotonic() - t0:.1f} s)", file=sys.stderr)
    return dest


def _out_dir(o: Optional[str], sub: str, create: bool = True) -> Path:
    d = Path(o) if o else registry.cache_dir() / sub
    if not create:
        return d
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"-o {d}: cannot create the folder ({exc.strerror}); choose a writable folder") from None
    return d


def copy_to(src: Path, out_dir: Path, digest: str, force: bool) -> Path:
    """``src`` copied into ``out_dir`` (via a temporary name); an identical file there is kept as
    it is, a different one only replaced with ``force``."""
    dst = out_dir / src.name
    if dst.exists():
        if dst.is_file() and digest_matches(file_digest(dst), digest):
            return dst
        if not force:
            raise UserError(f"-o {out_dir}: {dst.name} already exists and differs; choose another folder or pass "
                            "--force to replace it")
    fd, tmp = tempfile.mkstemp(prefix=f".{src.name}.", dir=out_dir)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dst


def export_pose_onnx(entry: Entry, checkpoint: Path, out: Path, quiet: bool = False) -> Path:
    """Export a registered pose checkpoint to ``out`` (written through a temporary file) with
    export-onnx's steps: read and check the weights (their mmpose conventions go into the
    config), build PoseResNet, export at batch 1, compare onnxruntime with torch."""
    from host_tools.config import load_config, model_meta
    from host_tools.export_onnx import REL_TOL, export_model
    from host_tools.model import describe, get_pose_net, load_checkpoint
    from host_tools.weights import prepare

    base, overrides = registry.export_config(entry)
    cfg = load_config(base, overrides)
    info = prepare(cfg, checkpoint, "pull")
    model = load_checkpoint(get_pose_net(cfg, is_train=False), {"state_dict": info.state}, name=str(checkpoint))
    meta = model_meta(cfg)
    meta.source_config = {**(meta.source_config or {}),
                          "weights": f"{entry.filename} ({entry.source}; host_tools pull {entry.name})"}
    if not quiet:
        print(f"pull: {entry.name}: exporting {describe(model)} with "
              f"{base.as_posix() if base else 'the default config'} {' '.join(overrides)} ...", file=sys.stderr)
    rep: dict = {}
    export_model(model, meta, out, batch=1, force=True, report=rep)
    if rep.get("rel_diff", 0.0) > REL_TOL:
        print(f"pull: warning: {out}: onnxruntime differs from torch by {rep['rel_diff']:.2g} relative",
              file=sys.stderr)
    if not quiet:
        print(f"pull: {entry.name}: wrote {out} (input {meta.input_size[0]}x{meta.input_size[1]} {meta.color}, "
              f"onnxruntime vs torch max abs diff {rep.get('abs_diff', 0.0):.2g})", file=sys.stderr)
    return out


def pose_onnx(entry: Entry, out_dir: Optional[str] = None, force: bool = False, quiet: bool = False) -> Path:
    """The ONNX export of pose entry ``entry``: reused from ``out_dir`` (default: the cache's
    ``onnx/``) when it is there, else pulled and exported."""
    d = _out_dir(out_dir, "onnx", create=False)
    out = d / registry.onnx_name(entry)
    if out.exists() and not force:
        if out_dir is None:  # the cache's own export
            if not quiet:
                print(f"pull: {entry.name}: ONNX in the cache, {out}", file=sys.stderr)
            return out
        raise UserError(f"{out}: already exists; pass --force to export again over it, or choose another -o")
    ckpt = ensure(entry, quiet=quiet)
    _out_dir(out_dir, "onnx")
    fd, tmp = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=".onnx", dir=d)
    os.close(fd)
    try:
        export_pose_onnx(entry, ckpt, Path(tmp), quiet=quiet)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def _build_rknn(onnx: Path, out: Path, args: argparse.Namespace) -> int:
    from host_tools.cli import build_parser

    argv: List[str] = ["build-rknn", str(onnx), "-o", str(out), "--target", args.target]
    for flag, value in (("--images", args.images), ("--calib-ann", args.calib_ann), ("--calib", args.calib)):
        if value:
            argv += [flag, value]
    argv += ["--max-calib", str(args.max_calib)] + (["--force"] if args.force else [])
    if not (args.calib or args.images):
        print("pull: no calibration data (--images DIR [--calib-ann ANN] or --calib LIST): a float16 build",
              file=sys.stderr)
    bargs = build_parser().parse_args(argv)
    return int(bargs.func(bargs) or 0)


def _pull(args: argparse.Namespace) -> int:
    entry = registry.get(args.name)
    if args.rknn and not args.target:
        raise UserError("--rknn: needs --target CHIP (e.g. --target rk3588)")
    if (args.onnx or args.rknn) and entry.kind == "clip":
        raise UserError(f"{entry.name}: a video clip; --onnx/--rknn apply to models")
    if entry.kind == "pose" and args.rknn and args.images and not (args.calib_ann or args.calib):
        raise UserError("--images: a pose model calibrates on person crops; add --calib-ann ANNOTATIONS.json "
                        "(COCO/MPII keypoints of those images) or pass --calib LIST")
    path = ensure(entry, quiet=args.quiet)
    result = path
    if args.output:
        result = copy_to(path, _out_dir(args.output, ""), entry.expected_digest, args.force)
    onnx: Optional[Path] = None
    if entry.kind == "pose" and (args.onnx or args.rknn):
        onnx = pose_onnx(entry, args.output, force=args.force, quiet=args.quiet)
        result = onnx
    elif entry.kind == "detector":
        if args.onnx and not args.quiet:
            print(f"pull: {entry.name}: already an edgepose-ready ONNX (edgepose run --detector {result})",
                  file=sys.stderr)
        onnx = result
    if args.rknn:
        out = _out_dir(args.output, "rknn") / f"{entry.name}_{args.target.lower()}.rknn"
        rc = _build_rknn(onnx, out, args)
        if rc:
            return rc
        result = out
    print(result)
    return 0


def _models(args: argparse.Namespace) -> int:
    cache = registry.cache_dir()
    for line, e in zip(registry.table(), (None,) + registry.ENTRIES):
        mark = " " if e is None else ("*" if (cache / e.filename).is_file() else " ")
        print(mark + " " + line)
    print(f"\n* in the cache ({cache}). Accuracy as published by the source (COCO val2017 AP with detected "
          "persons and flip test; MPII val PCKh@0.5); mmpose checkpoints are checked by the 8-hex sha256 prefix "
          "in their names, the others by their full sha256.")
    print("host_tools pull NAME [-o DIR] [--onnx] [--rknn --target T --images DIR ...]")
    return 0


def register(subparsers) -> None:
    """Add ``host_tools pull`` and ``host_tools models``."""
    p = subparsers.add_parser(
        "pull", help="download a registered public model (verified, cached) and convert it",
        description="Download a model from the registry (host_tools models) into the cache, check its sha256, "
                    "optionally copy it to -o DIR, export a pose checkpoint to ONNX (--onnx) and build an .rknn "
                    "(--rknn --target T). EDGEPOSE_MODEL_MIRROR=URL replaces the hosts; EDGEPOSE_CACHE the cache.")
    p.add_argument("name", help="a name from `host_tools models`, e.g. res50_coco_256x192 or yolox_nano")
    p.add_argument("-o", "--output", metavar="DIR", help="also put the file (and conversions) in DIR")
    p.add_argument("--onnx", action="store_true", help="pose checkpoint: export to <NAME>.onnx with edgepose metadata")
    p.add_argument("--rknn", action="store_true", help="build <NAME>_<TARGET>.rknn (pose: from the ONNX export)")
    p.add_argument("--target", help="--rknn chip, e.g. rk3588")
    p.add_argument("--images", help="--rknn calibration images folder (detector: its images; pose: with --calib-ann)")
    p.add_argument("--calib-ann", help="--rknn: COCO/MPII keypoint annotations of --images (pose calibration crops)")
    p.add_argument("--calib", help="--rknn: a ready calibration list (as build-rknn --calib)")
    p.add_argument("--max-calib", type=int, default=200, help="--rknn: at most this many calibration samples")
    p.add_argument("--force", action="store_true", help="replace existing files in -o DIR / conversions")
    p.add_argument("--quiet", action="store_true", help="no progress; print only the resulting path")
    p.set_defaults(func=_pull)
    m = subparsers.add_parser("models", help="list the models `host_tools pull` knows",
                              description="The registry: name, kind, input, published accuracy, size, check, source.")
    m.set_defaults(func=_models)
