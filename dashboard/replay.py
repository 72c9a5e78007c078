"""Replays of an attempt: the archived chunks remuxed into one MP4, and the poses that go with it.

Archive layout (written by the archiver, and by ingest for chunks sent by reference):
``meet/platform/camera/<stream_start_us>/<seq:08d>.ts`` (a standalone MPEG-TS, one closed H.264 GOP)
with optional ``<seq:08d>.json`` metadata (:class:`ChunkMeta`, whose ``capture_us`` lists each frame's
capture time). Without the JSON the capture times come from the TS itself: the chunker writes
``pts = capture_us - stream_start_us`` on a 90 kHz clock.

Why remux and not re-encode or concatenate: a ``<video>`` element plays MP4 everywhere, the stream
copy is lossless and takes milliseconds (no decode), and every frame keeps an exact timestamp, so the
page can map the video's time back to the capture time of the frame on screen and draw that frame's
skeleton: ``capture_us = t0_capture_us + video_time``.
"""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import av
import numpy as np

from referee.keypoints import BlazePoseLandmark as L
from stream_processors.schemas import ChunkMeta, SchemaError

PAD_US = 1_000_000
_MIN_VIS = 0.2  # landmarks the model is this unsure of are left out of the plot
_DEFAULT_THIGH_CM = 42.0  # a replay shows one second before the attempt starts and after it ends
_TS_HZ = 90_000


class ReplayError(Exception):
    """No clip can be made (nothing archived for that time, unreadable chunk); shown to the user."""


class ChunkSource(Protocol):
    """The two object-store operations a replay needs, by key (not by ref)."""

    def list_keys(self, prefix: str) -> list[str]: ...

    def read(self, key: str) -> bytes: ...


