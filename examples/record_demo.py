"""Record a short demo with no camera: a moving test pattern and a 440 Hz tone.

    python examples/record_demo.py demo.webm --seconds 5

The container follows the extension, with its default codecs: .webm (VP8 + Opus), .mkv
(Matroska, VP8 + Opus), .mp4 (fragmented MP4, H.264 + AAC), and audio only: .weba (WebM,
Opus), .m4a (MP4, AAC), .ogg/.opus (Ogg, Opus).
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from asyncrec import (
    FileSink,
    FrameTrack,
    MediaRecorder,
    MediaStream,
    SampleTrack,
    Track,
    moving_pattern,
    sine_tone,
)

#: The mimeType for each extension; the recorder picks the container's default codecs.
TYPES = {
    ".webm": "video/webm",
    ".mkv": "video/x-matroska",
    ".mp4": "video/mp4",
    ".weba": "audio/webm",
    ".m4a": "audio/mp4",
    ".ogg": "audio/ogg",
    ".opus": "audio/ogg",
}


async def record(path: Path, seconds: float, width: int, height: int) -> None:
    mime = TYPES.get(path.suffix.lower())
    if mime is None:
        raise SystemExit(f"unknown extension {path.suffix!r}; use one of {', '.join(TYPES)}")
    if not MediaRecorder.isTypeSupported(mime):
        raise SystemExit(f"this PyAV cannot record {mime}")
    tracks: list[Track] = [SampleTrack(sine_tone(440), duration=seconds)]
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
    parser = argparse.ArgumentParser(description="Record a demo (a test pattern and a tone) to a file.")
    parser.add_argument("out", type=Path, help=f"output file ({', '.join(TYPES)})")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--size", default="640x480", help="video size, WIDTHxHEIGHT")
    args = parser.parse_args(argv)
    width, _, height = args.size.partition("x")
    asyncio.run(record(args.out, args.seconds, int(width), int(height)))


if __name__ == "__main__":
    main()
