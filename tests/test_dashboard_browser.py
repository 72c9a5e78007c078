"""The dashboard in a real browser: headless Chromium against the real app under uvicorn.

Each role logs in and sees its own views; a decision produced to the real broker reaches the page
live; a lifter files an appeal and the jury reverses it; a replay of a real clip (real BlazePose
poses) draws, at the video's current time, the skeleton of exactly the frame on screen.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

from dashboard.feed import FeedTopics, kafka_feed
from dashboard.replay import StoreChunkSource
from dashboard.state import DashboardState
from stream_processors.kafka import ensure_topics, make_producer
from stream_processors.object_store import LocalObjectStore
from stream_processors.schemas import DecisionMsg, StateMsg
from stream_processors.tansu import TansuBroker
from tests.browser import (
    STREAM_START_US,
    LiveServer,
    RealClip,
    chromium,
    login,
    pose_messages,
    real_clip,
    synthetic_decisions,
    wait_for,
    with_depth,
    without_uncertainty,
)
from tests.test_dashboard import PASSWORD, new_state

pytestmark = pytest.mark.integration

NAV = {  # the views each role is offered
    "organizer": {"live", "history", "appeals", "audit", "admin"},
    "head_referee": {"live", "history"},
    "side_referee": {"live", "history"},
    "jury": {"live", "history", "appeals", "audit"},
    "lifter": {"live", "history", "appeals"},
    "coach": {"live", "history", "appeals"},
    "viewer": {"live", "history"},
}


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    d = chromium(tmp_path_factory.mktemp("chromium-profile"))
    yield d
    d.quit()


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RealClip]:
    root = tmp_path_factory.mktemp("archive")
    return root, real_clip(root, frames=75)


def accounts(state: DashboardState) -> None:
    for role in NAV:
        state.auth.create_user(role, role, PASSWORD, "Ann Lee" if role in ("lifter", "coach") else None)


def visible_views(driver: WebDriver) -> set[str]:
    return set(
        driver.execute_script(
            "return [...document.querySelectorAll('#nav a')].filter(a => !a.hidden).map(a => a.dataset.view)"
        )
    )


def test_each_role_logs_in_and_is_offered_only_its_views(driver: WebDriver) -> None:
    state = new_state()
    accounts(state)
    with LiveServer(state) as server:
        driver.delete_all_cookies()
        driver.get(server.url)
        wait_for(driver, lambda d: d.execute_script("return document.body.dataset.view") == "login")
        driver.find_element("id", "login-name").send_keys("jury")
        driver.find_element("id", "login-password").send_keys("not-the-password")
        driver.find_element("css selector", "#login-form button").click()
        wait_for(driver, lambda d: "wrong name or password" in d.find_element("id", "login-error").text)
        for role, views in NAV.items():
            login(driver, server.url, role, PASSWORD)
            wait_for(driver, lambda d: d.execute_script("return document.body.dataset.view") == "live")
            assert visible_views(driver) == views, role
            assert driver.find_element("id", "who").text.startswith(role)
            if "admin" in views:
                driver.get(f"{server.url}/#admin")
                wait_for(driver, lambda d: "jury" in d.find_element("id", "users").text)
        login(driver, server.url, "organizer", PASSWORD)
        driver.get(f"{server.url}/#audit")
        wait_for(driver, lambda d: d.find_elements("css selector", "#audit-table tbody tr"))
        driver.find_element("id", "audit-verify").click()
        wait_for(driver, lambda d: "Chain intact" in d.find_element("id", "audit-result").text)
        driver.find_element("id", "logout").click()
        wait_for(driver, lambda d: d.execute_script("return document.body.dataset.view") == "login")
    logins = [e["actor"] for e in state.audit.entries() if e["action"] == "login"]
    assert logins == [*NAV, "organizer"]


def test_a_decision_on_the_real_broker_reaches_the_page_live(driver: WebDriver, broker: TansuBroker) -> None:
    import asyncio

    suffix = uuid.uuid4().hex[:8]
    topics = FeedTopics(
        *(f"{name}-{suffix}" for name in ("decisions", "explanations", "state", "poses", "audit"))
    )
    asyncio.run(
        ensure_topics(broker.bootstrap, [topics.decisions, topics.explanations, topics.state, topics.poses])
    )
    state = new_state()
    state.auth.create_user("viewer", "viewer", PASSWORD)
    first, second = synthetic_decisions([1.3, 0.6])

    async def produce(*items: tuple[str, bytes]) -> None:
        producer = make_producer(broker.bootstrap)
        await producer.start()
        try:
            for topic, value in items:
                await producer.send_and_wait(topic, value, key=b"meet1/platform-A")
        finally:
            await producer.stop()

    feed = kafka_feed(broker.bootstrap, group_id=f"dash-{suffix}", topics=topics)
    with LiveServer(state, feed=feed) as server:
        login(driver, server.url, "viewer", PASSWORD)
        state_msg = StateMsg(
            meet="meet1",
            platform="platform-A",
            lifter="Ann Lee",
            lift="squat",
            attempt_number=2,
            weight_kg=150,
        )
        asyncio.run(
            produce(
                (topics.state, state_msg.dump()), (topics.decisions, DecisionMsg.model_validate(first).dump())
            )
        )
        # The first message also waits out the consumer-group join (seconds on Tansu).
        wait_for(
            driver,
            lambda d: d.find_elements(
                "css selector", f"article.lift[data-verdict='{first['attempt']['verdict']}']"
            ),
            30,
        )
        # meet.state and decisions are separate topics: either may be read first.
        wait_for(
            driver, lambda d: d.find_element("css selector", "[data-role=current-lifter]").text == "Ann Lee"
        )
        latencies = []
        for n, msg in enumerate(
            [second, *synthetic_decisions([1.2, 0.7, 1.25], start_us=1_768_000_000_000_000)]
        ):
            sent = time.perf_counter()
            asyncio.run(produce((topics.decisions, DecisionMsg.model_validate(msg).dump())))
            wait_for(driver, lambda d, n=n: len(d.find_elements("css selector", "article.lift")) == n + 2, 15)
            latencies.append(time.perf_counter() - sent)
        card = driver.find_element("css selector", "article.lift")  # newest first
        assert card.find_element("css selector", "[data-role=verdict]").text in ("GOOD LIFT", "NO LIFT")
        # "+16.8 cm", and with the referee's uncertainty interval "+16.8 cm (+13.6…+20.1)"
        margin = card.find_element("css selector", "[data-role=margin]").text
        assert re.fullmatch(r"[+−]?\d+\.\d cm( \([+−]?\d+\.\d…[+−]?\d+\.\d\))?", margin), margin
        assert card.find_element("css selector", "[data-role=rack-to-call]").text.endswith(" s")
    median = sorted(latencies)[len(latencies) // 2]
    print(
        f"decision → browser DOM via Tansu, median of {len(latencies)}: {median * 1000:.0f} ms"
        f" (max {max(latencies) * 1000:.0f} ms)"
    )
    assert median < 2.0


def test_a_lifter_files_an_appeal_and_the_jury_reverses_the_split_decision(driver: WebDriver) -> None:
    state = new_state()
    accounts(state)
    state.auth.create_user("jury2", "jury", PASSWORD)  # a jury of three decides by two agreeing votes
    with LiveServer(state) as server:
        server.call(
            state.on_state,
            {"meet": "meet1", "platform": "platform-A", "lifter": "Ann Lee", "attempt_number": 1, "at_us": 0},
        )
        for msg in synthetic_decisions([0.6]):
            server.call(state.on_decision, msg)
        (lift,) = state.store.lifts()
        assert lift["lifter"] == "Ann Lee" and lift["fused"]["verdict"] == "no_lift"
        server.call(
            state.store.set_lights,
            lift["id"],
            {"left": "bad", "head": "good", "right": "bad"},
            "head_referee",
        )

        login(driver, server.url, "lifter", PASSWORD)

        def type_reason(d: WebDriver) -> Any:
            # The live view re-renders cards that are not being edited as events arrive: find the
            # form again if the one found a moment ago was replaced; once typing, the card is kept.
            try:
                form = d.find_element(
                    "css selector", f"article[data-lift-id='{lift['id']}'] [data-role=appeal-form]"
                )
                form.find_element("css selector", "input").send_keys("my hip crease was below the knee")
                return form
            except (NoSuchElementException, StaleElementReferenceException):
                return False

        form = wait_for(driver, type_reason)
        form.find_element("css selector", "button").click()
        wait_for(
            driver,
            lambda d: d.find_element("css selector", "[data-role=appeal-status]").text == "appeal pending",
        )
        assert not driver.find_elements("css selector", "[data-role=appeal-form]")  # one per meet

        for juror in ("jury", "jury2"):
            login(driver, server.url, juror, PASSWORD)
            driver.get(f"{server.url}/#appeals")
            row = wait_for(driver, lambda d: d.find_element("css selector", "article[data-status=pending]"))
            assert "my hip crease was below the knee" in row.text and "(2–1)" in row.text
            row.find_element("css selector", "input").send_keys("depth visible on the replay")
            row.find_element("css selector", "[data-role=reverse]").click()
            # The vote is in before the next juror logs in.
            wait_for(
                driver, lambda d: d.find_elements("css selector", "[data-role=voted], [data-status=reversed]")
            )
        wait_for(driver, lambda d: d.find_elements("css selector", "article[data-status=reversed]"))
        driver.get(f"{server.url}/#live")
        wait_for(driver, lambda d: d.find_element("css selector", "[data-role=result]").text == "GOOD LIFT")
    actions = [(e["actor"], e["action"]) for e in state.audit.entries()]
    assert ("lifter", "appeal_filed") in actions and ("jury", "jury_vote") in actions
    assert ("jury2", "appeal_decided") in actions
    assert state.audit.verify().ok


def test_a_call_too_close_to_call_is_referred_to_the_referees_with_its_interval(driver: WebDriver) -> None:
    """Undecided because the margin's interval contains zero: "Refer to the referees" with the interval,
    on the live card and in the replay, whose plot draws the interval across the zero line. A decided
    call shows its interval too, and an older decision without one reads as before."""
    state = new_state()
    state.auth.create_user("viewer", "viewer", PASSWORD)
    starts = {
        "close": STREAM_START_US,
        "clear": STREAM_START_US + 100_000_000,
        "old": STREAM_START_US + 200_000_000,
    }
    real = {k: synthetic_decisions([1.3], start_us=t)[0] for k, t in starts.items()}
    method = {"surface": "joint centres + fitted offset 0.15 thigh", "scale": "plate"}
    msgs = {
        "close": with_depth(
            real["close"],
            status="undecided",
            margin_cm=0.4,
            margin_thigh=0.0095,
            confidence=0.64,
            margin_cm_interval=[-0.7, 1.5],
            **method,
        ),
        "clear": with_depth(real["clear"], margin_cm=18.9, margin_cm_interval=[15.6, 22.2], confidence=0.99),
        "old": without_uncertainty(with_depth(real["old"], margin_cm=18.9, confidence=1.0)),
    }
    assert msgs["close"]["attempt"]["reasons"] == ["too close to call: +0.4 ± 1.1 cm"]
    with LiveServer(state) as server:
        for key, msg in msgs.items():  # each attempt's poses, then its call (the pose ring keeps seconds)
            for p in pose_messages([1.3], start_us=starts[key]):
                server.call(state.on_pose, p)
            server.call(state.on_decision, msg)
        ids = {
            key: str(
                next(
                    lift["id"]
                    for lift in state.store.lifts()
                    if lift["cameras"][0]["attempt_id"] == m["attempt_id"]
                )
            )
            for key, m in msgs.items()
        }
        login(driver, server.url, "viewer", PASSWORD)

        def find_card(lift_id: str) -> WebElement:
            found: WebElement = wait_for(
                driver, lambda d: d.find_element("css selector", f"article.lift[data-lift-id='{lift_id}']")
            )
            return found

        card = {key: find_card(i) for key, i in ids.items()}

        close = card["close"]
        refer = close.find_element("css selector", "[data-role=refer]")
        assert refer.find_element("css selector", "strong").text == "Refer to the referees"
        assert "too close to call: +0.4 ± 1.1 cm" in refer.text
        assert "(−0.7…+1.5) cm" in refer.text
        assert "error" not in (refer.get_attribute("class") or "") and not close.find_elements(
            "css selector", ".error:not(:empty)"
        )
        assert not close.find_elements(
            "css selector", "[data-role=undecided-reason]"
        )  # not the "no call" line
        assert close.find_element("css selector", "[data-role=verdict]").text == "REFER"
        assert close.find_element("css selector", "[data-role=margin]").text == "+0.4 cm (−0.7…+1.5)"
        assert close.find_element("css selector", "[data-role=cam-margin]").text == "+0.4 cm (−0.7…+1.5)"
        small = close.find_element("css selector", "[data-role=method]").text
        assert method["surface"] in small and "scale: plate" in small

        clear = card["clear"]
        assert not clear.find_elements("css selector", "[data-role=refer]")
        assert clear.find_element("css selector", "[data-role=verdict]").text == "GOOD LIFT"
        assert clear.find_element("css selector", "[data-role=margin]").text == "+18.9 cm (+15.6…+22.2)"
        assert "scale:" in clear.find_element("css selector", "[data-role=method]").text

        old = card["old"]
        assert old.find_element("css selector", "[data-role=margin]").text == "+18.9 cm"
        assert not old.find_elements("css selector", "[data-role=refer], [data-role=method]")

        def open_replay(lift_id: str) -> None:
            driver.get(f"{server.url}/#replay/{lift_id}")
            wait_for(
                driver, lambda d: d.execute_script("return document.body.dataset.replayReady") == lift_id
            )

        def interval_vs_zero() -> list[dict[str, Any]]:
            """Each interval drawn on the plot (on the curve, and magnified), against its zero line."""
            geometry: list[dict[str, Any]] = driver.execute_script(
                """const zero = (g) => Number((g.closest('#plot-inset') || document)
                       .querySelector('line.zero').getAttribute('y1'));
                   return [...document.querySelectorAll('#plot .plot-interval, #plot .plot-interval-main')]
                     .map((g) => { const r = g.querySelector('rect');
                       const top = Number(r.getAttribute('y'));
                       const bottom = top + Number(r.getAttribute('height'));
                       return {cls: g.getAttribute('class'), cross: g.dataset.crossesZero, top, bottom,
                               zero: zero(g), bar: g.querySelectorAll('line.plot-interval-bar').length,
                               curve: document.querySelectorAll('#plot polyline').length}; });"""
            )
            return geometry

        open_replay(ids["close"])
        pane = driver.find_element("css selector", ".pane")
        assert pane.find_element("css selector", "[data-role=pane-verdict]").text == "Refer to the referees"
        assert pane.find_element("css selector", "[data-role=pane-margin]").text == "+0.4 cm (−0.7…+1.5)"
        assert "too close to call: +0.4 ± 1.1 cm" in pane.text
        assert "Refer to the referees" in driver.find_element("id", "replay-summary").text
        marks = interval_vs_zero()
        assert sorted(g["cls"] for g in marks) == ["plot-interval", "plot-interval-main"]
        for g in marks:
            assert g["cross"] == "1" and g["bar"] == 1 and g["curve"] == 1, g
            assert g["top"] < g["zero"] < g["bottom"], g  # the band is drawn across its zero line

        open_replay(ids["clear"])
        assert "(+15.6…+22.2)" in driver.find_element("id", "replay-summary").text
        marks = interval_vs_zero()
        assert len(marks) == 2
        for g in marks:
            assert g["cross"] == "0" and g["bottom"] < g["zero"], g  # wholly above the line: below parallel

        open_replay(ids["old"])
        assert interval_vs_zero() == []
        assert driver.find_elements("css selector", "#plot polyline, #plot-zero")  # the plot as before
        assert driver.find_element("css selector", "[data-role=pane-margin]").text == "+18.9 cm"


def _replay_decision(clip: RealClip) -> dict[str, Any]:
    """A decision over the clip's frames 25..55 (bottom at 40) with the real pose's rule points. The
    call itself is not what this test is about; the times and landmarks are the clip's own."""
    msg = synthetic_decisions([1.3], start_us=clip.stream_start_us)[0]
    bottom = clip.poses[40]["frame"]
    kp = bottom["keypoints"]
    msg["attempt"]["capture_us"] = {
        "start": clip.capture_us[25],
        "bottom": clip.capture_us[40],
        "end": clip.capture_us[55],
    }
    msg["attempt"]["depth"]["landmarks"] = {"hip": kp[24][:2], "knee": kp[26][:2]}
    msg["attempt_id"] = f"{clip.camera_key}/{clip.stream_start_us}/1"
    return msg


