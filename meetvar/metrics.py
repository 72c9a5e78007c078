"""Prometheus metrics of every meetvar service: one place that names them all.

The dashboard serves them on ``GET /metrics`` (its own port); the other long-running services
(``ingest``, ``pose-worker``, ``referee``, ``archiver``) serve them on ``--metrics-port`` (or
``MEETVAR_METRICS_PORT``) through :func:`serve`. ``deploy/prometheus/alerts.yml`` alerts on them, and a
test checks that every alert names a metric this module exports.

Counters are exposed with the ``_total`` suffix (``meetvar_frames_total``); rates are Prometheus's job.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = [
    "BROKER_UP",
    "CONTENT_TYPE_LATEST",
    "DECISION_COUNT",
    "ERRORS",
    "EVENTS",
    "FRAMES",
    "POSE_LAG",
    "POSE_LATENCY",
    "RECORDS",
    "WS_CLIENTS",
    "WS_SLOW_CLOSED",
    "exposition",
    "observe_pose_lag",
    "serve",
]

disable_created_metrics()  # no ``*_created`` series: they double the output and nobody alerts on them

FRAMES = Counter(
    "meetvar_frames",
    "Frames handled per camera: stage=ingest (chunked and produced), stage=pose (posed and produced)",
    ["camera", "stage"],
)
POSE_LATENCY = Histogram(
    "meetvar_pose_latency_seconds",
    "Pose worker: decode + model time of one frame",
    buckets=(0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5),
)
POSE_LAG = Gauge(
    "meetvar_pose_lag_seconds",
    "Wall clock minus capture time of the newest pose a consumer received, per camera",
    ["camera", "service"],
)
DECISION_COUNT = Counter(
    "meetvar_decisions",
    "Decisions: produced by the referee, received by the dashboard (service label), by verdict",
    ["service", "verdict"],
)
ERRORS = Counter(
    "meetvar_errors",
    "Errors a service survived (bad message skipped, chunk not decodable, broker lost, HTTP 5xx)",
    ["service", "kind"],
)
RECORDS = Counter("meetvar_archived_records", "Records the archiver wrote to the object store", ["topic"])
EVENTS = Counter("meetvar_dashboard_events", "Events pushed to the dashboard's pages, by type", ["type"])
WS_CLIENTS = Gauge("meetvar_websocket_clients", "Pages connected to the dashboard's /ws")
WS_SLOW_CLOSED = Counter(
    "meetvar_websocket_slow_closed", "WebSocket clients closed because they fell behind (code 4008)"
)
BROKER_UP = Gauge(
    "meetvar_broker_up", "1 while the service's Kafka consumer is connected, else 0", ["service"]
)


class _SupervisorCollector(Collector):
    """``meetvar_service_restarts_total`` and ``meetvar_service_up`` from the supervisor's status file
    (``DATA/supervisor.json``, named by ``MEETVAR_SUPERVISOR_STATUS``); nothing when unsupervised."""

    def collect(self) -> Iterable[Metric]:
        from meetvar.supervisor import supervisor_services

        services = supervisor_services() or {}
        restarts = CounterMetricFamily(
            "meetvar_service_restarts", "Restarts of each supervised service", labels=["service"]
        )
        up = GaugeMetricFamily("meetvar_service_up", "1 while a supervised service runs", labels=["service"])
        for name, info in sorted(services.items()):
            count = info.get("restarts")
            if isinstance(count, int | float) and not isinstance(count, bool):
                restarts.add_metric([str(name)], float(count))
            up.add_metric([str(name)], 1.0 if info.get("state") == "running" else 0.0)
        yield restarts
        yield up

    def describe(self) -> Iterable[Metric]:
        return []  # collected lazily: the file may appear after registration


_supervisor_lock = threading.Lock()
_supervisor_registered = False


def _register_supervisor() -> None:
    global _supervisor_registered
    with _supervisor_lock:
        if not _supervisor_registered:
            REGISTRY.register(_SupervisorCollector())
            _supervisor_registered = True


_register_supervisor()


def observe_pose_lag(msg: Any, service: str) -> None:
    """Set ``meetvar_pose_lag_seconds`` from a received :class:`~stream_processors.schemas.PoseMsg`."""
    frame = getattr(msg, "frame", None)
    if not isinstance(frame, dict):
        return
    capture_us = frame.get("capture_us")
    if isinstance(capture_us, int | float) and capture_us > 0:
        lag = time.time() - capture_us / 1e6
        POSE_LAG.labels(camera=f"{msg.meet}/{msg.platform}/{msg.camera}", service=service).set(lag)


def exposition() -> bytes:
    """Everything this process exports, in the Prometheus text format."""
    return generate_latest(REGISTRY)


_served: dict[int, Any] = {}


def serve(port: int, host: str = "0.0.0.0") -> int:
    """Start the metrics HTTP server (a daemon thread) once per port; returns the bound port
    (``port=0`` picks a free one)."""
    if port in _served and port != 0:
        return port
    server, _thread = start_http_server(port, addr=host)
    bound = int(server.server_address[1])
    _served[bound] = server
    return bound
