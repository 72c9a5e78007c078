"""The rulebook in a real browser (headless Chromium, the real app under uvicorn): the head referee's
Squat and Rack buttons, lights that lock once official and the organizer's correction, an appeal
that names a lifter from the roster's select, and a jury of three deciding by two agreeing votes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from dashboard.roster import add_lifters, lifters_of
from tests.browser import LiveServer, chromium, login, synthetic_decisions, wait_for
from tests.test_dashboard import PASSWORD, new_state

pytestmark = pytest.mark.integration

MEET, PLATFORM = "meet1", "platform-A"


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    d = chromium(tmp_path_factory.mktemp("chromium-profile"))
    yield d
    d.quit()


def click(driver: WebDriver, css: str) -> None:
    """Click what ``css`` finds, again if a re-render replaced it between finding and clicking (the
    platform boxes are redrawn on every meet.state)."""

    def clicked(d: WebDriver) -> bool:
        d.find_element("css selector", css).click()
        return True

    wait_for(driver, clicked)


def text_of(driver: WebDriver, css: str) -> str:
    return str(wait_for(driver, lambda d: d.find_element("css selector", css).text or " "))


def test_the_head_referee_signals_squat_and_rack_from_the_tablet(driver: WebDriver) -> None:
    state = new_state()
    state.auth.create_user("ref", "head_referee", PASSWORD)
    state.auth.create_user("side", "side_referee", PASSWORD)
    state.store.add_meet(MEET)
    state.store.add_platform(MEET, PLATFORM)  # on record, but no meet.state yet
    with LiveServer(state) as server:
        login(driver, server.url, "ref", PASSWORD)
        wait_for(driver, lambda d: d.find_element("css selector", "[data-role=signal-squat]").text == "Squat")
        assert MEET in text_of(driver, ".platform") and text_of(driver, "[data-role=signal-rack]") == "Rack"
        click(driver, "[data-role=signal-squat]")
        wait_for(driver, lambda d: "“squat”" in d.find_element("css selector", "[data-role=command]").text)
        assert text_of(driver, "[data-role=signal-status]").startswith("Squat sent")
        assert state.store.states()[0]["command"] == "squat"

        # The meet software announces the lifter; a signal then keeps the lifter on the platform.
        server.call(
            state.on_state,
            {"meet": MEET, "platform": PLATFORM, "lifter": "Ann Lee", "lift": "squat", "attempt_number": 1},
        )
        wait_for(
            driver, lambda d: d.find_element("css selector", "[data-role=current-lifter]").text == "Ann Lee"
        )
        click(driver, "[data-role=signal-rack]")
        wait_for(driver, lambda d: "“rack”" in d.find_element("css selector", "[data-role=command]").text)
        assert text_of(driver, "[data-role=current-lifter]") == "Ann Lee"
        assert text_of(driver, "[data-role=signal-status]").startswith("Rack sent")

        # A side referee sees the platform, without the head referee's buttons.
        login(driver, server.url, "side", PASSWORD)
        wait_for(
            driver, lambda d: d.find_element("css selector", "[data-role=current-lifter]").text == "Ann Lee"
        )
        assert not driver.find_elements("css selector", "[data-role=signal-squat], [data-role=signal-rack]")
    signals = [(e["actor"], e["details"]["signal"]) for e in state.audit.entries() if e["action"] == "signal"]
    assert signals == [("ref", "squat"), ("ref", "rack")]


def fill(driver: WebDriver, lift_id: int, role: str, values: dict[str, str]) -> None:
    """Fill the card's form and submit it. All in one go, again from the start if the live view
    re-rendered the card before its first field had the focus (a focused card is kept)."""

    def attempt(d: WebDriver) -> bool:
        form = card_form(d, lift_id, role)
        if not form:
            return False
        for name, value in values.items():
            field = form.find_element("css selector", f"[name={name}]")
            if field.tag_name == "select":
                Select(field).select_by_value(value)
            else:
                field.clear()
                field.send_keys(value)
        form.find_element("css selector", "button[type=submit]").click()
        return True

    wait_for(driver, attempt)


def card_form(d: WebDriver, lift_id: int, role: str) -> Any:
    """The form of ``role`` on the lift's card, found again if a re-render replaced it."""
    try:
        return d.find_element("css selector", f"article[data-lift-id='{lift_id}'] [data-role={role}]")
    except (NoSuchElementException, StaleElementReferenceException):
        return False


