"""The bounded hand-off between readers and the worker."""

import asyncio
import threading

from asyncrec._handoff import ControlItem, FrameItem, HandOff


async def test_live_video_drops_the_oldest_frame_of_its_track() -> None:
    handoff = HandOff([2, 10], asyncio.get_running_loop())
    assert handoff.offer(FrameItem(0, "f0", 0.0)) is None
    handoff.offer(FrameItem(1, "a0", 0.0))
    assert handoff.offer(FrameItem(0, "f1", 0.1)) is None
    dropped = handoff.offer(FrameItem(0, "f2", 0.2))
    assert dropped is not None
    assert dropped.frame == "f0"
    handoff.control("stop")
    items = handoff.take(0)
    assert [getattr(i, "frame", None) or i.command for i in items] == ["a0", "f1", "f2", "stop"]  # type: ignore[union-attr]
    assert handoff.depth() == 0


async def test_put_waits_for_room_and_the_worker_wakes_it() -> None:
    loop = asyncio.get_running_loop()
    handoff = HandOff([1], loop)
    await handoff.put(FrameItem(0, "a", 0.0))
    blocked = asyncio.ensure_future(handoff.put(FrameItem(0, "b", 0.1)))
    await asyncio.sleep(0)
    assert not blocked.done()  # full: the reader waits, nothing is dropped
    taken: list[object] = []
    worker = threading.Thread(target=lambda: taken.extend(handoff.take(1.0)))
    worker.start()
    await asyncio.wait_for(blocked, 5)
    await asyncio.to_thread(worker.join)
    assert [i.frame for i in taken] == ["a"]  # type: ignore[attr-defined]
    assert [i.frame for i in handoff.take(0)] == ["b"]  # type: ignore[union-attr]


async def test_take_times_out_empty_and_control_items_keep_order() -> None:
    handoff = HandOff([1], asyncio.get_running_loop())
    assert handoff.take(0.01) == []
    handoff.control("cut", 7)
    handoff.control("pause")
    assert handoff.take(None) == [ControlItem("cut", 7), ControlItem("pause")]