def test_a_replay_draws_the_skeleton_of_the_frame_on_screen(
    driver: WebDriver, clip: tuple[Path, RealClip]
) -> None:
    root, real = clip
    state = new_state(archive=StoreChunkSource(LocalObjectStore(root)))
    state.auth.create_user("viewer", "viewer", PASSWORD)
    msg = _replay_decision(real)
    with LiveServer(state) as server:
        for p in real.poses:
            server.call(state.on_pose, p)
        server.call(state.on_decision, msg)
        lift_id = str(state.store.lifts()[0]["id"])
        login(driver, server.url, "viewer", PASSWORD)
        # Every frame the overlay draws, from the moment the replay opens (a hash change keeps this page).
        driver.execute_script(OVERLAY_LOG)
        driver.get(f"{server.url}/#replay/{lift_id}")
        wait_for(driver, lambda d: d.execute_script("return document.body.dataset.replayReady") == lift_id)
        # It opens at the bottom frame, with the rule's two points and the line between them.
        wait_for(
            driver,
            lambda d: (
                d.execute_script("return document.querySelector('.pane canvas').dataset.atBottom") == "1"
            ),
            15,
        )
        bottom = real.poses[40]["frame"]
        settle(driver)
        # Once at the bottom it stays there: the video's first frame, presented while the opening seek was
        # still under way, must not pull the overlay back to frame 0 (it did, and a read could catch it).
        drawn = driver.execute_script("return window.__overlay")
        first = next(i for i, (_, at_bottom) in enumerate(drawn) if at_bottom == "1")
        assert {index for index, _ in drawn[first:]} == {str(bottom["frame_index"])}, drawn
        assert canvas_data(driver)["frameIndex"] == str(bottom["frame_index"])
        hip = msg["attempt"]["depth"]["landmarks"]["hip"]
        assert is_colour(pixel(driver, hip), (0xFF, 0xB0, 0x20))  # the hip-surface marker, orange

        t0 = driver.execute_script("return window.meetvar.replay.panes[0].data.t0_capture_us")
        for index in (26, 33, 47, 52):
            seek(driver, (real.capture_us[index] - t0) / 1e6 + 0.004)
            data = canvas_data(driver)
            assert data["frameCaptureUs"] == str(real.capture_us[index]), index
            frame = real.poses[index]["frame"]
            # Where this frame's left shoulder-to-hip bone is, the canvas has the skeleton's colour.
            kp = frame["keypoints"]
            mid = [(kp[11][0] + kp[23][0]) / 2, (kp[11][1] + kp[23][1]) / 2]
            assert is_colour(pixel(driver, mid), (0x00, 0xE5, 0xFF)), index

        before = int(canvas_data(driver)["frameIndex"])
        driver.find_element("id", "rp-next").click()
        wait_for(driver, lambda d: int(canvas_data(d)["frameIndex"]) == before + 1)
        driver.find_element("id", "rp-prev").click()
        driver.find_element("id", "rp-prev").click()
        wait_for(driver, lambda d: int(canvas_data(d)["frameIndex"]) == before - 1)
        driver.find_element("id", "rp-bottom").click()
        wait_for(driver, lambda d: canvas_data(d)["atBottom"] == "1")
        # Playing: the overlay follows the video frame by frame (requestVideoFrameCallback).
        driver.find_element("id", "rp-play").click()
        wait_for(driver, lambda d: int(canvas_data(d)["frameIndex"]) > int(bottom["frame_index"]))
        driver.find_element("id", "rp-play").click()
        points = driver.execute_script(
            "return document.querySelector('#plot polyline').getAttribute('points').split(' ').length"
        )
        assert points >= 50  # the margin over the attempt window, one point per posed frame


