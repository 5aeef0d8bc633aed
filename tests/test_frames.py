"""Any frame a source can send (issue 4): every pixel format, odd and huge sizes, a size
changing mid-stream, every audio sample rate, layout and sample format in frames of odd
sizes, and the rate changing mid-stream.

Sources are not real time (frames as fast as the recorder takes them); files are checked
with Debian's ffprobe/ffmpeg (frame counts, sizes, decoded audio duration, decode errors)
and with PyAV (frame counts, picture content, samples).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from media_check import ffmpeg_decode_errors, pyav_frame_counts
from media_probe import (
    ScriptedTrack,
    audio_frame,
    decode_audio,
    decode_video,
    probe,
    record,
    solid_frame,
    solid_yuv420p,
    yuv_means,
)

FPS = 30
VIDEO_TIME_BASE = Fraction(1, 90000)
#: A colour whose Y, U and V all differ from grey and change if red and blue are swapped.
COLOUR = (200, 60, 30)
#: Decoded means may differ from the source's by this much (8-bit levels; flat pictures).
LEVEL_TOLERANCE = 5
#: Y of black in limited range.
BLACK = 16


def video_track(frames: list[av.VideoFrame]) -> ScriptedTrack:
    """A non-live track sending ``frames`` at 30 fps timestamps."""

    def make(index: int) -> av.VideoFrame:
        frame = frames[index]
        frame.pts = index * 3000
        frame.time_base = VIDEO_TIME_BASE
        return frame

    return ScriptedTrack("video", make, len(frames))


def expected_yuv(fmt: str, rgb: tuple[int, int, int] = COLOUR) -> tuple[float, float, float]:
    """What a picture of ``rgb`` is in yuv420p: grey formats keep only the luma."""
    y, u, v = yuv_means(solid_frame(16, 16, rgb, "rgb24"))
    if fmt.startswith("gray"):
        return y, 128.0, 128.0
    return y, u, v


def decoded_yuv_means(path: Path) -> list[tuple[float, float, float]]:
    with av.open(str(path)) as container:
        return [yuv_means(frame) for frame in container.decode(video=0)]


# -- pixel formats ---------------------------------------------------------------------------------

PIXEL_FORMATS = [
    "yuv420p",
    "nv12",
    "rgb24",
    "bgr24",
    "rgba",
    "bgra",
    "gray",
    "yuv444p",
    "yuv422p",
    "yuvj420p",
    "yuv420p10le",
    "p010le",
    "gray16le",
    "gbrp",
    "yuva420p",
    "uyvy422",
    "rgb48le",
]


@pytest.mark.parametrize("fmt", PIXEL_FORMATS)
async def test_every_pixel_format(fmt: str, tmp_path: Path) -> None:
    frames = [solid_frame(160, 120, COLOUR, fmt) for _ in range(10)]
    assert frames[0].format.name == fmt
    recording = await record([video_track(frames)], mimeType="video/webm;codecs=vp8")
    assert recording.errors == []
    path = recording.save(tmp_path / f"{fmt}.webm")

    assert ffmpeg_decode_errors(path) == ""
    video = probe(path).stream("video")
    assert (video["width"], video["height"], video["nb_read_frames"]) == (160, 120, 10)
    assert pyav_frame_counts(path) == {"video": 10}
    expected = expected_yuv(fmt)
    for i, means in enumerate(decoded_yuv_means(path)):
        assert means == pytest.approx(expected, abs=LEVEL_TOLERANCE), f"frame {i}: YUV {means}, expected {expected}"


async def test_mid_grey_in_every_pixel_format_decodes_to_the_same_luma(tmp_path: Path) -> None:
    """One recording whose frames cycle through every pixel format: the track's format may
    change from frame to frame, and every frame decodes to the same grey."""
    frames = [solid_frame(96, 64, (128, 128, 128), fmt) for fmt in PIXEL_FORMATS]
    recording = await record([video_track(frames)], mimeType="video/webm;codecs=vp8")
    path = recording.save(tmp_path / "mixed.webm")
    assert ffmpeg_decode_errors(path) == ""
    assert probe(path).stream("video")["nb_read_frames"] == len(frames)
    expected_y = expected_yuv("gray", (128, 128, 128))[0]
    for fmt, (y, u, v) in zip(PIXEL_FORMATS, decoded_yuv_means(path), strict=True):
        assert y == pytest.approx(expected_y, abs=LEVEL_TOLERANCE), f"{fmt}: Y {y}"
        assert (u, v) == pytest.approx((128, 128), abs=LEVEL_TOLERANCE), f"{fmt}: U, V {u}, {v}"


# -- sizes --------------------------------------------------------------------------------------------

#: Smallest picture each encoder takes (asyncrec letterboxes smaller ones into it).
MIN_SIZE = {"vp8": 2, "h264": 2, "av1": 64, "vp9": 2}
MIMES = {
    "vp8": "video/webm;codecs=vp8",
    "vp9": "video/webm;codecs=vp9",
    "h264": "video/mp4;codecs=avc1",
    "av1": "video/webm;codecs=av1",
}

ODD_SIZES = [
    pytest.param("vp8", (1, 1), id="vp8-1x1"),
    pytest.param("vp8", (33, 17), id="vp8-33x17"),
    pytest.param("vp8", (641, 479), id="vp8-641x479"),
    pytest.param("vp8", (17, 33), id="vp8-17x33"),
    pytest.param("vp8", (641, 1), id="vp8-641x1"),
    pytest.param("vp8", (1, 479), id="vp8-1x479"),
    pytest.param("h264", (1, 1), id="h264-1x1"),
    pytest.param("h264", (33, 17), id="h264-33x17"),
    pytest.param("h264", (641, 479), id="h264-641x479"),
    pytest.param("vp9", (33, 17), id="vp9-33x17"),
    pytest.param("av1", (1, 1), id="av1-1x1"),
    pytest.param("av1", (33, 17), id="av1-33x17"),
    pytest.param("av1", (641, 479), id="av1-641x479"),
    pytest.param("av1", (641, 1), id="av1-641x1"),
]


@pytest.mark.parametrize(("codec", "size"), ODD_SIZES)
async def test_odd_sizes(codec: str, size: tuple[int, int], tmp_path: Path) -> None:
    width, height = size
    frames = [solid_yuv420p(width, height, COLOUR) for _ in range(10)]
    recording = await record([video_track(frames)], mimeType=MIMES[codec])
    assert recording.errors == []
    path = recording.save(tmp_path / "odd.bin")

    assert ffmpeg_decode_errors(path) == ""
    video = probe(path).stream("video")
    out_w, out_h = video["width"], video["height"]
    assert (out_w % 2, out_h % 2) == (0, 0), f"recorded {out_w}x{out_h}"
    # At least the source (and the encoder's minimum), and no more than the next even size.
    assert max(width, MIN_SIZE[codec]) <= out_w <= max(width + 1, MIN_SIZE[codec])
    assert max(height, MIN_SIZE[codec]) <= out_h <= max(height + 1, MIN_SIZE[codec])
    assert video["nb_read_frames"] == 10
    decoded = decode_video(path)
    assert len(decoded.times) == 10
    assert (decoded.width, decoded.height) == (out_w, out_h)
    # The picture, scaled into the recording's, covers its centre (unless it is a thin line there).
    scale = min(out_w / width, out_h / height)
    if min(width * scale, height * scale) >= 8:
        expected_y = expected_yuv("yuv420p")[0]
        for luma in decoded.lumas:
            centre = luma[out_h // 2 - 1 : out_h // 2 + 1, out_w // 2 - 1 : out_w // 2 + 1]
            assert float(centre.mean()) == pytest.approx(expected_y, abs=2 * LEVEL_TOLERANCE)


@pytest.mark.parametrize("codec", ["vp8", "h264", "vp9", "av1"])
async def test_4k_frames(codec: str, tmp_path: Path) -> None:
    frames = [solid_yuv420p(3840, 2160, COLOUR) for _ in range(4)]
    recording = await record([video_track(frames)], mimeType=MIMES[codec])
    assert recording.errors == []
    path = recording.save(tmp_path / "4k.bin")
    assert ffmpeg_decode_errors(path) == ""
    video = probe(path).stream("video")
    assert (video["width"], video["height"], video["nb_read_frames"]) == (3840, 2160, 4)
    decoded = decode_video(path)
    assert len(decoded.lumas) == 4
    assert float(decoded.lumas[-1].mean()) == pytest.approx(expected_yuv("yuv420p")[0], abs=LEVEL_TOLERANCE)


#: (width, height, frames) of each section; the first size is the recording's.
SECTIONS = [(320, 240, 10), (640, 480, 10), (200, 400, 10), (320, 240, 10)]
BRIGHT = (180, 180, 180)


@pytest.mark.parametrize("codec", ["vp8", "h264"])
async def test_size_changing_mid_stream(codec: str, tmp_path: Path) -> None:
    frames = [solid_yuv420p(w, h, BRIGHT) for w, h, count in SECTIONS for _ in range(count)]
    total = len(frames)
    recording = await record([video_track(frames)], mimeType=MIMES[codec])
    assert recording.errors == []
    path = recording.save(tmp_path / "sizes.bin")

    assert ffmpeg_decode_errors(path) == ""
    video = probe(path).stream("video")
    assert (video["width"], video["height"]) == (320, 240), "the recording keeps the first size"
    assert video["nb_read_frames"] == total
    decoded = decode_video(path)
    assert len(decoded.lumas) == total
    assert decoded.times == sorted(decoded.times)
    bright = expected_yuv("yuv420p", BRIGHT)[0]

    def describe(luma: np.ndarray) -> tuple[float, float, float]:
        return float(luma[:, :90].mean()), float(luma[:, 115:205].mean()), float(luma[:, 230:].mean())

    # 640x480 has the recording's aspect ratio: scaled down, no bars.
    for index in (10, 19):
        left, centre, right = describe(decoded.lumas[index])
        assert min(left, centre, right) == pytest.approx(bright, abs=LEVEL_TOLERANCE), f"frame {index}"
    # 200x400 fits as 120x240 in the middle of 320x240: black bars of 100 columns each side.
    for index in (20, 25, 29):
        left, centre, right = describe(decoded.lumas[index])
        assert left == pytest.approx(BLACK, abs=LEVEL_TOLERANCE), f"frame {index}: left bar Y {left}"
        assert right == pytest.approx(BLACK, abs=LEVEL_TOLERANCE), f"frame {index}: right bar Y {right}"
        assert centre == pytest.approx(bright, abs=LEVEL_TOLERANCE), f"frame {index}: centre Y {centre}"
        # Bars top to bottom, picture full height.
        assert float(decoded.lumas[index][:, 110:210].min()) > bright - 3 * LEVEL_TOLERANCE
    # Back to the first size: the whole picture again.
    for index in (30, total - 1):
        assert float(decoded.lumas[index].min()) > bright - 3 * LEVEL_TOLERANCE, f"frame {index}"


@pytest.mark.parametrize(
    "odd",
    [
        pytest.param((641, 1), id="641x1"),
        pytest.param((1, 479), id="1x479"),
        pytest.param((1, 1), id="1x1"),
        pytest.param((3, 3), id="3x3"),
        pytest.param((2000, 10), id="2000x10"),
    ],
)
async def test_extreme_size_mid_stream(odd: tuple[int, int], tmp_path: Path) -> None:
    """A frame of any size mid-stream is fitted into the recording's picture, however thin
    it becomes once scaled: the recording goes on, every frame in it."""
    sizes = [(320, 240), odd, (320, 240)]
    frames = [solid_yuv420p(w, h, BRIGHT) for w, h in sizes for _ in range(5)]
    recording = await record([video_track(frames)], mimeType="video/webm;codecs=vp8")
    assert recording.errors == []
    path = recording.save(tmp_path / "extreme.webm")
    assert ffmpeg_decode_errors(path) == ""
    video = probe(path).stream("video")
    assert (video["width"], video["height"], video["nb_read_frames"]) == (320, 240, len(frames))
    decoded = decode_video(path)
    assert len(decoded.lumas) == len(frames)
    bright = expected_yuv("yuv420p", BRIGHT)[0]
    assert float(decoded.lumas[-1].mean()) == pytest.approx(bright, abs=LEVEL_TOLERANCE)


# -- audio ------------------------------------------------------------------------------------------

#: Output duration must equal the input's within this (no drift, priming and padding trimmed).
AUDIO_TOLERANCE = 0.030
AUDIO_MIMES = {"opus": "audio/webm;codecs=opus", "aac": "video/x-matroska;codecs=mp4a.40.2"}


@dataclass(frozen=True)
class Section:
    rate: int
    layout: str
    fmt: str
    frame_size: int
    seconds: float

    @property
    def frames(self) -> int:
        return max(1, round(self.seconds * self.rate / self.frame_size))

    @property
    def samples(self) -> int:
        return self.frames * self.frame_size


def tone(first: int, count: int, rate: int, channels: int) -> np.ndarray:
    t = np.arange(first, first + count) / rate
    wave = 0.3 * np.sin(2 * np.pi * 440 * t)
    return np.tile(wave, (channels, 1))


def audio_track(sections: list[Section]) -> tuple[ScriptedTrack, float]:
    """A non-live track sending each section's frames, timestamps continuing across sections;
    and the input's duration in seconds."""
    plan: list[tuple[Section, int, float]] = []  # (section, first sample in it, start time)
    start = 0.0
    for section in sections:
        for k in range(section.frames):
            plan.append((section, k * section.frame_size, start))
        start += section.samples / section.rate

    def make(index: int) -> av.AudioFrame:
        section, first, section_start = plan[index]
        channels = av.AudioLayout(section.layout).nb_channels
        samples = tone(first, section.frame_size, section.rate, channels)
        pts = round(section_start * section.rate) + first
        return audio_frame(samples, section.fmt, section.layout, section.rate, pts)

    return ScriptedTrack("audio", make, len(plan)), start


