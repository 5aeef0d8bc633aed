"""Bitrates and key frames, measured on the recorded file (issue 4).

Bitrates: the sum of the stream's packet sizes over its media duration, read by Debian's
ffprobe and by PyAV. The video source is the moving pattern with fine noise on it: the
pattern alone is so easy to code that encoders stay far under any target, and pure noise
cannot be coded under several Mb/s; with the noise every target here is reachable.
Key frames: the packets flagged key by ffprobe and by PyAV.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest

from asyncrec import FrameTrack, MediaRecorder, MediaStream, NotSupportedError, SampleTrack, moving_pattern, sine_tone
from media_check import ffmpeg_decode_errors
from media_probe import plane_array, probe, record

FPS = 30
BITRATE_SECONDS = 3.0
#: A measured bitrate must be within these factors of its target.
LOW, HIGH = 0.5, 1.6


def textured_pattern(width: int, height: int, amplitude: int = 8) -> Callable[[int, float], av.VideoFrame]:
    """The moving pattern with +-``amplitude`` of random noise on the luma of every frame."""
    rng = np.random.default_rng(4)
    pattern = moving_pattern(width, height)

    def make(index: int, seconds: float) -> av.VideoFrame:
        frame = pattern(index, seconds)
        luma = plane_array(frame, 0)
        noise = rng.integers(-amplitude, amplitude + 1, luma.shape, dtype=np.int16)
        luma[:] = np.clip(luma.astype(np.int16) + noise, 0, 255).astype(np.uint8)
        return frame

    return make


def rich_sound(first: int, count: int) -> np.ndarray:
    """Stereo tones and noise: harder to code than a sine, so VBR has something to spend bits on."""
    rng = np.random.default_rng(first)
    t = np.arange(first, first + count) / 48000
    wave = 0.2 * np.sin(2 * np.pi * 440 * t) + 0.15 * np.sin(2 * np.pi * 3150 * t) + 0.1 * rng.standard_normal(count)
    return np.vstack([wave, 0.7 * wave]).astype(np.float32)


def video_track(seconds: float = BITRATE_SECONDS, size: tuple[int, int] = (640, 360)) -> FrameTrack:
    return FrameTrack(textured_pattern(*size), fps=FPS, realtime=False, duration=seconds)


def audio_track(seconds: float = BITRATE_SECONDS) -> SampleTrack:
    return SampleTrack(rich_sound, channels=2, realtime=False, duration=seconds)


def measured_bitrates(path: Path, seconds: float) -> dict[str, float]:
    """Bits per second of each stream's packets, by ffprobe; PyAV must count the same bytes."""
    probed = probe(path)
    by_ffprobe = {kind: sum(p["size"] for p in probed.packets_of(kind)) for kind in ("video", "audio")}
    by_pyav = {"video": 0, "audio": 0}
    with av.open(str(path)) as container:
        for packet in container.demux():
            if packet.size:
                by_pyav[packet.stream.type] += packet.size
    assert by_pyav == by_ffprobe
    return {kind: 8 * size / seconds for kind, size in by_ffprobe.items() if size}


# -- bitrates -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mime",
    [pytest.param("video/webm;codecs=vp8", id="vp8"), pytest.param("video/mp4;codecs=avc1", id="h264")],
)
async def test_video_bitrate_is_honoured(mime: str, tmp_path: Path) -> None:
    targets = (300_000, 1_500_000)
    recordings = await asyncio.gather(
        *(record([video_track()], mimeType=mime, videoBitsPerSecond=bps) for bps in targets)
    )
    measured = []
    for bps, recording in zip(targets, recordings, strict=True):
        path = recording.save(tmp_path / f"{bps}.bin")
        assert ffmpeg_decode_errors(path) == ""
        rate = measured_bitrates(path, BITRATE_SECONDS)["video"]
        assert LOW * bps <= rate <= HIGH * bps, f"{rate / 1000:.0f} kb/s for a target of {bps / 1000:.0f} kb/s"
        measured.append(rate)
    assert measured[1] > 2.5 * measured[0]


