"""Kernel 2: heatmaps -> keypoints, the reference way, with the flip-test merge.

Conventions (the reference's ``get_max_preds`` + ``get_final_preds``):

* Per joint, argmax over the flattened ``H x W`` map, the *first* maximum winning; ``x =
  idx % W``, ``y = idx // W``. The joint's score is that maximum. A joint whose maximum is
  ``<= 0`` gets heatmap coordinates ``(0, 0)`` (which the back-transform then maps like any
  point, as the reference does).
* Quarter offset: with ``px, py`` the integer peak, only when ``1 < px < W-1`` and
  ``1 < py < H-1``, ``x += 0.25 * sign(hm[py, px+1] - hm[py, px-1])`` and likewise for y.
* DARK (optional, ``refine="dark"``): Taylor refinement on the log of the Gaussian-blurred map
  (kernel 11, sigma 2, zero padded) at the integer peak when ``1 < px < W-2`` and
  ``1 < py < H-2``, skipped where the Hessian is singular.
* Back to the frame through each person's heatmap->frame affine (``(N, 2, 3)``, built with
  :func:`edgepose.geometry.get_affine_transform` for the heatmap size and ``inv=True``).

Quantized inputs (int8/uint8 with ``scale`` and ``zero_point``, what an RKNN model outputs)
are decoded on the integers: the dequantized value is ``(q - zero_point) * scale`` with
``scale > 0``, so argmax and signs are those of ``q``; only the winning value is dequantized.
With a flipped pass, the merged map is ``((a - zp) + (b' - zp)) * scale / 2`` computed on the
integer sum, which is the float average of the two dequantized maps up to float rounding.
"""
from __future__ import annotations

import functools
from typing import Optional, Sequence, Tuple

import numpy as np

from . import _dispatch

REFINE_MODES = ("quarter", "dark", "none")
_INT_RANGE = {np.int8: (-128, 127), np.uint8: (0, 255)}
DARK_KERNEL = 11


# --------------------------------------------------------------------------- validation

def _check_heatmaps(h: np.ndarray, name: str = "heatmaps") -> np.ndarray:
    if not isinstance(h, np.ndarray):
        raise ValueError(f"{name}: expected a numpy array (N, K, H, W), got {type(h).__name__}")
    if h.ndim != 4:
        raise ValueError(f"{name}: expected 4 dims (N, K, H, W), got shape {h.shape}")
    if h.dtype not in (np.float32, np.int8, np.uint8):
        raise ValueError(f"{name}: expected float32, int8 or uint8, got {h.dtype} (cast float64 with .astype(np.float32))")
    if h.shape[2] < 1 or h.shape[3] < 1:
        raise ValueError(f"{name}: empty maps of shape {h.shape}")
    return h


@functools.lru_cache(maxsize=16)
def _identity(k: int) -> np.ndarray:
    perm = np.arange(k, dtype=np.int64)
    perm.flags.writeable = False
    return perm


def _check_pairs(flip_pairs, k: int) -> np.ndarray:
    """The joint permutation (int64 ``(K,)``) that ``flip_pairs`` describe."""
    if flip_pairs is None:
        return _identity(k)  # per-call cost matters at one person: a cached read-only arange
    perm = np.arange(k, dtype=np.int64)
    for pair in flip_pairs:
        a, b = int(pair[0]), int(pair[1])
        if not (0 <= a < k and 0 <= b < k):
            raise ValueError(f"flip_pairs: pair {tuple(pair)} out of range for {k} joints")
        perm[a], perm[b] = b, a
    return perm


def _quant_params(h: np.ndarray, scale, zero_point) -> Tuple[float, int]:
    if h.dtype == np.float32:
        if scale is not None or zero_point is not None:
            raise ValueError("scale/zero_point: only for int8/uint8 heatmaps; float32 maps are already real values")
        return 1.0, 0
    if scale is None:
        raise ValueError(f"scale: required for {h.dtype} heatmaps (the output's quantization scale)")
    s = float(scale)
    if not (s > 0 and np.isfinite(s)):
        raise ValueError(f"scale: must be a positive finite number, got {scale}")
    zp = int(zero_point or 0)
    lo, hi = _INT_RANGE[h.dtype.type]
    if not lo <= zp <= hi:
        raise ValueError(f"zero_point: {zp} outside the {h.dtype} range")
    return s, zp


