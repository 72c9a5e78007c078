"""The dashboard's tables, through SQLAlchemy Core so one schema runs on SQLite (the default) and on
PostgreSQL (pass its URL unchanged: ``postgresql+psycopg://user@host/db``).

Core rather than the ORM: every access is a small, explicit statement, which keeps the upsert and
audit-chain logic visible. JSON payloads are stored as text so both back ends read them the same way.
Times are UTC microseconds in BIGINT columns, like every message on the topics.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    false,
    inspect,
    text,
)
from sqlalchemy.pool import StaticPool

# SQLite autoincrements only an INTEGER PRIMARY KEY; PostgreSQL gets a real 64-bit identity.
BigId = BigInteger().with_variant(Integer, "sqlite")

metadata = MetaData()

settings = Table(
    "settings",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

meets = Table(
    "meets",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("appeal_limit", Integer, nullable=False, default=1),
    Column("created_us", BigInteger, nullable=False),
    # Shadow mode (dashboard/shadow.py): the system's calls hidden from all but the organizer until
    # the attempt's official lights are in.
    Column("shadow", Boolean, nullable=False, default=False, server_default=false()),
)

platforms = Table(
    "platforms",
    metadata,
    Column("meet", String(100), primary_key=True),
    Column("name", String(100), primary_key=True),
    # The latest meet.state of the platform (JSON), so a page that connects sees who is lifting.
    Column("state", Text),
)

cameras = Table(
    "cameras",
    metadata,
    Column("meet", String(100), primary_key=True),
    Column("platform", String(100), primary_key=True),
    Column("name", String(100), primary_key=True),
    Column("position", String(20), nullable=False, default="side"),
)

users = Table(
    "users",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("role", String(20), nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("lifter", String(200)),  # the lifter a lifter or coach account speaks for
    Column("active", Boolean, nullable=False, default=True),
    Column("created_us", BigInteger, nullable=False),
)

sessions = Table(
    "sessions",
    metadata,
    # sha256 of the random session id: a leaked database does not leak live sessions.
    Column("sid_hash", String(64), primary_key=True),
    Column("user_id", BigId, ForeignKey("users.id"), nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Column("expires_us", BigInteger, nullable=False),
)

login_tokens = Table(
    "login_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("user_id", BigId, ForeignKey("users.id"), nullable=False),
    Column("expires_us", BigInteger, nullable=False),
    Column("used_us", BigInteger),
)

lifts = Table(
    "lifts",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("meet", String(100), nullable=False),
    Column("platform", String(100), nullable=False),
    Column("bottom_us", BigInteger, nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Column("lifter", String(200)),
    Column("lift_name", String(20)),
    Column("attempt_number", Integer),
    Column("weight_kg", Float),
    Index("lifts_by_platform_bottom", "meet", "platform", "bottom_us"),
)

attempts = Table(
    "attempts",
    metadata,
    Column("attempt_id", String(300), primary_key=True),
    Column("lift_id", BigId, ForeignKey("lifts.id"), nullable=False),
    Column("meet", String(100), nullable=False),
    Column("platform", String(100), nullable=False),
    Column("camera", String(100), nullable=False),
    Column("decided_us", BigInteger, nullable=False),
    Column("decision", Text, nullable=False),
    Column("explanation", Text),
    Index("attempts_by_time", "decided_us"),
    Index("attempts_by_lift", "lift_id"),
)

pose_frames = Table(
    "pose_frames",
    metadata,
    Column("attempt_id", String(300), primary_key=True),
    Column("capture_us", BigInteger, primary_key=True),
    Column("data", Text, nullable=False),
)

lights = Table(
    "lights",
    metadata,
    Column("lift_id", BigId, ForeignKey("lifts.id"), primary_key=True),
    Column("left", String(4)),
    Column("head", String(4)),
    Column("right", String(4)),
    Column("entered_by", String(100), nullable=False),
    Column("entered_us", BigInteger, nullable=False),
)

overrides = Table(
    "overrides",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("lift_id", BigId, ForeignKey("lifts.id"), nullable=False),
    Column("by", String(100), nullable=False),
    Column("role", String(20), nullable=False),
    Column("verdict", String(10), nullable=False),
    Column("reason", Text, nullable=False),
    Column("at_us", BigInteger, nullable=False),
)

appeals = Table(
    "appeals",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("lift_id", BigId, ForeignKey("lifts.id"), nullable=False),
    Column("meet", String(100), nullable=False),
    Column("lifter", String(200), nullable=False),
    Column("filed_by", String(100), nullable=False),
    Column("reason", Text, nullable=False),
    Column("filed_us", BigInteger, nullable=False),
    Column("status", String(10), nullable=False, default="pending"),  # pending | reversed | upheld
    Column("decided_by", String(100)),
    Column("decided_us", BigInteger),
    Column("note", Text),
    UniqueConstraint("lift_id", "lifter", name="one_appeal_per_lift"),
)

# The jury of three (dashboard/jury.py): each member's vote on an appeal, with the required reason.
appeal_votes = Table(
    "appeal_votes",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("appeal_id", BigId, ForeignKey("appeals.id"), nullable=False),
    Column("juror", String(100), nullable=False),
    Column("vote", String(10), nullable=False),  # uphold | reverse
    Column("reason", Text, nullable=False),
    Column("at_us", BigInteger, nullable=False),
    UniqueConstraint("appeal_id", "juror", name="one_vote_per_juror"),
)

# The meet's lifters (dashboard/roster.py): appeals name one of them. ``key`` is the name folded
# (case, spaces), so "ann  LEE" and "Ann Lee" are one lifter.
roster = Table(
    "roster",
    metadata,
    Column("meet", String(100), primary_key=True),
    Column("key", String(200), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("division", String(100)),
    Column("source", String(20), nullable=False),  # organizer | openlifter | meet.state
    Column("added_us", BigInteger, nullable=False),
)

events = Table(
    "events",
    metadata,
    # The cursor a reconnecting page sends back: it gets exactly the events after it.
    Column("seq", BigId, primary_key=True, autoincrement=True),
    Column("at_us", BigInteger, nullable=False),
    Column("type", String(30), nullable=False),
    Column("payload", Text, nullable=False),
)

explanation_cache = Table(
    "explanation_cache",
    metadata,
    Column("prompt_hash", String(64), primary_key=True),
    Column("model", String(100), nullable=False),
    Column("text", Text, nullable=False),
    Column("created_us", BigInteger, nullable=False),
)

audit = Table(
    "audit",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("at_us", BigInteger, nullable=False),
    Column("actor", String(100), nullable=False),
    Column("role", String(20), nullable=False),
    Column("action", String(40), nullable=False),
    Column("target", String(300), nullable=False),
    Column("details", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

# One row; updating it inside the append transaction serialises appenders on any back end
# (a row lock on PostgreSQL, the write lock on SQLite), so the chain can never fork.
audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("last_id", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
)

_SQLITE_APPEND_ONLY = (
    "CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit "
    "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit "
    "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
)

# The same guard on PostgreSQL: a trigger function that refuses UPDATE and DELETE on the audit table.
_POSTGRES_APPEND_ONLY = (
    "CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$",
    "DROP TRIGGER IF EXISTS audit_no_update ON audit",
    "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit FOR EACH ROW EXECUTE FUNCTION audit_append_only()",
    "DROP TRIGGER IF EXISTS audit_no_delete ON audit",
    "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit FOR EACH ROW EXECUTE FUNCTION audit_append_only()",
)


def database_url(target: str | Path) -> str:
    """A SQLAlchemy URL from what the CLI got: a URL passes through, a path becomes a SQLite file."""
    text_target = str(target)
    if "://" in text_target:
        return text_target
    if text_target == ":memory:":
        return "sqlite://"
    return f"sqlite:///{Path(text_target).resolve()}"


def _add_missing_columns(engine: Engine) -> None:
    """``create_all`` makes missing tables but never alters existing ones: a database made by an older
    release gets the columns added since (each with a server default, so old rows stay valid)."""
    have_tables = set(inspect(engine).get_table_names())
    for table in metadata.sorted_tables:
        if table.name not in have_tables:
            continue
        have = {c["name"] for c in inspect(engine).get_columns(table.name)}
        for column in table.columns:
            if column.name in have or column.server_default is None:
                continue
            kind = column.type.compile(dialect=engine.dialect)
            default = column.server_default.arg  # type: ignore[attr-defined]
            default_sql = default.compile(dialect=engine.dialect) if hasattr(default, "compile") else default
            null = "" if column.nullable else " NOT NULL"
            add = f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" {kind}{null} DEFAULT {default_sql}'
            with engine.begin() as conn:
                conn.exec_driver_sql(add)


def make_engine(target: str | Path) -> Engine:
    """Engine with the tables created. SQLite gets WAL and a busy timeout so the feed's writes and
    the request handlers' writes wait for each other instead of failing with "database is locked"."""
    url = database_url(target)
    kwargs: dict[str, Any] = {"future": True}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        if url in ("sqlite://", "sqlite:///:memory:"):
            kwargs["poolclass"] = StaticPool  # one shared in-memory database, not one per connection
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            if url not in ("sqlite://", "sqlite:///:memory:"):
                cur.execute("PRAGMA journal_mode=WAL")
            cur.close()

    if engine.dialect.name == "postgresql":
        # Two dashboards (or a dashboard and `meetvar users`) starting together on one database race on
        # CREATE TABLE and CREATE OR REPLACE FUNCTION ("tuple concurrently updated"): one at a time.
        with engine.connect() as lock:
            lock.exec_driver_sql(f"SELECT pg_advisory_lock({SCHEMA_LOCK_KEY})")
            lock.commit()
            try:
                _create_schema(engine)
            finally:
                lock.exec_driver_sql(f"SELECT pg_advisory_unlock({SCHEMA_LOCK_KEY})")
                lock.commit()
    else:
        _create_schema(engine)
    return engine


#: The advisory lock key that serialises schema set-up on a shared PostgreSQL (any fixed bigint).
SCHEMA_LOCK_KEY = 0x6D656574766172  # "meetvar"


def _create_schema(engine: Engine) -> None:
    metadata.create_all(engine)
    _add_missing_columns(engine)
    if engine.dialect.name == "sqlite":
        with engine.begin() as conn:
            for stmt in _SQLITE_APPEND_ONLY:
                conn.execute(text(stmt))
    elif engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            for stmt in _POSTGRES_APPEND_ONLY:
                conn.exec_driver_sql(stmt)
