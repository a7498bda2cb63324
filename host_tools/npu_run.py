"""``host_tools npu-run``: run a ``.rknn`` on a board's NPU reached from the host.

The connection is the toolkit's own: rknn-toolkit2 talks to a board running ``rknn_server``
over USB/adb (RK3562/RK3566/RK3568/RK3576/RK3588); rknn-toolkit 1.x (same
``from rknn.api import RKNN``) to an RK1808/RV1109/RV1126 board or an RK1808 compute stick
(``--compute-stick``: ``target_sub_class='AICS'``, ntb mode). The toolkit object comes from
:func:`host_tools.rknn_build.RKNN_factory` and every call goes through its ``_call`` (output in
the log file, failures as one :class:`~host_tools.rknn_build.ToolkitError` line), the adapter
the build uses.

Sequence (documented APIs of both toolkits; arguments a version lacks are not passed, decided by
the method's signature):

1. ``list_devices()`` -> ``(adb_ids, ntb_ids)``; none -> one line, exit 1 ("no board");
2. session 1: ``load_rknn(path)``, ``init_runtime(target=T, device_id=ID, perf_debug=True)``,
   ``eval_perf(is_print=False)`` (toolkit2; 1.x: ``eval_perf(inputs=[crop], data_format='nhwc',
   is_print=False, loop_cnt=N)``), then ``inference(inputs=[batch], data_format='nhwc')`` on
   the person crops, ``release()``;
3. session 2 (memory is measured on its own runtime, ``eval_mem`` skews timing):
   ``load_rknn``, ``init_runtime(target=T, device_id=ID, eval_mem=True)``,
   ``eval_memory(is_print=False)``, ``release()``.

With ``--ann/--det`` and ``--images`` the board's heatmaps are compared with the float ONNX
(onnxruntime on the host) on the same crops, exactly as ``host_tools verify`` compares the
simulator (:func:`host_tools.verify.agreement`). The report (JSON) holds the per-layer times,
the memory figures and the agreement.
"""
from __future__ import annotations

import argparse
import inspect
import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from host_tools.errors import UserError
from host_tools.rknn_build import (TOOLKIT1_TARGETS, TOOLKIT2_TARGETS, RKNN_factory, ToolkitError, _call, check_target,
                                   toolkit_log, toolkit_major)


class NoBoardError(RuntimeError):
    """No NPU device is reachable through the toolkit (one line, exit 1)."""


