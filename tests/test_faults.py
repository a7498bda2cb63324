"""Faults with nothing lost: a camera that stops delivering, a disk that fills up, damaged or
wrong inputs. Each ends with one line (exit 2) and leaves the outputs already written valid."""
from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from _models import CLIP, DATA, tiny_onnx
from edgepose import cli, sinks
from edgepose.cli import FrameSource, SourceLost, main
from conftest import needs_data


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return tiny_onnx(tmp_path_factory.mktemp("faults") / "tiny.onnx")


class FakeCamera:
    """Stands in for cv2.VideoCapture on a camera: ``plan[k]`` frames on the k-th open (0 = it
    does not open), then read() fails, as an unplugged USB camera does."""

    opens = 0
    plan = [5]

    def __init__(self, dev) -> None:
        self.k = FakeCamera.opens
        FakeCamera.opens += 1
        self.left = FakeCamera.plan[self.k] if self.k < len(FakeCamera.plan) else 0
        self.n = 0

    def isOpened(self) -> bool:  # noqa: N802 (cv2's name)
        return self.left > 0 or self.k == 0

    def read(self):
        if self.n >= self.left:
            return False, None
        time.sleep(1 / 30)  # a camera delivers at its frame rate (a faster one would see frames dropped)
        self.n += 1
        frame = np.full((240, 320, 3), 40 * self.k + self.n, np.uint8)
        return True, frame

    def get(self, prop):
        return 30.0 if prop == cv2.CAP_PROP_FPS else 0.0

    def release(self) -> None:
        pass


@pytest.fixture
def camera(monkeypatch):
    FakeCamera.opens = 0
    monkeypatch.setattr(cv2, "VideoCapture", FakeCamera)
    return FakeCamera


def test_camera_reconnects_with_backoff_and_resumes(camera, capsys):
    camera.plan = [3, 0, 4]  # delivers 3, fails to reopen once, then delivers 4 more
    waits = []
    src = FrameSource(camera="0", reconnect=3, backoff_s=0.5, sleep=waits.append)
    got = []
    with pytest.raises(SourceLost, match=r"camera 0: stopped delivering frames after 7 frames .* 3 reconnect"):
        while True:
            frame, t = src.read()
            assert frame is not None
            got.append(int(frame[0, 0, 0]))
    assert got == [1, 2, 3, 81, 82, 83, 84]  # frames of the 1st and 3rd open
    assert waits == [0.5, 1.0, 0.5, 1.0, 2.0]  # back-off doubles, restarts after a reconnect
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("edgepose: camera 0 delivered no frame after 3 frames; reconnecting in 0.5 s (try 1/3)")
    assert "edgepose: camera 0 reconnected" in err


def test_camera_lost_mid_run_is_one_line_and_keeps_the_json_lines(camera, model, tmp_path, capsys):
    camera.plan = [6]
    jl = tmp_path / "cam.jsonl"
    rc = main(["run", "--camera", "0", "--model", str(model), "--jsonl", str(jl), "--reconnect", "2", "--quiet"])
    assert rc == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len([ln for ln in err if "reconnecting" in ln]) == 2
    assert err[-1].startswith("edgepose: error: camera 0: stopped delivering frames after 6 frames")
    assert [json.loads(ln)["frame"] for ln in jl.read_text().splitlines()] == list(range(6))


def test_reconnect_zero_gives_up_at_once(camera, capsys):
    camera.plan = [2]
    src = FrameSource(camera="0", reconnect=0, sleep=lambda s: pytest.fail("slept"))
    assert src.read()[0] is not None and src.read()[0] is not None
    with pytest.raises(SourceLost):
        src.read()
    assert main(["run", "--camera", "0", "--model", "x.onnx", "--reconnect", "-1"]) == 2


@needs_data
def test_video_that_ends_early_is_just_the_end(tmp_path, model):
    short = tmp_path / "short.mp4"
    cap = cv2.VideoCapture(str(CLIP))
    w = cv2.VideoWriter(str(short), cv2.VideoWriter_fourcc(*"mp4v"), 28, (340, 256))
    for _ in range(10):
        w.write(cap.read()[1])
    w.release()
    data = short.read_bytes()
    short.write_bytes(data[: len(data) * 2 // 3])  # cut: no index, or frames missing
    jl = tmp_path / "s.jsonl"
    rc = main(["run", "--video", str(short), "--model", str(model), "--jsonl", str(jl), "--quiet"])
    if rc == 0:  # the container still opens: whatever frames decode are processed
        assert all(json.loads(ln) for ln in jl.read_text().splitlines())
    else:
        assert rc == 2


# ----------------------------------------------------------------------------- full disk

def test_jsonl_write_that_fails_midline_leaves_only_complete_lines(tmp_path, monkeypatch):
    path = tmp_path / "a.jsonl"
    sink = sinks.JsonlSink(path, overwrite=False)
    sink.write_line(json.dumps({"frame": 0}))
    real_write = os.write

    def half_then_full(fd, data):
        if fd == sink.fd and len(data) > 4:
            return real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sinks.os, "write", half_then_full)
    with pytest.raises(sinks.OutputFull, match=r"--jsonl .*a.jsonl: the disk is full"):
        sink.write_line(json.dumps({"frame": 1, "persons": list(range(50))}))
    monkeypatch.undo()
    sink.close()
    assert path.read_text() == '{"frame": 0}\n'


@pytest.fixture
def small_disk():
    """A 1 MB tmpfs (root only); skipped where mounting is not permitted."""
    d = Path(tempfile.mkdtemp(prefix="edgepose-full-"))
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("needs root and mount(8) for a small tmpfs")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(d)], capture_output=True, text=True)
    if res.returncode != 0:
        d.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    yield d
    subprocess.run(["umount", str(d)], check=False)
    d.rmdir()


