"""Fans events out to every connected WebSocket without letting one slow client stall the others."""

from __future__ import annotations

import asyncio
from typing import Any


class Hub:
    def __init__(self, queue_size: int = 256) -> None:
        self._clients: set[asyncio.Queue[dict[str, Any]]] = set()
        self._queue_size = queue_size

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self._queue_size)
        self._clients.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any]]) -> None:
        self._clients.discard(q)

    def publish(self, event: dict[str, Any]) -> None:
        for q in list(self._clients):
            try:
                q.put_nowait(event)
            except asyncio.QueueFull:
                # A client this far behind is dropped; on reconnect it gets the full snapshot again.
                self._clients.discard(q)

    @property
    def client_count(self) -> int:
        return len(self._clients)
