"""Matroska blocks in time order: inside every cluster, no block has an earlier timestamp
than the one before it, as Chromium's MediaSource requires ("Got a block with a timecode
before the previous block"). FFmpeg's muxer shifts audio blocks by the codec delay after
interleaving; asyncrec lowers video dts to match (see ``_interleave``).

Read with ``mkvinfo`` (Debian's mkvtoolnix), a Matroska reader independent of FFmpeg; it
prints each block's absolute timestamp, as stored.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

import asyncrec
from asyncrec import FileSink
from conftest import make_stream
from media_check import ffprobe_packet_spans, mkvinfo
from media_probe import record

BLOCK = re.compile(r"(?:Simple block|Block):.*track number (\d+).*timestamp (\d+):(\d+):([\d.]+)")
FORMATS = [
    "video/webm;codecs=vp8,opus",
    "video/webm;codecs=vp9,opus",
    "video/x-matroska;codecs=avc1,mp4a.40.2",
    "video/x-matroska;codecs=avc1,opus",
]


def clusters(path: Path) -> list[list[tuple[int, float]]]:
    """Per cluster, its blocks as (track number, stored timestamp in seconds), in file order."""
    found: list[list[tuple[int, float]]] = []
    for line in mkvinfo(path).splitlines():
        if line.startswith("|+ Cluster"):
            found.append([])
        elif match := BLOCK.search(line):
            seconds = int(match[2]) * 3600 + int(match[3]) * 60 + float(match[4])
            found[-1].append((int(match[1]), seconds))
    return found


def blocks_out_of_order(path: Path) -> list[str]:
    faults = []
    for number, blocks in enumerate(clusters(path)):
        for (track_a, a), (track_b, b) in itertools.pairwise(blocks):
            if b < a:
                faults.append(f"cluster {number}: track {track_b} at {b:.3f} s after track {track_a} at {a:.3f} s")
    return faults


@pytest.mark.parametrize("mime", FORMATS)
async def test_every_cluster_of_the_chunks_and_of_the_finished_file_is_in_time_order(mime: str, tmp_path: Path) -> None:
    recording = await record(make_stream(duration=3.0, size=(160, 120)), timeslice=0.25, mimeType=mime)
    assert not recording.errors
    streamed = tmp_path / "streamed.mkv"
    streamed.write_bytes(b"".join(recording.chunks))
    found = clusters(streamed)
    assert len(found) >= 10, f"{len(found)} clusters"
    assert all(found), "an empty cluster"
    assert {track for blocks in found for track, _ in blocks} == {1, 2}
    assert blocks_out_of_order(streamed) == []

    finished = tmp_path / "finished.mkv"
    asyncrec.repair(streamed, finished)
    assert blocks_out_of_order(finished) == []

    # The audio still starts with the video: the priming is left out by players, not moved.
    spans = ffprobe_packet_spans(finished)
    assert abs(max(0.0, spans[1][0]) - spans[0][0]) < 0.025, spans


async def test_file_sink_finishes_a_webm_in_time_order(tmp_path: Path) -> None:
    path = tmp_path / "out.webm"
    recording = await record(make_stream(duration=2.0), timeslice=0.5, mimeType=FORMATS[0])
    async with FileSink(path) as sink:
        for data in recording.chunks:
            await sink.write(data)
    assert blocks_out_of_order(path) == []
