"""``meetvar bench``: the commands run and print their JSON last, the agreement and latency arithmetic
is right, the MediaPipe side environment is used when it exists and named when it does not, and
``bench ingest`` goes to whichever module provides it."""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from fractions import Fraction

import av
import numpy as np
import pytest

from meetvar.benchmarks import pipeline as bench
from meetvar.cli import bundled_clip, main
from meetvar.commands import bench as cmd_bench
from meetvar.errors import UserError


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """The first 3 s of the bundled clip (the first rep is not in it; the bench does not need one)."""
    out = tmp_path_factory.mktemp("clip") / "short.mp4"
    with av.open(str(bundled_clip())) as inp, av.open(str(out), "w") as outp:
        src = inp.streams.video[0]
        stream = outp.add_stream("libx264", rate=30, options={"preset": "ultrafast", "crf": "18"})
        stream.width, stream.height, stream.pix_fmt = (
            src.codec_context.width,
            src.codec_context.height,
            "yuv420p",
        )
        for i, frame in enumerate(inp.decode(src)):
            if i == 90:
                break
            frame.pts, frame.time_base = i, Fraction(1, 30)
            outp.mux(stream.encode(frame))
        outp.mux(stream.encode(None))
    return out


def test_agreement_counts_frames_within_two_percent_of_height() -> None:
    ours = np.zeros((4, 33, 2))
    theirs = np.zeros((4, 33, 2))
    theirs[1] += 30.0  # 42 px away: outside 2 % of 1000 px
    theirs[2] += 10.0  # 14 px: inside
    ours[3] = np.nan  # only MediaPipe found someone: a disagreement
    a = bench.agreement(ours, theirs, height=1000)
    assert a["limit_px"] == 20.0 and a["share_within_2pct_height"] == 0.5
    assert a["person_found"] == {"ours": 3, "mediapipe": 4}
    both_empty = bench.agreement(np.full((2, 33, 2), np.nan), np.full((2, 33, 2), np.nan), height=100)
    assert both_empty["share_within_2pct_height"] == 1.0


def test_latency_summary_measures_from_the_attempts_end_lockout_plus_hold() -> None:
    events = [
        {
            "arrived_us": 5_900_000,
            "decided_us": 5_600_000,
            "attempt": {"rep": 1, "capture_us": {"end": 5_000_000}},
        },
        {
            "arrived_us": 9_750_000,
            "attempt": {"rep": 2, "capture_us": {"end": 9_000_000}},
            "rack_to_call_ms": 12.5,
        },
    ]
    s = bench.latency_summary(events, hold_s=0.5)
    assert [r["end_to_websocket_ms"] for r in s["decisions"]] == [400.0, 250.0]
    assert [r["lockout_to_websocket_ms"] for r in s["decisions"]] == [900.0, 750.0]
    assert s["decisions"][0]["end_to_decided_ms"] == 100.0 and s["decisions"][1]["rack_to_call_ms"] == 12.5
    assert s["max_end_to_websocket_ms"] == 400.0
    assert bench.latency_summary(events)["hold_s"] == 0.5  # the referee's own finish hold by default


def test_live_latency_counts_each_camera_after_its_warm_up_pass() -> None:
    def event(n: int, platform: str, start_us: int, bottom_s: float) -> dict[str, object]:
        bottom = start_us + round(bottom_s * 1e6)
        attempt = {"bottom_s": bottom_s, "capture_us": {"bottom": bottom + 1_000}}
        return {"n": n, "platform": platform, "camera": "side", "attempt": attempt}

    a1, a2, b1, b2 = 10**15, 10**15 + 30 * 10**6, 10**15 + 7, 10**15 + 31 * 10**6
    events = [
        event(0, "1", a1, 10.5),
        event(1, "2", b1, 10.5),
        event(2, "1", a1, 17.3),  # camera 1's first pass had two reps, camera 2's one
        event(3, "2", b2, 10.5),
        event(4, "1", a2, 10.5),
        event(5, "2", b2, 17.3),
    ]
    assert [e["n"] for e in bench.after_warm_up(events, 1)] == [3, 4, 5]
    assert bench.after_warm_up(events, 0) == events


