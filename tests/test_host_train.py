"""host_tools.train pieces: the reference loss, optimizers, LR schedule, checkpoints."""
import csv
from pathlib import Path

import pytest
torch = pytest.importorskip("torch", reason="host tools test: needs torch (pip install '.[host]')")

from host_tools.config import load_config
from host_tools.model import get_pose_net
from host_tools.train import JointsMSELoss, build_optimizer, train
from conftest import DATA, needs_data

MINI = [f"DATASET.TRAIN_ANN={DATA / 'coco_mini/test_coco.json'}", f"DATASET.TRAIN_IMAGES={DATA / 'coco_mini'}",
        f"DATASET.TEST_ANN={DATA / 'coco_mini/test_coco.json'}", f"DATASET.TEST_IMAGES={DATA / 'coco_mini'}",
        "MODEL.EXTRA.NUM_LAYERS=18", "MODEL.IMAGE_SIZE=[64,96]", "MODEL.EXTRA.HEATMAP_SIZE=[16,24]", "WORKERS=0"]


def test_joints_mse_loss_is_the_reference_formula():
    g = torch.Generator().manual_seed(0)
    out, tgt = torch.rand(3, 5, 8, 6, generator=g), torch.rand(3, 5, 8, 6, generator=g)
    w = (torch.rand(3, 5, 1, generator=g) > 0.4).float()
    # reference: per joint 0.5 * MSE(pred * w, gt * w) over batch and pixels, averaged over joints
    ref = sum(0.5 * torch.nn.functional.mse_loss(out[:, j].reshape(3, -1) * w[:, j], tgt[:, j].reshape(3, -1) * w[:, j])
              for j in range(5)) / 5
    assert JointsMSELoss(True)(out, tgt, w).item() == pytest.approx(ref.item(), rel=1e-6)
    assert JointsMSELoss(False)(out, tgt, w).item() == pytest.approx(0.5 * torch.mean((out - tgt) ** 2).item(), rel=1e-6)
    # a joint with weight 0 does not matter
    out2 = out.clone()
    out2[w[:, :, 0] == 0] = 123.0
    assert JointsMSELoss(True)(out2, tgt, w).item() == pytest.approx(ref.item(), rel=1e-6)


def test_optimizers_follow_the_config():
    m = get_pose_net(load_config(None, ["MODEL.EXTRA.NUM_LAYERS=18"]))
    adam = build_optimizer(load_config(None, ["TRAIN.LR=0.002"]), m)
    assert isinstance(adam, torch.optim.Adam) and adam.param_groups[0]["lr"] == 0.002
    sgd = build_optimizer(load_config(None, ["TRAIN.OPTIMIZER=sgd", "TRAIN.LR=0.1", "TRAIN.MOMENTUM=0.8",
                                             "TRAIN.WD=0.0005", "TRAIN.NESTEROV=true"]), m)
    g = sgd.param_groups[0]
    assert isinstance(sgd, torch.optim.SGD)
    assert (g["lr"], g["momentum"], g["weight_decay"], g["nesterov"]) == (0.1, 0.8, 0.0005, True)


@needs_data
def test_multistep_lr_and_checkpoints(tmp_path):
    cfg = load_config(None, MINI + ["TRAIN.END_EPOCH=3", "TRAIN.LR_STEP=[1,2]", "TRAIN.LR_FACTOR=0.1",
                                    "TRAIN.MAX_ITERS=1", "TRAIN.BATCH_SIZE=4"])
    res = train(cfg, tmp_path / "run", validate_each_epoch=False, progress=False)
    rows = list(csv.DictReader(open(tmp_path / "run" / "log.csv")))
    assert [float(r["lr"]) for r in rows] == pytest.approx([1e-3, 1e-4, 1e-5])
    ck = torch.load(tmp_path / "run" / "checkpoint.pth.tar", map_location="cpu", weights_only=True)
    assert ck["epoch"] == 3 and ck["model"] == "pose_resnet_18" and ck["config"]["TRAIN"]["END_EPOCH"] == 3
    assert not any(k.startswith("module.") for k in ck["state_dict"])
    best = torch.load(tmp_path / "run" / "model_best.pth.tar", map_location="cpu", weights_only=True)
    assert set(best) == set(ck["state_dict"])
    assert res["epochs"] == 3 and res["last_loss"] > 0
