"""Memory held for a WHIP session is bounded in bytes whatever the publisher sends.

- aiortc's internals that ``whip/_receivers.py`` relies on are pinned here: the day aiortc
  changes them, these tests fail (the watch would count nothing).
- A publisher larger than ``max_publish_size`` is refused before its video is decoded.
- A decoder that cannot keep up (aiortc's unbounded decoder queue grows) and an encoder
  that cannot (the recorder's queues grow) end the session at ``max_session_memory``, with
  the recording so far finished (checked with Debian's ffprobe).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import queue
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import aiohttp
import aiortc.rtcrtpreceiver
import pytest
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender

from asyncrec import FrameTrack, MediaStream, SampleTrack, _worker, moving_pattern, sine_tone
from asyncrec.whip._endpoint import WhipSession
from asyncrec.whip._receivers import ReceiverWatch, fits
from asyncrec.whip._recording import record_sessions
from conftest import Start
from media_check import ffmpeg_decode_errors, ffprobe_streams
from whip_client import Publisher

TIMEOUT = 30.0


def webm_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.webm"))


class Ends(logging.Handler):
    """The ``ended`` log records of sessions, and an event per record."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []
        self.warnings: list[str] = []
        self.ended = asyncio.Event()
        #: Set at the first warning (in the logging call, before the server goes on).
        self.warned = threading.Event()
        #: The server's /metrics after the session ended.
        self.metrics = ""

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            self.warnings.append(record.getMessage())
            self.warned.set()
        if "ended" in record.getMessage() and hasattr(record, "reason"):
            self.records.append(record)
            self.ended.set()


@pytest.fixture
def ends() -> Iterator[Ends]:
    handler = Ends()
    logger = logging.getLogger("asyncrec.whip")
    old = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old)


# -- aiortc's internals, pinned -------------------------------------------------------------------


def test_aiortc_internals_the_watch_relies_on() -> None:
    source = inspect.getsource(RTCRtpReceiver)
    # Reassembled frames go to the decoder queue as (codec, JitterFrame), on the loop...
    assert "self.__decoder_queue: queue.Queue = queue.Queue()" in source
    assert "self.__decoder_queue.put((codec, encoded_frame))" in source
    # ...and the decoder thread is given that queue and the track's queue.
    assert "self.__decoder_queue,\n                    self._track._queue," in source
    params = list(inspect.signature(aiortc.rtcrtpreceiver.decoder_worker).parameters)
    assert params[:3] == ["loop", "input_q", "output_q"]
    assert hasattr(aiortc.jitterbuffer.JitterFrame(b"x", 0), "data")
    track = aiortc.rtcrtpreceiver.RemoteStreamTrack(kind="video")
    assert isinstance(track._queue, asyncio.Queue)


async def test_the_watch_finds_the_queues_of_a_real_receiver() -> None:
    sender, pc = RTCPeerConnection(), RTCPeerConnection()
    try:
        sender.addTransceiver(FrameTrack(moving_pattern(64, 48), fps=30), direction="sendonly")
        sender.addTransceiver(SampleTrack(sine_tone(440)), direction="sendonly")
        await sender.setLocalDescription(await sender.createOffer())
        await pc.setRemoteDescription(sender.localDescription)  # as the WHIP endpoint does
        watch = ReceiverWatch(pc, max_size=(64, 64))
        assert len(watch._queues) == 2
        assert watch.held_bytes == 0
    finally:
        await sender.close()
        await pc.close()


# -- a real publisher over loopback ---------------------------------------------------------------