def test_bench_pose_cli_prints_json_last(
    short_clip: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "bench",
            "pose",
            "--video",
            str(short_clip),
            "--frames",
            "12",
            "--batch",
            "1,2",
            "--no-mediapipe",
            "--json",
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["frames"] == 12 and result["size"] == [608, 1080]
    runs = {r["batch"]: r for r in result["runs"]}
    assert runs[1]["backend"] == "onnxruntime" and runs[1]["frames"] == 12 and runs[2]["frames"] == 24
    assert runs[1]["fps"] > 0 and runs[1]["p99_ms"] >= runs[1]["p50_ms"] > 0
    assert result["machine"]["cores"] >= 1


def test_mediapipe_reference_runs_in_its_side_env_or_is_named(
    short_clip: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    yuv, rgb, times = bench.load_frames(short_clip, 8)
    assert len(yuv) == len(rgb) == len(times) == 8
    with pytest.raises(UserError, match="make bench-deps"):
        bench.run_mediapipe(rgb, tmp_path, tmp_path / "no-such-python")
    if not bench.MEDIAPIPE_PYTHON.is_file():
        print(f"{bench.MEDIAPIPE_PYTHON} is absent (run `make bench-deps`): only the error was checked")
        return
    mp = bench.run_mediapipe(rgb, tmp_path, bench.MEDIAPIPE_PYTHON)
    assert mp["version"] == "0.10.21" and mp["frames"] == 8 and mp["fps"] > 0
    _, ours = bench.run_pose_backend("ort", 1, yuv, times)
    agree = bench.agreement(ours, mp["_landmarks"], height=int(rgb[0].shape[0]))
    assert agree["person_found"] == {"ours": 8, "mediapipe": 8}
    assert agree["share_within_2pct_height"] == 1.0 and agree["median_mean_px"] < 5.0


def test_bench_pipeline_judges_the_clip(short_clip: pathlib.Path) -> None:
    args = argparse.Namespace(video=str(short_clip), repeat=1, threads=1, no_live=True)
    result = bench.bench_pipeline(args)
    best = result["judge"]["best"]
    assert best["frames"] == 90 and best["frames_per_s"] > 0 and best["x_real_time"] > 0
    assert "live" not in result


def test_bench_ingest_dispatches_to_its_module(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "fake_bench_ingest.py").write_text(
        "def add_arguments(p):\n"
        "    p.add_argument('--cameras', type=int, nargs='+', default=[1])\n"
        "    p.add_argument('--json', action='store_true')\n"
        "def run_bench_ingest(args):\n"
        "    return {'cameras': args.cameras}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cmd_bench, "INGEST_MODULE", "fake_bench_ingest")
    assert main(["bench", "ingest", "--cameras", "1", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == {"cameras": [1, 3]}
    monkeypatch.setattr(cmd_bench, "INGEST_MODULE", "no_such_bench_ingest_module")
    assert main(["bench", "ingest"]) != 0
    assert "not part of this install" in capsys.readouterr().err
    sys.modules.pop("fake_bench_ingest", None)


def test_bench_workers_scales_out_on_a_real_broker(
    short_clip: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two cameras, one then two pose-worker processes in a consumer group on a fresh Tansu: every
    pose of every measured chunk comes back in each run, and the figures are what the JSON says."""
    args = [
        "bench",
        "workers",
        "--workers",
        "1,2",
        "--cameras",
        "2",
        "--chunks",
        "2",
        "--timeout",
        "120",
        "--json",
    ]
    rc = main([*args, "--video", str(short_clip)])
    assert rc == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["workers"] for r in result["runs"]] == [1, 2]
    for run in result["runs"]:
        assert run["frames"] == 2 * 2 * 15  # 2 cameras x 2 chunks x 15 frames, each seen as a pose
        assert run["fps"] == pytest.approx(run["frames"] / run["seconds"], rel=0.01)
    assert result["runs"][0]["speedup"] == 1.0


def test_bench_workers_rejects_more_workers_than_partitions(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "workers", "--workers", "9"]) == UserError.exit_code
    assert "from 1 to 8 (the video.chunks partitions)" in capsys.readouterr().err
