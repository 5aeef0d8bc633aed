"""Recording a WebRTC peer's frames as they came (passthrough): the recording's side.

A track received by aiortc is recorded by copying its encoded frames into the container
(no decode, no encode) when the recorder allows it: the ``mimeType`` names that codec or
none for the track's kind, the container holds it, and no option asks for what copying
cannot honour (a bitrate, a key-frame interval, independent chunks, a constant audio
bitrate mode; a ``max_video_size`` the publisher's picture exceeds). Otherwise the track
is decoded and encoded as any other (:class:`~asyncrec._recording.TrackInput`), and the
switch loses nothing: the frame that decided it goes on to the decoder.

:class:`CopyInput` is a recording's consumer of a track's
:class:`~asyncrec._aiortc_tap.EncodedTap`. It starts on a key frame (asking the sender
for one at once), places frames on the recording's clock by their RTP timestamps (the
same clock-domain rule as decoded frames: each remote track is its own domain, anchored
at its first frame's arrival), and bridges every gap to the next key frame: frames lost in
the network (aiortc's jitter buffer gave up on them), frames of a paused span, frames the
worker had no room for. Those are counted in ``frames_lost`` (``frames_paused`` for a
pause) and the sender is asked for a key frame, at most once a second. The first frame
written is a key frame that carries what the header needs (H.264: its SPS and PPS).
Audio is never held back: like decoded live audio, audio that outruns the worker by its
whole bound stops the recording with ``QuotaExceededError``; its gaps (packets lost for
good) are counted, and the worker fills them with silence.

The decision is made on the track's first frame (with ``max_video_size``, on its first
key frame, whose size says; frames meanwhile are still decoded). A track that is
disabled (``enabled = False``) is transcoded, so that it records black or silence; a
track that has ended (``readyState``) ends its input.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._aiortc_tap import EncodedTap
from ._encoded import EncodedFrame, opus_samples, starts_stream
from ._formats import CODECS
from ._handoff import FrameItem
from ._stats import InputCounters
from ._stream import Track

if TYPE_CHECKING:
    from ._recording import Recording

logger = logging.getLogger(__name__)

#: Audio further on than its last packet's end by more than this (48 kHz samples: 30 ms)
#: is a gap in what the sender sent.
GAP_SAMPLES = 1440


@dataclass(frozen=True)
class CopyPolicy:
    """Which codecs may be copied, per kind (empty: always transcode), and the largest
    picture copied video may have."""

    video: frozenset[str] = frozenset()
    audio: frozenset[str] = frozenset()
    max_video_size: tuple[int, int] | None = None

    def allows(self, frame: EncodedFrame) -> bool:
        """Whether ``frame``'s track may be copied, judged on its first frame."""
        codecs = self.video if frame.kind == "video" else self.audio
        if frame.codec not in codecs or frame.codec not in CODECS:
            return False
        if frame.kind == "video" and self.max_video_size is not None:
            size = frame.size
            bound = self.max_video_size
            return size is not None and size[0] <= bound[0] and size[1] <= bound[1]
        return True


class CopyInput:
    """A recording's consumer of one track's encoded frames (see the module docstring)."""

    declared: bool | None = True

    def __init__(self, recording: Recording, index: int, track: Track, tap: EncodedTap) -> None:
        self._recording = recording
        self.index = index
        self.track = track
        self.kind = track.kind
        self.tap = tap
        self.counters = InputCounters()
        self.ended = False
        #: Decided to copy (the first frame's codec may be copied).
        self.copying = False
        self.codec: str | None = None
        self._need_key = track.kind == "video"
        self._started = False  # the first key frame came
        self._was_paused = False
        self._audio_end: int | None = None  # where the last audio packet ends (RTP units)
        self._warned_codec = False

    # -- the recording's input interface ---------------------------------------------
    def attach(self) -> None:
        self._recording.handoff.bytes_only(self.index)
        self.tap.subscribe(self)

    def detach(self) -> None:
        self.tap.unsubscribe(self)

    def flush(self) -> None:
        """Nothing waits here: frames go in as they come."""

    def end(self, failed: bool) -> None:
        if not self.ended:
            self.ended = True
            self._recording.handoff.track_ended(self.index)
            self._recording._input_ended()

    # -- from the tap, on the event loop ------------------------------------------------
    def push_encoded(self, frame: EncodedFrame) -> None:
        recording = self._recording
        if recording.stopping:
            self.detach()
            return
        if getattr(self.track, "readyState", "live") == "ended":
            self.detach()
            self.end(False)  # the track was stopped (or its relay proxy): nothing more of it
            return
        if getattr(self.track, "enabled", True) is False:
            recording.transcode(self.index, frame)  # a disabled track records black or silence
            return
        if self.codec is None and not self._decide(frame):
            return
        self.counters.frames_in += 1
        if frame.codec != self.codec:  # renegotiated to another codec: cannot continue the stream
            self.counters.lost += 1
            if not self._warned_codec:
                self._warned_codec = True
                logger.warning(
                    "track %s changed codec from %s to %s; not recorded", self.track.id, self.codec, frame.codec
                )
            return
        if recording.clock.paused:
            self.counters.paused += 1
            self._need_key = self.kind == "video"
            self._was_paused = True
            return
        if self._need_key:
            if not (frame.key if self._started else starts_stream(frame)):
                if self._was_paused:
                    self.counters.paused += 1
                elif self._started:
                    self.counters.lost += 1  # bridging a gap (before the start, nothing is lost)
                self.tap.request_key_frame()
                return
            self._need_key = self._was_paused = False
            self._started = True
        self._note_audio_gap(frame)
        arrival = time.monotonic()
        at = recording.clock.stamp(self.index, frame.time, arrival, True)
        item = FrameItem(self.index, frame, at, arrival, len(frame.data), realtime=True, droppable=False)
        handoff = recording.handoff
        if handoff.overflowing(item):
            if self.kind == "video":
                # The worker is far behind (a stalled sink): skip to the next key frame.
                self.counters.dropped += 1
                self._need_key = True
                self.tap.request_key_frame()
                return
            handoff.offer(item)
            recording.overflowed(self.track.id)
            return
        handoff.offer(item)

    def _decide(self, frame: EncodedFrame) -> bool:
        """Copy or transcode, on the first frame (video with a size bound: on the first
        key frame, whose size says; frames meanwhile are decoded). True: copy it."""
        policy = self._recording.copy_policy
        if frame.kind == "video" and policy.max_video_size is not None and not frame.key:
            if frame.codec not in policy.video:
                self._recording.transcode(self.index, frame)
            else:
                self.tap.request_key_frame()  # undecided: aiortc still decodes
            return False
        if not policy.allows(frame):
            self._recording.transcode(self.index, frame)
            return False
        self.codec, self.copying = frame.codec, True
        self.tap.request_key_frame()
        return True

    def _note_audio_gap(self, frame: EncodedFrame) -> None:
        """Audio: a timestamp further on than the last packet's length is a gap (packets
        lost in the network; the audio jitter buffer says nothing of it)."""
        if frame.kind != "audio":
            return
        if self._audio_end is not None and frame.timestamp - self._audio_end > GAP_SAMPLES:
            self.counters.gaps += 1
        samples = opus_samples(frame.data) if frame.codec == "opus" else 0
        self._audio_end = frame.timestamp + (samples or frame.clock_rate // 50)

    def frames_lost(self) -> None:
        if self.copying and self.kind == "video" and not self._recording.stopping:
            self.counters.gaps += 1
            self._need_key = True

    def encoded_ended(self) -> None:
        self.end(False)


__all__ = ["CopyInput", "CopyPolicy"]
