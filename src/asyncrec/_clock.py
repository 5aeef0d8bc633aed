"""The media clock: where each frame goes on a recording's timeline, and whether a source
runs at real time.

The rule (GStreamer's running time is the model: a base time, segments, pauses):

* **Timestamps are the truth.** A frame's place on the recording's timeline comes from
  its own timestamp (``pts * time_base``), never from when it happened to arrive, so a
  file read at full speed and a camera give the same timeline.
* **One origin per clock domain.** Tracks whose timestamps share an origin (the tracks of
  one file, of one demuxed input) form a *clock domain*; a track names its domain with a
  ``clock_domain`` attribute (asyncrec's file and device tracks do). The first frame of a
  domain fixes the domain's origin on the recording's clock, so every track of the
  domain keeps its offset to the others, at any reading pace (a file whose video starts
  1 s after its audio is recorded that way). A track that names no domain is a domain of
  its own: aiortc's remote tracks are, since RTP timestamps start at random values.
* **The recording's clock** starts (0) at the first frame of any track; it counts wall
  time for sources that run at real time, minus the paused spans. A domain's origin is
  placed at the recording's clock time when its first frame arrives, or at 0 for a track
  that says it is not live (``live = False``: when a source that makes frames as fast as
  it can delivers its first one means nothing); the worker later shifts the whole
  recording so that its earliest frame is at 0.
* **Discontinuities** (a timestamp going backwards, or jumping forwards by more than
  ``MAX_JUMP``; looping files, restarted sources, RTP wrap-around) re-anchor that track:
  it goes on one frame spacing after its last frame, or at the recording's clock if it
  runs at real time and that is later. Frames that arrive late (a busy machine, a
  network) keep their timestamps: lateness is not a discontinuity.
* **Frames without timestamps** are placed at their arrival (real-time tracks), or one
  frame spacing after the track's last frame (1/30 s for video when they come faster
  than real time); audio without timestamps is clocked by its sample count (the
  recording does that before stamping).
* **Pauses.** Frames of a real-time source that arrive while paused are not recorded;
  the paused span is left out of the timeline. A source faster than real time is held
  back while paused instead, so nothing of it is skipped.
* Frames of one track are strictly increasing, by at least ``MIN_STEP``.

:class:`Pace` judges, frame by frame, whether a source runs ahead of real time (see
:mod:`asyncrec._fanout`, which owns one per track).
"""

from __future__ import annotations

from dataclasses import dataclass

#: A forward jump larger than this between two frames of a track is a discontinuity.
MAX_JUMP = 5.0
#: The smallest step between two frames of a track (the WebM time base is 1 ms).
MIN_STEP = 0.001
#: The spacing given to frames without timestamps that come faster than real time.
DEFAULT_STEP = 1 / 30
#: Frames without timestamps closer than this are not taken as arriving at real time.
MIN_REALTIME_STEP = 0.005
#: A frame that arrives this much earlier than real time allows is ahead (seconds).
AHEAD_TOLERANCE = 0.010
#: A source this far behind its own timeline is not running at real time (seconds).
BEHIND_LIMIT = 1.0


class Pace:
    """Judges each frame of one source: ahead of real time, or at it.

    The reference is the earliest-consistent origin of the source's timeline on the wall
    clock: ``min(arrival - held - source_time)`` over the frames so far, where ``held`` is
    the time the reader itself spent holding the source back (backpressure, pause), so a
    fast source held back by a slow encoder is not mistaken for a late one. A frame that
    arrives earlier than that origin predicts (beyond ``AHEAD_TOLERANCE``) comes from a
    source faster than real time; one that arrives more than ``BEHIND_LIMIT`` later than
    predicted comes from a source slower than real time (a slow pipeline, a stalled
    source). Only frames that are neither may be dropped when an encoder falls behind.
    Frames without timestamps cannot be judged and are never taken as real time.
    """

    __slots__ = ("_last_source", "_origin", "held")

    def __init__(self) -> None:
        self._origin: float | None = None
        self._last_source: float | None = None
        #: Seconds the reader has held the source back so far.
        self.held = 0.0

    def realtime(self, source_time: float | None, arrival: float) -> bool:
        """Whether the frame with ``source_time`` (s), arriving at ``arrival`` (monotonic
        s), comes from a source running at real time."""
        if source_time is None:
            return False
        last, self._last_source = self._last_source, source_time
        if last is not None and not 0 <= source_time - last <= MAX_JUMP:
            self._origin = None  # a discontinuity: judge afresh
        offset = arrival - self.held - source_time
        origin = self._origin
        if origin is None or offset < origin:
            self._origin = offset
        if origin is None:
            return False  # the first frame says nothing yet
        return origin - AHEAD_TOLERANCE <= offset <= origin + BEHIND_LIMIT


@dataclass(slots=True)
class _Domain:
    source: float  # the source time of the domain's first frame
    media: float  # its place on the recording's clock


