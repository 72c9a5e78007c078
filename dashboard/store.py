"""The dashboard's memory of the meet: every attempt with its decision and explanation.

SQLite by default. Writes are upserts keyed by attempt id, because decisions are idempotent per attempt:
a replayed or re-delivered decision replaces the row instead of adding a second one.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS attempts (
    attempt_id TEXT PRIMARY KEY,
    meet TEXT NOT NULL,
    platform TEXT NOT NULL,
    camera TEXT NOT NULL,
    decided_us INTEGER NOT NULL,
    decision TEXT NOT NULL,
    explanation TEXT
);
CREATE INDEX IF NOT EXISTS attempts_by_time ON attempts (decided_us DESC);
"""


class AttemptStore:
    def __init__(self, path: Path | str = ":memory:") -> None:
        self._db = sqlite3.connect(str(path), check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock:
            self._db.executescript(_SCHEMA)

    def upsert_decision(self, msg: dict[str, Any]) -> None:
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO attempts (attempt_id, meet, platform, camera, decided_us, decision)"
                " VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(attempt_id) DO UPDATE SET decision = excluded.decision,"
                " decided_us = excluded.decided_us",
                (
                    msg["attempt_id"],
                    msg["meet"],
                    msg["platform"],
                    msg["camera"],
                    msg["decided_us"],
                    json.dumps(msg),
                ),
            )

    def set_explanation(self, msg: dict[str, Any]) -> bool:
        """Attach an explanation; False when its decision has not arrived yet (the caller retries)."""
        with self._lock, self._db:
            cur = self._db.execute(
                "UPDATE attempts SET explanation = ? WHERE attempt_id = ?",
                (json.dumps(msg), msg["attempt_id"]),
            )
            return cur.rowcount > 0

    def list(self, limit: int = 200) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT decision, explanation FROM attempts ORDER BY decided_us DESC LIMIT ?", (limit,)
            ).fetchall()
        out = []
        for decision, explanation in rows:
            item = json.loads(decision)
            item["explanation"] = json.loads(explanation) if explanation else None
            out.append(item)
        return out

    def close(self) -> None:
        with self._lock:
            self._db.close()
