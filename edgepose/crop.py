"""Kernel 1: crop N person boxes from one frame into a model-ready batch.

Sampling follows ``cv2.warpAffine(frame, M, (w, h), flags=INTER_LINEAR,
borderMode=BORDER_CONSTANT, borderValue=border_value)`` on uint8 images in one of two roundings
(``rounding=``), because OpenCV changed its arithmetic between 4.x and 5.0. Both start from
the double-precision inverse of ``M`` (the crop->frame matrix, as OpenCV inverts it); pixel
centres are integer coordinates; neighbours outside the frame read the border value (0 by
default; per channel, in the frame's channel order), so at the frame edge the bilinear blend
mixes frame pixels with the border as OpenCV does, and a pixel whose four neighbours are all
outside is the border value itself.

``"fixed"`` (default; OpenCV 4.x, bit-exact, what the reference models were trained with):

* source coordinates are fixed point with 1/32-pixel resolution: for output pixel (x, y),
  ``X = (round(1024 * (m01*y + m02)) + 16 + round(1024 * m00 * x)) >> 5`` (same for Y),
  ``round`` being round-half-to-even;
* bilinear weights are products of the two 5-bit fractions (they sum to 1024) and the
  value is ``(sum + 512) >> 10`` (round half up).

``"float"`` (OpenCV 5.x, float32 arithmetic, within 1 grey level of an exact bilinear):

* the inverse is rounded to float32 ``m``; per row ``r = f32(f32(y * m01) + m02)`` (two
  roundings), then ``sx = fma(m00, x, r)`` (one rounding; same for ``sy``);
* ``ix = floor(sx)``, weight ``a = sx - ix`` (exact), likewise ``iy``, ``b``;
* ``v0 = fma(a, p01 - p00, p00)``, ``v1 = fma(a, p11 - p10, p10)``,
  ``v = fma(b, v1 - v0, v0)``, all float32; the result is ``v`` rounded half to even,
  saturated to uint8.

  This is OpenCV 5.0's vectorised path exactly; OpenCV computes the last
  ``out_w % 16`` (x86 AVX2) or ``out_w % 8`` (NEON) columns of each row in a scalar
  loop with slightly different rounding, so those may differ by 1 in rare pixels.

The float output is that uint8 crop, optionally channel-swapped, then ``(v - mean) / std``
in float32, so it equals warpAffine + the same normalisation exactly (up to float32
rounding of the division). Frames may have any strides; the output is contiguous.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

from . import _dispatch

INTER_BITS = 5
AB_BITS = 10
ROUNDINGS = ("fixed", "float")


def _check_frame(frame: np.ndarray) -> np.ndarray:
    if not isinstance(frame, np.ndarray):
        raise ValueError(f"frame: expected a numpy array (H, W, 3) uint8, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise ValueError(f"frame: expected dtype uint8, got {frame.dtype} (convert with frame.astype(np.uint8))")
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"frame: expected shape (H, W, 3), got {frame.shape}")
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise ValueError(f"frame: empty image {frame.shape}")
    return frame


def _check_matrices(matrices: np.ndarray) -> np.ndarray:
    m = np.asarray(matrices, dtype=np.float64)
    if m.ndim == 2 and m.shape == (2, 3):
        m = m[None]
    if m.ndim != 3 or m.shape[1:] != (2, 3):
        raise ValueError(f"matrices: expected (N, 2, 3) frame->crop affines, got {np.shape(matrices)}")
    if not np.all(np.isfinite(m)):
        raise ValueError("matrices: contain NaN or inf")
    return np.ascontiguousarray(m)


def _norm_params(mean, std) -> Tuple[np.ndarray, np.ndarray]:
    mean_a = np.zeros(3, np.float32) if mean is None else np.asarray(mean, np.float32).reshape(-1)
    std_a = np.ones(3, np.float32) if std is None else np.asarray(std, np.float32).reshape(-1)
    if mean_a.size == 1:
        mean_a = np.repeat(mean_a, 3)
    if std_a.size == 1:
        std_a = np.repeat(std_a, 3)
    if mean_a.size != 3 or std_a.size != 3:
        raise ValueError(f"mean/std: expected 1 or 3 values each, got {mean_a.size} and {std_a.size}")
    if np.any(std_a == 0) or not np.all(np.isfinite(std_a)) or not np.all(np.isfinite(mean_a)):
        raise ValueError("std: must be finite and non-zero")
    return mean_a, std_a


def _inverse_cv(m: np.ndarray) -> np.ndarray:
    """OpenCV's own inversion (warpAffine without WARP_INVERSE_MAP), singular -> error."""
    d = m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0]
    if d == 0 or not np.isfinite(d):
        raise ValueError("matrices: singular affine (zero-size box or bad scale)")
    d = 1.0 / d
    a11, a22 = m[1, 1] * d, m[0, 0] * d
    a12, a21 = -m[0, 1] * d, -m[1, 0] * d
    b1 = -a11 * m[0, 2] - a12 * m[1, 2]
    b2 = -a21 * m[0, 2] - a22 * m[1, 2]
    return np.array([[a11, a12, b1], [a21, a22, b2]])