class StoreChunkSource:
    """Any store with ``list``/``ref``/``get`` (``stream_processors.object_store``'s browsable stores:
    a local folder or an S3 bucket), as the replay's chunk source."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def list_keys(self, prefix: str) -> list[str]:
        try:
            return list(self.store.list(prefix))
        except Exception as exc:
            raise ReplayError(f"the archive cannot be listed: {exc}") from exc

    def read(self, key: str) -> bytes:
        try:
            data: bytes = self.store.get(self.store.ref(key))
        except Exception as exc:
            raise ReplayError(f"archived chunk {key} cannot be read: {exc}") from exc
        return data


@dataclass(frozen=True, slots=True)
class ArchivedChunk:
    key: str
    seq: int
    capture_us: list[int]


@dataclass(frozen=True, slots=True)
class Clip:
    mp4: bytes
    t0_capture_us: int  # capture time of the frame at video time 0
    frames: int
    width: int
    height: int
    capture_us: list[int]


def _ts_capture_times(data: bytes, stream_start_us: int) -> list[int]:
    with av.open(io.BytesIO(data), mode="r", format="mpegts") as ts:
        stream = ts.streams.video[0]
        pts = sorted(p.pts for p in ts.demux(stream) if p.pts is not None)
    return [stream_start_us + round(p * 1_000_000 / _TS_HZ) for p in pts]


def archived_chunks(source: ChunkSource, camera_key: str, from_us: int, to_us: int) -> list[ArchivedChunk]:
    """The chunks of ``camera_key`` whose frames overlap [from_us, to_us], from the one stream that
    was live then (a camera restarted mid-meet has several streams; each starts at its own time)."""
    keys = source.list_keys(camera_key + "/")
    streams: dict[int, list[str]] = {}
    for key in keys:
        rest = key[len(camera_key) + 1 :].split("/")
        if len(rest) == 2 and rest[0].isdigit() and rest[1].endswith(".ts"):
            streams.setdefault(int(rest[0]), []).append(key)
    starts = sorted(s for s in streams if s <= to_us)
    if not starts:
        return []
    start = starts[-1]
    out: list[ArchivedChunk] = []
    for key in sorted(streams[start]):
        seq = int(Path(key).stem)
        meta_key = key[: -len(".ts")] + ".json"
        capture: list[int] | None = None
        if meta_key in keys:
            try:
                capture = ChunkMeta.parse(source.read(meta_key)).capture_us or None
            except SchemaError:
                capture = None
        if capture is None:
            capture = _ts_capture_times(source.read(key), start)
        if capture and capture[-1] >= from_us and capture[0] <= to_us:
            out.append(ArchivedChunk(key, seq, capture))
        elif capture and capture[0] > to_us:
            break
    return out


def remux_clip(source: ChunkSource, chunks: Iterable[ArchivedChunk]) -> Clip:
    """Stream-copy the chunks' H.264 into one MP4 (no decode), timestamps rebased to start at 0.

    ``+faststart`` puts the index first so the browser can start playing before the end arrives.
    """
    chunk_list = list(chunks)
    if not chunk_list:
        raise ReplayError("nothing is archived for this attempt's time")
    # faststart rewrites the file in a second pass, which needs a real file rather than a buffer.
    with tempfile.TemporaryDirectory(prefix="meetvar-clip-") as tmp:
        path = Path(tmp) / "clip.mp4"
        t0, capture_all, width, height = _mux(source, chunk_list, path)
        mp4 = path.read_bytes()
    return Clip(mp4, t0, len(capture_all), width, height, capture_all)


def _mux(source: ChunkSource, chunks: list[ArchivedChunk], path: Path) -> tuple[int, list[int], int, int]:
    t0: int | None = None
    capture_all: list[int] = []
    width = height = 0
    try:
        with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as out:
            out_stream: Any = None
            for chunk in chunks:
                with av.open(io.BytesIO(source.read(chunk.key)), mode="r", format="mpegts") as ts:
                    in_stream = ts.streams.video[0]
                    packets = [p for p in ts.demux(in_stream) if p.pts is not None and p.size > 0]
                    if out_stream is None:
                        out_stream = out.add_stream_from_template(in_stream)
                        out_stream.time_base = Fraction(1, _TS_HZ)
                        width, height = in_stream.codec_context.width, in_stream.codec_context.height
                    packets.sort(key=lambda p: int(p.pts or 0))
                    for packet, capture_us in zip(packets, chunk.capture_us, strict=False):
                        if t0 is None:
                            t0 = capture_us
                        ts_val = round((capture_us - t0) * _TS_HZ / 1_000_000)
                        packet.stream = out_stream
                        packet.pts = ts_val
                        packet.dts = ts_val  # no B-frames: decode order is display order
                        packet.time_base = Fraction(1, _TS_HZ)
                        out.mux(packet)
                        capture_all.append(capture_us)
    except av.FFmpegError as exc:
        raise ReplayError(f"an archived chunk cannot be remuxed: {exc}") from exc
    if t0 is None:
        raise ReplayError("the archived chunks hold no frames")
    return t0, capture_all, width, height


# --- poses --------------------------------------------------------------------------------------


def compact_frame(frame: dict[str, Any]) -> dict[str, Any]:
    """What the overlay needs of a PoseFrame: image x, y and visibility per landmark (0.1 px)."""
    kp = frame.get("keypoints")
    return {
        "capture_us": int(frame["capture_us"]),
        "frame_index": int(frame.get("frame_index", 0)),
        "width": int(frame.get("width", 0)),
        "height": int(frame.get("height", 0)),
        "keypoints": None if kp is None else [[round(p[0], 1), round(p[1], 1), round(p[3], 3)] for p in kp],
    }


def margin_series(frames: list[dict[str, Any]], attempt: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-frame hip-over-knee margin, for the plot under the replay.

    Geometry only, so the plot does not depend on the referee's tuning: both legs' hip-over-knee
    height fused by visibility, measured along the lifter's vertical (from the standing frames), in
    thigh lengths (the unforeshortened thigh, a high percentile). The rule's surface offsets are a
    constant shift of this curve, so it is anchored to the decision: at the bottom frame it equals
    the decision's own margin, which is the number that counts. Unsmoothed, to show what the model saw.
    """
    depth = attempt["depth"]
    usable: list[tuple[int, Any, Any, Any]] = []
    lengths: list[float] = []
    for f in frames:
        kp = f.get("keypoints")
        if kp is None:
            continue
        legs = []
        for hip_i, knee_i in ((L.LEFT_HIP, L.LEFT_KNEE), (L.RIGHT_HIP, L.RIGHT_KNEE)):
            hip, knee = np.array(kp[hip_i][:2]), np.array(kp[knee_i][:2])
            vis = min(kp[hip_i][2], kp[knee_i][2])
            if vis >= _MIN_VIS:
                legs.append((vis, hip, knee))
                lengths.append(float(np.linalg.norm(hip - knee)))
        if not legs:
            continue
        total = sum(v for v, _, _ in legs)
        hip = sum(v * h for v, h, _ in legs) / total
        knee = sum(v * k for v, _, k in legs) / total
        ankles = [np.array(kp[i][:2]) for i in (L.LEFT_ANKLE, L.RIGHT_ANKLE) if kp[i][2] >= _MIN_VIS]
        ankle = sum(ankles) / len(ankles) if ankles else None
        usable.append((int(f["capture_us"]), hip, knee, ankle))
    if len(usable) < 2 or not lengths:
        return []
    thigh_px = float(np.percentile(lengths, 90))
    standing = [h - a for _, h, _, a in usable[: max(1, len(usable) // 5)] if a is not None]
    up = np.median(np.array(standing), axis=0) if standing else np.array([0.0, -1.0])
    n = float(np.hypot(*up))
    up = np.array([0.0, -1.0]) if n == 0 or up[1] / n > -0.5 else up / n
    raw = np.array([float((k - h) @ up) / thigh_px for _, h, k, _ in usable])
    times = [t for t, _, _, _ in usable]
    shift = 0.0
    mt, mc = depth.get("margin_thigh"), depth.get("margin_cm")
    bottom = (attempt.get("capture_us") or {}).get("bottom")
    if mt is not None and bottom is not None:
        at = int(np.argmin([abs(t - int(bottom)) for t in times]))
        shift = float(mt) - float(raw[at])
    cm_per_thigh = mc / mt if mt and mc else _DEFAULT_THIGH_CM
    return [
        {
            "capture_us": t,
            "margin_thigh": round(float(m + shift), 4),
            "margin_cm": round(float(m + shift) * cm_per_thigh, 2),
        }
        for t, m in zip(times, raw, strict=True)
    ]


def replay_payload(
    attempt: dict[str, Any],
    frames: list[dict[str, Any]],
    clip: Clip | None,
    clip_error: str | None,
    clip_url: str,
) -> dict[str, Any]:
    """Everything one camera's pane of the replay needs, in one JSON document."""
    a = attempt["attempt"]
    times = a.get("capture_us", {})
    return {
        "attempt_id": attempt["attempt_id"],
        "camera": attempt["camera"],
        "verdict": a["verdict"],
        "reasons": a.get("reasons", []),
        "depth": a["depth"],
        "capture_us": times,
        "window_us": [times.get("start", 0) - PAD_US, times.get("end", 0) + PAD_US],
        "clip_url": clip_url if clip is not None else None,
        "clip_error": clip_error,
        "t0_capture_us": clip.t0_capture_us
        if clip is not None
        else (frames[0]["capture_us"] if frames else None),
        "video_capture_us": clip.capture_us if clip is not None else [],
        "width": clip.width if clip is not None else (frames[0]["width"] if frames else 0),
        "height": clip.height if clip is not None else (frames[0]["height"] if frames else 0),
        "frames": frames,
        "margins": margin_series(frames, a),
    }


def dumps_frames(frames: list[dict[str, Any]]) -> str:
    return json.dumps(frames, separators=(",", ":"))