OVERLAY_LOG = """window.__overlay = [];
new MutationObserver((records) => {
  for (const r of records) if (r.target.tagName === 'CANVAS' && r.attributeName === 'data-at-bottom')
    window.__overlay.push([r.target.dataset.frameIndex, r.target.dataset.atBottom]);
}).observe(document.body, {subtree: true, attributes: true, attributeFilter: ['data-at-bottom']});"""


def settle(driver: WebDriver) -> None:
    """Wait until the first pane's video has no seek under way, then three rendering steps (a paused video
    presents the sought frame in one of them; requestVideoFrameCallback would wait for ever if it had)."""
    driver.execute_async_script(
        """const done = arguments[0]; const v = document.querySelector('.pane video');
           const frames = (n) => requestAnimationFrame(() => (n ? frames(n - 1) : done()));
           if (!v.seeking) frames(3);
           else v.addEventListener('seeked', () => frames(3), {once: true});"""
    )


def canvas_data(driver: WebDriver) -> dict[str, str]:
    data: dict[str, str] = driver.execute_script("return {...document.querySelector('.pane canvas').dataset}")
    return data


def seek(driver: WebDriver, seconds: float) -> None:
    driver.execute_async_script(
        """const [t, done] = arguments; const v = document.querySelector('.pane video');
           v.addEventListener('seeked', () => requestAnimationFrame(() => done()), {once: true});
           v.currentTime = t;""",
        seconds,
    )


