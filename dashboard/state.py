"""What the dashboard's routes and feeds share, and the ingestion functions every message goes through.

The Kafka feed calls ``on_decision`` / ``on_explanation`` / ``on_state`` / ``on_pose``; tests call the
same functions directly when the broker is not what they test. Each stores first, then pushes the
event (with its cursor ``seq``) to every connected page.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any

import structlog

from dashboard.audit import AuditLog
from dashboard.auth import Auth, User
from dashboard.hub import Hub
from dashboard.replay import PAD_US, ChunkSource, compact_frame
from dashboard.shadow import DROP, Redactor, lights_in
from dashboard.signals import StateSink
from dashboard.store import DashboardStore, StoreError, now_us
from stream_processors.explainer import Explainer, Explanation

log = structlog.get_logger()

POSE_RING_US = 30_000_000  # recent frames kept per camera: a decision arrives within seconds of its end
WINDOW_TTL_US = 20_000_000  # after a window's end, how long its late frames are still accepted


class _StoreCache:
    """The explainer's cache on the dashboard database, so answers survive a restart."""

    def __init__(self, store: DashboardStore) -> None:
        self.store = store

    def get(self, key: str) -> Explanation | None:
        hit = self.store.cached_explanation(key)
        return None if hit is None else Explanation(hit[0], hit[1], key)

    def __setitem__(self, key: str, value: Explanation) -> None:
        if value.model != "template":
            self.store.cache_explanation(key, value.text, value.model)


class PoseKeeper:
    """Keeps the ``poses`` of each attempt's window (start − 1 s … end + 1 s) in the database.

    Frames arrive before their decision (the referee judged them) but the last second after the end
    may arrive after it, so: a ring of recent frames per camera fills a window when its decision
    arrives, and the window then takes the late frames until it expires.
    """

    def __init__(self, store: DashboardStore) -> None:
        self.store = store
        self._rings: dict[str, deque[dict[str, Any]]] = {}
        self._windows: dict[str, list[tuple[str, int, int]]] = {}

    def on_pose(self, msg: dict[str, Any]) -> None:
        if msg.get("end_of_stream") or msg.get("frame") is None or msg["frame"].get("capture_us", 0) < 0:
            return  # (capture time −1: no frame, only a stream's last re-measured bottom frames)
        cam = f"{msg['meet']}/{msg['platform']}/{msg['camera']}"
        frame = compact_frame(msg["frame"])
        ring = self._rings.setdefault(cam, deque())
        ring.append(frame)
        newest = frame["capture_us"]
        while ring and ring[0]["capture_us"] < newest - POSE_RING_US:
            ring.popleft()
        windows = self._windows.get(cam)
        if windows:
            for attempt_id, lo, hi in windows:
                if lo <= newest <= hi:
                    self.store.add_pose_frames(attempt_id, [frame])
            self._windows[cam] = [w for w in windows if newest <= w[2] + WINDOW_TTL_US]

    def on_decision(self, msg: dict[str, Any]) -> None:
        times = msg["attempt"].get("capture_us") or {}
        if "start" not in times or "end" not in times:
            return
        cam = f"{msg['meet']}/{msg['platform']}/{msg['camera']}"
        lo, hi = int(times["start"]) - PAD_US, int(times["end"]) + PAD_US
        frames = [f for f in self._rings.get(cam, ()) if lo <= f["capture_us"] <= hi]
        if frames:
            self.store.add_pose_frames(msg["attempt_id"], frames)
        self._windows.setdefault(cam, []).append((msg["attempt_id"], lo, hi))