# Fixed-point source coordinates (1/1024 pixel) must stay far inside int64.
_MAX_REACH = float(2 ** 52)


def _check_reach(inv: np.ndarray, i: int, out_w: int, out_h: int) -> None:
    """Reject a crop->frame matrix that sends the crop beyond +-2**42 pixels (a near-singular
    frame->crop matrix, e.g. a box of almost zero size): its fixed-point coordinates would
    overflow."""
    reach = (np.abs(inv[:, 0]) * out_w + np.abs(inv[:, 1]) * out_h + np.abs(inv[:, 2])) * (1 << AB_BITS)
    if not np.all(reach < _MAX_REACH):
        raise ValueError(f"matrices: affine {i} is nearly singular (it maps the crop beyond 2**42 pixels); check the box")


def _check_border(border_value) -> np.ndarray:
    """``border_value`` -> 3 uint8 values in the frame's channel order."""
    try:
        v = np.asarray(border_value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"border_value: expected a number or 3 numbers in 0..255, got {border_value!r}") from None
    if v.size == 1:
        v = np.repeat(v, 3)
    if v.size != 3 or not np.all(np.isfinite(v)) or np.any(v != np.rint(v)) or np.any((v < 0) | (v > 255)):
        raise ValueError(f"border_value: expected an integer or 3 integers in 0..255 (frame channel order), "
                         f"got {border_value!r}")
    return v.astype(np.uint8)


def _check_rounding(rounding: str) -> str:
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding: expected 'fixed' (OpenCV 4.x) or 'float' (OpenCV 5.x), got {rounding!r}")
    return rounding


def fma32(a, b, c) -> np.ndarray:
    """``a * b + c`` in float32 with a single rounding (a fused multiply-add), elementwise.

    The product of two float32 values is exact in float64; the float64 sum is made
    round-to-odd (its error recovered with TwoSum), so rounding it to float32 is correct.
    """
    p = np.asarray(a, np.float32).astype(np.float64) * np.asarray(b, np.float32).astype(np.float64)
    q = np.asarray(c, np.float32).astype(np.float64)
    s = p + q
    t = s - p
    err = (p - (s - t)) + (q - t)
    bits = s.view(np.int64)
    nudge = (err != 0) & ((bits & 1) == 0)
    # one ulp toward the exact sum: +1 in magnitude when err has the sign of s, else -1
    step = np.where((err > 0) == (s > 0), 1, -1)
    s = np.where(nudge, (bits + step).view(np.float64), s)
    return s.astype(np.float32)


def _padded(frame: np.ndarray, border: np.ndarray, dtype) -> np.ndarray:
    """The frame inside a one-pixel frame of the border value: every in-range 2x2 neighbourhood
    can then be read unconditionally."""
    h, w = frame.shape[:2]
    pad = np.empty((h + 2, w + 2, 3), dtype)
    pad[:] = border
    pad[1:-1, 1:-1] = frame
    return pad


