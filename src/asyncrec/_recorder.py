"""MediaRecorder: the W3C MediaStream Recording API for asyncio.

The public methods are synchronous, like the spec's: state changes and exceptions happen
before they return, events are dispatched later on the loop. Each returns an awaitable
that completes once its event has been dispatched to every handler.
"""

from __future__ import annotations

import asyncio
import itertools
import warnings
from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal, TypeVar, overload

from ._container import WorkerSettings
from ._copy import CopyPolicy
from ._encoder_pool import EncoderPool
from ._errors import (
    AsyncrecError,
    InvalidModificationError,
    InvalidStateError,
    NotSupportedError,
    QuotaExceededError,
    SinkError,
)
from ._events import (
    BlobEvent,
    ChunkIterator,
    Completion,
    ErrorEvent,
    Event,
    EventDispatcher,
    Handler,
    HandlerAttribute,
)
from ._formats import (
    DEFAULT_AUDIO_BITS_PER_SECOND,
    DEFAULT_VIDEO_BITS_PER_SECOND,
    Format,
    check_type,
    copyable_codecs,
    is_type_supported,
    resolve_format,
    split_bits_per_second,
)
from ._options import milliseconds, timeslice_seconds, unsigned
from ._recording import Recording
from ._sequence import RecordingSequence
from ._stats import RecorderStatistics
from ._stream import MediaStream, Track

RecordingState = Literal["inactive", "recording", "paused"]
BitrateMode = Literal["constant", "variable"]
#: A handler of ``dataavailable``: called with a BlobEvent (a plain or a coroutine function).
BlobHandlerT = TypeVar("BlobHandlerT", bound=Callable[[BlobEvent], object])
#: A handler of ``error``: called with an ErrorEvent.
ErrorHandlerT = TypeVar("ErrorHandlerT", bound=Callable[[ErrorEvent], object])
#: A handler of any event (``start``, ``stop``, ``pause``, ``resume``, or a type only known at run time).
EventHandlerT = TypeVar("EventHandlerT", bound=Callable[[Event], object])


