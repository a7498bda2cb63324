"""``host_tools train``: train PoseResNet with the reference recipe.

One process on CPU or one GPU, or several GPUs through ``torchrun`` (same entry point: when
``WORLD_SIZE > 1`` it joins the process group, wraps the model in DistributedDataParallel and
shards the data with a DistributedSampler; only rank 0 validates and writes files).

Writes into the run folder (``OUTPUT_DIR/<dataset>/pose_resnet_<depth>/<cfg name>`` or ``--out``):
``config.yaml``, ``checkpoint.pth.tar`` every epoch, ``model_best.pth.tar`` (best validation
score, or lowest training loss with ``--no-validate``), ``final_state.pth.tar`` and ``log.csv``.
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from host_tools.checkpoint import BEST, CHECKPOINT, FINAL, find_resume, load_training_state, plain_state_dict, save_checkpoint
from host_tools.config import Config, check_amp, expected_heatmap_size, load_config, resolve_workers
from host_tools.datasets import build_dataset
from host_tools.errors import UserError
from host_tools.model import describe, get_pose_net, load_checkpoint

__all__ = ["JointsMSELoss", "Precision", "build_optimizer", "train", "train_one_epoch", "register"]


class JointsMSELoss(nn.Module):
    """``0.5 * mean((w * (pred - target))**2)`` over batch, joints and pixels, ``w`` the
    per-joint ``target_weight`` (N, K, 1): the reference loss (0.5 * MSE averaged over joints)."""

    def __init__(self, use_target_weight: bool = True) -> None:
        super().__init__()
        self.use_target_weight = use_target_weight

    def forward(self, output: torch.Tensor, target: torch.Tensor, target_weight: torch.Tensor) -> torch.Tensor:
        n, k = output.shape[:2]
        pred = output.reshape(n, k, -1)
        gt = target.reshape(n, k, -1)
        if self.use_target_weight:
            w = target_weight.reshape(n, k, 1)
            pred, gt = pred * w, gt * w
        return 0.5 * torch.mean((pred - gt) ** 2)


def build_optimizer(cfg: Config, model: nn.Module) -> torch.optim.Optimizer:
    """Adam (lr) or SGD (lr, momentum, weight decay, nesterov), as ``TRAIN.OPTIMIZER`` says."""
    if cfg.TRAIN.OPTIMIZER == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.TRAIN.LR, momentum=cfg.TRAIN.MOMENTUM,
                               weight_decay=cfg.TRAIN.WD, nesterov=cfg.TRAIN.NESTEROV)
    return torch.optim.Adam(model.parameters(), lr=cfg.TRAIN.LR)


def apply_cudnn(cfg: Config) -> None:
    """``CUDNN.BENCHMARK`` / ``DETERMINISTIC`` / ``ENABLED`` into torch.backends.cudnn, as the
    original did (benchmark: cuDNN times its algorithms once per input shape and keeps the fastest)."""
    torch.backends.cudnn.benchmark = bool(cfg.CUDNN.BENCHMARK)
    torch.backends.cudnn.deterministic = bool(cfg.CUDNN.DETERMINISTIC)
    torch.backends.cudnn.enabled = bool(cfg.CUDNN.ENABLED)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, rank: int, epoch: int) -> int:
    """The seed of one epoch's shuffle and augmentation: a function of (seed, rank, epoch) only,
    so a run resumed at epoch e (after a crash or SIGKILL) repeats the uninterrupted run."""
    return (int(seed) * 1_000_003 + rank * 10_007 + epoch) % 2 ** 31


def _worker_init(worker_id: int) -> None:
    # Distinct, reproducible numpy/random streams per worker (torch seeds each worker already).
    s = torch.initial_seed() % 2 ** 32
    np.random.seed(s)
    random.seed(s)


class Precision:
    """How a training step runs: fp32, or autocast in bf16 / fp16, with a gradient scaler for
    fp16 (whose small range would flush gradients to zero otherwise). ``channels_last`` puts
    the model and its inputs in NHWC, the layout tensor cores and oneDNN convolve fastest."""

    def __init__(self, device: torch.device, amp: str = "", channels_last: bool = False) -> None:
        check_amp(amp)
        self.device = device
        self.amp = "" if amp == "none" else amp
        self.dtype: Optional[torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.amp)
        self.channels_last = channels_last
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp == "fp16")

    def describe(self) -> str:
        mode = {"": "fp32", "bf16": "bf16 autocast", "fp16": "fp16 autocast + grad scaler"}[self.amp]
        return mode + (", channels_last" if self.channels_last else "")

    def prepare(self, model: nn.Module) -> nn.Module:
        """Put ``model`` in the memory format this precision uses (in place; returns it)."""
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return model

    def inputs(self, inp: torch.Tensor) -> torch.Tensor:
        """The batch on the device (asynchronous from pinned memory), in the model's layout."""
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        return inp.to(self.device, non_blocking=True, memory_format=fmt)

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None)

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Backward and optimizer step (unscaled and skipped on inf/nan grads under fp16)."""
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()


def train_one_epoch(model: nn.Module, loader: DataLoader, criterion: nn.Module, optimizer: torch.optim.Optimizer,
                    device: torch.device, epoch: int, max_iters: int = 0, progress: bool = True,
                    precision: Optional[Precision] = None, print_freq: int = 20) -> Dict[str, float]:
    """One pass over ``loader``.

    Nothing in the loop waits for the device: the loss is summed on the device and read back
    (one synchronisation) every ``print_freq`` iterations and at the end, for the progress bar
    and to stop on a non-finite loss. ``data_wait`` is the share of the epoch's wall time the
    loop spent waiting for the DataLoader: near 0 when the device is the bottleneck, near 1
    when the loader is (more WORKERS, or a faster disk).

    Returns ``{"loss": mean loss per image, "images_per_s", "data_wait": 0..1, "iters"}``.
    """
    precision = precision or Precision(device)
    model.train()
    n_iters = len(loader) if not max_iters else min(max_iters, len(loader))
    bar = tqdm(total=n_iters, desc=f"epoch {epoch}", unit="it", disable=not progress, file=sys.stderr)
    total = torch.zeros((), dtype=torch.float64, device=device)  # sum of loss x batch size, on the device
    count, wait, it, checked = 0, 0.0, 0, 0
    t0 = time.perf_counter()

    def show(mean: float) -> float:
        el = max(time.perf_counter() - t0, 1e-9)
        bar.set_postfix(loss=f"{mean:.3e}", img_s=f"{count / el:.1f}", wait=f"{100 * wait / el:.0f}%", refresh=False)
        return el

    def check(upto: int) -> float:
        mean = float(total.item()) / max(count, 1)  # the synchronisation point
        if not math.isfinite(mean):
            raise RuntimeError(f"loss became {mean} at epoch {epoch} between iterations {checked} and {upto}: lower TRAIN.LR"
                               + (" or use TRAIN.AMP=bf16 (fp16's range is small)" if precision.amp == "fp16" else ""))
        return mean

    batches = iter(loader)
    while it < n_iters:
        tw = time.perf_counter()
        try:
            inp, target, weight, _ = next(batches)
        except StopIteration:
            break
        wait += time.perf_counter() - tw
        inp = precision.inputs(inp)
        target, weight = target.to(device, non_blocking=True), weight.to(device, non_blocking=True)
        with precision.autocast():
            out = model(inp)
        loss = criterion(out.float(), target, weight)  # the loss in fp32 whatever the autocast dtype
        precision.step(loss, optimizer)
        total += loss.detach().double() * inp.shape[0]
        count += inp.shape[0]
        it += 1
        bar.update(1)
        if it % print_freq == 0 and it < n_iters:
            show(check(it))
            checked = it
    mean = check(it)
    elapsed = show(mean)
    bar.close()
    return {"loss": mean, "images_per_s": count / elapsed, "data_wait": wait / elapsed, "iters": it}


def _dist_setup() -> tuple:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
        rank, local = dist.get_rank(), int(os.environ.get("LOCAL_RANK", "0"))
    else:
        rank, local = 0, 0
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    return world, rank, device


def train(cfg: Config, out_dir: Path, validate_each_epoch: bool = True, progress: bool = True,
          overwrite: bool = False) -> Dict[str, Any]:
    """Train as the config says; returns ``{"best_perf", "last_loss", "epochs", "out_dir"}``.

    Raises:
        UserError: output folder already holds a run (without ``TRAIN.RESUME`` or ``overwrite``),
        data or pretrained weights missing, heatmap size inconsistent with the network.
    """
    if list(cfg.MODEL.EXTRA.HEATMAP_SIZE) != expected_heatmap_size(cfg):
        raise UserError(f"config MODEL.EXTRA.HEATMAP_SIZE {cfg.MODEL.EXTRA.HEATMAP_SIZE} does not match what the network "
                        f"outputs for MODEL.IMAGE_SIZE {cfg.MODEL.IMAGE_SIZE}: use {expected_heatmap_size(cfg)}")
    world, rank, device = _dist_setup()
    apply_cudnn(cfg)
    main_proc = rank == 0
    try:
        out_dir = Path(out_dir)
        resume_from = find_resume(out_dir, cfg.TRAIN.CHECKPOINT) if cfg.TRAIN.RESUME else None
        # Checked on every rank, so that no rank is left waiting for one that stopped.
        if (out_dir / CHECKPOINT).exists() and not cfg.TRAIN.RESUME and not overwrite:
            raise UserError(f"{out_dir} already holds a training run; continue it with TRAIN.RESUME=true, "
                            f"or pick another folder (--out / OUTPUT_DIR), or pass --overwrite")
        if main_proc:
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / "config.yaml").write_text(cfg.dump())
        seed_everything(int(cfg.TRAIN.SEED) + rank)
        precision = Precision(device, cfg.TRAIN.AMP, cfg.TRAIN.CHANNELS_LAST)
        model = precision.prepare(get_pose_net(cfg, is_train=True).to(device))
        if main_proc and getattr(model, "pretrained_info", ""):  # not wrapped in DDP yet
            print(f"=> MODEL.PRETRAINED: {model.pretrained_info}", file=sys.stderr)
        elif main_proc and cfg.MODEL.INIT_WEIGHTS:
            print("=> MODEL.PRETRAINED is empty: the backbone starts from random weights "
                  "(an ImageNet ResNet gives the paper's accuracy; docs/WEIGHTS.md)", file=sys.stderr)
        train_set = build_dataset(cfg, is_train=True)
        valid_set = (build_dataset(cfg, is_train=False, use_gt_bbox=cfg.TEST.USE_GT_BBOX, det_file=cfg.TEST.COCO_BBOX_FILE)
                     if validate_each_epoch and main_proc else None)
        criterion = JointsMSELoss(cfg.LOSS.USE_TARGET_WEIGHT)
        optimizer = build_optimizer(cfg, model)
        begin, best_perf = int(cfg.TRAIN.BEGIN_EPOCH), -math.inf
        state = None
        if cfg.TRAIN.RESUME:
            if resume_from is None:
                raise UserError(f"TRAIN.RESUME is true but {out_dir / CHECKPOINT} does not exist (set TRAIN.CHECKPOINT=<file>)")
            state = load_training_state(resume_from)
            load_checkpoint(model, {"state_dict": state["state_dict"]}, name=str(resume_from))  # checked: a different network is refused
            optimizer.load_state_dict(state["optimizer"])
            if state.get("scaler") and precision.scaler.is_enabled():
                precision.scaler.load_state_dict(state["scaler"])
            begin, best_perf = int(state["epoch"]), float(state.get("best_perf", -math.inf))
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, cfg.TRAIN.LR_STEP, cfg.TRAIN.LR_FACTOR)
        if state is not None and state.get("scheduler"):
            scheduler.load_state_dict(state["scheduler"])
        if world > 1:
            model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        sampler = DistributedSampler(train_set, shuffle=cfg.TRAIN.SHUFFLE, seed=int(cfg.TRAIN.SEED)) if world > 1 else None
        g = torch.Generator()
        g.manual_seed(int(cfg.TRAIN.SEED) + rank)
        workers = resolve_workers(cfg.WORKERS, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
        loader = DataLoader(train_set, batch_size=cfg.TRAIN.BATCH_SIZE, shuffle=(sampler is None and cfg.TRAIN.SHUFFLE),
                            sampler=sampler, num_workers=workers, pin_memory=device.type == "cuda",
                            drop_last=False, worker_init_fn=_worker_init, generator=g,
                            # fresh workers each epoch, seeded from epoch_seed: resumable exactly
                            persistent_workers=False)
        if main_proc:
            print(f"=> {describe(plain_model(model))}, {len(train_set)} training boxes, {world} process(es) on {device} "
                  f"({precision.describe()}), {workers} loader worker(s) per process"
                  f"{' (WORKERS=-1: the cores available)' if cfg.WORKERS < 0 else ''}; writing {out_dir}", file=sys.stderr)
        log_path = out_dir / "log.csv"
        last_loss = float("nan")
        for epoch in range(begin, cfg.TRAIN.END_EPOCH):
            if sampler is not None:
                sampler.set_epoch(epoch)
            seed_everything(epoch_seed(cfg.TRAIN.SEED, rank, epoch))
            g.manual_seed(epoch_seed(cfg.TRAIN.SEED, rank, epoch))
            lr = optimizer.param_groups[0]["lr"]
            stats = train_one_epoch(model, loader, criterion, optimizer, device, epoch, cfg.TRAIN.MAX_ITERS,
                                    progress=progress and main_proc, precision=precision,
                                    print_freq=max(1, int(cfg.PRINT_FREQ)))
            scheduler.step()
            last_loss = stats["loss"]
            if world > 1:
                t = torch.tensor([last_loss], device=device)
                dist.all_reduce(t)
                last_loss = float(t.item()) / world
            if main_proc:
                perf, table = -last_loss, ""
                if valid_set is not None:
                    from host_tools.valid import validate

                    _, table, perf = validate(cfg, plain_model(model), valid_set, progress=False)
                is_best = perf > best_perf
                best_perf = max(best_perf, perf)
                save_checkpoint(out_dir, model, optimizer, scheduler, epoch + 1, perf, best_perf, is_best, cfg.to_dict(),
                                scaler=precision.scaler if precision.scaler.is_enabled() else None)
                new = not log_path.exists()
                with open(log_path, "a", newline="") as f:
                    w = csv.writer(f)
                    if new:
                        w.writerow(["epoch", "lr", "train_loss", "images_per_s", "data_wait", "val_perf", "best"])
                    w.writerow([epoch, f"{lr:.6g}", f"{last_loss:.6e}", f"{stats['images_per_s']:.2f}",
                                f"{stats['data_wait']:.3f}", f"{perf:.5f}" if valid_set is not None else "", int(is_best)])
                msg = (f"epoch {epoch}: loss {last_loss:.3e}, {stats['images_per_s']:.1f} img/s, "
                       f"{100 * stats['data_wait']:.0f}% waiting for data")
                if valid_set is not None:
                    msg += f", val {perf:.4f}" + (" (best)" if is_best else "")
                print(msg, file=sys.stderr)
        if main_proc:
            torch.save(plain_state_dict(model), str(out_dir / FINAL))
            if not (out_dir / BEST).exists():  # e.g. resumed past END_EPOCH
                torch.save(plain_state_dict(model), str(out_dir / BEST))
        return {"best_perf": best_perf, "last_loss": last_loss, "epochs": cfg.TRAIN.END_EPOCH - begin, "out_dir": str(out_dir)}
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def plain_model(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


def _main(args: argparse.Namespace) -> int:
    from host_tools.valid import run_dir

    overrides = list(args.opts)
    if args.workers is not None:
        overrides.append(f"WORKERS={args.workers}")
    cfg = load_config(args.cfg, overrides)
    out_dir = Path(args.out) if args.out else run_dir(cfg, args.cfg)
    res = train(cfg, out_dir, validate_each_epoch=not args.no_validate, overwrite=args.overwrite)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"=> done: best {res['best_perf']:.4f}, last loss {res['last_loss']:.3e}; {out_dir}/{BEST}")
    return 0


def register(subparsers: Any) -> None:
    from host_tools.valid import add_config_args

    p = subparsers.add_parser("train", help="train PoseResNet (CPU, one GPU, or torchrun for several)",
                              description="Train PoseResNet. Several GPUs: torchrun --nproc_per_node=N -m host_tools train ...")
    add_config_args(p)
    p.add_argument("--out", default=None, help="run folder (default OUTPUT_DIR/<dataset>/pose_resnet_<depth>/<cfg name>)")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers (WORKERS; -1, the default: the cores available)")
    p.add_argument("--no-validate", action="store_true", help="skip the per-epoch validation (best = lowest training loss)")
    p.add_argument("--overwrite", action="store_true", help="start over in a run folder that already has checkpoints")
    p.set_defaults(func=_main)
