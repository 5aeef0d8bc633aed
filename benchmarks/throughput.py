"""Throughput: asyncrec recording a non-live 720p source, against a plain PyAV loop.

Every side does exactly the same work per frame: ``VideoFrame.from_ndarray`` from a pool of
pre-made yuv420p pictures, encode with asyncrec's own codec settings, mux into WebM in a
write-only in-memory sink. The baseline does it in one synchronous loop; asyncrec reads the
track on the event loop (once, through its fan-out) and encodes on its worker thread, with
backpressure instead of drops. asyncrec records two tracks handing out the same frames:

* ``asyncrec live=False``: the track declares ``live = False`` (asyncrec judges nothing);
* ``asyncrec undeclared``: a plain aiortc ``MediaStreamTrack`` subclass with no ``live``
  attribute, as users write them; asyncrec judges each frame by its timestamp against the
  wall clock, finds the source ahead of real time and must give it backpressure, never a
  drop. This row must match the ``live=False`` row: every frame in, encoded and decoded,
  the same media duration, and about the same speed.

Runs alternate between the three sides (the order rotates every round) so drifting machine
load hits all alike; the medians are compared. Exits 1 if any output of any side misses a
frame (or the undeclared row's timeline differs from the frames' own).

    python benchmarks/throughput.py                # VP8, 300 frames, 3 runs each
    python benchmarks/throughput.py --codec vp9 --frames 200
"""

from __future__ import annotations

import argparse
import sys

from _common import (
    GOP_SIZE,
    MediaCounts,
    Run,
    YuvArray,
    check_worker_literals,
    count_media,
    machine_info,
    median,
    parse_size,
    patch_asyncrec_codec_threads,
    picture_pool,
    print_table,
    run_plain_pyav,
    set_switch_interval,
)
from _common import run_asyncrec as _run_asyncrec
from asyncrec._formats import CODECS, DEFAULT_VIDEO_BITS_PER_SECOND
from asyncrec._video import codec_threads

TARGET_RATIO = 0.9
BASELINE = "PyAV sync loop"
DECLARED = "asyncrec live=False"
UNDECLARED = "asyncrec undeclared"
SIDES = (BASELINE, DECLARED, UNDECLARED)
#: The ``live`` the pool track declares on each asyncrec side (None: no attribute at all).
LIVE = {DECLARED: False, UNDECLARED: None}


def run_baseline(
    pool: list[YuvArray], frames: int, fps: float, codec: str, bps: int, threads: int | None = None
) -> Run:
    """The plain PyAV loop (``_common.run_plain_pyav``) writing WebM, as asyncrec does for vp8/vp9."""
    return run_plain_pyav(pool, frames, fps, codec, "webm", bps, threads=threads)


