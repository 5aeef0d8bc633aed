"""The ``asyncrec`` command: ``asyncrec record OUT ...``, ``asyncrec devices`` and
``asyncrec serve``.

Exit status: 0 on success, 2 for bad arguments (one line on stderr, no traceback), 1 when
a device or file cannot be used or the recording fails. SIGINT and SIGTERM stop the
recording cleanly: the final chunk is written and the file plays.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import importlib.util
import ipaddress
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from ._encoder_process import PRIORITIES
from ._errors import AsyncrecError, NotFoundError, NotReadableError, NotSupportedError, SinkError
from ._formats import (
    CONTAINERS,
    DEFAULT_AUDIO_BITS_PER_SECOND,
    DEFAULT_VIDEO_BITS_PER_SECOND,
    check_type,
    parse_mime_type,
)
from ._object_storage import ObjectSink
from ._recorder import MediaRecorder
from ._repair import repair
from ._sink import FileSink
from ._stream import MediaStream
from ._video import usable_cores
from .sources import SourceStream, enumerateDevices, getUserMedia, open_media
from .sources._devices import FAKE_CAMERA, FAKE_MICROPHONE

#: The container each extension records to when no --mime is given (.opus is Ogg too).
EXTENSIONS = {spec.extension: spec.mime for spec in CONTAINERS.values()} | {".opus": "audio/ogg"}
#: Containers as people call them, by FFmpeg muxer.
_CONTAINER_NAMES = {"webm": "WebM", "matroska": "Matroska", "mp4": "MP4", "ogg": "Ogg"}


def _version() -> str:
    try:
        return importlib.metadata.version("asyncrec")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree
        from . import __version__

        return __version__


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"asyncrec: error: {message}\n")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" to an option's help, unless the help says its default itself
    (options without a default value do: "(default: until stopped)" rather than "None")."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "(default:" in text or action.default in (None, False, argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


def _address(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IP address: {text!r}") from None


def _video_size(text: str) -> tuple[int, int]:
    width, sep, height = text.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit() or int(width) < 2 or int(height) < 2:
        raise argparse.ArgumentTypeError(f"not a size WxH (at least 2x2): {text!r}")
    return int(width), int(height)


#: ``serve --log-level`` values (asyncrec.whip._logs.LEVELS, known before aiohttp is imported).
LEVELS = ("debug", "info", "warning", "error")
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def _bytes(text: str) -> int:
    number, unit = text.rstrip("bB"), ""
    if number and number[-1].lower() in _UNITS:
        number, unit = number[:-1], number[-1].lower()
    try:
        value = float(number) * _UNITS[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size (bytes, or with k, M, G, T): {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return int(value)


def _positive(kind: type[float] | type[int]) -> Any:
    def parse(text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
        return value

    return parse


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return value


def _source(text: str) -> str:
    kind, sep, value = text.partition(":")
    if text in ("fake", "default") or (sep and value and kind in ("camera", "mic", "file")):
        return text
    raise argparse.ArgumentTypeError(f"{text!r}: use fake, default, camera:ID, mic:ID or file:PATH")


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command; README.md's synopsis is checked against it."""
    formatter = _HelpFormatter
    parser = _Parser(prog="asyncrec", description="Record media with asyncrec.", formatter_class=formatter)
    parser.add_argument("--version", action="version", version=f"asyncrec {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{record,devices,serve,repair,recover}")
    record = commands.add_parser(
        "record", help="record to a file", description="Record to OUT.", formatter_class=formatter
    )
    record.add_argument(
        "out",
        metavar="OUT",
        help="output file, or object s3://BUCKET/KEY (uploaded as recorded); its extension chooses the container",
    )
    record.add_argument(
        "--source",
        action="append",
        type=_source,
        metavar="SOURCE",
        help="fake, default, camera:ID, mic:ID or file:PATH; IDs as 'asyncrec devices' lists them, "
        f"{FAKE_CAMERA} and {FAKE_MICROPHONE} included; repeatable (default: the default devices, "
        "or the fake ones with ASYNCREC_FAKE_DEVICES=1)",
    )
    record.add_argument(
        "--mime",
        metavar="TYPE",
        help="mimeType, e.g. 'video/webm;codecs=vp9,opus'; must fit OUT's extension unless --force "
        "(default: from OUT's extension)",
    )
    record.add_argument(
        "--force", action="store_true", help="record even when OUT's extension contradicts --mime (default: off)"
    )
    record.add_argument(
        "--duration",
        type=_positive(float),
        metavar="S",
        help="stop after S seconds (default: until Ctrl-C, SIGTERM or the end of the sources)",
    )
    record.add_argument(
        "--timeslice", type=_positive(int), default=1000, metavar="MS", help="write a chunk every MS ms"
    )
    record.add_argument(
        "--video-bitrate",
        type=_positive(int),
        default=DEFAULT_VIDEO_BITS_PER_SECOND,
        metavar="BPS",
        help="video bits per second",
    )
    record.add_argument(
        "--audio-bitrate",
        type=_positive(int),
        default=DEFAULT_AUDIO_BITS_PER_SECOND,
        metavar="BPS",
        help="audio bits per second",
    )
    record.add_argument(
        "--realtime",
        action="store_true",
        help="play file: sources at their own pace (default: off, as fast as they can be read)",
    )
    devices = commands.add_parser(
        "devices", help="list capture devices", description="List capture devices.", formatter_class=formatter
    )
    devices.add_argument(
        "--fake",
        action="store_true",
        help="list the fake devices (default: off, this machine's devices unless ASYNCREC_FAKE_DEVICES=1)",
    )
    serve = commands.add_parser(
        "serve",
        help="run the WHIP ingest server",
        description="Record WebRTC publishers (WHIP, RFC 9725).",
        formatter_class=formatter,
    )
    serve.add_argument("--host", default="127.0.0.1", metavar="HOST", help="address to listen on")
    serve.add_argument("--port", type=int, default=8080, metavar="PORT", help="port to listen on")
    serve.add_argument(
        "--out",
        default="recordings",
        metavar="DIR",
        help="where recordings go: a directory, or s3://BUCKET/PREFIX (uploaded while recorded)",
    )
    serve.add_argument(
        "--mime",
        default="",
        metavar="TYPE",
        help="mimeType of the recordings (default: video/webm;codecs=vp8,opus)",
    )
    serve.add_argument("--timeslice", type=_positive(int), default=1000, metavar="MS", help="write a chunk every MS ms")
    auth = serve.add_mutually_exclusive_group()
    auth.add_argument(
        "--token",
        metavar="TOKEN",
        help="require 'Authorization: Bearer TOKEN' on every route but the page: publishing, sessions, "
        "recordings (default: $ASYNCREC_TOKEN, else none; a --host other than loopback needs one)",
    )
    auth.add_argument(
        "--no-auth",
        action="store_true",
        help="serve a --host other than loopback without a token: anyone who reaches it may publish "
        "and read every recording (default: off, refused)",
    )
    serve.add_argument(
        "--allow-origin",
        action="append",
        metavar="ORIGIN",
        help="an origin (https://host[:port]) whose web pages may publish to /whip from a browser; "
        "'*' for any; repeatable (default: none, only the server's own page)",
    )
    serve.add_argument(
        "--max-sessions", type=_positive(int), default=16, metavar="N", help="publishers recorded at once"
    )
    serve.add_argument(
        "--ice-host",
        action="append",
        metavar="ADDR",
        help="address ICE gathers host candidates from; repeatable (default: ASYNCREC_ICE_HOSTS, "
        "else every interface but loopback)",
    )
    serve.add_argument(
        "--connect-timeout",
        type=_positive(float),
        default=30.0,
        metavar="S",
        help="end a session whose peer has not connected after S seconds",
    )
    serve.add_argument(
        "--max-session-seconds",
        type=_positive(float),
        metavar="S",
        help="end a session after S seconds, its recording finished (default: no limit)",
    )
    serve.add_argument(
        "--max-video-size",
        type=_video_size,
        metavar="WxH",
        help="scale larger publishers down to fit WxH, aspect ratio kept (default: as they come)",
    )
    serve.add_argument(
        "--max-publish-size",
        type=_video_size,
        default="1920x1080",
        metavar="WxH",
        help="refuse publishers whose video is larger than WxH, either way round: the picture is never decoded "
        "and the session ends (reason 'video too large'); 3840x2160 lets 4K in",
    )
    serve.add_argument(
        "--transcode",
        action="store_true",
        help="decode and re-encode every publisher (default: copy their frames as they came when their "
        "codecs fit the container, transcode the others; the log says which per session)",
    )
    serve.add_argument(
        "--encoder-processes",
        type=_count,
        default=None,
        metavar="N",
        help="encode and mux sessions in N processes (an EncoderPool: every core used, the event loop left to "
        "the network); 0 encodes each session on a thread of the server's process (default: one per core)",
    )
    serve.add_argument(
        "--encoder-priority",
        choices=PRIORITIES,
        default="idle",
        metavar="PRIORITY",
        help="the encoder processes' CPU priority, idle, low or normal: idle takes only what the server's "
        "event loop leaves (SCHED_IDLE), low is nice +5 (for a machine shared with other work), normal the "
        "server's own (default: idle)",
    )
    serve.add_argument(
        "--max-session-memory",
        type=_bytes,
        default="128M",
        metavar="SIZE",
        help="media one session may hold in memory (received, not yet encoded or written); above it the "
        "session ends, its recording finished (reason 'memory limit')",
    )
    serve.add_argument(
        "--min-free",
        type=_bytes,
        metavar="SIZE",
        help="free space to keep on the recordings' disk, e.g. 2G; below it sessions end and new ones get "
        "507 (default: none)",
    )
    serve.add_argument(
        "--max-disk",
        type=_bytes,
        metavar="SIZE",
        help="bytes the recordings may take, e.g. 500G; above it sessions end and new ones get 507 (default: no quota)",
    )
    serve.add_argument(
        "--worker-id",
        metavar="ID",
        help="this server is worker ID behind a load balancer: its session URLs are /w/ID/whip/... and its "
        "recordings' names carry ID (default: a lone server)",
    )
    serve.add_argument(
        "--trusted-proxy",
        action="append",
        type=_address,
        metavar="ADDR",
        help="a load balancer's address: its X-Forwarded-For names the publisher in logs and /sessions; "
        "repeatable (default: none, the connection's own address)",
    )
    serve.add_argument(
        "--drain-timeout",
        type=_positive(float),
        default=60.0,
        metavar="S",
        help="on SIGTERM, refuse new sessions (503) and wait up to S seconds for running ones to end before "
        "ending them (SIGINT ends them at once)",
    )
    serve.add_argument(
        "--log-level", choices=LEVELS, default="info", metavar="LEVEL", help=f"least level logged: {', '.join(LEVELS)}"
    )
    serve.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        metavar="FORMAT",
        help="'text' lines, or 'json': one object per line for log shippers",
    )
    repair = commands.add_parser(
        "repair",
        help="turn a file cut short by a crash into a finished, seekable one",
        description="Copy every readable packet of IN into a finished, seekable OUT (no re-encoding).",
        formatter_class=formatter,
    )
    repair.add_argument("input", metavar="IN", help="the damaged recording")
    repair.add_argument("output", metavar="OUT", help="the repaired file (replaced atomically)")
    recover = commands.add_parser(
        "recover",
        help="complete recordings a dead recorder left in object storage",
        description="Complete the uploads a dead recorder left at URL (s3://BUCKET/KEY, or s3://BUCKET/PREFIX/ "
        "for all under it) into finished, seekable objects, and say what could not be saved.",
        formatter_class=formatter,
    )
    recover.add_argument("url", metavar="URL", help="s3://BUCKET/KEY, or s3://BUCKET/PREFIX/")
    recover.add_argument(
        "--min-age",
        type=float,
        default=30.0,
        metavar="S",
        help="leave alone uploads with activity in the last S seconds: a live recorder is still writing them",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "devices":
        return asyncio.run(_devices(args.fake or None))
    if args.command == "repair":
        return _repair_main(args.input, args.output)
    missing = _missing_extra(args.command) or _missing_s3(args)
    if missing is None and args.command == "recover":
        return _recover_main(args.url, args.min_age)
    if missing is not None:
        print(f"asyncrec: error: {missing}", file=sys.stderr)
        return 1
    if args.command == "serve":
        return _serve_main(parser, args)
    mime = args.mime or EXTENSIONS.get(os.path.splitext(args.out)[1].lower())
    if mime is None:
        parser.error(f"cannot tell the container from {args.out!r}: give --mime or one of {', '.join(EXTENSIONS)}")
    try:
        check_type(mime)
    except NotSupportedError as exc:
        parser.error(f"--mime {mime!r}: {exc}")
    mismatch = _extension_mismatch(args.out, mime)
    if mismatch is not None and not args.force:
        parser.error(mismatch)
    try:
        return asyncio.run(_record(args, mime))
    except AsyncrecError as exc:  # SinkError, NotFoundError...: each names its path or device
        print(f"asyncrec: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"asyncrec: error: {exc.filename or args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 1


def _repair_main(source: str, target: str) -> int:
    try:
        result = repair(source, target)
    except AsyncrecError as exc:
        print(f"asyncrec: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"asyncrec: error: {exc.filename or target}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    kept = ", ".join(f"{count} {kind} packets" for kind, count in result.packets.items() if count)
    damage = " (cut short: kept everything before the damage)" if result.truncated else ""
    print(f"{target}: {kept}, {result.duration:.2f} s{damage}")
    return 0


def _recover_main(url: str, min_age: float) -> int:
    from ._recover import recover

    try:
        results = asyncio.run(recover(url, min_age=min_age))
    except ValueError as exc:
        print(f"asyncrec: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - the storage's refusal, in one line
        from ._object_storage import _describe

        print(f"asyncrec: error: {url}: {_describe(exc)}", file=sys.stderr)
        return 1
    if not results:
        print(f"{url}: nothing to recover")
    for result in results:
        print(result.summary())
    # 1 when anything could not be saved or was left alone: it needs a look.
    return 1 if any(result.problems for result in results) else 0


#: What each command needs beyond the library, and the extra that brings it.
_EXTRAS = {"serve": ("aiohttp", "server"), "record": ("rich", "cli"), "recover": ("aiobotocore", "s3")}


def _missing_s3(args: argparse.Namespace) -> str | None:
    """Why an ``s3://`` output cannot be used (aiobotocore is not installed), or None."""
    if str(getattr(args, "out", "")).startswith("s3://") and importlib.util.find_spec("aiobotocore") is None:
        return f"asyncrec {args.command} to s3:// needs aiobotocore: pip install 'asyncrec[s3]'"
    return None


def _missing_extra(command: str) -> str | None:
    """Why ``command`` cannot run (a module of an extra is not installed), or None."""
    needed = _EXTRAS.get(command)
    if needed is None or importlib.util.find_spec(needed[0]) is not None:
        return None
    module, extra = needed
    return f"asyncrec {command} needs {module}: pip install 'asyncrec[{extra}]'"


def _extension_mismatch(out: str, mime: str) -> str | None:
    """Why OUT's extension contradicts ``mime`` (another container), or None when it does
    not: an unknown extension fits any type, and one container's extensions fit each of
    its types (``.webm`` holds video/webm and audio/webm, ``.m4a`` video/mp4 too)."""
    extension = os.path.splitext(out)[1].lower()
    named = CONTAINERS.get(EXTENSIONS.get(extension, ""))
    parsed = parse_mime_type(mime)
    wanted = CONTAINERS.get(parsed.essence) if parsed is not None else None
    if named is None or wanted is None or named.muxer == wanted.muxer:
        return None
    fitting = [wanted.extension] + [
        ext for ext, type_ in EXTENSIONS.items() if CONTAINERS[type_].muxer == wanted.muxer and ext != wanted.extension
    ]
    return (
        f"{out}: {extension} is {_CONTAINER_NAMES[named.muxer]} but --mime {mime!r} records "
        f"{_CONTAINER_NAMES[wanted.muxer]}; name it {' or '.join(fitting)}, or give --force"
    )


def _is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine's loopback only: 127.0.0.0/8, ::1 (also as
    ::ffff:127.x.y.z) or ``localhost``. Other names are not looked up: they count as the
    network."""
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return (mapped or address).is_loopback


def _serve_main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from .whip._access import check_token, normalize_origin

    if args.token is None and not args.no_auth:
        args.token = os.environ.get("ASYNCREC_TOKEN") or None
    try:
        check_token(args.token)
    except ValueError as exc:
        parser.error(f"--token (or ASYNCREC_TOKEN): {exc}")
    for origin in args.allow_origin or ():
        try:
            normalize_origin(origin)
        except ValueError as exc:
            parser.error(f"--allow-origin: {exc}")
    if args.token is None and not args.no_auth and not _is_loopback(args.host):
        parser.error(
            f"--host {args.host!r} is reachable from other machines and anyone there could publish and read "
            "every recording: give --token TOKEN (or ASYNCREC_TOKEN), or --no-auth to serve without one"
        )
    if args.mime:
        try:
            check_type(args.mime)
        except NotSupportedError as exc:
            parser.error(f"--mime {args.mime!r}: {exc}")
    if not 0 < args.port < 65536:
        parser.error(f"--port {args.port}: not a port number")
    from .whip._logs import configure as configure_logging

    configure_logging(args.log_level, args.log_format)
    if args.out.startswith("s3://"):
        if args.min_free is not None or args.max_disk is not None:
            parser.error("--min-free and --max-disk bound a local disk: not for an s3:// --out")
        if not args.out.removeprefix("s3://").partition("/")[0]:
            parser.error(f"--out {args.out!r}: not s3://BUCKET[/PREFIX]")
    else:
        try:
            os.makedirs(args.out, exist_ok=True)
        except OSError as exc:
            print(f"asyncrec: error: {args.out}: {exc.strerror or exc}", file=sys.stderr)
            return 1
    try:
        return asyncio.run(_serve(args))
    except OSError as exc:  # the address is taken, or not this machine's
        print(f"asyncrec: error: {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1


async def _devices(fake: bool | None) -> int:
    from .sources._devices import device_capabilities

    devices = await enumerateDevices(fake=fake)
    if not devices:
        print("no capture devices (asyncrec devices --fake lists the fake ones)")
    for device in devices:
        print(f"{device.kind:10}  {device.deviceId:18}  {device.label}")
        for line in await asyncio.to_thread(device_capabilities, device):
            print(f"{'':30}{line}")
    return 0


async def _open_sources(sources: list[str], *, audio_only: bool, realtime: bool) -> list[SourceStream]:
    """Open every ``--source``; on failure, what was opened is closed again."""
    streams: list[SourceStream] = []
    try:
        for source in sources:
            kind, _, value = source.partition(":")
            if kind in ("fake", "default"):
                # "default" leaves the choice to ASYNCREC_FAKE_DEVICES.
                stream = await getUserMedia(audio=True, video=not audio_only, fake=True if kind == "fake" else None)
            elif kind == "camera":
                # The fake devices' ids, as `asyncrec devices --fake` lists them, choose them.
                fake = True if value == FAKE_CAMERA else None
                stream = await getUserMedia(video={"deviceId": {"exact": value}}, fake=fake)
            elif kind == "mic":
                fake = True if value == FAKE_MICROPHONE else None
                stream = await getUserMedia(audio={"deviceId": {"exact": value}}, fake=fake)
            else:
                try:
                    stream = await open_media(value, realtime=realtime)
                except (NotFoundError, NotReadableError) as exc:
                    raise type(exc)(_naming_the_path(value, exc)) from exc
            streams.append(stream)
    except BaseException:
        for opened in streams:
            await opened.aclose()
        raise
    return streams


def _naming_the_path(path: str, exc: AsyncrecError) -> str:
    """The error of opening ``path``, naming it as given (the sources name the file only)."""
    reason = getattr(exc.__cause__, "strerror", None)  # OSError's and av.FFmpegError's
    if isinstance(reason, str) and reason:
        return f"{path}: {reason}"
    message = str(exc)
    if path in message:
        return message
    label = os.path.basename(path) or path
    if message.startswith(label):
        return path + message[len(label) :]
    return f"{path}: {message}"


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{seconds:04.1f}" if hours else f"{minutes:02d}:{seconds:04.1f}"


@dataclass
class _Status:
    """What the status line and the final summary show."""

    out: str
    sink: FileSink | ObjectSink
    recorder: MediaRecorder

    def fields(self) -> dict[str, Any]:
        stats = self.recorder.statistics()
        # Media time, not wall time: a file recorded faster than real time (or a paused
        # recording) shows the length and bit rate of what is in the file.
        recorded = stats.recorded_time
        written = self.sink.bytes_written
        rate = written * 8 / recorded / 1000 if recorded > 0 else 0.0
        return {
            "media": _clock(recorded),
            "size": f"{written / 1e6:.2f} MB",
            "rate": f"{rate:.0f} kb/s",
            "dropped": f"{sum(t.frames_dropped for t in stats.tracks)} dropped",
        }

    def summary(self) -> str:
        fields = self.fields()
        return f"{self.out}: {self.recorder.mimeType}, {', '.join(fields.values())}"


@contextlib.contextmanager
def _status_line(status: _Status) -> Iterator[Callable[[], None]]:
    """A transient status line on stderr when it is a terminal (rich's progress display);
    yields the function that refreshes it."""
    if not sys.stderr.isatty():
        yield lambda: None
        return
    # Imported here: only the command line needs rich.
    from rich.console import Console
    from rich.progress import Progress, ProgressColumn, SpinnerColumn, Task, TextColumn
    from rich.table import Column
    from rich.text import Text

    console = Console(stderr=True)
    if not console.is_terminal:  # TTY_COMPATIBLE=0
        yield lambda: None
        return

    class Target(ProgressColumn):
        """The output file and its type: cut short (…) first when the terminal is narrow."""

        def render(self, task: Task) -> Text:
            return Text(f" {task.description} ", no_wrap=True, overflow="ellipsis")

    def fixed(template: str, **kwargs: Any) -> TextColumn:
        return TextColumn(template, table_column=Column(no_wrap=True), **kwargs)

    progress = Progress(
        SpinnerColumn(),
        fixed("{task.fields[media]}", style="bold"),
        # The grid pads with one space: two between the figures, and around the file.
        fixed(" {task.fields[size]:>9}"),
        fixed(" {task.fields[rate]:>10}"),
        fixed(" {task.fields[dropped]}"),
        Target(),
        fixed("Ctrl-C to stop", style="dim"),
        console=console,
        transient=True,
        auto_refresh=False,  # refreshed by the loop, with fresh statistics
        redirect_stdout=False,  # stdout may be a pipe: it is not the status line's
    )
    task = progress.add_task(f"{status.out} ({status.recorder.mimeType})", **status.fields())

    def refresh() -> None:
        progress.update(task, **status.fields())
        progress.refresh()

    with progress:
        refresh()
        yield refresh


async def _record(args: argparse.Namespace, mime: str) -> int:
    sources = args.source or ["default"]
    streams = await _open_sources(sources, audio_only=mime.startswith("audio/"), realtime=args.realtime)
    tracks = [track for stream in streams for track in stream.getTracks()]
    stop = asyncio.Event()
    try:
        with _stop_on_signals(stop):
            recorder = MediaRecorder(
                MediaStream(tracks),
                mimeType=mime,
                videoBitsPerSecond=args.video_bitrate,
                audioBitsPerSecond=args.audio_bitrate,
            )
            failures: list[str] = []
            recorder.onerror = lambda event: failures.append(str(event.error))
            recorder.onstop = lambda event: stop.set()
            # A failing open or close raises SinkError, which main() reports in one line.
            sink: FileSink | ObjectSink = ObjectSink(args.out) if args.out.startswith("s3://") else FileSink(args.out)
            async with sink, recorder:
                recorder.ondataavailable = sink.write
                await recorder.start(args.timeslice)
                deadline = None if args.duration is None else time.monotonic() + args.duration  # wall time
                status = _Status(args.out, sink, recorder)
                with _status_line(status) as refresh:
                    await _wait(stop, deadline, refresh)
                    await recorder.stop()
                    refresh()  # the last view: all that was recorded
    finally:
        for stream in streams:
            await stream.aclose()  # devices free, reader threads gone
    # The sink's own failure too: a file cut short must never exit 0, however the
    # recorder reported it.
    if sink.error is not None and not failures:
        failures.append(str(sink.error))
    if failures:
        print(f"asyncrec: error: {failures[0]}", file=sys.stderr)
        return 1
    print(status.summary())
    return 0


async def _serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from .whip import create_app

    app = create_app(
        args.out,
        mimeType=args.mime,
        timeslice=args.timeslice,
        token=args.token,
        max_sessions=args.max_sessions,
        ice_hosts=args.ice_host,
        connect_timeout=args.connect_timeout,
        allow_origins=args.allow_origin or (),
        max_session_seconds=args.max_session_seconds,
        max_video_size=args.max_video_size,
        max_publish_size=args.max_publish_size,
        max_session_memory=args.max_session_memory,
        min_free=args.min_free,
        max_disk=args.max_disk,
        worker_id=args.worker_id,
        trusted_proxies=args.trusted_proxy or (),
        passthrough=not args.transcode,
        encoder_processes=usable_cores() if args.encoder_processes is None else args.encoder_processes,
        encoder_priority=args.encoder_priority,
    )
    runner = web.AppRunner(app)
    try:
        await runner.setup()
    except SinkError as exc:  # the storage refuses this worker: say so and exit
        await runner.cleanup()
        print(f"asyncrec: error: {exc}", file=sys.stderr)
        return 1
    stop, drain = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGTERM, drain.set)
    try:
        site = web.TCPSite(runner, args.host, args.port)
        await site.start()
        host = f"[{args.host}]" if ":" in args.host else args.host
        url = f"http://{host}:{args.port}/"
        print(f"asyncrec serve: {url} (WHIP endpoint {url}whip), recording to {args.out}", flush=True)
        stopping = asyncio.ensure_future(stop.wait())
        draining = asyncio.ensure_future(drain.wait())
        await asyncio.wait([stopping, draining], return_when=asyncio.FIRST_COMPLETED)
        if drain.is_set() and not stop.is_set():
            # SIGTERM: refuse new sessions, let running ones end (a SIGINT cuts it short).
            from .whip._server import ENDPOINT

            endpoint = app[ENDPOINT]
            logging.getLogger("asyncrec.whip").info("draining: %d sessions running", len(endpoint.sessions))
            draining_done = asyncio.ensure_future(endpoint.drain(args.drain_timeout))
            await asyncio.wait([stopping, draining_done], return_when=asyncio.FIRST_COMPLETED)
            if not draining_done.done():
                # SIGINT while draining: end the sessions now, and let their recordings be
                # finalised (cancelling the drain would cancel the finalising too).
                for session in list(endpoint.sessions.values()):
                    session._end("shutdown")
                await draining_done
        stopping.cancel()
        draining.cancel()
    finally:
        try:
            # Ends every session left: recordings are finalised before the process exits.
            await runner.cleanup()
        finally:
            # Until then a signal only sets its event (already set, or no longer awaited).
            loop.remove_signal_handler(signal.SIGINT)
            loop.remove_signal_handler(signal.SIGTERM)
    return 0


@contextlib.contextmanager
def _stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set ``stop`` (a clean stop) while inside the block."""
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        yield
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


async def _wait(stop: asyncio.Event, deadline: float | None, refresh: Callable[[], None]) -> None:
    """Until SIGINT/SIGTERM, the end of the sources or ``deadline`` (``time.monotonic()``),
    refreshing the status line four times a second."""
    while not stop.is_set():
        timeout = 0.25 if deadline is None else min(0.25, max(0.0, deadline - time.monotonic()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout)
        refresh()
        if deadline is not None and time.monotonic() >= deadline:
            return


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
