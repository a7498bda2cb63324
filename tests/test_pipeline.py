"""edgepose.Pipeline: order, no loss for files, drops for live sources, faults, core pinning,
stop, and results identical to the sequential PoseEstimator; `edgepose run --workers`."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from _models import CLIP, ROOT, rknn_from_onnx, tiny_onnx
from _rknn_doubles import slow_double
from edgepose import Pipeline, PoseEstimator, PoseTracker
from edgepose.backends import BackendError
from edgepose.board import board_npu_cores, soc_npu_cores
from edgepose.boxes import BoxSource
from edgepose.cli import main
from edgepose.pipeline import auto_workers, npu_core_count
from conftest import needs_data

BOXES = np.array([[20, 10, 150, 230], [170, 20, 160, 220]], np.float64)


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory) -> Path:
    return tiny_onnx(tmp_path_factory.mktemp("pl") / "tiny.onnx")


@pytest.fixture(scope="module")
def rknn_model(onnx_model) -> Path:
    rk = onnx_model.with_name("tiny.rknn")
    rknn_from_onnx(onnx_model, rk)  # sidecar target rk3588
    return rk


@pytest.fixture(scope="module")
def frames():
    cap = cv2.VideoCapture(str(CLIP))
    out = []
    while len(out) < 24:
        ok, f = cap.read()
        assert ok
        out.append(f)
    cap.release()
    return out


def _same(a, b):
    np.testing.assert_array_equal(a.keypoints, b.keypoints)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.track_ids, b.track_ids)


# ----------------------------------------------------------------------------- order, identity

@needs_data
def test_order_under_random_latencies_matches_sequential(rknn_model, frames):
    """Each inference takes 1..25 ms at random, so workers finish out of order; results still
    come back in input order and equal the sequential estimator's, frame by frame."""
    seq_cls = slow_double(latency_s=0.0)
    ref = PoseEstimator(rknn_model, backend="rknnlite", rknnlite_cls=seq_cls)
    expect = [ref(f, BOXES) for f in frames]
    cls = slow_double(latency_s=0.001, jitter_s=0.024)
    with Pipeline(rknn_model, workers=3, rknnlite_cls=cls, boxes=BOXES) as pipe:
        got = list(pipe.run(frames))
        finish_order = [r.worker for r in got]
    assert [r.index for r in got] == list(range(len(frames))) == [r.seq for r in got]
    assert len(set(finish_order)) == 3  # every worker took part
    for r, e in zip(got, expect):
        assert r.error is None
        _same(r.poses, e)
        assert set(r.timings) >= {"capture", "boxes", "warp", "infer", "decode", "nms", "track"}
        assert r.latency_ms > 0


@needs_data
def test_onnxruntime_workers_match_sequential_with_tracking(onnx_model, frames):
    est = PoseEstimator(onnx_model)
    tracker = PoseTracker(est.sigmas)
    expect = [tracker.update(est(f), i) for i, f in enumerate(frames)]
    with Pipeline(onnx_model, workers=3, tracker=PoseTracker(est.sigmas)) as pipe:
        got = list(pipe.run((f, i * 0.5) for i, f in enumerate(frames)))
        again = list(pipe.run(frames))  # a pipeline runs more than once; the tracker restarts
    assert [r.tag for r in got] == [i * 0.5 for i in range(len(frames))]
    for r, s, e in zip(got, again, expect):
        _same(r.poses, e)
        _same(s.poses, e)


class CountingDetector:
    """Two fixed boxes; records the frames it saw (the pipeline serialises it: not thread-safe)."""

    def __init__(self):
        self.seen = []
        self.busy = False

    def __call__(self, frame):
        assert not self.busy, "called concurrently"
        self.busy = True
        time.sleep(0.002)
        self.seen.append(int(frame[0, 0, 0]))
        self.busy = False
        return np.array([[20, 10, 150, 230, 0.9], [170, 20, 160, 220, 0.8]])


