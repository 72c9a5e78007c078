"""``--metrics-port PORT`` (or ``MEETVAR_METRICS_PORT``) on every long-running service except the dashboard
(which serves ``/metrics`` on its own port): the service then serves Prometheus metrics on that port.

Registered last among the command modules, it adds the option to the services' parsers and wraps their
command so the metrics server (a daemon thread, :func:`meetvar.metrics.serve`) starts before the service.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

METRICS_PORT_ENV = "MEETVAR_METRICS_PORT"
SERVICES = ("ingest", "pose-worker", "referee", "archiver", "camera", "kinesis", "whip", "replay")


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--metrics-port wants a port number, got {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"--metrics-port {port} is not a TCP port (0–65535)")
    return port


def add_metrics_port(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get(METRICS_PORT_ENV, "").strip()
    parser.add_argument(
        "--metrics-port",
        type=_port,
        default=env or None,  # a string default goes through ``type`` too: a bad value is a usage error
        help=f"serve Prometheus metrics on this port at /metrics (default ${METRICS_PORT_ENV}; none: off)",
    )


def _with_metrics(func: Callable[[argparse.Namespace], int], service: str) -> Callable[..., int]:
    def run(args: argparse.Namespace) -> int:
        port = getattr(args, "metrics_port", None)
        if port is not None:
            import structlog

            from meetvar.metrics import serve

            bound = serve(port)
            structlog.get_logger().info("metrics.serving", service=service, port=bound, path="/metrics")
        return func(args)

    return run


def register(sub: Any) -> None:
    for name in SERVICES:
        parser = sub.choices.get(name)
        if parser is None:
            continue
        add_metrics_port(parser)
        func = parser.get_default("func")
        if func is not None:
            parser.set_defaults(func=_with_metrics(func, name))
