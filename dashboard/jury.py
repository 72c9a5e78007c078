"""The jury by the rulebook: official lights are locked, corrections are the organizer's logged act,
and a jury of three decides an appeal by majority.

Why here and not in the routes: the same rules hold whichever way lights arrive (a referee's tablet,
the organizer, the meet software on ``meet.state``) and must hold under concurrent requests, so they
are checked inside the database transaction that writes, with the rows locked first. SQLAlchemy Core
only, so the rules run the same on SQLite and PostgreSQL.

- Lights: a light once given is never overwritten by a second entry. An entry may fill lights that
  are still empty (three referees, one tablet each); once all three are in, the decision is official
  and any further entry is refused (409). The meet software re-sending the same lights (at-least-once
  delivery) changes nothing and is not an error. Changing an official decision is
  :func:`correct_lights`: organizer only, with a reason, audit-logged with the old and new lights.
- Appeals: only a 2–1 decision can be reversed; upholding is always possible. Each jury member votes
  once, with a reason; the first two votes that agree decide the appeal (majority of three).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from dashboard import db
from dashboard.fusion import is_split
from dashboard.store import StoreError, now_us

LIGHTS = ("left", "head", "right")
VOTES = ("uphold", "reverse")
JURY_SIZE = 3
MAJORITY = JURY_SIZE // 2 + 1  # two of three

_WORD = {"good": "white", "bad": "red", None: "—"}


class LightsLocked(StoreError):
    """A second entry of lights that are official already: refused, the organizer corrects."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 409)


def describe(lights: dict[str, Any] | None) -> str:
    """``white / red / white`` (left / head / right), for messages a person reads."""
    if not lights:
        return "not entered"
    return " / ".join(_WORD.get(lights.get(k), "—") for k in LIGHTS)


def complete(lights: dict[str, Any] | None) -> bool:
    return bool(lights) and all((lights or {}).get(k) in ("good", "bad") for k in LIGHTS)


