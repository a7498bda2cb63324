"""host_tools CLI from a subprocess, as a user runs it: train 1 epoch on the mini data, then valid."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DATA, needs_data

pytest.importorskip("torch", reason="host tools test: needs torch (pip install '.[host]')")

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["MODEL.EXTRA.NUM_LAYERS=18", "MODEL.IMAGE_SIZE=[64,96]", "MODEL.EXTRA.HEATMAP_SIZE=[16,24]",
         "TRAIN.BATCH_SIZE=6", "TEST.BATCH_SIZE=12", "MODEL.PRETRAINED=",
         f"DATASET.TRAIN_ANN={DATA / 'coco_mini/test_coco.json'}", f"DATASET.TRAIN_IMAGES={DATA / 'coco_mini'}",
         f"DATASET.TEST_ANN={DATA / 'coco_mini/test_coco.json'}", f"DATASET.TEST_IMAGES={DATA / 'coco_mini'}"]
EXP = str(ROOT / "experiments/coco/resnet50/256x192_d256x3_adam_lr1e-3.yaml")


def host_tools(*args, cwd=None):
    env = dict(os.environ, OMP_NUM_THREADS="2", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "host_tools", *args], capture_output=True, text=True,
                          cwd=cwd or ROOT, env=env, timeout=300)


@needs_data
def test_train_one_epoch_then_resume_then_valid(tmp_path):
    run = tmp_path / "run"
    r = host_tools("train", "--cfg", EXP, "--out", str(run), "--workers", "1", "TRAIN.END_EPOCH=1", *SMALL)
    assert r.returncode == 0, r.stderr[-2000:]
    for name in ("checkpoint.pth.tar", "model_best.pth.tar", "final_state.pth.tar", "config.yaml", "log.csv"):
        assert (run / name).is_file(), name
    rows = list(csv.DictReader(open(run / "log.csv")))
    assert [row["epoch"] for row in rows] == ["0"] and float(rows[0]["train_loss"]) > 0
    assert "epoch 0" in r.stderr and "img/s" in r.stderr  # progress bar with throughput

    # the same folder again is refused, nothing overwritten
    before = (run / "checkpoint.pth.tar").stat().st_mtime_ns
    r = host_tools("train", "--cfg", EXP, "--out", str(run), "TRAIN.END_EPOCH=1", *SMALL)
    assert r.returncode == 2 and "TRAIN.RESUME=true" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert (run / "checkpoint.pth.tar").stat().st_mtime_ns == before

    # resume continues at epoch 1
    r = host_tools("train", "--cfg", EXP, "--out", str(run), "--workers", "0", "--no-validate",
                   "TRAIN.END_EPOCH=2", "TRAIN.RESUME=true", *SMALL)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = list(csv.DictReader(open(run / "log.csv")))
    assert [row["epoch"] for row in rows] == ["0", "1"]

    # valid with the run's own config dump, flip test, overlays
    out = tmp_path / "val"
    r = host_tools("valid", "--cfg", str(run / "config.yaml"), "--model-file", str(run / "model_best.pth.tar"),
                   "--out", str(out), "--flip-test", "--vis", "1")
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["flip_test"] is True and set(summary["metrics"]) >= {"AP", "AP50", "AP75", "APm", "APl", "AR"}
    assert "| AP |" in r.stdout
    res = json.loads((out / "keypoints_results.json").read_text())
    assert len(res) == 12 and len(res[0]["keypoints"]) == 51
    assert len(list((out / "overlays").glob("*.png"))) == 2

    # the same weights in the original project's DataParallel layout (`module.`, no num_batches_tracked)
    import torch

    state = torch.load(run / "model_best.pth.tar", map_location="cpu", weights_only=True)
    assert not any(k.startswith("module.") for k in state)
    torch.save({"module." + k: v for k, v in state.items() if not k.endswith("num_batches_tracked")},
               tmp_path / "pose_resnet_18_official_layout.pth.tar")
    r = host_tools("valid", "--cfg", str(run / "config.yaml"), "--model-file", str(tmp_path / "pose_resnet_18_official_layout.pth.tar"),
                   "--out", str(tmp_path / "val_module"), "--flip-test")
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((tmp_path / "val_module" / "summary.json").read_text())["metrics"] == summary["metrics"]
    assert (tmp_path / "val_module" / "keypoints_results.json").read_text() == (out / "keypoints_results.json").read_text()

    # without --cfg, the run folder's config.yaml is used and results land in the run folder
    r = host_tools("valid", "--model-file", str(run / "model_best.pth.tar"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((run / "summary.json").read_text())["metrics"]["AP"] >= 0

    # detector boxes
    r = host_tools("valid", "--cfg", str(run / "config.yaml"), "--model-file", str(run / "model_best.pth.tar"),
                   "--out", str(tmp_path / "val_det"),
                   "--det-file", str(DATA / "coco_mini/test_coco_det_AP_H_56.json"), "TEST.IMAGE_THRE=0.5")
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((tmp_path / "val_det" / "summary.json").read_text())["boxes"] < 118


@pytest.mark.parametrize("args,needle", [
    (["train", "TRAIN.NOPE=1"], "unknown config key TRAIN.NOPE"),
    (["train", "--cfg", "/nope.yaml"], "config file /nope.yaml not found"),
    (["valid", "--model-file", "/nope.pth"], "model file /nope.pth not found"),
    (["train", "MODEL.PRETRAINED=/nope/resnet50.pth", "DATASET.TRAIN_ANN=/nope.json"], "not found"),
    (["train", "MODEL.IMAGE_SIZE=[96,128]"], "HEATMAP_SIZE"),
])
def test_user_errors_are_one_line_exit_2(args, needle, tmp_path):
    r = host_tools(*args, "OUTPUT_DIR=" + str(tmp_path), cwd=tmp_path)
    assert r.returncode == 2, r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in r.stderr


def test_help_lists_commands():
    r = host_tools("--help")
    assert r.returncode == 0 and "train" in r.stdout and "valid" in r.stdout


@needs_data
def test_torchrun_two_cpu_processes(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun not installed next to this python")
    run = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    r = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "host_tools", "train",
                        "--out", str(run), "--workers", "0", "--no-validate", "TRAIN.END_EPOCH=1", *SMALL],
                       capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "2 process(es)" in r.stderr
    rows = list(csv.DictReader(open(run / "log.csv")))
    assert len(rows) == 1  # written once, by rank 0
    import torch

    state = torch.load(run / "model_best.pth.tar", map_location="cpu", weights_only=True)
    assert not any(k.startswith("module.") for k in state)
