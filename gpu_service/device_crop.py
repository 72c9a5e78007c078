"""The landmark crop made on the inference device, from the decoder's planes, with PyTorch.

On a GPU box the CPU is what runs out first: it decodes every camera's video and, on the CPU path,
also cuts each frame's 256x256 crop (≈1.5 ms of its ≈4–5 ms a 720p frame; docs/benchmarks.md). Here the
Y, U and V planes go to the device as they are (1.4 MB a 720p frame, a fraction of a millisecond over
PCIe) and the crop, the colour conversion and the normalisation run there; the crop never comes back
to the host, it is the model's input.

It is :func:`gpu_service.imaging.warp_yuv`'s crop computed in floating point: the same homography, the
same chroma siting (luma (x, y) is chroma (x/2, (y − 0.5)/2)), the same colour equations and rounding
to whole grey levels, but bilinear weights in float32 instead of OpenCV's 1/32-pixel fixed point — at
most a grey level or two apart (tests/test_backends.py's device-crop test bounds it, and the keypoints
it gives).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from ingest.chunk_decoder import Yuv420

F64 = npt.NDArray[np.float64]

# Luma/chroma weights (Kr, Kb) per matrix, as gpu_service.imaging.
_KR_KB = {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722), "bt2020": (0.2627, 0.0593)}


def crop_yuv(
    torch: Any, frame: Yuv420, inverse: F64, size: int, device: str, *, replicate: bool = True
) -> Any:
    """``(1, size, size, 3)`` float32 RGB in [0, 1] on ``device``: the crop whose output pixel (x, y)
    samples the frame at ``inverse @ (x, y, 1)`` (a 3x3 homography, row-major, 9 values)."""
    m = torch.as_tensor(np.asarray(inverse, dtype=np.float64).reshape(3, 3), device=device)
    ys, xs = torch.meshgrid(
        torch.arange(size, device=device, dtype=torch.float64),
        torch.arange(size, device=device, dtype=torch.float64),
        indexing="ij",
    )
    w = m[2, 0] * xs + m[2, 1] * ys + m[2, 2]
    w = torch.where(w == 0, torch.ones_like(w), w)
    sx = (m[0, 0] * xs + m[0, 1] * ys + m[0, 2]) / w
    sy = (m[1, 0] * xs + m[1, 1] * ys + m[1, 2]) / w
    planes = [torch.from_numpy(np.ascontiguousarray(p)).to(device) for p in (frame.y, frame.u, frame.v)]
    y = _sample(torch, planes[0], sx, sy, replicate, 0.0 if frame.full_range else 16.0)
    u = _sample(torch, planes[1], sx * 0.5, (sy - 0.5) * 0.5, replicate, 128.0)
    v = _sample(torch, planes[2], sx * 0.5, (sy - 0.5) * 0.5, replicate, 128.0)
    kr, kb = _KR_KB.get(frame.matrix, _KR_KB["bt601"])
    kg = 1.0 - kr - kb
    ys_, cs = (1.0, 1.0) if frame.full_range else (255.0 / 219.0, 255.0 / 224.0)
    y0 = 0.0 if frame.full_range else 16.0
    yf = (y - y0) * ys_
    cb = (u - 128.0) * cs
    cr = (v - 128.0) * cs
    rgb = torch.stack(
        (
            yf + 2.0 * (1.0 - kr) * cr,
            yf - (2.0 * kb * (1.0 - kb) / kg) * cb - (2.0 * kr * (1.0 - kr) / kg) * cr,
            yf + 2.0 * (1.0 - kb) * cb,
        ),
        dim=-1,
    )
    # Whole grey levels, as the uint8 crop MediaPipe feeds its model, then the model's [0, 1] scale.
    rgb = torch.clamp(torch.round(rgb), 0.0, 255.0) / 255.0
    return rgb.unsqueeze(0)


def _sample(torch: Any, plane: Any, sx: Any, sy: Any, replicate: bool, fill: float) -> Any:
    """Bilinear samples of a uint8 plane at float source pixel positions: the edge pixel repeated
    outside the plane (``replicate``), or ``fill`` there (a constant border); then rounded to whole
    levels like OpenCV's uint8 output."""
    h, w = plane.shape
    img = plane.to(torch.float32)[None, None]
    grid = torch.stack(((2.0 * sx + 1.0) / w - 1.0, (2.0 * sy + 1.0) / h - 1.0), dim=-1).to(torch.float32)
    if replicate:
        out = torch.nn.functional.grid_sample(
            img, grid[None], mode="bilinear", padding_mode="border", align_corners=False
        )
    else:
        out = torch.nn.functional.grid_sample(
            img - fill, grid[None], mode="bilinear", padding_mode="zeros", align_corners=False
        )
        out = out + fill
    return torch.round(out[0, 0]).to(torch.float32)
