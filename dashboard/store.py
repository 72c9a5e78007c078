"""The dashboard's memory of the meet, on SQLAlchemy (SQLite by default, PostgreSQL by URL).

- Every camera's decision is a row keyed by attempt id: decisions are idempotent per attempt, so a
  replayed or re-delivered decision replaces its row instead of adding a second one.
- Decisions of one platform whose bottoms are within :data:`LIFT_TOLERANCE_US` of each other are one
  *lift* (the cameras saw the same squat); the lift carries who lifted (from ``meet.state``), the
  referees' lights, overrides and appeals, and the fused call is computed from its cameras.
- Every event pushed to the pages is also appended to ``events``; its sequence number is the cursor a
  reconnecting page sends back to get exactly what it missed.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, and_, delete, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from dashboard import db
from dashboard.fusion import fuse_cameras, is_split, lights_majority, official_result

LIFT_TOLERANCE_US = 2_000_000
DEFAULT_APPEAL_LIMIT = 1
# PostgreSQL advisory lock that orders event appends (any constant unique to this use in the database).
EVENTS_LOCK_KEY = 0x6D76_6576  # "mvev"


def now_us() -> int:
    return time.time_ns() // 1000


class StoreError(ValueError):
    """A request that conflicts with the meet's rules or state; ``str`` is shown to the user."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


