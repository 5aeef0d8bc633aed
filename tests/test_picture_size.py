"""picture_size reads the size an encoded frame declares from its headers.

The frames come from real encoders (PyAV's libvpx, libvpx-vp9 and libx264) at sizes that
need cropping, in the SPS shapes encoders write (High with 8x8 transforms, 4:4:4, 4:2:2,
10-bit, monochrome, interlaced, scaling matrices, baseline). The expected size is the one the
encoder was given, and Debian's FFmpeg, a different build from PyAV's, must agree on the same
bytes written as a raw file: ffprobe decodes them, and ffmpeg's ``trace_headers`` (a header
parser of its own) shows each case has the header feature it is named for. SPS shapes x264
never writes (scaling lists in the SPS of a 4:4:4 stream, a POC cycle) are spliced into x264's
own SPS and checked the same way. Garbage, every prefix of real headers and seeded random
bytes give None or the right size, quickly, and never raise.
"""

from __future__ import annotations

import random
import re
import struct
import time
import tracemalloc
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import pytest
from av.video.frame import PictureType
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncrec import moving_pattern
from asyncrec._picture_size import picture_size
from media_check import _run, _tool, ffprobe_video

# -- encoding -------------------------------------------------------------------------------------

VPX_FAST = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}


def encode(
    encoder: str,
    width: int,
    height: int,
    *,
    pix_fmt: str = "yuv420p",
    options: dict[str, str] | None = None,
    frames: int = 2,
    rate: Fraction = Fraction(30),
    key_at: tuple[int, ...] = (),
) -> list[bytes]:
    """The packets of ``frames`` frames of a moving picture, one per packet, as the encoder
    wrote them (no global header: x264 repeats its SPS and PPS in key frames)."""
    ctx = av.CodecContext.create(encoder, "w")
    assert isinstance(ctx, av.VideoCodecContext)
    ctx.width, ctx.height, ctx.pix_fmt = width, height, pix_fmt
    ctx.time_base, ctx.framerate = 1 / rate, rate
    ctx.options = options or {}
    pattern = moving_pattern(max(2, width), max(2, height))
    packets = []
    for index in range(frames):
        frame = pattern(index, float(index / rate)).reformat(width, height, pix_fmt)
        frame.pts = index
        frame.pict_type = PictureType.I if index in key_at else PictureType.NONE
        packets += [bytes(p) for p in ctx.encode(frame)]
    packets += [bytes(p) for p in ctx.encode(None)]
    return packets


def ivf(packets: list[bytes], fourcc: bytes) -> bytes:
    """An IVF file of ``packets``; its header declares no size, so a reader must take the
    size from the frames."""
    header = b"DKIF" + struct.pack("<HH4sHHIII4x", 0, 32, fourcc, 0, 0, 30, 1, len(packets))
    return header + b"".join(struct.pack("<IQ", len(p), i) + p for i, p in enumerate(packets))


# -- Debian's FFmpeg -------------------------------------------------------------------------------

TRACE_LINE = re.compile(r"^\[trace_headers @ \w+\] \d+\s+(\S+)\s+[01]+ = (-?\d+)$", re.MULTILINE)


def ffprobe_sizes(path: Path) -> list[tuple[int, int]]:
    """The size of each picture Debian's ffprobe decodes in ``path``."""
    sizes = [(f["width"], f["height"]) for f in ffprobe_video(path, "frame=width,height")]
    assert sizes, "ffprobe decoded no picture"
    return sizes


def traced(path: Path) -> list[tuple[str, int]]:
    """The header fields Debian's ffmpeg reads in ``path``, in order: its trace_headers
    bitstream filter prints each syntax element its own parser reads."""
    ffmpeg = [_tool("ffmpeg"), "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:v", "-c", "copy"]
    result = _run([*ffmpeg, "-bsf:v", "trace_headers", "-f", "null", "-"])
    assert result.returncode == 0, result.stderr
    return [(m[1], int(m[2])) for m in TRACE_LINE.finditer(result.stderr)]


