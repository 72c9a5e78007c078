"""faust-streaming apps configured to run against Tansu.

faust 0.15.3 runs on top of aiokafka, so it inherits the Tansu gaps described
in :mod:`stream_processors.kafka`; the settings in :func:`make_app` work around
them:

* ``store="memory://"``: RocksDB is not used (tables recover from their
  changelog topics into memory on start).
* ``broker_session_timeout=6`` / ``broker_heartbeat_interval=0.5`` /
  ``broker_rebalance_timeout=6``: Tansu takes about half the session timeout to
  complete a group join, and faust's default session timeout would make
  every start and restart slow.
* ``consumer_auto_offset_reset="earliest"``: Tansu's "latest" is unreliable.
* ``processing_guarantee="at_least_once"``: exactly-once needs transactions,
  which fail on Tansu.  faust's producer never enables idempotence, so
  ``producer_acks=-1`` ("all") is fine.
* ``topic_partitions=1`` / ``topic_replication_factor=1`` / ``topic_allow_declare``:
  faust creates its own topics (agent topics, changelogs, ``-__assignor-__leader``)
  through CreateTopics, which Tansu supports; Tansu's auto-create would make them
  with 4 partitions and there is no CreatePartitions to repair that.
  Use :func:`stream_processors.kafka.ensure_topics` for topics that other
  services produce to before the faust worker is up.
* ``web_enabled=False``: no HTTP server, so several workers share one host.
* request / fetch sizes raised to fit ~8 MB messages.
* The consumer's fetch wait: faust hard-codes aiokafka's ``fetch_max_wait_ms=1500``, and Tansu
  holds a fetch with nothing new for the whole wait instead of answering when a record arrives
  (measured: a record produced while a 1500 ms fetch waits is consumed ~380 ms later, median; with
  100 ms, 15 ms). Every pose reached the referee up to 1.5 s late. :class:`TansuApp` gives faust's
  consumer :data:`FETCH_MAX_WAIT_MS`, what every other service of ours uses.

A worker runs in a process we start ourselves (``python -m some.module``)
via :func:`run_worker`; SIGTERM or SIGINT stops it cleanly with exit code 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NoReturn

import aiokafka
import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TransportT

from stream_processors.kafka import MAX_MESSAGE_BYTES, consumer_settings

__all__ = ["FETCH_MAX_WAIT_MS", "TansuApp", "make_app", "run_worker", "tansu_settings"]

#: How long faust's consumer lets the broker hold an empty fetch (see the module doc).
FETCH_MAX_WAIT_MS: int = consumer_settings(None)["fetch_max_wait_ms"]


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: faust_aiokafka.Transport) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # Read by aiokafka when the consumer starts (its fetcher is made in start()).
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


class TansuApp(faust.App):
    """A ``faust.App`` whose consumer waits at most :data:`FETCH_MAX_WAIT_MS` on a fetch."""

    def _new_transport(self) -> TransportT:
        return _Transport(self.conf.broker_consumer, self)


def tansu_settings(bootstrap: str, *, datadir: Path) -> dict[str, Any]:
    """The ``faust.App`` keyword arguments that make faust work on Tansu (see module doc)."""
    broker = bootstrap if bootstrap.startswith("kafka://") else f"kafka://{bootstrap}"
    return {
        "broker": broker,
        "store": "memory://",
        "datadir": str(datadir),
        "autodiscover": False,
        # group membership on Tansu
        "broker_session_timeout": 6.0,
        "broker_heartbeat_interval": 0.5,
        "broker_rebalance_timeout": 6.0,
        "broker_commit_interval": 1.0,
        "consumer_auto_offset_reset": "earliest",
        # delivery
        "processing_guarantee": "at_least_once",
        "producer_acks": -1,
        "producer_max_request_size": MAX_MESSAGE_BYTES,
        # One record per batch: Tansu's ListOffsets(latest) returns the last batch's
        # base offset + 1, so multi-record batches make faust's changelog highwater
        # too low and table recovery silently drops the newest updates.
        "producer_max_batch_size": 1,
        "consumer_max_fetch_size": MAX_MESSAGE_BYTES,
        # topics
        "topic_allow_declare": True,
        "topic_partitions": 1,
        "topic_replication_factor": 1,
        "table_standby_replicas": 0,
        # process / host
        "web_enabled": False,
        "worker_redirect_stdouts": False,
    }


def make_app(app_id: str, bootstrap: str, *, datadir: Path, **overrides: Any) -> faust.App:
    """A ``faust.App`` configured for Tansu; *overrides* are passed to faust as-is and win.

    *app_id* is also the consumer group id and the prefix of faust's internal
    topics, so give each service its own.
    """
    datadir = Path(datadir)
    datadir.mkdir(parents=True, exist_ok=True)
    return TansuApp(app_id, **{**tansu_settings(bootstrap, datadir=datadir), **overrides})


def run_worker(app: faust.App, *, loglevel: str | int = "info", logfile: str | None = None) -> NoReturn:
    """Run *app* as a faust worker in this process until SIGTERM/SIGINT, then exit.

    This is what ``faust -A module worker`` does, minus the CLI: ``faust.Worker``
    (a ``mode.Worker``) owns the event loop, installs SIGTERM/SIGINT handlers
    that stop all services (agents, consumer, producer) and then raises
    ``SystemExit(0)``.  Call it from ``if __name__ == "__main__":`` of the
    module that defines the agents, and start that module as a subprocess.
    """
    worker = faust.Worker(app, loglevel=loglevel, logfile=logfile, quiet=True)
    worker.execute_from_commandline()
