"""The format matrix recorded end to end, each file checked by Debian's ffprobe/ffmpeg and by PyAV.

The sources are not real-time (frames as fast as the recorder takes them), paced at
``SPEED`` times real time: ``timeslice`` is wall-clock time (as in the spec), and an
unpaced 1.5 s recording can finish in well under 100 ms, too short for a timeslice to cut it
into several chunks reliably.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiortc.mediastreams import MediaStreamTrack

from asyncrec import FrameTrack, MediaRecorder, MediaStream, SampleTrack, moving_pattern, sine_tone
from media_check import (
    CLUSTER_ID,
    EBML_MAGIC,
    OGG_MAGIC,
    assert_mime,
    ffmpeg_decode_errors,
    ffprobe_duration,
    ffprobe_streams,
    ogg_page_ends,
    pyav_frame_counts,
)
from media_probe import PacedTrack

DURATION = 1.5
FPS = 30
WIDTH, HEIGHT = 320, 240
#: Media seconds per wall second the sources deliver.
SPEED = 10.0
#: Chunk rhythm (ms of wall time): about 7 chunks for 1.5 s of media at SPEED.
TIMESLICE_MS = 20
VIDEO_FRAMES = round(DURATION * FPS)  # 45
#: 1.5 s of 20 ms Opus frames; the encoder's 6.5 ms of priming samples add one packet.
OPUS_FRAMES = round(DURATION / 0.020)  # 75
OPUS_TOLERANCE = 2
DURATION_TOLERANCE = 0.1
RECORD_TIMEOUT = 30


@dataclass(frozen=True)
class Case:
    #: The mimeType given to the constructor.
    requested: str
    #: The mimeType from the "start" event on: container and codecs actually used.
    mime: str
    video: str | None
    audio: str | None
    family: str  # "matroska" or "ogg"
    suffix: str

    @property
    def magic(self) -> bytes:
        return OGG_MAGIC if self.family == "ogg" else EBML_MAGIC


CASES = [
    pytest.param(
        Case("video/webm", "video/webm;codecs=vp8,opus", "vp8", "opus", "matroska", "webm"), id="webm-vp8-opus"
    ),
    pytest.param(
        Case('video/webm;codecs="vp9, opus"', "video/webm;codecs=vp9,opus", "vp9", "opus", "matroska", "webm"),
        id="webm-vp9-opus",
    ),
    pytest.param(
        Case("video/webm;codecs=vp8", "video/webm;codecs=vp8", "vp8", None, "matroska", "webm"),
        id="webm-vp8-video-only",
    ),
    pytest.param(Case("audio/webm", "audio/webm;codecs=opus", None, "opus", "matroska", "weba"), id="audio-webm-opus"),
    pytest.param(
        Case("video/x-matroska;codecs=vp8,opus", "video/x-matroska;codecs=vp8,opus", "vp8", "opus", "matroska", "mkv"),
        id="matroska-vp8-opus",
    ),
    pytest.param(
        Case(
            "video/x-matroska;codecs=vp09.00.10.08",
            "video/x-matroska;codecs=vp9,opus",
            "vp9",
            "opus",
            "matroska",
            "mkv",
        ),
        id="matroska-vp9-opus",
    ),
    pytest.param(Case("audio/ogg", "audio/ogg;codecs=opus", None, "opus", "ogg", "ogg"), id="ogg-opus"),
]


def make_stream(case: Case) -> MediaStream:
    tracks: list[MediaStreamTrack] = []
    if case.video:
        tracks.append(FrameTrack(moving_pattern(WIDTH, HEIGHT), fps=FPS, realtime=False, duration=DURATION))
    if case.audio:
        tracks.append(SampleTrack(sine_tone(440), realtime=False, duration=DURATION))
    return MediaStream([PacedTrack(t, SPEED) for t in tracks])


def write(path: Path, chunks: list[bytes]) -> Path:
    path.write_bytes(b"".join(chunks))
    return path


def check_file(case: Case, path: Path) -> None:
    """Codecs, sizes, frame counts and duration of a whole recording, by ffprobe/ffmpeg and PyAV."""
    assert ffmpeg_decode_errors(path) == ""

    streams = ffprobe_streams(path)
    expected_types = [kind for kind, codec in (("video", case.video), ("audio", case.audio)) if codec]
    assert sorted(s["codec_type"] for s in streams) == sorted(expected_types)
    by_type = {s["codec_type"]: s for s in streams}
    if case.video:
        video = by_type["video"]
        assert video["codec_name"] == case.video
        assert (video["width"], video["height"]) == (WIDTH, HEIGHT)
        assert video["nb_read_frames"] == VIDEO_FRAMES
    if case.audio:
        audio = by_type["audio"]
        assert audio["codec_name"] == case.audio
        assert audio["sample_rate"] == 48000
        assert audio["channels"] == 1
        assert OPUS_FRAMES <= audio["nb_read_frames"] <= OPUS_FRAMES + OPUS_TOLERANCE

    assert ffprobe_duration(path) == pytest.approx(DURATION, abs=DURATION_TOLERANCE)

    counts = pyav_frame_counts(path)
    assert sorted(counts) == sorted(expected_types)
    if case.video:
        assert counts["video"] == VIDEO_FRAMES
    if case.audio:
        assert counts["audio"] == by_type["audio"]["nb_read_frames"]


def check_chunks(case: Case, chunks: list[bytes]) -> None:
    """The chunk sequence: header first, more than one chunk, each on a cluster/page boundary."""
    non_empty = [c for c in chunks if c]
    assert len(non_empty) > 1, f"timeslice={TIMESLICE_MS} ms gave {len(non_empty)} non-empty chunk(s)"
    assert non_empty[0].startswith(case.magic)
    if case.family == "ogg":
        for i, chunk in enumerate(non_empty):
            ogg_page_ends(chunk)  # whole pages, or it fails saying where
            assert chunk.startswith(OGG_MAGIC), f"chunk {i} does not start an Ogg page"
    else:
        for i, chunk in enumerate(non_empty[1:], start=1):
            assert chunk.startswith(CLUSTER_ID), f"chunk {i} does not start a Matroska cluster: {chunk[:8].hex()}"


def has_media(case: Case, data: bytes) -> bool:
    """Whether a prefix holds coded media (not only the header, which ffmpeg rejects on its own)."""
    if case.family == "ogg":
        return len(ogg_page_ends(data)) > 2  # OpusHead and OpusTags pages come first
    return CLUSTER_ID in data


@pytest.mark.parametrize("case", CASES)
async def test_record_with_async_for(case: Case, tmp_path: Path) -> None:
    chunks: list[bytes] = []
    timecodes: list[float] = []
    mime_at_start: list[str] = []
    async with MediaRecorder(make_stream(case), mimeType=case.requested) as recorder:
        recorder.onstart = lambda _event: mime_at_start.append(recorder.mimeType)
        events = aiter(recorder)  # before start(): every chunk, the first one included
        recorder.start(timeslice=TIMESLICE_MS)
        assert recorder.mimeType == case.requested  # until the "start" event
        async with asyncio.timeout(RECORD_TIMEOUT):
            async for event in events:
                chunks.append(event.data)
                timecodes.append(event.timecode)
        assert recorder.state == "inactive"
        assert_mime(recorder.mimeType, case.mime)

    assert len(mime_at_start) == 1
    assert_mime(mime_at_start[0], case.mime)
    assert timecodes == sorted(timecodes)
    check_chunks(case, chunks)
    check_file(case, write(tmp_path / f"recording.{case.suffix}", chunks))

    full_frames = {s["codec_type"]: s["nb_read_frames"] for s in ffprobe_streams(tmp_path / f"recording.{case.suffix}")}
    # Every prefix that holds media decodes cleanly to its end: chunks end on clusters/pages.
    first = next(k for k in range(1, len(chunks) + 1) if has_media(case, b"".join(chunks[:k])))
    prefixes = sorted({k for k in (first, (first + len(chunks)) // 2, len(chunks) - 1) if first <= k < len(chunks)})
    assert prefixes, f"no proper prefix holds media: chunk sizes {[len(c) for c in chunks]}"
    previous = {kind: 0 for kind in full_frames}
    for k in prefixes:
        path = write(tmp_path / f"prefix{k}.{case.suffix}", chunks[:k])
        assert ffmpeg_decode_errors(path) == "", f"the first {k} of {len(chunks)} chunks"
        # A stream with no frame yet in the prefix counts None.
        frames = {s["codec_type"]: s["nb_read_frames"] or 0 for s in ffprobe_streams(path)}
        assert frames.keys() == full_frames.keys()
        assert sum(frames.values()) > 0
        for kind, count in frames.items():
            assert previous[kind] <= count <= full_frames[kind], f"{kind} frames in the first {k} chunks"
        previous = frames


@pytest.mark.parametrize("case", CASES)
async def test_record_with_ondataavailable(case: Case, tmp_path: Path) -> None:
    chunks: list[bytes] = []
    stopped = asyncio.get_running_loop().create_future()
    async with MediaRecorder(make_stream(case), mimeType=case.requested) as recorder:
        recorder.ondataavailable = lambda event: chunks.append(event.data)
        recorder.onstop = lambda _event: stopped.set_result(recorder.mimeType)
        await recorder.start(timeslice=TIMESLICE_MS)
        assert_mime(recorder.mimeType, case.mime)
        assert recorder.state == "recording"
        # The tracks end by themselves; the recorder then stops: final chunk, then "stop".
        mime_at_stop = await asyncio.wait_for(stopped, RECORD_TIMEOUT)

    assert_mime(mime_at_stop, case.mime)
    check_chunks(case, chunks)
    check_file(case, write(tmp_path / f"recording.{case.suffix}", chunks))