@needs_data
@pytest.mark.parametrize("detect_every", [1, 3])
def test_detector_and_box_propagation(onnx_model, frames, detect_every):
    """One worker: exactly the sequential detector + propagation + tracking loop of the CLI.
    Three workers: propagation from frame i - 3, the same in every run."""
    est = PoseEstimator(onnx_model)
    det = CountingDetector()
    tracker = PoseTracker(est.sigmas, detect_every=detect_every)
    src = BoxSource(detector=det)
    expect, detected = [], 0
    for i, f in enumerate(frames):
        prop = tracker.propagated_boxes(f.shape)
        if tracker.should_detect(i):
            detected += 1
            b = np.concatenate([src(f, i), prop])
        else:
            b = prop
        expect.append(tracker.update(est(f, b, from_detector=True), i))
    det1 = CountingDetector()
    with Pipeline(onnx_model, workers=1, detector=det1, tracker=PoseTracker(est.sigmas, detect_every=detect_every)) as p:
        got = list(p.run(frames))
    assert len(det1.seen) == detected
    for r, e in zip(got, expect):
        _same(r.poses, e)
    runs = []
    for _ in range(2):
        with Pipeline(onnx_model, workers=3, detector=CountingDetector(),
                      tracker=PoseTracker(est.sigmas, detect_every=detect_every)) as p:
            runs.append(list(p.run(frames)))
    assert [r.index for r in runs[0]] == list(range(len(frames)))
    for a, b in zip(*runs):
        _same(a.poses, b.poses)
    assert all(len(r.poses) >= 1 for r in runs[0])


# ----------------------------------------------------------------------------- sources

@needs_data
def test_file_source_never_drops_and_stays_bounded(onnx_model, frames):
    """A source much faster than the workers: every frame once, in order, and the source is
    never read further ahead than the bounded queues allow."""
    pulled = [0]

    def source():
        for i in range(60):
            pulled[0] += 1
            yield frames[i % len(frames)]

    workers, queue = 2, 1
    ahead = []
    with Pipeline(onnx_model, workers=workers, queue_size=queue) as pipe:
        got = []
        for r in pipe.run(source()):
            ahead.append(pulled[0] - len(got))
            time.sleep(0.005)  # a slow consumer
            got.append(r.index)
        assert pipe.dropped == 0
    assert got == list(range(60))
    # taken-not-returned <= workers + queue, waiting <= queue, one more held by the reader
    assert max(ahead) <= workers + 2 * queue + 1


@needs_data
def test_live_source_drops_the_oldest_and_counts(rknn_model, frames):
    """A camera faster than the workers: the oldest waiting frames are dropped and counted,
    what is processed is in order, and the newest frame is never the one dropped."""
    cls = slow_double(latency_s=0.03, compute=False)
    n = 80

    def camera():
        for i in range(n):
            time.sleep(0.002)  # ~500 fps
            yield frames[i % len(frames)]

    with Pipeline(rknn_model, workers=2, rknnlite_cls=cls, boxes=BOXES[:1]) as pipe:
        got = [r.index for r in pipe.run(camera(), live=True)]
        dropped = pipe.dropped
    assert dropped > 0 and len(got) + dropped == n
    assert got == sorted(set(got)) and got[-1] == n - 1  # in order, no repeats, the last one kept
    # the same source read as a file: nothing dropped
    with Pipeline(rknn_model, workers=2, rknnlite_cls=cls, boxes=BOXES[:1]) as pipe:
        got = [r.index for r in pipe.run(camera(), live=False)]
        assert pipe.dropped == 0 and got == list(range(n))


@needs_data
def test_slow_live_source_drops_nothing(rknn_model, frames):
    cls = slow_double(latency_s=0.005, compute=False)

    def camera():
        for i in range(10):
            time.sleep(0.04)
            yield frames[i]

    with Pipeline(rknn_model, workers=2, rknnlite_cls=cls) as pipe:
        assert [r.index for r in pipe.run(camera(), live=True)] == list(range(10))
        assert pipe.dropped == 0


# ----------------------------------------------------------------------------- faults

@needs_data
def test_failed_frame_yields_error_and_goes_on(rknn_model, frames):
    cls = slow_double(latency_s=0.002, fail_on_black=True)
    black = {3, 4, 11}
    src = [np.zeros_like(f) if i in black else f for i, f in enumerate(frames)]
    seen = []
    ref = PoseEstimator(rknn_model, backend="rknnlite", rknnlite_cls=slow_double(latency_s=0.0))
    with Pipeline(rknn_model, workers=3, rknnlite_cls=cls, on_error=seen.append) as pipe:
        got = list(pipe.run(src))
    assert [r.index for r in got] == list(range(len(frames)))
    assert {r.index for r in got if r.error} == black == {r.index for r in seen}
    for r in got:
        if r.index in black:
            assert "no outputs" in r.error and len(r.poses) == 0
        else:
            assert r.error is None
            _same(r.poses, ref(src[r.index]))


