"""The streaming side of the referee: ``poses`` messages in, decisions out, one referee per camera stream.

Kept free of Kafka and faust so it can be tested directly; the faust app only moves messages. The core
it drives is the same :class:`referee.referee.Referee` that ``meetvar judge`` uses.

Attempt ids come from :mod:`stream_processors.attempts` (the meet's attempt, else camera and bottom
time), and the processor's :class:`~stream_processors.attempts.AttemptLedger` remembers what it has
emitted: an attempt judged again (a redelivery, a replay into the same pipeline, a rebuilt referee
after a restart) keeps its id and is not emitted twice, and a camera's frames up to the lockout of
its last emitted attempt are not judged again.

Only squats are judged for depth: when ``meet.state`` says the lift on the platform at an attempt's
bottom is a bench press or a deadlift, the attempt is recorded as ``not_judged`` (depth
``undecided``, reason "not judged: bench") and never becomes a squat call, fused or per camera.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

from referee.decision import AttemptDecision
from referee.depth import DepthResult
from referee.fusion import UNCERTAINTY_FIELDS, PlatformFusion
from referee.keypoints import PoseFrame
from referee.referee import Referee
from stream_processors.attempts import FUSED, AttemptLedger, MeetTimeline
from stream_processors.schemas import DecisionMsg, PoseMsg, StateMsg
from stream_processors.topics import camera_key, platform_key

#: A rebuilt referee whose first frame is this close to an attempt's start did not see that start.
_FIRST_FRAME_SLACK_US = 100_000

#: The lifts the referee judges; any other lift the meet software names is recorded, not judged.
JUDGED_LIFTS = ("squat",)
NOT_JUDGED = "not_judged"


def not_judged(d: AttemptDecision, lift: str) -> AttemptDecision:
    """The attempt as recorded when the lift on the platform is not a squat: no depth, no cards."""
    reason = f"not judged: {lift}"
    depth = DepthResult(
        "undecided", None, None, 0.0, d.bottom_us, d.depth.side, d.depth.view_yaw_deg, (reason,)
    )
    return dataclasses.replace(d, depth=depth, verdict=NOT_JUDGED, cards=(), reasons=(reason,))


@dataclass
class _Stream:
    start_us: int
    referee: Referee
    last_capture_us: int = -1
    first_us: int | None = None  # capture time of the first frame this referee was fed
    joined_mid_stream: bool = False  # that frame was not the stream's first: the referee (re)started late


class RefereeProcessor:
    def __init__(self, ledger: AttemptLedger | None = None, timeline: MeetTimeline | None = None) -> None:
        self.ledger = ledger if ledger is not None else AttemptLedger()
        self.timeline = timeline if timeline is not None else MeetTimeline()
        self.suppressed = 0  # attempts judged again and not emitted again (already in the ledger)
        self._streams: dict[str, _Stream] = {}
        self._fusion: dict[str, PlatformFusion] = {}
        self._rack_us: dict[str, int] = {}

    def handle_state(self, msg: StateMsg) -> None:
        """The meet software's signals reach every camera's referee on that platform; who is lifting
        goes to the timeline that names attempts."""
        self.timeline.note(msg)
        if msg.command is None:
            return
        platform = platform_key(msg.meet, msg.platform)
        if msg.command == "rack":
            self._rack_us[platform] = msg.at_us
        for key, stream in self._streams.items():
            if key.startswith(platform + "/"):
                stream.referee.command(msg.command, msg.at_us)

    def _new_stream(self, key: str, start_us: int) -> _Stream:
        last = self.ledger.last_end_us(key)
        return _Stream(start_us, Referee(origin_us=start_us), -1 if last is None else last)

    def _settle(self, key: str, stream: _Stream, d: AttemptDecision) -> AttemptDecision:
        """The rep number the stream's emitted attempts leave (a rebuilt referee counts from 1 again),
        and a note when a rebuilt referee did not see the attempt's start."""
        changes: dict[str, object] = {"rep": self.ledger.count(key, d.origin_us) + 1}
        if (
            stream.joined_mid_stream
            and stream.first_us is not None
            and d.start_us <= stream.first_us + _FIRST_FRAME_SLACK_US
        ):
            seen_from = d.seconds(stream.first_us)
            changes["reasons"] = (
                *d.reasons,
                f"the referee restarted during this attempt: judged from the frames from {seen_from:.2f} s"
                " on, without its start",
            )
        return dataclasses.replace(d, **changes)  # type: ignore[arg-type]

    def handle(self, msg: PoseMsg) -> list[tuple[DecisionMsg, AttemptDecision | None]]:
        """Decisions this message completes: one per camera attempt, plus the platform's fused call
        (camera ``fused``, no AttemptDecision of its own) once every live camera has called it."""
        key = camera_key(msg.meet, msg.platform, msg.camera)
        stream = self._streams.get(key)
        out: list[AttemptDecision] = []
        if stream is None or stream.start_us != msg.stream_start_us:
            if stream is not None and (last := stream.referee.finish()) is not None:
                out.append(self._settle(key, stream, last))  # the old stream ended without its end marker
            stream = self._streams[key] = self._new_stream(key, msg.stream_start_us)
        if msg.end_of_stream:
            if (last := stream.referee.finish()) is not None:
                out.append(self._settle(key, stream, last))
            del self._streams[key]
        elif msg.frame is not None:
            capture_us = int(msg.frame.get("capture_us", -1))
            # A worker that died mid-chunk makes its successor resend frames, and a restarted referee is
            # fed again what it judged: drop what this camera has seen (unparsed, unless it carries a
            # re-measured bottom, below).
            if capture_us > stream.last_capture_us:
                frame = PoseFrame.from_json(msg.frame)
                stream.last_capture_us = frame.capture_us
                if stream.first_us is None:
                    stream.first_us = frame.capture_us
                    stream.joined_mid_stream = frame.frame_index > 0
                if (d := stream.referee.push(frame)) is not None:
                    out.append(self._settle(key, stream, d))
            elif msg.frame.get("refined"):
                # Re-measured bottom frames on no frame (capture time -1: a stream that ended right
                # after its bottom), or on a frame sent again: a restarted pose worker re-measures the
                # bottom on whichever frame its own watch picks, not always one its predecessor sent.
                stream.referee.amend(PoseFrame.from_json(msg.frame).refined)
        now_us = time.time_ns() // 1000
        platform = platform_key(msg.meet, msg.platform)

        def rack_to_call_ms(d: AttemptDecision) -> float:
            # The rack command when the meet software sent one after the bottom; else lockout stands in.
            rack = self._rack_us.get(platform)
            ref = rack if rack is not None and rack >= d.bottom_us else d.end_us
            return round((now_us - ref) / 1e3, 1)

        skipped: list[AttemptDecision] = []
        for i, d in enumerate(out):
            lift = self.timeline.lift_at(msg.meet, msg.platform, d.bottom_us)
            if lift is not None and lift not in JUDGED_LIFTS:
                out[i] = not_judged(d, lift)
                skipped.append(out[i])
        results: list[tuple[DecisionMsg, AttemptDecision | None]] = []

        def emit(
            camera: str,
            timed: AttemptDecision,
            attempt: dict[str, Any],
            judged: AttemptDecision | None,
            counts_as_suppressed: bool = True,
        ) -> None:
            """One attempt's decision under its lasting id, unless the ledger has already emitted it."""
            in_force = self.timeline.at(msg.meet, msg.platform, timed.bottom_us)
            aid, seen = self.ledger.resolve(msg.meet, msg.platform, camera, timed.bottom_us, in_force)
            if seen:
                self.suppressed += counts_as_suppressed
                return
            decision = DecisionMsg(
                attempt_id=aid,
                meet=msg.meet,
                platform=msg.platform,
                camera=camera,
                attempt=attempt,
                decided_us=now_us,
                rack_to_call_ms=rack_to_call_ms(timed),
            )
            self.ledger.record(decision)
            results.append((decision, judged))

        for d in out:
            emit(msg.camera, d, d.to_json(), d)
        live = {k.rsplit("/", 1)[1] for k in self._streams if k.startswith(platform + "/")} | {msg.camera}
        if len(live) > 1 or platform in self._fusion:
            fusion = self._fusion.setdefault(platform, PlatformFusion())
            for d in skipped:
                # Not a squat: the platform's record says so once, and no camera's call is fused; a
                # second camera's record of the same attempt is not a suppressed re-judgement.
                emit(FUSED, d, d.to_json(), None, counts_as_suppressed=False)
            for d in out:
                if d.verdict == NOT_JUDGED:
                    continue
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
                            **{k: fused.get(k) for k in UNCERTAINTY_FIELDS},
                        },
                        "fused": fused,
                    }
                    emit(FUSED, carrier, attempt, None)
        return results
