"""The one path from a video to pixels: source → normalise → chunk (H.264/MPEG-TS) → decode.

Streaming sends :func:`chunks_from_file`'s chunks through Kafka and the pose worker decodes them with
:func:`ingest.chunk_decoder.decode_chunk`; ``meetvar judge`` calls :func:`frames_from_file`, which runs
the very same chunks through the very same decoder in memory, so it sees bit-identical pixels.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping

import numpy as np
import numpy.typing as npt

from ingest.chunk_decoder import decode_chunk
from ingest.chunker import DEFAULT_CHUNK_SECONDS, Chunk, Chunker
from ingest.sources.file import open_source


def chunks_from_file(
    path: str | os.PathLike[str],
    *,
    start_us: int = 0,
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
    max_frames: int | None = None,
    options: Mapping[str, str] | None = None,
    decoder_threads: int = 0,
) -> Iterator[Chunk]:
    """Chunks of a video file or stream URL; ``capture_us = start_us + pts_us``.

    ``max_frames`` stops after that many source frames (the last chunk is then partial).
    Raises :class:`ingest.errors.SourceError` (on first iteration) when the source is unusable.
    """
    with open_source(path, options=options, decoder_threads=decoder_threads) as source:
        chunker = Chunker(source.fps, start_us=start_us, chunk_seconds=chunk_seconds)
        for frame in source:
            if max_frames is not None and frame.index >= max_frames:
                break
            yield from chunker.push(frame)
        if (last := chunker.flush()) is not None:
            yield last


def frames_from_file(
    path: str | os.PathLike[str], *, start_us: int = 0, max_frames: int | None = None
) -> Iterator[tuple[int, int, npt.NDArray[np.uint8]]]:
    """``(frame_index, capture_us, rgb24)`` per frame, decoded from the very chunks a stream would carry."""
    index = 0
    for chunk in chunks_from_file(path, start_us=start_us, max_frames=max_frames):
        frames = decode_chunk(chunk.data, chunk.frame_count)
        for capture_us, rgb in zip(chunk.capture_us, frames, strict=True):
            yield index, capture_us, rgb
            index += 1
