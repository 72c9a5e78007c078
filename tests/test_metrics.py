"""Issue 11, item 8: Prometheus metrics, health endpoints and alert rules.

The dashboard's ``/metrics`` is scraped from the real app under uvicorn; the other services' metrics
server is started the way ``--metrics-port`` starts it; every alert rule in deploy/ is checked to name
only metrics this code exports."""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from dashboard.auth import Auth
from dashboard.feed import FeedTopics, dispatch
from dashboard.state import DashboardState
from dashboard.store import DashboardStore
from meetvar import metrics
from meetvar.cli import build_parser
from meetvar.commands.metrics import SERVICES, _with_metrics
from stream_processors.schemas import DecisionMsg, PoseMsg
from tests.browser import LiveServer, free_port, synthetic_decisions

ALERTS = Path(__file__).resolve().parent.parent / "deploy" / "prometheus" / "alerts.yml"
EXPECTED = {
    "meetvar_decisions_total",
    "meetvar_errors_total",
    "meetvar_websocket_clients",
    "meetvar_pose_lag_seconds",
    "meetvar_service_restarts_total",
    "meetvar_service_up",
    "meetvar_broker_up",
    "meetvar_frames_total",
    "meetvar_pose_latency_seconds_bucket",
}


def _state() -> DashboardState:
    store = DashboardStore(":memory:")
    return DashboardState(store, auth=Auth(store.engine, anonymous_viewer=True))


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def _names(text: str) -> set[str]:
    """Every series name a scrape can hold (a family's declared type gives its suffixes)."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names |= {s.name for s in family.samples}
        if family.type == "counter":
            names.add(family.name + "_total")
        if family.type == "histogram":
            names |= {family.name + suffix for suffix in ("_bucket", "_sum", "_count")}
    return names


def _value(text: str, name: str, **labels: str) -> float:
    return _samples(text).get((name, frozenset(labels.items())), 0.0)


@pytest.mark.integration
def test_dashboard_metrics_scrape_counts_decisions_errors_clients_lag_and_restarts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    status = tmp_path / "supervisor.json"
    status.write_text(
        json.dumps(
            {"services": {"referee": {"state": "running", "restarts": 3}, "pose": {"state": "backoff"}}}
        )
    )
    monkeypatch.setenv("MEETVAR_SUPERVISOR_STATUS", str(status))
    state = _state()
    topics = FeedTopics()
    decision = DecisionMsg(**synthetic_decisions([1.3])[0])
    verdict = decision.attempt["verdict"]
    with LiveServer(state) as server, httpx.Client(base_url=server.url, timeout=10) as http:
        assert http.get("/healthz").json() == {"ok": True}
        first = http.get("/metrics")
        assert first.status_code == 200 and first.headers["content-type"].startswith("text/plain")
        assert _names(first.text) >= EXPECTED, EXPECTED - _names(first.text)
        assert _value(first.text, "meetvar_service_restarts_total", service="referee") == 3
        assert _value(first.text, "meetvar_service_up", service="referee") == 1
        assert _value(first.text, "meetvar_service_up", service="pose") == 0
        before = _value(first.text, "meetvar_decisions_total", service="dashboard", verdict=verdict)
        bad_before = _value(first.text, "meetvar_errors_total", service="dashboard", kind="bad_message")
        clients_before = _value(first.text, "meetvar_websocket_clients")

        server.call(dispatch, state, topics.decisions, decision.dump())
        server.call(dispatch, state, topics.decisions, b"{not json")
        pose = PoseMsg(
            meet="m",
            platform="p",
            camera="c",
            stream_start_us=0,
            seq=1,
            frame={"capture_us": int((time.time() - 0.5) * 1e6), "keypoints": []},
        )
        server.call(dispatch, state, topics.poses, pose.dump())
        from websockets.sync.client import connect

        with connect(server.url.replace("http", "ws") + "/ws", origin=server.url) as ws:  # type: ignore[arg-type]
            ws.recv(timeout=10)
            during = http.get("/metrics").text
        deadline = time.monotonic() + 10  # the server notices the closed socket on its own loop
        while True:
            after = http.get("/metrics").text
            if _value(after, "meetvar_websocket_clients") == clients_before or time.monotonic() > deadline:
                break
            time.sleep(0.05)

    assert _value(after, "meetvar_decisions_total", service="dashboard", verdict=verdict) == before + 1
    assert _value(after, "meetvar_errors_total", service="dashboard", kind="bad_message") == bad_before + 1
    assert _value(during, "meetvar_websocket_clients") == clients_before + 1
    assert _value(after, "meetvar_websocket_clients") == clients_before
    lag = _value(after, "meetvar_pose_lag_seconds", camera="m/p/c", service="dashboard")
    assert 0.4 < lag < 5.0
    assert _value(after, "meetvar_dashboard_events_total", type="decision") >= 1


def test_services_serve_metrics_on_the_metrics_port(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    ran: list[int] = []
    run = _with_metrics(lambda args: ran.append(args.metrics_port) or 0, "pose-worker")
    assert run(argparse.Namespace(metrics_port=port)) == 0 and ran == [port]
    metrics.FRAMES.labels(camera="m/p/side", stage="pose").inc(30)
    metrics.POSE_LATENCY.observe(0.012)
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    assert _value(text, "meetvar_frames_total", camera="m/p/side", stage="pose") >= 30
    assert _value(text, "meetvar_pose_latency_seconds_count") >= 1
    # Every long-running service takes --metrics-port, and MEETVAR_METRICS_PORT is its default.
    monkeypatch.setenv("MEETVAR_METRICS_PORT", "9464")
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name in ("ingest", "pose-worker", "referee", "archiver"):
        assert name in SERVICES
        assert sub.choices[name].get_default("metrics_port") == "9464"
    args = parser.parse_args(["referee", "--broker", "b:1", "--data-dir", "d", "--metrics-port", "9500"])
    assert args.metrics_port == 9500
    with pytest.raises(SystemExit):
        parser.parse_args(["referee", "--broker", "b:1", "--data-dir", "d", "--metrics-port", "x"])


async def test_ingest_counts_frames_per_camera(tmp_path: Path) -> None:
    from ingest.chunker import Chunk
    from ingest.publisher import CameraId, ChunkSink
    from stream_processors.object_store import LocalObjectStore

    class Producer:
        async def send_and_wait(self, *args: Any, **kwargs: Any) -> None:
            return None

    camera = CameraId.parse("meetm/platp/camc")
    before = metrics.FRAMES.labels(camera=camera.key, stage="ingest")._value.get()
    sink = ChunkSink(Producer(), camera, LocalObjectStore(tmp_path), start_us=1)  # type: ignore[arg-type]
    chunk = Chunk(seq=0, frame_count=3, capture_us=[1, 2, 3], pts_us=[0, 1, 2], width=8, height=8, data=b"x")
    await sink.send(chunk)
    assert metrics.FRAMES.labels(camera=camera.key, stage="ingest")._value.get() == before + 3


def test_every_alert_rule_names_metrics_this_code_exports() -> None:
    rules = [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]
    assert {"MeetvarPoseLagHigh", "MeetvarNoDecisionsWhileFramesFlow", "MeetvarServiceRestarting"} <= {
        r["alert"] for r in rules
    }
    assert "MeetvarBrokerDown" in {r["alert"] for r in rules}
    exported = _names(metrics.exposition().decode())
    for rule in rules:
        assert rule["alert"] and rule["expr"] and rule.get("annotations", {}).get("summary")
        named = set(re.findall(r"\bmeetvar_[a-z_]+\b", rule["expr"]))
        assert named, f"{rule['alert']} names no meetvar metric"
        assert named <= exported, f"{rule['alert']}: {named - exported} not exported"
