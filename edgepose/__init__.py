"""edgepose: top-down human pose estimation (Simple Baselines PoseResNet) for Rockchip NPU boards.

The kernels (crop warp, heatmap decode, OKS NMS) run native when ``edgepose._native`` is
built and fall back to their NumPy twins otherwise; :func:`implementation` tells which.
"""
from ._dispatch import implementation, native_available, set_implementation
from .codec import HeatmapCodec
from .crop import warp_crops
from .estimator import PoseEstimator, Poses
from .decode import decode, flip_merge
from .geometry import box_to_center_scale, get_affine_transform, invert_affine
from .keypoints import COCO, MPII, get_keypoint_set
from .nms import oks_nms, rescore, soft_oks_nms
from .pipeline import FrameResult, Pipeline
from .tracking import PoseTracker

__version__ = "0.1.0"

__all__ = [
    "COCO", "MPII", "FrameResult", "HeatmapCodec", "Pipeline", "PoseEstimator", "PoseTracker", "Poses", "box_to_center_scale", "decode", "flip_merge", "get_affine_transform",
    "get_keypoint_set", "implementation", "invert_affine", "native_available", "oks_nms", "rescore",
    "set_implementation", "soft_oks_nms", "warp_crops", "__version__",
]
