"""The public files ``host_tools pull`` knows: where each comes from and how it is checked.

Pose checkpoints: the Simple Baselines (PoseResNet) models that mmpose 0.x published, with the
accuracy its model zoo states (COCO val2017 AP with a person detector of human AP 56.4, flip
test; MPII val PCKh@0.5). mmpose names each file ``<model>-<first 8 hex digits of its
sha256>_<date>.pth``: that prefix is all that is published about their content, so for these
files the registry checks those 8 hex digits (32 bits: it catches a truncated, corrupted or
wrong file, not a deliberate forgery). Files whose full sha256 is recorded are checked in full.

Every URL can be redirected with ``EDGEPOSE_MODEL_MIRROR=URL``: the scheme and host are
replaced by the mirror's, the path is kept (a mirror holds each host's paths under its root).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple
from urllib.parse import urlsplit

from host_tools.errors import UserError

MIRROR_ENV = "EDGEPOSE_MODEL_MIRROR"
CACHE_ENV = "EDGEPOSE_CACHE"

_MMPOSE = "https://download.openmmlab.com/mmpose/top_down/resnet/"
_MMPOSE_ZOO = "mmpose 0.x model zoo"


@dataclass(frozen=True)
class Entry:
    """One downloadable file.

    Attributes:
        name: what ``pull`` takes.
        kind: ``"pose"`` (a PoseResNet checkpoint), ``"detector"`` (an edgepose-ready ONNX) or
            ``"clip"`` (sample video).
        url: where it is published.
        sha256: the full hex digest when known, else ``""``.
        sha256_prefix: the leading hex digits that are known (the whole digest when ``sha256`` is).
        size: bytes, 0 when not published.
        metric: the published accuracy, as text.
        source: who publishes it.
        depth, dataset, input_size: for pose checkpoints: ResNet depth, ``coco``/``mpii``,
            ``(w, h)``; they select the export config (:func:`config_overrides`).
        licence: the licence the publisher states, or ``""``.
    """

    name: str
    kind: str
    url: str
    sha256: str = ""
    sha256_prefix: str = ""
    size: int = 0
    metric: str = ""
    source: str = ""
    depth: int = 0
    dataset: str = ""
    input_size: Tuple[int, int] = (0, 0)
    licence: str = ""
    notes: str = field(default="", compare=False)
    file: str = ""

    @property
    def filename(self) -> str:
        """The name in the cache: ``file`` when set, else the URL's last part."""
        return self.file or self.url.rsplit("/", 1)[-1]

    @property
    def expected_digest(self) -> str:
        """The hex digits a download is checked against (full digest, else the prefix)."""
        return self.sha256 or self.sha256_prefix


def _pose(depth: int, dataset: str, w: int, h: int, stem: str, metric: str) -> Entry:
    name = f"res{depth}_{dataset}_{h}x{w}"
    digest = stem.split("-")[1].split("_")[0]
    return Entry(name=name, kind="pose", url=_MMPOSE + stem + ".pth", sha256_prefix=digest, metric=metric,
                 source=_MMPOSE_ZOO, depth=depth, dataset=dataset, input_size=(w, h),
                 licence="Apache-2.0 (mmpose)")


ENTRIES: Tuple[Entry, ...] = (
    _pose(50, "coco", 192, 256, "res50_coco_256x192-ec54d7f3_20200709", "COCO AP 71.8"),
    _pose(50, "coco", 288, 384, "res50_coco_384x288-e6f795e9_20200709", "COCO AP 73.1"),
    _pose(101, "coco", 192, 256, "res101_coco_256x192-6e6babf0_20200708", "COCO AP 72.6"),
    _pose(101, "coco", 288, 384, "res101_coco_384x288-8c71bdc9_20200709", "COCO AP 74.8"),
    _pose(152, "coco", 192, 256, "res152_coco_256x192-f6e307c2_20200709", "COCO AP 73.5"),
    _pose(152, "coco", 288, 384, "res152_coco_384x288-3860d4c9_20200709", "COCO AP 75.0"),
    _pose(50, "mpii", 256, 256, "res50_mpii_256x256-418ffc88_20200812", "MPII PCKh@0.5 88.2"),
    _pose(101, "mpii", 256, 256, "res101_mpii_256x256-416f5d71_20200812", "MPII PCKh@0.5 88.8"),
    _pose(152, "mpii", 256, 256, "res152_mpii_256x256-3ecba29d_20200812", "MPII PCKh@0.5 88.9"),
    Entry(name="yolox_nano", kind="detector",
          url="https://github.com/Megvii-BaseDetection/YOLOX/releases/download/0.1.1rc0/yolox_nano.onnx",
          sha256="c789161ed43c8269fcd4e67c67eeeb4e80c622da2eb296a20bc6007bd18a0b7d",
          sha256_prefix="c789161ed43c8269fcd4e67c67eeeb4e80c622da2eb296a20bc6007bd18a0b7d", size=3659407,
          metric="COCO box AP 25.8 (416x416)", source="Megvii YOLOX GitHub release 0.1.1rc0", input_size=(416, 416),
          licence="Apache-2.0 (YOLOX)", notes="416x416 BGR 0..255, edgepose's 'yolox' layout"),
    Entry(name="arm_wrestling", kind="clip",
          url="https://raw.githubusercontent.com/open-mmlab/mmaction2/master/demo/demo.mp4",
          sha256="071e60535eaf0aed475ddac06269ee0cdfc4740158f22d9ccd2c3b93b42aa344",
          sha256_prefix="071e60535eaf0aed475ddac06269ee0cdfc4740158f22d9ccd2c3b93b42aa344", size=635539,
          metric="", source="mmaction2 demo/demo.mp4 (the demo's sample clip)", licence="Apache-2.0 (mmaction2)",
          notes="280 frames, two arm-wrestlers and people behind them", file="arm_wrestling.mp4"),
)
BY_NAME: Dict[str, Entry] = {e.name: e for e in ENTRIES}


