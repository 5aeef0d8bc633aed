"""Recording an aiortc peer's tracks by copying their encoded frames (no decode, no
encode), on loopback: what is copied, what falls back to transcoding, and that the files
are whole (every frame counted as written is in the file and decodes)."""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import subprocess
import tempfile
import weakref
from pathlib import Path
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtp import RTCP_PSFB_APP, RTCP_PSFB_PLI, RtcpPacket, RtcpPsfbPacket, pack_remb_fci, unpack_remb_fci
from playwright.async_api import Browser

from asyncrec import FrameTrack, MediaRecorder, MediaStream, SampleTrack, moving_pattern, sine_tone
from asyncrec._aiortc_tap import REMB_INTERVAL, tap_for
from browser_media import append_chunks, serve_files
from conftest import close_peers
from media_check import ffmpeg_decode_errors, ffprobe_duration, ffprobe_streams, ffprobe_video
from test_browser import chromium  # noqa: F401 - the fixture, requested by name below
from test_browser_playback import browser  # noqa: F401 - the fixture, requested by name below

RECORD_SECONDS = 2.5
TIMESLICE_MS = 500
CONNECT_TIMEOUT = 15


async def connect(
    sender: RTCPeerConnection,
    receiver: RTCPeerConnection,
    *,
    video_codec: str | None = None,
    audio_codec: str | None = None,
    size: tuple[int, int] = (320, 240),
    audio: bool = True,
) -> MediaStream:
    """Send a moving pattern (and a tone) from ``sender``; the receiver's remote tracks."""
    local: list[MediaStreamTrack] = [FrameTrack(moving_pattern(*size), fps=30)]
    if audio:
        local.append(SampleTrack(sine_tone(440)))
    remote = MediaStream()
    arrived = asyncio.get_running_loop().create_future()

    @receiver.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        remote.addTrack(track)
        if len(remote.getTracks()) == len(local) and not arrived.done():
            arrived.set_result(None)

    for track in local:
        transceiver = sender.addTransceiver(track, direction="sendonly")
        codec = video_codec if track.kind == "video" else audio_codec
        if codec is not None:
            capabilities = RTCRtpSender.getCapabilities(track.kind)
            assert capabilities is not None
            preferred = [c for c in capabilities.codecs if c.mimeType.lower() == f"{track.kind}/{codec}"]
            transceiver.setCodecPreferences(preferred)
    await sender.setLocalDescription(await sender.createOffer())
    await receiver.setRemoteDescription(sender.localDescription)
    await receiver.setLocalDescription(await receiver.createAnswer())
    await sender.setRemoteDescription(receiver.localDescription)
    await asyncio.wait_for(arrived, CONNECT_TIMEOUT)
    return remote


async def record(stream: MediaStream, path: Path, seconds: float = RECORD_SECONDS, **options: Any) -> MediaRecorder:
    recorder = MediaRecorder(stream, **options)
    chunks: list[bytes] = []
    recorder.ondataavailable = lambda event: chunks.append(event.data)
    await recorder.start(TIMESLICE_MS)
    await asyncio.sleep(seconds)  # media to record: the wall clock is what a live peer runs on
    await recorder.stop()
    await asyncio.to_thread(path.write_bytes, b"".join(chunks))
    return recorder


def by_kind(recorder: MediaRecorder) -> dict[str, Any]:
    return {t.kind: t for t in recorder.statistics().tracks}


def streams_of(path: Path) -> dict[str, dict[str, Any]]:
    return {s["codec_type"]: s for s in ffprobe_streams(path)}


