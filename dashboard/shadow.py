"""Shadow mode: the system judges every attempt, but only the organizer sees its calls before the
official lights are in.

Why: a meet that trials meetvar must not let the system sway the people who decide. Referees, the
jury, lifters, coaches and viewers see that an attempt was recorded (its lifter, times, video), but
not the system's verdict, margin, confidence, cards, reasons, explanation or the replay's overlay —
until all three of that attempt's official lights are in. The organizer, who runs the trial, always
sees everything.

Every path that carries a call goes through :class:`Redactor`: the REST lists and single lifts, the
replay, the CSV history, the agreement report, the WebSocket snapshot, its ``?since=N`` catch-up and
the live events (the hub hands each client the full or the redacted copy by its role, see
:class:`dashboard.hub.Hub`). What an attempt keeps is a whitelist, so a field added to decisions later
is hidden by default rather than leaked by default.

"Official lights are in" means all three lights are entered (the meet software always sends three;
a referee's partial entry does not reveal the call to the third referee who has not voted yet).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from dashboard import db
from dashboard.auth import ORGANIZER, User

HIDDEN = "shadow mode: shown once the official lights are in"

# What a hidden attempt keeps: when and what was lifted, never what the system made of it.
ATTEMPT_KEEP = frozenset(
    {"rep", "start_s", "bottom_s", "end_s", "capture_us", "ended_by", "model_id", "rules_version", "lift"}
)
# Top-level keys of a decision / attempt item that carry the system's call.
CALL_KEYS = frozenset(
    {"fused", "verdict", "depth", "margin_cm", "confidence", "cards", "reasons", "explanation"}
)
# Keys of one replay pane that carry the call or the overlay (the skeleton and the margin plot).
PANE_CALL_KEYS = frozenset({"verdict", "reasons", "depth", "frames", "margins"})


class ShadowError(ValueError):
    """A bad shadow-mode request; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def sees_calls(user: User | None) -> bool:
    """Only the organizer sees the system's calls before the official lights."""
    return user is not None and user.role == ORGANIZER


def lights_in(lights: dict[str, Any] | None) -> bool:
    """All three official lights entered."""
    return bool(lights) and all((lights or {}).get(k) in ("good", "bad") for k in ("left", "head", "right"))


# --- the meet setting -----------------------------------------------------------------------------------


def set_shadow(store: Any, meet: str, on: bool) -> dict[str, Any]:
    """Turn shadow mode on or off for an existing meet."""
    with store.engine.begin() as conn:
        res = conn.execute(update(db.meets).where(db.meets.c.name == meet).values(shadow=bool(on)))
        if res.rowcount == 0:
            raise ShadowError(f"no meet {meet!r}; create it first", 404)
    return {"name": meet, "shadow": bool(on)}


def shadow_meets(store: Any) -> set[str]:
    with store.engine.connect() as conn:
        return {str(r.name) for r in conn.execute(select(db.meets.c.name).where(db.meets.c.shadow.is_(True)))}


# --- redaction --------------------------------------------------------------------------------------------


def redact_attempt(item: dict[str, Any]) -> dict[str, Any]:
    """One camera's decision (an ``/api/attempts`` item, a ``decision`` event, a lift's camera) without
    the call: the attempt keeps only its times and identity."""
    out = {k: v for k, v in item.items() if k not in CALL_KEYS}
    if isinstance(item.get("attempt"), dict):
        out["attempt"] = {k: v for k, v in item["attempt"].items() if k in ATTEMPT_KEEP}
    if "explanation" in item:
        out["explanation"] = None
    out["hidden"] = HIDDEN
    return out


def redact_lift(lift: dict[str, Any]) -> dict[str, Any]:
    """A lift without the system's call: ``fused`` is None, each camera is redacted."""
    out = {**lift, "fused": None, "cameras": [redact_attempt(c) for c in lift.get("cameras", [])]}
    out["hidden"] = HIDDEN
    return out


def redact_pane(pane: dict[str, Any]) -> dict[str, Any]:
    """A replay pane keeps its video (what happened) but loses the overlay and the call."""
    out = {k: v for k, v in pane.items() if k not in PANE_CALL_KEYS}
    out.update(verdict=None, reasons=[], depth={}, frames=[], margins=[], hidden=HIDDEN)
    return out


