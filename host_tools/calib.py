"""Calibration data for RKNN quantization, made the way the device sees its input.

Each calibration sample is one *person crop* cut by :func:`edgepose.crop.warp_crops` with the
same box -> affine convention as the runtime (:func:`edgepose.geometry.crop_matrices`), not a
whole frame squashed to the input size. Crops are saved as ``.npy`` uint8 arrays of shape
``(1, 3, H, W)`` in the colour order the model expects (``ModelMeta.color``): rknn-toolkit2
reads ``.npy`` entries as raw NCHW input and applies the ``mean_values``/``std_values`` of the
rknn config to them, exactly as it does to the uint8 NHWC frames the board feeds later.
(JPEG/PNG entries would be colour-converted by the toolkit, which is why we avoid them.)

The list file holds one absolute POSIX path per line, what the toolkit's ``dataset=`` wants.

Validation rules for user lists (:func:`validate_calibration_list`), checked before the
toolkit runs, each failure one :class:`~host_tools.errors.UserError` line:

* blank lines are skipped; an empty list is refused;
* a path with a Windows backslash is refused (write ``/``);
* a relative path is resolved against the folder of the list file (the toolkit itself would
  resolve it against its working directory); the toolkit receives a rewritten absolute list;
* a path with whitespace is refused (the toolkit splits lines on spaces for multi-input models);
* every entry must exist and load: ``.npy`` of shape ``(1, 3, H, W)`` or ``(3, H, W)``, or an
  image (jpg/png/bmp) of exactly the model input size;
* the number of entries must reach :data:`MIN_IMAGES` for the chosen algorithm.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from host_tools.errors import UserError
from host_tools.rknn_toolkit import IMAGE_EXTS, check_mean_std  # noqa: F401  (re-exported)

# edgepose's own floors, not the toolkit's (it accepts one image for any algorithm): mmse and
# kl_divergence fit clipping ranges / histograms to the activations, which a handful of crops
# cannot describe; "normal" (min/max) at least runs with one. Rockchip recommends 20-100+.
MIN_IMAGES: Dict[str, int] = {"normal": 1, "mmse": 8, "kl_divergence": 16, "gdq": 8}
RECOMMENDED_IMAGES = 20


@dataclass
class PersonSample:
    """One person to crop: the frame file, its box and (when annotated) its ground truth.

    Attributes:
        image: path of the frame.
        box: ``(x, y, w, h)`` in frame pixels.
        image_id: COCO image id (or the running index of the frame for other formats).
        keypoints: ``(K, 3)`` ground-truth x, y, visibility in frame pixels, or None.
        area: the person's area in frame pixels^2 (COCO ``area``, else box w*h).
        score: detector score (1.0 for ground-truth boxes).
    """

    image: Path
    box: Tuple[float, float, float, float]
    image_id: int = 0
    keypoints: Optional[np.ndarray] = None
    area: float = 0.0
    score: float = 1.0


@dataclass
class SampleSet:
    """Person samples plus what evaluation needs to know about their source."""

    samples: List[PersonSample] = field(default_factory=list)
    kind: str = "coco"  # "coco" (annotations), "det" (detections), "mpii"
    ann_path: Optional[Path] = None  # COCO ground truth, usable for AP


# --------------------------------------------------------------------------- annotation loading

def _load_json(path: Path, what: str):
    if not path.is_file():
        raise UserError(f"{what} {path}: file not found; pass an existing JSON file")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{what} {path}: not valid JSON ({exc})") from None


def _check_images_dir(images: Optional[Path]) -> Path:
    if images is None:
        raise UserError("--images: required with --ann/--det; pass the folder that holds the frames")
    if not images.is_dir():
        raise UserError(f"--images {images}: not a folder; pass the folder that holds the frames")
    return images


def load_samples(
    ann: Optional[str | Path] = None,
    images: Optional[str | Path] = None,
    det: Optional[str | Path] = None,
    det_thr: float = 0.5,
    min_box: float = 8.0,
) -> SampleSet:
    """Person samples from a COCO keypoint file, an MPII json, or a COCO-results detection file.

    Args:
        ann: COCO keypoint annotations (dict with ``images``/``annotations``) or MPII list
            (``image``, ``center``, ``scale`` in 200-px units, ``joints``).
        images: folder holding the frames named in the annotations.
        det: detections ``[{"image_id", "bbox": xywh, "score"}]``; frames are found through
            ``ann``'s ``images`` when given, else as ``%012d.jpg`` (COCO naming).
        det_thr: detections below this score are skipped.
        min_box: boxes thinner than this many pixels are skipped.

    Returns:
        A :class:`SampleSet`, samples in file order.
    """
    if ann is None and det is None:
        raise UserError("calibration data: pass --ann ANNOTATIONS.json or --det DETECTIONS.json with --images DIR")
    img_dir = _check_images_dir(Path(images) if images is not None else None)
    ann_path = Path(ann) if ann is not None else None
    out = SampleSet(ann_path=None)
    id_to_file: Dict[int, str] = {}
    ann_data = _load_json(ann_path, "--ann") if ann_path is not None else None

    if isinstance(ann_data, list):  # MPII
        if det is not None:
            raise UserError("--det: detections go with COCO annotations, not an MPII list")
        out.kind = "mpii"
        for i, a in enumerate(ann_data):
            try:
                cx, cy = (float(v) for v in a["center"])
                s = float(a["scale"]) * 200.0
                joints = np.asarray(a.get("joints", []), np.float64).reshape(-1, 2)
                vis = np.asarray(a.get("joints_vis", np.ones(len(joints))), np.float64).reshape(-1, 1)
                name = a["image"]
            except (KeyError, TypeError, ValueError) as exc:
                raise UserError(f"--ann {ann_path}: entry {i} is not an MPII person ({exc}); "
                                "expected image, center, scale, joints") from None
            kp = np.concatenate([joints, vis], 1) if len(joints) else None
            out.samples.append(PersonSample(img_dir / name, (cx - s / 2, cy - s / 2, s, s), i, kp, s * s))
        return _existing(out)

    if ann_data is not None:
        if not isinstance(ann_data, dict) or "images" not in ann_data:
            raise UserError(f"--ann {ann_path}: not COCO keypoint annotations (no 'images' list) nor an MPII list")
        for im in ann_data["images"]:
            id_to_file[int(im["id"])] = im["file_name"]
        out.ann_path = ann_path

    if det is not None:
        dets = _load_json(Path(det), "--det")
        if not isinstance(dets, list):
            raise UserError(f"--det {det}: expected a list of detections (COCO results format)")
        out.kind = "det"
        for i, d in enumerate(dets):
            try:
                iid, box, score = int(d["image_id"]), [float(v) for v in d["bbox"]], float(d.get("score", 1.0))
            except (KeyError, TypeError, ValueError) as exc:
                raise UserError(f"--det {det}: entry {i} lacks image_id/bbox ({exc})") from None
            if d.get("category_id", 1) != 1 or score < det_thr or min(box[2], box[3]) < min_box:
                continue
            name = id_to_file.get(iid, f"{iid:012d}.jpg")
            out.samples.append(PersonSample(img_dir / name, tuple(box), iid, None, box[2] * box[3], score))
        return _existing(out)

    out.kind = "coco"
    for i, a in enumerate(ann_data.get("annotations", [])):
        if a.get("iscrowd", 0) or a.get("category_id", 1) != 1 or a.get("num_keypoints", 1) == 0:
            continue
        box = [float(v) for v in a["bbox"]]
        if min(box[2], box[3]) < min_box:
            continue
        iid = int(a["image_id"])
        if iid not in id_to_file:
            raise UserError(f"--ann {ann_path}: annotation {a.get('id', i)} names image {iid}, which is not in 'images'")
        kp = np.asarray(a["keypoints"], np.float64).reshape(-1, 3) if a.get("keypoints") else None
        out.samples.append(PersonSample(img_dir / id_to_file[iid], tuple(box), iid, kp,
                                        float(a.get("area", box[2] * box[3]))))
    return _existing(out)


def _existing(s: SampleSet) -> SampleSet:
    missing = sorted({str(p.image) for p in s.samples if not p.image.is_file()})
    if missing:
        raise UserError(f"--images: {len(missing)} frame(s) named by the annotations are missing, "
                        f"first {missing[0]}; point --images at the folder that holds them")
    if not s.samples:
        raise UserError("calibration data: the annotations give no usable person (check --det-thr or the file)")
    return s


# --------------------------------------------------------------------------- crops

def crop_samples(samples: Sequence[PersonSample], input_size: Sequence[int], color: str,
                 progress: bool = True) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crop every sample as the device does: uint8 NHWC in the model's colour order.

    Args:
        samples: persons to crop (frames are read once per file, in order).
        input_size: model input ``(w, h)``.
        color: ``"rgb"`` or ``"bgr"``: the channel order of the model (``ModelMeta.color``).

    Returns:
        ``crops`` ``(N, h, w, 3)`` uint8, ``centers`` ``(N, 2)`` and ``scales`` ``(N, 2)``
        (frame pixels / 200-px units, see :mod:`edgepose.geometry`).
    """
    import cv2

    from edgepose.crop import warp_crops
    from edgepose.geometry import crop_matrices

    w, h = int(input_size[0]), int(input_size[1])
    crops = np.zeros((len(samples), h, w, 3), np.uint8)
    centers = np.zeros((len(samples), 2))
    scales = np.zeros((len(samples), 2))
    frame_cache: Dict[Path, np.ndarray] = {}
    it: Iterable = enumerate(samples)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, total=len(samples), desc="crops", unit="person", file=sys.stderr, leave=False)
    for i, s in it:
        if s.image not in frame_cache:
            frame_cache.clear()  # samples come grouped by frame; keep one frame in memory
            frame = cv2.imread(str(s.image), cv2.IMREAD_COLOR)
            if frame is None:
                raise UserError(f"{s.image}: cannot be read as an image; replace or remove it")
            frame_cache[s.image] = frame
        c, sc, m = crop_matrices(np.asarray(s.box, np.float64)[None], (w, h))
        crops[i] = warp_crops(frame_cache[s.image], m, (w, h), to_rgb=(color == "rgb"), layout="nhwc")[0]
        centers[i], scales[i] = c[0], sc[0]
    return crops, centers, scales