async def test_a_vp8_opus_peer_is_copied_whole_and_never_decoded(
    peers: tuple[RTCPeerConnection, RTCPeerConnection], tmp_path: Path
) -> None:
    sender, receiver = peers
    remote = await connect(sender, receiver)
    path = tmp_path / "copy.webm"
    recorder = await record(remote, path)

    assert recorder.mimeType == "video/webm;codecs=vp8,opus"
    stats = by_kind(recorder)
    assert stats["video"].copied
    assert stats["audio"].copied
    # Nothing went to aiortc's decoders: nobody reads decoded frames.
    for track in remote.getTracks():
        tap = tap_for(track)
        assert tap is not None
        assert tap.undecoded >= stats[track.kind].frames_encoded
        assert track._queue.qsize() <= 2  # type: ignore[attr-defined]
    assert ffmpeg_decode_errors(path) == ""
    streams = streams_of(path)
    assert (streams["video"]["codec_name"], streams["audio"]["codec_name"]) == ("vp8", "opus")
    assert (streams["video"]["width"], streams["video"]["height"]) == (320, 240)
    # Every frame counted as written is in the file, and decodes.
    assert streams["video"]["nb_read_frames"] == stats["video"].frames_encoded > 30
    assert streams["audio"]["nb_read_frames"] == stats["audio"].frames_encoded > 50
    packets = ffprobe_video(path, "packet=flags")
    assert packets[0]["flags"].startswith("K"), "the copy starts on a key frame"
    assert 1.5 <= ffprobe_duration(path) <= RECORD_SECONDS + 1.0


@pytest.mark.parametrize(
    ("mime", "codec_string"),
    [
        ("video/x-matroska", "video/x-matroska;codecs=avc1.42"),
        ("video/mp4", "video/mp4;codecs=avc1.42"),
        ("video/webm;codecs=avc1,opus", "video/webm;codecs=avc1.42"),  # Chromium's H.264 "WebM", named
    ],
)
async def test_an_h264_peer_is_copied_with_its_parameter_sets(
    peers: tuple[RTCPeerConnection, RTCPeerConnection], tmp_path: Path, mime: str, codec_string: str
) -> None:
    sender, receiver = peers
    remote = await connect(sender, receiver, video_codec="h264")
    path = tmp_path / ("copy.mp4" if "mp4" in mime else "copy.mkv")
    recorder = await record(remote, path, mimeType=mime)

    assert recorder.mimeType.startswith(codec_string), recorder.mimeType
    assert recorder.mimeType.endswith(",opus")
    stats = by_kind(recorder)
    assert stats["video"].copied
    assert stats["audio"].copied
    assert ffmpeg_decode_errors(path) == ""
    streams = streams_of(path)
    assert streams["video"]["codec_name"] == "h264"
    assert (streams["video"]["width"], streams["video"]["height"]) == (320, 240)
    assert streams["video"]["nb_read_frames"] == stats["video"].frames_encoded > 30
    # The parameter sets are in the header (avcC), as players need them there.
    [extradata] = ffprobe_video(path, "stream=extradata_size")
    assert int(extradata["extradata_size"]) > 10


async def test_what_copying_cannot_honour_is_transcoded(
    peers: tuple[RTCPeerConnection, RTCPeerConnection], tmp_path: Path
) -> None:
    """Another codec named, or a bitrate asked for: that kind is transcoded, the other
    still copied; and the two recorders, one copying, one decoding, share the tracks."""
    sender, receiver = peers
    remote = await connect(sender, receiver)
    vp9, bitrate = tmp_path / "vp9.webm", tmp_path / "bitrate.webm"
    recorders = await asyncio.gather(
        record(remote, vp9, mimeType="video/webm;codecs=vp9,opus"),
        record(remote, bitrate, videoBitsPerSecond=300_000),
    )
    stats = [by_kind(r) for r in recorders]
    assert not stats[0]["video"].copied
    assert stats[0]["audio"].copied
    assert not stats[1]["video"].copied
    assert stats[1]["audio"].copied
    assert recorders[0].mimeType == "video/webm;codecs=vp9,opus"
    assert recorders[1].mimeType == "video/webm;codecs=vp8,opus"
    for path in (vp9, bitrate):
        assert ffmpeg_decode_errors(path) == ""
        streams = streams_of(path)
        assert streams["video"]["nb_read_frames"] > 30
        assert streams["audio"]["nb_read_frames"] > 50
    assert streams_of(vp9)["video"]["codec_name"] == "vp9"


