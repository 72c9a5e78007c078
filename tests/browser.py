"""Helpers for the dashboard's browser tests, and the script that takes the README's screenshots.

- :func:`chromium` starts Debian's headless Chromium through its chromedriver (fresh profile, no
  network chatter of its own).
- :class:`LiveServer` runs the real dashboard under uvicorn on a free loopback port in a thread, and
  runs ingestion calls on the server's own event loop (the hub's queues are not thread-safe).
- :func:`real_clip` cuts the first seconds of the bundled squat clip into the archive (the same
  GOP-aligned MPEG-TS chunks ingest produces, with their metadata) and computes real BlazePose poses.

``python -m tests.browser docs/screenshots`` renders the live view and a replay of the clip's first
real attempt (judged by the real referee) into PNGs.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import uvicorn
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from dashboard.app import create_app
from dashboard.state import DashboardState
from stream_processors.object_store import LocalObjectStore
from stream_processors.schemas import ChunkMeta, PoseMsg
from stream_processors.tansu import free_port

T = TypeVar("T")
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CLIP = Path(__file__).resolve().parents[1] / "ingest" / "samples" / "rohanx01_squat.mp4"
STREAM_START_US = 1_767_000_000_000_000  # a fixed wall-clock start, so clip times are reproducible


def chromium(profile_dir: Path, width: int = 1280, height: int = 900) -> WebDriver:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--autoplay-policy=no-user-gesture-required",
        f"--user-data-dir={profile_dir}",
        f"--window-size={width},{height}",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


class LiveServer:
    """The real app under uvicorn, in a thread, on 127.0.0.1:<free port>."""

    def __init__(self, state: DashboardState, feed: Any = None) -> None:
        self.state = state
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            create_app(state, feed=feed),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            ws="websockets-sansio",
            timeout_graceful_shutdown=1,
        )
        self.server = uvicorn.Server(config)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.server.serve())

    def __enter__(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the dashboard did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=15)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the server's loop (as the Kafka feed would) and return its result."""
        assert self.loop is not None

        async def run() -> T:
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=30)


def login(driver: WebDriver, base: str, name: str, password: str) -> None:
    driver.delete_all_cookies()  # while still on the site: cookies are deleted for the current page's domain
    driver.get("about:blank")  # then a real page load: a hash change alone would keep the old page's state
    driver.get(f"{base}/#login")
    wait_for(driver, lambda d: d.execute_script("return document.body.dataset.view") == "login")
    driver.find_element("id", "login-name").send_keys(name)
    driver.find_element("id", "login-password").send_keys(password)
    driver.find_element("css selector", "#login-form button").click()
    wait_for(driver, lambda d: d.execute_script("return window.meetvar.me && window.meetvar.me.name") == name)


def wait_for(driver: WebDriver, cond: Callable[[WebDriver], Any], timeout: float = 10) -> Any:
    """Poll ``cond`` until it is truthy. The live view re-renders cards as events arrive, so an element
    found a moment ago may be replaced before it is read: that (like "not there yet") means try again."""
    ignored = (NoSuchElementException, StaleElementReferenceException)
    return WebDriverWait(driver, timeout, poll_frequency=0.02, ignored_exceptions=ignored).until(cond)


@dataclass
class RealClip:
    camera_key: str
    stream_start_us: int
    capture_us: list[int]
    poses: list[dict[str, Any]]  # PoseMsg JSON, one per frame


