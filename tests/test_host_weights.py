"""Weights from every source (host_tools.weights): synthetic files with the real key names and
shapes of torchvision, timm, mmpose 1.x / 0.x and the original project (tests/_foreign_weights.py
writes them from those projects' model definitions), round trips, inspect-weights, and the CLI
(export-onnx, valid) on an mmpose checkpoint as a new user runs it."""
import argparse
import json
import os
import subprocess
import sys
import types
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="host tools test: needs torch (pip install '.[host]')")

from host_tools.config import load_config
from host_tools.errors import UserError
from host_tools.model import get_pose_net, load_checkpoint
from host_tools.weights import apply_conventions, expected_shapes, prepare, read_weights
from tests._foreign_weights import (fill, heatmap_head_shapes, mmpose0_config, mmpose1_config, torchvision_resnet_shapes,
                                    write_safetensors)
from conftest import DATA, OWN_DATA, needs_data

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["MODEL.EXTRA.NUM_LAYERS=18", "MODEL.IMAGE_SIZE=[64,96]", "MODEL.EXTRA.HEATMAP_SIZE=[16,24]",
         "TEST.BATCH_SIZE=12", "MODEL.PRETRAINED=", "WORKERS=0",
         f"DATASET.TEST_ANN={DATA / 'coco_mini/test_coco.json'}", f"DATASET.TEST_IMAGES={DATA / 'coco_mini'}"]


def small_cfg(*extra):
    return load_config(None, SMALL + list(extra))


def mmpose1_state(depth=18, tracked=True, seed=0, head_prefix="head."):
    back = torchvision_resnet_shapes(depth, tracked, fc=False)
    width = 512 * (4 if depth >= 50 else 1)
    shapes = OrderedDict([("backbone." + k, v) for k, v in back.items()] +
                         [(head_prefix + k, v) for k, v in heatmap_head_shapes(width, 17, tracked=tracked).items()])
    return fill(shapes, seed)


def fake_history_buffer():
    """An object of a class that is not installed at load time (as mmengine's HistoryBuffer in
    a checkpoint's message_hub)."""
    mod = types.ModuleType("mmengine_not_installed")

    class HistoryBuffer:
        def __init__(self):
            self._log_history = np.arange(3.0)

    HistoryBuffer.__module__ = mod.__name__
    HistoryBuffer.__qualname__ = "HistoryBuffer"
    mod.HistoryBuffer = HistoryBuffer
    sys.modules[mod.__name__] = mod
    return HistoryBuffer()


def save_mmpose1(path, depth=18, codec="MSRAHeatmap", bgr_to_rgb=True, meta=True, state=None):
    state = state if state is not None else mmpose1_state(depth)
    ckpt = {"state_dict": state}
    if meta:
        ckpt["meta"] = {"cfg": mmpose1_config(depth, 512 * (4 if depth >= 50 else 1), codec, bgr_to_rgb),
                        "seed": 0, "experiment_name": "td-hm_res18", "epoch": 210, "iter": 1,
                        "dataset_meta": {"dataset_name": "coco", "num_keypoints": 17,
                                         "sigmas": np.full(17, 0.05, np.float32), "flip_indices": [0, 2, 1]}}
        ckpt["message_hub"] = {"log_scalars": {"train/loss": fake_history_buffer()}}
    torch.save(ckpt, str(path))
    sys.modules.pop("mmengine_not_installed", None)  # as on a machine without mmengine
    return path


# ------------------------------------------------------------------------------ key layouts


def test_definitions_give_the_known_key_counts():
    # torchvision's resnet18 / resnet50 state_dicts hold 122 / 320 entries; the old resnet50
    # file (no num_batches_tracked, 53 BatchNorms) 267; the original PoseResNet-50 file 338.
    assert len(torchvision_resnet_shapes(18)) == 122
    assert len(torchvision_resnet_shapes(50)) == 320
    assert len(torchvision_resnet_shapes(50, tracked=False)) == 267
    official = (OWN_DATA / "pose_resnet_50_official_keys.txt").read_text().split()
    assert ["module." + k for k in expected_shapes(load_config())] == official