async def test_h264_goes_into_a_webm_only_when_the_type_names_it(
    peers: tuple[RTCPeerConnection, RTCPeerConnection], tmp_path: Path
) -> None:
    """The default WebM holds H.264 only as Chromium's Matroska with a WebM name, which
    Firefox does not play: an H.264 peer is transcoded to VP8 there, its Opus still copied."""
    sender, receiver = peers
    remote = await connect(sender, receiver, video_codec="h264")
    path = tmp_path / "default.webm"
    recorder = await record(remote, path)
    stats = by_kind(recorder)
    assert not stats["video"].copied
    assert stats["audio"].copied
    assert recorder.mimeType == "video/webm;codecs=vp8,opus"
    assert ffmpeg_decode_errors(path) == ""
    assert streams_of(path)["video"]["codec_name"] == "vp8"


async def test_g711_audio_is_transcoded_beside_copied_video(
    peers: tuple[RTCPeerConnection, RTCPeerConnection], tmp_path: Path
) -> None:
    """A peer sending PCMU (telephony audio, which WebM cannot hold): its audio is decoded
    and encoded to Opus while its VP8 is copied, in one file."""
    sender, receiver = peers
    remote = await connect(sender, receiver, audio_codec="pcmu")
    path = tmp_path / "pcmu.webm"
    recorder = await record(remote, path)
    stats = by_kind(recorder)
    assert stats["video"].copied
    assert not stats["audio"].copied
    assert recorder.mimeType == "video/webm;codecs=vp8,opus"
    assert ffmpeg_decode_errors(path) == ""
    streams = streams_of(path)
    assert (streams["video"]["codec_name"], streams["audio"]["codec_name"]) == ("vp8", "opus")
    assert streams["audio"]["nb_read_frames"] > 50


async def test_pause_and_network_loss_are_bridged_to_the_next_key_frame(
    peers: tuple[RTCPeerConnection, RTCPeerConnection], tmp_path: Path
) -> None:
    """A pause, then frames lost as aiortc's jitter buffer reports it (it asks the sender
    for a key frame): the copy skips to the next key frame each time, counts what it left
    out, and the file decodes without an error."""
    sender, receiver = peers
    remote = await connect(sender, receiver)
    [video] = remote.getVideoTracks()
    recorder = MediaRecorder(remote)
    chunks: list[bytes] = []
    recorder.ondataavailable = lambda event: chunks.append(event.data)
    await recorder.start(TIMESLICE_MS)
    await asyncio.sleep(1.0)
    await recorder.pause()
    await asyncio.sleep(0.5)
    await recorder.resume()
    await asyncio.sleep(1.0)
    video_receiver = next(r for r in receiver.getReceivers() if r.track is video)
    [source] = video_receiver.getSynchronizationSources()
    await video_receiver._send_rtcp_pli(source.source)  # what aiortc does when frames are lost
    await asyncio.sleep(1.0)
    await recorder.stop()
    path = tmp_path / "gaps.webm"
    path.write_bytes(b"".join(chunks))

    stats = by_kind(recorder)["video"]
    assert stats.copied
    assert stats.gaps == 1
    assert stats.frames_paused > 0
    assert ffmpeg_decode_errors(path) == ""
    streams = streams_of(path)
    assert streams["video"]["nb_read_frames"] == stats.frames_encoded
    keys = [p for p in ffprobe_video(path, "packet=flags") if p["flags"].startswith("K")]
    assert len(keys) >= 2, "the resume started on a key frame"


