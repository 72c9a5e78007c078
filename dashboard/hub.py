"""Fans events out to every connected WebSocket without letting one slow client stall the others.

A client whose queue overflows is not silently left behind: it is unsubscribed and its
:attr:`Subscription.overflowed` is set, so its WebSocket handler closes the socket with
:data:`SLOW_CLIENT_CLOSE`; the page reconnects with ``?since=<last seq>`` and gets exactly what it missed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from meetvar.metrics import EVENTS

SLOW_CLIENT_CLOSE = 4008  # application close code (4000–4999): "too slow, reconnect with ?since=N"
SLOW_CLIENT_REASON = "too slow: reconnect with ?since=<last seq> to catch up"


class Subscription(asyncio.Queue[dict[str, Any]]):
    """One client's queue of events, and the flag the hub raises when it overflowed.

    ``sees_calls``: whether this client gets the system's calls while shadow mode hides them (only the
    organizer does; see :mod:`dashboard.shadow`)."""

    def __init__(self, maxsize: int, sees_calls: bool = True) -> None:
        super().__init__(maxsize)
        self.overflowed = asyncio.Event()
        self.sees_calls = sees_calls


class Hub:
    def __init__(self, queue_size: int = 256) -> None:
        self._clients: set[Subscription] = set()
        self.queue_size = queue_size

    def subscribe(self, sees_calls: bool = True) -> Subscription:
        q = Subscription(self.queue_size, sees_calls)
        self._clients.add(q)
        return q

    def unsubscribe(self, q: Subscription) -> None:
        self._clients.discard(q)

    def publish(
        self, event: dict[str, Any], redacted: dict[str, Any] | None = None, *, hide: bool = False
    ) -> None:
        """Fan ``event`` out. With ``hide`` (shadow mode hides its call), clients that do not see calls
        get ``redacted`` instead, or nothing when it is None; the redaction is computed once per event
        by the publisher, not once per client."""
        EVENTS.labels(type=str(event.get("type", "-"))).inc()
        for q in list(self._clients):
            out = event if q.sees_calls or not hide else redacted
            if out is None:
                continue
            try:
                q.put_nowait(out)
            except asyncio.QueueFull:
                # This client is too far behind: stop feeding it, and have its handler close it.
                self._clients.discard(q)
                q.overflowed.set()

    @property
    def client_count(self) -> int:
        return len(self._clients)
