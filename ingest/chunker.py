"""Cut normalised frames into GOP-aligned H.264 chunks, each a standalone MPEG-TS.

Policy (every chunk is one closed GOP, encoded by its own fresh libx264 instance):

* **Re-encode, always.** Camera GOPs are whatever the camera chose (the bundled clip has a keyframe
  every 5.3 s); re-encoding gives a fixed chunk length and one code path for files and live streams.
* **One encoder per chunk.** The chunk is closed and independently decodable by construction: it starts
  with an IDR carrying SPS/PPS, no frame references another chunk, and no rate-control or lookahead
  state leaks across chunks. Opening x264 costs ~1 ms, nothing next to encoding 15 frames.
* **x264 settings.** ``preset=ultrafast``, ``crf=20``, ``bframes=0`` (decode order = display order, no
  reorder delay), ``keyint=min-keyint=chunk_frames``, ``scenecut=0`` (no extra I-frames), closed GOP,
  ``yuv420p``. Every frame, live or offline, is encoded and decoded once more here, so the encoder's
  and decoder's CPU is paid on every frame judged: ``ultrafast`` (no CABAC, no deblocking, no
  lookahead) costs about half of ``veryfast`` to encode (≈4 vs ≈9 ms per 720p frame on these
  machines) and ≈30 % less to decode, at the same fidelity to the source (luma PSNR 47.4 vs 46.7 dB
  on a 1280x720 squat clip, 44.9 vs 45.6 dB on the noisier bundled 608x1080 clip, against
  ``veryfast`` at ``crf=18``). The price is bandwidth: ≈350 kB per 15-frame 720p chunk (one thread;
  two frame threads made 40 % more), ≈6 Mbit/s per camera, still below the publisher's inline limit.
  Measured in docs/benchmarks.md; this was the largest single
  cost of ``meetvar judge`` after the pose model.
* **Deterministic.** One encoder thread, fixed (x264's output depends on its thread count, not
  on the machine's cores or SIMD, for the x264 build that the pinned ``av`` wheel bundles; it is
  deterministic for a given count); timestamps come from media time, never the
  wall clock; the muxer runs with ``+bitexact``. The same frames always give the same bytes.
* **Container: MPEG-TS** rather than raw Annex-B: it is made to be cut and concatenated (``cat *.ts``
  plays), it is self-describing (PAT/PMT in every chunk, so any chunk can be probed alone with
  ffprobe/ffplay), and it carries a PTS per frame, so a decoder sees frame boundaries and order
  without relying on a parser's guesswork. Cost: ~4.5 % overhead (188-byte packets, PES headers).

``capture_us`` of a frame is ``start_us + pts_us``: the caller gives ``start_us`` (the wall clock in
µs at stream start for live video, 0 offline). The colour tags of the source (matrix, primaries,
transfer) are written to the H.264 VUI with range "tv", so the decoder converts to RGB the same way.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction

import av

from ingest.sources.file import SourceFrame

DEFAULT_CHUNK_SECONDS = 0.5
DEFAULT_CRF = 20
DEFAULT_PRESET = "ultrafast"
# Fixed, because x264's bitstream depends on the thread count (never on the machine). One thread:
# measured on a 720p30 clip, x264's frame threads cost 5.3 ms of CPU per frame against 3.5 ms for one
# thread, made 40 % more bytes at the same crf, and hold frames back (latency); one encoder per camera
# already spreads cameras over cores.
ENCODER_THREADS = 1
_TS_TIME_BASE = Fraction(1, 90_000)


@dataclass(frozen=True, slots=True)
class Chunk:
    """One GOP of one camera: ``data`` is a standalone MPEG-TS holding ``frame_count`` H.264 frames."""

    seq: int
    frame_count: int
    capture_us: list[int]
    pts_us: list[int]
    width: int
    height: int
    data: bytes = field(repr=False)
    codec: str = "h264"
    container: str = "mpegts"
    keyframe: bool = True

    @property
    def crc32(self) -> int:
        """zlib CRC-32 of ``data``: pass it to ``decode_chunk(crc32=...)`` to catch bit flips."""
        return zlib.crc32(self.data)

    @property
    def first_capture_us(self) -> int:
        return self.capture_us[0]

    @property
    def last_capture_us(self) -> int:
        return self.capture_us[-1]


def frames_per_chunk(fps: Fraction | float, chunk_seconds: float = DEFAULT_CHUNK_SECONDS) -> int:
    """``round(chunk_seconds × fps)``, at least 1: 15 frames for 29.97 fps and 0.5 s."""
    if chunk_seconds <= 0:
        raise ValueError(f"chunk_seconds must be positive, got {chunk_seconds}")
    return max(1, round(Fraction(chunk_seconds) * Fraction(fps)))


class Chunker:
    """Feed :class:`SourceFrame` s with :meth:`push`; call :meth:`flush` at the end for the partial chunk.

    A chunk closes after ``chunk_frames`` frames, or early when the frame size changes (the next chunk
    starts with the new size).
    """

    def __init__(
        self,
        fps: Fraction | float,
        *,
        start_us: int = 0,
        chunk_frames: int | None = None,
        chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
        crf: int = DEFAULT_CRF,
        preset: str = DEFAULT_PRESET,
    ) -> None:
        self.fps = Fraction(fps).limit_denominator(1_000_000)
        if self.fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.start_us = start_us
        if chunk_frames is None:
            chunk_frames = frames_per_chunk(self.fps, chunk_seconds)
        self.chunk_frames = chunk_frames
        if self.chunk_frames < 1:
            raise ValueError(f"chunk_frames must be at least 1, got {self.chunk_frames}")
        self.crf = crf
        self.preset = preset
        self._seq = 0
        self._segment: _Segment | None = None

    def push(self, frame: SourceFrame) -> list[Chunk]:
        """Encode one frame; returns the chunks it completed (usually none, at most two)."""
        done: list[Chunk] = []
        seg = self._segment
        if seg is not None and (seg.width, seg.height) != (frame.width, frame.height):
            done.append(self._close())
            seg = None
        if seg is None:
            seg = self._segment = _Segment(self, frame.width, frame.height, frame.frame)
        seg.add(frame)
        if len(seg.pts_us) >= self.chunk_frames:
            done.append(self._close())
        return done

    def flush(self) -> Chunk | None:
        """The final partial chunk, if any frames are pending."""
        return self._close() if self._segment is not None else None

    def chunks(self, frames: Iterable[SourceFrame]) -> Iterator[Chunk]:
        """All chunks of ``frames``, the last one flushed."""
        for frame in frames:
            yield from self.push(frame)
        if (last := self.flush()) is not None:
            yield last

    def _close(self) -> Chunk:
        assert self._segment is not None
        seg, self._segment = self._segment, None
        data = seg.finish()
        chunk = Chunk(
            seq=self._seq,
            frame_count=len(seg.pts_us),
            capture_us=[self.start_us + p for p in seg.pts_us],
            pts_us=seg.pts_us,
            width=seg.width,
            height=seg.height,
            data=data,
        )
        self._seq += 1
        return chunk


class _Segment:
    """One chunk being encoded: a fresh MPEG-TS muxer and x264 encoder writing into memory."""

    def __init__(self, chunker: Chunker, width: int, height: int, first: av.VideoFrame) -> None:
        self.width, self.height = width, height
        self.pts_us: list[int] = []
        self._last_ts = -1
        self._buf = io.BytesIO()
        self._out = av.open(self._buf, "w", format="mpegts", options={"fflags": "+bitexact"})
        n = chunker.chunk_frames
        x264_params = f"keyint={n}:min-keyint={n}:scenecut=0:bframes=0:open-gop=0:repeat-headers=1"
        stream = self._out.add_stream(
            "libx264",
            rate=chunker.fps,
            options={"preset": chunker.preset, "crf": str(chunker.crf), "x264-params": x264_params},
        )
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.thread_type = "SLICE"
        stream.thread_count = ENCODER_THREADS
        ctx = stream.codec_context
        ctx.time_base = _TS_TIME_BASE
        ctx.color_range = 1  # MPEG / "tv": the source normalises to it
        ctx.colorspace = first.colorspace
        ctx.color_primaries = first.color_primaries
        ctx.color_trc = first.color_trc
        self._stream = stream

    def add(self, frame: SourceFrame) -> None:
        vf = frame.frame
        # The TS timestamp is informational (chunk metadata carries pts_us); keep it strictly increasing.
        ts = max(self._last_ts + 1, round(Fraction(frame.pts_us) / 1_000_000 / _TS_TIME_BASE))
        self._last_ts = ts
        vf.pts = ts
        vf.time_base = _TS_TIME_BASE
        self._out.mux(self._stream.encode(vf))
        self.pts_us.append(frame.pts_us)

    def finish(self) -> bytes:
        self._out.mux(self._stream.encode(None))
        self._out.close()
        return self._buf.getvalue()
