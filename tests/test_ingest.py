"""The normalise → chunk → decode path on the bundled clip, its error handling, rotation and pacing."""

from __future__ import annotations

import contextlib
import gc
import hashlib
import io
import itertools
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any, cast

import av
import numpy as np
import numpy.typing as npt
import pytest
from av.video.stream import VideoStream

from ingest.chunk_decoder import decode_chunk, frame_to_rgb
from ingest.chunker import Chunk, Chunker, frames_per_chunk
from ingest.errors import ChunkDecodeError, SourceError
from ingest.normalize import chunks_from_file, frames_from_file
from ingest.pacing import paced
from ingest.sources import SourceFrame, open_source, orientation_ops

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO / "ingest" / "samples" / "rohanx01_squat.mp4"
CLIP_FRAMES = 614
CHUNK_FRAMES = 15  # round(0.5 s × 29.97 fps)
RGB = npt.NDArray[np.uint8]


@pytest.fixture(scope="module")
def clip_chunks() -> list[Chunk]:
    return list(chunks_from_file(CLIP))


def _psnr(a: RGB, b: RGB) -> float:
    diff = a.astype(np.int32) - b.astype(np.int32)
    mse = float(np.mean(diff * diff))
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def _source_frames(path: Path) -> Iterator[av.VideoFrame]:
    """A direct PyAV decode of the file."""
    with av.open(str(path)) as container:
        yield from container.decode(video=0)


# -- chunking the bundled clip --------------------------------------------------------------------


def test_clip_is_cut_into_half_second_gops(clip_chunks: list[Chunk]) -> None:
    assert frames_per_chunk(Fraction(30000, 1001), 0.5) == CHUNK_FRAMES
    counts = [c.frame_count for c in clip_chunks]
    assert sum(counts) == CLIP_FRAMES
    assert counts[:-1] == [CHUNK_FRAMES] * (len(counts) - 1)
    assert counts[-1] == CLIP_FRAMES - CHUNK_FRAMES * (len(counts) - 1) == 14
    assert [c.seq for c in clip_chunks] == list(range(len(clip_chunks)))
    for c in clip_chunks:
        assert (c.width, c.height) == (608, 1080)
        assert (c.codec, c.container, c.keyframe) == ("h264", "mpegts", True)
        assert len(c.capture_us) == len(c.pts_us) == c.frame_count
        assert len(c.data) % 188 == 0 and c.data[0] == 0x47  # whole MPEG-TS packets


def test_timestamps_exact_and_strictly_increasing(clip_chunks: list[Chunk]) -> None:
    pts = [p for c in clip_chunks for p in c.pts_us]
    # 29.97 fps = 1001/30000 s per frame; µs rounded from the exact rational, not accumulated floats.
    assert pts == [round(Fraction(k * 1001, 30000) * 1_000_000) for k in range(CLIP_FRAMES)]
    capture = [t for c in clip_chunks for t in c.capture_us]
    assert capture == pts  # offline: start_us = 0
    assert all(b > a for a, b in itertools.pairwise(capture))

    start = 1_700_000_000_000_000
    live = list(chunks_from_file(CLIP, start_us=start, max_frames=20))
    assert [c.frame_count for c in live] == [15, 5]
    assert [t for c in live for t in c.capture_us] == [start + p for p in pts[:20]]