@needs_data
@pytest.mark.parametrize("extra", [
    [],
    ["MODEL.EXTRA.NUM_LAYERS=50"],
    ["MODEL.EXTRA.NUM_LAYERS=34", "MODEL.EXTRA.NUM_DECONV_LAYERS=2", "MODEL.EXTRA.NUM_DECONV_FILTERS=[64,32]",
     "MODEL.EXTRA.NUM_DECONV_KERNELS=[3,2]", "MODEL.EXTRA.DECONV_WITH_BIAS=true", "MODEL.EXTRA.FINAL_CONV_KERNEL=3",
     "MODEL.NUM_JOINTS=16", "MODEL.EXTRA.HEATMAP_SIZE=[8,12]"],
])
def test_expected_shapes_are_the_model_state_dict(extra):
    cfg = small_cfg(*extra)
    model = {k: tuple(v.shape) for k, v in get_pose_net(cfg).state_dict().items()}
    shapes = expected_shapes(cfg)
    assert list(shapes) == list(model) and dict(shapes) == model


def test_mmpose_and_torchvision_keys_are_pose_resnet_keys():
    # the mapping in words: mmpose = backbone.<torchvision> + head.<original head>
    assert [k[len("backbone."):] for k in mmpose1_state(50) if k.startswith("backbone.")] + \
        [k[len("head."):] for k in mmpose1_state(50) if k.startswith("head.")] == list(expected_shapes(load_config()))


# ------------------------------------------------------------------ ImageNet initialisation


@pytest.mark.parametrize("name,tracked", [("resnet50-19c8e357.pth", False), ("resnet50-0676ba61.pth", True),
                                          ("resnet50-11ad3fa6.pth", True)])
def test_torchvision_resnet50_files_initialise_the_backbone(tmp_path, name, tracked):
    state = fill(torchvision_resnet_shapes(50, tracked), seed=1)
    torch.save(state, tmp_path / name)
    cfg = load_config(None, ["MODEL.PRETRAINED=" + str(tmp_path / name)])
    model = get_pose_net(cfg, is_train=True)
    assert "ResNet-50" in model.pretrained_info and "torchvision" in model.pretrained_info
    got = model.state_dict()
    for k, v in state.items():
        if not k.startswith("fc.") and not k.endswith("num_batches_tracked"):
            assert torch.equal(got[k], v), k
    assert float(got["final_layer.bias"].abs().sum()) == 0  # head: the original init, untouched


@needs_data
def test_timm_files_initialise_the_backbone(tmp_path):
    state = fill(torchvision_resnet_shapes(18, tracked=False), seed=2)
    # timm's train script wrapper (pickled argparse args: needs the full unpickler)
    torch.save({"epoch": 300, "arch": "resnet18", "state_dict": state, "optimizer": {}, "version": 2,
                "args": argparse.Namespace(model="resnet18")}, tmp_path / "model_best.pth.tar")
    # the Hugging Face hub file
    write_safetensors(tmp_path / "model.safetensors", state)
    for f in ("model_best.pth.tar", "model.safetensors"):
        info = read_weights(tmp_path / f)
        assert info.source == "timm" and info.depth == 18 and not info.has_head
        model = get_pose_net(small_cfg("MODEL.PRETRAINED=" + str(tmp_path / f)), is_train=True)
        assert "timm" in model.pretrained_info
        assert torch.equal(model.state_dict()["layer4.1.conv2.weight"], state["layer4.1.conv2.weight"])


@needs_data
def test_backbone_file_that_does_not_fit_is_one_line(tmp_path):
    state = fill(torchvision_resnet_shapes(18), seed=3)
    del state["layer3.1.bn2.running_var"]
    torch.save(state, tmp_path / "resnet18.pth")
    with pytest.raises(UserError) as e:
        get_pose_net(small_cfg("MODEL.PRETRAINED=" + str(tmp_path / "resnet18.pth")), is_train=True)
    assert "1 missing keys (layer3.1.bn2.running_var)" in str(e.value) and "\n" not in str(e.value)
    torch.save(fill(torchvision_resnet_shapes(18)), tmp_path / "resnet18.pth")
    with pytest.raises(UserError, match="does not fit a ResNet-50 backbone"):
        get_pose_net(load_config(None, ["MODEL.PRETRAINED=" + str(tmp_path / "resnet18.pth")]), is_train=True)