def real_clip(
    archive_root: Path, frames: int, camera: str = "meet1/platform-A/side", start_us: int = STREAM_START_US
) -> RealClip:
    """Archive the first ``frames`` frames of the bundled clip and pose them with real BlazePose."""
    from gpu_service.blazepose import BlazePoseTracker
    from ingest.chunk_decoder import decode_chunk
    from ingest.normalize import chunks_from_file

    meet, platform, cam = camera.split("/")
    store = LocalObjectStore(archive_root)
    tracker = BlazePoseTracker(threads=2)
    poses: list[dict[str, Any]] = []
    capture: list[int] = []
    index = 0
    for chunk in chunks_from_file(CLIP, start_us=start_us, max_frames=frames):
        base = f"{camera}/{start_us}/{chunk.seq:08d}"
        meta = ChunkMeta(
            meet=meet,
            platform=platform,
            camera=cam,
            seq=chunk.seq,
            stream_start_us=start_us,
            first_frame_index=index,
            capture_us=list(chunk.capture_us),
            pts_us=list(chunk.pts_us),
            width=chunk.width,
            height=chunk.height,
            size=len(chunk.data),
        )
        store.put(f"{base}.ts", chunk.data)
        store.put(f"{base}.json", meta.dump())
        for rgb, t in zip(decode_chunk(chunk.data, chunk.frame_count), chunk.capture_us, strict=True):
            pose = tracker.process(rgb, t, index)
            msg = PoseMsg(
                meet=meet,
                platform=platform,
                camera=cam,
                stream_start_us=start_us,
                seq=chunk.seq,
                frame=pose.to_json(),
            )
            poses.append(msg.model_dump(mode="json"))
            capture.append(t)
            index += 1
    return RealClip(camera, start_us, capture, poses)


