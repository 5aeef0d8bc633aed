"""Sources of tracks: devices and fake devices, media files, generated frames."""

from ._devices import MediaDeviceInfo, enumerateDevices, getUserMedia
from ._generated import FrameTrack, SampleTrack, moving_pattern, sine_tone
from ._media import MediaFileStream, open_media
from ._reader import SourceTrack
from ._source_stream import SourceStream

__all__ = [
    "FrameTrack",
    "MediaDeviceInfo",
    "MediaFileStream",
    "SampleTrack",
    "SourceStream",
    "SourceTrack",
    "enumerateDevices",
    "getUserMedia",
    "moving_pattern",
    "open_media",
    "sine_tone",
]