def _kwargs_for(fn: Callable, wanted: Dict[str, Any]) -> Dict[str, Any]:
    """The subset of ``wanted`` that ``fn`` accepts (toolkit versions differ in parameters)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return dict(wanted)
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return dict(wanted)
    return {k: v for k, v in wanted.items() if k in params}


def find_device(rk, device_id: Optional[str], log: Path) -> Tuple[str, str]:
    """``(device id, 'adb' | 'ntb')`` of the board to use; NoBoardError when none answers."""
    try:
        with toolkit_log(log):
            adb, ntb = rk.list_devices()
    except Exception as exc:  # e.g. no adb binary on the host
        raise NoBoardError(f"no board: the toolkit cannot list devices ({type(exc).__name__}: {exc}); "
                           "install adb and connect the board over USB") from None
    adb, ntb = [str(d) for d in adb or []], [str(d) for d in ntb or []]
    adb = [d for d in adb if d not in ntb]
    found = [(d, "ntb") for d in ntb] + [(d, "adb") for d in adb]
    if not found:
        raise NoBoardError("no board: list_devices() sees no adb or ntb device; connect the board over USB with "
                           "rknn_server running (adb devices lists it), or plug in the RK1808 compute stick")
    if device_id:
        for d, mode in found:
            if d == device_id:
                return d, mode
        raise NoBoardError(f"--device-id {device_id}: not connected; the toolkit sees {', '.join(d for d, _ in found)}")
    if len(found) > 1:
        raise UserError(f"{len(found)} devices connected ({', '.join(d for d, _ in found)}); choose one with --device-id")
    return found[0]


def parse_perf(perf: Any) -> Dict[str, Any]:
    """eval_perf's result -> ``{"total_us": float|None, "layers": [{"id", "op", "name", "time_us"}]}``.

    toolkit 1.x returns ``{'total_time': us, 'layers': {id: {'name', 'operation', 'time'}}}``;
    rknn-toolkit2 returns its printed table as text (2.x: ``ID OpType ... Time(us) ...`` rows
    and a ``Total Operator Elapsed Per Frame Time(us): N`` line) or a dict. Unknown shapes keep
    ``layers`` empty; the raw value always goes into the report.
    """
    total: Optional[float] = None
    layers: List[Dict[str, Any]] = []
    if isinstance(perf, dict):
        if isinstance(perf.get("total_time"), (int, float)):
            total = float(perf["total_time"])
        raw_layers = perf.get("layers") or {}
        items = raw_layers.items() if isinstance(raw_layers, dict) else enumerate(raw_layers)
        for key, ly in items:
            if isinstance(ly, dict) and isinstance(ly.get("time"), (int, float)):
                layers.append({"id": str(key), "op": str(ly.get("operation", "")), "name": str(ly.get("name", "")),
                               "time_us": float(ly["time"])})
        if total is None and layers:
            total = float(sum(ly["time_us"] for ly in layers))
    elif isinstance(perf, str):
        cols: List[str] = []
        for line in perf.splitlines():
            parts = line.split()
            if not parts:
                continue
            if parts[0] == "ID" and "Time(us)" in parts:
                cols = parts
                continue
            m = re.search(r"Total\s+(?:Operator\s+Elapsed\s+Per\s+Frame\s+)?Time\s*\(us\)\s*:\s*([\d.]+)", line)
            if m:
                total = float(m.group(1))
                continue
            if cols and parts[0].isdigit() and len(parts) >= len(cols) - 1:
                try:
                    t = float(parts[cols.index("Time(us)")])
                except (ValueError, IndexError):
                    continue
                layers.append({"id": parts[0], "op": parts[1] if len(parts) > 1 else "",
                               "name": parts[-1] if "FullName" in cols else "", "time_us": t})
    return {"total_us": total, "layers": layers}


def _heatmaps(out: Any, meta, n: int) -> np.ndarray:
    """The first output as float32 ``(n, K, H, W)``; integer outputs are dequantized with the
    sidecar's scale/zero point (toolkits return float32 by default)."""
    y = np.asarray(out)
    k, (hw, hh) = meta.num_joints, meta.heatmap_size
    if y.size != n * k * hh * hw:
        raise ToolkitError(f"board output {y.shape} does not match the sidecar ({n}, {k}, {hh}, {hw}); "
                           "rebuild the model and sidecar together")
    y = y.reshape(n, k, hh, hw)
    if y.dtype.kind in "iu":
        if not meta.output_scale > 0:
            raise ToolkitError(f"board output is {y.dtype} and the sidecar has no output_scale")
        y = (y.astype(np.float32) - np.float32(meta.output_zero_point)) * np.float32(meta.output_scale)
    return y.astype(np.float32)


def _session(rk_factory, model: Path, target: str, device_id: str, sub_class: Optional[str], log: Path,
             **flags):
    """A toolkit object with ``model`` loaded and a runtime on the board."""
    with toolkit_log(log):
        rk = rk_factory()
    try:
        _call(log, "load_rknn", rk.load_rknn, str(model))
        kw = _kwargs_for(rk.init_runtime, dict(target=target, device_id=device_id, **flags))
        if sub_class:
            if "target_sub_class" not in inspect.signature(rk.init_runtime).parameters:
                raise UserError("--compute-stick: this toolkit has no target_sub_class (an RK1808 stick needs "
                                "rknn-toolkit 1.x)")
            kw["target_sub_class"] = sub_class
        _call(log, f"init_runtime(target={target}, device_id={device_id})", rk.init_runtime, **kw)
    except BaseException:
        with toolkit_log(log):
            rk.release()
        raise
    return rk