@pytest.mark.parametrize("mode", ["variable", "constant"])
async def test_opus_bitrate_is_honoured(mode: str, tmp_path: Path) -> None:
    targets = (32_000, 128_000)
    recordings = []
    for bps in targets:
        recordings.append(
            await record([audio_track()], mimeType="audio/webm", audioBitsPerSecond=bps, audioBitrateMode=mode)
        )
    measured = []
    for bps, recording in zip(targets, recordings, strict=True):
        path = recording.save(tmp_path / f"{bps}.webm")
        assert ffmpeg_decode_errors(path) == ""
        rate = measured_bitrates(path, BITRATE_SECONDS)["audio"]
        assert LOW * bps <= rate <= HIGH * bps, f"{rate / 1000:.1f} kb/s for a target of {bps / 1000:.0f} kb/s"
        measured.append(rate)
        sizes = [p["size"] for p in probe(path).packets_of("audio")][1:-1]  # the last one may be short
        if mode == "constant":
            # Opus CBR: every 20 ms packet the same size (bitrate x 20 ms).
            assert max(sizes) - min(sizes) <= 2, f"packet sizes {min(sizes)}..{max(sizes)}"
            assert np.median(sizes) == pytest.approx(bps * 0.020 / 8, rel=0.05)
        else:
            assert max(sizes) - min(sizes) > 2, "variable bitrate gave constant packet sizes"
    assert measured[1] > 2.5 * measured[0]


async def test_audio_bitrate_mode_attribute() -> None:
    stream = MediaStream([audio_track(0.2)])
    assert MediaRecorder(stream).audioBitrateMode == "variable"
    assert MediaRecorder(stream, audioBitrateMode="constant").audioBitrateMode == "constant"
    assert MediaRecorder(stream, audioBitrateMode="variable").audioBitrateMode == "variable"
    with pytest.raises(TypeError):
        MediaRecorder(stream, audioBitrateMode="cbr")  # type: ignore[arg-type]


async def test_bits_per_second_is_split(tmp_path: Path) -> None:
    total = 1_000_000
    async with MediaRecorder(
        MediaStream([video_track(), audio_track()]), mimeType="video/webm;codecs=vp8,opus", bitsPerSecond=total
    ) as recorder:
        # At construction, then at start (for the tracks recorded), the two add up to the total.
        assert recorder.videoBitsPerSecond + recorder.audioBitsPerSecond == total
        assert recorder.videoBitsPerSecond > recorder.audioBitsPerSecond > 0
        chunks: list[bytes] = []
        events = aiter(recorder)
        await recorder.start()
        video_bps, audio_bps = recorder.videoBitsPerSecond, recorder.audioBitsPerSecond
        assert video_bps + audio_bps == total
        assert video_bps > audio_bps > 0
        async with asyncio.timeout(30):
            async for event in events:
                chunks.append(event.data)
    path = tmp_path / "split.webm"
    path.write_bytes(b"".join(chunks))
    assert ffmpeg_decode_errors(path) == ""
    rates = measured_bitrates(path, BITRATE_SECONDS)
    assert LOW * video_bps <= rates["video"] <= HIGH * video_bps
    assert LOW * audio_bps <= rates["audio"] <= HIGH * audio_bps
    assert LOW * total <= rates["video"] + rates["audio"] <= HIGH * total


async def test_bits_per_second_goes_to_the_only_recorded_kind() -> None:
    # Real time, so the recording is still going once start() has been awaited.
    track = SampleTrack(rich_sound, channels=2, realtime=True, duration=2.0)
    async with MediaRecorder(MediaStream([track]), mimeType="audio/webm", bitsPerSecond=96_000) as recorder:
        await recorder.start()
        assert recorder.audioBitsPerSecond == 96_000
        await recorder.stop()


def test_bits_per_second_overrides_the_per_kind_values() -> None:
    recorder = MediaRecorder(
        MediaStream([audio_track(0.2)]), bitsPerSecond=500_000, videoBitsPerSecond=100, audioBitsPerSecond=100
    )
    assert recorder.videoBitsPerSecond + recorder.audioBitsPerSecond == 500_000


# -- key frames -----------------------------------------------------------------------------------

KEY_SECONDS = 2.0
KEY_FRAMES = round(KEY_SECONDS * FPS)  # 60
CODECS = [
    pytest.param("video/webm;codecs=vp8", id="vp8"),
    pytest.param("video/webm;codecs=vp9", id="vp9"),
    pytest.param("video/mp4;codecs=avc1", id="h264"),
    pytest.param("video/webm;codecs=av1", id="av1"),
]


def key_frames(path: Path) -> tuple[list[int], list[float]]:
    """Indices and times (s) of the key frames of the video stream; ffprobe and PyAV must agree."""
    packets = probe(path).packets_of("video")
    assert len(packets) == KEY_FRAMES
    indices = [i for i, p in enumerate(packets) if p["key"]]
    times = [packets[i]["pts"] for i in indices]
    with av.open(str(path)) as container:
        flags = [p.is_keyframe for p in container.demux(video=0) if p.size]
    assert [i for i, key in enumerate(flags) if key] == indices
    return indices, times


async def record_key_frames(tmp_path: Path, mime: str, **options: object) -> tuple[list[int], list[float]]:
    track = FrameTrack(moving_pattern(160, 120), fps=FPS, realtime=False, duration=KEY_SECONDS)
    recording = await record([track], mimeType=mime, **options)
    assert recording.errors == []
    path = recording.save(tmp_path / "keys.bin")
    assert ffmpeg_decode_errors(path) == ""
    return key_frames(path)


