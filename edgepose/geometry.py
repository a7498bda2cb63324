"""Box and affine geometry shared by training, evaluation, calibration and the device.

Conventions (those of the Simple Baselines reference code, see docs/CONVENTIONS.md):

* A box is ``(x, y, w, h)`` in frame pixels, ``(x, y)`` its top-left corner.
* A box becomes a *center* ``(cx, cy)`` in pixels and a *scale* ``(sw, sh)`` in units of
  ``pixel_std`` (200) pixels: the box is first padded in width or height to the model's
  input aspect ratio ``w / h``, then enlarged by ``padding`` (1.25).
* The crop affine maps the square-pixel region of width ``sw * pixel_std`` centred on
  ``center`` and rotated by ``rot`` degrees (counter-clockwise in the image as displayed,
  i.e. the reference's sign) onto an output of ``(out_w, out_h)`` pixels. Only the *width*
  of the scale sets the zoom, as in the reference; the height follows from the output aspect.
* Matrices are ``(2, 3)`` float64 (or ``(N, 2, 3)`` for a batch) mapping column vectors
  ``(x, y, 1)``: ``dst = M @ (x, y, 1)``. Pixel ``(0, 0)`` is the centre of the top-left
  pixel (OpenCV's convention for ``warpAffine``).
"""
from __future__ import annotations

from typing import Sequence, Tuple, Union

import numpy as np

PIXEL_STD = 200.0
PADDING = 1.25

ArrayLike = Union[np.ndarray, Sequence[float]]


def box_to_center_scale(
    boxes: ArrayLike,
    aspect_ratio: float,
    padding: float = PADDING,
    pixel_std: float = PIXEL_STD,
) -> Tuple[np.ndarray, np.ndarray]:
    """Convert boxes ``(x, y, w, h)`` to reference center/scale.

    Args:
        boxes: ``(4,)`` or ``(N, 4)`` boxes, xywh in frame pixels.
        aspect_ratio: model input width / height (192 / 256 for a 256x192 model).
        padding: enlargement after aspect padding (1.25 in the reference).
        pixel_std: the scale unit in pixels (200 in the reference).

    Returns:
        ``center`` and ``scale``, each ``(2,)`` or ``(N, 2)`` float64; the scale is in
        ``pixel_std`` units.
    """
    b = np.asarray(boxes, dtype=np.float64)
    single = b.ndim == 1
    b = np.atleast_2d(b)
    if b.shape[-1] != 4:
        raise ValueError(f"boxes: expected shape (N, 4) as x, y, w, h; got {np.shape(boxes)}")
    if not aspect_ratio > 0:
        raise ValueError(f"aspect_ratio: must be > 0, got {aspect_ratio}")
    x, y, w, h = b[:, 0], b[:, 1], b[:, 2].copy(), b[:, 3].copy()
    center = np.stack([x + w * 0.5, y + h * 0.5], axis=1)
    wide = w > aspect_ratio * h
    tall = w < aspect_ratio * h
    h[wide] = w[wide] / aspect_ratio
    w[tall] = h[tall] * aspect_ratio
    scale = np.stack([w, h], axis=1) / pixel_std * padding
    if single:
        return center[0], scale[0]
    return center, scale


def center_scale_to_box(
    center: ArrayLike, scale: ArrayLike, padding: float = PADDING, pixel_std: float = PIXEL_STD
) -> np.ndarray:
    """Inverse of :func:`box_to_center_scale` up to the aspect padding: returns the padded
    box ``(x, y, w, h)`` (``(4,)`` or ``(N, 4)``) before the ``padding`` enlargement."""
    c = np.asarray(center, dtype=np.float64)
    s = np.asarray(scale, dtype=np.float64) * pixel_std / padding
    wh = s
    xy = c - wh * 0.5
    return np.concatenate([xy, wh], axis=-1)


