"""What the passthrough path reads from encoded frames, checked against real encoders'
output (libvpx, libvpx-vp9, libx264, libopus through PyAV) and arbitrary bytes."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from asyncrec._encoded import encoded_frame, h264_parameter_sets, is_key_frame, opus_head, opus_samples


def _video_packets(encoder: str, count: int = 12, **options: str) -> list[av.Packet]:
    ctx = av.CodecContext.create(encoder, "w")
    ctx.width, ctx.height, ctx.pix_fmt = 160, 120, "yuv420p"
    ctx.time_base = Fraction(1, 30)
    ctx.gop_size = 5
    ctx.options = options
    packets: list[av.Packet] = []
    for index in range(count):
        frame = av.VideoFrame.from_ndarray(np.full((180, 160), index * 20 % 255, np.uint8), format="yuv420p")
        frame.pts = index
        packets += ctx.encode(frame)
    return packets + ctx.encode(None)


@pytest.mark.parametrize(
    ("codec", "encoder", "options"),
    [
        ("vp8", "libvpx", {"deadline": "realtime"}),
        ("vp9", "libvpx-vp9", {"deadline": "realtime", "lag-in-frames": "0"}),
        ("avc1", "libx264", {"tune": "zerolatency"}),
    ],
)
def test_key_frames_are_told_apart_as_the_encoder_marked_them(
    codec: str, encoder: str, options: dict[str, str]
) -> None:
    packets = _video_packets(encoder, **options)
    marked = [p.is_keyframe for p in packets]
    assert marked[0]
    assert not all(marked)
    assert [is_key_frame(codec, bytes(p)) for p in packets] == marked


def test_h264_parameter_sets_come_from_the_key_frame() -> None:
    [key, *rest] = [bytes(p) for p in _video_packets("libx264", tune="zerolatency")]
    extradata = h264_parameter_sets(key)
    assert extradata is not None
    assert extradata.startswith(b"\x00\x00\x00\x01\x67")  # the SPS first
    assert b"\x00\x00\x00\x01\x68" in extradata  # then the PPS
    assert h264_parameter_sets(rest[0]) is None  # an inter frame carries none
    frame = encoded_frame("video", "video/H264", 90_000, key, 9000)
    assert (frame.codec, frame.key, frame.size, frame.time) == ("avc1", True, (160, 120), 0.1)


@pytest.mark.parametrize(("duration", "samples"), [("20", 960), ("10", 480), ("60", 2880)])
def test_opus_packet_duration_is_read_from_its_toc(duration: str, samples: int) -> None:
    ctx = av.CodecContext.create("libopus", "w")
    ctx.sample_rate, ctx.layout, ctx.format = 48_000, "stereo", "s16"
    ctx.options = {"frame_duration": duration}
    frame = av.AudioFrame.from_ndarray(np.zeros((1, samples * 2), np.int16), format="s16", layout="stereo")
    frame.sample_rate, frame.pts = 48_000, 0
    packets = [bytes(p) for p in ctx.encode(frame) + ctx.encode(None)]
    assert packets
    assert all(opus_samples(p) == samples for p in packets)


def test_opus_head_is_what_a_decoder_takes() -> None:
    ctx = av.CodecContext.create("opus", "r")
    ctx.extradata = opus_head()
    ctx.open()
    assert ctx.channels == 2


@given(st.binary(max_size=64), st.sampled_from(["vp8", "vp9", "avc1", "opus", "pcmu"]))
def test_arbitrary_bytes_never_raise(data: bytes, codec: str) -> None:
    is_key_frame(codec, data)
    h264_parameter_sets(data)
    opus_samples(data)
    encoded_frame("video", f"video/{codec}", 90_000, data, 0).size  # noqa: B018
