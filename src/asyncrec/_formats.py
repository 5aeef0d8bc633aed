"""MIME types, the container x codec table and the encoder settings behind it.

This module is the one place that knows which containers and codecs asyncrec records:
add a row to :data:`CODECS` or :data:`CONTAINERS` and every other part follows.
The strings are Chromium's (``video/webm;codecs=vp8,opus``); codec strings may carry
RFC 6381 detail (``vp09.00.10.08``), of which only the identifier before the first dot
chooses the codec, as the spec's "is type supported" algorithm says.
"""

from __future__ import annotations

import email.message
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import av

from ._errors import NotSupportedError

Kind = Literal["audio", "video"]

#: Chromium's defaults when the user gives no bitrate.
DEFAULT_VIDEO_BITS_PER_SECOND = 2_500_000
DEFAULT_AUDIO_BITS_PER_SECOND = 128_000


@dataclass(frozen=True)
class CodecSpec:
    """One codec asyncrec can record, and how its encoder is set up."""

    #: The identifier written in ``mimeType`` for WebM/Matroska/Ogg (``vp8``, ``opus``).
    id: str
    kind: Kind
    #: The FFmpeg encoder PyAV opens.
    encoder: str
    #: Codec identifiers (lower case, before the first ".") that choose this codec.
    aliases: frozenset[str]
    #: Encoder options for real-time use, set before the encoder opens.
    options: Mapping[str, str] = field(default_factory=dict)
    #: The identifier written in ``mimeType`` for MP4 (RFC 6381: ``vp09``, ``av01``).
    mp4_id: str = ""
    #: Pixel format the encoder is fed (video).
    pix_fmt: str = "yuv420p"
    #: Audio samples per encoded frame at 48 kHz (audio).
    frame_size: int = 0
    #: Smallest picture the encoder takes (video); smaller recordings are letterboxed.
    min_size: int = 2
    #: Whether FFmpeg's strict WebM muxer takes it; if not, WebM is written by the
    #: Matroska muxer, as Chromium writes H.264 "WebM".
    in_webm: bool = True
    #: Full codec strings accepted when the identifier alone says too little
    #: (``mp4a.40.2`` is AAC-LC; ``mp4a.40.5``, HE-AAC, is not something we can encode).
    exact: frozenset[str] = frozenset()

    def mime_id(self, muxer: str) -> str:
        return self.mp4_id or self.id if muxer == "mp4" else self.id


@dataclass(frozen=True)
class ContainerSpec:
    """One container MIME type and the codecs it may hold; the first of each is the default."""

    mime: str
    #: The FFmpeg muxer.
    muxer: str
    video: tuple[str, ...]
    audio: tuple[str, ...]
    #: The file name extension of a recording.
    extension: str


_VPX_REALTIME = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}

CODECS: dict[str, CodecSpec] = {
    spec.id: spec
    for spec in (
        # libwebrtc's real-time settings: no look-ahead, so a frame in gives a packet out.
        CodecSpec("vp8", "video", "libvpx", frozenset({"vp8"}), {**_VPX_REALTIME, "error-resilient": "0"}),
        CodecSpec("vp9", "video", "libvpx-vp9", frozenset({"vp9", "vp09"}), {**_VPX_REALTIME, "row-mt": "1"}, "vp09"),
        # SVT-AV1's low-delay prediction structure (no look-ahead) needs its CBR mode.
        CodecSpec(
            "av1",
            "video",
            "libsvtav1",
            frozenset({"av1", "av01"}),
            {"preset": "12", "svtav1-params": "pred-struct=1:rc=2"},
            "av01",
            # SVT-AV1 refuses pictures under 4 pixels and fails to configure under 64.
            min_size=64,
        ),
        CodecSpec(
            "avc1",
            "video",
            "libx264",
            frozenset({"avc1", "avc3", "h264"}),
            {"preset": "veryfast", "tune": "zerolatency"},
            in_webm=False,
        ),
        CodecSpec(
            "opus",
            "audio",
            "libopus",
            frozenset({"opus"}),
            {"application": "audio", "frame_duration": "20"},
            frame_size=960,
        ),
        CodecSpec(
            "mp4a.40.2",
            "audio",
            "aac",
            frozenset({"mp4a"}),
            frame_size=1024,
            in_webm=False,
            exact=frozenset({"mp4a", "mp4a.40", "mp4a.40.2", "mp4a.40.02"}),
        ),
    )
}