@needs_data
def test_failed_frame_default_is_one_log_line(onnx_model, frames, caplog):
    def det(frame):
        if frame[0, 0, 0] == 7:
            raise RuntimeError("detector blew up\nsecond line")
        return BOXES

    src = [f.copy() for f in frames[:6]]
    src[2][0, 0] = 7
    with Pipeline(onnx_model, workers=2, detector=det) as pipe:
        got = list(pipe.run(src))
    assert [r.error for r in got] == [None, None, "detector blew up", None, None, None]
    warnings = [r.getMessage() for r in caplog.records if r.name == "edgepose.pipeline"]
    assert warnings == ["frame 2: detector blew up"]


def test_worker_that_cannot_start_names_its_core(rknn_model):
    cls = slow_double(fail_core_mask=4)  # NPU_CORE_2
    with pytest.raises(BackendError, match=r"^worker 2 \(NPU core 2\): .*init_runtime returned -1"):
        Pipeline(rknn_model, workers=3, rknnlite_cls=cls)
    assert len(cls.instances) == 3 and all(rt.released for rt in cls.instances)


def test_core_pinning(rknn_model):
    def masks(**kw):
        cls = slow_double()
        with Pipeline(rknn_model, rknnlite_cls=cls, **kw):
            return [rt.calls[1][1] for rt in cls.instances]

    # the sidecar's target (rk3588) gives 3 cores off the board: worker i on core i % 3
    assert masks(workers=4) == [1, 2, 4, 1]
    assert masks(workers=2, npu_cores=2) == [1, 2]
    assert masks(workers=3, core_mask="0_1_2") == [7, 7, 7]  # a given mask wins
    assert masks(workers=1) == [0]  # one worker: as before, the driver picks (auto)


@needs_data
def test_stop_ends_a_run_promptly_and_in_order(rknn_model, frames):
    cls = slow_double(latency_s=0.03, compute=False)
    with Pipeline(rknn_model, workers=2, rknnlite_cls=cls) as pipe:
        got = []
        t_stop = None
        for r in pipe.run(frames[i % len(frames)] for i in range(1000)):
            got.append(r.index)
            if len(got) == 10:
                threading.Timer(0.0, pipe.stop).start()
                t_stop = time.monotonic()
        took = time.monotonic() - t_stop
    assert 10 <= len(got) < 1000 and got == list(range(len(got)))
    assert took < 1.0 + 1.0  # the contract is "within a second"; slack for a loaded machine
    assert not any(t.is_alive() for t in pipe._threads)


@needs_data
def test_breaking_out_of_the_loop_stops_the_threads(onnx_model, frames):
    pipe = Pipeline(onnx_model, workers=2)
    for r in pipe.run(frames):
        if r.index == 3:
            break
    time.sleep(0.6)
    assert not any(t.is_alive() for t in pipe._threads)
    pipe.close()


def test_bad_arguments(onnx_model):
    with pytest.raises(ValueError, match="workers"):
        Pipeline(onnx_model, workers=0)
    with pytest.raises(ValueError, match="queue_size"):
        Pipeline(onnx_model, queue_size=0)
    est = PoseEstimator(onnx_model)
    with pytest.raises(ValueError, match="one worker"):
        Pipeline(onnx_model, workers=2, backend=est.backend)


# ----------------------------------------------------------------------------- board

def test_board_npu_cores(tmp_path):
    def dt(*entries):
        p = tmp_path / "compatible"
        p.write_bytes(b"\0".join(e.encode() for e in entries) + b"\0")
        return p

    assert board_npu_cores(dt("radxa,rock-5b", "rockchip,rk3588")) == 3
    assert board_npu_cores(dt("xunlong,orangepi-5", "rockchip,rk3588s")) == 3
    assert board_npu_cores(dt("rockchip,rk3576-evb1-v10", "rockchip,rk3576")) == 2
    assert board_npu_cores(dt("radxa,zero3", "rockchip,rk3566")) == 1
    assert board_npu_cores(dt("pine64,rockpro64", "rockchip,rk3399")) == 0  # no NPU
    assert board_npu_cores(dt("raspberrypi,4-model-b", "brcm,bcm2711")) == 0
    assert board_npu_cores(tmp_path / "missing") == 0  # a PC
    assert soc_npu_cores("RK3588") == 3 and soc_npu_cores(None) == 0


