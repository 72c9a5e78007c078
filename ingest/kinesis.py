"""Amazon Kinesis Video Streams as a camera: GetMedia in, chunks to ``video.chunks`` out.

How it reads:

* **Control plane, then data plane.** ``kinesisvideo.get_data_endpoint(APIName="GET_MEDIA")`` names the
  per-stream endpoint; ``kinesis-video-media.get_media`` on it returns one long HTTP response
  (``video/webm``, chunked) that carries the stream as a sequence of MKV documents, one per *fragment*,
  each with its own EBML header, tracks, a ``Tags`` element (``AWS_KINESISVIDEO_FRAGMENT_NUMBER``,
  ``…_SERVER_TIMESTAMP``, ``…_PRODUCER_TIMESTAMP``), one cluster of frames and trailing tags
  (``…_MILLIS_BEHIND_NOW``, ``…_CONTINUATION_TOKEN``; ``…_ERROR_CODE`` / ``…_ERROR_ID`` on failure).
* **A small EBML reader, not PyAV's demuxer.** ffmpeg's matroska demuxer does not hand out tags that
  appear after the first cluster, so per-fragment numbers and producer timestamps would be lost, and
  ``FileSource`` opens paths and URLs, not a botocore body. MKV framing is simple: the reader walks
  the element stream flat (it descends into every container, so unknown-size segments and clusters —
  which KVS sends — need no special case) and hands out tags, track entries and blocks as they come,
  without buffering a fragment. Frames are decoded with PyAV's H.264/HEVC decoder (one per fragment:
  each KVS fragment starts on a key frame) and go through the same :class:`FrameNormalizer`, chunker
  and :class:`ChunkSink` as files and WHIP.
* **Capture times from the producer.** A frame's capture time is its fragment's producer timestamp
  plus the frame's offset (block timecode) from the fragment's first frame: the camera's clock, not
  the arrival time, so network jitter and reconnects do not move frames in time.
* **Resume without loss or duplicates.** A fragment counts as done once its trailing tags or the next
  fragment's header arrives. After a disconnect GetMedia is called again with
  ``StartSelectorType=AFTER_FRAGMENT_NUMBER`` and the last done fragment, so a fragment cut in the
  middle is received again from its key frame; frames at or before the last capture time already
  emitted are dropped. Each frame thus leaves exactly once, in order.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any, BinaryIO, Protocol

import av
import av.error
import structlog

from ingest.chunker import DEFAULT_CHUNK_SECONDS, Chunk, Chunker
from ingest.errors import SourceError
from ingest.sources.file import FrameNormalizer, SourceFrame

log = structlog.get_logger()

TAG_FRAGMENT_NUMBER = "AWS_KINESISVIDEO_FRAGMENT_NUMBER"
TAG_SERVER_TIMESTAMP = "AWS_KINESISVIDEO_SERVER_TIMESTAMP"
TAG_PRODUCER_TIMESTAMP = "AWS_KINESISVIDEO_PRODUCER_TIMESTAMP"
TAG_CONTINUATION_TOKEN = "AWS_KINESISVIDEO_CONTINUATION_TOKEN"
TAG_MILLIS_BEHIND_NOW = "AWS_KINESISVIDEO_MILLIS_BEHIND_NOW"
TAG_ERROR_CODE = "AWS_KINESISVIDEO_ERROR_CODE"
TAG_ERROR_ID = "AWS_KINESISVIDEO_ERROR_ID"

DEFAULT_FPS = Fraction(30)
_CODECS = {"V_MPEG4/ISO/AVC": "h264", "V_MPEGH/ISO/HEVC": "hevc"}
_READ_SIZE = 8192  # small reads: a frame is handed on as soon as its bytes are here, not 64 KB later

# --- EBML / Matroska ---------------------------------------------------------------------------

EBML = 0x1A45DFA3
SEGMENT = 0x18538067
INFO = 0x1549A966
TIMECODE_SCALE = 0x2AD7B1
TRACKS = 0x1654AE6B
TRACK_ENTRY = 0xAE
TRACK_NUMBER = 0xD7
TRACK_TYPE = 0x83
CODEC_ID = 0x86
CODEC_PRIVATE = 0x63A2
DEFAULT_DURATION = 0x23E383
VIDEO = 0xE0
PIXEL_WIDTH = 0xB0
PIXEL_HEIGHT = 0xBA
TAGS = 0x1254C367
TAG = 0x7373
TARGETS = 0x63C0
SIMPLE_TAG = 0x67C8
TAG_NAME = 0x45A3
TAG_STRING = 0x4487
CLUSTER = 0x1F43B675
TIMECODE = 0xE7
SIMPLE_BLOCK = 0xA3
BLOCK_GROUP = 0xA0
BLOCK = 0xA1

# Containers the reader walks into; everything else is read (or skipped) whole.
_MASTERS = frozenset({SEGMENT, INFO, TRACKS, TRACK_ENTRY, VIDEO, TAGS, TAG, SIMPLE_TAG, CLUSTER, BLOCK_GROUP})
_WANTED = frozenset(
    {
        TIMECODE_SCALE,
        TRACK_NUMBER,
        TRACK_TYPE,
        CODEC_ID,
        CODEC_PRIVATE,
        DEFAULT_DURATION,
        PIXEL_WIDTH,
        PIXEL_HEIGHT,
        TAG_NAME,
        TAG_STRING,
        TIMECODE,
        SIMPLE_BLOCK,
        BLOCK,
    }
)
_MAX_ELEMENT = 64 * 1024 * 1024  # no frame or header is this big: a corrupt size, not a real element


class MkvError(SourceError):
    """The GetMedia body is not the MKV it should be (corrupt, or not Kinesis Video at all)."""


class StreamCut(ConnectionError):
    """The response ended in the middle of an element: the connection dropped, resume."""


class KvsError(SourceError):
    """Kinesis Video reported an error inside the stream (``AWS_KINESISVIDEO_ERROR_*`` tags)."""


class _Body(Protocol):
    def read(self, amt: int | None = ..., /) -> bytes: ...


class _ByteReader:
    """Exact reads over a streaming body, telling a clean end (between elements) from a cut."""

    def __init__(self, body: _Body | BinaryIO) -> None:
        self._body = body
        self._buf = bytearray()
        self._eof = False

    def _fill(self, n: int) -> None:
        while len(self._buf) < n and not self._eof:
            got = self._body.read(max(_READ_SIZE, n - len(self._buf)))
            if not got:
                self._eof = True
            self._buf += got

    def at_end(self) -> bool:
        self._fill(1)
        return not self._buf

    def read(self, n: int) -> bytes:
        self._fill(n)
        if len(self._buf) < n:
            raise StreamCut(f"stream ended {n - len(self._buf)} bytes short inside an element")
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def skip(self, n: int) -> None:
        while n > 0:
            step = min(n, 1 << 20)
            self.read(step)
            n -= step


def _read_vint(reader: _ByteReader, *, keep_marker: bool) -> tuple[int, bool]:
    """An EBML variable-length integer; ``keep_marker`` for element IDs. Returns (value, all-ones)."""
    first = reader.read(1)[0]
    if first == 0:
        raise MkvError("invalid EBML variable-length integer (first byte 0x00)")
    length = 8 - first.bit_length() + 1
    rest = reader.read(length - 1)
    value = first if keep_marker else first & (0xFF >> length)
    for b in rest:
        value = (value << 8) | b
    all_ones = not keep_marker and value == (1 << (7 * length)) - 1
    return value, all_ones


def read_elements(body: _Body | BinaryIO) -> Iterator[tuple[int, bytes | None]]:
    """``(element_id, payload)`` for every element in document order; containers yield ``None`` and then
    their children (flat walk). Ends cleanly only at an element boundary; raises :class:`StreamCut`
    when the body stops inside one and :class:`MkvError` on bytes that are not EBML."""
    reader = _ByteReader(body)
    while not reader.at_end():
        element_id, _ = _read_vint(reader, keep_marker=True)
        size, unknown = _read_vint(reader, keep_marker=False)
        if element_id in _MASTERS:
            yield element_id, None
            continue
        if unknown:
            raise MkvError(f"element 0x{element_id:X} has unknown size but is not a container")
        if size > _MAX_ELEMENT:
            raise MkvError(f"element 0x{element_id:X} claims {size} bytes: the stream is corrupt")
        if element_id in _WANTED or element_id == EBML:
            yield element_id, reader.read(size)
        else:
            reader.skip(size)


def _uint(data: bytes) -> int:
    return int.from_bytes(data, "big")


# --- fragments and frames --------------------------------------------------------------------------


@dataclass
class Track:
    number: int = 0
    kind: int = 0  # 1 = video
    codec_id: str = ""
    codec_private: bytes = b""
    default_duration_ns: int = 0
    width: int = 0
    height: int = 0


@dataclass(frozen=True, slots=True)
class MediaFrame:
    """One decoded, normalised frame of a fragment, timed on the producer's clock."""

    capture_us: int
    frame: av.VideoFrame
    fragment_number: str


