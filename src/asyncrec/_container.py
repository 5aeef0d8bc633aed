"""Setting up a recording's container and encoders (on the worker thread).

Everything the muxer and the encoders are asked to do is here: the muxer options that
make it write short clusters/fragments/pages into a write-only sink, each stream's
encoder settings, and the streams of copied tracks (their parameters read from their
first frame: picture size, H.264 parameter sets, an ``OpusHead``).
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass
from fractions import Fraction

import av
from av.audio.stream import AudioStream
from av.container import OutputContainer
from av.video.stream import VideoStream

from ._audio import AUDIO_RATE, AUDIO_TIME_BASE
from ._chunks import WriteOnlySink
from ._encoded import EncodedFrame, h264_parameter_sets, opus_head
from ._formats import CODECS, CodecSpec, Format
from ._video import VIDEO_TIME_BASE, codec_threads, recording_size

#: How long the muxer waits for a late track before writing the others (microseconds).
MAX_INTERLEAVE_DELTA_US = 500_000
#: Size used for a video track that sent nothing before the header had to be written.
DEFAULT_VIDEO_SIZE = (640, 480)
#: Encoders whose rate control follows the timestamps alone; the others (x264, SVT-AV1)
#: size their frames from the frame rate, so they get a nominal one when none is known.
TIMESTAMP_RATE_CONTROL = frozenset({"libvpx", "libvpx-vp9"})
NOMINAL_FRAME_RATE = Fraction(30)


@dataclass(frozen=True)
class WorkerSettings:
    """What the encoders and the muxer are asked to do."""

    video_bits_per_second: int
    audio_bits_per_second: int
    audio_bitrate_mode: str
    #: Seconds of media per chunk, or None for one chunk at the end.
    timeslice: float | None
    #: Force a key frame after this many seconds or frames (None: the encoder decides).
    key_frame_interval: float | None = None
    key_frame_count: int | None = None
    #: Every chunk a file of its own (header, then a key frame first).
    independent_chunks: bool = False
    #: Larger pictures are scaled down to fit (width, height), aspect ratio kept.
    max_video_size: tuple[int, int] | None = None


@dataclass(frozen=True)
class StreamSetup:
    """What is known of a track when the header is written."""

    kind: str
    #: Its first frame (None if it sent nothing in time); an encoded one is copied.
    first: av.VideoFrame | av.AudioFrame | EncodedFrame | None
    #: The frame rate its source declares (``frame_rate`` on the track), else None:
    #: the file then declares none and players follow the timestamps (variable rate).
    frame_rate: Fraction | None = None


Stream = VideoStream | AudioStream


def open_container(
    fmt: Format,
    setups: list[StreamSetup],
    settings: WorkerSettings,
    sink: WriteOnlySink,
    cluster_ms: int,
    matroska_cluster_ms: int,
) -> tuple[OutputContainer, list[Stream]]:
    """Open the muxer on ``sink`` and add one stream per track (header not yet written).

    Raises whatever PyAV raises (the worker maps it to EncodingError).
    """
    container = _open_muxer(fmt, sink, cluster_ms, matroska_cluster_ms)
    streams: list[Stream] = []
    try:
        for setup in setups:
            if isinstance(setup.first, EncodedFrame):
                streams.append(_add_copy(container, setup.first))
            elif setup.kind == "video":
                assert fmt.video is not None
                first = setup.first if isinstance(setup.first, av.VideoFrame) else None
                streams.append(_add_video(container, fmt.video, first, setup.frame_rate, settings))
            else:
                assert fmt.audio is not None
                first_audio = setup.first if isinstance(setup.first, av.AudioFrame) else None
                streams.append(_add_audio(container, fmt.audio, first_audio, settings))
    except BaseException:
        container.close()
        raise
    return container, streams


def open_piece(
    fmt: Format, encoders: list[Stream], sink: WriteOnlySink, cluster_ms: int, matroska_cluster_ms: int
) -> OutputContainer:
    """A new muxer on ``sink`` for the packets of the already open ``encoders`` (streams
    in the same order, so packets keep their stream index), header written: the next
    independent chunk. Raises whatever PyAV raises."""
    container = _open_muxer(fmt, sink, cluster_ms, matroska_cluster_ms, piece=True)
    try:
        for encoder in encoders:
            # opaque: the encoder's own codec and parameters (extradata included).
            container.add_stream_from_template(encoder, opaque=True)
        container.start_encoding()
    except BaseException:
        container.close()
        raise
    return container


def _open_muxer(
    fmt: Format, sink: WriteOnlySink, cluster_ms: int, matroska_cluster_ms: int, *, piece: bool = False
) -> OutputContainer:
    """``cluster_ms``: Ogg pages and MP4 fragments; ``matroska_cluster_ms``: Matroska
    clusters (0: a block each, see ``_chunks``)."""
    options: dict[str, str] = {"max_interleave_delta": str(MAX_INTERLEAVE_DELTA_US)}
    if fmt.muxer in ("webm", "matroska"):
        options["cluster_time_limit"] = str(matroska_cluster_ms)
    elif fmt.muxer == "ogg":
        options["page_duration"] = str(cluster_ms * 1000)
    elif fmt.muxer == "mp4":
        # Fragmented, so nothing needs a seek back: ftyp+moov first, then moof/mdat
        # fragments as short as Matroska's clusters. delay_moov writes the moov with the
        # first fragment, once the encoders' priming is known, so an edit list keeps AAC
        # and Opus priming out of the timeline.
        options["movflags"] = "frag_keyframe+empty_moov+default_base_moof+delay_moov"
        if piece:
            # A later independent chunk: its fragments keep the recording's times (tfdt),
            # which MediaSource places them by, instead of starting again at 0.
            options["movflags"] += "+frag_discont"
        options["frag_duration"] = str(cluster_ms * 1000)
    return av.open(sink, mode="w", format=fmt.muxer, container_options=options)


def _add_video(
    container: OutputContainer,
    spec: CodecSpec,
    first: av.VideoFrame | None,
    frame_rate: Fraction | None,
    settings: WorkerSettings,
) -> VideoStream:
    width, height = recording_size(
        spec, *((first.width, first.height) if first is not None else DEFAULT_VIDEO_SIZE), settings.max_video_size
    )
    declared = frame_rate
    if declared is None and spec.encoder not in TIMESTAMP_RATE_CONTROL:
        declared = NOMINAL_FRAME_RATE
    stream = container.add_stream(spec.encoder, rate=declared, options=dict(spec.options))
    assert isinstance(stream, VideoStream)
    stream.width = width
    stream.height = height
    stream.pix_fmt = spec.pix_fmt
    stream.bit_rate = settings.video_bits_per_second
    ctx = stream.codec_context
    ctx.time_base = VIDEO_TIME_BASE
    if declared is None:
        # PyAV declares 24 fps by default; a wrong rate makes players and FFmpeg see
        # non-monotonic timestamps. None declared: timestamps rule (variable rate).
        ctx.framerate = Fraction(0, 1)
    # FFmpeg's default GOP of 12 frames would spend most of the bitrate on key frames;
    # an interval the user asked for is forced frame by frame instead.
    asked = settings.key_frame_count is not None or settings.key_frame_interval is not None
    ctx.gop_size = 1 << 20 if asked else 300
    ctx.thread_count = codec_threads(spec.encoder, width, height)
    return stream


_templates: dict[str, Stream] = {}
_template_holder: list[OutputContainer] = []
_templates_lock = threading.Lock()


def _template(encoder: str) -> Stream:
    """A stream of ``encoder``'s codec, never opened: what a copied stream is made from
    (PyAV adds a stream with a codec context, to set extradata on, only from a template)."""
    with _templates_lock:
        template = _templates.get(encoder)
        if template is None:
            if not _template_holder:
                _template_holder.append(av.open(io.BytesIO(), mode="w", format="matroska"))
            added = _template_holder[0].add_stream(encoder)
            assert isinstance(added, VideoStream | AudioStream)
            template = _templates[encoder] = added
        return template


def _add_copy(container: OutputContainer, first: EncodedFrame) -> Stream:
    """A stream for the copied frames of a track, set up from its first frame (a key
    frame, for video). Raises ValueError for a codec the container does not take."""
    spec = CODECS[first.codec]
    stream = container.add_stream_from_template(_template(spec.encoder), opaque=True)
    assert isinstance(stream, VideoStream | AudioStream)
    if isinstance(stream, VideoStream):
        video = stream.codec_context
        video.width, video.height = first.size or DEFAULT_VIDEO_SIZE
        video.pix_fmt = "yuv420p"
        video.time_base = stream.time_base = VIDEO_TIME_BASE
        if first.codec == "avc1":
            video.extradata = h264_parameter_sets(first.data)
    else:
        audio = stream.codec_context
        audio.sample_rate = AUDIO_RATE
        audio.layout = "stereo"
        audio.time_base = stream.time_base = AUDIO_TIME_BASE
        if first.codec == "opus":
            audio.extradata = opus_head()
    return stream


def _add_audio(
    container: OutputContainer, spec: CodecSpec, first: av.AudioFrame | None, settings: WorkerSettings
) -> AudioStream:
    channels = 1 if first is not None and first.layout.nb_channels == 1 else 2
    options = dict(spec.options)
    if spec.id == "opus":
        options["vbr"] = "off" if settings.audio_bitrate_mode == "constant" else "on"
    stream = container.add_stream(spec.encoder, rate=AUDIO_RATE, options=options)
    assert isinstance(stream, AudioStream)
    stream.bit_rate = min(510_000, max(6_000, settings.audio_bits_per_second))
    ctx = stream.codec_context
    ctx.layout = "mono" if channels == 1 else "stereo"
    ctx.time_base = AUDIO_TIME_BASE
    return stream