def test_auto_workers(tmp_path, onnx_model, rknn_model):
    p = tmp_path / "compatible"
    p.write_bytes(b"rockchip,rk3588\0")
    assert auto_workers(rknn_model, compatible=p, rknnlite_cls=object) == 3
    assert auto_workers(rknn_model, compatible=tmp_path / "none", rknnlite_cls=object) == 1
    assert auto_workers(onnx_model, compatible=p) == 1  # onnxruntime spreads over the CPU itself
    assert npu_core_count(rknn_model, compatible=tmp_path / "none") == 3  # the sidecar's target
    assert npu_core_count(onnx_model, compatible=tmp_path / "none") == 1


# ----------------------------------------------------------------------------- command line

def _jsonl(path: Path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _strip_ms(recs):
    return [{k: v for k, v in r.items() if k != "ms"} for r in recs]


@needs_data
def test_cli_workers_match_sequential_run(onnx_model, tmp_path, capsys):
    boxes = tmp_path / "b.json"
    boxes.write_text(json.dumps(BOXES.tolist()))
    runs = {}
    for w in ("1", "3", "auto"):
        jl = tmp_path / f"w{w}.jsonl"
        assert main(["run", "--video", str(CLIP), "--model", str(onnx_model), "--boxes", str(boxes), "--jsonl",
                     str(jl), "--workers", w]) == 0
        runs[w] = _jsonl(jl)
    err = capsys.readouterr().err
    assert "280 frames" in err
    assert len(runs["1"]) == 280
    assert _strip_ms(runs["3"]) == _strip_ms(runs["1"]) == _strip_ms(runs["auto"])
    assert set(runs["3"][5]["ms"]) >= {"capture", "boxes", "warp", "infer", "decode", "nms", "track", "draw"}


class FlakyDetector:
    """CLI plug-in: fails on its 3rd and 7th call (frames 2 and 6 with one worker)."""

    calls = 0

    def __call__(self, frame):
        FlakyDetector.calls += 1
        if FlakyDetector.calls in (3, 7):
            raise RuntimeError("detector lost its device")
        return BOXES


@needs_data
def test_cli_failed_frame_is_a_json_line_with_error(onnx_model, tmp_path, capsys):
    jl = tmp_path / "e.jsonl"
    FlakyDetector.calls = 0
    assert main(["run", "--video", str(CLIP), "--model", str(onnx_model), "--jsonl", str(jl), "--max-frames", "10",
                 "--detector", "test_pipeline:FlakyDetector", "--workers", "1", "--quiet"]) == 0
    recs = _jsonl(jl)
    assert [r["frame"] for r in recs] == list(range(10))
    bad = [r for r in recs if "error" in r]
    assert [r["frame"] for r in bad] == [2, 6] and all(r["persons"] == [] for r in bad)
    assert bad[0]["error"] == "detector lost its device"
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["edgepose: frame 2: detector lost its device; going on",
                   "edgepose: frame 6: detector lost its device; going on"]


@needs_data
def test_cli_bad_workers_is_one_line(onnx_model, capsys):
    assert main(["run", "--video", str(CLIP), "--model", str(onnx_model), "--workers", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["edgepose: error: --workers 0: expected a number >= 1 or auto"]


@needs_data
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_cli_sigterm_mid_run_with_workers(onnx_model, tmp_path, sig):
    """SIGTERM / Ctrl-C while two workers are busy: the process ends within about a second, every JSON
    line is complete, and the annotated video is playable with one frame per line."""
    jl, mp4 = tmp_path / "s.jsonl", tmp_path / "s.mp4"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "tests") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "edgepose", "run", "--video", str(CLIP), "--model", str(onnx_model),
           "--jsonl", str(jl), "--out", str(mp4), "--detector", "_models:SlowDetector", "--workers", "2"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and (not jl.exists() or len(jl.read_bytes().splitlines()) < 5):
            time.sleep(0.05)
        proc.send_signal(sig)
        t0 = time.monotonic()
        _, err = proc.communicate(timeout=30)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert f"stopped by {sig.name}" in err
    assert took < 1.0 + 2.0, took  # 1 s contract plus interpreter teardown on a loaded machine
    recs = _jsonl(jl)  # every line parses
    assert 5 <= len(recs) < 280 and [r["frame"] for r in recs] == list(range(len(recs)))
    cap = cv2.VideoCapture(str(mp4))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    assert n == len(recs)


@pytest.fixture
def board_runtime(monkeypatch):
    """Make this PC look like a board whose rknnlite is the slow double (for the CLI)."""
    import edgepose.backends as backends
    import edgepose.backends.rknnlite as rknnlite_mod

    state = {"cls": slow_double(latency_s=0.005)}
    monkeypatch.setattr(backends, "installed", lambda name: True)
    monkeypatch.setattr(rknnlite_mod, "_import_rknnlite", lambda: state["cls"])
    return state


@needs_data
def test_cli_rknn_workers_pinned_and_in_order(rknn_model, tmp_path, board_runtime, capsys):
    runs = {}
    for w in ("1", "3"):
        board_runtime["cls"] = cls = slow_double(latency_s=0.005, jitter_s=0.01)
        jl = tmp_path / f"r{w}.jsonl"
        assert main(["run", "--video", str(CLIP), "--model", str(rknn_model), "--max-frames", "30", "--jsonl", str(jl),
                     "--workers", w, "--quiet"]) == 0
        runs[w] = _jsonl(jl)
        masks = [rt.calls[1][1] for rt in cls.instances]
    assert masks == [1, 2, 4]  # NPU cores 0, 1, 2
    assert _strip_ms(runs["3"]) == _strip_ms(runs["1"]) and len(runs["1"]) == 30


@needs_data
def test_cli_worker_that_cannot_start_is_one_line(rknn_model, board_runtime, capsys):
    board_runtime["cls"] = cls = slow_double(fail_core_mask=2)  # NPU_CORE_1
    assert main(["run", "--video", str(CLIP), "--model", str(rknn_model), "--workers", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"edgepose: error: --model {rknn_model}: worker 1 (NPU core 1): "), err
    assert "init_runtime returned -1" in err[0]
    assert all(rt.released for rt in cls.instances)


class FastCamera:
    """cv2.VideoCapture stand-in for a camera that delivers frames as fast as they are read."""

    def __init__(self, dev) -> None:
        self.n = 0

    def isOpened(self) -> bool:  # noqa: N802 (cv2's name)
        return True

    def read(self):
        self.n += 1
        time.sleep(0.001)
        return True, np.full((256, 340, 3), self.n % 250, np.uint8)

    def get(self, prop):
        return 30.0 if prop == cv2.CAP_PROP_FPS else 0.0

    def release(self) -> None:
        pass


@needs_data
def test_cli_live_camera_drops_and_reports(onnx_model, tmp_path, monkeypatch, capsys):
    from edgepose import cli

    monkeypatch.setattr(cv2, "VideoCapture", FastCamera)
    jl = tmp_path / "cam.jsonl"
    args = cli.build_parser().parse_args(["run", "--camera", "0", "--model", str(onnx_model), "--jsonl", str(jl),
                                          "--max-frames", "40", "--detector", "_models:SlowDetector",
                                          "--workers", "2"])
    summary = cli.run(args)
    recs = _jsonl(jl)
    frames = [r["frame"] for r in recs]
    assert summary["dropped"] > 0 and summary["frames"] == len(recs) and len(recs) + summary["dropped"] == 40
    assert frames == sorted(set(frames)) and frames[-1] == 39
    err = capsys.readouterr().err
    assert "in flight |" in err and "dropped |" in err  # the status line
    assert f"{summary['dropped']} dropped" in err.splitlines()[-1]  # the summary line


@needs_data
def test_result_unpacks_and_a_runtime_without_core_masks_is_not_pinned(rknn_model, frames):
    from test_runtime_rknnlite import FakeRKNNLite

    keep = {k: v for k, v in vars(FakeRKNNLite).items()
            if k not in ("__dict__", "__weakref__") and (not k.startswith("NPU_CORE_") or k == "NPU_CORE_AUTO")}
    bare = type("Bare", (), dict(keep, instances=[]))  # only NPU_CORE_AUTO
    with Pipeline(rknn_model, workers=2, rknnlite_cls=bare) as pipe:
        assert pipe.core_masks is None
        out = [(i, len(p), t["infer"]) for i, p, t in pipe.run(frames[:4])]
    assert [o[0] for o in out] == [0, 1, 2, 3]
    assert [rt.calls[1][1] for rt in bare.instances] == [0, 0]