def _rotation(rot_deg: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    r = np.deg2rad(rot_deg)
    return np.cos(r), np.sin(r)


def get_affine_transform(
    center: ArrayLike,
    scale: ArrayLike,
    rot: Union[float, ArrayLike],
    output_size: Sequence[int],
    inv: bool = False,
    shift: Sequence[float] = (0.0, 0.0),
    pixel_std: float = PIXEL_STD,
) -> np.ndarray:
    """Affine matrix from the frame to the crop (or back with ``inv=True``).

    Closed form of the reference's three-point construction: a similarity with zoom
    ``out_w / (scale_w * pixel_std)``, rotation ``-rot`` and ``center`` sent to the output
    centre ``(out_w / 2, out_h / 2)``.

    Args:
        center: ``(2,)`` or ``(N, 2)`` pixels.
        scale: ``(2,)`` or ``(N, 2)`` in ``pixel_std`` units (only the width is used).
        rot: degrees, scalar or ``(N,)``.
        output_size: ``(out_w, out_h)`` in pixels of the crop (or of the heatmap).
        inv: return the crop -> frame matrix instead.
        shift: offset of the centre as a fraction of the scale (reference ``shift``).

    Returns:
        ``(2, 3)`` or ``(N, 2, 3)`` float64.
    """
    c = np.asarray(center, dtype=np.float64)
    s = np.asarray(scale, dtype=np.float64)
    single = c.ndim == 1
    c = np.atleast_2d(c)
    s = np.atleast_2d(s)
    if c.shape[-1] != 2 or s.shape[-1] != 2:
        raise ValueError(f"center/scale: expected (N, 2) each; got {np.shape(center)} and {np.shape(scale)}")
    n = max(c.shape[0], s.shape[0])
    rot_a = np.broadcast_to(np.asarray(rot, dtype=np.float64), (n,))
    out_w, out_h = float(output_size[0]), float(output_size[1])
    src_w = s[:, 0] * pixel_std
    if np.any(~(src_w > 0)) or not out_w > 0 or not out_h > 0:
        raise ValueError("scale and output_size: must be > 0 (a zero-size box has no crop)")
    src_c = c + s * pixel_std * np.asarray(shift, dtype=np.float64)
    cs, sn = _rotation(rot_a)
    z = out_w / src_w
    m = np.empty((n, 2, 3), dtype=np.float64)
    if not inv:
        # frame -> crop: dst = z * R(-rot) (p - src_c) + (out_w/2, out_h/2)
        a, b = z * cs, z * sn
        m[:, 0, 0], m[:, 0, 1] = a, b
        m[:, 1, 0], m[:, 1, 1] = -b, a
        m[:, 0, 2] = out_w * 0.5 - (a * src_c[:, 0] + b * src_c[:, 1])
        m[:, 1, 2] = out_h * 0.5 - (-b * src_c[:, 0] + a * src_c[:, 1])
    else:
        # crop -> frame: p = R(rot) (q - (out_w/2, out_h/2)) / z + src_c
        a, b = cs / z, sn / z
        m[:, 0, 0], m[:, 0, 1] = a, -b
        m[:, 1, 0], m[:, 1, 1] = b, a
        m[:, 0, 2] = src_c[:, 0] - (a * out_w * 0.5 - b * out_h * 0.5)
        m[:, 1, 2] = src_c[:, 1] - (b * out_w * 0.5 + a * out_h * 0.5)
    return m[0] if single else m


def invert_affine(m: np.ndarray) -> np.ndarray:
    """Invert ``(2, 3)`` or ``(N, 2, 3)`` affine matrices.

    Raises:
        ValueError: if a matrix is singular (or not finite).
    """
    a = np.asarray(m, dtype=np.float64)
    single = a.ndim == 2
    a = a.reshape(-1, 2, 3) if a.size else np.zeros((0, 2, 3))
    if a.shape[1:] != (2, 3):
        raise ValueError(f"matrix: expected (2, 3) or (N, 2, 3); got {np.shape(m)}")
    det = a[:, 0, 0] * a[:, 1, 1] - a[:, 0, 1] * a[:, 1, 0]
    scale = np.abs(a[:, :, :2]).max(axis=(1, 2)) if len(a) else np.zeros(0)
    bad = ~np.isfinite(det) | (np.abs(det) <= 1e-12 * np.maximum(scale * scale, 1e-300))
    if np.any(bad):
        raise ValueError(f"matrix: singular affine at index {int(np.argmax(bad))} (determinant {det[bad][0]:.3g})")
    out = np.empty_like(a)
    out[:, 0, 0] = a[:, 1, 1] / det
    out[:, 0, 1] = -a[:, 0, 1] / det
    out[:, 1, 0] = -a[:, 1, 0] / det
    out[:, 1, 1] = a[:, 0, 0] / det
    out[:, :, 2] = -np.einsum("nij,nj->ni", out[:, :, :2], a[:, :, 2])
    return out[0] if single else out


def affine_points(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Apply ``(2, 3)`` matrix ``m`` to points ``(..., 2)``, or ``(N, 2, 3)`` matrices to
    ``(N, ..., 2)`` points (one matrix per leading index). Returns float64 of the same shape."""
    p = np.asarray(points, dtype=np.float64)
    a = np.asarray(m, dtype=np.float64)
    if a.ndim == 2:
        return p @ a[:, :2].T + a[:, 2]
    if a.ndim != 3 or a.shape[1:] != (2, 3) or p.shape[0] != a.shape[0]:
        raise ValueError(f"points/matrices: shapes {p.shape} and {a.shape} do not pair up")
    flat = p.reshape(p.shape[0], -1, 2)
    out = np.einsum("nij,nkj->nki", a[:, :, :2], flat) + a[:, None, :, 2]
    return out.reshape(p.shape)


def crop_matrices(
    boxes: ArrayLike,
    input_size: Sequence[int],
    padding: float = PADDING,
    rot: Union[float, ArrayLike] = 0.0,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes ``(N, 4)`` xywh -> ``(centers, scales, frame->crop matrices (N, 2, 3))`` for a model
    whose input is ``input_size = (w, h)``."""
    w, h = int(input_size[0]), int(input_size[1])
    c, s = box_to_center_scale(np.asarray(boxes, dtype=np.float64).reshape(-1, 4), w / h, padding)
    return c, s, get_affine_transform(c, s, rot, (w, h)).reshape(-1, 2, 3)


class Letterbox:
    """Letterbox geometry of a detector input: the frame scaled with its aspect kept and
    centred on an ``input_size`` canvas, the rest padded (grey 114 for YOLO models).

    Follows the Ultralytics ``LetterBox`` numbers: ``r = min(in_w / w, in_h / h)``, the resized
    image is ``(round(w * r), round(h * r))`` and the padding is split as ``round(d / 2 - 0.1)``
    before and the rest after (``d`` the padding in pixels). The resize is
    ``cv2.resize(INTER_LINEAR)``'s half-pixel-centre mapping, so each axis has its own zoom
    ``new / old``; :meth:`matrix` expresses that as one affine for
    :func:`edgepose.crop.warp_crops`. Residual difference to ``cv2.resize`` + ``copyMakeBorder``:
    the interpolation weights are rounded to 1/32 px (resize: 1/2048), up to about 1 grey level
    inside, and the outermost row/column of the image blends with the padding value where resize
    replicates the edge (only when upscaling, where the first pixel centre lies outside the image).

    Args:
        frame_shape: ``(H, W, ...)`` of the frame.
        input_size: detector input ``(in_w, in_h)`` pixels.
        center: centre the image (Ultralytics); False puts it in the top-left corner (YOLOX).

    Attributes:
        scale: ``(sx, sy)`` input pixels per frame pixel; ``pad``: ``(left, top)`` in input pixels.
    """

    def __init__(self, frame_shape: Sequence[int], input_size: Sequence[int], center: bool = True) -> None:
        h, w = int(frame_shape[0]), int(frame_shape[1])
        in_w, in_h = int(input_size[0]), int(input_size[1])
        if h <= 0 or w <= 0 or in_w <= 0 or in_h <= 0:
            raise ValueError(f"letterbox: frame {w}x{h} and input {in_w}x{in_h} must be non-empty")
        r = min(in_w / w, in_h / h)
        new_w, new_h = max(int(round(w * r)), 1), max(int(round(h * r)), 1)
        self.frame_size = (w, h)
        self.input_size = (in_w, in_h)
        self.resized = (new_w, new_h)
        self.scale = (new_w / w, new_h / h)
        self.pad = ((float(round((in_w - new_w) / 2 - 0.1)), float(round((in_h - new_h) / 2 - 0.1))) if center
                    else (0.0, 0.0))

    def matrix(self) -> np.ndarray:
        """``(2, 3)`` frame -> input affine in pixel-centre coordinates (the warp's convention):
        ``u = (x + 0.5) * sx - 0.5 + left``."""
        sx, sy = self.scale
        return np.array([[sx, 0.0, 0.5 * sx - 0.5 + self.pad[0]],
                         [0.0, sy, 0.5 * sy - 0.5 + self.pad[1]]])

    def boxes_to_frame(self, xyxy: np.ndarray) -> np.ndarray:
        """Boxes ``(N, 4)`` x0, y0, x1, y1 in input pixels -> ``(N, 4)`` x, y, w, h in frame
        pixels, clipped to the frame. Box edges are continuous coordinates (the image spans
        ``[0, W]``), so the inverse is ``x = (u - left) / sx`` with no half-pixel term."""
        b = np.asarray(xyxy, np.float64).reshape(-1, 4)
        sx, sy = self.scale
        w, h = self.frame_size
        x0 = np.clip((b[:, 0] - self.pad[0]) / sx, 0, w)
        x1 = np.clip((b[:, 2] - self.pad[0]) / sx, 0, w)
        y0 = np.clip((b[:, 1] - self.pad[1]) / sy, 0, h)
        y1 = np.clip((b[:, 3] - self.pad[1]) / sy, 0, h)
        return np.stack([x0, y0, x1 - x0, y1 - y0], axis=1)

    def boxes_to_input(self, xywh: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`boxes_to_frame` (no clipping): frame ``(N, 4)`` xywh -> input xyxy."""
        b = np.asarray(xywh, np.float64).reshape(-1, 4)
        sx, sy = self.scale
        x0, y0 = b[:, 0] * sx + self.pad[0], b[:, 1] * sy + self.pad[1]
        return np.stack([x0, y0, x0 + b[:, 2] * sx, y0 + b[:, 3] * sy], axis=1)
