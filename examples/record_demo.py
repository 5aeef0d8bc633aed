"""Record a short demo with no camera: a moving test pattern and a 440 Hz tone.

    python examples/record_demo.py demo.webm --seconds 5

The container follows the extension: .webm (VP8 + Opus), .mkv (Matroska), .ogg/.opus
(audio only, Ogg/Opus).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from asyncrec import FileSink, FrameTrack, MediaRecorder, MediaStream, SampleTrack, moving_pattern, sine_tone

TYPES = {
    ".webm": "video/webm;codecs=vp8,opus",
    ".mkv": "video/x-matroska;codecs=vp8,opus",
    ".ogg": "audio/ogg;codecs=opus",
    ".opus": "audio/ogg;codecs=opus",
}


async def record(path: Path, seconds: float, width: int, height: int) -> None:
    mime = TYPES.get(path.suffix.lower())
    if mime is None:
        raise SystemExit(f"unknown extension {path.suffix!r}; use one of {', '.join(TYPES)}")
    tracks = [SampleTrack(sine_tone(440), duration=seconds)]
    if mime.startswith("video/"):
        tracks.insert(0, FrameTrack(moving_pattern(width, height), fps=30, duration=seconds))
    async with FileSink(path) as sink, MediaRecorder(MediaStream(tracks), mimeType=mime) as recorder:
        recorder.ondataavailable = sink.write
        recorder.onstart = lambda event: print(f"recording {seconds:g} s of {recorder.mimeType} to {path}")
        recorder.start(timeslice=1000)
        async for chunk in recorder:  # ends when the tracks end and the recording stops
            print(f"  chunk at {chunk.timecode / 1000:5.2f} s: {len(chunk.data):7d} bytes")
    stats = recorder.statistics()
    frames = ", ".join(f"{t.kind} {t.frames_encoded} frames ({t.frames_dropped} dropped)" for t in stats.tracks)
    print(f"done: {sink.bytes_written} bytes, {frames}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="output file (.webm, .mkv, .ogg)")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--size", default="640x480", help="video size, WIDTHxHEIGHT")
    args = parser.parse_args(argv)
    width, _, height = args.size.partition("x")
    asyncio.run(record(args.out, args.seconds, int(width), int(height)))


if __name__ == "__main__":
    sys.exit(main())
