"""Two recorders on one stream, driven by Hypothesis through any sequence of the spec's
calls, track changes, cancellations and ``async with`` exits.

The machine owns one event loop per example and runs each step on it; the teardown stops
everything with a bounded wait and checks what was dispatched:

* methods raise exactly the spec's exceptions (``InvalidStateError`` for ``pause()``,
  ``resume()`` and ``requestData()`` while inactive and for ``start()`` while not
  inactive, ``NotSupportedError`` for ``start()`` on an inactive stream) and nothing else;
* every wait is bounded: a wait that times out is a failure (a hang);
* each recording's events are legal: ``start``, then ``dataavailable``/``pause``/
  ``resume``/``error`` with pauses and resumes alternating, then one final
  ``dataavailable`` and ``stop``; an ``error`` (only ``InvalidModificationError``, after a
  track was added or removed while recording) is followed by exactly ``dataavailable``
  and ``stop``, as the spec fires them; one recorder's recordings never interleave; every
  started recording ends with ``stop``, with the recorder inactive when it arrives
  (unless ``start()`` was called again before it was dispatched); a recorder that was
  recording when a track was added or removed is inactive on the next turn of the loop;
* each ``pause()``/``resume()`` that changed the state gives its event, each
  ``requestData()`` a chunk (and without a timeslice nothing else but the final one);
  every returned awaitable completes; every ``async for`` gets exactly the chunks
  dispatched from its creation up to the next ``stop`` (or ``aclose()``);
* the chunks of a recording, when they hold anything, are one well-formed WebM (walked
  element by element), and in a sampled subset of examples Debian's ffprobe decodes it
  (see ``check_file`` for what counts);
* nothing is left behind: no ``asyncrec-`` thread, no task on the loop, nothing logged
  at WARNING or above by asyncrec, no exception reported to the loop.

The event order is checked after every step; a failure (of a step or of that check) is
kept and raised at the teardown, and no rule has a precondition, so every example draws
the same steps however the threads were scheduled: Hypothesis can replay and shrink a
failure that depends on timing instead of reporting it as flaky.

``ASYNCREC_STATEFUL_EXAMPLES`` sets the number of examples (default 2000);
``ASYNCREC_STATEFUL_DECODE_EVERY`` (default 25) sets the sampling: an example decodes
its files when it draws 0 out of that many (Hypothesis leans towards 0, so in practice
about one example in 8).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from asyncrec import (
    BlobEvent,
    FrameTrack,
    InvalidModificationError,
    InvalidStateError,
    MediaRecorder,
    MediaStream,
    NotSupportedError,
    SampleTrack,
    moving_pattern,
    sine_tone,
)
from conftest import EVENTS, STOP_TIMEOUT, worker_threads
from media_check import EBML_MAGIC, ffprobe_streams

EXAMPLES = int(os.environ.get("ASYNCREC_STATEFUL_EXAMPLES", "1000"))
DECODE_EVERY = max(1, int(os.environ.get("ASYNCREC_STATEFUL_DECODE_EVERY", "25")))
STEPS = 25
#: For the whole run, shrinking a failure included: an example (25 steps) takes about
#: 0.1-0.14 s on 2 cores (1000 in about 2 minutes); shrinking a failure takes a few more.
#: CI runs the default; ASYNCREC_STATEFUL_EXAMPLES=10000 for a deeper search.
TEST_TIMEOUT = max(600, EXAMPLES // 2)

VIDEO_SIZE = (32, 24)
FPS = 30
#: How long one step may take before it counts as a hang (s); any single wait inside a
#: step is bounded by STOP_TIMEOUT.
STEP_TIMEOUT = 3 * STOP_TIMEOUT
#: Tasks (fan-out readers, dispatchers) get this long to finish once everything is closed.
TASK_GRACE = 5.0
MAX_TRACKS = 4
MAX_ITERATIONS = 6

#: Matroska element IDs (with their length markers).
EBML_ID, SEGMENT, INFO, TRACKS, CLUSTER = 0x1A45DFA3, 0x18538067, 0x1549A966, 0x1654AE6B, 0x1F43B675

RECORDERS = st.sampled_from(["A", "B"])
TIMESLICES = st.sampled_from([None, 0, 20, 100, 1000])
KINDS = st.sampled_from(["video", "audio"])
#: Durations of tracks (s); None: until stopped.
DURATIONS = st.sampled_from([None, 0.1, 1.0])
TURNS = st.integers(1, 6)
ACTIONS = st.one_of(
    st.tuples(st.just("start"), TIMESLICES),
    st.tuples(st.just("stop"), st.booleans()),
    st.tuples(st.just("pause")),
    st.tuples(st.just("resume")),
    st.tuples(st.just("requestData"), st.booleans()),
    st.tuples(st.just("sleep"), TURNS),
    st.tuples(st.just("end_track"), st.integers(0, MAX_TRACKS - 1)),
    st.tuples(st.just("add_track"), KINDS),
    st.tuples(st.just("remove_track"), st.integers(0, MAX_TRACKS - 1)),
)


class BoomError(Exception):
    """Raised inside ``async with recorder:`` to leave it by an exception."""


@dataclass(eq=False)
class Seen:
    """One dispatched event, with the recorder's state and the number of successful
    ``start()`` calls when it arrived."""

    event: Any
    state: str
    starts: int


@dataclass(eq=False)
class Expected:
    """What the test did to one recording (one successful ``start()``)."""

    timeslice: int | None
    #: The tracks it records: the first live video and the first live audio track.
    tracks: list[Any]
    pauses: int = 0
    resumes: int = 0
    requests: int = 0
    #: A track was added to or removed from the stream while it was recording or paused.
    track_set_changed: bool = False
    #: ...and by the time the recorder saw it, every track it records had ended.
    ended_before_change: bool = False


@dataclass(eq=False)
class Iteration:
    """One ``async for`` over a recorder, running as a task."""

    #: len(seen) when the iterator was made: it gets the chunks dispatched after that.
    start: int
    #: The recorder had been closed (aclose) and not started since: it ends at once.
    closed: bool
    #: len(seen) when an aclose() of the recorder returned: it ended the iterator.
    end: int | None = None
    task: asyncio.Task[None] | None = None
    chunks: list[BlobEvent] = field(default_factory=list)
    cancelled: bool = False


@dataclass(eq=False)
class Side:
    """One recorder and what the test knows of it."""

    name: str
    recorder: MediaRecorder
    seen: list[Seen] = field(default_factory=list)
    recordings: list[Expected] = field(default_factory=list)
    completions: list[tuple[str, Any]] = field(default_factory=list)
    iterations: list[Iteration] = field(default_factory=list)
    closed: bool = False
    #: Made with independent_chunks=True: each chunk is a file of its own.
    independent: bool = False


class Collect(logging.Handler):
    """Keeps what asyncrec logs at WARNING or above: none of it is expected here."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def bounded(awaitable: Awaitable[Any], what: str, seconds: float = STOP_TIMEOUT) -> Any:
    async def wait() -> Any:
        return await awaitable

    try:
        return await asyncio.wait_for(wait(), seconds)
    except TimeoutError:
        raise AssertionError(f"{what} did not complete within {seconds} s") from None