@needs_data
def test_deep_stem_variants_are_refused_by_name(tmp_path):
    tv = torchvision_resnet_shapes(18)
    timm_d = OrderedDict([(k, v) for k, v in tv.items() if not k.startswith(("conv1.", "bn1."))])
    timm_d.update({"conv1.0.weight": (32, 3, 3, 3), "conv1.1.weight": (32,), "conv1.3.weight": (32, 32, 3, 3)})
    torch.save(fill(timm_d), tmp_path / "resnet18d.pth")
    with pytest.raises(UserError, match=r"ResNet-D \(timm resnet\*d"):
        read_weights(tmp_path / "resnet18d.pth")
    v1d = OrderedDict((k, v) for k, v in mmpose1_state().items() if not k.startswith(("backbone.conv1.", "backbone.bn1.")))
    v1d["backbone.stem.0.weight"] = torch.zeros(32, 3, 3, 3)
    torch.save({"state_dict": v1d}, tmp_path / "v1d.pth")
    with pytest.raises(UserError, match="ResNetV1c/V1d"):
        prepare(small_cfg(), tmp_path / "v1d.pth", "valid")


# -------------------------------------------------------------------------- mmpose models


@needs_data
def test_mmpose1_checkpoint_conventions_flow_into_the_config(tmp_path, capsys):
    path = save_mmpose1(tmp_path / "td-hm_res18_coco-256x192.pth")
    info = read_weights(path)
    assert (info.source, info.depth, info.num_joints, info.deconv) == ("mmpose", 18, 17, [(256, 4)] * 3)
    assert info.conventions.color == "rgb" and info.conventions.codec == "MSRAHeatmap" and info.dataset == "coco"
    cfg = small_cfg("DATASET.COLOR_RGB=false")
    prepare(cfg, path, "valid")
    assert cfg.DATASET.COLOR_RGB is True
    assert "trained on RGB input" in capsys.readouterr().err
    # an mmpose model fed BGR (bgr_to_rgb=False) is told apart
    path = save_mmpose1(tmp_path / "bgr.pth", bgr_to_rgb=False)
    cfg = small_cfg()
    prepare(cfg, path, "valid")
    assert cfg.DATASET.COLOR_RGB is False


@needs_data
def test_original_and_host_tools_checkpoints_carry_their_colour_order(tmp_path, capsys):
    state = get_pose_net(small_cfg()).state_dict()
    # the original project's model_best.pth.tar (DataParallel keys): trained on BGR, whatever the config says
    torch.save({"module." + k: v for k, v in state.items() if not k.endswith("num_batches_tracked")},
               tmp_path / "pose_resnet_18.pth.tar")
    cfg = small_cfg()
    prepare(cfg, tmp_path / "pose_resnet_18.pth.tar", "export-onnx")
    assert cfg.DATASET.COLOR_RGB is False
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "original Simple Baselines checkpoint" in err[0] and "DATASET.COLOR_RGB=false" in err[0]
    # a config already saying BGR needs no note
    cfg = small_cfg("DATASET.COLOR_RGB=false")
    prepare(cfg, tmp_path / "pose_resnet_18.pth.tar", "export-onnx")
    assert cfg.DATASET.COLOR_RGB is False and capsys.readouterr().err == ""
    # a host_tools training checkpoint records its config: its colour order wins over the command line's
    trained = small_cfg("DATASET.COLOR_RGB=false").to_dict()
    torch.save({"epoch": 3, "state_dict": state, "optimizer": {}, "config": trained}, tmp_path / "checkpoint.pth.tar")
    cfg = small_cfg()
    prepare(cfg, tmp_path / "checkpoint.pth.tar", "valid")
    assert cfg.DATASET.COLOR_RGB is False and "trained on BGR input" in capsys.readouterr().err
    # a bare state_dict cannot tell: the config decides, silently
    torch.save(state, tmp_path / "model_best.pth.tar")
    for rgb in (True, False):
        cfg = small_cfg(f"DATASET.COLOR_RGB={str(rgb).lower()}")
        prepare(cfg, tmp_path / "model_best.pth.tar", "valid")
        assert cfg.DATASET.COLOR_RGB is rgb
    assert capsys.readouterr().err == ""


@needs_data
def test_mmpose_checkpoint_without_meta_warns_once_naming_the_assumption(tmp_path, capsys):
    path = save_mmpose1(tmp_path / "bare.pth", meta=False)
    cfg = small_cfg("DATASET.COLOR_RGB=false")
    prepare(cfg, path, "export-onnx")
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "warning" in err[0] and "RGB input" in err[0] and "MSRAHeatmap" in err[0]
    assert cfg.DATASET.COLOR_RGB is True