def test_every_chunk_decodes_standalone_close_to_source(clip_chunks: list[Chunk]) -> None:
    source = _source_frames(CLIP)
    psnrs = []
    for chunk in clip_chunks:
        frames = decode_chunk(chunk.data, chunk.frame_count, crc32=chunk.crc32)
        assert len(frames) == chunk.frame_count
        for i, rgb in enumerate(frames):
            assert rgb.shape == (1080, 608, 3) and rgb.dtype == np.uint8
            original = next(source)
            if i in (0, len(frames) // 2, len(frames) - 1):  # IDR, middle, last P-frame of each GOP
                # Same RGB conversion on both sides, so this measures only the re-encoding loss.
                psnrs.append(_psnr(rgb, frame_to_rgb(original)))
    assert next(source, None) is None  # the chunks hold every source frame, no more
    assert len(psnrs) == 3 * len(clip_chunks)
    assert min(psnrs) > 35.0, min(psnrs)
    assert float(np.mean(psnrs)) > 38.0


def test_chunk_opens_alone_as_h264_starting_with_a_keyframe(clip_chunks: list[Chunk]) -> None:
    chunk = clip_chunks[len(clip_chunks) // 2]
    with av.open(io.BytesIO(chunk.data), "r", format="mpegts") as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        frames = list(container.decode(stream))
    assert frames[0].key_frame
    assert not any(f.key_frame for f in frames[1:])  # one GOP: exactly one IDR
    assert {f.format.name for f in frames} == {"yuv420p"}


def test_chunking_is_deterministic(clip_chunks: list[Chunk]) -> None:
    first = [c.data for c in chunks_from_file(CLIP, max_frames=45)]
    second = [c.data for c in chunks_from_file(CLIP, max_frames=45)]
    assert first == second
    # Bytes do not depend on how much of the file is read: same as the full run's first chunks.
    assert first == [c.data for c in clip_chunks[:3]]


def test_judge_sees_the_pixels_the_worker_sees(clip_chunks: list[Chunk]) -> None:
    judged = list(frames_from_file(CLIP, max_frames=30))
    assert [i for i, _, _ in judged] == list(range(30))
    assert [t for _, t, _ in judged] == clip_chunks[0].capture_us + clip_chunks[1].capture_us
    worker = decode_chunk(clip_chunks[0].data, 15) + decode_chunk(clip_chunks[1].data, 15)
    assert all(np.array_equal(a, b) for (_, _, a), b in zip(judged, worker, strict=True))


def test_same_chunk_bytes_same_pixels_in_another_process(clip_chunks: list[Chunk], tmp_path: Path) -> None:
    chunk = clip_chunks[3]
    path = tmp_path / "chunk.ts"
    path.write_bytes(chunk.data)
    code = (
        "import hashlib, sys\n"
        "from ingest.chunk_decoder import decode_chunk\n"
        "h = hashlib.sha256()\n"
        "for f in decode_chunk(open(sys.argv[1], 'rb').read(), int(sys.argv[2])): h.update(f.tobytes())\n"
        "print(h.hexdigest())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path), str(chunk.frame_count)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    here = hashlib.sha256()
    for f in decode_chunk(chunk.data, chunk.frame_count):
        here.update(f.tobytes())
    assert out.stdout.strip() == here.hexdigest()


# -- damaged chunks ----------------------------------------------------------------------------------


def test_truncated_or_garbage_chunk_raises_chunk_decode_error(clip_chunks: list[Chunk]) -> None:
    data, n = clip_chunks[1].data, clip_chunks[1].frame_count
    rng = np.random.default_rng(0)
    bad = {
        "half": data[: len(data) // 2],
        "tail cut": data[:-1000],
        "head only": data[:376],
        "garbage": rng.integers(0, 256, 5000, dtype=np.uint8).tobytes(),
        "empty": b"",
    }
    for name, payload in bad.items():
        with pytest.raises(ChunkDecodeError):
            decode_chunk(payload, n)
            pytest.fail(f"{name}: no ChunkDecodeError")


def test_frame_count_mismatch_raises(clip_chunks: list[Chunk]) -> None:
    data, n = clip_chunks[1].data, clip_chunks[1].frame_count
    with pytest.raises(ChunkDecodeError, match=f"only {n} frames, metadata promises {n + 1}"):
        decode_chunk(data, n + 1)
    with pytest.raises(ChunkDecodeError, match=f"more than {n - 1} frames"):
        decode_chunk(data, n - 1)


def test_bit_flips_caught_by_checksum(clip_chunks: list[Chunk]) -> None:
    chunk = clip_chunks[1]
    mid = len(chunk.data) // 2
    flipped = chunk.data[:mid] + bytes(b ^ 0xFF for b in chunk.data[mid : mid + 64]) + chunk.data[mid + 64 :]
    with pytest.raises(ChunkDecodeError, match="checksum mismatch"):
        decode_chunk(flipped, chunk.frame_count, crc32=chunk.crc32)
    # Without a checksum, damage inside slice data may decode to wrong pixels (H.264 has no payload
    # checksum): the documented outcome is ChunkDecodeError or exactly the promised frame count.
    try:
        frames = decode_chunk(flipped, chunk.frame_count)
    except ChunkDecodeError:
        pass
    else:
        assert len(frames) == chunk.frame_count


# -- unusable sources ------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.mp4"
    with pytest.raises(SourceError, match=r"^no such file: .*nope\.mp4$"):
        list(chunks_from_file(missing))


def test_text_file_is_not_a_video(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("squat 250 kg, three white lights\n" * 20)
    with pytest.raises(SourceError) as info:
        list(frames_from_file(notes))
    msg = str(info.value)
    assert "\n" not in msg and "notes.txt" in msg and "give a video file" in msg


def test_audio_only_file_has_no_video_stream(tmp_path: Path) -> None:
    path = tmp_path / "audio.m4a"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=44100)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 44100, 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    with pytest.raises(SourceError, match="has no video stream"):
        open_source(path)


def test_folder_is_not_a_video(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="is a folder"):
        open_source(tmp_path)


def test_source_error_is_a_user_error() -> None:
    from meetvar.errors import UserError

    assert issubclass(SourceError, UserError)


# -- normalisation: rotation, odd sizes, full range ------------------------------------------------


def _write_clip(
    path: Path,
    *,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    size: tuple[int, int] = (64, 48),
    rotation: dict[str, Any] | None = None,
) -> None:
    """A 3-frame clip, white marker in the stored picture's top-left 16×8 corner, on dark red."""
    w, h = size
    with av.open(str(path), "w") as out:
        stream = cast(VideoStream, out.add_stream(codec, rate=25))
        stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
        if rotation:
            stream.set_display_rotation(**rotation)
        for i in range(3):
            img = np.full((h, w, 3), (160, 20, 20), np.uint8)
            img[:8, :16] = 255
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def _marker_box(rgb: RGB) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(rgb.min(axis=2) > 200)
    return int(ys.min()), int(ys.max()), int(xs.min()), int(xs.max())


@pytest.mark.parametrize(
    ("rot", "shape", "box"),
    [
        ({"degrees": 0}, (48, 64), (0, 7, 0, 15)),
        ({"degrees": 90}, (64, 48), (48, 63, 0, 7)),  # counter-clockwise: top-left → bottom-left
        ({"degrees": -90}, (64, 48), (0, 15, 40, 47)),  # clockwise: top-left → top-right
        ({"degrees": 180}, (48, 64), (40, 47, 48, 63)),
        ({"degrees": 0, "hflip": True}, (48, 64), (0, 7, 48, 63)),
        ({"degrees": 0, "vflip": True}, (48, 64), (40, 47, 0, 15)),
        ({"degrees": 90, "hflip": True}, (64, 48), (48, 63, 40, 47)),
    ],
)
def test_display_matrix_is_applied(
    tmp_path: Path, rot: dict[str, Any], shape: tuple[int, int], box: tuple[int, int, int, int]
) -> None:
    path = tmp_path / "rotated.mp4"
    _write_clip(path, rotation=rot)
    frames = list(frames_from_file(path))
    assert len(frames) == 3
    for _, _, rgb in frames:  # the first frame reads the matrix; the others reuse what it found
        assert rgb.shape[:2] == shape
        assert _marker_box(rgb) == box


def test_reading_a_source_leaves_no_frames_for_the_cycle_collector() -> None:
    """PyAV's ``frame.side_data`` ties the frame in a reference cycle: read on every frame, each
    decoded picture waited for the cyclic collector and a looping ingest grew ≈72 MB/min. At most
    the one frame whose display matrix was read may be left to it."""
    gc.collect()
    gc.disable()
    try:
        with open_source(CLIP) as source:
            frames = sum(1 for _ in itertools.islice(source, 60))
        found = gc.collect()
    finally:
        gc.enable()
    assert frames == 60
    assert found <= 3, f"{found} objects in reference cycles after 60 frames (a frame's cycle is 3)"


def test_odd_size_is_cropped_and_full_range_converted(tmp_path: Path) -> None:
    path = tmp_path / "odd.mkv"
    _write_clip(path, codec="mjpeg", pix_fmt="yuvj420p", size=(65, 49))
    with open_source(path) as source:
        first = next(iter(source))
    assert (first.width, first.height, first.frame.format.name) == (64, 48, "yuv420p")
    frames = list(frames_from_file(path))
    rgb = frames[0][2]
    assert rgb.shape == (48, 64, 3)
    assert _marker_box(rgb) == (0, 7, 0, 15)
    assert np.abs(rgb[30, 40].astype(int) - (160, 20, 20)).max() < 12  # colours survive the range change


def test_orientation_ops_follow_ffmpeg() -> None:
    one = 1 << 16
    identity = (one, 0, 0, 0, one, 0, 0, 0, 1 << 30)
    assert orientation_ops(identity) == ((), True)
    ccw90 = (0, -one, 0, one, 0, 0, 0, 0, 1 << 30)  # what set_display_rotation(90) writes
    assert orientation_ops(ccw90) == (("cclock",), True)


# -- chunker edge cases -----------------------------------------------------------------------------


def test_chunker_closes_a_chunk_when_the_size_changes(tmp_path: Path) -> None:
    small, large = tmp_path / "small.mp4", tmp_path / "large.mp4"
    _write_clip(small, size=(64, 48))
    _write_clip(large, size=(96, 64))
    frames: list[SourceFrame] = []
    for path in (small, large):
        with open_source(path) as source:
            frames.extend(source)
    chunker = Chunker(25, chunk_frames=4)
    out = []
    for i, f in enumerate(frames):
        # Fresh indices and timestamps, as one continuous stream would have.
        out.extend(chunker.push(SourceFrame(i, i * 40_000, f.frame)))
    if (last := chunker.flush()) is not None:
        out.append(last)
    assert [(c.frame_count, c.width, c.height) for c in out] == [(3, 64, 48), (3, 96, 64)]
    assert [len(decode_chunk(c.data, c.frame_count)) for c in out] == [3, 3]


# -- pacing --------------------------------------------------------------------------------------------


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _timed_chunks(n: int, frames: int = 15, period_us: int = 33_367) -> list[Chunk]:
    chunks = []
    for seq in range(n):
        pts = [(seq * frames + i) * period_us for i in range(frames)]
        chunks.append(Chunk(seq, frames, pts, pts, 8, 8, b""))
    return chunks


@pytest.mark.parametrize("speed", [1.0, 2.0])
async def test_paced_releases_each_chunk_after_its_last_frame(speed: float) -> None:
    fake = FakeTime()
    chunks = _timed_chunks(4)
    released = []
    async for chunk in paced(chunks, speed=speed, clock=fake.clock, sleep=fake.sleep):
        released.append((chunk.seq, fake.now - 1000.0))
    assert [s for s, _ in released] == [0, 1, 2, 3]
    for (_, at), chunk in zip(released, chunks, strict=True):
        assert at == pytest.approx(chunk.pts_us[-1] / 1e6 / speed)


@pytest.mark.parametrize("speed", [0.0, float("inf")])
async def test_paced_unpaced_never_sleeps(speed: float) -> None:
    fake = FakeTime()
    got = [c.seq async for c in paced(_timed_chunks(3), speed=speed, clock=fake.clock, sleep=fake.sleep)]
    assert got == [0, 1, 2] and fake.sleeps == []


async def test_paced_late_chunk_goes_at_once_and_async_sources_work() -> None:
    fake = FakeTime()

    async def slow_source() -> AsyncIterator[Chunk]:
        for chunk in _timed_chunks(3):
            fake.now += 2.0  # the producer is 4x slower than real time
            yield chunk

    got = [c.seq async for c in paced(slow_source(), clock=fake.clock, sleep=fake.sleep)]
    assert got == [0, 1, 2]
    assert fake.sleeps == [pytest.approx(14 * 33_367 / 1e6)]  # only the first chunk waits for its frames


async def test_paced_from_the_streams_start_does_not_count_the_first_encode_twice() -> None:
    """The first chunk arrives 0.2 s after the stream's start (opening the file, encoding it): it is
    due when its last frame's capture time comes, not 0.467 s after it arrived."""
    fake = FakeTime()
    start = fake.now

    async def source() -> AsyncIterator[Chunk]:
        fake.now += 0.2
        for chunk in _timed_chunks(2):
            yield chunk

    released = [
        (c.seq, fake.now - start)
        async for c in paced(source(), clock=fake.clock, sleep=fake.sleep, start_at=start)
    ]
    assert released == [(0, pytest.approx(14 * 33_367 / 1e6)), (1, pytest.approx(29 * 33_367 / 1e6))]


async def test_paced_closes_a_sync_source_on_early_stop() -> None:
    closed = []

    def source() -> Iterator[Chunk]:
        try:
            yield from _timed_chunks(5)
        finally:
            closed.append(True)

    async with contextlib.aclosing(paced(source(), speed=0)) as stream:
        async for _ in stream:
            break
    assert closed == [True]


async def test_paced_rejects_negative_speed() -> None:
    with pytest.raises(ValueError, match="speed"):
        async for _ in paced(_timed_chunks(1), speed=-1):
            pass


async def test_paced_real_file_is_a_sync_iterator() -> None:
    got = [c async for c in paced(chunks_from_file(CLIP, max_frames=16), speed=0)]
    assert [c.frame_count for c in got] == [15, 1]
