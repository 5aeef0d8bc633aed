"""Devices: enumerateDevices and getUserMedia, with the fake devices (lavfi test pattern and
tone, paced in real time) and the real v4l2/ALSA path as far as a machine without a camera
or a microphone allows."""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from asyncrec import (
    AsyncrecError,
    MediaDeviceInfo,
    NotFoundError,
    NotReadableError,
    OverconstrainedError,
    SourceTrack,
    enumerateDevices,
    getUserMedia,
)
from media_check import ffmpeg_decode_errors, ffprobe_duration, ffprobe_streams
from source_check import (
    record_until_stopped,
    source_threads,
    sources_released,
    stop_tracks,
    wait_threads_ended,
)

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the v4l2/ALSA path is Linux's")


@pytest.fixture(autouse=True)
def _no_fake_from_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fake devices only where a test asks for them, and reader threads waited for."""
    monkeypatch.delenv("ASYNCREC_FAKE_DEVICES", raising=False)
    with sources_released():
        yield


async def frames(track: Any, count: int) -> list[Any]:
    return [await track.recv() for _ in range(count)]


# -- enumerateDevices -----------------------------------------------------------------------------


async def test_fake_devices_are_listed() -> None:
    devices = await enumerateDevices(fake=True)
    assert all(isinstance(d, MediaDeviceInfo) for d in devices)
    assert sorted(d.kind for d in devices) == ["audioinput", "videoinput"]
    for device in devices:
        assert device.deviceId
        assert device.label
        assert device.groupId
    assert len({d.deviceId for d in devices}) == 2


async def test_environment_variable_makes_enumerate_devices_fake(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = await enumerateDevices(fake=True)
    monkeypatch.setenv("ASYNCREC_FAKE_DEVICES", "1")
    assert await enumerateDevices() == fake
    # An explicit fake=False wins over the environment.
    assert not {d.deviceId for d in await enumerateDevices(fake=False)} & {d.deviceId for d in fake}
    monkeypatch.setenv("ASYNCREC_FAKE_DEVICES", "0")
    assert not {d.deviceId for d in await enumerateDevices()} & {d.deviceId for d in fake}


async def test_enumerate_devices_of_this_machine_is_a_list_of_device_infos() -> None:
    devices = await enumerateDevices()
    assert isinstance(devices, list)
    fake_ids = {d.deviceId for d in await enumerateDevices(fake=True)}
    for device in devices:
        assert isinstance(device, MediaDeviceInfo)
        assert device.kind in ("videoinput", "audioinput")
        assert device.deviceId not in fake_ids
        assert isinstance(device.label, str)
        assert isinstance(device.groupId, str)


# -- getUserMedia with the fake devices -----------------------------------------------------------


async def test_fake_devices_give_frames_with_the_constraints_at_real_time_pace() -> None:
    stream = await getUserMedia(
        fake=True, video={"width": 320, "height": 240, "frameRate": 15}, audio={"sampleRate": 16000, "channelCount": 2}
    )
    try:
        [video] = stream.getVideoTracks()
        [audio] = stream.getAudioTracks()
        for track in (video, audio):
            assert isinstance(track, SourceTrack)
            assert track.live is True
            assert track.readyState == "live"
            assert track.enabled is True
        assert "fake" in video.label.lower()
        assert "fake" in audio.label.lower()

        async def timed(track: Any, seconds: float, per_second: int, size: Any) -> tuple[float, float, list[Any]]:
            """Receive ``seconds`` of media after the first frame; (wall time, media time, frames)."""
            got = [await track.recv()]
            started = time.monotonic()
            media = 0
            while media < seconds * per_second:
                got.append(await track.recv())
                media += size(got[-1])
            return time.monotonic() - started, media / per_second, got

        # A second of each, measured together: 15 frames at 15 fps, 16000 samples at 16 kHz.
        (video_wall, video_media, pictures), (audio_wall, audio_media, sounds) = await asyncio.gather(
            timed(video, 1.0, 15, lambda _frame: 1), timed(audio, 1.0, 16000, lambda frame: frame.samples)
        )
        for picture in pictures:
            assert (picture.width, picture.height) == (320, 240)
        steps = [float((b.pts - a.pts) * b.time_base) for a, b in itertools.pairwise(pictures)]
        assert steps == [pytest.approx(1 / 15)] * 15
        assert 0.7 * video_media < video_wall < 1.6 * video_media
        for sound in sounds:
            assert sound.sample_rate == 16000
            assert len(sound.layout.channels) == 2
        # The first frame may leave a little early (the source's pace starts with it).
        assert 0.7 * (audio_media - sounds[0].samples / 16000) < audio_wall < 1.6 * audio_media
    finally:
        stop_tracks(stream)


async def test_constraint_ranges_choose_the_nearest_allowed_value() -> None:
    stream = await getUserMedia(
        fake=True,
        video={"width": {"ideal": 200, "max": 180}, "height": {"exact": 100}, "frameRate": {"min": 5, "max": 12}},
        audio={"sampleRate": {"ideal": 8000}, "channelCount": {"exact": 1}},
    )
    try:
        [video] = stream.getVideoTracks()
        [audio] = stream.getAudioTracks()
        first, second = await frames(video, 2)
        assert (first.width, first.height) == (180, 100)
        assert float((second.pts - first.pts) * second.time_base) == pytest.approx(1 / 12)
        sound = await audio.recv()
        assert sound.sample_rate == 8000
        assert len(sound.layout.channels) == 1
    finally:
        stop_tracks(stream)


async def test_environment_variable_makes_get_user_media_fake(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASYNCREC_FAKE_DEVICES", "1")
    stream = await getUserMedia(video=True, audio=True)
    try:
        labels = {t.kind: t.label for t in stream.getTracks()}
        fake = {d.kind: d.label for d in await enumerateDevices()}
        assert labels == {"video": fake["videoinput"], "audio": fake["audioinput"]}
        picture = (await frames(stream.getVideoTracks()[0], 1))[0]
        assert (picture.width, picture.height) == (640, 480)  # the default size
    finally:
        stop_tracks(stream)


async def test_fake_device_chosen_by_its_device_id() -> None:
    ids = {d.kind: d.deviceId for d in await enumerateDevices(fake=True)}
    stream = await getUserMedia(
        fake=True, video={"deviceId": ids["videoinput"]}, audio={"deviceId": {"exact": ids["audioinput"]}}
    )
    try:
        assert sorted(t.kind for t in stream.getTracks()) == ["audio", "video"]
    finally:
        stop_tracks(stream)


async def test_recording_the_fake_devices_gives_a_playable_file(tmp_path: Path) -> None:
    stream = await getUserMedia(
        fake=True, video={"width": 320, "height": 240, "frameRate": 15}, audio={"sampleRate": 16000, "channelCount": 2}
    )
    path = tmp_path / "fake.webm"
    try:
        log = await record_until_stopped(stream, path, seconds=1.5)
    finally:
        stop_tracks(stream)
    assert "error" not in log.types
    assert log.recorder.mimeType == "video/webm;codecs=vp8,opus"
    assert ffmpeg_decode_errors(path) == ""
    streams = {s["codec_type"]: s for s in ffprobe_streams(path)}
    assert streams["video"]["codec_name"] == "vp8"
    assert (streams["video"]["width"], streams["video"]["height"]) == (320, 240)
    assert streams["video"]["nb_read_frames"] == pytest.approx(1.5 * 15, abs=5)
    assert streams["audio"]["codec_name"] == "opus"
    assert streams["audio"]["channels"] == 2
    assert streams["audio"]["nb_read_frames"] == pytest.approx(1.5 / 0.020, abs=10)  # 20 ms Opus frames
    assert ffprobe_duration(path) == pytest.approx(1.5, abs=0.4)


async def test_stopping_a_track_releases_its_device() -> None:
    before = source_threads()
    stream = await getUserMedia(fake=True, video={"width": 160, "height": 120}, audio=True)
    [video] = stream.getVideoTracks()
    [audio] = stream.getAudioTracks()
    try:
        readers = source_threads() - before
        assert len(readers) == 2  # one per device
        await frames(video, 2)
        video.stop()
        assert video.readyState == "ended"
        # Only the camera is released: its reader ends, the microphone's goes on.
        assert len(await wait_threads_ended(readers, leave=1)) == 1
        assert audio.readyState == "live"
        assert (await frames(audio, 1))[0].samples > 0
        audio.stop()
        assert await wait_threads_ended(readers) == set()
    finally:
        stop_tracks(stream)


async def test_cancelled_get_user_media_releases_what_it_opened() -> None:
    before = source_threads()
    task = asyncio.ensure_future(getUserMedia(fake=True, video={"width": 160, "height": 120}, audio=True))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await wait_threads_ended(source_threads() - before) == set()


# -- errors -----------------------------------------------------------------------------------


async def test_neither_audio_nor_video_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        await getUserMedia()
    with pytest.raises(TypeError):
        await getUserMedia(audio=False, video=False, fake=True)


@pytest.mark.parametrize(
    "constraints",
    [{"video": "yes"}, {"video": {"width": "wide"}}, {"video": {"width": {"most": 3}}}, {"audio": {"deviceId": 3}}],
)
async def test_malformed_constraints_are_type_errors(constraints: dict[str, Any]) -> None:
    with pytest.raises(TypeError):
        await getUserMedia(fake=True, **constraints)


@pytest.mark.parametrize(
    ("kind", "constraints", "name"),
    [
        ("video", {"width": {"min": 5000, "max": 100}}, "width"),
        ("video", {"height": {"exact": 100000}}, "height"),
        ("video", {"frameRate": {"min": 1000}}, "frameRate"),
        ("audio", {"sampleRate": {"exact": 10}}, "sampleRate"),
        ("audio", {"channelCount": {"min": 3, "max": 2}}, "channelCount"),
    ],
)
async def test_impossible_constraints_are_overconstrained(kind: str, constraints: dict[str, Any], name: str) -> None:
    before = source_threads()
    with pytest.raises(OverconstrainedError) as raised:
        await getUserMedia(fake=True, **{kind: constraints})
    assert raised.value.constraint == name
    assert isinstance(raised.value, AsyncrecError)
    assert raised.value.name == "OverconstrainedError"
    assert await wait_threads_ended(source_threads() - before) == set()


async def test_an_unsatisfiable_constraint_on_one_kind_releases_the_other() -> None:
    before = source_threads()
    with pytest.raises(OverconstrainedError) as raised:
        await getUserMedia(fake=True, video={"width": 160, "height": 120}, audio={"channelCount": {"min": 9}})
    assert raised.value.constraint == "channelCount"
    assert await wait_threads_ended(source_threads() - before) == set()


@pytest.mark.parametrize(
    "constraints", [{"video": {"deviceId": "no-such-camera"}}, {"audio": {"deviceId": {"exact": "no-such-mic"}}}]
)
async def test_a_fake_device_id_that_does_not_exist_is_not_found(constraints: dict[str, Any]) -> None:
    with pytest.raises(NotFoundError):
        await getUserMedia(fake=True, **constraints)


@linux_only
@pytest.mark.parametrize(
    "constraints",
    [
        pytest.param({"video": True}, id="camera"),
        pytest.param({"video": {"deviceId": "/dev/video99"}}, id="camera-id"),
        pytest.param({"video": {"deviceId": {"exact": "/dev/video99"}}}, id="camera-exact-id"),
        pytest.param({"audio": {"deviceId": "hw:9,9"}}, id="microphone-id"),
        pytest.param({"video": True, "audio": True}, id="both"),
    ],
)
async def test_missing_real_devices_are_not_found(constraints: dict[str, Any]) -> None:
    present = await enumerateDevices()
    ids = {d.deviceId for d in present}
    kinds = {d.kind for d in present}
    if constraints.get("video") is True and "videoinput" in kinds:
        pytest.skip("this machine has a camera")
    if "/dev/video99" in ids or "hw:9,9" in ids:
        pytest.skip("this machine has the device")
    before = source_threads()
    with pytest.raises(NotFoundError) as raised:
        await getUserMedia(**constraints)
    assert isinstance(raised.value, AsyncrecError)
    assert raised.value.name == "NotFoundError"
    assert await wait_threads_ended(source_threads() - before) == set()


@linux_only
async def test_missing_real_microphone_is_not_found() -> None:
    if any(d.kind == "audioinput" for d in await enumerateDevices()):
        pytest.skip("this machine has a microphone")
    with pytest.raises(NotFoundError):
        await getUserMedia(audio=True)


@linux_only
async def test_a_file_that_is_not_a_camera_is_not_readable() -> None:
    """The v4l2 open itself, on a node that exists but is no camera."""
    before = source_threads()
    with pytest.raises(NotReadableError) as raised:
        await getUserMedia(video={"deviceId": "/dev/null"})
    assert isinstance(raised.value, AsyncrecError)
    assert await wait_threads_ended(source_threads() - before) == set()
