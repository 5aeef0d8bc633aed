"""Throughput: asyncrec recording a non-live 720p source, against a plain PyAV loop.

Both sides do exactly the same work per frame: ``VideoFrame.from_ndarray`` from a pool of
pre-made yuv420p pictures, encode with asyncrec's own codec settings, mux into WebM in a
write-only in-memory sink. The baseline does it in one synchronous loop; asyncrec reads the
track on the event loop and encodes on its worker thread, with backpressure (``live=False``)
instead of drops. Runs alternate (baseline, asyncrec, baseline, ...) so drifting machine load
hits both alike; the medians are compared.

    python benchmarks/throughput.py                # VP8, 300 frames, 3 runs each
    python benchmarks/throughput.py --codec vp9 --frames 200
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, cast

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av.video.stream import VideoStream

from _common import (
    MediaCounts,
    YuvArray,
    count_media,
    machine_info,
    median,
    parse_size,
    patch_asyncrec_codec_threads,
    picture_pool,
    print_table,
    set_switch_interval,
)
from asyncrec import MediaRecorder, MediaStream, RecorderStatistics

# The baseline copies asyncrec's settings from the source of truth, so a change there moves both.
from asyncrec._formats import CODECS, DEFAULT_VIDEO_BITS_PER_SECOND
from asyncrec._worker import MAX_CLUSTER_MS, MAX_INTERLEAVE_DELTA_US, VIDEO_TIME_BASE, codec_threads

#: asyncrec's _worker._add_video sets this literal; keep the two equal.
GOP_SIZE = 300
SOURCE_TIME_BASE = Fraction(1, 90000)
TARGET_RATIO = 0.9


class PoolTrack(MediaStreamTrack):
    """A non-live video track: a fresh frame from the pool on every ``recv()``, no waiting.

    A fresh ``VideoFrame`` each time matters: the recorder sets ``pts`` on its worker thread,
    so one frame object handed out twice could be changed while still queued.
    """

    kind = "video"

    def __init__(self, pool: list[YuvArray], frames: int, fps: float) -> None:
        super().__init__()
        self.live = False  # backpressure, never drops: every frame must reach the file
        self._pool = pool
        self._frames = frames
        self._step = round(SOURCE_TIME_BASE.denominator / fps)
        self._index = 0

    async def recv(self) -> av.VideoFrame:
        if self._index >= self._frames:
            self.stop()
            raise MediaStreamError
        frame = av.VideoFrame.from_ndarray(self._pool[self._index % len(self._pool)], format="yuv420p")
        frame.pts = self._index * self._step
        frame.time_base = SOURCE_TIME_BASE
        self._index += 1
        return frame


class WriteOnlySink:
    """The same kind of sink as asyncrec's: ``write`` only (no seek), each buffer copied."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self.parts.append(chunk)
        return len(chunk)


@dataclass
class Run:
    wall: float
    cpu: float
    data: bytes
    stats: RecorderStatistics | None = None


def run_baseline(
    pool: list[YuvArray], frames: int, fps: float, codec: str, bps: int, threads: int | None = None
) -> Run:
    """A synchronous PyAV loop doing what asyncrec's worker does, with the same settings."""
    spec = CODECS[codec]
    sink = WriteOnlySink()
    wall, cpu = time.perf_counter(), time.process_time()
    options = {"max_interleave_delta": str(MAX_INTERLEAVE_DELTA_US), "cluster_time_limit": str(MAX_CLUSTER_MS)}
    container = av.open(sink, mode="w", format="webm", container_options=options)
    height, width = pool[0].shape[0] * 2 // 3, pool[0].shape[1]
    stream = cast(VideoStream, container.add_stream(spec.encoder, rate=30, options=dict(spec.options)))
    stream.width, stream.height = width, height
    stream.pix_fmt = spec.pix_fmt
    stream.bit_rate = bps
    stream.codec_context.time_base = VIDEO_TIME_BASE
    stream.codec_context.gop_size = GOP_SIZE
    # asyncrec's thread policy (one recording at a time here), or --codec-threads on both sides.
    stream.codec_context.thread_count = codec_threads(spec.encoder, width, height) if threads is None else threads
    for index in range(frames):
        frame = av.VideoFrame.from_ndarray(pool[index % len(pool)], format="yuv420p")
        # asyncrec's timestamps: the source's 1/90000 spacing rounded to milliseconds.
        frame.pts = round(index * round(SOURCE_TIME_BASE.denominator / fps) / 90)
        frame.time_base = VIDEO_TIME_BASE
        frame.pict_type = av.video.frame.PictureType.NONE
        for packet in stream.encode(frame):
            container.mux_one(packet)
    for packet in stream.encode(None):
        container.mux_one(packet)
    container.close()
    return Run(time.perf_counter() - wall, time.process_time() - cpu, b"".join(sink.parts))


async def _record(pool: list[YuvArray], frames: int, fps: float, codec: str, bps: int, timeslice: int) -> Run:
    track = PoolTrack(pool, frames, fps)
    recorder = MediaRecorder(MediaStream([track]), mimeType=f"video/webm;codecs={codec}", videoBitsPerSecond=bps)
    chunks: list[bytes] = []
    wall, cpu = time.perf_counter(), time.process_time()
    recorder.start(timeslice)
    # The recorder stops by itself when the track ends; the iterator ends after "stop".
    async for event in recorder:
        chunks.append(event.data)
    run = Run(time.perf_counter() - wall, time.process_time() - cpu, b"".join(chunks), recorder.statistics())
    await recorder.aclose()
    return run


