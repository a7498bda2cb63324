"""A moving synthetic scene with ground truth, a planted-output pose model that reads it and a
planted detector, for tracking tests that need no real model.

Each person is 17 COCO joints drawn as small discs, joint ``j`` always in colour ``COLORS[j]``
on a black frame. The pose model is a real ONNX graph (dynamic batch, stride-1 heatmaps):
heatmap ``j`` = ``0.8 * exp(-|pixel - COLORS[j]|^2 / 0.02)`` (RGB on 0..1), so its joints are
wherever the discs of that colour are in the crop: one person's joints when the crop holds one
person, a mix when people overlap, nothing on an empty crop (scores ~0).

The detector is a callable that reads the frame number stamped in the bottom-right pixel and
returns the ground-truth boxes of that frame (jittered), minus planted misses, plus planted
false positives.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import numpy as np

W, H = 480, 360
INPUT_WH = (64, 96)  # pose model input (w, h); heatmaps at the same size
PEAK = 0.8

# RGB colours on 0..1 with components in {0, .5, 1} and at least one 1: no colour is a darker
# copy of another, so the anti-aliased rim of one disc never looks like another joint
_LEVELS = [(r, g, b) for r in (0, .5, 1) for g in (0, .5, 1) for b in (0, .5, 1) if max(r, g, b) == 1]
COLORS = np.array(_LEVELS[:17], np.float64)

# a standing figure, joint offsets from its centre in units of its height (COCO order)
_FIGURE = np.array([
    [0.0, -0.45], [-0.03, -0.48], [0.03, -0.48], [-0.07, -0.46], [0.07, -0.46],  # nose, eyes, ears
    [-0.15, -0.3], [0.15, -0.3], [-0.2, -0.1], [0.2, -0.1], [-0.22, 0.08], [0.22, 0.08],  # arms
    [-0.1, 0.05], [0.1, 0.05], [-0.11, 0.27], [0.11, 0.27], [-0.12, 0.48], [0.12, 0.48],  # legs
])


@dataclass
class Person:
    """One person: ``path(t) -> (cx, cy)`` centre in frame pixels, ``height`` px, the frames it
    is hidden (occluded: not drawn, not detected)."""

    pid: int
    path: Callable[[int], Tuple[float, float]]
    height: float = 90.0
    hidden: Tuple[int, ...] = ()

    def joints(self, t: int) -> np.ndarray:
        cx, cy = self.path(t)
        return _FIGURE * self.height + np.array([cx, cy])

    def box(self, t: int) -> np.ndarray:
        j = self.joints(t)
        x0, y0 = j.min(0)
        x1, y1 = j.max(0)
        m = 0.12 * (x1 - x0), 0.06 * (y1 - y0)
        return np.array([x0 - m[0], y0 - m[1], x1 - x0 + 2 * m[0], y1 - y0 + 2 * m[1]])


@dataclass
class Scene:
    """``frames`` frames of ``persons``; ``missed[t]``: person ids the detector misses on frame
    t; ``false_pos[t]``: extra (x, y, w, h, score) boxes the detector reports on frame t."""

    persons: List[Person]
    frames: int
    missed: Dict[int, Tuple[int, ...]] = field(default_factory=dict)
    false_pos: Dict[int, List[Tuple[float, ...]]] = field(default_factory=dict)
    undetected: Tuple[int, ...] = ()  # persons drawn but never detected after frame 0 (ghost bait)

    def visible(self, t: int) -> List[Tuple[int, np.ndarray]]:
        """Ground truth of frame t: (person id, box clipped to the frame) of each person with
        at least a quarter of its box inside the frame and not hidden."""
        out = []
        for p in self.persons:
            if t in p.hidden:
                continue
            b = p.box(t)
            x0, y0 = max(b[0], 0), max(b[1], 0)
            x1, y1 = min(b[0] + b[2], W), min(b[1] + b[3], H)
            if x1 - x0 > 0 and y1 - y0 > 0 and (x1 - x0) * (y1 - y0) >= 0.25 * b[2] * b[3]:
                out.append((p.pid, np.array([x0, y0, x1 - x0, y1 - y0])))
        return out

    def frame(self, t: int) -> np.ndarray:
        import cv2

        img = np.zeros((H, W, 3), np.uint8)
        for p in self.persons:
            if t in p.hidden:
                continue
            for j, (x, y) in enumerate(p.joints(t)):
                bgr = tuple(int(round(c * 255)) for c in COLORS[j][::-1])
                cv2.circle(img, (int(round(x)), int(round(y))), 3, bgr, -1, cv2.LINE_AA)
        img[H - 1, W - 1] = (7, t // 256, t % 256)  # the frame number, for the planted detector
        return img

    def all_frames(self) -> List[np.ndarray]:
        return [self.frame(t) for t in range(self.frames)]


class SceneDetector:
    """Planted person detector: the scene's ground-truth boxes of the frame it is given."""

    thread_safe = True

    def __init__(self, scene: Scene, seed: int = 0, score: float = 0.8) -> None:
        self.scene, self.score = scene, score
        self.rng = np.random.default_rng(seed)
        self.calls = 0

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        t = int(frame[H - 1, W - 1, 1]) * 256 + int(frame[H - 1, W - 1, 2])
        self.calls += 1
        rows = []
        for pid, b in self.scene.visible(t):
            if pid in self.scene.missed.get(t, ()) or (pid in self.scene.undetected and t > 0):
                continue
            jitter = np.random.default_rng(1000 * t + pid).normal(0, 1.0, 4)  # same whoever calls first
            rows.append(list(b + jitter) + [self.score])
        rows += [list(r) for r in self.scene.false_pos.get(t, [])]
        return np.asarray(rows, np.float64).reshape(-1, 5)


