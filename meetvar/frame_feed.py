"""The pose model's frames of a video file, made by a child process: ``meetvar judge``'s video half.

A live stream of the file would be normalised and cut into chunks by ingest, and each chunk decoded
by the pose worker (``gpu_service.pose_input.decode_for_pose``). The child does exactly that —
source decode, normalise, x264 chunk encode, chunk decode — and sends each chunk's decoded planes to
the parent, which only runs the pose model and the referee. So the frames are the ones live judging
would see, bit for bit.

Why a process and not a thread: PyAV holds the GIL while FFmpeg decodes and x264 encodes (measured:
a decoding thread beside a pure-Python thread makes both finish later than running them one after
the other), so a video thread stalls every numpy step of the pose stage and the pipeline ran at ≈1.4
of the 2 cores. The child has its own interpreter; the planes cross a pipe (≈1.4 MB a 720p frame,
well under a millisecond of copying).

What happens when things go wrong:

* The source cannot be read, or a chunk does not decode: the child sends the exception (as a
  ``RuntimeError`` with its text if it does not pickle) and the parent raises it, so ``meetvar judge``
  prints the same one line it would without the child.
* The child dies without a word (killed, out of memory): the parent notices within a second and
  raises ``RuntimeError`` naming the exit code; no frame is invented or skipped silently.
* The consumer stops early (an error downstream, Ctrl-C): the child is terminated and reaped.

The queue holds at most ``depth`` chunks, so a fast child never buffers a whole video in memory.
"""

from __future__ import annotations

import os
import pickle
import queue
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ingest.chunk_decoder import Yuv420

Frame = tuple[int, int, Yuv420]  # (frame index, capture µs, planes)
_HEADER = struct.Struct("<I")
_PIPE_BYTES = 1 << 20  # Linux lets an unprivileged process have 1 MiB pipes: fewer wake-ups


@dataclass(frozen=True)
class _ChunkHead:
    """What precedes a chunk's raw planes on the pipe (the planes follow frame by frame: Y, U, V)."""

    capture_us: list[int]
    height: int
    width: int
    matrix: str
    full_range: bool


@dataclass(frozen=True)
class _End:
    chunks: int


@dataclass(frozen=True)
class _Failure:
    error: BaseException


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view) :]


def _send(fd: int, message: object) -> None:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    _write_all(fd, _HEADER.pack(len(body)) + body)


def _read_into(fd: int, view: memoryview) -> None:
    while view:
        n = os.readv(fd, [view])
        if n == 0:
            raise EOFError
        view = view[n:]


def _receive(fd: int) -> Any:
    head = bytearray(_HEADER.size)
    _read_into(fd, memoryview(head))
    body = bytearray(_HEADER.unpack(head)[0])
    _read_into(fd, memoryview(body))
    return pickle.loads(body)


def _produce(path: str, start_us: int, fd: int) -> None:
    """The child: every chunk of ``path``, decoded, down ``fd``; then :class:`_End` or :class:`_Failure`."""
    from gpu_service.pose_input import decode_for_pose
    from ingest.normalize import chunks_from_file

    _widen(fd)
    sent = 0
    try:
        # One source-decoder thread: the parent keeps the other core busy with the pose model.
        for chunk in chunks_from_file(path, start_us=start_us, decoder_threads=1):
            planes = decode_for_pose(chunk.data, chunk.frame_count)
            first = planes[0]
            _send(fd, _ChunkHead(chunk.capture_us, *first.shape, first.matrix, first.full_range))
            for frame in planes:
                for plane in (frame.y, frame.u, frame.v):
                    _write_all(fd, np.ascontiguousarray(plane).data)
            sent += 1
    except (KeyboardInterrupt, BrokenPipeError):
        return  # Ctrl-C, or the parent stopped reading: nobody is listening any more
    except BaseException as exc:
        try:
            pickle.dumps(exc)
        except Exception:
            exc = RuntimeError(f"{type(exc).__name__}: {exc}")
        _send(fd, _Failure(exc))
        return
    _send(fd, _End(sent))


def _widen(fd: int) -> None:
    try:
        import fcntl

        fcntl.fcntl(fd, 1031, _PIPE_BYTES)  # F_SETPIPE_SZ (Linux); elsewhere the default size works
    except (ImportError, OSError):
        pass