def _check_inv(inv_matrices, n: int, finite: bool = True) -> Optional[np.ndarray]:
    """``(n, 2, 3)`` float64 C-contiguous; ``finite=False`` leaves the NaN/inf check to the
    native kernel, which makes it with the same message (np.isfinite is most of this call)."""
    if inv_matrices is None:
        return None
    m = np.asarray(inv_matrices, dtype=np.float64)
    if m.shape != (n, 2, 3):
        raise ValueError(f"inv_matrices: expected ({n}, 2, 3) heatmap->frame affines, got {m.shape}")
    if finite and not np.isfinite(m).all():
        raise ValueError("inv_matrices: contain NaN or inf")
    return np.ascontiguousarray(m)


# --------------------------------------------------------------------------- NumPy twins

def flip_back_numpy(flipped: np.ndarray, flip_pairs, shift: bool = True) -> np.ndarray:
    """Undo a horizontal flip on heatmaps ``(N, K, H, W)``: mirror, swap pairs, and (``shift``)
    move one pixel right, column 0 keeping its value (the reference's shift-heatmap)."""
    perm = _check_pairs(flip_pairs, flipped.shape[1])
    back = flipped[:, perm, :, ::-1]
    if shift and back.shape[3] > 1:
        back = np.concatenate([back[..., :1], back[..., :-1]], axis=3)
    return np.ascontiguousarray(back)


def flip_merge_numpy(heatmaps: np.ndarray, flipped: np.ndarray, flip_pairs, shift: bool = True) -> np.ndarray:
    """Average float32 heatmaps with the flipped pass brought back (``(N, K, H, W)`` float32)."""
    return (heatmaps + flip_back_numpy(flipped, flip_pairs, shift)) * np.float32(0.5)


def _gaussian_kernel_1d(size: int) -> np.ndarray:
    # cv2.getGaussianKernel's sigma for sigma=0: 0.3 * ((size - 1) / 2 - 1) + 0.8
    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    r = np.arange(size) - (size - 1) / 2
    k = np.exp(-(r * r) / (2 * sigma * sigma))
    return k / k.sum()


def _blur_at(hm: np.ndarray, y: int, x: int, k1: np.ndarray) -> float:
    """Zero-padded separable Gaussian blur of ``hm`` (float64) evaluated at one pixel."""
    r = len(k1) // 2
    h, w = hm.shape
    y0, y1 = max(0, y - r), min(h, y + r + 1)
    x0, x1 = max(0, x - r), min(w, x + r + 1)
    patch = hm[y0:y1, x0:x1]
    ky = k1[y0 - (y - r): y1 - (y - r)]
    kx = k1[x0 - (x - r): x1 - (x - r)]
    return float(ky @ patch @ kx)


def _dark_offset(hm: np.ndarray, px: int, py: int, kernel: int) -> Tuple[float, float]:
    k1 = _gaussian_kernel_1d(kernel)

    def lv(dy: int, dx: int) -> float:
        return float(np.log(max(_blur_at(hm, py + dy, px + dx, k1), 1e-10)))

    c = lv(0, 0)
    dx = 0.5 * (lv(0, 1) - lv(0, -1))
    dy = 0.5 * (lv(1, 0) - lv(-1, 0))
    dxx = 0.25 * (lv(0, 2) - 2 * c + lv(0, -2))
    dyy = 0.25 * (lv(2, 0) - 2 * c + lv(-2, 0))
    dxy = 0.25 * (lv(1, 1) - lv(-1, 1) - lv(1, -1) + lv(-1, -1))
    det = dxx * dyy - dxy * dxy
    if det == 0:
        return 0.0, 0.0
    # offset = -H^-1 g
    ox = -(dyy * dx - dxy * dy) / det
    oy = -(-dxy * dx + dxx * dy) / det
    return ox, oy


