"""The routes of the rulebook's officials: the head referee's signals, the organizer's lights
correction and roster, the jury's votes. Kept out of dashboard/app.py so the rules (dashboard/jury.py,
dashboard/roster.py, dashboard/signals.py) and their routes read together; each route names its roles
through ``state.auth.require`` like every other route.
"""

from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, File, HTTPException, UploadFile
from pydantic import BaseModel, Field

from dashboard.auth import EVERYONE, HEAD_REFEREE, JURY, OFFICIALS, ORGANIZER, User
from dashboard.jury import cast_vote, correct_lights, with_votes
from dashboard.roster import MAX_LIFTERS, add_lifters, from_openlifter, lifters_of
from dashboard.signals import send_signal
from dashboard.state import DashboardState
from dashboard.store import StoreError

MAX_UPLOAD_BYTES = 20 * 1024 * 1024


class SignalIn(BaseModel):
    signal: Literal["squat", "rack"]


class VoteIn(BaseModel):
    vote: Literal["uphold", "reverse"]
    reason: str = Field(default="", max_length=2000)  # required; checked so the message says so


class CorrectionIn(BaseModel):
    left: Literal["good", "bad"] | None = None
    head: Literal["good", "bad"] | None = None
    right: Literal["good", "bad"] | None = None
    reason: str = Field(default="", max_length=2000)


class RosterEntry(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    division: str | None = Field(default=None, max_length=100)


class RosterIn(BaseModel):
    """A list of names, or of {name, division}."""

    lifters: list[RosterEntry | Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        min_length=1, max_length=MAX_LIFTERS
    )


def _http(exc: StoreError) -> HTTPException:
    return HTTPException(exc.status, str(exc))


def add_routes(app: FastAPI, state: DashboardState) -> None:
    auth = state.auth
    store = state.store
    HeadReferee = Annotated[User, Depends(auth.require({HEAD_REFEREE}))]
    Official = Annotated[User, Depends(auth.require(OFFICIALS))]
    Organizer = Annotated[User, Depends(auth.require({ORGANIZER}))]
    Jury = Annotated[User, Depends(auth.require({JURY}))]
    AnyUser = Annotated[User, Depends(auth.require(EVERYONE))]

    # --- the head referee's signals --------------------------------------------------------------------

    @app.get("/api/platforms")
    async def platforms(user: Official) -> list[dict[str, Any]]:
        """Every platform on record, so a tablet shows the platform before its first meet.state."""
        return store.config()["platforms"]

    @app.post("/api/platforms/{meet}/{platform}/signal")
    async def signal(user: HeadReferee, meet: str, platform: str, body: SignalIn) -> dict[str, Any]:
        try:
            return await send_signal(state, user, meet, platform, body.signal)
        except StoreError as exc:
            raise _http(exc) from exc

    # --- the organizer's correction of official lights -------------------------------------------------

    @app.post("/api/lifts/{lift_id}/lights/correction")
    async def correct(user: Organizer, lift_id: int, body: CorrectionIn) -> dict[str, Any]:
        values = body.model_dump(exclude={"reason"})
        try:
            done = correct_lights(store.engine, lift_id, values, user.name, body.reason)
        except StoreError as exc:
            raise _http(exc) from exc
        state.record(user, "lights_corrected", f"lift/{lift_id}", done)
        state.publish_lift(lift_id)
        return {**done, "lift": store.lift(lift_id)}

    # --- the jury of three -----------------------------------------------------------------------------

    @app.post("/api/appeals/{appeal_id}/vote")
    async def vote(user: Jury, appeal_id: int, body: VoteIn) -> dict[str, Any]:
        try:
            row = cast_vote(store.engine, appeal_id, user.name, body.vote, body.reason)
        except StoreError as exc:
            raise _http(exc) from exc
        details = {
            "meet": row["meet"],
            "lift": row["lift_id"],
            "vote": body.vote,
            "reason": body.reason.strip(),
        }
        state.record(user, "jury_vote", f"appeal/{appeal_id}", details)
        if row["decided"]:
            state.record(
                user,
                "appeal_decided",
                f"appeal/{appeal_id}",
                {"meet": row["meet"], "lift": row["lift_id"], "status": row["status"], "votes": row["votes"]},
            )
        state.publish({"type": "appeal", "appeal": row})
        state.publish_lift(int(row["lift_id"]))
        return row

    # --- the roster ------------------------------------------------------------------------------------

    @app.get("/api/meets/{name}/roster")
    async def roster(user: AnyUser, name: str) -> list[dict[str, Any]]:
        return lifters_of(store.engine, name)

    @app.post("/api/meets/{name}/roster")
    async def add_roster(user: Organizer, name: str, body: RosterIn) -> dict[str, Any]:
        entries = [(e, None) if isinstance(e, str) else (e.name, e.division) for e in body.lifters]
        return _saved(user, name, entries, "organizer")

    @app.post("/api/meets/{name}/roster/openlifter")
    async def add_roster_openlifter(
        user: Organizer, name: str, file: Annotated[UploadFile, File()]
    ) -> dict[str, Any]:
        raw = await file.read(MAX_UPLOAD_BYTES + 1)
        if len(raw) > MAX_UPLOAD_BYTES:
            raise HTTPException(413, f"an OpenLifter file is at most {MAX_UPLOAD_BYTES // 2**20} MiB")
        try:
            entries = from_openlifter(raw)
        except StoreError as exc:
            raise _http(exc) from exc
        return _saved(user, name, entries, "openlifter")

    def _saved(user: User, meet: str, entries: list[tuple[str, str | None]], source: str) -> dict[str, Any]:
        try:
            out = add_lifters(store.engine, meet, entries, source)
        except StoreError as exc:
            raise _http(exc) from exc
        state.record(
            user,
            "roster_saved",
            f"meet/{meet}",
            {"meet": meet, "source": source, "given": out["given"], "added": out["added"]},
        )
        return out


def appeals_with_votes(state: DashboardState, appeals: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``GET /api/appeals``: each appeal with its jury's votes."""
    return with_votes(state.store.engine, appeals)
