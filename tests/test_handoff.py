"""The bounded hand-off between track inputs and the worker: bounds in bytes, drop policy."""

import asyncio
import threading
from typing import Any

from asyncrec._encoded import EncodedFrame
from asyncrec._handoff import VIDEO_QUEUE_FRAMES, Cut, FrameItem, HandOff, Pause, Stop


def item(track: int, name: str, *, nbytes: int = 100, droppable: bool = False) -> FrameItem:
    frame: Any = name  # the hand-off never looks into frames
    return FrameItem(track, frame, 0.0, 0.0, nbytes, droppable, droppable)


def copied(track: int, name: str, *, droppable: bool = False) -> FrameItem:
    """An encoded frame to copy, named by its data."""
    frame = EncodedFrame("audio" if track else "video", "opus" if track else "vp8", name.encode(), 0, 48000, True)
    return FrameItem(track, frame, 0.0, 0.0, 100, droppable, droppable)


def names(items: list[Any]) -> list[Any]:
    return [
        (i.frame.data.decode() if isinstance(i.frame, EncodedFrame) else i.frame) if isinstance(i, FrameItem) else i
        for i in items
    ]


async def test_real_time_video_drops_its_oldest_frame_when_full_and_counts_it() -> None:
    handoff = HandOff(["video", "audio"], asyncio.get_running_loop())
    for n in range(VIDEO_QUEUE_FRAMES):
        assert handoff.offer(item(0, f"f{n}", droppable=True)) == 0
    assert handoff.room(item(1, "a0")) is None
    assert handoff.offer(item(0, "late", droppable=True)) == 1
    handoff.control(Stop(None))
    taken = names(handoff.take(0))
    assert taken[0] == "f1"  # f0, the oldest, gave way
    assert taken[-2:] == ["late", Stop(None)]
    assert "a0" in taken
    assert handoff.depth() == 0


async def test_the_bound_is_in_bytes_and_one_frame_always_fits() -> None:
    handoff = HandOff(["video"], asyncio.get_running_loop())
    huge = 64 * 1024 * 1024
    assert handoff.room(item(0, "huge", nbytes=huge)) is None  # bigger than the bound, alone: taken
    waiter = handoff.room(item(0, "next", nbytes=10))
    assert waiter is not None  # the queue is over its bytes: wait
    assert handoff.queued_bytes() == huge
    handoff.take(0)
    await asyncio.wait_for(waiter, 5)


async def test_frames_that_must_not_be_dropped_make_the_input_wait_for_the_worker() -> None:
    loop = asyncio.get_running_loop()
    handoff = HandOff(["video"], loop)
    for n in range(VIDEO_QUEUE_FRAMES):
        assert handoff.room(item(0, f"f{n}")) is None
    waiter = handoff.room(item(0, "more"))
    assert waiter is not None
    # Droppable frames cannot push out frames that must not be dropped.
    assert handoff.offer(item(0, "live", droppable=True)) == 0
    taken: list[Any] = []
    worker = threading.Thread(target=lambda: taken.extend(handoff.take(1.0)))
    worker.start()
    await asyncio.wait_for(waiter, 5)
    await asyncio.to_thread(worker.join)
    assert names(taken) == [f"f{n}" for n in range(VIDEO_QUEUE_FRAMES)] + ["live"]


async def test_close_lifts_the_bound_and_wakes_waiting_inputs() -> None:
    handoff = HandOff(["audio"], asyncio.get_running_loop())
    assert handoff.room(item(0, "a", nbytes=9 * 1024 * 1024)) is None
    waiter = handoff.room(item(0, "b"))
    assert waiter is not None
    handoff.close()
    await asyncio.wait_for(waiter, 5)
    assert handoff.room(item(0, "b")) is None


async def test_take_times_out_empty_and_control_messages_keep_order() -> None:
    handoff = HandOff(["audio"], asyncio.get_running_loop())
    assert handoff.take(0.01) == []
    handoff.control(Cut(7))
    handoff.control(Pause())
    assert handoff.take(None) == [Cut(7), Pause()]


async def test_while_frames_flow_they_wait_for_the_worker_s_next_look() -> None:
    """Batching: a frame to copy wakes the worker only after a quiet spell or when its track
    is half way to its bound; a control message and a frame to encode always do; the rest
    the worker takes at its next look, at most a window later."""
    handoff = HandOff(["video", "audio"], asyncio.get_running_loop())
    handoff.batch(0.5)
    wakes = 0
    notify = handoff._cond.notify

    def counting(n: int = 1) -> None:
        nonlocal wakes
        wakes += 1
        notify(n)

    handoff._cond.notify = counting  # type: ignore[method-assign]
    assert handoff.room(copied(1, "a0")) is None
    assert wakes == 1  # the first frame after a quiet spell: at once
    assert names(handoff.take(0)) == ["a0"]
    assert handoff.room(copied(1, "a1")) is None
    assert handoff.room(copied(1, "a2")) is None
    assert wakes == 1  # frames flowing: no wake-up each
    handoff.control(Cut(1))
    assert wakes == 2  # control: at once
    assert names(handoff.take(0)) == ["a1", "a2", Cut(1)]
    for n in range(VIDEO_QUEUE_FRAMES // 2):
        handoff.offer(copied(0, f"v{n}", droppable=True))
    assert wakes == 3  # video half way to its bound: at once, before anything is dropped
    handoff.take(0)

    taken: list[Any] = []
    worker = threading.Thread(target=lambda: taken.extend(handoff.take(None)))
    worker.start()  # looks again within the window, woken or not
    assert handoff.room(copied(1, "a3")) is None
    await asyncio.to_thread(worker.join, 10)
    assert names(taken) == ["a3"]
    assert wakes == 3
    assert handoff.take(0.01) == []  # a look that finds nothing: quiet again
    assert handoff.room(copied(1, "a4")) is None
    assert wakes == 4
    handoff.take(0)
    assert handoff.room(item(1, "decoded")) is None
    assert wakes == 5  # a frame to encode: at once, even while frames to copy flow
