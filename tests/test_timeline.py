"""The recording's clock."""

import itertools

import pytest

from asyncrec._timeline import MAX_DRIFT, MIN_STEP, Timeline


def test_one_zero_for_all_tracks_and_source_spacing_kept() -> None:
    clock = Timeline([True, True])
    assert clock.stamp(0, 100.0, now=10.0) == 0.0  # the first frame of any track is zero
    assert clock.stamp(1, 5.0, now=10.25) == pytest.approx(0.25)  # audio joins 250 ms later
    # Jittery arrival, regular source spacing: the source spacing wins.
    assert clock.stamp(0, 100.0 + 1 / 30, now=10.06) == pytest.approx(1 / 30)
    assert clock.stamp(1, 5.02, now=10.26) == pytest.approx(0.27)


def test_frames_without_timestamps_use_arrival() -> None:
    clock = Timeline([True])
    assert clock.stamp(0, None, now=1.0) == 0.0
    assert clock.stamp(0, None, now=1.5) == pytest.approx(0.5)


def test_pause_removes_the_paused_span() -> None:
    clock = Timeline([True])
    clock.stamp(0, 0.0, now=0.0)
    assert clock.stamp(0, 2.0, now=2.0) == pytest.approx(2.0)
    clock.pause(now=2.0)
    assert clock.stamp(0, 2.5, now=2.5) is None  # not recorded while paused
    clock.resume(now=3.0)
    assert clock.stamp(0, 3.0, now=3.0) == pytest.approx(2.0 + MIN_STEP)
    assert clock.stamp(0, 5.0, now=5.0) == pytest.approx(4.0, abs=0.01)  # 2 s + 1 s paused + 2 s = 4 s
    assert clock.elapsed(5.0) == pytest.approx(4.0)


@pytest.mark.parametrize(
    "jump", [-50.0, 3600.0, -(2**32) / 90000], ids=["backwards", "an-hour-ahead", "rtp-wraparound"]
)
def test_jumps_do_not_stretch_or_corrupt_the_timeline(jump: float) -> None:
    clock = Timeline([True])
    clock.stamp(0, 1000.0, now=0.0)
    clock.stamp(0, 1001.0, now=1.0)
    after = clock.stamp(0, 1001.0 + jump, now=1.04)
    assert after == pytest.approx(1.04, abs=MAX_DRIFT)
    nxt = clock.stamp(0, 1001.0 + jump + 0.04, now=1.08)
    assert nxt is not None
    assert after is not None
    assert nxt > after


def test_timestamps_strictly_increase() -> None:
    clock = Timeline([False])
    first = clock.stamp(0, 1.0, now=0.0)
    repeat = clock.stamp(0, 1.0, now=0.001)
    assert first is not None
    assert repeat is not None
    assert repeat >= first + MIN_STEP


def test_a_source_faster_than_real_time_keeps_its_spacing() -> None:
    clock = Timeline([False])
    stamps = [clock.stamp(0, i / 30, now=0.0001 * i) for i in range(90)]
    assert stamps[-1] == pytest.approx(89 / 30)
    # A backward jump continues one frame spacing after the last frame.
    assert clock.stamp(0, 0.0, now=0.01) == pytest.approx(90 / 30)


def test_a_burst_of_held_up_frames_keeps_its_spacing() -> None:
    # A second of frames delivered at once (a connection that just came up), then real time.
    clock = Timeline([True])
    stamps = [clock.stamp(0, i / 30, now=10.0 + i * 0.0005) for i in range(45)]
    stamps += [clock.stamp(0, i / 30, now=10.0 + (i - 44) / 30) for i in range(45, 90)]
    steps = [b - a for a, b in itertools.pairwise(stamps)]  # type: ignore[operator]
    assert min(steps) == pytest.approx(1 / 30, abs=0.002)
    assert max(steps) == pytest.approx(1 / 30, abs=0.002)


def test_frames_without_timestamps_from_a_fast_source_get_a_frame_spacing() -> None:
    clock = Timeline([False])
    stamps = [clock.stamp(0, None, now=0.0001 * i) for i in range(30)]
    assert stamps[-1] == pytest.approx(29 / 30)
