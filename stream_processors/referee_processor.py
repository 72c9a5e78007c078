"""The streaming side of the referee: ``poses`` messages in, decisions out, one referee per camera stream.

Kept free of Kafka and faust so it can be tested directly; the faust app only moves messages. The core
it drives is the same :class:`referee.referee.Referee` that ``meetvar judge`` uses.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from referee.decision import AttemptDecision
from referee.fusion import PlatformFusion
from referee.keypoints import PoseFrame
from referee.referee import Referee
from stream_processors.schemas import DecisionMsg, PoseMsg, StateMsg
from stream_processors.topics import camera_key, platform_key


@dataclass
class _Stream:
    start_us: int
    referee: Referee
    last_capture_us: int = -1


def attempt_id(meet: str, platform: str, camera: str, stream_start_us: int, rep: int) -> str:
    """Stable per attempt, so a replay or redelivery produces the same id and overwrites, never adds."""
    return f"{camera_key(meet, platform, camera)}/{stream_start_us}/{rep}"


class RefereeProcessor:
    def __init__(self) -> None:
        self._streams: dict[str, _Stream] = {}
        self._fusion: dict[str, PlatformFusion] = {}
        self._rack_us: dict[str, int] = {}

    def handle_state(self, msg: StateMsg) -> None:
        """The meet software's signals reach every camera's referee on that platform."""
        if msg.command is None:
            return
        platform = platform_key(msg.meet, msg.platform)
        if msg.command == "rack":
            self._rack_us[platform] = msg.at_us
        for key, stream in self._streams.items():
            if key.startswith(platform + "/"):
                stream.referee.command(msg.command, msg.at_us)

    def handle(self, msg: PoseMsg) -> list[tuple[DecisionMsg, AttemptDecision | None]]:
        """Decisions this message completes: one per camera attempt, plus the platform's fused call
        (camera ``fused``, no AttemptDecision of its own) once every live camera has called it."""
        key = camera_key(msg.meet, msg.platform, msg.camera)
        stream = self._streams.get(key)
        out: list[AttemptDecision] = []
        if stream is None or stream.start_us != msg.stream_start_us:
            if stream is not None and (last := stream.referee.finish()) is not None:
                out.append(last)  # the old stream ended without its end marker
            stream = self._streams[key] = _Stream(msg.stream_start_us, Referee(origin_us=msg.stream_start_us))
        if msg.end_of_stream:
            if (last := stream.referee.finish()) is not None:
                out.append(last)
            del self._streams[key]
        elif msg.frame is not None:
            frame = PoseFrame.from_json(msg.frame)
            # A worker that died mid-chunk makes its successor resend frames: drop what we have seen.
            if frame.capture_us > stream.last_capture_us:
                stream.last_capture_us = frame.capture_us
                if (d := stream.referee.push(frame)) is not None:
                    out.append(d)
        now_us = time.time_ns() // 1000
        platform = platform_key(msg.meet, msg.platform)

        def rack_to_call_ms(d: AttemptDecision) -> float:
            # The rack command when the meet software sent one after the bottom; else lockout stands in.
            rack = self._rack_us.get(platform)
            ref = rack if rack is not None and rack >= d.bottom_us else d.end_us
            return round((now_us - ref) / 1e3, 1)

        results: list[tuple[DecisionMsg, AttemptDecision | None]] = [
            (
                DecisionMsg(
                    attempt_id=attempt_id(msg.meet, msg.platform, msg.camera, d.origin_us, d.rep),
                    meet=msg.meet,
                    platform=msg.platform,
                    camera=msg.camera,
                    attempt=d.to_json(),
                    decided_us=now_us,
                    rack_to_call_ms=rack_to_call_ms(d),
                ),
                d,
            )
            for d in out
        ]
        live = {k.rsplit("/", 1)[1] for k in self._streams if k.startswith(platform + "/")} | {msg.camera}
        if len(live) > 1 or platform in self._fusion:
            fusion = self._fusion.setdefault(platform, PlatformFusion())
            for d in out:
                for fused, carrier in fusion.add(msg.camera, d, live):
                    # The fused call in the camera calls' shape, with the times of one of its cameras.
                    attempt = {
                        **carrier.to_json(),
                        "verdict": fused["verdict"],
                        "cards": fused["cards"],
                        "reasons": fused["reasons"],
                        "depth": {
                            "status": fused["status"],
                            "margin_cm": fused["margin_cm"],
                            "margin_thigh": None,
                            "confidence": fused["confidence"],
                        },
                        "fused": fused,
                    }
                    results.append(
                        (
                            DecisionMsg(
                                attempt_id=f"{platform}/fused/{carrier.origin_us}/{carrier.rep}",
                                meet=msg.meet,
                                platform=msg.platform,
                                camera="fused",
                                attempt=attempt,
                                decided_us=now_us,
                                rack_to_call_ms=rack_to_call_ms(carrier),
                            ),
                            None,
                        )
                    )
        return results
