"""Capacity: how many live 480p30 VP8 + Opus recordings one process holds at once.

For N = 1, 2, 3, 4, 6, 8, 12... (about x1.5 a step, then one at a time from 3/4 of the raw
limit on), N recordings run together for ``--seconds``, each on its own live source: an
asyncrec ``FrameTrack`` (``realtime=True``, 640x480 at 30 fps) handing out camera-like
pictures (``_common.picture_pool``: a moving pattern with sensor grain, so the encoder works
as hard as on camera video; a clean pattern costs it almost nothing) and a ``SampleTrack``
(a 440 Hz tone, 20 ms frames). Ladders (``--sides``), alternating at each N in the same run:

* ``asyncrec``: asyncrec's MediaRecorder (``video/webm;codecs=vp8,opus``, timeslice 1000 ms),
  a ``dataavailable`` handler counting the bytes; every recording encodes on its own thread;
* ``pool``: the same recorders given an ``EncoderPool`` (one process per core, started before
  the step), so their encoders and muxers run in those processes;
* ``processes`` (not run by default): the ``asyncrec`` side's recordings, sources and all,
  split over one child process per core;
* ``aiortc``: ``aiortc.contrib.media.MediaRecorder`` writing a WebM file in a temporary
  directory (it encodes on the event loop, with libvpx's defaults), the tracks wrapped to
  count the frames it takes (it encodes each as soon as it has taken it) and to let the loop
  run once per frame, as asyncrec's fan-out does (see :class:`CountingTrack`).

A recording keeps up when, at the end of the window, the media it has encoded (its slower
track: video frames / 30, audio frames x 20 ms) is within ``TOLERANCE`` (0.5 s) of the wall
time since its ``start()``, asyncrec dropped none of its video frames (``frames_dropped``,
counted until it stopped; asyncrec drops real-time video that waited 0.5 s for the encoder),
and the event loop's p99 lag (a 10 ms ticker) stayed under 0.5 s too (a loop held that long
cannot serve live sources). A ladder ends at the first N where any recording falls behind;
its capacity is the largest N where all kept up.

The raw limit is what the encoders alone allow on this box: a plain single-thread PyAV loop
(``_common.run_plain_pyav``, asyncrec's own VP8 settings, ``from_ndarray`` + encode + mux)
encodes the same 640x480 pictures as fast as it can, and a plain loop encodes asyncrec's Opus
(128 kb/s VBR, mono 20 ms frames); one core's cost of a second of recording is
``30 / video fps + Opus seconds per second``, and the raw limit is ``cores / that cost``
(one thread's fps x cores / 30). It is measured before the ladders and again after them
(the mean is used; both printed, so drift shows).

Exits 1 if asyncrec lost an audio frame in any step (audio frames in != encoded at stop:
audio must never be dropped, even when video falls behind) or reported an error.

    python benchmarks/capacity.py                   # 10 s per step, N up to 2x the raw limit
    python benchmarks/capacity.py --seconds 20 --max-n 24
    python benchmarks/capacity.py --quick           # smoke test: N up to 2, 3 s steps
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import inspect
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from aiortc.contrib.media import MediaRecorder as AiortcRecorder
from aiortc.mediastreams import MediaStreamTrack
from av.audio.stream import AudioStream

from _common import (
    GOP_SIZE,
    LagProbe,
    WriteOnlySink,
    YuvArray,
    container_options,
    count_media,
    machine_info,
    percentile,
    picture_pool,
    print_table,
    run_plain_pyav,
    set_switch_interval,
)
from asyncrec import (
    BlobEvent,
    EncoderPool,
    ErrorEvent,
    FrameTrack,
    MediaRecorder,
    MediaStream,
    SampleTrack,
    _container,
    sine_tone,
)
from asyncrec._audio import AUDIO_RATE, AUDIO_TIME_BASE
from asyncrec._formats import CODECS, DEFAULT_AUDIO_BITS_PER_SECOND, DEFAULT_VIDEO_BITS_PER_SECOND

WIDTH, HEIGHT = 640, 480
FPS = 30
MIME = "video/webm;codecs=vp8,opus"
TIMESLICE_MS = 1000
#: SampleTrack's default frame: 20 ms at 48 kHz.
AUDIO_FRAME_SAMPLES = 960
AUDIO_FRAME_SECONDS = AUDIO_FRAME_SAMPLES / AUDIO_RATE
#: How far behind the wall clock a recording may be (s), and the loop's p99 lag may reach.
TOLERANCE = 0.5
TICK = 0.010
#: From this fraction of the raw limit on, the ladder goes one recording at a time.
NEAR_LIMIT = 0.75
SIDES = ("asyncrec", "pool", "aiortc", "processes")
#: The sides run unless ``--sides`` says otherwise.
DEFAULT_SIDES = ("asyncrec", "pool", "aiortc")


class CountingTrack(MediaStreamTrack):
    """Hands on another track's frames and counts them (what aiortc's recorder has taken).

    It lets the loop run once per frame, as asyncrec's fan-out does after each ``recv()``:
    a real-time track whose frame is already due returns without suspending, so aiortc's
    reader, once behind, would encode frame after frame without ever giving the loop back
    (the ticker, the other recordings, the end of the window), for as long as it stays
    behind, for ever if it never catches up. (A network track gives the loop back when its
    queue runs dry, since packets only arrive while the loop runs.)
    """

    def __init__(self, inner: MediaStreamTrack) -> None:
        super().__init__()
        self.kind = inner.kind
        self._inner = inner
        self.frames = 0

    async def recv(self) -> av.VideoFrame | av.AudioFrame:
        # Before the frame is taken, so stop() cancelling this leaves no frame counted but not encoded.
        await asyncio.sleep(0)
        frame = await self._inner.recv()
        self.frames += 1
        return frame

    def stop(self) -> None:
        self._inner.stop()
        super().stop()


def live_tracks(pool: list[YuvArray]) -> tuple[FrameTrack, SampleTrack]:
    """One recording's live source: 640x480@30 camera-like video and a tone, paced in real time."""
    video = FrameTrack(lambda index, seconds: pool[index % len(pool)], fps=FPS, format="yuv420p", realtime=True)
    audio = SampleTrack(sine_tone(440), realtime=True)
    return video, audio


