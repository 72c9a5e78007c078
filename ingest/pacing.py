"""Release chunks of a recorded video at the pace a live camera would produce them.

A live camera's chunk exists once its last frame has been captured, so chunk *k* is released when
``pts_us[-1] / speed`` seconds have passed since the stream's start. For paced playback that looks
live, chunk the file with ``start_us=wall_clock_us()`` taken at start and pass the monotonic clock of
that moment as ``start_at``: each chunk then goes out when its last frame's ``capture_us`` is reached
by the wall clock, as from a camera. (Measured from the first chunk's arrival instead, every frame was
stamped ~0.2 s before it was "seen": the file's opening and first encode, added to every latency.)
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable, Iterable, Iterator
from typing import Protocol, TypeVar, cast


class _Timed(Protocol):
    @property
    def pts_us(self) -> list[int]: ...


T = TypeVar("T", bound=_Timed)
_END = object()


def wall_clock_us() -> int:
    """Wall-clock time in integer µs since the epoch: the ``start_us`` of a live or paced stream."""
    return time.time_ns() // 1000


async def paced(
    chunks: Iterable[T] | AsyncIterable[T],
    *,
    speed: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    start_at: float | None = None,
) -> AsyncGenerator[T, None]:
    """Yield each chunk once its last frame's media time has passed in real time (÷ ``speed``).

    ``start_at``: the ``clock`` time at which media time 0 was (the stream's start); without it, the
    first chunk's arrival stands for its first frame (a resumed pass, whose start is long past).

    ``speed`` 0 or ``inf`` means as fast as possible. A synchronous iterable (e.g.
    :func:`ingest.normalize.chunks_from_file`, which encodes) is advanced on a worker thread so the
    event loop stays responsive; it is closed when the consumer stops early. A slow producer is never
    waited for twice: a chunk that is already late is released at once.
    """
    if math.isnan(speed) or speed < 0:
        raise ValueError(f"speed must be >= 0 (0 = as fast as possible), got {speed}")
    unpaced = speed == 0 or math.isinf(speed)
    t0: float | None = None
    origin_us = 0
    async with contextlib.aclosing(_aiter(chunks)) as source:
        async for chunk in source:
            if chunk.pts_us:
                if t0 is None:
                    t0, origin_us = (clock(), chunk.pts_us[0]) if start_at is None else (start_at, 0)
                if unpaced:
                    await asyncio.sleep(0)  # let other tasks run between chunks
                else:
                    due = t0 + (chunk.pts_us[-1] - origin_us) / 1e6 / speed
                    if (delay := due - clock()) > 0:
                        await sleep(delay)
            yield chunk


async def _aiter(items: Iterable[T] | AsyncIterable[T]) -> AsyncGenerator[T, None]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
        return
    it: Iterator[T] = iter(items)
    try:
        while (got := await asyncio.to_thread(_next, it)) is not _END:
            yield cast(T, got)
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            with contextlib.suppress(ValueError):  # still running on the worker thread after a cancel
                close()


def _next(it: Iterator[object]) -> object:
    return next(it, _END)
