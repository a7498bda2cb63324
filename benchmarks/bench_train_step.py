"""Training speed: the pure model step against the real ``host_tools train`` loop, and mixed
precision against fp32, all measured in this process.

    .venv/bin/python -m pytest -q benchmarks -k train_step        (table at the end)
    .venv/bin/python benchmarks/bench_train_step.py [--size full|small] [--modes fp32,bf16,...]

* **pure step**: synthetic tensors already on the device, forward + loss + backward + Adam
  step, exactly the loop's step (same :class:`host_tools.train.Precision`), no data loading.
* **loop**: :func:`host_tools.train.train_one_epoch` over the COCO mini set replicated to
  ``iters`` batches, with the full training augmentation (scale 0.3, rotation 40 deg, flip,
  half body 0.3): JPEG decode, affine crop and Gaussian targets in DataLoader workers
  (``WORKERS=-1``: the cores available), pinned memory, asynchronous copies.

The ratio loop / pure step says how much of the device's speed the loop keeps (aim >= 90 % on a
GPU); ``data wait`` is the loop's share of time spent waiting for the loader. Rows per precision
mode: ``fp32`` (NCHW, the paper's setting), ``fp32+cl`` (channels_last), ``bf16``, ``fp16``
(CUDA only), the last two with channels_last. ``speed-up`` is the pure step's images/s over
fp32's.

Size ``full`` (the default on CUDA) is the issue's case, PoseResNet-50 at 256x192, batch 64;
``small`` (the default on CPU, where full costs minutes a step) is PoseResNet-18 at 128x96,
batch 8.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

torch = pytest.importorskip("torch", reason="training benchmark: needs torch (pip install '.[host]')")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from torch.utils.data import ConcatDataset, DataLoader  # noqa: E402

from host_tools.config import load_config, resolve_workers  # noqa: E402
from host_tools.datasets import build_dataset  # noqa: E402
from host_tools.model import get_pose_net  # noqa: E402
from host_tools.train import JointsMSELoss, Precision, apply_cudnn, build_optimizer, train_one_epoch  # noqa: E402

from _data import DATA  # noqa: E402  (third-party sample data, read in place)
COCO_MINI = DATA / "coco_mini"
SIZES = {
    "full": dict(depth=50, image=[192, 256], heatmap=[48, 64], batch=64, iters=30),
    "small": dict(depth=18, image=[96, 128], heatmap=[24, 32], batch=8, iters=12),
}
MODES = {  # name -> (TRAIN.AMP, channels_last)
    "fp32": ("", False),
    "fp32+cl": ("", True),
    "bf16": ("bf16", True),
    "fp16": ("fp16", True),
}

# mode -> figures
RESULTS: Dict[str, Dict[str, float]] = {}
HEADER: List[str] = []


def device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def size_name() -> str:
    return os.environ.get("EDGEPOSE_BENCH_TRAIN_SIZE", "full" if device().type == "cuda" else "small")


def make_cfg(size: Dict, amp: str, channels_last: bool):
    return load_config(None, [
        f"DATASET.TRAIN_ANN={COCO_MINI / 'test_coco.json'}", f"DATASET.TRAIN_IMAGES={COCO_MINI}",
        f"MODEL.EXTRA.NUM_LAYERS={size['depth']}", f"MODEL.IMAGE_SIZE={size['image']}",
        f"MODEL.EXTRA.HEATMAP_SIZE={size['heatmap']}", f"TRAIN.BATCH_SIZE={size['batch']}",
        "DATASET.SCALE_FACTOR=0.3", "DATASET.ROT_FACTOR=40", "DATASET.FLIP=true", "DATASET.PROB_HALF_BODY=0.3",
        f"TRAIN.AMP={amp}", f"TRAIN.CHANNELS_LAST={str(channels_last).lower()}", "WORKERS=-1",
    ])


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def pure_step(size: Dict, amp: str, channels_last: bool, steps: int) -> float:
    """Images per second of the bare training step on device-resident synthetic tensors."""
    dev = device()
    cfg = make_cfg(size, amp, channels_last)
    prec = Precision(dev, amp, channels_last)
    model = prec.prepare(get_pose_net(cfg, is_train=True).to(dev))
    opt = build_optimizer(cfg, model)
    crit = JointsMSELoss(True)
    b, (w, h), (hw, hh) = size["batch"], size["image"], size["heatmap"]
    g = torch.Generator().manual_seed(0)
    inp = prec.inputs(torch.randn(b, 3, h, w, generator=g))
    target = torch.rand(b, cfg.MODEL.NUM_JOINTS, hh, hw, generator=g).to(dev)
    weight = torch.ones(b, cfg.MODEL.NUM_JOINTS, 1).to(dev)
    model.train()

    def step() -> None:
        with prec.autocast():
            out = model(inp)
        prec.step(crit(out.float(), target, weight), opt)

    for _ in range(3):  # warm-up: cudnn autotuning, allocator, oneDNN primitives
        step()
    sync(dev)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(dev)
    return b * steps / (time.perf_counter() - t0)


def loop(size: Dict, amp: str, channels_last: bool, iters: int) -> Tuple[float, float]:
    """(images per second, data-wait share) of ``train_one_epoch`` over the replicated set."""
    dev = device()
    cfg = make_cfg(size, amp, channels_last)
    apply_cudnn(cfg)  # as host_tools train does: cudnn.benchmark from the config (true)
    prec = Precision(dev, amp, channels_last)
    model = prec.prepare(get_pose_net(cfg, is_train=True).to(dev))
    opt = build_optimizer(cfg, model)
    base = build_dataset(cfg, is_train=True)
    copies = -(-(iters + 2) * size["batch"] // len(base))
    data = ConcatDataset([base] * copies)
    workers = resolve_workers(cfg.WORKERS)
    loader = DataLoader(data, batch_size=size["batch"], shuffle=True, num_workers=workers,
                        pin_memory=dev.type == "cuda", drop_last=True,
                        persistent_workers=False, prefetch_factor=4 if workers else None)
    crit = JointsMSELoss(True)
    train_one_epoch(model, loader, crit, opt, dev, 0, max_iters=2, progress=False, precision=prec)  # warm-up
    sync(dev)
    stats = train_one_epoch(model, loader, crit, opt, dev, 1, max_iters=iters, progress=False, precision=prec,
                            print_freq=10 ** 9)
    HEADER[:] = [f"device {dev}{' (' + torch.cuda.get_device_name() + ')' if dev.type == 'cuda' else ''}, "
                 f"PoseResNet-{size['depth']} {size['image'][1]}x{size['image'][0]}, batch {size['batch']}, "
                 f"{workers} loader workers, torch {torch.__version__}"]
    return stats["images_per_s"], stats["data_wait"]


def run_mode(name: str, size: Dict) -> Dict[str, float]:
    amp, cl = MODES[name]
    pure = pure_step(size, amp, cl, steps=max(3, size["iters"] // 2))
    ips, wait = loop(size, amp, cl, size["iters"])
    RESULTS[name] = {"pure": pure, "loop": ips, "wait": wait}
    return RESULTS[name]


def table() -> List[str]:
    lines = list(HEADER) + [f"    {'mode':<9} {'pure img/s':>11} {'loop img/s':>11} {'loop/pure':>10} {'data wait':>10} "
                            f"{'speed-up':>9}"]
    base = RESULTS.get("fp32", {}).get("pure")
    for name, r in RESULTS.items():
        up = f"{r['pure'] / base:8.2f}x" if base else "        -"
        lines.append(f"    {name:<9} {r['pure']:11.1f} {r['loop']:11.1f} {100 * r['loop'] / r['pure']:9.0f}% "
                     f"{100 * r['wait']:9.0f}% {up}")
    return lines


def modes_here() -> List[str]:
    return [m for m in MODES if m != "fp16" or device().type == "cuda"]


@pytest.mark.parametrize("mode", list(MODES))
def test_train_step(benchmark, report_table, mode):
    if mode not in modes_here():
        pytest.skip("fp16 autocast is measured on CUDA only")
    size = SIZES[size_name()]
    r = benchmark.pedantic(run_mode, args=(mode, size), rounds=1, iterations=1)
    assert r["pure"] > 0 and r["loop"] > 0 and 0 <= r["wait"] <= 1
    report_table("host_tools train: pure step vs real loop, by precision (same process)", table)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", choices=sorted(SIZES), default=size_name())
    ap.add_argument("--modes", default=",".join(modes_here()), help="comma-separated: " + ", ".join(MODES))
    ap.add_argument("--iters", type=int, default=None, help="loop iterations to time (default by size)")
    a = ap.parse_args()
    size = dict(SIZES[a.size])
    if a.iters:
        size["iters"] = a.iters
    for m in a.modes.split(","):
        run_mode(m.strip(), size)
        print(f"{m}: {RESULTS[m.strip()]}", file=sys.stderr, flush=True)
    print("\n".join(table()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
