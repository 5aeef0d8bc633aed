"""Recording the remote tracks of a live aiortc peer connection, on loopback only."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest
from aiortc import RTCPeerConnection
from aiortc.codecs.opus import OpusEncoder
from aiortc.mediastreams import MediaStreamTrack

from asyncrec import FrameTrack, MediaRecorder, MediaStream, SampleTrack, moving_pattern, sine_tone
from media_check import ffmpeg_decode_errors, ffprobe_duration, ffprobe_streams, pyav_frame_counts

RECORD_SECONDS = 3.0
TIMESLICE_MS = 500
FPS = 30
CONNECT_TIMEOUT = 15


def candidate_addresses(sdp: str) -> set[str]:
    # a=candidate:<foundation> <component> <transport> <priority> <address> <port> typ ...
    return {m.group(1) for m in re.finditer(r"^a=candidate:\S+ \d+ \S+ \d+ (\S+) \d+ typ", sdp, re.MULTILINE)}


async def test_record_remote_tracks_of_a_live_peer_connection(
    peers: tuple[RTCPeerConnection, RTCPeerConnection], tmp_path: Path
) -> None:
    sender, receiver = peers
    local_tracks: list[MediaStreamTrack] = [
        FrameTrack(moving_pattern(320, 240), fps=FPS),
        SampleTrack(sine_tone(440)),
    ]
    remote = MediaStream()
    both_tracks = asyncio.get_running_loop().create_future()

    @receiver.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        remote.addTrack(track)
        if len(remote.getTracks()) == 2 and not both_tracks.done():
            both_tracks.set_result(None)

    chunks: list[bytes] = []
    try:
        for track in local_tracks:
            sender.addTrack(track)
        await sender.setLocalDescription(await sender.createOffer())
        await receiver.setRemoteDescription(sender.localDescription)
        await receiver.setLocalDescription(await receiver.createAnswer())
        await sender.setRemoteDescription(receiver.localDescription)
        assert candidate_addresses(sender.localDescription.sdp) == {"127.0.0.1"}
        assert candidate_addresses(receiver.localDescription.sdp) == {"127.0.0.1"}
        await asyncio.wait_for(both_tracks, CONNECT_TIMEOUT)
        assert sorted(t.kind for t in remote.getTracks()) == ["audio", "video"]

        async with MediaRecorder(remote, mimeType="video/webm;codecs=vp8,opus") as recorder:
            recorder.ondataavailable = lambda event: chunks.append(event.data)
            await recorder.start(timeslice=TIMESLICE_MS)
            assert recorder.mimeType == "video/webm;codecs=vp8,opus"
            started = time.monotonic()
            await asyncio.sleep(RECORD_SECONDS)
            await recorder.stop()
            wall = time.monotonic() - started
            stats = recorder.statistics()
        assert receiver.connectionState == "connected"
    finally:
        for track in local_tracks:
            track.stop()

    assert stats.state == "inactive"
    by_kind = {t.kind: t for t in stats.tracks}
    assert sorted(by_kind) == ["audio", "video"]
    # First, as everything after depends on it (the muxer waits for every track's first
    # frame): the sender must accept SampleTrack's frames (see the test below).
    assert by_kind["audio"].frames_in > 0, "the receiver got no audio: did the sender's audio track fail? (log)"
    assert by_kind["audio"].frames_encoded > 0
    assert by_kind["video"].frames_encoded > 0
    assert stats.chunks_out == len(chunks)
    assert stats.bytes_out == sum(len(c) for c in chunks)
    assert len([c for c in chunks if c]) > 1, f"a {TIMESLICE_MS} ms timeslice over {wall:.1f} s gave one chunk"

    path = tmp_path / "webrtc.webm"
    path.write_bytes(b"".join(chunks))
    assert ffmpeg_decode_errors(path) == ""
    streams = {s["codec_type"]: s for s in ffprobe_streams(path)}
    assert sorted(streams) == ["audio", "video"]
    assert streams["video"]["codec_name"] == "vp8"
    assert (streams["video"]["width"], streams["video"]["height"]) == (320, 240)
    assert streams["audio"]["codec_name"] == "opus"
    duration = ffprobe_duration(path)
    assert 1.5 <= duration <= 4.5, f"{duration:.2f} s of media for {wall:.2f} s of recording"
    video_frames = streams["video"]["nb_read_frames"]
    # Plausible for 30 fps: at least a third of it (a loaded CI machine, the connection's
    # ramp-up), never more than the sender sent.
    assert FPS * duration / 3 <= video_frames <= FPS * (wall + 0.5), f"{video_frames} frames in {duration:.2f} s"
    assert pyav_frame_counts(path)["video"] == video_frames

    # 20 ms Opus frames over the media duration, give or take the connection's start.
    assert streams["audio"]["nb_read_frames"] >= duration / 0.020 / 2


async def test_sample_track_frames_fit_aiortc_audio_sender() -> None:
    """aiortc's RTCRtpSender encodes audio with OpusEncoder, which takes packed s16 frames
    only (aiortc's own MediaPlayer resamples to s16 for that reason)."""
    track = SampleTrack(sine_tone(440), realtime=False, duration=0.1)
    try:
        frame = await track.recv()
    finally:
        track.stop()
    assert frame.format.name == "s16", f"SampleTrack sends {frame.format.name} frames; aiortc's sender needs s16"
    payloads, _timestamp = OpusEncoder().encode(frame)
    assert isinstance(payloads, list)


async def test_two_recorders_on_one_remote_stream_each_get_every_frame(
    peers: tuple[RTCPeerConnection, RTCPeerConnection], tmp_path: Path
) -> None:
    """What examples/whip_app.py does: a file recording and an audio-only one of the same
    remote tracks. aiortc's remote tracks can be read only once; asyncrec fans them out."""
    sender, receiver = peers
    local_tracks: list[MediaStreamTrack] = [FrameTrack(moving_pattern(160, 120), fps=FPS), SampleTrack(sine_tone(440))]
    remote = MediaStream()
    both_tracks = asyncio.get_running_loop().create_future()

    @receiver.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        remote.addTrack(track)
        if len(remote.getTracks()) == 2 and not both_tracks.done():
            both_tracks.set_result(None)

    files = {"av": tmp_path / "av.webm", "audio": tmp_path / "audio.webm"}
    chunks: dict[str, list[bytes]] = {name: [] for name in files}
    try:
        for track in local_tracks:
            sender.addTrack(track)
        await sender.setLocalDescription(await sender.createOffer())
        await receiver.setRemoteDescription(sender.localDescription)
        await receiver.setLocalDescription(await receiver.createAnswer())
        await sender.setRemoteDescription(receiver.localDescription)
        await asyncio.wait_for(both_tracks, CONNECT_TIMEOUT)
        recorders = {
            "av": MediaRecorder(remote, mimeType="video/webm;codecs=vp8,opus"),
            "audio": MediaRecorder(remote, mimeType="audio/webm"),
        }
        for name, recorder in recorders.items():
            recorder.ondataavailable = lambda event, name=name: chunks[name].append(event.data)
        await asyncio.gather(*(r.start(TIMESLICE_MS) for r in recorders.values()))
        await asyncio.sleep(RECORD_SECONDS)
        await asyncio.gather(*(r.stop() for r in recorders.values()))
    finally:
        for track in local_tracks:
            track.stop()

    stats = {name: {t.kind: t for t in r.statistics().tracks} for name, r in recorders.items()}
    durations = {}
    for name, path in files.items():
        path.write_bytes(b"".join(chunks[name]))
        assert ffmpeg_decode_errors(path) == "", name
        durations[name] = {
            s["codec_type"]: float(s.get("duration") or ffprobe_duration(path)) for s in ffprobe_streams(path)
        }
    # Both recorders saw the same audio frames (started together: within a frame or two),
    # and each holds the whole time, not half of it as when each called recv() itself.
    audio_in = [stats[name]["audio"].frames_in for name in files]
    assert abs(audio_in[0] - audio_in[1]) <= 3, audio_in
    assert min(audio_in) >= RECORD_SECONDS / 0.020 * 0.8, audio_in
    assert stats["av"]["video"].frames_in >= FPS * RECORD_SECONDS * 0.6
    assert durations["audio"]["audio"] == pytest.approx(durations["av"]["audio"], abs=0.1)
    assert durations["av"]["audio"] >= RECORD_SECONDS * 0.8, durations
