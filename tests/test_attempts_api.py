"""The ``GET /api/attempts`` contract: each item carries the meet's attempt (``lifter``, ``lift``,
``attempt_number``, ``weight_kg``) from ``meet.state`` and, once the referees' lights are in, ``official``
``{"lights": {left, head, right}, "result"}`` — whether the lights came before or after the call."""

from __future__ import annotations

from fastapi.testclient import TestClient

from dashboard.app import create_app
from stream_processors.schemas import Official, OfficialLights, StateMsg
from tests.browser import STREAM_START_US, synthetic_decisions
from tests.test_dashboard import OWN, PASSWORD, new_state


def _state(lifter: str, n: int, kg: float, at_us: int, lights: tuple[str, str, str] | None = None) -> dict:
    official = None
    if lights is not None:
        ol = OfficialLights(left=lights[0], head=lights[1], right=lights[2])  # type: ignore[arg-type]
        official = Official(lights=ol, result=ol.result(), source="liftingcast")
    msg = StateMsg(
        meet="meet1",
        platform="platform-A",
        lifter=lifter,
        lift="squat",
        attempt_number=n,
        weight_kg=kg,
        at_us=at_us,
        official=official,
    )
    return msg.model_dump(mode="json")


def test_attempts_carry_lifter_weight_and_official_lights() -> None:
    decisions = synthetic_decisions([1.3, 0.6])
    first, second = decisions
    start2 = second["attempt"]["capture_us"]["start"]
    end1 = first["attempt"]["capture_us"]["end"]
    state = new_state()
    state.auth.create_user("viewer", "viewer", PASSWORD)
    state.on_state(_state("Ann Smith", 1, 140.0, STREAM_START_US - 1_000_000))
    # Ann's lights (2–1 good) reach the dashboard before the camera's call; Bea's (0–3) after it.
    state.on_state(_state("Ann Smith", 1, 140.0, end1 + 1000, ("good", "bad", "good")))
    state.on_state(_state("Bea Jones", 2, 120.5, (end1 + start2) // 2))
    state.on_decision(first)
    state.on_decision(second)
    with TestClient(create_app(state)) as c:
        r = c.post("/api/login", json={"name": "viewer", "password": PASSWORD}, headers=OWN)
        assert r.status_code == 200, r.text
        before = c.get("/api/attempts").json()
        assert [a["lifter"] for a in before] == ["Bea Jones", "Ann Smith"]
        assert before[0]["official"] is None
        state.on_state(_state("Bea Jones", 2, 120.5, start2 + 5_000_000, ("bad", "bad", "bad")))
        items = c.get("/api/attempts").json()
    bea, ann = items
    assert (ann["lifter"], ann["lift"], ann["attempt_number"], ann["weight_kg"]) == (
        "Ann Smith",
        "squat",
        1,
        140.0,
    )
    assert ann["official"] == {"lights": {"left": "good", "head": "bad", "right": "good"}, "result": "good"}
    assert (bea["lifter"], bea["lift"], bea["attempt_number"], bea["weight_kg"]) == (
        "Bea Jones",
        "squat",
        2,
        120.5,
    )
    assert bea["official"] == {"lights": {"left": "bad", "head": "bad", "right": "bad"}, "result": "no_lift"}
    assert isinstance(ann["attempt_number"], int)
    # The official result did not become the platform's current state: Bea is still on the platform.
    assert [s["lifter"] for s in state.store.states()] == ["Bea Jones"]
    # The lift shows the same lights, entered by the meet software.
    lift = state.store.lift(bea["lift_id"])
    assert lift is not None and lift["lights"]["entered_by"] == "liftingcast"
    assert lift["result"] == {"verdict": "no_lift", "by": "referees"}


def test_attempts_without_meet_state_have_the_fields_empty() -> None:
    state = new_state()
    for msg in synthetic_decisions([1.3]):
        state.on_decision(msg)
    (item,) = state.store.recent_attempts()
    assert {k: item[k] for k in ("lifter", "lift", "attempt_number", "weight_kg", "official")} == {
        "lifter": None,
        "lift": None,
        "attempt_number": None,
        "weight_kg": None,
        "official": None,
    }