def run_asyncrec(
    pool: list[YuvArray], frames: int, fps: float, codec: str, bps: int, timeslice: int, live: bool | None
) -> Run:
    return _run_asyncrec(pool, frames, fps, f"video/webm;codecs={codec}", bps, timeslice, live=live)


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
    parser.add_argument("--codec-threads", type=int, default=None, help="EXPERIMENT: encoder thread_count, all sides")
    parser.add_argument("--no-warmup", action="store_true", help="skip the short untimed run of each side")
    args = parser.parse_args()
    set_switch_interval(args.switch_interval)
    check_worker_literals()
    if args.codec_threads is not None:
        patch_asyncrec_codec_threads(args.codec_threads)
    fps = 30.0
    width, height = args.size

    def run_side(side: str, frames: int) -> Run:
        if side == BASELINE:
            return run_baseline(pool, frames, fps, args.codec, args.bitrate, args.codec_threads)
        return run_asyncrec(pool, frames, fps, args.codec, args.bitrate, args.timeslice, LIVE[side])

    print(f"throughput: {width}x{height} {args.codec.upper()} {args.bitrate / 1e6:g} Mb/s, {args.frames} frames/run")
    print(f"machine: {machine_info()}")
    spec = CODECS[args.codec]
    if args.codec_threads is None:
        threads = f"{codec_threads(spec.encoder, width, height)} (asyncrec's choice)"
    else:
        threads = f"{args.codec_threads} (EXPERIMENT, asyncrec patched)"
    print(f"encoder: {spec.encoder} {dict(spec.options)} gop {GOP_SIZE}, codec threads: {threads}, all sides")
    pool = picture_pool(width, height, args.pool, args.noise)
    if not args.no_warmup:
        # Page in the libraries and let the CPU clock settle; not timed.
        for side in SIDES:
            run_side(side, 30)

    runs: dict[str, list[Run]] = {side: [] for side in SIDES}
    for round_index in range(args.repeat):
        # Rotate the order, so no side always runs right after the same other one.
        shift = round_index % len(SIDES)
        for side in SIDES[shift:] + SIDES[:shift]:
            runs[side].append(run_side(side, args.frames))

    # Verify after timing, so decoding never competes with a measurement.
    counts: dict[str, list[MediaCounts]] = {name: [count_media(r.data, fps) for r in rs] for name, rs in runs.items()}
    fps_of = {name: median([args.frames / r.wall for r in rs]) for name, rs in runs.items()}
    rows = []
    for name, rs in runs.items():
        rates = [args.frames / r.wall for r in rs]
        rows.append(
            [
                name,
                f"{fps_of[name]:.1f}",
                f"{min(rates):.1f}-{max(rates):.1f}",
                f"{median([r.cpu / args.frames * 1000 for r in rs]):.2f}",
                "/".join(str(c.video_frames) for c in counts[name]),
                "/".join(f"{c.video_seconds:.2f}" for c in counts[name]),
                f"{median([len(r.data) for r in rs]) / 1e6:.2f}",
                f"{fps_of[name] / fps_of[BASELINE]:.2f}",
                "-" if name == BASELINE else f"{fps_of[name] / fps_of[DECLARED]:.2f}",
            ]
        )
    print()
    headers = ["", "fps (median)", "min-max", "CPU ms/frame", "frames decoded", "video s"]
    print_table([*headers, "MB", "vs PyAV", "vs live=False"], rows)

    ok = True
    expected_seconds = args.frames / fps
    print()
    for side in (DECLARED, UNDECLARED):
        for index, run in enumerate(runs[side]):
            assert run.stats is not None
            track = run.stats.tracks[0]
            busy = run.stats.encoder_busy_time
            decoded = counts[side][index]
            complete = (
                track.frames_in == args.frames
                and track.frames_encoded == args.frames
                and track.frames_dropped == 0
                and decoded.video_frames == args.frames
                and decoded.error is None
            )
            # The source's own timeline (1/fps apart): a source misjudged as real time would be
            # re-timed or dropped; within half a frame of it, as the live=False row is.
            timeline = abs(decoded.video_seconds - expected_seconds) < 0.5 / fps
            ok = ok and complete and timeline
            print(
                f"{side} run {index + 1}: frames in {track.frames_in}, encoded {track.frames_encoded}, "
                f"dropped {track.frames_dropped}, decoded {decoded.video_frames} "
                f"({decoded.video_seconds:.2f} s of video), worker busy {busy:.2f} s of {run.wall:.2f} s "
                f"({args.frames / busy:.0f} fps while busy), {run.stats.chunks_out} chunks"
                + ("" if complete else "  <-- FRAMES MISSING")
                + ("" if timeline else f"  <-- TIMELINE: expected {expected_seconds:.2f} s")
            )
            if decoded.error:
                print(f"  decode error: {decoded.error}")
    for index, decoded in enumerate(counts[BASELINE]):
        if decoded.video_frames != args.frames or decoded.error:
            ok = False
            print(f"baseline run {index + 1}: decoded {decoded.video_frames} frames {decoded.error or ''}")

    print()
    for side in (DECLARED, UNDECLARED):
        ratio = fps_of[side] / fps_of[BASELINE]
        verdict = "meets" if ratio >= TARGET_RATIO else "MISSES"
        print(f"{side} / PyAV = {ratio:.2f} ({verdict} the >= {TARGET_RATIO} target)")
    print(f"{UNDECLARED} / {DECLARED} = {fps_of[UNDECLARED] / fps_of[DECLARED]:.2f} (should be about 1)")
    print(f"every frame recorded, on the source's timeline, in every row: {ok}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
