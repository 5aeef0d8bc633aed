"""The live sessions of ``asyncrec serve`` as the operator's page shows them (``GET /sessions``).

Each session's figures come from its recorder's ``statistics()`` at the time of the request.
Frame rate and bitrate are measured over the last :data:`WINDOW` seconds: every snapshot
keeps a few samples per session (at most one per :data:`MIN_SPACING` seconds, however many
pages poll), and a session seen for the first time gets its average since it began.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._recorder import MediaRecorder
from ._endpoint import WhipEndpoint
from ._metrics import KINDS, ServerMetrics

#: Seconds over which frame rate and bitrate are measured.
WINDOW = 5.0
#: Seconds between two samples of a session: polls closer than this share one.
MIN_SPACING = 0.5
#: Samples kept per session (WINDOW / MIN_SPACING, and some room).
MAX_SAMPLES = 16


@dataclass(frozen=True, slots=True)
class _Sample:
    at: float
    #: Video frames encoded, bytes delivered to the file.
    frames: int
    bytes: int


class LiveSessions:
    """Snapshots of the sessions ``metrics`` knows to be recording, with their publisher's
    address from ``endpoint``. ``clock``: monotonic seconds (a parameter for the tests)."""

    def __init__(
        self,
        metrics: ServerMetrics,
        endpoint: WhipEndpoint,
        *,
        window: float = WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._metrics = metrics
        self._endpoint = endpoint
        self._window = window
        self._clock = clock
        self._samples: dict[str, deque[_Sample]] = {}

    def snapshot(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per live session, oldest first: ``id``, ``remote``,
        ``started`` (epoch s), ``connection`` (the peer connection's state), ``codecs``
        (the recorder's ``mimeType``, None until known), ``resolution`` (``"WxH"``, None
        without video), ``seconds`` recorded, ``bytes`` written, ``fps`` and ``bitrate``
        (bits/s; None until measurable), ``frames`` (``received``/``encoded``/``dropped``
        per kind) and ``dropped`` (all kinds). Never raises, never blocks."""
        now = self._clock()
        active = self._metrics.active()
        for gone in self._samples.keys() - {item.session_id for item in active}:
            del self._samples[gone]
        return [self._describe(item.session_id, item.recorder, item.started, now) for item in active]

    def _describe(self, session_id: str, recorder: MediaRecorder, started: float, now: float) -> dict[str, Any]:
        stats = recorder.statistics()
        frames: dict[str, dict[str, int]] = {}
        for track in stats.tracks:
            if track.kind in KINDS:
                counts = frames.setdefault(track.kind, {"received": 0, "encoded": 0, "dropped": 0})
                counts["received"] += track.frames_in
                counts["encoded"] += track.frames_encoded
                counts["dropped"] += track.frames_dropped
        video_frames = frames.get("video", {}).get("encoded", 0)
        fps, bitrate = self._rates(session_id, _Sample(now, video_frames, stats.bytes_out), stats.recorded_time)
        session = self._endpoint.sessions.get(session_id)
        size = stats.video_size
        return {
            "id": session_id,
            "remote": session.remote if session is not None else None,
            "started": started,
            "connection": session.pc.connectionState if session is not None else None,
            "codecs": recorder.mimeType or None,
            # The kinds whose frames are written as the publisher sent them (passthrough).
            "copied": sorted(t.kind for t in stats.tracks if t.copied),
            "resolution": None if size is None else f"{size[0]}x{size[1]}",
            "seconds": stats.recorded_time,
            "bytes": stats.bytes_out,
            "fps": fps if "video" in frames else None,
            "bitrate": bitrate,
            "frames": frames,
            "dropped": sum(counts["dropped"] for counts in frames.values()),
        }

    def _rates(self, session_id: str, sample: _Sample, recorded: float) -> tuple[float | None, float | None]:
        """(frames/s, bits/s) from the oldest sample of the window to ``sample``; the
        averages over the recording while there is no earlier sample."""
        samples = self._samples.setdefault(session_id, deque(maxlen=MAX_SAMPLES))
        # Keep one sample at least a window old (the base), none older than that.
        while len(samples) >= 2 and sample.at - samples[1].at >= self._window:
            samples.popleft()
        base = samples[0] if samples else None
        if not samples or sample.at - samples[-1].at >= MIN_SPACING:
            samples.append(sample)
        if base is not None and sample.at - base.at >= MIN_SPACING:
            elapsed = sample.at - base.at
            return (sample.frames - base.frames) / elapsed, (sample.bytes - base.bytes) * 8 / elapsed
        if recorded <= 0:
            return None, None
        return sample.frames / recorded, sample.bytes * 8 / recorded


__all__ = ["MAX_SAMPLES", "MIN_SPACING", "WINDOW", "LiveSessions"]