class CrossingDetector(SceneDetector):
    """:class:`SceneDetector` of :func:`crossing_scene`, made without arguments (a CLI plug-in:
    ``--detector _scene:CrossingDetector``)."""

    def __init__(self) -> None:
        super().__init__(crossing_scene())


def color_pose_onnx(path: Path) -> Path:
    """The planted pose model (see the module notes), with edgepose metadata (COCO, RGB, 0..1)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgepose.keypoints import COCO, flip_pairs_list
    from edgepose.metadata import METADATA_KEY, ModelMeta

    w, h = INPUT_WH
    c = COLORS.astype(np.float32)
    t = 0.02
    inits = [
        numpy_helper.from_array(np.ones((1, 3, 1, 1), np.float32), "ones"),
        numpy_helper.from_array((-2 * c).reshape(17, 3, 1, 1), "wc"),
        numpy_helper.from_array((c ** 2).sum(1).astype(np.float32), "bc"),
        numpy_helper.from_array(np.array(-1.0 / t, np.float32), "neg_inv_t"),
        numpy_helper.from_array(np.array(PEAK, np.float32), "peak"),
    ]
    nodes = [
        helper.make_node("Mul", ["input", "input"], ["sq"]),
        helper.make_node("Conv", ["sq", "ones"], ["xx"]),            # |x|^2          (N, 1, h, w)
        helper.make_node("Conv", ["input", "wc", "bc"], ["xc"]),     # -2 c.x + |c|^2 (N, 17, h, w)
        helper.make_node("Add", ["xc", "xx"], ["d2"]),
        helper.make_node("Mul", ["d2", "neg_inv_t"], ["e"]),
        helper.make_node("Exp", ["e"], ["g"]),
        helper.make_node("Mul", ["g", "peak"], ["heatmaps"]),
    ]
    graph = helper.make_graph(nodes, "color_pose",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, h, w])],
                              [helper.make_tensor_value_info("heatmaps", TensorProto.FLOAT, ["N", 17, h, w])],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    meta = ModelMeta(input_size=INPUT_WH, heatmap_size=INPUT_WH, color="rgb", mean=(0.0, 0.0, 0.0),
                     std=(255.0, 255.0, 255.0), keypoint_set="coco", num_joints=17,
                     flip_pairs=flip_pairs_list(COCO), batch=0, arch="planted_color_pose").validate()
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, meta.to_json()
    onnx.save(model, str(path))
    return path


def crossing_scene(frames: int = 72) -> Scene:
    """Four people: A walks right and B walks left, crossing mid-clip (boxes overlapping); C
    stands still and is hidden (occluded) for 8 frames; D walks out of the left edge and comes
    back in near where it left. The detector misses A on two frames and reports two false
    positives on empty floor (one weak, one confident)."""
    n = frames
    a = Person(0, lambda t: (60 + 360 * t / (n - 1), 90.0))
    b = Person(1, lambda t: (420 - 360 * t / (n - 1), 120.0))
    c = Person(2, lambda t: (400.0, 290.0), height=80.0, hidden=tuple(range(20, 28)))

    def d_path(t: int) -> Tuple[float, float]:
        # out through the left edge by frame 30, back in from frame 46
        x = 60 - 4.0 * t if t < 30 else (-60 + 4.0 * (t - 30) if t < 60 else 60.0)
        return (x, 290.0)

    d = Person(3, d_path, height=80.0)
    return Scene([a, b, c, d], frames, missed={10: (0,), 11: (0,)},
                 false_pos={5: [(200, 200, 30, 30, 0.2)], 40: [(240, 220, 40, 60, 0.9)]})


def read_frame_number(frame: np.ndarray) -> int:
    return int(frame[H - 1, W - 1, 1]) * 256 + int(frame[H - 1, W - 1, 2])
