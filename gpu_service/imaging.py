"""Rotated crops for BlazePose, from RGB frames or straight from decoded 4:2:0 planes.

:func:`warp_rgb` is the crop MediaPipe itself makes (see :func:`warp_rgb`'s doc). :func:`warp_yuv` gives
the same crop from the decoder's planes without converting the whole frame to RGB first: the pose
models only ever see a 256x256 (landmarks) or 224x224 (detector) crop, so sampling Y, U and V at the
crop's pixels and converting those 65 k pixels costs about a tenth of converting a 720p frame. The
two differ only by rounding (interpolating before or after an affine colour transform), about one
grey level; tests/test_backends.py bounds the effect on keypoints.

Determinism: the sampling positions are computed in float64 numpy and rounded to OpenCV's 1/32-pixel
fixed-point grid, the blend is cv2.remap's integer path, and the colour transform is float32 numpy
elementwise arithmetic (IEEE, no fused operations), so the same planes give the same crop on any CPU.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import numpy.typing as npt

from ingest.chunk_decoder import Yuv420

U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

# OpenCV's fixed-point interpolation grid (cv::INTER_BITS).
INTER_BITS = 5
INTER_TAB_SIZE = 1 << INTER_BITS
_LIMIT = (-(2.0**31), 2.0**31 - 1.0)
_FAST_LIMIT = 32767.0 * INTER_TAB_SIZE  # |coordinate| below this: no clamp can change a map value

# Luma/chroma weights (Kr, Kb) of the matrices a chunk can be tagged with.
_KR_KB = {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722), "bt2020": (0.2627, 0.0593)}


def inverse_matrix(cx: float, cy: float, w: float, h: float, rotation: float, size: int) -> F64:
    """The crop's output → source homography (9 values, row-major), as OpenCV 4's warpPerspective
    inverts it."""
    src = cv2.boxPoints(((cx, cy), (w, h), rotation * 180.0 / math.pi)).astype(np.float32)
    dst = np.array([[0, size], [0, 0], [size, 0], [size, size]], dtype=np.float32)
    forward = cv2.getPerspectiveTransform(src, dst)
    return np.asarray(cv2.invert(forward, flags=cv2.DECOMP_LU)[1], dtype=np.float64).reshape(-1)


def _grid(size: int) -> tuple[F64, F64]:
    """The output pixels' column (1, size) and row (size, 1) indices, made once per size."""
    if (cached := _GRIDS.get(size)) is None:
        xs = np.arange(size, dtype=np.float64)[None, :]
        ys = np.arange(size, dtype=np.float64)[:, None]
        cached = _GRIDS[size] = (xs, ys)
    return cached


_GRIDS: dict[int, tuple[F64, F64]] = {}


def _source_coords(m: F64, size: int) -> tuple[F64, F64]:
    """Source coordinates of every output pixel, in 1/32 pixel units, before rounding (OpenCV 4's
    warpPerspective order of operations, so the rounding below lands where OpenCV 4's did)."""
    xs, ys = _grid(size)
    wsum = (m[7] * ys + m[8]) + m[6] * xs
    if wsum.all():  # a crop's homography never sends a pixel to infinity; OpenCV's guard otherwise
        wscale = INTER_TAB_SIZE / wsum
    else:
        wscale = np.where(wsum != 0.0, INTER_TAB_SIZE / np.where(wsum != 0.0, wsum, 1.0), 0.0)
    ux = (m[1] * ys + m[2]) + m[0] * xs
    ux *= wscale
    uy = (m[4] * ys + m[5]) + m[3] * xs
    uy *= wscale
    return ux, uy


def _fixed_maps(ux: F64, uy: F64) -> tuple[npt.NDArray[np.int16], npt.NDArray[np.uint16]]:
    """cv2.remap's fixed-point maps from 1/32-pixel coordinates.

    The clamps only matter for a crop far outside the frame (beyond ±32767 pixels); they are skipped
    when the values are in range (the common case), which gives the same integers in a fraction of
    the time (int32 arithmetic, no clipping passes).
    """
    if max(float(np.abs(ux).max()), float(np.abs(uy).max())) < _FAST_LIMIT:
        fx = np.rint(ux).astype(np.int32)
        fy = np.rint(uy).astype(np.int32)
        map1 = np.empty((*fx.shape, 2), dtype=np.int16)
        np.right_shift(fx, INTER_BITS, out=map1[..., 0], casting="unsafe")
        np.right_shift(fy, INTER_BITS, out=map1[..., 1], casting="unsafe")
        fy &= INTER_TAB_SIZE - 1
        fy <<= INTER_BITS
        fx &= INTER_TAB_SIZE - 1
        fy |= fx
        return map1, fy.astype(np.uint16)
    lo, hi = _LIMIT
    fx64 = np.rint(np.clip(ux, lo, hi)).astype(np.int64)
    fy64 = np.rint(np.clip(uy, lo, hi)).astype(np.int64)
    sx = np.clip(fx64 >> INTER_BITS, -32768, 32767)
    sy = np.clip(fy64 >> INTER_BITS, -32768, 32767)
    map1 = np.empty((*fx64.shape, 2), dtype=np.int16)
    map1[..., 0] = sx
    map1[..., 1] = sy
    mask = INTER_TAB_SIZE - 1
    map2 = ((fy64 & mask) * INTER_TAB_SIZE + (fx64 & mask)).astype(np.uint16)
    return map1, map2