@contextmanager
def screenshot_server(root: Path) -> Iterator[tuple[LiveServer, dict[str, str]]]:
    """A dashboard holding the clip's first real attempt, judged by the real referee."""
    from dashboard.replay import StoreChunkSource
    from dashboard.store import DashboardStore
    from referee.explanation import template_explanation
    from stream_processors.explainer import decision_from_attempt
    from stream_processors.referee_processor import RefereeProcessor

    # Streamed "now", as a live camera would be, so the rack-to-call time is a real one.
    clip = real_clip(root / "archive", frames=450, start_us=time.time_ns() // 1000 - 15_000_000)
    state = DashboardState(
        DashboardStore(root / "db.sqlite"), archive=StoreChunkSource(LocalObjectStore(root / "archive"))
    )
    accounts = {"organizer": "organizer-pass-1", "jury": "jury-pass-0001", "head": "head-pass-0001"}
    state.auth.create_user("organizer", "organizer", accounts["organizer"])
    state.auth.create_user("jury", "jury", accounts["jury"])
    state.auth.create_user("head", "head_referee", accounts["head"])
    with LiveServer(state) as server:
        server.call(
            state.on_state,
            {
                "meet": "meet1",
                "platform": "platform-A",
                "lifter": "R. Kumar",
                "lift": "squat",
                "attempt_number": 1,
                "weight_kg": 140.0,
                "command": "squat",
                "at_us": clip.stream_start_us,
            },
        )
        processor = RefereeProcessor()
        for p in clip.poses:
            server.call(state.on_pose, p)
            for decision, _ in processor.handle(PoseMsg.model_validate(p)):
                msg = decision.model_dump(mode="json")
                server.call(state.on_decision, msg)
                text = template_explanation(decision_from_attempt(msg["attempt"]))
                server.call(
                    state.on_explanation,
                    {"attempt_id": msg["attempt_id"], "text": text, "model": "template", "prompt_hash": "-"},
                )
        yield server, accounts


def take_screenshots(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, screenshot_server(Path(tmp)) as (server, accounts):
        driver = chromium(Path(tmp) / "profile", 1280, 1000)
        try:
            login(driver, server.url, "head", accounts["head"])
            driver.get(f"{server.url}/#live")
            wait_for(driver, lambda d: d.find_elements("css selector", "article.lift"))
            time.sleep(0.5)
            live = out_dir / "live.png"
            driver.save_screenshot(str(live))
            lift_id = driver.find_element("css selector", "article.lift").get_attribute("data-lift-id")
            driver.set_window_size(1280, 2150)  # the whole replay, plot included
            driver.get(f"{server.url}/#replay/{lift_id}")
            wait_for(
                driver, lambda d: d.execute_script("return document.body.dataset.replayReady") == lift_id
            )
            wait_for(
                driver,
                lambda d: d.execute_script("return document.querySelector('canvas').dataset.atBottom") == "1",
                20,
            )
            time.sleep(0.3)
            replay = out_dir / "replay.png"
            driver.save_screenshot(str(replay))
        finally:
            driver.quit()
    return [live, replay]


if __name__ == "__main__":
    for path in take_screenshots(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots")):
        print(path)


# --- decisions for tests that are not about the referee ------------------------------------------


def synthetic_decisions(
    depths: list[float], camera: str = "side", start_us: int = STREAM_START_US
) -> list[dict[str, Any]]:
    """Real decisions of the real referee, on synthetic side-view squats to the given depths."""
    from stream_processors.referee_processor import RefereeProcessor
    from tests.synthetic import squat_session

    frames = squat_session(depths, start_us=start_us)
    processor = RefereeProcessor()
    out: list[dict[str, Any]] = []
    for f in [*frames, None]:
        msg = PoseMsg(
            meet="meet1",
            platform="platform-A",
            camera=camera,
            stream_start_us=start_us,
            seq=0,
            frame=None if f is None else f.to_json(),
            end_of_stream=f is None,
        )
        out += [d.model_dump(mode="json") for d, _ in processor.handle(msg)]
    return out


def with_verdict(msg: dict[str, Any], verdict: str, camera: str | None = None) -> dict[str, Any]:
    """The same attempt as seen by another camera, or with another call (for fusion and agreement)."""
    out = {**msg, "attempt": {**msg["attempt"], "verdict": verdict, "depth": dict(msg["attempt"]["depth"])}}
    if camera is not None:
        out["camera"] = camera
        out["attempt_id"] = msg["attempt_id"].replace(f"/{msg['camera']}/", f"/{camera}/")
    if verdict == "undecided":
        out["attempt"]["depth"].update(status="undecided", margin_cm=None, margin_thigh=None, confidence=0.0)
        out["attempt"]["reasons"] = [
            "camera sees the lifter from the front or rear (yaw 10°): depth not visible"
        ]
    return out


def with_depth(msg: dict[str, Any], **depth: Any) -> dict[str, Any]:
    """The same attempt with other depth numbers; ``status="undecided"`` with an interval around zero
    makes it the referee's "too close to call" (verdict undecided, no cards, the referee's reason)."""
    a = msg["attempt"]
    out = {**msg, "attempt": {**a, "depth": {**a["depth"], **depth}}}
    if depth.get("status") == "undecided":
        d = out["attempt"]["depth"]
        low, high = d["margin_cm_interval"]
        out["attempt"].update(
            verdict="undecided",
            cards=[],
            reasons=[f"too close to call: {d['margin_cm']:+.1f} ± {(high - low) / 2:.1f} cm"],
        )
    return out


def without_uncertainty(msg: dict[str, Any]) -> dict[str, Any]:
    """The attempt as an older referee sent it: no interval, surface, scale or measurement."""
    new = ("margin_cm_interval", "uncertainty_thigh", "surface", "scale", "measured")
    a = msg["attempt"]
    return {**msg, "attempt": {**a, "depth": {k: v for k, v in a["depth"].items() if k not in new}}}


def pose_messages(
    depths: list[float], camera: str = "side", start_us: int = STREAM_START_US
) -> list[dict[str, Any]]:
    """The synthetic poses behind :func:`synthetic_decisions`, as the pose topic carries them."""
    from tests.synthetic import squat_session

    return [
        PoseMsg(
            meet="meet1",
            platform="platform-A",
            camera=camera,
            stream_start_us=start_us,
            seq=0,
            frame=f.to_json(),
        ).model_dump(mode="json")
        for f in squat_session(depths, start_us=start_us)
    ]
