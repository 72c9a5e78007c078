"""The one model-agnostic pose container that every part of meetvar speaks.

Pose backends adapt their outputs into :class:`PoseFrame`; the referee core only ever reads this type,
so a new model is one adapter, never a change to the judging code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


class BlazePoseLandmark(IntEnum):
    """Indices of the 33 BlazePose landmarks that the judging core uses."""

    NOSE = 0
    LEFT_SHOULDER = 11
    RIGHT_SHOULDER = 12
    LEFT_HIP = 23
    RIGHT_HIP = 24
    LEFT_KNEE = 25
    RIGHT_KNEE = 26
    LEFT_ANKLE = 27
    RIGHT_ANKLE = 28
    LEFT_HEEL = 29
    RIGHT_HEEL = 30
    LEFT_FOOT_INDEX = 31
    RIGHT_FOOT_INDEX = 32


NUM_BLAZEPOSE_LANDMARKS = 33


@dataclass(frozen=True, slots=True)
class PoseFrame:
    """One camera frame's pose of the tracked lifter (or of nobody).

    ``keypoints`` are image pixels (x right, y down), a relative depth and a visibility in [0, 1];
    ``world`` is metric 3D (metres, hip-centred) when the model provides it. Arrays are float64 so that
    a pose that crossed Kafka as JSON and one that stayed in memory are bit-identical, which is what lets
    the streaming referee and ``meetvar judge`` agree exactly.
    """

    capture_us: int
    frame_index: int
    width: int
    height: int
    keypoints: FloatArray | None = None  # (K, 4): x, y, z, visibility
    world: FloatArray | None = None  # (K, 3) metres
    score: float = 0.0
    track_id: int | None = None
    model_id: str = ""
    extras: dict[str, float] = field(default_factory=dict)
    # Earlier frames of this stream, re-measured around an attempt's bottom (gpu_service.refine): they
    # replace the poses with the same capture time. They ride on a later frame because the bottom is only
    # known once it has passed; in the stream they come after those frames and before the attempt ends.
    refined: tuple[PoseFrame, ...] = ()

    @property
    def has_person(self) -> bool:
        return self.keypoints is not None

    @classmethod
    def carrying(cls, refined: tuple[PoseFrame, ...]) -> PoseFrame:
        """No frame, only re-measured ones: a stream that ended within a bottom's window sends them so.
        Its capture time is −1, which every consumer of ``poses`` skips as a frame."""
        return cls(capture_us=-1, frame_index=-1, width=0, height=0, refined=refined)

    @property
    def is_carrier(self) -> bool:
        return self.capture_us < 0

    def to_json(self) -> dict[str, object]:
        """Plain JSON-able dict; floats survive a JSON round trip exactly."""
        return {
            "capture_us": self.capture_us,
            "frame_index": self.frame_index,
            "width": self.width,
            "height": self.height,
            "keypoints": None if self.keypoints is None else self.keypoints.tolist(),
            "world": None if self.world is None else self.world.tolist(),
            "score": self.score,
            "track_id": self.track_id,
            "model_id": self.model_id,
            "extras": dict(self.extras),
            **({"refined": [r.to_json() for r in self.refined]} if self.refined else {}),
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> PoseFrame:
        kp = data.get("keypoints")
        world = data.get("world")
        extras = data.get("extras") or {}
        assert isinstance(extras, dict)
        refined = data.get("refined") or []
        assert isinstance(refined, list)
        return cls(
            capture_us=int(data["capture_us"]),  # type: ignore[call-overload]
            frame_index=int(data["frame_index"]),  # type: ignore[call-overload]
            width=int(data["width"]),  # type: ignore[call-overload]
            height=int(data["height"]),  # type: ignore[call-overload]
            keypoints=None if kp is None else np.asarray(kp, dtype=np.float64),
            world=None if world is None else np.asarray(world, dtype=np.float64),
            score=float(data.get("score", 0.0)),  # type: ignore[arg-type]
            track_id=None if data.get("track_id") is None else int(data["track_id"]),  # type: ignore[call-overload]
            model_id=str(data.get("model_id", "")),
            extras={str(k): float(v) for k, v in extras.items()},
            refined=tuple(cls.from_json(r) for r in refined),
        )