def ebml_vint(data: bytes, pos: int, what: str, *, marker: bool) -> tuple[int, int, bool]:
    """The EBML variable-length integer at ``pos``: (value, end, all value bits set); an
    element ID keeps its length marker (``marker``), a size does not."""
    assert pos < len(data), f"{what}: cut off at byte {pos}"
    first = data[pos]
    assert first, f"{what}: invalid EBML number at byte {pos}"
    length = 9 - first.bit_length()
    assert pos + length <= len(data), f"{what}: cut off at byte {pos}"
    value = int.from_bytes(data[pos : pos + length], "big")
    bits = 7 * length
    unknown = value & ((1 << bits) - 1) == (1 << bits) - 1
    return (value if marker else value & ((1 << bits) - 1)), pos + length, unknown


def ebml_elements(data: bytes, start: int, end: int, what: str) -> list[tuple[int, int, int]]:
    """The EBML elements from ``start`` to ``end``, each (ID, start of its data, end);
    each must be whole. An element of unknown size (as a live muxer writes the Segment)
    runs to ``end``."""
    elements: list[tuple[int, int, int]] = []
    pos = start
    while pos < end:
        element, pos, _ = ebml_vint(data, pos, what, marker=True)
        size, pos, unknown = ebml_vint(data, pos, what, marker=False)
        stop = end if unknown else pos + size
        assert stop <= end, f"{what}: element {element:#x} at byte {pos} runs past the end"
        elements.append((element, pos, stop))
        pos = stop
    return elements


