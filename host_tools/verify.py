"""``host_tools verify``: does the quantized model give the float model's keypoints?

Both models run on the *same* real person crops (cut by :func:`edgepose.crop.warp_crops`
from annotations or detections, as on the device):

* the float model: the ONNX through onnxruntime (NCHW float32, normalised with the metadata);
* the INT8 model: rknn-toolkit2's x86 simulator on uint8 NHWC crops (mean/std inside the
  model). The simulator only runs a model built in the same process (``load_onnx`` + ``build``;
  a ``load_rknn`` model cannot run there), so ``verify`` rebuilds it from the ONNX with the
  build options recorded in the ``.rknn``'s sidecar, or ``build-rknn --verify`` hands over
  its live toolkit object. A second ``.onnx`` instead of the ``.rknn`` compares two float
  models (the same file twice must give OKS 1.0).

Measures (float = reference, per person ``p`` and joint ``k``):

* heatmap cosine: cosine similarity of the flattened ``(K, H, W)`` maps;
* keypoint error in *input* pixels: decoded heatmap peaks (quarter offset) times the
  input/heatmap stride;
* OKS agreement: ``exp(-d^2 / (2 * area * kappa_k^2))`` with ``d`` the frame-pixel distance of
  the two predictions, ``area`` the person's area (COCO ``area`` or box w*h) and
  ``kappa_k = 2 * sigma_k`` (COCO's definition, sigmas from the keypoint set); every joint
  counts, visible or not; the per-person OKS is its mean over joints;
* with COCO annotations, the keypoint AP of both models (pycocotools, boxes as given).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from host_tools.calib import crop_samples, load_onnx_meta, load_samples
from host_tools.det_build import box_agreement, build_detector_rknn, images_in, is_detector_onnx
from host_tools.errors import UserError
from host_tools.rknn_build import build_rknn
from host_tools.rknn_toolkit import BuildOptions, _call, file_sha256, toolkit_log


# --------------------------------------------------------------------------- runners

def _batched(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, batch: int) -> np.ndarray:
    """Run ``fn`` over ``x`` in fixed batches of ``batch`` (the last one zero-padded)."""
    outs = []
    b = max(1, int(batch))
    for i in range(0, len(x), b):
        chunk = x[i:i + b]
        n = len(chunk)
        if n < b:
            chunk = np.concatenate([chunk, np.zeros((b - n,) + chunk.shape[1:], chunk.dtype)])
        outs.append(np.asarray(fn(chunk))[:n])
    return np.concatenate(outs).astype(np.float32)


def onnx_runner(onnx_path: str | Path) -> Callable[[np.ndarray], np.ndarray]:
    """``crops (N, h, w, 3) uint8 in the model's colour order -> heatmaps (N, K, H, W) float32``."""
    import onnxruntime as ort

    meta = load_onnx_meta(onnx_path)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    fixed = inp.shape[0] if isinstance(inp.shape[0], int) else 0
    mean = np.asarray(meta.mean, np.float32)
    std = np.asarray(meta.std, np.float32)

    def run(crops: np.ndarray) -> np.ndarray:
        x = ((crops.astype(np.float32) - mean) / std).transpose(0, 3, 1, 2)
        x = np.ascontiguousarray(x)
        return _batched(lambda c: sess.run(None, {inp.name: c})[0], x, fixed or 1)

    return run


def rknn_runner(rk, batch: int = 1, log: Optional[Path] = None) -> Callable[[np.ndarray], np.ndarray]:
    """Simulator runner for a live toolkit2 object: uint8 NHWC crops -> float32 heatmaps."""
    _call(log, "init_runtime (simulator)", rk.init_runtime)

    def run(crops: np.ndarray) -> np.ndarray:
        def one(c):
            with toolkit_log(log):
                out = rk.inference(inputs=[c], data_format="nhwc")
            if out is None:
                raise RuntimeError(f"simulator inference returned nothing (log: {log})")
            return out[0]

        return _batched(one, crops, batch)

    return run


# --------------------------------------------------------------------------- comparison

