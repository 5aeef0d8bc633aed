"""Devices: ``enumerateDevices()`` and ``getUserMedia()``, the asyncrec side of
Media Capture and Streams, on PyAV's capture formats.

* Linux: v4l2 cameras (``/dev/videoN``) and ALSA microphones (``hw:C,D``, ``default``);
  tested here as far as a machine without devices allows.
* macOS: AVFoundation (``avfoundation``), Windows: DirectShow (``dshow``): written from
  FFmpeg's device documentation (https://ffmpeg.org/ffmpeg-devices.html), untested.
* Fake devices, like Chromium's ``--use-fake-device-for-media-stream``: a moving test
  pattern and a tone from FFmpeg's lavfi sources, paced in real time by FFmpeg's
  ``realtime`` filters, read through exactly the same path as a device. Chosen with
  ``fake=True`` or the environment variable ``ASYNCREC_FAKE_DEVICES=1``.

Every open, read and close runs on the input's own thread (:class:`MediaReader`).
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from .._errors import NotFoundError, OverconstrainedError
from ._reader import InputSpec, MediaReader, SourceTrack
from ._source_stream import SourceStream

FAKE_CAMERA = "fake-camera"
FAKE_MICROPHONE = "fake-microphone"

Constraints = bool | dict[str, Any]


@dataclass(frozen=True)
class MediaDeviceInfo:
    """A capture device, as ``navigator.mediaDevices.enumerateDevices()`` describes it."""

    deviceId: str  # noqa: N815 - W3C spelling
    kind: Literal["videoinput", "audioinput"]
    label: str
    groupId: str  # noqa: N815 - W3C spelling


def fake_devices_enabled(fake: bool | None = None) -> bool:
    """``fake`` if given, else whether ``ASYNCREC_FAKE_DEVICES=1``."""
    if fake is not None:
        return fake
    return os.environ.get("ASYNCREC_FAKE_DEVICES", "") not in ("", "0")


async def enumerateDevices(*, fake: bool | None = None) -> list[MediaDeviceInfo]:  # noqa: N802 - W3C spelling
    """The capture devices of this machine (or the fake ones). Reads the system's device
    lists on a thread."""
    if fake_devices_enabled(fake):
        return [
            MediaDeviceInfo(FAKE_CAMERA, "videoinput", "Fake camera (moving test pattern)", "fake"),
            MediaDeviceInfo(FAKE_MICROPHONE, "audioinput", "Fake microphone (440 Hz tone)", "fake"),
        ]
    return await asyncio.to_thread(_system_devices)


def _system_devices() -> list[MediaDeviceInfo]:
    if sys.platform.startswith("linux"):
        return _linux_devices()
    return []  # AVFoundation and DirectShow list devices only in FFmpeg's log: see getUserMedia


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            return file.read().strip()
    except OSError:
        return ""


def _linux_devices() -> list[MediaDeviceInfo]:
    devices: list[MediaDeviceInfo] = []
    for node in sorted(glob.glob("/sys/class/video4linux/video*"), key=_natural):
        name = os.path.basename(node)
        # Each camera usually has a capture node and a metadata node; index 0 is capture.
        if _read(f"{node}/index") not in ("", "0"):
            continue
        label = _read(f"{node}/name") or name
        devices.append(MediaDeviceInfo(f"/dev/{name}", "videoinput", label, label))
    captures = []
    for line in _read("/proc/asound/pcm").splitlines():
        # "00-00: ALC3246 Analog : ALC3246 Analog : playback 1 : capture 1"
        match = re.match(r"(\d+)-(\d+): ([^:]*) : ([^:]*) :(.*)", line)
        if match and "capture" in match.group(5):
            card, dev = int(match.group(1)), int(match.group(2))
            captures.append(MediaDeviceInfo(f"hw:{card},{dev}", "audioinput", match.group(3).strip(), f"card{card}"))
    if captures:
        devices.append(MediaDeviceInfo("default", "audioinput", "Default microphone", "default"))
        devices.extend(captures)
    return devices


def device_capabilities(device: MediaDeviceInfo) -> list[str]:
    """What a device offers, as lines for people (blocking: call it on a thread).

    v4l2 cameras are asked through FFmpeg's ``list_formats`` (the camera is opened
    briefly); fake devices take any constraint in range; ALSA and the other platforms do
    not say through FFmpeg.
    """
    if device.deviceId == FAKE_CAMERA:
        return ["any size up to 7680x4320, 1-240 fps (moving test pattern, yuv420p)"]
    if device.deviceId == FAKE_MICROPHONE:
        return ["8000-192000 Hz, 1-8 channels (440 Hz tone)"]
    if device.kind == "videoinput" and sys.platform.startswith("linux"):
        import av

        # FFmpeg ends the listing with an "exit" error, hence the suppress.
        with av.logging.Capture() as logs, contextlib.suppress(Exception):
            av.open(device.deviceId, format="v4l2", options={"list_formats": "all"}).close()
        return parse_v4l2_formats(message for _level, _name, message in logs)
    return []


def parse_v4l2_formats(lines: Iterable[str]) -> list[str]:
    """``list_formats`` log lines (``Raw : yuyv422 : YUYV 4:2:2 : 640x480 1280x720``) as
    ``yuyv422: 640x480 1280x720``."""
    found = []
    for line in lines:
        parts = [part.strip() for part in line.split(":")]
        if len(parts) >= 4 and parts[0] in ("Raw", "Compressed"):
            found.append(f"{parts[1]}: {parts[-1]}")
    return found


def _natural(text: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


# -- constraints ---------------------------------------------------------------------------------
_RANGES = {
    "width": (1, 7680),
    "height": (1, 4320),
    "frameRate": (1, 240),
    "sampleRate": (8000, 192000),
    "channelCount": (1, 8),
}


def _wanted(constraints: dict[str, Any], name: str, default: float) -> float:
    """The value to ask the device for: exact, else ideal, else the default clamped to
    min/max. Raises OverconstrainedError when no value can satisfy the constraint."""
    value = constraints.get(name)
    low, high = _RANGES[name]
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float | dict):
        raise TypeError(f"{name} must be a number or a dict of exact/ideal/min/max")
    if isinstance(value, int | float):
        return min(max(value, low), high)  # a bare value is "ideal": the nearest possible
    unknown = set(value) - {"exact", "ideal", "min", "max"}
    if unknown:
        raise TypeError(f"{name}: unknown keys {sorted(unknown)}")
    lo = max(low, value.get("min", low))
    hi = min(high, value.get("max", high))
    if "exact" in value:
        lo = max(lo, value["exact"])
        hi = min(hi, value["exact"])
    if lo > hi:
        raise OverconstrainedError(name, f"no device can give {name} {value!r}")
    bounds: dict[str, float] = value
    chosen = bounds["exact"] if "exact" in bounds else bounds.get("ideal", default)
    return float(min(max(chosen, lo), hi))


def _check_actual(constraints: dict[str, Any], name: str, actual: float) -> None:
    value = constraints.get(name)
    if not isinstance(value, dict):
        return
    exact = value.get("exact")
    if (
        (exact is not None and abs(actual - exact) > 1e-6)
        or actual < value.get("min", actual)
        or actual > value.get("max", actual)
    ):
        raise OverconstrainedError(name, f"the device gives {name} {actual}, not {value!r}")


def _device_id(constraints: dict[str, Any]) -> str | None:
    value = constraints.get("deviceId")
    if isinstance(value, dict):
        value = value.get("exact", value.get("ideal"))
    if value is not None and not isinstance(value, str):
        raise TypeError("deviceId must be a str")
    return value


def _as_dict(constraints: Constraints) -> dict[str, Any] | None:
    if constraints is False:
        return None
    if constraints is True:
        return {}
    if isinstance(constraints, dict):
        return constraints
    raise TypeError("audio and video must be True, False or a dict of constraints")


# -- inputs ----------------------------------------------------------------------------------------
def _video_input(constraints: dict[str, Any], fake: bool) -> InputSpec:
    width = int(_wanted(constraints, "width", 640))
    height = int(_wanted(constraints, "height", 480))
    rate = _wanted(constraints, "frameRate", 30)
    device = _device_id(constraints)
    if fake:
        if device not in (None, FAKE_CAMERA):
            raise NotFoundError(f"no fake camera {device!r}; the fake camera is {FAKE_CAMERA!r}")
        graph = f"testsrc2=size={width}x{height}:rate={rate:g},realtime"
        return InputSpec(graph, "lavfi", label="Fake camera (moving test pattern)")
    options = {"video_size": f"{width}x{height}", "framerate": f"{rate:g}"}
    if sys.platform == "darwin":
        return InputSpec(f"{device or '0'}:none", "avfoundation", options, label=f"camera {device or 0}")
    if sys.platform == "win32":
        if device is None:
            raise NotFoundError("DirectShow needs a deviceId (the camera's name)")
        return InputSpec(f"video={device}", "dshow", options, label=device)
    if device is None:
        cameras = [d for d in _linux_devices() if d.kind == "videoinput"]
        if not cameras:
            raise NotFoundError("no camera (/dev/video*) on this machine")
        device = cameras[0].deviceId
    if not os.path.exists(device):
        raise NotFoundError(f"no camera {device}")
    return InputSpec(device, "v4l2", options, label=device)


def _audio_input(constraints: dict[str, Any], fake: bool) -> InputSpec:
    rate = int(_wanted(constraints, "sampleRate", 48000))
    channels = int(_wanted(constraints, "channelCount", 1))
    device = _device_id(constraints)
    if fake:
        if device not in (None, FAKE_MICROPHONE):
            raise NotFoundError(f"no fake microphone {device!r}; the fake microphone is {FAKE_MICROPHONE!r}")
        layout = "mono" if channels == 1 else "stereo" if channels == 2 else f"{channels}c"
        graph = f"sine=frequency=440:sample_rate={rate},aformat=channel_layouts={layout},arealtime"
        return InputSpec(graph, "lavfi", label="Fake microphone (440 Hz tone)")
    options = {"sample_rate": str(rate), "channels": str(channels)}
    if sys.platform == "darwin":
        return InputSpec(f"none:{device or '0'}", "avfoundation", options, label=f"microphone {device or 0}")
    if sys.platform == "win32":
        if device is None:
            raise NotFoundError("DirectShow needs a deviceId (the microphone's name)")
        return InputSpec(f"audio={device}", "dshow", options, label=device)
    known = [d.deviceId for d in _linux_devices() if d.kind == "audioinput"]
    if device is None:
        if not known:
            raise NotFoundError("no microphone (ALSA capture device) on this machine")
        device = "default"
    elif device not in known:
        raise NotFoundError(f"no microphone {device!r}; ALSA capture devices: {known or 'none'}")
    return InputSpec(device, "alsa", options, label=device)


async def getUserMedia(  # noqa: N802 - W3C spelling
    *, audio: Constraints = False, video: Constraints = False, fake: bool | None = None
) -> SourceStream:
    """Open a camera and/or a microphone (or the fake ones) as a live MediaStream.

    ``audio``/``video`` are True or a dict of constraints: ``deviceId``, ``width``,
    ``height``, ``frameRate``, ``sampleRate``, ``channelCount``; a bare value is ideal
    (the nearest possible is used), a dict may give ``exact``, ``ideal``, ``min``, ``max``.
    Frames carry the device's capture timestamps. ``await stream.aclose()`` (or
    ``async with stream:``) releases the devices and waits for their threads; so does
    ``track.stop()`` of every track of a device, without waiting (see :class:`SourceStream`).

    Raises:
        TypeError: neither audio nor video was asked for, or a constraint is malformed.
        NotFoundError: no device matches.
        NotReadableError: the device is busy or cannot be read.
        OverconstrainedError: a constraint cannot be satisfied (``error.constraint``).
    Cancelling it closes whatever was opened.
    """
    wanted_video = _as_dict(video)
    wanted_audio = _as_dict(audio)
    if wanted_video is None and wanted_audio is None:
        raise TypeError("getUserMedia needs audio or video")
    use_fake = fake_devices_enabled(fake)
    specs: list[tuple[str, InputSpec, dict[str, Any]]] = []
    if wanted_video is not None:
        specs.append(("video", _video_input(wanted_video, use_fake), wanted_video))
    if wanted_audio is not None:
        specs.append(("audio", _audio_input(wanted_audio, use_fake), wanted_audio))
    tracks: list[SourceTrack] = []
    readers: list[MediaReader] = []
    try:
        for kind, spec, constraints in specs:
            reader = MediaReader(spec, live=True, kinds=(kind,))
            readers.append(reader)
            tracks.extend(await reader.open())
            _check_opened(kind, reader, constraints)
    except BaseException:
        # Not waited for: the error (or the cancellation) goes on at once; the threads
        # close their devices and exit by themselves.
        SourceStream(tracks, readers).close()
        raise
    return SourceStream(tracks, readers)


def _check_opened(kind: str, reader: MediaReader, constraints: dict[str, Any]) -> None:
    """A device may give another size or rate than asked: exact/min/max must hold."""
    info = reader.stream_info.get(kind, {})
    for name, key in (("width", "width"), ("height", "height"), ("sampleRate", "rate"), ("channelCount", "channels")):
        if key in info:
            _check_actual(constraints, name, info[key])
