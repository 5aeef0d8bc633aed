"""Delivery: handlers, on/off, on* attributes, async for, async with, awaitables, cancellation."""

from __future__ import annotations

import asyncio
import logging

import pytest

from asyncrec import BlobEvent, Event, MediaRecorder
from conftest import EventLog, make_stream, worker_threads


async def test_coroutine_handlers_are_awaited_one_at_a_time_in_order() -> None:
    recorder = MediaRecorder(make_stream(duration=0.5))
    trace: list[str] = []

    async def slow(event: Event) -> None:
        trace.append(f"{event.type}:begin")
        await asyncio.sleep(0.02)  # work inside a handler, not synchronisation
        trace.append(f"{event.type}:end")

    def plain(event: Event) -> None:
        trace.append(f"{event.type}:plain")

    for name in ("start", "dataavailable", "stop"):
        recorder.on(name, slow)
        recorder.on(name, plain)
    recorder.start(50)
    await recorder.stop()
    # Every handler of an event finishes before the next handler and the next event.
    for i in range(0, len(trace), 3):
        kind = trace[i].split(":")[0]
        assert trace[i : i + 3] == [f"{kind}:begin", f"{kind}:end", f"{kind}:plain"]
    kinds = [t.split(":")[0] for t in trace[::3]]
    assert kinds[0] == "start"
    assert kinds[-1] == "stop"
    assert set(kinds[1:-1]) == {"dataavailable"}


async def test_handler_exceptions_are_logged_and_recording_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    recorder = MediaRecorder(make_stream(duration=0.5))
    log = EventLog(recorder)

    def broken(event: Event) -> None:
        raise ValueError("bug in a user handler")

    async def broken_async(event: Event) -> None:
        raise KeyError("async bug")

    recorder.ondataavailable = broken
    recorder.on("start", broken_async)
    with caplog.at_level(logging.ERROR, logger="asyncrec"):
        recorder.start(50)
        await log.wait_stopped()
    assert log.types[0] == "start"
    assert log.types[-1] == "stop"
    assert "bug in a user handler" in caplog.text
    assert "async bug" in caplog.text
    assert log.data.startswith(b"\x1a\x45\xdf\xa3")


async def test_on_off_decorator_and_attributes() -> None:
    recorder = MediaRecorder(make_stream(duration=0.3))
    seen: list[str] = []

    @recorder.on("start")
    def on_start(event: Event) -> None:
        seen.append("decorated")

    def removed(event: Event) -> None:
        seen.append("removed")

    recorder.on("start", removed)
    recorder.off("start", removed)
    recorder.off("start", removed)  # unknown handler: ignored
    recorder.onstart = lambda e: seen.append("attribute")
    assert recorder.onstart is not None
    recorder.onstop = lambda e: seen.append("stop-attribute")
    recorder.onstop = None  # removed again
    assert recorder.onstop is None
    with pytest.raises(ValueError, match="unknown event type"):
        recorder.on("bogus", removed)
    with pytest.raises(ValueError, match="unknown event type"):
        recorder.on("bogus")
    with pytest.raises(TypeError):
        recorder.onstart = "not callable"
    await recorder.start()
    await recorder.stop()
    assert seen == ["decorated", "attribute"]


async def test_every_async_for_sees_every_chunk_once() -> None:
    recorder = MediaRecorder(make_stream(duration=1.0, realtime=True))
    handler_chunks: list[bytes] = []
    recorder.ondataavailable = lambda e: handler_chunks.append(e.data)

    async def collect() -> list[BlobEvent]:
        return [event async for event in recorder]

    recorder.start(100)
    first, second = await asyncio.gather(collect(), collect())
    assert recorder.state == "inactive"
    assert len(first) >= 5
    assert [e.data for e in first] == [e.data for e in second] == handler_chunks
    assert all(isinstance(e, BlobEvent) and e.type == "dataavailable" for e in first)


async def test_async_for_started_before_start_waits_for_the_recording() -> None:
    recorder = MediaRecorder(make_stream(duration=0.3))
    iterator = aiter(recorder)
    collector = asyncio.ensure_future(_drain(iterator))
    await asyncio.sleep(0)  # the collector is waiting before anything started
    recorder.start(50)
    chunks = await asyncio.wait_for(collector, 10)
    assert chunks
    assert chunks[0].startswith(b"\x1a\x45\xdf\xa3")


async def _drain(iterator: object) -> list[bytes]:
    return [event.data async for event in iterator]  # type: ignore[attr-defined]


async def test_async_with_stops_and_releases_everything() -> None:
    stream = make_stream(duration=None, realtime=True)
    async with MediaRecorder(stream) as recorder:
        log = EventLog(recorder)
        await recorder.start(100)
        async for _chunk in recorder:
            break
        assert recorder.state == "recording"
    assert recorder.state == "inactive"
    assert log.types[0] == "start"
    assert log.types[-1] == "stop"
    assert not worker_threads()
    current = asyncio.current_task()
    assert [t for t in asyncio.all_tasks() if t is not current] == []


async def test_cancelling_a_recording_task_cleans_up_and_propagates() -> None:
    stream = make_stream(duration=None, realtime=True)
    recorder = MediaRecorder(stream)
    log = EventLog(recorder)
    got_chunk = asyncio.Event()

    async def record() -> None:
        async with recorder:
            recorder.start(50)
            async for _chunk in recorder:
                got_chunk.set()

    task = asyncio.ensure_future(record())
    await asyncio.wait_for(got_chunk.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert recorder.state == "inactive"
    assert log.types[-1] == "stop"
    assert not worker_threads()
    current = asyncio.current_task()
    assert [t for t in asyncio.all_tasks() if t is not current] == []


async def test_cancelling_a_wait_on_stop_does_not_cancel_the_stop() -> None:
    recorder = MediaRecorder(make_stream(duration=None, realtime=True))
    log = EventLog(recorder)
    await recorder.start()
    waiter = asyncio.ensure_future(_await(recorder.stop()))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await log.wait_stopped()
    await recorder.aclose()
    assert log.types == ["start", "dataavailable", "stop"]


async def _await(awaitable: object) -> None:
    await awaitable  # type: ignore[misc]


async def test_awaiting_a_method_inside_a_handler_does_not_deadlock() -> None:
    recorder = MediaRecorder(make_stream(duration=None))
    log = EventLog(recorder)

    async def on_start(event: Event) -> None:
        await recorder.pause()  # cannot be dispatched before this handler returns

    async def on_pause(event: Event) -> None:
        await recorder.stop()

    recorder.onstart = on_start
    recorder.onpause = on_pause
    recorder.start()
    await log.wait_stopped()
    assert log.types == ["start", "pause", "dataavailable", "stop"]
