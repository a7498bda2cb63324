"""Tracking on the real clip with the real models (YOLOX-Nano + EfficientPose RT Lite), at the
defaults: no ghosts (persons per frame with tracking <= without), the two wrestlers reported in
the median frame, few ids, and two workers reporting what one does. The first 100 of the 280
frames keep it under a minute; the full figures are benchmarks/track_real.py's."""
from __future__ import annotations

import pytest

from _real import EFFICIENTPOSE, YOLOX_NANO, stamp_efficientpose
from conftest import need_data, need_model

pytestmark = pytest.mark.slow
FRAMES = 100


def test_tracking_on_real_clip_meets_targets(tmp_path):
    clip = need_data("video", "arm_wrestling.mp4")
    det = need_model(YOLOX_NANO)
    need_model(EFFICIENTPOSE)
    from benchmarks.track_real import measure, read_clip

    pose = stamp_efficientpose(tmp_path / "efficientpose.onnx")
    frames = read_clip(clip, FRAMES)
    on = measure(pose, det, frames, track=True)
    off = measure(pose, det, frames, track=False)
    two = measure(pose, det, frames, track=True, workers=2)
    for r in (on, off, two):
        assert r["frames"] == FRAMES and r["errors"] == 0
    # no ghosts: tracking adds no one (before the fix: a median of 8 against 5)
    assert on["median"] <= off["median"], (on["median"], off["median"])
    # the threshold does not buy that by dropping the wrestlers: wherever the detector alone
    # reports both, tracking does too, and both are in most median frames
    lost = [i for i in range(FRAMES) if off["both"][i] and not on["both"][i]]
    assert len(lost) <= 0.02 * FRAMES, lost
    assert sum(off["both"]) >= 0.5 * FRAMES  # (the detector finds them: the check above means something)
    assert on["median_frames_with_both"] >= 0.5 * len(on["median_frames"]), on["median_frames_with_both"]
    assert on["median"] >= 2
    # ids last: 16 over these frames at the defaults (23 over all 280, the target 25); before
    # the fix, 313 over the clip and 166 over these frames (a median of 10.5 persons)
    assert on["ids"] <= 20, on["ids"]
    # a lag of two frames changes little
    assert abs(two["median"] - on["median"]) <= 1 and two["ids"] <= on["ids"] + 5, (two["median"], two["ids"])
