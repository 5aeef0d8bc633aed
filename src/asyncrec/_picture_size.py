"""The picture size an encoded video frame declares, read from its headers without decoding.

A publisher's frames reach FFmpeg's or libvpx's decoder as they came off the wire; the size
is known before that from a few header bits: VP8's key frame header (RFC 6386 section 9.1),
VP9's uncompressed frame header (VP9 bitstream specification, section 6.2) and H.264's
sequence parameter set (ITU-T H.264 section 7.3.2.1.1). Every read is bounded and a short or
malformed header gives None, so arbitrary bytes are safe to pass.
"""

from __future__ import annotations

import itertools
import re

#: H.264 profiles whose SPS carries chroma format, bit depths and scaling matrices.
_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})
#: An SPS NAL unit after its start code: forbidden_zero_bit 0, any nal_ref_idc, type 7.
_SPS_START = re.compile(rb"\x00\x00\x01[\x07\x27\x47\x67]")
#: Where a NAL unit ends: the next start code or trailing zeros (never inside one, 7.4.1).
_NAL_END = re.compile(rb"\x00\x00[\x00-\x02]")
#: SPS NAL units tried per frame: encoders send one, and a frame of nothing but SPSs as
#: long as they can be must not take long (about a millisecond each).
_MAX_SPS_TRIED = 4
#: Bytes of an SPS read: with 12 full scaling lists and a 255-entry POC cycle the fields up
#: to the cropping need under 3 KB.
_MAX_SPS_BYTES = 4096
_VP8_START_CODE = b"\x9d\x01\x2a"


def picture_size(codec: str, data: bytes | bytearray | memoryview) -> tuple[int, int] | None:
    """The (width, height) an encoded video frame declares, read from its bitstream
    headers without decoding; None when the frame declares none (not a key frame / no
    sequence header) or the codec is not one it reads. Never raises on any input (hostile
    publishers send arbitrary bytes): malformed data gives None.

    ``codec`` is a MIME type or subtype as aiortc names it, in any case: ``video/VP8``,
    ``video/VP9``, ``video/H264`` (``vp8``, ``vp9``, ``h264``). What is read:

    - VP8: a key frame's 14-bit width and height (the 2-bit scaling is not applied).
    - VP9: the frame size of a key frame, an intra-only frame, or an inter frame that spells
      its size out instead of taking a reference's; in a superframe, the largest of them
      (what the decoder has to allocate). The render size is not
      read: decoders output the frame size.
    - H.264 (Annex B, one or more NAL units): the largest cropped size in the well-formed
      SPSs among the first 4; a frame without one gives None. The VUI is not read.
    """
    if isinstance(data, memoryview):
        # A zero-copy byte view when the buffer allows one.
        data = data.cast("B") if data.c_contiguous else data.tobytes()
    kind = codec.lower().removeprefix("video/")
    try:
        if kind == "vp8":
            return _vp8(data)
        if kind == "vp9":
            return _vp9(data)
        if kind == "h264":
            return _h264(data)
    except _MalformedError:
        return None
    return None


def unreadable(codec: str, data: bytes | bytearray | memoryview) -> bool:
    """Whether a frame holds more sequence headers than :func:`picture_size` reads (an
    H.264 frame with more than 4 SPS units): its size cannot be vouched for, and an
    encoder never sends that. A size guard refuses such frames. Never raises."""
    if codec.lower().removeprefix("video/") != "h264":
        return False
    return sum(1 for _ in itertools.islice(_SPS_START.finditer(data), _MAX_SPS_TRIED + 1)) > _MAX_SPS_TRIED


class _MalformedError(Exception):
    """A header ends early or holds a value outside its range."""


def _vp8(data: bytes | bytearray | memoryview) -> tuple[int, int] | None:
    if len(data) < 10 or data[0] & 1 or data[3:6] != _VP8_START_CODE:  # bit 0 set: an inter frame
        return None
    return _size(data[6] | (data[7] & 0x3F) << 8, data[8] | (data[9] & 0x3F) << 8)


def _vp9(data: bytes | bytearray | memoryview) -> tuple[int, int] | None:
    # The largest frame a superframe declares: a size guard must not be fooled by a small
    # shown frame placed after a large hidden one (the decoder allocates both).
    sizes = []
    for start, end in _vp9_frames(data):
        size = _vp9_frame(_Bits(bytes(data[start : min(end, start + 64)])))
        if size is not None:
            sizes.append(size)
    return max(sizes, key=lambda size: size[0] * size[1], default=None)