def write_calibration(crops: np.ndarray, out_dir: str | Path, force: bool = False) -> Path:
    """Save ``(N, h, w, 3)`` uint8 crops as ``calib_XXXXX.npy`` ``(1, 3, h, w)`` files plus
    ``dataset.txt`` (absolute POSIX paths) in ``out_dir``; returns the list path."""
    out = Path(out_dir).resolve()
    lst = out / "dataset.txt"
    if (lst.exists() or any(out.glob("calib_*.npy"))) and not force:
        raise UserError(f"{out}: already holds calibration crops; pick another --out folder or pass --force to replace them")
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, c in enumerate(crops):
        p = out / f"calib_{i:05d}.npy"
        np.save(p, np.ascontiguousarray(c.transpose(2, 0, 1)[None]))
        lines.append(p.as_posix())
    lst.write_text("\n".join(lines) + "\n")
    return lst


def make_calibration(meta, out_dir: str | Path, ann=None, images=None, det=None, det_thr: float = 0.5,
                     max_images: int = 200, force: bool = False) -> Tuple[Path, int]:
    """Annotations/detections -> person crops -> list file. Returns ``(list_path, count)``.

    ``meta`` is the model's :class:`edgepose.metadata.ModelMeta` (input size and colour order).
    Up to ``max_images`` persons are taken, spread evenly over the file.
    """
    s = load_samples(ann, images, det, det_thr)
    samples = s.samples
    if len(samples) > max_images:
        idx = np.linspace(0, len(samples) - 1, max_images).round().astype(int)
        samples = [samples[i] for i in idx]
    crops, _, _ = crop_samples(samples, meta.input_size, meta.color)
    return write_calibration(crops, out_dir, force), len(samples)


