"""RFC 6381 codec strings for ``mimeType``, read from the opened encoders.

``MediaSource.isTypeSupported`` wants the profile and level an H.264, VP9 or AV1 stream
really has (``avc1.64001E``, ``vp09.00.30.08``, ``av01.0.04M.08``), so these are taken
from what the encoder wrote (H.264's SPS, AV1's sequence header) or, for VP9, whose
bitstream carries no level, from the picture size and rate as FFmpeg's ``vpcC`` writer
does. VP8, Opus and AAC-LC strings carry no detail (``vp8``, ``opus``, ``mp4a.40.2``).

WebM and Matroska keep Chromium's spelling for VP9 (``vp9``, which MediaSource accepts
there as it is); ``vp09.PP.LL.DD`` is MP4's. AV1 and H.264 get their detailed strings in
every container: Chromium's MediaSource refuses ``video/webm;codecs=av1`` and ``avc1``
alone says nothing a player can check.
"""

from __future__ import annotations

from fractions import Fraction

from av.video.stream import VideoStream

from ._formats import CodecSpec

#: VP9 levels: (level, max luma samples per second, max luma picture size), from the
#: VP9 bitstream specification's level table.
_VP9_LEVELS = (
    (10, 829_440, 36_864),
    (11, 2_764_800, 73_728),
    (20, 4_608_000, 122_880),
    (21, 9_216_000, 245_760),
    (30, 20_736_000, 552_960),
    (31, 36_864_000, 983_040),
    (40, 83_558_400, 2_228_224),
    (41, 160_432_128, 2_228_224),
    (50, 311_951_360, 8_912_896),
    (51, 588_251_136, 8_912_896),
    (52, 1_176_502_272, 8_912_896),
    (60, 1_176_502_272, 35_651_584),
    (61, 2_353_004_544, 35_651_584),
    (62, 4_706_009_088, 35_651_584),
)
#: The rate assumed for a stream that declares none (variable frame rate).
NOMINAL_RATE = Fraction(30)


def codec_string(spec: CodecSpec, muxer: str, stream: object, frame_rate: Fraction | None) -> str:
    """The codec's string for ``mimeType``; the identifier alone when there is nothing
    more to say or the encoder's output cannot be read."""
    plain = spec.mime_id(muxer)
    if not isinstance(stream, VideoStream):
        return plain
    extradata = stream.codec_context.extradata or b""
    if spec.id == "avc1":
        return avc1(extradata) or plain
    if spec.id == "av1":
        return av01(extradata) or plain
    if spec.id == "vp9" and muxer == "mp4":
        rate = frame_rate or NOMINAL_RATE
        return f"vp09.00.{vp9_level(stream.codec_context.width, stream.codec_context.height, rate):02d}.08"
    return plain


def avc1(extradata: bytes) -> str | None:
    """``avc1.PPCCLL`` from the SPS in H.264 extradata (Annex B, as x264 gives it, or avcC)."""
    if extradata[:1] == b"\x01" and len(extradata) >= 4:  # avcC: profile, constraints, level
        return f"avc1.{extradata[1]:02X}{extradata[2]:02X}{extradata[3]:02X}"
    for start in _annex_b_nal_starts(extradata):
        if extradata[start] & 0x1F == 7 and start + 3 < len(extradata):  # the SPS
            profile, constraints, level = extradata[start + 1 : start + 4]
            return f"avc1.{profile:02X}{constraints:02X}{level:02X}"
    return None


def _annex_b_nal_starts(data: bytes) -> list[int]:
    starts = []
    at = data.find(b"\x00\x00\x01")
    while at != -1:
        starts.append(at + 3)
        at = data.find(b"\x00\x00\x01", at + 3)
    return [s for s in starts if s < len(data)]


def av01(extradata: bytes) -> str | None:
    """``av01.P.LLT.DD`` from the AV1 sequence header OBU (raw, or inside an ``av1C``)."""
    data = extradata[4:] if extradata[:1] == b"\x81" else extradata  # av1C: 4 bytes, then OBUs
    if len(data) < 2 or (data[0] >> 3) & 0xF != 1:  # OBU_SEQUENCE_HEADER
        return None
    has_extension, has_size = data[0] & 0x4, data[0] & 0x2
    at = 1 + (1 if has_extension else 0)
    if has_size:
        while at < len(data) and data[at] & 0x80:  # leb128 size
            at += 1
        at += 1
    bits = _Bits(data[at:])
    try:
        profile = bits.read(3)
        bits.read(1)  # still_picture
        if bits.read(1):  # reduced_still_picture_header
            level, tier = bits.read(5), 0
        else:
            if bits.read(1):  # timing_info_present_flag: too rare in encoders' output to parse
                return None
            display_delay = bits.read(1)
            bits.read(5)  # operating_points_cnt_minus_1: the first point is the whole stream
            bits.read(12)  # operating_point_idc
            level = bits.read(5)
            tier = bits.read(1) if level > 7 else 0
            if display_delay and bits.read(1):
                bits.read(4)
            # high_bitdepth follows in the color config; 8 bits is all asyncrec encodes.
    except IndexError:
        return None
    return f"av01.{profile}.{level:02d}{'H' if tier else 'M'}.08"


def vp9_level(width: int, height: int, rate: Fraction) -> int:
    """The lowest VP9 level whose limits hold this picture size at this rate."""
    size = width * height
    for level, max_rate, max_size in _VP9_LEVELS:
        if size <= max_size and size * rate <= max_rate:
            return level
    return _VP9_LEVELS[-1][0]


class _Bits:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self._at = 0

    def read(self, count: int) -> int:
        value = 0
        for _ in range(count):
            byte = self._data[self._at >> 3]
            value = (value << 1) | ((byte >> (7 - (self._at & 7))) & 1)
            self._at += 1
        return value