async def test_a_resolution_change_is_carried_through(
    peers: tuple[RTCPeerConnection, RTCPeerConnection], tmp_path: Path
) -> None:
    """The sender switches from 320x240 to 480x360 mid-way (aiortc's encoder starts again
    with a key frame): the copy goes on, and the WebM holds both sizes, decodable."""
    sender, receiver = peers
    small, large = moving_pattern(320, 240), moving_pattern(480, 360)
    switch_at = 1.2

    def picture(index: int, seconds: float) -> Any:
        return (small if seconds < switch_at else large)(index, seconds)

    track = FrameTrack(picture, fps=30)
    remote = MediaStream()
    arrived = asyncio.get_running_loop().create_future()
    receiver.on("track", lambda t: (remote.addTrack(t), arrived.done() or arrived.set_result(None)))
    sender.addTransceiver(track, direction="sendonly")
    await sender.setLocalDescription(await sender.createOffer())
    await receiver.setRemoteDescription(sender.localDescription)
    await receiver.setLocalDescription(await receiver.createAnswer())
    await sender.setRemoteDescription(receiver.localDescription)
    await asyncio.wait_for(arrived, CONNECT_TIMEOUT)
    path = tmp_path / "sizes.webm"
    recorder = await record(remote, path, seconds=2.5)
    assert by_kind(recorder)["video"].copied
    assert ffmpeg_decode_errors(path) == ""
    sizes = {(f["width"], f["height"]) for f in ffprobe_video(path, "frame=width,height")}
    assert sizes == {(320, 240), (480, 360)}, sizes


async def test_a_reader_of_decoded_frames_still_gets_them(
    peers: tuple[RTCPeerConnection, RTCPeerConnection], tmp_path: Path
) -> None:
    """Someone reading the track itself (recv) while a recorder copies it: decoding goes
    on for them."""
    sender, receiver = peers
    remote = await connect(sender, receiver, audio=False)
    [video] = remote.getVideoTracks()
    got: list[Any] = []

    async def read() -> None:
        while len(got) < 30:
            got.append(await video.recv())

    reader = asyncio.create_task(read())
    recorder = await record(remote, tmp_path / "v.webm", seconds=2.0)
    await asyncio.wait_for(reader, 10)
    assert by_kind(recorder)["video"].copied
    assert all(frame.width == 320 for frame in got)


def test_aiortc_internals_the_tap_relies_on_are_there() -> None:
    """Fails loudly when aiortc changes what the passthrough hook uses (then update
    ``asyncrec/_aiortc_tap.py`` and its TESTED_AIORTC)."""
    import inspect
    import queue

    import aiortc
    from aiortc import RTCRtpReceiver
    from aiortc.jitterbuffer import JitterFrame
    from aiortc.rtcrtpreceiver import decoder_worker

    from asyncrec._aiortc_tap import TESTED_AIORTC, aiortc_tested

    assert ".".join(aiortc.__version__.split(".")[:2]) in TESTED_AIORTC, aiortc.__version__
    assert aiortc_tested()
    source = inspect.getsource(RTCRtpReceiver)
    assert "self.__decoder_queue: queue.Queue = queue.Queue()" in source
    assert "self.__decoder_queue.put((codec, encoded_frame))" in source
    assert "async def _send_rtcp_pli(self, media_ssrc: int)" in source
    assert "async def _send_rtcp(self, packet: AnyRtcpPacket)" in source
    assert "await self._send_rtcp(rtcp_packet)" in source  # the REMB the tap throttles
    assert "self._track" in source
    assert list(inspect.signature(decoder_worker).parameters) == ["loop", "input_q", "output_q", "decode_error"]
    frame = JitterFrame(data=b"x", timestamp=1)
    assert (frame.data, frame.timestamp) == (b"x", 1)
    assert isinstance(RTCRtpReceiver.track, property)
    assert queue.Queue.put  # the method the tap wraps per receiver


async def test_tracks_that_are_not_aiortc_remote_tracks_are_transcoded(tmp_path: Path) -> None:
    stream = MediaStream([FrameTrack(moving_pattern(160, 120), fps=30, duration=0.5, realtime=False)])
    async with MediaRecorder(stream) as recorder:
        await recorder.start()
        stopped = asyncio.Event()
        recorder.onstop = lambda event: stopped.set()
        await asyncio.wait_for(stopped.wait(), 20)
    [track] = recorder.statistics().tracks
    assert not track.copied
    assert track.frames_encoded == 15


