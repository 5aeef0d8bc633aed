"""MediaRecorder.isTypeSupported and the constructor's options, with Chromium's MIME strings."""

from __future__ import annotations

import pytest

import asyncrec
from asyncrec import FrameTrack, MediaRecorder, MediaStream, NotSupportedError, SampleTrack, moving_pattern, sine_tone

SUPPORTED = [
    pytest.param("", id="empty"),
    pytest.param("video/webm", id="webm"),
    pytest.param("video/webm;codecs=vp8", id="webm-vp8"),
    pytest.param("video/webm;codecs=vp9", id="webm-vp9"),
    pytest.param("video/webm;codecs=vp8,opus", id="webm-vp8-opus"),
    pytest.param('video/webm;codecs="vp9, opus"', id="webm-vp9-opus-quoted"),
    pytest.param('video/webm; codecs="vp8, opus"', id="webm-vp8-opus-spaces-quoted"),
    pytest.param("video/webm;codecs=vp09.00.10.08", id="webm-vp09-rfc6381"),
    pytest.param("audio/webm", id="audio-webm"),
    pytest.param("audio/webm;codecs=opus", id="audio-webm-opus"),
    pytest.param("video/x-matroska;codecs=vp8,opus", id="matroska-vp8-opus"),
    pytest.param("audio/ogg", id="ogg"),
    pytest.param("audio/ogg;codecs=opus", id="ogg-opus"),
]

UNSUPPORTED = [
    pytest.param("video/invalid", id="video-invalid"),
    pytest.param("audio/banana", id="audio-banana"),
    pytest.param("video/pineapple", id="video-pineapple"),
    pytest.param("not a mime", id="not-a-mime"),
    pytest.param("video/webm;codecs=foo", id="webm-unknown-codec"),
    pytest.param("video/webm;codecs=vp8,vp9", id="webm-two-video-codecs"),
    pytest.param("audio/webm;codecs=vp8", id="audio-webm-video-codec"),
    pytest.param("audio/webm;codecs=vorbis", id="audio-webm-vorbis"),
    pytest.param("audio/ogg;codecs=vorbis", id="ogg-vorbis"),
    pytest.param("audio/webm;codecs=opus,opus", id="audio-webm-two-opus"),
]


def make_stream() -> MediaStream:
    # Never started: the tracks only have to exist.
    return MediaStream(
        [
            FrameTrack(moving_pattern(64, 48), realtime=False, duration=0.1),
            SampleTrack(sine_tone(440), realtime=False, duration=0.1),
        ]
    )


@pytest.mark.parametrize("mime", SUPPORTED)
def test_is_type_supported(mime: str) -> None:
    assert MediaRecorder.isTypeSupported(mime) is True


@pytest.mark.parametrize("mime", UNSUPPORTED)
def test_is_type_not_supported(mime: str) -> None:
    assert MediaRecorder.isTypeSupported(mime) is False


@pytest.mark.parametrize("mime", SUPPORTED)
def test_constructor_keeps_supported_mime_type(mime: str) -> None:
    recorder = MediaRecorder(make_stream(), mimeType=mime)
    assert recorder.mimeType == mime
    assert recorder.state == "inactive"


@pytest.mark.parametrize("mime", UNSUPPORTED)
def test_constructor_rejects_unsupported_mime_type(mime: str) -> None:
    with pytest.raises(NotSupportedError):
        MediaRecorder(make_stream(), mimeType=mime)


def test_not_supported_error_is_an_asyncrec_error() -> None:
    with pytest.raises(asyncrec.AsyncrecError):
        MediaRecorder(make_stream(), mimeType="video/pineapple")


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"audioBitrateMode": "bogus"}, id="bitrate-mode-bogus"),
        pytest.param({"mimeType": 3}, id="mime-type-int"),
        pytest.param({"mimeType": None}, id="mime-type-none"),
        pytest.param({"videoBitsPerSecond": "2500000"}, id="video-bps-str"),
        pytest.param({"audioBitsPerSecond": 128_000.0}, id="audio-bps-float"),
        pytest.param({"bitsPerSecond": True}, id="bps-bool"),
    ],
)
def test_constructor_rejects_option_types(options: dict[str, object]) -> None:
    with pytest.raises(TypeError):
        MediaRecorder(make_stream(), **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"videoBitsPerSecond": -1}, id="video-bps-negative"),
        pytest.param({"audioBitsPerSecond": -128_000}, id="audio-bps-negative"),
        pytest.param({"bitsPerSecond": -1}, id="bps-negative"),
    ],
)
def test_constructor_rejects_negative_bitrates(options: dict[str, int]) -> None:
    with pytest.raises(ValueError, match=r"(?i)bitspersecond"):
        MediaRecorder(make_stream(), **options)  # type: ignore[arg-type]


def test_stream_must_be_a_media_stream() -> None:
    with pytest.raises(TypeError):
        MediaRecorder([], mimeType="video/webm")  # type: ignore[arg-type]


def test_is_type_supported_with_a_non_string_is_false() -> None:
    assert MediaRecorder.isTypeSupported(3) is False  # type: ignore[arg-type]


def test_attribute_defaults() -> None:
    recorder = MediaRecorder(make_stream())
    assert recorder.mimeType == ""
    assert recorder.state == "inactive"
    assert recorder.videoBitsPerSecond == 2_500_000
    assert recorder.audioBitsPerSecond == 128_000
    assert recorder.audioBitrateMode == "variable"


def test_explicit_bitrates_and_mode_are_kept() -> None:
    recorder = MediaRecorder(
        make_stream(), videoBitsPerSecond=1_000_000, audioBitsPerSecond=64_000, audioBitrateMode="constant"
    )
    assert recorder.videoBitsPerSecond == 1_000_000
    assert recorder.audioBitsPerSecond == 64_000
    assert recorder.audioBitrateMode == "constant"


@pytest.mark.parametrize(
    "total",
    [
        pytest.param(100_000, id="100k"),
        pytest.param(1_000_000, id="1M"),
        pytest.param(2_628_000, id="2.628M"),
        pytest.param(8_000_000, id="8M"),
    ],
)
def test_bits_per_second_is_split_between_video_and_audio(total: int) -> None:
    recorder = MediaRecorder(make_stream(), bitsPerSecond=total)
    video, audio = recorder.videoBitsPerSecond, recorder.audioBitsPerSecond
    assert video > 0
    assert audio > 0
    assert video > audio
    assert abs((video + audio) - total) <= total * 0.01


def test_bits_per_second_overrides_the_per_kind_bitrates() -> None:
    recorder = MediaRecorder(make_stream(), bitsPerSecond=1_000_000, videoBitsPerSecond=5, audioBitsPerSecond=5)
    assert abs(recorder.videoBitsPerSecond + recorder.audioBitsPerSecond - 1_000_000) <= 10_000
    assert recorder.videoBitsPerSecond > 5
    assert recorder.audioBitsPerSecond > 5
