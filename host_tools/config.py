"""Experiment configuration: the original Simple Baselines keys, loaded from YAML.

``load_config(path, overrides)`` returns a :class:`Config` (a dict with attribute access,
``cfg.MODEL.EXTRA.NUM_LAYERS``). Defaults are the values of the original project's config dump
for ``experiments/coco/resnet50/256x192_d256x3_adam_lr1e-3.yaml`` except:

* machine paths are empty (``MODEL.PRETRAINED``, ``TEST.MODEL_FILE``, ``TEST.COCO_BBOX_FILE``)
  so that nothing is read unless asked for;
* ``DEBUG.DEBUG`` and its switches are off (no debug images unless asked for).

Keys that edgepose adds (all optional in a YAML file, so original experiment files load as they are):

* ``DATASET.COLOR_RGB`` (true): feed the network RGB normalised with the ImageNet RGB mean/std.
  ``false`` feeds BGR with the same numbers, i.e. the original project's quirk; use it for the
  official checkpoints. Recorded as ``ModelMeta.color``.
* ``DATASET.TRAIN_ANN`` / ``DATASET.TEST_ANN`` / ``DATASET.TRAIN_IMAGES`` / ``DATASET.TEST_IMAGES``:
  explicit annotation file and image folder; empty means the original layout under ``DATASET.ROOT``.
* ``DATASET.NUM_JOINTS_HALF_BODY`` (8) and ``DATASET.PROB_HALF_BODY`` (0.0): half-body augmentation.
* ``TEST.REFINE`` ("quarter"): sub-pixel refinement of the decoder ("quarter", "dark", "none").
* ``TRAIN.SEED`` (0): random seed of model init, shuffling and augmentation.
* ``TRAIN.MAX_ITERS`` (0): stop each epoch after this many iterations (0: whole epoch).
* ``TRAIN.AMP`` (""): mixed precision, ``bf16`` (autocast) or ``fp16`` (autocast + grad scaler);
  empty is fp32, the paper's setting.
* ``TRAIN.CHANNELS_LAST`` (true): model and inputs in NHWC memory layout (same numbers, faster
  convolutions on GPUs and oneDNN).

Changed default: ``WORKERS`` is -1, the CPU cores available (shared by the processes of one
node, one left for each process); the original's 4 starves a fast GPU. A YAML value is kept.

Sizes are ``[w, h]`` as in the original: ``MODEL.IMAGE_SIZE: [192, 256]`` is 256 high, 192 wide.
"""
from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

import yaml

from host_tools.errors import UserError

DEFAULTS: Dict[str, Any] = {
    "CUDNN": {"BENCHMARK": True, "DETERMINISTIC": False, "ENABLED": True},
    "DATASET": {
        "DATASET": "coco",
        "DATA_FORMAT": "jpg",
        "FLIP": True,
        "HYBRID_JOINTS_TYPE": "",
        "ROOT": "data/coco/",
        "ROT_FACTOR": 40,
        "SCALE_FACTOR": 0.3,
        "SELECT_DATA": False,
        "TEST_SET": "val2017",
        "TRAIN_SET": "train2017",
        # edgepose additions
        "COLOR_RGB": True,
        "TRAIN_ANN": "",
        "TEST_ANN": "",
        "TRAIN_IMAGES": "",
        "TEST_IMAGES": "",
        "NUM_JOINTS_HALF_BODY": 8,
        "PROB_HALF_BODY": 0.0,
    },
    "DATA_DIR": "",
    "DEBUG": {
        "DEBUG": False,
        "SAVE_BATCH_IMAGES_GT": False,
        "SAVE_BATCH_IMAGES_PRED": False,
        "SAVE_HEATMAPS_GT": False,
        "SAVE_HEATMAPS_PRED": False,
    },
    "GPUS": "0",
    "LOG_DIR": "log",
    "LOSS": {"USE_TARGET_WEIGHT": True},
    "MODEL": {
        "EXTRA": {
            "DECONV_WITH_BIAS": False,
            "FINAL_CONV_KERNEL": 1,
            "HEATMAP_SIZE": [48, 64],
            "NUM_DECONV_FILTERS": [256, 256, 256],
            "NUM_DECONV_KERNELS": [4, 4, 4],
            "NUM_DECONV_LAYERS": 3,
            "NUM_LAYERS": 50,
            "SIGMA": 2,
            "TARGET_TYPE": "gaussian",
        },
        "IMAGE_SIZE": [192, 256],
        "INIT_WEIGHTS": True,
        "NAME": "pose_resnet",
        "NUM_JOINTS": 17,
        "PRETRAINED": "",
        "STYLE": "pytorch",
    },
    "OUTPUT_DIR": "output",
    "PRINT_FREQ": 100,
    "TEST": {
        "BATCH_SIZE": 32,
        "BBOX_THRE": 1.0,
        "COCO_BBOX_FILE": "",
        "FLIP_TEST": False,
        "IMAGE_THRE": 0.0,
        "IN_VIS_THRE": 0.2,
        "MODEL_FILE": "",
        "NMS_THRE": 1.0,
        "OKS_THRE": 0.9,
        "POST_PROCESS": True,
        "SHIFT_HEATMAP": True,
        "USE_GT_BBOX": True,
        # edgepose addition
        "REFINE": "quarter",
    },
    "TRAIN": {
        "BATCH_SIZE": 32,
        "BEGIN_EPOCH": 0,
        "CHECKPOINT": "",
        "END_EPOCH": 140,
        "GAMMA1": 0.99,
        "GAMMA2": 0.0,
        "LR": 0.001,
        "LR_FACTOR": 0.1,
        "LR_STEP": [90, 120],
        "MOMENTUM": 0.9,
        "NESTEROV": False,
        "OPTIMIZER": "adam",
        "RESUME": False,
        "SHUFFLE": True,
        "WD": 0.0001,
        # edgepose additions
        "SEED": 0,
        "MAX_ITERS": 0,
        "AMP": "",
        "CHANNELS_LAST": True,
    },
    "WORKERS": -1,
}