@needs_data
def test_udp_and_other_codecs_are_refused_in_one_line(tmp_path):
    path = save_mmpose1(tmp_path / "udp.pth", codec="UDPHeatmap")
    with pytest.raises(UserError) as e:
        prepare(small_cfg(), path, "valid")
    assert "UDP" in str(e.value) and "\n" not in str(e.value)
    torch.save({"meta": {"config": mmpose0_config(18, 512, udp=True)}, "state_dict": mmpose1_state(head_prefix="keypoint_head.")},
               tmp_path / "udp0.pth")
    with pytest.raises(UserError, match="UDP"):
        prepare(small_cfg(), tmp_path / "udp0.pth", "valid")


@needs_data
def test_mmpose0_checkpoint(tmp_path):
    torch.save({"meta": {"config": mmpose0_config(18, 512), "mmcv_version": "1.7.0"},
                "state_dict": mmpose1_state(head_prefix="keypoint_head.")}, tmp_path / "res18_coco_256x192.pth")
    info = read_weights(tmp_path / "res18_coco_256x192.pth")
    assert "0.x" in info.layout and info.conventions.color == "rgb"
    assert info.conventions.mean == pytest.approx((123.675, 116.28, 103.53))
    model = get_pose_net(small_cfg())
    load_checkpoint(model, tmp_path / "res18_coco_256x192.pth")
    assert torch.equal(model.state_dict()["final_layer.weight"], info.state["final_layer.weight"])


def test_mmpose_head_with_extra_convs_is_refused(tmp_path):
    state = mmpose1_state()
    state["head.conv_layers.0.weight"] = torch.zeros(256, 256, 3, 3)
    torch.save({"state_dict": state}, tmp_path / "x.pth")
    with pytest.raises(UserError, match="head.conv_layers.0.weight"):
        read_weights(tmp_path / "x.pth")


# ------------------------------------------------------------------------------ round trip


def _random_small_model(cfg):
    torch.manual_seed(0)
    model = get_pose_net(cfg)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    return model.eval()


