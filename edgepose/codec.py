"""The heatmap codec: one object owns both the training targets (encode) and the decoding of
predictions, so the two cannot drift apart.

Coordinates are in *input* pixels for ``encode`` (joints already warped into the crop) and
heatmap pixels internally; the stride is ``input_size / heatmap_size`` (4 for PoseResNet).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

from . import decode as _decode


@dataclass(frozen=True)
class HeatmapCodec:
    """Gaussian heatmaps, the reference (Simple Baselines) way.

    Attributes:
        input_size: model input ``(w, h)`` in pixels.
        heatmap_size: heatmap ``(w, h)`` in pixels.
        sigma: Gaussian sigma in heatmap pixels (2).
        refine: decode refinement, ``"quarter"`` (reference) or ``"dark"``.
    """

    input_size: Tuple[int, int] = (192, 256)
    heatmap_size: Tuple[int, int] = (48, 64)
    sigma: float = 2.0
    refine: str = "quarter"

    @property
    def stride(self) -> Tuple[float, float]:
        return (self.input_size[0] / self.heatmap_size[0], self.input_size[1] / self.heatmap_size[1])

    def encode(self, joints: np.ndarray, visible: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Training targets for one sample.

        Args:
            joints: ``(K, 2)`` joint positions in input pixels.
            visible: ``(K,)`` visibility (> 0 means labelled).

        Returns:
            ``target`` ``(K, Hh, Wh)`` float32 and ``target_weight`` ``(K, 1)`` float32. As in the
            reference, the Gaussian is centred on the integer ``int(x / stride + 0.5)`` and a joint
            whose 3-sigma patch falls entirely outside the map gets weight 0.
        """
        wh, hh = self.heatmap_size
        k = joints.shape[0]
        target = np.zeros((k, hh, wh), np.float32)
        weight = (np.asarray(visible).reshape(k) > 0).astype(np.float32).reshape(k, 1)
        radius = self.sigma * 3
        size = int(2 * radius + 1)
        g1 = np.arange(size, dtype=np.float32) - size // 2
        gauss = np.exp(-(g1[None, :] ** 2 + g1[:, None] ** 2) / (2 * self.sigma ** 2))
        sx, sy = self.stride
        for j in range(k):
            if weight[j, 0] == 0:
                continue
            mx = int(joints[j, 0] / sx + 0.5)
            my = int(joints[j, 1] / sy + 0.5)
            ul = (int(mx - radius), int(my - radius))
            br = (int(mx + radius + 1), int(my + radius + 1))
            if ul[0] >= wh or ul[1] >= hh or br[0] < 0 or br[1] < 0:
                weight[j, 0] = 0
                continue
            gx0, gx1 = max(0, -ul[0]), min(br[0], wh) - ul[0]
            gy0, gy1 = max(0, -ul[1]), min(br[1], hh) - ul[1]
            ix0, ix1 = max(0, ul[0]), min(br[0], wh)
            iy0, iy1 = max(0, ul[1]), min(br[1], hh)
            target[j, iy0:iy1, ix0:ix1] = gauss[gy0:gy1, gx0:gx1]
        return target, weight

    def decode(self, heatmaps: np.ndarray, inv_matrices: Optional[np.ndarray] = None, **kw):
        """Predictions: see :func:`edgepose.decode.decode` (``refine`` defaults to the codec's)."""
        kw.setdefault("refine", self.refine)
        return _decode.decode(heatmaps, inv_matrices, **kw)

    def heatmap_to_frame(self, centers: np.ndarray, scales: np.ndarray, rots: Sequence[float] | float = 0.0) -> np.ndarray:
        """``(N, 2, 3)`` heatmap->frame affines for boxes given as center/scale."""
        from .geometry import get_affine_transform

        return get_affine_transform(np.asarray(centers).reshape(-1, 2), np.asarray(scales).reshape(-1, 2), rots,
                                    self.heatmap_size, inv=True).reshape(-1, 2, 3)
