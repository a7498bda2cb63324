"""`make demo` (python -m edgepose.demo): PoseResNet-18 untrained, exported, run on the clip."""
from __future__ import annotations

import json

import cv2
import pytest

from edgepose.demo import main


def test_demo_runs_end_to_end(tmp_path, capsys):
    pytest.importorskip("torch", reason="the demo exports its model with torch (host tools)")
    assert main(["--out-dir", str(tmp_path), "--max-frames", "8"]) == 0
    out = capsys.readouterr().out
    assert "UNTRAINED" in out and "untrained" in out.split("summary")[1]
    model = tmp_path / "pose_resnet_18_untrained.onnx"
    assert model.is_file()
    lines = (tmp_path / "arm_wrestling.jsonl").read_text().splitlines()
    assert len(lines) == 8 and json.loads(lines[0])["persons"][0]["keypoints"]
    cap = cv2.VideoCapture(str(tmp_path / "arm_wrestling_annotated.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 8
    cap.release()
    from edgepose.metadata import read_onnx_metadata

    meta = read_onnx_metadata(model)
    assert meta.arch == "pose_resnet_18" and meta.batch == 0 and meta.input_size == (192, 256)