CONTAINERS: dict[str, ContainerSpec] = {
    spec.mime: spec
    for spec in (
        ContainerSpec("video/webm", "webm", ("vp8", "vp9", "av1", "avc1"), ("opus",), ".webm"),
        ContainerSpec("audio/webm", "webm", (), ("opus",), ".weba"),
        ContainerSpec("video/x-matroska", "matroska", ("vp8", "vp9", "av1", "avc1"), ("opus", "mp4a.40.2"), ".mkv"),
        ContainerSpec("video/mp4", "mp4", ("avc1", "vp9", "av1"), ("mp4a.40.2", "opus"), ".mp4"),
        ContainerSpec("audio/mp4", "mp4", (), ("mp4a.40.2", "opus"), ".m4a"),
        ContainerSpec("audio/ogg", "ogg", (), ("opus",), ".ogg"),
    )
}


@dataclass(frozen=True)
class MimeType:
    """A parsed MIME type: ``type/subtype`` and its parameters (names in lower case)."""

    essence: str
    params: Mapping[str, str]

    @property
    def codecs(self) -> list[str]:
        """The entries of the ``codecs`` parameter, stripped; empty when there is none."""
        raw = self.params.get("codecs")
        if raw is None:
            return []
        return [part.strip() for part in raw.split(",")]


_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _is_token(text: str) -> bool:
    return bool(text) and all(c in _TOKEN_CHARS for c in text)


def parse_mime_type(text: str) -> MimeType | None:
    """Parse ``text`` as a MIME type (RFC 2045: ``type/subtype`` and parameters, quoted
    values allowed), with the standard library's ``Content-Type`` parser.

    On top of what that parser takes, as browsers do: the type, subtype and parameter
    names must be tokens, every parameter needs a value (``;codecs`` is an error, an empty
    one, ``;;``, is skipped) with no quote left once unquoted, and the first of a repeated
    parameter counts. RFC 2231 parameters (``codecs*=...``) are not the spec's and are
    ignored. Returns None when ``text`` is not a valid MIME type string.
    """
    header = email.message.Message()
    header["content-type"] = text
    essence = header.get_content_type()  # lower case; "text/plain" when it is not type/subtype
    # The first entry is the type as written; the others the parameters, names in lower
    # case, values unquoted.
    (written, _), *raw_params = header.get_params([("", "")])
    kind, _, subtype = essence.partition("/")
    if written.lower() != essence or not _is_token(kind) or not _is_token(subtype):
        return None
    params: dict[str, str] = {}
    for name, value in raw_params:
        if not name and not value:  # an empty parameter: ";;" or a trailing ";"
            continue
        # RFC 2231 (name*=charset'lang'value) comes as a tuple; a bare name (no "=") and an
        # empty value both come as "".
        unquoted = value[2] if isinstance(value, tuple) else value
        if not _is_token(name) or not unquoted or '"' in unquoted:
            return None
        if not isinstance(value, tuple):
            params.setdefault(name, value)
    return MimeType(essence, params)


@functools.cache
def encoder_available(name: str) -> bool:
    """Whether the installed PyAV can open the FFmpeg encoder ``name``."""
    try:
        av.Codec(name, "w")
    except Exception:  # noqa: BLE001 - any failure means "not available"
        return False
    return True


def _codec_for(identifier: str) -> CodecSpec | None:
    ident = identifier.split(".", 1)[0].lower()
    for spec in CODECS.values():
        if ident in spec.aliases and (not spec.exact or identifier.lower() in spec.exact):
            return spec
    return None


def _requested(mime: MimeType) -> tuple[ContainerSpec, CodecSpec | None, CodecSpec | None]:
    """The container and the codecs ``mime`` names; raises NotSupportedError."""
    container = CONTAINERS.get(mime.essence)
    if container is None:
        raise NotSupportedError(f"unsupported container type {mime.essence!r}")
    video: CodecSpec | None = None
    audio: CodecSpec | None = None
    for entry in mime.codecs:
        spec = _codec_for(entry)
        if spec is None:
            raise NotSupportedError(f"unsupported codec {entry!r}")
        allowed = container.video if spec.kind == "video" else container.audio
        if spec.id not in allowed:
            raise NotSupportedError(f"{mime.essence} cannot hold {entry!r}")
        if not encoder_available(spec.encoder):
            raise NotSupportedError(f"no {spec.encoder} encoder in this PyAV build")
        if spec.kind == "video":
            if video is not None:
                raise NotSupportedError("more than one video codec")
            video = spec
        else:
            if audio is not None:
                raise NotSupportedError("more than one audio codec")
            audio = spec
    if not muxer_available(container.muxer):
        raise NotSupportedError(f"no {container.muxer} muxer in this PyAV build")
    return container, video, audio


