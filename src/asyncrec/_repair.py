"""Repair: a recording cut short by a crash becomes a finished, seekable file.

A recording written chunk by chunk (as :class:`~asyncrec.FileSink` writes it) decodes up
to where it was cut, but has no Duration, no Cues and, if the process died mid-cluster, a
torn end. :func:`repair` remuxes every packet that can still be read, without
re-encoding, into a new file written with seeking, so the muxer adds what a streamed file
lacks (WebM/Matroska: Duration, SeekHead and Cues; MP4: a complete ``moov`` with its
index, at the front). The new file replaces ``out_path`` atomically.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass

import av
from av.container import InputContainer

from ._errors import NotReadableError
from ._interleave import lower_dts, video_lead

logger = logging.getLogger(__name__)

#: Output muxer per input demuxer (FFmpeg names); WebM stays WebM when its codecs allow.
_MUXERS = {"matroska,webm": "matroska", "mov,mp4,m4a,3gp,3g2,mj2": "mp4", "ogg": "ogg"}
_WEBM_CODECS = frozenset({"vp8", "vp9", "av1", "opus", "vorbis"})
#: Bytes a whole streamed file may hold after the end of its last packet as the demuxer
#: places it: a Matroska block's padding; the rest of an Ogg page (the demuxer places each
#: packet at the start of its page, and a page holds at most 65,307 bytes). An MP4's
#: closing index (``mfra``) is counted apart. More, and reading stopped early.
WHOLE_SLACK = 64 * 1024


@dataclass(frozen=True)
class RepairResult:
    """What :func:`repair` kept."""

    #: Packets copied per kind (``"video"``, ``"audio"``).
    packets: dict[str, int]
    #: Seconds of media in the repaired file (the longest stream).
    duration: float
    #: True when reading stopped at damage rather than at a clean end, or a damaged packet
    #: was left out.
    truncated: bool
    #: Bytes of the input after the end of the last packet read, an MP4's closing index
    #: (``mfra``) aside: a few for a whole streamed file; more where reading stopped at
    #: damage the demuxer took for the end (MP4), or before the index of a finished file.
    #: 0 when the demuxer does not say where its packets are.
    unread: int = 0


def repair(
    in_path: str | os.PathLike[str], out_path: str | os.PathLike[str], *, sync: bool = True, whole: bool = False
) -> RepairResult:
    """Copy every readable packet of ``in_path`` into a finished, seekable ``out_path``.

    Blocking (file and PyAV work): from asyncio, run it with ``asyncio.to_thread``.
    ``out_path`` is written as a temporary file next to it (``out_path + ".repairing"``,
    left behind only if the process dies meanwhile) and renamed when complete, so it is
    either the old file or the whole new one. With ``sync`` (the default) the new file is
    on the disk before the rename and the rename is on the disk before returning, so a
    power cut cannot leave an empty file in place of the recording.

    ``whole`` is for a file that ended cleanly (a sink finishing what it wrote): the copy
    must then hold all of it, or ``out_path`` is left as it was. A copy cut short at
    damage would otherwise replace data that is only in the original.

    Raises:
        NotReadableError: ``in_path`` is missing, is not a media file, or holds no audio
            or video packet that can be read; with ``whole``, also when reading stopped
            at damage or more than :data:`WHOLE_SLACK` bytes before the end.
        OSError: ``out_path`` cannot be written.
    """
    source = os.fspath(in_path)
    target = os.fspath(out_path)
    try:
        container = av.open(source, mode="r")
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise NotReadableError(f"{source}: not a media file ({getattr(exc, 'strerror', None) or exc})") from exc
    assert isinstance(container, InputContainer)
    with container:
        streams = [s for s in container.streams if s.type in ("video", "audio")]
        if not streams:
            raise NotReadableError(f"{source}: no audio or video in it")
        muxer = _muxer(container.format.name, [s.codec_context.name for s in streams], target, _is_webm(source))
        temporary = f"{target}.repairing"
        try:
            result = _remux(container, streams, temporary, muxer, _media_end(source))
        except BaseException:
            with contextlib.suppress(OSError):
                os.remove(temporary)
            raise
    if not any(result.packets.values()):
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise NotReadableError(f"{source}: no packet could be read")
    if whole and (result.truncated or result.unread > WHOLE_SLACK):
        with contextlib.suppress(OSError):
            os.remove(temporary)
        where = "at damage" if result.truncated else f"{result.unread} bytes before the end"
        raise NotReadableError(f"{source}: reading stopped {where}: a copy would lose the rest")
    if sync:
        _sync(temporary)
    os.replace(temporary, target)
    if sync:
        _sync(os.path.dirname(os.path.abspath(target)), directory=True)
    return result


def _sync(path: str, *, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _muxer(demuxer: str, codecs: list[str], target: str, webm: bool = False) -> str:
    """The muxer for the finished file: the input's own, WebM staying WebM (by its
    DocType, or a ``.webm`` target) when its codecs allow."""
    muxer = _MUXERS.get(demuxer, "matroska")
    if muxer == "matroska" and (webm or target.lower().endswith(".webm")) and set(codecs) <= _WEBM_CODECS:
        return "webm"
    return muxer


def _media_end(path: str) -> int:
    """Where the packets of ``path`` may end: its size, less the index an MP4 may end with
    (``mfra``, whose size its last box, ``mfro``, states)."""
    with open(path, "rb") as file:
        size = file.seek(0, os.SEEK_END)
        if size < 16:
            return size
        file.seek(size - 16)
        box = file.read(16)
    return size - min(int.from_bytes(box[12:16], "big"), size) if box[4:8] == b"mfro" else size


def _is_webm(path: str) -> bool:
    """Whether the EBML header at the start of ``path`` declares DocType "webm" (a
    Matroska file says "matroska"; FFmpeg's demuxer reports the two alike)."""
    with open(path, "rb") as file:
        return b"\x42\x82\x84webm" in file.read(64)


def _remux(
    container: InputContainer, streams: list[av.stream.Stream], path: str, muxer: str, media_end: int
) -> RepairResult:
    # A real file, so the muxer can seek back: Duration and Cues (Matroska), the moov (MP4).
    options = {"movflags": "+faststart"} if muxer == "mp4" else {}
    output = av.open(path, mode="w", format=muxer, options=options)
    packets = {"video": 0, "audio": 0}
    ends: list[float] = []
    truncated = False
    read_to = 0  # where the last packet read ends in the input (0: the demuxer does not say)
    with output:
        mapping = {s.index: output.add_stream_from_template(s, opaque=True) for s in streams}
        output.start_encoding()
        lead = video_lead(output, streams)
        last_dts: dict[int, int] = {}
        try:
            for packet in container.demux(streams):
                if packet.dts is None or packet.size == 0:
                    continue  # a flush packet
                if packet.pos is not None and packet.pos >= 0:
                    read_to = max(read_to, packet.pos + packet.size)
                if packet.is_corrupt:
                    truncated = True  # cut short by the crash (the demuxer says so): not kept
                    continue
                # Strictly increasing per stream, as muxers require.
                if packet.stream.index in last_dts and packet.dts <= last_dts[packet.stream.index]:
                    continue
                last_dts[packet.stream.index] = packet.dts
                if packet.pts is not None and packet.time_base:
                    ends.append(float((packet.pts + (packet.duration or 0)) * packet.time_base))
                kind = packet.stream.type
                if kind == "video":
                    lower_dts(packet, lead)
                packet.stream = mapping[packet.stream.index]
                output.mux(packet)
                packets[kind] = packets.get(kind, 0) + 1
        except (av.FFmpegError, EOFError) as exc:
            truncated = True  # the damage: keep everything before it
            logger.info("reading stopped at damage: %s", exc)
    unread = max(0, media_end - read_to) if read_to else 0
    return RepairResult(packets, max(ends, default=0.0), truncated, unread)
