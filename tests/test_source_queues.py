"""The sources' building blocks: the per-track frame queue of a reader (drop-oldest when
live, counted) and the one real-time pacer shared by reader threads and generated tracks."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from asyncrec.sources import _reader, _sync
from asyncrec.sources._reader import QUEUE_LIMITS, _Queue, _Reading
from asyncrec.sources._sync import Pacer


def never() -> bool:
    return False


async def test_live_queue_drops_the_oldest_frames_and_counts_them() -> None:
    queue = _Queue("video", live=True, reading=_Reading())
    limit = QUEUE_LIMITS["video"]
    for frame in range(limit + 5):
        queue.put(frame, never)
    assert queue.dropped == 5
    assert list(queue.frames) == list(range(5, limit + 5))
    assert await queue.get() == 5
    queue.put("next", never)  # room again: nothing dropped
    assert queue.dropped == 5


async def test_queue_that_is_not_live_waits_for_room() -> None:
    queue = _Queue("audio", live=False, reading=_Reading())
    limit = QUEUE_LIMITS["audio"]
    for frame in range(limit):
        queue.put(frame, never)
    assert await queue.get() == 0  # this track is read: a full queue waits
    queue.put(limit, never)
    put = threading.Thread(target=queue.put, args=(limit + 1, never))
    put.start()
    await asyncio.sleep(0.2)
    assert put.is_alive(), "put() on a full queue returned without room"
    assert await queue.get() == 1
    await asyncio.to_thread(put.join, 5)
    assert not put.is_alive()
    assert queue.dropped == 0
    assert list(queue.frames)[-1] == limit + 1


def test_full_queue_that_is_not_live_gives_up_on_stop() -> None:
    queue = _Queue("video", live=False, reading=_Reading())
    for frame in range(QUEUE_LIMITS["video"]):
        queue.put(frame, never)
    queue.put("late", lambda: True)
    assert "late" not in queue.frames
    assert queue.dropped == 0


def test_unread_track_of_an_input_being_read_drops_the_oldest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_reader, "UNREAD_GRACE", 0.05)
    reading = _Reading()
    reading.mark()  # another track of the input is being read; this one never is
    queue = _Queue("video", live=False, reading=reading)
    limit = QUEUE_LIMITS["video"]
    for frame in range(limit):
        queue.put(frame, never)
    time.sleep(0.1)
    queue.put(limit, never)
    assert queue.dropped == 1
    assert list(queue.frames) == list(range(1, limit + 1))


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_pacer_counts_from_the_first_media_time(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(_sync.time, "monotonic", clock)
    pacer = Pacer()
    assert pacer.delay(5.0) == 0.0  # the first: due at once, the origin of the others
    assert pacer.delay(5.5) == pytest.approx(0.5)
    clock.now += 0.2
    assert pacer.delay(5.5) == pytest.approx(0.3)
    assert pacer.delay(6.0) == pytest.approx(0.8)
    clock.now += 2.0
    assert pacer.delay(6.0) == 0.0  # late: never negative


def test_pacer_blocking_wait_is_interruptible() -> None:
    pacer = Pacer()
    pacer.delay(0.0)
    interrupt = threading.Event()
    interrupt.set()
    started = time.monotonic()
    pacer.wait_blocking(30.0, interrupt)
    assert time.monotonic() - started < 1.0


async def test_pacer_waits_on_the_loop() -> None:
    pacer = Pacer()
    await pacer.wait(0.0)
    started = time.monotonic()
    await pacer.wait(0.2)
    assert 0.15 <= time.monotonic() - started < 1.0
