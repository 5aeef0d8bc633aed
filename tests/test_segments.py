"""SegmentSink: a recording made with independent_chunks=True written to numbered files,
rotated by media duration or size, each checked on its own with Debian's ffprobe/ffmpeg
and mkvtoolnix's mkvinfo (finished: a numeric duration, Cues or a moov at the front)."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
from pathlib import Path
from typing import Any

import pytest

from asyncrec import BlobEvent, MediaRecorder, Segment, SegmentSink, SinkError
from conftest import EventLog, make_stream
from media_check import _run, _tool, ffmpeg_decode_errors, ffprobe_streams, has_cues
from media_probe import iso_boxes

FPS = 30
WEBM = "video/webm;codecs=vp8,opus"
MP4 = "video/mp4;codecs=avc1,mp4a.40.2"


# -- recording and probing -------------------------------------------------------------------------


async def record(
    mime: str, duration: float, timeslice: int, sink: SegmentSink | None = None, *, independent: bool = True
) -> EventLog:
    """Record generated media (faster than real time), with ``sink.write`` as the handler."""
    recorder = MediaRecorder(
        make_stream(duration=duration, size=(160, 120)), mimeType=mime, independent_chunks=independent
    )
    log = EventLog(recorder)
    if sink is not None:
        recorder.ondataavailable = sink.write
    recorder.start(timeslice)
    await log.wait_stopped()
    return log


def chunks(log: EventLog) -> list[BlobEvent]:
    return [e for e in log.events if e.type == "dataavailable" and e.data]


def probe_format(path: Path) -> dict[str, Any]:
    """ffprobe's format section of ``path`` (``duration`` and ``start_time`` as floats, or None)."""
    result = _run(
        [
            _tool("ffprobe"),
            "-v",
            "error",
            "-show_entries",
            "format=format_name,duration,start_time",
            "-of",
            "json",
            str(path),
        ]
    )
    assert result.returncode == 0, f"ffprobe failed on {path}: {result.stderr.strip()}"
    fmt = json.loads(result.stdout)["format"]
    for key in ("duration", "start_time"):
        fmt[key] = None if fmt.get(key) in (None, "N/A") else float(fmt[key])
    return fmt


def first_pts(path: Path) -> dict[str, float]:
    """The first packet's pts (s) of each stream of ``path``, keyed by codec type."""
    result = _run(
        [
            _tool("ffprobe"),
            "-v",
            "error",
            "-show_entries",
            "packet=stream_index,pts_time:stream=index,codec_type",
            "-of",
            "json",
            str(path),
        ]
    )
    assert result.returncode == 0, result.stderr
    probe = json.loads(result.stdout)
    kinds = {s["index"]: s["codec_type"] for s in probe["streams"]}
    first: dict[str, float] = {}
    for packet in probe["packets"]:
        first.setdefault(kinds[packet["stream_index"]], float(packet["pts_time"]))
    return first


def assert_starts_at_zero(path: Path, first: bool) -> None:
    """The earliest packet of ``path`` is at 0, but in the first segment, whose audio starts
    before 0 by the encoder's priming (Opus 6.5 ms, AAC 1024 samples), as the recording's.

    Ogg is read back with every Opus stream starting at minus its pre-skip (FFmpeg's Ogg
    demuxer subtracts it from the granule positions, which its muxer writes from 0): the
    recorder's own chunks read back 6.5 ms before their timecode the same way.
    """
    starts = first_pts(path)
    earliest = min(starts.values())
    if first:
        assert -0.022 <= earliest <= 0.0, starts
    elif path.suffix == ".ogg":
        assert earliest == -0.0065, starts
    else:
        assert earliest == 0.0, starts
    # Each stream keeps its place beside the others (a chunk's audio and video start
    # within the hand-off's 0.2 s of each other).
    assert max(starts.values()) < 0.2, starts


def assert_start_where_chunks_start(segments: list[Segment], first_chunks: list[BlobEvent]) -> None:
    """A segment starts at its earliest packet: at its first chunk's timecode (the video
    key frame that starts it), or before it by the audio that chunk holds from before the
    key frame (less than the hand-off's 0.2 s between tracks that are not real time; for
    audio alone, Opus' 6.5 ms of pre-skip)."""
    assert len(segments) == len(first_chunks)
    for segment, chunk in zip(segments, first_chunks, strict=True):
        assert chunk.timecode - 200 <= segment.start <= chunk.timecode, (segment, chunk)
    assert segments[0].start == 0.0