# --------------------------------------------------------------------------- list validation

def _check_entry(p: Path, where: str, input_size: Optional[Sequence[int]]) -> None:
    if not p.exists():
        raise UserError(f"{where}: {p} does not exist; fix the path or remove the line")
    if not p.is_file():
        raise UserError(f"{where}: {p} is not a file")
    ext = p.suffix.lower()
    if ext == ".npy":
        try:
            a = np.load(p, mmap_mode="r", allow_pickle=False)
        except Exception as exc:  # numpy raises several types for a corrupt file
            raise UserError(f"{where}: {p} is not a readable .npy array ({type(exc).__name__}); regenerate it") from None
        shape = tuple(a.shape)
        ok = len(shape) in (3, 4) and (len(shape) == 3 or shape[0] == 1) and shape[-3] == 3
        if input_size is not None:
            ok = ok and shape[-2:] == (int(input_size[1]), int(input_size[0]))
        if not ok:
            want = f"(1, 3, {input_size[1]}, {input_size[0]})" if input_size is not None else "(1, 3, H, W)"
            raise UserError(f"{where}: {p} has shape {shape}, expected NCHW {want}; make crops with host_tools make-calib")
    elif ext in IMAGE_EXTS:
        import cv2

        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            raise UserError(f"{where}: {p} cannot be read as an image (corrupt or not an image); replace or remove it")
        if input_size is not None and img.shape[:2] != (int(input_size[1]), int(input_size[0])):
            raise UserError(f"{where}: {p} is {img.shape[1]}x{img.shape[0]}, not the model input "
                            f"{input_size[0]}x{input_size[1]}; calibrate on person crops (host_tools make-calib)")
    else:
        raise UserError(f"{where}: {p} has extension {ext or '(none)'!r}; use .npy crops or jpg/png/bmp images")


