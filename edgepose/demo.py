"""``make demo`` / ``python -m edgepose.demo``: the whole pipeline on a fresh machine.

No pretrained pose weights are reachable here, so the demo builds a PoseResNet-18 with
*untrained* (randomly initialised) weights via ``host_tools``, exports it to ONNX with the
edgepose metadata into ``./out/``, and runs ``edgepose run`` on the bundled clip
``tests/data/video/arm_wrestling.mp4``. The keypoints are therefore meaningless; the demo
shows that every stage runs and what the outputs look like. With a real checkpoint, export
it with ``host_tools export-onnx`` and pass that model to ``edgepose run``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[1]
_CLIP_REL = Path("tests") / "data" / "video" / "arm_wrestling.mp4"
# the checkout this package runs from, else the current folder (a non-editable install)
CLIP = ROOT / _CLIP_REL if (ROOT / _CLIP_REL).is_file() else Path.cwd() / _CLIP_REL


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

    from host_tools.export_onnx import embed_metadata, export_model

    from .keypoints import flip_pairs_list, get_keypoint_set
    from .metadata import ModelMeta

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


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edgepose.demo", description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", default="out", help="where the model and outputs go (default ./out)")
    ap.add_argument("--video", default=str(CLIP), help="clip to run on (default: the bundled arm_wrestling.mp4)")
    ap.add_argument("--layers", type=int, default=18, help="PoseResNet depth (default 18)")
    ap.add_argument("--max-frames", type=int, default=0)
    args = ap.parse_args(argv)
    from . import implementation
    from .cli import UsageError, build_parser, run

    out = Path(args.out_dir)
    video = Path(args.video)
    if not video.is_file():
        print(f"edgepose.demo: error: {video}: clip not found (run from the repository root)", file=sys.stderr)
        return 2
    try:
        import torch  # noqa: F401
    except ImportError:
        print("edgepose.demo: error: torch is not installed; the demo exports a model with it (make setup)",
              file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    model = out / f"pose_resnet_{args.layers}_untrained.onnx"
    print(f"[1/2] building PoseResNet-{args.layers} with UNTRAINED random weights (no pretrained weights are "
          f"reachable here) and exporting it with metadata to {model} ...", flush=True)
    t0 = time.monotonic()
    try:
        export_untrained_onnx(model, layers=args.layers)
    except ImportError as exc:
        print(f"      host_tools model unavailable ({exc}); using the tiny stand-in network", flush=True)
        model = out / "tiny_untrained.onnx"
        export_untrained_onnx(model, layers=0)
    print(f"      done in {time.monotonic() - t0:.1f} s", flush=True)
    jsonl = out / (video.stem + ".jsonl")
    annotated = out / (video.stem + "_annotated.mp4")
    cmd = ["run", "--video", str(video), "--model", str(model), "--jsonl", str(jsonl), "--out", str(annotated),
           "--force", "--draw-thr", "-1"]  # untrained maps peak near 0.05: draw every joint
    if args.max_frames:
        cmd += ["--max-frames", str(args.max_frames)]
    print(f"[2/2] edgepose {' '.join(cmd)}", flush=True)
    try:
        summary = run(build_parser().parse_args(cmd))
    except UsageError as exc:
        print(f"edgepose.demo: error: {exc}", file=sys.stderr)
        return 2
    print()
    print("edgepose demo summary")
    print(f"  model:     {model} ({summary['backend']}; kernels: {implementation()})")
    print(f"  frames:    {summary['frames']} in {summary['seconds']} s ({summary['fps']} fps), "
          f"{summary['persons']} person detections, {summary['tracks']} track id(s)")
    print(f"  stage ms:  " + ", ".join(f"{k} {v}" for k, v in summary["stage_ms"].items()))
    print(f"  JSON:      {jsonl} (one line per frame)")
    print(f"  video:     {annotated}")
    print("  NOTE: the weights are untrained, so the keypoints are noise: this shows the pipeline, not accuracy.")
    print("        With a real checkpoint: host_tools export-onnx ..., then edgepose run --model that.onnx --video ...")
    return 0


if __name__ == "__main__":
    sys.exit(main())