@needs_data
def test_full_disk_ends_with_one_line_and_valid_outputs(small_disk, model):
    jl, mp4 = small_disk / "run.jsonl", small_disk / "run.mp4"
    res = subprocess.run([sys.executable, "-m", "edgepose", "run", "--video", str(CLIP), "--loop", "--model",
                          str(model), "--jsonl", str(jl), "--out", str(mp4), "--quiet", "--max-frames", "5000"],
                         capture_output=True, text=True, timeout=600, env=dict(os.environ, OMP_NUM_THREADS="1"))
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 2, res.stderr
    assert len(lines) == 1 and "the disk is full" in lines[0] and "complete" in lines[0], lines
    recs = [json.loads(ln) for ln in jl.read_text().splitlines()]  # every line parses
    assert recs and [r["frame"] for r in recs] == list(range(len(recs)))
    assert jl.read_text().endswith("\n")
    cap = cv2.VideoCapture(str(mp4))
    n = 0
    while cap.read()[0]:
        n += 1
    # the video plays: every frame of the run that reached the writer, its index intact
    assert n >= len(recs) - 1 and n > 10, (n, len(recs))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == n


# ----------------------------------------------------------------------------- inputs

def test_image_folder_is_named_as_a_folder(model, tmp_path, capsys):
    assert main(["run", "--image", str(tmp_path), "--model", str(model)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a folder; give one image file" in err[0]


@needs_data
def test_truncated_jpeg_is_processed_with_one_warning(model, tmp_path):
    src = (DATA / "coco_mini" / "000000000785.jpg").read_bytes()
    bad = tmp_path / "cut.jpg"
    bad.write_bytes(src[:6000])
    jl = tmp_path / "cut.jsonl"
    res = subprocess.run([sys.executable, "-m", "edgepose", "run", "--image", str(bad), "--model", str(model),
                          "--jsonl", str(jl), "--quiet"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "the image is damaged" in lines[0] and str(bad) in lines[0], lines
    assert len(jl.read_text().splitlines()) == 1
    good = tmp_path / "good.jpg"
    good.write_bytes(src)
    res = subprocess.run([sys.executable, "-m", "edgepose", "run", "--image", str(good), "--model", str(model),
                          "--quiet"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and not res.stderr.strip(), res.stderr


# ----------------------------------------------------------------------------- .rknn sidecars

@pytest.fixture
def two_rknn(model, tmp_path):
    from _models import rknn_from_onnx

    a, b = tmp_path / "a.rknn", tmp_path / "b.rknn"
    rknn_from_onnx(model, a)
    rknn_from_onnx(model, b)
    b.write_bytes(b.read_bytes() + b"\n(a different build)")  # another model file
    from edgepose.metadata import write_sidecar, read_sidecar

    write_sidecar(b, read_sidecar(a))
    return a, b


def _one_line_error(argv, capsys) -> str:
    assert main(argv) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("edgepose: error: "), err
    return err[0]


def _one_line_backend_error(path) -> str:
    from edgepose.backends.rknnlite import RknnLiteBackend
    from edgepose.metadata import MetadataError

    with pytest.raises(MetadataError) as e:  # the board's loader reads the sidecar before the NPU runtime
        RknnLiteBackend(rknnlite_cls=object).load(path)
    assert "\n" not in str(e.value)
    return str(e.value)


@pytest.mark.parametrize("command", ["info", "backend"])
def test_rknn_sidecar_missing_truncated_or_from_another_model(two_rknn, command, capsys):
    a, b = two_rknn
    check = (lambda m: _one_line_error(["info", "--model", str(m)], capsys)) if command == "info" else _one_line_backend_error
    side_a, side_b = Path(str(a) + ".json"), Path(str(b) + ".json")
    # from another model: b's sidecar was copied from a's build
    shutil.copy(side_a, side_b)
    assert "belongs to another model" in check(b)
    # truncated in transfer
    side_b.write_text(side_a.read_text()[: len(side_a.read_text()) // 2])
    assert "sidecar is truncated" in check(b)
    side_b.write_text("")
    assert "sidecar is empty" in check(b)
    side_b.unlink()
    assert "metadata sidecar missing" in check(b)
    if command == "info":  # the matching pair still reads
        capsys.readouterr()
        assert main(["info", "--model", str(a)]) == 0
