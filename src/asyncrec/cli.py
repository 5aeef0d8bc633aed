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
import os
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from ._errors import AsyncrecError, NotSupportedError
from ._formats import CONTAINERS, check_type
from ._recorder import MediaRecorder
from ._sink import FileSink
from ._stream import MediaStream
from .sources import SourceStream, enumerateDevices, getUserMedia, open_media

#: The container each extension records to when no --mime is given (.opus is Ogg too).
EXTENSIONS = {spec.extension: spec.mime for spec in CONTAINERS.values()} | {".opus": "audio/ogg"}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"asyncrec: error: {message}\n")


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


def _source(text: str) -> str:
    kind, sep, value = text.partition(":")
    if text in ("fake", "default") or (sep and value and kind in ("camera", "mic", "file")):
        return text
    raise argparse.ArgumentTypeError(f"{text!r}: use fake, default, camera:ID, mic:ID or file:PATH")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="asyncrec", description="Record media with asyncrec.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{record,devices,serve}")
    record = commands.add_parser("record", help="record to a file", description="Record to OUT.")
    record.add_argument("out", metavar="OUT", help="output file; its extension chooses the container")
    record.add_argument(
        "--source",
        action="append",
        type=_source,
        help="fake, default, camera:ID, mic:ID or file:PATH (repeatable; default: default devices, "
        "or fake ones with ASYNCREC_FAKE_DEVICES=1)",
    )
    record.add_argument("--mime", help="mimeType, e.g. 'video/webm;codecs=vp9,opus' (default: from OUT)")
    record.add_argument("--duration", type=_positive(float), metavar="S", help="stop after S seconds")
    record.add_argument("--timeslice", type=_positive(int), default=1000, metavar="MS", help="chunk every MS ms")
    record.add_argument("--video-bitrate", type=_positive(int), metavar="BPS")
    record.add_argument("--audio-bitrate", type=_positive(int), metavar="BPS")
    record.add_argument("--realtime", action="store_true", help="play file: sources at their pace")
    devices = commands.add_parser("devices", help="list capture devices", description="List capture devices.")
    devices.add_argument("--fake", action="store_true", help="list the fake devices")
    serve = commands.add_parser(
        "serve", help="run the WHIP ingest server", description="Record WebRTC publishers (WHIP, RFC 9725)."
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--out", default="recordings", metavar="DIR", help="where recordings go (default: recordings)")
    serve.add_argument("--mime", default="", help="mimeType of the recordings (default: video/webm;codecs=vp8,opus)")
    serve.add_argument("--timeslice", type=_positive(int), default=1000, metavar="MS")
    serve.add_argument("--token", help="require this bearer token")
    serve.add_argument("--max-sessions", type=_positive(int), default=16, metavar="N")
    serve.add_argument(
        "--ice-host",
        action="append",
        metavar="ADDR",
        help="address ICE gathers host candidates from (repeatable; default: ASYNCREC_ICE_HOSTS, "
        "else every interface but loopback)",
    )
    serve.add_argument("--connect-timeout", type=_positive(float), default=30.0, metavar="S")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "devices":
        return asyncio.run(_devices(args.fake or None))
    if args.command == "serve":
        if args.mime:
            try:
                check_type(args.mime)
            except NotSupportedError as exc:
                parser.error(f"--mime {args.mime!r}: {exc}")
        if not 0 < args.port < 65536:
            parser.error(f"--port {args.port}: not a port number")
        try:
            os.makedirs(args.out, exist_ok=True)
            return asyncio.run(_serve(args))
        except OSError as exc:
            print(f"asyncrec: error: {exc.strerror or exc}", file=sys.stderr)
            return 1
    mime = args.mime
    if mime is None:
        mime = EXTENSIONS.get(os.path.splitext(args.out)[1].lower())
        if mime is None:
            parser.error(f"cannot tell the container from {args.out!r}: give --mime or one of {', '.join(EXTENSIONS)}")
    try:
        check_type(mime)
    except NotSupportedError as exc:
        parser.error(f"--mime {mime!r}: {exc}")
    try:
        return asyncio.run(_record(args, mime))
    except AsyncrecError as exc:
        print(f"asyncrec: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"asyncrec: error: {args.out}: {exc.strerror or exc}", file=sys.stderr)
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
                stream = await getUserMedia(video={"deviceId": {"exact": value}})
            elif kind == "mic":
                stream = await getUserMedia(audio={"deviceId": {"exact": value}})
            else:
                stream = await open_media(value, realtime=realtime)
            streams.append(stream)
    except BaseException:
        for opened in streams:
            await opened.aclose()
        raise
    return streams


@dataclass
class _Progress:
    started: float  # time.monotonic(): --duration is wall time
    sink: FileSink
    recorder: MediaRecorder

    def line(self) -> str:
        stats = self.recorder.statistics()
        # Media time, not wall time: a file recorded faster than real time (or a paused
        # recording) shows the length and bit rate of what is in the file.
        recorded = stats.recorded_time
        dropped = sum(t.frames_dropped for t in stats.tracks)
        rate = self.sink.bytes_written * 8 / recorded / 1000 if recorded > 0 else 0.0
        minutes, seconds = divmod(recorded, 60)
        return (
            f"recording {int(minutes):02d}:{seconds:04.1f}  {self.sink.bytes_written / 1e6:7.2f} MB  "
            f"{rate:7.0f} kb/s  dropped {dropped}"
        )


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
            async with FileSink(args.out) as sink, recorder:
                recorder.ondataavailable = sink.write
                await recorder.start(args.timeslice)
                progress = _Progress(time.monotonic(), sink, recorder)
                await _wait(stop, args.duration, progress)
                await recorder.stop()
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
    print(f"{args.out}: {recorder.mimeType}, {progress.line().removeprefix('recording ')}")
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
    )
    runner = web.AppRunner(app)
    await runner.setup()
    stop = asyncio.Event()
    with _stop_on_signals(stop):
        try:
            site = web.TCPSite(runner, args.host, args.port)
            await site.start()
            url = f"http://{args.host}:{args.port}/"
            print(f"asyncrec serve: {url} (WHIP endpoint {url}whip), recording to {args.out}", flush=True)
            await stop.wait()
        finally:
            # Ends every session: recordings are finalised before the process exits.
            await runner.cleanup()
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


async def _wait(stop: asyncio.Event, duration: float | None, progress: _Progress) -> None:
    """Until SIGINT/SIGTERM, the end of the sources or ``duration``, with a live status
    line when stderr is a terminal."""
    from rich.console import Console
    from rich.live import Live

    console = Console(stderr=True)
    deadline = None if duration is None else progress.started + duration
    live = Live(progress.line(), console=console, refresh_per_second=4, transient=True) if console.is_terminal else None
    with live if live is not None else contextlib.nullcontext():
        while not stop.is_set():
            timeout = 0.25 if deadline is None else min(0.25, max(0.0, deadline - time.monotonic()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout)
            if live is not None:
                live.update(progress.line())
            if deadline is not None and time.monotonic() >= deadline:
                return


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
