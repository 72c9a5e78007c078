"""The one way a chunk becomes the pose model's pixels, live (the pose worker) and offline
(``meetvar judge``): the decoder's YUV planes, which the tracker crops from directly. Keeping this in
one small function — importable without the worker's Kafka and model dependencies, so ``meetvar
judge``'s decoding child process starts fast — is what keeps live and offline poses identical."""

from __future__ import annotations

from ingest.chunk_decoder import Yuv420, decode_chunk_yuv


def decode_for_pose(data: bytes, expected_frames: int, *, crc32: int | None = None) -> list[Yuv420]:
    return decode_chunk_yuv(data, expected_frames, crc32=crc32)