def decode_numpy(
    heatmaps: np.ndarray,
    inv_matrices: Optional[np.ndarray] = None,
    *,
    scale: Optional[float] = None,
    zero_point: Optional[int] = None,
    flipped: Optional[np.ndarray] = None,
    flip_pairs: Optional[Sequence[Sequence[int]]] = None,
    shift: bool = True,
    refine: str = "quarter",
    dark_kernel: int = DARK_KERNEL,
) -> Tuple[np.ndarray, np.ndarray]:
    """Readable twin of :func:`decode`; same arguments and results."""
    hm, fl, s, zp, inv = _validate(heatmaps, inv_matrices, scale, zero_point, flipped, flip_pairs, refine, dark_kernel)
    n, k, h, w = hm.shape
    if hm.dtype == np.float32:
        val = hm if fl is None else flip_merge_numpy(hm, fl, flip_pairs, shift)
        factor = 1.0
    else:
        # integer domain: (q - zp), summed with the flipped pass; dequantized only at the end
        val = hm.astype(np.int32) - zp
        if fl is not None:
            val = val + flip_back_numpy(fl.astype(np.int32) - zp, flip_pairs, shift)
        factor = s * (0.5 if fl is not None else 1.0)
    if np.issubdtype(val.dtype, np.floating) and np.isnan(val).any():
        raise ValueError("heatmaps: contain NaN (check the model output)")
    flat = val.reshape(n, k, h * w)
    idx = flat.argmax(axis=2) if h * w else np.zeros((n, k), np.int64)
    best = np.take_along_axis(flat, idx[..., None], axis=2)[..., 0]
    scores = (best.astype(np.float32) * np.float32(factor)).astype(np.float32) if factor != 1.0 else best.astype(np.float32)
    coords = np.stack([idx % w, idx // w], axis=-1).astype(np.float64)
    coords[scores <= 0] = 0.0
    for i in range(n):
        for j in range(k):
            if scores[i, j] <= 0:
                continue
            px, py = int(coords[i, j, 0]), int(coords[i, j, 1])
            m = val[i, j]
            if refine == "quarter":
                if 1 < px < w - 1 and 1 < py < h - 1:
                    coords[i, j, 0] += 0.25 * np.sign(float(m[py, px + 1]) - float(m[py, px - 1]))
                    coords[i, j, 1] += 0.25 * np.sign(float(m[py + 1, px]) - float(m[py - 1, px]))
            elif refine == "dark":
                if 1 < px < w - 2 and 1 < py < h - 2:
                    ox, oy = _dark_offset(m.astype(np.float64) * factor, px, py, dark_kernel)
                    coords[i, j, 0] += ox
                    coords[i, j, 1] += oy
    if inv is not None:
        coords = np.einsum("nij,nkj->nki", inv[:, :, :2], coords) + inv[:, None, :, 2]
    return coords.astype(np.float32), scores


def _validate(heatmaps, inv_matrices, scale, zero_point, flipped, flip_pairs, refine, dark_kernel, native=False):
    hm = _check_heatmaps(heatmaps)
    if refine not in REFINE_MODES:
        raise ValueError(f"refine: expected one of {REFINE_MODES}, got {refine!r}")
    if refine == "dark" and (dark_kernel < 3 or dark_kernel % 2 == 0):
        raise ValueError(f"dark_kernel: must be odd and >= 3, got {dark_kernel}")
    s, zp = _quant_params(hm, scale, zero_point)
    fl = None
    if flipped is not None:
        fl = _check_heatmaps(flipped, "flipped")
        if fl.shape != hm.shape or fl.dtype != hm.dtype:
            raise ValueError(f"flipped: expected {hm.shape} {hm.dtype} like heatmaps, got {fl.shape} {fl.dtype}")
        _check_pairs(flip_pairs, hm.shape[1])
    inv = _check_inv(inv_matrices, hm.shape[0], finite=not native)
    return hm, fl, s, zp, inv


# --------------------------------------------------------------------------- public API

def decode(
    heatmaps: np.ndarray,
    inv_matrices: Optional[np.ndarray] = None,
    *,
    scale: Optional[float] = None,
    zero_point: Optional[int] = None,
    flipped: Optional[np.ndarray] = None,
    flip_pairs: Optional[Sequence[Sequence[int]]] = None,
    shift: bool = True,
    refine: str = "quarter",
    dark_kernel: int = DARK_KERNEL,
) -> Tuple[np.ndarray, np.ndarray]:
    """Decode raw model output to keypoints in one call.

    Args:
        heatmaps: ``(N, K, H, W)`` float32, or int8/uint8 with ``scale``/``zero_point``.
        inv_matrices: ``(N, 2, 3)`` heatmap->frame affines; ``None`` keeps heatmap pixels.
        scale, zero_point: quantization of int8/uint8 maps (real = (q - zero_point) * scale).
        flipped: the flipped pass, same shape and dtype; merged as in the flip test.
        flip_pairs: left/right joint pairs to swap in the flipped pass.
        shift: shift the flipped-back maps one pixel right (reference SHIFT_HEATMAP).
        refine: ``"quarter"`` (reference), ``"dark"`` or ``"none"``.
        dark_kernel: Gaussian kernel size of the DARK blur (odd).

    Returns:
        ``coords`` ``(N, K, 2)`` float32 as (x, y) in frame pixels (heatmap pixels without
        ``inv_matrices``) and ``scores`` ``(N, K)`` float32 (the dequantized maxima).

    Raises:
        ValueError: wrong shapes/dtypes, missing scale, NaN in the maps.
    """
    nat = _dispatch.native()
    if nat is not None and flipped is None and refine == "quarter":
        # the runtime's call (float32, or int8/uint8 with scale and zero point; float64 matrices)
        # through the kernel's lean entry, which checks it: at one person the full validation
        # below would be a third of the time. What that entry refuses (or NaN) goes through the
        # validation, which names the problem.
        try:
            return nat.decode_quarter(heatmaps, inv_matrices, scale, zero_point)
        except ValueError:
            pass
    hm, fl, s, zp, inv = _validate(heatmaps, inv_matrices, scale, zero_point, flipped, flip_pairs, refine, dark_kernel,
                                   native=nat is not None)
    if nat is None:
        return decode_numpy(hm, inv, scale=scale, zero_point=zero_point, flipped=fl, flip_pairs=flip_pairs,
                            shift=shift, refine=refine, dark_kernel=dark_kernel)
    perm = _check_pairs(flip_pairs, hm.shape[1])
    return nat.decode(hm, fl, inv, perm, bool(shift), s, zp, REFINE_MODES.index(refine), int(dark_kernel))


def flip_merge(heatmaps: np.ndarray, flipped: np.ndarray, flip_pairs, shift: bool = True) -> np.ndarray:
    """Flip-test merge of float32 maps ``(N, K, H, W)``: ``(heatmaps + flip_back(flipped)) / 2``
    with pairs swapped and the reference one-pixel shift. Returns float32 ``(N, K, H, W)``."""
    hm = _check_heatmaps(heatmaps)
    fl = _check_heatmaps(flipped, "flipped")
    if hm.dtype != np.float32 or fl.dtype != np.float32 or hm.shape != fl.shape:
        raise ValueError("heatmaps/flipped: expected two float32 arrays of the same shape (for int8 use decode(flipped=...))")
    perm = _check_pairs(flip_pairs, hm.shape[1])
    nat = _dispatch.native()
    if nat is None:
        return flip_merge_numpy(hm, fl, flip_pairs, shift)
    return nat.flip_merge(hm, fl, perm.astype(np.int64), bool(shift))
