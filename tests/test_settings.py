"""Every service setting from the environment: the variable is the flag's default, the flag still wins."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from meetvar.cli import build_parser
from meetvar.settings import SETTINGS

ROOT = Path(__file__).resolve().parents[1]


def test_environment_fills_required_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEETVAR_BROKER", "kafka:9092")
    monkeypatch.setenv("MEETVAR_STORE", "s3://meetvar?endpoint=http://s3:8333")
    monkeypatch.setenv("MEETVAR_DB", "postgresql+psycopg://meetvar@postgres/meetvar")
    monkeypatch.setenv("MEETVAR_PUBLIC_URL", "https://var.example.org")
    monkeypatch.setenv("MEETVAR_ALLOWED_ORIGINS", "https://a.example, https://b.example:8443")
    monkeypatch.setenv("MEETVAR_HOST", "0.0.0.0")
    monkeypatch.setenv("MEETVAR_PORT", "8080")
    monkeypatch.setenv("MEETVAR_DATA_DIR", "/var/lib/meetvar/referee")
    monkeypatch.setenv("MEETVAR_POSE_BACKEND", "torch")
    monkeypatch.setenv("MEETVAR_POSE_THREADS", "4")
    monkeypatch.setenv("MEETVAR_POSE_PRECISION", "fp16")
    monkeypatch.setenv("MEETVAR_CAMERA", "open/p1/side")
    p = build_parser()
    dash = p.parse_args(["dashboard"])
    assert (dash.broker, dash.db, dash.store) == (
        "kafka:9092",
        "postgresql+psycopg://meetvar@postgres/meetvar",
        "s3://meetvar?endpoint=http://s3:8333",
    )
    assert (dash.host, dash.port, dash.public_url) == ("0.0.0.0", 8080, "https://var.example.org")
    assert dash.allowed_origins == "https://a.example, https://b.example:8443"
    pose = p.parse_args(["pose-worker"])
    assert (pose.backend, pose.threads, pose.precision, pose.store) == (
        "torch",
        4,
        "fp16",
        "s3://meetvar?endpoint=http://s3:8333",
    )
    assert p.parse_args(["referee"]).data_dir == "/var/lib/meetvar/referee"
    assert p.parse_args(["ingest", "clip.mp4"]).camera == "open/p1/side"
    assert p.parse_args(["archiver"]).store.startswith("s3://")
    assert p.parse_args(["replay", "--meet", "open"]).broker == "kafka:9092"
    assert p.parse_args(["users", "list"]).db.startswith("postgresql")


def test_flags_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEETVAR_BROKER", "kafka:9092")
    monkeypatch.setenv("MEETVAR_POSE_THREADS", "4")
    argv = ["pose-worker", "--broker", "other:9092", "--store", "x", "--threads", "2"]
    args = build_parser().parse_args(argv)
    assert (args.broker, args.threads) == ("other:9092", 2)


def test_without_environment_flags_stay_required(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MEETVAR_BROKER", "")  # an empty compose default counts as unset
    with pytest.raises(SystemExit):
        build_parser().parse_args(["pose-worker", "--store", "x"])
    args = build_parser().parse_args(["dashboard", "--broker", "b:1", "--db", "x.sqlite"])
    assert (args.host, args.port, args.store, args.allowed_origins) == ("127.0.0.1", 8000, None, None)


def test_every_setting_is_documented() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Configuration") :]
    section = section[: section.index("\n## ", 3)]
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", section))
    assert set(SETTINGS) <= documented, set(SETTINGS) - documented
    deploy = (ROOT / "deploy" / "README.md").read_text()
    used = {name for name in SETTINGS if name.startswith("MEETVAR_")} - {"MEETVAR_LOGIN_TOKEN"}
    missing = {name for name in used if name not in deploy}
    assert not missing, f"deploy/README.md does not document {sorted(missing)}"