DROP = object()  # an event a non-organizer does not get at all (a hidden explanation's live words)


class Redactor:
    """Decides, from the database as it is now, which lifts are hidden, and redacts what carries them.

    One per request or per published event: it reads the shadow meets once and each lift's lights at
    most once, so a snapshot of 200 lifts costs two queries, not 200."""

    def __init__(self, store: Any, *, sees_everything: bool = False) -> None:
        self.store = store
        # The organizer's view hides nothing, and costs no query.
        self.shadow: set[str] = set() if sees_everything else shadow_meets(store)
        self._lights: dict[int, bool] = {}

    @property
    def active(self) -> bool:
        return bool(self.shadow)

    def _lights_in(self, lift_ids: list[int]) -> None:
        missing = [i for i in set(lift_ids) if i not in self._lights]
        if not missing:
            return
        with self.store.engine.connect() as conn:
            rows = {
                int(r["lift_id"]): dict(r)
                for r in conn.execute(select(db.lights).where(db.lights.c.lift_id.in_(missing))).mappings()
            }
        for i in missing:
            self._lights[i] = lights_in(rows.get(i))

    def _attempt_meta(self, attempt_id: str) -> tuple[str | None, int | None]:
        with self.store.engine.connect() as conn:
            r = conn.execute(
                select(db.attempts.c.meet, db.attempts.c.lift_id).where(
                    db.attempts.c.attempt_id == attempt_id
                )
            ).first()
        return (None, None) if r is None else (str(r.meet), int(r.lift_id))

    def hidden(self, meet: str | None, lift_id: int | None) -> bool:
        if meet not in self.shadow or lift_id is None:
            return False
        self._lights_in([lift_id])
        return not self._lights[lift_id]

    def lift_hidden(self, lift: dict[str, Any]) -> bool:
        # A lift carries its lights: no query needed.
        return lift.get("meet") in self.shadow and not lights_in(lift.get("lights"))

    def lifts(self, lifts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not self.shadow:
            return lifts
        return [redact_lift(x) if self.lift_hidden(x) else x for x in lifts]

    def lift(self, lift: dict[str, Any]) -> dict[str, Any]:
        return redact_lift(lift) if self.lift_hidden(lift) else lift

    def attempts(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``/api/attempts`` items carry their ``official`` lights."""
        if not self.shadow:
            return items
        return [
            redact_attempt(x)
            if x.get("meet") in self.shadow and not lights_in((x.get("official") or {}).get("lights"))
            else x
            for x in items
        ]

    def event(self, event: dict[str, Any]) -> dict[str, Any] | object | None:
        """The copy of ``event`` a non-organizer gets: None when it is the same as the organizer's,
        a redacted copy, or :data:`DROP`."""
        if not self.shadow:
            return None
        kind = event.get("type")
        if kind == "snapshot":
            return {
                **event,
                "attempts": self.attempts(event["attempts"]),
                "lifts": self.lifts(event["lifts"]),
            }
        if isinstance(event.get("lift"), dict) and "fused" in event["lift"]:
            return {**event, "lift": redact_lift(event["lift"])} if self.lift_hidden(event["lift"]) else None
        if isinstance(event.get("attempt"), dict):  # a camera's decision
            lift_id = event.get("lift_id")
            if self.hidden(event.get("meet"), None if lift_id is None else int(lift_id)):
                return redact_attempt(event)
            return None
        if kind in ("explanation", "explanation_delta") and event.get("attempt_id"):
            meet, lift_id = self._attempt_meta(str(event["attempt_id"]))
            if not self.hidden(meet, lift_id):
                return None
            if kind == "explanation_delta":
                return DROP
            keep = ("type", "schema_version", "attempt_id", "seq")
            return {**{k: event[k] for k in keep if k in event}, "hidden": HIDDEN}
        return None

    def for_client(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """What a non-organizer client is sent for ``event`` (None: nothing)."""
        out = self.event(event)
        if out is DROP:
            return None
        return event if out is None else out  # type: ignore[return-value]
