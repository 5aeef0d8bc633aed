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
from asyncrec._worker import codec_threads

TARGET_RATIO = 0.9


def run_baseline(
    pool: list[YuvArray], frames: int, fps: float, codec: str, bps: int, threads: int | None = None
) -> Run:
    """The plain PyAV loop (``_common.run_plain_pyav``) writing WebM, as asyncrec does for vp8/vp9."""
    return run_plain_pyav(pool, frames, fps, codec, "webm", bps, threads=threads)


def run_asyncrec(pool: list[YuvArray], frames: int, fps: float, codec: str, bps: int, timeslice: int) -> Run:
    return _run_asyncrec(pool, frames, fps, f"video/webm;codecs={codec}", bps, timeslice)


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
    check_worker_literals()
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