@pytest.mark.slow
@pytest.mark.parametrize(("mime", "video_codec"), [("video/webm", None), ("video/mp4", "h264")], ids=["webm", "mp4"])
async def test_copied_chunks_play_in_chromium_media_source(
    peers: tuple[RTCPeerConnection, RTCPeerConnection],
    browser: Browser,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
    mime: str,
    video_codec: str | None,
) -> None:
    """A copied recording's chunks, appended one by one to a MediaSource SourceBuffer of
    ``recorder.mimeType`` in Chromium, are accepted and play to the end."""
    sender, receiver = peers
    remote = await connect(sender, receiver, video_codec=video_codec)
    recorder = MediaRecorder(remote, mimeType=mime)
    chunks: list[bytes] = []
    recorder.ondataavailable = lambda event: chunks.append(event.data)
    await recorder.start(TIMESLICE_MS)
    await asyncio.sleep(RECORD_SECONDS)  # media to record, at the peer's real-time pace
    await recorder.stop()
    assert all(t.copied for t in recorder.statistics().tracks)
    folder = tmp_path / "chunks"
    folder.mkdir()
    names = []
    for index, data in enumerate(c for c in chunks if c):
        names.append(f"chunk-{index:03d}")
        (folder / names[-1]).write_bytes(data)
    async with serve_files(folder) as server:
        report = await append_chunks(browser, server.base_url, [server.url(n) for n in names], recorder.mimeType)
    assert report.get("is_type_supported"), (recorder.mimeType, report)
    assert not report["append_errors"], report
    assert report["error"] is None, report
    assert report["ended"], report
    [[start, end]] = report["buffered"]
    assert start <= 0.3
    assert end >= 1.5, report


async def test_a_reader_waiting_before_the_copy_began_keeps_its_frames(
    peers: tuple[RTCPeerConnection, RTCPeerConnection], tmp_path: Path
) -> None:
    """A reader already waiting in recv() (a relay, a forward) when a recorder starts
    copying the track: decoding goes on for it."""
    sender, receiver = peers
    remote = await connect(sender, receiver, audio=False)
    [video] = remote.getVideoTracks()
    got: list[Any] = []

    async def read() -> None:
        while len(got) < 60:
            got.append(await video.recv())

    reader = asyncio.create_task(read())
    await asyncio.sleep(0)  # the reader waits in recv() before any tap exists
    recorder = await record(remote, tmp_path / "v.webm", seconds=2.5)
    await asyncio.wait_for(reader, 10)
    assert by_kind(recorder)["video"].copied
    assert len(got) == 60


async def test_bandwidth_estimates_are_throttled_as_libwebrtc_does(
    peers: tuple[RTCPeerConnection, RTCPeerConnection],
) -> None:
    """aiortc sends a REMB per packet while its estimator sees overuse (a loaded loop makes
    it see it): the tap lets one through per REMB_INTERVAL, sooner when the estimate falls
    below REMB_DROP of the last one sent, and every other RTCP packet as it comes."""
    sender, receiver = peers
    remote = await connect(sender, receiver, audio=False)
    [video] = remote.getVideoTracks()
    tap = tap_for(video)
    assert tap is not None
    await asyncio.wait_for(video.recv(), CONNECT_TIMEOUT)  # a frame came: its sender is known
    video_receiver = next(r for r in receiver.getReceivers() if r.track is video)
    [source] = video_receiver.getSynchronizationSources()
    transport = video_receiver.transport
    sent: list[bytes] = []
    send_rtp = transport._send_rtp

    async def counting(data: bytes) -> None:
        sent.append(bytes(data))
        await send_rtp(data)

    transport._send_rtp = counting  # type: ignore[method-assign]

    def remb(bitrate: int) -> RtcpPsfbPacket:
        return RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1234, media_ssrc=0, fci=pack_remb_fci(bitrate, [source.source]))

    def rembs() -> list[int]:
        return [
            unpack_remb_fci(RtcpPacket.parse(data)[0].fci)[0]  # type: ignore[union-attr]
            for data in sent
            if data[1] == 206 and data[0] & 0x1F == RTCP_PSFB_APP
        ]

    try:
        held = tap.remb_held
        for _ in range(10):  # a burst, as aiortc sends under "overuse"
            await video_receiver._send_rtcp(remb(1_000_000))
        assert tap.remb_held - held in (9, 10)  # (one may have gone out just before)
        await video_receiver._send_rtcp(remb(990_000))  # 1 % lower: held too
        await video_receiver._send_rtcp(remb(900_000))  # 10 % lower: at once
        assert rembs()[-1] == 900_000
        await asyncio.sleep(REMB_INTERVAL * 1.5)  # the interval itself is what is tested
        await video_receiver._send_rtcp(remb(950_000))  # higher, but the interval has passed
        assert rembs()[-1] == 950_000
        assert rembs().count(1_000_000) <= 1
        pli = len(sent)
        for _ in range(3):
            await video_receiver._send_rtcp(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1234, media_ssrc=source.source))
        assert len(sent) - pli == 3  # other feedback is never held back
    finally:
        transport._send_rtp = send_rtp  # type: ignore[method-assign]
    assert receiver.connectionState == "connected"


