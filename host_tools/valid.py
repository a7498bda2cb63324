"""``host_tools valid``: evaluate a PoseResNet checkpoint on COCO (AP) or MPII (PCKh).

Pipeline (the reference's): crop each box, run the network, optionally run the mirrored
crop too (flip test), then :func:`edgepose.decode.decode` merges the flipped maps (pair swap +
one-pixel shift), takes the argmax with the quarter offset and maps the joints back to the
frame through the inverse crop affine. COCO then rescoring + OKS NMS + pycocotools; MPII PCKh.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from edgepose.decode import decode
from edgepose.geometry import PIXEL_STD
from host_tools.config import Config, load_config, resolve_workers
from host_tools.datasets import JointsDataset, build_dataset
from host_tools.errors import UserError

__all__ = ["predict", "evaluate", "validate", "register"]


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    dataset: JointsDataset,
    flip_test: bool,
    shift_heatmap: bool = True,
    batch_size: int = 32,
    workers: int = 0,
    device: Optional[torch.device] = None,
    refine: str = "quarter",
    progress: bool = True,
) -> Dict[str, np.ndarray]:
    """Run the model over every box of ``dataset`` (no augmentation) and decode.

    Returns:
        ``keypoints`` ``(N, K, 3)`` float32 (x, y frame pixels, score), ``centers`` and ``scales``
        ``(N, 2)``, ``areas`` ``(N,)`` (``scale_w * scale_h * 200**2``), ``box_scores`` ``(N,)``,
        ``image_ids`` ``(N,)`` int64, ``index`` ``(N,)`` dataset indices, in dataset order.
    """
    device = device or next(model.parameters()).device
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=resolve_workers(workers), pin_memory=False)
    codec = dataset.codec
    parts: Dict[str, list] = {k: [] for k in ("keypoints", "centers", "scales", "box_scores", "image_ids", "index")}
    bar = tqdm(loader, desc="valid", unit="batch", disable=not progress, file=sys.stderr)
    for inp, _, _, meta in bar:
        inp = inp.to(device)
        hm = model(inp).float().cpu().numpy()
        flipped = model(torch.flip(inp, [3])).float().cpu().numpy() if flip_test else None
        c = meta["center"].numpy().astype(np.float64)
        s = meta["scale"].numpy().astype(np.float64)
        inv = codec.heatmap_to_frame(c, s, 0.0)
        coords, scores = decode(np.ascontiguousarray(hm), inv, flipped=flipped,
                                flip_pairs=dataset.flip_pairs if flip_test else None,
                                shift=shift_heatmap, refine=refine)
        parts["keypoints"].append(np.concatenate([coords, scores[:, :, None]], axis=2))
        parts["centers"].append(c)
        parts["scales"].append(s)
        parts["box_scores"].append(meta["score"].numpy())
        parts["image_ids"].append(meta["image_id"].numpy())
        parts["index"].append(meta["index"].numpy())
    out = {k: np.concatenate(v) if v else np.zeros((0,)) for k, v in parts.items()}
    out["areas"] = out["scales"][:, 0] * out["scales"][:, 1] * PIXEL_STD ** 2 if len(out["scales"]) else np.zeros(0)
    return out


def evaluate(cfg: Config, dataset: JointsDataset, preds: Dict[str, np.ndarray], out_dir: Optional[Path] = None,
             per_image: Optional[Dict[int, float]] = None) -> Tuple[Dict[str, Any], str, float]:
    """Metrics for ``preds`` from :func:`predict`.

    Returns ``(metrics, table text, indicator)``; the indicator (higher is better) is COCO AP or
    MPII mean PCKh@0.5 / 100. With ``out_dir``, writes the results json there.
    ``per_image`` (optional dict) receives a 0..1 quality per image id (for overlays).
    """
    if cfg.DATASET.DATASET == "coco":
        from host_tools.evaluate.coco_eval import coco_keypoint_ap, format_table, postprocess

        results = postprocess(preds["keypoints"], preds["box_scores"], preds["areas"], preds["image_ids"],
                              in_vis_thre=cfg.TEST.IN_VIS_THRE, oks_thre=cfg.TEST.OKS_THRE)
        if out_dir is not None:
            (out_dir / "keypoints_results.json").write_text(json.dumps(results))
        stats = coco_keypoint_ap(dataset.coco, results, per_image=per_image)
        return stats, format_table(stats), stats["AP"]
    from host_tools.evaluate.pckh import format_table, pckh

    idx = preds["index"].astype(np.int64)
    gt = np.stack([dataset.db[i].joints for i in idx]) if len(idx) else np.zeros((0, dataset.num_joints, 2))
    vis = np.stack([dataset.db[i].joints_vis for i in idx]) if len(idx) else np.zeros((0, dataset.num_joints))
    res = pckh(preds["keypoints"][:, :, :2], gt, vis)
    if out_dir is not None:
        rows = [{"image": dataset.db[i].image.rsplit("/", 1)[-1], "joints": preds["keypoints"][n, :, :2].round(2).tolist(),
                 "scores": preds["keypoints"][n, :, 2].round(4).tolist()} for n, i in enumerate(idx)]
        (out_dir / "mpii_results.json").write_text(json.dumps(rows))
    if per_image is not None:
        from host_tools.evaluate.pckh import head_sizes

        hs = head_sizes(gt, vis)
        d = np.linalg.norm(preds["keypoints"][:, :, :2] - gt, axis=2)
        for n, i in enumerate(idx):
            ok = vis[n] > 0
            if hs[n] > 0 and ok.any():
                per_image[int(dataset.db[i].image_id)] = float((d[n][ok] <= 0.5 * hs[n]).mean())
    return res, format_table(res), res["PCKh@0.5"]["Mean"] / 100.0


def refine_mode(cfg: Config) -> str:
    """The decoder's sub-pixel step: ``TEST.REFINE``, or none when ``TEST.POST_PROCESS`` is false
    (in the original, POST_PROCESS switched the quarter offset)."""
    return cfg.TEST.REFINE if cfg.TEST.POST_PROCESS else "none"


def validate(cfg: Config, model: torch.nn.Module, dataset: JointsDataset, out_dir: Optional[Path] = None,
             flip_test: Optional[bool] = None, progress: bool = True, workers: Optional[int] = None) -> Tuple[Dict[str, Any], str, float]:
    """:func:`predict` + :func:`evaluate` with the ``TEST.*`` settings of ``cfg``."""
    preds = predict(model, dataset, cfg.TEST.FLIP_TEST if flip_test is None else flip_test, cfg.TEST.SHIFT_HEATMAP,
                    batch_size=cfg.TEST.BATCH_SIZE, workers=cfg.WORKERS if workers is None else workers,
                    refine=refine_mode(cfg), progress=progress)
    return evaluate(cfg, dataset, preds, out_dir)


# --------------------------------------------------------------------------------- CLI


def add_config_args(p: argparse.ArgumentParser) -> None:
    """``--cfg FILE`` and trailing ``KEY=value`` overrides (shared by train and valid)."""
    p.add_argument("--cfg", default=None, help="experiment YAML (original layout); default: the defaults (valid: the config.yaml beside --model-file)")
    p.add_argument("opts", nargs="*", metavar="KEY=value", help="config overrides, e.g. TRAIN.END_EPOCH=2 MODEL.EXTRA.NUM_LAYERS=18")


def run_dir(cfg: Config, cfg_path: Optional[str]) -> Path:
    """``OUTPUT_DIR/<dataset>/pose_resnet_<depth>/<cfg name>`` as in the original project."""
    name = Path(cfg_path).name.split(".")[0] if cfg_path else "default"
    return Path(cfg.OUTPUT_DIR) / cfg.DATASET.DATASET / f"{cfg.MODEL.NAME}_{cfg.MODEL.EXTRA.NUM_LAYERS}" / name


def _main(args: argparse.Namespace) -> int:
    from host_tools.model import describe, get_pose_net, load_checkpoint
    from host_tools.weights import prepare

    overrides = list(args.opts)
    cfg_path = args.cfg
    if cfg_path is None and args.model_file and (Path(args.model_file).parent / "config.yaml").is_file():
        cfg_path = str(Path(args.model_file).parent / "config.yaml")  # the run folder's own config
        print(f"=> config from {cfg_path}", file=sys.stderr)
    if args.flip_test is not None:
        overrides.append(f"TEST.FLIP_TEST={'true' if args.flip_test else 'false'}")
    if args.use_detect_bbox or args.det_file:
        overrides.append("TEST.USE_GT_BBOX=false")
    if args.det_file:
        overrides.append(f"TEST.COCO_BBOX_FILE={args.det_file}")
    if args.model_file:
        overrides.append(f"TEST.MODEL_FILE={args.model_file}")
    if args.workers is not None:
        overrides.append(f"WORKERS={args.workers}")
    cfg = load_config(cfg_path, overrides)
    out_dir = Path(args.out) if args.out else (Path(args.model_file).parent if cfg_path != args.cfg else run_dir(cfg, cfg_path))
    model_file = cfg.TEST.MODEL_FILE or str(out_dir / "model_best.pth.tar")
    if not Path(model_file).is_file():
        raise UserError(f"model file {model_file} not found (pass --model-file or TEST.MODEL_FILE=...)")
    info = prepare(cfg, model_file, "valid")  # mmpose files: their colour order goes into cfg before the data is built
    model = load_checkpoint(get_pose_net(cfg, is_train=False), {"state_dict": info.state}, name=model_file)
    dataset = build_dataset(cfg, is_train=False, use_gt_bbox=cfg.TEST.USE_GT_BBOX, det_file=cfg.TEST.COCO_BBOX_FILE)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    print(f"=> {describe(model)} from {model_file}; {len(dataset)} boxes; flip test {'on' if cfg.TEST.FLIP_TEST else 'off'}",
          file=sys.stderr)
    preds = predict(model, dataset, cfg.TEST.FLIP_TEST, cfg.TEST.SHIFT_HEATMAP, cfg.TEST.BATCH_SIZE, cfg.WORKERS,
                    refine=refine_mode(cfg))
    per_image: Dict[int, float] = {}
    metrics, table, _ = evaluate(cfg, dataset, preds, out_dir, per_image=per_image)
    summary = {"model_file": str(model_file), "dataset": cfg.DATASET.DATASET, "boxes": len(dataset),
               "flip_test": bool(cfg.TEST.FLIP_TEST), "seconds": round(time.time() - t0, 2), "metrics": metrics}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    (out_dir / "summary.md").write_text(table + "\n")
    print(table)
    if args.vis:
        from host_tools.visualize import save_overlays

        paths = save_overlays(dataset, preds, per_image, out_dir / "overlays", args.vis)
        print(f"=> {len(paths)} overlays in {out_dir / 'overlays'}", file=sys.stderr)
    print(f"=> results in {out_dir}", file=sys.stderr)
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("valid", help="evaluate a checkpoint (COCO AP / MPII PCKh)",
                              description="Evaluate a PoseResNet checkpoint on the configured test set.")
    add_config_args(p)
    p.add_argument("--model-file", default=None, help="checkpoint (.pth/.pth.tar: host_tools, original `module.` files, mmpose 1.x/0.x ResNet); default: <run dir>/model_best.pth.tar")
    flip = p.add_mutually_exclusive_group()
    flip.add_argument("--flip-test", dest="flip_test", action="store_true", default=None, help="average with the mirrored crop")
    flip.add_argument("--no-flip-test", dest="flip_test", action="store_false")
    p.add_argument("--use-detect-bbox", action="store_true", help="COCO: use detector boxes (TEST.COCO_BBOX_FILE) instead of GT boxes")
    p.add_argument("--det-file", default=None, help="COCO detection results json (implies --use-detect-bbox)")
    p.add_argument("--out", default=None, help="output folder (default: the run folder under OUTPUT_DIR)")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers (WORKERS; -1, the default: the cores available)")
    p.add_argument("--vis", type=int, default=0, metavar="N", help="also draw skeleton overlays of the N worst and N best images")
    p.set_defaults(func=_main)