def heatmap_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-person cosine of ``(N, K, H, W)`` maps -> ``(N,)``; 1.0 where both are all zero."""
    fa = a.reshape(len(a), -1).astype(np.float64)
    fb = b.reshape(len(b), -1).astype(np.float64)
    na, nb = np.linalg.norm(fa, axis=1), np.linalg.norm(fb, axis=1)
    cos = (fa * fb).sum(1) / np.maximum(na * nb, 1e-30)
    return np.where((na == 0) & (nb == 0), 1.0, cos)


def compare(ref: np.ndarray, test: np.ndarray, centers: np.ndarray, scales: np.ndarray, areas: np.ndarray,
            meta) -> Dict[str, Any]:
    """Agreement of two models' heatmaps on the same crops.

    Args:
        ref, test: ``(N, K, H, W)`` float32 heatmaps (float model, model under test).
        centers, scales: ``(N, 2)`` crop centers (frame px) and scales (200-px units).
        areas: ``(N,)`` person areas in frame px^2 for OKS.
        meta: the ONNX :class:`~edgepose.metadata.ModelMeta`.

    Returns:
        Summary dict plus ``coords``/``scores`` of both (frame pixels) under ``"_preds"``.
    """
    from edgepose.decode import decode
    from edgepose.geometry import get_affine_transform
    from edgepose.keypoints import get_keypoint_set

    n, k, hh, hw = ref.shape
    inv = get_affine_transform(centers, scales, 0.0, tuple(meta.heatmap_size), inv=True).reshape(-1, 2, 3) \
        if n else np.zeros((0, 2, 3))
    c_ref, s_ref = decode(ref, inv)
    c_test, s_test = decode(test, inv)
    h_ref, _ = decode(ref)
    h_test, _ = decode(test)
    stride = np.array([meta.input_size[0] / hw, meta.input_size[1] / hh])
    err_in = np.linalg.norm((h_ref - h_test) * stride, axis=2)  # (N, K) input pixels
    try:
        sig = get_keypoint_set(meta.keypoint_set).sigmas_array()
    except ValueError:
        sig = np.full(k, 0.05)
    if len(sig) != k:
        sig = np.full(k, 0.05)
    d2 = ((c_ref.astype(np.float64) - c_test) ** 2).sum(2)
    area = np.maximum(np.asarray(areas, np.float64), 1.0)[:, None]
    kappa = 2 * sig  # COCO's per-joint constant: its sigmas are half of kappa (vars = (2 sigma)^2)
    oks = np.exp(-d2 / (2 * area * kappa[None] ** 2))  # (N, K)
    cos = heatmap_cosine(ref, test)
    try:
        names = list(get_keypoint_set(meta.keypoint_set).joints)
    except ValueError:
        names = [f"joint{j}" for j in range(k)]
    per_joint = [
        {"joint": names[j] if j < len(names) else f"joint{j}", "error_px_mean": float(err_in[:, j].mean()),
         "error_px_p95": float(np.percentile(err_in[:, j], 95)), "error_px_max": float(err_in[:, j].max()),
         "oks_mean": float(oks[:, j].mean()), "peak_agreement": float((err_in[:, j] == 0).mean())}
        for j in range(k)] if n else []
    return {
        "persons": int(n),
        "heatmap_cosine": {"mean": float(cos.mean()) if n else None, "min": float(cos.min()) if n else None},
        "keypoint_error_input_px": {"mean": float(err_in.mean()) if n else None,
                                    "p95": float(np.percentile(err_in, 95)) if n else None,
                                    "max": float(err_in.max()) if n else None},
        "oks": {"mean": float(oks.mean()) if n else None, "min_person": float(oks.mean(1).min()) if n else None},
        "per_joint": per_joint,
        "_preds": {"ref": (c_ref, s_ref), "test": (c_test, s_test)},
    }


def coco_ap(ann_path: Path, samples, coords: np.ndarray, scores: np.ndarray) -> Optional[float]:
    """Keypoint AP of predictions on the annotated images (COCOeval, boxes as given).

    A person's score is its box score times the mean of its joint scores above 0.2 (the
    reference rescoring). Returns None when the file has no keypoint annotations.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from edgepose.nms import rescore

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann_path))
    if not any(a.get("num_keypoints", 0) for a in gt.dataset.get("annotations", [])):
        return None
    box_scores = np.array([s.score for s in samples], np.float64)
    person = rescore(box_scores, scores)
    results = []
    for i, s in enumerate(samples):
        kp = np.concatenate([coords[i], scores[i][:, None]], 1).reshape(-1)
        results.append({"image_id": int(s.image_id), "category_id": 1, "keypoints": [float(v) for v in kp],
                        "score": float(person[i])})
    if not results:
        return None
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, "keypoints")
        ev.params.imgIds = sorted({int(s.image_id) for s in samples})
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0])


