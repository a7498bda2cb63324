"""The rknn-toolkit wrapper under every ``host_tools`` build: toolkit detection, options -> config,
the load / config / build / export / simulator calls with their output in a log file, the
output quantization, and :func:`run_build`, the step sequence both builds share.

Layering of the RKNN host tools (each imports only the ones below it; ``tests/test_host_imports.py``
checks that the import graph has no cycle):

1. :mod:`host_tools.rknn_toolkit` (this module): the toolkit wrapper;
2. :mod:`host_tools.calib`: calibration data (person crops, list validation, model metadata);
3. :mod:`host_tools.rknn_build` (pose build) and :mod:`host_tools.det_build` (detector build,
   with :mod:`host_tools.det_split` below it);
4. :mod:`host_tools.verify`: float vs built model, rebuilding either kind for the simulator;
5. :mod:`host_tools.rknn_commands`: the ``build-rknn`` command (build, then ``--verify``).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from edgepose.metadata import file_sha256  # ties a .rknn to the ONNX it was built from
from host_tools.errors import UserError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")

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


def check_mean_std(mean: Sequence[float], std: Sequence[float]) -> None:
    """Mean/std must have three values each (one per channel), std non-zero."""
    if len(mean) != 3:
        raise UserError(f"mean: {len(mean)} value(s) {list(mean)}, expected 3 (one per channel, model colour order)")
    if len(std) != 3:
        raise UserError(f"std: {len(std)} value(s) {list(std)}, expected 3 (one per channel, model colour order)")
    if any(float(s) == 0 for s in std):
        raise UserError(f"std: {list(std)} contains 0; every channel needs a non-zero std")


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


def final_spans(onnx_path: str | Path) -> List[List[str]]:
    """``--hybrid final`` for a graph with several outputs (a split detector head): per output,
    ``[input, output]`` of the Conv that produces it, directly or through one Sigmoid."""
    import onnx

    g = onnx.load(str(onnx_path), load_external_data=False).graph
    producer = {t: n for n in g.node for t in n.output}
    spans = []
    for o in g.output:
        n = producer.get(o.name)
        if n is not None and n.op_type == "Sigmoid":
            n = producer.get(n.input[0])
        if n is None or n.op_type != "Conv":
            raise UserError(f"{onnx_path}: output {o.name!r} is not made by a Conv (or Conv + Sigmoid); "
                            "pass --hybrid START:END tensor names instead")
        spans.append([n.input[0], o.name])
    return spans


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
            spans.extend([final_conv_span(onnx_path)] if len(g.output) == 1 else final_spans(onnx_path))
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


def _point_handler(handler, stream):
    """``handler.setStream(stream)`` without flushing an old stream that was closed meanwhile
    (the capture of a finished pytest test, a closed notebook cell): returns the old stream."""
    with handler.lock or contextlib.nullcontext():
        old = handler.stream
        if old is not None and not getattr(old, "closed", False):
            try:
                old.flush()
            except ValueError:  # closed between the check and the flush
                pass
        handler.stream = stream
    return old


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
        old_streams = [_point_handler(h, f) for h in handlers]
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

def run_build(onnx_path: str | Path, load_path: str | Path, out: Path, opts: BuildOptions, meta, major: int,
              dataset: Optional[Path], work: Path, log: Path, make_meta: Callable[..., Any], keep: bool = False,
              t_start: Optional[float] = None) -> BuildResult:
    """The toolkit steps of every build: config, load_onnx, build (or hybrid), export, the
    output quantization, the sidecar. Removes ``work`` when done.

    Args:
        onnx_path: the user's ONNX (its path and sha256 go into the sidecar's ``build``).
        load_path: what the toolkit loads (``onnx_path`` or a derived graph in ``work``).
        meta: the model's metadata (mean, std, colour order for the config).
        major: toolkit major version; dataset: the resolved calibration list or None.
        make_meta: ``(quants, out_dtype, build, mean, std) -> sidecar metadata``.
        keep: return the live toolkit object in the result (caller releases it).
    """
    from edgepose.metadata import sidecar_path, write_sidecar

    t_start = time.perf_counter() if t_start is None else t_start
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
        with stages.stage(f"load_onnx {load_path}"):
            _call(log, "load_onnx", rk.load_onnx, model=str(Path(load_path).resolve()))
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
            if opts.hybrid and any(span[1] in _graph_outputs(load_path) for span in opts.hybrid):
                out_dtype = "float16"  # the float span reaches the output tensor
            build = asdict(opts)
            build.update(calib=str(Path(opts.calib).resolve()) if opts.calib else None, onnx=str(Path(onnx_path).resolve()),
                         onnx_sha256=file_sha256(onnx_path),
                         toolkit=f"rknn-toolkit{'2' if major == 2 else ''} {toolkit_major()[1]}",
                         mean=kw["mean_values"][0], std=kw["std_values"][0], calib_count=n_cal)
            new_meta = make_meta(quants, out_dtype, build, kw["mean_values"][0], kw["std_values"][0])
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
    def on_grid(y, scale, zp) -> bool:
        q = np.asarray(y, np.float64) / scale + zp
        return bool(np.abs(q - np.round(q)).max() <= 1e-2 and q.min() >= -128.5 and q.max() <= 127.5)

    checked = []
    for (scale, zp), y in zip(cand, ys):
        # the calibrated range first; then the fixed [0, 1] range that the toolkit may give a
        # sigmoid output (a detector's probabilities) whatever the calibration saw
        # (only when neighbouring levels occur, so that a coarser grid is not taken for it)
        steps = np.diff(np.unique(np.asarray(y, np.float64)))
        finest = float(steps.min()) if steps.size else 0.0
        if scale > 0 and on_grid(y, scale, zp):
            checked.append((float(scale), int(zp)))
        elif abs(finest * 255.0 - 1.0) < 1e-3 and on_grid(y, 1.0 / 255.0, -128):
            checked.append((1.0 / 255.0, -128))
        else:
            checked.append((0.0, 0))
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

