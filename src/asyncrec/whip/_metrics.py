"""Prometheus metrics of ``asyncrec serve``, with ``prometheus_client``.

One registry per server (so two servers in one process, or the tests, never share
counts). Counters of ended sessions are kept here; what running recordings have done so
far is read from their ``statistics()`` at each scrape, so the figures are live and never
counted twice.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .._recorder import MediaRecorder

KINDS = ("video", "audio")


@dataclass(frozen=True, slots=True)
class ActiveRecording:
    """A session being recorded: its recorder, and when its recording began (epoch s)."""

    session_id: str
    recorder: MediaRecorder
    started: float


class ServerMetrics:
    """The server's metrics: call the ``session_*`` and ``refused`` hooks, scrape ``render()``."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.sessions = Counter(
            "asyncrec_sessions", "WHIP sessions accepted (answered with 201)", registry=self.registry
        )
        self.refused = Counter(
            "asyncrec_sessions_refused",
            "WHIP publishers refused, by reason (unauthorized, busy, storage, bad_offer, bad_request, video_too_large)",
            ["reason"],
            registry=self.registry,
        )
        self._active: dict[str, MediaRecorder] = {}
        self._started: dict[str, float] = {}
        self._bytes = 0
        self._frames = {name: dict.fromkeys(KINDS, 0) for name, _ in (*FRAME_COUNTERS, ("gaps", ""))}
        self._busy = 0.0
        self.registry.register(_Live(self))

    # -- hooks ----------------------------------------------------------------------------------
    def session_started(self, session_id: str, recorder: MediaRecorder) -> None:
        self.sessions.inc()
        self._active[session_id] = recorder
        self._started[session_id] = time.time()

    def session_ended(self, session_id: str, written: int) -> None:
        """The session's recording is over and ``written`` bytes of it are on the disk."""
        recorder = self._active.pop(session_id, None)
        self._started.pop(session_id, None)
        self._bytes += written
        if recorder is not None:
            for kind, counts in _frames(recorder):
                for name, count in counts.items():
                    self._frames[name][kind] += count
            self._busy += recorder.statistics().encoder_busy_time

    def refuse(self, reason: str) -> None:
        self.refused.labels(reason=reason).inc()

    def active(self) -> list[ActiveRecording]:
        """The sessions being recorded now, oldest first (a snapshot)."""
        return [
            ActiveRecording(session_id, recorder, self._started.get(session_id, 0.0))
            for session_id, recorder in self._active.items()
        ]

    # -- scraping --------------------------------------------------------------------------------
    def render(self) -> bytes:
        """The text exposition format, for ``GET /metrics``."""
        return generate_latest(self.registry)

    def live(self) -> Iterator[Metric]:
        active = list(self._active.values())
        yield GaugeMetricFamily("asyncrec_sessions_active", "WHIP sessions being recorded", value=len(active))
        written = self._bytes + sum(r.statistics().bytes_out for r in active)
        yield CounterMetricFamily(
            "asyncrec_bytes_written", "Bytes of recordings produced (chunks delivered to the files)", value=written
        )
        frames = {name: dict(counts) for name, counts in self._frames.items()}
        for recorder in active:
            for kind, counts in _frames(recorder):
                for name, count in counts.items():
                    frames[name][kind] += count
        for name, what in FRAME_COUNTERS:
            family = CounterMetricFamily(f"asyncrec_frames_{name}", what, labels=["kind"])
            for kind in KINDS:
                family.add_metric([kind], frames[name][kind])
            yield family
        gaps = CounterMetricFamily(
            "asyncrec_gaps", "Gaps in copied tracks: packets a publisher sent that never arrived", labels=["kind"]
        )
        for kind in KINDS:
            gaps.add_metric([kind], frames["gaps"][kind])
        yield gaps
        busy = self._busy + sum(r.statistics().encoder_busy_time for r in active)
        yield CounterMetricFamily(
            "asyncrec_encoder_busy_seconds", "Time the recordings' workers spent encoding and muxing", value=busy
        )


#: ``asyncrec_frames_NAME{kind}`` counters.
FRAME_COUNTERS = (
    ("received", "Frames received from publishers"),
    ("encoded", "Frames written into recordings, encoded or copied"),
    ("copied", "Frames written as the publisher sent them (passthrough), no decode or encode"),
    ("dropped", "Frames dropped because the recording's worker fell behind (real-time video only)"),
    ("lost", "Copied video frames left out to bridge a gap (packet loss, a stall) to the next key frame"),
)


class _Live:
    """A custom collector: the figures that come from running recordings."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return self._metrics.live()


def _frames(recorder: MediaRecorder) -> Iterator[tuple[str, dict[str, int]]]:
    for track in recorder.statistics().tracks:
        if track.kind in KINDS:
            yield (
                track.kind,
                {
                    "received": track.frames_in,
                    "encoded": track.frames_encoded,
                    "copied": track.frames_encoded if track.copied else 0,
                    "dropped": track.frames_dropped,
                    "lost": track.frames_lost,
                    "gaps": track.gaps,
                },
            )
