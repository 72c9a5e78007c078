"""The judges' dashboard: live calls over a WebSocket, replays, appeals and the jury, history, audit.

Every route names the roles that may use it (the annotated type of its ``user`` parameter); a test
walks the route table and checks that each refuses no session and every other role. Unsafe methods
also pass the origin check (see :mod:`dashboard.auth`). Handlers that write run on the event loop,
because they push events to the pages through the hub, which is not thread-safe; argon2 and
remuxing run in the thread pool.
"""

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from typing import Annotated, Any, Literal

from fastapi import (
    APIRouter,
    Depends,
    FastAPI,
    HTTPException,
    Query,
    Request,
    Response,
    WebSocket,
    WebSocketDisconnect,
)
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from dashboard.agreement import report as agreement_report
from dashboard.agreement import report_csv as agreement_csv
from dashboard.agreement import report_html as agreement_html
from dashboard.auth import (
    APPELLANTS,
    COOKIE,
    EVERYONE,
    JURY,
    ORGANIZER,
    REFEREES,
    SESSION_TTL_S,
    AuthError,
    User,
)
from dashboard.hub import SLOW_CLIENT_CLOSE, SLOW_CLIENT_REASON
from dashboard.jury_api import add_routes as add_jury_routes
from dashboard.jury_api import appeals_with_votes
from dashboard.replay import PAD_US, Clip, ReplayError, archived_chunks, remux_clip, replay_payload
from dashboard.roster import fold
from dashboard.shadow import Redactor, ShadowError, redact_pane, sees_calls, set_shadow
from dashboard.state import DashboardState
from dashboard.store import StoreError, lifts_csv
from meetvar.metrics import (
    BROKER_UP,
    CONTENT_TYPE_LATEST,
    ERRORS,
    WS_CLIENTS,
    WS_SLOW_CLOSED,
    exposition,
)
from meetvar.supervisor import supervisor_services

__all__ = ["DashboardState", "Feed", "create_app"]

Feed = Callable[[DashboardState], Awaitable[None]]

BACKLOG_LIMIT = 1000  # a page further behind than this gets a fresh snapshot instead


class Login(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=1000)


class TokenLogin(BaseModel):
    token: str = Field(min_length=8, max_length=200)