def _warp_one_float(frame: np.ndarray, inv: np.ndarray, out_w: int, out_h: int,
                    border: np.ndarray = np.zeros(3, np.uint8)) -> np.ndarray:
    """The ``"float"`` rounding (OpenCV 5.x) for one box; rules in the module docstring."""
    m = inv.astype(np.float32).reshape(6)
    h, w = frame.shape[:2]
    ys, xs = np.mgrid[0:out_h, 0:out_w]
    yf, xf = ys.astype(np.float32), xs.astype(np.float32)
    sx = fma32(m[0], xf, yf * m[1] + m[2])
    sy = fma32(m[3], xf, yf * m[4] + m[5])
    flx, fly = np.floor(sx), np.floor(sy)
    a, b = (sx - flx)[..., None], (sy - fly)[..., None]
    ix, iy = flx.astype(np.int64), fly.astype(np.int64)
    pad = _padded(frame, border, np.float32)
    inside = (ix >= -1) & (ix < w) & (iy >= -1) & (iy < h)
    cx = np.clip(ix, -1, w - 1) + 1
    cy = np.clip(iy, -1, h - 1) + 1
    p00, p01 = pad[cy, cx], pad[cy, cx + 1]
    p10, p11 = pad[cy + 1, cx], pad[cy + 1, cx + 1]
    v0 = fma32(a, p01 - p00, p00)
    v1 = fma32(a, p11 - p10, p10)
    v = np.rint(fma32(b, v1 - v0, v0))
    v[~inside] = border
    return np.clip(v, 0, 255).astype(np.uint8)


def warp_one_numpy(frame: np.ndarray, m: np.ndarray, out_w: int, out_h: int, rounding: str = "fixed",
                   border_value=0) -> np.ndarray:
    """Readable twin of the native warp for one box: ``(out_h, out_w, 3)`` uint8."""
    inv = _inverse_cv(m)
    border = _check_border(border_value)
    if _check_rounding(rounding) == "float":
        return _warp_one_float(frame, inv, out_w, out_h, border)
    h, w = frame.shape[:2]
    ys, xs = np.mgrid[0:out_h, 0:out_w]
    ab = float(1 << AB_BITS)
    round_delta = (1 << AB_BITS) >> INTER_BITS >> 1  # 16: centre of the 1/32 bin
    x0 = np.rint((inv[0, 1] * ys + inv[0, 2]) * ab).astype(np.int64) + round_delta
    y0 = np.rint((inv[1, 1] * ys + inv[1, 2]) * ab).astype(np.int64) + round_delta
    X = (x0 + np.rint(inv[0, 0] * xs * ab).astype(np.int64)) >> (AB_BITS - INTER_BITS)
    Y = (y0 + np.rint(inv[1, 0] * xs * ab).astype(np.int64)) >> (AB_BITS - INTER_BITS)
    ix, iy = X >> INTER_BITS, Y >> INTER_BITS
    fx, fy = X & 31, Y & 31
    pad = _padded(frame, border, np.int64)
    inside = (ix >= -1) & (ix < w) & (iy >= -1) & (iy < h)
    cx = np.clip(ix, -1, w - 1) + 1
    cy = np.clip(iy, -1, h - 1) + 1
    w00 = ((32 - fx) * (32 - fy))[..., None]
    w01 = (fx * (32 - fy))[..., None]
    w10 = ((32 - fx) * fy)[..., None]
    w11 = (fx * fy)[..., None]
    acc = w00 * pad[cy, cx] + w01 * pad[cy, cx + 1] + w10 * pad[cy + 1, cx] + w11 * pad[cy + 1, cx + 1]
    out = (acc + 512) >> 10
    out[~inside] = border
    return np.clip(out, 0, 255).astype(np.uint8)


