"""host_tools.train at the device's speed: mixed precision (bf16 autocast on this CPU, fp16 with
a grad scaler), channels_last, no per-iteration host synchronisation, loader workers from the
cores available, and the data-wait share in log.csv."""
import csv
import os
from collections import OrderedDict
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="host tools test: needs torch (pip install '.[host]')")
from torch.utils.data import DataLoader, TensorDataset

from host_tools.config import load_config, resolve_workers
from host_tools.errors import UserError
from host_tools.model import get_pose_net
from host_tools.train import JointsMSELoss, Precision, build_optimizer, train, train_one_epoch
from tests._foreign_weights import fill, torchvision_resnet_shapes
from conftest import DATA, needs_data

MINI = [f"DATASET.TRAIN_ANN={DATA / 'coco_mini/test_coco.json'}", f"DATASET.TRAIN_IMAGES={DATA / 'coco_mini'}",
        "MODEL.EXTRA.NUM_LAYERS=18", "MODEL.IMAGE_SIZE=[64,96]", "MODEL.EXTRA.HEATMAP_SIZE=[16,24]", "WORKERS=0",
        "MODEL.EXTRA.NUM_DECONV_FILTERS=[32,32,32]"]
CPU = torch.device("cpu")


def synthetic_loader(n=6, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    inp = torch.randn(n, 3, 96, 64, generator=g)
    target = torch.rand(n, 17, 24, 16, generator=g) * 0.1
    weight = torch.ones(n, 17, 1)
    return DataLoader(TensorDataset(inp, target, weight, torch.arange(n)), batch_size=batch, shuffle=False)


def small_model(seed=0):
    torch.manual_seed(seed)
    return get_pose_net(load_config(None, MINI), is_train=True)


def one_epoch(precision, iters=3, seed=0, optimizer=(), **kw):
    model = precision.prepare(small_model(seed))
    opt = build_optimizer(load_config(None, MINI + list(optimizer)), model)
    stats = train_one_epoch(model, synthetic_loader(), JointsMSELoss(True), opt, CPU, 0, max_iters=iters,
                            progress=False, precision=precision, **kw)
    return model, stats


def weights(model):
    return OrderedDict((k, v.detach().clone().contiguous()) for k, v in model.state_dict().items())


@needs_data
def test_channels_last_trains_the_same_network():
    # SGD: Adam's first steps move every weight by ~lr whatever the gradient's size, so rounding
    # differences of near-zero gradients would show as lr-sized differences
    sgd = ["TRAIN.OPTIMIZER=sgd", "TRAIN.LR=0.01"]
    m_ref, s_ref = one_epoch(Precision(CPU), optimizer=sgd)
    m_cl, s_cl = one_epoch(Precision(CPU, channels_last=True), optimizer=sgd)
    assert next(m_cl.parameters()).is_contiguous(memory_format=torch.channels_last)
    assert s_cl["loss"] == pytest.approx(s_ref["loss"], rel=1e-4)
    for (k, a), b in zip(weights(m_ref).items(), weights(m_cl).values()):
        if a.is_floating_point():
            torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-5, msg=k)


@needs_data
def test_bf16_autocast_runs_the_network_in_bf16_and_learns_like_fp32():
    prec = Precision(CPU, "bf16", channels_last=True)
    assert prec.describe() == "bf16 autocast, channels_last"
    model = prec.prepare(small_model())
    seen = []
    h = model.layer1.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    with prec.autocast():
        model(torch.randn(1, 3, 96, 64))
    h.remove()
    assert seen == [torch.bfloat16]
    # same start, three steps: the loss follows fp32's within bf16's precision, and weights moved
    m0 = weights(small_model())
    m_bf, s_bf = one_epoch(prec)
    _, s_fp = one_epoch(Precision(CPU))
    assert s_bf["loss"] == pytest.approx(s_fp["loss"], rel=0.05)
    moved = [k for k, v in weights(m_bf).items() if v.is_floating_point() and not torch.equal(v, m0[k])]
    assert len(moved) > 50
    assert all(torch.isfinite(v).all() for v in weights(m_bf).values() if v.is_floating_point())


@needs_data
def test_fp16_uses_a_grad_scaler_that_survives_a_resume(tmp_path):
    prec = Precision(CPU, "fp16")
    assert prec.scaler.is_enabled() and not Precision(CPU, "bf16").scaler.is_enabled()
    cfg = load_config(None, MINI + ["TRAIN.AMP=fp16", "TRAIN.END_EPOCH=1", "TRAIN.MAX_ITERS=1", "TRAIN.BATCH_SIZE=4"])
    train(cfg, tmp_path / "run", validate_each_epoch=False, progress=False)
    ck = torch.load(tmp_path / "run" / "checkpoint.pth.tar", map_location="cpu", weights_only=True)
    assert ck["scaler"]["scale"] > 0
    # weights on disk are in the usual layout whatever the training layout was
    assert all(v.is_contiguous() for v in ck["state_dict"].values())
    cfg2 = load_config(None, MINI + ["TRAIN.AMP=fp16", "TRAIN.END_EPOCH=2", "TRAIN.MAX_ITERS=1", "TRAIN.BATCH_SIZE=4",
                                     "TRAIN.RESUME=true"])
    train(cfg2, tmp_path / "run", validate_each_epoch=False, progress=False)
    assert torch.load(tmp_path / "run" / "checkpoint.pth.tar", map_location="cpu", weights_only=True)["epoch"] == 2


