"""`edgepose run` / `edgepose info` end to end with an exported model through onnxruntime,
and the error paths (one line on stderr, exit code 2)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from _models import CLIP, POSETRACK, ROOT, tiny_onnx
from edgepose.cli import main
from conftest import DATA, needs_data

PERSON_KEYS = {"id", "box", "box_score", "score", "keypoints", "scores"}


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return tiny_onnx(tmp_path_factory.mktemp("cli") / "tiny.onnx")


def _read_jsonl(path: Path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@needs_data
def test_video_end_to_end(model, tmp_path, capsys):
    jl, mp4 = tmp_path / "a.jsonl", tmp_path / "a.mp4"
    rc = main(["run", "--video", str(CLIP), "--model", str(model), "--jsonl", str(jl), "--out", str(mp4)])
    assert rc == 0
    recs = _read_jsonl(jl)
    assert len(recs) == 280 and [r["frame"] for r in recs] == list(range(280))
    assert recs[28]["time"] == pytest.approx(1.0, abs=0.05)  # 28 fps clip
    for r in recs:
        assert set(r) == {"frame", "time", "persons", "ms"}
        assert set(r["ms"]) >= {"capture", "boxes", "warp", "infer", "decode", "nms", "draw"}
        (p,) = r["persons"]  # full frame, single person by default
        assert set(p) == PERSON_KEYS and p["box"] == [0, 0, 340, 256]
        assert len(p["keypoints"]) == 17 and all(len(k) == 2 for k in p["keypoints"]) and len(p["scores"]) == 17
        assert p["id"] >= 0
    cap = cv2.VideoCapture(str(mp4))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 280
    assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (340, 256)
    ok, first = cap.read()
    cap.release()
    src = cv2.VideoCapture(str(CLIP))
    _, orig = src.read()
    src.release()
    assert ok and np.abs(first.astype(int) - orig.astype(int)).mean() > 0.5  # the overlay is drawn
    assert "280 frames" in capsys.readouterr().err


@needs_data
def test_jsonl_to_stdout_max_frames_and_boxes(model, tmp_path, capsys):
    boxes = tmp_path / "b.json"
    boxes.write_text(json.dumps([[20, 10, 150, 230], [170, 20, 160, 220]]))
    rc = main(["run", "--video", str(CLIP), "--model", str(model), "--jsonl", "-", "--max-frames", "7",
               "--boxes", str(boxes), "--quiet"])
    assert rc == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 7
    recs = [json.loads(x) for x in out]
    ids = [[p["id"] for p in r["persons"]] for r in recs]
    assert all(len(i) == 2 for i in ids)


@needs_data
def test_posetrack_clip_per_frame_boxes(model, tmp_path):
    """The 5-frame 1280x720 PoseTrack clip with per-frame boxes ({frame: boxes}; frame 3 has
    none): one line per frame, persons as given. (The clip has no annotations and the weights
    are untrained, so identity across its real motion is not asserted here; see
    test_runtime_tracking for ids on PoseTrack ground truth.)"""
    clip = POSETRACK / "videos" / "000001_mpiinew_test" / "000001_mpiinew_test.mp4"
    boxes = tmp_path / "b.json"
    per = {str(i): [[400 - 10 * i, 250, 200, 420, 0.9], [650, 300, 250, 250, 0.8]] for i in (0, 1, 2, 4)}
    boxes.write_text(json.dumps(per))
    jl = tmp_path / "p.jsonl"
    assert main(["run", "--video", str(clip), "--model", str(model), "--jsonl", str(jl), "--boxes", str(boxes),
                 "--quiet"]) == 0
    recs = _read_jsonl(jl)
    assert [len(r["persons"]) for r in recs] == [2, 2, 2, 0, 2]
    assert recs[1]["persons"][0]["box"][0] in (390.0, 650.0)


@needs_data
def test_image_with_annotated_output(model, tmp_path):
    img = DATA / "posetrack_mini" / "images" / "val" / "009473_mpii_test" / "000000.jpg"
    out = tmp_path / "o.jpg"
    jl = tmp_path / "o.jsonl"
    assert main(["run", "--image", str(img), "--model", str(model), "--out", str(out), "--jsonl", str(jl),
                 "--flip-test", "--quiet"]) == 0
    assert cv2.imread(str(out)).shape == (1080, 1920, 3)
    assert len(_read_jsonl(jl)) == 1


def test_info(model, capsys):
    assert main(["info", "--model", str(model)]) == 0
    out = capsys.readouterr().out
    assert "onnxruntime" in out and "input_size: [192, 256]" in out and "kernels:" in out


def _one_line_error(capsys, argv, match):
    rc = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2, err
    assert len(err) == 1 and err[0].startswith("edgepose: error:") and match in err[0], err
    return err[0]


@needs_data
def test_error_paths(model, tmp_path, capsys):
    v = ["--video", str(CLIP)]
    _one_line_error(capsys, ["run", *v, "--model", str(tmp_path / "none.onnx")], "file not found")
    _one_line_error(capsys, ["run", "--video", str(tmp_path / "x.mp4"), "--model", str(model)], "--video")
    _one_line_error(capsys, ["run", "--camera", "57", "--model", str(model)], "cannot open the camera")
    existing = tmp_path / "exists.jsonl"
    existing.write_text("keep me\n")
    _one_line_error(capsys, ["run", *v, "--model", str(model), "--jsonl", str(existing)], "--force")
    assert existing.read_text() == "keep me\n"  # never overwritten silently
    _one_line_error(capsys, ["run", *v, "--model", str(model), "--out", str(tmp_path / "no" / "dir" / "a.mp4")],
                    "does not exist")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if not os.access(ro, os.W_OK):  # root may write anyway
            _one_line_error(capsys, ["run", *v, "--model", str(model), "--out", str(ro / "a.mp4")], "not writable")
    finally:
        ro.chmod(0o700)
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    _one_line_error(capsys, ["run", *v, "--model", str(model), "--boxes", str(bad)], "not valid JSON")
    _one_line_error(capsys, ["run", *v, "--model", str(model), "--serve", "x:y"], "--serve")
    _one_line_error(capsys, ["run", *v, "--model", str(model), "--token", "t"], "--token")
    _one_line_error(capsys, ["run", *v, "--model", str(model), "--detector", "nope_mod:X"], "--detector")
    notmodel = tmp_path / "m.onnx"
    notmodel.write_bytes(b"junk")
    _one_line_error(capsys, ["run", *v, "--model", str(notmodel)], "onnxruntime cannot load")


@needs_data
def test_subprocess_exit_code_and_single_line():
    r = subprocess.run([sys.executable, "-m", "edgepose", "run", "--video", str(CLIP), "--model", "missing.onnx"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip() == "edgepose: error: --model missing.onnx: file not found"


@needs_data
def test_sigterm_stops_cleanly_serves_and_flushes(model, tmp_path):
    """A long run with a (slow) detector plug-in and the preview server: fetch a frame with
    the token, SIGTERM it, and find every written JSON line complete."""
    jl = tmp_path / "s.jsonl"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "tests") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "edgepose", "run", "--video", str(CLIP), "--model", str(model), "--jsonl", str(jl),
           "--detector", "_models:SlowDetector", "--detect-every", "2", "--serve", "127.0.0.1:0", "--token", "tk"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stderr.readline()
        assert "preview at http://127.0.0.1:" in line, line
        url = line.split("preview at ")[1].strip()
        port = int(url.split(":")[2].split("/")[0])
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/frame.jpg?token=tk", timeout=5) as r:
                    assert r.read(2) == b"\xff\xd8"
                    break
            except urllib.error.HTTPError as e:  # 503 before the first frame
                assert e.code == 503
                time.sleep(0.1)
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/frame.jpg", timeout=5)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped by SIGTERM" in err
    recs = _read_jsonl(jl)
    assert 0 < len(recs) < 280
    assert all(len(r["persons"]) >= 1 for r in recs)


@needs_data
def test_loop_replays_the_clip(model, tmp_path, capsys):
    clip = POSETRACK / "videos" / "000001_mpiinew_test" / "000001_mpiinew_test.mp4"  # 5 frames
    assert main(["run", "--video", str(clip), "--model", str(model), "--jsonl", "-", "--loop", "--max-frames", "12",
                 "--quiet"]) == 0
    recs = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [r["frame"] for r in recs] == list(range(12))
    assert all(b["time"] > a["time"] for a, b in zip(recs, recs[1:]))


@needs_data
def test_outputs_never_clobber_inputs(model, tmp_path, capsys):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(CLIP.read_bytes())
    _one_line_error(capsys, ["run", "--video", str(clip), "--model", str(model), "--out", str(clip), "--force"],
                    "is one of the inputs")
    _one_line_error(capsys, ["run", "--video", str(clip), "--model", str(model), "--jsonl", str(model), "--force"],
                    "is one of the inputs")
    _one_line_error(capsys, ["run", "--video", str(clip), "--model", str(model), "--out", "-"], "must be a file")
    assert clip.read_bytes() == CLIP.read_bytes()


def test_info_on_rknn_without_the_board_runtime(model, tmp_path, capsys):
    from _models import rknn_from_onnx
    from edgepose.backends import installed

    rk = tmp_path / "m.rknn"
    rknn_from_onnx(model, rk, quantized="int8")
    if installed("rknnlite"):
        pytest.skip("rknnlite installed: info loads the model for real")
    assert main(["info", "--model", str(rk)]) == 0
    out = capsys.readouterr().out
    assert "not installed here" in out and "layout: nhwc" in out and "target: rk3588" in out
    (tmp_path / "m.rknn.json").unlink()
    _one_line_error(capsys, ["info", "--model", str(rk)], "sidecar missing")


def test_camera_error_is_one_line_on_the_real_stderr(model):
    """OpenCV logs its own WARN/ERROR lines from C++ (fd 2), which capsys cannot see."""
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "edgepose", "run", "--camera", "57", "--model", str(model)],
                         capture_output=True, text=True, timeout=120)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 2, res.stderr
    assert len(lines) == 1 and "cannot open the camera" in lines[0], lines
