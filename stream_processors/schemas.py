"""Message schemas of every topic. Each message carries ``schema_version``; readers reject versions
they do not know with a clear error instead of misreading them."""

from __future__ import annotations

import json
import struct
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

SCHEMA_VERSION = 1


class SchemaError(ValueError):
    """A message that cannot be read: logged and skipped by consumers, never a crash."""


class _Msg(BaseModel):
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def parse(cls, raw: bytes) -> Any:
        try:
            msg = cls.model_validate_json(raw)
        except ValidationError as exc:
            raise SchemaError(f"malformed {cls.__name__}: {exc.errors()[0]['msg']}") from exc
        if msg.schema_version != SCHEMA_VERSION:
            raise SchemaError(f"{cls.__name__} schema {msg.schema_version} unknown (this build reads 1)")
        return msg

    def dump(self) -> bytes:
        return self.model_dump_json().encode()


class ChunkMeta(_Msg):
    """``video.chunks``: one GOP of one camera. The bytes travel inline after the metadata, or in the
    object store under ``ref`` when larger than the inline limit (claim check)."""

    meet: str
    platform: str
    camera: str
    seq: int
    stream_start_us: int
    first_frame_index: int = 0
    capture_us: list[int] = Field(default_factory=list)
    pts_us: list[int] = Field(default_factory=list)
    codec: str = "h264"
    container: str = "mpegts"
    width: int = 0
    height: int = 0
    size: int = 0
    ref: str | None = None
    end_of_stream: bool = False

    @property
    def first_capture_us(self) -> int | None:
        return self.capture_us[0] if self.capture_us else None

    @property
    def last_capture_us(self) -> int | None:
        return self.capture_us[-1] if self.capture_us else None


_LEN = struct.Struct(">I")


def pack_chunk(meta: ChunkMeta, data: bytes) -> bytes:
    """Length-prefixed JSON metadata followed by the raw chunk bytes: no base64 inflation."""
    head = meta.dump()
    return _LEN.pack(len(head)) + head + data


def unpack_chunk(value: bytes) -> tuple[ChunkMeta, bytes]:
    if len(value) < _LEN.size:
        raise SchemaError("chunk message shorter than its header")
    (n,) = _LEN.unpack_from(value)
    if n > len(value) - _LEN.size:
        raise SchemaError("chunk message truncated inside its metadata")
    meta = ChunkMeta.parse(value[_LEN.size : _LEN.size + n])
    data = value[_LEN.size + n :]
    if meta.ref is None and not meta.end_of_stream and len(data) != meta.size:
        raise SchemaError(f"chunk {meta.seq} carries {len(data)} bytes, metadata says {meta.size}")
    return meta, data


class PoseMsg(_Msg):
    """``poses``: one frame's pose of the tracked lifter, or the end-of-stream marker."""

    meet: str
    platform: str
    camera: str
    stream_start_us: int
    seq: int
    frame: dict[str, Any] | None = None
    latency_ms: float = 0.0
    end_of_stream: bool = False


class DecisionMsg(_Msg):
    """``decisions``: idempotent per ``attempt_id`` — a replay or a retry overwrites, never adds."""

    attempt_id: str
    meet: str
    platform: str
    camera: str
    attempt: dict[str, Any]
    decided_us: int
    rack_to_call_ms: float | None = None


class ExplanationMsg(_Msg):
    """``explanations``: keyed by attempt id."""

    attempt_id: str
    text: str
    model: str  # the Claude model used, or "template"
    prompt_hash: str


Light = Literal["good", "bad"] | None


class OfficialLights(BaseModel):
    """The three referees' lights as the meet software has them (None: not yet given)."""

    left: Light = None
    head: Light = None
    right: Light = None

    def complete(self) -> bool:
        return None not in (self.left, self.head, self.right)

    def result(self) -> Literal["good", "no_lift"] | None:
        """Two or more white lights make a good lift; None until all three are in."""
        if not self.complete():
            return None
        return "good" if [self.left, self.head, self.right].count("good") >= 2 else "no_lift"


class Official(BaseModel):
    """The official result of one attempt: the referees' lights and what they make."""

    lights: OfficialLights
    result: Literal["good", "no_lift"] | None = None
    source: str | None = None  # e.g. "liftingcast"


class StateMsg(_Msg):
    """``meet.state``: what the meet software says is happening on a platform.

    A message with ``official`` set does not announce an attempt: it gives the official result (the
    referees' lights) of the attempt it names by ``lifter``, ``lift`` and ``attempt_number``, which may
    no longer be the one on the platform. Readers that predate ``official`` ignore it (pydantic drops
    unknown fields), so the schema version stays 1."""

    meet: str
    platform: str
    lifter: str | None = None
    lift: str | None = None
    attempt_number: int | None = None
    weight_kg: float | None = None
    command: Literal["squat", "rack", "start", "down"] | None = None
    at_us: int = 0
    official: Official | None = None


def canonical_json(obj: object) -> str:
    """Stable JSON used for hashing prompts and comparing decisions."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))