async def test_a_failing_consumer_never_breaks_the_peer_connection(
    peers: tuple[RTCPeerConnection, RTCPeerConnection], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The tap runs inside aiortc's packet handling: a consumer that raises is dropped and
    logged, the connection and the other consumers go on."""
    sender, receiver = peers
    remote = await connect(sender, receiver, audio=False)
    [video] = remote.getVideoTracks()
    tap = tap_for(video)
    assert tap is not None

    class Broken:
        copying = True

        def push_encoded(self, frame: Any) -> None:
            raise RuntimeError("a bug")

        def frames_lost(self) -> None:
            pass

        def encoded_ended(self) -> None:
            pass

    broken = Broken()
    tap.subscribe(broken)
    recorder = await record(remote, tmp_path / "v.webm", seconds=1.5)
    assert broken not in tap.consumers
    assert "a consumer of encoded video frames failed" in caplog.text
    assert receiver.connectionState == "connected"
    assert by_kind(recorder)["video"].frames_encoded > 20
    assert ffmpeg_decode_errors(tmp_path / "v.webm") == ""


async def test_lost_audio_is_filled_with_silence_and_counted(
    peers: tuple[RTCPeerConnection, RTCPeerConnection], tmp_path: Path
) -> None:
    """Audio packets lost for good (never retransmitted: aiortc's audio has no NACK): the
    copied Opus goes on after a gap, which the file fills with silence, so the audio
    track has no hole (players stall on one); the gap is counted."""
    sender, receiver = peers
    remote = await connect(sender, receiver)
    audio_receiver = next(r for r in receiver.getReceivers() if r.track.kind == "audio")
    handle = audio_receiver._handle_rtp_packet
    received = 0

    async def lossy(packet: Any, arrival_time_ms: int) -> None:
        nonlocal received
        received += 1
        if 60 <= received < 75:  # 300 ms of audio, a second or so into the session
            return
        await handle(packet, arrival_time_ms=arrival_time_ms)

    audio_receiver._handle_rtp_packet = lossy  # type: ignore[method-assign]
    path = tmp_path / "gap.webm"
    recorder = await record(remote, path)
    audio = by_kind(recorder)["audio"]
    assert audio.copied
    assert audio.gaps >= 1
    assert ffmpeg_decode_errors(path) == ""
    result = await asyncio.to_thread(
        subprocess.run,
        ["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries", "packet=pts_time,duration_time",
         "-of", "json", str(path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    packets = json.loads(result.stdout)["packets"]
    starts = [float(p["pts_time"]) for p in packets]
    holes = [b - a for a, b in itertools.pairwise(starts) if b - a > 0.045]
    assert not holes, f"holes in the audio: {holes}"


async def test_a_tapped_receiver_goes_away_with_its_peer_connection(loopback_ice: None) -> None:
    sender = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    receiver = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        remote = await connect(sender, receiver, audio=False)
        [video] = remote.getVideoTracks()
        tap = tap_for(video)
        assert tap is not None
        gone = weakref.ref(receiver.getReceivers()[0])
        await record(remote, Path(tempfile.mkdtemp()) / "v.webm", seconds=1.0)
    finally:
        await close_peers(sender, receiver)
    del receiver, remote, video, tap
    for _ in range(3):
        gc.collect()
    assert gone() is None, "the receiver is still referenced"