def validate_calibration_list(list_path: str | Path, algorithm: str = "normal",
                              input_size: Optional[Sequence[int]] = None) -> List[Path]:
    """Check a calibration list file before the toolkit sees it (rules in the module doc).

    Args:
        list_path: text file, one path per line.
        algorithm: quantization algorithm, for the minimum count (:data:`MIN_IMAGES`).
        input_size: model input ``(w, h)``; entries must match it. None skips the size check.

    Returns:
        The absolute paths, in order.

    Raises:
        UserError: the first problem found, as one line naming the file, line and fix.
    """
    lp = Path(list_path)
    if "\\" in str(list_path):
        raise UserError(f"--calib {list_path}: Windows backslash in the path; write it with '/'")
    if not lp.is_file():
        raise UserError(f"--calib {lp}: list file not found; make one with host_tools make-calib")
    try:
        text = lp.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"--calib {lp}: cannot read the list ({exc})") from None
    base = lp.resolve().parent
    paths: List[Path] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        where = f"--calib {lp} line {n}"
        if "\\" in line:
            raise UserError(f"{where}: {line!r} uses Windows backslashes; write POSIX paths with '/'")
        if any(ch.isspace() for ch in line):
            raise UserError(f"{where}: {line!r} contains whitespace, which the toolkit splits on; rename the file")
        p = Path(line)
        if not p.is_absolute():
            p = base / p  # documented: relative entries are relative to the list file's folder
        p = Path(*p.parts).resolve()
        _check_entry(p, where, input_size)
        paths.append(p)
    if not paths:
        raise UserError(f"--calib {lp}: the list is empty; add calibration crops (host_tools make-calib)")
    need = MIN_IMAGES.get(algorithm, 1)
    if len(paths) < need:
        raise UserError(f"--calib {lp}: {len(paths)} entr{'y' if len(paths) == 1 else 'ies'} but "
                        f"--algorithm {algorithm} needs at least {need}; add crops or use --algorithm normal")
    return paths


def write_resolved_list(paths: Sequence[Path], dest: str | Path) -> Path:
    """Write validated absolute paths as the toolkit's list file."""
    d = Path(dest)
    d.write_text("".join(p.as_posix() + "\n" for p in paths))
    return d


# --------------------------------------------------------------------------- model metadata

def load_onnx_meta(path: str | Path):
    """The ``ModelMeta`` embedded in an ONNX file; UserError when absent or unreadable."""
    from edgepose.metadata import MetadataError, read_onnx_metadata

    p = Path(path)
    if "\\" in str(path):
        raise UserError(f"{path}: Windows backslash in the path; write it with '/'")
    if not p.is_file():
        raise UserError(f"{p}: ONNX model not found; export one with host_tools export-onnx")
    try:
        meta = read_onnx_metadata(p)
    except MetadataError as exc:
        raise UserError(f"{p}: {exc}") from None
    except Exception as exc:  # onnxruntime: InvalidProtobuf / Fail for a non-ONNX file
        raise UserError(f"{p}: not a readable ONNX model ({type(exc).__name__}); export it with host_tools export-onnx") from None
    if meta is None:
        raise UserError(f"{p}: no edgepose metadata in the ONNX file; export it with host_tools export-onnx, or stamp a foreign model with host_tools import-onnx")
    return meta


# --------------------------------------------------------------------------- CLI

def _handler(args: argparse.Namespace) -> int:
    if args.max_images < 1:
        raise UserError(f"--max-images {args.max_images}: must be at least 1")
    meta = load_onnx_meta(args.model)
    lst, n = make_calibration(meta, args.out, args.ann, args.images, args.det, args.det_thr, args.max_images, args.force)
    print(f"calibration: {n} person crops {meta.input_size[0]}x{meta.input_size[1]} ({meta.color}) -> {lst}")
    if n < RECOMMENDED_IMAGES:
        print(f"calibration: note: {n} < {RECOMMENDED_IMAGES} crops; fine for tests, use more for a real model")
    return 0


def register(subparsers) -> None:
    """Add ``host_tools make-calib``."""
    p = subparsers.add_parser(
        "make-calib", help="person crops for RKNN calibration, from annotations or detections",
        description="Cut person crops with edgepose's warp (as the device will) from a COCO/MPII annotation "
                    "file or a detection json, save them as .npy and write the toolkit's list file.")
    p.add_argument("model", help="the exported ONNX (its metadata gives input size and colour order)")
    p.add_argument("--ann", help="COCO keypoint or MPII annotation json")
    p.add_argument("--det", help="person detections json (COCO results format)")
    p.add_argument("--images", required=True, help="folder with the frames")
    p.add_argument("--out", required=True, help="output folder (crops + dataset.txt)")
    p.add_argument("--det-thr", type=float, default=0.5, help="minimum detection score (default 0.5)")
    p.add_argument("--max-images", type=int, default=200, help="at most this many crops (default 200)")
    p.add_argument("--force", action="store_true", help="replace an existing dataset.txt in --out")
    p.set_defaults(func=_handler)
