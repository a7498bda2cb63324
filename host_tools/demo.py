"""``make demo`` / ``python -m host_tools.demo``: the whole pipeline on a sample clip, with real
models when they can be had.

Models, each looked for in this order (the first that has it wins):

1. ``$EDGEPOSE_MODELS``: a folder of edgepose-ready files, a pose ``.onnx`` with edgepose
   metadata and a detector ``.onnx`` (one without it, e.g. YOLOX-Nano);
2. the cache (``host_tools pull``'s folder): ``onnx/res50_coco_256x192.onnx`` (or its
   checkpoint, exported then) and ``yolox_nano.onnx``;
3. the real models beside the checkout (``$EDGEPOSE_TEST_MODELS``, default ``../shared/models``):
   ``yolox_nano.onnx`` as it is, and ``efficientpose_rt_lite_mpii.onnx`` made edgepose-ready by
   ``host_tools import-onnx`` into the output folder (MPII, 16 joints);
4. online: ``host_tools pull yolox_nano`` and ``host_tools pull res50_coco_256x192 --onnx``.

With a real pose model the demo runs the detector and that model on the clip, tracking on,
and says which models it used and where they came from. Without one it falls back to a
PoseResNet-18 with *untrained* (random) weights and says its keypoints are noise.

The clip: ``--video``, else ``video/arm_wrestling.mp4`` in ``$EDGEPOSE_TEST_DATA`` (default
``../shared/data`` beside the checkout), else the cache, else pulled (``arm_wrestling``, mmaction2's
``demo/demo.mp4``, sha256-checked), else a short synthetic clip of two moving figures that the
demo draws itself.

This is host-side work (it exports with torch); the ``edgepose`` package never imports it.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[1]
MODELS_ENV = "EDGEPOSE_MODELS"
DATA_ENV = "EDGEPOSE_TEST_DATA"
SHARED_MODELS_ENV = "EDGEPOSE_TEST_MODELS"
SHARED_POSE = "efficientpose_rt_lite_mpii.onnx"  # foreign: imported with the flags of docs/IMPORT.md
SHARED_DETECTOR = "yolox_nano.onnx"
CLIP_REL = Path("video") / "arm_wrestling.mp4"
DEMO_POSE = "res50_coco_256x192"
DEMO_DETECTOR = "yolox_nano"
DEMO_CLIP = "arm_wrestling"


def _tiny_net(num_joints: int):
    """A few convolutions with PoseResNet's I/O (stride 4): for fast tests only."""
    import torch.nn as nn

    return nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(32, num_joints, 1),
    )


