"""host_tools.model: PoseResNet shapes, original parameter names, checkpoint loading."""
from pathlib import Path

import pytest
torch = pytest.importorskip("torch", reason="host tools test: needs torch (pip install '.[host]')")

from host_tools.config import load_config
from host_tools.errors import UserError
from host_tools.model import PoseResNet, get_pose_net, load_checkpoint
from conftest import OWN_DATA



def _cfg(*over):
    return load_config(None, list(over))


def test_parameter_names_match_the_official_checkpoint():
    official = (OWN_DATA / "pose_resnet_50_official_keys.txt").read_text().split()
    ours = ["module." + k for k in get_pose_net(_cfg()).state_dict()]
    assert ours == official


@pytest.mark.parametrize("depth,params_m", [(18, 15.38), (34, 25.49), (50, 34.00), (101, 52.99), (152, 68.64)])
def test_backbones_build_with_expected_sizes(depth, params_m):
    m = get_pose_net(_cfg(f"MODEL.EXTRA.NUM_LAYERS={depth}"))
    n = sum(p.numel() for p in m.parameters()) / 1e6
    assert n == pytest.approx(params_m, abs=0.02)


@pytest.mark.parametrize("kernels", [[4, 4, 4], [3, 3, 3], [2, 2, 2], [4, 3, 2]])
@pytest.mark.parametrize("final", [1, 3])
def test_deconv_head_doubles_each_stage(kernels, final):
    m = get_pose_net(_cfg("MODEL.EXTRA.NUM_LAYERS=18", f"MODEL.EXTRA.NUM_DECONV_KERNELS={kernels}",
                          f"MODEL.EXTRA.FINAL_CONV_KERNEL={final}", "MODEL.EXTRA.NUM_DECONV_FILTERS=[64,32,16]",
                          "MODEL.NUM_JOINTS=5")).eval()
    with torch.no_grad():
        y = m(torch.zeros(1, 3, 128, 96))
    assert y.shape == (1, 5, 32, 24)
    assert m.deconv_layers[0].kernel_size == (kernels[0], kernels[0])
    assert m.final_layer.kernel_size == (final, final)


def test_two_deconv_layers():
    m = get_pose_net(_cfg("MODEL.EXTRA.NUM_LAYERS=18", "MODEL.EXTRA.NUM_DECONV_LAYERS=2",
                          "MODEL.EXTRA.NUM_DECONV_FILTERS=[256,256]", "MODEL.EXTRA.NUM_DECONV_KERNELS=[4,4]")).eval()
    with torch.no_grad():
        assert m(torch.zeros(1, 3, 64, 64)).shape == (1, 17, 8, 8)
    assert [k for k in m.state_dict() if k.startswith("deconv_layers") and k.endswith("weight")] == [
        "deconv_layers.0.weight", "deconv_layers.1.weight", "deconv_layers.3.weight", "deconv_layers.4.weight"]


def test_training_init_of_the_head():
    torch.manual_seed(0)
    m = get_pose_net(_cfg("MODEL.EXTRA.NUM_LAYERS=18"), is_train=True)
    w = m.deconv_layers[0].weight.detach()
    assert float(w.std()) == pytest.approx(0.001, rel=0.05)
    assert float(m.final_layer.weight.detach().std()) == pytest.approx(0.001, rel=0.1)
    assert torch.all(m.final_layer.bias == 0)
    assert torch.all(m.deconv_layers[1].weight == 1) and torch.all(m.deconv_layers[1].bias == 0)


def _randomised(model: torch.nn.Module) -> torch.nn.Module:
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.dtype.is_floating_point:
                t.copy_(torch.rand(t.shape, generator=g) * 0.2 + (0.9 if "running_var" in name else -0.1))
    return model.eval()


def test_official_layout_checkpoint_with_module_prefix_predicts_identically(tmp_path):
    cfg = _cfg("MODEL.EXTRA.NUM_LAYERS=18", "MODEL.NUM_JOINTS=17")
    src = _randomised(get_pose_net(cfg))
    # DataParallel-style file, old format: `module.` on every key, no num_batches_tracked.
    official = {"module." + k: v.clone() for k, v in src.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "model_best.pth.tar"
    torch.save(official, path)
    dst = load_checkpoint(get_pose_net(cfg), path).eval()
    x = torch.randn(2, 3, 128, 96, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(src(x), dst(x))
    # training checkpoint layout {"state_dict": ...} with num_batches_tracked also loads
    torch.save({"epoch": 3, "state_dict": src.state_dict()}, tmp_path / "checkpoint.pth.tar")
    dst2 = load_checkpoint(get_pose_net(cfg), tmp_path / "checkpoint.pth.tar").eval()
    with torch.no_grad():
        assert torch.equal(src(x), dst2(x))


def test_mismatch_is_one_short_readable_line(tmp_path):
    res50 = {"module." + k: v for k, v in get_pose_net(_cfg()).state_dict().items()}
    path = tmp_path / "pose_resnet_50_256x192.pth.tar"
    torch.save(res50, path)
    with pytest.raises(UserError) as ei:
        load_checkpoint(get_pose_net(_cfg("MODEL.EXTRA.NUM_LAYERS=18")), path)
    msg = str(ei.value)
    assert "\n" not in msg and len(msg) - len(str(path)) < 400
    assert "PoseResNet-50" in msg and "PoseResNet-18" in msg and "unexpected" in msg
    with pytest.raises(UserError, match=r"16 joints.*17 joints|17 joints.*16 joints"):
        load_checkpoint(get_pose_net(_cfg("MODEL.NUM_JOINTS=16")), path)
    with pytest.raises(UserError, match="not found"):
        load_checkpoint(get_pose_net(_cfg()), tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="cannot be read"):
        load_checkpoint(get_pose_net(_cfg()), tmp_path / "junk.pth")


def test_imagenet_backbone_from_torchvision_layout_file(tmp_path):
    # A torchvision ResNet-18 file has the backbone's names plus fc.*; write one.
    ref = _randomised(PoseResNet(depth=18))
    tv = {k: v.clone() for k, v in ref.state_dict().items() if not k.startswith(("deconv_layers", "final_layer"))}
    tv["fc.weight"] = torch.zeros(1000, 512)
    tv["fc.bias"] = torch.zeros(1000)
    p = tmp_path / "resnet18-5c106cde.pth"
    torch.save(tv, p)
    m = get_pose_net(_cfg("MODEL.EXTRA.NUM_LAYERS=18", f"MODEL.PRETRAINED={p}"), is_train=True)
    assert torch.equal(m.layer4[1].conv2.weight, ref.layer4[1].conv2.weight)
    assert float(m.final_layer.weight.detach().std()) < 0.01  # head keeps its own init
    with pytest.raises(UserError, match="MODEL.PRETRAINED.*not found"):
        get_pose_net(_cfg(f"MODEL.PRETRAINED={tmp_path / 'missing.pth'}"), is_train=True)
    with pytest.raises(UserError, match="ResNet-50 backbone"):
        get_pose_net(_cfg(f"MODEL.PRETRAINED={p}"), is_train=True)
