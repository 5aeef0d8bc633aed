"""The tap on aiortc's receiver: encoded frames as they leave its jitter buffer.

aiortc has no public API for encoded frames. Its ``RTCRtpReceiver`` reassembles RTP
packets into frames (``JitterFrame``: the depayloaded bytes and an unwrapped timestamp)
and puts each, with its codec, on the queue its decoder thread reads; the decoder puts
decoded frames on the remote track. :class:`EncodedTap` sits on that queue's ``put``
(on the event loop, as the receiver calls it) and hands every frame to its consumers
(copying recorders, the server's size guard) before it goes on to the decoder, or not:

* **Decoding only when someone reads decoded frames.** Until a consumer subscribes, the
  receiver decodes as aiortc does. Once one has, a frame goes on to aiortc's decoder
  only while someone may read the track: a ``recv()`` is waiting or was called in the
  last ``READ_GRACE`` seconds, or a consumer has not yet decided to copy. A copied
  recording costs no decode, and no decoded frame piles up for a reader that never
  comes, or that went away. A reader that comes later (or back) gets frames from the next
  key frame on, which is asked for at once.
* **Loss.** aiortc asks the sender for a key frame (PLI) when its jitter buffer gives up
  on missing packets or its decoder fails: frames are lost. The tap tells the consumers,
  which bridge the gap to the next key frame; so does a frame a filter refuses.
* **Asking for key frames** (:meth:`EncodedTap.request_key_frame`): an RTCP PLI to the
  media SSRC heard last (never an RTX one), at most one per ``PLI_INTERVAL`` per receiver.
* **Bandwidth estimates (REMB), throttled.** aiortc sends the sender a REMB on every packet
  while its estimator sees overuse, which a loaded event loop makes it see (packets read
  late look queued): an RTCP packet sent per RTP packet received, taking a third of the
  loop's time at 25 copied publishers, more load, more "overuse". As libwebrtc does
  (``RembThrottler``), a REMB goes out at most once per ``REMB_INTERVAL`` per receiver,
  unless the estimate falls below ``REMB_DROP`` of the last one sent.
* **Faults stay here.** The tap runs inside aiortc's packet handling, where an exception
  would close the peer connection: a consumer or filter that raises is logged and
  dropped, and the end of the stream always reaches the decoder thread.

Internals relied on, of aiortc 1.16 (pinned by ``tests/test_passthrough.py``, which
fails loudly when they change): ``RTCRtpReceiver._RTCRtpReceiver__decoder_queue`` (a
``queue.Queue`` of ``(RTCRtpCodecParameters, JitterFrame)`` and a final ``None``),
``RTCRtpReceiver._send_rtcp_pli(ssrc)``, ``RTCRtpReceiver._send_rtcp(packet)`` (every RTCP
packet it sends; a REMB is an ``aiortc.rtp.RtcpPsfbPacket`` with ``fmt`` ``RTCP_PSFB_APP``,
read with ``unpack_remb_fci``), ``RTCRtpReceiver._RTCRtpReceiver__active_ssrc``
and ``__rtx_ssrc`` (the SSRCs heard, and which are RTX), ``RTCRtpReceiver._track`` and
``RemoteStreamTrack._queue`` (an ``asyncio.Queue``). At ``import asyncrec`` two class
attributes are wrapped: ``RTCRtpReceiver.track`` leaves a weak reference to the receiver
on the track it returns (so a receiver is found from its track: every receiver whose
track aiortc handed out after the import), and ``RemoteStreamTrack.recv`` notes when it
was last called. When anything is missing, :func:`tap_for` returns None and the track is
recorded by decoding it, as any other track.
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
from aiortc.rtcrtpreceiver import RemoteStreamTrack
from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, unpack_remb_fci

from ._encoded import EncodedFrame, encoded_frame

logger = logging.getLogger(__name__)

#: The aiortc versions this module is tested with (``major.minor``).
TESTED_AIORTC = ("1.16",)
#: The least time between two key frame requests to one sender (s).
PLI_INTERVAL = 1.0
#: The least time between two REMBs to one sender (s), and how far below the last one
#: sent an estimate must fall to go out sooner (libwebrtc's ``RembThrottler``: 200 ms, 97 %).
REMB_INTERVAL = 0.2
REMB_DROP = 0.97
#: A track read (``recv()``) this recently still wants decoded frames (s).
READ_GRACE = 2.0

_DECODER_QUEUE = "_RTCRtpReceiver__decoder_queue"
_RECEIVER_REF = "_asyncrec_receiver"
_TAP = "_asyncrec_tap"
_READ_AT = "_asyncrec_read_at"


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
    """Wrap ``RTCRtpReceiver.track`` (the track it returns knows its receiver) and
    ``RemoteStreamTrack.recv`` (a track knows when it was last read)."""
    prop = getattr(RTCRtpReceiver, "track", None)
    if not isinstance(prop, property) or prop.fget is None or not callable(getattr(RemoteStreamTrack, "recv", None)):
        return False
    if getattr(prop.fget, "_asyncrec", False):
        return True
    getter = prop.fget

    def track(self: RTCRtpReceiver) -> Any:
        value = getter(self)
        if value is not None and getattr(value, _RECEIVER_REF, None) is None:
            with contextlib.suppress(AttributeError, TypeError):
                setattr(value, _RECEIVER_REF, weakref.ref(self))
        return value

    track._asyncrec = True  # type: ignore[attr-defined]
    RTCRtpReceiver.track = property(track, prop.fset, prop.fdel, prop.__doc__)  # type: ignore[method-assign,assignment]

    recv = RemoteStreamTrack.recv

    async def read(self: RemoteStreamTrack) -> Any:
        setattr(self, _READ_AT, time.monotonic())
        return await recv(self)

    RemoteStreamTrack.recv = read  # type: ignore[method-assign]
    return True


_INSTALLED = _install()


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
    """The tap on the receiver of ``track``, made on first use (kept on the receiver, so
    it goes with it); None when ``track`` is not an aiortc remote track, its receiver
    cannot be found, or aiortc's internals are not the ones this module knows."""
    receiver = receiver_of(track)
    if receiver is None:
        return None
    tap = getattr(receiver, _TAP, None)
    if isinstance(tap, EncodedTap):
        return tap
    decoder_queue = getattr(receiver, _DECODER_QUEUE, None)
    pli = getattr(type(receiver), "_send_rtcp_pli", None)
    rtcp = getattr(type(receiver), "_send_rtcp", None)
    if not _INSTALLED or not isinstance(decoder_queue, queue.Queue) or not callable(pli) or not callable(rtcp):
        logger.warning("aiortc's receiver internals changed: tracks are recorded by decoding them")
        return None
    tap = EncodedTap(receiver, decoder_queue, pli, rtcp)
    setattr(receiver, _TAP, tap)
    return tap


