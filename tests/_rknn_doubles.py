"""Slow RKNNLite doubles for the pipeline tests and benchmarks.

:class:`SlowRKNNLite` is the contract double of ``test_runtime_rknnlite`` made to take a fixed
time per ``inference`` call while releasing the GIL, as the real C call does (``time.sleep``
releases it). With ``compute = False`` it hands back a fixed heatmap instead of running the
ONNX net, so the only CPU work left per frame is the pipeline's own.
"""
from __future__ import annotations

import random
import threading
import time

import numpy as np

from test_runtime_rknnlite import FakeRKNNLite


class SlowRKNNLite(FakeRKNNLite):
    latency_s = 0.03  # per inference call
    jitter_s = 0.0  # plus a random 0..jitter_s (seeded, shared by all instances)
    compute = True  # run the ONNX net; False: a fixed heatmap
    fail_on_black = False  # inference returns None (a runtime error) for an all-black input
    fail_core_mask = None  # init_runtime returns -1 for this core mask
    rng = random.Random(0)
    _rng_lock = threading.Lock()

    def init_runtime(self, target=None, device_id=None, async_mode=False, core_mask=FakeRKNNLite.NPU_CORE_AUTO):
        ret = super().init_runtime(target, device_id, async_mode, core_mask)
        if self.fail_core_mask is not None and core_mask == self.fail_core_mask:
            return -1
        return ret

    def inference(self, inputs, data_type=None, data_format=None, inputs_pass_through=None, get_frame_id=False,
                  reuse_outputs=False):
        t0 = time.perf_counter()
        if self.fail_on_black and not inputs[0].any():
            return None
        if self.compute:
            out = super().inference(inputs, data_type, data_format, inputs_pass_through, get_frame_id, reuse_outputs)
        else:
            hw, hh = self.meta.heatmap_size
            fixed = getattr(self, "_fixed", None)
            if fixed is None:
                fixed = self._fixed = np.random.default_rng(0).random((1, self.meta.num_joints, hh, hw), np.float32)
            out = [fixed]
        with self._rng_lock:
            extra = self.rng.random() * self.jitter_s if self.jitter_s else 0.0
        left = self.latency_s + extra - (time.perf_counter() - t0)
        if left > 0:
            time.sleep(left)
        return out


def slow_double(**knobs) -> type:
    """A fresh subclass of :class:`SlowRKNNLite` with its own ``instances`` list and knobs."""
    knobs.setdefault("instances", [])
    if "jitter_s" in knobs:
        knobs.setdefault("rng", random.Random(0))
    return type("SlowRKNNLiteT", (SlowRKNNLite,), knobs)
