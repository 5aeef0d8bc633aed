"""Encoded frames as a WebRTC receiver reassembles them, and what copying them into a file
needs to read from their bitstream.

Copying (passthrough) writes a publisher's frames into the container without decoding
them, so the few facts a muxer needs come from the bytes themselves: whether a frame is a
key frame (VP8's frame tag, RFC 6386 section 9.1; VP9's uncompressed header, VP9
bitstream specification section 6.2; an H.264 IDR picture), H.264's parameter sets (the
container's ``avcC``/CodecPrivate is built from them, and the muxers turn the Annex B
frames into length-prefixed ones), and how long an Opus packet lasts (its TOC byte,
RFC 6716 section 3.1). Every read is bounded and never raises on arbitrary bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ._picture_size import picture_size

#: WebRTC codec names (RTP ``mimeType`` subtypes, lower case) → asyncrec's codec ids
#: (:data:`asyncrec._formats.CODECS`). Codecs missing here are always transcoded.
RTP_CODECS = {"vp8": "vp8", "vp9": "vp9", "h264": "avc1", "av1": "av1", "opus": "opus"}

#: Annex B start codes (3 or 4 bytes), followed by the NAL unit header.
_START_CODE = re.compile(rb"\x00\x00\x01")
_H264_IDR, _H264_SPS, _H264_PPS = 5, 7, 8
_VP8_START_CODE = b"\x9d\x01\x2a"
#: NAL units looked at per frame (an encoder sends a handful: SPS, PPS, SEI, slices).
_MAX_NALS = 64


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """One encoded frame (all the RTP packets of one timestamp, depayloaded), as the
    receiver handed it on."""

    #: ``"video"`` or ``"audio"``.
    kind: str
    #: asyncrec's codec id (``vp8``, ``avc1``, ``opus``...), or the RTP name, lower case,
    #: for a codec asyncrec does not copy (``pcmu``).
    codec: str
    data: bytes
    #: The RTP timestamp, unwrapped (aiortc's receiver makes it start at 0 and never
    #: wrap), in units of ``clock_rate``.
    timestamp: int
    clock_rate: int
    #: Whether a decoder can start at this frame (every audio frame can).
    key: bool

    @property
    def time(self) -> float:
        """The timestamp in seconds."""
        return self.timestamp / self.clock_rate

    @property
    def size(self) -> tuple[int, int] | None:
        """The picture size a video key frame declares (None for others)."""
        name = {"avc1": "h264"}.get(self.codec, self.codec)
        return picture_size(name, self.data) if self.kind == "video" else None


def encoded_frame(kind: str, mime_type: str, clock_rate: int, data: bytes, timestamp: int) -> EncodedFrame:
    """An :class:`EncodedFrame` of an RTP codec named by ``mime_type`` (``video/VP8``)."""
    name = mime_type.lower().rpartition("/")[2]
    codec = RTP_CODECS.get(name, name)
    return EncodedFrame(kind, codec, data, timestamp, clock_rate, kind != "video" or is_key_frame(codec, data))


def is_key_frame(codec: str, data: bytes) -> bool:
    """Whether a video frame of ``codec`` (asyncrec's id) starts a decodable sequence.
    False for anything that cannot be read, or a codec this does not know."""
    if not data:
        return False
    if codec == "vp8":
        # Frame tag bit 0 clear, and the start code every key frame carries: a frame that
        # lost its first packet (a jitter buffer gave up on it) must not pass for one.
        return data[0] & 1 == 0 and data[3:6] == _VP8_START_CODE
    if codec == "vp9":
        # The header says key frame, and its sync code and size read (a partial frame won't).
        return _vp9_key(data[0], data[1] if len(data) > 1 else 0) and picture_size("vp9", data) is not None
    if codec == "avc1":
        # An IDR slice that starts the picture (first_mb_in_slice 0: its ue(v) is the bit
        # 1): a frame whose first packets were lost may hold a later slice alone.
        return any(nal_type == _H264_IDR and len(unit) > 1 and unit[1] & 0x80 for nal_type, unit in _h264_nals(data))
    return False


def starts_stream(frame: EncodedFrame) -> bool:
    """Whether a copy can begin with ``frame``: a key frame carrying what the container's
    header needs (H.264: its SPS and PPS)."""
    if frame.kind != "video":
        return True
    return frame.key and (frame.codec != "avc1" or h264_parameter_sets(frame.data) is not None)


def _vp9_key(first: int, second: int) -> bool:
    """VP9's uncompressed header: frame_marker (2 bits), profile (2, plus a reserved bit
    for profile 3), show_existing_frame, frame_type (0: key frame)."""
    if first >> 6 != 2:
        return False
    profile = (first >> 5 & 1) | (first >> 4 & 1) << 1
    bits = (first << 8 | second) << (1 if profile == 3 else 0)
    # After 4 (or 5) bits: show_existing_frame at bit 11 of the 16, frame_type at bit 10.
    return not bits >> 11 & 1 and not bits >> 10 & 1


def _h264_nals(data: bytes) -> list[tuple[int, bytes]]:
    """(type, unit) of the first NAL units of an Annex B frame, start codes and trailing
    zeros removed."""
    starts = []
    for match in _START_CODE.finditer(data):
        starts.append(match.end())
        if len(starts) > _MAX_NALS:
            break
    if not starts:
        return []
    nals = []
    for start, end in zip(starts, [*starts[1:], len(data) + 3], strict=True):
        unit = data[start : end - 3].rstrip(b"\x00")
        if unit:
            nals.append((unit[0] & 0x1F, unit))
    return nals


def h264_parameter_sets(data: bytes) -> bytes | None:
    """The SPS and PPS of an H.264 key frame as Annex B extradata (what FFmpeg's MP4 and
    Matroska muxers turn into ``avcC``); None if the frame carries no SPS and PPS."""
    nals = _h264_nals(data)
    sps = [unit for nal_type, unit in nals if nal_type == _H264_SPS]
    pps = [unit for nal_type, unit in nals if nal_type == _H264_PPS]
    if not sps or not pps:
        return None
    return b"".join(b"\x00\x00\x00\x01" + unit for unit in (*sps[:1], *pps))


def opus_head(channels: int = 2) -> bytes:
    """The ``OpusHead`` a container needs (RFC 7845 section 5.1), for a stream taken from
    RTP: 48 kHz, no pre-skip (the stream starts mid-way, nothing to trim), channel
    mapping family 0. RTP's Opus is always signalled as 2 channels; a mono stream
    decodes to both."""
    return (
        b"OpusHead"
        + bytes([1, channels])
        + (0).to_bytes(2, "little")
        + (48_000).to_bytes(4, "little")
        + (0).to_bytes(2, "little")
        + b"\x00"
    )


#: A 20 ms Opus packet of silence (CELT, fullband, mono: the decoder plays it on every
#: channel), what WebRTC servers send for a muted track.
OPUS_SILENCE = b"\xf8\xff\xfe"

#: Opus frame durations (in 1/400 s) by TOC configuration: SILK 10/20/40/60 ms,
#: hybrid 10/20 ms, CELT 2.5/5/10/20 ms (RFC 6716 section 3.1, table 2).
_OPUS_FRAME = (4, 8, 16, 24) * 3 + (4, 8) * 2 + (1, 2, 4, 8) * 4


def opus_samples(data: bytes) -> int:
    """Samples at 48 kHz in one Opus packet, read from its TOC byte; 0 if unreadable."""
    if not data:
        return 0
    toc = data[0]
    count = (1, 2, 2, 0)[toc & 3]
    if count == 0:  # code 3: the count is in the next byte
        count = data[1] & 0x3F if len(data) > 1 else 0
    return _OPUS_FRAME[toc >> 3] * count * 120


__all__ = [
    "OPUS_SILENCE",
    "RTP_CODECS",
    "EncodedFrame",
    "encoded_frame",
    "h264_parameter_sets",
    "is_key_frame",
    "opus_head",
    "opus_samples",
    "starts_stream",
]