# Keys whose value may be a string or null in a YAML file (paths) besides their default type.
_NULLABLE = {"MODEL.PRETRAINED", "TEST.MODEL_FILE", "TEST.COCO_BBOX_FILE", "TRAIN.CHECKPOINT"}


class Config(dict):
    """A nested dict with attribute access (``cfg.TRAIN.LR``). Unknown attributes raise
    ``AttributeError`` naming the dotted key."""

    def __init__(self, data: Optional[Dict[str, Any]] = None, _prefix: str = "") -> None:
        super().__init__()
        object.__setattr__(self, "_prefix", _prefix)
        for k, v in (data or {}).items():
            self[k] = Config(v, f"{_prefix}{k}.") if isinstance(v, dict) else v

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"config has no key {object.__getattribute__(self, '_prefix')}{name}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __deepcopy__(self, memo: Dict[int, Any]) -> "Config":
        return Config(self.to_dict(), object.__getattribute__(self, "_prefix"))

    def to_dict(self) -> Dict[str, Any]:
        """Plain nested dicts/lists (for YAML, JSON and checkpoints)."""
        return {k: (v.to_dict() if isinstance(v, Config) else copy.deepcopy(v)) for k, v in self.items()}

    def dump(self) -> str:
        """The config as YAML text."""
        return yaml.safe_dump(self.to_dict(), sort_keys=True)


def default_config() -> Config:
    """A fresh config holding the defaults."""
    return Config(copy.deepcopy(DEFAULTS))


def _coerce(key: str, value: Any, default: Any) -> Any:
    """Check ``value`` against the type of ``default``; returns the value to store."""
    if key in _NULLABLE and value is None:
        return ""
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise UserError(f"config {key}: expected true/false, got {value!r}")
    if isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise UserError(f"config {key}: expected an integer, got {value!r}")
    if isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "5e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise UserError(f"config {key}: expected a number, got {value!r}")
    if isinstance(default, str):
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise UserError(f"config {key}: expected a string, got {value!r}")
    if isinstance(default, list):
        if isinstance(value, (list, tuple)):
            return list(value)
        raise UserError(f"config {key}: expected a list like [1, 2], got {value!r}")
    return value


def _merge(dst: Config, src: Dict[str, Any], where: str, prefix: str = "") -> None:
    for k, v in src.items():
        key = f"{prefix}{k}"
        if k not in dst:
            raise UserError(f"unknown config key {key} in {where} (check its spelling; see host_tools/config.py for all keys)")
        if isinstance(dst[k], dict):
            if not isinstance(v, dict):
                raise UserError(f"config {key} in {where}: expected a mapping of sub-keys, got {v!r}")
            _merge(dst[k], v, where, key + ".")
        else:
            dst[k] = _coerce(key, v, dst[k])


