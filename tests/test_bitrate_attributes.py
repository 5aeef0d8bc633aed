"""The bitrate attributes as MediaRecorder-bitrate.https.html checks them."""

from __future__ import annotations

import pytest

from asyncrec import MediaRecorder
from conftest import make_stream

EPSILON = 100_000


def test_defaults_are_not_zero() -> None:
    rec = MediaRecorder(make_stream())
    assert rec.audioBitsPerSecond != 0
    assert rec.videoBitsPerSecond != 0


def test_bits_per_second_zero_gives_small_non_zero_targets_and_overrides_the_others() -> None:
    rec = MediaRecorder(make_stream(), bitsPerSecond=0, audioBitsPerSecond=100_000, videoBitsPerSecond=1_000_000)
    assert rec.audioBitsPerSecond != 0
    assert rec.videoBitsPerSecond != 0
    assert rec.audioBitsPerSecond + rec.videoBitsPerSecond == pytest.approx(0, abs=EPSILON)


@pytest.mark.parametrize("total", [500_000, 2_000_000])
def test_bits_per_second_is_shared(total: int) -> None:
    rec = MediaRecorder(make_stream(), bitsPerSecond=total, audioBitsPerSecond=0, videoBitsPerSecond=0)
    assert rec.audioBitsPerSecond != 0
    assert rec.videoBitsPerSecond != 0
    assert rec.audioBitsPerSecond + rec.videoBitsPerSecond == pytest.approx(total, abs=EPSILON)


def test_a_zero_for_one_kind_is_kept() -> None:
    rec = MediaRecorder(make_stream(), audioBitsPerSecond=0)
    assert (rec.audioBitsPerSecond, rec.videoBitsPerSecond != 0) == (0, True)
    rec = MediaRecorder(make_stream(), videoBitsPerSecond=0)
    assert (rec.videoBitsPerSecond, rec.audioBitsPerSecond != 0) == (0, True)


async def test_start_keeps_given_and_default_bitrates() -> None:
    for options in ({}, {"audioBitsPerSecond": 100_000, "videoBitsPerSecond": 1_000_000}, {"bitsPerSecond": 2_000_000}):
        rec = MediaRecorder(make_stream(), **options)  # type: ignore[arg-type]
        before = (rec.audioBitsPerSecond, rec.videoBitsPerSecond)
        rec.start()
        assert (rec.audioBitsPerSecond, rec.videoBitsPerSecond) == before
        await rec.stop()


@pytest.mark.parametrize(("video", "audio"), [(False, True), (True, False)], ids=["audio-only", "video-only"])
async def test_start_gives_everything_to_the_recorded_kind(video: bool, audio: bool) -> None:
    total = 500_000 if audio and not video else 2_000_000
    rec = MediaRecorder(make_stream(video=video, audio=audio), bitsPerSecond=total)
    assert rec.audioBitsPerSecond != 0
    assert rec.videoBitsPerSecond != 0
    rec.start()
    recorded, other = (
        (rec.audioBitsPerSecond, rec.videoBitsPerSecond)
        if audio
        else (
            rec.videoBitsPerSecond,
            rec.audioBitsPerSecond,
        )
    )
    assert recorded == pytest.approx(total, abs=EPSILON)
    assert other == 0
    await rec.stop()