def segment_children(data: bytes, what: str) -> list[int]:
    """The IDs of the elements of a WebM's Segment: the file must be an EBML header and
    one Segment, every element whole (no chunk cut short, lost or out of place)."""
    top = ebml_elements(data, 0, len(data), what)
    assert [element for element, _, _ in top] == [EBML_ID, SEGMENT], f"{what}: not an EBML header and a Segment"
    _, start, end = top[1]
    return [element for element, _, _ in ebml_elements(data, start, end, what)]


def recorded_data(side: Side) -> list[bytes]:
    """What must be one file each: per recording of ``side``, its concatenated chunks, or
    (independent chunks) each of its non-empty chunks."""
    recordings: list[list[bytes]] = []
    for seen in side.seen:
        if seen.event.type == "start":
            recordings.append([])
        elif isinstance(seen.event, BlobEvent):
            recordings[-1].append(seen.event.data)
    if side.independent:
        return [chunk for chunks in recordings for chunk in chunks if chunk]
    return [b"".join(chunks) for chunks in recordings]


async def turns(count: int) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


class RecorderMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.loop_errors: list[dict[str, Any]] = []
        self.loop.set_exception_handler(lambda loop, context: self.loop_errors.append(context))
        self.log = Collect()
        logging.getLogger("asyncrec").addHandler(self.log)
        self.threads_before = set(worker_threads())
        #: The first failure of a step or an invariant. It is raised at the teardown, so
        #: that every example draws the same steps however the threads were scheduled:
        #: Hypothesis can then replay and shrink a failure that depends on timing.
        self.failure: Exception | None = None
        self.sides: dict[str, Side] = {}
        self.tracks: list[Any] = []  # every track made, to stop them all at the end
        self.in_stream: list[Any] = []  # the stream's tracks, in its order
        self.stream: MediaStream | None = None
        self.realtime = False
        self.durations: dict[str, float | None] = {}
        self.decode = False

    # -- running steps on the machine's loop ----------------------------------------------------
    def run(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run one step on the loop; after a failure, the remaining steps do nothing."""
        if self.failure is not None:
            coro.close()
            return
        try:
            try:
                self.loop.run_until_complete(asyncio.wait_for(coro, STEP_TIMEOUT))
            except TimeoutError:
                raise AssertionError(f"a step did not finish within {STEP_TIMEOUT} s") from None
        except Exception as exc:  # noqa: BLE001 - kept, and raised at the teardown
            self.failure = exc

    def make_track(self, kind: str) -> Any:
        track: Any
        if kind == "video":
            track = FrameTrack(
                moving_pattern(*VIDEO_SIZE), fps=FPS, realtime=self.realtime, duration=self.durations["video"]
            )
        else:
            track = SampleTrack(sine_tone(440), realtime=self.realtime, duration=self.durations["audio"])
        self.tracks.append(track)
        return track

    @initialize(
        # Real-time tracks now and then (their frames come at their pace); otherwise
        # frames come as fast as the recorders take them.
        realtime=st.integers(0, 4).map(lambda n: n == 4),
        video_duration=DURATIONS,
        audio_duration=DURATIONS,
        async_handlers=st.booleans(),
        decode=st.integers(0, DECODE_EVERY - 1).map(lambda n: n == 0),
        independent=st.booleans(),
    )
    def setup(
        self,
        realtime: bool,
        video_duration: float | None,
        audio_duration: float | None,
        async_handlers: bool,
        decode: bool,
        independent: bool,
    ) -> None:
        self.realtime = realtime
        self.durations = {"video": video_duration, "audio": audio_duration}
        self.decode = decode

        async def make() -> None:
            self.in_stream = [self.make_track("video"), self.make_track("audio")]
            self.stream = MediaStream(self.in_stream)
            for name in ("A", "B"):
                # B makes every chunk a file of its own, in half the examples.
                alone = independent and name == "B"
                recorder = MediaRecorder(self.stream, independent_chunks=alone)
                side = self.sides[name] = Side(name, recorder, independent=alone)
                handler = self.async_logger(side) if async_handlers else self.logger(side)
                for event_type in EVENTS:
                    side.recorder.on(event_type, handler)

        self.run(make())

    def logger(self, side: Side) -> Callable[[Any], None]:
        def record(event: Any) -> None:
            side.seen.append(Seen(event, side.recorder.state, len(side.recordings)))

        return record

    def async_logger(self, side: Side) -> Callable[[Any], Awaitable[None]]:
        record = self.logger(side)

        async def record_and_yield(event: Any) -> None:
            record(event)
            await asyncio.sleep(0)

        return record_and_yield

    # -- the actions ------------------------------------------------------------------------------
    def stream_active(self) -> bool:
        return any(track.readyState != "ended" for track in self.in_stream)

    def recorded_tracks(self) -> list[Any]:
        live = [track for track in self.in_stream if track.readyState == "live"]
        chosen = [next((t for t in live if t.kind == kind), None) for kind in ("video", "audio")]
        return [track for track in chosen if track is not None]

    def call(self, side: Side, method: str, timeslice: int | None = None) -> Any:
        """Call one of the recorder's methods; its Completion, or None when it raised
        the exception the spec calls for."""
        recorder = side.recorder
        state = recorder.state
        if method == "start":
            active = self.stream_active()
            tracks = self.recorded_tracks()
            try:
                completion = recorder.start(timeslice)
            except InvalidStateError:
                assert state != "inactive", "start() raised InvalidStateError while inactive"
                return None
            except NotSupportedError:
                assert state == "inactive", "start() raised NotSupportedError while not inactive"
                assert not active, "start() raised NotSupportedError on an active stream"
                return None
            assert state == "inactive", f"start() did not raise while {state}"
            assert active, "start() did not raise on an inactive stream"
            side.recordings.append(Expected(timeslice, tracks))
            side.closed = False
        elif method == "stop":
            completion = recorder.stop()
            assert recorder.state == "inactive", f"stop() left the recorder {recorder.state}"
            if state == "inactive":
                assert completion.done(), "stop() on an inactive recorder returned a pending awaitable"
        else:
            try:
                completion = getattr(recorder, method)()
            except InvalidStateError:
                assert state == "inactive", f"{method}() raised InvalidStateError while {state}"
                return None
            assert state != "inactive", f"{method}() did not raise while inactive"
            current = side.recordings[-1]
            if method == "pause":
                assert recorder.state == "paused"
                if state == "recording":
                    current.pauses += 1
                else:
                    assert completion.done(), "pause() while paused returned a pending awaitable"
            elif method == "resume":
                assert recorder.state == "recording"
                if state == "paused":
                    current.resumes += 1
                else:
                    assert completion.done(), "resume() while recording returned a pending awaitable"
            else:
                assert recorder.state == state
                current.requests += 1
        side.completions.append((method, completion))
        return completion

    async def change_tracks(self, change: Callable[[], None]) -> None:
        """Add or remove a track; a recorder that was recording or paused stops (with an
        error) on the next turn of the loop, at the latest."""
        before = {name: side.recorder.state for name, side in self.sides.items()}
        change()
        await asyncio.sleep(0)
        for name, side in self.sides.items():
            if before[name] != "inactive":
                recording = side.recordings[-1]
                recording.track_set_changed = True
                recording.ended_before_change = all(t.readyState == "ended" for t in recording.tracks)
                assert side.recorder.state == "inactive", f"{name} still {side.recorder.state} after a track set change"

    async def perform(self, side: Side | None, action: tuple[Any, ...]) -> None:
        """One action; ``side``: the recorder it applies to (None for the tracks')."""
        name = action[0]
        if name in ("start", "stop", "requestData", "pause", "resume"):
            assert side is not None
        if name == "start":
            self.call(side, "start", action[1])
        elif name in ("stop", "requestData"):
            completion = self.call(side, name)
            if completion is not None and action[1]:
                await bounded(completion, f"{side.name}.{name}()")
        elif name in ("pause", "resume"):
            self.call(side, name)
        elif name == "sleep":
            await turns(action[1])
        elif name == "end_track":
            if self.in_stream:
                self.in_stream[action[1] % len(self.in_stream)].stop()
        elif name == "add_track":
            if len(self.in_stream) < MAX_TRACKS:
                track = self.make_track(action[1])
                self.in_stream.append(track)
                assert self.stream is not None
                await self.change_tracks(lambda: self.stream.addTrack(track))  # type: ignore[union-attr]
        elif name == "remove_track":
            if self.in_stream:
                track = self.in_stream.pop(action[1] % len(self.in_stream))
                assert self.stream is not None
                await self.change_tracks(lambda: self.stream.removeTrack(track))  # type: ignore[union-attr]
        else:
            raise AssertionError(f"unknown action {action!r}")

    def check_closed(self, side: Side) -> None:
        """After aclose(): inactive, every recording over, every awaitable complete."""
        recorder = side.recorder
        assert recorder.state == "inactive", f"{side.name} is {recorder.state} after aclose()"
        stops = sum(1 for s in side.seen if s.event.type == "stop")
        assert stops == len(side.recordings), (
            f"{side.name}: {stops} stop events for {len(side.recordings)} recordings after aclose()"
        )
        pending = [method for method, completion in side.completions if not completion.done()]
        assert not pending, f"{side.name}: awaitables of {pending} still pending after aclose()"
        self.closed(side)

    def closed(self, side: Side) -> None:
        """aclose() has returned: iterators made from now on end at once, and those still
        open have been ended."""
        side.closed = True
        for iteration in side.iterations:
            if iteration.end is None:
                iteration.end = len(side.seen)

    # -- rules ----------------------------------------------------------------------------------
    @rule(rec=RECORDERS, timeslice=TIMESLICES)
    def start(self, rec: str, timeslice: int | None) -> None:
        self.run(self.perform(self.sides[rec], ("start", timeslice)))

    @rule(timeslice_a=TIMESLICES, timeslice_b=TIMESLICES)
    def start_both(self, timeslice_a: int | None, timeslice_b: int | None) -> None:
        """Both recorders start in the same turn of the loop."""

        async def go() -> None:
            self.call(self.sides["A"], "start", timeslice_a)
            self.call(self.sides["B"], "start", timeslice_b)

        self.run(go())

    @rule(rec=RECORDERS, timeslice=TIMESLICES)
    def stop_and_start(self, rec: str, timeslice: int | None) -> None:
        """stop(); start() in the same turn: two recordings, the first's events first."""

        async def go() -> None:
            self.call(self.sides[rec], "stop")
            self.call(self.sides[rec], "start", timeslice)

        self.run(go())

    @rule(rec=RECORDERS, wait=st.booleans())
    def stop(self, rec: str, wait: bool) -> None:
        self.run(self.perform(self.sides[rec], ("stop", wait)))

    @rule(rec=RECORDERS)
    def pause(self, rec: str) -> None:
        self.run(self.perform(self.sides[rec], ("pause",)))

    @rule(rec=RECORDERS)
    def resume(self, rec: str) -> None:
        self.run(self.perform(self.sides[rec], ("resume",)))

    @rule(rec=RECORDERS, wait=st.booleans())
    def request_data(self, rec: str, wait: bool) -> None:
        self.run(self.perform(self.sides[rec], ("requestData", wait)))

    @rule(count=TURNS)
    def sleep(self, count: int) -> None:
        self.run(turns(count))

    @rule(index=st.integers(0, MAX_TRACKS - 1))
    def end_track(self, index: int) -> None:
        self.run(self.perform(None, ("end_track", index)))

    @rule(kind=KINDS)
    def add_track(self, kind: str) -> None:
        self.run(self.perform(None, ("add_track", kind)))

    @rule(index=st.integers(0, MAX_TRACKS - 1))
    def remove_track(self, index: int) -> None:
        self.run(self.perform(None, ("remove_track", index)))

    @rule(
        rec=RECORDERS,
        method=st.sampled_from(["start", "stop", "pause", "resume", "requestData"]),
        timeslice=TIMESLICES,
        after=st.integers(0, 4),
    )
    def cancel_wait(self, rec: str, method: str, timeslice: int | None, after: int) -> None:
        """Await a method's awaitable in a task and cancel it: the event still comes."""

        async def go() -> None:
            completion = self.call(self.sides[rec], method, timeslice)
            if completion is None:
                return

            async def wait() -> None:
                await completion

            task = asyncio.create_task(wait())
            await turns(after)
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=STOP_TIMEOUT)
            assert task in done, f"a cancelled wait on {method}() did not end"
            assert task.cancelled() or task.exception() is None, f"waiting on {method}(): {task.exception()!r}"

        self.run(go())

    def iterate_in_task(self, side: Side) -> Iteration | None:
        """An ``async for`` over ``side`` in a task (None: enough of them already)."""
        if sum(len(s.iterations) for s in self.sides.values()) >= MAX_ITERATIONS:
            return None
        iterator = aiter(side.recorder)
        iteration = Iteration(len(side.seen), side.closed)

        async def consume() -> None:
            async for chunk in iterator:
                iteration.chunks.append(chunk)

        iteration.task = asyncio.create_task(consume())
        side.iterations.append(iteration)
        return iteration

    @rule(rec=RECORDERS)
    def iterate(self, rec: str) -> None:
        """An ``async for`` that runs until the recorder ends it."""

        async def go() -> None:
            self.iterate_in_task(self.sides[rec])

        self.run(go())

    @rule(rec=RECORDERS, after=TURNS)
    def cancel_iteration(self, rec: str, after: int) -> None:
        async def go() -> None:
            iteration = self.iterate_in_task(self.sides[rec])
            if iteration is None:
                return
            await turns(after)
            assert iteration.task is not None
            iteration.cancelled = iteration.task.cancel()
            done, _ = await asyncio.wait({iteration.task}, timeout=STOP_TIMEOUT)
            assert iteration.task in done, "a cancelled async for did not end"

        self.run(go())

    @rule(rec=RECORDERS, after=TURNS)
    def cancel_aclose(self, rec: str, after: int) -> None:
        """aclose() in a task, cancelled: it still stops and waits, then re-raises."""
        side = self.sides[rec]

        async def go() -> None:
            task = asyncio.create_task(side.recorder.aclose())
            await turns(after)
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=STOP_TIMEOUT)
            assert task in done, f"a cancelled {rec}.aclose() did not end within {STOP_TIMEOUT} s"
            assert task.cancelled() or task.exception() is None, f"{rec}.aclose(): {task.exception()!r}"
            self.check_closed(side)

        self.run(go())

    @rule(
        rec=RECORDERS,
        actions=st.lists(ACTIONS, max_size=5),
        exit=st.sampled_from(["normal", "exception", "cancel"]),
    )
    def async_with(self, rec: str, actions: list[tuple[Any, ...]], exit: str) -> None:  # noqa: A002
        """``async with recorder:`` around a few actions, left normally, by an exception
        or by cancellation."""
        side = self.sides[rec]

        async def go() -> None:
            inside = asyncio.Event()

            async def block() -> None:
                async with side.recorder as recorder:
                    assert recorder is side.recorder
                    for action in actions:
                        await self.perform(side, action)
                    if exit == "exception":
                        raise BoomError
                    if exit == "cancel":
                        inside.set()
                        await asyncio.get_running_loop().create_future()  # until cancelled

            task = asyncio.create_task(block())
            if exit == "cancel":
                entered = asyncio.ensure_future(inside.wait())
                await asyncio.wait({task, entered}, timeout=STEP_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
                entered.cancel()
                task.cancel()
            done, _ = await asyncio.wait({task}, timeout=STOP_TIMEOUT)
            assert task in done, f"leaving async with {rec} did not finish within {STOP_TIMEOUT} s"
            if task.cancelled():
                assert exit == "cancel", f"async with {rec} was cancelled"
            else:
                error = task.exception()
                if exit != "exception" or not isinstance(error, BoomError):
                    if error is not None:
                        raise error
                    assert exit != "exception", f"async with {rec} swallowed the exception"
            self.check_closed(side)

        self.run(go())

    # -- invariants -----------------------------------------------------------------------------
    @invariant()
    def events_so_far_are_legal(self) -> None:
        if self.failure is not None:
            return
        try:
            for side in self.sides.values():
                self.check_events(side, complete=False)
        except Exception as exc:  # noqa: BLE001 - kept, and raised at the teardown
            self.failure = exc

    def check_events(self, side: Side, *, complete: bool) -> None:
        """The events of one recorder; ``complete``: every recording has ended."""
        types = [s.event.type for s in side.seen]
        assert not side.seen or types[0] == "start", f"{side.name}: events before start: {types}"
        starts = [i for i, t in enumerate(types) if t == "start"]
        assert len(starts) <= len(side.recordings), f"{side.name}: more start events than start() calls: {types}"
        if complete:
            assert len(starts) == len(side.recordings), (
                f"{side.name}: {len(starts)} start events for {len(side.recordings)} start() calls: {types}"
            )
        for number, first in enumerate(starts):
            last = number == len(starts) - 1
            end = len(side.seen) if last else starts[number + 1]
            self.check_recording(side, number, side.seen[first:end], complete=complete or not last)

    def check_recording(self, side: Side, number: int, seen: list[Seen], *, complete: bool) -> None:
        expected = side.recordings[number]
        types = [s.event.type for s in seen]
        what = f"{side.name}, recording {number + 1}: {types}"
        assert types[0] == "start", what
        if "stop" in types:
            assert types.index("stop") == len(types) - 1, f"{what}: events after stop"
            assert types[-2:] == ["dataavailable", "stop"], f"{what}: no final chunk before stop"
        if complete:
            assert types[-1] == "stop", f"{what}: no stop before the next start (or at the end)"
        assert set(types) <= set(EVENTS), what
        toggles = [t for t in types if t in ("pause", "resume")]
        assert toggles == ["pause", "resume"] * (len(toggles) // 2) + ["pause"] * (len(toggles) % 2), (
            f"{what}: pause and resume do not alternate"
        )
        pauses, resumes = types.count("pause"), types.count("resume")
        assert pauses <= expected.pauses, f"{what}: more pause events than pause() calls"
        assert resumes <= expected.resumes, f"{what}: more resume events than resume() calls"
        errors = [i for i, t in enumerate(types) if t == "error"]
        assert len(errors) <= 1, f"{what}: more than one error"
        if errors:
            tail = types[errors[0] :]
            assert tail == ["error", "dataavailable", "stop"][: len(tail)], f"{what}: error not followed by data, stop"
            error = seen[errors[0]].event.error
            assert isinstance(error, InvalidModificationError), f"{what}: unexpected error {error!r}"
            assert expected.track_set_changed, f"{what}: {error!r} without a track set change"
        chunks = [s.event for s in seen if s.event.type == "dataavailable"]
        if chunks:
            assert chunks[0].timecode == 0, f"{what}: first chunk's timecode is {chunks[0].timecode}"
        data = b"".join(chunk.data for chunk in chunks)
        if data:
            assert data.startswith(EBML_MAGIC), f"{what}: the first non-empty chunk does not start with the header"
        if not complete:
            return
        assert pauses == expected.pauses, f"{what}: {expected.pauses} pause() calls changed the state"
        assert resumes == expected.resumes, f"{what}: {expected.resumes} resume() calls changed the state"
        if expected.track_set_changed and not errors:
            # Only a recording that had already stopped by itself (every track it records
            # had ended) may miss the error.
            assert expected.ended_before_change, f"{what}: no InvalidModificationError after a track set change"
        if expected.timeslice is None:
            assert len(chunks) == expected.requests + 1, f"{what}: {expected.requests} requestData() calls"
        else:
            assert len(chunks) >= expected.requests + 1, f"{what}: {expected.requests} requestData() calls"
        stop = seen[-1]
        if stop.starts == number + 1:  # no start() since: the recorder must be inactive
            assert stop.state == "inactive", f"{what}: state {stop.state} at stop"

    def check_file(self, side: Side, number: int, data: bytes, directory: Path | None) -> None:
        """A recording's chunks as one file (``directory``: decode it there).

        Every non-empty recording is walked as EBML: a whole EBML header, then one Segment
        whose elements are all complete (no chunk cut short or out of place). What counts as
        decoding, in the sampled examples: a recording with media in it (a Cluster) must be
        read by Debian's ffprobe without error, show at least one stream and decode at
        least one frame. A recording whose frames never reached the muxer (its tracks
        ended, or it stopped or failed, before a frame was muxed) is the header alone, and
        FFmpeg cannot open a live WebM that has no Cluster yet (Debian's ffprobe and PyAV
        both fail on the first 462 bytes of any good recording here): it must hold Info
        and Tracks, and is not decoded. Zero bytes (nothing was ever muxed) is fine.
        """
        unit = "chunk" if side.independent else "recording"
        what = f"{side.name}, {unit} {number + 1} ({len(data)} bytes)"
        children = segment_children(data, what)
        if CLUSTER not in children:
            assert {INFO, TRACKS} <= set(children), f"{what}: a header without Info and Tracks: {children}"
            return
        if directory is None:
            return
        path = directory / f"{side.name}{number + 1}.webm"
        path.write_bytes(data)
        streams = ffprobe_streams(path)
        assert streams, f"{what}: ffprobe finds no stream"
        frames = sum(s["nb_read_frames"] or 0 for s in streams)
        assert frames > 0, f"{what}: ffprobe decodes no frame: {streams}"

    # -- teardown -------------------------------------------------------------------------------
    async def shutdown(self) -> list[str]:
        problems: list[str] = []
        for side in self.sides.values():
            try:
                await asyncio.wait_for(side.recorder.aclose(), STOP_TIMEOUT)
            except TimeoutError:
                problems.append(f"{side.name}.aclose() did not finish within {STOP_TIMEOUT} s")
            except Exception as exc:  # noqa: BLE001 - reported with the others
                problems.append(f"{side.name}.aclose() raised {exc!r}")
            self.closed(side)
        for track in self.tracks:
            track.stop()
        iterations = [it.task for side in self.sides.values() for it in side.iterations if it.task is not None]
        if iterations:
            _, running = await asyncio.wait(iterations, timeout=STOP_TIMEOUT)
            if running:
                problems.append(f"{len(running)} async for loops still running after aclose()")
        others = asyncio.all_tasks() - {asyncio.current_task()}
        if others:
            _, running = await asyncio.wait(others, timeout=TASK_GRACE)
            if running:
                problems.append(f"tasks left running: {sorted(t.get_name() for t in running)}")
                for task in running:
                    task.cancel()
                await asyncio.wait(running, timeout=TASK_GRACE)
        return problems

    def teardown(self) -> None:
        problems: list[str] = []
        try:
            if self.sides:
                problems += self.loop.run_until_complete(self.shutdown())
            else:
                for track in self.tracks:
                    track.stop()
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        finally:
            self.loop.close()
            logging.getLogger("asyncrec").removeHandler(self.log)
            for thread in worker_threads():
                if thread not in self.threads_before:
                    thread.join(5.0)
        leaked: list[threading.Thread] = [t for t in worker_threads() if t not in self.threads_before and t.is_alive()]
        if self.failure is not None:
            raise self.failure  # everything is released: now report the first failure
        # A hang first; then what was dispatched (a failure seen there during a step is
        # reported from the same line, so a timing-dependent one keeps one origin); then
        # what was left behind.
        assert not problems, "; ".join(problems)
        directory = Path(tempfile.mkdtemp(prefix="asyncrec-stateful-")) if self.decode else None
        try:
            for side in self.sides.values():
                assert side.recorder.state == "inactive", f"{side.name} is {side.recorder.state} at the end"
                self.check_events(side, complete=True)
                pending = [method for method, completion in side.completions if not completion.done()]
                assert not pending, f"{side.name}: awaitables of {pending} never completed"
                self.check_iterations(side)
                for number, data in enumerate(recorded_data(side)):
                    if data:
                        self.check_file(side, number, data, directory)
        finally:
            if directory is not None:
                shutil.rmtree(directory, ignore_errors=True)
        assert not leaked, f"threads left running: {leaked}"
        assert not self.loop_errors, f"the loop reported: {[c.get('message') for c in self.loop_errors]}"
        logged = [f"{r.threadName} {r.name}: {r.getMessage()}" for r in self.log.records]
        assert not logged, f"asyncrec logged: {logged}"

    def check_iterations(self, side: Side) -> None:
        """Each ``async for`` got every chunk dispatched from its creation to the next
        ``stop`` (none if the recorder was closed), a cancelled one a prefix of them."""
        for iteration in side.iterations:
            task = iteration.task
            assert task is not None
            assert task.done()
            if task.cancelled():
                assert iteration.cancelled, f"{side.name}: an async for was cancelled by someone else"
            else:
                assert task.exception() is None, f"{side.name}: async for raised {task.exception()!r}"
            expected: list[Any] = []
            if not iteration.closed:
                for seen in side.seen[iteration.start : iteration.end]:
                    if seen.event.type == "stop":
                        break
                    if seen.event.type == "dataavailable":
                        expected.append(seen.event)
            got = [id(chunk) for chunk in iteration.chunks]
            want = [id(chunk) for chunk in expected]
            what = f"{side.name}: an async for made at event {iteration.start} got {len(got)} of {len(want)} chunks"
            if task.cancelled():
                assert got == want[: len(got)], what
            else:
                assert got == want, what


@pytest.mark.slow
@pytest.mark.timeout(TEST_TIMEOUT)
def test_two_recorders_on_one_stream_through_any_sequence() -> None:
    run_state_machine_as_test(
        RecorderMachine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            derandomize=False,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        ),
    )
