"""Training checkpoints: ``checkpoint.pth.tar`` (resumable state) and ``model_best.pth.tar`` /
``final_state.pth.tar`` (bare state_dicts), all without the ``module.`` prefix of DDP.

Loading weights into a model (official files included) is :func:`host_tools.model.load_checkpoint`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch
import torch.nn as nn

from host_tools.errors import UserError
from host_tools.model import _extract_state_dict, _torch_load, strip_prefix

CHECKPOINT = "checkpoint.pth.tar"
BEST = "model_best.pth.tar"
FINAL = "final_state.pth.tar"


def plain_state_dict(model: nn.Module) -> Dict[str, torch.Tensor]:
    """The model's weights with no ``module.`` prefix (unwraps DDP / DataParallel), on CPU."""
    target = model.module if hasattr(model, "module") else model
    # contiguous: a channels_last model's weights are saved in the usual layout
    return {k: v.detach().cpu().contiguous() for k, v in strip_prefix(target.state_dict()).items()}


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, str(tmp))
    os.replace(tmp, path)


def save_checkpoint(
    out_dir: Union[str, Path],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    epoch: int,
    perf: float,
    best_perf: float,
    is_best: bool,
    config: Dict[str, Any],
    scaler: Any = None,
) -> Path:
    """Write ``checkpoint.pth.tar`` (epoch = the next epoch to run) and, when ``is_best``,
    ``model_best.pth.tar`` (state_dict only, like the original's)."""
    out = Path(out_dir)
    state = plain_state_dict(model)
    ckpt = {
        "epoch": epoch,
        "model": f"pose_resnet_{config['MODEL']['EXTRA']['NUM_LAYERS']}",
        "state_dict": state,
        "perf": perf,
        "best_perf": best_perf,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "config": config,
    }
    if scaler is not None:  # fp16 training: the loss scale carries over a resume
        ckpt["scaler"] = scaler.state_dict()
    path = out / CHECKPOINT
    _atomic_save(ckpt, path)
    if is_best:
        _atomic_save(state, out / BEST)
    return path


def load_training_state(path: Union[str, Path]) -> Dict[str, Any]:
    """Read a resumable checkpoint (``epoch``, ``state_dict``, ``optimizer``, ``scheduler``,
    ``best_perf``). UserError when it is missing or is a bare state_dict."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"checkpoint {p} not found (resume needs the checkpoint.pth.tar written by training)")
    obj = _torch_load(p)
    if not isinstance(obj, dict) or "optimizer" not in obj or "epoch" not in obj:
        raise UserError(f"checkpoint {p} holds weights only, not a training state; start a new run with MODEL.PRETRAINED or load it in valid")
    obj["state_dict"] = strip_prefix(_extract_state_dict(obj, p))
    return obj


def find_resume(out_dir: Union[str, Path], explicit: str = "") -> Optional[Path]:
    """The checkpoint to resume from: ``explicit`` (TRAIN.CHECKPOINT) or ``out_dir/checkpoint.pth.tar``."""
    if explicit:
        return Path(explicit)
    p = Path(out_dir) / CHECKPOINT
    return p if p.is_file() else None
