"""The tap on aiortc's receiver: encoded frames as they leave its jitter buffer.

aiortc has no public API for encoded frames. Its ``RTCRtpReceiver`` reassembles RTP
packets into frames (``JitterFrame``: the depayloaded bytes and an unwrapped timestamp)
and puts each, with its codec, on the queue its decoder thread reads; the decoder puts
decoded frames on the remote track. :class:`EncodedTap` sits on that queue's ``put``
(on the event loop, as the receiver calls it) and hands every frame to its consumers
(copying recorders, the server's size guard) before it goes on to the decoder, or not:

* **Decoding only when someone reads decoded frames.** Once a receiver is tapped (a
  recorder copies its track), a frame goes on to aiortc's decoder only while someone may
  read the track: someone called ``recv()``, or a consumer has not yet decided to copy.
  A copied recording costs no decode, and no decoded frame piles up for a reader that
  never comes, during the recording or after it. A reader that comes later (its first
  ``recv()``) gets frames from the next key frame on, which is asked for at once.
* **Loss.** aiortc asks the sender for a key frame (PLI) when its jitter buffer gives up
  on missing packets or its decoder fails: frames are lost. The tap tells the consumers,
  which bridge the gap to the next key frame.
* **Asking for key frames** (:meth:`EncodedTap.request_key_frame`): an RTCP PLI, at most
  one per ``PLI_INTERVAL`` per receiver.

Internals relied on, of aiortc 1.16 (pinned by ``tests/test_aiortc_tap.py``, which
fails loudly when they change): ``RTCRtpReceiver._RTCRtpReceiver__decoder_queue`` (a
``queue.Queue`` of ``(RTCRtpCodecParameters, JitterFrame)`` and a final ``None``),
``RTCRtpReceiver._send_rtcp_pli(ssrc)`` and ``RTCRtpReceiver._track``. A receiver is
found from its track through the ``track`` property, wrapped here to leave a weak
reference on the track when aiortc hands the track out (every receiver made after
``import asyncrec``). When anything is missing, :func:`tap_for` returns None and the
track is recorded by decoding it, as any other track.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import time
import weakref
from collections.abc import Callable
from typing import Any, Protocol

from aiortc import RTCRtpReceiver

from ._encoded import EncodedFrame, encoded_frame

logger = logging.getLogger(__name__)

#: The aiortc versions this module is tested with (``major.minor``).
TESTED_AIORTC = ("1.16",)
#: The least time between two key frame requests to one sender (s).
PLI_INTERVAL = 1.0

_DECODER_QUEUE = "_RTCRtpReceiver__decoder_queue"
_RECEIVER_REF = "_asyncrec_receiver"


class EncodedConsumer(Protocol):
    """What a tap hands frames to (on the event loop)."""

    #: False until the consumer has decided to copy (frames then still get decoded).
    copying: bool

    def push_encoded(self, frame: EncodedFrame) -> None: ...
    def frames_lost(self) -> None:
        """Frames were lost before the next one: wait for a key frame."""

    def encoded_ended(self) -> None:
        """The receiver stopped: no frame follows."""


def _install() -> bool:
    """Wrap ``RTCRtpReceiver.track`` so the track it returns knows its receiver."""
    prop = getattr(RTCRtpReceiver, "track", None)
    if not isinstance(prop, property) or prop.fget is None or getattr(prop.fget, "_asyncrec", False):
        return isinstance(prop, property)
    getter = prop.fget

    def track(self: RTCRtpReceiver) -> Any:
        value = getter(self)
        if value is not None and getattr(value, _RECEIVER_REF, None) is None:
            with contextlib.suppress(AttributeError, TypeError):
                setattr(value, _RECEIVER_REF, weakref.ref(self))
        return value

    track._asyncrec = True  # type: ignore[attr-defined]
    RTCRtpReceiver.track = property(track, prop.fset, prop.fdel, prop.__doc__)  # type: ignore[method-assign,assignment]
    return True


_INSTALLED = _install()
_taps: weakref.WeakKeyDictionary[RTCRtpReceiver, EncodedTap] = weakref.WeakKeyDictionary()


def receiver_of(track: object) -> RTCRtpReceiver | None:
    """The aiortc receiver whose remote track ``track`` is (looking through
    ``MediaRelay`` proxies), if it can be found."""
    seen = 0
    while track is not None and seen < 8:
        ref = getattr(track, _RECEIVER_REF, None)
        if isinstance(ref, weakref.ref):
            receiver = ref()
            return receiver if isinstance(receiver, RTCRtpReceiver) else None
        track = getattr(track, "_source", None)  # aiortc's RelayStreamTrack
        seen += 1
    return None


def tap_for(track: object) -> EncodedTap | None:
    """The tap on the receiver of ``track``, made on first use; None when ``track`` is not
    an aiortc remote track, its receiver cannot be found, or aiortc's internals are not
    the ones this module knows."""
    receiver = receiver_of(track)
    if receiver is None:
        return None
    tap = _taps.get(receiver)
    if tap is None:
        decoder_queue = getattr(receiver, _DECODER_QUEUE, None)
        if not isinstance(decoder_queue, queue.Queue) or not callable(getattr(receiver, "_send_rtcp_pli", None)):
            logger.warning("aiortc's receiver internals changed: tracks are recorded by decoding them")
            return None
        tap = _taps[receiver] = EncodedTap(receiver, decoder_queue)
    return tap


class EncodedTap:
    """Encoded frames of one aiortc receiver (see the module docstring). Everything runs
    on the event loop."""

    def __init__(self, receiver: RTCRtpReceiver, decoder_queue: queue.Queue[Any]) -> None:
        self._receiver = weakref.ref(receiver)
        self.kind: str = receiver._track.kind if receiver._track is not None else "video"
        self.consumers: list[EncodedConsumer] = []
        #: Checks run before anything else; one returning True refuses the frame: not
        #: copied, not decoded (the server's picture-size guard).
        self.filters: list[Callable[[EncodedFrame], bool]] = []
        #: Someone reads decoded frames of the track: decoding never stops again.
        self.read = False
        #: Frames not given to aiortc's decoder because nobody reads them.
        self.undecoded = 0
        self._decoding = True
        self._last_pli = -PLI_INTERVAL
        self._put = decoder_queue.put
        decoder_queue.put = self._on_put  # type: ignore[method-assign]
        self._send_pli: Callable[[int], Any] = receiver._send_rtcp_pli
        receiver._send_rtcp_pli = self._on_pli  # type: ignore[method-assign]
        track = receiver._track
        if track is not None:
            recv = track.recv

            async def read_decoded() -> Any:
                self.want_decoded()
                return await recv()

            track.recv = read_decoded  # type: ignore[method-assign]

    def subscribe(self, consumer: EncodedConsumer) -> None:
        if consumer not in self.consumers:
            self.consumers.append(consumer)
            if consumer.copying:
                self.request_key_frame()

    def unsubscribe(self, consumer: EncodedConsumer) -> None:
        if consumer in self.consumers:
            self.consumers.remove(consumer)

    def want_decoded(self) -> None:
        """Someone reads decoded frames from now on."""
        self.read = True

    def request_key_frame(self) -> None:
        """Ask the sender for a key frame (RTCP PLI), unless asked within ``PLI_INTERVAL``."""
        now = time.monotonic()
        receiver = self._receiver()
        if receiver is None or now - self._last_pli < PLI_INTERVAL:
            return
        sources = receiver.getSynchronizationSources()
        if not sources:
            return  # nothing received yet: the first frames come anyway
        self._last_pli = now
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop().create_task(self._send_pli(sources[0].source))

    # -- called by aiortc's receiver, on the event loop --------------------------------
    def _on_put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is None:  # the receiver stopped
            for consumer in list(self.consumers):
                consumer.encoded_ended()
            self._put(item, block, timeout)
            return
        codec, jitter_frame = item
        frame = encoded_frame(
            self.kind, codec.mimeType, codec.clockRate, bytes(jitter_frame.data), jitter_frame.timestamp
        )
        if any(refuse(frame) for refuse in self.filters):
            return
        for consumer in list(self.consumers):
            consumer.push_encoded(frame)
        if self._decoded_wanted():
            if not self._decoding and not frame.key:
                self.request_key_frame()  # decoding resumes at the next key frame
                self.undecoded += 1
                return
            self._decoding = True
            self._put(item, block, timeout)
        else:
            self._decoding = False
            self.undecoded += 1

    def _decoded_wanted(self) -> bool:
        return self.read or any(not c.copying for c in self.consumers)

    async def _on_pli(self, media_ssrc: int) -> None:
        """aiortc asks for a key frame: its jitter buffer dropped frames, or its decoder
        failed on one. Either way frames are missing before the next one."""
        for consumer in list(self.consumers):
            consumer.frames_lost()
        self._last_pli = time.monotonic()
        await self._send_pli(media_ssrc)


def aiortc_tested() -> bool:
    """Whether the installed aiortc is one this module is tested with."""
    import aiortc

    return ".".join(aiortc.__version__.split(".")[:2]) in TESTED_AIORTC and _INSTALLED


__all__ = ["TESTED_AIORTC", "EncodedConsumer", "EncodedTap", "aiortc_tested", "receiver_of", "tap_for"]
