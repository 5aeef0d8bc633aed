"""One recording, from ``start()`` to its ``"stop"`` event: its track inputs, clock,
hand-off, worker thread and its own ordered queue of events.

Each ``start()`` makes one :class:`Recording`. It subscribes one input per track to the
track's fan-out (see :mod:`asyncrec._fanout`), or, for a track received by aiortc that
can be copied, to its receiver's encoded frames (see :mod:`asyncrec._copy`), stamps
frames on its clock (see :mod:`asyncrec._clock`), and hands them to its worker (see
:mod:`asyncrec._worker`).
Its events wait in its own queue in the order the spec gives them: a ``requestData()``
or ``stop()`` reserves the place of its chunk, so an event asked for later (``pause``)
cannot overtake it, and the recorder dispatches recordings strictly one after the other.
The recording tells its recorder what happened through :class:`RecordingOwner` and never
dispatches anything itself.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Protocol

import av

from ._aiortc_tap import tap_for
from ._chunks import Chunk
from ._clock import RecordingClock
from ._container import WorkerSettings
from ._copy import CopyInput, CopyPolicy
from ._encoded import EncodedFrame
from ._encoder_pool import EncoderPool, ProcessWorker
from ._errors import AsyncrecError, QuotaExceededError
from ._events import BlobEvent, Event
from ._fanout import Arrival, TrackFanout, fanout
from ._formats import CODECS, Format
from ._handoff import AUDIO_QUEUE_BYTES, Cut, FrameItem, HandOff, Pause, Resume, Stop, monotonic
from ._stats import InputCounters, TrackStatistics
from ._stream import Track
from ._worker import Failure, Finished, Opened, Output, RecordingWorker, TrackInfo, WorkerCounters

logger = logging.getLogger(__name__)

Hook = Callable[[], None]

#: The longest ``start`` waits for the encoders to open (s): a track that sends nothing
#: for this long does not hold it back.
START_PATIENCE = 1.0


def merge(chunks: list[Chunk]) -> Chunk:
    """One chunk of consecutive ones (the last one's place and request)."""
    first = next((c for c in chunks if c.data), chunks[-1])
    return Chunk(
        b"".join(c.data for c in chunks),
        first.timecode,
        sum(c.duration for c in chunks),
        chunks[-1].request,
        chunks[-1].final,
        keyframe=first.keyframe,
        wallclock=first.wallclock,
    )


class RecordingOwner(Protocol):
    """What a recording reports to its recorder, always on the loop."""

    def _recording_ready(self, recording: Recording) -> None:
        """Events are ready to be dispatched."""

    def _recording_failed(self, recording: Recording, error: AsyncrecError) -> None: ...
    def _recording_tracks_ended(self, recording: Recording) -> None: ...
    def _recording_opened(self, recording: Recording) -> None:
        """The encoders are open: ``recording.mime_type`` names what is written."""

    def _recording_finished(self, recording: Recording) -> None:
        """The worker is done; the ``stop`` event is queued next."""


@dataclass(eq=False, slots=True)
class Slot:
    """A place in a recording's event queue; ``event`` is None while its chunk is still
    to come from the worker (``request``: the requestData() it answers)."""

    event: Event | None
    done: asyncio.Future[None]
    before: Hook | None = None
    request: int | None = None
    #: The ``start`` event, waiting for the encoders to open (see Recording.emit_start).
    start: bool = False


def declared_live(track: Track) -> bool | None:
    """What a track says of its liveness: its ``live`` attribute if it has one; aiortc's
    remote tracks (and ``MediaRelay`` proxies of them) are live; else None (judged by
    its frames)."""
    live = getattr(track, "live", None)
    if isinstance(live, bool):
        return live
    from aiortc.contrib.media import RelayStreamTrack
    from aiortc.rtcrtpreceiver import RemoteStreamTrack

    if isinstance(track, RemoteStreamTrack):
        return True
    if isinstance(track, RelayStreamTrack):
        source = getattr(track, "_source", None)
        return None if source is None else declared_live(source)
    return None


def frame_rate(track: Track) -> Fraction | None:
    """The frame rate a track declares (``frame_rate``), if any."""
    rate = getattr(track, "frame_rate", None)
    if isinstance(rate, int | float | Fraction) and not isinstance(rate, bool) and rate > 0:
        return Fraction(rate).limit_denominator(1001)
    return None


def _domain(track: Track) -> object:
    """The clock domain a track names (``clock_domain``), else the track alone."""
    domain = getattr(track, "clock_domain", None)
    return ("track", id(track)) if domain is None else domain


class TrackInput:
    """A recording's consumer of one track's fan-out: pause, the clock, the hand-off."""

    def __init__(self, recording: Recording, index: int, track: Track) -> None:
        self._recording = recording
        self.index = index
        self.track = track
        self.kind = track.kind
        self.declared = declared_live(track)
        self.counters = InputCounters()
        self.ended = False
        self._current: Arrival | None = None  # the frame being taken
        self._item: FrameItem | None = None  # ...once stamped, waiting for room
        self._samples_seen = 0.0
        self.fanout: TrackFanout | None = None  # set when subscribed

    def attach(self) -> None:
        """Subscribe to the track's fan-out."""
        fan = self.fanout = fanout(self.track)
        fan.subscribe(self)

    def detach(self) -> None:
        if self.fanout is not None:
            self.fanout.unsubscribe(self)

    def push(self, arrival: Arrival) -> asyncio.Future[None] | None:
        recording = self._recording
        if recording.stopping:
            # Arrived after stop(): not part of this recording. (An abandoned recording
            # could not leave the fan-out from __del__; it leaves now.)
            if self.fanout is not None:
                self.fanout.unsubscribe(self)
            return None
        if arrival is not self._current:
            self._current, self._item = arrival, None
            self.counters.frames_in += 1
            if not arrival.valid:
                self.counters.invalid += 1
                if self.counters.invalid == 1:
                    logger.warning("track %s sent %r, not a %s frame; skipped", self.track.id, arrival.frame, self.kind)
                self._current = None
                return None
        if self._item is None:
            realtime = self.declared is True or (self.declared is None and arrival.realtime)
            if recording.clock.paused:
                # A real-time source moves on: its paused frames are not kept. A faster
                # one is held back until resume, unless others record it: a paused
                # recorder must not stall them, so it skips instead.
                if realtime or (self.fanout is not None and self.fanout.consumers > 1):
                    self.counters.paused += 1
                    self._current = None
                    return None
                return recording.running()
            self._item = self._stamp(arrival, realtime)
        item = self._item
        if item.droppable:
            self.counters.dropped += recording.handoff.offer(item)
        elif item.realtime and self.kind == "audio" and recording.handoff.overflowing(item):
            # Live audio is never dropped and cannot wait: waiting would pile it up in
            # the source without bound. It goes in (the bound gives way for this one) and
            # the recording stops, keeping everything received.
            recording.handoff.offer(item)
            self._current = self._item = None
            recording.overflowed(self.track.id)
            return None
        else:
            room = recording.handoff.room(item)
            if room is not None:
                return room
        self._current = self._item = None
        return None

    def _stamp(self, arrival: Arrival, realtime: bool) -> FrameItem:
        frame = arrival.frame
        assert isinstance(frame, av.VideoFrame | av.AudioFrame)
        when = arrival.source_time
        if isinstance(frame, av.AudioFrame) and frame.sample_rate:
            if when is None:
                when = self._samples_seen  # audio without timestamps: its sample count is its clock
            self._samples_seen = when + frame.samples / frame.sample_rate
        at = self._recording.clock.stamp(self.index, when, arrival.arrival, realtime, arrival.held)
        return FrameItem(
            self.index,
            frame,
            at,
            arrival.arrival,
            arrival.nbytes,
            realtime,
            droppable=realtime and self.kind == "video",
            blank=getattr(self.track, "enabled", True) is False,
        )

    def flush(self) -> None:
        """The recording stops: a frame taken but still waiting goes in (the hand-off no
        longer bounds); one held back by a pause was not recorded."""
        if self._item is not None:
            self._recording.handoff.offer(self._item)
        elif self._current is not None:
            self.counters.paused += 1
        self._current = self._item = None

    def end(self, failed: bool) -> None:
        if not self.ended:
            self.ended = True
            self._recording.handoff.track_ended(self.index)
            self._recording._input_ended()


class Recording:
    """One recording (see the module docstring)."""

    def __init__(
        self,
        owner: RecordingOwner,
        fmt: Format,
        tracks: list[Track],
        settings: WorkerSettings,
        copy_policy: CopyPolicy | None = None,
        encoder_pool: EncoderPool | None = None,
    ) -> None:
        self._owner = owner
        self._loop = asyncio.get_running_loop()
        self.format = fmt
        self.tracks = tracks
        #: Which tracks received by aiortc may be recorded by copying their frames.
        self.copy_policy = copy_policy or CopyPolicy()
        self.inputs: list[TrackInput | CopyInput] = [self._input(i, track) for i, track in enumerate(tracks)]
        domains = [_domain(t) for t in tracks]
        self.clock = RecordingClock(domains, [i.declared for i in self.inputs])
        self.handoff = HandOff([t.kind for t in tracks], self._loop)
        self.handoff.batch()  # the worker (or the encoder process's feeder) takes frames in batches
        self.counters = WorkerCounters([0] * len(tracks), [0] * len(tracks))
        #: Set while the chunks produced are taken fast enough; cleared by the recorder
        #: when handlers or iterators fall behind, and the worker then takes no frames of
        #: sources that can wait (backpressure, within max_undelivered_bytes).
        self.outflow = threading.Event()
        self.outflow.set()
        infos = [TrackInfo(t.kind, frame_rate(t) if t.kind == "video" else None) for t in tracks]
        args = (fmt, infos, settings, self.handoff, self._post_from_worker, self.counters, self.outflow)
        self._worker: RecordingWorker | ProcessWorker = (
            RecordingWorker(*args) if encoder_pool is None else ProcessWorker(encoder_pool, *args)
        )
        self.slots: deque[Slot] = deque()
        #: Completes once ``stop`` has been dispatched and everything is released.
        self.done: asyncio.Future[None] = self._loop.create_future()
        self.stopping = False
        self.finished = False
        #: An error has been reported (the first one is the one users see).
        self.failed = False
        #: The ``stop`` event has gone to the dispatcher.
        self.stop_queued = False
        self._running: asyncio.Future[None] | None = None  # pending while paused
        self._tail: list[Chunk] = []  # chunks cut after stop(), for the final one
        self._final_only = False
        #: RFC 6381 strings of what is recorded, once the encoders are open.
        self.codecs: list[str] | None = None
        self.video_size: tuple[int, int] | None = None
        #: ``start`` has reached the handlers (and set the recorder's mimeType).
        self.start_dispatched = False
        self._start_timer: asyncio.TimerHandle | None = None
        self.chunks_out = 0
        self.bytes_out = 0

    def _input(self, index: int, track: Track) -> TrackInput | CopyInput:
        """The track's frames copied if it is received by aiortc and the policy allows
        its kind (the codec is judged on its first frame), else decoded frames."""
        codecs = self.copy_policy.video if track.kind == "video" else self.copy_policy.audio
        tap = tap_for(track) if codecs else None
        return TrackInput(self, index, track) if tap is None else CopyInput(self, index, track, tap)

    # -- lifetime -----------------------------------------------------------------------------
    def start(self) -> None:
        """Start the worker and subscribe to every track."""
        self._worker.start()
        for track_input in self.inputs:
            track_input.attach()

    def transcode(self, index: int, frame: EncodedFrame | None = None) -> None:
        """Record track ``index`` by decoding it after all (its codec or picture cannot be
        copied, or the worker wrote the header without it). Decoding starts with the
        frame being handed on (``frame``), so nothing is lost by the switch."""
        old = self.inputs[index]
        if not isinstance(old, CopyInput) or self.stopping:
            return
        if frame is not None:
            logger.info(
                "track %s: %s %s is transcoded (the recorder's type or options do not allow copying it)",
                old.track.id,
                frame.kind,
                frame.codec,
            )
        old.detach()
        old.tap.want_decoded()
        self.handoff.bytes_only(index, False)
        new = self.inputs[index] = TrackInput(self, index, old.track)
        new.attach()

    def stop(self, *, final_only: bool = True) -> None:
        """Stop taking frames; the worker encodes what it has, closes the file and reports.
        Idempotent.

        ``final_only``: everything not yet delivered comes in one final chunk, as after the
        spec's ``stop()`` or an error. When the tracks simply ended (False), the frames
        taken before keep their chunk rhythm (a file read faster than it is encoded).
        """
        if self.stopping:
            self._final_only = self._final_only or final_only
            return
        self.stopping = True
        self._final_only = final_only
        self.outflow.set()  # the worker finishes whatever the backlog
        self.handoff.close()
        for track_input in self.inputs:
            track_input.flush()
            track_input.detach()
        self._wake_running()
        self.handoff.control(Stop(self._video_end()))

    def overflowed(self, track_id: str) -> None:
        """Live audio of ``track_id`` outran the worker by its whole bound: the recording
        fails (later in this loop turn: the fan-out is delivering) and stops."""
        if not self.stopping:
            error = QuotaExceededError(
                f"live audio of track {track_id} is {AUDIO_QUEUE_BYTES} bytes ahead of the encoder; recording stopped"
            )
            self._loop.call_soon(self._owner._recording_failed, self, error)

    def abandon(self) -> None:
        """Tell the worker to finish without touching the loop (from ``__del__``, or a
        loop that is shutting down)."""
        if not self.stopping:
            self.stopping = True
            self.outflow.set()
            self.handoff.close()
            self.handoff.control(Stop(self._video_end()))

    def pause(self) -> None:
        self.clock.pause(monotonic())
        self.handoff.control(Pause())

    def resume(self) -> None:
        self.clock.resume(monotonic())
        self._wake_running()
        self.handoff.control(Resume())

    def running(self) -> asyncio.Future[None]:
        """A future that completes on resume (or stop)."""
        if self._running is None or self._running.done():
            self._running = self._loop.create_future()
        return self._running

    def _wake_running(self) -> None:
        if self._running is not None and not self._running.done():
            self._running.set_result(None)

    def _video_end(self) -> float | None:
        """Where the video ends on the recording's clock (s): audio that went quiet before
        it is padded with silence up to it (a muted peer), and never past it (a peer that
        vanished)."""
        ends = [self.clock.last_time(i) for i, t in enumerate(self.tracks) if t.kind == "video"]
        known = [end for end in ends if end is not None]
        return max(known) if known else None

    def _input_ended(self) -> None:
        if all(i.ended for i in self.inputs) and not self.stopping:
            self._owner._recording_tracks_ended(self)

    # -- events ---------------------------------------------------------------------------------
    def emit(self, event: Event, before: Hook | None = None) -> asyncio.Future[None]:
        """Queue ``event`` after everything queued so far."""
        slot = Slot(event, self._loop.create_future(), before)
        self.slots.append(slot)
        self._owner._recording_ready(self)
        return slot.done

    def emit_start(self, before: Hook) -> asyncio.Future[None]:
        """Queue ``start``; it is dispatched once the encoders are open (so ``mimeType``
        can name their profile and level), or after ``START_PATIENCE`` if no track sends
        a frame by then, or when the recording ends or fails first."""
        slot = Slot(None, self._loop.create_future(), before, start=True)
        self.slots.append(slot)
        self._start_timer = self._loop.call_later(START_PATIENCE, self._release_start)
        return slot.done

    def _release_start(self) -> None:
        if self._start_timer is not None:
            self._start_timer.cancel()
            self._start_timer = None
        slot = next((slot for slot in self.slots if slot.start), None)
        if slot is not None and slot.event is None:
            slot.event = Event("start")
            self._owner._recording_ready(self)

    @property
    def mime_type(self) -> str:
        """The type recorded: full codec strings once the encoders are open; before, the
        codecs chosen, those of the tracks being copied included."""
        if self.codecs is not None:
            return self.format.with_codecs(self.codecs)
        fmt = self.format
        for track_input in self.inputs:
            if isinstance(track_input, CopyInput) and track_input.codec is not None:
                spec = CODECS[track_input.codec]
                fmt = replace(fmt, video=spec) if spec.kind == "video" else replace(fmt, audio=spec)
        return fmt.mime_type

    def emit_error(self, event: Event) -> None:
        """Queue an ``error``: before ``stop`` if that is already queued (a sink that
        failed on the final chunk), else after everything queued so far."""
        slot = Slot(event, self._loop.create_future())
        if self.slots and self.slots[-1].event is not None and self.slots[-1].event.type == "stop":
            self.slots.insert(len(self.slots) - 1, slot)
        else:
            self.slots.append(slot)
        self._owner._recording_ready(self)

    def request_data(self, request: int) -> asyncio.Future[None]:
        """Reserve the place of a requested chunk and ask the worker for it."""
        slot = Slot(None, self._loop.create_future(), request=request)
        self.slots.append(slot)
        self.handoff.control(Cut(request))
        return slot.done

    def _place_chunk(self, chunk: Chunk) -> None:
        if chunk.request is not None:
            for slot in self.slots:
                if slot.event is None and slot.request == chunk.request:
                    slot.event = self._blob(chunk)
                    return
        pending = next((n for n, slot in enumerate(self.slots) if slot.event is None and not slot.start), None)
        if pending is not None:
            # Data the worker produced before a requested chunk comes before it.
            self.slots.insert(pending, Slot(self._blob(chunk), self._loop.create_future()))
            return
        if self.stopping and self._final_only and not chunk.final:
            # After stop() everything left goes into the one final chunk, as the spec
            # says (the worker still encodes the frames taken before stop()).
            self._tail.append(chunk)
            return
        if self._tail:
            chunk = merge([*self._tail, chunk])
            self._tail.clear()
        self.slots.append(Slot(self._blob(chunk), self._loop.create_future()))

    def _blob(self, chunk: Chunk) -> BlobEvent:
        event = BlobEvent(
            "dataavailable",
            chunk.data,
            chunk.timecode,
            sequence=self.chunks_out,
            duration=chunk.duration,
            keyframe=chunk.keyframe,
            wallclock=chunk.wallclock,
        )
        self.chunks_out += 1
        self.bytes_out += len(chunk.data)
        return event

    # -- worker results -------------------------------------------------------------------------
    def _post_from_worker(self, outputs: list[Output]) -> None:
        """Called on the worker thread: one hop to the loop per batch."""
        try:
            self._loop.call_soon_threadsafe(self._on_outputs, outputs)
        except RuntimeError:
            logger.warning("event loop closed while recording; %d results lost", len(outputs))

    def _on_outputs(self, outputs: list[Output]) -> None:
        for output in outputs:
            if isinstance(output, Chunk):
                self._place_chunk(output)
            elif isinstance(output, Opened):
                self.codecs = output.codecs
                self.video_size = output.video_size
                for index in output.encoded:
                    self.transcode(index)  # no frame in time to copy: its stream encodes
                self._release_start()
                self._owner._recording_opened(self)
            elif isinstance(output, Failure):
                self._release_start()
                self._owner._recording_failed(self, output.error)
            elif isinstance(output, Finished):
                self._finish()
        self._owner._recording_ready(self)

    def _finish(self) -> None:
        self.stop(final_only=False)  # the worker may have finished by itself after a failure
        self._worker.join()  # it has reported Finished: this returns at once
        self._release_start()
        for slot in self.slots:
            if slot.event is None:  # a request the worker could not answer
                slot.event = self._blob(Chunk(b"", 0.0, 0.0))
        self.finished = True
        self._owner._recording_finished(self)
        self.slots.append(Slot(Event("stop"), self.done))

    # -- statistics ------------------------------------------------------------------------------
    def track_statistics(self) -> tuple[TrackStatistics, ...]:
        return tuple(
            TrackStatistics(
                id=track_input.track.id,
                kind=track_input.kind,
                frames_in=track_input.counters.frames_in,
                frames_encoded=self.counters.encoded[i],
                frames_dropped=track_input.counters.dropped + self.counters.dropped[i],
                frames_paused=track_input.counters.paused,
                frames_invalid=track_input.counters.invalid,
                copied=isinstance(track_input, CopyInput) and track_input.copying,
                frames_lost=track_input.counters.lost,
                gaps=track_input.counters.gaps,
            )
            for i, track_input in enumerate(self.inputs)
        )

    @property
    def queue_depth(self) -> int:
        return self.handoff.depth()