def apply_overrides(cfg: Config, overrides: Iterable[str]) -> Config:
    """Apply ``KEY=value`` strings (``TRAIN.END_EPOCH=2``, ``MODEL.IMAGE_SIZE=[96,128]``).

    Values are parsed as YAML scalars/lists; the key must exist."""
    for item in overrides:
        if "=" not in item:
            raise UserError(f"override {item!r}: expected KEY=value, e.g. TRAIN.END_EPOCH=2")
        key, text = item.split("=", 1)
        key = key.strip()
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            value = text
        parts = key.split(".")
        node: Any = cfg
        for i, p in enumerate(parts):
            if not isinstance(node, dict) or p not in node:
                raise UserError(f"unknown config key {key} in override {item!r} (check its spelling)")
            if i == len(parts) - 1:
                if isinstance(node[p], dict):
                    raise UserError(f"override {item!r}: {key} is a section; set one of its keys, e.g. {key}.{next(iter(node[p]))}=...")
                node[p] = _coerce(key, value, node[p])
            else:
                node = node[p]
    return cfg


def load_config(path: Union[str, Path, None] = None, overrides: Sequence[str] = ()) -> Config:
    """Load a YAML experiment file over the defaults, then apply ``KEY=value`` overrides.

    Args:
        path: YAML file, or None for the defaults only.
        overrides: strings ``"SECTION.KEY=value"``.

    Raises:
        UserError: file missing or not YAML, unknown key, value of the wrong type.
    """
    cfg = default_config()
    if path is not None and str(path) != "":
        p = Path(path)
        if not p.is_file():
            raise UserError(f"config file {p} not found (pass an experiment YAML, e.g. experiments/coco/resnet50/256x192_d256x3_adam_lr1e-3.yaml)")
        try:
            data = yaml.safe_load(p.read_text())
        except yaml.YAMLError as exc:
            first = str(exc).splitlines()[0] if str(exc) else "parse error"
            raise UserError(f"config file {p} is not valid YAML ({first})") from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise UserError(f"config file {p}: expected a mapping of sections at the top level")
        _merge(cfg, data, str(p))
        _anchor_relative_paths(cfg, data, p)
    apply_overrides(cfg, overrides)
    check_config(cfg)
    return cfg


_PATH_KEYS = (("DATASET", "ROOT"), ("DATASET", "TRAIN_ANN"), ("DATASET", "TEST_ANN"), ("DATASET", "TRAIN_IMAGES"),
              ("DATASET", "TEST_IMAGES"), ("TEST", "COCO_BBOX_FILE"), ("MODEL", "PRETRAINED"))


_ENV_REF = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def expand_env(value: str) -> str:
    """``${VAR}`` and ``${VAR:-default}`` in a YAML path, as a shell would expand them; the mini
    experiments name ``${EDGEPOSE_TEST_DATA:-../shared/data}`` so that third-party data is read
    in place. An unset variable without a default stays as written (the path then fails to
    resolve and the data loader names it)."""
    return _ENV_REF.sub(lambda m: os.environ.get(m.group(1)) or (m.group(2) if m.group(2) is not None else m.group(0)),
                        value)


def _anchor_relative_paths(cfg: Config, data: Dict[str, Any], cfg_path: Path) -> None:
    """Relative paths written in a YAML resolve from the current directory, as in the original
    project; when one does not exist there but does relative to a folder above the YAML (the
    repository root for ``experiments/...``), use that, so the command works from anywhere."""
    for section, key in _PATH_KEYS:
        value = data[section].get(key) if isinstance(data.get(section), dict) else None
        if isinstance(value, str) and "${" in value:
            value = expand_env(value)
            cfg[section][key] = value
        if not isinstance(value, str) or not value or os.path.isabs(value) or os.path.exists(value):
            continue
        for parent in cfg_path.resolve().parents:
            candidate = parent / value
            if candidate.exists():
                cfg[section][key] = str(candidate)
                break


