"""Recordings played by headless Chromium (Debian's, through Playwright): a finished file has a
finite duration at ``loadedmetadata`` and seeks; the ``dataavailable`` chunks, appended one
by one to a Media Source Extensions SourceBuffer of ``recorder.mimeType``, are accepted,
cover the recording and play to the end, as a browser's own MediaRecorder chunks do.

Files are served from 127.0.0.1 over http (see :mod:`browser_media`); the reports of the
page scripts, Chromium's media log included, are in every assertion message.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, async_playwright

from asyncrec import BlobEvent, FileSink, MediaRecorder
from browser_media import append_chunks, play_file, serve_files
from conftest import make_stream
from media_check import _run, _tool, ffprobe_duration
from test_browser import CHROMIUM_ARGS, chromium  # noqa: F401 - the fixture, requested by name below

#: Seconds of generated media per recording (recorded faster than real time).
DURATION = 4.0
SIZE = (320, 240)
TIMESLICE_MS = 250
#: Seconds: Chromium's duration or buffered end against ffprobe's.
TOLERANCE = 0.3
#: Seconds for a whole recording.
RECORD_TIMEOUT = 60.0

FORMATS = [
    pytest.param("video/webm;codecs=vp8,opus", id="webm-vp8-opus"),
    pytest.param("video/webm;codecs=vp9,opus", id="webm-vp9-opus"),
    pytest.param("video/webm;codecs=av1,opus", id="webm-av1-opus"),
    pytest.param("video/mp4;codecs=avc1,mp4a.40.2", id="mp4-avc1-aac"),
    pytest.param("video/mp4;codecs=vp09,opus", id="mp4-vp09-opus"),
    pytest.param("video/mp4;codecs=av01,mp4a.40.2", id="mp4-av01-aac"),
    pytest.param("audio/webm;codecs=opus", id="audio-webm-opus"),
    pytest.param("audio/mp4;codecs=mp4a.40.2", id="audio-mp4-aac"),
]


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[Browser]:  # noqa: F811 - the fixture imported above
    """Debian's Chromium, headless, as tests/test_browser.py launches it; closed after the test."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


def show(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, default=str)


def extension(mime: str) -> str:
    return ".mp4" if mime.startswith(("video/mp4", "audio/mp4")) else ".webm"


