"""Independent checks of recorded files: Debian's ffprobe/ffmpeg and PyAV.

Debian's ``ffmpeg``/``ffprobe`` are a different FFmpeg build from the one inside PyAV's
wheel (the one asyncrec writes with), so a file they read without complaint is not only
readable by the library that wrote it. A missing tool fails the test with a clear message:
it is never a reason to skip.

Import from a test module as ``from media_check import ...`` (pytest puts ``tests/`` on
``sys.path``).
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import av
import pytest

#: The first four bytes of a WebM/Matroska file (the EBML header element ID).
EBML_MAGIC = b"\x1a\x45\xdf\xa3"
#: The Matroska Cluster element ID: every cluster starts with it.
CLUSTER_ID = b"\x1f\x43\xb6\x75"
#: The capture pattern that starts every Ogg page.
OGG_MAGIC = b"OggS"

TOOL_TIMEOUT = 60


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} not found on PATH: the output-file tests need Debian's ffmpeg package (apt-get install ffmpeg)",
            pytrace=False,
        )
    return path


def _run(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=TOOL_TIMEOUT, check=False)


def _number(value: Any) -> int | None:
    if value is None or value == "N/A":
        return None
    return int(value)


def ffprobe_streams(path: str | Path) -> list[dict[str, Any]]:
    """The streams of ``path`` as Debian's ffprobe sees them, frames counted by decoding.

    Each dict has ``codec_name``, ``codec_type``, ``width``, ``height``, ``channels``,
    ``sample_rate`` and ``nb_read_frames`` (ints, or None where they do not apply).
    """
    result = _run(
        [
            _tool("ffprobe"),
            "-v",
            "error",
            "-count_frames",
            "-show_entries",
            "stream=index,codec_name,codec_type,width,height,channels,sample_rate,nb_read_frames",
            "-of",
            "json",
            str(path),
        ]
    )
    assert result.returncode == 0, f"ffprobe failed on {path}: {result.stderr.strip()}"
    streams = json.loads(result.stdout).get("streams", [])
    return [
        {
            "codec_name": s.get("codec_name"),
            "codec_type": s.get("codec_type"),
            "width": _number(s.get("width")),
            "height": _number(s.get("height")),
            "channels": _number(s.get("channels")),
            "sample_rate": _number(s.get("sample_rate")),
            "nb_read_frames": _number(s.get("nb_read_frames")),
        }
        for s in sorted(streams, key=lambda s: s["index"])
    ]


def ffprobe_video(path: str | Path, entries: str) -> list[dict[str, Any]]:
    """Debian's ffprobe on the first video stream of ``path``: ``entries`` as for
    ``-show_entries`` (``packet=pos,flags`` or ``stream=profile,level``), one dict per
    packet or stream, in file order."""
    result = _run(
        [_tool("ffprobe"), "-v", "error", "-select_streams", "v:0", "-show_entries", entries, "-of", "json", str(path)]
    )
    assert result.returncode == 0, f"ffprobe failed on {path}: {result.stderr.strip()}"
    section = entries.split("=", 1)[0]
    return list(json.loads(result.stdout).get(f"{section}s", []))


def ffprobe_packets(path: str | Path) -> list[dict[str, Any]]:
    """Debian's ffprobe on every packet of ``path``, in file order: ``stream_index``,
    ``pos`` (byte position) and ``pts_time`` (s) of each."""
    entries = "packet=stream_index,pos,pts_time"
    result = _run([_tool("ffprobe"), "-v", "error", "-show_entries", entries, "-of", "json", str(path)])
    assert result.returncode == 0, f"ffprobe failed on {path}: {result.stderr.strip()}"
    return list(json.loads(result.stdout).get("packets", []))


def ffprobe_packet_spans(path: str | Path) -> dict[int, tuple[float, float]]:
    """Per stream index: (first packet's pts, end of the last packet = pts + duration), in seconds."""
    result = _run(
        [
            _tool("ffprobe"),
            "-v",
            "error",
            "-show_entries",
            "packet=stream_index,pts_time,duration_time",
            "-of",
            "json",
            str(path),
        ]
    )
    assert result.returncode == 0, f"ffprobe failed on {path}: {result.stderr.strip()}"
    spans: dict[int, tuple[float, float]] = {}
    for packet in json.loads(result.stdout).get("packets", []):
        pts = packet.get("pts_time")
        if pts is None or pts == "N/A":
            continue
        start = float(pts)
        duration = packet.get("duration_time")
        end = start + (float(duration) if duration not in (None, "N/A") else 0.0)
        index = int(packet["stream_index"])
        first, last = spans.get(index, (math.inf, -math.inf))
        spans[index] = (min(first, start), max(last, end))
    return spans


def ffprobe_duration(path: str | Path) -> float:
    """The media duration of ``path`` in seconds, from its packets.

    WebM written without seeking (as a stream of chunks is) has no Duration element, so
    this takes the end of the last packet (pts + duration) of each stream, the latest of
    them, minus the earliest start. A negative start (Opus priming samples, which the
    decoder discards) counts as 0.
    """
    spans = ffprobe_packet_spans(path)
    assert spans, f"ffprobe found no packets in {path}"
    start = max(0.0, min(first for first, _ in spans.values()))
    end = max(last for _, last in spans.values())
    return end - start


def ffmpeg_decode_errors(path: str | Path) -> str:
    """Decode every stream of ``path`` with Debian's ffmpeg; its error output ('' when clean).

    ``-enc_time_base -1`` keeps the file's own time base for the (null) output: by default
    ffmpeg retimes frames in 1/frame-rate and now and then puts two frames timed a few ms
    apart (a timer-driven source) in one tick, then reports "non monotonically increasing
    dts to muxer" although every frame decodes.
    """
    result = _run(
        [_tool("ffmpeg"), "-nostdin", "-v", "error", "-i", str(path), "-enc_time_base", "-1", "-f", "null", "-"]
    )
    errors = result.stderr.strip()
    if result.returncode != 0 and not errors:
        errors = f"ffmpeg exited with status {result.returncode}"
    return errors


def pyav_frame_counts(path: str | Path) -> dict[str, int]:
    """Decode every packet of ``path`` with PyAV; frames decoded per stream.

    Keys are the stream type (``"video"``, ``"audio"``); a second stream of the same type
    is keyed ``"video:1"`` (its index). Decoding errors propagate.
    """
    counts: dict[str, int] = {}
    keys: dict[int, str] = {}
    with av.open(str(path)) as container:
        for stream in container.streams:
            key = stream.type if stream.type not in counts else f"{stream.type}:{stream.index}"
            keys[stream.index] = key
            counts[key] = 0
        for packet in container.demux():
            # A flush packet (no data) still drains frames the decoder holds.
            for _frame in packet.decode():
                counts[keys[packet.stream.index]] += 1
    return counts


def ogg_page_ends(data: bytes) -> list[int]:
    """The offset just past each Ogg page of ``data``; fails unless ``data`` is whole pages."""
    ends: list[int] = []
    pos = 0
    while pos < len(data):
        assert data[pos : pos + 4] == OGG_MAGIC, f"no Ogg page at offset {pos}"
        assert pos + 27 <= len(data), f"Ogg page header at {pos} is cut off"
        segments = data[pos + 26]
        table_end = pos + 27 + segments
        assert table_end <= len(data), f"Ogg segment table at {pos} is cut off"
        pos = table_end + sum(data[pos + 27 : table_end])
        assert pos <= len(data), f"Ogg page ending at {pos} is cut off at {len(data)}"
        ends.append(pos)
    return ends


#: What the RFC 6381 string of each codec recorded looks like (asyncrec's encoders: H.264
#: High profile, VP9 profile 0, AV1 Main, all 8-bit 4:2:0; levels vary with the picture).
_FULL_CODEC = {
    "avc1": r"avc1\.64[0-9A-F]{2}[0-9A-F]{2}",
    "vp09": r"vp09\.00\.\d\d\.08",
    "av01": r"av01\.0\.\d\d[MH]\.08",
    "av1": r"av01\.0\.\d\d[MH]\.08",
}


def mime_pattern(mime: str) -> str:
    """A regular expression for the ``mimeType`` a recorder reports after ``start`` for a
    recording of ``mime`` (given with plain codec identifiers, ``video/mp4;codecs=avc1``)."""
    container, _, codecs = mime.partition(";codecs=")
    full = [_FULL_CODEC.get(codec, re.escape(codec)) for codec in codecs.split(",")]
    return re.escape(container) + ";codecs=" + ",".join(full)


def assert_mime(actual: str | None, mime: str) -> None:
    assert actual is not None, f"no mimeType where {mime} was expected"
    assert re.fullmatch(mime_pattern(mime), actual), f"{actual!r} is not {mime} in full"


def mkvinfo(path: str | Path) -> str:
    """mkvinfo's (Debian's mkvtoolnix: a Matroska reader independent of FFmpeg) view of
    every element of ``path``; ``--all``, since the Cues come after the clusters, where
    mkvinfo stops by default."""
    tool = shutil.which("mkvinfo")
    if tool is None:
        pytest.fail("mkvinfo not found on PATH: the tests need mkvtoolnix (apt-get install mkvtoolnix)", pytrace=False)
    result = _run([tool, "--ui-language", "en_US", "--all", str(path)])
    assert result.returncode == 0, f"mkvinfo failed on {path}: {result.stdout[-2000:]}{result.stderr}"
    return result.stdout


def has_cues(path: str | Path) -> bool:
    """Whether ``path`` has an index (Cues with at least one Cue point), by mkvinfo."""
    info = mkvinfo(path)
    return "|+ Cues" in info and "Cue point" in info