def plot_report(report: Dict[str, Any], path: str | Path) -> Path:
    """Two panels: per-joint keypoint error (mean, bar to p95) and per-joint OKS agreement."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pj = report["per_joint"]
    names = [j["joint"] for j in pj]
    x = np.arange(len(pj))
    mean = np.array([j["error_px_mean"] for j in pj])
    p95 = np.array([j["error_px_p95"] for j in pj])
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(max(6, 0.5 * len(pj) + 2), 7), sharex=True)
    a1.bar(x, mean, yerr=[np.zeros_like(mean), np.maximum(p95 - mean, 0)], capsize=3, color="tab:blue")
    a1.set_ylabel("keypoint error (input px)\nmean, bar to p95")
    a1.set_title(f"{report['test_model']} vs {report['reference_model']}: {report['persons']} persons, "
                 f"OKS {report['oks']['mean']:.3f}, cosine {report['heatmap_cosine']['mean']:.4f}", fontsize=9)
    a2.bar(x, [j["oks_mean"] for j in pj], color="tab:green")
    a2.set_ylim(0, 1.05)
    a2.set_ylabel("OKS agreement")
    a2.set_xticks(x)
    a2.set_xticklabels(names, rotation=60, ha="right", fontsize=8)
    fig.tight_layout()
    fig.savefig(str(path), dpi=100)
    plt.close(fig)
    return Path(path)


# --------------------------------------------------------------------------- person detectors

def verify_detector(onnx_path: str | Path, test_model: str | Path, images: Optional[str | Path], ann=None,
                    max_images: int = 100, report_path: Optional[str | Path] = None, rknn_obj=None,
                    score_thr: float = 0.25, iou_thr: float = 0.45, force: bool = False,
                    log: Optional[Path] = None) -> Dict[str, Any]:
    """Float ONNX vs ``.rknn`` (simulator; rebuilt from its sidecar unless ``rknn_obj``) or a
    second ``.onnx``, on the same letterboxed images; writes and returns the JSON report."""
    import cv2

    from edgepose.detect import PersonDetector, decode_outputs, letterbox_input

    t0 = time.perf_counter()
    test_model = Path(test_model)
    report_path = Path(report_path) if report_path else test_model.with_name(test_model.name + ".verify.json")
    if report_path.exists() and not force:
        raise UserError(f"{report_path}: already exists; choose another --report or pass --force")
    if images is None:
        raise UserError("verify: a detector is compared on whole images; pass --images DIR (and optionally --ann)")
    paths = images_in(images, ann, max_images)
    ref_det = PersonDetector(onnx_path, score_thr=score_thr, iou_thr=iou_thr)
    meta, layout = ref_det.meta, ref_det.layout
    frames = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in paths]
    print(f"verify: {len(paths)} images from {images}; float model {onnx_path} (onnxruntime)", file=sys.stderr)
    ref = [ref_det.detect_input(f)[0] for f in frames]
    ref_det.close()
    tmp, own = None, None
    if test_model.suffix == ".onnx":
        with PersonDetector(test_model, score_thr=score_thr, iou_thr=iou_thr) as t:
            test = [t.detect_input(f)[0] for f in frames]
        backend = "onnxruntime"
    elif test_model.suffix == ".rknn":
        from edgepose.detect import DetectorError, DetectorMeta, identify_head, read_detector_sidecar

        rk = rknn_obj
        side = read_detector_sidecar(test_model)
        if side is None:
            raise UserError(f"{test_model}: no detector sidecar ({test_model.name}.json); build it with "
                            "host_tools build-rknn, which writes it")
        # the built model's own layout: a split head has other outputs than the float model
        try:
            test_meta = DetectorMeta.from_dict(side)
            shapes = [o["shape"] for o in test_meta.outputs if "shape" in o]
            meta_out = meta  # a sidecar without output shapes: the float model's layout (and meta)
            if shapes:
                layout = identify_head(shapes, test_meta.input_size, test_meta.head, test_meta.strides,
                                       str(test_model))
                meta_out = test_meta
        except DetectorError as exc:
            raise UserError(str(exc)) from None
        if rk is None:
            log = report_path.with_name(report_path.name + ".toolkit.log")
            rk, tmp = rebuild_for_simulator(onnx_path, test_model, side.get("build") or {}, log)
            own = rk
        try:
            _call(log, "init_runtime (simulator)", rk.init_runtime)
            test = []
            for f in frames:
                x, _ = letterbox_input(f, meta, "nhwc")
                with toolkit_log(log):
                    outs = rk.inference(inputs=[x], data_format="nhwc")
                if outs is None:
                    raise UserError(f"simulator inference returned nothing (toolkit log: {log})")
                test.append(decode_outputs(outs, meta_out, layout, score_thr, iou_thr)[0])  # simulator: float32
        finally:
            if own is not None:
                import shutil

                with toolkit_log(log):
                    own.release()
                shutil.rmtree(tmp, ignore_errors=True)
        backend = "rknn-toolkit2 simulator"
    else:
        raise UserError(f"{test_model}: expected a .rknn (or a second .onnx to compare float models)")
    report = {"reference_model": str(onnx_path), "test_model": str(test_model), "test_backend": backend,
              "kind": "person detector", "head": meta.head, "test_head": layout.head, "score_thr": score_thr,
              "iou_thr": iou_thr,
              **box_agreement(ref, test)}
    report["seconds"] = round(time.perf_counter() - t0, 2)
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    report["report"] = str(report_path)
    return report


def detector_summary_line(r: Dict[str, Any]) -> str:
    fmt = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
    return (f"verify: detector boxes: recall@0.5 {fmt(r['recall_at_0.5'])}, precision@0.5 {fmt(r['precision_at_0.5'])}, "
            f"mean IoU of matched {fmt(r['mean_iou_matched'])} ({r['matched']} matched of {r['boxes_float']} float / "
            f"{r['boxes_test']} test boxes on {r['images']} images)")


# --------------------------------------------------------------------------- driver

def rebuild_for_simulator(onnx_path: str | Path, test_model: Path, build: Dict[str, Any], log: Path):
    """Rebuild ``test_model`` in-process from its sidecar's ``build`` options (the simulator only
    runs a model built in the same process). Returns ``(live toolkit object, temp folder)``; the
    caller releases the object and removes the folder."""
    b = dict(build)
    if not b:
        raise UserError(f"{test_model}: its sidecar has no build options; rebuild it with host_tools build-rknn")
    known = BuildOptions.__dataclass_fields__
    opts = BuildOptions(**{k: v for k, v in b.items() if k in known})
    if opts.calib and not Path(opts.calib).is_file():
        raise UserError(f"{test_model}: was calibrated with {opts.calib}, which is gone; rebuild, or restore the list")
    want = b.get("onnx_sha256")
    if want and want != file_sha256(onnx_path):
        raise UserError(f"{test_model}: was built from another ONNX than {onnx_path} (sha256 differs); "
                        f"pass the ONNX it was built from ({b.get('onnx', '?')})")
    tmp = Path(tempfile.mkdtemp(prefix="edgepose_verify_"))
    print(f"verify: rebuilding {test_model.name} in-process for the simulator (target {opts.target}); "
          f"toolkit log {log}", file=sys.stderr)
    try:
        build = build_detector_rknn if is_detector_onnx(onnx_path) else build_rknn
        res = build(onnx_path, tmp / test_model.name, opts, keep=True, log_path=log)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return res.rknn, tmp


@dataclass
class PersonCrops:
    """The persons both models run on: crops ``(N, h, w, 3)`` uint8 in the model's colour
    order, their centers/scales (frame px, 200-px units) and areas (frame px^2)."""

    sample_set: Any
    samples: List[Any]
    crops: np.ndarray
    centers: np.ndarray
    scales: np.ndarray
    areas: np.ndarray


def person_crops(meta, ann=None, images=None, det=None, det_thr: float = 0.5, max_persons: int = 100,
                 prog: str = "verify") -> PersonCrops:
    """Load the persons (annotations or detections), keep at most ``max_persons`` spread over
    the file, and cut their crops as the device does."""
    s = load_samples(ann, images, det, det_thr)
    samples = s.samples
    if len(samples) > max_persons:
        idx = np.linspace(0, len(samples) - 1, max_persons).round().astype(int)
        samples = [samples[i] for i in idx]
    print(f"{prog}: {len(samples)} person crops from {ann or det}", file=sys.stderr)
    crops, centers, scales = crop_samples(samples, meta.input_size, meta.color)
    areas = np.array([p.area or p.box[2] * p.box[3] for p in samples])
    return PersonCrops(s, samples, crops, centers, scales, areas)


def agreement(ref: np.ndarray, test: np.ndarray, pc: PersonCrops, meta) -> Dict[str, Any]:
    """:func:`compare` of the two models' heatmaps on ``pc``, plus both keypoint APs when the
    persons come with COCO annotations (or detections on an annotated set)."""
    cmp = compare(ref, test, pc.centers, pc.scales, pc.areas, meta)
    preds = cmp.pop("_preds")
    s = pc.sample_set
    if s.ann_path is not None and s.kind in ("coco", "det"):
        cmp["ap"] = {"reference": coco_ap(s.ann_path, pc.samples, *preds["ref"]),
                     "test": coco_ap(s.ann_path, pc.samples, *preds["test"])}
    return cmp


def verify(onnx_path: str | Path, test_model: str | Path, ann=None, images=None, det=None, det_thr: float = 0.5,
           max_persons: int = 100, report_path: Optional[str | Path] = None, plot_path: Optional[str | Path] = None,
           accuracy_dir: Optional[str | Path] = None, rknn_obj=None, rknn_meta=None, force: bool = False,
           log: Optional[Path] = None) -> Dict[str, Any]:
    """Run the float ONNX and the model under test on the same crops and write the report.

    Args:
        onnx_path: float reference (edgepose ONNX with metadata).
        test_model: ``.rknn`` (rebuilt in-process from its sidecar's build options for the
            simulator, unless ``rknn_obj`` is given) or another ``.onnx``.
        ann, images, det, det_thr: the persons (see :func:`host_tools.calib.load_samples`).
        max_persons: at most this many crops, spread over the file.
        report_path, plot_path: JSON report and PNG plot (defaults beside ``test_model``).
        accuracy_dir: keep toolkit2 ``accuracy_analysis`` output (per-layer errors) here.
        rknn_obj, rknn_meta: a live, built toolkit2 object and its sidecar meta.

    Returns:
        The report dict (also written as JSON).
    """
    t0 = time.perf_counter()
    meta = load_onnx_meta(onnx_path)
    test_model = Path(test_model)
    report_path = Path(report_path) if report_path else test_model.with_name(test_model.name + ".verify.json")
    plot_path = Path(plot_path) if plot_path else report_path.with_suffix(".png")
    for p in (report_path, plot_path):
        if p.exists() and not force:
            raise UserError(f"{p}: already exists; choose another --report/--plot or pass --force")
    is_onnx = test_model.suffix == ".onnx"
    if not is_onnx and test_model.suffix != ".rknn":
        raise UserError(f"{test_model}: expected a .rknn (or a second .onnx to compare float models)")
    if rknn_obj is None and not test_model.is_file():
        raise UserError(f"{test_model}: not found; build it with host_tools build-rknn")

    pc = person_crops(meta, ann, images, det, det_thr, max_persons)
    crops = pc.crops

    print(f"verify: float model {onnx_path} (onnxruntime)", file=sys.stderr)
    ref = onnx_runner(onnx_path)(crops)
    own = None
    if is_onnx:
        print(f"verify: test model {test_model} (onnxruntime)", file=sys.stderr)
        test = onnx_runner(test_model)(crops)
        test_meta = load_onnx_meta(test_model)
    else:
        rk = rknn_obj
        test_meta = rknn_meta
        if rk is None:
            from edgepose.metadata import MetadataError, read_sidecar

            try:
                test_meta = read_sidecar(test_model)
            except MetadataError as exc:
                raise UserError(str(exc)) from None
            log = report_path.with_name(report_path.name + ".toolkit.log")
            rk, tmp = rebuild_for_simulator(onnx_path, test_model, dict(test_meta.build), log)
            own = rk
        try:
            if accuracy_dir is not None:
                _accuracy_analysis(rk, crops, Path(accuracy_dir), log)
            print(f"verify: test model {test_model} (rknn-toolkit2 simulator)", file=sys.stderr)
            test = rknn_runner(rk, int(test_meta.batch or 1) if test_meta else 1, log)(crops)
        finally:
            if own is not None:
                with toolkit_log(log):
                    own.release()
                shutil.rmtree(tmp, ignore_errors=True)

    report: Dict[str, Any] = {
        "reference_model": str(onnx_path), "test_model": str(test_model),
        "test_backend": "onnxruntime" if is_onnx else "rknn-toolkit2 simulator",
        "target": getattr(test_meta, "target", ""), "build": getattr(test_meta, "build", {}),
        "data": str(ann or det), **agreement(ref, test, pc, meta),
    }
    if accuracy_dir is not None:
        report["accuracy_analysis_dir"] = str(Path(accuracy_dir).resolve())
    report["seconds"] = round(time.perf_counter() - t0, 2)
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    if report["persons"]:
        plot_path = plot_report(report, plot_path)
        report["plot"] = str(plot_path)
        report_path.write_text(json.dumps(report, indent=2) + "\n")
    report["report"] = str(report_path)
    return report


def _accuracy_analysis(rk, crops: np.ndarray, out_dir: Path, log: Optional[Path]) -> None:
    """toolkit2 per-layer fp32-vs-quantized errors for the first crop, kept in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    inp = out_dir / "input_0.npy"
    np.save(inp, np.ascontiguousarray(crops[0].transpose(2, 0, 1)[None]))
    print(f"verify: accuracy_analysis -> {out_dir}", file=sys.stderr)
    _call(log, "accuracy_analysis", rk.accuracy_analysis, inputs=[str(inp)], output_dir=str(out_dir))


