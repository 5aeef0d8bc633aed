"""Typed event handlers: mypy --strict checks each handler against the event it gets.

    python examples/typed_handlers.py out.webm --seconds 2

A ``dataavailable`` handler receives a ``BlobEvent``, an ``error`` handler an
``ErrorEvent``, the others an ``Event``: with ``recorder.on(type)`` as a decorator (which
returns the function unchanged, with its type) as with the ``on*`` attributes. A handler
of the wrong event, such as ``recorder.ondataavailable = on_error``, is a mypy error.
This script records generated media as fast as it encodes (the tracks are not real time).
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from asyncrec import (
    BlobEvent,
    ErrorEvent,
    Event,
    FileSink,
    FrameTrack,
    MediaRecorder,
    MediaStream,
    SampleTrack,
    moving_pattern,
    sine_tone,
)


class Progress:
    """What a recording delivered: its chunks and bytes, and its error if it failed."""

    def __init__(self) -> None:
        self.chunks = 0
        self.bytes = 0
        self.error: ErrorEvent | None = None

    def on_chunk(self, event: BlobEvent) -> None:
        self.chunks += 1
        self.bytes += len(event.data)

    def on_error(self, event: ErrorEvent) -> None:
        self.error = event
        print(f"recording failed: {event.error.name}: {event.error}")


async def record(path: Path, seconds: float) -> Progress:
    stream = MediaStream(
        [
            FrameTrack(moving_pattern(320, 240), fps=30, realtime=False, duration=seconds),
            SampleTrack(sine_tone(440), realtime=False, duration=seconds),
        ]
    )
    progress = Progress()
    stopped = asyncio.Event()
    async with FileSink(path) as sink, MediaRecorder(stream, mimeType="video/webm;codecs=vp8,opus") as recorder:
        recorder.ondataavailable = sink.write  # a coroutine method: awaited, chunk by chunk
        recorder.onerror = progress.on_error
        recorder.onstop = lambda event: stopped.set()
        recorder.on("dataavailable", progress.on_chunk)

        @recorder.on("start")
        def started(event: Event) -> None:
            print(f"{event.type}: recording {recorder.mimeType} to {path}")

        @recorder.on("dataavailable")
        async def log_chunk(event: BlobEvent) -> None:
            print(f"  chunk at {event.timecode / 1000:5.2f} s: {len(event.data):7d} bytes")

        recorder.start(timeslice=500)
        await stopped.wait()  # the tracks end after `seconds` of media: the recorder stops
        recorder.off("dataavailable", log_chunk)
    print(f"done: {progress.chunks} chunks, {progress.bytes} bytes, {sink.bytes_written} written")
    return progress


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Record generated media with typed handlers.")
    parser.add_argument("out", type=Path, help="output file (WebM)")
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args(argv)
    progress = asyncio.run(record(args.out, args.seconds))
    return 1 if progress.error is not None else 0


if __name__ == "__main__":
    raise SystemExit(main())
