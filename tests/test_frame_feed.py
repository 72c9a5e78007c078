"""``meetvar judge``'s video half in a child process: the same frames as in-process decoding, and
clear errors when the source is bad or the child dies."""

from __future__ import annotations

import hashlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest

from gpu_service.pose_input import decode_for_pose
from ingest.errors import SourceError
from ingest.normalize import chunks_from_file
from meetvar.frame_feed import frames_in_subprocess

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO / "ingest" / "samples" / "rohanx01_squat.mp4"


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled clip's first 40 frames (2 full chunks and a partial one), re-encoded."""
    path = tmp_path_factory.mktemp("feed") / "short.mp4"
    with av.open(str(CLIP)) as src, av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30, options={"crf": "18"})
        for i, frame in enumerate(src.decode(video=0)):
            if i == 40:
                break
            if i == 0:
                stream.width, stream.height, stream.pix_fmt = frame.width, frame.height, "yuv420p"
            frame.pts = None
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def _digest(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> str:
    return hashlib.sha256(y.tobytes() + u.tobytes() + v.tobytes()).hexdigest()


def _children(marker: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "meetvar.frame_feed" in cmd and marker in cmd:
            pids.append(int(entry))
    return pids


def test_child_frames_are_bit_identical_to_in_process_decoding(short_clip: Path) -> None:
    expected = []
    for chunk in chunks_from_file(short_clip, start_us=5_000_000):
        for capture_us, p in zip(
            chunk.capture_us, decode_for_pose(chunk.data, chunk.frame_count), strict=True
        ):
            expected.append((capture_us, _digest(p.y, p.u, p.v), p.matrix, p.full_range))
    got = [
        (capture_us, _digest(p.y, p.u, p.v), p.matrix, p.full_range)
        for _, capture_us, p in frames_in_subprocess(short_clip, start_us=5_000_000)
    ]
    assert len(expected) == 40
    assert got == expected
    indices = [i for i, _, _ in frames_in_subprocess(short_clip)]
    assert indices == list(range(40))


def test_unreadable_source_raises_the_same_one_line_error(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.mp4"
    bogus.write_text("not a video\n")
    with pytest.raises(SourceError, match="cannot read"):
        list(frames_in_subprocess(bogus))
    with pytest.raises(SourceError, match="no such file"):
        list(frames_in_subprocess(tmp_path / "missing.mp4"))


def test_a_killed_child_is_an_error_not_a_short_video() -> None:
    frames: Iterator[object] = frames_in_subprocess(CLIP)
    next(frames)  # the child is running and has sent its first chunk
    pids = _children(str(CLIP))
    assert len(pids) == 1
    os.kill(pids[0], signal.SIGKILL)
    with pytest.raises(RuntimeError, match=r"stopped \(exit code -9\)"):
        for _ in frames:
            pass


def test_stopping_early_reaps_the_child(short_clip: Path) -> None:
    frames = frames_in_subprocess(short_clip)
    next(frames)
    assert _children(str(short_clip))
    frames.close()  # type: ignore[attr-defined]
    deadline = time.monotonic() + 5
    while _children(str(short_clip)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _children(str(short_clip))


def _wait_gone(marker: str) -> bool:
    deadline = time.monotonic() + 10
    while _children(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _children(marker)


def test_a_feed_never_iterated_leaves_nothing_running(tmp_path: Path) -> None:
    import gc

    clip = tmp_path / "never.mp4"
    clip.write_bytes(CLIP.read_bytes())
    feed = frames_in_subprocess(clip)
    assert _children(str(clip))
    del feed
    gc.collect()
    assert _wait_gone(str(clip))
    with frames_in_subprocess(clip):
        assert _children(str(clip))
    assert _wait_gone(str(clip))


def test_judge_that_fails_before_its_first_frame_stops_the_decoder(tmp_path: Path) -> None:
    from gpu_service.backends.base import BackendUnavailable
    from meetvar.judge import judge_video

    clip = tmp_path / "fails.mp4"
    clip.write_bytes(CLIP.read_bytes())
    with pytest.raises(BackendUnavailable, match="TensorRT"):
        judge_video(clip, backend="tensorrt")
    assert _wait_gone(str(clip))
