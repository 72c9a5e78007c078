"""One camera's referee: poses in, attempt decisions out. Pure: no I/O, no clock, no globals."""

from __future__ import annotations

from collections.abc import Iterable

from referee.config import RefereeConfig
from referee.decision import AttemptDecision, verdict_for
from referee.depth import judge_depth
from referee.faults import Fault, find_faults
from referee.keypoints import PoseFrame
from referee.segmentation import AttemptWindow, RepSegmenter
from referee.validity import why_not_an_attempt


class Referee:
    """Feeds frames through segmentation and judges each attempt as soon as it is complete.

    ``origin_us`` is the stream's start, so decision times read as seconds into the video.
    """

    def __init__(self, origin_us: int = 0, config: RefereeConfig | None = None) -> None:
        self.config = config or RefereeConfig()
        self.origin_us = origin_us
        self._segmenter = RepSegmenter(self.config)
        self._reps = 0
        self._model_id = ""
        self.rejected_reason: str | None = None  # why the last movement was not judged, for logs
        self._squat_signal_us: int | None = None

    def command(self, kind: str, at_us: int) -> None:
        """The head referee's signal, from the meet software: "squat" (start) or "rack" (finish).

        Without signals the referee judges on movement alone; with them, a descent that began before
        the Squat signal earns the yellow card for a missed signal.
        """
        if kind == "squat":
            self._squat_signal_us = at_us

    def push(self, frame: PoseFrame) -> AttemptDecision | None:
        self._model_id = frame.model_id or self._model_id
        self.amend(frame.refined)
        window = self._segmenter.push(frame)
        return self._decide(window) if window is not None else None

    def amend(self, frames: Iterable[PoseFrame]) -> None:
        """Re-measured poses of frames already pushed (the bottom of an attempt, gpu_service.refine)."""
        for f in frames:
            self._segmenter.amend(f)

    def finish(self) -> AttemptDecision | None:
        window = self._segmenter.finish()
        return self._decide(window) if window is not None else None

    def run(self, frames: Iterable[PoseFrame]) -> list[AttemptDecision]:
        out = [d for f in frames if (d := self.push(f)) is not None]
        last = self.finish()
        return [*out, last] if last is not None else out

    def _decide(self, window: AttemptWindow) -> AttemptDecision | None:
        self.rejected_reason = why_not_an_attempt(window, self.config)
        if self.rejected_reason is not None:
            return None
        self._reps += 1
        depth = judge_depth(window, self.config)
        faults, notes = find_faults(window, self.config)
        start_us = window.frames[window.start_index].capture_us
        signal = self._squat_signal_us
        self._squat_signal_us = None  # one signal per attempt
        if signal is not None and start_us < signal:
            early = (signal - start_us) / 1e6
            faults.append(
                Fault("missed_signal", "yellow", f"descent began {early:.1f} s before the Squat signal")
            )
        verdict, cards = verdict_for(depth, tuple(f.card for f in faults))
        reasons = [*depth.reasons, *(f"{f.card} card: {f.detail}" for f in faults), *notes]
        if window.ended_by == "lifter_left":
            reasons.append("the lifter left the frame before lockout")
        return AttemptDecision(
            rep=self._reps,
            origin_us=self.origin_us,
            start_us=window.frames[window.start_index].capture_us,
            bottom_us=depth.bottom_us,
            end_us=window.frames[window.end_index].capture_us,
            depth=depth,
            verdict=verdict,
            cards=cards,
            reasons=tuple(reasons),
            ended_by=window.ended_by,
            model_id=self._model_id,
        )
