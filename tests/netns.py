"""Hosts on a network, on one machine: Linux network namespaces on a bridge (iproute2, root).

Each :class:`Host` is a network namespace with one interface (``eth0``, its own address on a /24) whose
other end is a port of a bridge that lives in a namespace of its own (the "switch"), so the machine's
firewall and routes are not involved; the test process joins the switch too, through one more veth,
and reaches every host at its address as a client on the venue network would. :meth:`Network.cut`
pulls a host's cable (its switch port goes down: packets are dropped, connections are not reset) and
:meth:`Network.restore` plugs it back in.

Names carry a per-run tag, so parallel runs and the leftovers of a killed run never collide with a
live one; :meth:`Network.close` removes everything it made even after a failure, and removes a stale
namespace of the same name before it starts.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path


class NetnsUnavailable(RuntimeError):
    """Not root, no ``ip`` (iproute2), or the kernel refused a network namespace."""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``ip ARGS``; a failure raises with ip's own message."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def require_netns() -> None:
    """Raise :class:`NetnsUnavailable` with what is missing, so the test can say it plainly."""
    if os.geteuid() != 0:
        raise NetnsUnavailable(
            f"the multi-host test needs root to create network namespaces (running as uid {os.geteuid()});"
            " CI runs it as root"
        )
    if shutil.which("ip") is None:
        raise NetnsUnavailable("the multi-host test needs iproute2's `ip` (apt-get install iproute2)")
    probe = f"mvprobe-{uuid.uuid4().hex[:8]}"
    made = ip("netns", "add", probe, check=False)
    ip("netns", "del", probe, check=False)
    if made.returncode != 0:
        raise NetnsUnavailable(f"`ip netns add` is refused here: {made.stderr.strip()}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class Host:
    """One machine of the venue network: a namespace, its address and its own scratch folder."""

    name: str
    ns: str
    address: str
    port_name: str  # its cable's end on the switch
    home: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        log_name: str | None = None,
        preexec_fn: Callable[[], None] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Run ``argv`` on this host: in its namespace, working in its own folder, logging to a file
        there. ``ip netns exec`` execs the command, so the process is the service itself; it leads its
        own process group, stopped by :meth:`stop`."""
        log = self.home / f"{log_name or Path(argv[0]).name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", self.ns, *argv],
                cwd=self.home,
                env={**os.environ, **(env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=preexec_fn,
            )
        self.processes.append(proc)
        return proc

    def logs(self, chars: int = 3000) -> str:
        """The tail of every log of this host, for a failure message."""
        parts = []
        for log in sorted(self.home.glob("*.log")):
            parts.append(f"--- {self.name}: {log.name}\n{log.read_text(errors='replace')[-chars:]}")
        return "\n".join(parts)

    def stop(self, grace: float = 5.0) -> None:
        for proc in self.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.processes:
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)


class Network:
    """A switch namespace with a bridge, the test process plugged into it, and hosts added by name."""

    def __init__(self, root: Path, tag: str | None = None) -> None:
        self.tag = tag or f"mv{os.getpid()}"  # the whole pid: leftovers of dead runs are told by it
        n = os.getpid()
        self.prefix = f"10.{200 + n % 50}.{(n // 50) % 250}"  # a /24 of its own per run
        self.root = root
        self.switch = f"{self.tag}-sw"
        self.uplink = f"{self.tag}h"  # the test process's end, in this namespace (<= 15 chars)
        self.address = f"{self.prefix}.1"
        self.hosts: dict[str, Host] = {}
        self._namespaces: list[str] = []
        self._remove_leftovers()
        self._add_namespace(self.switch)
        ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        ip("-n", self.switch, "link", "set", "br0", "up")
        ip("link", "add", self.uplink, "type", "veth", "peer", "name", "p-test", "netns", self.switch)
        ip("-n", self.switch, "link", "set", "p-test", "master", "br0", "up")
        ip("addr", "add", f"{self.address}/24", "dev", self.uplink)
        ip("link", "set", self.uplink, "up")

    def _remove_leftovers(self) -> None:
        """Namespaces of this tag, or of a run whose process is gone (killed before its cleanup)."""
        for line in ip("netns", "list", check=False).stdout.splitlines():
            name = line.split()[0] if line.strip() else ""
            found = re.fullmatch(r"mv(\d+)-\w+", name)
            if found is None:
                continue
            tag = f"mv{found.group(1)}"
            if tag == self.tag or not _alive(int(found.group(1))):
                ip("netns", "del", name, check=False)
                ip("link", "del", f"{tag}h", check=False)
        ip("link", "del", self.uplink, check=False)

    def _add_namespace(self, name: str) -> None:
        ip("netns", "add", name)
        self._namespaces.append(name)
        ip("-n", name, "link", "set", "lo", "up")

    def add_host(self, name: str) -> Host:
        """A new host on the switch, at the next address; its folder is its alone."""
        ns = f"{self.tag}-{name}"
        port = f"p-{name}"[:15]
        address = f"{self.prefix}.{len(self.hosts) + 2}"
        self._add_namespace(ns)
        ip("-n", self.switch, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
        ip("-n", self.switch, "link", "set", port, "master", "br0", "up")
        ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
        ip("-n", ns, "link", "set", "eth0", "up")
        home = self.root / name
        home.mkdir(parents=True, exist_ok=True)
        host = Host(name, ns, address, port, home)
        self.hosts[name] = host
        return host

    def cut(self, host: Host) -> None:
        """Pull the host's cable: its switch port goes down."""
        ip("-n", self.switch, "link", "set", host.port_name, "down")

    def restore(self, host: Host) -> None:
        ip("-n", self.switch, "link", "set", host.port_name, "up")

    def link_state(self, host: Host) -> str:
        """The host's own view of its interface (``NO-CARRIER`` while cut off)."""
        return ip("-n", host.ns, "link", "show", "eth0").stdout

    def logs(self) -> str:
        return "\n".join(host.logs() for host in self.hosts.values())

    def close(self) -> None:
        """Stop every process of every host, then remove the namespaces and the test's veth."""
        errors: list[str] = []
        for host in self.hosts.values():
            try:
                host.stop()
            except Exception as exc:  # keep cleaning up; report at the end
                errors.append(f"{host.name}: {exc}")
        for name in reversed(self._namespaces):
            done = ip("netns", "del", name, check=False)
            if done.returncode != 0:
                errors.append(done.stderr.strip())
        ip("link", "del", self.uplink, check=False)  # gone with its peer already, normally
        if errors:
            raise RuntimeError("network cleanup: " + "; ".join(errors))