def _validate(frame, matrices, out_size, mean, std, layout: str, rounding: str, border_value=0):
    """Every argument check of :func:`warp_crops`, before any work: a ValueError naming the
    argument. Returns ``(frame, matrices (N, 2, 3) float64, out_w, out_h)``."""
    _check_rounding(rounding)
    _check_border(border_value)
    if layout not in ("nchw", "nhwc"):
        raise ValueError(f"layout: expected 'nchw' or 'nhwc', got {layout!r}")
    if layout == "nhwc" and (mean is not None or std is not None):
        raise ValueError("mean/std: the uint8 'nhwc' layout is not normalised; drop mean/std or use layout='nchw'")
    if len(out_size) != 2 or int(out_size[0]) <= 0 or int(out_size[1]) <= 0:
        raise ValueError(f"out_size: expected (out_w, out_h) > 0, got {out_size}")
    frame = _check_frame(frame)
    m = _check_matrices(matrices)
    out_w, out_h = int(out_size[0]), int(out_size[1])
    for i in range(m.shape[0]):
        _check_reach(_inverse_cv(m[i]), i, out_w, out_h)
    if layout == "nchw":
        _norm_params(mean, std)
    return frame, m, out_w, out_h


def warp_crops_numpy(
    frame: np.ndarray,
    matrices: np.ndarray,
    out_size: Sequence[int],
    to_rgb: bool = False,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    layout: str = "nchw",
    rounding: str = "fixed",
    border_value=0,
) -> np.ndarray:
    """NumPy twin of :func:`warp_crops` (same arguments, same checks, same result)."""
    frame, m, out_w, out_h = _validate(frame, matrices, out_size, mean, std, layout, rounding, border_value)
    crops = np.zeros((m.shape[0], out_h, out_w, 3), np.uint8)
    for i in range(m.shape[0]):
        crops[i] = warp_one_numpy(frame, m[i], out_w, out_h, rounding, border_value)
    if to_rgb:
        crops = crops[..., ::-1]
    if layout == "nhwc":
        return np.ascontiguousarray(crops)
    mean_a, std_a = _norm_params(mean, std)
    f = (crops.astype(np.float32) - mean_a) / std_a
    return np.ascontiguousarray(f.transpose(0, 3, 1, 2))


def warp_crops(
    frame: np.ndarray,
    matrices: np.ndarray,
    out_size: Sequence[int],
    to_rgb: bool = False,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    layout: str = "nchw",
    rounding: str = "fixed",
    border_value=0,
) -> np.ndarray:
    """Crop N boxes from one frame with one call.

    Args:
        frame: ``(H, W, 3)`` uint8 BGR frame, any strides.
        matrices: ``(N, 2, 3)`` frame->crop affines (see :mod:`edgepose.geometry`).
        out_size: ``(out_w, out_h)`` of the model input.
        to_rgb: swap BGR to RGB before normalising.
        mean, std: per-channel (in the *output* channel order) values for
            ``(v - mean) / std``; only for ``layout="nchw"``.
        layout: ``"nchw"`` -> float32 ``(N, 3, out_h, out_w)`` normalised (onnxruntime/torch);
            ``"nhwc"`` -> uint8 ``(N, out_h, out_w, 3)`` (an RKNN model with mean/std inside).
        rounding: ``"fixed"`` -> bit-exact with OpenCV 4.x warpAffine (the training
            pipeline's); ``"float"`` -> OpenCV 5.x float32 arithmetic (see module docstring).
        border_value: what samples outside the frame read (OpenCV's ``borderValue`` with
            ``BORDER_CONSTANT``): an integer 0..255 or 3 of them in the *frame's* channel order
            (BGR), before ``to_rgb`` and normalisation; 114 for a YOLO letterbox.

    Returns:
        A new contiguous array; ``N = 0`` gives an empty batch of the right shape.
    """
    frame, m, out_w, out_h = _validate(frame, matrices, out_size, mean, std, layout, rounding, border_value)
    nat = _dispatch.native()
    if nat is None:
        return warp_crops_numpy(frame, m, out_size, to_rgb, mean, std, layout, rounding, border_value)
    r = ROUNDINGS.index(rounding)  # the native module's code: 0 fixed, 1 float
    border = _check_border(border_value)
    if layout == "nhwc":
        return nat.warp_crops_u8(frame, m, out_w, out_h, bool(to_rgb), r, border)
    mean_a, std_a = _norm_params(mean, std)
    return nat.warp_crops_f32(frame, m, out_w, out_h, bool(to_rgb), mean_a, std_a, r, border)
