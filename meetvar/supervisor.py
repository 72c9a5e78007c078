"""A small process supervisor: children that heal, and that never outlive the supervisor.

``meetvar demo`` runs every part (object store, broker, ingest, pose worker, referee, archiver,
dashboard, …) as a child :class:`Service`. A child that exits is started again after an exponential
backoff (``backoff_initial`` doubling up to ``backoff_max``; the streak resets once a child has stayed
up ``stable_after`` seconds), logged with structlog and counted per service. Only the supervisor's own
stop (:meth:`Supervisor.stop_all`, on Ctrl-C/SIGTERM) stops them. A one-shot service
(``restart="on-failure"``) that exits 0 is done, not restarted.

Every child dies with the supervisor, even when the supervisor is killed with SIGKILL: each child asks
the kernel for ``PR_SET_PDEATHSIG = SIGKILL`` between fork and exec (:func:`die_with_parent`). That
works for binaries we do not control (Tansu, SeaweedFS), needs no extra process, and is enforced by the
kernel, which a watchdog pipe cannot match for a child that never reads it. It is Linux-only (the
deployment target; elsewhere the call is skipped). The signal is tied to the *thread* that forked the
child, so services are always started from the supervisor's main thread. A supervisor that dies between
``fork`` and ``prctl`` is caught by comparing ``getppid()`` with the pid it had.

The state of every service is written atomically to a JSON file (``status_path``) on every change;
:func:`supervisor_services` reads it for the dashboard's ``/api/health``.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal

import structlog

__all__ = [
    "STATUS_ENV",
    "Service",
    "ServiceStartError",
    "Supervisor",
    "die_with_parent",
    "meetvar_service",
    "read_status",
    "supervisor_services",
]

log = structlog.get_logger()

STATUS_ENV = "MEETVAR_SUPERVISOR_STATUS"  # where a supervised dashboard finds the status file
_PR_SET_PDEATHSIG = 1
try:  # loaded here, in the parent: no dlopen between fork and exec
    _libc: ctypes.CDLL | None = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
except OSError:  # pragma: no cover
    _libc = None


def die_with_parent(parent_pid: int | None = None) -> None:
    """Run in the child (``preexec_fn``): SIGKILL me when my parent dies.

    With ``parent_pid``, a parent that already died before the call (the child was re-parented) kills
    the child at once instead of leaving it behind.
    """
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if parent_pid is not None and os.getppid() != parent_pid:
        os.kill(os.getpid(), signal.SIGKILL)


RestartPolicy = Literal["always", "on-failure"]


@dataclass(frozen=True)
class Service:
    """One supervised child.

    :param argv: the command line.
    :param env: variables added to the supervisor's environment.
    :param ready: called with the new process right after each start; raises if it never gets ready
        (then the start counts as a failure). ``None``: started is ready.
    :param restart: ``"always"``, or ``"on-failure"`` for a one-shot service whose exit 0 means done.
    :param stop_order: lower stops first; equal orders stop together (sources, then consumers, then
        the broker and the store they write to).
    :param stop_grace: seconds between SIGTERM and SIGKILL at stop.
    :param final_codes: exit codes after which a restart cannot help (a refused password, a bad
        argument): the service is left ``failed`` and its last log lines say why, instead of knocking
        on the same door with backoff all day.
    """

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    ready: Callable[[subprocess.Popen[bytes]], None] | None = None
    restart: RestartPolicy = "always"
    stop_order: int = 50
    stop_grace: float = 8.0
    final_codes: frozenset[int] = frozenset()


def meetvar_service(name: str, args: Sequence[str], **kwargs: Any) -> Service:
    """A ``meetvar`` subcommand (``python -m meetvar.cli ARGS``) as a service."""
    return Service(name, [sys.executable, "-m", "meetvar.cli", *args], **kwargs)


class ServiceStartError(RuntimeError):
    """A service exited or never got ready when started."""


@dataclass
class _Child:
    spec: Service
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    log_file: IO[bytes] | None = None
    state: Literal["starting", "running", "backoff", "done", "failed", "stopped"] = "starting"
    restarts: int = 0
    streak: int = 0  # exits in a row without staying up stable_after seconds
    started_at: float = 0.0  # monotonic
    up_since: str | None = None
    next_start: float = 0.0
    last_exit: int | None = None
    last_exit_at: str | None = None

    def tail(self, lines: int = 8) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def to_json(self) -> dict[str, Any]:
        running = self.proc is not None and self.state in ("starting", "running")
        return {
            "state": self.state,
            "pid": self.proc.pid if running and self.proc is not None else None,
            "restarts": self.restarts,
            "up_since": self.up_since if running else None,
            "last_exit": self.last_exit,
            "last_exit_at": self.last_exit_at,
        }


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Supervisor:
    """Starts :class:`Service` children, restarts those that exit, stops them all in order.

    ``on_exit(name, code, log_tail)`` is called whenever a child exits on its own (code < 0: killed by
    that signal), for a human-readable report.
    """

    def __init__(
        self,
        log_dir: Path,
        status_path: Path | None = None,
        *,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        stable_after: float = 30.0,
        on_exit: Callable[[str, int, str], None] | None = None,
    ) -> None:
        self.log_dir = Path(log_dir)
        self.status_path = status_path
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.stable_after = stable_after
        self.on_exit = on_exit
        self._children: dict[str, _Child] = {}
        self.log_dir.mkdir(parents=True, exist_ok=True)

    # -- public surface -------------------------------------------------------------------------------

    def start(self, spec: Service) -> None:
        """Start ``spec`` now and wait until it is ready; raises :class:`ServiceStartError` (and forgets
        the service) if it is not. From then on it is supervised."""
        if spec.name in self._children:
            raise ValueError(f"a service named {spec.name!r} is already supervised")
        child = _Child(spec, self.log_dir / f"{spec.name}.log")
        self._children[spec.name] = child
        try:
            self._launch(child)
        except ServiceStartError:
            del self._children[spec.name]
            self._write_status()
            raise

    def poll(self) -> None:
        """One pass: notice exits, schedule restarts with backoff, restart those that are due."""
        now = time.monotonic()
        for child in list(self._children.values()):
            if child.state in ("starting", "running"):
                assert child.proc is not None
                code = child.proc.poll()
                if code is not None:
                    self._exited(child, code, now)
            elif child.state == "backoff" and now >= child.next_start:
                self._restart(child)

    def run(self, interval: float = 0.25) -> None:
        """Supervise until interrupted (KeyboardInterrupt, or whatever the caller's signal handler raises)."""
        while True:
            self.poll()
            time.sleep(interval)

    def stop_all(self) -> None:
        """SIGTERM every child's process group, in ``stop_order`` tiers; SIGKILL what outlives its grace."""
        tiers = sorted({c.spec.stop_order for c in self._children.values()})
        for tier in tiers:
            group = [c for c in self._children.values() if c.spec.stop_order == tier]
            live = [c for c in group if c.proc is not None and c.proc.poll() is None]
            for child in live:
                assert child.proc is not None
                _signal_group(child.proc, signal.SIGTERM)
            signalled = time.monotonic()
            for child in live:
                assert child.proc is not None
                try:
                    child.proc.wait(timeout=max(0.05, signalled + child.spec.stop_grace - time.monotonic()))
                except subprocess.TimeoutExpired:
                    log.warning("supervisor.kill", service=child.spec.name, grace_s=child.spec.stop_grace)
                # Also whatever of its group is left (a leader that exited, children that ignored SIGTERM).
                _signal_group(child.proc, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.proc.wait(timeout=5)
            for child in group:
                self._close_log(child)
                child.state = "stopped"
        self._write_status()

    def status(self) -> dict[str, Any]:
        return {
            "supervisor_pid": os.getpid(),
            "updated_at": _now_iso(),
            "services": {name: c.to_json() for name, c in self._children.items()},
        }

    def pid(self, name: str) -> int | None:
        child = self._children.get(name)
        return child.proc.pid if child is not None and child.proc is not None else None

    def restarts(self, name: str) -> int:
        return self._children[name].restarts

    # -- internals ------------------------------------------------------------------------------------

    def _launch(self, child: _Child) -> None:
        spec = child.spec
        self._close_log(child)
        child.log_file = child.log_path.open("ab")
        child.proc = subprocess.Popen(
            list(spec.argv),
            stdout=child.log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **spec.env},
            start_new_session=True,  # Ctrl-C reaches the supervisor only; it stops the children in order
            preexec_fn=functools.partial(die_with_parent, os.getpid()),
        )
        child.state = "starting"
        child.started_at = time.monotonic()
        child.up_since = _now_iso()
        self._write_status()
        if spec.ready is not None:
            try:
                spec.ready(child.proc)
            except Exception as exc:
                _signal_group(child.proc, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.proc.wait(timeout=5)
                raise ServiceStartError(
                    f"the {spec.name} service did not start: {exc}\n{child.tail()}\nsee {child.log_path}"
                ) from exc
        child.state = "running"
        self._write_status()

    def _exited(self, child: _Child, code: int, now: float) -> None:
        name = child.spec.name
        child.last_exit, child.last_exit_at = code, _now_iso()
        if child.proc is not None:
            _signal_group(child.proc, signal.SIGKILL)  # whatever it left behind in its group
        self._close_log(child)
        if self.on_exit is not None:
            self.on_exit(name, code, child.tail())
        if code == 0 and child.spec.restart == "on-failure":
            child.state = "done"
            log.info("supervisor.service_done", service=name)
            self._write_status()
            return
        if code in child.spec.final_codes:
            child.state = "failed"
            log.error("supervisor.service_failed", service=name, exit=code, log=str(child.log_path))
            self._write_status()
            return
        uptime = now - child.started_at
        self._schedule_restart(child, now, uptime)
        log.warning(
            "supervisor.service_exited",
            service=name,
            exit=code,
            uptime_s=round(uptime, 1),
            restart_in_s=round(child.next_start - now, 2),
            restarts=child.restarts,
            log=str(child.log_path),
        )

    def _schedule_restart(self, child: _Child, now: float, uptime: float) -> None:
        if uptime >= self.stable_after:
            child.streak = 0
        delay = min(self.backoff_max, self.backoff_initial * 2**child.streak)
        child.streak += 1
        child.state = "backoff"
        child.next_start = now + delay
        self._write_status()

    def _restart(self, child: _Child) -> None:
        child.restarts += 1
        try:
            self._launch(child)
        except ServiceStartError as exc:
            child.last_exit = child.proc.returncode if child.proc is not None else None
            child.last_exit_at = _now_iso()
            self._close_log(child)
            now = time.monotonic()
            self._schedule_restart(child, now, 0.0)
            log.error(
                "supervisor.restart_failed",
                service=child.spec.name,
                restarts=child.restarts,
                retry_in_s=round(child.next_start - now, 2),
                error=str(exc).splitlines()[0],
            )
            return
        log.info(
            "supervisor.service_restarted",
            service=child.spec.name,
            restarts=child.restarts,
            pid=child.proc.pid if child.proc is not None else None,
        )

    def _close_log(self, child: _Child) -> None:
        if child.log_file is not None:
            child.log_file.close()
            child.log_file = None

    def _write_status(self) -> None:
        if self.status_path is None:
            return
        tmp = self.status_path.with_name(f".{self.status_path.name}.{os.getpid()}.tmp")
        with contextlib.suppress(OSError):
            tmp.write_text(json.dumps(self.status(), indent=1))
            os.replace(tmp, self.status_path)


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    # start_new_session=True made each child the leader of its own process group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def read_status(path: Path | str | None) -> dict[str, Any] | None:
    """The supervisor's status file, or None if there is none (not supervised) or it cannot be read."""
    if not path:
        return None
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def supervisor_services() -> dict[str, dict[str, Any]] | None:
    """Per service: state, restarts, last exit — for the dashboard's health data (no pids).

    The file is the one named by ``MEETVAR_SUPERVISOR_STATUS``; None when not run under a supervisor.
    """
    status = read_status(os.environ.get(STATUS_ENV))
    if status is None:
        return None
    keep = ("state", "restarts", "up_since", "last_exit", "last_exit_at")
    return {
        name: {k: info.get(k) for k in keep}
        for name, info in status.get("services", {}).items()
        if isinstance(info, dict)
    }