@dataclass
class _Fragment:
    number: str | None = None
    producer_us: int | None = None
    server_us: int | None = None
    continuation_token: str | None = None
    tracks: list[Track] = field(default_factory=list)
    timecode_scale_ns: int = 1_000_000
    cluster_timecode: int = 0
    first_block_us: int | None = None
    pending: list[tuple[int, bytes]] = field(default_factory=list)  # blocks before the timestamp
    decoder: Any = None
    video: Track | None = None
    done: bool = False


def _seconds_to_us(text: str) -> int:
    """KVS timestamps are decimal seconds ("1712345678.123"); exact, no float rounding."""
    try:
        return int(Decimal(text.strip()) * 1_000_000)
    except InvalidOperation as exc:
        raise MkvError(f"timestamp tag {text!r} is not a number of seconds") from exc


class FragmentDecoder:
    """Turns the element stream of one GetMedia response into frames, fragment by fragment.

    ``on_fragment_done(number)`` is called when a fragment is complete (its trailing tags or the next
    fragment's header arrived): the resume point after a disconnect.
    """

    def __init__(self, label: str, normalize: FrameNormalizer) -> None:
        self.label = label
        self._normalize = normalize
        self._frag: _Fragment | None = None
        self._pending_tag: str | None = None
        self.fps: Fraction | None = None
        self.done_fragments: list[str] = []

    def feed(self, body: _Body | BinaryIO) -> Iterator[MediaFrame]:
        """Frames of the whole response. A :class:`StreamCut` propagates after the frames before it."""
        for element_id, payload in read_elements(body):
            yield from self._element(element_id, payload)
        yield from self._finish_fragment()

    def _element(self, element_id: int, payload: bytes | None) -> Iterator[MediaFrame]:
        if element_id == EBML:
            yield from self._finish_fragment()
            self._frag = _Fragment()
            return
        frag = self._frag
        if frag is None:
            if element_id in (SEGMENT, CLUSTER):
                raise MkvError(
                    f"{self.label}: media before any EBML header — is this a Kinesis Video stream?"
                )
            return
        if element_id == TRACK_ENTRY:
            frag.tracks.append(Track())
        elif payload is None:
            return
        elif element_id == TIMECODE_SCALE:
            frag.timecode_scale_ns = _uint(payload) or 1_000_000
        elif element_id in (TRACK_NUMBER, TRACK_TYPE, DEFAULT_DURATION, PIXEL_WIDTH, PIXEL_HEIGHT):
            self._track_field(frag, element_id, _uint(payload))
        elif element_id == CODEC_ID and frag.tracks:
            frag.tracks[-1].codec_id = payload.rstrip(b"\0").decode("ascii", "replace")
        elif element_id == CODEC_PRIVATE and frag.tracks:
            frag.tracks[-1].codec_private = payload
        elif element_id == TAG_NAME:
            self._pending_tag = payload.rstrip(b"\0").decode("utf-8", "replace")
        elif element_id == TAG_STRING and self._pending_tag is not None:
            name, self._pending_tag = self._pending_tag, None
            yield from self._tag(frag, name, payload.rstrip(b"\0").decode("utf-8", "replace"))
        elif element_id == TIMECODE:
            frag.cluster_timecode = _uint(payload)
        elif element_id in (SIMPLE_BLOCK, BLOCK):
            yield from self._block(frag, payload, simple=element_id == SIMPLE_BLOCK)

    @staticmethod
    def _track_field(frag: _Fragment, element_id: int, value: int) -> None:
        if not frag.tracks:
            return
        track = frag.tracks[-1]
        if element_id == TRACK_NUMBER:
            track.number = value
        elif element_id == TRACK_TYPE:
            track.kind = value
        elif element_id == DEFAULT_DURATION:
            track.default_duration_ns = value
        elif element_id == PIXEL_WIDTH:
            track.width = value
        else:
            track.height = value

    def _tag(self, frag: _Fragment, name: str, value: str) -> Iterator[MediaFrame]:
        if name == TAG_FRAGMENT_NUMBER:
            if frag.number is not None and frag.number != value:
                # A new fragment inside the same MKV document (no EBML header between them): close the
                # old one, keep the tracks, which only an EBML header / Tracks element replaces.
                yield from self._finish_fragment()
                frag = self._frag = _Fragment(tracks=frag.tracks, timecode_scale_ns=frag.timecode_scale_ns)
            frag.number = value
        elif name == TAG_PRODUCER_TIMESTAMP:
            frag.producer_us = _seconds_to_us(value)
            yield from self._release_pending(frag)
        elif name == TAG_SERVER_TIMESTAMP:
            frag.server_us = _seconds_to_us(value)
        elif name == TAG_CONTINUATION_TOKEN:
            frag.continuation_token = value
            yield from self._finish_fragment()  # the trailing tags close the fragment
        elif name in (TAG_ERROR_CODE, TAG_ERROR_ID):
            raise KvsError(f"{self.label}: Kinesis Video stopped the stream with {name}={value}")

    def _block(self, frag: _Fragment, payload: bytes, *, simple: bool) -> Iterator[MediaFrame]:
        # (Simple)Block: track number (vint), 16-bit signed timecode relative to the cluster, flags, data.
        first = payload[0] if payload else 0
        vlen = 9 - first.bit_length()
        if first == 0 or len(payload) < vlen + 3:
            raise MkvError(f"{self.label}: truncated or invalid block header")
        track_number = int.from_bytes(payload[:vlen], "big") & ((1 << (7 * vlen)) - 1)
        relative = int.from_bytes(payload[vlen : vlen + 2], "big", signed=True)
        flags = payload[vlen + 2]
        if flags & 0x06:
            raise MkvError(f"{self.label}: laced blocks are not used for video; the stream is not KVS video")
        video = frag.video or self._video_track(frag)
        if video is None or track_number != video.number:
            return  # audio or metadata tracks: not judged
        block_us = (frag.cluster_timecode + relative) * frag.timecode_scale_ns // 1000
        data = payload[vlen + 3 :]
        if frag.producer_us is None:
            frag.pending.append((block_us, data))  # the timestamp tags may trail the cluster's start
            return
        yield from self._decode(frag, block_us, data)

    def _video_track(self, frag: _Fragment) -> Track | None:
        for track in frag.tracks:
            if track.kind == 1 or track.codec_id.startswith("V_"):
                if track.codec_id not in _CODECS:
                    raise MkvError(
                        f"{self.label}: video codec {track.codec_id!r} is not supported (H.264, HEVC)"
                    )
                frag.video = track
                if track.default_duration_ns and self.fps is None:
                    self.fps = Fraction(1_000_000_000, track.default_duration_ns).limit_denominator(1001)
                return track
        return None

    def _release_pending(self, frag: _Fragment) -> Iterator[MediaFrame]:
        pending, frag.pending = frag.pending, []
        for block_us, data in pending:
            yield from self._decode(frag, block_us, data)

    def _decode(self, frag: _Fragment, block_us: int, data: bytes) -> Iterator[MediaFrame]:
        assert frag.video is not None
        if frag.first_block_us is None:
            frag.first_block_us = block_us
        if frag.decoder is None:
            frag.decoder = av.CodecContext.create(_CODECS[frag.video.codec_id], "r")
            frag.decoder.thread_type = "SLICE"  # frame threads would hold frames back: latency
            if frag.video.codec_private:
                frag.decoder.extradata = frag.video.codec_private
        packet = av.Packet(data)
        packet.pts = packet.dts = block_us
        packet.time_base = Fraction(1, 1_000_000)
        yield from self._frames(frag, packet)

    def _frames(self, frag: _Fragment, packet: av.Packet | None) -> Iterator[MediaFrame]:
        try:
            decoded = frag.decoder.decode(packet)
        except av.error.InvalidDataError as exc:
            log.warning("kinesis.undecodable_frame", stream=self.label, fragment=frag.number, error=str(exc))
            return
        for frame in decoded:
            assert frag.producer_us is not None and frag.first_block_us is not None
            pts = frame.pts if frame.pts is not None else frag.first_block_us
            yield MediaFrame(
                frag.producer_us + (pts - frag.first_block_us), self._normalize(frame), frag.number or ""
            )

    def _finish_fragment(self) -> Iterator[MediaFrame]:
        frag = self._frag
        if frag is None or frag.done:
            return
        if frag.pending:
            # No producer timestamp came: fall back to the cluster times (KVS absolute timecodes).
            log.warning("kinesis.no_producer_timestamp", stream=self.label, fragment=frag.number)
            frag.producer_us = frag.pending[0][0]
            yield from self._release_pending(frag)
        if frag.decoder is not None:
            yield from self._frames(frag, None)  # flush frames held back for reordering
        frag.done = True
        if frag.number is not None:
            self.done_fragments.append(frag.number)


