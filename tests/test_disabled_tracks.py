"""A track with ``enabled = False`` records black pictures and silence in its place (the
spec's "not enabled"), for generated tracks and for source tracks, checked by decoding."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import pytest

from asyncrec import (
    FrameTrack,
    MediaRecorder,
    MediaStream,
    SampleTrack,
    getUserMedia,
    moving_pattern,
    open_media,
    sine_tone,
)
from media_check import ffmpeg_decode_errors, ffprobe_packet_spans, ffprobe_streams
from source_check import (
    BLACK_LUMA,
    BLACK_TOLERANCE,
    SILENCE_RMS,
    TONE_RMS,
    audio_rms,
    luma_means,
    make_input_file,
    record_until_stopped,
    sources_released,
    stop_tracks,
)

FPS = 30
RATE = 48000
SECONDS = 1.0
#: The middle part of a toggled recording, disabled: [start, end) in media seconds.
OFF_FROM, OFF_UNTIL = 0.4, 0.7
#: How far from a switch a decoded picture or audio frame may still show the other state
#: (an encoder's look-ahead, Opus's overlap, the timeline's anchoring).
MARGIN = 0.1


@pytest.fixture(autouse=True)
def _released() -> Iterator[None]:
    with sources_released():
        yield


def generated(*, disabled: bool = False) -> MediaStream:
    video = FrameTrack(moving_pattern(160, 120), fps=FPS, realtime=False, duration=SECONDS)
    audio = SampleTrack(sine_tone(440, RATE), sample_rate=RATE, realtime=False, duration=SECONDS)
    if disabled:
        video.enabled = False
        audio.enabled = False
    return MediaStream([video, audio])


def counts(path: Path) -> dict[str, int | None]:
    return {s["codec_type"]: s["nb_read_frames"] for s in ffprobe_streams(path)}


def assert_black(path: Path) -> None:
    means = luma_means(path)
    assert means
    assert all(abs(mean - BLACK_LUMA) <= BLACK_TOLERANCE for _, mean in means), means


def assert_silent(path: Path) -> None:
    levels = audio_rms(path)
    assert levels
    assert max(level for _, level in levels) < SILENCE_RMS, levels


def assert_not_black(means: list[tuple[float, float]]) -> None:
    assert means
    assert all(abs(mean - BLACK_LUMA) > 4 * BLACK_TOLERANCE for _, mean in means), means


def assert_toggled(path: Path, off_from: float, off_until: float, total: float, margin: float = MARGIN) -> None:
    """Pictures and sound before ``off_from`` and after ``off_until`` are the source's,
    black and silent between them (``margin`` s around each switch are not checked)."""
    means = luma_means(path)
    levels = audio_rms(path)

    def part(values: list[tuple[float, float]], low: float, high: float) -> list[tuple[float, float]]:
        chosen = [(t, v) for t, v in values if low <= t < high]
        assert chosen, f"nothing decoded between {low:.2f} s and {high:.2f} s: {values}"
        return chosen

    on_before, off, on_after = (
        (0.0, off_from - margin),
        (off_from + margin, off_until - margin),
        (off_until + margin, total),
    )
    assert_not_black(part(means, *on_before))
    assert all(abs(v - BLACK_LUMA) <= BLACK_TOLERANCE for _, v in part(means, *off)), means
    assert_not_black(part(means, *on_after))
    # Opus's first and last frames fade in and out.
    assert all(v > TONE_RMS for _, v in part(levels, on_before[0] + 0.05, on_before[1])), levels
    assert all(v < SILENCE_RMS for _, v in part(levels, *off)), levels
    assert all(v > TONE_RMS for _, v in part(levels, on_after[0], on_after[1] - 0.05)), levels


@pytest.mark.parametrize("mime", ["video/webm", "video/mp4"])
async def test_disabled_generated_tracks_record_black_and_silence(tmp_path: Path, mime: str) -> None:
    suffix = mime.split("/")[1]
    reference = tmp_path / f"enabled.{suffix}"
    await record_until_stopped(generated(), reference, mimeType=mime)
    out = tmp_path / f"disabled.{suffix}"
    log = await record_until_stopped(generated(disabled=True), out, mimeType=mime)
    assert "error" not in log.types
    assert ffmpeg_decode_errors(out) == ""
    assert_black(out)
    assert_silent(out)
    # The enabled recording of the same sources is neither black nor silent...
    assert_not_black(luma_means(reference))
    assert min(level for _, level in audio_rms(reference)[1:-1]) > TONE_RMS
    # ...and has exactly as many frames: disabling replaces media, it drops none.
    assert counts(out) == counts(reference)
    assert counts(out)["video"] == round(SECONDS * FPS)


async def test_disabling_only_the_video_keeps_the_sound(tmp_path: Path) -> None:
    stream = generated()
    stream.getVideoTracks()[0].enabled = False
    out = tmp_path / "no-picture.webm"
    await record_until_stopped(stream, out)
    assert_black(out)
    assert min(level for _, level in audio_rms(out)[1:-1]) > TONE_RMS


async def test_toggling_enabled_while_recording_blacks_out_only_that_part(tmp_path: Path) -> None:
    """The generators switch their own track off and on as they make the frames of
    [OFF_FROM, OFF_UNTIL), so the switch lands on a known frame whatever the pace."""

    def off(seconds: float) -> bool:
        return OFF_FROM <= seconds < OFF_UNTIL

    pattern = moving_pattern(160, 120)
    tone = sine_tone(440, RATE)

    def picture(index: int, seconds: float) -> av.VideoFrame:
        video.enabled = not off(seconds)
        return pattern(index, seconds)

    def samples(first: int, count: int) -> Any:
        audio.enabled = not off(first / RATE)
        return tone(first, count)

    video = FrameTrack(picture, fps=FPS, realtime=False, duration=SECONDS)
    audio = SampleTrack(samples, sample_rate=RATE, realtime=False, duration=SECONDS)
    out = tmp_path / "toggled.webm"
    await record_until_stopped(MediaStream([video, audio]), out)
    assert ffmpeg_decode_errors(out) == ""
    assert counts(out)["video"] == round(SECONDS * FPS)
    means = luma_means(out)
    # Exactly the frames made while disabled are black.
    black = [i for i, (_, mean) in enumerate(means) if abs(mean - BLACK_LUMA) <= BLACK_TOLERANCE]
    assert black == [i for i in range(round(SECONDS * FPS)) if off(i / FPS)]
    assert_toggled(out, OFF_FROM, OFF_UNTIL, SECONDS)


async def test_disabled_file_tracks_record_black_and_silence(tmp_path: Path) -> None:
    source = make_input_file(tmp_path / "input.webm", duration=SECONDS)
    stream = await open_media(source, realtime=False)
    for track in stream.getTracks():
        assert track.enabled is True
        track.enabled = False
    out = tmp_path / "disabled-file.webm"
    try:
        await record_until_stopped(stream, out)
    finally:
        stop_tracks(stream)
    assert ffmpeg_decode_errors(out) == ""
    assert_black(out)
    assert_silent(out)
    assert counts(out)["video"] == counts(source)["video"]


async def test_toggling_a_fake_camera_and_microphone_while_recording(tmp_path: Path) -> None:
    """A live SourceTrack switched off and on again from the loop, in real time."""
    stream = await getUserMedia(fake=True, video={"width": 160, "height": 120, "frameRate": 30}, audio=True)
    out = tmp_path / "toggled-device.webm"

    async def toggle() -> None:
        await asyncio.sleep(0.5)
        for track in stream.getTracks():
            track.enabled = False
        await asyncio.sleep(0.5)
        for track in stream.getTracks():
            track.enabled = True

    try:
        toggler = asyncio.ensure_future(toggle())
        await record_until_stopped(stream, out, seconds=1.5)
        await toggler
    finally:
        stop_tracks(stream)
    assert ffmpeg_decode_errors(out) == ""
    # Switched from the loop on wall-clock time: wider margins than for a switch on a known frame.
    assert_toggled(out, 0.5, 1.0, 1.5, margin=0.15)


async def test_an_audio_track_that_goes_quiet_is_padded_with_silence_to_the_end(tmp_path: Path) -> None:
    """A muted peer stops delivering audio: the file's audio still lasts as long as the video."""

    class GoesQuiet(SampleTrack):
        async def recv(self) -> av.AudioFrame:
            frame = await super().recv()
            while frame.pts is not None and frame.pts >= 48000 * 0.5 and self.readyState == "live":
                await self._quiet.wait()  # nothing more until the track is stopped
            return frame

    quiet = GoesQuiet(sine_tone(), sample_rate=48000)
    quiet._quiet = asyncio.Event()  # type: ignore[attr-defined]
    video = FrameTrack(moving_pattern(160, 120))
    recorder = MediaRecorder(MediaStream([video, quiet]))
    chunks: list[bytes] = []
    recorder.ondataavailable = lambda e: chunks.append(e.data)
    await recorder.start()
    await asyncio.sleep(2.0)  # two seconds of media, audio quiet after 0.5 s
    await recorder.stop()
    video.stop()
    quiet.stop()
    quiet._quiet.set()  # type: ignore[attr-defined]
    path = tmp_path / "quiet.webm"
    path.write_bytes(b"".join(chunks))
    spans = ffprobe_packet_spans(path)
    v_end, a_end = spans[0][1], spans[1][1]
    assert a_end == pytest.approx(v_end, abs=0.1)
