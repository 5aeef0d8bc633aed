"""What aiortc holds for a session, and a picture-size check before anything is decoded.

aiortc's ``RTCRtpReceiver`` reassembles RTP into encoded frames and queues them for its
decoder thread; the thread queues decoded frames on the remote track for whoever reads it.
Both queues are unbounded: when decoding or encoding falls behind, a publisher's media
piles up there, outside the recorder's bounds. And the decoder allocates whatever picture
size a key frame declares, so one crafted key frame of 16383x16383 costs gigabytes.

:class:`ReceiverWatch` covers both for the WHIP server: it counts the bytes waiting in
those queues (:attr:`ReceiverWatch.held_bytes`), and reads the picture size of every video
key frame before it reaches the decoder or a copying recorder
(:func:`~asyncrec._picture_size.picture_size`, through the receiver's
:class:`~asyncrec._aiortc_tap.EncodedTap`), refusing a frame larger than the server
accepts: the frame is never decoded nor written and the session is told
(``on_oversized``).

aiortc has no public API for any of this. It relies on two internals of aiortc 1.16
(pinned by ``tests/test_receivers.py``): the receiver's decoder queue,
``RTCRtpReceiver._RTCRtpReceiver__decoder_queue`` (a ``queue.Queue`` of ``(codec,
JitterFrame)`` and a final ``None``, put on the event loop), and the remote track's
``_queue`` (an ``asyncio.Queue`` of decoded frames). When they are missing, the watch
counts nothing and checks nothing, and says so once in the log.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable
from typing import Any

import av
from aiortc import RTCPeerConnection, RTCRtpReceiver

from .._aiortc_tap import tap_for
from .._encoded import EncodedFrame
from .._picture_size import picture_size, unreadable

logger = logging.getLogger(__name__)

_DECODER_QUEUE = "_RTCRtpReceiver__decoder_queue"


def frame_bytes(frame: object) -> int:
    """Bytes of a decoded frame's data (0 for anything else)."""
    if isinstance(frame, av.VideoFrame | av.AudioFrame):
        return sum(plane.buffer_size for plane in frame.planes)
    return 0


def fits(size: tuple[int, int], bound: tuple[int, int]) -> bool:
    """Whether a picture of ``size`` fits in ``bound`` either way round (a phone's portrait
    1080x1920 fits 1920x1080)."""
    (width, height), (long, short) = size, (max(bound), min(bound))
    return max(width, height) <= long and min(width, height) <= short


class ReceiverWatch:
    """A session's receivers: bytes held in aiortc's queues, and the size check.

    ``max_size``: the largest (width, height) a publisher's video may declare, either way
    round; a key frame declaring more is not decoded, and ``on_oversized(width, height)``
    is called (once).
    """

    def __init__(
        self,
        pc: RTCPeerConnection,
        *,
        max_size: tuple[int, int] | None = None,
        on_oversized: Callable[[int, int], None] | None = None,
    ) -> None:
        self._max_size = max_size
        self._on_oversized = on_oversized
        self._queues: list[queue.Queue[Any]] = []
        self._tracks: list[Any] = []
        #: The first oversized picture seen, (width, height).
        self.oversized: tuple[int, int] | None = None
        #: Encoded video frames refused (never decoded) because they were too large.
        self.refused_frames = 0
        for receiver in pc.getReceivers():
            self._attach(receiver)

    def _attach(self, receiver: RTCRtpReceiver) -> None:
        decoder_queue = getattr(receiver, _DECODER_QUEUE, None)
        track_queue = getattr(receiver.track, "_queue", None)
        tap = tap_for(receiver.track)
        if not isinstance(decoder_queue, queue.Queue) or track_queue is None or tap is None:
            logger.warning("aiortc's receiver internals changed: the memory held for a session is not counted")
            return
        self._queues.append(decoder_queue)
        self._tracks.append(track_queue)
        if receiver.track.kind == "video" and self._max_size is not None:
            # Before anything else sees the frame: it is neither decoded nor copied.
            tap.filters.append(self._too_large)

    def _too_large(self, frame: EncodedFrame) -> bool:
        if self.oversized is not None:
            self.refused_frames += 1
            return True  # nothing more is decoded once the session is refused
        mime, data = f"video/{frame.codec}", frame.data
        if frame.codec == "avc1":
            mime = "video/h264"
        size = picture_size(mime, data)
        assert self._max_size is not None
        if unreadable(mime, data):
            self.refused_frames += 1
            return True  # a size that cannot be vouched for is not decoded
        if size is None or fits(size, self._max_size):
            return False
        self.oversized = size
        self.refused_frames += 1
        if self._on_oversized is not None:
            self._on_oversized(*size)
        return True

    @property
    def held_bytes(self) -> int:
        """Bytes of media aiortc holds for the session: encoded frames waiting for the
        decoder and decoded frames waiting to be read. Call it on the event loop."""
        held = 0
        for decoder_queue in self._queues:
            with decoder_queue.mutex:  # the decoder thread takes from it meanwhile
                held += sum(len(item[1].data) for item in decoder_queue.queue if item is not None)
        for track_queue in self._tracks:
            held += sum(frame_bytes(frame) for frame in track_queue._queue)
        return held


__all__ = ["ReceiverWatch", "fits", "frame_bytes"]
