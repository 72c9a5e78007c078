"""Several cameras on one platform, judged like three referees: a call per camera, one fused call.

The one place that rule lives: the streaming referee emits the fused call, and the dashboard's live
view, history and CSV use the same function, so they can never disagree.

Each camera's call is a light: white (good), red (no lift) or none (undecided: its view could not show
depth), and undecided cameras do not vote. The majority of lights decides and a tie is a no lift, as on
the platform, where a lift is good only with a majority of white lights. The fused margin and confidence
are those of the agreeing camera with the smallest margin: the call is only as sure as its weakest
supporting view. A card stands when a majority of the voting cameras showed it.
"""

from __future__ import annotations

from typing import Any

from referee.decision import AttemptDecision

SAME_ATTEMPT_US = 2_000_000  # bottoms this close on the platform's timeline are the same attempt
DECIDED = ("good", "no_lift")
# How the call's margin was measured and how sure it is: carried over from the camera that speaks for it.
UNCERTAINTY_FIELDS = ("margin_cm_interval", "surface", "scale", "measured")


def fuse_calls(cameras: list[dict[str, Any]]) -> dict[str, Any]:
    """Fuse ``[{"camera": name, "attempt": <judge --json attempt>}, …]`` into the platform's call."""
    decided = [c for c in cameras if c["attempt"]["verdict"] in DECIDED]
    votes = {"good": 0, "no_lift": 0, "undecided": len(cameras) - len(decided)}
    for c in decided:
        votes[c["attempt"]["verdict"]] += 1
    lights = {c["camera"]: c["attempt"]["verdict"] for c in cameras}
    if not decided:
        reasons = sorted({r for c in cameras for r in c["attempt"]["reasons"]})
        # A camera that measured a margin too close to call says more than one that saw nothing: its
        # margin and interval go to the referees with the call.
        measured = [c for c in cameras if c["attempt"]["depth"].get("margin_cm") is not None]
        closest = min(measured, key=lambda c: abs(c["attempt"]["depth"]["margin_cm"]), default=None)
        depth = closest["attempt"]["depth"] if closest is not None else {}
        return {
            "verdict": "undecided",
            "status": "undecided",
            "margin_cm": depth.get("margin_cm"),
            "confidence": depth.get("confidence", 0.0),
            "votes": votes,
            "lights": lights,
            "camera": None if closest is None else closest["camera"],
            "cards": [],
            "reasons": reasons or ["no camera could judge depth"],
            **{k: depth.get(k) for k in UNCERTAINTY_FIELDS},
        }
    verdict = "good" if votes["good"] > votes["no_lift"] else "no_lift"
    agreeing = [c for c in decided if c["attempt"]["verdict"] == verdict]
    weakest = min(agreeing, key=lambda c: c["attempt"]["depth"]["margin_cm"] or 0.0)
    depth = weakest["attempt"]["depth"]
    card_votes: dict[str, int] = {}
    for c in decided:
        for card in set(c["attempt"]["cards"]):
            card_votes[card] = card_votes.get(card, 0) + 1
    reasons = list(weakest["attempt"]["reasons"])
    if votes["good"] == votes["no_lift"]:
        reasons.insert(0, f"cameras split {votes['good']}–{votes['no_lift']}: no majority for a good lift")
    return {
        "verdict": verdict,
        "status": depth["status"],
        "margin_cm": depth["margin_cm"],
        "confidence": depth["confidence"],
        "votes": votes,
        "lights": lights,
        "camera": weakest["camera"],
        "cards": sorted(card for card, n in card_votes.items() if n * 2 > len(decided)),
        "reasons": reasons,
        **{k: depth.get(k) for k in UNCERTAINTY_FIELDS},
    }


class PlatformFusion:
    """Groups the cameras' calls of one platform into attempts by bottom time, and fuses each attempt
    once every camera streaming on the platform has called it. An attempt some camera never called is
    fused with what it has as soon as a later attempt starts arriving."""

    def __init__(self) -> None:
        self._pending: list[dict[str, AttemptDecision]] = []

    def add(
        self, camera: str, decision: AttemptDecision, cameras_live: set[str]
    ) -> list[tuple[dict[str, Any], AttemptDecision]]:
        """Fused calls now complete, each with the camera decision whose times it carries."""
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
        ready = [g for g in self._pending if cameras_live <= set(g) or g is not group]
        self._pending = [g for g in self._pending if g not in ready]
        return [
            (fuse_calls([{"camera": c, "attempt": d.to_json()} for c, d in sorted(g.items())]), g[min(g)])
            for g in ready
        ]