@dataclass(slots=True)
class _TrackClock:
    domain: object
    #: What the track says of its liveness: True, False, or None (judged per frame).
    declared: bool | None
    anchor_source: float | None = None
    anchor_media: float = 0.0
    last_source: float | None = None
    last_media: float | None = None
    last_arrival: float | None = None
    last_step: float = MIN_STEP
    resumed: bool = False


class RecordingClock:
    """One recording's timeline (see the module docstring).

    ``domains[i]`` is the clock domain of track ``i`` (any hashable; tracks with equal
    domains share an origin) and ``live[i]`` whether the track says it is live (True),
    not live (False) or nothing (None: judged per frame).
    """

    def __init__(self, domains: list[object], live: list[bool | None]) -> None:
        self._tracks = [_TrackClock(domain, declared) for domain, declared in zip(domains, live, strict=True)]
        self._domains: dict[object, _Domain] = {}
        self._zero: float | None = None
        self._paused_total = 0.0
        self._paused_at: float | None = None

    @property
    def started(self) -> bool:
        """True once the first frame has arrived."""
        return self._zero is not None

    @property
    def paused(self) -> bool:
        return self._paused_at is not None

    def elapsed(self, now: float) -> float:
        """Wall time recorded so far at ``now`` (0 before the first frame), pauses excluded."""
        if self._zero is None:
            return 0.0
        end = self._paused_at if self._paused_at is not None else now
        return max(0.0, end - self._zero - self._paused_total)

    def last_time(self, track: int) -> float | None:
        """The media time of the last frame of ``track`` stamped so far, or None."""
        return self._tracks[track].last_media

    def pause(self, now: float) -> None:
        if self._paused_at is None:
            self._paused_at = now

    def resume(self, now: float) -> None:
        if self._paused_at is None:
            return
        if self._zero is not None:
            self._paused_total += now - self._paused_at
        self._paused_at = None
        for clock in self._tracks:
            clock.resumed = True

    def stamp(self, track: int, source_time: float | None, arrival: float, realtime: bool, held: float = 0.0) -> float:
        """The media time (s) of a frame of ``track``.

        ``source_time`` is the frame's own timestamp (s) or None; ``arrival`` when it
        arrived (monotonic s); ``realtime`` whether its source runs at real time (a
        declared live track always does); ``held`` how long the reader had held the
        source back before it (s, growing), which is not the source's own spacing.
        """
        if self._zero is None:
            self._zero = arrival
        clock = self._tracks[track]
        realtime = realtime or clock.declared is True
        wall = self.elapsed(arrival)
        if source_time is None:
            media = self._untimed(clock, wall, arrival - held, realtime)
        else:
            if clock.anchor_source is None:
                self._anchor_to_domain(clock, source_time, wall)
            elif (clock.resumed and realtime) or self._discontinuous(clock, source_time):
                # After a pause a real-time source has moved on by the paused span,
                # which the timeline leaves out: it goes on where the recording is.
                clock.anchor_source = source_time
                clock.anchor_media = clock.last_media + clock.last_step if clock.last_media is not None else wall
                if realtime:
                    # Follow the wall clock, but never back over frames already placed.
                    clock.anchor_media = max(wall, clock.anchor_media)
            elif clock.last_source is not None and source_time > clock.last_source:
                clock.last_step = source_time - clock.last_source
            assert clock.anchor_source is not None
            media = clock.anchor_media + (source_time - clock.anchor_source)
            clock.last_source = source_time
        clock.resumed = False
        if clock.last_media is not None and media < clock.last_media + MIN_STEP:
            media = clock.last_media + MIN_STEP
        clock.last_media = media
        clock.last_arrival = arrival - held
        return media

    def _anchor_to_domain(self, clock: _TrackClock, source_time: float, wall: float) -> None:
        domain = self._domains.get(clock.domain)
        if domain is None:
            # A source that says it is not live makes frames as fast as it can: when its
            # first one arrived says nothing of its timeline, which starts with the
            # recording's.
            domain = self._domains[clock.domain] = _Domain(source_time, 0.0 if clock.declared is False else wall)
        clock.anchor_source = domain.source
        clock.anchor_media = domain.media

    def _untimed(self, clock: _TrackClock, wall: float, paced: float, realtime: bool) -> float:
        if clock.last_media is None:
            return wall
        if realtime:
            return wall
        # No timestamps: keep the spacing the frames arrive with when it looks like real
        # time, else one frame spacing (frames made as fast as they can be).
        gap = paced - clock.last_arrival if clock.last_arrival is not None else 0.0
        return clock.last_media + (gap if gap >= MIN_REALTIME_STEP else max(clock.last_step, DEFAULT_STEP))

    @staticmethod
    def _discontinuous(clock: _TrackClock, source_time: float) -> bool:
        if clock.last_source is None:
            return False
        step = source_time - clock.last_source
        return step < 0 or step > MAX_JUMP