# --- GetMedia, with resume ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartSelector:
    """Where GetMedia starts: ``now``, ``earliest``, ``fragment:N``, ``after:N`` or ``producer:SECONDS``."""

    kind: str = "NOW"
    value: str | None = None

    @classmethod
    def parse(cls, text: str) -> StartSelector:
        head, _, rest = text.partition(":")
        head = head.strip().lower()
        if head in ("now", "earliest") and not rest:
            return cls(head.upper())
        if head in ("fragment", "after") and rest.strip():
            return cls("FRAGMENT_NUMBER" if head == "fragment" else "AFTER_FRAGMENT_NUMBER", rest.strip())
        if head == "producer" and rest.strip():
            _seconds_to_us(rest)  # validates
            return cls("PRODUCER_TIMESTAMP", rest.strip())
        raise ValueError(
            f"start {text!r} must be now, earliest, fragment:NUMBER, after:NUMBER or producer:SECONDS"
        )

    def to_api(self) -> dict[str, Any]:
        selector: dict[str, Any] = {"StartSelectorType": self.kind}
        if self.kind in ("FRAGMENT_NUMBER", "AFTER_FRAGMENT_NUMBER"):
            selector["AfterFragmentNumber"] = self.value
        elif self.kind == "PRODUCER_TIMESTAMP":
            selector["StartTimestamp"] = Decimal(str(self.value))
        return selector