async def publish_until_ended(
    app_server: Start,
    tmp_path: Path,
    ends: Ends,
    size: tuple[int, int],
    audio: bool = True,
    video_codec: str = "video/VP8",
    **options: Any,
) -> logging.LogRecord:
    server = await app_server(tmp_path, timeslice=200, **options)
    async with aiohttp.ClientSession() as http, Publisher(size=size, audio=audio) as publisher:
        codecs = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType in (video_codec, "video/rtx")]
        for transceiver in publisher.pc.getTransceivers():
            if transceiver.kind == "video":
                transceiver.setCodecPreferences(codecs)
        await publisher.publish(http, str(server.make_url("/whip")))
        answer = publisher.pc.remoteDescription.sdp
        first = answer.split("m=video ")[1].split("\r\n")[0].split()[2]  # the chosen payload type
        assert f"a=rtpmap:{first} {video_codec.split('/')[1]}/90000" in answer
        await publisher.wait_connected()
        await asyncio.wait_for(ends.ended.wait(), TIMEOUT)
        # The server ended the session and closed its peer: the publisher sees it go.
        deadline = time.monotonic() + TIMEOUT
        while publisher.pc.connectionState not in ("closed", "failed", "disconnected"):
            assert time.monotonic() < deadline, publisher.pc.connectionState
            await asyncio.sleep(0.05)  # aiortc has no awaitable for "the remote closed"
        async with http.get(server.make_url("/metrics")) as response:
            ends.metrics = await response.text()
    return ends.records[0]