def audio_case(codec: str, name: str, *sections: Section) -> object:
    return pytest.param(codec, list(sections), id=f"{codec}-{name}")


def audio_cases(codec: str) -> list[object]:
    cases = [
        audio_case(codec, f"rate-{rate}", Section(rate, "stereo", "s16", 441, 1.0))
        for rate in (8000, 11025, 16000, 22050, 32000, 44100, 48000, 96000)
    ]
    cases += [
        audio_case(codec, f"layout-{layout}", Section(44100, layout, "fltp", 1000, 1.0))
        for layout in ("mono", "stereo", "5.1")
    ]
    cases += [
        audio_case(codec, f"format-{fmt}", Section(48000, "mono", fmt, 1000, 1.0))
        for fmt in ("s16", "s16p", "flt", "fltp", "s32", "s32p", "dbl")
    ]
    cases += [
        audio_case(codec, f"frames-{size}", Section(48000, "stereo", "s16", size, 1.0)) for size in (127, 4096, 1000)
    ]
    cases.append(
        audio_case(
            codec,
            "rate-change",
            Section(44100, "stereo", "s16", 441, 0.4),
            Section(16000, "stereo", "s16", 1000, 0.3),
            Section(48000, "mono", "fltp", 960, 0.3),
            Section(22050, "5.1", "s32", 1000, 0.3),
        )
    )
    return cases