class MediaRecorder:
    """Records a :class:`MediaStream` into chunks of a container file.

    All PyAV work runs on one worker thread per recording; the event loop only reads
    tracks and dispatches events. See the README for the architecture.
    """

    #: Bound on chunk bytes produced but not yet taken by handlers and iterators. Past it
    #: (a handler that hangs, an ``async for`` that stopped pulling) the recording stops
    #: with ``QuotaExceededError``; everything produced is still delivered, nothing is
    #: dropped. Set it per instance or on the class.
    max_undelivered_bytes = 64 * 1024 * 1024

    def __init__(
        self,
        stream: MediaStream,
        *,
        mimeType: str = "",  # noqa: N803 - W3C spelling
        audioBitsPerSecond: int | None = None,  # noqa: N803
        videoBitsPerSecond: int | None = None,  # noqa: N803
        bitsPerSecond: int | None = None,  # noqa: N803
        audioBitrateMode: BitrateMode = "variable",  # noqa: N803
        videoKeyFrameIntervalDuration: float | None = None,  # noqa: N803
        videoKeyFrameIntervalCount: int | None = None,  # noqa: N803
        independent_chunks: bool = False,
        max_video_size: tuple[int, int] | None = None,
        passthrough: bool = True,
        encoder_pool: EncoderPool | None = None,
    ) -> None:
        """Create a recorder for ``stream``; nothing starts until :meth:`start`.

        ``independent_chunks=True``: every ``dataavailable`` chunk is a playable file on
        its own (the container header, then media starting with a key frame; timestamps
        go on from the previous chunk, so appended one after the other to a
        ``MediaSource`` they still play as one), for chunks uploaded, stored or streamed
        separately. A key frame per chunk costs bitrate. By default, as in the spec, only
        the first chunk has the header and the chunks make one file together.

        ``max_video_size=(width, height)``: video larger than this is scaled down to fit,
        aspect ratio kept (a server's bound on what a publisher costs it); smaller video
        is recorded as it is.

        ``passthrough`` (True by default): tracks received by aiortc (a WebRTC peer's)
        are recorded by copying their encoded frames as they came, with no decode and no
        encode, when the ``mimeType`` allows their codec (names it, or names none for that
        kind and the container holds it) and no option asks for what copying cannot
        honour (a bitrate, a key-frame interval, independent chunks, constant-bitrate
        audio; a picture larger than ``max_video_size``). ``statistics()`` says which
        tracks are copied and ``mimeType``, after ``start``, names what is written.
        False: every track is decoded and encoded.

        ``encoder_pool``: the recording is encoded and muxed in one of the pool's
        processes instead of on a thread of this process (see :class:`EncoderPool`): for
        many recordings at once, which then use every core and leave the event loop's
        thread alone. Events, chunks and statistics are the same either way.

        Raises:
            NotSupportedError: ``mimeType`` names a container or codec that cannot be
                recorded (see :meth:`isTypeSupported`).
            TypeError: an option has the wrong type, or ``audioBitrateMode`` is neither
                ``"constant"`` nor ``"variable"``.
            ValueError: a bitrate, key-frame interval or ``max_video_size`` is out of range.
        """
        if not isinstance(stream, MediaStream):
            raise TypeError(f"stream must be a MediaStream, not {type(stream).__name__}")
        if not isinstance(mimeType, str):
            raise TypeError("mimeType must be a str")
        if not isinstance(independent_chunks, bool):
            raise TypeError("independent_chunks must be a bool")
        if not isinstance(passthrough, bool):
            raise TypeError("passthrough must be a bool")
        if encoder_pool is not None and not isinstance(encoder_pool, EncoderPool):
            raise TypeError(f"encoder_pool must be an EncoderPool, not {type(encoder_pool).__name__}")
        if max_video_size is not None:
            width, height = max_video_size
            if not (isinstance(width, int) and isinstance(height, int) and width >= 2 and height >= 2):
                raise ValueError(f"max_video_size must be two ints of at least 2, not {max_video_size!r}")
        if audioBitrateMode not in ("constant", "variable"):
            raise TypeError(f"audioBitrateMode must be 'constant' or 'variable', not {audioBitrateMode!r}")
        audio_bps = unsigned("audioBitsPerSecond", audioBitsPerSecond)
        video_bps = unsigned("videoBitsPerSecond", videoBitsPerSecond)
        self._constrained_bps = unsigned("bitsPerSecond", bitsPerSecond)
        # What copying a WebRTC peer's frames cannot honour: a bitrate asked for.
        self._video_bps_asked = video_bps is not None or self._constrained_bps is not None
        self._audio_bps_asked = audio_bps is not None or self._constrained_bps is not None
        self._key_frame_count = unsigned("videoKeyFrameIntervalCount", videoKeyFrameIntervalCount)
        self._key_frame_duration = milliseconds("videoKeyFrameIntervalDuration", videoKeyFrameIntervalDuration)
        check_type(mimeType)

        self._stream = stream
        self._constrained_mime = mimeType
        self._mime_type = mimeType
        self._state: RecordingState = "inactive"
        self._video_bps = video_bps if video_bps is not None else DEFAULT_VIDEO_BITS_PER_SECOND
        self._audio_bps = audio_bps if audio_bps is not None else DEFAULT_AUDIO_BITS_PER_SECOND
        if self._constrained_bps is not None:
            self._video_bps, self._audio_bps = split_bits_per_second(self._constrained_bps)
        self._audio_bitrate_mode: BitrateMode = audioBitrateMode
        self._independent_chunks = independent_chunks
        self._passthrough = passthrough
        self._max_video_size = max_video_size
        self._encoder_pool = encoder_pool

        self._dispatcher = EventDispatcher()
        self._dispatcher.on_sink_error = self._sink_failed
        self._dispatcher.on_progress = self._backlog_eased
        self._recording: Recording | None = None  # the recording state applies to
        #: Every recording whose events are not all dispatched yet, oldest first: only
        #: the oldest one's events reach the dispatcher, so recordings never interleave.
        self._recordings = RecordingSequence(self._dispatcher, self._check_backlog)
        self._request_ids = itertools.count(1)
        self._last_recording: Recording | None = None

    def __repr__(self) -> str:
        return f"<MediaRecorder {self._state} {self._mime_type or '(default type)'}>"

    # -- attributes -------------------------------------------------------------------------
    @property
    def stream(self) -> MediaStream:
        """The stream being recorded."""
        return self._stream

    @property
    def mimeType(self) -> str:  # noqa: N802 - W3C spelling
        """The type as constructed until the ``"start"`` event; from then on the container
        and codecs actually used, as full RFC 6381 codec strings with the encoder's real
        profile and level, which ``MediaSource.isTypeSupported`` accepts as they are:
        ``video/webm;codecs=vp8,opus``, ``video/mp4;codecs=avc1.64001E,mp4a.40.2``,
        ``video/mp4;codecs=vp09.00.30.08,opus``, ``video/webm;codecs=av01.0.04M.08,opus``.

        ``"start"`` waits for the encoders to open (the first frame of every track) to
        know them; if the encoders are not open within 1 s it fires with the codec
        identifiers alone, and ``mimeType`` gains the details when the encoders open."""
        return self._mime_type

    @property
    def state(self) -> RecordingState:
        """``"inactive"``, ``"recording"`` or ``"paused"``."""
        return self._state

    @property
    def videoBitsPerSecond(self) -> int:  # noqa: N802 - W3C spelling
        """Target bitrate for video (bits per second)."""
        return self._video_bps

    @property
    def audioBitsPerSecond(self) -> int:  # noqa: N802 - W3C spelling
        """Target bitrate for audio (bits per second)."""
        return self._audio_bps

    @property
    def audioBitrateMode(self) -> BitrateMode:  # noqa: N802 - W3C spelling
        """``"constant"`` or ``"variable"``."""
        return self._audio_bitrate_mode

    @staticmethod
    def isTypeSupported(type: str) -> bool:  # noqa: N802,A002 - W3C spelling
        """Whether ``type`` can be recorded with the installed PyAV (``""`` always can)."""
        return isinstance(type, str) and is_type_supported(type)

    # -- handlers ---------------------------------------------------------------------------
    # Typed per event: a handler of "dataavailable" gets a BlobEvent, of "error" an
    # ErrorEvent, of the others an Event; used as a decorator, ``on`` returns the function
    # unchanged, with its type. (The Literal overloads overlap the str one, as typeshed's
    # do; mypy takes the first that matches.)
    @overload
    def on(  # type: ignore[overload-overlap]
        self, type: Literal["dataavailable"], handler: BlobHandlerT
    ) -> BlobHandlerT: ...
    @overload
    def on(self, type: Literal["dataavailable"], handler: None = None) -> Callable[[BlobHandlerT], BlobHandlerT]: ...
    @overload
    def on(  # type: ignore[overload-overlap]
        self, type: Literal["error"], handler: ErrorHandlerT
    ) -> ErrorHandlerT: ...
    @overload
    def on(self, type: Literal["error"], handler: None = None) -> Callable[[ErrorHandlerT], ErrorHandlerT]: ...
    @overload
    def on(self, type: str, handler: EventHandlerT) -> EventHandlerT: ...
    @overload
    def on(self, type: str, handler: None = None) -> Callable[[EventHandlerT], EventHandlerT]: ...
    def on(self, type: str, handler: Handler | None = None) -> Any:  # noqa: A002 - the DOM's name
        """Call ``handler(event)`` for each event of ``type``; also usable as a decorator
        (``@recorder.on("dataavailable")``), which returns the function unchanged.

        A handler may be a plain function or a coroutine function; what it returns is
        awaited before the next handler and the next event. Its exceptions are logged.

        Raises:
            ValueError: ``type`` is not one of the recorder's events.
        """
        if handler is None:

            def decorator(func: Handler) -> Handler:
                self._dispatcher.add(type, func)
                return func

            self._dispatcher._listeners_for(type)  # reject an unknown type now
            return decorator
        self._dispatcher.add(type, handler)
        return handler

    def off(self, type: str, handler: Handler) -> None:  # noqa: A002 - the DOM's name
        """Stop calling ``handler`` for ``type``."""
        self._dispatcher.remove(type, handler)

    onstart = HandlerAttribute("start", Event)
    onstop = HandlerAttribute("stop", Event)
    ondataavailable = HandlerAttribute("dataavailable", BlobEvent)
    onpause = HandlerAttribute("pause", Event)
    onresume = HandlerAttribute("resume", Event)
    onerror = HandlerAttribute("error", ErrorEvent)

    # -- methods ----------------------------------------------------------------------------
    def start(self, timeslice: float | None = None) -> Completion:
        """Start recording; ``"start"`` follows. Must be called with the loop running.

        ``timeslice`` (ms): deliver a chunk at least this often (at least every 10 ms);
        None gathers everything into the final chunk (and those asked for by
        :meth:`requestData`).

        Returns an awaitable that completes once ``"start"`` has been dispatched.

        Raises:
            InvalidStateError: the recorder is not inactive, or its ``encoder_pool`` is
                closed.
            NotSupportedError: the stream is inactive, nothing in it can be recorded with
                the ``mimeType``, or both key-frame interval options are set.
            RuntimeError: no event loop is running.
        """
        asyncio.get_running_loop()
        if self._state != "inactive":
            raise InvalidStateError(f"start() while {self._state}")
        seconds = timeslice_seconds(timeslice)
        if not self._stream.active:
            raise NotSupportedError("the stream is inactive")
        if self._key_frame_duration is not None and self._key_frame_count is not None:
            raise NotSupportedError("videoKeyFrameIntervalDuration and videoKeyFrameIntervalCount are exclusive")
        if self._encoder_pool is not None and self._encoder_pool.closed:
            raise InvalidStateError("the encoder pool is closed")
        live = [t for t in self._stream.getTracks() if getattr(t, "readyState", "live") == "live"]
        video = next((t for t in live if t.kind == "video"), None)
        audio = next((t for t in live if t.kind == "audio"), None)
        fmt = resolve_format(self._constrained_mime, has_video=video is not None, has_audio=audio is not None)
        tracks: list[Track] = []
        if fmt.video is not None and video is not None:
            tracks.append(video)
        if fmt.audio is not None and audio is not None:
            tracks.append(audio)
        if self._constrained_bps is not None:
            self._video_bps, self._audio_bps = split_bits_per_second(
                self._constrained_bps, has_video=fmt.video is not None, has_audio=fmt.audio is not None
            )
        settings = WorkerSettings(
            video_bits_per_second=self._video_bps,
            audio_bits_per_second=self._audio_bps,
            audio_bitrate_mode=self._audio_bitrate_mode,
            timeslice=seconds,
            key_frame_interval=None if self._key_frame_duration is None else self._key_frame_duration / 1000,
            key_frame_count=self._key_frame_count,
            independent_chunks=self._independent_chunks,
            max_video_size=self._max_video_size,
        )
        recording = Recording(self, fmt, tracks, settings, self._copy_policy(fmt), self._encoder_pool)
        self._state = "recording"
        self._mime_type = self._constrained_mime
        self._recording = self._last_recording = recording
        self._recordings.append(recording)
        self._stream._add_listener(self._on_track_set)
        self._dispatcher.reopen()
        recording.start()

        def set_mime_type() -> None:
            self._mime_type = recording.mime_type
            recording.start_dispatched = True

        return self._completion(recording.emit_start(set_mime_type))

    def _copy_policy(self, fmt: Format) -> CopyPolicy:
        """What tracks received by aiortc may be copied as they come: codecs the type
        allows, unless an option asks for what copying cannot honour (a bitrate, a
        key-frame interval, independent chunks; constant-bitrate audio)."""
        if not self._passthrough:
            return CopyPolicy()
        video, audio = copyable_codecs(self._constrained_mime, fmt)
        keys_asked = self._key_frame_count is not None or self._key_frame_duration is not None
        if self._video_bps_asked or keys_asked or self._independent_chunks:
            video = frozenset()
        if self._audio_bps_asked or self._audio_bitrate_mode == "constant" or self._independent_chunks:
            audio = frozenset()
        return CopyPolicy(video, audio, self._max_video_size)

    def stop(self) -> Completion:
        """Stop recording: the final ``"dataavailable"``, then ``"stop"``.

        Returns an awaitable that completes once every byte has been delivered, the
        ``"stop"`` event dispatched and every thread and task of the recording released;
        cancelling a wait on it does not cancel the stop. On an inactive recorder this
        does nothing, never raises, and the awaitable is already complete.
        """
        recording = self._recording
        if self._state == "inactive" or recording is None:
            return Completion(None)
        self._inactivate()
        recording.stop()
        return self._completion(recording.done)

    def pause(self) -> Completion:
        """Pause: frames are not recorded, and the paused time is left out of the media.

        Returns an awaitable that completes once ``"pause"`` has been dispatched
        (already complete if the recorder was paused).

        Raises:
            InvalidStateError: the recorder is inactive.
        """
        recording = self._active_recording("pause")
        if self._state == "paused":
            return Completion(None)
        self._state = "paused"
        recording.pause()
        return self._completion(recording.emit(Event("pause")))

    def resume(self) -> Completion:
        """Resume a paused recording.

        Returns an awaitable that completes once ``"resume"`` has been dispatched
        (already complete if the recorder was recording).

        Raises:
            InvalidStateError: the recorder is inactive.
        """
        recording = self._active_recording("resume")
        if self._state == "recording":
            return Completion(None)
        self._state = "recording"
        recording.resume()
        return self._completion(recording.emit(Event("resume")))

    def requestData(self) -> Completion:  # noqa: N802 - W3C spelling
        """Deliver everything gathered so far in a ``"dataavailable"`` now.

        The muxer's open cluster is included: the chunk waits for it to close, at most
        one short cluster (about 100 ms of media).

        Returns an awaitable that completes once that ``"dataavailable"`` has been
        dispatched.

        Raises:
            InvalidStateError: the recorder is inactive.
        """
        recording = self._active_recording("requestData")
        return self._completion(recording.request_data(next(self._request_ids)))

    def statistics(self) -> RecorderStatistics:
        """A snapshot of the current (or last) recording's counters."""
        recording = self._last_recording
        if recording is None:
            return RecorderStatistics(self._state, (), 0, 0, 0, self._dispatcher.pending, 0, 0.0, 0.0, None)
        return RecorderStatistics(
            state=self._state,
            tracks=recording.track_statistics(),
            chunks_out=recording.chunks_out,
            bytes_out=recording.bytes_out,
            queue_depth=recording.queue_depth,
            pending_events=self._dispatcher.pending + self._recordings.pending_events,
            iterator_backlog=self._dispatcher.iterator_backlog,
            encoder_busy_time=recording.counters.busy,
            recorded_time=recording.counters.media_time,
            av_offset=recording.counters.av_offset,
            queued_bytes=recording.handoff.queued_bytes() + recording.counters.held_bytes,
            video_size=recording.video_size,
            undelivered_bytes=self._dispatcher.undelivered_bytes,
        )

    async def aclose(self) -> None:
        """Stop if recording, and wait until every recording of this recorder has
        delivered its last event and released its thread, tasks and container.

        Cancellation: the wait goes on until the worker has finished (a worker in the
        middle of an encode is never abandoned), then CancelledError is raised.
        """
        self.stop()
        cancelled: asyncio.CancelledError | None = None
        while True:
            try:
                while (head := self._recordings.head) is not None:
                    await asyncio.shield(head.done)
                await self._dispatcher.idle()
                break
            except asyncio.CancelledError as exc:
                cancelled = exc
        self._dispatcher.close_iterators()
        if cancelled is not None:
            raise cancelled

    # -- iteration and context management ----------------------------------------------------
    def __aiter__(self) -> ChunkIterator:
        """Iterate over every chunk (``BlobEvent``) from now until the recording stops."""
        return self._dispatcher.iterator()

    async def __aenter__(self) -> MediaRecorder:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __del__(self) -> None:
        recordings = getattr(self, "_recordings", None)
        if recordings:
            running = [r for r in recordings if not r.stopping]
            for recording in recordings:
                recording.abandon()  # the worker finishes the file and exits
            if running:
                warnings.warn(f"{self!r} was not stopped before it was dropped", ResourceWarning, stacklevel=1)

    # -- internals ----------------------------------------------------------------------------
    def _active_recording(self, method: str) -> Recording:
        if self._state == "inactive" or self._recording is None:
            raise InvalidStateError(f"{method}() while inactive")
        return self._recording

    def _completion(self, fut: asyncio.Future[None]) -> Completion:
        return Completion(fut, self._dispatcher)

    def _inactivate(self) -> None:
        # The spec's "inactivate the recorder". mimeType keeps the type used (API.md).
        self._state = "inactive"
        self._stream._remove_listener(self._on_track_set)
        if self._constrained_bps is not None:
            self._video_bps, self._audio_bps = split_bits_per_second(self._constrained_bps)

    def _check_backlog(self, recording: Recording) -> None:
        backlog = self._dispatcher.undelivered_bytes
        if backlog > self.max_undelivered_bytes // 4:
            # Slow handlers or iterators: the worker stops taking frames of sources that
            # can wait, which holds them back (see Recording.outflow).
            recording.outflow.clear()
        if backlog > self.max_undelivered_bytes and self._recording is recording and self._state != "inactive":
            # A stalled consumer: stop gathering rather than drop data or grow without bound.
            self._recording_failed(
                recording,
                QuotaExceededError(f"{backlog} bytes of chunks not taken by handlers or iterators; recording stopped"),
            )

    def _backlog_eased(self) -> None:
        if self._dispatcher.undelivered_bytes <= self.max_undelivered_bytes // 8:
            for recording in self._recordings:
                recording.outflow.set()

    def _on_track_set(self, change: str, track: Track) -> None:
        recording = self._recording
        if recording is not None and self._state != "inactive":
            # As a queued task, so a stop() in the same turn wins (no error then).
            asyncio.get_running_loop().call_soon(self._track_set_changed, recording, change)

    def _track_set_changed(self, recording: Recording, change: str) -> None:
        if self._recording is not recording or self._state == "inactive":
            return
        what = "added to" if change == "addtrack" else "removed from"
        self._recording_failed(recording, InvalidModificationError(f"a track was {what} the stream"))

    def _sink_failed(self, error: SinkError) -> None:
        """A ``dataavailable`` handler raised SinkError: the recording whose chunk it was
        (the oldest, whose events are being dispatched) stops with that error."""
        head = self._recordings.head
        if head is not None:
            self._recording_failed(head, error)

    # RecordingOwner: what a recording reports, on the loop.
    def _recording_opened(self, recording: Recording) -> None:
        # Opened only after ``start`` gave up waiting: mimeType learns the details now.
        if recording.start_dispatched and recording is self._last_recording:
            self._mime_type = recording.mime_type

    def _recording_ready(self, recording: Recording) -> None:
        self._recordings.pump()

    def _recording_failed(self, recording: Recording, error: AsyncrecError) -> None:
        if recording.failed:
            return  # the first error is the one reported
        recording.failed = True
        if self._recording is recording and self._state != "inactive":
            self._inactivate()
        recording.emit_error(ErrorEvent("error", error))
        recording.stop()

    def _recording_tracks_ended(self, recording: Recording) -> None:
        if self._recording is recording and self._state != "inactive":
            self._inactivate()
        recording.stop(final_only=False)

    def _recording_finished(self, recording: Recording) -> None:
        # However the recording ended, the recorder is inactive when "stop" arrives.
        if self._recording is recording:
            if self._state != "inactive":
                self._inactivate()
            self._recording = None
