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
    """One client's queue of events, and the flag the hub raises when it overflowed."""

    def __init__(self, maxsize: int) -> None:
        super().__init__(maxsize)
        self.overflowed = asyncio.Event()


class Hub:
    def __init__(self, queue_size: int = 256) -> None:
        self._clients: set[Subscription] = set()
        self.queue_size = queue_size

    def subscribe(self) -> Subscription:
        q = Subscription(self.queue_size)
        self._clients.add(q)
        return q

    def unsubscribe(self, q: Subscription) -> None:
        self._clients.discard(q)

    def publish(self, event: dict[str, Any]) -> None:
        EVENTS.labels(type=str(event.get("type", "-"))).inc()
        for q in list(self._clients):
            try:
                q.put_nowait(event)
            except asyncio.QueueFull:
                # This client is too far behind: stop feeding it, and have its handler close it.
                self._clients.discard(q)
                q.overflowed.set()

    @property
    def client_count(self) -> int:
        return len(self._clients)