def format_duration(path: Path) -> float | None:
    """ffprobe's format duration of ``path`` (seconds), None when it has none."""
    result = _run([_tool("ffprobe"), "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)])
    assert result.returncode == 0, f"ffprobe failed on {path}: {result.stderr.strip()}"
    text = result.stdout.strip()
    return None if text in ("", "N/A") else float(text)


async def record(
    mime: str, *, timeslice: float, sink: FileSink | None = None, independent: bool = False
) -> tuple[str, list[BlobEvent]]:
    """Record DURATION s of a moving pattern and a tone with ``mimeType=mime``; the recorder's
    mimeType read once "start" has been dispatched, and every chunk (written to ``sink`` too)."""
    chunks: list[BlobEvent] = []
    stream = make_stream(duration=DURATION, size=SIZE)
    async with MediaRecorder(stream, mimeType=mime, independent_chunks=independent) as recorder:
        events = aiter(recorder)  # before start(): every chunk, the first one included
        await recorder.start(timeslice)
        mime_type = recorder.mimeType
        async with asyncio.timeout(RECORD_TIMEOUT):
            async for chunk in events:
                chunks.append(chunk)
                if sink is not None:
                    await sink.write(chunk)
    return mime_type, chunks


@pytest.mark.slow
@pytest.mark.parametrize("mime", FORMATS)
async def test_a_finished_file_has_a_finite_duration_and_seeks_in_chromium(
    mime: str, browser: Browser, tmp_path: Path
) -> None:
    path = tmp_path / f"recording{extension(mime)}"
    async with FileSink(path) as sink:
        recorded_mime, chunks = await record(mime, timeslice=1000, sink=sink)
    assert chunks, "no chunks recorded"
    expected = format_duration(path)
    assert expected is not None, f"ffprobe finds no format duration in the finished {path.name} ({recorded_mime})"

    async with serve_files(tmp_path) as server:
        report = await play_file(browser, server.url(path.name))

    context = f"{recorded_mime}, ffprobe duration {expected:.3f} s; Chromium's report: {show(report)}"
    assert report.get("loadedmetadata"), f"no loadedmetadata for the finished file: {context}"
    assert report["error"] is None, f"the finished file fails in Chromium: {report['error']}; {context}"
    duration = report["duration"]
    assert isinstance(duration, int | float), f"duration at loadedmetadata is {duration!r}, not finite: {context}"
    assert abs(duration - expected) <= TOLERANCE, (
        f"Chromium's duration {duration:.3f} s is not within {TOLERANCE} s of ffprobe's {expected:.3f} s: {context}"
    )
    assert report["seeked"], f"no seeked event after seeking to {report['seek_target']} s: {context}"
    assert report["current_time"] == pytest.approx(report["seek_target"], abs=0.1), (
        f"currentTime after the seek is {report['current_time']}, not {report['seek_target']}: {context}"
    )


@pytest.mark.slow
@pytest.mark.parametrize("mime", [*FORMATS, pytest.param("", id="default")])
async def test_chunks_appended_one_by_one_to_a_source_buffer_play_to_the_end(
    mime: str, browser: Browser, tmp_path: Path
) -> None:
    await check_appended(mime, browser, tmp_path, independent=False)


@pytest.mark.slow
@pytest.mark.parametrize("mime", FORMATS[:2] + FORMATS[3:5])
async def test_independent_chunks_appended_one_by_one_play_to_the_end(
    mime: str, browser: Browser, tmp_path: Path
) -> None:
    """Each independent chunk brings its own header (an initialization segment): appended
    in order they still play as one recording."""
    await check_appended(mime, browser, tmp_path, independent=True)


async def check_appended(mime: str, browser: Browser, tmp_path: Path, *, independent: bool) -> None:
    recorded_mime, chunks = await record(mime, timeslice=TIMESLICE_MS, independent=independent)
    folder = tmp_path / "chunks"
    folder.mkdir()
    ext = extension(recorded_mime)
    names: list[str] = []
    for chunk in chunks:
        if chunk.data:  # an empty chunk has nothing to append
            name = f"chunk-{chunk.sequence:03d}{ext}"
            (folder / name).write_bytes(chunk.data)
            names.append(name)
    assert len(names) >= 8, f"{len(names)} non-empty chunks for {DURATION} s with a {TIMESLICE_MS} ms timeslice"
    total = sum(chunk.duration for chunk in chunks) / 1000
    if independent:  # one file per chunk: the concatenation is not one file for ffprobe
        probed = total
    else:
        whole = tmp_path / f"whole{ext}"
        whole.write_bytes(b"".join(chunk.data for chunk in chunks))
        probed = ffprobe_duration(whole)

    async with serve_files(folder) as server:
        report = await append_chunks(browser, server.base_url, [server.url(name) for name in names], recorded_mime)

    context = (
        f"recorder.mimeType {recorded_mime!r}, {len(names)} chunks, their durations add up to {total:.3f} s, "
        f"ffprobe duration of the concatenation {probed:.3f} s; Chromium's report: {show(report)}"
    )
    assert report.get("is_type_supported"), (
        f"MediaSource.isTypeSupported({recorded_mime!r}) is false in Chromium: recorder.mimeType after start "
        f"should be a type a browser's MSE accepts (full RFC 6381 codec strings); {context}"
    )
    errors = report["append_errors"]
    assert not errors, (
        "Chromium refused the chunks: "
        + "; ".join(
            f"chunk {e['index']} ({names[e['index']] if 0 <= e['index'] < len(names) else 'set-up'}) at {e['stage']}: "
            f"{e['error']}, video.error {e['media_error']}"
            for e in errors
        )
        + f"; media log: {report['media_log']}; {context}"
    )
    assert report["error"] is None, f"video.error after appending: {report['error']}; {context}"
    buffered = report["buffered"]
    assert len(buffered) == 1, f"buffered is {buffered}, not one range: {context}"
    [[start, end]] = buffered
    assert start <= TOLERANCE, f"buffered starts at {start:.3f} s: {context}"
    for what, seconds in (("ffprobe duration of the concatenation", probed), ("sum of the chunks' durations", total)):
        assert math.isclose(end, seconds, abs_tol=TOLERANCE), (
            f"buffered ends at {end:.3f} s, not within {TOLERANCE} s of the {what} ({seconds:.3f} s): {context}"
        )
    assert report["play_error"] is None, f"play() failed: {report['play_error']}; {context}"
    assert report["ended"], f"playback did not reach 'ended' (currentTime {report['current_time']}): {context}"
