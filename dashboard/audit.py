"""The append-only audit log of every human action, hash-chained so tampering is detectable.

Each entry's hash is sha256 over the previous entry's hash and the entry's own canonical JSON, so
changing, removing or reordering any past entry breaks every hash after it; :func:`verify` walks the
chain and names the first entry that does not match. The database layer never updates or deletes an
entry (triggers refuse it, on SQLite and on PostgreSQL: see :mod:`dashboard.db`; on PostgreSQL also grant
the service INSERT/SELECT only, so it cannot drop them).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from dashboard import db
from stream_processors.schemas import canonical_json

GENESIS = "0" * 64

AuditSink = Callable[[dict[str, Any]], None]


def entry_hash(prev_hash: str, entry: dict[str, Any]) -> str:
    """The chain link: what the entry says, bound to everything before it."""
    body = {k: entry[k] for k in ("id", "at_us", "actor", "role", "action", "target", "details")}
    return hashlib.sha256(f"{prev_hash}\n{canonical_json(body)}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    entries: int
    first_bad_id: int | None = None
    problem: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "first_bad_id": self.first_bad_id,
            "problem": self.problem,
        }


class AuditLog:
    """Appends and verifies. ``sink`` (e.g. a Kafka producer of the ``audit`` topic) gets every entry
    after it is committed; it is optional, so the dashboard works without a broker."""

    def __init__(self, engine: Engine, sink: AuditSink | None = None) -> None:
        self.engine = engine
        self.sink = sink
        try:
            with engine.begin() as conn:
                if conn.execute(select(db.audit_head.c.id)).first() is None:
                    conn.execute(insert(db.audit_head).values(id=1, last_id=0, hash=GENESIS))
        except IntegrityError:
            pass  # another dashboard on the same database made the head at the same moment: it is there

    def append(
        self, actor: str, role: str, action: str, target: str, details: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Add one entry. The id is the head's last id + 1, taken under the head lock, so the hash
        can cover the id and the row is written once, complete (no update of an audit row, ever)."""
        with self.engine.begin() as conn:
            last_id, prev = self._lock_head(conn)
            entry: dict[str, Any] = {
                "id": last_id + 1,
                "at_us": time.time_ns() // 1000,
                "actor": actor,
                "role": role,
                "action": action,
                "target": target,
                "details": canonical_json(details or {}),
            }
            digest = entry_hash(prev, entry)
            conn.execute(insert(db.audit).values(**entry, prev_hash=prev, hash=digest))
            conn.execute(
                update(db.audit_head).where(db.audit_head.c.id == 1).values(last_id=entry["id"], hash=digest)
            )
        out = {**entry, "details": details or {}, "prev_hash": prev, "hash": digest}
        if self.sink is not None:
            with contextlib.suppress(Exception):  # the database is the record; the topic is a copy
                self.sink(out)
        return out

    @staticmethod
    def _lock_head(conn: Connection) -> tuple[int, str]:
        # A no-op UPDATE takes the row lock (PostgreSQL) / write lock (SQLite) before reading.
        conn.execute(update(db.audit_head).where(db.audit_head.c.id == 1).values(id=1))
        row = conn.execute(select(db.audit_head.c.last_id, db.audit_head.c.hash)).one()
        return int(row.last_id), str(row.hash)

    def entries(self, limit: int = 500, after_id: int = 0) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(db.audit).where(db.audit.c.id > after_id).order_by(db.audit.c.id).limit(limit)
            ).mappings()
            return [{**dict(r), "details": json.loads(r["details"])} for r in rows]

    def verify(self) -> VerifyResult:
        """Walk the whole chain; also check the head, so deleting the newest entries is caught too."""
        prev = GENESIS
        count = 0
        last_id = 0
        with self.engine.connect() as conn:
            for r in conn.execute(select(db.audit).order_by(db.audit.c.id)).mappings():
                count += 1
                entry = dict(r)
                if entry["prev_hash"] != prev:
                    return VerifyResult(
                        False, count, entry["id"], "its prev_hash does not match the entry before it"
                    )
                if entry_hash(prev, entry) != entry["hash"]:
                    return VerifyResult(False, count, entry["id"], "its content does not match its hash")
                prev = entry["hash"]
                last_id = entry["id"]
            head = conn.execute(select(db.audit_head)).mappings().one()
        if head["hash"] != prev or head["last_id"] != last_id:
            return VerifyResult(False, count, last_id or None, "entries after it are missing (head mismatch)")
        return VerifyResult(True, count)
