"""Shared pytest fixtures.

Keep fixtures small and documented; group them by what they start.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from meetvar.supervisor import die_with_parent
from stream_processors.seaweed import SeaweedS3, start_seaweed, stop_weed
from stream_processors.tansu import TansuBroker

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
