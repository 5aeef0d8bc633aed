"""The recording's clock: one zero for all tracks, paused spans removed.

The recorder owns the output timeline; sources' timestamps only describe the spacing of
their own frames. The rule, per track:

* Time zero is the arrival of the first frame of any track, so the file starts at 0 and
  tracks keep their relative offsets.
* ``elapsed`` is the wall time recorded so far: now - zero - time spent paused.
* A frame with a timestamp (``pts`` and ``time_base``) is placed at
  ``anchor + (its time - anchor's source time)``: source spacing is kept exactly, so
  network jitter does not wobble the output. The anchor is the track's first frame, and
  is moved on resume, when the source jumps (backwards, or forwards by more than
  ``MAX_JUMP``; RTP wrap-around and restarted sources do both) and, for live tracks, when
  the source drifts more than ``MAX_DRIFT`` from the wall clock. A live track re-anchors
  at ``elapsed``, or one frame spacing after its last frame if that is later (a burst of
  held-up frames keeps its spacing); a track that is not live (frames as fast as they can
  be made) has no wall clock to follow and goes on one frame spacing after its last frame.
* A frame without a timestamp is placed at ``elapsed`` (live), or one frame spacing
  (its last, else 1/30 s) after the track's last frame (not live).
* Frames of one track are strictly increasing by at least ``MIN_STEP``.
* Frames that arrive while paused are not recorded.
"""

from __future__ import annotations

from dataclasses import dataclass

#: A live source this far from the wall clock is re-anchored to it (seconds).
MAX_DRIFT = 1.0
#: A forward jump larger than this between two frames of a track is a discontinuity.
MAX_JUMP = 5.0
#: The smallest step between two frames of a track (the WebM time base is 1 ms).
MIN_STEP = 0.001
#: The spacing given to frames without timestamps from a source that is not live (30 fps).
DEFAULT_STEP = 1 / 30


@dataclass(slots=True)
class _TrackClock:
    live: bool
    anchor_source: float | None = None
    anchor_media: float = 0.0
    last_source: float | None = None
    last_media: float | None = None
    last_step: float = MIN_STEP
    resumed: bool = False


class Timeline:
    """Stamps frames with their time on the recording's clock (see the module docstring)."""

    def __init__(self, live: list[bool]) -> None:
        self._tracks = [_TrackClock(is_live) for is_live in live]
        self._zero: float | None = None
        self._paused_total = 0.0
        self._paused_at: float | None = None

    @property
    def started(self) -> bool:
        """True once the first frame has arrived."""
        return self._zero is not None

    def elapsed(self, now: float) -> float:
        """Wall time recorded so far at ``now`` (0 before the first frame)."""
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
            clock.anchor_source = None  # the next frame re-anchors at the resume point
            clock.resumed = True

    def stamp(self, track: int, source_time: float | None, now: float) -> float | None:
        """The media time (seconds) of a frame of ``track`` arriving at ``now``.

        ``source_time`` is the frame's own timestamp in seconds, or None. Returns None
        while paused (the frame is not recorded).
        """
        if self._paused_at is not None:
            return None
        if self._zero is None:
            self._zero = now
        clock = self._tracks[track]
        wall = self.elapsed(now)
        if source_time is None:
            if clock.live or clock.last_media is None:
                media = wall
            else:
                # No timestamps and no wall clock to follow: one frame spacing apart.
                media = clock.last_media + max(clock.last_step, DEFAULT_STEP)
        else:
            if clock.anchor_source is None or self._discontinuous(clock, source_time, wall):
                clock.anchor_source = source_time
                if clock.last_media is None:
                    clock.anchor_media = wall
                elif clock.resumed:
                    clock.anchor_media = max(wall, clock.last_media + MIN_STEP)
                elif clock.live:
                    # Follow the wall clock, but never back over frames already placed:
                    # after a burst (frames held up, then delivered at once) the track
                    # goes on at its own spacing instead of piling up 1 ms apart.
                    clock.anchor_media = max(wall, clock.last_media + clock.last_step)
                else:
                    # A source faster than real time has no wall clock to follow: go on
                    # from its last frame with its last spacing.
                    clock.anchor_media = clock.last_media + clock.last_step
            elif clock.last_source is not None and source_time > clock.last_source:
                clock.last_step = source_time - clock.last_source
            media = clock.anchor_media + (source_time - clock.anchor_source)
            clock.last_source = source_time
            clock.resumed = False
        if clock.last_media is not None and media < clock.last_media + MIN_STEP:
            media = clock.last_media + MIN_STEP
        clock.last_media = media
        return media

    @staticmethod
    def _discontinuous(clock: _TrackClock, source_time: float, wall: float) -> bool:
        assert clock.anchor_source is not None
        if clock.last_source is not None:
            step = source_time - clock.last_source
            if step < 0 or step > MAX_JUMP:
                return True
        if clock.live:
            media = clock.anchor_media + (source_time - clock.anchor_source)
            return abs(media - wall) > MAX_DRIFT
        return False