def pixel(driver: WebDriver, at: list[float]) -> tuple[int, int, int]:
    """The canvas's colour around an image point (max over a small box: lines are a few px wide)."""
    rgb = driver.execute_script(
        """const [x, y] = arguments[0]; const c = document.querySelector('.pane canvas').getContext('2d');
           const d = c.getImageData(Math.round(x) - 3, Math.round(y) - 3, 7, 7).data;
           let best = [0, 0, 0, 0];
           for (let i = 0; i < d.length; i += 4)
             if (d[i + 3] > best[3]) best = [d[i], d[i + 1], d[i + 2], d[i + 3]];
           return best.slice(0, 3);""",
        at,
    )
    return (int(rgb[0]), int(rgb[1]), int(rgb[2]))


def is_colour(got: tuple[int, int, int], want: tuple[int, int, int]) -> bool:
    return all(abs(a - b) <= 40 for a, b in zip(got, want, strict=True))


def clicked(driver: WebDriver, selector: str) -> bool:
    """Click the element as it is now (for wait_for: a re-rendered, stale one is found again)."""
    driver.find_element("css selector", selector).click()
    return True


def test_the_organizer_sees_the_agreement_report_and_shadow_mode_hides_the_call(driver: WebDriver) -> None:
    """Issue 12, item 5: the organizer's page shows the agreement table (the same counts and κ as
    GET /api/agreement), its disagreements link to their replays, and its switch turns shadow mode
    on, after which a referee's page shows a new attempt without its call."""
    from dashboard.shadow import shadow_meets
    from tests.test_agreement import fill

    state = new_state()
    accounts(state)
    state.store.add_meet("meet1")
    ids = fill(state.store)
    with LiveServer(state) as server:
        login(driver, server.url, "organizer", PASSWORD)
        driver.get(f"{server.url}/#admin")
        cell = "#agreement-table td[data-cell='{}']"
        wait_for(driver, lambda d: d.find_elements("css selector", cell.format("good/good")))
        got = wait_for(
            driver,
            lambda d: {
                key: d.find_element("css selector", cell.format(key)).text
                for key in ("good/good", "good/no_lift", "no_lift/good", "no_lift/no_lift", "undecided/good")
            },
        )
        # Both meets: PLAN's [[2, 1], [1, 1]] plus meet2's agreeing lift; κ of [[3, 1], [1, 1]] = 0.25.
        assert got == {
            "good/good": "3",
            "good/no_lift": "1",
            "no_lift/good": "1",
            "no_lift/no_lift": "1",
            "undecided/good": "1",
        }
        assert driver.find_element("id", "agreement-kappa").text.startswith("Cohen's κ = 0.250 (95% CI")
        hrefs = wait_for(
            driver,
            lambda d: [
                a.get_attribute("href") or ""
                for a in d.find_elements("css selector", "#agreement-disagreements a")
            ],
        )
        assert [h.split("#")[1] for h in hrefs] == [
            f"replay/{ids['Dee Moss']}",
            f"replay/{ids['Eve Holt']}",
        ]
        assert (driver.find_element("id", "agreement-print").get_attribute("href") or "").endswith(
            "/agreement"
        )
        wait_for(driver, lambda d: clicked(d, "#agreement-disagreements a"))
        wait_for(
            driver,
            lambda d: d.execute_script("return document.body.dataset.replayReady") == str(ids["Dee Moss"]),
        )

        driver.get(f"{server.url}/#admin")
        # The page re-renders the set-up view as its data arrives: click the switch as it is now.
        wait_for(driver, lambda d: clicked(d, "#shadow-meet1"))
        wait_for(driver, lambda d: shadow_meets(state.store) == {"meet1"})
        wait_for(driver, lambda d: d.find_element("id", "shadow-meet1").is_selected())
        (msg,) = synthetic_decisions([1.3], start_us=STREAM_START_US + 900_000_000)
        server.call(state.on_decision, msg)
        login(driver, server.url, "head_referee", PASSWORD)
        # Read in one go: the live view re-renders its cards as events arrive.
        text = wait_for(driver, lambda d: d.find_element("css selector", "article[data-verdict=hidden]").text)
        assert "shown once the official lights are in" in text and "hip crease" not in text
        assert "HIDDEN" in text and "GOOD LIFT" not in text


