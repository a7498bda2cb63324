"""A training run killed with SIGKILL mid-epoch resumes from its last checkpoint and ends
exactly where an uninterrupted run of the same seed ends (same losses, same weights)."""
import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DATA, needs_data

pytestmark = needs_data

torch = pytest.importorskip("torch", reason="host tools test: needs torch (pip install '.[host]')")

ROOT = Path(__file__).resolve().parents[1]
EXP = str(ROOT / "experiments/coco/resnet50/256x192_d256x3_adam_lr1e-3.yaml")
TINY = ["MODEL.EXTRA.NUM_LAYERS=18", "MODEL.IMAGE_SIZE=[32,64]", "MODEL.EXTRA.HEATMAP_SIZE=[8,16]",
        "TRAIN.BATCH_SIZE=4", "TRAIN.MAX_ITERS=3", "TRAIN.END_EPOCH=2", "TRAIN.SEED=7", "MODEL.PRETRAINED=",
        f"DATASET.TRAIN_ANN={DATA / 'coco_mini/test_coco.json'}", f"DATASET.TRAIN_IMAGES={DATA / 'coco_mini'}",
        f"DATASET.TEST_ANN={DATA / 'coco_mini/test_coco.json'}", f"DATASET.TEST_IMAGES={DATA / 'coco_mini'}"]


def _cmd(run: Path, *extra: str):
    return [sys.executable, "-m", "host_tools", "train", "--cfg", EXP, "--out", str(run), "--workers", "1",
            "--no-validate", *TINY, *extra]


ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))


def _losses(run: Path):
    return [(r["epoch"], r["train_loss"]) for r in csv.DictReader(open(run / "log.csv"))]


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(tmp_path):
    whole = tmp_path / "whole"
    r = subprocess.run(_cmd(whole), capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]

    cut = tmp_path / "cut"
    p = subprocess.Popen(_cmd(cut), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=ENV, cwd=ROOT)
    seen = b""
    while True:  # tqdm's bar: kill once epoch 1 has done one of its three iterations
        chunk = p.stderr.read1(4096)
        if not chunk:
            break
        seen += chunk
        if b"epoch 1:" in seen and b"| 1/3 [" in seen.split(b"epoch 1:", 1)[1]:
            p.send_signal(signal.SIGKILL)
            break
    p.wait(timeout=60)
    assert p.returncode == -signal.SIGKILL, seen.decode(errors="replace")[-2000:]
    state = torch.load(cut / "checkpoint.pth.tar", map_location="cpu", weights_only=False)
    assert state["epoch"] == 1 and not (cut / "final_state.pth.tar").exists()

    r = subprocess.run(_cmd(cut, "TRAIN.RESUME=true"), capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    assert _losses(cut) == _losses(whole) and len(_losses(whole)) == 2
    a = torch.load(whole / "final_state.pth.tar", map_location="cpu")
    b = torch.load(cut / "final_state.pth.tar", map_location="cpu")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