def npu_run(model: str | Path, target: str, device_id: Optional[str] = None, onnx: Optional[str] = None,
            ann=None, images=None, det=None, det_thr: float = 0.5, max_persons: int = 20, loops: int = 10,
            compute_stick: bool = False, log: Optional[Path] = None, rknn_factory: Optional[Callable] = None,
            toolkit: Optional[Tuple[Optional[int], str]] = None) -> Dict[str, Any]:
    """Per-layer times, memory and (with persons) float-vs-board agreement of ``model``.

    Args:
        model: ``.rknn`` with its ``.rknn.json`` sidecar.
        target: chip of the connected board (must match the sidecar's).
        device_id: adb/ntb id when several are connected.
        onnx: float reference for the agreement (default: the ONNX named in the sidecar).
        ann, images, det, det_thr, max_persons: the persons (see :func:`host_tools.verify.person_crops`).
        loops: toolkit 1.x ``eval_perf(loop_cnt=...)``.
        compute_stick: RK1808 AI compute stick (toolkit 1.x ``target_sub_class='AICS'``).
        rknn_factory, toolkit: the toolkit class factory and ``(major, version)`` (tests pass doubles).

    Raises:
        UserError (bad input), NoBoardError (nothing connected), ToolkitError (a toolkit call failed).
    """
    from edgepose.metadata import MetadataError, read_sidecar

    model = Path(model)
    if not model.is_file():
        raise UserError(f"{model}: not found; build it with host_tools build-rknn")
    try:
        meta = read_sidecar(model)
    except MetadataError as exc:
        raise UserError(str(exc)) from None
    t = target.lower()
    if meta.target and meta.target.lower() != t:
        raise UserError(f"--target {t}: {model.name} was built for {meta.target}; pass --target {meta.target} "
                        "or rebuild the model for this board")
    major, version = toolkit if toolkit is not None else toolkit_major()
    check_target(t, major, version)
    if compute_stick and t != "rk1808":
        raise UserError("--compute-stick: the compute stick is an RK1808 (--target rk1808)")
    factory = rknn_factory or RKNN_factory
    log = Path(log) if log else Path(tempfile.gettempdir()) / f"edgepose_npu_run_{model.stem}.log"
    log.write_text("")

    pc = None
    if ann or det:
        from host_tools.verify import person_crops

        pc = person_crops(meta, ann, images, det, det_thr, max_persons, prog="npu-run")
    with toolkit_log(log):
        probe = factory()
    try:
        dev, mode = find_device(probe, device_id, log)
    finally:
        with toolkit_log(log):
            probe.release()
    print(f"npu-run: {t} board {dev} ({mode}), rknn-toolkit{'2' if major == 2 else ''} {version}", file=sys.stderr)
    sub = "AICS" if compute_stick else None
    report: Dict[str, Any] = {"model": str(model), "target": t, "device_id": dev, "connection": mode,
                              "toolkit": f"{major}:{version}", "log": str(log)}

    rk = _session(factory, model, t, dev, sub, log, perf_debug=True)
    try:
        batch = int(meta.batch or 1)
        w, h = meta.input_size
        first = pc.crops[:batch] if pc is not None and len(pc.crops) else np.zeros((batch, h, w, 3), np.uint8)
        if len(first) < batch:
            first = np.concatenate([first, np.zeros((batch - len(first), h, w, 3), np.uint8)])
        kw = _kwargs_for(rk.eval_perf, dict(inputs=[np.ascontiguousarray(first)], data_format="nhwc",
                                            is_print=False, loop_cnt=int(loops)))
        perf = _call(log, "eval_perf", rk.eval_perf, **kw)
        if perf is None:
            raise ToolkitError(f"eval_perf returned nothing (full toolkit log: {log})")
        report["perf"] = parse_perf(perf)
        report["perf"]["raw"] = perf if isinstance(perf, (str, dict, list)) else repr(perf)
        test = None
        if pc is not None:
            from host_tools.verify import _batched

            def on_board(chunk: np.ndarray) -> np.ndarray:
                outs = _call(log, "inference", rk.inference, inputs=[np.ascontiguousarray(chunk)], data_format="nhwc")
                if not outs:
                    raise ToolkitError(f"inference returned no outputs (full toolkit log: {log})")
                return _heatmaps(outs[0], meta, len(chunk))

            print(f"npu-run: {len(pc.crops)} crops on the board", file=sys.stderr)
            test = _batched(on_board, pc.crops, batch)
    finally:
        with toolkit_log(log):
            rk.release()

    rk = _session(factory, model, t, dev, sub, log, eval_mem=True)
    try:
        mem = _call(log, "eval_memory", rk.eval_memory, **_kwargs_for(rk.eval_memory, dict(is_print=False)))
        if mem is None:
            raise ToolkitError(f"eval_memory returned nothing (full toolkit log: {log})")
        report["memory"] = mem if isinstance(mem, dict) else {"raw": repr(mem)}
    finally:
        with toolkit_log(log):
            rk.release()

    if pc is not None and test is not None:
        from host_tools.rknn_build import load_onnx_meta
        from host_tools.verify import agreement, onnx_runner

        ref_path = onnx or (meta.build or {}).get("onnx")
        if not ref_path or not Path(ref_path).is_file():
            raise UserError(f"{model.name}: the float ONNX {ref_path or '(not in the sidecar)'} is not here; "
                            "pass --onnx FLOAT.onnx for the agreement")
        ref = onnx_runner(ref_path)(pc.crops)
        report["agreement"] = {"reference_model": str(ref_path), "data": str(ann or det),
                               **agreement(ref, test, pc, load_onnx_meta(ref_path))}
    return report