class DashboardStore:
    def __init__(self, target: Engine | Path | str = ":memory:") -> None:
        self.engine = target if isinstance(target, Engine) else db.make_engine(target)

    # --- decisions and explanations ------------------------------------------------------------

    def upsert_decision(self, msg: dict[str, Any]) -> int:
        """Store one camera's decision; returns its lift id (new, or the lift another camera began)."""
        attempt = msg["attempt"]
        bottom = int(attempt.get("capture_us", {}).get("bottom", msg["decided_us"]))
        with self.engine.begin() as conn:
            row = conn.execute(
                select(db.attempts.c.lift_id).where(db.attempts.c.attempt_id == msg["attempt_id"])
            ).first()
            if row is not None:
                lift_id = int(row.lift_id)
                conn.execute(
                    update(db.attempts)
                    .where(db.attempts.c.attempt_id == msg["attempt_id"])
                    .values(decided_us=msg["decided_us"], decision=json.dumps(msg))
                )
                return lift_id
            lift = conn.execute(
                select(db.lifts.c.id)
                .where(db.lifts.c.meet == msg["meet"], db.lifts.c.platform == msg["platform"])
                .where(db.lifts.c.bottom_us.between(bottom - LIFT_TOLERANCE_US, bottom + LIFT_TOLERANCE_US))
                .order_by(func.abs(db.lifts.c.bottom_us - bottom))
            ).first()
            if lift is not None:
                lift_id = int(lift.id)
            else:
                # The attempt in force at the bottom: the rule that names the referee's attempt ids
                # (stream_processors.attempts), so a lift and its ids never name different lifters.
                ctx = self._state_at(conn, msg["meet"], msg["platform"], bottom)
                res = conn.execute(
                    insert(db.lifts).values(
                        meet=msg["meet"],
                        platform=msg["platform"],
                        bottom_us=bottom,
                        created_us=now_us(),
                        lifter=ctx.get("lifter"),
                        lift_name=ctx.get("lift"),
                        attempt_number=ctx.get("attempt_number"),
                        weight_kg=ctx.get("weight_kg"),
                    )
                )
                assert res.inserted_primary_key is not None
                lift_id = int(res.inserted_primary_key[0])
                # The meet software's lights may have come before the first camera's call.
                official = self._official_for(conn, msg["meet"], msg["platform"], ctx)
                if official is not None:
                    self._put_official(conn, lift_id, official)
            conn.execute(
                insert(db.attempts).values(
                    attempt_id=msg["attempt_id"],
                    lift_id=lift_id,
                    meet=msg["meet"],
                    platform=msg["platform"],
                    camera=msg["camera"],
                    decided_us=msg["decided_us"],
                    decision=json.dumps(msg),
                )
            )
            return lift_id

    def set_explanation(self, msg: dict[str, Any]) -> bool | None:
        """Attach an explanation. False when its decision has not arrived yet (the caller holds it);
        None when a Claude explanation is already there and this is only the template: a model's
        answer is never replaced by the fallback that stood in for it."""
        with self.engine.begin() as conn:
            row = conn.execute(
                select(db.attempts.c.explanation).where(db.attempts.c.attempt_id == msg["attempt_id"])
            ).first()
            if row is None:
                return False
            if row.explanation and msg.get("model") == "template":
                old = json.loads(row.explanation)
                if old.get("model") != "template":
                    return None
            conn.execute(
                update(db.attempts)
                .where(db.attempts.c.attempt_id == msg["attempt_id"])
                .values(explanation=json.dumps(msg))
            )
            return True

    def attempt(self, attempt_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            r = (
                conn.execute(select(db.attempts).where(db.attempts.c.attempt_id == attempt_id))
                .mappings()
                .first()
            )
            return None if r is None else self._with_meet_attempt(conn, [self._attempt_item(r)])[0]

    @staticmethod
    def _attempt_item(r: Any) -> dict[str, Any]:
        item: dict[str, Any] = json.loads(r["decision"])
        item["explanation"] = json.loads(r["explanation"]) if r["explanation"] else None
        item["lift_id"] = int(r["lift_id"])
        return item

    def recent_attempts(self, limit: int = 200) -> list[dict[str, Any]]:
        """Every camera's decision, newest first, each with its explanation: ``GET /api/attempts``."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(db.attempts).order_by(db.attempts.c.decided_us.desc()).limit(limit)
            ).mappings()
            return self._with_meet_attempt(conn, [self._attempt_item(r) for r in rows])

    @staticmethod
    def _with_meet_attempt(conn: Any, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each item with the meet's attempt its lift is (``lifter``, ``lift``, ``attempt_number``,
        ``weight_kg``, from ``meet.state``) and, once known, its ``official`` lights and result."""
        ids = sorted({item["lift_id"] for item in items})
        if not ids:
            return items
        lifts = {int(r.id): r for r in conn.execute(select(db.lifts).where(db.lifts.c.id.in_(ids))).all()}
        lights = {
            int(r["lift_id"]): dict(r)
            for r in conn.execute(select(db.lights).where(db.lights.c.lift_id.in_(ids))).mappings()
        }
        for item in items:
            lift = lifts.get(item["lift_id"])
            item["lifter"] = None if lift is None else lift.lifter
            item["lift"] = None if lift is None else lift.lift_name
            item["attempt_number"] = (
                None if lift is None or lift.attempt_number is None else int(lift.attempt_number)
            )
            item["weight_kg"] = None if lift is None or lift.weight_kg is None else float(lift.weight_kg)
            given = lights.get(item["lift_id"])
            item["official"] = (
                None
                if given is None
                else {
                    "lights": {k: given.get(k) for k in ("left", "head", "right")},
                    "result": lights_majority(given),
                }
            )
        return items

    # --- lifts ------------------------------------------------------------------------------------

    def lift(self, lift_id: int) -> dict[str, Any] | None:
        found = self.lifts(ids=[lift_id])
        return found[0] if found else None

    def lifts(
        self,
        *,
        ids: list[int] | None = None,
        lifter: str | None = None,
        attempt_number: int | None = None,
        call: str | None = None,
        limit: int = 200,
    ) -> list[dict[str, Any]]:
        """Lifts newest first, each with its cameras, fused call, lights, overrides, appeals and the
        result that stands. ``call`` filters on the system's fused verdict."""
        q = (
            select(db.lifts)
            .order_by(db.lifts.c.bottom_us.desc())
            .limit(limit if call is None else 10 * limit)
        )
        if ids is not None:
            q = q.where(db.lifts.c.id.in_(ids))
        if lifter:
            q = q.where(func.lower(db.lifts.c.lifter).contains(lifter.lower()))
        if attempt_number is not None:
            q = q.where(db.lifts.c.attempt_number == attempt_number)
        with self.engine.connect() as conn:
            rows: list[dict[str, Any]] = [dict(r) for r in conn.execute(q).mappings()]
            if not rows:
                return []
            lift_ids = [r["id"] for r in rows]
            cams: dict[int, list[dict[str, Any]]] = {i: [] for i in lift_ids}
            for r in conn.execute(
                select(db.attempts).where(db.attempts.c.lift_id.in_(lift_ids)).order_by(db.attempts.c.camera)
            ).mappings():
                cams[int(r["lift_id"])].append(self._attempt_item(r))
            lights = {
                int(r["lift_id"]): dict(r)
                for r in conn.execute(select(db.lights).where(db.lights.c.lift_id.in_(lift_ids))).mappings()
            }
            overrides: dict[int, list[dict[str, Any]]] = {i: [] for i in lift_ids}
            for r in conn.execute(
                select(db.overrides).where(db.overrides.c.lift_id.in_(lift_ids)).order_by(db.overrides.c.id)
            ).mappings():
                overrides[int(r["lift_id"])].append(dict(r))
            appeals: dict[int, list[dict[str, Any]]] = {i: [] for i in lift_ids}
            for r in conn.execute(
                select(db.appeals).where(db.appeals.c.lift_id.in_(lift_ids)).order_by(db.appeals.c.id)
            ).mappings():
                appeals[int(r["lift_id"])].append(dict(r))
        out = []
        for lift_row in rows:
            i = lift_row["id"]
            if not cams[i]:
                continue
            fused = fuse_cameras(cams[i])
            if call is not None and fused["verdict"] != call:
                continue
            first = min(cams[i], key=lambda c: c["decided_us"])
            out.append(
                {
                    **lift_row,
                    "cameras": cams[i],
                    "fused": fused,
                    "decided_us": first["decided_us"],
                    "rack_to_call_ms": first.get("rack_to_call_ms"),
                    "rep": first["attempt"]["rep"],
                    "lights": lights.get(i),
                    "lights_majority": lights_majority(lights.get(i)),
                    "split": is_split(lights.get(i)),
                    "overrides": overrides[i],
                    "appeals": appeals[i],
                    "result": official_result(lights.get(i), appeals[i], overrides[i]),
                }
            )
        return out[:limit]

    def assign_lift(
        self, lift_id: int, lifter: str | None, attempt_number: int | None, lift_name: str | None
    ) -> None:
        """When no meet software feeds ``meet.state``, the organizer says who lifted."""
        with self.engine.begin() as conn:
            res = conn.execute(
                update(db.lifts)
                .where(db.lifts.c.id == lift_id)
                .values(lifter=lifter, attempt_number=attempt_number, lift_name=lift_name)
            )
            if res.rowcount == 0:
                raise StoreError(f"no lift {lift_id}", 404)

    # --- meet state -------------------------------------------------------------------------------

    def set_state(self, msg: dict[str, Any]) -> dict[str, Any]:
        """The platform's state after ``msg`` (a signal keeps the attempt: dashboard.signals); a lifter
        it names joins the meet's roster (dashboard.roster)."""
        from dashboard.roster import note_lifter
        from dashboard.signals import merge_state

        with self.engine.begin() as conn:
            prev = conn.execute(
                select(db.platforms.c.state).where(
                    db.platforms.c.meet == msg["meet"], db.platforms.c.name == msg["platform"]
                )
            ).first()
            msg = merge_state(json.loads(prev.state) if prev is not None and prev.state else None, msg)
            note_lifter(conn, msg["meet"], msg.get("lifter"))
            res = conn.execute(
                update(db.platforms)
                .where(db.platforms.c.meet == msg["meet"], db.platforms.c.name == msg["platform"])
                .values(state=json.dumps(msg))
            )
            if res.rowcount == 0:
                conn.execute(
                    insert(db.platforms).values(meet=msg["meet"], name=msg["platform"], state=json.dumps(msg))
                )
        return msg

    def set_official(self, msg: dict[str, Any]) -> int | None:
        """The meet software's official lights (``meet.state`` with ``official``) onto the lift of the
        attempt it names. None when no lift of that attempt is on record yet: the lift takes them when
        its first call arrives (the message is kept in the events log, see :meth:`_official_for`)."""
        if not msg.get("official") or not msg.get("lifter"):
            return None
        with self.engine.begin() as conn:
            row = conn.execute(
                select(db.lifts.c.id)
                .where(db.lifts.c.meet == msg["meet"], db.lifts.c.platform == msg["platform"])
                .where(db.lifts.c.lifter == msg["lifter"], db.lifts.c.lift_name == msg.get("lift"))
                .where(db.lifts.c.attempt_number == msg.get("attempt_number"))
                .order_by(db.lifts.c.bottom_us.desc())
            ).first()
            if row is None:
                return None
            self._put_official(conn, int(row.id), msg)
            return int(row.id)

    @staticmethod
    def _put_official(conn: Any, lift_id: int, msg: dict[str, Any]) -> None:
        """Never over official lights: see :func:`dashboard.jury.enter_official`."""
        from dashboard.jury import enter_official

        by = msg["official"].get("source") or "meet software"
        enter_official(conn, lift_id, msg["official"]["lights"], by)

    @staticmethod
    def _official_for(conn: Any, meet: str, platform: str, ctx: dict[str, Any]) -> dict[str, Any] | None:
        """The latest official result the meet software gave for the attempt ``ctx`` names, if any."""
        if not ctx.get("lifter"):
            return None
        rows = conn.execute(
            select(db.events.c.payload)
            .where(db.events.c.type == "official")
            .order_by(db.events.c.seq.desc())
            .limit(200)
        ).all()
        for r in rows:
            s = json.loads(r.payload)
            if (
                s.get("meet"),
                s.get("platform"),
                s.get("lifter"),
                s.get("lift"),
                s.get("attempt_number"),
            ) == (
                meet,
                platform,
                ctx.get("lifter"),
                ctx.get("lift"),
                ctx.get("attempt_number"),
            ):
                return s
        return None

    def states(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(db.platforms.c.state).where(db.platforms.c.state.is_not(None))).all()
        return [json.loads(r.state) for r in rows]

    @staticmethod
    def _state_at(conn: Any, meet: str, platform: str, at_us: int) -> dict[str, Any]:
        """The meet.state that was current at ``at_us`` (the next lifter may already be called by the
        time the decision arrives), else the latest one."""
        rows = conn.execute(
            select(db.events.c.payload)
            .where(db.events.c.type == "state")
            .order_by(db.events.c.seq.desc())
            .limit(200)
        ).all()
        latest: dict[str, Any] | None = None
        for r in rows:
            s = json.loads(r.payload)
            if s.get("meet") != meet or s.get("platform") != platform or not s.get("lifter"):
                continue
            if latest is None:
                latest = s
            if s.get("at_us", 0) <= at_us:
                return s
        return latest or {}

    # --- events (the reconnect cursor) ------------------------------------------------------------

    def append_event(self, event: dict[str, Any]) -> int:
        """Store one event; its seq is the cursor a reconnecting page sends back.

        The cursor only works if events become visible in seq order. SQLite has one writer at a time,
        so they do; PostgreSQL hands out sequence values at insert time, and a later seq can commit
        before an earlier one, so a page reading in between would skip the earlier event forever.
        A transaction-scoped advisory lock makes appenders (of every dashboard on the database)
        take seq and commit one after the other."""
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": EVENTS_LOCK_KEY})
            res = conn.execute(
                insert(db.events).values(at_us=now_us(), type=event["type"], payload=json.dumps(event))
            )
            assert res.inserted_primary_key is not None
            return int(res.inserted_primary_key[0])

    def events_after(self, seq: int, limit: int) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(db.events.c.seq, db.events.c.payload)
                .where(db.events.c.seq > seq)
                .order_by(db.events.c.seq)
                .limit(limit)
            ).all()
        return [{**json.loads(r.payload), "seq": int(r.seq)} for r in rows]

    def last_seq(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.coalesce(func.max(db.events.c.seq), 0))).scalar_one())

    # --- poses of each attempt window --------------------------------------------------------------

    def add_pose_frames(self, attempt_id: str, frames: list[dict[str, Any]]) -> int:
        """Idempotent by (attempt, capture time): a redelivered frame is not stored twice."""
        added = 0
        with self.engine.begin() as conn:
            have = {
                int(r.capture_us)
                for r in conn.execute(
                    select(db.pose_frames.c.capture_us).where(db.pose_frames.c.attempt_id == attempt_id)
                )
            }
            new = [f for f in frames if int(f["capture_us"]) not in have]
            if new:
                conn.execute(
                    insert(db.pose_frames),
                    [
                        {"attempt_id": attempt_id, "capture_us": int(f["capture_us"]), "data": json.dumps(f)}
                        for f in new
                    ],
                )
                added = len(new)
        return added

    def pose_frames(self, attempt_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(db.pose_frames.c.data)
                .where(db.pose_frames.c.attempt_id == attempt_id)
                .order_by(db.pose_frames.c.capture_us)
            ).all()
        return [json.loads(r.data) for r in rows]

    # --- the referees' lights, overrides, appeals ----------------------------------------------------

    def set_lights(self, lift_id: int, values: Mapping[str, str | None], by: str) -> dict[str, Any]:
        """Lights are locked once official: see :func:`dashboard.jury.enter_lights`."""
        from dashboard.jury import enter_lights

        with self.engine.begin() as conn:
            return enter_lights(conn, lift_id, values, by)

    def add_override(self, lift_id: int, by: str, role: str, verdict: str, reason: str) -> dict[str, Any]:
        if verdict not in ("good", "no_lift"):
            raise StoreError("an override's verdict is good or no_lift", 422)
        if not reason.strip():
            raise StoreError("an override needs a reason", 422)
        with self.engine.begin() as conn:
            self._require_lift(conn, lift_id)
            row = {
                "lift_id": lift_id,
                "by": by,
                "role": role,
                "verdict": verdict,
                "reason": reason.strip(),
                "at_us": now_us(),
            }
            res = conn.execute(insert(db.overrides).values(**row))
            assert res.inserted_primary_key is not None
        return {**row, "id": int(res.inserted_primary_key[0])}

    def file_appeal(self, lift_id: int, lifter: str, by: str, reason: str) -> dict[str, Any]:
        """One appeal per lift, and at most the meet's limit (default 1) per lifter and meet."""
        with self.engine.begin() as conn:
            lift = self._require_lift(conn, lift_id)
            from dashboard.roster import fold, require_on_roster

            lifter = require_on_roster(conn, lift["meet"], lifter)  # appeals name a roster lifter
            if fold(lift["lifter"] or "") != fold(lifter):
                raise StoreError("this lift is not yours to appeal", 403)
            limit_row = conn.execute(
                select(db.meets.c.appeal_limit).where(db.meets.c.name == lift["meet"])
            ).first()
            limit = DEFAULT_APPEAL_LIMIT if limit_row is None else int(limit_row.appeal_limit)
            used = conn.execute(
                select(func.count())
                .select_from(db.appeals)
                .where(
                    and_(db.appeals.c.meet == lift["meet"], func.lower(db.appeals.c.lifter) == lifter.lower())
                )
            ).scalar_one()
            if used >= limit:
                raise StoreError(f"{lifter} has used {used} of {limit} video appeal(s) at this meet")
            row = {
                "lift_id": lift_id,
                "meet": lift["meet"],
                "lifter": lifter,  # the roster's spelling
                "filed_by": by,
                "reason": reason.strip()[:2000],
                "filed_us": now_us(),
                "status": "pending",
            }
            try:
                res = conn.execute(insert(db.appeals).values(**row))
            except IntegrityError as exc:
                raise StoreError("this lift has been appealed already") from exc
            assert res.inserted_primary_key is not None
        return {**row, "id": int(res.inserted_primary_key[0])}

    def appeals(self, status: str | None = None, lifter: str | None = None) -> list[dict[str, Any]]:
        q = select(db.appeals).order_by(db.appeals.c.id)
        if status:
            q = q.where(db.appeals.c.status == status)
        if lifter is not None:
            q = q.where(func.lower(db.appeals.c.lifter) == lifter.lower())
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]

    def appeal(self, appeal_id: int) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            r = conn.execute(select(db.appeals).where(db.appeals.c.id == appeal_id)).mappings().first()
        return None if r is None else dict(r)

    @staticmethod
    def _require_lift(conn: Any, lift_id: int) -> dict[str, Any]:
        row = conn.execute(select(db.lifts).where(db.lifts.c.id == lift_id)).mappings().first()
        if row is None:
            raise StoreError(f"no lift {lift_id}", 404)
        return dict(row)

    # --- the meet's set-up (organizer) ----------------------------------------------------------------

    def add_meet(self, name: str, appeal_limit: int = DEFAULT_APPEAL_LIMIT) -> dict[str, Any]:
        if not name.strip() or "/" in name:
            raise StoreError("a meet name is non-empty and has no '/'", 422)
        if not 0 <= appeal_limit <= 10:
            raise StoreError("appeal limit is 0 to 10", 422)
        with self.engine.begin() as conn:
            res = conn.execute(
                update(db.meets).where(db.meets.c.name == name).values(appeal_limit=appeal_limit)
            )
            if res.rowcount == 0:
                conn.execute(
                    insert(db.meets).values(name=name, appeal_limit=appeal_limit, created_us=now_us())
                )
        return {"name": name, "appeal_limit": appeal_limit}

    def add_platform(self, meet: str, name: str) -> dict[str, Any]:
        if not name.strip() or "/" in name:
            raise StoreError("a platform name is non-empty and has no '/'", 422)
        with self.engine.begin() as conn:
            if conn.execute(select(db.meets.c.name).where(db.meets.c.name == meet)).first() is None:
                raise StoreError(f"no meet {meet!r}; create it first", 404)
            if (
                conn.execute(
                    select(db.platforms.c.name).where(
                        db.platforms.c.meet == meet, db.platforms.c.name == name
                    )
                ).first()
                is None
            ):
                conn.execute(insert(db.platforms).values(meet=meet, name=name))
        return {"meet": meet, "name": name}

    def add_camera(self, meet: str, platform: str, name: str, position: str) -> dict[str, Any]:
        if not name.strip() or "/" in name:
            raise StoreError("a camera name is non-empty and has no '/'", 422)
        if position not in ("front", "left", "right", "side", "rear"):
            raise StoreError("camera position is front, left, right, side or rear", 422)
        with self.engine.begin() as conn:
            if (
                conn.execute(
                    select(db.platforms.c.name).where(
                        db.platforms.c.meet == meet, db.platforms.c.name == platform
                    )
                ).first()
                is None
            ):
                raise StoreError(f"no platform {meet}/{platform}; create it first", 404)
            conn.execute(
                delete(db.cameras).where(
                    db.cameras.c.meet == meet, db.cameras.c.platform == platform, db.cameras.c.name == name
                )
            )
            conn.execute(
                insert(db.cameras).values(meet=meet, platform=platform, name=name, position=position)
            )
        return {
            "meet": meet,
            "platform": platform,
            "name": name,
            "position": position,
            "key": f"{meet}/{platform}/{name}",
        }

    def config(self) -> dict[str, Any]:
        with self.engine.connect() as conn:
            return {
                "meets": [
                    dict(r) for r in conn.execute(select(db.meets).order_by(db.meets.c.name)).mappings()
                ],
                "platforms": [
                    {"meet": r.meet, "name": r.name}
                    for r in conn.execute(
                        select(db.platforms.c.meet, db.platforms.c.name).order_by(db.platforms.c.name)
                    )
                ],
                "cameras": [
                    dict(r) for r in conn.execute(select(db.cameras).order_by(db.cameras.c.name)).mappings()
                ],
            }

    # --- explanation cache (by prompt hash) -------------------------------------------------------

    def cached_explanation(self, prompt_hash: str) -> tuple[str, str] | None:
        with self.engine.connect() as conn:
            r = conn.execute(
                select(db.explanation_cache.c.text, db.explanation_cache.c.model).where(
                    db.explanation_cache.c.prompt_hash == prompt_hash
                )
            ).first()
        return None if r is None else (str(r.text), str(r.model))

    def cache_explanation(self, prompt_hash: str, text: str, model: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                delete(db.explanation_cache).where(db.explanation_cache.c.prompt_hash == prompt_hash)
            )
            conn.execute(
                insert(db.explanation_cache).values(
                    prompt_hash=prompt_hash, text=text, model=model, created_us=now_us()
                )
            )

    # --- history --------------------------------------------------------------------------------------

    def agreement(self, meet: str | None = None, base_url: str = "") -> dict[str, Any]:
        """The system's calls against the official lights (see :mod:`dashboard.agreement`)."""
        from dashboard.agreement import report

        return report(self.lifts(limit=100_000), meet=meet, base_url=base_url)