@needs_data
def test_round_trip_through_every_layout(tmp_path):
    cfg = small_cfg("MODEL.EXTRA.NUM_DECONV_FILTERS=[32,32,32]")
    model = _random_small_model(cfg)
    x = torch.randn(2, 3, 96, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = model(x)
    sd = model.state_dict()
    back = {k: v for k, v in sd.items() if not k.startswith(("deconv_layers.", "final_layer."))}
    head = {k: v for k, v in sd.items() if k.startswith(("deconv_layers.", "final_layer."))}
    layouts = {
        "mmpose1": {"meta": {"cfg": mmpose1_config(18, 512)},
                    "state_dict": {**{"backbone." + k: v for k, v in back.items()}, **{"head." + k: v for k, v in head.items()}}},
        "mmpose0": {"meta": {"config": mmpose0_config(18, 512)},
                    "state_dict": {**{"backbone." + k: v for k, v in back.items()}, **{"keypoint_head." + k: v for k, v in head.items()}}},
        "original": {"module." + k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")},
        "edgepose": {"epoch": 3, "state_dict": sd, "optimizer": {}, "config": cfg.to_dict()},
    }
    for name, obj in layouts.items():
        torch.save(obj, tmp_path / f"{name}.pth")
        c = small_cfg("MODEL.EXTRA.NUM_DECONV_FILTERS=[32,32,32]")
        info = prepare(c, tmp_path / f"{name}.pth", "valid")
        fresh = load_checkpoint(get_pose_net(c), {"state_dict": info.state}, name=name).eval()
        with torch.no_grad():
            assert torch.equal(fresh(x), want), name
    # the backbone in torchvision's layout (with an ImageNet fc) + the head: the same network again
    torch.save({**back, "fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}, tmp_path / "resnet18.pth")
    c = small_cfg("MODEL.EXTRA.NUM_DECONV_FILTERS=[32,32,32]", "MODEL.PRETRAINED=" + str(tmp_path / "resnet18.pth"))
    fresh = get_pose_net(c, is_train=True)
    fresh.load_state_dict(head, strict=False)
    with torch.no_grad():
        assert torch.equal(fresh.eval()(x), want)


# --------------------------------------------------------------------------- inspect-weights


@needs_data
def test_inspect_weights_describes_without_building(tmp_path, capsys, monkeypatch):
    from host_tools.cli import main
    import host_tools.model as hm

    path = save_mmpose1(tmp_path / "m.pth")
    torch.save(fill(torchvision_resnet_shapes(18)), tmp_path / "resnet18-f37072fd.pth")
    monkeypatch.setattr(hm.PoseResNet, "__init__", lambda *a, **k: (_ for _ in ()).throw(AssertionError("built a model")))
    assert main(["inspect-weights", str(path)]) == 0
    out = capsys.readouterr().out
    assert "source:      mmpose" in out and "ResNet-18 (BasicBlock, blocks 2-2-2-2)" in out
    assert "3 deconv stages 256/256/256" in out and "-> 17 joints" in out and "RGB input" in out
    assert "MODEL.EXTRA.NUM_LAYERS=18" in out
    assert main(["inspect-weights", str(path), *SMALL]) == 0
    assert "config:      loads as a pose model" in capsys.readouterr().out
    assert main(["inspect-weights", str(path), "MODEL.EXTRA.NUM_LAYERS=50"]) == 1
    assert "would NOT load" in capsys.readouterr().out
    assert main(["inspect-weights", str(tmp_path / "resnet18-f37072fd.pth"), "MODEL.EXTRA.NUM_LAYERS=18"]) == 0
    out = capsys.readouterr().out
    assert "source:      torchvision" in out and "head:        none (backbone only)" in out and "MODEL.PRETRAINED" in out
    assert main(["inspect-weights", str(tmp_path / "missing.pth")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


# ------------------------------------------------------------------------------- the CLI


def host_tools(*args):
    env = dict(os.environ, OMP_NUM_THREADS="2", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "host_tools", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=300)


@needs_data
def test_export_onnx_and_valid_on_an_mmpose_checkpoint(tmp_path):
    import onnx

    cfg = small_cfg("MODEL.EXTRA.NUM_DECONV_FILTERS=[32,32,32]")
    model = _random_small_model(cfg)
    sd = model.state_dict()
    mm = {("head." + k if k.startswith(("deconv_layers.", "final_layer.")) else "backbone." + k): v for k, v in sd.items()}
    save_mmpose1(tmp_path / "td-hm_res18.pth", state=mm)
    torch.save(sd, tmp_path / "edgepose.pth")
    args = [*SMALL, "MODEL.EXTRA.NUM_DECONV_FILTERS=[32,32,32]"]
    # the config says BGR; the checkpoint records RGB input, which wins and goes into the metadata
    r = host_tools("export-onnx", "--cfg", "", "--weights", str(tmp_path / "td-hm_res18.pth"), "-o", str(tmp_path / "m.onnx"),
                   *args, "DATASET.COLOR_RGB=false")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "using DATASET.COLOR_RGB=true" in r.stderr
    meta = json.loads(next(p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props if p.key == "edgepose"))
    assert meta["color"] == "rgb" and meta["num_joints"] == 17
    # valid on the mmpose file = valid on the same weights saved by edgepose with RGB input
    r = host_tools("valid", "--model-file", str(tmp_path / "td-hm_res18.pth"), "--out", str(tmp_path / "v1"), *args,
                   "DATASET.COLOR_RGB=false")
    assert r.returncode == 0, r.stderr[-2000:]
    r2 = host_tools("valid", "--model-file", str(tmp_path / "edgepose.pth"), "--out", str(tmp_path / "v2"), *args,
                    "DATASET.COLOR_RGB=true")
    assert r2.returncode == 0, r2.stderr[-2000:]
    assert (tmp_path / "v1/keypoints_results.json").read_text() == (tmp_path / "v2/keypoints_results.json").read_text()
    # a UDP model: one line, exit 2, nothing written
    save_mmpose1(tmp_path / "udp.pth", codec="UDPHeatmap", state=mm)
    r = host_tools("export-onnx", "--cfg", "", "--weights", str(tmp_path / "udp.pth"), "-o", str(tmp_path / "u.onnx"), *args)
    assert r.returncode == 2 and "UDP" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "u.onnx").exists()
