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
* The child dies without a word (killed, out of memory): the parent sees the end of the pipe and
  raises ``RuntimeError`` naming the exit code; no frame is invented or skipped silently.
* The consumer stops early (an error downstream, Ctrl-C), or never starts: the child is terminated
  and reaped (:class:`FrameFeed`).

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
import traceback
import weakref
from collections.abc import Generator, Iterator
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
        _send(fd, _Failure(_portable(exc)))
        return
    _send(fd, _End(sent))


def _portable(exc: BaseException) -> BaseException:
    """``exc`` as the parent should raise it: an expected error (bad video) as it is, so its one-line
    message reaches the user; anything else with the child's traceback attached as a note; always
    something that survives the pickle round trip."""
    from meetvar.errors import UserError

    if isinstance(exc, SystemExit | GeneratorExit):
        exc = RuntimeError(f"the video decoding process exited ({exc!r})")
    elif not isinstance(exc, UserError):
        exc.add_note("in the video decoding process:\n" + "".join(traceback.format_exception(exc)))
    try:
        copy = pickle.loads(pickle.dumps(exc))
    except Exception:
        copy = RuntimeError(f"{type(exc).__name__}: {exc}")
    return copy


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


def frames_in_subprocess(path: str | os.PathLike[str], *, start_us: int = 0, depth: int = 4) -> FrameFeed:
    """``(frame_index, capture_us, planes)`` of every frame, in order, as the pose worker would decode
    them from a live stream of ``path``; made by a child process at most ``depth`` chunks ahead. The
    child starts at once, so its start-up overlaps whatever the caller loads before iterating."""
    return FrameFeed(path, start_us=start_us, depth=depth)


class FrameFeed(Iterator[Frame]):
    """The frames, from a child process. The child is stopped and reaped when the frames run out, on an
    error, on :meth:`close` (also as a context manager), or when the feed is garbage-collected — also
    if it was never iterated (a caller that fails before its first frame leaves nothing running)."""

    def __init__(self, path: str | os.PathLike[str], *, start_us: int = 0, depth: int = 4) -> None:
        self.path = os.fspath(path)
        read_fd, write_fd = os.pipe()
        try:
            # A plain interpreter running this module: no multiprocessing start-up (which re-imports the
            # caller's __main__), and the pipe is a file descriptor of its own, so nothing the child
            # logs (to stderr) can mix with the frames.
            child = subprocess.Popen(
                [sys.executable, "-m", __name__, self.path, str(int(start_us)), str(write_fd)],
                pass_fds=(write_fd,),
                stdin=subprocess.DEVNULL,
                stdout=sys.stderr if _has_fd(sys.stderr) else subprocess.DEVNULL,
            )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)  # the child's death is then an end of file here
        self._chunks: queue.Queue[object] = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._child = child
        self._read_fd = read_fd
        self._thread = threading.Thread(
            target=_pump,
            args=(read_fd, child, self.path, self._stop, self._chunks),
            name="meetvar-frames-reader",
            daemon=True,
        )
        self._thread.start()
        # Runs once, whichever comes first: the end of the frames, close(), or garbage collection.
        self._shutdown = weakref.finalize(self, _shutdown, self._stop, child, read_fd, self._thread)
        self._frames = self._iterate()

    def __next__(self) -> Frame:
        return next(self._frames)

    def close(self) -> None:
        self._frames.close()
        self._shutdown()

    def __enter__(self) -> FrameFeed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _iterate(self) -> Generator[Frame, None, None]:
        index = 0
        try:
            while True:
                item = self._chunks.get()
                if isinstance(item, _End):
                    return
                if isinstance(item, _Failure):
                    raise item.error
                assert isinstance(item, tuple)
                for capture_us, planes in zip(*item, strict=True):
                    yield index, capture_us, planes
                    index += 1
        finally:
            self._shutdown()


def _pump(
    fd: int, child: subprocess.Popen[bytes], path: str, stop: threading.Event, out: queue.Queue[object]
) -> None:
    """The reader thread: messages off the pipe into the bounded queue (``os.readv`` releases the GIL,
    so reading costs the pose thread nothing but the copy). A module function, not a method: a
    running thread must not keep its :class:`FrameFeed` alive, or a dropped feed would never close."""

    def put(item: object) -> None:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    received = 0
    try:
        while not stop.is_set():
            item = _receive(fd)
            if isinstance(item, _ChunkHead):
                item = (item.capture_us, _read_chunk(fd, item))
                received += 1
            elif isinstance(item, _End) and item.chunks != received:
                item = _Failure(RuntimeError(f"decoder sent {item.chunks} chunks, {received} arrived"))
            put(item)
            if not isinstance(item, tuple):
                return
    except (EOFError, OSError):
        if stop.is_set():
            return  # closed on purpose
        _reap(child)
        put(
            _Failure(
                RuntimeError(
                    f"the video decoding process for {path} stopped (exit code {child.returncode}) after "
                    f"{received} chunks — its own error, if any, is on stderr above; check free memory and "
                    "run again"
                )
            )
        )
    except BaseException as exc:  # a broken message: say so rather than leave the consumer waiting
        put(_Failure(RuntimeError(f"unreadable message from the video decoding process: {exc!r}")))


def _shutdown(
    stop: threading.Event, child: subprocess.Popen[bytes], read_fd: int, thread: threading.Thread
) -> None:
    stop.set()
    if child.poll() is None:
        child.terminate()
    _reap(child)
    if thread is not threading.current_thread():
        thread.join(timeout=5)
    os.close(read_fd)


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


def _main(argv: list[str]) -> int:
    # Import the module under its real name, so the messages pickle as meetvar.frame_feed's classes.
    from meetvar import frame_feed, logs

    logs.configure("judge-decoder")
    frame_feed._produce(argv[0], int(argv[1]), int(argv[2]))
    return 0


if __name__ == "__main__":  # the child: python -m meetvar.frame_feed PATH START_US FD
    try:
        raise SystemExit(_main(sys.argv[1:]))
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group; the parent reports it
        raise SystemExit(130) from None
