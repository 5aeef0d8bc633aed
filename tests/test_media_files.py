"""Media files as sources: open_media(path, realtime=..., loop=...) recorded to new files.

The input is made by Debian's ffmpeg (a 1 s 160x120 30 fps VP8 test pattern with an Opus
tone in WebM), so the reader is not only fed what asyncrec itself writes.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from asyncrec import (
    MediaFileStream,
    MediaRecorder,
    MediaStream,
    NotFoundError,
    NotReadableError,
    SourceTrack,
    open_media,
)
from conftest import EventLog
from media_check import ffmpeg_decode_errors, ffprobe_duration, ffprobe_streams, ffprobe_video
from source_check import (
    make_input_file,
    record_until_stopped,
    source_threads,
    sources_released,
    stop_tracks,
    wait_threads_ended,
)

INPUT_SECONDS = 1.0
INPUT_FRAMES = 30
#: Longer than a reader's queue of either kind holds (about 1 s of video, 2 s of audio).
LONG_SECONDS = 3.0


@pytest.fixture(autouse=True)
def _released() -> Iterator[None]:
    with sources_released():
        yield


@pytest.fixture(scope="module")
def media_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = make_input_file(tmp_path_factory.mktemp("media") / "input.webm", duration=INPUT_SECONDS)
    streams = {s["codec_type"]: s for s in ffprobe_streams(path)}
    assert streams["video"]["nb_read_frames"] == INPUT_FRAMES
    assert streams["audio"]["codec_name"] == "opus"
    return path


@pytest.fixture(scope="module")
def long_media_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_input_file(tmp_path_factory.mktemp("media") / "long.webm", duration=LONG_SECONDS)


def video_pts(path: Path) -> list[float]:
    """Presentation times (s) of the video packets of ``path``, in file order, by ffprobe."""
    return [float(p["pts_time"]) for p in ffprobe_video(path, "packet=pts_time")]


def assert_ended_by_itself(log: EventLog) -> None:
    assert log.types[0] == "start"
    assert log.types[-2:] == ["dataavailable", "stop"]
    assert set(log.types) == {"start", "dataavailable", "stop"}


async def test_file_read_as_fast_as_possible_is_recorded_whole(media_file: Path, tmp_path: Path) -> None:
    stream = await open_media(media_file, realtime=False)
    assert isinstance(stream, MediaFileStream)
    tracks = stream.getTracks()
    assert sorted(t.kind for t in tracks) == ["audio", "video"]
    for track in tracks:
        assert isinstance(track, SourceTrack)
        assert track.live is False
        assert track.label == media_file.name
    out = tmp_path / "out.mp4"
    started = time.monotonic()
    log = await record_until_stopped(stream, out, mimeType="video/mp4")
    elapsed = time.monotonic() - started
    assert_ended_by_itself(log)
    assert elapsed < 0.5 * INPUT_SECONDS  # much faster than real time
    # The media's end ended the tracks and released the input.
    assert all(t.readyState == "ended" for t in tracks)
    assert await wait_threads_ended(source_threads()) == set()
    assert ffmpeg_decode_errors(out) == ""
    streams = {s["codec_type"]: s for s in ffprobe_streams(out)}
    assert streams["video"]["codec_name"] == "h264"
    assert (streams["video"]["width"], streams["video"]["height"]) == (160, 120)
    assert streams["video"]["nb_read_frames"] == INPUT_FRAMES  # every frame, none dropped
    assert streams["audio"]["codec_name"] == "aac"
    assert ffprobe_duration(out) == pytest.approx(INPUT_SECONDS, abs=0.1)


async def test_file_read_in_real_time_takes_its_duration_and_ends_by_itself(media_file: Path, tmp_path: Path) -> None:
    stream = await open_media(media_file, realtime=True)
    assert all(t.live for t in stream.getTracks())
    out = tmp_path / "realtime.webm"
    started = time.monotonic()
    log = await record_until_stopped(stream, out)
    elapsed = time.monotonic() - started
    assert_ended_by_itself(log)
    assert 0.7 * INPUT_SECONDS < elapsed < 2.5 * INPUT_SECONDS
    assert ffmpeg_decode_errors(out) == ""
    streams = {s["codec_type"]: s for s in ffprobe_streams(out)}
    assert streams["video"]["nb_read_frames"] == pytest.approx(INPUT_FRAMES, abs=2)
    assert ffprobe_duration(out) == pytest.approx(INPUT_SECONDS, abs=0.15)


async def test_looped_file_plays_past_its_end(media_file: Path, tmp_path: Path) -> None:
    stream = await open_media(media_file, loop=True)
    out = tmp_path / "looped.webm"
    try:
        log = await record_until_stopped(stream, out, seconds=1.5 * INPUT_SECONDS)
        # The recorder was stopped; the looping tracks were not ended by the media.
        assert all(t.readyState == "live" for t in stream.getTracks())
    finally:
        stop_tracks(stream)
    assert "error" not in log.types
    assert ffmpeg_decode_errors(out) == ""
    duration = ffprobe_duration(out)
    assert INPUT_SECONDS + 0.2 < duration < 1.5 * INPUT_SECONDS + 0.5
    times = video_pts(out)
    assert all(b > a for a, b in itertools.pairwise(times))
    assert len(times) > INPUT_FRAMES + 5


async def test_looped_file_read_as_fast_as_possible_keeps_going(media_file: Path, tmp_path: Path) -> None:
    stream = await open_media(media_file, realtime=False, loop=True)
    out = tmp_path / "looped-fast.mkv"
    try:
        log = await record_until_stopped(stream, out, seconds=0.3, mimeType="video/x-matroska")
    finally:
        stop_tracks(stream)
    assert "error" not in log.types
    # Several passes of the media in a fraction of its duration, timestamps going on.
    assert ffprobe_duration(out) > 2 * INPUT_SECONDS
    times = video_pts(out)
    assert all(b > a for a, b in itertools.pairwise(times))


async def test_stream_used_without_await_opens_on_first_use(media_file: Path, tmp_path: Path) -> None:
    stream = open_media(media_file, realtime=False)
    recorder = MediaRecorder(stream, mimeType="video/webm")
    log = EventLog(recorder)
    recorder.start()
    await log.wait_stopped()
    assert_ended_by_itself(log)
    out = tmp_path / "no-await.webm"
    out.write_bytes(log.data)
    assert ffmpeg_decode_errors(out) == ""
    streams = {s["codec_type"]: s for s in ffprobe_streams(out)}
    assert streams["video"]["nb_read_frames"] == INPUT_FRAMES
    assert streams["audio"]["codec_name"] == "opus"


async def test_audio_only_recording_of_a_file_with_video_ends_by_itself(long_media_file: Path, tmp_path: Path) -> None:
    """An audio/* type records only the audio of the stream; the file's video track, which
    nothing reads, must not hold the input back (nor must the audio stop short)."""
    stream = await open_media(long_media_file, realtime=False)
    out = tmp_path / "audio.ogg"
    try:
        log = await record_until_stopped(stream, out, within=3, mimeType="audio/ogg")
    finally:
        stop_tracks(stream)
    assert_ended_by_itself(log)
    assert [s["codec_name"] for s in ffprobe_streams(out)] == ["opus"]
    assert ffprobe_duration(out) == pytest.approx(LONG_SECONDS, abs=0.1)


async def test_only_the_video_track_of_a_file_is_recorded_whole(long_media_file: Path, tmp_path: Path) -> None:
    stream = await open_media(long_media_file, realtime=False)
    out = tmp_path / "video.webm"
    try:
        await record_until_stopped(MediaStream(stream.getVideoTracks()), out, within=3)
    finally:
        stop_tracks(stream)
    [video] = ffprobe_streams(out)
    assert video["nb_read_frames"] == round(LONG_SECONDS * 30)


async def test_closing_the_stream_releases_the_input(media_file: Path) -> None:
    before = source_threads()
    stream = await open_media(media_file, realtime=True, loop=True)
    assert source_threads() - before
    await stream.getVideoTracks()[0].recv()
    stream.close()
    assert all(t.readyState == "ended" for t in stream.getTracks())
    assert await wait_threads_ended(source_threads() - before) == set()


async def test_missing_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        await open_media(tmp_path / "missing.webm")


async def test_random_bytes_are_not_readable(tmp_path: Path) -> None:
    path = tmp_path / "noise.webm"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(NotReadableError):
        await open_media(path, realtime=False)


async def test_file_without_audio_or_video_is_not_readable(tmp_path: Path) -> None:
    path = tmp_path / "subtitles.srt"
    path.write_text("1\n00:00:00,000 --> 00:00:01,000\nhello\n\n", encoding="utf-8")
    with pytest.raises(NotReadableError):
        await open_media(path)


def test_missing_file_used_without_await_is_not_found(tmp_path: Path) -> None:
    stream = open_media(tmp_path / "missing.webm")
    with pytest.raises(NotFoundError):
        stream.getTracks()