@pytest.mark.parametrize(("codec", "sections"), audio_cases("opus") + audio_cases("aac"))
async def test_any_audio_frame(codec: str, sections: list[Section], tmp_path: Path) -> None:
    track, seconds = audio_track(sections)
    recording = await record([track], mimeType=AUDIO_MIMES[codec])
    assert recording.errors == []
    path = recording.save(tmp_path / "audio.bin")

    assert ffmpeg_decode_errors(path) == ""
    probed = probe(path)
    stream = probed.stream("audio")
    assert stream["codec_name"] == codec
    assert stream["sample_rate"] == 48000
    assert stream["channels"] == (1 if sections[0].layout == "mono" else 2)
    # The packets' span (ffmpeg 5 ignores Matroska's CodecDelay for AAC when decoding; FFmpeg 8 does not).
    assert probed.span("audio") == pytest.approx(seconds, abs=AUDIO_TOLERANCE), "packet span read by ffprobe"

    decoded = decode_audio(path)
    assert decoded.discontinuities == []
    assert decoded.duration == pytest.approx(seconds, abs=AUDIO_TOLERANCE), "decoded by PyAV"
    # The tone all along: no dropout, no silence inserted, no level lost.
    window = decoded.rate // 50
    channel = decoded.samples[0]
    usable = channel[window : (len(channel) // window - 1) * window]
    rms = np.sqrt((usable.reshape(-1, window) ** 2).mean(axis=1))
    expected_rms = 0.3 / np.sqrt(2)
    assert rms.min() > 0.6 * expected_rms, f"tone level dropped to {rms.min():.3f} somewhere"
    if all(section.layout != "5.1" for section in sections):
        # (A 5.1 downmix may add the channels up: only mono and stereo keep the level exactly.)
        assert rms.max() < 1.4 * expected_rms