def _vp9_frames(data: bytes | bytearray | memoryview) -> list[tuple[int, int]]:
    """(start, end) of each frame: a superframe ends with an index of their sizes (Annex B)."""
    if not data:
        return []
    marker = data[-1]
    if marker & 0xE0 == 0xC0:
        count, width = (marker & 7) + 1, ((marker >> 3) & 3) + 1
        index_size = 2 + width * count
        if len(data) >= index_size and data[-index_size] == marker:
            frames, at = [], 0
            for i in range(count):
                entry = -index_size + 1 + i * width
                size = int.from_bytes(data[entry : entry + width], "little")
                frames.append((at, at + size))
                at += size
            if at > len(data) - index_size:  # libvpx refuses the frame too
                raise _MalformedError
            return frames
    return [(0, len(data))]


def _vp9_frame(bits: _Bits) -> tuple[int, int] | None:
    if bits.read(2) != 2:  # frame_marker
        raise _MalformedError
    profile = bits.read(1) | bits.read(1) << 1
    if profile == 3 and bits.read(1):  # reserved_zero
        raise _MalformedError
    if bits.read(1):  # show_existing_frame: shows an earlier frame
        return None
    key_frame = bits.read(1) == 0
    show_frame = bits.read(1)
    error_resilient = bits.read(1)
    if key_frame:
        _vp9_sync_code(bits)
        _vp9_color_config(bits, profile)
        return _vp9_frame_size(bits)
    intra_only = 0 if show_frame else bits.read(1)
    if not error_resilient:
        bits.read(2)  # reset_frame_context
    if intra_only:
        _vp9_sync_code(bits)
        if profile > 0:
            _vp9_color_config(bits, profile)
        bits.read(8)  # refresh_frame_flags
        return _vp9_frame_size(bits)
    bits.read(8 + 3 * 4)  # refresh_frame_flags, ref_frame_idx and sign bias for 3 references
    for _ in range(3):
        if bits.read(1):  # found_ref: the size is a reference frame's
            return None
    return _vp9_frame_size(bits)


def _vp9_sync_code(bits: _Bits) -> None:
    if bits.read(24) != 0x498342:
        raise _MalformedError


def _vp9_color_config(bits: _Bits, profile: int) -> None:
    if profile >= 2:
        bits.read(1)  # ten_or_twelve_bit
    rgb = bits.read(3) == 7  # color_space CS_RGB
    if not rgb:
        bits.read(1)  # color_range
    if profile in (1, 3):
        bits.read(0 if rgb else 2)  # subsampling_x, subsampling_y (RGB is 4:4:4)
        if bits.read(1):  # reserved_zero
            raise _MalformedError


def _vp9_frame_size(bits: _Bits) -> tuple[int, int] | None:
    return _size(bits.read(16) + 1, bits.read(16) + 1)


def _h264(data: bytes | bytearray | memoryview) -> tuple[int, int] | None:
    # The largest of the SPSs: a frame may carry several (one per id), and a size guard
    # must not be fooled by a small one placed before a large one.
    sizes = []
    for tried, match in enumerate(_SPS_START.finditer(data)):
        if tried == _MAX_SPS_TRIED:
            break
        nal = bytes(data[match.end() : match.end() + _MAX_SPS_BYTES])
        end = _NAL_END.search(nal)
        # Emulation prevention (7.4.1): the encoder put 03 after every 00 00 that a value
        # could have continued into a start code.
        rbsp = (nal[: end.start()] if end else nal).replace(b"\x00\x00\x03", b"\x00\x00")
        try:
            size = _h264_sps(_Bits(rbsp))
        except _MalformedError:
            continue
        if size is not None:
            sizes.append(size)
    return max(sizes, key=lambda size: size[0] * size[1], default=None)


