"""Snapshots of what a recorder has done: ``MediaRecorder.statistics()``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class InputCounters:
    """What a recording's input of one track counts (decoded or copied), read by
    :meth:`MediaRecorder.statistics`."""

    frames_in: int = 0
    dropped: int = 0
    paused: int = 0
    invalid: int = 0
    #: Copied video left out to bridge a gap to the next key frame.
    lost: int = 0
    #: Copied tracks: gaps in what the sender sent (packets lost in the network).
    gaps: int = 0


@dataclass(frozen=True)
class TrackStatistics:
    """One recorded track."""

    id: str
    kind: str
    #: Frames received from the track (paused ones included).
    frames_in: int
    #: Frames handed to the encoder (copied tracks: frames written).
    frames_encoded: int
    #: Video frames dropped because the encoder fell behind a live source.
    frames_dropped: int
    #: Frames not recorded because the recorder was paused.
    frames_paused: int
    #: Frames of the wrong type for the track (not an ``av.VideoFrame``/``av.AudioFrame``).
    frames_invalid: int
    #: Whether the track's encoded frames are written as they came (a track received by
    #: aiortc, copied: ``frames_encoded`` then counts frames written), not re-encoded.
    copied: bool = False
    #: Copied video: frames left out to bridge a gap (loss, a pause, a stalled worker)
    #: to the next key frame.
    frames_lost: int = 0
    #: Copied tracks: gaps in what the sender sent (packets lost in the network).
    gaps: int = 0


@dataclass(frozen=True)
class RecorderStatistics:
    """A snapshot of a recorder; counters run from the last ``start()``."""

    state: str
    tracks: tuple[TrackStatistics, ...]
    #: ``dataavailable`` chunks produced, and the bytes in them.
    chunks_out: int
    bytes_out: int
    #: Frames and commands waiting for the worker.
    queue_depth: int
    #: Events waiting to be dispatched to handlers.
    pending_events: int
    #: The most chunks an ``async for`` iterator has not taken yet.
    iterator_backlog: int
    #: Seconds the worker spent encoding and muxing.
    encoder_busy_time: float
    #: Seconds of media recorded so far (wall time minus paused time).
    recorded_time: float
    #: Where the recorded audio stands against the video clock (s; positive: audio
    #: late); video follows the clock exactly. None without audio.
    av_offset: float | None = None
    #: Bytes of frame data waiting to be encoded: queued for the worker (bounded per
    #: track), and held by it until every track's first frame arrives (see the README).
    queued_bytes: int = 0
    #: The recording's picture size (width, height) once the encoders are open; None
    #: before, or without video.
    video_size: tuple[int, int] | None = None
    #: Bytes of chunks produced and not yet taken by every handler and iterator (at most
    #: ``MediaRecorder.max_undelivered_bytes``).
    undelivered_bytes: int = 0