def get(name: str) -> Entry:
    """The entry called ``name``; UserError naming the known ones otherwise."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise UserError(f"{name!r}: not a known model; `host_tools models` lists them ("
                        + ", ".join(BY_NAME) + ")") from None


def cache_dir() -> Path:
    """``$EDGEPOSE_CACHE``, else ``$XDG_CACHE_HOME/edgepose``, else ``~/.cache/edgepose`` (not created)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "edgepose"


def resolve_url(url: str) -> str:
    """``url`` with its scheme and host replaced by ``$EDGEPOSE_MODEL_MIRROR`` when set."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if not mirror:
        return url
    m = urlsplit(mirror)
    if m.scheme not in ("http", "https") or not m.netloc:
        raise UserError(f"{MIRROR_ENV}={mirror!r}: not an http(s) URL; set it like https://mirror.example/models")
    return mirror.rstrip("/") + urlsplit(url).path


def onnx_name(entry: Entry) -> str:
    """The file name ``pull --onnx`` gives a pose checkpoint's export."""
    return f"{entry.name}.onnx"


def config_overrides(entry: Entry) -> List[str]:
    """Config overrides that turn the ResNet-50 experiment of ``entry.dataset`` into this
    checkpoint's network (depth, input and heatmap size)."""
    w, h = entry.input_size
    return [f"MODEL.EXTRA.NUM_LAYERS={entry.depth}", f"MODEL.IMAGE_SIZE=[{w},{h}]",
            f"MODEL.EXTRA.HEATMAP_SIZE=[{w // 4},{h // 4}]"]


# the experiment files the overrides start from (they are in a source checkout)
BASE_EXPERIMENTS = {
    "coco": Path("experiments/coco/resnet50/256x192_d256x3_adam_lr1e-3.yaml"),
    "mpii": Path("experiments/mpii/resnet50/256x256_d256x3_adam_lr1e-3.yaml"),
}
# the same keys when the checkout's experiments/ is not there (a non-editable install)
_DATASET_DEFAULTS = {"coco": ["DATASET.DATASET=coco", "MODEL.NUM_JOINTS=17"],
                     "mpii": ["DATASET.DATASET=mpii", "MODEL.NUM_JOINTS=16"]}


def export_config(entry: Entry, root: Optional[Path] = None) -> Tuple[Optional[Path], List[str]]:
    """``(experiment file or None, overrides)`` for exporting ``entry`` with ``load_config``."""
    root = root or Path(__file__).resolve().parents[1]
    base = root / BASE_EXPERIMENTS[entry.dataset]
    if base.is_file():
        return base, config_overrides(entry)
    return None, _DATASET_DEFAULTS[entry.dataset] + config_overrides(entry)


def table(entries: Sequence[Entry] = ENTRIES) -> List[str]:
    """Lines of ``host_tools models``."""
    rows = [("NAME", "KIND", "INPUT", "ACCURACY (published)", "SIZE", "CHECK", "SOURCE")]
    for e in entries:
        size = f"{e.size / 1e6:.2f} MB" if e.size else "-"
        check = "sha256" if e.sha256 else f"sha256 {e.sha256_prefix}.. (8 hex)"
        inp = f"{e.input_size[1]}x{e.input_size[0]}" if e.input_size[0] else "-"
        rows.append((e.name, e.kind, inp, e.metric or "-", size, check, e.source))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return ["  ".join(c.ljust(w) for c, w in zip(r[:-1], widths)) + "  " + r[-1] for r in rows]