def summary_lines(report: Dict[str, Any]) -> List[str]:
    """What the terminal shows: total and slowest layers, memory, agreement."""
    lines = []
    perf = report.get("perf", {})
    total = perf.get("total_us")
    top = sorted(perf.get("layers", []), key=lambda ly: -ly["time_us"])[:3]
    lines.append("npu-run: eval_perf: " + (f"{total / 1000:.2f} ms per frame" if total else "total time not reported")
                 + (f" (perf_debug), {len(perf['layers'])} layers; slowest: " + ", ".join(
                     f"{ly['op'] or ly['name']} {ly['time_us']:.0f} us" for ly in top) if top else ""))
    mem = report.get("memory", {})
    if "total_model_allocation" in mem:
        lines.append("npu-run: eval_memory: weights {:.1f} MB, internal {:.1f} MB, total {:.1f} MB".format(
            mem.get("total_weight_allocation", 0) / 1e6, mem.get("total_internal_allocation", 0) / 1e6,
            mem["total_model_allocation"] / 1e6))
    else:
        lines.append(f"npu-run: eval_memory: {json.dumps(mem)[:200]}")
    if "agreement" in report:
        from host_tools.verify import summary_line

        lines.append(summary_line(report["agreement"]).replace("verify:", "npu-run: board vs float:", 1))
    return lines


def _handler(args: argparse.Namespace) -> int:
    if args.loops < 1 or args.max_persons < 1:
        raise UserError("--loops/--max-persons: must be at least 1")
    report_path = Path(args.report) if args.report else Path(args.model + ".npu.json")
    if report_path.exists() and not args.force:
        raise UserError(f"--report {report_path}: already exists; choose another name or pass --force")
    if (args.ann or args.det) and not args.images:
        raise UserError("--ann/--det: also pass --images DIR (the frames the persons are cut from)")
    try:
        rep = npu_run(args.model, args.target, args.device_id, args.onnx, args.ann, args.images, args.det,
                      args.det_thr, args.max_persons, args.loops, args.compute_stick)
    except NoBoardError as exc:
        print(f"host_tools npu-run: {exc}", file=sys.stderr)
        return 1
    except ToolkitError as exc:
        print(f"host_tools npu-run: error: {exc}", file=sys.stderr)
        return 1
    report_path.write_text(json.dumps(rep, indent=2, default=str) + "\n")
    for line in summary_lines(rep):
        print(line)
    print(f"npu-run: report {report_path}")
    return 0


def register(subparsers) -> None:
    """Add ``host_tools npu-run``."""
    p = subparsers.add_parser(
        "npu-run", help="run a .rknn on a board's NPU connected to this host (per-layer times, memory, agreement)",
        description="Run an .rknn on a Rockchip NPU reached through the toolkit's own connection (a board with "
                    "rknn_server over USB/adb; an RK1808 compute stick with toolkit 1.x): eval_perf per-layer times, "
                    "eval_memory, and with --ann/--det the float-vs-board agreement of host_tools verify.")
    p.add_argument("model", help=".rknn built by host_tools build-rknn (sidecar beside it)")
    p.add_argument("--target", required=True, help="chip of the board: " + ", ".join(TOOLKIT2_TARGETS + TOOLKIT1_TARGETS))
    p.add_argument("--device-id", help="adb/ntb id (python -m rknn.bin.list_devices) when several are connected")
    p.add_argument("--compute-stick", action="store_true", help="RK1808 AI compute stick (toolkit 1.x, ntb mode)")
    p.add_argument("--onnx", help="float ONNX for the agreement (default: the one named in the sidecar)")
    p.add_argument("--ann", help="COCO keypoint / MPII annotation json: persons for the agreement")
    p.add_argument("--det", help="person detections json (COCO results format)")
    p.add_argument("--images", help="frames folder")
    p.add_argument("--det-thr", type=float, default=0.5, help="minimum detection score (default 0.5)")
    p.add_argument("--max-persons", type=int, default=20, help="at most this many crops (default 20)")
    p.add_argument("--loops", type=int, default=10, help="toolkit 1.x eval_perf loop_cnt (default 10)")
    p.add_argument("--report", help="JSON report (default <model>.npu.json)")
    p.add_argument("--force", action="store_true", help="replace an existing report")
    p.set_defaults(func=_handler)
