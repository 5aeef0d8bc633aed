"""asyncrec: the browser's MediaRecorder for Python asyncio.

Record aiortc tracks (WebRTC peers, devices, files, generated frames) into WebM,
Matroska or Ogg chunks without ever blocking the event loop::

    async with MediaRecorder(MediaStream([video, audio]), mimeType="video/webm") as rec:
        rec.start(timeslice=1000)
        async for chunk in rec:
            out.write(chunk.data)

The WHIP names (``WhipEndpoint``, ``WhipSession``, ``record_sessions``) need aiohttp
(``pip install 'asyncrec[server]'``) and are imported on first use, so that
``import asyncrec`` does not import aiohttp.
"""

from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from ._encoder_pool import EncoderPool
from ._errors import (
    AsyncrecError,
    EncodingError,
    InvalidModificationError,
    InvalidStateError,
    NotFoundError,
    NotReadableError,
    NotSupportedError,
    OverconstrainedError,
    QuotaExceededError,
    SecurityError,
    SinkError,
    UnknownError,
)
from ._events import BlobEvent, Completion, ErrorEvent, Event
from ._object_segments import ObjectSegmentSink
from ._object_storage import ObjectSink
from ._recorder import MediaRecorder
from ._recover import Recovered, recover
from ._repair import RepairResult, repair
from ._segments import Segment, SegmentSink
from ._sink import FileSink, Sink
from ._stats import RecorderStatistics, TrackStatistics
from ._stream import MediaStream, Track
from .sources import (
    FrameTrack,
    MediaDeviceInfo,
    MediaFileStream,
    SampleTrack,
    SourceStream,
    SourceTrack,
    enumerateDevices,
    getUserMedia,
    moving_pattern,
    open_media,
    sine_tone,
)

if _TYPE_CHECKING:
    from .whip import WhipEndpoint, WhipSession, record_sessions

__version__ = "0.1.0"

#: Names imported from ``asyncrec.whip`` on first access (it imports aiohttp).
_WHIP_NAMES = frozenset({"WhipEndpoint", "WhipSession", "record_sessions"})

__all__ = [
    "AsyncrecError",
    "BlobEvent",
    "Completion",
    "EncoderPool",
    "EncodingError",
    "ErrorEvent",
    "Event",
    "FileSink",
    "FrameTrack",
    "InvalidModificationError",
    "InvalidStateError",
    "MediaDeviceInfo",
    "MediaFileStream",
    "MediaRecorder",
    "MediaStream",
    "NotFoundError",
    "NotReadableError",
    "NotSupportedError",
    "ObjectSegmentSink",
    "ObjectSink",
    "OverconstrainedError",
    "QuotaExceededError",
    "RecorderStatistics",
    "Recovered",
    "RepairResult",
    "SampleTrack",
    "SecurityError",
    "Segment",
    "SegmentSink",
    "Sink",
    "SinkError",
    "SourceStream",
    "SourceTrack",
    "Track",
    "TrackStatistics",
    "UnknownError",
    "WhipEndpoint",
    "WhipSession",
    "enumerateDevices",
    "getUserMedia",
    "moving_pattern",
    "open_media",
    "record_sessions",
    "recover",
    "repair",
    "sine_tone",
]


def __getattr__(name: str) -> _Any:
    if name in _WHIP_NAMES:
        from . import whip

        value = getattr(whip, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _WHIP_NAMES)