class _Retry(Exception):
    """A failure worth reconnecting for (network, throttling, a server error)."""


# Errors after which retrying cannot help: say what to do instead.
_FATAL = {
    "ResourceNotFoundException": "no such Kinesis Video stream — check --stream and --region",
    "NotAuthorizedException": "not allowed to read the stream — check the AWS credentials and policy",
    "InvalidArgumentException": "GetMedia refused the request",
    "InvalidEndpointException": "the data endpoint is wrong for this stream",
    "UnrecognizedClientException": "AWS rejected the credentials — check AWS_ACCESS_KEY_ID and the secret",
}


class KinesisVideoSource:
    """The frames of one Kinesis Video stream, in capture order, each once, across disconnects.

    ``follow`` keeps reading (reconnecting after the service ends a response, as a live consumer must);
    without it, a response that ends cleanly ends the source (used to ingest a recorded range, and by
    tests). ``max_failures`` consecutive failed attempts without a new frame raise :class:`SourceError`.
    """

    def __init__(
        self,
        stream_name: str | None = None,
        *,
        stream_arn: str | None = None,
        region: str | None = None,
        endpoint_url: str | None = None,
        start: StartSelector | None = None,
        follow: bool = True,
        max_failures: int = 8,
        backoff_s: tuple[float, float] = (0.2, 10.0),
        read_timeout_s: float = 30.0,
        session: Any = None,
    ) -> None:
        if not (stream_name or stream_arn):
            raise SourceError("give a Kinesis Video stream name or ARN")
        self.stream = {"StreamARN": stream_arn} if stream_arn else {"StreamName": stream_name}
        self.label = f"kinesis:{stream_arn or stream_name}"
        self.start = start or StartSelector()
        self.follow = follow
        self.max_failures = max_failures
        self.backoff_s = backoff_s
        self.read_timeout_s = read_timeout_s
        self.region = region
        self.endpoint_url = endpoint_url
        if session is None:
            import boto3

            # botocore reads AWS_DEFAULT_REGION only; AWS_REGION is what the other SDKs (and people) set.
            session = boto3.session.Session(region_name=region or os.environ.get("AWS_REGION") or None)
        self._session = session
        from botocore.exceptions import NoRegionError

        try:
            self._control = session.client("kinesisvideo", endpoint_url=endpoint_url, config=self._config())
        except NoRegionError as exc:
            raise SourceError("no AWS region for Kinesis Video — pass --region or set AWS_REGION") from exc
        self._media: Any = None
        self._body: Any = None
        self._normalize = FrameNormalizer(self.label)
        self.fps: Fraction | None = None
        self.last_fragment: str | None = None
        self.last_capture_us: int | None = None
        self.connects = 0  # GetMedia calls made: 1 + reconnects
        self.duplicates_dropped = 0

    def _config(self) -> Any:
        from botocore.config import Config

        return Config(
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=5,
            read_timeout=self.read_timeout_s,
        )

    def close(self) -> None:
        if self._body is not None:
            with contextlib.suppress(Exception):
                self._body.close()
            self._body = None

    def frames(self) -> Iterator[MediaFrame]:
        """Decoded, normalised frames with producer capture times; blocks on the network."""
        from botocore.exceptions import BotoCoreError
        from urllib3.exceptions import HTTPError

        selector = self.start
        failures = 0
        while True:
            decoder = FragmentDecoder(self.label, self._normalize)
            clean = False
            try:
                self._body = self._open(selector)
                for frame in decoder.feed(self._body):
                    self.fps = self.fps or decoder.fps
                    if self.last_capture_us is not None and frame.capture_us <= self.last_capture_us:
                        self.duplicates_dropped += 1  # re-sent after a resume: already handed on
                        continue
                    self.last_capture_us = frame.capture_us
                    failures = 0
                    yield frame
                clean = True
            except (_Retry, StreamCut, BotoCoreError, HTTPError, OSError) as exc:
                failures += 1
                log.warning(
                    "kinesis.disconnected",
                    stream=self.label,
                    error=str(exc) or type(exc).__name__,
                    last_fragment=self.last_fragment,
                    failures=failures,
                )
                self._media = None  # ask for the data endpoint again: it may have moved
                if failures > self.max_failures:
                    raise SourceError(
                        f"{self.label}: {failures} failed GetMedia attempts in a row ({exc}) — check the"
                        " network and the stream"
                    ) from exc
            finally:
                self.close()
                if decoder.done_fragments:
                    self.last_fragment = decoder.done_fragments[-1]
            if clean and not self.follow:
                return
            if not clean:
                time.sleep(min(self.backoff_s[1], self.backoff_s[0] * 2 ** (failures - 1)))
            if self.last_fragment is not None:
                selector = StartSelector("AFTER_FRAGMENT_NUMBER", self.last_fragment)

    def _open(self, selector: StartSelector) -> Any:
        from botocore.exceptions import ClientError, NoCredentialsError

        self.connects += 1
        try:
            if self._media is None:
                endpoint = self._control.get_data_endpoint(APIName="GET_MEDIA", **self.stream)["DataEndpoint"]
                self._media = self._session.client(
                    "kinesis-video-media", endpoint_url=endpoint, config=self._config()
                )
            response = self._media.get_media(**self.stream, StartSelector=selector.to_api())
        except NoCredentialsError as exc:
            raise SourceError(
                f"{self.label}: no AWS credentials — set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"
                " or AWS_PROFILE"
            ) from exc
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _FATAL:
                raise SourceError(f"{self.label}: {_FATAL[code]} ({code})") from exc
            raise _Retry(f"{code or exc}") from exc
        content_type = str(response.get("ContentType", ""))
        if content_type and not content_type.startswith(("video/webm", "video/x-matroska")):
            log.warning("kinesis.unexpected_content_type", stream=self.label, content_type=content_type)
        log.info("kinesis.get_media", stream=self.label, start=selector.to_api())
        return response["Payload"]


