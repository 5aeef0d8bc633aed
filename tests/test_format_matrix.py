"""Every container x codec pair browsers record (issue 4), recorded end to end.

Each case records 1 s of 160x120 video at 30 fps and/or 1 s of a tone, delivered at
``SPEED`` times real time (not live: nothing dropped) with a short timeslice so that the
recording comes in several chunks, and checks the file with Debian's ffprobe/ffmpeg and
with PyAV: codecs, sizes, 30 video frames exactly, about 1 s of audio, no decode error,
``mimeType`` from the "start" event on. MP4 is checked as fragments: ``ftyp`` + ``moov``
first, then whole ``moof`` + ``mdat`` pairs in every chunk.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import pytest
from aiortc.mediastreams import MediaStreamTrack

from asyncrec import FrameTrack, MediaRecorder, MediaStream, NotSupportedError, SampleTrack, moving_pattern, sine_tone
from media_check import EBML_MAGIC, OGG_MAGIC, assert_mime, ffmpeg_decode_errors, ogg_page_ends, pyav_frame_counts
from media_probe import PacedTrack, decode_audio, iso_boxes, probe, record

WIDTH, HEIGHT = 160, 120
FPS = 30
DURATION = 1.0
VIDEO_FRAMES = 30
#: Decoded audio may differ from the input by the encoder's priming and last-frame padding.
AUDIO_TOLERANCE = 0.05
SPEED = 10.0
TIMESLICE_MS = 20

#: What ffprobe calls each codec of the table.
FFPROBE_NAMES = {"vp8": "vp8", "vp9": "vp9", "av1": "av1", "avc1": "h264", "opus": "opus", "aac": "aac"}


@dataclass(frozen=True)
class Case:
    #: The mimeType given to the constructor.
    requested: str
    #: The mimeType from the "start" event on.
    mime: str
    video: str | None  # key of FFPROBE_NAMES, None when the recording has no video
    audio: str | None
    family: str  # "matroska", "mp4" or "ogg"
    #: Kinds of track the stream has (a type may record fewer, e.g. audio/* of a video stream).
    sources: tuple[str, ...] = ("video", "audio")


def case(
    case_id: str,
    requested: str,
    mime: str,
    video: str | None,
    audio: str | None,
    sources: tuple[str, ...] = ("video", "audio"),
) -> object:
    family = "mp4" if "/mp4" in requested else "ogg" if "/ogg" in requested else "matroska"
    return pytest.param(Case(requested, mime, video, audio, family, sources), id=case_id)


CASES = [
    # WebM (H.264 "WebM" is written by the Matroska muxer, as Chromium does).
    case("webm-default", "", "video/webm;codecs=vp8,opus", "vp8", "opus"),
    case("webm-vp8-opus", "video/webm;codecs=vp8,opus", "video/webm;codecs=vp8,opus", "vp8", "opus"),
    case("webm-vp9-opus", "video/webm;codecs=vp9,opus", "video/webm;codecs=vp9,opus", "vp9", "opus"),
    case("webm-av1-opus", "video/webm;codecs=av1,opus", "video/webm;codecs=av1,opus", "av1", "opus"),
    case("webm-h264-opus", "video/webm;codecs=h264,opus", "video/webm;codecs=avc1,opus", "avc1", "opus"),
    case("webm-avc1-opus", "video/webm;codecs=avc1,opus", "video/webm;codecs=avc1,opus", "avc1", "opus"),
    case("webm-vp8-video-only", "video/webm;codecs=vp8", "video/webm;codecs=vp8", "vp8", None, sources=("video",)),
    case("audio-webm-opus", "audio/webm;codecs=opus", "audio/webm;codecs=opus", None, "opus"),
    # Matroska
    case("mkv-vp8-opus", "video/x-matroska;codecs=vp8,opus", "video/x-matroska;codecs=vp8,opus", "vp8", "opus"),
    case("mkv-vp9-aac", "video/x-matroska;codecs=vp9,mp4a.40.2", "video/x-matroska;codecs=vp9,mp4a.40.2", "vp9", "aac"),
    case("mkv-av1-opus", "video/x-matroska;codecs=av1,opus", "video/x-matroska;codecs=av1,opus", "av1", "opus"),
    case(
        "mkv-avc1-aac",
        "video/x-matroska;codecs=avc1,mp4a.40.2",
        "video/x-matroska;codecs=avc1,mp4a.40.2",
        "avc1",
        "aac",
    ),
    case("mkv-avc1-opus", "video/x-matroska;codecs=avc1,opus", "video/x-matroska;codecs=avc1,opus", "avc1", "opus"),
    # MP4 (fragmented)
    case("mp4-default", "video/mp4", "video/mp4;codecs=avc1,mp4a.40.2", "avc1", "aac"),
    case("mp4-avc1-aac", "video/mp4;codecs=avc1,mp4a.40.2", "video/mp4;codecs=avc1,mp4a.40.2", "avc1", "aac"),
    case(
        "mp4-avc1-aac-rfc6381",
        'video/mp4;codecs="avc1.42E01E, mp4a.40.2"',
        "video/mp4;codecs=avc1,mp4a.40.2",
        "avc1",
        "aac",
    ),
    case("mp4-avc1-opus", "video/mp4;codecs=avc1,opus", "video/mp4;codecs=avc1,opus", "avc1", "opus"),
    case("mp4-vp09-opus", "video/mp4;codecs=vp09,opus", "video/mp4;codecs=vp09,opus", "vp9", "opus"),
    case(
        "mp4-vp09-rfc6381-aac",
        "video/mp4;codecs=vp09.00.10.08,mp4a.40.2",
        "video/mp4;codecs=vp09,mp4a.40.2",
        "vp9",
        "aac",
    ),
    case("mp4-av01-aac", "video/mp4;codecs=av01,mp4a.40.2", "video/mp4;codecs=av01,mp4a.40.2", "av1", "aac"),
    case("mp4-av01-opus", "video/mp4;codecs=av01.0.04M.08,opus", "video/mp4;codecs=av01,opus", "av1", "opus"),
    case("mp4-avc1-video-only", "video/mp4;codecs=avc1", "video/mp4;codecs=avc1", "avc1", None, sources=("video",)),
    case("audio-mp4-aac", "audio/mp4;codecs=mp4a.40.2", "audio/mp4;codecs=mp4a.40.2", None, "aac"),
    case("audio-mp4-default", "audio/mp4", "audio/mp4;codecs=mp4a.40.2", None, "aac", sources=("audio",)),
    case("audio-mp4-opus", "audio/mp4;codecs=opus", "audio/mp4;codecs=opus", None, "opus"),
    # Ogg
    case("ogg-opus", "audio/ogg;codecs=opus", "audio/ogg;codecs=opus", None, "opus"),
]


def make_tracks(c: Case) -> list[MediaStreamTrack]:
    tracks: list[MediaStreamTrack] = []
    if "video" in c.sources:
        tracks.append(FrameTrack(moving_pattern(WIDTH, HEIGHT), fps=FPS, realtime=False, duration=DURATION))
    if "audio" in c.sources:
        tracks.append(SampleTrack(sine_tone(440), realtime=False, duration=DURATION))
    return [PacedTrack(t, SPEED) for t in tracks]


def check_mp4_chunks(chunks: list[bytes]) -> None:
    """ftyp + moov first; then every chunk whole boxes, moof + mdat pairs (an mfra index may end the file)."""
    non_empty = [c for c in chunks if c]
    assert len(non_empty) > 2, f"timeslice={TIMESLICE_MS} ms gave {len(non_empty)} non-empty chunk(s)"
    for i, chunk in enumerate(non_empty):
        kinds = [kind for kind, _size in iso_boxes(chunk)]  # whole boxes, or it fails saying where
        if i == 0:
            assert kinds[:2] == ["ftyp", "moov"], f"first chunk starts with {kinds[:4]}"
            kinds = kinds[2:]
        if i == len(non_empty) - 1 and kinds and kinds[-1] == "mfra":
            kinds = kinds[:-1]
        assert kinds == ["moof", "mdat"] * (len(kinds) // 2), f"chunk {i} is not moof+mdat pairs: {kinds[:8]}..."
        if i > 0:
            assert kinds, f"chunk {i} holds no fragment"
    assert sum(1 for kind, _ in iso_boxes(b"".join(non_empty)) if kind == "moov") == 1


def check_other_chunks(c: Case, chunks: list[bytes]) -> None:
    non_empty = [chunk for chunk in chunks if chunk]
    assert len(non_empty) > 1, f"timeslice={TIMESLICE_MS} ms gave {len(non_empty)} non-empty chunk(s)"
    if c.family == "ogg":
        assert non_empty[0].startswith(OGG_MAGIC)
        for chunk in non_empty:
            ogg_page_ends(chunk)
    else:
        assert non_empty[0].startswith(EBML_MAGIC)


def check_file(c: Case, path: Path) -> None:
    assert ffmpeg_decode_errors(path) == ""

    probed = probe(path)
    expected = [kind for kind, codec in (("video", c.video), ("audio", c.audio)) if codec]
    assert sorted(s["codec_type"] for s in probed.streams) == sorted(expected)
    if c.video:
        video = probed.stream("video")
        assert video["codec_name"] == FFPROBE_NAMES[c.video]
        assert (video["width"], video["height"]) == (WIDTH, HEIGHT)
        assert video["nb_read_frames"] == VIDEO_FRAMES, "video frames decoded by ffmpeg"
        assert len(probed.packets_of("video")) == VIDEO_FRAMES
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            assert (stream.codec_context.width, stream.codec_context.height) == (WIDTH, HEIGHT)
            assert sum(1 for _ in container.decode(stream)) == VIDEO_FRAMES, "video frames decoded by PyAV"
    if c.audio:
        audio = probed.stream("audio")
        assert audio["codec_name"] == FFPROBE_NAMES[c.audio]
        assert audio["sample_rate"] == 48000
        assert audio["channels"] == 1
        assert probed.audio_duration() == pytest.approx(DURATION, abs=AUDIO_TOLERANCE), "audio decoded by ffmpeg"
        decoded = decode_audio(path)
        assert decoded.duration == pytest.approx(DURATION, abs=AUDIO_TOLERANCE), "audio decoded by PyAV"
        assert decoded.discontinuities == []
        assert float(abs(decoded.samples).max()) > 0.2, "the tone is missing"
        # A decoder may discard a whole priming packet (FFmpeg 8 does in Matroska, 5 does not):
        # one frame less is the same audio.
        packets = len(probed.packets_of("audio"))
        assert packets - 1 <= audio["nb_read_frames"] <= packets
        assert packets - 1 <= pyav_frame_counts(path)["audio"] <= packets


@pytest.mark.parametrize("c", CASES)
async def test_record_format(c: Case, tmp_path: Path) -> None:
    assert MediaRecorder.isTypeSupported(c.requested)
    recording = await record(make_tracks(c), timeslice=TIMESLICE_MS, mimeType=c.requested)

    assert recording.errors == []
    assert_mime(recording.mime_at_start, c.mime)
    assert_mime(recording.mime_after, c.mime)
    if c.family == "mp4":
        check_mp4_chunks(recording.chunks)
    else:
        check_other_chunks(c, recording.chunks)
    path = recording.save(tmp_path / "recording.bin")
    check_file(c, path)
    if c.family == "mp4":
        # A prefix of whole fragments is a playable file too.
        first_media = next(i for i, chunk in enumerate(recording.chunks) if chunk and b"moof" in chunk) + 1
        prefix = tmp_path / "prefix.bin"
        prefix.write_bytes(b"".join(recording.chunks[:first_media]))
        assert ffmpeg_decode_errors(prefix) == ""
        assert sum(pyav_frame_counts(prefix).values()) > 0


SUPPORTED = [
    pytest.param("video/mp4", id="mp4"),
    pytest.param("video/mp4;codecs=avc1", id="mp4-avc1"),
    pytest.param("video/mp4;codecs=avc1.42E01E", id="mp4-avc1.42E01E"),
    pytest.param("video/mp4;codecs=avc3.64003E", id="mp4-avc3.64003E"),
    pytest.param('video/mp4;codecs="avc1.42E01E, mp4a.40.2"', id="mp4-avc1.42E01E-mp4a.40.2"),
    pytest.param("video/mp4;codecs=avc1.64001F,opus", id="mp4-avc1.64001F-opus"),
    pytest.param("video/mp4;codecs=vp09.00.10.08", id="mp4-vp09.00.10.08"),
    pytest.param("video/mp4;codecs=vp09.00.10.08,opus", id="mp4-vp09-opus"),
    pytest.param("video/mp4;codecs=av01.0.04M.08", id="mp4-av01.0.04M.08"),
    pytest.param("video/mp4;codecs=av01.0.04M.08,mp4a.40.2", id="mp4-av01-mp4a"),
    pytest.param("audio/mp4", id="audio-mp4"),
    pytest.param("audio/mp4;codecs=mp4a.40.2", id="audio-mp4-mp4a.40.2"),
    pytest.param("audio/mp4;codecs=opus", id="audio-mp4-opus"),
    pytest.param("video/webm;codecs=av1", id="webm-av1"),
    pytest.param("video/webm;codecs=av01.0.04M.08", id="webm-av01.0.04M.08"),
    pytest.param("video/webm;codecs=h264", id="webm-h264"),
    pytest.param("video/webm;codecs=avc1.42E01E,opus", id="webm-avc1.42E01E-opus"),
    pytest.param("video/webm;codecs=vp09.00.10.08", id="webm-vp09.00.10.08"),
    pytest.param("video/x-matroska;codecs=avc1,mp4a.40.2", id="mkv-avc1-mp4a.40.2"),
    pytest.param("video/x-matroska;codecs=av1,opus", id="mkv-av1-opus"),
    pytest.param("audio/webm;codecs=opus", id="audio-webm-opus"),
    pytest.param("audio/ogg;codecs=opus", id="ogg-opus"),
]

UNSUPPORTED = [
    pytest.param("audio/mp4;codecs=mp4a.40.5", id="mp4a.40.5-he-aac"),
    pytest.param("audio/mp4;codecs=mp4a.40.29", id="mp4a.40.29-he-aac-v2"),
    pytest.param("video/mp4;codecs=hvc1.1.6.L93.B0", id="mp4-hvc1"),
    pytest.param("video/mp4;codecs=hev1.1.6.L93.B0", id="mp4-hev1"),
    pytest.param("video/mp4;codecs=vp8", id="mp4-vp8"),
    pytest.param("video/mp4;codecs=avc1,vp09", id="mp4-two-video-codecs"),
    pytest.param("audio/mp4;codecs=avc1", id="audio-mp4-video-codec"),
    pytest.param("audio/webm;codecs=mp4a.40.2", id="audio-webm-aac"),
    pytest.param("video/webm;codecs=vp8,mp4a.40.2", id="webm-vp8-aac"),
    pytest.param("audio/ogg;codecs=mp4a.40.2", id="ogg-aac"),
    pytest.param("video/mp4;codecs=mp4a.40.2,opus", id="mp4-two-audio-codecs"),
]


@pytest.mark.parametrize("mime", SUPPORTED)
def test_is_type_supported(mime: str) -> None:
    assert MediaRecorder.isTypeSupported(mime) is True


@pytest.mark.parametrize("mime", UNSUPPORTED)
def test_is_type_not_supported(mime: str) -> None:
    assert MediaRecorder.isTypeSupported(mime) is False
    with pytest.raises(NotSupportedError):
        MediaRecorder(MediaStream([SampleTrack(sine_tone(440), realtime=False, duration=0.1)]), mimeType=mime)