def summary_line(report: Dict[str, Any]) -> str:
    """One line for the terminal: the OKS agreement first."""
    line = (f"verify: OKS agreement {report['oks']['mean']:.4f} (worst person {report['oks']['min_person']:.4f}), "
            f"heatmap cosine {report['heatmap_cosine']['mean']:.5f}, keypoint error "
            f"{report['keypoint_error_input_px']['mean']:.2f} px mean / {report['keypoint_error_input_px']['p95']:.2f} "
            f"px p95 (input pixels) over {report['persons']} persons")
    ap = report.get("ap")
    if ap and ap.get("reference") is not None:
        line += f"; AP float {ap['reference']:.3f} vs test {ap['test']:.3f}"
    return line


def add_verify_data_arguments(p: argparse.ArgumentParser, with_images: bool = True) -> None:
    """Data/report options shared by ``verify`` and ``build-rknn --verify``."""
    p.add_argument("--ann", help="COCO keypoint / MPII annotation json (COCO gives AP too)")
    p.add_argument("--det", help="person detections json (COCO results format)")
    if with_images:
        p.add_argument("--images", help="frames folder")
    p.add_argument("--det-thr", type=float, default=0.5, help="minimum detection score (default 0.5)")
    p.add_argument("--max-persons", type=int, default=100, help="at most this many crops (default 100)")
    p.add_argument("--report", help="JSON report (default <model>.verify.json)")
    p.add_argument("--plot", help="PNG plot (default: the report name with .png)")
    p.add_argument("--accuracy-analysis", metavar="DIR", help="keep rknn-toolkit2 accuracy_analysis output in DIR")