def run_asyncrec(pool: list[YuvArray], frames: int, fps: float, codec: str, bps: int, timeslice: int) -> Run:
    # A fresh loop per run (outside the timing), as a user's program would have.
    return asyncio.run(_record(pool, frames, fps, codec, bps, timeslice))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=300, help="frames per run (default 300)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each side, alternating (default 3)")
    parser.add_argument("--size", type=parse_size, default=(1280, 720), help="WIDTHxHEIGHT (default 1280x720)")
    parser.add_argument("--codec", choices=["vp8", "vp9"], default="vp8")
    parser.add_argument("--bitrate", type=int, default=DEFAULT_VIDEO_BITS_PER_SECOND, help="video bits per second")
    parser.add_argument("--pool", type=int, default=30, help="distinct pictures cycled through (default 30)")
    parser.add_argument("--noise", type=int, default=3, help="+- luma grain, camera-like (default 3; 0: clean)")
    parser.add_argument("--timeslice", type=int, default=1000, help="asyncrec timeslice in ms (default 1000)")
    parser.add_argument("--switch-interval", type=float, default=None, help="GIL switch interval in ms")
    parser.add_argument("--codec-threads", type=int, default=None, help="EXPERIMENT: encoder thread_count, both sides")
    parser.add_argument("--no-warmup", action="store_true", help="skip the short untimed run of each side")
    args = parser.parse_args()
    set_switch_interval(args.switch_interval)
    if args.codec_threads is not None:
        patch_asyncrec_codec_threads(args.codec_threads)
    fps = 30.0
    width, height = args.size

    print(f"throughput: {width}x{height} {args.codec.upper()} {args.bitrate / 1e6:g} Mb/s, {args.frames} frames/run")
    print(f"machine: {machine_info()}")
    spec = CODECS[args.codec]
    if args.codec_threads is None:
        threads = f"{codec_threads(spec.encoder, width, height)} (asyncrec's choice)"
    else:
        threads = f"{args.codec_threads} (EXPERIMENT, asyncrec patched)"
    print(f"encoder: {spec.encoder} {dict(spec.options)} gop {GOP_SIZE}, codec threads: {threads}, both sides")
    pool = picture_pool(width, height, args.pool, args.noise)
    if not args.no_warmup:
        # Page in the libraries and let the CPU clock settle; not timed.
        run_baseline(pool, 30, fps, args.codec, args.bitrate, args.codec_threads)
        run_asyncrec(pool, 30, fps, args.codec, args.bitrate, args.timeslice)

    runs: dict[str, list[Run]] = {"PyAV sync loop": [], "asyncrec": []}
    for _ in range(args.repeat):
        base = run_baseline(pool, args.frames, fps, args.codec, args.bitrate, args.codec_threads)
        runs["PyAV sync loop"].append(base)
        runs["asyncrec"].append(run_asyncrec(pool, args.frames, fps, args.codec, args.bitrate, args.timeslice))

    # Verify after timing, so decoding never competes with a measurement.
    counts: dict[str, list[MediaCounts]] = {name: [count_media(r.data, fps) for r in rs] for name, rs in runs.items()}
    base_fps = median([args.frames / r.wall for r in runs["PyAV sync loop"]])
    rows = []
    for name, rs in runs.items():
        rates = [args.frames / r.wall for r in rs]
        fps_median = median(rates)
        out = counts[name]
        rows.append(
            [
                name,
                f"{fps_median:.1f}",
                f"{min(rates):.1f}-{max(rates):.1f}",
                f"{median([r.cpu / args.frames * 1000 for r in rs]):.2f}",
                "/".join(str(c.video_frames) for c in out),
                f"{median([len(r.data) for r in rs]) / 1e6:.2f}",
                f"{fps_median / base_fps:.2f}",
            ]
        )
    print()
    print_table(["", "fps (median)", "min-max", "CPU ms/frame", "frames decoded", "MB", "ratio"], rows)

    ok = True
    print()
    for index, run in enumerate(runs["asyncrec"]):
        assert run.stats is not None
        track = run.stats.tracks[0]
        busy = run.stats.encoder_busy_time
        decoded = counts["asyncrec"][index]
        complete = (
            track.frames_in == args.frames
            and track.frames_encoded == args.frames
            and track.frames_dropped == 0
            and decoded.video_frames == args.frames
        )
        ok = ok and complete and decoded.error is None
        print(
            f"asyncrec run {index + 1}: frames in {track.frames_in}, encoded {track.frames_encoded}, "
            f"dropped {track.frames_dropped}, decoded {decoded.video_frames} ({decoded.video_seconds:.2f} s of video), "
            f"worker busy {busy:.2f} s of {run.wall:.2f} s ({args.frames / busy:.0f} fps while busy), "
            f"{run.stats.chunks_out} chunks" + ("" if complete else "  <-- FRAMES MISSING")
        )
        if decoded.error:
            print(f"  decode error: {decoded.error}")
    for index, decoded in enumerate(counts["PyAV sync loop"]):
        if decoded.video_frames != args.frames or decoded.error:
            ok = False
            print(f"baseline run {index + 1}: decoded {decoded.video_frames} frames {decoded.error or ''}")

    ratio = median([args.frames / r.wall for r in runs["asyncrec"]]) / base_fps
    verdict = "meets" if ratio >= TARGET_RATIO else "MISSES"
    print(f"\nasyncrec / PyAV = {ratio:.2f} ({verdict} the >= {TARGET_RATIO} target); every frame recorded: {ok}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
