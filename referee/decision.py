"""An attempt's call: depth, cards and verdict, in the shape of the ``judge --json`` contract."""

from __future__ import annotations

from dataclasses import dataclass

from referee.config import RULES_VERSION
from referee.depth import DepthResult


@dataclass(frozen=True, slots=True)
class AttemptDecision:
    rep: int
    origin_us: int  # capture time of the camera stream's first frame: *_s fields are relative to it
    start_us: int
    bottom_us: int
    end_us: int
    depth: DepthResult
    verdict: str  # "good" | "no_lift" | "undecided"
    cards: tuple[str, ...]
    reasons: tuple[str, ...]
    ended_by: str
    model_id: str
    rules_version: str = RULES_VERSION

    def seconds(self, us: int) -> float:
        return round((us - self.origin_us) / 1e6, 3)

    def to_json(self) -> dict[str, object]:
        """The attempt object of the CLI contract, plus the absolute times the stream needs."""
        d = self.depth
        return {
            "rep": self.rep,
            "start_s": self.seconds(self.start_us),
            "bottom_s": self.seconds(self.bottom_us),
            "end_s": self.seconds(self.end_us),
            "depth": {
                "status": d.status,
                "margin_cm": d.margin_cm,
                "margin_thigh": d.margin_thigh,
                "confidence": d.confidence,
                "side": d.side,
                "view_yaw_deg": d.view_yaw_deg,
                "landmarks": d.landmarks,
                "margin_cm_interval": None if d.margin_cm_interval is None else list(d.margin_cm_interval),
                "uncertainty_thigh": d.uncertainty_thigh,
                "surface": d.surface,
                "scale": d.scale,
                "measured": d.measured,
                "silhouette_margin_cm": d.silhouette_margin_cm,
            },
            "verdict": self.verdict,
            "cards": list(self.cards),
            "reasons": list(self.reasons),
            "ended_by": self.ended_by,
            "capture_us": {"start": self.start_us, "bottom": self.bottom_us, "end": self.end_us},
            "model_id": self.model_id,
            "rules_version": self.rules_version,
        }


def verdict_for(depth: DepthResult, fault_cards: tuple[str, ...] = ()) -> tuple[str, tuple[str, ...]]:
    """Any card is a no lift; otherwise depth decides, and an unseen depth is no call at all."""
    cards = (("red",) if depth.status == "above" else ()) + tuple(sorted(set(fault_cards)))
    if cards:
        return "no_lift", cards
    return ("good", ()) if depth.status == "below" else ("undecided", ())