@pytest.mark.parametrize("mime", CODECS)
async def test_key_frame_interval_count(mime: str, tmp_path: Path) -> None:
    indices, _ = await record_key_frames(tmp_path, mime, videoKeyFrameIntervalCount=10)
    # A key frame at least every 10 frames; x264 may add one at a scene cut, which restarts the count.
    assert indices[0] == 0
    gaps = [b - a for a, b in zip(indices, [*indices[1:], KEY_FRAMES], strict=True)]
    assert max(gaps) <= 10, f"key frames at {indices}"
    assert len(indices) <= KEY_FRAMES // 10 + 3, f"key frames at {indices}"
    if "avc1" not in mime:
        assert indices == list(range(0, KEY_FRAMES, 10))


@pytest.mark.parametrize("mime", CODECS)
async def test_key_frame_interval_duration(mime: str, tmp_path: Path) -> None:
    indices, times = await record_key_frames(tmp_path, mime, videoKeyFrameIntervalDuration=500)
    assert indices[0] == 0
    assert times[0] == pytest.approx(0.0, abs=0.002)
    gaps = [b - a for a, b in zip(times, [*times[1:], KEY_SECONDS], strict=True)]
    # The first frame at least 500 ms after the last key frame is a key frame: at most one
    # frame interval (plus rounding) later.
    assert max(gaps) <= 0.5 + 1 / FPS + 0.002, f"key frames at {times}"
    assert len(times) >= math.floor(KEY_SECONDS / 0.5)
    # ...and not every frame: forced key frames follow the interval.
    assert len(times) <= KEY_SECONDS / 0.5 + 2


@pytest.mark.parametrize("mime", CODECS)
async def test_no_forced_key_frames_by_default(mime: str, tmp_path: Path) -> None:
    indices, _ = await record_key_frames(tmp_path, mime)
    assert indices[0] == 0
    assert len(indices) <= 3, f"key frames at {indices}"


async def test_both_key_frame_intervals_is_not_supported() -> None:
    recorder = MediaRecorder(
        MediaStream([FrameTrack(moving_pattern(64, 48), realtime=False, duration=0.2)]),
        videoKeyFrameIntervalDuration=500,
        videoKeyFrameIntervalCount=10,
    )
    with pytest.raises(NotSupportedError):
        recorder.start()
    assert recorder.state == "inactive"
    await recorder.aclose()


INVALID = [
    pytest.param({"videoKeyFrameIntervalCount": "10"}, TypeError, id="count-str"),
    pytest.param({"videoKeyFrameIntervalCount": 1.5}, TypeError, id="count-float"),
    pytest.param({"videoKeyFrameIntervalCount": True}, TypeError, id="count-bool"),
    pytest.param({"videoKeyFrameIntervalCount": -1}, ValueError, id="count-negative"),
    pytest.param({"videoKeyFrameIntervalCount": 2**32}, ValueError, id="count-over-32-bits"),
    pytest.param({"videoKeyFrameIntervalDuration": "500"}, TypeError, id="duration-str"),
    pytest.param({"videoKeyFrameIntervalDuration": True}, TypeError, id="duration-bool"),
    pytest.param({"videoKeyFrameIntervalDuration": -1}, ValueError, id="duration-negative"),
    pytest.param({"videoKeyFrameIntervalDuration": math.nan}, ValueError, id="duration-nan"),
    pytest.param({"videoKeyFrameIntervalDuration": math.inf}, ValueError, id="duration-inf"),
    pytest.param({"videoBitsPerSecond": -1}, ValueError, id="video-bps-negative"),
    pytest.param({"videoBitsPerSecond": "1000"}, TypeError, id="video-bps-str"),
    pytest.param({"audioBitsPerSecond": 2**32}, ValueError, id="audio-bps-over-32-bits"),
    pytest.param({"audioBitsPerSecond": 64.5}, TypeError, id="audio-bps-float"),
    pytest.param({"bitsPerSecond": -5}, ValueError, id="bps-negative"),
    pytest.param({"bitsPerSecond": None, "audioBitrateMode": "cbr"}, TypeError, id="bitrate-mode-unknown"),
]


@pytest.mark.parametrize(("options", "error"), INVALID)
def test_invalid_options_raise_in_the_constructor(options: dict[str, object], error: type[Exception]) -> None:
    stream = MediaStream([SampleTrack(sine_tone(440), realtime=False, duration=0.1)])
    with pytest.raises(error):
        MediaRecorder(stream, **options)  # type: ignore[arg-type]