def chunks_from_kinesis(
    source: KinesisVideoSource,
    *,
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
    fps: Fraction | float | None = None,
) -> Iterator[Chunk]:
    """Chunks of a Kinesis Video stream, as :func:`ingest.normalize.chunks_from_file` gives them for a
    file: ``capture_us`` is the producer's clock; the stream starts at the first frame received.

    The chunk length needs a frame rate: the track's DefaultDuration when the producer sets it, else
    ``fps`` (30 by default); capture times are exact either way.
    """
    chunker: Chunker | None = None
    start_us = 0
    for index, frame in enumerate(source.frames()):
        if chunker is None:
            start_us = frame.capture_us
            rate = source.fps or (Fraction(fps) if fps else DEFAULT_FPS)
            chunker = Chunker(rate, start_us=start_us, chunk_seconds=chunk_seconds)
            log.info("kinesis.stream_start", stream=source.label, start_us=start_us, fps=float(rate))
        yield from chunker.push(SourceFrame(index, frame.capture_us - start_us, frame.frame))
    if chunker is not None and (last := chunker.flush()) is not None:
        yield last


async def publish_kinesis(
    producer: Any,
    source: KinesisVideoSource,
    camera: Any,
    store: Any,
    *,
    fps: float | None = None,
) -> Any:
    """Publish a Kinesis Video stream as ``camera`` through the shared :class:`ChunkSink`; the sink's
    stats when the source ends. Decoding and encoding run on a worker thread (via ``paced``)."""
    from ingest.pacing import paced
    from ingest.publisher import ChunkSink

    sink: ChunkSink | None = None
    try:
        async for chunk in paced(chunks_from_kinesis(source, fps=fps), speed=0):
            if sink is None:
                sink = ChunkSink(producer, camera, store, start_us=chunk.capture_us[0] - chunk.pts_us[0])
            await sink.send(chunk)
    except SourceError:
        # The stream is lost for good: close it downstream too, so the referee judges what it has.
        if sink is not None:
            with contextlib.suppress(Exception):
                await sink.end()
        raise
    if sink is None:
        log.warning("kinesis.no_frames", stream=source.label)
        return None
    await sink.end()
    log.info("kinesis.stream_done", stream=source.label, camera=camera.key, **sink.stats.__dict__)
    return sink.stats