def test_locked_lights_a_roster_appeal_and_a_jury_of_three(driver: WebDriver) -> None:
    state = new_state()
    for name, role, lifter in (
        ("ref", "head_referee", None),
        ("org", "organizer", None),
        ("ann", "lifter", "Ann Lee"),
        ("j1", "jury", None),
        ("j2", "jury", None),
    ):
        state.auth.create_user(name, role, PASSWORD, lifter)
    state.store.add_meet(MEET)
    add_lifters(state.store.engine, MEET, [("Bo Park", "Open"), ("Ann Lee", "Open")])
    with LiveServer(state) as server:
        server.call(
            state.on_state,
            {"meet": MEET, "platform": PLATFORM, "lifter": "Ann Lee", "lift": "squat", "attempt_number": 1},
        )
        for msg in synthetic_decisions([0.6]):
            server.call(state.on_decision, msg)
        lift_id = int(state.store.lifts()[0]["id"])

        # The head referee enters the lights once; then they are locked on the tablet.
        login(driver, server.url, "ref", PASSWORD)
        fill(driver, lift_id, "lights-form", {"left": "good", "head": "good", "right": "good"})
        wait_for(driver, lambda d: card_form(d, lift_id, "lights-locked"))
        assert not driver.find_elements("css selector", "[data-role=lights-form]")

        # The organizer corrects them (the head light was keyed wrongly), with a reason.
        login(driver, server.url, "org", PASSWORD)
        correction = {"head": "bad", "right": "bad", "reason": "head and right keyed white by mistake"}
        fill(driver, lift_id, "correction-form", correction)
        wait_for(driver, lambda d: state.store.lift(lift_id)["lights"]["head"] == "bad")  # type: ignore[index]

        # The lifter's appeal names a lifter from the roster's select, their own preselected.
        login(driver, server.url, "ann", PASSWORD)

        def appeal_select(d: WebDriver) -> Any:
            """The select's options and chosen value, once the roster has arrived."""
            form = card_form(d, lift_id, "appeal-form")
            if not form:
                return False
            select = Select(form.find_element("css selector", "select[data-role=appeal-lifter]"))
            options = [o.text for o in select.options]
            chosen = select.first_selected_option.get_attribute("value")
            return (options, chosen) if "Bo Park (Open)" in options else False

        options, chosen = wait_for(driver, appeal_select)
        assert options == ["— lifter —", "Ann Lee (Open)", "Bo Park (Open)"] and chosen == "Ann Lee"
        fill(driver, lift_id, "appeal-form", {"reason": "hip crease below the knee"})
        wait_for(
            driver,
            lambda d: d.find_element("css selector", "[data-role=appeal-status]").text == "appeal pending",
        )

        # Two jury members vote reverse, each with a reason; the second agreeing vote decides.
        for juror, reason in (("j1", "depth visible at 2.5 s"), ("j2", "agree: below parallel")):
            login(driver, server.url, juror, PASSWORD)
            driver.get(f"{server.url}/#appeals")

            def vote(d: WebDriver, reason: str = reason) -> bool:
                row = d.find_element("css selector", "article[data-status=pending]")
                assert "(2–1)" in row.text and "hip crease below the knee" in row.text
                field = row.find_element("css selector", "input[name=reason]")
                field.clear()
                field.send_keys(reason)
                row.find_element("css selector", "[data-role=reverse]").click()
                return True

            wait_for(driver, vote)
            if juror == "j1":
                # The appeals view re-renders on the vote's answer and again on its live event.
                wait_for(driver, lambda d: d.find_element("css selector", "[data-role=voted]"))
                wait_for(
                    driver,
                    lambda d: (
                        "j1 votes reverse: depth visible at 2.5 s"
                        in d.find_element("css selector", "[data-role=votes]").text
                    ),
                )
        done = wait_for(
            driver, lambda d: d.find_element("css selector", "article[data-status=reversed]").text
        )
        assert "j1 votes reverse" in done and "j2 votes reverse: agree: below parallel" in done
        assert "Decided by jury: j1, j2" in done
        driver.get(f"{server.url}/#live")
        wait_for(driver, lambda d: d.find_element("css selector", "[data-role=result]").text == "GOOD LIFT")
    actions = [(e["actor"], e["action"]) for e in state.audit.entries()]
    for expected in (
        ("ref", "lights_entered"),
        ("org", "lights_corrected"),
        ("ann", "appeal_filed"),
        ("j1", "jury_vote"),
        ("j2", "jury_vote"),
        ("j2", "appeal_decided"),
    ):
        assert expected in actions
    assert state.audit.verify().ok


def test_the_organizer_fills_the_roster_from_names_and_an_openlifter_file(
    driver: WebDriver, tmp_path: Path
) -> None:
    from tests.test_openlifter import MEET as OPENLIFTER_MEET

    state = new_state()
    state.auth.create_user("org", "organizer", PASSWORD)
    state.store.add_meet(MEET)
    meet_file = tmp_path / "meet.openlifter"
    meet_file.write_text(json.dumps(OPENLIFTER_MEET))
    with LiveServer(state) as server:
        login(driver, server.url, "org", PASSWORD)
        driver.get(f"{server.url}/#admin")
        wait_for(driver, lambda d: d.find_element("id", "r-meet").is_displayed())
        driver.find_element("id", "r-meet").send_keys(MEET)
        driver.find_element("id", "r-names").send_keys("Cy Doe\n\nDee Ray\n")
        driver.find_element("css selector", "#f-roster button").click()
        wait_for(driver, lambda d: "2 lifters (2 new)" in d.find_element("id", "roster-msg").text)
        driver.find_element("id", "r-file").send_keys(str(meet_file))
        driver.find_element("css selector", "#f-roster button").click()
        wait_for(driver, lambda d: "4 lifters (2 new)" in d.find_element("id", "roster-msg").text)
        listed = driver.find_element("id", "roster-list").text
        assert "Ann Smith (Open) · openlifter" in listed and "Cy Doe · organizer" in listed
        driver.find_element("id", "r-meet").clear()
        driver.find_element("id", "r-meet").send_keys("no-such-meet")
        driver.find_element("id", "r-names").send_keys("Eve")
        driver.find_element("css selector", "#f-roster button").click()
        wait_for(driver, lambda d: "create it first" in d.find_element("id", "roster-msg").text)
        assert "error" in (driver.find_element("id", "roster-msg").get_attribute("class") or "")
    names = [x["name"] for x in lifters_of(state.store.engine, MEET)]
    assert names == ["Ann Smith", "Bob Jones", "Cy Doe", "Dee Ray"]