def _clean(values: Mapping[str, Any]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for k in LIGHTS:
        v = values.get(k)
        if v not in ("good", "bad", None):
            raise StoreError(f"{k} light must be good, bad or empty", 422)
        out[k] = v
    return out


def _lock_lift(conn: Connection, lift_id: int) -> dict[str, Any]:
    """The lift, row-locked (PostgreSQL) / write-locked (SQLite) so two entries cannot interleave."""
    res = conn.execute(
        update(db.lifts).where(db.lifts.c.id == lift_id).values(bottom_us=db.lifts.c.bottom_us)
    )
    if res.rowcount == 0:
        raise StoreError(f"no lift {lift_id}", 404)
    return dict(conn.execute(select(db.lifts).where(db.lifts.c.id == lift_id)).mappings().one())


def _current(conn: Connection, lift_id: int) -> dict[str, Any] | None:
    row = conn.execute(select(db.lights).where(db.lights.c.lift_id == lift_id)).mappings().first()
    return None if row is None else dict(row)


def _locked_message(lift_id: int, old: dict[str, Any]) -> str:
    return (
        f"the lights of lift {lift_id} are official ({describe(old)}, entered by {old['entered_by']}):"
        " a second entry is refused; the organizer can correct them, with a reason"
        f" (POST /api/lifts/{lift_id}/lights/correction)"
    )


def _merge(lift_id: int, old: dict[str, Any], new: dict[str, str | None]) -> dict[str, str | None]:
    """Fill the lights still empty; a light already given must not change."""
    merged: dict[str, str | None] = {}
    for k in LIGHTS:
        if old.get(k) is not None and new[k] is not None and new[k] != old[k]:
            raise LightsLocked(
                f"the {k} light of lift {lift_id} is {_WORD[old[k]]} already"
                f" (entered by {old['entered_by']}): a light once given is changed only by the"
                " organizer's correction, with a reason"
            )
        merged[k] = old.get(k) or new[k]
    return merged


def _write(conn: Connection, lift_id: int, old: dict[str, Any] | None, row: dict[str, Any], by: str) -> None:
    values = {**row, "entered_by": by, "entered_us": now_us()}
    if old is None:
        try:
            conn.execute(insert(db.lights).values(lift_id=lift_id, **values))
        except IntegrityError as exc:  # another entry won the race (PostgreSQL, no row to lock yet)
            raise LightsLocked(f"the lights of lift {lift_id} were entered just now by someone else") from exc
    else:
        conn.execute(update(db.lights).where(db.lights.c.lift_id == lift_id).values(**values))


def enter_lights(conn: Connection, lift_id: int, values: Mapping[str, Any], by: str) -> dict[str, str | None]:
    """A person's entry (referee or organizer). Returns the lights as they now stand."""
    new = _clean(values)
    if all(v is None for v in new.values()):
        raise StoreError("enter at least one light (good or bad)", 422)
    _lock_lift(conn, lift_id)
    old = _current(conn, lift_id)
    if old is None:
        _write(conn, lift_id, None, new, by)
        return new
    if complete(old):
        raise LightsLocked(_locked_message(lift_id, old))
    merged = _merge(lift_id, old, new)
    if merged == {k: old.get(k) for k in LIGHTS}:
        raise LightsLocked(f"these lights of lift {lift_id} are entered already ({describe(old)})")
    _write(conn, lift_id, old, merged, by)
    return merged


def enter_official(conn: Connection, lift_id: int, values: dict[str, Any], by: str) -> bool:
    """The meet software's lights (``meet.state`` with ``official``). False when they are what is on
    record already (a redelivered message); :class:`LightsLocked` when they contradict official lights."""
    new = {k: values.get(k) if values.get(k) in ("good", "bad") else None for k in LIGHTS}
    old = _current(conn, lift_id)
    if old is None:
        if all(v is None for v in new.values()):
            return False
        _write(conn, lift_id, None, new, by)
        return True
    if {k: old.get(k) for k in LIGHTS} == new:
        return False
    if complete(old):
        raise LightsLocked(_locked_message(lift_id, old))
    merged = _merge(lift_id, old, new)
    if merged == {k: old.get(k) for k in LIGHTS}:
        return False
    _write(conn, lift_id, old, merged, by)
    return True


def correct_lights(
    engine: Engine, lift_id: int, values: dict[str, Any], by: str, reason: str
) -> dict[str, Any]:
    """The organizer's correction of entered lights: all three lights and a reason. Refused after the
    jury reversed the decision (the reversal was of the lights as they were). Returns old and new, for
    the audit log."""
    new = _clean(values)
    if not reason.strip():
        raise StoreError("a correction of the lights needs a reason", 422)
    if not complete(new):
        raise StoreError("a correction gives all three lights (good or bad)", 422)
    with engine.begin() as conn:
        lift = _lock_lift(conn, lift_id)
        old = _current(conn, lift_id)
        if old is None:
            raise StoreError(
                f"no lights entered for lift {lift_id}: enter them (POST /api/lifts/{lift_id}/lights);"
                " there is nothing to correct",
                409,
            )
        before = {k: old.get(k) for k in LIGHTS}
        if before == new:
            raise StoreError(f"the correction changes nothing: the lights are {describe(old)} already", 409)
        reversed_ = conn.execute(
            select(db.appeals.c.id).where(db.appeals.c.lift_id == lift_id, db.appeals.c.status == "reversed")
        ).first()
        if reversed_ is not None:
            raise StoreError(
                f"the jury reversed the decision on lift {lift_id} (appeal {reversed_.id}): its lights stay"
                " as the jury judged them",
                409,
            )
        _write(conn, lift_id, old, new, by)
    return {
        "lift_id": lift_id,
        "meet": lift["meet"],
        "old": before,
        "old_entered_by": old["entered_by"],
        "new": new,
        "reason": reason.strip()[:2000],
    }


# --- the jury's votes ---------------------------------------------------------------------------------


def votes_for(conn: Connection, appeal_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {i: [] for i in appeal_ids}
    if not appeal_ids:
        return out
    rows = conn.execute(
        select(db.appeal_votes)
        .where(db.appeal_votes.c.appeal_id.in_(appeal_ids))
        .order_by(db.appeal_votes.c.id)
    ).mappings()
    for r in rows:
        out[int(r["appeal_id"])].append(
            {"juror": r["juror"], "vote": r["vote"], "reason": r["reason"], "at_us": int(r["at_us"])}
        )
    return out


def with_votes(engine: Engine, appeals: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each appeal with its jury's ``votes`` (who, uphold or reverse, why, when)."""
    with engine.connect() as conn:
        votes = votes_for(conn, [int(a["id"]) for a in appeals])
    return [{**a, "votes": votes[int(a["id"])]} for a in appeals]


def cast_vote(engine: Engine, appeal_id: int, juror: str, vote: str, reason: str) -> dict[str, Any]:
    """One jury member's vote. Returns the appeal with its votes and ``decided`` (whether this vote
    made the majority). The appeal row is locked first, so concurrent votes are counted one by one."""
    if vote not in VOTES:
        raise StoreError("a jury vote is uphold or reverse", 422)
    if not reason.strip():
        raise StoreError("a jury vote needs a reason", 422)
    with engine.begin() as conn:
        res = conn.execute(
            update(db.appeals).where(db.appeals.c.id == appeal_id).values(status=db.appeals.c.status)
        )
        if res.rowcount == 0:
            raise StoreError(f"no appeal {appeal_id}", 404)
        appeal = dict(conn.execute(select(db.appeals).where(db.appeals.c.id == appeal_id)).mappings().one())
        if appeal["status"] != "pending":
            raise StoreError(f"appeal {appeal_id} was decided already ({appeal['status']})")
        cast = votes_for(conn, [appeal_id])[appeal_id]
        mine = next((v for v in cast if v["juror"] == juror), None)
        if mine is not None:
            raise StoreError(f"{juror} has voted on appeal {appeal_id} already ({mine['vote']})")
        if len(cast) >= JURY_SIZE:
            raise StoreError(f"appeal {appeal_id} has the votes of a full jury of {JURY_SIZE} already")
        if vote == "reverse":
            _require_split(conn, int(appeal["lift_id"]))
        try:
            conn.execute(
                insert(db.appeal_votes).values(
                    appeal_id=appeal_id, juror=juror, vote=vote, reason=reason.strip()[:2000], at_us=now_us()
                )
            )
        except IntegrityError as exc:
            raise StoreError(f"{juror} has voted on appeal {appeal_id} already") from exc
        cast = votes_for(conn, [appeal_id])[appeal_id]
        agreeing = [v for v in cast if v["vote"] == vote]
        decided = len(agreeing) >= MAJORITY
        if decided:
            conn.execute(
                update(db.appeals)
                .where(db.appeals.c.id == appeal_id)
                .values(
                    status="reversed" if vote == "reverse" else "upheld",
                    decided_by=("jury: " + ", ".join(v["juror"] for v in agreeing))[:100],
                    decided_us=now_us(),
                    note="; ".join(f"{v['juror']}: {v['reason']}" for v in agreeing)[:2000],
                )
            )
        out = dict(conn.execute(select(db.appeals).where(db.appeals.c.id == appeal_id)).mappings().one())
    return {**out, "votes": cast, "decided": decided}


def _require_split(conn: Connection, lift_id: int) -> None:
    lights = _current(conn, lift_id)
    if lights is None:
        raise StoreError("enter the referees' lights first: the jury reverses only a 2–1 decision")
    if not is_split(lights):
        raise StoreError(
            f"the referees' decision was unanimous ({describe(lights)}): the jury may reverse only a 2–1"
            " decision"
        )