@pytest.mark.parametrize("codec", ["video/VP8", "video/H264"])
async def test_a_publisher_larger_than_allowed_is_refused_before_decoding(
    codec: str, app_server: Start, tmp_path: Path, ends: Ends, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[tuple[int, int]] = []
    real = aiortc.rtcrtpreceiver.decoder_worker

    def counting(loop: Any, input_q: Any, output_q: Any, *rest: Any) -> None:
        class Out:  # sees every decoded frame on its way to the track
            def put(self, frame: Any) -> Any:
                if frame is not None and hasattr(frame, "width"):
                    decoded.append((frame.width, frame.height))
                return output_q.put(frame)

        real(loop, input_q, Out(), *rest)

    monkeypatch.setattr(aiortc.rtcrtpreceiver, "decoder_worker", counting)
    ended = await publish_until_ended(
        app_server, tmp_path, ends, (640, 480), video_codec=codec, max_publish_size=(320, 240)
    )
    assert ended.reason == "video too large"  # type: ignore[attr-defined]
    assert any("640x480, larger than 320x240" in text for text in ends.warnings)
    assert decoded == []  # not one picture of it was decoded
    assert 'asyncrec_sessions_refused_total{reason="video_too_large"} 1.0' in ends.metrics
    for path in webm_files(tmp_path):  # audio received meanwhile, if any, is kept
        assert all(s["codec_type"] == "audio" for s in ffprobe_streams(path))


async def test_a_publisher_within_the_size_is_recorded(app_server: Start, tmp_path: Path, ends: Ends) -> None:
    server = await app_server(tmp_path, timeslice=200, max_publish_size=(320, 240))
    async with aiohttp.ClientSession() as http, Publisher(size=(320, 240)) as publisher:
        await publisher.publish(http, str(server.make_url("/whip")))
        await publisher.wait_connected()
        await asyncio.sleep(1.0)  # a second of media: what is being measured
        assert await publisher.delete(http) == 200
        await asyncio.wait_for(ends.ended.wait(), TIMEOUT)
    assert ends.records[0].reason == "deleted"  # type: ignore[attr-defined]
    [path] = webm_files(tmp_path)
    video = next(s for s in ffprobe_streams(path) if s["codec_type"] == "video")
    assert (video["width"], video["height"]) == (320, 240)


async def test_a_decoder_that_falls_behind_ends_the_session_at_its_memory_bound(
    app_server: Start, tmp_path: Path, ends: Ends, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The video decoder stalls (until the server says it ends the session: aiortc joins the
    # decoder thread when the peer connection closes): aiortc queues every encoded frame
    # for it, without bound.
    real = aiortc.rtcrtpreceiver.decoder_worker

    def stalled(loop: Any, input_q: queue.Queue[Any], *rest: Any) -> None:
        if threading.current_thread().name == "video-decoder":
            ends.warned.wait(TIMEOUT)
        real(loop, input_q, *rest)

    monkeypatch.setattr(aiortc.rtcrtpreceiver, "decoder_worker", stalled)
    limit = 256 * 1024
    started = time.monotonic()
    # Video only: nothing waits in the recorder for another track's first frame. Decoded:
    # a copy would not need the decoder at all.
    ended = await publish_until_ended(
        app_server, tmp_path, ends, (640, 480), audio=False, max_session_memory=limit, passthrough=False
    )
    assert ended.reason == "memory limit"  # type: ignore[attr-defined]
    [warning] = [text for text in ends.warnings if f"more than {limit}" in text]
    receiving = int(warning.partition("(receiving ")[2].partition(",")[0])
    assert receiving > limit // 2  # most of it in aiortc's queue for the stalled decoder
    assert time.monotonic() - started < TIMEOUT / 2  # ended by the bound, not by the stall's timeout


async def test_an_encoder_that_falls_behind_ends_the_session_at_its_memory_bound(
    tmp_path: Path, ends: Ends, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The worker stalls: live audio and the newest video pile up in the recorder's queues.
    real = _worker.RecordingWorker._encode

    def slow(self: _worker.RecordingWorker, item: Any) -> None:
        time.sleep(0.03)
        real(self, item)

    monkeypatch.setattr(_worker.RecordingWorker, "_encode", slow)
    stream = MediaStream(
        [
            FrameTrack(moving_pattern(640, 480), fps=30, realtime=True),
            SampleTrack(sine_tone(440), realtime=True),
        ]
    )
    pc = RTCPeerConnection()
    session = WhipSession("s1", pc, stream)
    limit = 2 * 1024 * 1024
    try:
        await asyncio.wait_for(record_sessions(tmp_path, timeslice=200, max_session_memory=limit)(session), TIMEOUT)
    finally:
        await pc.close()
    assert session.end_reason == "memory limit"
    [path] = webm_files(tmp_path)
    assert ffmpeg_decode_errors(path) == ""
    assert {s["codec_type"] for s in ffprobe_streams(path)} == {"video", "audio"}


@pytest.mark.parametrize(
    ("size", "bound", "fit"),
    [
        ((1920, 1080), (1920, 1080), True),
        ((1080, 1920), (1920, 1080), True),  # a phone held upright
        ((1920, 1088), (1920, 1080), False),
        ((2560, 1080), (1920, 1080), False),
        ((3840, 2160), (1920, 1080), False),
        ((640, 480), (1080, 1920), True),
    ],
)
def test_a_picture_fits_its_bound_either_way_round(size: tuple[int, int], bound: tuple[int, int], fit: bool) -> None:
    assert fits(size, bound) is fit


async def test_frames_whose_size_cannot_be_read_or_is_too_large_are_not_decoded() -> None:
    from asyncrec._encoded import encoded_frame
    from asyncrec._picture_size import picture_size

    [key] = [bytes(p) for p in _x264_key_frame(640, 480)]
    assert picture_size("video/H264", key) == (640, 480)
    junk_sps = b"\x00\x00\x01\x67" + b"\xff" * 8  # a tiny SPS (16x16) placed before the real one

    def h264(data: bytes) -> Any:
        return encoded_frame("video", "video/H264", 90_000, data, 0)

    pc = RTCPeerConnection()
    try:
        seen: list[tuple[int, int]] = []
        watch = ReceiverWatch(pc, max_size=(320, 240), on_oversized=lambda w, h: seen.append((w, h)))
        assert watch._too_large(h264(junk_sps * 5 + key))  # more SPS than read: refused
        assert seen == []
        assert watch._too_large(h264(key))  # larger than allowed
        assert seen == [(640, 480)]
        small = ReceiverWatch(pc, max_size=(1920, 1080))
        assert not small._too_large(h264(key))
        assert not small._too_large(h264(junk_sps * 3 + key))  # read past 3 junk ones
    finally:
        await pc.close()


def _x264_key_frame(width: int, height: int) -> list[bytes]:
    import av

    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base = Fraction(1, 30)
    ctx.options = {"preset": "ultrafast", "bf": "0"}
    frame = av.VideoFrame(width, height, "yuv420p")
    frame.pts = 0
    return [bytes(p) for p in [*ctx.encode(frame), *ctx.encode(None)]]
