"""Pipeline throughput and latency against the number of workers, ratios to workers=1 in the
same process.

    .venv/bin/python -m pytest -q benchmarks -k workers   (table at the end)
    .venv/bin/python benchmarks/bench_pipeline_workers.py [--frames 36] [--no-onnx]

Two backends:

* ``rknn-double``: the RKNNLite test double (tests/_rknn_doubles.py) taking a fixed 30 ms per
  inference call while releasing the GIL, as the real C call does, and handing back a fixed
  heatmap (no CPU of its own). The model has batch 1 like a board build, so 4 persons are 4
  calls (120 ms of "NPU" per frame). Aim: >= 2.7x the single-worker throughput at 3 workers,
  and CPU work per frame outside inference < 10 % of the inference time at 4 persons.
* ``onnxruntime``: PoseResNet-18 (untrained) on this machine's CPU, onnxruntime's default
  threads per worker. On a 2-core PC one inference already uses both cores, so more workers
  gain little; the figure shows the pipeline costs nothing there.

Frames are the 1280x720 PoseTrack clip's, with 1 or 4 fixed person boxes. Throughput is frames
per second over a run of ``--frames`` frames (a list: nothing dropped); latency is from the
frame leaving the source to its result (p50 / p99); CPU is the process CPU time per frame.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "tests"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from edgepose.pipeline import Pipeline  # noqa: E402

from _data import DATA  # noqa: E402  (third-party sample data, read in place)
CLIP = DATA / "posetrack_mini" / "videos" / "000001_mpiinew_test" / "000001_mpiinew_test.mp4"
BOXES = np.array([[380, 240, 200, 430, 0.95], [640, 280, 260, 260, 0.9], [100, 200, 150, 380, 0.8],
                  [900, 150, 160, 400, 0.7]])
WORKERS = (1, 2, 3, 4)
DOUBLE_MS = 30.0

# (backend, persons) -> workers -> figures
RESULTS: Dict[Tuple[str, int], Dict[int, Dict[str, float]]] = {}


def clip_frames(n: int) -> List[np.ndarray]:
    cap = cv2.VideoCapture(str(CLIP))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    assert frames, f"cannot read {CLIP}"
    return [frames[i % len(frames)].copy() for i in range(n)]


class Runs:
    """Runs a pipeline over ``frames`` once per call and keeps each run's wall time, CPU time,
    latencies and inference times (the first ``warmup`` calls are not kept)."""

    def __init__(self, pipe: Pipeline, frames: List[np.ndarray], warmup: int = 1) -> None:
        self.pipe, self.frames, self.warmup = pipe, frames, warmup
        self.walls: List[float] = []
        self.cpus: List[float] = []
        self.lats: List[float] = []
        self.infer: List[float] = []

    def __call__(self) -> int:
        c0, t0 = time.process_time(), time.perf_counter()
        res = list(self.pipe.run(self.frames))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        assert [r.index for r in res] == list(range(len(self.frames))) and not any(r.error for r in res)
        if self.warmup > 0:
            self.warmup -= 1
            return len(res)
        self.walls.append(wall)
        self.cpus.append(cpu)
        self.lats += [r.latency_ms for r in res]
        self.infer += [r.timings["infer"] for r in res]
        return len(res)

    def figures(self) -> Dict[str, float]:
        """Median fps, p50/p99 latency (ms), CPU ms per frame, mean inference ms per frame."""
        n = len(self.frames)
        return {"fps": n / statistics.median(self.walls), "p50": float(np.percentile(self.lats, 50)),
                "p99": float(np.percentile(self.lats, 99)), "cpu_ms": statistics.median(self.cpus) / n * 1e3,
                "infer_ms": float(np.mean(self.infer))}


def measure(model: Path, workers: int, frames: List[np.ndarray], persons: int, rounds: int = 2,
            benchmark=None, **options) -> Dict[str, float]:
    """One pipeline, a warm-up run, then ``rounds`` timed runs over ``frames`` (through
    pytest-benchmark when ``benchmark`` is given)."""
    with Pipeline(model, workers=workers, boxes=BOXES[:persons], **options) as pipe:
        runs = Runs(pipe, frames)
        if benchmark is not None:
            benchmark.pedantic(runs, rounds=rounds, iterations=1, warmup_rounds=1)
        else:
            for _ in range(rounds + 1):
                runs()
    return runs.figures()


def table() -> List[str]:
    lines = ["throughput and latency by workers; speed-up = fps / fps at workers=1 (same process)"]
    for (backend, persons), rows in RESULTS.items():
        base = rows.get(1)
        lines.append(f"{backend}, {persons} person(s)/frame")
        lines.append(f"    {'workers':>7} {'fps':>8} {'speed-up':>9} {'p50 ms':>8} {'p99 ms':>8} {'cpu ms/fr':>10} "
                     f"{'infer ms/fr':>12}")
        for w, r in sorted(rows.items()):
            sp = f"{r['fps'] / base['fps']:8.2f}x" if base else "        -"
            lines.append(f"    {w:>7} {r['fps']:8.2f} {sp} {r['p50']:8.1f} {r['p99']:8.1f} {r['cpu_ms']:10.2f} "
                         f"{r['infer_ms']:12.1f}")
        if backend == "rknn-double" and base and 3 in rows:
            sp3 = rows[3]["fps"] / base["fps"]
            lines.append(f"    aim >= 2.70x at 3 workers: {sp3:.2f}x ({'met' if sp3 >= 2.7 else 'NOT met'})")
        if backend == "rknn-double" and persons == 4 and base:
            share = base["cpu_ms"] / (persons * DOUBLE_MS)
            lines.append(f"    CPU outside inference at workers=1: {base['cpu_ms']:.2f} ms/frame = {share:.1%} of "
                         f"{persons * DOUBLE_MS:.0f} ms inference (aim < 10%: {'met' if share < 0.10 else 'NOT met'})")
    return lines


# ---------------------------------------------------------------- models

def double_model(folder: Path) -> Path:
    from _models import rknn_from_onnx, tiny_onnx

    rk = folder / "tiny.rknn"
    rknn_from_onnx(tiny_onnx(folder / "tiny.onnx"), rk)
    return rk


def double_cls():
    from _rknn_doubles import slow_double

    return slow_double(latency_s=DOUBLE_MS / 1e3, compute=False)


def onnx_model(folder: Path, layers: int = 18) -> Path:
    from host_tools.demo import export_untrained_onnx

    return export_untrained_onnx(folder / f"r{layers}.onnx", layers=layers)


# ---------------------------------------------------------------- pytest-benchmark entry points

@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plw")
    return {"double": double_model(folder), "folder": folder}


@pytest.mark.parametrize("persons", [1, 4])
@pytest.mark.parametrize("workers", WORKERS)
def test_workers_rknn_double(benchmark, report_table, models, workers, persons):
    frames = clip_frames(36 if persons == 1 else 24)
    benchmark.group = f"pipeline rknn-double {persons}p"
    benchmark.name = f"workers={workers}"
    RESULTS.setdefault(("rknn-double", persons), {})[workers] = measure(
        models["double"], workers, frames, persons, benchmark=benchmark, rknnlite_cls=double_cls())
    report_table("edgepose pipeline: workers vs throughput (same process)", table)


@pytest.mark.parametrize("workers", WORKERS)
def test_workers_onnxruntime(benchmark, report_table, models, workers):
    model = models.get("r18")
    if model is None:
        pytest.importorskip("torch")
        model = models["r18"] = onnx_model(models["folder"])
    frames = clip_frames(12)
    benchmark.group = "pipeline onnxruntime r18 1p"
    benchmark.name = f"workers={workers}"
    RESULTS.setdefault(("onnxruntime PoseResNet-18", 1), {})[workers] = measure(model, workers, frames, 1,
                                                                               benchmark=benchmark)
    report_table("edgepose pipeline: workers vs throughput (same process)", table)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=36)
    ap.add_argument("--no-onnx", action="store_true", help="skip the onnxruntime PoseResNet-18 rows")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        model, cls = double_model(folder), double_cls()
        for persons in (1, 4):
            frames = clip_frames(args.frames)
            for w in WORKERS:
                RESULTS.setdefault(("rknn-double", persons), {})[w] = measure(model, w, frames, persons,
                                                                             rknnlite_cls=cls)
        if not args.no_onnx:
            r18 = onnx_model(folder)
            frames = clip_frames(max(8, args.frames // 3))
            for w in WORKERS:
                RESULTS.setdefault(("onnxruntime PoseResNet-18", 1), {})[w] = measure(r18, w, frames, 1)
    print("\n".join(table()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