CSV_FIELDS = (
    "lift_id",
    "meet",
    "platform",
    "lifter",
    "lift",
    "attempt",
    "weight_kg",
    "rep",
    "bottom_utc_us",
    "system_call",
    "margin_cm",
    "confidence",
    "cameras",
    "lights_left",
    "lights_head",
    "lights_right",
    "referees",
    "appeal",
    "result",
    "result_by",
)


def lifts_csv(lifts: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_FIELDS)
    for lift in lifts:
        lights = lift["lights"] or {}
        # Shadow mode hides the call from some readers (dashboard/shadow.py): fused is None then.
        fused = lift["fused"] or {"verdict": "hidden", "margin_cm": None, "confidence": ""}
        w.writerow(
            [
                lift["id"],
                lift["meet"],
                lift["platform"],
                lift["lifter"] or "",
                lift["lift_name"] or "",
                lift["attempt_number"] or "",
                lift["weight_kg"] or "",
                lift["rep"],
                lift["bottom_us"],
                fused["verdict"],
                "" if fused["margin_cm"] is None else fused["margin_cm"],
                fused["confidence"],
                " ".join(f"{c['camera']}:{c['attempt'].get('verdict', 'hidden')}" for c in lift["cameras"]),
                lights.get("left") or "",
                lights.get("head") or "",
                lights.get("right") or "",
                lift["lights_majority"] or "",
                lift["appeals"][-1]["status"] if lift["appeals"] else "",
                lift["result"]["verdict"] or "",
                lift["result"]["by"] or "",
            ]
        )
    return buf.getvalue()


# The name the services used before the move to SQLAlchemy.
AttemptStore = DashboardStore
