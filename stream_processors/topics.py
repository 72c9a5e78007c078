"""Topic names and the one key scheme used everywhere (the single place that defines them)."""

from __future__ import annotations

VIDEO_CHUNKS = "video.chunks"
POSES = "poses"
MEET_STATE = "meet.state"
DECISIONS = "decisions"
EXPLANATIONS = "explanations"
AUDIT = "audit"

ALL_TOPICS = (VIDEO_CHUNKS, POSES, MEET_STATE, DECISIONS, EXPLANATIONS, AUDIT)

# Partitions per topic (created once: Kafka and Tansu cannot change them later). ``video.chunks`` is
# split by camera key so that up to this many pose workers in one consumer group share the cameras —
# the way a pose service scales out; a camera's chunks stay in one partition, in order. Every other
# topic has one partition: the referee, the archiver and the dashboard read them in one global order.
VIDEO_CHUNKS_PARTITIONS = 8
PARTITIONS = {VIDEO_CHUNKS: VIDEO_CHUNKS_PARTITIONS}


def camera_key(meet: str, platform: str, camera: str) -> str:
    return f"{meet}/{platform}/{camera}"


def platform_key(meet: str, platform: str) -> str:
    return f"{meet}/{platform}"


def split_camera_key(key: str) -> tuple[str, str, str]:
    parts = key.split("/")
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"bad camera key {key!r}: expected meet/platform/camera")
    return parts[0], parts[1], parts[2]
