"""Shared pytest fixtures.

Keep fixtures small and documented; group them by what they start.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

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