def test_the_organizers_page_shows_each_services_restarts(
    driver: WebDriver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 11, item 4: what the supervisor healed is visible to the organizer — each service's state
    and restart count from the supervisor's status file, a failed one marked, refreshed as it changes."""
    from meetvar.supervisor import STATUS_ENV

    def status(referee_restarts: int) -> None:
        services = {
            "broker": {"state": "running", "restarts": 0, "up_since": "2026-12-03T09:00:00+00:00"},
            "referee": {
                "state": "running",
                "restarts": referee_restarts,
                "up_since": "2026-12-03T10:15:02+00:00",
                "last_exit": -9,
                "last_exit_at": "2026-12-03T10:15:01+00:00",
            },
            "liftingcast": {
                "state": "failed",
                "restarts": 0,
                "last_exit": 2,
                "last_exit_at": "2026-12-03T09:00:03+00:00",
            },
        }
        path = tmp_path / "supervisor.json"
        path.write_text(json.dumps({"supervisor_pid": 1, "services": services}))

    status(referee_restarts=2)
    monkeypatch.setenv(STATUS_ENV, str(tmp_path / "supervisor.json"))
    state = new_state()
    accounts(state)
    with LiveServer(state) as server:
        login(driver, server.url, "organizer", PASSWORD)
        driver.get(f"{server.url}/#admin")

        def rows(d: WebDriver) -> dict[str, list[str]]:
            return {
                tr.get_attribute("data-service") or "": [
                    c.text for c in tr.find_elements("css selector", "th, td")
                ]
                for tr in d.find_elements("css selector", "#services tbody tr")
            }

        got = wait_for(driver, lambda d: rows(d) if len(rows(d)) == 3 else None)
        assert got["referee"][:3] == ["referee", "running", "2"]
        assert got["referee"][4].startswith("killed by signal 9")
        assert got["liftingcast"][:3] == ["liftingcast", "failed", "0"] and got["liftingcast"][4].startswith(
            "exit 2"
        )
        failed = driver.find_element("css selector", "#services tr[data-service='liftingcast']")
        assert "warn" in (failed.get_attribute("class") or "")
        assert "2 restart(s) in all" in driver.find_element("id", "services-note").text
        status(referee_restarts=3)  # the page follows the supervisor without a reload
        wait_for(driver, lambda d: rows(d).get("referee", ["", "", ""])[2] == "3", timeout=15)