@needs_data
def test_loss_is_read_back_only_at_print_points(monkeypatch):
    """No host synchronisation per iteration: the running loss (a float64 sum on the device)
    is read once per ``print_freq`` iterations and once at the end."""
    reads = []
    real_item = torch.Tensor.item

    def counting_item(self):
        if self.dtype == torch.float64 and self.dim() == 0:
            reads.append(1)
        return real_item(self)

    monkeypatch.setattr(torch.Tensor, "item", counting_item)
    _, stats = one_epoch(Precision(CPU), iters=3, print_freq=2)
    assert stats["iters"] == 3 and len(reads) == 2  # after iteration 2, and at the end
    reads.clear()
    one_epoch(Precision(CPU), iters=3, print_freq=100)
    assert len(reads) == 1


@needs_data
def test_non_finite_loss_stops_at_the_next_print_point_in_one_line():
    class NanAfterFirst(torch.nn.Module):
        calls = 0

        def forward(self, out, target, weight):
            self.calls += 1
            loss = JointsMSELoss(True)(out, target, weight)
            return loss * float("nan") if self.calls == 2 else loss

    model = small_model()
    opt = build_optimizer(load_config(None, MINI), model)
    with pytest.raises(RuntimeError, match=r"loss became nan at epoch 0 between iterations 0 and 3: lower TRAIN\.LR"):
        train_one_epoch(model, synthetic_loader(), NanAfterFirst(), opt, CPU, 0, progress=False, print_freq=3)


@needs_data
def test_log_csv_has_the_data_wait_share_and_train_says_how_it_runs(tmp_path, capsys):
    cfg = load_config(None, MINI + ["TRAIN.AMP=bf16", "TRAIN.END_EPOCH=1", "TRAIN.MAX_ITERS=2", "TRAIN.BATCH_SIZE=4"])
    train(cfg, tmp_path / "run", validate_each_epoch=False, progress=False)
    rows = list(csv.DictReader(open(tmp_path / "run" / "log.csv")))
    assert 0.0 <= float(rows[0]["data_wait"]) <= 1.0 and float(rows[0]["images_per_s"]) > 0
    err = capsys.readouterr().err
    assert "(bf16 autocast, channels_last), 0 loader worker(s) per process" in err
    assert "waiting for data" in err
    assert "MODEL.PRETRAINED is empty" in err


def test_workers_default_to_the_cores_available(monkeypatch):
    assert load_config(None).WORKERS == -1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert resolve_workers(-1) == 15
    assert resolve_workers(-1, procs_per_node=4) == 3  # torchrun: the cores shared by the node's processes
    assert resolve_workers(3) == 3 and resolve_workers(0) == 0
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert resolve_workers(-1) == 1


@pytest.mark.parametrize("override, message", [
    ("TRAIN.AMP=fp8", r"config TRAIN\.AMP: expected 'bf16', 'fp16' or '' \(fp32\), got 'fp8'"),
    ("WORKERS=-3", r"config WORKERS: expected a count of DataLoader workers, or -1"),
])
def test_bad_speed_settings_are_one_line(override, message):
    with pytest.raises(UserError, match=message):
        load_config(None, [override])


@needs_data
def test_pretrained_backbone_is_announced(tmp_path, capsys):
    torch.save(fill(torchvision_resnet_shapes(18)), tmp_path / "resnet18-f37072fd.pth")
    cfg = load_config(None, MINI + [f"MODEL.PRETRAINED={tmp_path / 'resnet18-f37072fd.pth'}", "TRAIN.END_EPOCH=1",
                                    "TRAIN.MAX_ITERS=1", "TRAIN.BATCH_SIZE=4"])
    train(cfg, tmp_path / "run", validate_each_epoch=False, progress=False)
    err = capsys.readouterr().err
    assert "=> MODEL.PRETRAINED: ResNet-18 (BasicBlock, blocks 2-2-2-2) backbone from" in err and "tensors loaded" in err


@needs_data
def test_cudnn_settings_of_the_config_are_applied(tmp_path):
    flags = torch.backends.cudnn
    before = (flags.benchmark, flags.deterministic, flags.enabled)
    try:
        cfg = load_config(None, MINI + ["CUDNN.BENCHMARK=false", "CUDNN.DETERMINISTIC=true", "TRAIN.END_EPOCH=1",
                                        "TRAIN.MAX_ITERS=1", "TRAIN.BATCH_SIZE=4"])
        train(cfg, tmp_path / "a", validate_each_epoch=False, progress=False)
        assert (flags.benchmark, flags.deterministic, flags.enabled) == (False, True, True)
        cfg = load_config(None, MINI + ["TRAIN.END_EPOCH=1", "TRAIN.MAX_ITERS=1", "TRAIN.BATCH_SIZE=4"])
        train(cfg, tmp_path / "b", validate_each_epoch=False, progress=False)
        assert (flags.benchmark, flags.deterministic) == (True, False)  # the original's defaults
    finally:
        flags.benchmark, flags.deterministic, flags.enabled = before
