"""Settings from the environment: every service flag has a ``MEETVAR_…`` variable as its default.

Containers and Kubernetes pass configuration as environment variables; people at a shell pass flags.
:func:`env_option` makes both work for the same option: the variable, when set (and not empty), is the
flag's default, and a flag on the command line still wins. A required flag stops being required when its
variable is set. :data:`SETTINGS` lists every variable with what it means — README's Configuration table
is checked against it (tests/test_settings.py).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

# name -> (flag it is the default of, meaning). The README table documents exactly these.
SETTINGS: dict[str, tuple[str, str]] = {
    "MEETVAR_BROKER": ("--broker", "Kafka bootstrap servers HOST:PORT[,HOST:PORT] of every service"),
    "MEETVAR_STORE": (
        "--store",
        "object store: a folder, file:///path or s3://bucket[/prefix]?endpoint=URL (claim checks,"
        " archive, replays)",
    ),
    "MEETVAR_CLAIMS": ("--claims", "archiver: the claim-check store, when it is not the archive itself"),
    "MEETVAR_DB": ("--db", "dashboard database: a SQLite path or postgresql+psycopg://user@host/db"),
    "MEETVAR_PUBLIC_URL": ("--public-url", "the https URL phones and tablets reach the dashboard at"),
    "MEETVAR_ALLOWED_ORIGINS": (
        "--allowed-origins",
        "comma-separated extra browser origins the dashboard accepts (https://host[:port])",
    ),
    "MEETVAR_HOST": ("--host", "listen address of the dashboard and the WHIP endpoint"),
    "MEETVAR_PORT": ("--port", "listen port of the dashboard and the WHIP endpoint"),
    "MEETVAR_CAMERA": ("--camera", "camera id meet/platform/camera of an ingest or camera service"),
    "MEETVAR_DATA_DIR": ("--data-dir", "referee: folder of its local state"),
    "MEETVAR_POSE_BACKEND": ("--backend", "pose worker: onnxruntime (CPU), torch (CUDA) or tensorrt"),
    "MEETVAR_POSE_THREADS": ("--threads", "pose worker: CPU threads of the pose model"),
    "MEETVAR_POSE_PRECISION": ("--precision", "pose worker: fp32 or fp16 (GPU backends)"),
    "MEETVAR_WHIP_TOKENS": ("--tokens", "WHIP camera tokens file (hashed): dashboard and `meetvar whip`"),
    "MEETVAR_LIFTINGCAST_PASSWORD": ("--password", "meetvar liftingcast: the LiftingCast meet's password"),
    "MEETVAR_LOGIN_TOKEN": ("", "dashboard: a one-time organizer login token, read once and removed"),
    "ANTHROPIC_API_KEY": ("", "explanations by Claude; without it a deterministic template"),
    "MEETVAR_CLAUDE_MODEL": ("", "the Claude model of the explanations (default claude-sonnet-4-5)"),
    "ANTHROPIC_BASE_URL": ("", "another Messages API endpoint (the tests use a local one)"),
    "AWS_ACCESS_KEY_ID": ("", "S3 credentials of an s3:// store (never put in the store URL)"),
    "AWS_SECRET_ACCESS_KEY": ("", "S3 credentials of an s3:// store"),
    "AWS_REGION": ("", "S3 region when the store URL has no ?region= (default us-east-1)"),
}


def env_value(name: str) -> str | None:
    """The variable's value, or None when it is unset or empty (an empty compose default means unset)."""
    value = os.environ.get(name, "").strip()
    return value or None


def env_option(
    parser: argparse.ArgumentParser | Any,
    *flags: str,
    env: str,
    help: str = "",
    required: bool = False,
    default: Any = None,
    **kwargs: Any,
) -> None:
    """``parser.add_argument(*flags, …)`` with ``$env`` as the default (argparse converts it by ``type``)."""
    if env not in SETTINGS:
        raise KeyError(f"{env} is not in meetvar.settings.SETTINGS — document it there")
    value = env_value(env)
    note = f"env {env}"
    parser.add_argument(
        *flags,
        default=value if value is not None else default,
        required=required and value is None,
        help=f"{help} ({note})" if help else note,
        **kwargs,
    )


def split_list(text: str | None) -> list[str]:
    """``"a, b,,c"`` → ``["a", "b", "c"]`` (comma-separated list settings)."""
    return [part.strip() for part in (text or "").split(",") if part.strip()]