class EncodedTap:
    """Encoded frames of one aiortc receiver (see the module docstring). Everything runs
    on the event loop."""

    def __init__(
        self, receiver: RTCRtpReceiver, decoder_queue: queue.Queue[Any], send_pli: Any, send_rtcp: Any
    ) -> None:
        # Weak: the receiver holds the tap (its queue's put, its PLI sender), not the reverse.
        self._receiver = weakref.ref(receiver)
        track = receiver._track
        self._track = weakref.ref(track) if track is not None else None
        self.kind: str = track.kind if track is not None else "video"
        self.consumers: list[EncodedConsumer] = []
        #: Checks run before anything else; one returning True refuses the frame: not
        #: copied, not decoded (the server's picture-size guard).
        self.filters: list[Callable[[EncodedFrame], bool]] = []
        #: Frames not given to aiortc's decoder because nobody reads them.
        self.undecoded = 0
        self._subscribed = False  # a consumer has subscribed once
        self._decoding = True
        self._last_pli = -PLI_INTERVAL
        self._pending: set[asyncio.Task[Any]] = set()
        self._send_pli = send_pli  # the class's function: called with the receiver
        self._put = decoder_queue.put
        decoder_queue.put = self._on_put  # type: ignore[method-assign]
        receiver._send_rtcp_pli = self._on_pli  # type: ignore[method-assign]
        #: REMBs the receiver wanted to send and the throttle kept back.
        self.remb_held = 0
        self._remb_at = -REMB_INTERVAL
        self._remb_bitrate = 0
        self._send_rtcp = send_rtcp
        receiver._send_rtcp = self._on_rtcp  # type: ignore[method-assign]

    def subscribe(self, consumer: EncodedConsumer) -> None:
        if consumer not in self.consumers:
            self.consumers.append(consumer)
            self._subscribed = True

    def unsubscribe(self, consumer: EncodedConsumer) -> None:
        if consumer in self.consumers:
            self.consumers.remove(consumer)

    def want_decoded(self) -> None:
        """Someone reads decoded frames from now on (as a ``recv()`` would say)."""
        track = self._track() if self._track is not None else None
        if track is not None:
            setattr(track, _READ_AT, time.monotonic())

    def request_key_frame(self) -> None:
        """Ask the sender for a key frame (RTCP PLI), unless asked within ``PLI_INTERVAL``."""
        now = time.monotonic()
        receiver = self._receiver()
        if receiver is None or now - self._last_pli < PLI_INTERVAL:
            return
        ssrc = _media_ssrc(receiver)
        if ssrc is None:
            return  # nothing received yet: the first frames come anyway
        self._last_pli = now
        try:
            task = asyncio.get_running_loop().create_task(self._send_pli(receiver, ssrc))
        except RuntimeError:
            return
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    # -- called by aiortc's receiver, on the event loop --------------------------------
    def _on_put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is None:  # the receiver stopped
            try:
                for consumer in list(self.consumers):
                    self._call(consumer, consumer.encoded_ended)
            finally:
                self._put(item, block, timeout)
            return
        codec, jitter_frame = item
        frame = encoded_frame(
            self.kind, codec.mimeType, codec.clockRate, bytes(jitter_frame.data), jitter_frame.timestamp
        )
        if any(self._refuses(check, frame) for check in list(self.filters)):
            for consumer in list(self.consumers):
                self._call(consumer, consumer.frames_lost)
            return
        for consumer in list(self.consumers):
            self._call(consumer, consumer.push_encoded, frame)
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
        if not self._subscribed or any(not c.copying for c in self.consumers):
            return True
        track = self._track() if self._track is not None else None
        if track is None:
            return False
        waiting = getattr(getattr(track, "_queue", None), "_getters", None)
        if waiting:
            return True
        read_at = getattr(track, _READ_AT, None)
        return read_at is not None and time.monotonic() - read_at < READ_GRACE

    def _call(self, consumer: EncodedConsumer, method: Callable[..., None], *args: Any) -> None:
        try:
            method(*args)
        except Exception:
            # Inside aiortc's packet handling: raising would close the peer connection.
            logger.exception("a consumer of encoded %s frames failed; it gets no more", self.kind)
            self.unsubscribe(consumer)

    def _refuses(self, check: Callable[[EncodedFrame], bool], frame: EncodedFrame) -> bool:
        try:
            return check(frame)
        except Exception:
            logger.exception("a check of encoded %s frames failed; the frame is refused", self.kind)
            return True

    async def _on_pli(self, media_ssrc: int) -> None:
        """aiortc asks for a key frame: its jitter buffer dropped frames, or its decoder
        failed on one. Either way frames are missing before the next one."""
        for consumer in list(self.consumers):
            self._call(consumer, consumer.frames_lost)
        receiver = self._receiver()
        if receiver is not None:
            self._last_pli = time.monotonic()
            await self._send_pli(receiver, media_ssrc)

    async def _on_rtcp(self, packet: Any) -> None:
        """Every RTCP packet the receiver sends: REMBs throttled, the rest as they come."""
        receiver = self._receiver()
        if receiver is None:
            return
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            try:
                bitrate = unpack_remb_fci(packet.fci)[0]
            except ValueError:
                bitrate = 0
            now = time.monotonic()
            if now - self._remb_at < REMB_INTERVAL and bitrate >= self._remb_bitrate * REMB_DROP:
                self.remb_held += 1
                return
            self._remb_at, self._remb_bitrate = now, bitrate
        await self._send_rtcp(receiver, packet)


def _media_ssrc(receiver: RTCRtpReceiver) -> int | None:
    """The media SSRC heard last (not an RTX one), None before any."""
    heard = getattr(receiver, "_RTCRtpReceiver__active_ssrc", {})
    rtx = getattr(receiver, "_RTCRtpReceiver__rtx_ssrc", {})
    media = [(at, ssrc) for ssrc, at in dict(heard).items() if ssrc not in rtx]
    return max(media)[1] if media else None


def aiortc_tested() -> bool:
    """Whether the installed aiortc is one this module is tested with."""
    import aiortc

    return ".".join(aiortc.__version__.split(".")[:2]) in TESTED_AIORTC and _INSTALLED


__all__ = ["READ_GRACE", "TESTED_AIORTC", "EncodedConsumer", "EncodedTap", "aiortc_tested", "receiver_of", "tap_for"]
