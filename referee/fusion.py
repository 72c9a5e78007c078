"""Several cameras on one platform, judged like three referees: a call per camera, one fused call.

Each camera's call is a light: white (good), red (no lift) or none (undecided: its view could not
show depth). The majority of lights decides; a tie between cameras is not broken by guesswork but left
undecided for the humans, with the reason. The fused margin is the confidence-weighted mean of the
deciding cameras', so one well-placed side camera outweighs a poor oblique one.
"""

from __future__ import annotations

from dataclasses import dataclass

from referee.decision import AttemptDecision

SAME_ATTEMPT_US = 1_500_000  # bottoms this close on the platform's timeline are the same attempt


@dataclass(frozen=True, slots=True)
class FusedCall:
    cameras: tuple[str, ...]
    lights: tuple[str, ...]  # per camera: "good" | "no_lift" | "undecided"
    verdict: str
    depth_status: str
    margin_cm: float | None
    confidence: float
    cards: tuple[str, ...]
    bottom_us: int
    reasons: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "cameras": list(self.cameras),
            "lights": list(self.lights),
            "verdict": self.verdict,
            "depth": {
                "status": self.depth_status,
                "margin_cm": self.margin_cm,
                "confidence": self.confidence,
            },
            "cards": list(self.cards),
            "bottom_us": self.bottom_us,
            "reasons": list(self.reasons),
        }


def fuse(calls: dict[str, AttemptDecision]) -> FusedCall:
    cams = tuple(sorted(calls))
    lights = tuple(calls[c].verdict for c in cams)
    good, bad = lights.count("good"), lights.count("no_lift")
    reasons: list[str] = []
    if good > bad:
        verdict = "good"
    elif bad > good:
        verdict = "no_lift"
    else:
        verdict = "undecided"
        reasons.append(
            f"cameras disagree {good}–{bad}: a referee decides" if good else "no camera could decide"
        )

    deciding = [calls[c].depth for c in cams if calls[c].depth.status in ("below", "above")]
    weight = sum(d.confidence for d in deciding)
    margin = (
        round(sum((d.margin_cm or 0.0) * d.confidence for d in deciding) / weight, 2) if weight > 0 else None
    )
    status = "undecided" if margin is None else ("below" if margin > 0 else "above")
    confidence = round(max((d.confidence for d in deciding), default=0.0) * (good + bad) / len(cams), 3)
    # A card shown by the majority stands, as with three referees' cards.
    card_votes: dict[str, int] = {}
    for c in cams:
        for card in set(calls[c].cards):
            card_votes[card] = card_votes.get(card, 0) + 1
    cards = tuple(sorted(card for card, n in card_votes.items() if n * 2 > len(cams)))
    bottom = sorted(calls[c].bottom_us for c in cams)[len(cams) // 2]
    for c in cams:
        reasons.append(
            f"{c}: {calls[c].verdict}" + (f" ({calls[c].depth.reasons[0]})" if calls[c].depth.reasons else "")
        )
    return FusedCall(cams, lights, verdict, status, margin, confidence, cards, bottom, tuple(reasons))


class PlatformFusion:
    """Groups the cameras' calls of one platform into attempts by bottom time, and fuses each attempt
    once every camera streaming on the platform has called it."""

    def __init__(self) -> None:
        self._pending: list[dict[str, AttemptDecision]] = []

    def add(self, camera: str, decision: AttemptDecision, cameras_live: set[str]) -> list[FusedCall]:
        group = next(
            (
                g
                for g in self._pending
                if camera not in g
                and any(abs(d.bottom_us - decision.bottom_us) < SAME_ATTEMPT_US for d in g.values())
            ),
            None,
        )
        if group is None:
            group = {}
            self._pending.append(group)
        group[camera] = decision
        done = [g for g in self._pending if cameras_live <= set(g)]
        # An attempt some camera never called is fused anyway once a later attempt starts arriving.
        stale = [g for g in self._pending if g is not group and g not in done and len(g) > 0]
        out = [fuse(g) for g in [*stale, *done]]
        self._pending = [g for g in self._pending if g not in done and g not in stale]
        return out
