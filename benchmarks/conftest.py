"""pytest-benchmark setup for the kernel benchmarks.

``pytest benchmarks`` collects ``bench_*.py`` and, at the end of the session, prints one table
per kernel and size: the time of every implementation measured in this process (its fastest
round, the one least disturbed by other jobs on a shared machine; EDGEPOSE_BENCH_STAT=median for
the median round) and its ratio to edgepose's native kernel (``x`` = how many times slower).
"""
from __future__ import annotations

import os
import time
from collections import OrderedDict
from typing import Callable, Dict, List

import pytest

# The native kernels are single-threaded, so OpenCV is compared on one thread too (a fair
# per-core figure, and stable on a shared machine where a second thread waits for a busy core).
# EDGEPOSE_BENCH_CV2_THREADS=0 leaves OpenCV's own default (all cores).
CV2_THREADS = int(os.environ.get("EDGEPOSE_BENCH_CV2_THREADS", "1"))
try:
    import cv2

    if CV2_THREADS > 0:
        cv2.setNumThreads(CV2_THREADS)
except ImportError:  # pragma: no cover - cv2 is a dependency
    cv2 = None

# fastest round ("min", the default) or the median one, per call
STAT = os.environ.get("EDGEPOSE_BENCH_STAT", "min").strip().lower()
if STAT not in ("min", "median"):
    raise SystemExit(f"EDGEPOSE_BENCH_STAT={STAT!r}: expected min or median")
# group -> implementation -> seconds per call (STAT)
RESULTS: "OrderedDict[str, Dict[str, float]]" = OrderedDict()
BUDGET_S = 0.25  # time spent measuring one implementation of one case (after warm-up)


def pytest_collect_file(file_path, parent):
    # a file named on the command line is collected by pytest itself: only once
    if file_path.suffix == ".py" and file_path.name.startswith("bench_") and not parent.session.isinitpath(file_path):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


@pytest.fixture
def measure(benchmark) -> Callable[[str, str, Callable[[], object]], object]:
    """``measure(group, impl, fn)``: benchmark ``fn`` with a modest number of rounds chosen from
    one timed warm-up call, and record its fastest (or median) round for the summary table."""

    def run(group: str, impl: str, fn: Callable[[], object]):
        t0 = time.perf_counter()
        fn()  # warm-up (and JIT for numba)
        once = max(time.perf_counter() - t0, 1e-6)
        rounds = int(min(200, max(3, BUDGET_S / once)))
        iterations = 1 if once > 1e-4 else int(min(50, 1e-4 / once) + 1)
        benchmark.group = group
        benchmark.name = impl
        out = benchmark.pedantic(fn, rounds=rounds, iterations=iterations, warmup_rounds=1)
        stats = getattr(benchmark, "stats", None)
        if stats is not None and getattr(stats, "stats", None) is not None:
            RESULTS.setdefault(group, OrderedDict())[impl] = getattr(stats.stats, STAT)
        return out

    return run


# title -> function giving the lines of an extra table, printed after the kernel tables
# (registered through the ``report_table`` fixture by benchmarks with their own baseline)
TABLES: "OrderedDict[str, Callable[[], List[str]]]" = OrderedDict()


@pytest.fixture
def report_table() -> Callable[[str, Callable[[], List[str]]], None]:
    """``report_table(title, lines_fn)``: print ``lines_fn()`` under ``title`` at the end."""

    def add(title: str, lines: Callable[[], List[str]]) -> None:
        TABLES[title] = lines

    return add


def _fmt(s: float) -> str:
    return f"{s * 1e6:10.1f} us" if s < 0.1 else f"{s * 1e3:10.1f} ms"


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    tr = terminalreporter
    for title, lines in TABLES.items():
        tr.section(title)
        for line in lines():
            tr.write_line(line)
    if not RESULTS:
        return
    label = "fastest round" if STAT == "min" else "median round"
    tr.section(f"edgepose kernels: time per call ({label}) and ratio to native (same process)")
    if cv2 is not None:
        tr.write_line(f"OpenCV threads: {cv2.getNumThreads()} (EDGEPOSE_BENCH_CV2_THREADS={CV2_THREADS})")
    for group, impls in RESULTS.items():
        base = impls.get("native")
        tr.write_line(f"{group}")
        for impl, med in impls.items():
            ratio = f"{med / base:8.2f}x" if base else "        -"
            tr.write_line(f"    {impl:<34s}{_fmt(med)}  {ratio}")