def check_config(cfg: Config) -> None:
    """Cross-field checks; raises :class:`UserError` naming the key."""
    ex = cfg.MODEL.EXTRA
    for key, val in (("MODEL.IMAGE_SIZE", cfg.MODEL.IMAGE_SIZE), ("MODEL.EXTRA.HEATMAP_SIZE", ex.HEATMAP_SIZE)):
        if len(val) != 2 or not all(isinstance(v, int) and v > 0 for v in val):
            raise UserError(f"config {key}: expected [w, h] positive integers, got {val}")
    if ex.NUM_LAYERS not in (18, 34, 50, 101, 152):
        raise UserError(f"config MODEL.EXTRA.NUM_LAYERS: expected one of 18, 34, 50, 101, 152, got {ex.NUM_LAYERS}")
    n = ex.NUM_DECONV_LAYERS
    if len(ex.NUM_DECONV_FILTERS) != n or len(ex.NUM_DECONV_KERNELS) != n:
        raise UserError(
            f"config MODEL.EXTRA.NUM_DECONV_FILTERS/NUM_DECONV_KERNELS: need {n} entries each "
            f"(NUM_DECONV_LAYERS={n}), got {ex.NUM_DECONV_FILTERS} and {ex.NUM_DECONV_KERNELS}")
    for k in ex.NUM_DECONV_KERNELS:
        if k not in (2, 3, 4):
            raise UserError(f"config MODEL.EXTRA.NUM_DECONV_KERNELS: kernels must be 2, 3 or 4, got {k}")
    if ex.FINAL_CONV_KERNEL not in (1, 3):
        raise UserError(f"config MODEL.EXTRA.FINAL_CONV_KERNEL: expected 1 or 3, got {ex.FINAL_CONV_KERNEL}")
    if cfg.TRAIN.OPTIMIZER not in ("adam", "sgd"):
        raise UserError(f"config TRAIN.OPTIMIZER: expected 'adam' or 'sgd', got {cfg.TRAIN.OPTIMIZER!r}")
    if cfg.DATASET.DATASET not in ("coco", "mpii"):
        raise UserError(f"config DATASET.DATASET: expected 'coco' or 'mpii', got {cfg.DATASET.DATASET!r}")
    check_amp(cfg.TRAIN.AMP)
    if cfg.WORKERS < -1:
        raise UserError(f"config WORKERS: expected a count of DataLoader workers, or -1 for the cores available, got {cfg.WORKERS}")
    if cfg.TEST.REFINE not in ("quarter", "dark", "none"):
        raise UserError(f"config TEST.REFINE: expected 'quarter', 'dark' or 'none', got {cfg.TEST.REFINE!r}")


AMP_MODES = ("", "none", "bf16", "fp16")


def check_amp(amp: str) -> None:
    """``TRAIN.AMP`` is one of :data:`AMP_MODES`; else one UserError line."""
    if amp not in AMP_MODES:
        raise UserError(f"config TRAIN.AMP: expected 'bf16', 'fp16' or '' (fp32), got {amp!r}")


def expected_heatmap_size(cfg: Config) -> List[int]:
    """Heatmap ``[w, h]`` that the configured network produces: five stride-2 stages (each
    ``ceil(n / 2)``), then x2 per deconv layer."""
    out = []
    for n in cfg.MODEL.IMAGE_SIZE:
        for _ in range(5):
            n = (n + 1) // 2
        out.append(n * 2 ** cfg.MODEL.EXTRA.NUM_DECONV_LAYERS)
    return out


def model_meta(cfg: Config, **kw: Any):
    """The :class:`edgepose.metadata.ModelMeta` describing a model trained with ``cfg``
    (colour order, mean/std, sizes, keypoint set). Extra keyword arguments override fields."""
    from edgepose.keypoints import flip_pairs_list, get_keypoint_set
    from edgepose.metadata import IMAGENET_MEAN_RGB, IMAGENET_STD_RGB, ModelMeta

    ks = get_keypoint_set(cfg.DATASET.DATASET)
    fields: Dict[str, Any] = dict(
        input_size=tuple(cfg.MODEL.IMAGE_SIZE),
        heatmap_size=tuple(cfg.MODEL.EXTRA.HEATMAP_SIZE),
        color="rgb" if cfg.DATASET.COLOR_RGB else "bgr",
        # The same numbers in both cases: with COLOR_RGB false they are applied to B, G, R (the original quirk).
        mean=IMAGENET_MEAN_RGB,
        std=IMAGENET_STD_RGB,
        keypoint_set=cfg.DATASET.DATASET,
        num_joints=cfg.MODEL.NUM_JOINTS,
        flip_pairs=flip_pairs_list(ks),
        arch=f"pose_resnet_{cfg.MODEL.EXTRA.NUM_LAYERS}",
        source_config=cfg.to_dict(),
    )
    fields.update(kw)
    return ModelMeta(**fields).validate()


def resolve_workers(workers: int, procs_per_node: int = 1) -> int:
    """``WORKERS`` as given, or for -1 the CPU cores this process may use shared by the training
    processes on this node, less one for the process itself (at least 1)."""
    if workers >= 0:
        return workers
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(procs_per_node, 1) - 1)