def check_ffmpeg(path: Path, size: tuple[int, int], fields: dict[str, int]) -> None:
    """ffprobe decodes pictures of ``size`` only, and ffmpeg reads each of ``fields`` with
    its value where it first comes (the two run side by side)."""
    with ThreadPoolExecutor(2) as pool:
        sizes, traced_fields = pool.submit(ffprobe_sizes, path), pool.submit(traced, path)
        assert set(sizes.result()) == {size}
        first = dict(reversed(traced_fields.result()))
    assert {name: first.get(name) for name in fields} == fields


# -- VP8 ------------------------------------------------------------------------------------------

SIZES = [(2, 2), (161, 121), (160, 120), (176, 144), (642, 362), (1280, 720), (1920, 1080)]


def size_id(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


@pytest.mark.parametrize("size", SIZES, ids=size_id)
def test_vp8_key_frames_declare_their_size_and_inter_frames_none(size: tuple[int, int], tmp_path: Path) -> None:
    packets = encode("libvpx", *size, options=VPX_FAST, frames=3, key_at=(2,))
    assert [picture_size("video/VP8", p) for p in packets] == [size, None, size]
    path = tmp_path / "out.ivf"
    path.write_bytes(ivf(packets, b"VP80"))
    assert ffprobe_sizes(path) == [size] * 3


def test_vp8_hostile_size_is_read_not_allocated() -> None:
    """A key frame header declaring the largest size is answered from its 10 bytes."""
    header = bytes([0x50, 0x00, 0x00]) + b"\x9d\x01\x2a" + b"\xff\xff\xff\xff"  # scaling bits set too
    tracemalloc.start()
    try:
        assert picture_size("vp8", header + bytes(90)) == (16383, 16383)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10_000
    assert picture_size("vp8", b"\x50\x00\x00\x9d\x01\x2a\x00\xc0\x10\x00") is None  # a zero width


def test_vp8_needs_the_start_code_and_ten_bytes() -> None:
    key = encode("libvpx", 176, 144, options=VPX_FAST, frames=1)[0]
    assert picture_size("vp8", key[:10]) == (176, 144)
    assert picture_size("vp8", key[:9]) is None
    assert picture_size("vp8", key[:3] + b"\x9d\x01\x2b" + key[6:]) is None
    assert picture_size("vp8", bytes([key[0] | 1]) + key[1:]) is None  # the inter frame bit


# -- VP9 ------------------------------------------------------------------------------------------

VP9_CASES = {
    "profile0-161x121": ((161, 121), "yuv420p", VPX_FAST, {"profile_low_bit": 0}),
    "profile1-444-642x362": ((642, 362), "yuv444p", VPX_FAST, {"profile_low_bit": 1, "subsampling_x": 0}),
    "profile1-rgb-64x64": ((64, 64), "gbrp", VPX_FAST, {"profile_low_bit": 1, "color_space": 7}),
}


@pytest.mark.parametrize("case", VP9_CASES)
def test_vp9_key_frames_declare_their_size(case: str, tmp_path: Path) -> None:
    size, pix_fmt, options, expected = VP9_CASES[case]
    packets = encode("libvpx-vp9", *size, pix_fmt=pix_fmt, options=options, frames=4, key_at=(3,))
    sizes = [picture_size("video/VP9", p) for p in packets]
    assert sizes[0] == size
    assert sizes.count(size) == 2, "the first and the forced key frame"
    assert set(sizes) == {size, None}
    path = tmp_path / "out.ivf"
    path.write_bytes(ivf(packets, b"VP90"))
    check_ffmpeg(path, size, expected)


def bits(count: int, value: int) -> str:
    return format(value, f"0{count}b")


def to_bytes(bits_: str) -> bytes:
    bits_ += "0" * (-len(bits_) % 8)
    return int(bits_, 2).to_bytes(len(bits_) // 8, "big") if bits_ else b""


def vp9_intra_only(profile: int, width: int, height: int) -> bytes:
    """An intra-only frame's header (VP9 specification 6.2): hidden, with its own size."""
    color = "" if profile == 0 else bits(3, 1) + "0" + "00" + "0"  # BT.601, 4:4:4 (profile 1)
    header = "10" + str(profile & 1) + str(profile >> 1) + "0" + "1" + "0" + "0" + "1" + "00"
    header += bits(24, 0x498342) + color + bits(8, 1) + bits(16, width - 1) + bits(16, height - 1) + "0"
    return to_bytes(header) + bytes(32)


def vp9_inter_sized(width: int, height: int) -> bytes:
    """An inter frame's header that gives its size rather than a reference's (found_ref 0,
    as a spatial layer above the base does)."""
    header = "10" + "00" + "0" + "1" + "1" + "0" + "00" + bits(8, 1) + "0000" * 3 + "000"
    return to_bytes(header + bits(16, width - 1) + bits(16, height - 1) + "0") + bytes(32)


def superframe(frames: list[bytes]) -> bytes:
    marker = 0xC0 | (3 << 3) | (len(frames) - 1)  # 4-byte sizes
    index = bytes([marker]) + b"".join(struct.pack("<I", len(f)) for f in frames) + bytes([marker])
    return b"".join(frames) + index


def test_vp9_frames_that_give_their_size_outside_key_frames(tmp_path: Path) -> None:
    """Intra-only frames, inter frames that spell their size out, and a superframe of
    spatial layers (its last, top layer is the picture): built from the specification's
    syntax, after a real key frame, and read back by ffmpeg's own VP9 header parser."""
    key = encode("libvpx-vp9", 160, 120, options=VPX_FAST, frames=1)[0]
    frames = [
        key,
        vp9_intra_only(0, 640, 360),
        vp9_inter_sized(1280, 720),
        superframe([key, vp9_inter_sized(320, 240)]),
    ]
    expected = [(160, 120), (640, 360), (1280, 720), (320, 240)]
    assert [picture_size("vp9", f) for f in frames] == expected
    path = tmp_path / "out.ivf"
    path.write_bytes(ivf(frames, b"VP90"))
    fields = traced(path)
    widths = [value for name, value in fields if name == "frame_width_minus_1"]
    heights = [value for name, value in fields if name == "frame_height_minus_1"]
    assert list(zip(widths, heights, strict=True)) == [
        (w - 1, h - 1) for w, h in [*expected[:3], (160, 120), (320, 240)]
    ]
    assert picture_size("vp9", vp9_intra_only(1, 98, 76)) == (98, 76)
    found_ref = to_bytes("10" + "00" + "0" + "1" + "1" + "0" + "00" + bits(8, 1) + "0000" * 3 + "1") + bytes(8)
    assert picture_size("vp9", found_ref) is None
    assert picture_size("vp9", to_bytes("10" + "00" + "1" + "000") + bytes(8)) is None  # show_existing_frame
    assert picture_size("vp9", superframe([found_ref, found_ref])) is None
    assert picture_size("vp9", superframe([key, b""])) is None  # an empty frame in the index
    assert picture_size("vp9", superframe([key])[:-2] + b"\xff" + superframe([key])[-1:]) is None  # sizes past the end


# -- H.264 ----------------------------------------------------------------------------------------


@dataclass
class H264Case:
    size: tuple[int, int]
    pix_fmt: str = "yuv420p"
    options: dict[str, str] = field(default_factory=lambda: {"preset": "veryfast"})
    #: SPS/PPS fields ffmpeg's trace_headers must read: what makes the case the case.
    fields: dict[str, int] = field(default_factory=dict)
    rate: Fraction = Fraction(30)
    #: Every frame a key frame with its SPS.
    intra: bool = False


HIGH = {"profile_idc": 100}
H264_CASES = {
    "high-8x8-1920x1080": H264Case(
        (1920, 1080), fields={**HIGH, "transform_8x8_mode_flag": 1, "frame_crop_bottom_offset": 4}
    ),
    "high-160x120": H264Case((160, 120), fields={**HIGH, "frame_crop_bottom_offset": 4, "pic_order_cnt_type": 0}),
    "high-642x362": H264Case((642, 362), fields={**HIGH, "frame_crop_right_offset": 7, "frame_crop_bottom_offset": 3}),
    "main-176x144": H264Case(
        (176, 144),
        options={"profile": "main", "preset": "veryfast"},
        fields={"profile_idc": 77, "frame_cropping_flag": 0},
    ),
    "constrained-baseline-176x144": H264Case(
        (176, 144), options={"profile": "baseline"}, fields={"profile_idc": 66, "constraint_set1_flag": 1}
    ),
    "smallest-2x2": H264Case((2, 2), fields={"pic_width_in_mbs_minus1": 0, "frame_crop_right_offset": 7}),
    "high444-odd-175x143": H264Case((175, 143), "yuv444p", fields={"profile_idc": 244, "chroma_format_idc": 3}),
    "high444-lossless-176x144": H264Case(
        (176, 144), "yuv444p", {"preset": "veryfast", "qp": "0"}, {"qpprime_y_zero_transform_bypass_flag": 1}
    ),
    "high422-10bit-642x361": H264Case(
        (642, 361), "yuv422p10le", fields={"profile_idc": 122, "chroma_format_idc": 2, "bit_depth_luma_minus8": 2}
    ),
    "interlaced-1920x1080": H264Case(
        (1920, 1080),
        options={"preset": "veryfast", "x264-params": "interlaced=1"},
        fields={"frame_mbs_only_flag": 0, "mb_adaptive_frame_field_flag": 1, "frame_crop_bottom_offset": 2},
    ),
    "interlaced-642x364": H264Case(
        (642, 364), options={"preset": "veryfast", "x264-params": "tff=1"}, fields={"frame_mbs_only_flag": 0}
    ),
    "interlaced-gray-161x122": H264Case(
        (161, 122),
        "gray",
        {"preset": "veryfast", "x264-params": "interlaced=1"},
        {"frame_mbs_only_flag": 0, "chroma_format_idc": 0},
    ),
    # x264 puts its CQM in the PPS: the SPS keeps no matrix (see the AVC-Intra cases).
    "cqm-jvt-642x362": H264Case(
        (642, 362),
        options={"preset": "veryfast", "x264-params": "cqm=jvt"},
        fields={"seq_scaling_matrix_present_flag": 0, "pic_scaling_matrix_present_flag": 1},
    ),
    # AVC-Intra: x264 writes scaling matrices in the SPS only for these.
    "avc-intra-100-1920x1080i": H264Case(
        (1920, 1080),
        "yuv422p10le",
        {"x264-params": "avcintra-class=100:interlaced=1"},
        {"seq_scaling_matrix_present_flag": 1, "frame_mbs_only_flag": 0, "chroma_format_idc": 2},
        Fraction(25),
        intra=True,
    ),
    "avc-intra-50-1440x1080i": H264Case(
        (1440, 1080),
        "yuv420p10le",
        {"x264-params": "avcintra-class=50:interlaced=1"},
        {"seq_scaling_matrix_present_flag": 1, "chroma_format_idc": 1},
        Fraction(25),
        intra=True,
    ),
}


@pytest.mark.parametrize("case", H264_CASES)
def test_h264_key_frames_declare_their_cropped_size(case: str, tmp_path: Path) -> None:
    spec = H264_CASES[case]
    packets = encode("libx264", *spec.size, pix_fmt=spec.pix_fmt, options=spec.options, rate=spec.rate)
    assert packets[0].startswith((b"\x00\x00\x00\x01", b"\x00\x00\x01")), "not Annex B"
    assert {7, 8} <= {n[0] & 0x1F for n in nal_units(packets[0])}, "no SPS and PPS in band"
    assert len(packets) == 2
    assert [picture_size("video/H264", p) for p in packets] == [spec.size, spec.size if spec.intra else None]
    path = tmp_path / "out.h264"
    path.write_bytes(packets[0])
    check_ffmpeg(path, spec.size, spec.fields)


def test_uhd_key_frames(tmp_path: Path) -> None:
    """One 3840x2160 frame each from libvpx and x264 (the two encodes that take longest)."""
    size = (3840, 2160)
    [vp8] = encode("libvpx", *size, options=VPX_FAST, frames=1)
    [h264] = encode("libx264", *size, options={"preset": "ultrafast"}, frames=1)
    assert picture_size("video/VP8", vp8) == size
    assert picture_size("video/H264", h264) == size
    (tmp_path / "out.ivf").write_bytes(ivf([vp8], b"VP80"))
    (tmp_path / "out.h264").write_bytes(h264)
    assert ffprobe_sizes(tmp_path / "out.ivf") == [size]
    assert ffprobe_sizes(tmp_path / "out.h264") == [size]


# SPS shapes x264 does not write, spliced into its own SPS. The test-side reader and writer
# below are checked by Debian's FFmpeg decoding and tracing the result.


class BitReader:
    def __init__(self, bits_: str) -> None:
        self.bits, self.at = bits_, 0

    def u(self, count: int) -> int:
        self.at += count
        return int(self.bits[self.at - count : self.at] or "0", 2)

    def ue(self) -> int:
        zeros = self.bits.index("1", self.at) - self.at
        self.at += zeros
        return self.u(zeros + 1) - 1


def ue(value: int) -> str:
    code = bin(value + 1)[2:]
    return "0" * (len(code) - 1) + code


def se(value: int) -> str:
    return ue(2 * value - 1 if value > 0 else -2 * value)


def nal_units(packet: bytes) -> list[bytes]:
    return [n.rstrip(b"\x00") for n in re.split(rb"\x00\x00\x01", packet) if n.strip(b"\x00")]


def unescape(nal: bytes) -> bytes:
    return re.sub(rb"\x00\x00\x03", b"\x00\x00", nal)


def escape(rbsp: bytes) -> bytes:
    return re.sub(rb"\x00\x00(?=[\x00-\x03])", b"\x00\x00\x03", rbsp)


def splice_sps(packet: bytes, *, scaling: Callable[[int], str] | None = None, poc: str | None = None) -> bytes:
    """``packet`` with its SPS given scaling lists (``scaling(count)`` writes them) and/or
    another picture order count syntax (``poc``: pic_order_cnt_type and its fields)."""
    nals = nal_units(packet)
    [index] = [i for i, n in enumerate(nals) if n[0] & 0x1F == 7]
    bits_ = "".join(format(b, "08b") for b in unescape(nals[index]))
    body = bits_.rstrip("0")[:-1]  # without rbsp_trailing_bits
    reader = BitReader(body)
    reader.u(8)  # the NAL header
    profile = reader.u(8)
    reader.u(16)  # constraint flags, level_idc
    reader.ue()  # seq_parameter_set_id
    chroma_format = 1
    if profile in (100, 110, 122, 244):
        chroma_format = reader.ue()
        if chroma_format == 3:
            reader.u(1)  # separate_colour_plane_flag
        reader.ue()  # bit depths
        reader.ue()
        reader.u(1)  # qpprime_y_zero_transform_bypass_flag
        assert body[reader.at] == "0", "x264 wrote a scaling matrix"
        scaling_at = reader.at
        reader.u(1)
    else:
        assert scaling is None
        scaling_at = reader.at
    reader.ue()  # log2_max_frame_num_minus4
    poc_at = reader.at
    assert reader.ue() == 2, "x264 used frame POCs: the slice headers would not match"
    poc_end = reader.at
    lists = scaling(12 if chroma_format == 3 else 8) if scaling else ""
    sps = body[:scaling_at] + lists + body[scaling_at + (1 if scaling else 0) : poc_at]
    sps += (poc or body[poc_at:poc_end]) + body[poc_end:] + "1"
    nals[index] = escape(to_bytes(sps))
    return b"".join(b"\x00\x00\x00\x01" + n for n in nals)


def scaling_lists(count: int) -> str:
    """seq_scaling_matrix_present_flag and ``count`` lists of each kind: absent, the default
    (a first delta to 0), full with the extreme deltas, and ended early by a delta to 0."""
    rng = random.Random(count)
    out = "1"
    for i in range(count):
        size, kind, last = (16 if i < 6 else 64), i % 4, 8
        if kind == 0:
            out += "0"
            continue
        out += "1"
        if kind == 1:
            out += se(-8)
            continue
        for j in range(size if kind == 2 else size // 2):
            scale = [136, 8, 135][j] if j < 3 else rng.randint(1, 255)  # deltas -128, -128, 127 first
            delta = (scale - last + 128) % 256 - 128
            out += se(delta)
            last = scale
        if kind == 3:
            out += se((-last + 128) % 256 - 128)
    return out


def poc_cycle(count: int, offsets: list[int] | None = None) -> str:
    """pic_order_cnt_type 1 with delta_pic_order_always_zero_flag (so x264's slice headers,
    written for type 2, still read) and a cycle of ``count`` frames."""
    offsets = offsets if offsets is not None else [(-1) ** i * (2**31 - 1 - i) for i in range(count)]
    return ue(1) + "1" + se(-(2**31) + 1) + se(2**31 - 1) + ue(count) + "".join(se(v) for v in offsets)


SPLICES: dict[str, tuple[tuple[int, int], str, dict[str, Any], dict[str, int]]] = {
    "scaling-lists-8-642x362": (
        (642, 362),
        "yuv420p",
        {"scaling": scaling_lists},
        {"seq_scaling_matrix_present_flag": 1, "seq_scaling_list_present_flag[7]": 1},
    ),
    "scaling-lists-12-444-175x143": (
        (175, 143),
        "yuv444p",
        {"scaling": scaling_lists},
        {"chroma_format_idc": 3, "seq_scaling_list_present_flag[11]": 1},
    ),
    "poc-cycle-255-1920x1080": (
        (1920, 1080),
        "yuv420p",
        {"poc": poc_cycle(255)},
        {
            "pic_order_cnt_type": 1,
            "num_ref_frames_in_pic_order_cnt_cycle": 255,
            "offset_for_ref_frame[254]": 2**31 - 1 - 254,
        },
    ),
}


@pytest.mark.parametrize("case", SPLICES)
def test_h264_sps_shapes_x264_does_not_write(case: str, tmp_path: Path) -> None:
    size, pix_fmt, splice, expected = SPLICES[case]
    options = {"preset": "veryfast", "bf": "0"}  # no B-frames: x264 writes pic_order_cnt_type 2
    [key] = encode("libx264", *size, pix_fmt=pix_fmt, options=options, frames=1)
    packet = splice_sps(key, **splice)
    assert picture_size("h264", packet) == size
    path = tmp_path / "out.h264"
    path.write_bytes(packet)
    check_ffmpeg(path, size, expected)


@pytest.fixture(scope="module")
def h264_key() -> bytes:
    [key] = encode("libx264", 176, 144, options={"preset": "veryfast", "bf": "0"}, frames=1)
    return key


@pytest.mark.parametrize("count", [256, 2**20, 2**32 - 2, 2**32 - 1], ids=["256", "2^20", "2^32-2", "33-bit-code"])
def test_h264_an_absurd_poc_cycle_is_refused_at_once(count: int, h264_key: bytes, tmp_path: Path) -> None:
    """More than the 255 frames the specification allows is refused before any is read, as
    is a code of more than 31 leading zeros."""
    packet = splice_sps(h264_key, poc=poc_cycle(count, offsets=[1] * 300))
    started = time.perf_counter()
    assert picture_size("h264", packet) is None
    assert time.perf_counter() - started < 0.05
    assert picture_size("h264", splice_sps(h264_key, poc=poc_cycle(255, offsets=[1] * 255))) == (176, 144)
    assert picture_size("h264", splice_sps(h264_key, poc=poc_cycle(255, offsets=[1] * 254))) is None
    if count == 256:  # FFmpeg refuses it too ("poc_cycle_length overflow")
        path = tmp_path / "out.h264"
        path.write_bytes(packet)
        assert ffprobe_video(path, "frame=width,height") == []


def test_h264_reads_the_sps_among_other_nal_units(h264_key: bytes) -> None:
    nals = nal_units(h264_key)
    sps = next(n for n in nals if n[0] & 0x1F == 7)
    others = [n for n in nals if n[0] & 0x1F != 7]
    aud = b"\x09\xf0"
    after_others = b"".join(b"\x00\x00\x01" + n for n in [aud, *others[:2], sps, *others[2:]])
    assert picture_size("h264", after_others) == (176, 144)
    assert picture_size("h264", b"".join(b"\x00\x00\x00\x01" + n for n in others)) is None  # no SPS: not a key frame
    broken = b"\x00\x00\x01" + sps[:4]  # cut after the SPS id: another SPS follows
    assert picture_size("h264", broken + b"\x00\x00\x01" + sps) == (176, 144)
    assert picture_size("h264", broken * 3 + b"\x00\x00\x01" + sps) == (176, 144)
    assert picture_size("h264", broken * 4 + b"\x00\x00\x01" + sps) is None  # only the first 4 SPSs are tried
    assert picture_size("h264", b"\x00\x00\x01" + bytes([sps[0] | 0x80]) + sps[1:]) is None  # forbidden_zero_bit


def test_h264_several_sps_give_the_largest(h264_key: bytes) -> None:
    # A size guard reads this: a small SPS placed before a large one must not hide it.
    [large] = encode("libx264", 1280, 720, options={"preset": "ultrafast", "bf": "0"}, frames=1)
    small_sps = next(n for n in nal_units(h264_key) if n[0] & 0x1F == 7)
    assert picture_size("h264", b"\x00\x00\x01" + small_sps + large) == (1280, 720)
    assert picture_size("h264", large + b"\x00\x00\x01" + small_sps) == (1280, 720)


# -- every input ----------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["video/VP8", "VP8", "vp8", "video/vp8"])
def test_codec_names_in_any_case(codec: str) -> None:
    assert picture_size(codec, b"\x50\x00\x00\x9d\x01\x2a\x40\x01\xf0\x00") == (320, 240)


@pytest.mark.parametrize("codec", ["video/AV1", "video/H265", "audio/opus", "", "vp8 ", "video/VP8;x=1"])
def test_codecs_it_does_not_read_give_none(codec: str) -> None:
    assert picture_size(codec, b"\x50\x00\x00\x9d\x01\x2a\x40\x01\xf0\x00") is None


def test_bytes_bytearray_and_memoryviews_read_alike(h264_key: bytes) -> None:
    for codec, key in [("h264", h264_key), ("vp8", encode("libvpx", 98, 76, options=VPX_FAST, frames=1)[0])]:
        expected = picture_size(codec, key)
        assert expected is not None
        assert picture_size(codec, bytearray(key)) == expected
        assert picture_size(codec, memoryview(key)) == expected
        assert picture_size(codec, memoryview(b"\xff" * 7 + key)[7:]) == expected
        interleaved = bytes(b for pair in zip(key, b"\xff" * len(key), strict=True) for b in pair)
        assert picture_size(codec, memoryview(interleaved)[::2]) == expected  # not contiguous
        assert picture_size(codec, memoryview(key + bytes(-len(key) % 4)).cast("I")) == expected


GARBAGE = [
    b"",
    b"\x00",
    b"\xff" * 100,
    bytes(1000),
    b"\x00\x00\x01",
    b"\x00\x00\x00\x01",
    b"\x00\x00\x01\x67",
    b"\x00\x00\x01\x67\x64\x00\x1f",
    b"\x00\x00\x01" * 1000,
    b"\x00\x00\x01\x67" + b"\x00" * 100,
    b"\x00\x00\x01\x67\x64\x00\x1f" + b"\x00\x00\x03" * 100,
    b"\x9d\x01\x2a",
    b"\x82\x49\x83\x42",
    bytes([0xC8]),
    bytes([0xC0, 0xC0]),
]


@pytest.mark.parametrize("codec", ["vp8", "vp9", "h264"])
def test_garbage_gives_none(codec: str) -> None:
    for data in GARBAGE:
        assert picture_size(codec, data) is None, data[:16]


@pytest.fixture(scope="module")
def key_frames(h264_key: bytes) -> dict[str, tuple[bytes, tuple[int, int]]]:
    return {
        "vp8": (encode("libvpx", 161, 121, options=VPX_FAST, frames=1)[0], (161, 121)),
        "vp9": (encode("libvpx-vp9", 98, 76, pix_fmt="yuv444p", options=VPX_FAST, frames=1)[0], (98, 76)),
        "h264": (h264_key, (176, 144)),
        "h264-scaling": (splice_sps(h264_key, scaling=scaling_lists), (176, 144)),
        "h264-poc-cycle": (splice_sps(h264_key, poc=poc_cycle(16)), (176, 144)),
    }


@pytest.mark.parametrize("case", ["vp8", "vp9", "h264", "h264-scaling", "h264-poc-cycle"])
def test_every_prefix_gives_none_then_the_size(case: str, key_frames: dict[str, tuple[bytes, tuple[int, int]]]) -> None:
    """A header cut short is never read as another size: each prefix gives None until the
    fields are all there, then the size, up to the whole frame."""
    key, size = key_frames[case]
    codec = case.split("-")[0]
    ends = list(range(len(key) + 1))
    if codec == "h264":  # past the SPS and the next NAL unit's start, one in 97 is enough
        dense = key.index(b"\x00\x00\x01", 4) + 64
        ends = ends[:dense] + ends[dense::97] + [len(key)]
    results = [picture_size(codec, key[:end]) for end in ends]
    first = results.index(size)
    assert results[:first] == [None] * first
    assert results[first:] == [size] * (len(results) - first)
    shortest = ends[first]
    if codec == "h264":
        assert shortest < key.index(b"\x00\x00\x01", 4), "the size before the SPS ends"
    elif codec == "vp8":
        assert shortest == 10
    else:
        assert shortest < 16


def check(result: tuple[int, int] | None) -> None:
    if result is not None:
        width, height = result
        assert isinstance(width, int)
        assert isinstance(height, int)
        assert min(width, height) > 0


@pytest.mark.parametrize("codec", ["vp8", "vp9", "h264"])
def test_seeded_random_bytes_and_mutated_headers(
    codec: str, key_frames: dict[str, tuple[bytes, tuple[int, int]]]
) -> None:
    """Random bytes, random tails after each codec's header start, and real headers with
    bits flipped: a few thousand cases, each read in well under a millisecond."""
    rng = random.Random(f"picture_size-{codec}")
    starts = [
        b"",
        b"\x00\x00\x01\x67",
        b"\x00\x00\x00\x01\x67\x64\x00",
        b"\x50\x00\x00\x9d\x01\x2a",
        b"\x82\x49\x83\x42",
    ]
    reals = [key_frames[c][0][:300] for c in key_frames]
    started = time.perf_counter()
    count = 0
    for _ in range(1500):
        check(picture_size(codec, rng.randbytes(rng.randrange(64))))
        check(picture_size(codec, rng.choice(starts) + rng.randbytes(rng.randrange(200))))
        real = bytearray(rng.choice(reals))
        for _ in range(rng.randrange(1, 4)):
            real[rng.randrange(len(real))] ^= 1 << rng.randrange(8)
        check(picture_size(codec, real))
        count += 3
    assert (time.perf_counter() - started) / count < 0.001


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(
    codec=st.sampled_from(["vp8", "vp9", "h264", "video/H264"]),
    start=st.sampled_from(
        [b"", b"\x00\x00\x01\x67", b"\x00\x00\x01\x67\x64\x00\x1f", b"\x10\x02\x00\x9d\x01\x2a", b"\x82\x49\x83\x42"]
    ),
    tail=st.binary(max_size=300),
)
def test_never_raises(codec: str, start: bytes, tail: bytes) -> None:
    data = start + tail
    result = picture_size(codec, data)
    check(result)
    assert picture_size(codec, memoryview(bytearray(data))) == result


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\x00\x01\x67" * 250_000,
        (b"\x00\x00\x01\x67\x64\x00\x1f" + b"\x00" * 5000) * 200,
        b"\x00\x00\x01\x67\xf4\x00\x1f\x80" + b"\xff" * 1_000_000,
        b"\x00\x00\x01\x65" * 250_000,
    ],
    ids=["1MB-of-SPS-start-codes", "zero-filled-SPSs", "an-SPS-then-1MB", "1MB-of-slices"],
)
def test_a_hostile_megabyte_is_read_quickly(data: bytes) -> None:
    started = time.perf_counter()
    assert picture_size("h264", data) is None
    assert time.perf_counter() - started < 0.1


def longest_scaling_lists(count: int) -> str:
    """Every list present and full, each delta a long code (127 and -127 in turn)."""
    return "1" + "".join(
        "1" + se(127) + (se(-127) + se(127)) * ((16 if i < 6 else 64) // 2 - 1) + se(-127) for i in range(count)
    )


def test_the_longest_sps_is_read_quickly() -> None:
    """The most an SPS can make it read (12 full scaling lists of long codes, a POC cycle of
    255 of the longest codes), in each of the 4 SPSs it tries, all cut short before the size."""
    [key] = encode("libx264", 176, 144, pix_fmt="yuv444p", options={"preset": "veryfast", "bf": "0"}, frames=1)
    packet = splice_sps(key, scaling=longest_scaling_lists, poc=poc_cycle(255))
    assert picture_size("h264", packet) == (176, 144)
    sps = nal_units(packet)[0]
    assert len(sps) > 3000
    started = time.perf_counter()
    assert picture_size("h264", (b"\x00\x00\x01" + sps[:-60]) * 4 + b"\x00\x00\x01" + sps) is None
    assert time.perf_counter() - started < 0.05
