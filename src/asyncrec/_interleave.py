"""Keeping a Matroska cluster's blocks in time order when audio has a codec delay.

FFmpeg's Matroska muxer (libavformat 60 and later) writes an audio block at its packet's
time *plus* the encoder's priming (``CodecDelay``: 6.5 ms for Opus, 1024 samples for
AAC), but its interleaver orders packets by their ``dts`` before that shift. So an Opus
packet at 0.094 s, written at 0.101 s, goes out before the video frame at 0.100 s, and
the cluster holds a block earlier than the one before it. FFmpeg's own demuxer does not
mind; Chromium's ``MediaSource`` refuses the append ("Got a block with a timecode before
the previous block").

The fix: lower each video packet's ``dts`` by the same lead, so the interleaver compares
what the muxer writes. Matroska blocks carry the ``pts``, which is untouched, so nothing
else in the file changes. Other muxers do not shift audio and get no lead.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from fractions import Fraction
from typing import Any

import av
from av.audio.stream import AudioStream
from av.container import OutputContainer

#: Samples of priming FFmpeg's AAC encoder puts before the first sample (``initial_padding``).
AAC_PRIMING = 1024
_MATROSKA = ("matroska", "webm")


def priming(stream: av.stream.Stream) -> int:
    """The samples of encoder priming at the start of an audio stream (0 if none or unknown).

    The stream's encoder (or decoder, for a stream read from a file) must be open.
    """
    ctx = stream.codec_context
    if ctx is None or stream.type != "audio":
        return 0
    name = ctx.name
    extradata = ctx.extradata or b""
    if name in ("opus", "libopus") and extradata[:8] == b"OpusHead" and len(extradata) >= 12:
        return int.from_bytes(extradata[10:12], "little")  # the OpusHead's pre-skip
    if name == "aac":
        return AAC_PRIMING
    return 0


def video_lead(container: OutputContainer, streams: Iterable[av.stream.Stream]) -> Fraction:
    """Seconds by which video ``dts`` must be lowered in ``container`` (0 if not Matroska).

    Call it once the header is written (the muxer's stream time bases are then final).
    """
    if container.format.name.split(",")[0] not in _MATROSKA:
        return Fraction(0)
    lead = Fraction(0)
    for stream in streams:
        samples = priming(stream)
        rate = stream.codec_context.sample_rate if isinstance(stream, AudioStream) else 0
        if samples and stream.time_base and rate:
            # The muxer's own arithmetic: av_rescale_q, which rounds half away from zero.
            ticks = Fraction(samples, rate) / stream.time_base
            lead = max(lead, math.floor(ticks + Fraction(1, 2)) * stream.time_base)
    return lead


def lower_dts(packet: av.Packet[Any], lead: Fraction) -> None:
    """Lower a video packet's ``dts`` by ``lead`` seconds (rounded up to its time base)."""
    if lead and packet.dts is not None and packet.time_base:
        packet.dts -= math.ceil(lead / packet.time_base)
