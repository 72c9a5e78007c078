"""The judges' dashboard: REST for attempts, a WebSocket that pushes each call as it is made."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from fastapi import APIRouter, FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse

from dashboard.hub import Hub
from dashboard.store import AttemptStore

Feed = Callable[["DashboardState"], Coroutine[Any, Any, None]]


class DashboardState:
    """What the routes share: the store, the fan-out hub, and the live feed's health."""

    def __init__(self, store: AttemptStore, allowed_origins: set[str] | None = None) -> None:
        self.store = store
        self.hub = Hub()
        self.allowed_origins = allowed_origins
        self.feed_error: str | None = None
        self._pending_explanations: dict[str, dict[str, Any]] = {}

    def on_decision(self, msg: dict[str, Any]) -> None:
        self.store.upsert_decision(msg)
        self.hub.publish({"type": "decision", **msg})
        pending = self._pending_explanations.pop(msg["attempt_id"], None)
        if pending is not None:
            self.on_explanation(pending)

    def on_explanation(self, msg: dict[str, Any]) -> None:
        # Topics are consumed independently, so an explanation may overtake its decision: hold it.
        if not self.store.set_explanation(msg):
            self._pending_explanations[msg["attempt_id"]] = msg
            return
        self.hub.publish({"type": "explanation", **msg})

    def on_state(self, msg: dict[str, Any]) -> None:
        self.hub.publish({"type": "state", **msg})


def create_app(state: DashboardState, feed: Feed | None = None, routers: Sequence[APIRouter] = ()) -> FastAPI:
    """``routers`` lets other services (WHIP ingest) share the dashboard's port, as the demo does."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(feed(state)) if feed is not None else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    app = FastAPI(title="meetvar dashboard", lifespan=lifespan)
    for router in routers:
        app.include_router(router)

    @app.get("/", response_class=HTMLResponse)
    async def index() -> str:
        return resources.files("dashboard").joinpath("static/index.html").read_text(encoding="utf-8")

    @app.get("/api/attempts")
    async def attempts(limit: int = 200) -> list[dict[str, Any]]:
        return state.store.list(limit=max(1, min(limit, 1000)))

    @app.get("/api/health")
    async def health() -> dict[str, Any]:
        return {
            "ok": state.feed_error is None,
            "feed_error": state.feed_error,
            "clients": state.hub.client_count,
        }

    @app.websocket("/ws")
    async def ws(socket: WebSocket) -> None:
        origin = socket.headers.get("origin")
        if state.allowed_origins is not None and origin is not None and origin not in state.allowed_origins:
            await socket.close(code=1008, reason="origin not allowed")
            return
        await socket.accept()
        q = state.hub.subscribe()
        try:
            # A client that (re)connects first gets what it missed, then the live events.
            await socket.send_json({"type": "snapshot", "attempts": state.store.list()})
            while True:
                await socket.send_json(await q.get())
        except WebSocketDisconnect:
            pass
        finally:
            state.hub.unsubscribe(q)

    return app
