"""Topic names and the one key scheme used everywhere (the single place that defines them)."""

from __future__ import annotations

VIDEO_CHUNKS = "video.chunks"
POSES = "poses"
MEET_STATE = "meet.state"
DECISIONS = "decisions"
EXPLANATIONS = "explanations"
AUDIT = "audit"

ALL_TOPICS = (VIDEO_CHUNKS, POSES, MEET_STATE, DECISIONS, EXPLANATIONS, AUDIT)


def camera_key(meet: str, platform: str, camera: str) -> str:
    return f"{meet}/{platform}/{camera}"


def platform_key(meet: str, platform: str) -> str:
    return f"{meet}/{platform}"


def split_camera_key(key: str) -> tuple[str, str, str]:
    parts = key.split("/")
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"bad camera key {key!r}: expected meet/platform/camera")
    return parts[0], parts[1], parts[2]
