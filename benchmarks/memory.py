"""Memory per recording over a long live recording: the RSS slope must stay under 1 MB per
minute per recording (the project's issue: "memory per recording flat over a 10-minute
recording").

``--recordings`` (default 2) asyncrec recordings run side by side in one process, each of a
live 640x480@30 VP8 + Opus source (asyncrec's :class:`~asyncrec.FrameTrack` of
``_common.picture_pool``'s realistic pictures and a :class:`~asyncrec.SampleTrack`, 48 kHz
stereo in 20 ms frames, one clock domain) for ``--minutes``. Chunks (every second) are
counted by a ``dataavailable`` handler and dropped. The process's resident set
(``/proc/self/statm``) is sampled every second; the baseline is the RSS just before the
recordings start, in the same process.

After a warm-up (the first 20 % of the run: codecs, allocator arenas, the muxer's first
clusters), a least-squares line is fitted to RSS against time; its slope divided by the
number of recordings is the figure, in MB (10^6 bytes) per minute per recording. Fails
(exit 1) if that is 1 MB/min or more, or if any recording lost an audio frame
(``frames_in != frames_encoded``: live audio is never to be dropped).

    python benchmarks/memory.py                 # 10 minutes, 2 recordings
    python benchmarks/memory.py --quick         # 30 s: a smoke test, too short to judge a slope
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from dataclasses import dataclass, field

from _common import YuvArray, machine_info, median, parse_size, picture_pool, print_table
from asyncrec import (
    BlobEvent,
    Event,
    FrameTrack,
    MediaRecorder,
    MediaStream,
    RecorderStatistics,
    SampleTrack,
    sine_tone,
)

MIME = "video/webm;codecs=vp8,opus"
TARGET_MB_PER_MINUTE = 1.0
#: The share of the run left out of the fit.
WARM_UP = 0.2
SAMPLE_INTERVAL = 1.0
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
MB = 1e6


def rss() -> int:
    """This process's resident set size, bytes (``/proc/self/statm``'s second field, in pages)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE_SIZE


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y against x."""
    n = len(points)
    if n < 2:
        return float("nan")
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in points)
    return sxy / sxx if sxx else float("nan")


@dataclass
class Counted:
    """What one recording delivered: chunks and bytes, counted and dropped."""

    chunks: int = 0
    bytes: int = 0
    stopped: asyncio.Event = field(default_factory=asyncio.Event)

    def on_data(self, event: BlobEvent) -> None:
        self.chunks += 1
        self.bytes += len(event.data)

    def on_stop(self, _: Event) -> None:
        self.stopped.set()


async def sample_rss(samples: list[tuple[float, int]], start: float) -> None:
    """Append ``(seconds since start, RSS)`` every ``SAMPLE_INTERVAL`` until cancelled."""
    index = 0
    while True:
        samples.append((time.monotonic() - start, rss()))
        index += 1
        # On a schedule, so a late wake-up does not shift every later sample.
        await asyncio.sleep(max(0.0, start + index * SAMPLE_INTERVAL - time.monotonic()))


@dataclass
class Run:
    before: int
    samples: list[tuple[float, int]]
    counted: list[Counted]
    stats: list[RecorderStatistics]
    wall: float


async def run(pool: list[YuvArray], fps: float, seconds: float, recordings: int, timeslice: int) -> Run:
    recorders = []
    counted = []
    for _ in range(recordings):
        domain = object()  # one source per recording: its video and audio share a time origin
        video = FrameTrack(
            lambda index, _: pool[index % len(pool)], fps=fps, format="yuv420p", duration=seconds, clock_domain=domain
        )
        audio = SampleTrack(sine_tone(channels=2), channels=2, duration=seconds, clock_domain=domain)
        recorder = MediaRecorder(MediaStream([video, audio]), mimeType=MIME)
        count = Counted()
        recorder.on("dataavailable", count.on_data)
        recorder.on("stop", count.on_stop)
        recorders.append(recorder)
        counted.append(count)

    before = rss()
    samples: list[tuple[float, int]] = []
    start = time.monotonic()
    sampler = asyncio.create_task(sample_rss(samples, start))
    try:
        for recorder in recorders:
            recorder.start(timeslice)
        # Each recorder stops by itself when its tracks end.
        await asyncio.wait_for(asyncio.gather(*(c.stopped.wait() for c in counted)), timeout=seconds + 120)
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    wall = time.monotonic() - start
    stats = [recorder.statistics() for recorder in recorders]
    for recorder in recorders:
        await recorder.aclose()
    return Run(before, samples, counted, stats, wall)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="minutes of recording (default 10)")
    parser.add_argument("--quick", action="store_true", help="--minutes 0.5: a smoke test")
    parser.add_argument("--recordings", type=int, default=2, help="recordings side by side (default 2)")
    parser.add_argument("--size", type=parse_size, default=(640, 480), help="WIDTHxHEIGHT (default 640x480)")
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--timeslice", type=int, default=1000, help="ms (default 1000)")
    parser.add_argument("--noise", type=int, default=3, help="+- luma grain, camera-like (default 3; 0: clean)")
    args = parser.parse_args()
    minutes = 0.5 if args.quick else args.minutes
    width, height = args.size

    print(
        f"memory: {args.recordings} live recordings of {width}x{height}@{args.fps:g} VP8 + Opus, "
        f"{minutes:g} min, chunks every {args.timeslice} ms counted and dropped, RSS every {SAMPLE_INTERVAL:g} s"
    )
    print(f"machine: {machine_info()}")
    pool = picture_pool(width, height, 30, args.noise)
    print("  recording ...", flush=True)
    result = asyncio.run(run(pool, args.fps, minutes * 60, args.recordings, args.timeslice))

    warm = WARM_UP * minutes * 60
    fitted = [(t, b) for t, b in result.samples if t >= warm]
    per_minute = slope([(t / 60, b / MB) for t, b in fitted]) / args.recordings
    peak = max((b for _, b in result.samples), default=0)
    rows = []
    for i, (count, s) in enumerate(zip(result.counted, result.stats, strict=True)):
        video = next(t for t in s.tracks if t.kind == "video")
        audio = next(t for t in s.tracks if t.kind == "audio")
        rows.append(
            [
                str(i + 1),
                f"{video.frames_in} / {video.frames_encoded} / {video.frames_dropped}",
                f"{audio.frames_in} / {audio.frames_encoded}",
                str(count.chunks),
                f"{count.bytes / MB:.1f}",
            ]
        )
    print()
    print_table(["recording", "video in / encoded / dropped", "audio in / encoded", "chunks", "MB out"], rows)

    print()
    print(
        f"RSS (MB): before {result.before / MB:.1f}; after the {warm:.0f} s warm-up "
        f"{fitted[0][1] / MB if fitted else float('nan'):.1f}; end {result.samples[-1][1] / MB:.1f}; "
        f"peak {peak / MB:.1f}; median after warm-up - before, per recording "
        f"{(median([b for _, b in fitted]) - result.before) / MB / args.recordings:.1f}"
    )
    print(
        f"{len(result.samples)} samples over {result.wall:.1f} s, {len(fitted)} fitted; "
        f"slope {per_minute:+.3f} MB/min per recording (target < {TARGET_MB_PER_MINUTE:g})"
    )

    failed = False
    if not per_minute < TARGET_MB_PER_MINUTE:  # NaN (too few samples) fails too
        print(f"FAIL: RSS grows {per_minute:+.3f} MB/min per recording")
        failed = True
    for i, s in enumerate(result.stats):
        for track in s.tracks:
            if track.kind == "audio" and track.frames_in != track.frames_encoded:
                print(f"FAIL: recording {i + 1} lost audio: {track.frames_in} in, {track.frames_encoded} encoded")
                failed = True
    if any(count.chunks == 0 for count in result.counted):
        print("FAIL: a recording delivered no chunks")
        failed = True
    print("FAIL" if failed else "PASS")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