class MachineCpu:
    """The whole machine's busy share between two readings of ``/proc/stat`` (None elsewhere)."""

    def __init__(self) -> None:
        self._start = self._read()

    @staticmethod
    def _read() -> tuple[int, int] | None:
        try:
            fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
        except OSError:
            return None
        values = [int(value) for value in fields]
        return sum(values), values[3] + values[4]  # total, idle + iowait

    def busy(self) -> float | None:
        end = self._read()
        if self._start is None or end is None or end[0] == self._start[0]:
            return None
        return 1 - (end[1] - self._start[1]) / (end[0] - self._start[0])


@dataclass
class Step:
    """One N of one ladder."""

    side: str
    n: int
    #: Wall seconds from the first ``start()`` to the end of the window.
    window: float
    #: Per recording: wall time since its start minus the media its slower track encoded (s).
    behind: list[float]
    lag: list[float]
    #: This process's CPU seconds in the window.
    cpu: float
    #: The whole machine's busy share in the window (None: unknown).
    machine: float | None
    #: Video frames recorded, all recordings (asyncrec: encoded, at stop; aiortc: taken).
    video_frames: int = 0
    #: asyncrec, per recording: video frames dropped (counted until it stopped).
    drops: list[int] = field(default_factory=list)
    #: asyncrec: audio frames in minus audio frames encoded, at stop, all recordings (must be 0).
    audio_lost: int = 0
    #: asyncrec: worker seconds spent encoding and muxing, all recordings.
    encoder_busy: float = 0.0
    bytes_out: int = 0
    errors: list[str] = field(default_factory=list)
    #: aiortc: video frames decoded from its files (None: not decoded).
    decoded: int | None = None

    @property
    def p99(self) -> float:
        return percentile(self.lag, 0.99)

    @property
    def dropped(self) -> int:
        return sum(self.drops)

    @property
    def kept(self) -> int:
        """Recordings that kept up with the wall clock and dropped no video frame."""
        drops = self.drops or [0] * self.n
        return sum(1 for behind, dropped in zip(self.behind, drops, strict=True) if behind <= TOLERANCE and not dropped)

    @property
    def kept_up(self) -> bool:
        return self.kept == self.n and self.audio_lost == 0 and not self.errors and self.p99 <= TOLERANCE


