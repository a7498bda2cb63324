"""host_tools.config: original experiment files, unknown keys, overrides."""
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="host tools test: needs torch (pip install '.[host]')")

from host_tools.config import DEFAULTS, load_config, model_meta
from host_tools.errors import UserError
from conftest import needs_data

ROOT = Path(__file__).resolve().parents[1]
EXP = ROOT / "experiments"


def test_original_experiment_yaml_loads():
    cfg = load_config(EXP / "coco/resnet50/256x192_d256x3_adam_lr1e-3.yaml")
    assert cfg.MODEL.EXTRA.NUM_LAYERS == 50
    assert cfg.MODEL.IMAGE_SIZE == [192, 256]  # [w, h]
    assert cfg.MODEL.EXTRA.HEATMAP_SIZE == [48, 64]
    assert cfg.MODEL.EXTRA.NUM_DECONV_LAYERS == 3
    assert cfg.DATASET.ROT_FACTOR == 40 and cfg.DATASET.SCALE_FACTOR == 0.3
    assert cfg.TEST.FLIP_TEST is False and cfg.TEST.OKS_THRE == 0.9
    assert cfg.TRAIN.LR_STEP == [90, 120] and cfg.TRAIN.OPTIMIZER == "adam"
    assert cfg.MODEL.PRETRAINED.endswith("resnet50-19c8e357.pth")
    # every top-level section of the seed's dump is there
    for key in ("CUDNN", "DATASET", "DATA_DIR", "DEBUG", "GPUS", "LOG_DIR", "LOSS", "MODEL", "OUTPUT_DIR",
                "PRINT_FREQ", "TEST", "TRAIN", "WORKERS"):
        assert key in cfg


@pytest.mark.parametrize("path", sorted(str(p.relative_to(EXP)) for p in EXP.rglob("*.yaml")))
def test_every_shipped_experiment_loads(path):
    cfg = load_config(EXP / path)
    assert cfg.MODEL.NUM_JOINTS == (16 if cfg.DATASET.DATASET == "mpii" else 17)


def test_unknown_key_in_yaml_names_the_key(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("TRAIN:\n  LR: 0.01\n  LR_STEPS: [1, 2]\n")
    with pytest.raises(UserError, match=r"unknown config key TRAIN\.LR_STEPS"):
        load_config(p)


def test_overrides_typed_and_checked():
    cfg = load_config(None, ["TRAIN.END_EPOCH=2", "MODEL.EXTRA.NUM_LAYERS=18", "MODEL.IMAGE_SIZE=[96,128]",
                             "TRAIN.LR=5e-4", "TEST.FLIP_TEST=true", "GPUS=0,1"])
    assert cfg.TRAIN.END_EPOCH == 2 and cfg.MODEL.EXTRA.NUM_LAYERS == 18
    assert cfg.MODEL.IMAGE_SIZE == [96, 128] and cfg.TRAIN.LR == 5e-4
    assert cfg.TEST.FLIP_TEST is True and cfg.GPUS == "0,1"
    # defaults are untouched by a load
    assert DEFAULTS["TRAIN"]["END_EPOCH"] == 140
    with pytest.raises(UserError, match=r"TRAIN\.NOPE"):
        load_config(None, ["TRAIN.NOPE=1"])
    with pytest.raises(UserError, match=r"TRAIN\.END_EPOCH: expected an integer"):
        load_config(None, ["TRAIN.END_EPOCH=abc"])
    with pytest.raises(UserError, match="KEY=value"):
        load_config(None, ["TRAIN.END_EPOCH"])
    with pytest.raises(UserError, match="NUM_LAYERS"):
        load_config(None, ["MODEL.EXTRA.NUM_LAYERS=19"])
    with pytest.raises(UserError, match="not found"):
        load_config("/nonexistent/exp.yaml")


def test_attribute_access_names_missing_key():
    cfg = load_config()
    with pytest.raises(AttributeError, match=r"TRAIN\.NOPE"):
        cfg.TRAIN.NOPE


def test_colour_convention_recorded_in_metadata():
    rgb = model_meta(load_config())
    bgr = model_meta(load_config(None, ["DATASET.COLOR_RGB=false"]))
    assert rgb.color == "rgb" and bgr.color == "bgr"
    assert rgb.mean == bgr.mean  # the ImageNet RGB numbers in both cases (the original's quirk for bgr)
    mpii = model_meta(load_config(EXP / "mpii/resnet50/256x256_d256x3_adam_lr1e-3.yaml"))
    assert mpii.keypoint_set == "mpii" and mpii.num_joints == 16 and [0, 5] in mpii.flip_pairs
    assert mpii.input_size == (256, 256) and mpii.heatmap_size == (64, 64)


@needs_data
def test_yaml_paths_resolve_from_any_working_directory(tmp_path, monkeypatch):
    """The mini experiments name ${EDGEPOSE_TEST_DATA:-../shared/data}/... relative to the
    repository root; started from elsewhere, the paths are anchored at the folder above the YAML
    where they exist."""
    from pathlib import Path

    from host_tools.config import load_config

    yaml_path = Path(__file__).resolve().parents[1] / "experiments/coco_mini/resnet18/128x96_d256x3_adam_lr1e-3.yaml"
    monkeypatch.chdir(tmp_path)
    cfg = load_config(yaml_path)
    for key in ("TRAIN_ANN", "TEST_ANN", "TRAIN_IMAGES"):
        assert Path(cfg.DATASET[key]).is_absolute() and Path(cfg.DATASET[key]).exists(), key
    # an override given on the command line is taken as written
    cfg = load_config(yaml_path, ["DATASET.TRAIN_ANN=elsewhere.json"])
    assert cfg.DATASET.TRAIN_ANN == "elsewhere.json"


def test_env_references_in_yaml_paths_expand_like_a_shell(tmp_path, monkeypatch):
    """``${VAR:-default}`` in a path key: the variable when set, else the default; an unset
    variable without a default stays as written."""
    from host_tools.config import expand_env

    (tmp_path / "ann.json").write_text("{}")
    y = tmp_path / "exp.yaml"
    y.write_text("DATASET:\n  TRAIN_ANN: '${EP_TEST_DIR:-nowhere}/ann.json'\n  TEST_ANN: '${EP_UNSET_VAR}/x.json'\n")
    monkeypatch.setenv("EP_TEST_DIR", str(tmp_path))
    monkeypatch.delenv("EP_UNSET_VAR", raising=False)
    cfg = load_config(y)
    assert cfg.DATASET.TRAIN_ANN == str(tmp_path / "ann.json")
    assert cfg.DATASET.TEST_ANN == "${EP_UNSET_VAR}/x.json"
    monkeypatch.delenv("EP_TEST_DIR")
    assert expand_env("${EP_TEST_DIR:-../shared/data}/coco_mini") == "../shared/data/coco_mini"
