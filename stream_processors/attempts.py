"""Attempt identity: one id per attempt per camera, the same whichever process judges it and however
often its frames are delivered.

The id names the meet's attempt when ``meet.state`` knows it, else the moment of the attempt:

* ``MEET/PLATFORM/CAMERA/LIFTER/LIFT/N`` — the lifter's attempt N of LIFT (the meet software's
  ``lifter``, ``lift``, ``attempt_number``) in force on the platform at the attempt's bottom;
* ``MEET/PLATFORM/CAMERA/tBOTTOM_US`` — else the capture time (UTC µs) of the attempt's bottom.

``CAMERA`` is ``fused`` for the platform's fused call. Neither form depends on when or by which
process the frames were judged (no rep counter, no stream start), so a replay of the same poses
gives the same ids.

A restarted referee rebuilds its state from a window of frames (see
:mod:`stream_processors.referee_recovery`), and the bottom it finds can then move by a frame or two.
So an id is *minted once*, from the first judgement of the attempt, and kept in the
:class:`AttemptLedger`: a later judgement on the same camera whose bottom lies within
:data:`SAME_BOTTOM_US` of an emitted one is that attempt again — it takes the emitted id and is not
emitted a second time. No rounding to a grid, which would split an attempt whose bottom sits on a grid
line. Two real attempts on one camera cannot have bottoms this close (a squat takes seconds).

A meet attempt names at most one attempt per camera: when the meet software was not advanced and a
second squat happens under the same state, the second takes the time form, so it never overwrites
the first. The ledger is rebuilt from the ``decisions`` topic on start, so this holds across restarts.
The meet's attempt is looked up at the bottom's capture time in the ``meet.state`` received so far: a
state that reaches the referee only after the call does not rename it (the meet software announces
the lifter well before the bar moves, so in practice it is there).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from stream_processors.schemas import DecisionMsg, StateMsg
from stream_processors.topics import camera_key, platform_key

#: A re-judged attempt's bottom moves by a frame or two; distinct squats are seconds apart.
SAME_BOTTOM_US = 1_000_000
#: Cameras see the same bottom within this (as :data:`referee.fusion.SAME_ATTEMPT_US`): the fused
#: call's carrier camera may differ between runs, so its bottom may too.
SAME_FUSED_BOTTOM_US = 2_000_000

FUSED = "fused"


@dataclass(frozen=True, slots=True)
class MeetAttempt:
    lifter: str
    lift: str
    number: int

    def path(self) -> str:
        return f"{quote(self.lifter, safe='')}/{quote(self.lift, safe='')}/{self.number}"


def meet_attempt_id(meet: str, platform: str, camera: str, attempt: MeetAttempt) -> str:
    return f"{camera_key(meet, platform, camera)}/{attempt.path()}"


def time_attempt_id(meet: str, platform: str, camera: str, bottom_us: int) -> str:
    return f"{camera_key(meet, platform, camera)}/t{bottom_us}"


class MeetTimeline:
    """Which meet attempt was in force on a platform at a capture time, from ``meet.state``."""

    def __init__(self) -> None:
        self._by_platform: dict[str, list[tuple[int, int, MeetAttempt | None, str | None]]] = {}
        self._n = 0

    def note(self, msg: StateMsg) -> None:
        """A state naming lifter, lift and attempt number starts that attempt at ``at_us``; one naming a
        lifter without them ends it (an unknown attempt). Command-only messages change nothing, nor do
        official results (they name an attempt that may already be over)."""
        if msg.official is not None:
            return
        if msg.lifter is None and msg.lift is None and msg.attempt_number is None:
            return
        attempt = None
        if msg.lifter and msg.lift and msg.attempt_number is not None:
            attempt = MeetAttempt(msg.lifter, msg.lift, int(msg.attempt_number))
        entries = self._by_platform.setdefault(platform_key(msg.meet, msg.platform), [])
        self._n += 1  # equal times: the later message wins, as it did live
        bisect.insort(entries, (msg.at_us, self._n, attempt, msg.lift), key=lambda e: (e[0], e[1]))

    def _entry(self, meet: str, platform: str, t_us: int) -> tuple[int, int, MeetAttempt | None, str | None]:
        entries = self._by_platform.get(platform_key(meet, platform), [])
        i = bisect.bisect_right(entries, t_us, key=lambda e: e[0])
        return entries[i - 1] if i else (0, 0, None, None)

    def at(self, meet: str, platform: str, t_us: int) -> MeetAttempt | None:
        return self._entry(meet, platform, t_us)[2]

    def lift_at(self, meet: str, platform: str, t_us: int) -> str | None:
        """The lift ("squat", "bench", "dead") the meet software said was on the platform, if it said."""
        return self._entry(meet, platform, t_us)[3]


@dataclass
class _Emitted:
    attempt_id: str
    bottom_us: int
    end_us: int
    origin_us: int


@dataclass
class AttemptLedger:
    """The attempts already emitted, by camera key (``meet/platform/camera``, ``fused`` included)."""

    _by_camera: dict[str, list[_Emitted]] = field(default_factory=dict)
    _ids: set[str] = field(default_factory=set)

    def __contains__(self, attempt_id: object) -> bool:
        return attempt_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def record(self, msg: DecisionMsg) -> None:
        if msg.attempt_id in self._ids:
            return
        self._ids.add(msg.attempt_id)
        entry = _Emitted(msg.attempt_id, *_times(msg.attempt))
        self._by_camera.setdefault(camera_key(msg.meet, msg.platform, msg.camera), []).append(entry)

    def match(self, key: str, bottom_us: int, tolerance_us: int) -> str | None:
        """The emitted id of the attempt on camera ``key`` with its bottom this close, if any."""
        best = min(
            (e for e in self._by_camera.get(key, ()) if abs(e.bottom_us - bottom_us) < tolerance_us),
            key=lambda e: abs(e.bottom_us - bottom_us),
            default=None,
        )
        return None if best is None else best.attempt_id

    def resolve(
        self, meet: str, platform: str, camera: str, bottom_us: int, attempt: MeetAttempt | None
    ) -> tuple[str, bool]:
        """The id for an attempt judged now, and whether it was already emitted (a duplicate)."""
        tolerance = SAME_FUSED_BOTTOM_US if camera == FUSED else SAME_BOTTOM_US
        if (hit := self.match(camera_key(meet, platform, camera), bottom_us, tolerance)) is not None:
            return hit, True
        if attempt is not None and (aid := meet_attempt_id(meet, platform, camera, attempt)) not in self:
            return aid, False
        return time_attempt_id(meet, platform, camera, bottom_us), False

    def last_end_us(self, key: str) -> int | None:
        """Lockout of the latest attempt emitted for camera ``key``: its frames up to there are judged."""
        return max((e.end_us for e in self._by_camera.get(key, ())), default=None)

    def count(self, key: str, origin_us: int) -> int:
        """Attempts emitted for one stream of camera ``key`` (the ``rep`` numbers already used)."""
        # The topic keeps ``bottom_s`` to the millisecond, so the origin read back is that close.
        return sum(1 for e in self._by_camera.get(key, ()) if abs(e.origin_us - origin_us) <= 1000)


def _times(attempt: dict[str, Any]) -> tuple[int, int, int]:
    """(bottom, end, stream origin) in capture µs, from an attempt as the ``decisions`` topic has it."""
    cap = attempt.get("capture_us") or {}
    bottom = int(cap.get("bottom", 0))
    origin = bottom - round(float(attempt.get("bottom_s", 0.0)) * 1e6)
    return bottom, int(cap.get("end", bottom)), origin