def copyable_codecs(mime_type: str, fmt: Format) -> tuple[frozenset[str], frozenset[str]]:
    """The codec ids a recording of ``fmt`` may copy as they come, (video, audio): the one
    ``mime_type`` names for a kind, else every one the container holds for it as its own
    (WebM: VP8, VP9, AV1, Opus; H.264 in WebM, Chromium's Matroska-with-a-WebM-name, only
    when named); none for a kind ``fmt`` does not record."""
    named_video = named_audio = None
    parsed = parse_mime_type(mime_type) if mime_type else None
    if parsed is not None:
        _, named_video, named_audio = _requested(parsed)

    def codecs(recorded: CodecSpec | None, named: CodecSpec | None, held: tuple[str, ...]) -> frozenset[str]:
        if recorded is None:
            return frozenset()
        if named is not None:
            return frozenset({named.id})
        return frozenset(c for c in held if CODECS[c].in_webm or fmt.container.muxer != "webm")

    return (
        codecs(fmt.video, named_video, fmt.container.video),
        codecs(fmt.audio, named_audio, fmt.container.audio),
    )


@functools.cache
def muxer_available(muxer: str) -> bool:
    """Whether the installed PyAV has the muxer ``muxer``."""
    return muxer in av.formats_available


def check_type(mime_type: str) -> None:
    """Raise NotSupportedError unless ``mime_type`` can be recorded ("" always can)."""
    if mime_type == "":
        return
    parsed = parse_mime_type(mime_type)
    if parsed is None:
        raise NotSupportedError(f"{mime_type!r} is not a valid MIME type")
    _requested(parsed)


def is_type_supported(mime_type: str) -> bool:
    """The spec's "is type supported", answered from what this PyAV can encode."""
    try:
        check_type(mime_type)
    except NotSupportedError:
        return False
    return True


@dataclass(frozen=True)
class Format:
    """What one recording writes: a container and a codec per recorded kind."""

    container: ContainerSpec
    video: CodecSpec | None
    audio: CodecSpec | None

    @property
    def muxer(self) -> str:
        """The FFmpeg muxer: the container's, except Matroska's for codecs WebM refuses."""
        if self.container.muxer == "webm" and not all(s.in_webm for s in (self.video, self.audio) if s is not None):
            return "matroska"
        return self.container.muxer

    @property
    def mime_type(self) -> str:
        """The MIME type with the codecs used, as Chromium spells it (identifiers only)."""
        return self.with_codecs([spec.mime_id(self.container.muxer) for spec in (self.video, self.audio) if spec])

    def with_codecs(self, codecs: list[str]) -> str:
        """The MIME type with these codec strings (video first)."""
        return f"{self.container.mime};codecs={','.join(codecs)}"


def resolve_format(mime_type: str, *, has_video: bool, has_audio: bool) -> Format:
    """Choose the container and codecs for a stream with the given kinds of track.

    A kind the type names no codec for gets the container's default codec; a kind the
    container cannot hold (video in ``audio/webm``) is not recorded, as in Chromium.
    Raises NotSupportedError when nothing in the stream can be recorded with the type.
    """
    if mime_type == "":
        container = CONTAINERS["video/webm" if has_video else "audio/webm"]
        video: CodecSpec | None = None
        audio: CodecSpec | None = None
    else:
        parsed = parse_mime_type(mime_type)
        if parsed is None:
            raise NotSupportedError(f"{mime_type!r} is not a valid MIME type")
        container, video, audio = _requested(parsed)
    if has_video and video is None and container.video:
        video = CODECS[container.video[0]]
    if has_audio and audio is None and container.audio:
        audio = CODECS[container.audio[0]]
    chosen = Format(
        container,
        video if has_video else None,
        audio if has_audio else None,
    )
    if chosen.video is None and chosen.audio is None:
        raise NotSupportedError(f"{mime_type or 'the default type'} cannot record this stream")
    for spec in (chosen.video, chosen.audio):
        if spec is not None and not encoder_available(spec.encoder):
            raise NotSupportedError(f"no {spec.encoder} encoder in this PyAV build")
    return chosen


def split_bits_per_second(total: int, *, has_video: bool = True, has_audio: bool = True) -> tuple[int, int]:
    """Share ``bitsPerSecond`` between video and audio as browsers do: audio gets a tenth,
    at least 500 b/s and at most 128 kb/s, video the rest (at least 1 kb/s); a kind that is
    not recorded gets nothing. Even ``bitsPerSecond=0`` leaves both non-zero, as the
    web-platform-tests expect.

    Returns ``(video, audio)``.
    """
    if not has_video:
        return 0, total
    if not has_audio:
        return total, 0
    audio = max(MIN_AUDIO_SHARE, min(DEFAULT_AUDIO_BITS_PER_SECOND, total // 10))
    return max(MIN_VIDEO_SHARE, total - audio), audio


#: The least ``bitsPerSecond`` leaves to each kind.
MIN_AUDIO_SHARE = 500
MIN_VIDEO_SHARE = 1000
