"""PoseEstimator: one BGR frame (+ person boxes) in, :class:`Poses` out.

Pipeline per frame: boxes -> :func:`edgepose.geometry.crop_matrices` -> :func:`edgepose.crop.warp_crops`
(float32 NCHW normalised for onnxruntime, uint8 NHWC for RKNN) -> backend -> :func:`edgepose.decode`
through heatmap->frame inverse affines -> person scores (:func:`edgepose.nms.rescore`) -> OKS NMS
when the boxes came from a detector. No global state: one estimator per thread.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from .backends import Backend, create_backend
from .boxes import as_boxes, full_frame
from .crop import warp_crops
from .decode import decode
from .geometry import PIXEL_STD, crop_matrices, get_affine_transform
from .keypoints import KEYPOINT_SETS, KeypointSet
from .metadata import MetadataError, ModelMeta
from .nms import oks_nms, rescore

STAGES = ("warp", "infer", "decode", "nms")


@dataclass
class Poses:
    """The people found in one frame (N persons, K joints).

    Attributes:
        keypoints: ``(N, K, 2)`` float32, (x, y) in frame pixels (pixel centres at integers).
        scores: ``(N, K)`` float32 joint confidences (heatmap maxima).
        boxes: ``(N, 4)`` float64 person boxes (x, y, w, h) in frame pixels that were cropped.
        person_scores: ``(N,)`` float32: box score x mean of joint scores above ``vis_thr``.
        track_ids: ``(N,)`` int64 identities from a :class:`~edgepose.tracking.PoseTracker`,
            -1 when untracked.
        box_scores: ``(N,)`` float32 scores of the boxes (the detector's; 1 for user boxes
            without a score or the whole frame).
    """

    keypoints: np.ndarray
    scores: np.ndarray
    boxes: np.ndarray
    person_scores: np.ndarray
    track_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    box_scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    def __post_init__(self) -> None:
        n = self.keypoints.shape[0]
        if self.track_ids.shape[0] != n:
            self.track_ids = np.full(n, -1, np.int64)
        if self.box_scores.shape[0] != n:
            self.box_scores = np.ones(n, np.float32)

    def __len__(self) -> int:
        return int(self.keypoints.shape[0])

    @classmethod
    def empty(cls, num_joints: int) -> "Poses":
        return cls(np.zeros((0, num_joints, 2), np.float32), np.zeros((0, num_joints), np.float32),
                   np.zeros((0, 4)), np.zeros(0, np.float32), np.zeros(0, np.int64))

    def select(self, idx: Union[np.ndarray, Sequence[int]]) -> "Poses":
        """The subset ``idx`` (indices or boolean mask), in that order."""
        i = np.asarray(idx)
        return Poses(self.keypoints[i], self.scores[i], self.boxes[i], self.person_scores[i], self.track_ids[i],
                     self.box_scores[i])

    def to_list(self, decimals: int = 2) -> List[Dict[str, Any]]:
        """JSON-ready list, one dict per person: ``id``, ``box`` [x, y, w, h], ``box_score`` (the
        detector's), ``score`` (person score), ``keypoints`` [[x, y], ...] (frame pixels), ``scores``."""
        out = []
        for i in range(len(self)):
            out.append({
                "id": int(self.track_ids[i]),
                "box": [round(float(v), decimals) for v in self.boxes[i]],
                "box_score": round(float(self.box_scores[i]), 4),
                "score": round(float(self.person_scores[i]), 4),
                "keypoints": np.round(self.keypoints[i].astype(np.float64), decimals).tolist(),
                "scores": np.round(self.scores[i].astype(np.float64), 4).tolist(),
            })
        return out


class PoseEstimator:
    """Top-down pose estimation with an exported edgepose model.

    Args:
        model_path: ``.onnx`` (metadata inside) or ``.rknn`` (metadata in ``model.rknn.json``).
        backend: ``"auto"`` (by file type), ``"onnxruntime"`` or ``"rknnlite"``, or a loaded
            :class:`~edgepose.backends.Backend`.
        flip_test: also run the mirrored crops and merge the heatmaps (reference flip test; the
            one-pixel shift of the flipped maps only for strided heatmaps, not at stride 1).
        refine: sub-pixel refinement of the decode: ``"quarter"`` (reference), ``"dark"``, ``"none"``.
        nms_thr: OKS NMS threshold for detector boxes (0.9 in the reference).
        vis_thr: joint score threshold of the person rescoring (0.2 in the reference).
        backend_options: passed to the backend (``threads``; ``core_mask``, ``rknnlite_cls``).

    Raises:
        FileNotFoundError, MetadataError (model/metadata mismatch), BackendError at load.

    Call the estimator on a BGR ``(H, W, 3)`` uint8 frame with optional ``boxes`` ``(N, 4)`` xywh
    or ``(N, 5)`` with scores; without boxes the whole frame is one person. ``last_timings``
    holds the last call's per-stage times in milliseconds.
    """

    def __init__(
        self,
        model_path: Union[str, Path],
        backend: Union[str, Backend] = "auto",
        flip_test: bool = False,
        refine: str = "quarter",
        nms_thr: float = 0.9,
        vis_thr: float = 0.2,
        **backend_options: Any,
    ) -> None:
        if isinstance(backend, Backend):
            self.backend = backend
        else:
            self.backend = create_backend(model_path, backend, **backend_options)
        meta = getattr(self.backend, "meta", None)
        if not isinstance(meta, ModelMeta):
            raise MetadataError(f"{model_path}: backend {self.backend.name} gave no model metadata")
        self.meta: ModelMeta = meta
        self.model_path = Path(model_path)
        self.spec = self.backend.input_spec
        if tuple(self.spec.size) != tuple(meta.input_size):
            raise MetadataError(f"{model_path}: backend input {self.spec.size} != metadata input_size {meta.input_size}")
        self.keypoint_set: Optional[KeypointSet] = KEYPOINT_SETS.get(meta.keypoint_set.lower())
        if self.keypoint_set is not None and self.keypoint_set.num_joints != meta.num_joints:
            raise MetadataError(f"{model_path}: metadata says {meta.keypoint_set} ({self.keypoint_set.num_joints} joints) "
                                f"but num_joints={meta.num_joints}")
        pairs = [tuple(p) for p in meta.flip_pairs] or (list(self.keypoint_set.flip_pairs) if self.keypoint_set else [])
        self.flip_pairs = [list(map(int, p)) for p in pairs]
        if flip_test and not self.flip_pairs:
            raise MetadataError(f"{model_path}: flip test needs flip_pairs in the metadata (keypoint set "
                                f"{meta.keypoint_set!r} is unknown)")
        self.flip_test = bool(flip_test)
        # The reference's one-pixel shift of the flipped-back maps corrects the misalignment of
        # 1 - 1/stride heatmap pixels between a mirrored input and mirrored strided heatmaps;
        # at stride 1 (heatmaps at the input resolution, e.g. EfficientPose) there is none.
        self.flip_shift = tuple(meta.heatmap_size) != tuple(meta.input_size)
        self.refine = refine
        self.nms_thr = float(nms_thr)
        self.vis_thr = float(vis_thr)
        self.sigmas = (self.keypoint_set.sigmas_array() if self.keypoint_set else np.full(meta.num_joints, 0.05))
        self._to_rgb = meta.color == "rgb"
        self.last_timings: Dict[str, float] = {s: 0.0 for s in STAGES}

    # ------------------------------------------------------------------ pieces
    def _crops(self, frame: np.ndarray, mats: np.ndarray) -> np.ndarray:
        if self.spec.layout == "nchw":
            return warp_crops(frame, mats, self.meta.input_size, self._to_rgb, self.meta.mean, self.meta.std, "nchw")
        return warp_crops(frame, mats, self.meta.input_size, self._to_rgb, layout="nhwc")

    def _mirror(self, crops: np.ndarray) -> np.ndarray:
        axis = 3 if self.spec.layout == "nchw" else 2
        return np.ascontiguousarray(np.flip(crops, axis=axis))

    def _run(self, batch: np.ndarray):
        """Backend over the whole batch: one call when the batch is dynamic, else fixed-size
        chunks (the last one zero-padded). Returns (heatmaps, scale, zero_point)."""
        n = batch.shape[0]
        fixed = self.spec.batch
        if fixed == 0 or fixed == n:
            r = self.backend.infer(batch)
            return r.heatmaps, r.scale, r.zero_point
        parts, scale, zp = [], None, None
        for start in range(0, n, fixed):
            chunk = batch[start:start + fixed]
            m = chunk.shape[0]
            if m < fixed:
                pad = np.zeros((fixed - m,) + chunk.shape[1:], chunk.dtype)
                chunk = np.concatenate([chunk, pad])
            r = self.backend.infer(np.ascontiguousarray(chunk))
            parts.append(r.heatmaps[:m].copy())  # a backend may reuse its output buffer
            scale, zp = r.scale, r.zero_point
        return np.concatenate(parts), scale, zp

    # ------------------------------------------------------------------ call
    def __call__(self, frame: np.ndarray, boxes: Optional[np.ndarray] = None,
                 from_detector: Optional[bool] = None) -> Poses:
        """Estimate the poses of the persons in ``boxes`` on ``frame``.

        Args:
            frame: ``(H, W, 3)`` uint8 BGR image.
            boxes: ``(N, 4)`` xywh or ``(N, 5)`` xywh + score in frame pixels; None = whole frame.
            from_detector: apply OKS NMS (boxes from a detector may overlap). Default: True when
                boxes carry scores (``(N, 5)``).

        Returns:
            :class:`Poses` with ``track_ids`` all -1 (a :class:`~edgepose.tracking.PoseTracker`
            assigns them).
        """
        if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"frame: expected (H, W, 3) uint8 BGR, got "
                             f"{getattr(frame, 'shape', type(frame).__name__)} {getattr(frame, 'dtype', '')}")
        if boxes is None:
            b = full_frame(frame.shape)
            nms = False
        else:
            raw = np.asarray(boxes)
            b = as_boxes(raw)
            nms = (raw.ndim == 2 and raw.shape[1] == 5) if from_detector is None else bool(from_detector)
        t = self.last_timings = {s: 0.0 for s in STAGES}
        k = self.meta.num_joints
        if len(b) == 0:
            return Poses.empty(k)
        t0 = time.perf_counter()
        centers, scales, mats = crop_matrices(b[:, :4], self.meta.input_size)
        crops = self._crops(frame, mats)
        if self.flip_test:
            crops = np.concatenate([crops, self._mirror(crops)])
        t1 = time.perf_counter()
        hm, scale, zp = self._run(crops)
        t2 = time.perf_counter()
        n = len(b)
        hw, hh = self.meta.heatmap_size
        if hm.shape[1:] != (k, hh, hw):
            raise MetadataError(f"{self.model_path}: model output {hm.shape[1:]} != metadata (num_joints, h, w)="
                                f"{(k, hh, hw)}")
        inv = get_affine_transform(centers, scales, 0.0, self.meta.heatmap_size, inv=True).reshape(-1, 2, 3)
        flipped = hm[n:] if self.flip_test else None
        coords, jscores = decode(hm[:n], inv, scale=scale, zero_point=zp, flipped=flipped,
                                 flip_pairs=self.flip_pairs if self.flip_test else None, shift=self.flip_shift,
                                 refine=self.refine)
        t3 = time.perf_counter()
        pscores = rescore(b[:, 4], jscores, self.vis_thr).astype(np.float32)
        poses = Poses(coords, jscores, b[:, :4].copy(), pscores, box_scores=b[:, 4].astype(np.float32))
        if nms and n > 1:
            kp = np.concatenate([coords, jscores[..., None]], axis=2)
            areas = scales[:, 0] * scales[:, 1] * PIXEL_STD ** 2
            # as host_tools valid and the reference: every joint counts in the OKS (no vis_thr)
            keep = oks_nms(kp, pscores, areas, self.nms_thr, self.sigmas)
            poses = poses.select(keep)
        t4 = time.perf_counter()
        t.update(warp=(t1 - t0) * 1e3, infer=(t2 - t1) * 1e3, decode=(t3 - t2) * 1e3, nms=(t4 - t3) * 1e3)
        return poses

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> "PoseEstimator":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