def assert_tiled(segments: list[Segment], length: float) -> None:
    """The segments cover the recording (``length`` ms) in order, with no gap: each ends at
    or after the next one's start (by less than the 0.2 s a chunk's audio and video may be
    apart: that part of the next segment holds the other track), the last at the end; so
    their durations add up to the length, plus those overlaps."""
    for segment, following in itertools.pairwise(segments):
        end = segment.start + segment.duration
        assert following.start <= end < following.start + 200, (segment, following)
    assert segments[-1].start + segments[-1].duration == pytest.approx(length, abs=20)
    overlaps = sum(a.start + a.duration - b.start for a, b in itertools.pairwise(segments))
    assert sum(s.duration for s in segments) == pytest.approx(length + overlaps, abs=20)


def names(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


def head(path: Path, size: int | None = 64) -> bytes:
    """The first ``size`` bytes of ``path`` (all of it for None)."""
    with open(path, "rb") as file:
        return file.read(size if size is not None else -1)


def video_frames(path: Path) -> int:
    return sum(s["nb_read_frames"] for s in ffprobe_streams(path) if s["codec_type"] == "video")


def assert_named_and_complete(directory: Path, template: str, segments: list[Segment]) -> None:
    """Files named from the template, one per segment, each as big as its Segment says, and
    nothing else (no ``.partial`` left)."""
    expected = [template.format(index=i) for i in range(len(segments))]
    assert names(directory) == expected
    for index, segment in enumerate(segments):
        assert segment.index == index
        assert segment.path == str(directory / expected[index])
        assert segment.bytes == Path(segment.path).stat().st_size


# -- rotation by duration (WebM) -------------------------------------------------------------------


@pytest.mark.parametrize("callback", ["function", "coroutine"])
async def test_webm_rotated_by_duration(callback: str, tmp_path: Path) -> None:
    announced: list[Segment] = []
    on_segment: Any
    if callback == "function":
        on_segment = announced.append
    else:

        async def on_segment(segment: Segment) -> None:
            await asyncio.sleep(0)
            assert os.path.isfile(segment.path), "announced before its file has its final name"  # noqa: ASYNC240
            announced.append(segment)

    template = "rec-{index:05d}.webm"
    async with SegmentSink(str(tmp_path / template), max_duration=2.0, on_segment=on_segment) as sink:
        log = await record(WEBM, 6.0, 500, sink)
    recorded = chunks(log)
    segments = sink.segments

    # 500 ms chunks: a segment reaches 2.0 s with its 4th chunk (the video ends at 4 x 500 ms
    # exactly; the audio, which runs on to the next video key frame, a little later) and
    # ends there, so 12 chunks make 3 segments of 4, the last finished by its own 4th chunk.
    assert len(recorded) == 12, [(c.timecode, c.duration) for c in recorded]
    assert len(segments) == 3, segments
    assert announced == segments  # once each, in order
    assert [recorded[i].timecode for i in (0, 4, 8)] == [0.0, 2000.0, 4000.0]
    assert_start_where_chunks_start(segments, [recorded[i] for i in (0, 4, 8)])
    assert_named_and_complete(tmp_path, template, segments)

    for segment in segments:
        path = Path(segment.path)
        assert ffmpeg_decode_errors(path) == "", f"segment {segment.index} alone"
        assert has_cues(path), f"segment {segment.index} has no Cues"
        assert b"\x42\x82\x84webm" in head(path), "WebM in, WebM out (DocType webm)"
        fmt = probe_format(path)
        # The file's own Duration; FFmpeg's Matroska muxer counts Opus' codec delay (7 ms) in it.
        assert fmt["duration"] is not None, f"segment {segment.index}: no numeric duration"
        assert fmt["duration"] == pytest.approx(segment.duration / 1000, abs=0.01)
        assert segment.duration >= 2000.0 - 1  # the limit is reached...
        assert segment.duration < 2000.0 + 500  # ...and passed by less than one chunk
        assert_starts_at_zero(path, segment.index == 0)

    assert sum(video_frames(Path(s.path)) for s in segments) == 6.0 * FPS  # every frame once
    assert_tiled(segments, 6000.0)


# -- rotation by size (MP4) ------------------------------------------------------------------------


async def test_mp4_rotated_by_size(tmp_path: Path) -> None:
    max_bytes = 30_000
    template = "part{index}.mp4"
    async with SegmentSink(str(tmp_path / template), max_bytes=max_bytes) as sink:
        log = await record(MP4, 4.0, 500, sink)
    recorded = chunks(log)
    segments = sink.segments
    largest_chunk = max(len(c.data) for c in recorded)

    assert len(segments) >= 3, segments
    assert_named_and_complete(tmp_path, template, segments)
    for segment in segments[:-1]:
        # Ended by size: at the chunk that took it to max_bytes (of media), so it has at
        # least that many bytes, and less than one chunk more (plus the moov).
        assert max_bytes <= segment.bytes < max_bytes + largest_chunk + 4096
    assert segments[-1].bytes < max_bytes + largest_chunk + 4096
    for segment in segments:
        path = Path(segment.path)
        boxes = [kind for kind, _size in iso_boxes(head(path, None))]
        assert boxes[0] == "ftyp"
        assert "moov" in boxes
        assert "mdat" in boxes
        assert boxes.index("moov") < boxes.index("mdat"), f"segment {segment.index}: {boxes} (no +faststart)"
        assert "moof" not in boxes, "a finished MP4, not fragments"
        assert ffmpeg_decode_errors(path) == "", f"segment {segment.index} alone"
        assert_starts_at_zero(path, segment.index == 0)
        fmt = probe_format(path)
        assert fmt["duration"] == pytest.approx(segment.duration / 1000, abs=0.01)
    assert sum(video_frames(Path(s.path)) for s in segments) == 4.0 * FPS
    assert_tiled(segments, 4000.0)


# -- other containers, one segment per chunk ------------------------------------------------------------


@pytest.mark.parametrize(
    ("mime", "suffix", "doctype"),
    [
        ("video/x-matroska;codecs=avc1,opus", ".mkv", b"\x42\x82\x88matroska"),
        ("audio/ogg;codecs=opus", ".ogg", b"OggS"),
        ("audio/webm;codecs=opus", ".webm", b"\x42\x82\x84webm"),
    ],
)
async def test_without_limits_every_chunk_is_a_segment(mime: str, suffix: str, doctype: bytes, tmp_path: Path) -> None:
    async with SegmentSink(str(tmp_path / f"c{{index}}{suffix}")) as sink:
        log = await record(mime, 1.5, 500, sink)
    recorded = chunks(log)
    assert_start_where_chunks_start(sink.segments, recorded)
    for segment in sink.segments:
        path = Path(segment.path)
        assert doctype in head(path), "the container of the chunks (WebM stays WebM)"
        assert ffmpeg_decode_errors(path) == ""
        assert_starts_at_zero(path, segment.index == 0)
        assert probe_format(path)["duration"] == pytest.approx(segment.duration / 1000, abs=0.01)
        if suffix != ".ogg":
            assert has_cues(path)
    assert_tiled(sink.segments, 1500.0)


# -- failures ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_duration", [None, 10.0], ids=["segment-per-chunk", "segment-in-progress"])
async def test_chunks_that_are_not_independent_fail_the_recording(max_duration: float | None, tmp_path: Path) -> None:
    out = tmp_path / "segments"
    out.mkdir()
    sink = SegmentSink(str(out / "s{index}.webm"), max_duration=max_duration)
    log = await record(WEBM, 3.0, 500, sink, independent=False)
    errors = [e for e in log.events if e.type == "error"]
    assert len(errors) == 1, log.types
    error = errors[0].error
    assert isinstance(error, SinkError)
    assert error is sink.error
    assert "independent_chunks=True" in str(error)
    assert error.path == str(out / ("s1.webm" if max_duration is None else "s0.webm"))
    assert log.types[-1] == "stop"
    # The sink stays failed: the same error, at once.
    with pytest.raises(SinkError) as again:
        await sink.write(chunks(log)[0])
    assert again.value is error
    await sink.aclose()  # no second report of the failure

    # The first chunk (a file on its own: the header and the first media) is kept: as a
    # segment at once, or as the segment in progress, finished by aclose.
    assert [s.index for s in sink.segments] == [0]
    path = Path(sink.segments[0].path)
    assert names(out) == ["s0.webm"]
    assert ffmpeg_decode_errors(path) == ""
    assert has_cues(path)
    first = tmp_path / "chunk0.webm"
    first.write_bytes(chunks(log)[0].data)
    assert video_frames(path) == video_frames(first) > 0  # every frame of the first chunk


async def test_a_missing_directory_fails_naming_the_path(tmp_path: Path) -> None:
    recorded = chunks(await record(WEBM, 1.0, 500))
    target = tmp_path / "missing" / "s{index}.webm"
    sink = SegmentSink(str(target), max_duration=5.0)
    with pytest.raises(SinkError) as failure:
        await sink.write(recorded[0])
    assert failure.value.path == str(tmp_path / "missing" / "s0.webm")
    assert "No such file or directory" in str(failure.value)
    assert isinstance(failure.value.__cause__, OSError)
    with pytest.raises(SinkError) as again:
        await sink.write(recorded[1])
    assert again.value is failure.value
    await sink.aclose()
    assert sink.segments == []
    assert names(tmp_path) == []


# -- the API -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "options"),
    [
        ("out.webm", {}),
        ("out-{}.webm", {}),
        ("out-{name}-{index}.webm", {}),
        ("out-{index}.webm", {"max_duration": 0}),
        ("out-{index}.webm", {"max_bytes": -1}),
    ],
)
def test_bad_arguments(template: str, options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        SegmentSink(template, **options)


async def test_empty_chunks_are_skipped_and_aclose_is_idempotent(tmp_path: Path) -> None:
    recorded = chunks(await record(WEBM, 1.0, 500))
    announced: list[Segment] = []
    sink = SegmentSink(str(tmp_path / "s{index}.webm"), max_duration=60.0, on_segment=announced.append, fsync=False)
    await sink.write(BlobEvent("dataavailable", b"", 0.0))
    assert names(tmp_path) == []
    for chunk in recorded:
        await sink.write(chunk)
        await sink.write(BlobEvent("dataavailable", b"", chunk.timecode + chunk.duration))
    assert names(tmp_path) == ["s0.webm.partial"], "in progress under a temporary name"
    assert announced == []
    await sink.aclose()
    await sink.aclose()
    assert announced == sink.segments
    assert [s.path for s in sink.segments] == [str(tmp_path / "s0.webm")]
    assert names(tmp_path) == ["s0.webm"]
    assert video_frames(tmp_path / "s0.webm") == 30
    with pytest.raises(SinkError, match="closed"):
        await sink.write(recorded[0])


async def test_a_cancelled_write_completes_and_its_segment_is_announced_next(tmp_path: Path) -> None:
    recorded = chunks(await record(WEBM, 1.5, 500))
    announced: list[Segment] = []
    sink = SegmentSink(str(tmp_path / "s{index}.webm"), on_segment=announced.append)
    write = asyncio.ensure_future(sink.write(recorded[0]))
    await asyncio.sleep(0)  # the chunk is on its thread
    write.cancel()
    with pytest.raises(asyncio.CancelledError):
        await write
    await sink.write(recorded[1])  # waits for the cancelled one, announces its segment first
    await sink.aclose()
    assert [s.index for s in announced] == [0, 1]
    assert announced == sink.segments
    for segment in announced:
        assert ffmpeg_decode_errors(segment.path) == ""


async def test_an_on_segment_failure_propagates_and_the_sink_goes_on(tmp_path: Path) -> None:
    recorded = chunks(await record(WEBM, 1.5, 500))
    calls: list[int] = []

    def on_segment(segment: Segment) -> None:
        calls.append(segment.index)
        if segment.index == 0:
            raise RuntimeError("the callback's own bug")

    async with SegmentSink(str(tmp_path / "s{index}.webm"), on_segment=on_segment) as sink:
        with pytest.raises(RuntimeError, match="own bug"):
            await sink.write(recorded[0])
        for chunk in recorded[1:]:
            await sink.write(chunk)
    assert sink.error is None
    assert calls == [s.index for s in sink.segments] == list(range(len(recorded)))


async def test_a_chunk_with_other_streams_fails(tmp_path: Path) -> None:
    video = chunks(await record(WEBM, 0.5, 500))
    audio = chunks(await record("audio/webm;codecs=opus", 0.5, 500))
    sink = SegmentSink(str(tmp_path / "s{index}.webm"), max_duration=10.0)
    await sink.write(video[0])
    with pytest.raises(SinkError, match="differ"):
        await sink.write(audio[0])
    await sink.aclose()
    assert [s.index for s in sink.segments] == [0]  # the video chunk, finished by aclose
    assert ffmpeg_decode_errors(sink.segments[0].path) == ""
