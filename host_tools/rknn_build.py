"""``host_tools build-rknn``: ONNX (with edgepose metadata) -> quantized ``.rknn`` + sidecar.

Input convention of the built model: the board feeds uint8 NHWC crops in the colour order
recorded in the metadata (``color``), cut by :func:`edgepose.crop.warp_crops` with
``to_rgb=(color == "rgb")``; the ONNX metadata's mean/std (same order) are baked into the rknn
config, so no normalisation happens on the CPU. The sidecar ``model.rknn.json`` repeats the
ONNX metadata with ``layout="nhwc"``, the output dtype, the target and the build options.

Toolkits: rk3562/rk3566/rk3568/rk3576/rk3588/rv1106/rv1103 use rknn-toolkit2;
rk1808/rv1109/rv1126 need rknn-toolkit 1.x (same ``from rknn.api import RKNN``), whose config
differs (see :func:`toolkit1_kwargs`). Whichever is installed decides what can be built.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

from host_tools.calib import (MIN_IMAGES, RECOMMENDED_IMAGES, check_mean_std, validate_calibration_list,
                              write_resolved_list, IMAGE_EXTS)
from host_tools.errors import UserError
from edgepose.metadata import file_sha256  # ties a .rknn to the ONNX it was built from

TOOLKIT2_TARGETS = ("rk3562", "rk3566", "rk3568", "rk3576", "rk3588", "rv1106", "rv1103")
TOOLKIT1_TARGETS = ("rk1808", "rv1109", "rv1126")
ALGORITHMS = ("normal", "mmse", "kl_divergence")
METHODS = ("channel", "layer")
# edgepose name -> (toolkit2 quantized_dtype, toolkit1 quantized_dtype, output dtype in the sidecar)
DTYPES: Dict[str, Tuple[Optional[str], Optional[str], str]] = {
    "w8a8": ("w8a8", "asymmetric_affine-u8", "int8"),
    "w8a16": ("w8a16", None, "int16"),
    "w16a16i_dfp": ("w16a16i_dfp", "dynamic_fixed_point-i16", "int16"),
    "asymmetric_affine-u8": (None, "asymmetric_affine-u8", "uint8"),
    "dynamic_fixed_point-i8": (None, "dynamic_fixed_point-i8", "int8"),
    "dynamic_fixed_point-i16": (None, "dynamic_fixed_point-i16", "int16"),
}


class ToolkitError(RuntimeError):
    """The toolkit refused or crashed; the message names the stage and the log file."""


@dataclass
class BuildOptions:
    """Everything that decides the .rknn (also what ``verify`` needs to rebuild it).

    Attributes:
        target: chip, e.g. ``"rk3588"``.
        calib: calibration list file; None builds a float16 model (no quantization).
        dtype: quantized dtype (:data:`DTYPES`), ``w8a8`` = INT8.
        algorithm: ``normal`` | ``mmse`` | ``kl_divergence``.
        method: ``channel`` | ``layer`` (per-channel or per-tensor weight scales).
        optimization_level: 0..3 (toolkit default 3).
        hybrid: ``[[start_tensor, end_tensor], ...]`` subgraphs kept in float16.
        batch: ``rknn_batch_size`` (None: the ONNX batch).
        mean, std: override the metadata's normalisation (model colour order).
        pre_compile: toolkit 1.x only: precompile for the board (smaller, faster load).
    """

    target: str = "rk3588"
    calib: Optional[str] = None
    dtype: str = "w8a8"
    algorithm: str = "normal"
    method: str = "channel"
    optimization_level: int = 3
    hybrid: List[List[str]] = field(default_factory=list)
    batch: Optional[int] = None
    mean: Optional[List[float]] = None
    std: Optional[List[float]] = None
    pre_compile: bool = False

    @property
    def quantize(self) -> bool:
        return self.calib is not None


# --------------------------------------------------------------------------- toolkit detection

def toolkit_major() -> Tuple[Optional[int], str]:
    """``(1 | 2 | None, version)`` of the installed ``rknn.api`` toolkit."""
    from importlib import metadata

    for dist, major in (("rknn-toolkit2", 2), ("rknn_toolkit2", 2), ("rknn-toolkit", 1), ("rknn_toolkit", 1)):
        try:
            return major, metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    try:
        import rknn.api  # noqa: F401  (installed without package metadata)
    except ImportError:
        return None, ""
    import inspect

    from rknn.api import RKNN

    params = inspect.signature(RKNN.config).parameters
    return (2 if "quantized_method" in params else 1), "unknown"


def check_target(target: str, major: Optional[int], version: str = "") -> None:
    """Refuse a target the installed toolkit cannot build, naming the toolkit it needs."""
    t = target.lower()
    if t not in TOOLKIT2_TARGETS + TOOLKIT1_TARGETS:
        raise UserError(f"--target {target}: unknown chip; choose one of {', '.join(TOOLKIT2_TARGETS + TOOLKIT1_TARGETS)}")
    if major is None:
        need = "rknn-toolkit2 (pip install --no-deps rknn-toolkit2==2.5.0, see docs/RKNN.md)" if t in TOOLKIT2_TARGETS \
            else "rknn-toolkit 1.x (1.7.5 wheels from Rockchip, Python 3.6/3.8)"
        raise UserError(f"--target {t}: no RKNN toolkit is installed (rknn.api missing); {t} needs {need}")
    if t in TOOLKIT1_TARGETS and major != 1:
        raise UserError(f"--target {t}: {t} needs rknn-toolkit 1.x (last 1.7.5, Python 3.6/3.8, not on PyPI) in "
                        f"its own environment; the installed rknn-toolkit2 {version} only builds {', '.join(TOOLKIT2_TARGETS)}")
    if t in TOOLKIT2_TARGETS and major != 2:
        raise UserError(f"--target {t}: {t} needs rknn-toolkit2; the installed rknn-toolkit {version} (1.x) "
                        f"only builds {', '.join(TOOLKIT1_TARGETS)}")


# --------------------------------------------------------------------------- config mapping

def _mean_std(meta, opts: BuildOptions) -> Tuple[List[float], List[float]]:
    mean = list(opts.mean) if opts.mean is not None else list(meta.mean)
    std = list(opts.std) if opts.std is not None else list(meta.std)
    check_mean_std(mean, std)
    return [float(v) for v in mean], [float(v) for v in std]


def _lists_images(paths) -> bool:
    return any(Path(p).suffix.lower() in IMAGE_EXTS for p in paths)


def toolkit2_kwargs(meta, opts: BuildOptions, calib_has_images: bool = False) -> Dict[str, Any]:
    """``RKNN.config(**kwargs)`` for rknn-toolkit2.

    ``quant_img_RGB2BGR``: the toolkit reads jpg/png calibration entries as RGB; a model that
    expects BGR then needs the swap. ``.npy`` crops are taken as they are (already in the
    model's order), so the flag stays False for them.
    """
    mean, std = _mean_std(meta, opts)
    tk2 = DTYPES[opts.dtype][0]
    if tk2 is None:
        raise UserError(f"--dtype {opts.dtype}: a toolkit 1.x type; for {opts.target} use w8a8, w8a16 or w16a16i_dfp")
    return dict(
        mean_values=[mean], std_values=[std], target_platform=opts.target,
        quantized_dtype=tk2, quantized_algorithm=opts.algorithm, quantized_method=opts.method,
        optimization_level=int(opts.optimization_level),
        quant_img_RGB2BGR=bool(calib_has_images and meta.color == "bgr"),
    )


def toolkit1_kwargs(meta, opts: BuildOptions) -> Dict[str, Any]:
    """``RKNN.config(**kwargs)`` for rknn-toolkit 1.x (RK1808/RV1109/RV1126).

    1.x names the dtypes ``asymmetric_affine-u8`` (its default, uint8 in/out) and
    ``dynamic_fixed_point-i8/i16``; w8a8 maps to ``asymmetric_affine-u8``. It has no per-channel
    switch (``quantized_method``); ``reorder_channel '0 1 2'`` keeps the fed order, which is
    the model's order here, like toolkit2 without RGB2BGR.
    """
    mean, std = _mean_std(meta, opts)
    tk1 = DTYPES[opts.dtype][1]
    if tk1 is None:
        raise UserError(f"--dtype {opts.dtype}: not available in toolkit 1.x; use w8a8 (asymmetric_affine-u8), "
                        "dynamic_fixed_point-i8 or dynamic_fixed_point-i16")
    return dict(
        mean_values=[mean], std_values=[std], reorder_channel="0 1 2",
        target_platform=[opts.target], quantized_dtype=tk1,
        quantized_algorithm=opts.algorithm, optimization_level=int(opts.optimization_level),
        batch_size=int(opts.batch or 1),
    )


def output_dtype(opts: BuildOptions, major: int) -> str:
    """dtype of the built model's output tensor (what the board reads)."""
    if not opts.quantize:
        return "float16"
    if major == 1:
        tk1 = DTYPES[opts.dtype][1]
        return {"asymmetric_affine-u8": "uint8", "dynamic_fixed_point-i8": "int8"}.get(tk1, "int16")
    return DTYPES[opts.dtype][2]


# --------------------------------------------------------------------------- helpers

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


def final_conv_span(onnx_path: str | Path) -> List[str]:
    """``[input tensor, output tensor]`` of the last Conv whose output is a graph output
    (PoseResNet's ``final_layer``): the span ``--hybrid final`` keeps in float."""
    import onnx

    g = onnx.load(str(onnx_path), load_external_data=False).graph
    outs = {o.name for o in g.output}
    for node in reversed(g.node):
        if node.op_type == "Conv" and node.output[0] in outs:
            return [node.input[0], node.output[0]]
    raise UserError(f"{onnx_path}: no Conv produces a graph output; pass --hybrid START:END tensor names instead")


def _graph_outputs(onnx_path: str | Path) -> set:
    import onnx

    return {o.name for o in onnx.load(str(onnx_path), load_external_data=False).graph.output}


def parse_hybrid(specs: List[str], onnx_path: str | Path) -> List[List[str]]:
    """``["final", "a:b"]`` -> ``[[in, out], [a, b]]``; tensor names checked against the graph."""
    import onnx

    if not specs:
        return []
    g = onnx.load(str(onnx_path), load_external_data=False).graph
    names = {t for n in g.node for t in list(n.input) + list(n.output)} | {i.name for i in g.input}
    spans = []
    for s in specs:
        if s == "final":
            spans.append(final_conv_span(onnx_path))
            continue
        parts = s.split(":")
        if len(parts) != 2 or not all(parts):
            raise UserError(f"--hybrid {s}: expected START:END (ONNX tensor names) or 'final'")
        for t in parts:
            if t not in names:
                raise UserError(f"--hybrid {s}: tensor {t!r} is not in {onnx_path}; list names with onnx or Netron")
        spans.append(parts)
    return spans




class Stages:
    """Numbered stage lines on stderr ("[2/5] load_onnx ... 0.4 s")."""

    def __init__(self, total: int, prefix: str = "build-rknn") -> None:
        self.total, self.n, self.prefix = total, 0, prefix

    @contextlib.contextmanager
    def stage(self, text: str) -> Iterator[None]:
        self.n += 1
        t0 = time.perf_counter()
        print(f"{self.prefix}: [{self.n}/{self.total}] {text} ...", file=sys.stderr, flush=True)
        yield
        print(f"{self.prefix}: [{self.n}/{self.total}] done ({time.perf_counter() - t0:.1f} s)",
              file=sys.stderr, flush=True)


@contextlib.contextmanager
def toolkit_log(log_path: Optional[Path]) -> Iterator[None]:
    """Send everything the toolkit prints (its logger, tqdm bars, native code) to ``log_path``.

    The toolkit writes through its own handlers and C++ code, so only file-descriptor
    redirection catches all of it; our stage lines go to the saved stderr in between.
    """
    if log_path is None:
        yield
        return
    import logging

    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    saved_py = sys.stdout, sys.stderr
    with open(log_path, "a", buffering=1, errors="replace") as f:
        # The toolkit's logging handlers hold the sys.stderr of their creation time, which is
        # not fd 2 when a caller (pytest, a notebook) replaced sys.stderr: point them here too.
        handlers = [h for h in logging.getLogger("rknnLogger").handlers
                    if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]
        old_streams = [h.setStream(f) for h in handlers]
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        sys.stdout = sys.stderr = f
        try:
            yield
        finally:
            f.flush()
            sys.stdout, sys.stderr = saved_py
            for h in logging.getLogger("rknnLogger").handlers:  # incl. ones created inside
                if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler) and h.stream is f:
                    h.setStream(saved_py[1])
            for h, st in zip(handlers, old_streams):
                if st is not None and not getattr(st, "closed", False):
                    h.setStream(st)
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _last_error(log_path: Optional[Path]) -> str:
    if log_path is None or not log_path.is_file():
        return ""
    lines = [ln.strip() for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "Error" in ln or ln.startswith("E ") or "\x1b[1;31mE" in ln:
            return ln.replace("\x1b[1;31m", "").replace("\x1b[0m", "")[-300:]
    return lines[-1][-300:] if lines else ""


def _call(log_path: Optional[Path], what: str, fn, *a, **kw):
    """Run one toolkit call with its output in the log; -1 or an exception -> ToolkitError."""
    try:
        with toolkit_log(log_path):
            ret = fn(*a, **kw)
    except Exception as exc:  # the toolkit raises ValueError/AttributeError/... with tracebacks in the log
        raise ToolkitError(f"{what} failed: {str(exc).strip().splitlines()[-1][:300] if str(exc).strip() else type(exc).__name__}"
                           f" (full toolkit log: {log_path})") from None
    if isinstance(ret, int) and ret != 0:
        raise ToolkitError(f"{what} failed (returned {ret}): {_last_error(log_path)} (full toolkit log: {log_path})")
    return ret


# --------------------------------------------------------------------------- the build

@dataclass
class BuildResult:
    rknn_path: Path
    sidecar: Path
    meta: Any
    log: Optional[Path]
    seconds: float
    rknn: Any = None  # the live toolkit object when keep=True (simulator-ready)


def prepare(onnx_path: str | Path, opts: BuildOptions, workdir: Path):
    """Validate everything before the toolkit runs. Returns ``(meta, major, resolved list or None)``."""
    meta = load_onnx_meta(onnx_path)
    major, version = toolkit_major()
    check_target(opts.target, major, version)
    if opts.algorithm not in ALGORITHMS:
        raise UserError(f"--algorithm {opts.algorithm}: choose one of {', '.join(ALGORITHMS)}")
    if opts.method not in METHODS:
        raise UserError(f"--method {opts.method}: choose channel or layer")
    if opts.dtype not in DTYPES:
        raise UserError(f"--dtype {opts.dtype}: choose one of {', '.join(DTYPES)}")
    if not 0 <= int(opts.optimization_level) <= 3:
        raise UserError(f"--optimization-level {opts.optimization_level}: choose 0, 1, 2 or 3")
    if opts.batch is not None and not 1 <= opts.batch <= 32:
        raise UserError(f"--batch {opts.batch}: choose 1..32")
    _mean_std(meta, opts)
    if opts.hybrid and not opts.quantize:
        raise UserError("--hybrid: only for a quantized build; add --calib (without it the whole model is float16)")
    if opts.hybrid and major == 1:
        raise UserError("--hybrid: edgepose drives hybrid quantization through rknn-toolkit2 only")
    resolved = None
    if opts.quantize:
        paths = validate_calibration_list(opts.calib, opts.algorithm, meta.input_size)
        resolved = write_resolved_list(paths, workdir / "dataset.txt")
        if len(paths) < RECOMMENDED_IMAGES:
            print(f"build-rknn: note: {len(paths)} calibration crops (< {RECOMMENDED_IMAGES}); "
                  "fine for a test, use 50-200 for a real model", file=sys.stderr)
    return meta, major, resolved


def check_output(out_path: str | Path, force: bool) -> Path:
    """Refuse an output name that is not ``.rknn``, whose folder is missing, or that (or its
    sidecar) already exists without ``force``."""
    from edgepose.metadata import sidecar_path

    out = Path(out_path)
    if out.suffix != ".rknn":
        raise UserError(f"-o {out}: the output name must end in .rknn")
    if not out.parent.is_dir():
        raise UserError(f"-o {out}: folder {out.parent} does not exist; create it first")
    for p in (out, sidecar_path(out)):
        if p.exists() and not force:
            raise UserError(f"-o {out}: {p} already exists; choose another name or pass --force to replace it")
    return out


def build_rknn(onnx_path: str | Path, out_path: str | Path, opts: BuildOptions, force: bool = False,
               keep: bool = False, log_path: Optional[str | Path] = None) -> BuildResult:
    """Build ``out_path`` (.rknn) and its sidecar from an edgepose ONNX.

    Args:
        onnx_path: ONNX exported by ``host_tools export-onnx`` (metadata inside).
        out_path: the .rknn to write; refused if it exists unless ``force``.
        opts: :class:`BuildOptions`.
        keep: return the live RKNN object (toolkit2: ``init_runtime()`` works on the
            simulator, see :mod:`host_tools.verify`); the caller must ``release()`` it.
        log_path: where the toolkit's own output goes (default ``out_path + '.log'``).

    Raises:
        UserError: bad input, before the toolkit runs. ToolkitError: the toolkit failed.
    """
    from edgepose.metadata import ModelMeta, write_sidecar, sidecar_path

    t_start = time.perf_counter()
    out = check_output(out_path, force)
    log = Path(log_path) if log_path is not None else out.with_name(out.name + ".log")
    work = Path(tempfile.mkdtemp(prefix="edgepose_rknn_"))
    from host_tools.det_build import is_detector_onnx, prepare_detector

    detector = is_detector_onnx(onnx_path)
    try:
        meta, major, dataset = (prepare_detector if detector else prepare)(onnx_path, opts, work)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    if opts.hybrid:
        opts.hybrid = [list(s) for s in opts.hybrid]
    log.write_text("")
    stages = Stages(5 if not opts.hybrid else 6)
    with toolkit_log(log):
        rk = RKNN_factory()
    ok = False
    try:
        if major == 2:
            kw = toolkit2_kwargs(meta, opts, dataset is not None and _lists_images(dataset.read_text().split()))
        else:
            kw = toolkit1_kwargs(meta, opts)
        with stages.stage(f"config target={opts.target} dtype={opts.dtype if opts.quantize else 'float16'} "
                          f"algorithm={opts.algorithm} method={opts.method} mean={kw['mean_values'][0]} "
                          f"std={kw['std_values'][0]} colour={meta.color}"):
            try:
                _call(log, "config", rk.config, **kw)
            except ToolkitError as exc:  # config only judges the user's options: a user error
                raise UserError(f"options refused by the toolkit: {exc}") from None
        with stages.stage(f"load_onnx {onnx_path}"):
            _call(log, "load_onnx", rk.load_onnx, model=str(Path(onnx_path).resolve()))
        n_cal = len(dataset.read_text().split()) if dataset is not None else 0
        if opts.hybrid:
            rk = _hybrid_build(rk, kw, log, stages, dataset, opts, work)
        else:
            what = f"build INT8 with {n_cal} calibration crops" if opts.quantize else "build float16 (no --calib)"
            with stages.stage(what):
                bkw: Dict[str, Any] = dict(do_quantization=opts.quantize,
                                           dataset=str(dataset) if dataset is not None else None)
                if major == 2:
                    bkw["rknn_batch_size"] = opts.batch
                else:
                    bkw["pre_compile"] = bool(opts.pre_compile)
                    bkw["rknn_batch_size"] = int(opts.batch or 1)
                _call(log, "build", rk.build, **bkw)
        with stages.stage(f"export_rknn {out}"):
            _call(log, "export_rknn", rk.export_rknn, str(out))
        quants = [(0.0, 0)]
        if major == 2 and opts.quantize and DTYPES[opts.dtype][2] == "int8" and not opts.hybrid:
            quants = quant_params(rk, dataset, log)
        with stages.stage(f"sidecar {sidecar_path(out)}"):
            out_dtype = output_dtype(opts, major)
            if opts.hybrid and any(span[1] in _graph_outputs(onnx_path) for span in opts.hybrid):
                out_dtype = "float16"  # the float span reaches the output tensor
            build = asdict(opts)
            build.update(calib=str(Path(opts.calib).resolve()) if opts.calib else None, onnx=str(Path(onnx_path).resolve()),
                         onnx_sha256=file_sha256(onnx_path),
                         toolkit=f"rknn-toolkit{'2' if major == 2 else ''} {toolkit_major()[1]}",
                         mean=kw["mean_values"][0], std=kw["std_values"][0], calib_count=n_cal)
            if detector:
                from host_tools.det_build import detector_sidecar_meta

                new_meta = detector_sidecar_meta(meta, onnx_path, quants, out_dtype, opts, build,
                                                 kw["mean_values"][0], kw["std_values"][0])
            else:
                d = meta.to_dict()
                d.update(output_scale=quants[0][0], output_zero_point=quants[0][1])
                d.update(layout="nhwc", quantized=out_dtype, target=opts.target,
                         batch=int(opts.batch or meta.batch or 1))
                d["build"] = build
                d["mean"], d["std"] = kw["mean_values"][0], kw["std_values"][0]
                new_meta = ModelMeta.from_dict(d)
            side = write_sidecar(out, new_meta)
        ok = True
        return BuildResult(out, side, new_meta, log, time.perf_counter() - t_start, rk if keep else None)
    finally:
        if not (ok and keep):
            with toolkit_log(log):
                rk.release()
        shutil.rmtree(work, ignore_errors=True)


def output_quantization(rk, dataset: Path, log: Optional[Path]) -> Tuple[float, int]:
    """``(scale, zero_point)`` of the int8 ``heatmaps`` output (the first of :func:`quant_params`)."""
    return quant_params(rk, dataset, log)[0]


def quant_params(rk, dataset: Path, log: Optional[Path]) -> List[Tuple[float, int]]:
    """``(scale, zero_point)`` of every int8 output, in model order (real = (q - zp) * scale),
    for runtimes that read the raw int8 outputs; ``(0.0, 0)`` where it cannot be established.

    toolkit2 has no public call for it. Its quantizer keeps each output's calibrated range;
    asymmetric int8 then gives ``scale = (max - min) / 255`` and ``zp = round(-min / scale) - 128``
    (range widened to include 0). Each is checked on the simulator: the dequantized output of the
    first calibration sample must sit on that integer grid, else ``(0.0, 0)`` is recorded for it.
    """
    import numpy as np

    try:
        tab = rk.rknn_base.quantizer.quant_tab
        outs = list(rk.rknn_base.ir.outputs)
    except Exception:  # private structure of this toolkit version; absent elsewhere
        return [(0.0, 0)]
    cand: List[Tuple[float, int]] = []
    for name in outs:
        try:
            entry = tab[name]
            lo, hi = min(float(entry["min"][0]), 0.0), max(float(entry["max"][0]), 0.0)
        except Exception:
            lo = hi = 0.0
        if not hi > lo:
            cand.append((0.0, 0))
            continue
        scale = (hi - lo) / 255.0
        cand.append((scale, int(round(-lo / scale)) - 128))
    try:
        first = dataset.read_text().split()[0]
        x = np.load(first) if first.endswith(".npy") else None
        if x is None:
            return [(0.0, 0)] * len(cand)
        with toolkit_log(log):
            if rk.init_runtime() != 0:
                return [(0.0, 0)] * len(cand)
            ys = rk.inference(inputs=[np.ascontiguousarray(x.reshape(-1, *x.shape[-3:]).transpose(0, 2, 3, 1))],
                              data_format="nhwc")
    except Exception:
        return [(0.0, 0)] * len(cand)
    checked = []
    for (scale, zp), y in zip(cand, ys):
        if not scale > 0:
            checked.append((0.0, 0))
            continue
        q = np.asarray(y, np.float64) / scale + zp
        ok = np.abs(q - np.round(q)).max() <= 1e-2 and q.min() >= -128.5 and q.max() <= 127.5
        checked.append((float(scale), zp) if ok else (0.0, 0))
    return checked or [(0.0, 0)]


def _hybrid_build(rk, kw: Dict[str, Any], log: Path, stages: Stages, dataset: Path, opts: BuildOptions, work: Path):
    """toolkit2 hybrid quantization: step1 writes ``<name>.model/.data/.quantization.cfg`` into
    the working directory with the custom spans marked float16; step2 builds from them in a
    fresh toolkit object (it refuses one that already loaded a model). Returns that object."""
    cwd = os.getcwd()
    os.chdir(work)
    try:
        with stages.stage(f"hybrid step 1: keep {opts.hybrid} in float16"):
            _call(log, "hybrid_quantization_step1", rk.hybrid_quantization_step1, dataset=str(dataset),
                  rknn_batch_size=opts.batch, custom_hybrid=opts.hybrid)
        cfgs = sorted(work.glob("*.quantization.cfg"))
        if not cfgs:
            raise ToolkitError(f"hybrid_quantization_step1 wrote no .quantization.cfg in {work} (log: {log})")
        stem = cfgs[0].name[: -len(".quantization.cfg")]
        with toolkit_log(log):
            rk.release()
            rk = RKNN_factory()
        with stages.stage("hybrid step 2: build"):
            _call(log, "config", rk.config, **kw)
            _call(log, "hybrid_quantization_step2", rk.hybrid_quantization_step2,
                  model_input=str(work / f"{stem}.model"), data_input=str(work / f"{stem}.data"),
                  model_quantization_cfg=str(cfgs[0]))
    finally:
        os.chdir(cwd)
    return rk


def RKNN_factory():
    """A new toolkit object (quiet: its log goes through :func:`toolkit_log`)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "pkg_resources is deprecated", from inside the toolkit
        try:
            from rknn.api import RKNN

            return RKNN(verbose=False)
        except ModuleNotFoundError as exc:
            if exc.name == "pkg_resources":
                raise UserError("rknn-toolkit2 needs pkg_resources, gone from setuptools>=81: "
                                "pip install 'setuptools<81' (see docs/RKNN.md)") from None
            raise UserError(f"rknn.api cannot be imported (missing module {exc.name!r}); install the toolkit's "
                            "dependencies as in docs/RKNN.md") from None
        except ImportError as exc:
            raise UserError(f"rknn.api cannot be imported ({exc}); reinstall rknn-toolkit2 as in docs/RKNN.md") from None


# --------------------------------------------------------------------------- CLI

def options_from_args(args: argparse.Namespace) -> BuildOptions:
    """BuildOptions from the parsed ``build-rknn`` (or ``verify``) arguments."""
    return BuildOptions(
        target=args.target.lower(), calib=args.calib, dtype=args.dtype, algorithm=args.algorithm,
        method=args.method, optimization_level=args.optimization_level,
        hybrid=parse_hybrid(args.hybrid or [], args.model) if getattr(args, "hybrid", None) else [],
        batch=args.batch, mean=args.mean, std=args.std, pre_compile=getattr(args, "pre_compile", False))


def add_build_arguments(p: argparse.ArgumentParser) -> None:
    """Options shared by ``build-rknn`` and ``verify`` (which rebuilds the model to simulate it)."""
    p.add_argument("--target", default="rk3588", help="chip: " + ", ".join(TOOLKIT2_TARGETS + TOOLKIT1_TARGETS))
    p.add_argument("--calib", help="calibration list (one .npy crop or image per line); omit for a float16 build")
    p.add_argument("--dtype", default="w8a8", help="quantized dtype: w8a8 (INT8, default), w8a16, w16a16i_dfp; "
                                                   "toolkit 1.x: asymmetric_affine-u8, dynamic_fixed_point-i8/-i16")
    p.add_argument("--algorithm", default="normal", help="normal | mmse | kl_divergence (default normal)")
    p.add_argument("--method", default="channel", help="channel | layer (default channel)")
    p.add_argument("--optimization-level", type=int, default=3, help="0..3 (default 3)")
    p.add_argument("--hybrid", action="append", metavar="START:END|final",
                   help="keep the subgraph between two ONNX tensors in float16; 'final' = the final 1x1 conv "
                        "(repeatable)")
    p.add_argument("--batch", type=int, help="rknn_batch_size (default: the ONNX batch)")
    p.add_argument("--mean", type=float, nargs="+", help="override the metadata mean (3 values, model colour order)")
    p.add_argument("--std", type=float, nargs="+", help="override the metadata std (3 values, model colour order)")


def _handler(args: argparse.Namespace) -> int:
    if args.max_calib < 1 or args.max_persons < 1:
        raise UserError("--max-calib/--max-persons: must be at least 1")
    opts = options_from_args(args)
    made_calib: Optional[Path] = None
    from host_tools.det_build import is_detector_onnx

    if args.calib is None and is_detector_onnx(args.model) and (args.images or args.calib_ann or args.calib_det):
        from host_tools.det_build import load_detector, make_detector_calibration

        if not args.images or args.calib_det:
            raise UserError("a detector calibrates on whole images: pass --images DIR (optionally --calib-ann "
                            "to pick its images) or --calib LIST; --calib-det is for pose models")

        check_target(opts.target, *toolkit_major())
        out = check_output(args.output, args.force)
        cal_dir = out.with_name(out.stem + "_calib")
        existed = cal_dir.exists()
        lst, n = make_detector_calibration(load_detector(args.model)[0], cal_dir, args.images, args.calib_ann,
                                           args.max_calib, args.force)
        made_calib = None if existed else cal_dir
        print(f"build-rknn: calibration: {n} letterboxed images -> {lst}", file=sys.stderr)
        opts.calib = str(lst)
    elif args.calib is None and (args.calib_ann or args.calib_det):
        from host_tools.calib import make_calibration

        # what can be refused without the crops is refused before any crop is written
        check_target(opts.target, *toolkit_major())
        out = check_output(args.output, args.force)
        cal_dir = out.with_name(out.stem + "_calib")
        meta = load_onnx_meta(args.model)
        existed = cal_dir.exists()
        lst, n = make_calibration(meta, cal_dir, args.calib_ann, args.images, args.calib_det,
                                  max_images=args.max_calib, force=args.force)
        made_calib = None if existed else cal_dir
        print(f"build-rknn: calibration: {n} person crops -> {lst}", file=sys.stderr)
        opts.calib = str(lst)
    try:
        res = build_rknn(args.model, args.output, opts, force=args.force, keep=args.verify)
    except ToolkitError as exc:
        print(f"host_tools build-rknn: error: {exc}", file=sys.stderr)
        return 1
    except UserError:
        # crops this run made for a build that was refused would only block the next try
        if made_calib is not None:
            shutil.rmtree(made_calib, ignore_errors=True)
        raise
    print(f"build-rknn: wrote {res.rknn_path} ({res.rknn_path.stat().st_size / 1e6:.1f} MB, {res.meta.quantized} "
          f"output, {res.seconds:.1f} s) and {res.sidecar}; toolkit log {res.log}")
    if args.verify:
        from host_tools.verify import verify_from_args

        try:
            return verify_from_args(args, rknn_obj=res.rknn, rknn_meta=res.meta)
        finally:
            res.rknn.release()
    return 0


def register(subparsers) -> None:
    """Add ``host_tools build-rknn``."""
    p = subparsers.add_parser(
        "build-rknn", help="ONNX -> quantized .rknn for a Rockchip NPU (+ model.rknn.json)",
        description="Build an .rknn with rknn-toolkit2 (or toolkit 1.x for rk1808/rv1109/rv1126). The board "
                    "feeds uint8 NHWC crops in the colour order of the ONNX metadata; mean/std go into the model.")
    p.add_argument("model", help="ONNX from host_tools export-onnx")
    p.add_argument("-o", "--output", required=True, help="the .rknn to write (sidecar: <output>.json)")
    add_build_arguments(p)
    p.add_argument("--calib-ann", help="make the calibration crops from this COCO/MPII annotation file")
    p.add_argument("--calib-det", help="make the calibration crops from this detection json")
    p.add_argument("--images", help="frames folder for --calib-ann/--calib-det/--verify data; for a detector ONNX "
                                    "its images (letterboxed) are the calibration set")
    p.add_argument("--max-calib", type=int, default=200, help="at most this many calibration crops (default 200)")
    p.add_argument("--pre-compile", action="store_true", help="toolkit 1.x: pre-compile for the board")
    p.add_argument("--force", action="store_true", help="replace existing output files")
    p.add_argument("--verify", action="store_true", help="after the build, run host_tools verify in-process "
                                                         "(needs --ann/--det and --images for its crops)")
    from host_tools.verify import add_verify_data_arguments

    add_verify_data_arguments(p, with_images=False)
    p.set_defaults(func=_handler)