def warp_rgb(
    rgb: U8, cx: float, cy: float, w: float, h: float, rotation: float, size: int, border: int
) -> U8:
    """Crop a rotated rect into a size x size uint8 image exactly as MediaPipe's OpenCV converter does.

    MediaPipe calls cv::warpPerspective from OpenCV 4, whose bilinear path maps every output pixel to
    source coordinates in 1/32 pixel steps and blends in 15-bit fixed point. OpenCV 5's
    warpPerspective no longer does (up to 3 grey levels apart, which moves landmarks by up to ~1.5 px),
    so the OpenCV 4 coordinate rounding is done here and the fixed-point blend is left to cv2.remap,
    whose fixed-point-map path is the very code OpenCV 4's warpPerspective ran. This keeps the crop
    identical whichever OpenCV meetvar is installed with.
    """
    map1, map2 = _fixed_maps(*_source_coords(inverse_matrix(cx, cy, w, h, rotation, size), size))
    out = cv2.remap(rgb, map1, map2, cv2.INTER_LINEAR, borderMode=border, borderValue=(0, 0, 0))
    return np.asarray(out, dtype=np.uint8)


def warp_yuv(
    frame: Yuv420, cx: float, cy: float, w: float, h: float, rotation: float, size: int, border: int
) -> U8:
    """The :func:`warp_rgb` crop of the frame that ``frame`` decodes to, sampled from its planes.

    Luma is sampled at the same fixed-point positions as :func:`warp_rgb`; chroma at the same points
    in chroma-plane coordinates (H.264's default siting: a chroma sample sits on even luma columns and
    half-way between luma rows, so luma (x, y) is chroma (x/2, (y-0.5)/2)). A constant border is black
    (Y at the black level, neutral chroma), which converts to RGB (0, 0, 0) like MediaPipe's border.
    """
    ux, uy = _source_coords(inverse_matrix(cx, cy, w, h, rotation, size), size)
    luma_maps = _fixed_maps(ux, uy)
    chroma_maps = _fixed_maps(ux * 0.5, (uy - INTER_TAB_SIZE / 2.0) * 0.5)
    black = 0 if frame.full_range else 16
    y = np.asarray(
        cv2.remap(frame.y, *luma_maps, cv2.INTER_LINEAR, borderMode=border, borderValue=black), np.uint8
    )
    u = np.asarray(
        cv2.remap(frame.u, *chroma_maps, cv2.INTER_LINEAR, borderMode=border, borderValue=128), np.uint8
    )
    v = np.asarray(
        cv2.remap(frame.v, *chroma_maps, cv2.INTER_LINEAR, borderMode=border, borderValue=128), np.uint8
    )
    return yuv_to_rgb(y, u, v, frame.matrix, frame.full_range)


def yuv_to_rgb(y: U8, u: U8, v: U8, matrix: str = "bt601", full_range: bool = False) -> U8:
    """Same-size Y, U, V → (H, W, 3) uint8 RGB with the standard matrix equations, rounded to nearest."""
    kr, kb = _KR_KB.get(matrix, _KR_KB["bt601"])
    kg = 1.0 - kr - kb
    ys, cs = (1.0, 1.0) if full_range else (255.0 / 219.0, 255.0 / 224.0)
    y0 = 0.0 if full_range else 16.0
    yf = (y.astype(np.float32) - np.float32(y0)) * np.float32(ys)
    cb = (u.astype(np.float32) - np.float32(128.0)) * np.float32(cs)
    cr = (v.astype(np.float32) - np.float32(128.0)) * np.float32(cs)
    out = np.empty((*y.shape, 3), dtype=np.float32)
    out[..., 0] = yf + np.float32(2.0 * (1.0 - kr)) * cr
    out[..., 1] = (
        yf - np.float32(2.0 * kb * (1.0 - kb) / kg) * cb - np.float32(2.0 * kr * (1.0 - kr) / kg) * cr
    )
    out[..., 2] = yf + np.float32(2.0 * (1.0 - kb)) * cb
    np.rint(out, out=out)
    np.clip(out, 0.0, 255.0, out=out)
    return out.astype(np.uint8)


Image = U8 | Yuv420


def image_size(image: Image) -> tuple[int, int]:
    """(height, width) of an RGB array or a :class:`Yuv420` frame."""
    if isinstance(image, Yuv420):
        return image.shape
    return int(image.shape[0]), int(image.shape[1])


def warp(
    image: Image, cx: float, cy: float, w: float, h: float, rotation: float, size: int, border: int
) -> U8:
    """Crop from whichever form the frame arrived in."""
    if isinstance(image, Yuv420):
        return warp_yuv(image, cx, cy, w, h, rotation, size, border)
    return warp_rgb(image, cx, cy, w, h, rotation, size, border)