def export_untrained_onnx(
    path: Path,
    layers: int = 18,
    input_size: Tuple[int, int] = (192, 256),
    keypoint_set: str = "coco",
    dynamic_batch: bool = True,
    seed: int = 0,
    meta_overrides: Optional[dict] = None,
) -> Path:
    """Export a randomly initialised model with edgepose metadata to ``path`` (overwritten),
    through ``host_tools.export_onnx.export_model`` (opset 13, input ``input`` ``(B, 3, h, w)``,
    output ``heatmaps`` ``(B, K, h/4, w/4)``, checked against torch).

    Args:
        layers: PoseResNet depth (18, 34, 50 ...) built by ``host_tools.model.get_pose_net``, or
            0 for a tiny stand-in network (tests).
        input_size: ``(w, h)``.
        dynamic_batch: a dynamic batch axis (metadata ``batch`` 0) or a fixed batch of 1.
        meta_overrides: ModelMeta fields changed *after* the export (tests write metadata that
            disagrees with the model on purpose).
    """
    import torch

    from edgepose.keypoints import flip_pairs_list, get_keypoint_set
    from edgepose.metadata import ModelMeta
    from host_tools.export_onnx import embed_metadata, export_model

    torch.manual_seed(seed)
    ks = get_keypoint_set(keypoint_set)
    w, h = int(input_size[0]), int(input_size[1])
    if layers:
        from host_tools.config import load_config, model_meta
        from host_tools.model import get_pose_net

        cfg = load_config(None, [f"MODEL.EXTRA.NUM_LAYERS={layers}", f"MODEL.IMAGE_SIZE=[{w},{h}]",
                                 f"MODEL.EXTRA.HEATMAP_SIZE=[{w // 4},{h // 4}]", f"DATASET.DATASET={keypoint_set}",
                                 f"MODEL.NUM_JOINTS={ks.num_joints}"])
        net = get_pose_net(cfg)
        meta = model_meta(cfg)
    else:
        net = _tiny_net(ks.num_joints)
        meta = ModelMeta(input_size=(w, h), heatmap_size=(w // 4, h // 4), keypoint_set=ks.name,
                         num_joints=ks.num_joints, flip_pairs=flip_pairs_list(ks), arch="tiny_test_net")
    meta.source_config = {**(meta.source_config or {}), "weights": "untrained (random init, seed %d)" % seed}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    export_model(net, meta, path, batch=0 if dynamic_batch else 1, force=True, seed=seed)
    if meta_overrides:
        for k, v in meta_overrides.items():
            setattr(meta, k, v)
        embed_metadata(path, meta)
    return path


# --------------------------------------------------------------------------- finding things


@dataclass
class Found:
    """A file the demo uses and where it came from (said in the output)."""

    path: Path
    where: str


def _say(text: str) -> None:
    print(text, flush=True)


def scan_models_dir(folder: Path) -> Tuple[Optional[Found], Optional[Found], List[str]]:
    """``(pose, detector, notes)`` from a folder of ``.onnx`` files: the first (by name) with
    edgepose pose metadata, and the first detector (an ONNX without it). Files that cannot be
    read are skipped with a note."""
    from edgepose.detect import is_detector_model
    from edgepose.metadata import read_onnx_metadata

    pose = det = None
    notes: List[str] = []
    for p in sorted(folder.glob("*.onnx")):
        try:
            meta = read_onnx_metadata(p)
        except Exception as exc:  # a broken file must not stop the demo: say so and go on
            notes.append(f"{p.name}: skipped ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})")
            continue
        if meta is not None:
            if pose is None:
                pose = Found(p, f"{MODELS_ENV}={folder}")
            else:
                notes.append(f"{p.name}: another pose model, not used (the demo takes {pose.path.name}, the first by name)")
        elif is_detector_model(p):
            if det is None:
                det = Found(p, f"{MODELS_ENV}={folder}")
            else:
                notes.append(f"{p.name}: another detector, not used (the demo takes {det.path.name})")
    return pose, det, notes


def _beside_checkout(var: str, sub: str) -> Path:
    """``$var``, else ``../shared/<sub>`` beside the checkout (how the tests find it too)."""
    env = os.environ.get(var)
    return Path(env).expanduser() if env else ROOT.parent / "shared" / sub


def shared_models_dir() -> Path:
    """``$EDGEPOSE_TEST_MODELS``, else ``../shared/models`` beside the checkout."""
    return _beside_checkout(SHARED_MODELS_ENV, "models")


def _shared_models(out_dir: Path, need_pose: bool, need_det: bool
                   ) -> Tuple[Optional[Found], Optional[Found], List[str]]:
    """The real models beside the checkout: YOLOX-Nano as it is, EfficientPose RT Lite imported
    (metadata stamped) into ``out_dir``. ``(pose, detector, notes)``."""
    from host_tools.errors import UserError

    folder = shared_models_dir()
    where = f"{SHARED_MODELS_ENV}={folder}" if os.environ.get(SHARED_MODELS_ENV) else f"{folder} (the shared models)"
    pose = det = None
    notes: List[str] = []
    if need_det and (folder / SHARED_DETECTOR).is_file():
        det = Found(folder / SHARED_DETECTOR, where)
    src = folder / SHARED_POSE
    if need_pose and src.is_file():
        from host_tools.import_onnx import EFFICIENTPOSE_SPEC, import_onnx

        out = out_dir / "efficientpose_rt_lite_mpii_edgepose.onnx"
        _say(f"      {src.name} is at hand: host_tools import-onnx {src} -o {out} --color rgb --mean 127.5 127.5 "
             "127.5 --std 127.5 127.5 127.5 --keypoints mpii ...")
        try:
            pose = Found(import_onnx(src, out, EFFICIENTPOSE_SPEC, force=True, log=lambda line: None).path, f"{where}, imported now")
        except UserError as exc:
            notes.append(f"{src.name}: import failed ({exc})")
    return pose, det, notes


def find_models(offline: bool, out_dir: Optional[Path] = None) -> Tuple[Optional[Found], Optional[Found], List[str]]:
    """Pose model and detector: ``$EDGEPOSE_MODELS``, the cache, the shared real models (when
    ``out_dir`` is given, where an imported model is written), then online (unless ``offline``).
    Returns ``(pose, detector, notes)``; notes say what was tried and failed."""
    from host_tools import registry
    from host_tools.download import cached
    from host_tools.errors import UserError
    from host_tools.pull import ensure, pose_onnx

    pose = det = None
    notes: List[str] = []
    env = os.environ.get(MODELS_ENV, "").strip()
    if env:
        folder = Path(env).expanduser()
        if not folder.is_dir():
            raise UserError(f"{MODELS_ENV}={env}: not a folder; point it at a folder holding a pose .onnx (with "
                            "edgepose metadata) and a detector .onnx, or unset it")
        pose, det, notes = scan_models_dir(folder)
        if pose is None:
            notes.append(f"{MODELS_ENV}={folder}: no pose .onnx with edgepose metadata there")
        if det is None:
            notes.append(f"{MODELS_ENV}={folder}: no detector .onnx there")
    cache = registry.cache_dir()
    pe, de = registry.get(DEMO_POSE), registry.get(DEMO_DETECTOR)
    if pose is None:
        onnx = cache / "onnx" / registry.onnx_name(pe)
        if onnx.is_file():
            pose = Found(onnx, f"the cache ({cache})")
        elif cached(cache / pe.filename, pe.expected_digest):
            _say(f"      {pe.filename} is in the cache: exporting it to ONNX ...")
            try:
                pose = Found(pose_onnx(pe), f"the cache ({cache}), exported now")
            except UserError as exc:
                notes.append(f"{pe.name}: export failed ({exc})")
    if det is None and cached(cache / de.filename, de.expected_digest):
        det = Found(cache / de.filename, f"the cache ({cache})")
    if out_dir is not None and (pose is None or det is None):
        sp, sd, n = _shared_models(out_dir, pose is None, det is None)
        pose, det, notes = pose or sp, det or sd, notes + n
    if offline:
        return pose, det, notes
    if det is None:
        _say(f"      pulling the detector {de.name} ({de.source}) ...")
        try:
            det = Found(ensure(de), f"downloaded ({registry.resolve_url(de.url)})")
        except UserError as exc:
            notes.append(f"{de.name}: {exc}")
    if pose is None:
        _say(f"      pulling the pose model {pe.name} ({pe.metric}, {pe.source}) and exporting it to ONNX ...")
        try:
            pose = Found(pose_onnx(pe), f"downloaded ({registry.resolve_url(pe.url)}) and exported")
        except UserError as exc:
            notes.append(f"{pe.name}: {exc}")
    return pose, det, notes


def data_dir() -> Path:
    """``$EDGEPOSE_TEST_DATA``, else ``../shared/data`` beside the checkout."""
    return _beside_checkout(DATA_ENV, "data")


def find_clip(out_dir: Path, offline: bool) -> Tuple[Found, List[str]]:
    """The sample clip: the data folder, the cache, a pull, else a synthetic clip in ``out_dir``."""
    from host_tools import registry
    from host_tools.download import cached
    from host_tools.errors import UserError
    from host_tools.pull import ensure

    notes: List[str] = []
    local = data_dir() / CLIP_REL
    if local.is_file():
        return Found(local, DATA_ENV if os.environ.get(DATA_ENV) else "../shared/data"), notes
    entry = registry.get(DEMO_CLIP)
    in_cache = registry.cache_dir() / entry.filename
    if cached(in_cache, entry.expected_digest):
        return Found(in_cache, f"the cache ({registry.cache_dir()})"), notes
    if not offline:
        _say(f"      pulling the sample clip ({entry.source}) ...")
        try:
            return Found(ensure(entry), f"downloaded ({registry.resolve_url(entry.url)})"), notes
        except UserError as exc:
            notes.append(f"clip: {exc}")
    path = synthetic_clip(out_dir / "synthetic_people.mp4")
    return Found(path, "the demo's own drawing: no sample clip in the data folder, the cache or online"), notes


def _figure(img, cx: float, ground: float, height: float, phase: float, color) -> None:
    """A walking figure drawn with thick limbs (head, torso, arms, legs) standing on ``ground``."""
    import math

    import cv2

    s = height / 8.0
    hip = (cx, ground - 4.0 * s)
    neck = (cx, ground - 6.6 * s)
    head = (int(cx), int(ground - 7.4 * s))
    swing = math.sin(phase) * 0.5
    def pt(base, ang, length):  # angle from straight down
        return (base[0] + math.sin(ang) * length, base[1] + math.cos(ang) * length)
    knee_l, knee_r = pt(hip, swing, 2.0 * s), pt(hip, -swing, 2.0 * s)
    foot_l, foot_r = pt(knee_l, swing * 0.3, 2.0 * s), pt(knee_r, -swing * 0.3, 2.0 * s)
    elb_l, elb_r = pt(neck, -swing + 0.3, 1.4 * s), pt(neck, swing - 0.3, 1.4 * s)
    hand_l, hand_r = pt(elb_l, -swing * 0.5 + 0.2, 1.3 * s), pt(elb_r, swing * 0.5 - 0.2, 1.3 * s)
    t = max(2, int(s * 0.45))
    segs = [(neck, hip), (hip, knee_l), (knee_l, foot_l), (hip, knee_r), (knee_r, foot_r),
            (neck, elb_l), (elb_l, hand_l), (neck, elb_r), (elb_r, hand_r)]
    for a, b in segs:
        cv2.line(img, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), color, t, cv2.LINE_AA)
    cv2.circle(img, head, int(0.7 * s), (150, 180, 220), -1, cv2.LINE_AA)


