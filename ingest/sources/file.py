"""A PyAV video source for files and stream URLs (rtsp, srt, http(s), ...: all go through ``av.open``).

Every frame comes out *normalised*, ready for the encoder:

* ``yuv420p``, limited ("tv") range: other pixel formats and full-range input are converted by swscale
  (pinned to its bit-exact path); the colour matrix is left as tagged and travels in the encoder's VUI;
* upright: a display matrix (MP4 ``rotate``/``tkhd`` matrix, as side data on the frame) is applied the
  way ffmpeg's autorotate does, quarter turns and mirrors, on the Y/U/V planes (lossless);
* even width and height (x264 needs them for 4:2:0): an odd last row/column is cropped.

``pts_us`` is media time in µs since the first decoded video frame, from ``pts * time_base`` in exact
rational arithmetic, rounded half-to-even; it is forced strictly increasing (a repeated or backwards
timestamp becomes the previous one + 1 µs), and a frame without a timestamp gets previous + 1/fps.
Audio and other streams are never demuxed.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import av
import av.error
import numpy as np
import numpy.typing as npt
import structlog
from av.video.reformatter import ColorRange, Interpolation

from ingest.chunk_decoder import frame_to_rgb
from ingest.errors import SourceError

log = structlog.get_logger()

DEFAULT_FPS = Fraction(30)
_SWS_FLAGS = Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.BITEXACT
_WHAT_TO_DO = "give a video file (mp4, mov, mkv, ts) or a stream URL"
_TEXT_CODECS = frozenset({"ansi", "bintext", "xbin", "idf"})

Plane = npt.NDArray[np.uint8]
_PLANE_OPS: dict[str, Callable[[Plane], Plane]] = {
    "clock": lambda p: np.rot90(p, -1),  # 90° clockwise
    "cclock": lambda p: np.rot90(p, 1),  # 90° counter-clockwise
    "cclock_flip": lambda p: p.T,  # ffmpeg transpose=cclock_flip: the matrix transpose
    "clock_flip": lambda p: np.rot90(p, -1)[::-1],
    "hflip": lambda p: p[:, ::-1],
    "vflip": lambda p: p[::-1],
}


@dataclass(frozen=True, slots=True)
class SourceFrame:
    """One normalised frame: ``frame`` is yuv420p, upright, even-sized; ``to_rgb()`` gives rgb24."""

    index: int
    pts_us: int
    frame: av.VideoFrame

    @property
    def width(self) -> int:
        return int(self.frame.width)

    @property
    def height(self) -> int:
        return int(self.frame.height)

    def to_rgb(self) -> npt.NDArray[np.uint8]:
        """``(height, width, 3)`` uint8, converted as :func:`ingest.chunk_decoder.decode_chunk` does."""
        return frame_to_rgb(self.frame)


def is_url(source: str | os.PathLike[str]) -> bool:
    text = os.fspath(source)
    return "://" in text and not text.startswith("file://")


def open_source(
    source: str | os.PathLike[str],
    *,
    options: Mapping[str, str] | None = None,
    timeout: float | tuple[float, float] | None = None,
    decoder_threads: int = 0,
) -> FileSource:
    return FileSource(source, options=options, timeout=timeout, decoder_threads=decoder_threads)


class FileSource:
    """Decoded, normalised video frames of a file or stream URL. Opening raises :class:`SourceError`.

    ``options`` go to ``av.open`` (demuxer/protocol options, e.g. ``{"rtsp_transport": "tcp"}``),
    ``timeout`` is seconds for open and read (or a pair), ``decoder_threads`` the decoder's threads (0:
    FFmpeg's choice). Iterate once; use as a context manager or
    call :meth:`close`.
    """

    def __init__(
        self,
        source: str | os.PathLike[str],
        *,
        options: Mapping[str, str] | None = None,
        timeout: float | tuple[float, float] | None = None,
        decoder_threads: int = 0,
    ) -> None:
        self.url = os.fspath(source)
        self.is_network = is_url(self.url)
        if not self.is_network:
            path = Path(self.url.removeprefix("file://"))
            if not path.exists():
                raise SourceError(f"no such file: {path}")
            if path.is_dir():
                raise SourceError(f"{path} is a folder — {_WHAT_TO_DO}")
            self.url = str(path)
        try:
            self._container = av.open(self.url, "r", options=dict(options or {}), timeout=timeout)
        except av.error.FileNotFoundError as exc:
            raise SourceError(f"no such file: {self.url}") from exc
        except (av.error.FFmpegError, OSError, EOFError, ValueError) as exc:
            if self.is_network:
                raise SourceError(
                    f"cannot open stream {self.url} ({_reason(exc)}) — check the URL and that the camera "
                    "is reachable"
                ) from exc
            raise SourceError(f"cannot read {self.url} as video ({_reason(exc)}) — {_WHAT_TO_DO}") from exc
        cover_art = av.stream.Disposition.attached_pic
        streams = [s for s in self._container.streams.video if not s.disposition & cover_art]
        if not streams:
            self._container.close()
            raise SourceError(f"{self.url} has no video stream — {_WHAT_TO_DO}")
        self._stream = streams[0]
        ctx = self._stream.codec_context
        if ctx is None:
            self._container.close()
            raise SourceError(f"{self.url}: no decoder for its video codec — re-encode it to H.264 first")
        if ctx.name in _TEXT_CODECS:  # ffmpeg renders .txt/.nfo/... as "video"; no camera does
            self._container.close()
            raise SourceError(f"{self.url} is a text file, not a video — {_WHAT_TO_DO}")
        # Frame threads are faster for files; live streams use slice threads, which add no delay.
        # ``decoder_threads=1`` is for callers that keep the other cores busy themselves (``meetvar
        # judge``'s pipeline): one thread costs ≈10 % less CPU per frame than frame threads.
        self._stream.thread_type = "SLICE" if self.is_network or decoder_threads == 1 else "AUTO"
        if decoder_threads > 0:
            self._stream.thread_count = decoder_threads
        rate = self._stream.average_rate or self._stream.guessed_rate or self._stream.base_rate
        self.fps: Fraction = Fraction(rate) if rate and 0 < rate < 1000 else DEFAULT_FPS
        self._iterated = False
        self._normalize = FrameNormalizer(self.url)
        self._warn_once = self._normalize.warn_once

    # -- context manager -------------------------------------------------------------------------
    def __enter__(self) -> FileSource:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._container.close()

    # -- frames ----------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[SourceFrame]:
        if self._iterated:
            raise RuntimeError("a FileSource can be iterated only once; open the source again")
        self._iterated = True
        period_us = round(Fraction(1_000_000) / self.fps)
        origin: int | None = None
        last_us: int | None = None
        index = 0
        bad_packets = 0
        for frame in self._decoded():
            if frame is None:
                bad_packets += 1
                continue
            tb = frame.time_base or self._stream.time_base
            if frame.pts is None or tb is None:
                pts_us = 0 if last_us is None else last_us + period_us
            else:
                if origin is None:
                    origin = frame.pts
                pts_us = round((frame.pts - origin) * Fraction(tb) * 1_000_000)
            if last_us is not None and pts_us <= last_us:
                self._warn_once("non_increasing_pts", pts_us=pts_us, last_us=last_us)
                pts_us = last_us + 1
            last_us = pts_us
            yield SourceFrame(index, pts_us, self._normalize(frame))
            index += 1
        if bad_packets:
            log.warning("source.undecodable_packets", url=self.url, skipped=bad_packets, frames=index)
        if index == 0:
            raise SourceError(
                f"no video frame could be decoded from {self.url} — the file may be truncated or use an "
                "unsupported codec; re-encode it to H.264 (e.g. ffmpeg -i IN -c:v libx264 OUT.mp4)"
            )

    def _decoded(self) -> Iterator[av.VideoFrame | None]:
        """Decoded frames in order; ``None`` for a packet the decoder rejected (skipped, counted)."""
        try:
            for packet in self._container.demux(self._stream):
                try:
                    frames = packet.decode()
                except av.error.InvalidDataError:
                    yield None
                    continue
                for frame in frames:
                    if isinstance(frame, av.VideoFrame):
                        yield frame
        except av.error.FFmpegError as exc:
            raise SourceError(
                f"reading {self.url} failed ({_reason(exc)}) — check the file or stream"
            ) from exc


class FrameNormalizer:
    """The normalisation every source applies (see the module doc), shared by files, pull sources and
    WHIP so that a frame is made upright, 4:2:0 and even-sized in exactly one place. ``label`` names
    the source in errors and in the once-per-source warnings."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._warned: set[str] = set()
        self._ops: tuple[str, ...] | None = None
        self._rotation: float | None = None

    def __call__(self, frame: av.VideoFrame) -> av.VideoFrame:
        ops = self._orientation(frame)
        full_range = frame.color_range == ColorRange.JPEG or frame.format.name.startswith("yuvj")
        if frame.format.name != "yuv420p" or full_range:
            frame = frame.reformat(
                format="yuv420p",
                src_color_range=ColorRange.JPEG if full_range else None,
                dst_color_range=ColorRange.MPEG,
                interpolation=_SWS_FLAGS,
                threads=1,
            )
        if not ops and frame.width % 2 == 0 and frame.height % 2 == 0:
            return frame
        w, h = frame.width & ~1, frame.height & ~1
        if w == 0 or h == 0:
            raise SourceError(
                f"{self.label}: {frame.width}x{frame.height} frames are too small — {_WHAT_TO_DO}"
            )
        planes = [_plane(frame, 0)[:h, :w], _plane(frame, 1)[: h // 2, : w // 2]]
        planes.append(_plane(frame, 2)[: h // 2, : w // 2])
        for op in ops:
            planes = [_PLANE_OPS[op](p) for p in planes]
        out_h, out_w = planes[0].shape
        flat = np.concatenate([p.ravel() for p in planes]).reshape(out_h * 3 // 2, out_w)
        out = av.VideoFrame.from_ndarray(flat, format="yuv420p")
        out.color_range = ColorRange.MPEG
        out.colorspace = frame.colorspace
        out.color_primaries = frame.color_primaries
        out.color_trc = frame.color_trc
        return out

    def _orientation(self, frame: av.VideoFrame) -> tuple[str, ...]:
        """The display matrix's ops, read again only when the frame's rotation changes.

        Reading ``frame.side_data`` makes a reference cycle in PyAV (the frame caches a container that
        holds the frame), so every frame read that way, pixels and all, waits for the cyclic garbage
        collector: a looping ingest grew ≈72 MB/min (``meetvar bench soak``). ``frame.rotation`` reads
        the matrix without that cycle; a change of flip alone, with the same rotation, mid-stream, is
        the one thing this does not follow (no camera or muxer does it).
        """
        rotation = frame.rotation
        if self._ops is None or rotation != self._rotation:
            self._ops, self._rotation = self._display_matrix_ops(frame), rotation
        return self._ops

    def _display_matrix_ops(self, frame: av.VideoFrame) -> tuple[str, ...]:
        side_data: Any = frame.side_data
        for item in side_data:
            if getattr(item.type, "name", "") == "DISPLAYMATRIX" and item.buffer_size >= 36:
                ops, exact = orientation_ops(struct.unpack("=9i", bytes(item)[:36]))
                if not exact:
                    self.warn_once("display_matrix_not_quarter_turn", applied=ops)
                return ops
        return ()

    def warn_once(self, event: str, **fields: object) -> None:
        if event not in self._warned:
            self._warned.add(event)
            log.warning(f"source.{event}", url=self.label, **fields)


def orientation_ops(matrix: tuple[int, ...]) -> tuple[tuple[str, ...], bool]:
    """ffmpeg's autorotate decision for a display matrix: the ops that make the picture upright.

    Mirrors ``fftools``: ``theta = -round(av_display_rotation_get(m))`` mod 360, then transpose / flips.
    An angle that is not a quarter turn is snapped to the nearest one (``exact`` is then False).
    """
    a, b, c, d = (v / 65536.0 for v in (matrix[0], matrix[1], matrix[3], matrix[4]))
    sx, sy = math.hypot(a, c), math.hypot(b, d)
    if sx == 0 or sy == 0:
        return (), False
    rotation = -math.degrees(math.atan2(b / sy, a / sx))  # av_display_rotation_get
    theta = float(-round(rotation))
    theta -= 360 * math.floor(theta / 360 + 0.9 / 360)
    snapped = (round(theta / 90) * 90) % 360
    exact = abs(theta - snapped) < 1.0 or abs(theta - 360 - snapped) < 1.0
    if snapped == 90:
        return (("cclock_flip",) if matrix[3] > 0 else ("clock",)), exact
    if snapped == 180:
        return tuple(op for op, neg in (("hflip", matrix[0] < 0), ("vflip", matrix[4] < 0)) if neg), exact
    if snapped == 270:
        return (("clock_flip",) if matrix[3] < 0 else ("cclock",)), exact
    return (("vflip",) if matrix[4] < 0 else ()), exact


def _plane(frame: av.VideoFrame, i: int) -> Plane:
    plane = frame.planes[i]
    rows: Plane = np.frombuffer(memoryview(plane), np.uint8).reshape(-1, plane.line_size)
    return rows[: plane.height, : plane.width]


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return str(text).strip().rstrip(".").split("\n")[0]