def _read_chunk(fd: int, head: _ChunkHead) -> list[Yuv420]:
    h, w = head.height, head.width
    frames = []
    for _ in head.capture_us:
        y = np.empty((h, w), np.uint8)
        u = np.empty(((h + 1) // 2, (w + 1) // 2), np.uint8)
        v = np.empty_like(u)
        for plane in (y, u, v):
            _read_into(fd, plane.data.cast("B"))
        frames.append(Yuv420(y=y, u=u, v=v, matrix=head.matrix, full_range=head.full_range))
    return frames


def frames_in_subprocess(
    path: str | os.PathLike[str], *, start_us: int = 0, depth: int = 4
) -> Iterator[Frame]:
    """``(frame_index, capture_us, planes)`` of every frame, in order, as the pose worker would decode
    them from a live stream of ``path``; made by a child process at most ``depth`` chunks ahead (a
    reader thread keeps the pipe drained: the read releases the GIL). The child starts at once, so
    its start-up overlaps whatever the caller loads before iterating."""
    read_fd, write_fd = os.pipe()
    try:
        # A plain interpreter running this module: no multiprocessing start-up (which re-imports the
        # caller's __main__), and the pipe is a file descriptor of its own, so nothing the child
        # logs (to stderr) can mix with the frames.
        child = subprocess.Popen(
            [sys.executable, "-m", __name__, os.fspath(path), str(int(start_us)), str(write_fd)],
            pass_fds=(write_fd,),
            stdin=subprocess.DEVNULL,
            stdout=sys.stderr if _has_fd(sys.stderr) else subprocess.DEVNULL,
        )
    finally:
        os.close(write_fd)  # the child's death is then an end of file here
    chunks: queue.Queue[object] = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def pump() -> None:
        fd = read_fd
        received = 0
        try:
            while not stop.is_set():
                item = _receive(fd)
                if isinstance(item, _ChunkHead):
                    item = (item.capture_us, _read_chunk(fd, item))
                    received += 1
                elif isinstance(item, _End) and item.chunks != received:
                    item = _Failure(RuntimeError(f"decoder sent {item.chunks} chunks, {received} arrived"))
                _put(item)
                if not isinstance(item, tuple):
                    return
        except (EOFError, OSError):
            _reap(child)
            _put(
                _Failure(
                    RuntimeError(
                        f"the video decoding process for {os.fspath(path)} died (exit code "
                        f"{child.returncode}) after {received} chunks — check free memory and run again"
                    )
                )
            )
        except BaseException as exc:  # a broken message: say so rather than leave the consumer waiting
            _put(_Failure(RuntimeError(f"unreadable message from the video decoding process: {exc!r}")))

    def _put(item: object) -> None:
        while not stop.is_set():
            try:
                chunks.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    thread = threading.Thread(target=pump, name="meetvar-frames-reader", daemon=True)
    thread.start()
    return _frames(chunks, stop, child, read_fd, thread)


def _has_fd(stream: object) -> bool:
    try:
        stream.fileno()  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return False
    return True


def _reap(child: subprocess.Popen[bytes]) -> None:
    try:
        child.wait(timeout=5)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def _frames(
    chunks: queue.Queue[object],
    stop: threading.Event,
    child: subprocess.Popen[bytes],
    read_fd: int,
    thread: threading.Thread,
) -> Iterator[Frame]:
    index = 0
    try:
        while True:
            item = chunks.get()
            if isinstance(item, _End):
                return
            if isinstance(item, _Failure):
                raise item.error
            assert isinstance(item, tuple)
            for capture_us, planes in zip(*item, strict=True):
                yield index, capture_us, planes
                index += 1
    finally:
        stop.set()
        if child.poll() is None:
            child.terminate()
        _reap(child)
        thread.join(timeout=5)
        os.close(read_fd)


if __name__ == "__main__":  # the child: python -m meetvar.frame_feed PATH START_US FD
    # Import the module under its real name, so the messages pickle as meetvar.frame_feed's classes.
    from meetvar import frame_feed, logs

    logs.configure("judge-decoder")
    frame_feed._produce(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