def synthetic_clip(path: Path, frames: int = 60, size: Tuple[int, int] = (640, 360), fps: float = 15.0) -> Path:
    """Write a short clip of two figures walking towards each other (mp4v); returns ``path``."""
    import math

    import cv2
    import numpy as np

    w, h = size
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("." + path.name + ".tmp.mp4")
    vw = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not vw.isOpened():
        raise RuntimeError(f"{path}: OpenCV cannot write mp4v video here")
    try:
        for i in range(frames):
            img = np.full((h, w, 3), (200, 190, 170), np.uint8)
            img[int(h * 0.85):] = (90, 110, 90)
            u = i / max(frames - 1, 1)
            _figure(img, w * (0.15 + 0.3 * u), h * 0.92, h * 0.75, i * 0.5, (60, 60, 160))
            _figure(img, w * (0.85 - 0.3 * u), h * 0.92, h * 0.7, i * 0.5 + math.pi, (150, 80, 40))
            vw.write(img)
    finally:
        vw.release()
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------- main


def _says_untrained(onnx_path: Path) -> bool:
    """Whether a pose ONNX's metadata records untrained weights (what export_untrained_onnx writes)."""
    from edgepose.metadata import read_onnx_metadata

    meta = read_onnx_metadata(onnx_path)
    weights = str((meta.source_config or {}).get("weights", "")) if meta else ""
    return weights.startswith("untrained")


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m host_tools.demo", description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", default="out", help="where the outputs (and an untrained model) go (default ./out)")
    ap.add_argument("--video", help="clip to run on (default: the sample clip, see above)")
    ap.add_argument("--layers", type=int, default=18, help="depth of the untrained fallback PoseResNet (default 18)")
    ap.add_argument("--max-frames", type=int, default=0)
    ap.add_argument("--offline", action="store_true", help="do not download anything (EDGEPOSE_MODELS and cache only)")
    ap.add_argument("--untrained", action="store_true", help="skip the model search: the untrained network")
    args = ap.parse_args(argv)
    from edgepose import implementation
    from edgepose.cli import UsageError, build_parser, run
    from host_tools.errors import UserError

    out = Path(args.out_dir)
    try:
        import torch  # noqa: F401
    except ImportError:
        print("host_tools.demo: error: torch is not installed; the demo exports models with it (make setup)",
              file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    notes: List[str] = []
    try:
        _say("[1/3] the clip ...")
        if args.video:
            clip = Found(Path(args.video), "--video")
            if not clip.path.is_file():
                print(f"host_tools.demo: error: --video {clip.path}: file not found", file=sys.stderr)
                return 2
        else:
            clip, n = find_clip(out, args.offline)
            notes += n
        _say(f"      {clip.path} (from {clip.where})")
        _say("[2/3] the models ...")
        pose = det = None
        if not args.untrained:
            pose, det, n = find_models(args.offline, out)
            notes += n
    except UserError as exc:
        print(f"host_tools.demo: error: {exc}", file=sys.stderr)
        return 2
    for note in notes:
        _say(f"      note: {note}")
    trained = pose is not None and not _says_untrained(pose.path)
    if pose is not None and not trained:
        _say(f"      note: {pose.path}'s metadata says its weights are untrained")
    if pose is None:
        model = out / f"pose_resnet_{args.layers}_untrained.onnx"
        _say(f"      no real pose model at hand: building PoseResNet-{args.layers} with UNTRAINED random weights "
             f"and exporting it with metadata to {model} ...")
        t0 = time.monotonic()
        try:
            export_untrained_onnx(model, layers=args.layers)
        except ImportError as exc:
            _say(f"      host_tools model unavailable ({exc}); using the tiny stand-in network")
            model = out / "tiny_untrained.onnx"
            export_untrained_onnx(model, layers=0)
        _say(f"      done in {time.monotonic() - t0:.1f} s")
        pose = Found(model, "the demo, built now")
    _say(f"      pose model: {pose.path} (from {pose.where})")
    _say(f"      detector:   {det.path} (from {det.where})" if det else
         "      detector:   none (each frame is one person box)")
    video = clip.path
    jsonl = out / (video.stem + ".jsonl")
    annotated = out / (video.stem + "_annotated.mp4")
    cmd = ["run", "--video", str(video), "--model", str(pose.path), "--jsonl", str(jsonl), "--out", str(annotated),
           "--force"]
    if det:
        cmd += ["--detector", str(det.path)]
    if not trained:
        cmd += ["--draw-thr", "-1"]  # untrained maps peak near 0.05: draw every joint
    if args.max_frames:
        cmd += ["--max-frames", str(args.max_frames)]
    _say(f"[3/3] edgepose {' '.join(cmd)}")
    try:
        summary = run(build_parser().parse_args(cmd))
    except UsageError as exc:
        print(f"host_tools.demo: error: {exc}", file=sys.stderr)
        return 2
    from edgepose.metadata import read_onnx_metadata

    meta = read_onnx_metadata(pose.path)
    arch = (f"{meta.arch}, input {meta.input_size[1]}x{meta.input_size[0]} (h x w) {meta.color}, "
            f"{meta.keypoint_set} keypoints") if meta else "?"
    print()
    print("edgepose demo summary")
    print(f"  clip:      {video} (from {clip.where})")
    print(f"  pose:      {pose.path} ({arch}; {'TRAINED' if trained else 'UNTRAINED'}; from {pose.where})")
    print(f"  detector:  {det.path} (from {det.where})" if det else "  detector:  none (whole frame as one box)")
    print(f"  tracking:  on ({summary['tracks']} track id(s))")
    print(f"  backend:   {summary['backend']}; kernels: {implementation()}")
    print(f"  frames:    {summary['frames']} in {summary['seconds']} s ({summary['fps']} fps), "
          f"{summary['persons']} person detections")
    print("  stage ms:  " + ", ".join(f"{k} {v}" for k, v in summary["stage_ms"].items()))
    print(f"  JSON:      {jsonl} (one line per frame)")
    print(f"  video:     {annotated}")
    if trained:
        print("  These are real trained models: the skeletons are their predictions.")
    else:
        print("  NOTE: the weights are untrained, so the keypoints are noise: this shows the pipeline, not accuracy.")
        print("        For real poses: host_tools pull res50_coco_256x192 --onnx and host_tools pull yolox_nano (or set "
              f"{MODELS_ENV} to a folder with a pose .onnx and a detector .onnx), then make demo again.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