def verify_from_args(args: argparse.Namespace, rknn_obj=None, rknn_meta=None) -> int:
    """Shared by ``verify`` and ``build-rknn --verify``."""
    if args.max_persons < 1:
        raise UserError(f"--max-persons {args.max_persons}: must be at least 1")
    if is_detector_onnx(args.model):
        test = getattr(args, "test_model", None) or args.output
        rep = verify_detector(args.model, test, args.images, args.ann, args.max_persons, args.report, rknn_obj,
                              force=getattr(args, "force", False),
                              log=Path(args.output + ".log") if rknn_obj is not None else None)
        print(detector_summary_line(rep))
        print(f"verify: report {rep['report']}")
        return 0
    if not (args.ann or args.det):
        raise UserError("verify: pass --ann ANNOTATIONS.json (or --det DETECTIONS.json) and --images DIR for the crops")
    test = getattr(args, "test_model", None) or args.output
    rep = verify(args.model, test, args.ann, args.images, args.det, args.det_thr, args.max_persons, args.report,
                 args.plot, args.accuracy_analysis, rknn_obj, rknn_meta, force=getattr(args, "force", False),
                 log=Path(args.output + ".log") if rknn_obj is not None else None)
    print(summary_line(rep))
    print(f"verify: report {rep['report']}" + (f", plot {rep['plot']}" if "plot" in rep else ""))
    return 0


def register(subparsers) -> None:
    """Add ``host_tools verify``."""
    p = subparsers.add_parser(
        "verify", help="compare the float ONNX with the INT8 .rknn (simulator) on real person crops",
        description="Run the float ONNX (onnxruntime) and the .rknn (rknn-toolkit2 simulator, rebuilt in-process "
                    "from the sidecar's build options) on the same crops; report heatmap cosine, keypoint error, "
                    "OKS agreement and AP; write JSON + PNG. For a person detector ONNX: the same letterboxed "
                    "--images, reporting box recall / precision at IoU 0.5 and the mean IoU of matched boxes.")
    p.add_argument("model", help="float ONNX (reference)")
    p.add_argument("test_model", help=".rknn built by build-rknn (or a second .onnx)")
    add_verify_data_arguments(p)
    p.add_argument("--force", action="store_true", help="replace an existing report/plot")
    p.set_defaults(func=verify_from_args)