class NewUser(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    role: str
    password: str = Field(min_length=10, max_length=1000)
    lifter: str | None = Field(default=None, max_length=200)


class NewMeet(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    appeal_limit: int = 1


class MeetSettings(BaseModel):
    """PATCH /api/meets/{name}: only the fields given change."""

    shadow: bool | None = None
    appeal_limit: int | None = Field(default=None, ge=0, le=10)


class NewPlatform(BaseModel):
    meet: str = Field(min_length=1, max_length=100)
    name: str = Field(min_length=1, max_length=100)


class NewCamera(BaseModel):
    meet: str
    platform: str
    name: str = Field(min_length=1, max_length=100)
    position: str = "side"


class Assign(BaseModel):
    lifter: str | None = Field(default=None, max_length=200)
    attempt_number: int | None = Field(default=None, ge=1, le=3)
    lift_name: str | None = Field(default="squat", max_length=20)


class Lights(BaseModel):
    left: Literal["good", "bad"] | None = None
    head: Literal["good", "bad"] | None = None
    right: Literal["good", "bad"] | None = None


class Override(BaseModel):
    verdict: Literal["good", "no_lift"]
    reason: str = Field(min_length=1, max_length=2000)


class NewAppeal(BaseModel):
    lift_id: int
    reason: str = Field(default="", max_length=2000)
    # The roster lifter the appeal names (the page's select); default: the lifter the account speaks for.
    lifter: str | None = Field(default=None, max_length=200)


def _store_errors(exc: StoreError) -> HTTPException:
    return HTTPException(exc.status, str(exc))


def create_app(state: DashboardState, feed: Feed | None = None, routers: Sequence[APIRouter] = ()) -> FastAPI:
    """``routers`` lets other services (WHIP ingest) share the dashboard's port, as the demo does;
    they can protect themselves with ``state.auth.require(roles)``."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = asyncio.ensure_future(feed(state)) if feed is not None else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await state.close()

    app = FastAPI(
        title="meetvar dashboard", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.dashboard = state
    for router in routers:
        app.include_router(router)
    auth = state.auth
    store = state.store

    def _view(user: User) -> Redactor:
        """What ``user`` may see of the system's calls now (shadow mode: see dashboard/shadow.py)."""
        return Redactor(store, sees_everything=sees_calls(user))

    def _visible_lifts(user: User, rows: list[dict[str, Any]], call: str | None) -> list[dict[str, Any]]:
        shown = _view(user).lifts(rows)
        # Filtering on a hidden call would tell its verdict by whether the lift is listed.
        return shown if call is None else [x for x in shown if not x.get("hidden")]

    # One annotated type per access rule; each route's ``user`` parameter names the rule it follows.
    AnyUser = Annotated[User, Depends(auth.require(EVERYONE))]
    Organizer = Annotated[User, Depends(auth.require({ORGANIZER}))]
    Referee = Annotated[User, Depends(auth.require(REFEREES))]
    LightsEntry = Annotated[User, Depends(auth.require(REFEREES | {ORGANIZER}))]
    Appellant = Annotated[User, Depends(auth.require(APPELLANTS))]
    AppealReader = Annotated[User, Depends(auth.require(APPELLANTS | {JURY, ORGANIZER}))]
    Auditor = Annotated[User, Depends(auth.require({ORGANIZER, JURY}))]

    @app.exception_handler(OverflowError)
    async def number_out_of_range(request: Request, exc: OverflowError) -> JSONResponse:
        # An id or count beyond the database's 64-bit integers (found by schemathesis): the client's
        # mistake, said plainly, not a 500.
        return JSONResponse({"detail": f"a number in the request is out of range: {exc}"}, status_code=422)

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        try:
            response: Response = await call_next(request)
        except Exception:
            ERRORS.labels(service="dashboard", kind="http_500").inc()
            raise
        if response.status_code >= 500:
            ERRORS.labels(service="dashboard", kind=f"http_{response.status_code}").inc()
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; media-src 'self' blob:; style-src 'self'; "
            "script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
        )
        if request.url.path.startswith("/api/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    # --- public: the page, login ------------------------------------------------------------------

    static_dir = resources.files("dashboard").joinpath("static")

    @app.get("/", response_class=HTMLResponse)
    async def index() -> str:
        return static_dir.joinpath("index.html").read_text(encoding="utf-8")

    app.mount("/static", StaticFiles(directory=str(static_dir)), name="static")

    def _set_session(response: Response, request: Request, user: User) -> None:
        response.set_cookie(
            COOKIE,
            auth.start_session(user),
            max_age=SESSION_TTL_S,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )

    @app.post("/api/login")
    async def login(body: Login, request: Request, response: Response) -> dict[str, Any]:
        auth.check_unsafe_request(request)
        try:
            user = await run_in_threadpool(auth.authenticate, body.name, body.password)
        except AuthError as exc:
            raise HTTPException(429, str(exc)) from exc
        if user is None:
            state.audit.append(body.name[:100], "-", "login_failed", "session", {"ip": _client(request)})
            raise HTTPException(401, "wrong name or password")
        _set_session(response, request, user)
        state.record(user, "login", "session", {"ip": _client(request), "method": "password"})
        return user.to_json()

    @app.post("/api/login/token")
    async def login_token(body: TokenLogin, request: Request, response: Response) -> dict[str, Any]:
        auth.check_unsafe_request(request)
        user = auth.redeem_login_token(body.token)
        if user is None:
            state.audit.append(
                "-", "-", "login_failed", "session", {"ip": _client(request), "method": "token"}
            )
            raise HTTPException(401, "this login link is invalid, used or expired")
        _set_session(response, request, user)
        state.record(user, "login", "session", {"ip": _client(request), "method": "one-time token"})
        return user.to_json()

    @app.post("/api/logout")
    async def logout(request: Request, response: Response) -> dict[str, bool]:
        auth.check_unsafe_request(request)
        user = auth.session_user(request.cookies.get(COOKIE))
        auth.end_session(request.cookies.get(COOKIE))
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        if user is not None:
            state.record(user, "logout", "session")
        return {"ok": True}

    @app.get("/api/health")
    async def health() -> dict[str, Any]:
        # services: state and restart count of each, when run under `meetvar demo`'s supervisor (else null)
        return {"ok": state.feed_error is None, "services": supervisor_services()}

    @app.get("/healthz")
    async def healthz() -> dict[str, bool]:
        """Liveness: the process answers HTTP (readiness, with the broker and services, is /api/health)."""
        return {"ok": True}

    @app.get("/metrics")
    async def metrics() -> Response:
        """Prometheus text format: decisions, errors, WebSocket clients, pose lag, service restarts."""
        BROKER_UP.labels(service="dashboard").set(0.0 if state.feed_error else 1.0)
        return Response(exposition(), media_type=CONTENT_TYPE_LATEST)

    # --- everyone signed in (viewers included) ------------------------------------------------------

    @app.get("/api/me")
    async def me(user: AnyUser) -> dict[str, Any]:
        return {**user.to_json(), "feed_error": state.feed_error, "clients": state.hub.client_count}

    @app.get("/api/attempts")
    async def attempts(user: AnyUser, limit: int = 200) -> list[dict[str, Any]]:
        return _view(user).attempts(store.recent_attempts(limit=max(1, min(limit, 1000))))

    @app.get("/api/lifts")
    async def lifts(
        user: AnyUser,
        lifter: str | None = None,
        attempt: int | None = None,
        call: Literal["good", "no_lift", "undecided"] | None = None,
        limit: int = 200,
    ) -> list[dict[str, Any]]:
        rows = store.lifts(lifter=lifter, attempt_number=attempt, call=call, limit=max(1, min(limit, 5000)))
        return _visible_lifts(user, rows, call)

    @app.get("/api/lifts/{lift_id}")
    async def lift(user: AnyUser, lift_id: int) -> dict[str, Any]:
        found = store.lift(lift_id)
        if found is None:
            raise HTTPException(404, f"no lift {lift_id}")
        return _view(user).lift(found)

    @app.get("/api/lifts/{lift_id}/replay")
    def replay(user: AnyUser, lift_id: int) -> dict[str, Any]:
        """One pane per camera: clip URL, the capture time of video time 0, the window's poses,
        the rule landmarks at the bottom frame and the margin over time."""
        found = store.lift(lift_id)
        if found is None:
            raise HTTPException(404, f"no lift {lift_id}")
        shown = _view(user).lift(found)
        panes = []
        for cam in found["cameras"]:
            clip, error = _cached_clip(cam)
            frames = store.pose_frames(cam["attempt_id"])
            url = f"/api/clip.mp4?attempt_id={cam['attempt_id']}"
            pane = replay_payload(cam, frames, clip, error, url)
            panes.append(redact_pane(pane) if shown.get("hidden") else pane)  # shadow mode: no overlay
        return {"lift": shown, "panes": panes}

    def _clip_for(cam: dict[str, Any]) -> tuple[Clip | None, str | None]:
        if state.archive is None:
            return None, "no video archive is configured for this dashboard"
        times = cam["attempt"].get("capture_us") or {}
        key = f"{cam['meet']}/{cam['platform']}/{cam['camera']}"
        try:
            chunks = archived_chunks(
                state.archive, key, int(times.get("start", 0)) - PAD_US, int(times.get("end", 0)) + PAD_US
            )
            return remux_clip(state.archive, chunks), None
        except ReplayError as exc:
            return None, str(exc)

    clip_cache: OrderedDict[str, Clip] = OrderedDict()

    def _cached_clip(cam: dict[str, Any]) -> tuple[Clip | None, str | None]:
        """Browsers fetch a video in several range requests; remux once per attempt and decision."""
        key = f"{cam['attempt_id']}@{cam['decided_us']}"
        if key in clip_cache:
            clip_cache.move_to_end(key)
            return clip_cache[key], None
        made, error = _clip_for(cam)
        if made is not None:
            clip_cache[key] = made
            while len(clip_cache) > 16:
                clip_cache.popitem(last=False)
        return made, error

    @app.get("/api/clip.mp4")
    def clip(user: AnyUser, request: Request, attempt_id: str = Query(max_length=300)) -> Response:
        """The attempt's clip as MP4, with byte ranges: Chrome seeks only in a video served with them."""
        cam = store.attempt(attempt_id)
        if cam is None:
            raise HTTPException(404, "no such attempt")
        made, error = _cached_clip(cam)
        if made is None:
            raise HTTPException(404, error or "no clip")
        data = made.mp4
        headers = {"Cache-Control": "private, max-age=300", "Accept-Ranges": "bytes"}
        wanted = _byte_range(request.headers.get("range"), len(data))
        if wanted is None:
            return Response(data, media_type="video/mp4", headers=headers)
        start, end = wanted
        headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        return Response(data[start : end + 1], status_code=206, media_type="video/mp4", headers=headers)

    @app.get("/api/states")
    async def states(user: AnyUser) -> list[dict[str, Any]]:
        return store.states()

    @app.get("/api/history.csv")
    async def history_csv(
        user: AnyUser,
        lifter: str | None = None,
        attempt: int | None = None,
        call: Literal["good", "no_lift", "undecided"] | None = None,
    ) -> PlainTextResponse:
        rows = _visible_lifts(
            user, store.lifts(lifter=lifter, attempt_number=attempt, call=call, limit=100_000), call
        )
        return PlainTextResponse(
            lifts_csv(rows),
            media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="meetvar-history.csv"'},
        )

    # --- the agreement report (shadow mode): JSON, CSV, a printable page --------------------------------

    def _agreement(user: User, meet: str | None) -> dict[str, Any]:
        return agreement_report(_view(user).lifts(store.lifts(limit=100_000)), meet=meet)

    @app.get("/api/agreement")
    async def agreement(
        user: AnyUser, meet: str | None = Query(default=None, max_length=100)
    ) -> dict[str, Any]:
        return _agreement(user, meet)

    @app.get("/api/agreement.csv")
    async def agreement_csv_route(
        user: AnyUser, meet: str | None = Query(default=None, max_length=100)
    ) -> PlainTextResponse:
        return PlainTextResponse(
            agreement_csv(_agreement(user, meet)),
            media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="meetvar-agreement.csv"'},
        )

    @app.get("/agreement", response_class=HTMLResponse)
    async def agreement_page(user: AnyUser, meet: str | None = Query(default=None, max_length=100)) -> str:
        """Printable (print stylesheet, no script): what the organizer files after the meet."""
        return agreement_html(_agreement(user, meet))

    # --- organizer: the meet, its platforms, cameras and accounts ------------------------------------

    @app.get("/api/users")
    async def list_users(user: Organizer) -> list[dict[str, Any]]:
        return [u.to_json() for u in auth.users()]

    @app.post("/api/users")
    async def add_user(user: Organizer, body: NewUser) -> dict[str, Any]:
        try:
            created = await run_in_threadpool(
                auth.create_user, body.name, body.role, body.password, body.lifter
            )
        except AuthError as exc:
            raise HTTPException(422, str(exc)) from exc
        state.record(
            user, "user_created", f"user/{created.name}", {"role": created.role, "lifter": created.lifter}
        )
        return created.to_json()

    @app.post("/api/users/{name}/disable")
    async def disable_user(user: Organizer, name: str) -> dict[str, bool]:
        if name == user.name:
            raise HTTPException(409, "you cannot disable your own account")
        try:
            auth.set_active(name, False)
        except AuthError as exc:
            raise HTTPException(404, str(exc)) from exc
        state.record(user, "user_disabled", f"user/{name}")
        return {"ok": True}

    @app.get("/api/config")
    async def config(user: Organizer) -> dict[str, Any]:
        return store.config()

    @app.post("/api/meets")
    async def add_meet(user: Organizer, body: NewMeet) -> dict[str, Any]:
        try:
            out = store.add_meet(body.name, body.appeal_limit)
        except StoreError as exc:
            raise _store_errors(exc) from exc
        state.record(
            user, "meet_saved", f"meet/{body.name}", {"meet": body.name, "appeal_limit": body.appeal_limit}
        )
        return out

    @app.patch("/api/meets/{name}")
    async def patch_meet(user: Organizer, name: str, body: MeetSettings) -> dict[str, Any]:
        """Shadow mode on or off (and the appeal limit) for an existing meet."""
        changed = body.model_dump(exclude_none=True)
        if not changed:
            raise HTTPException(422, "nothing to change: give shadow and/or appeal_limit")
        try:
            if body.shadow is not None:
                set_shadow(store, name, body.shadow)
            if body.appeal_limit is not None:
                if not any(m["name"] == name for m in store.config()["meets"]):
                    raise StoreError(f"no meet {name!r}; create it first", 404)
                store.add_meet(name, body.appeal_limit)
        except (ShadowError, StoreError) as exc:
            raise HTTPException(exc.status, str(exc)) from exc
        state.record(user, "meet_saved", f"meet/{name}", {"meet": name, **changed})
        meet = next(m for m in store.config()["meets"] if m["name"] == name)
        state.publish({"type": "meet", "meet": meet})
        return meet

    @app.post("/api/platforms")
    async def add_platform(user: Organizer, body: NewPlatform) -> dict[str, Any]:
        try:
            out = store.add_platform(body.meet, body.name)
        except StoreError as exc:
            raise _store_errors(exc) from exc
        state.record(user, "platform_saved", f"{body.meet}/{body.name}", {"meet": body.meet})
        return out

    @app.post("/api/cameras")
    async def add_camera(user: Organizer, body: NewCamera) -> dict[str, Any]:
        try:
            out = store.add_camera(body.meet, body.platform, body.name, body.position)
        except StoreError as exc:
            raise _store_errors(exc) from exc
        state.record(user, "camera_saved", out["key"], {"meet": body.meet, "position": body.position})
        return out

    @app.post("/api/lifts/{lift_id}/assign")
    async def assign(user: Organizer, lift_id: int, body: Assign) -> dict[str, Any]:
        try:
            store.assign_lift(lift_id, body.lifter, body.attempt_number, body.lift_name)
        except StoreError as exc:
            raise _store_errors(exc) from exc
        state.record(user, "lift_assigned", f"lift/{lift_id}", body.model_dump())
        state.publish_lift(lift_id)
        return store.lift(lift_id) or {}

    # --- referees: lights and overrides ------------------------------------------------------------------

    @app.post("/api/lifts/{lift_id}/lights")
    async def set_lights(user: LightsEntry, lift_id: int, body: Lights) -> dict[str, Any]:
        try:
            row = store.set_lights(lift_id, body.model_dump(), user.name)
        except StoreError as exc:
            raise _store_errors(exc) from exc
        state.record(user, "lights_entered", f"lift/{lift_id}", row)
        state.publish_lift(lift_id)
        found = store.lift(lift_id)
        return {} if found is None else _view(user).lift(found)

    @app.post("/api/lifts/{lift_id}/override")
    async def override(user: Referee, lift_id: int, body: Override) -> dict[str, Any]:
        try:
            row = store.add_override(lift_id, user.name, user.role, body.verdict, body.reason)
        except StoreError as exc:
            raise _store_errors(exc) from exc
        state.record(
            user, "override", f"lift/{lift_id}", {"verdict": row["verdict"], "reason": row["reason"]}
        )
        state.publish_lift(lift_id)
        return row

    # --- appeals and the jury ------------------------------------------------------------------------------

    @app.get("/api/appeals")
    async def list_appeals(
        user: AppealReader, status: Literal["pending", "reversed", "upheld"] | None = None
    ) -> list[dict[str, Any]]:
        # A lifter or coach sees only their lifter's appeals.
        lifter = user.lifter if user.role in APPELLANTS else None
        if user.role in APPELLANTS and not lifter:
            return []
        return appeals_with_votes(state, store.appeals(status=status, lifter=lifter))

    @app.post("/api/appeals")
    async def file_appeal(user: Appellant, body: NewAppeal) -> dict[str, Any]:
        if not user.lifter:
            raise HTTPException(403, "this account speaks for no lifter")
        named = body.lifter or user.lifter
        if fold(named) != fold(user.lifter):
            raise HTTPException(403, f"this account speaks for {user.lifter}, not {named}")
        try:
            row = store.file_appeal(body.lift_id, named, user.name, body.reason)
        except StoreError as exc:
            raise _store_errors(exc) from exc
        state.record(
            user,
            "appeal_filed",
            f"lift/{body.lift_id}",
            {"appeal": row["id"], "lifter": row["lifter"], "meet": row["meet"]},
        )
        state.publish({"type": "appeal", "appeal": row})
        state.publish_lift(body.lift_id)
        return row

    # The jury votes (POST /api/appeals/{id}/vote), signals, lights corrections, roster: dashboard/jury_api.py
    add_jury_routes(app, state)

    # --- audit ---------------------------------------------------------------------------------------------

    @app.get("/api/audit")
    async def audit_entries(user: Auditor, after: int = 0, limit: int = 500) -> list[dict[str, Any]]:
        return state.audit.entries(limit=max(1, min(limit, 5000)), after_id=after)

    @app.get("/api/audit/verify")
    async def audit_verify(user: Auditor) -> JSONResponse:
        result = await run_in_threadpool(state.audit.verify)
        return JSONResponse(result.to_json(), status_code=200 if result.ok else 409)

    # --- the live feed -----------------------------------------------------------------------------------

    @app.websocket("/ws")
    async def ws(socket: WebSocket, since: int | None = None) -> None:
        if not auth.websocket_origin_ok(socket):
            await socket.close(code=1008, reason="origin not allowed")
            return
        user = auth.user_for(socket.cookies.get(COOKIE))
        if user is None:
            await socket.close(code=1008, reason="log in first")
            return
        await socket.accept()
        q = state.hub.subscribe(sees_calls=sees_calls(user))
        WS_CLIENTS.inc()
        try:
            last = await _catch_up(socket, since, user)
            # A client that falls behind (its queue overflowed) is closed with SLOW_CLIENT_CLOSE, not left
            # silently without events: its page reconnects with ?since=<last seq> and catches up.
            pump = asyncio.ensure_future(_pump(socket, q, last))
            dropped = asyncio.ensure_future(q.overflowed.wait())
            gone = asyncio.ensure_future(_until_disconnected(socket))
            tasks = {pump, dropped, gone}
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, Exception):
                        await task
            if dropped in done and gone not in done:
                WS_SLOW_CLOSED.inc()
                with contextlib.suppress(Exception):
                    await socket.close(code=SLOW_CLIENT_CLOSE, reason=SLOW_CLIENT_REASON)
        except WebSocketDisconnect:
            pass
        finally:
            state.hub.unsubscribe(q)
            WS_CLIENTS.dec()

    async def _until_disconnected(socket: WebSocket) -> None:
        """The page sends nothing we need; reading notices its going at once, not at the next event."""
        while (await socket.receive())["type"] != "websocket.disconnect":
            pass

    async def _pump(socket: WebSocket, q: asyncio.Queue[dict[str, Any]], last: int) -> None:
        while True:
            event = await q.get()
            seq = event.get("seq")
            if seq is not None and seq <= last:
                continue  # already sent in the snapshot or backlog
            await socket.send_json(event)

    async def _catch_up(socket: WebSocket, since: int | None, user: User) -> int:
        """A page that (re)connects with its cursor gets exactly the events it missed; a new page, or
        one too far behind, gets a snapshot. Subscribed before reading, so nothing falls in between."""
        head = store.last_seq()
        if since is not None and 0 <= since <= head:
            backlog = store.events_after(since, BACKLOG_LIMIT + 1)
            if len(backlog) <= BACKLOG_LIMIT:
                # Shadow mode: each missed event as this client may see it now (from the lights as
                # they are now: a call revealed since is shown).
                view = _view(user)
                for event in backlog:
                    shown = view.for_client(event)
                    if shown is not None:
                        await socket.send_json(shown)
                last = backlog[-1]["seq"] if backlog else since
                await socket.send_json({"type": "caught_up", "cursor": last, "replayed": len(backlog)})
                return int(last)
        view = _view(user)
        await socket.send_json(
            {
                "type": "snapshot",
                "cursor": head,
                "attempts": view.attempts(store.recent_attempts()),
                "lifts": view.lifts(store.lifts(limit=100)),
                "states": store.states(),
            }
        )
        return head

    return app


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` → inclusive (start, end); None for the whole body."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first, _, last = header[len("bytes=") :].strip().partition("-")
    try:
        if first == "":
            n = int(last)
            return (max(0, size - n), size - 1) if n > 0 else None
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start >= size or end < start:
        raise HTTPException(416, "range not satisfiable", headers={"Content-Range": f"bytes */{size}"})
    return start, min(end, size - 1)


def _client(request: Request) -> str:
    return request.client.host if request.client else "-"
