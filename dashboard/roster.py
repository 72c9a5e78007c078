"""The meet's roster: the lifters an appeal may name.

Why a table of its own: an appeal must name a lifter the meet really has, not whatever text an
account or an assignment carried, or the per-lifter appeal limit could be dodged by spelling a name
two ways. The roster is filled by the organizer (a list of names, or an OpenLifter file through the
same reader as ``meetvar openlifter import``) and by every lifter the meet software names on
``meet.state``. Names are matched folded (case and runs of spaces ignored); the roster's spelling is
the one recorded.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update

from dashboard import db
from dashboard.store import StoreError, now_us

MAX_NAME = 200
MAX_LIFTERS = 5000
SOURCES = ("organizer", "openlifter", "meet.state")


def fold(name: str) -> str:
    """The key two spellings of one name share: "ann  LEE" and "Ann Lee" are one lifter."""
    return " ".join(name.split()).casefold()


def _clean_name(name: str) -> str:
    clean = " ".join(str(name).split())
    if not clean:
        raise StoreError("a lifter's name is not empty", 422)
    if len(clean) > MAX_NAME:
        raise StoreError(f"a lifter's name is at most {MAX_NAME} characters: {clean[:40]}…", 422)
    return clean


def _put(conn: Connection, meet: str, name: str, division: str | None, source: str) -> bool:
    """Add one lifter, or give a known one the division now given. True when the lifter is new."""
    key = fold(name)
    have = conn.execute(
        select(db.roster.c.name, db.roster.c.division).where(db.roster.c.meet == meet, db.roster.c.key == key)
    ).first()
    if have is None:
        conn.execute(
            insert(db.roster).values(
                meet=meet, key=key, name=name, division=division, source=source, added_us=now_us()
            )
        )
        return True
    if division and division != have.division:
        conn.execute(
            update(db.roster)
            .where(db.roster.c.meet == meet, db.roster.c.key == key)
            .values(division=division)
        )
    return False


def add_lifters(
    engine: Engine, meet: str, lifters: Iterable[tuple[str, str | None]], source: str = "organizer"
) -> dict[str, Any]:
    """The organizer's list (or an OpenLifter file's) onto the roster of an existing meet."""
    if source not in SOURCES:
        raise ValueError(f"unknown roster source {source!r}")
    entries = [(_clean_name(n), (d or "").strip()[:100] or None) for n, d in lifters]
    if not entries:
        raise StoreError("give at least one lifter", 422)
    if len(entries) > MAX_LIFTERS:
        raise StoreError(f"at most {MAX_LIFTERS} lifters at once", 422)
    with engine.begin() as conn:
        if conn.execute(select(db.meets.c.name).where(db.meets.c.name == meet)).first() is None:
            raise StoreError(f"no meet {meet!r}; create it first", 404)
        added = sum(_put(conn, meet, name, division, source) for name, division in entries)
    return {"meet": meet, "added": added, "given": len(entries), "lifters": lifters_of(engine, meet)}


def note_lifter(conn: Connection, meet: str, name: str | None) -> None:
    """A lifter the meet software named on ``meet.state``: on the roster from now on."""
    if not name or not name.strip() or len(name) > MAX_NAME:
        return
    _put(conn, meet, " ".join(name.split()), None, "meet.state")


def lifters_of(engine: Engine, meet: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(db.roster.c.name, db.roster.c.division, db.roster.c.source)
            .where(db.roster.c.meet == meet)
            .order_by(db.roster.c.key)
        ).mappings()
        return [dict(r) for r in rows]


def require_on_roster(conn: Connection, meet: str, lifter: str) -> str:
    """The roster's spelling of ``lifter``; a clear 422 when the meet has no such lifter."""
    row = conn.execute(
        select(db.roster.c.name).where(db.roster.c.meet == meet, db.roster.c.key == fold(lifter))
    ).first()
    if row is not None:
        return str(row.name)
    empty = conn.execute(select(db.roster.c.key).where(db.roster.c.meet == meet).limit(1)).first() is None
    if empty:
        raise StoreError(
            f"meet {meet!r} has no roster yet, so no appeal can name {lifter!r}: the organizer imports"
            " the roster first (a list of names or an OpenLifter file)",
            422,
        )
    raise StoreError(
        f"{lifter!r} is not on the roster of meet {meet!r}: an appeal names a roster lifter", 422
    )


def from_openlifter(raw: bytes) -> list[tuple[str, str | None]]:
    """Names and divisions from an ``.openlifter`` file's bytes, read by the import's own code."""
    from meetvar.meetsoftware.openlifter import OpenLifterError, entries, roster

    try:
        data = json.loads(raw.decode("utf-8"))
        entries(data, "the uploaded file")
        lifters = roster(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StoreError(f"the uploaded file is not an OpenLifter file (not JSON: {exc})", 422) from None
    except OpenLifterError as exc:
        raise StoreError(str(exc), 422) from None
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        raise StoreError(
            f"the uploaded OpenLifter file has an entry of the wrong shape: {exc}", 422
        ) from None
    return [(lifter.name, None if lifter.division is None else str(lifter.division)) for lifter in lifters]
