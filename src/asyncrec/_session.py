"""One recording, from ``start()`` to its ``"stop"`` event: readers, hand-off, worker.

The session owns every task and the thread it starts. Readers run on the loop and do
only cheap work (await ``recv()``, stamp the time, queue the frame); the worker thread
does everything PyAV. The session tells its recorder what happened through a small
interface (:class:`SessionOwner`) and never dispatches events itself.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Protocol

import av
from aiortc.mediastreams import MediaStreamError

from ._errors import AsyncrecError
from ._formats import Format
from ._handoff import FrameItem, HandOff, monotonic
from ._stats import TrackStatistics
from ._stream import Track
from ._timeline import Timeline
from ._worker import Chunk, Failure, Finished, Output, RecordingWorker, WorkerCounters, WorkerSettings

logger = logging.getLogger("asyncrec")

#: Frames a video track may have waiting for the worker (live: then the oldest is dropped).
VIDEO_QUEUE = 8
#: Audio frames a track may have waiting (about 5 s at 20 ms); then the reader waits.
AUDIO_QUEUE = 250


class SessionOwner(Protocol):
    """What a session reports to its recorder, always on the loop."""

    def _session_chunk(self, session: Session, chunk: Chunk) -> None: ...
    def _session_failed(self, session: Session, error: AsyncrecError) -> None: ...
    def _session_tracks_ended(self, session: Session) -> None: ...
    def _session_finished(self, session: Session) -> None: ...


def is_live(track: Track) -> bool:
    """Whether frames come at the source's pace (drop when behind) or as fast as they can
    be made (backpressure). Tracks say so with a ``live`` attribute; the default is live,
    as every MediaStreamTrack of the spec is."""
    live = getattr(track, "live", True)
    return live if isinstance(live, bool) else True


@dataclass
class _ReaderCounters:
    frames_in: int = 0
    dropped: int = 0
    paused: int = 0
    invalid: int = 0


class Session:
    """One recording (see the module docstring)."""

    def __init__(
        self,
        owner: SessionOwner,
        fmt: Format,
        tracks: list[Track],
        settings: WorkerSettings,
    ) -> None:
        self._owner = owner
        self._loop = asyncio.get_running_loop()
        self.tracks = tracks
        live = [is_live(t) for t in tracks]
        self._live = live
        self.timeline = Timeline(live)
        capacities = [VIDEO_QUEUE if t.kind == "video" else AUDIO_QUEUE for t in tracks]
        self._handoff = HandOff(capacities, self._loop)
        self._readers_counters = [_ReaderCounters() for _ in tracks]
        self._samples_seen = [0.0] * len(tracks)
        self._worker_counters = WorkerCounters([0] * len(tracks), [0] * len(tracks))
        self._worker = RecordingWorker(
            fmt,
            [t.kind for t in tracks],
            settings,
            self._handoff,
            self._post_from_worker,
            self._worker_counters,
        )
        self._readers: list[asyncio.Task[None]] = []
        self._ended: set[int] = set()
        self._stopping = False
        self._finalizer: asyncio.Task[None] | None = None
        self._running = asyncio.Event()  # cleared while paused
        self._running.set()
        self.chunks_out = 0
        self.bytes_out = 0

    # -- lifetime -----------------------------------------------------------------------------
    def start(self) -> None:
        self._worker.start()
        self._readers = [
            self._loop.create_task(self._read(i, track), name=f"asyncrec-reader-{track.kind}")
            for i, track in enumerate(self.tracks)
        ]

    def stop(self) -> None:
        """Stop reading and ask the worker to flush, close and report. Idempotent."""
        if self._stopping:
            return
        self._stopping = True
        for task in self._readers:
            task.cancel()
        self._handoff.control("stop", self._video_end_ms())

    def pause(self) -> None:
        self.timeline.pause(monotonic())
        self._running.clear()
        self._handoff.control("pause")

    def resume(self) -> None:
        self.timeline.resume(monotonic())
        self._running.set()
        self._handoff.control("resume")

    def request_data(self, request: int) -> None:
        self._handoff.control("cut", request)

    # -- readers (loop) -----------------------------------------------------------------------
    async def _read(self, index: int, track: Track) -> None:
        try:
            await self._read_track(index, track)
        except BaseException:
            if not self._stopping:
                # Cancelled from outside (the loop is shutting down): let the worker
                # finish the file rather than wait forever. The cancellation goes on.
                self.abandon()
            raise

    def _video_end_ms(self) -> int:
        """Where the video ends on the recording's clock (ms; -1 without video): an audio
        track that went quiet before it is padded with silence up to it, so the two end
        together (a muted peer), and never past it (a peer that vanished)."""
        ends = [self.timeline.last_time(i) for i, t in enumerate(self.tracks) if t.kind == "video"]
        known = [end for end in ends if end is not None]
        return round(max(known) * 1000) if known else -1

    def abandon(self) -> None:
        """Ask the worker to finish without touching the loop (safe from ``__del__`` and
        from a loop that is shutting down)."""
        if not self._stopping:
            self._stopping = True
            self._handoff.control("stop", self._video_end_ms())

    async def _read_track(self, index: int, track: Track) -> None:
        counters = self._readers_counters[index]
        expected = av.VideoFrame if track.kind == "video" else av.AudioFrame
        live = self._live[index]
        while getattr(track, "readyState", "live") != "ended":
            if not live:
                # A source that is not live waits while paused instead of being skipped.
                await self._running.wait()
            try:
                frame = await track.recv()
            except MediaStreamError:
                break
            except Exception:
                # A faulty track ends for the recording; the others go on.
                logger.warning(
                    "track %s (%s) failed; recording goes on without it", track.id, track.kind, exc_info=True
                )
                break
            await self._accept(index, track, frame, expected, counters, live)
            # recv() of a source with frames always ready never suspends: let others run.
            await asyncio.sleep(0)
        self._ended.add(index)
        if len(self._ended) == len(self.tracks) and not self._stopping:
            self._owner._session_tracks_ended(self)

    async def _accept(
        self, index: int, track: Track, frame: object, expected: type, counters: _ReaderCounters, live: bool
    ) -> None:
        now = monotonic()
        counters.frames_in += 1
        if not isinstance(frame, expected):
            counters.invalid += 1
            if counters.invalid == 1:
                logger.warning("track %s sent %r, not %s; skipped", track.id, type(frame), expected.__name__)
            return
        assert isinstance(frame, av.VideoFrame | av.AudioFrame)
        source_time = float(frame.pts * frame.time_base) if frame.pts is not None and frame.time_base else None
        if isinstance(frame, av.AudioFrame) and frame.sample_rate:
            if source_time is None:
                # Audio without timestamps: its own sample count is its clock.
                source_time = self._samples_seen[index]
            self._samples_seen[index] = (source_time or 0.0) + frame.samples / frame.sample_rate
        at = self.timeline.stamp(index, source_time, now)
        if at is None:
            counters.paused += 1
            return
        item = FrameItem(index, frame, at, blank=getattr(track, "enabled", True) is False)
        if live and track.kind == "video":
            if self._handoff.offer(item) is not None:
                counters.dropped += 1
        else:
            await self._handoff.put(item)

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
                self.chunks_out += 1
                self.bytes_out += len(output.data)
                self._owner._session_chunk(self, output)
            elif isinstance(output, Failure):
                self._owner._session_failed(self, output.error)
            elif isinstance(output, Finished):
                self._finalizer = self._loop.create_task(self._finalize(), name="asyncrec-finalizer")

    async def _finalize(self) -> None:
        self.stop()  # the worker may have finished by itself after a failure
        self._handoff.close()
        await asyncio.gather(*self._readers, return_exceptions=True)
        self._worker.join()  # it has reported Finished: this returns at once
        self._owner._session_finished(self)

    # -- statistics ------------------------------------------------------------------------------
    def track_statistics(self) -> tuple[TrackStatistics, ...]:
        stats = []
        for i, track in enumerate(self.tracks):
            reader = self._readers_counters[i]
            stats.append(
                TrackStatistics(
                    id=track.id,
                    kind=track.kind,
                    frames_in=reader.frames_in,
                    frames_encoded=self._worker_counters.encoded[i],
                    frames_dropped=reader.dropped + self._worker_counters.dropped_before_open[i],
                    frames_paused=reader.paused,
                    frames_invalid=reader.invalid,
                )
            )
        return tuple(stats)

    @property
    def queue_depth(self) -> int:
        return self._handoff.depth()

    @property
    def av_offset(self) -> float | None:
        return self._worker_counters.av_offset

    @property
    def encoder_busy_time(self) -> float:
        return self._worker_counters.busy