def _media(video_frames: int, audio_frames: int) -> float:
    """Seconds of media of a recording's slower track."""
    return min(video_frames / FPS, audio_frames * AUDIO_FRAME_SECONDS)


async def run_asyncrec(n: int, pool: list[YuvArray], seconds: float, tmp: Path) -> Step:
    return await _run_asyncrec("asyncrec", n, pool, seconds)


async def run_encoder_pool(n: int, pool: list[YuvArray], seconds: float, tmp: Path) -> Step:
    """The ``pool`` side: asyncrec's recorders given an ``EncoderPool`` (one process per
    core, started before the step: the recordings' encoders and muxers run there)."""
    async with EncoderPool() as encoders:
        return await _run_asyncrec("pool", n, pool, seconds, encoders)


async def _run_asyncrec(
    side: str, n: int, pool: list[YuvArray], seconds: float, encoders: EncoderPool | None = None
) -> Step:
    ticker = LagProbe(TICK)
    ticker.start()
    sources = [live_tracks(pool) for _ in range(n)]
    recorders = [MediaRecorder(MediaStream(list(tracks)), mimeType=MIME, encoder_pool=encoders) for tracks in sources]
    sizes = [0] * n
    errors: list[str] = []

    def counter(index: int) -> Callable[[BlobEvent], None]:
        def count(event: BlobEvent) -> None:
            sizes[index] += len(event.data)

        return count

    def on_error(event: ErrorEvent) -> None:
        errors.append(f"{event.error.name}: {event.error}")

    for index, recorder in enumerate(recorders):
        recorder.on("dataavailable", counter(index))
        recorder.on("error", on_error)
    machine = MachineCpu()
    cpu = time.process_time()
    started: list[float] = []
    for recorder in recorders:
        started.append(time.perf_counter())
        recorder.start(TIMESLICE_MS)
    await asyncio.sleep(seconds)
    now = time.perf_counter()
    behind = []
    for recorder, start in zip(recorders, started, strict=True):
        video, audio = recorder.statistics().tracks
        behind.append(now - start - _media(video.frames_encoded, audio.frames_encoded))
    step = Step(
        side, n, now - started[0], behind, ticker.lags(), time.process_time() - cpu, machine.busy(), errors=errors
    )

    await asyncio.gather(*(recorder.stop() for recorder in recorders))
    for recorder in recorders:
        stats = recorder.statistics()
        video, audio = stats.tracks
        step.video_frames += video.frames_encoded
        step.drops.append(video.frames_dropped)
        step.audio_lost += audio.frames_in - audio.frames_encoded
        step.encoder_busy += stats.encoder_busy_time
        await recorder.aclose()
    for tracks in sources:
        for track in tracks:
            track.stop()
    step.bytes_out = sum(sizes)
    await ticker.stop()
    return step


async def run_aiortc(n: int, pool: list[YuvArray], seconds: float, tmp: Path) -> Step:
    ticker = LagProbe(TICK)
    ticker.start()
    sources = [tuple(CountingTrack(track) for track in live_tracks(pool)) for _ in range(n)]
    recorders = []
    for index, tracks in enumerate(sources):
        recorder = AiortcRecorder(str(tmp / f"aiortc-{index}.webm"), format="webm")
        for track in tracks:
            recorder.addTrack(track)
        recorders.append(recorder)
    machine = MachineCpu()
    cpu = time.process_time()
    started: list[float] = []
    for recorder in recorders:
        started.append(time.perf_counter())
        await recorder.start()
    await asyncio.sleep(seconds)
    now = time.perf_counter()
    behind = [
        now - start - _media(video.frames, audio.frames) for (video, audio), start in zip(sources, started, strict=True)
    ]
    step = Step("aiortc", n, now - started[0], behind, ticker.lags(), time.process_time() - cpu, machine.busy())
    step.video_frames = sum(video.frames for video, _ in sources)
    # Whatever it has not taken yet is not its loss: the window is over.
    for recorder in recorders:
        await recorder.stop()
    for tracks in sources:
        for track in tracks:
            track.stop()
    await ticker.stop()
    return step


