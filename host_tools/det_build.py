"""Person detectors on the host: RKNN build inputs and float vs INT8 box agreement.

``host_tools build-rknn DET.onnx`` treats an ONNX without edgepose pose metadata as a detector
(:func:`edgepose.detect.is_detector_model`) whose outputs must match a layout of
:mod:`edgepose.detect`. Differences from a pose build:

* calibration samples are *whole images*, letterboxed exactly as the device does
  (:func:`edgepose.detect.letterbox_input`: aspect kept, grey 114 padding, edgepose's warp),
  saved as ``.npy`` ``(1, 3, H, W)`` uint8 in the model colour order. A ``--calib`` list may name
  images of any size (they are letterboxed) or ``.npy`` inputs already at the input size;
  ``--images DIR`` alone (or with ``--calib-ann``) takes the images from a folder;
* the sidecar is a :class:`edgepose.detect.DetectorMeta` (``"task": "detect"``) with every
  output's name, shape and, for an INT8 build, its ``(scale, zero_point)`` from the toolkit, so a
  runtime that keeps int8 outputs can read them (RKNNLite hands back float32 by default).

``host_tools verify DET.onnx DET.rknn --images DIR`` runs the float ONNX (onnxruntime) and the
INT8 model (toolkit2 simulator) on the same letterboxed images and matches their person boxes
greedily by IoU (highest first, each box used once): mean IoU of the pairs with IoU >= 0.5,
recall at IoU 0.5 (matched / float boxes) and precision (matched / INT8 boxes).
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from host_tools.calib import IMAGE_EXTS, RECOMMENDED_IMAGES, validate_calibration_list, write_calibration
from host_tools.errors import UserError
from host_tools.rknn_toolkit import (ALGORITHMS, BuildOptions, BuildResult, check_output, check_target, parse_hybrid,
                                     run_build, toolkit_major)


def is_detector_onnx(path: str | Path) -> bool:
    """An existing ONNX without edgepose pose metadata (or with a detector sidecar)."""
    from edgepose.detect import is_detector_model

    p = Path(path)
    return p.suffix.lower() == ".onnx" and p.is_file() and is_detector_model(p)


def load_detector(onnx_path: str | Path):
    """``(meta, layout)`` of a detector ONNX; UserError (one line) when no layout fits."""
    from edgepose.backends import BackendError
    from edgepose.detect import PersonDetector

    try:
        with PersonDetector(onnx_path) as det:
            return det.meta, det.layout
    except (BackendError, ValueError) as exc:
        raise UserError(str(exc)) from None


def letterboxed(paths: Sequence[Path], meta, progress: bool = True) -> np.ndarray:
    """Images -> ``(N, H, W, 3)`` uint8 letterboxed detector inputs in the model colour order
    (``.npy`` entries already at the input size are taken as they are)."""
    import cv2

    from edgepose.detect import letterbox_input

    w, h = meta.input_size
    out = np.zeros((len(paths), h, w, 3), np.uint8)
    it: Any = enumerate(paths)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, total=len(paths), desc="letterbox", unit="image", file=sys.stderr, leave=False)
    for i, p in it:
        if p.suffix.lower() == ".npy":
            a = np.load(p)
            if tuple(a.shape[-2:]) != (h, w) or a.reshape(-1, 3, h, w).shape[0] != 1:
                raise UserError(f"{p}: shape {a.shape}, expected (1, 3, {h}, {w}) (the detector input); or list the image")
            out[i] = a.reshape(3, h, w).transpose(1, 2, 0)
            continue
        frame = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if frame is None:
            raise UserError(f"{p}: cannot be read as an image; replace or remove it")
        out[i] = letterbox_input(frame, meta, "nhwc")[0][0]
    return out


def images_in(folder: str | Path, ann: Optional[str | Path] = None, limit: int = 200) -> List[Path]:
    """The images of ``folder`` (sorted; or those ``ann``'s COCO ``images`` name), at most
    ``limit``, spread evenly."""
    d = Path(folder)
    if not d.is_dir():
        raise UserError(f"--images {d}: not a folder; pass the folder that holds the images")
    if ann is not None:
        try:
            data = json.loads(Path(ann).read_text())
            paths = [d / im["file_name"] for im in data["images"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserError(f"--ann {ann}: not COCO annotations with an 'images' list ({exc})") from None
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise UserError(f"--images: {len(missing)} image(s) named by {ann} are missing, first {missing[0]}")
    else:
        paths = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_EXTS)
    if not paths:
        raise UserError(f"--images {d}: no .jpg/.png/.bmp images there")
    if len(paths) > limit:
        paths = [paths[i] for i in np.linspace(0, len(paths) - 1, limit).round().astype(int)]
    return paths


def make_detector_calibration(meta, out_dir: str | Path, images: str | Path, ann=None, max_images: int = 200,
                              force: bool = False) -> Tuple[Path, int]:
    """Letterboxed whole images -> ``calib_XXXXX.npy`` + ``dataset.txt`` in ``out_dir``."""
    paths = images_in(images, ann, max_images)
    return write_calibration(letterboxed(paths, meta), out_dir, force), len(paths)


def prepare_detector(onnx_path: str | Path, opts, workdir: Path):
    """:func:`host_tools.rknn_build.prepare` for a detector: ``(meta, major, list or None)``;
    a ``--calib`` list's images are letterboxed into ``workdir``."""
    meta, _ = load_detector(onnx_path)
    major, version = toolkit_major()
    check_target(opts.target, major, version)
    if opts.algorithm not in ALGORITHMS:
        raise UserError(f"--algorithm {opts.algorithm}: choose one of {', '.join(ALGORITHMS)}")
    if opts.hybrid and not opts.quantize:
        raise UserError("--hybrid: only for a quantized build; add --images or --calib (without them the whole "
                        "model is float16)")
    if opts.batch not in (None, 1):
        raise UserError(f"--batch {opts.batch}: a detector runs one frame at a time; drop --batch")
    if not opts.quantize:
        return meta, major, None
    paths = validate_calibration_list(opts.calib, opts.algorithm, None)
    lst = write_calibration(letterboxed(paths, meta), workdir / "letterboxed", force=True)
    if len(paths) < RECOMMENDED_IMAGES:
        print(f"build-rknn: note: {len(paths)} calibration images (< {RECOMMENDED_IMAGES}); fine for a test, "
              "use 50-200 photos like the deployment's for a real detector", file=sys.stderr)
    return meta, major, lst


def output_names(onnx_path: str | Path) -> List[Tuple[str, List[int]]]:
    import onnx

    g = onnx.load(str(onnx_path), load_external_data=False).graph
    return [(o.name, [d.dim_value if d.HasField("dim_value") else 0 for d in o.type.tensor_type.shape.dim])
            for o in g.output]


def detector_sidecar_meta(meta, onnx_path: str | Path, quant: Sequence[Tuple[float, int]], out_dtype: str, opts,
                          build: Dict[str, Any], mean: Sequence[float], std: Sequence[float], split=None):
    """The :class:`~edgepose.detect.DetectorMeta` that ``build-rknn`` writes beside a detector;
    ``onnx_path`` is the graph the toolkit built (the split one when ``split`` is given)."""
    from edgepose.detect import DetectorMeta

    d = meta.to_dict()
    outs = []
    for i, (name, shape) in enumerate(output_names(onnx_path)):
        s, z = quant[i] if i < len(quant) else (0.0, 0)
        outs.append({"name": name, "shape": shape, "scale": float(s), "zero_point": int(z)})
    d.update(outputs=outs, quantized=out_dtype, target=opts.target, batch=1, build=build,
             mean=list(mean), std=list(std))
    if split is not None:
        d.update(head=split.head, strides=list(split.strides), split=split.to_dict())
    return DetectorMeta.from_dict(d)


SINGLE_OUTPUT_HEADS = ("yolox", "ultralytics")


def build_detector_rknn(onnx_path: str | Path, out_path: str | Path, opts: BuildOptions, force: bool = False,
                        keep: bool = False, log_path: Optional[str | Path] = None) -> BuildResult:
    """Build ``out_path`` (.rknn) and its detector sidecar from a detector ONNX.

    A quantized build of a single-output head (``yolox``, ``ultralytics``) builds the split graph
    of :func:`host_tools.det_split.split_head` instead (each stride's box and score branches as
    outputs, each with its own int8 scale); the ONNX file itself is left as it is. Arguments as
    :func:`host_tools.rknn_build.build_rknn`.
    """
    from host_tools.det_split import split_head

    t_start = time.perf_counter()
    out = check_output(out_path, force)
    log = Path(log_path) if log_path is not None else out.with_name(out.name + ".log")
    work = Path(tempfile.mkdtemp(prefix="edgepose_rknn_"))
    split = None
    load_path: Path = Path(onnx_path)
    try:
        meta, major, dataset = prepare_detector(onnx_path, opts, work)
        if opts.quantize and meta.head in SINGLE_OUTPUT_HEADS:
            load_path = work / (Path(onnx_path).stem + "_split.onnx")
            print(f"build-rknn: splitting the single-output {meta.head} head into per-stride outputs ...",
                  file=sys.stderr, flush=True)
            split = split_head(onnx_path, load_path)
            print(f"build-rknn: split: {len(split.outputs)} outputs "
                  f"({', '.join(str(tuple(s)) for _, s in split.outputs[:3])}, ...) -> {split.head} layout",
                  file=sys.stderr)
        if opts.hybrid:  # "final" or START:END, or the spans a sidecar recorded: names of the built graph
            opts.hybrid = parse_hybrid([h if isinstance(h, str) else ":".join(h) for h in opts.hybrid], load_path)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise

    def make_meta(quants, out_dtype, build, mean, std):
        return detector_sidecar_meta(meta, load_path, quants, out_dtype, opts, build, mean, std, split)

    return run_build(onnx_path, load_path, out, opts, meta, major, dataset, work, log, make_meta, keep, t_start)


# --------------------------------------------------------------------------- verify

def match_boxes(ref: np.ndarray, test: np.ndarray, thr: float = 0.5) -> np.ndarray:
    """Greedy one-to-one matching of ``(N, 4)`` / ``(M, 4)`` xyxy boxes by IoU (highest pair
    first); returns the IoUs of the matched pairs that reach ``thr``."""
    if len(ref) == 0 or len(test) == 0:
        return np.zeros(0)
    x0 = np.maximum(ref[:, None, 0], test[None, :, 0])
    y0 = np.maximum(ref[:, None, 1], test[None, :, 1])
    x1 = np.minimum(ref[:, None, 2], test[None, :, 2])
    y1 = np.minimum(ref[:, None, 3], test[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda b: np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)  # noqa: E731
    iou = inter / np.maximum(area(ref)[:, None] + area(test)[None] - inter, 1e-12)
    used_r, used_t, out = set(), set(), []
    for flat in np.argsort(-iou, axis=None, kind="stable"):
        i, j = divmod(int(flat), iou.shape[1])
        if iou[i, j] < thr:
            break
        if i in used_r or j in used_t:
            continue
        used_r.add(i)
        used_t.add(j)
        out.append(float(iou[i, j]))
    return np.asarray(out)


def box_agreement(ref: List[np.ndarray], test: List[np.ndarray], thr: float = 0.5) -> Dict[str, Any]:
    """Per-image xyxy boxes of the float and the test model -> the summary numbers."""
    ious = [match_boxes(r, t, thr) for r, t in zip(ref, test)]
    n_ref, n_test = sum(len(r) for r in ref), sum(len(t) for t in test)
    matched = sum(len(i) for i in ious)
    allv = np.concatenate(ious) if ious else np.zeros(0)
    return {"images": len(ref), "boxes_float": int(n_ref), "boxes_test": int(n_test), "matched": int(matched),
            "mean_iou_matched": float(allv.mean()) if len(allv) else None,
            "recall_at_0.5": float(matched / n_ref) if n_ref else None,
            "precision_at_0.5": float(matched / n_test) if n_test else None}
