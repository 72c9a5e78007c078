"""Expected failures print one line that says what to do, exit non-zero, and show no traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest


def meetvar(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meetvar.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_missing_file() -> None:
    assert_one_line_error(meetvar("judge", "/nonexistent/clip.mp4", "--json"), "no such file", "clip.mp4")


def test_file_that_is_not_video(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.mp4"
    bogus.write_text("this is not a video\n" * 50)
    proc = meetvar("judge", str(bogus), "--json")
    assert_one_line_error(proc, "notes.mp4")
    assert proc.stdout == ""


def test_video_with_nobody_in_it(tmp_path: Path) -> None:
    empty = tmp_path / "empty_platform.mp4"
    with av.open(str(empty), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        rng = np.random.default_rng(0)
        base = np.full((240, 320, 3), 90, dtype=np.uint8)
        for _ in range(45):
            noise = rng.integers(0, 12, base.shape, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(base + noise, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    proc = meetvar("judge", str(empty), "--json")
    assert proc.returncode == 3
    assert_one_line_error(proc, "no person found", "45 frames")


def test_unreachable_broker(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: nothing answers there
        proc = meetvar(
            "ingest",
            str(Path(__file__).parents[1] / "ingest/samples/rohanx01_squat.mp4"),
            "--broker",
            f"127.0.0.1:{port}",
            "--store",
            str(tmp_path),
        )
    assert_one_line_error(proc, "cannot reach the Kafka broker", str(port))


def test_pose_worker_with_a_backend_that_cannot_run_here(tmp_path: Path) -> None:
    # TensorRT is never installed on these machines (ARCHITECTURE.md); the worker says so before it
    # even looks for the broker.
    args = ["--broker", "127.0.0.1:9", "--store", str(tmp_path), "--backend", "tensorrt"]
    proc = meetvar("pose-worker", *args)
    assert_one_line_error(proc, "TensorRT is not installed", "onnxruntime")
    proc = meetvar("pose-worker", *args[:4], "--precision", "fp16")  # the CPU default runs fp32 only
    assert_one_line_error(proc, "fp32 only", "torch")


def test_dashboard_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = meetvar("demo", "--port", str(port), "--data-dir", str(tmp_path))
    assert_one_line_error(proc, f"port {port}", "--port")


@pytest.mark.parametrize("camera", ["no-slashes", "a//c"])
def test_bad_camera_id(tmp_path: Path, camera: str) -> None:
    proc = meetvar("demo", "--camera", camera, "--port", "0", "--data-dir", str(tmp_path))
    assert_one_line_error(proc, "meet/platform/camera")


def test_logs_go_to_stderr_so_json_on_stdout_stays_parseable(capsys: pytest.CaptureFixture[str]) -> None:
    import structlog

    from meetvar.cli import main

    assert main(["judge", "/nonexistent/clip.mp4", "--json"]) == 2
    structlog.get_logger().warning("source.non_increasing_pts", last_us=300000, pts_us=200000)
    out, err = capsys.readouterr()
    assert out == ""
    assert "non_increasing_pts" in err and "no such file" in err