def _h264_sps(bits: _Bits) -> tuple[int, int] | None:
    """The cropped picture size in an SPS's RBSP (7.3.2.1.1); values out of their range
    (7.4.2.1.1) are malformed."""
    profile = bits.read(8)
    bits.read(8 + 8)  # constraint_set flags, level_idc
    _check(bits.ue(), 31)  # seq_parameter_set_id
    chroma_format, separate_planes = 1, 0
    if profile in _HIGH_PROFILES:
        chroma_format = _check(bits.ue(), 3)
        if chroma_format == 3:
            separate_planes = bits.read(1)
        _check(bits.ue(), 6)  # bit_depth_luma_minus8
        _check(bits.ue(), 6)  # bit_depth_chroma_minus8
        bits.read(1)  # qpprime_y_zero_transform_bypass_flag
        if bits.read(1):  # seq_scaling_matrix_present_flag
            for i in range(12 if chroma_format == 3 else 8):
                if bits.read(1):  # seq_scaling_list_present_flag
                    _skip_scaling_list(bits, 16 if i < 6 else 64)
    _check(bits.ue(), 12)  # log2_max_frame_num_minus4
    poc_type = _check(bits.ue(), 2)
    if poc_type == 0:
        _check(bits.ue(), 12)  # log2_max_pic_order_cnt_lsb_minus4
    elif poc_type == 1:
        bits.read(1)  # delta_pic_order_always_zero_flag
        bits.se()  # offset_for_non_ref_pic
        bits.se()  # offset_for_top_to_bottom_field
        for _ in range(_check(bits.ue(), 255)):  # num_ref_frames_in_pic_order_cnt_cycle
            bits.se()  # offset_for_ref_frame
    bits.ue()  # max_num_ref_frames
    bits.read(1)  # gaps_in_frame_num_value_allowed_flag
    width = (bits.ue() + 1) * 16  # pic_width_in_mbs_minus1
    map_units = bits.ue() + 1  # pic_height_in_map_units_minus1
    frame_mbs_only = bits.read(1)
    if not frame_mbs_only:
        bits.read(1)  # mb_adaptive_frame_field_flag
    bits.read(1)  # direct_8x8_inference_flag
    height = (2 - frame_mbs_only) * map_units * 16  # a map unit is a field macroblock pair when coded as fields
    if bits.read(1):  # frame_cropping_flag
        # The offsets count chroma samples, and rows of each field (CropUnitX/Y, 7-19 to 7-22).
        if chroma_format == 0 or separate_planes:  # ChromaArrayType 0
            unit_x, unit_y = 1, 2 - frame_mbs_only
        else:
            unit_x, unit_y = (1 if chroma_format == 3 else 2), (2 if chroma_format == 1 else 1) * (2 - frame_mbs_only)
        left, right, top, bottom = bits.ue(), bits.ue(), bits.ue(), bits.ue()
        width -= unit_x * (left + right)
        height -= unit_y * (top + bottom)
    return _size(width, height)  # cropping away the whole picture is out of range (7.4.2.1.1)


def _skip_scaling_list(bits: _Bits, size: int) -> None:
    """Read past a scaling list (7.3.2.1.1.1): deltas until the list repeats its last value."""
    last = 8
    for _ in range(size):
        delta = bits.se()
        if not -128 <= delta <= 127:
            raise _MalformedError
        scale = (last + delta) % 256
        if scale == 0:  # the rest repeat the last scale (or, first, the default list)
            return
        last = scale


def _check(value: int, most: int) -> int:
    if value > most:
        raise _MalformedError
    return value


def _size(width: int, height: int) -> tuple[int, int] | None:
    return (width, height) if width > 0 and height > 0 else None


class _Bits:
    """A big-endian bit reader that raises _MalformedError at the end of its data. The bits
    are a string of "0" and "1": finding a 1 and parsing a slice run in C."""

    def __init__(self, data: bytes) -> None:
        self._bits = format(int.from_bytes(data, "big"), f"0{len(data) * 8}b") if data else ""
        self._at = 0

    def read(self, count: int) -> int:
        end = self._at + count
        if end > len(self._bits):
            raise _MalformedError
        value = int(self._bits[self._at : end] or "0", 2)
        self._at = end
        return value

    def ue(self) -> int:
        """An unsigned exp-Golomb value (9.1): at most 31 leading zeros, as 32-bit decoders read."""
        one = self._bits.find("1", self._at, self._at + 32)
        if one == -1:  # more than 31 zeros, or the data ends
            raise _MalformedError
        zeros = one - self._at
        self._at = one + 1
        return (1 << zeros) - 1 + self.read(zeros)

    def se(self) -> int:
        """A signed exp-Golomb value (9.1.1): 1, -1, 2, -2... for 1, 2, 3, 4..."""
        code = self.ue()
        return (code + 1) // 2 if code & 1 else -(code // 2)
