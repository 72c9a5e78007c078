"""Decode one chunk, standalone, to rgb24 frames: how the pose worker and ``meetvar judge`` get pixels.

Same chunk bytes give the same pixels in any process: H.264 decoding is bit-exact by specification
(whatever the thread count or CPU), and the YUV→RGB step is pinned to swscale's ``BITEXACT |
ACCURATE_RND`` C path on one thread, so it does not depend on which SIMD code the CPU picks.

What happens to damaged data (the caller logs the chunk as a gap and skips it):

* unreadable container, no video stream, truncated or structurally broken H.264 → :class:`ChunkDecodeError`
  (the decoder runs with ``err_detect=...+explode``, so errors it notices abort instead of being concealed);
* a frame count other than ``expected_frames`` (e.g. truncation exactly at a frame boundary)
  → :class:`ChunkDecodeError`;
* a bit flip inside entropy-coded slice data can decode "successfully" to wrong pixels: H.264 carries
  no payload checksum. Pass ``crc32`` (see :attr:`ingest.chunker.Chunk.crc32`) to turn that into a
  :class:`ChunkDecodeError` too. Over Kafka the record-batch CRC already covers transport damage.

No other exception escapes :func:`decode_chunk` for bad input.

:func:`decode_chunk_yuv` is the same decode without the RGB conversion: it returns the decoder's own
4:2:0 planes (:class:`Yuv420`), copied out of the decoder, which is bit-exact by specification too. The
pose worker and ``meetvar judge`` use it because BlazePose only ever looks at two small crops of a
frame, and converting just those pixels (``gpu_service.imaging``) is an order of magnitude cheaper than
converting the whole frame (≈4–8 ms per 720p–1080p frame on these machines).
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import av
import av.error
import numpy as np
import numpy.typing as npt
from av.video.reformatter import Interpolation

from ingest.errors import ChunkDecodeError

RGB = npt.NDArray[np.uint8]

# Pinned YUV→RGB conversion. BITEXACT selects swscale's reference path (same output on every CPU);
# colour matrix and range come from the frame (the encoder's VUI), so they travel with the chunk.
_RGB_FLAGS = Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.BITEXACT
_DECODER_OPTIONS = {"err_detect": "crccheck+bitstream+buffer+explode"}
# AVColorSpace values → the YUV→RGB matrix they name; everything else (unspecified included) is
# BT.601, which is also what swscale assumes for an untagged frame.
_MATRIX_BY_COLORSPACE = {1: "bt709", 9: "bt2020", 10: "bt2020"}
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Yuv420:
    """One decoded 4:2:0 frame: ``y`` is ``(height, width)``, ``u`` and ``v`` are ``(height/2, width/2)``,
    all uint8 and C-contiguous; ``matrix`` (``bt601``/``bt709``/``bt2020``) and ``full_range`` say how
    to turn them into RGB. Chroma is sited as H.264's default (``chroma_sample_loc_type`` 0: left)."""

    y: npt.NDArray[np.uint8]
    u: npt.NDArray[np.uint8]
    v: npt.NDArray[np.uint8]
    matrix: str = "bt601"
    full_range: bool = False

    @property
    def width(self) -> int:
        return int(self.y.shape[1])

    @property
    def height(self) -> int:
        return int(self.y.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.y.shape[0]), int(self.y.shape[1])


def _plane(frame: av.VideoFrame, index: int, height: int, width: int) -> npt.NDArray[np.uint8]:
    plane = frame.planes[index]
    rows = np.frombuffer(memoryview(plane), dtype=np.uint8).reshape(-1, plane.line_size)
    return np.ascontiguousarray(rows[:height, :width])


def frame_to_yuv420(frame: av.VideoFrame) -> Yuv420:
    """The frame's planes as :class:`Yuv420` (converted to yuv420p first if the decoder gave another
    layout, which a chunk from our chunker never does)."""
    if frame.format.name != "yuv420p":
        frame = frame.reformat(format="yuv420p", interpolation=_RGB_FLAGS, threads=1)
    h, w = frame.height, frame.width
    return Yuv420(
        y=_plane(frame, 0, h, w),
        u=_plane(frame, 1, (h + 1) // 2, (w + 1) // 2),
        v=_plane(frame, 2, (h + 1) // 2, (w + 1) // 2),
        matrix=_MATRIX_BY_COLORSPACE.get(int(frame.colorspace), "bt601"),
        full_range=int(frame.color_range) == 2,
    )


def frame_to_rgb(frame: av.VideoFrame) -> RGB:
    """``(height, width, 3)`` uint8 rgb24, C-contiguous, converted the same way on every machine."""
    rgb = frame.reformat(format="rgb24", interpolation=_RGB_FLAGS, threads=1).to_ndarray()
    return rgb.astype(np.uint8, copy=False)


def decode_chunk(data: bytes, expected_frames: int, *, crc32: int | None = None) -> list[RGB]:
    """Decode a chunk (one closed GOP of H.264 in MPEG-TS) to ``expected_frames`` rgb24 frames.

    Raises :class:`ChunkDecodeError` with a one-line reason when the data is damaged; see the module doc.
    """
    return _decode(data, expected_frames, crc32, frame_to_rgb)


def decode_chunk_yuv(data: bytes, expected_frames: int, *, crc32: int | None = None) -> list[Yuv420]:
    """:func:`decode_chunk` without the RGB conversion: the decoded planes, same checks, same errors."""
    return _decode(data, expected_frames, crc32, frame_to_yuv420)


def _size(item: object) -> tuple[int, int]:
    if isinstance(item, Yuv420):
        return item.shape
    shape = getattr(item, "shape", (0, 0))
    return int(shape[0]), int(shape[1])


def _decode(
    data: bytes, expected_frames: int, crc32: int | None, convert: Callable[[av.VideoFrame], T]
) -> list[T]:
    if expected_frames < 1:
        raise ChunkDecodeError(f"chunk metadata promises {expected_frames} frames; nothing to decode")
    if not data:
        raise ChunkDecodeError("chunk is empty (0 bytes)")
    if crc32 is not None and (actual := zlib.crc32(data)) != crc32:
        raise ChunkDecodeError(f"chunk checksum mismatch: crc32 {actual:08x}, metadata says {crc32:08x}")
    frames: list[T] = []
    try:
        with av.open(io.BytesIO(data), "r", format="mpegts") as container:
            if not container.streams.video:
                raise ChunkDecodeError(f"chunk of {len(data)} bytes holds no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "SLICE"
            stream.thread_count = 1
            stream.codec_context.options = dict(_DECODER_OPTIONS)
            for frame in container.decode(stream):
                if frame.is_corrupt:
                    raise ChunkDecodeError(f"frame {len(frames)} of the chunk is corrupt")
                if frames and (frame.height, frame.width) != _size(frames[0]):
                    raise ChunkDecodeError(f"frame {len(frames)} changes size inside the chunk")
                frames.append(convert(frame))
                if len(frames) > expected_frames:
                    break
    except ChunkDecodeError:
        raise
    except (av.error.FFmpegError, EOFError, OSError, ValueError) as exc:
        raise ChunkDecodeError(
            f"chunk of {len(data)} bytes is damaged after {len(frames)} frames: {exc}"
        ) from exc
    if len(frames) != expected_frames:
        got = f"more than {expected_frames}" if len(frames) > expected_frames else f"only {len(frames)}"
        raise ChunkDecodeError(
            f"chunk decodes to {got} frames, metadata promises {expected_frames} (truncated or mislabelled)"
        )
    return frames
