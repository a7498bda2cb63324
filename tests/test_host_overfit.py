"""PoseResNet-18 (the real one: ResNet-18 backbone, 3 x 256-filter deconv head) overfits the
12 people of the COCO mini images on CPU: proof that model, data, targets, loss, optimizer,
decoding and evaluation fit together."""
import time
from pathlib import Path

import pytest
torch = pytest.importorskip("torch", reason="host tools test: needs torch (pip install '.[host]')")
from torch.utils.data import DataLoader

from host_tools.config import load_config
from host_tools.datasets import build_dataset
from host_tools.model import get_pose_net
from host_tools.train import JointsMSELoss, build_optimizer, seed_everything, train_one_epoch
from host_tools.valid import validate
from conftest import DATA, needs_data

pytestmark = needs_data



@pytest.mark.slow
def test_pose_resnet18_overfits_coco_mini():
    cfg = load_config(Path(__file__).resolve().parents[1] / "experiments/coco_mini/resnet18/128x96_d256x3_adam_lr1e-3.yaml", [
        f"DATASET.TRAIN_ANN={DATA / 'coco_mini/test_coco.json'}", f"DATASET.TRAIN_IMAGES={DATA / 'coco_mini'}",
        f"DATASET.TEST_ANN={DATA / 'coco_mini/test_coco.json'}", f"DATASET.TEST_IMAGES={DATA / 'coco_mini'}",
        "WORKERS=0", "TRAIN.SHUFFLE=false",
        # heatmaps are 32x24 here: DARK's sub-pixel step keeps small faces within COCO's OKS tolerance
        "TEST.REFINE=dark",
    ])
    assert cfg.MODEL.EXTRA.NUM_LAYERS == 18 and cfg.MODEL.EXTRA.NUM_DECONV_FILTERS == [256, 256, 256]
    assert not cfg.MODEL.PRETRAINED and cfg.DATASET.SCALE_FACTOR == 0 and not cfg.DATASET.FLIP
    seed_everything(0)
    model = get_pose_net(cfg, is_train=True)
    train_set = build_dataset(cfg, is_train=True)
    eval_set = build_dataset(cfg, is_train=False)
    assert len(train_set) == 12
    loader = DataLoader(train_set, batch_size=12, shuffle=False, num_workers=0)
    criterion = JointsMSELoss(True)
    optimizer = build_optimizer(cfg, model)
    first = train_one_epoch(model, loader, criterion, optimizer, torch.device("cpu"), 0, progress=False)["loss"]
    t0 = time.time()
    history = []
    for step in range(1, 171):
        loss = train_one_epoch(model, loader, criterion, optimizer, torch.device("cpu"), step, progress=False)["loss"]
        if step >= 100 and step % 10 == 0:
            stats, _, ap = validate(cfg, model, eval_set, flip_test=False, progress=False, workers=0)
            history.append((step, loss, ap))
            if first / loss >= 10 and ap >= 0.9:
                break
    step, loss, ap = history[-1]
    assert first / loss >= 10, f"loss fell only {first / loss:.1f}x in {step} steps: {history}"
    assert ap >= 0.9, f"train-set AP {ap:.3f} after {step} steps ({time.time() - t0:.0f} s): {history}"
    # the reference quarter-offset decoder is close behind on the same model
    cfg.TEST.REFINE = "quarter"
    _, _, ap_quarter = validate(cfg, model, eval_set, flip_test=False, progress=False, workers=0)
    assert ap_quarter >= 0.8, ap_quarter
