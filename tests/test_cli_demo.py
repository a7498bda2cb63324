"""`make demo` (python -m host_tools.demo): where its models and clip come from, and what it says.

No test reaches the internet: the mirror is a closed local port or ``--offline`` is given. The
models are tiny stand-ins (a tiny pose net, a detector ONNX with planted boxes), so these tests
check the demo's choices and outputs, not accuracy.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import MODELS, ROOT, need_data, need_model

from host_tools import registry
from host_tools.demo import main

from _detmodels import planted_yolox, to_input_xyxy
from _models import tiny_onnx

CLIP_WH = (340, 256)  # the sample clip's frame size
BOXES = np.array([[20.0, 10.0, 120.0, 230.0], [200.0, 20.0, 110.0, 220.0]])  # frame xywh


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def env(tmp_path, monkeypatch):
    """No EDGEPOSE_MODELS, an empty cache, no shared real models, a mirror nobody answers."""
    pytest.importorskip("torch", reason="the demo exports its models with torch (host tools)")
    pytest.importorskip("yaml", reason="the demo's untrained fallback uses the host config (PyYAML)")
    monkeypatch.delenv("EDGEPOSE_MODELS", raising=False)
    monkeypatch.setenv("EDGEPOSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("EDGEPOSE_TEST_MODELS", str(tmp_path / "no_models"))
    monkeypatch.setenv("EDGEPOSE_MODEL_MIRROR", f"http://127.0.0.1:{closed_port()}")
    return tmp_path


def planted_detector(path: Path, frame_wh=CLIP_WH) -> Path:
    """A YOLOX-layout ONNX (416x416) whose output holds two persons at :data:`BOXES`."""
    return planted_yolox(path, to_input_xyxy(BOXES, frame_wh, (416, 416), topleft=True), [0.9, 0.8],
                         input_wh=(416, 416))


def trained_tiny(path: Path) -> Path:
    """The tiny net, its metadata naming (test) weights instead of 'untrained'."""
    return tiny_onnx(path, source_config={"weights": "planted test weights"})


def persons(jsonl: Path):
    return [json.loads(line)["persons"] for line in jsonl.read_text().splitlines()]


def test_demo_falls_back_to_the_untrained_network(env, capsys):
    need_data("video", "arm_wrestling.mp4")
    out_dir = env / "out"
    assert main(["--out-dir", str(out_dir), "--max-frames", "8"]) == 0
    out = capsys.readouterr().out
    summary = out.split("summary")[1]
    assert "UNTRAINED" in out and "untrained" in summary and "keypoints are noise" in summary
    # the online step was tried and failed, in one note line per model
    assert sum("note:" in ln and "cannot connect" in ln for ln in out.splitlines()) == 2
    model = out_dir / "pose_resnet_18_untrained.onnx"
    lines = (out_dir / "arm_wrestling.jsonl").read_text().splitlines()
    assert len(lines) == 8 and json.loads(lines[0])["persons"][0]["keypoints"]
    cap = cv2.VideoCapture(str(out_dir / "arm_wrestling_annotated.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 8
    cap.release()
    from edgepose.metadata import read_onnx_metadata

    meta = read_onnx_metadata(model)
    assert meta.arch == "pose_resnet_18" and meta.batch == 0 and meta.input_size == (192, 256)
    assert [p for p in (env / "cache").rglob("*") if p.is_file()] == []  # nothing partial in the cache


def test_demo_uses_the_models_in_EDGEPOSE_MODELS(env, monkeypatch, capsys):
    need_data("video", "arm_wrestling.mp4")
    models = env / "models"
    models.mkdir()
    pose = trained_tiny(models / "pose.onnx")
    det = planted_detector(models / "det.onnx")
    monkeypatch.setenv("EDGEPOSE_MODELS", str(models))
    out_dir = env / "out"
    assert main(["--out-dir", str(out_dir), "--max-frames", "4", "--offline"]) == 0
    out = capsys.readouterr().out
    summary = out.split("summary")[1]
    assert f"pose:      {pose}" in summary and "TRAINED" in summary and "UNTRAINED" not in summary
    assert f"detector:  {det} (from EDGEPOSE_MODELS={models})" in summary and "tracking:  on" in summary
    assert "real trained models" in summary
    frames = persons(out_dir / "arm_wrestling.jsonl")
    assert len(frames) == 4
    ids = []
    for ps in frames:  # the planted detector's two persons are among them, with track ids
        boxes = np.array([p["box"] for p in ps])
        match = [int(np.argmin(np.abs(boxes - b).max(1))) for b in BOXES]
        assert all(np.allclose(boxes[m], b, atol=2.0) for m, b in zip(match, BOXES))
        ids.append([ps[m]["id"] for m in match])
    assert min(min(i) for i in ids) >= 0 and ids[0] == ids[-1] and ids[0][0] != ids[0][1]
    assert not (out_dir / "pose_resnet_18_untrained.onnx").exists()


def test_demo_takes_models_and_clip_from_the_cache(env, monkeypatch, capsys):
    clip = need_data("video", "arm_wrestling.mp4")
    monkeypatch.setenv("EDGEPOSE_TEST_DATA", str(env / "no_data"))
    cache = env / "cache"
    (cache / "onnx").mkdir(parents=True)
    trained_tiny(cache / "onnx" / "res50_coco_256x192.onnx")  # what `pull res50_coco_256x192 --onnx` leaves
    det = planted_detector(cache / "yolox_nano.onnx")
    digest = hashlib.sha256(det.read_bytes()).hexdigest()
    # the cache check is the real one: register the planted file's hash for the detector name
    entry = dataclasses.replace(registry.get("yolox_nano"), sha256=digest, sha256_prefix=digest,
                                size=det.stat().st_size)
    monkeypatch.setitem(registry.BY_NAME, "yolox_nano", entry)
    shutil.copyfile(clip, cache / "arm_wrestling.mp4")
    out_dir = env / "out"
    assert main(["--out-dir", str(out_dir), "--max-frames", "3"]) == 0
    out = capsys.readouterr().out
    summary = out.split("summary")[1]
    assert f"clip:      {cache / 'arm_wrestling.mp4'} (from the cache" in summary
    assert f"pose:      {cache / 'onnx' / 'res50_coco_256x192.onnx'}" in summary and "TRAINED" in summary
    assert f"detector:  {det} (from the cache" in summary
    assert "note:" not in out  # nothing had to be downloaded
    assert len(persons(out_dir / "arm_wrestling.jsonl")) == 3


@pytest.mark.slow
def test_demo_runs_the_real_shared_models_when_at_hand(env, monkeypatch, capsys):
    """With the real models beside the checkout (and nothing in EDGEPOSE_MODELS or the cache),
    the demo runs YOLOX-Nano and the imported EfficientPose, says so, and reports persons with
    stable ids on the clip."""
    need_data("video", "arm_wrestling.mp4")
    need_model("yolox_nano.onnx")
    need_model("efficientpose_rt_lite_mpii.onnx")
    monkeypatch.setenv("EDGEPOSE_TEST_MODELS", str(MODELS))
    out_dir = env / "out"
    assert main(["--out-dir", str(out_dir), "--max-frames", "12", "--offline"]) == 0
    out = capsys.readouterr().out
    summary = out.split("summary")[1]
    assert "efficientpose_rt_lite_mpii_edgepose.onnx" in summary and "TRAINED" in summary
    assert "UNTRAINED" not in summary and "mpii keypoints" in summary
    assert f"detector:  {MODELS / 'yolox_nano.onnx'}" in summary and "real trained models" in summary
    frames = persons(out_dir / "arm_wrestling.jsonl")
    assert len(frames) == 12 and all(2 <= len(ps) <= 12 for ps in frames)
    assert all(len(p["keypoints"]) == 16 for ps in frames for p in ps)
    first, last = ({p["id"] for p in ps} for ps in (frames[0], frames[-1]))
    assert len(first & last) >= 2  # the same people keep their ids over the 12 frames


def test_demo_refuses_a_cached_detector_with_a_wrong_hash(env, capsys):
    cache = env / "cache"
    cache.mkdir()
    planted_detector(cache / "yolox_nano.onnx")  # not YOLOX-Nano: its sha256 differs from the registry's
    from host_tools.demo import find_models

    pose, det, notes = find_models(offline=True)
    assert det is None and not (cache / "yolox_nano.onnx").exists()
    assert "no longer matches" in capsys.readouterr().err


def test_demo_draws_its_own_clip_without_data_cache_or_network(env, monkeypatch, capsys):
    monkeypatch.setenv("EDGEPOSE_TEST_DATA", str(env / "no_data"))
    models = env / "models"
    models.mkdir()
    trained_tiny(models / "pose.onnx")
    planted_detector(models / "det.onnx", frame_wh=(640, 360))
    monkeypatch.setenv("EDGEPOSE_MODELS", str(models))
    out_dir = env / "out"
    assert main(["--out-dir", str(out_dir), "--max-frames", "5"]) == 0
    out = capsys.readouterr().out
    clip = out_dir / "synthetic_people.mp4"
    assert f"clip:      {clip} (from the demo's own drawing" in out
    notes = [ln for ln in out.splitlines() if "note:" in ln]
    assert len(notes) == 1 and "clip:" in notes[0] and "cannot connect" in notes[0]
    cap = cv2.VideoCapture(str(clip))
    n, (ok, frame) = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), cap.read()
    cap.release()
    assert n == 60 and ok and frame.shape == (360, 640, 3)
    assert frame.std() > 10  # figures on a background, not a blank frame
    assert len(persons(out_dir / "synthetic_people.jsonl")) == 5
    assert [p for p in (env / "cache").rglob("*") if p.is_file()] == []


def test_demo_with_a_wrong_EDGEPOSE_MODELS_is_one_line(env, monkeypatch, capsys):
    monkeypatch.setenv("EDGEPOSE_MODELS", str(env / "nope"))
    monkeypatch.setenv("EDGEPOSE_TEST_DATA", str(env / "no_data"))
    assert main(["--out-dir", str(env / "out"), "--offline"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "EDGEPOSE_MODELS" in err and "not a folder" in err


def test_the_device_package_imports_neither_torch_nor_host_tools():
    code = ("import pkgutil, importlib, sys, edgepose\n"
            "for m in pkgutil.walk_packages(edgepose.__path__, 'edgepose.'):\n"
            "    if not m.name.endswith('__main__'):\n"
            "        importlib.import_module(m.name)\n"
            "bad = sorted(k for k in sys.modules if k.split('.')[0] in ('torch', 'host_tools'))\n"
            "print(bad)\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_python_m_edgepose_demo_points_to_the_new_place():
    res = subprocess.run([sys.executable, "-m", "edgepose.demo"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "host_tools.demo" in res.stderr