class DashboardState:
    def __init__(
        self,
        store: DashboardStore,
        allowed_origins: set[str] | None = None,
        *,
        auth: Auth | None = None,
        audit: AuditLog | None = None,
        explainer: Explainer | None = None,
        archive: ChunkSource | None = None,
        anonymous_viewer: bool = False,
    ) -> None:
        self.store = store
        self.hub = Hub()
        self.auth = auth or Auth(
            store.engine, allowed_origins=allowed_origins, anonymous_viewer=anonymous_viewer
        )
        self.audit = audit or AuditLog(store.engine)
        self.archive = archive
        self.poses = PoseKeeper(store)
        # The dashboard streams Claude's words itself (the referee only sends whole texts), so only
        # when a key is configured; the template comes from the referee's explanations topic.
        self.explainer = explainer
        if explainer is not None:
            explainer._cache = _StoreCache(store)
        self.feed_error: str | None = None
        # Where the head referee's signals go (dashboard.signals): meet.state through the broker, set
        # while the Kafka feed runs; None: applied to this dashboard directly.
        self.state_sink: StateSink | None = None
        self._pending_explanations: dict[str, dict[str, Any]] = {}
        self._revealed: set[int] = set()  # shadow-mode lifts whose call has been published to everyone
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def allowed_origins(self) -> set[str] | None:
        return self.auth.allowed_origins

    # --- events ----------------------------------------------------------------------------------

    def publish(self, event: dict[str, Any], persist: bool = True) -> dict[str, Any]:
        """Store the event in the cursor log (unless ephemeral, like explanation deltas), then push."""
        if persist:
            event = {**event, "seq": self.store.append_event(event)}
        # Shadow mode: the copy for everyone but the organizer, decided once for all clients.
        public = Redactor(self.store).event(event)
        if public is None:
            self.hub.publish(event)
        else:
            self.hub.publish(event, None if public is DROP else public, hide=True)  # type: ignore[arg-type]
        return event

    def publish_lift(self, lift_id: int) -> None:
        lift = self.store.lift(lift_id)
        if lift is None:
            return
        self.publish({"type": "lift", "lift": lift})
        redactor = Redactor(self.store)
        if lift["meet"] in redactor.shadow and lights_in(lift["lights"]) and lift_id not in self._revealed:
            # Shadow mode: the official lights are in, so the call is now everyone's. One event says so,
            # with each camera's decision and explanation (the lift event above carries the fused call).
            self._revealed.add(lift_id)
            self.publish(
                {
                    "type": "revealed",
                    "lift_id": lift_id,
                    "meet": lift["meet"],
                    "platform": lift["platform"],
                    "official": {
                        "lights": {k: lift["lights"].get(k) for k in ("left", "head", "right")},
                        "result": lift["lights_majority"],
                    },
                    "fused": lift["fused"],
                    "attempts": lift["cameras"],
                }
            )

    # --- ingestion ---------------------------------------------------------------------------------

    def on_decision(self, msg: dict[str, Any]) -> None:
        if msg["camera"] == "fused":
            # The referee's fused call: the dashboard fuses its cameras' calls with the same rule
            # (referee.fusion.fuse_calls) per lift, so this copy would only count as an extra camera.
            return
        new = self.store.attempt(msg["attempt_id"]) is None
        lift_id = self.store.upsert_decision(msg)
        self.poses.on_decision(msg)
        self.publish({"type": "decision", **msg, "lift_id": lift_id})
        self.publish_lift(lift_id)
        pending = self._pending_explanations.pop(msg["attempt_id"], None)
        if pending is not None:
            self.on_explanation(pending)
        if new and self.explainer is not None and self.explainer.api_key:
            self._spawn(self._narrate(msg))

    def on_explanation(self, msg: dict[str, Any]) -> None:
        # Topics are consumed independently, so an explanation may overtake its decision: hold it.
        stored = self.store.set_explanation(msg)
        if stored is False:
            self._pending_explanations[msg["attempt_id"]] = msg
            return
        if stored is None:
            return  # the template arrived after Claude's answer: keep the answer
        self.publish({"type": "explanation", **msg})

    def on_state(self, msg: dict[str, Any]) -> None:
        if msg.get("official"):
            # An attempt's official lights from the meet software: onto its lift (or kept in the events
            # log for the lift to take when its first call arrives), not the platform's current state.
            try:
                lift_id = self.store.set_official(msg)
            except StoreError as exc:  # official lights are locked (dashboard.jury): logged, not applied
                self._official_refused(msg, str(exc))
                return
            self.publish({"type": "official", **msg, "lift_id": lift_id})
            if lift_id is not None:
                self.publish_lift(lift_id)
            return
        self.publish({"type": "state", **self.store.set_state(msg)})

    def _official_refused(self, msg: dict[str, Any], why: str) -> None:
        source = str(msg["official"].get("source") or "meet software")
        target = "/".join(str(msg.get(k)) for k in ("meet", "platform", "lifter", "lift", "attempt_number"))
        log.warning("dashboard.official_refused", target=target, why=why)
        self.audit.append(
            source[:100],
            "meet_software",
            "official_lights_refused",
            target[:300],
            {"meet": msg["meet"], "lights": msg["official"].get("lights"), "why": why},
        )

    def on_pose(self, msg: dict[str, Any]) -> None:
        self.poses.on_pose(msg)

    # --- Claude's explanation, streamed --------------------------------------------------------------

    async def _narrate(self, msg: dict[str, Any]) -> None:
        assert self.explainer is not None
        attempt_id = msg["attempt_id"]

        async def delta(text: str) -> None:
            self.publish({"type": "explanation_delta", "attempt_id": attempt_id, "text": text}, persist=False)

        started = now_us()
        result = await self.explainer.stream(msg["attempt"], delta)
        log.info(
            "dashboard.explained", attempt_id=attempt_id, model=result.model, ms=(now_us() - started) / 1e3
        )
        self.on_explanation(
            {
                "schema_version": 1,
                "attempt_id": attempt_id,
                "text": result.text,
                "model": result.model,
                "prompt_hash": result.prompt_hash,
            }
        )

    def _spawn(self, coro: Any) -> None:
        try:
            task = asyncio.get_running_loop().create_task(coro)
        except RuntimeError:
            coro.close()  # no loop (a synchronous caller): the referee's template explanation stands
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # --- human actions --------------------------------------------------------------------------------

    def record(self, user: User, action: str, target: str, details: dict[str, Any] | None = None) -> None:
        """Every human action goes to the hash-chained audit log (and the audit topic)."""
        self.audit.append(user.name, user.role, action, target, details)
