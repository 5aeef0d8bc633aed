"""Event-loop lag while recording 720p30 VP8 + Opus in real time.

Three runs on the same live source, each in a fresh event loop:

* ``idle``: the source runs and its frames are read and thrown away; no recorder (baseline);
* ``asyncrec``: asyncrec's MediaRecorder, chunks every second kept in memory;
* ``aiortc``: ``aiortc.contrib.media.MediaRecorder`` writing a temporary .webm file.

The source is fed the way aiortc's remote tracks are: a producer task puts frames into an
``asyncio.Queue`` on a real-time schedule (video at 30 fps, audio in 20 ms frames) and the
track's ``recv()`` is ``await queue.get()``. A recorder that falls behind therefore builds a
backlog instead of slowing the source. A probe task sleeps 5 ms at a time and records how
late each wake-up is.

    python benchmarks/loop_lag.py                  # 8 s per run
    python benchmarks/loop_lag.py --duration 5 --modes idle,asyncrec
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from aiortc.contrib.media import MediaRecorder as AiortcRecorder
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from _common import (
    LagProbe,
    MediaCounts,
    YuvArray,
    count_media,
    machine_info,
    parse_size,
    patch_asyncrec_codec_threads,
    percentile,
    picture_pool,
    print_table,
    set_switch_interval,
)
from asyncrec import MediaRecorder, MediaStream, RecorderStatistics

PROBE_INTERVAL = 0.005
AUDIO_RATE = 48000
AUDIO_SAMPLES = 960  # 20 ms, what aiortc's Opus decoder hands out
TARGET_P99_MS = 5.0
#: Seconds from the start that hold one-off costs (opening codecs, writing the header).
STARTUP = 1.0
MODES = ("idle", "asyncrec", "aiortc")


class QueueTrack(MediaStreamTrack):
    """Like aiortc's RemoteStreamTrack: ``recv()`` takes the next frame from a queue.

    Note that ``await queue.get()`` does not suspend while the queue has frames, which is
    why a consumer that falls behind can hold the loop for as long as its backlog lasts.
    """

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.queue: asyncio.Queue[av.VideoFrame | av.AudioFrame | None] = asyncio.Queue()

    async def recv(self) -> av.VideoFrame | av.AudioFrame:
        frame = await self.queue.get()
        if frame is None:
            self.stop()
            raise MediaStreamError
        return frame


class Source:
    """Puts ``duration`` seconds of frames into the two tracks at real-time pace.

    After a stall it catches up at once, as a network receive buffer would deliver the
    packets that arrived meanwhile; every frame due in the window is delivered, so "frames
    in" is the same for every mode.
    """

    def __init__(self, pool: list[YuvArray], fps: float, duration: float) -> None:
        self.video = QueueTrack("video")
        self.audio = QueueTrack("audio")
        self._pool = pool
        self._fps = fps
        self._video_total = round(duration * fps)
        self._audio_total = round(duration * AUDIO_RATE / AUDIO_SAMPLES)
        tone = 0.2 * np.sin(2 * np.pi * 440 * np.arange(AUDIO_RATE) / AUDIO_RATE)
        # Interleaved s16 stereo, aiortc's decoded audio format; one second, cycled.
        self._tone = (np.repeat(tone, 2) * 32767).astype(np.int16).reshape(1, -1)
        self.video_frames = 0
        self.audio_frames = 0
        # The deepest each queue got: frames a consumer had not taken yet.
        self.max_backlog = [0, 0]
        self._start = 0.0
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._start = time.perf_counter()
        self._tasks = [loop.create_task(self._video()), loop.create_task(self._audio())]

    async def finished(self) -> None:
        """Wait until every frame of the window has been queued."""
        await asyncio.gather(*self._tasks)

    async def _paced(self, index: int, period: float) -> None:
        delay = self._start + index * period - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)

    async def _video(self) -> None:
        step = round(90000 / self._fps)
        for index in range(self._video_total):
            await self._paced(index, 1 / self._fps)
            # A fresh frame each time, as aiortc's decoder hands out: aiortc's recorder encodes the
            # frames it is given and PyAV's encode() rebases their pts in place (asyncrec never
            # writes into them).
            frame = av.VideoFrame.from_ndarray(self._pool[index % len(self._pool)], format="yuv420p")
            frame.pts = index * step
            frame.time_base = Fraction(1, 90000)
            self.video.queue.put_nowait(frame)
            self.video_frames += 1
            self.max_backlog[0] = max(self.max_backlog[0], self.video.queue.qsize())

    async def _audio(self) -> None:
        per_second = AUDIO_RATE // AUDIO_SAMPLES
        for index in range(self._audio_total):
            await self._paced(index, AUDIO_SAMPLES / AUDIO_RATE)
            first = (index % per_second) * AUDIO_SAMPLES * 2
            frame = av.AudioFrame.from_ndarray(
                self._tone[:, first : first + AUDIO_SAMPLES * 2], format="s16", layout="stereo"
            )
            frame.sample_rate = AUDIO_RATE
            frame.pts = index * AUDIO_SAMPLES
            frame.time_base = Fraction(1, AUDIO_RATE)
            self.audio.queue.put_nowait(frame)
            self.audio_frames += 1
            self.max_backlog[1] = max(self.max_backlog[1], self.audio.queue.qsize())


@dataclass
class Result:
    mode: str
    samples: list[tuple[float, float]]
    stop_lag: list[float]
    wall: float
    stop_seconds: float
    video_produced: int
    audio_produced: int
    backlog: tuple[int, int]
    max_backlog: tuple[int, int]
    output: bytes | Path | None
    stats: RecorderStatistics | None
    counts: MediaCounts | None = None

    @property
    def lag(self) -> list[float]:
        return [lag for _, lag in self.samples]

    def max_lag(self, after: float = 0.0) -> float:
        return max((lag for at, lag in self.samples if at >= after), default=float("nan"))


async def _drain(track: QueueTrack) -> None:
    with contextlib.suppress(MediaStreamError):
        while True:
            await track.recv()


async def run_mode(mode: str, pool: list[YuvArray], fps: float, duration: float, tmp: Path) -> Result:
    source = Source(pool, fps, duration)
    probe = LagProbe(PROBE_INTERVAL)
    probe.start()
    output: bytes | Path | None = None
    stats: RecorderStatistics | None = None
    chunks: list[bytes] = []
    collector: asyncio.Task[None] | None = None
    drains: list[asyncio.Task[None]] = []
    aiortc_rec: AiortcRecorder | None = None
    rec: MediaRecorder | None = None

    source.start()
    wall = time.perf_counter()
    if mode == "idle":
        drains = [asyncio.create_task(_drain(source.video)), asyncio.create_task(_drain(source.audio))]
    elif mode == "asyncrec":
        rec = MediaRecorder(MediaStream([source.video, source.audio]), mimeType="video/webm;codecs=vp8,opus")

        async def collect(recorder: MediaRecorder) -> None:
            async for event in recorder:
                chunks.append(event.data)

        collector = asyncio.create_task(collect(rec))
        rec.start(1000)
    else:
        path = tmp / "aiortc.webm"
        aiortc_rec = AiortcRecorder(str(path))
        aiortc_rec.addTrack(source.video)
        aiortc_rec.addTrack(source.audio)
        await aiortc_rec.start()
        output = path

    await source.finished()
    # One frame period of grace, so a recorder that keeps up has read the last frame.
    await asyncio.sleep(1 / fps)
    wall = time.perf_counter() - wall
    backlog = (source.video.queue.qsize(), source.audio.queue.qsize())
    samples = probe.take()

    stopping = time.perf_counter()
    if rec is not None and collector is not None:
        await rec.stop()
        await collector
        stats = rec.statistics()
        await rec.aclose()
        output = b"".join(chunks)
    elif aiortc_rec is not None:
        # Whatever is still queued is lost here: aiortc cancels its readers.
        await aiortc_rec.stop()
    else:
        for track in (source.video, source.audio):
            track.queue.put_nowait(None)
        await asyncio.gather(*drains)
    stop_seconds = time.perf_counter() - stopping
    await asyncio.sleep(2 * PROBE_INTERVAL)  # one more probe wake-up covers the end of stop()
    stop_lag = [lag for _, lag in probe.take()]
    await probe.stop()

    return Result(
        mode=mode,
        samples=samples,
        stop_lag=stop_lag,
        wall=wall,
        stop_seconds=stop_seconds,
        video_produced=source.video_frames,
        audio_produced=source.audio_frames,
        backlog=backlog,
        max_backlog=(source.max_backlog[0], source.max_backlog[1]),
        output=output,
        stats=stats,
    )


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def report(results: list[Result]) -> None:
    lag_rows = [
        [
            r.mode,
            ms(percentile(r.lag, 0.5)),
            ms(percentile(r.lag, 0.99)),
            ms(r.max_lag()),
            ms(r.max_lag(after=STARTUP)),
            str(len(r.samples)),
            f"{r.stop_seconds * 1000:.0f}",
            ms(max(r.stop_lag, default=float("nan"))),
        ]
        for r in results
    ]
    print()
    print("event-loop lag while recording (ms); wake-ups: how often the 5 ms probe ran (~1600 in 8 s when free)")
    print_table(
        ["mode", "p50", "p99", "max", f"max after {STARTUP:g} s", "wake-ups", "stop() ms", "max lag in stop()"],
        lag_rows,
    )

    media_rows = []
    for r in results:
        c = r.counts
        media_rows.append(
            [
                r.mode,
                f"{r.video_produced} / {'-' if c is None else c.video_frames}",
                f"{r.audio_produced} / {'-' if c is None else c.audio_frames}",
                f"{r.max_backlog[0]} / {r.max_backlog[1]}",
                f"{r.backlog[0]} / {r.backlog[1]}",
                f"{r.wall:.2f}",
                "-" if c is None else f"{c.video_seconds:.2f}",
            ]
        )
    print()
    print(
        "frames: in = queued by the source, out = decoded from the file; wall s = start until the source's "
        "last frame\n(late when the loop was held); video s = media duration in the file"
    )
    print_table(
        ["mode", "video in / out", "audio in / out", "max backlog v / a", "lost at stop v / a", "wall s", "video s"],
        media_rows,
    )

    for r in results:
        if r.counts is not None and r.counts.error:
            print(f"{r.mode}: output damaged: {r.counts.error}")
    by_mode = {r.mode: r for r in results}
    asyncrec = by_mode.get("asyncrec")
    if asyncrec is not None and asyncrec.stats is not None:
        s = asyncrec.stats
        tracks = ", ".join(
            f"{t.kind}: in {t.frames_in}, encoded {t.frames_encoded}, dropped {t.frames_dropped}" for t in s.tracks
        )
        busy = s.encoder_busy_time
        span = asyncrec.wall + asyncrec.stop_seconds
        print(
            f"\nasyncrec statistics: {tracks}; encoder busy {busy:.2f} s ({busy / span:.0%} of start-to-stopped, "
            f"{busy * 1000 / max(1, s.tracks[0].frames_encoded):.1f} ms per video frame incl. audio); "
            f"{s.chunks_out} chunks, {s.bytes_out / 1e6:.2f} MB"
        )
    print()
    idle = by_mode.get("idle")
    aiortc = by_mode.get("aiortc")
    if asyncrec is not None:
        p99 = percentile(asyncrec.lag, 0.99)
        verdict = "meets" if p99 * 1000 < TARGET_P99_MS else "MISSES"
        print(f"asyncrec p99 {ms(p99)} ms ({verdict} the < {TARGET_P99_MS:g} ms target)")
        if idle is not None:
            print(f"asyncrec p99 - idle p99 = {ms(p99 - percentile(idle.lag, 0.99))} ms added by recording")
        if aiortc is not None:
            ratio = percentile(aiortc.lag, 0.99) / p99
            print(
                f"aiortc p99 / asyncrec p99 = {ratio:.1f}x; aiortc max / asyncrec max = "
                f"{aiortc.max_lag() / asyncrec.max_lag():.1f}x"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of recording per mode (default 8)")
    parser.add_argument("--size", type=parse_size, default=(1280, 720), help="WIDTHxHEIGHT (default 1280x720)")
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, from {','.join(MODES)}")
    parser.add_argument("--noise", type=int, default=3, help="+- luma grain, camera-like (default 3; 0: clean)")
    parser.add_argument("--switch-interval", type=float, default=None, help="GIL switch interval in ms")
    parser.add_argument(
        "--codec-threads", type=int, default=None, help="EXPERIMENT: asyncrec's encoder thread_count (0: auto)"
    )
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if unknown := set(modes) - set(MODES):
        parser.error(f"unknown modes: {', '.join(sorted(unknown))}")
    set_switch_interval(args.switch_interval)
    if args.codec_threads is not None:
        patch_asyncrec_codec_threads(args.codec_threads)
    width, height = args.size

    print(
        f"loop lag: {width}x{height}@{args.fps:g} VP8 + Opus 20 ms, {args.duration:g} s per mode, "
        f"probe every {PROBE_INTERVAL * 1000:g} ms"
    )
    print(f"machine: {machine_info()}")
    if args.codec_threads is not None:
        print(f"EXPERIMENT: asyncrec's video encoder patched to thread_count={args.codec_threads} (aiortc untouched)")
    pool = picture_pool(width, height, 30, args.noise)
    results = []
    with tempfile.TemporaryDirectory(prefix="asyncrec-bench-") as tmp:
        for mode in modes:
            print(f"  running {mode} ...", flush=True)
            result = asyncio.run(run_mode(mode, pool, args.fps, args.duration, Path(tmp)))
            if result.output is not None:
                # Decoded after the run (and before the temp dir goes), never during a measurement.
                result.counts = count_media(result.output, args.fps)
            results.append(result)
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