RUNS = {"asyncrec": run_asyncrec, "pool": run_encoder_pool, "aiortc": run_aiortc}
#: Seconds the child processes of the ``processes`` side get to import and make their
#: pictures before they all start recording at the same moment.
CHILD_SETUP = 6.0


def run_processes(n: int, noise: int, seconds: float) -> Step:
    """The ``processes`` side: the same N asyncrec recordings spread over one process per
    core (a process pool), each process with its share on worker threads as usual, all
    starting at the same moment. One Step, merged from theirs."""
    cores = os.cpu_count() or 1
    shares = [share for i in range(cores) if (share := n // cores + (1 if i < n % cores else 0))]
    start_at = time.time() + CHILD_SETUP
    command = [sys.executable, __file__, "--seconds", str(seconds), "--noise", str(noise), "--start-at", str(start_at)]
    children = [
        subprocess.Popen([*command, "--child", str(share)], stdout=subprocess.PIPE, text=True) for share in shares
    ]
    while time.time() < start_at:
        time.sleep(0.01)  # the children start at start_at: the machine's reading starts with them
    machine = MachineCpu()
    results = [json.loads(child.communicate()[0].strip().splitlines()[-1]) for child in children]
    merged = Step(
        "processes",
        n,
        max(r["window"] for r in results),
        [b for r in results for b in r["behind"]],
        [lag for r in results for lag in r["lag"]],
        sum(r["cpu"] for r in results),
        machine.busy(),
    )
    merged.video_frames = sum(r["video_frames"] for r in results)
    merged.drops = [d for r in results for d in r["drops"]]
    merged.audio_lost = sum(r["audio_lost"] for r in results)
    merged.encoder_busy = sum(r["encoder_busy"] for r in results)
    merged.bytes_out = sum(r["bytes_out"] for r in results)
    merged.errors = [e for r in results for e in r["errors"]]
    return merged


def child(n: int, noise: int, seconds: float, start_at: float) -> None:
    """A process of the ``processes`` side: its share of recordings, as a JSON Step."""
    pool = picture_pool(WIDTH, HEIGHT, 30, noise)
    while time.time() < start_at:
        time.sleep(0.005)  # every child starts at the same moment
    with tempfile.TemporaryDirectory(prefix="asyncrec-capacity-") as tmp:
        step = asyncio.run(run_asyncrec(n, pool, seconds, Path(tmp)))
    print(json.dumps(dataclasses.asdict(step)))


def run_step(side: str, n: int, pool: list[YuvArray], seconds: float, tmp: Path, noise: int = 3) -> Step:
    if side == "processes":
        return run_processes(n, noise, seconds)
    # A fresh event loop per step, as a new process would have.
    step = asyncio.run(RUNS[side](n, pool, seconds, tmp))
    if side == "aiortc":
        # Decoded after the run, never during a measurement; then the files go.
        step.decoded = 0
        for index in range(n):
            path = tmp / f"aiortc-{index}.webm"
            counts = count_media(path, FPS)
            step.decoded += counts.video_frames
            if counts.error:
                step.errors.append(f"recording {index}: {counts.error}")
            step.bytes_out += path.stat().st_size
            path.unlink()
    return step


def check_gop_literal() -> None:
    """Exit if asyncrec's ``_container._add_video`` no longer has the GOP the baseline copies
    (``_common.GOP_SIZE``). The one literal of ``_common.check_worker_literals`` this benchmark
    depends on: the other, MP4's movflags, does not concern WebM."""
    if f"else {GOP_SIZE}" not in inspect.getsource(_container._add_video):
        raise SystemExit(f"benchmark settings drifted: GOP {GOP_SIZE} is no longer in asyncrec's _container._add_video")


def raw_video_fps(pool: list[YuvArray], seconds: float) -> float:
    """Frames per second of one plain PyAV thread encoding the pictures with asyncrec's VP8 settings."""
    bps = DEFAULT_VIDEO_BITS_PER_SECOND
    probe = run_plain_pyav(pool, FPS, FPS, "vp8", "webm", bps, threads=1)  # also the warm-up
    frames = max(FPS, round(seconds * FPS / probe.wall))
    run = run_plain_pyav(pool, frames, FPS, "vp8", "webm", bps, threads=1)
    decoded = count_media(run.data, FPS)
    if decoded.video_frames != frames or decoded.error:
        raise SystemExit(f"baseline broken: {frames} frames encoded, {decoded.video_frames} decoded {decoded.error}")
    return frames / run.wall


def raw_audio_cost(seconds: float) -> float:
    """Wall seconds one plain PyAV thread takes to encode and mux a second of asyncrec's Opus
    (``_container._add_audio``'s settings: VBR, the default bitrate, mono 48 kHz)."""
    spec = CODECS["opus"]
    read = sine_tone(440)
    cycle = [
        (np.clip(read(index * AUDIO_FRAME_SAMPLES, AUDIO_FRAME_SAMPLES), -1, 1) * 32767).astype(np.int16)
        for index in range(AUDIO_RATE // AUDIO_FRAME_SAMPLES)
    ]
    frames = max(len(cycle), round(seconds / AUDIO_FRAME_SECONDS))
    sink = WriteOnlySink()
    wall = time.perf_counter()
    container = av.open(sink, mode="w", format="webm", container_options=container_options("webm"))
    stream = container.add_stream(spec.encoder, rate=AUDIO_RATE, options={**spec.options, "vbr": "on"})
    assert isinstance(stream, AudioStream)
    stream.bit_rate = DEFAULT_AUDIO_BITS_PER_SECOND
    stream.codec_context.layout = "mono"
    stream.codec_context.time_base = AUDIO_TIME_BASE
    for index in range(frames):
        frame = av.AudioFrame.from_ndarray(cycle[index % len(cycle)], format="s16", layout="mono")
        frame.sample_rate = AUDIO_RATE
        frame.pts = index * AUDIO_FRAME_SAMPLES
        frame.time_base = Fraction(1, AUDIO_RATE)
        for packet in stream.encode(frame):
            container.mux_one(packet)
    for packet in stream.encode(None):
        container.mux_one(packet)
    container.close()
    return (time.perf_counter() - wall) / (frames * AUDIO_FRAME_SECONDS)


@dataclass
class Raw:
    video_fps: float
    audio_cost: float

    @property
    def fps(self) -> float:
        """Video frames (with their audio) one core records per second."""
        return FPS / (FPS / self.video_fps + self.audio_cost)

    @property
    def limit(self) -> float:
        return self.fps * (os.cpu_count() or 1) / FPS


def measure_raw(pool: list[YuvArray], seconds: float) -> Raw:
    raw = Raw(raw_video_fps(pool, seconds), raw_audio_cost(seconds))
    print(
        f"  plain PyAV, one thread: VP8 {raw.video_fps:.1f} fps, Opus {raw.audio_cost * 1000:.1f} ms per s "
        f"-> {raw.fps:.1f} fps with audio -> raw limit {raw.limit:.1f} recordings",
        flush=True,
    )
    return raw


def ladder(raw_limit: float, max_n: int) -> list[int]:
    """1, 2, 3, 4, then 6, 8, 12, 16, 24... up to ``NEAR_LIMIT`` of the raw limit, one at a time from there."""
    near = math.floor(NEAR_LIMIT * raw_limit)
    steps = []
    n = 1
    while n <= max_n:
        steps.append(n)
        if n < 4 or n >= near:
            n += 1
        else:
            n = min(n + (1 << (n.bit_length() - 2)), max(near, n + 1))
    return steps


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def percent(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.0f}"


def describe(step: Step) -> str:
    line = (
        f"{step.side} N={step.n}: kept up {step.kept}/{step.n}, worst behind {max(step.behind):.2f} s, "
        f"p99 lag {ms(step.p99)} ms, CPU {percent(step.cpu / step.window / (os.cpu_count() or 1))} % of the machine"
    )
    if step.side in ("asyncrec", "pool", "processes"):
        line += f", dropped {step.dropped}, audio lost {step.audio_lost}"
    if step.errors:
        line += f", errors: {'; '.join(step.errors)}"
    return line


def capacity(steps: list[Step]) -> int:
    return max((step.n for step in steps if step.kept_up), default=0)


def capacity_text(steps: list[Step]) -> str:
    """The capacity, "N+" when the ladder ran out before any recording fell behind."""
    held = capacity(steps)
    return f"{held}+" if steps and steps[-1].kept_up else str(held)


#: What each of asyncrec's sides is, for the report.
OUR_SIDES = {
    "asyncrec": "asyncrec, one process: every recording encodes on a worker thread of its own",
    "pool": "asyncrec with an EncoderPool: the recordings' encoders and muxers in one process per core",
    "processes": "the asyncrec side's recordings spread over one process per core (sources and all)",
}


def our_table(side: str, steps: list[Step], seconds: float) -> None:
    cores = os.cpu_count() or 1
    print()
    print(
        f"{OUR_SIDES[side]}; {seconds:g} s per N; behind = wall time minus the media encoded, worst recording; "
        "ticks = wake-ups of the 10 ms ticker (about 100 a second when the loop is free);\n"
        "CPU = the recorders' process (the sum of them for 'processes'), % of the machine; machine = all processes"
    )
    print_table(
        [
            *("N", "all kept up", "dropped", "audio lost", "behind s", "p99 lag ms", "max lag ms", "ticks"),
            *("CPU %", "machine %", "worker ms/frame", "MB"),
        ],
        [
            [
                str(s.n),
                "yes" if s.kept_up else f"NO ({s.kept}/{s.n})",
                str(s.dropped),
                str(s.audio_lost),
                f"{max(s.behind):.2f}",
                ms(s.p99),
                ms(max(s.lag, default=math.nan)),
                str(len(s.lag)),
                percent(s.cpu / s.window / cores),
                percent(s.machine),
                f"{s.encoder_busy * 1000 / max(1, s.video_frames):.1f}",
                f"{s.bytes_out / 1e6:.1f}",
            ]
            for s in steps
        ],
    )


def aiortc_table(steps: list[Step]) -> None:
    cores = os.cpu_count() or 1
    print()
    print("aiortc's MediaRecorder (encodes on the loop): video frames taken / due (30 per s of window), decoded")
    print_table(
        [
            *("N", "all kept up", "video taken / due", "decoded", "behind s", "p99 lag ms", "max lag ms", "ticks"),
            *("CPU %", "machine %", "MB"),
        ],
        [
            [
                str(s.n),
                "yes" if s.kept_up else f"NO ({s.kept}/{s.n})",
                f"{s.video_frames} / {round(s.window * FPS) * s.n}",
                "-" if s.decoded is None else str(s.decoded),
                f"{max(s.behind):.2f}",
                ms(s.p99),
                ms(max(s.lag, default=math.nan)),
                str(len(s.lag)),
                percent(s.cpu / s.window / cores),
                percent(s.machine),
                f"{s.bytes_out / 1e6:.1f}",
            ]
            for s in steps
        ],
    )


def lag_table(steps: dict[str, list[Step]]) -> None:
    """p99 loop lag of every side at each N, side by side."""
    sides = [side for side in SIDES if steps.get(side)]
    by_side = {side: {s.n: s for s in steps[side]} for side in sides}
    print()
    print("p99 event-loop lag side by side (ms; 'behind': that step did not keep up)")
    rows = []
    for n in sorted({s.n for side in sides for s in steps[side]}):
        row = [str(n)]
        for side in sides:
            step = by_side[side].get(n)
            row.append("-" if step is None else ms(step.p99) + ("" if step.kept_up else " (behind)"))
        rows.append(row)
    print_table(["N", *sides], rows)


def report(steps: dict[str, list[Step]], raws: list[Raw], seconds: float) -> None:
    cores = os.cpu_count() or 1
    for side in OUR_SIDES:
        if steps.get(side):
            our_table(side, steps[side], seconds)
    if steps.get("aiortc"):
        aiortc_table(steps["aiortc"])
    if len([side for side in SIDES if steps.get(side)]) > 1:
        lag_table(steps)
    limit = sum(raw.limit for raw in raws) / len(raws)
    print()
    print(
        f"raw limit {limit:.1f} recordings (one PyAV thread's {sum(r.fps for r in raws) / len(raws):.1f} fps x "
        f"{cores} cores / {FPS}; before the ladders {raws[0].limit:.1f}, after {raws[-1].limit:.1f})"
    )
    for side in SIDES:
        if steps.get(side):
            held = capacity(steps[side])
            at = next(s for s in steps[side] if s.n == held) if held else None
            lag = f", p99 loop lag there {ms(at.p99)} ms" if at is not None else ""
            print(f"{side:>9}: capacity {capacity_text(steps[side])}, ratio to the raw limit {held / limit:.2f}{lag}")
    mine, theirs = steps.get("asyncrec", []), steps.get("aiortc", [])
    if mine and theirs:
        mine_held, theirs_held = capacity(mine), capacity(theirs)
        ratio = f"{mine_held / theirs_held:.1f}x" if theirs_held else f"aiortc held none, asyncrec {mine_held}"
        print(f"asyncrec capacity / aiortc capacity = {ratio}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=None, help="seconds each N records (default 10; quick 3)")
    parser.add_argument("--max-n", type=int, default=None, help="largest N tried (default 2x the raw limit; quick 2)")
    parser.add_argument(
        "--raw-seconds", type=float, default=None, help="seconds of each plain PyAV run (default 3; quick 1)"
    )
    parser.add_argument(
        "--sides",
        default=",".join(DEFAULT_SIDES),
        help=f"comma-separated, from {','.join(SIDES)} (processes: asyncrec's recordings spread over one process "
        "per core, against its worker threads in one process)",
    )
    parser.add_argument(
        "--ns", help="comma-separated N values to run instead of the ladder (e.g. 8,9,10: a look near capacity)"
    )
    parser.add_argument(
        "--switch-interval", type=float, default=None, help="EXPERIMENT: sys.setswitchinterval, in ms, in this process"
    )
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--noise", type=int, default=3, help="+- luma grain, camera-like (default 3; 0: clean)")
    parser.add_argument("--quick", action="store_true", help="a smoke test (N up to 2, 3 s), not a measurement")
    args = parser.parse_args()
    set_switch_interval(args.switch_interval)
    sides = [side.strip() for side in args.sides.split(",") if side.strip()]
    if unknown := set(sides) - set(SIDES):
        parser.error(f"unknown sides: {', '.join(sorted(unknown))}")
    seconds = args.seconds if args.seconds is not None else 3.0 if args.quick else 10.0
    if args.child is not None:
        child(args.child, args.noise, seconds, args.start_at)
        return 0
    raw_seconds = args.raw_seconds if args.raw_seconds is not None else 1.0 if args.quick else 3.0
    check_gop_literal()

    print(
        f"capacity: live {WIDTH}x{HEIGHT}@{FPS} VP8 + Opus recordings in one process, {seconds:g} s per N, "
        f"timeslice {TIMESLICE_MS} ms, kept up = within {TOLERANCE:g} s of the wall clock, no video dropped"
    )
    print(f"machine: {machine_info()}")
    pool = picture_pool(WIDTH, HEIGHT, 30, args.noise)
    print("raw limit, before the ladders:", flush=True)
    raws = [measure_raw(pool, raw_seconds)]
    max_n = args.max_n if args.max_n is not None else 2 if args.quick else max(1, math.ceil(2 * raws[0].limit))
    ns = [int(n) for n in args.ns.split(",")] if args.ns else ladder(raws[0].limit, max_n)
    print(f"N ladder (up to {max_n}, stopping at the first N where a recording falls behind): {ns}", flush=True)

    steps: dict[str, list[Step]] = {side: [] for side in sides}
    going = list(sides)
    with tempfile.TemporaryDirectory(prefix="asyncrec-capacity-") as tmp:
        for index, n in enumerate(ns):
            if not going:
                break
            # Alternate which side goes first, so neither always follows the other.
            for side in going[index % len(going) :] + going[: index % len(going)]:
                step = run_step(side, n, pool, seconds, Path(tmp), args.noise)
                steps[side].append(step)
                print(f"  {describe(step)}", flush=True)
            going = [side for side in going if steps[side][-1].kept_up]
    print("raw limit, after the ladders:", flush=True)
    raws.append(measure_raw(pool, raw_seconds))
    report(steps, raws, seconds)

    ours = [*steps.get("asyncrec", []), *steps.get("pool", []), *steps.get("processes", [])]
    failed = [s for s in ours if s.audio_lost or s.errors]
    for step in failed:
        print(f"FAILED: asyncrec N={step.n}: {step.audio_lost} audio frames lost, errors: {step.errors or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
