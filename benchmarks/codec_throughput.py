"""Codecs: asyncrec against a plain PyAV loop for H.264, VP9 and AV1, and the cost of rgb24 input.

For each codec (H.264 in fragmented MP4, VP9 and AV1 in WebM) and picture size, a non-live
track hands out fresh frames made with ``VideoFrame.from_ndarray`` from pre-made pictures;
asyncrec reads them on the loop and encodes on its worker thread. The baseline is one
synchronous loop doing the same ``from_ndarray``, encode and mux with asyncrec's own settings
(codec options, muxer and muxer options, bitrate, GOP, declared frame rate, time base, thread
count: imported from ``asyncrec._formats``, ``_container``, ``_chunks`` and ``_video`` via
``_common``). Every output is decoded afterwards and must hold every frame.

Conversion: the same pictures as packed rgb24, turned into yuv420p by swscale (in asyncrec by
the ``format`` filter of its video path's filter graph, on the worker thread; in the baseline
by PyAV's reformatter inside ``encode``, in the loop), for one codec at 720p; the slowdown
against yuv420p input is printed for each side.

Runs alternate between the sides and rotate over the cases, so drifting machine load hits
everything alike; medians are compared.

    python benchmarks/codec_throughput.py                      # 150 frames, 3 runs per side and case (~80 s)
    python benchmarks/codec_throughput.py --codecs av1 --sizes 1280x720 --frames 300
    python benchmarks/codec_throughput.py --convert-codec none # skip the rgb24 case
"""

from __future__ import annotations

import argparse
import os

# SVT-AV1 prints its configuration at every encoder open; 1 keeps errors only. Set before av loads.
os.environ.setdefault("SVT_LOG", "1")

import sys
from dataclasses import dataclass, field

from _common import (
    MediaCounts,
    PictureArray,
    Run,
    check_worker_literals,
    count_media,
    machine_info,
    median,
    parse_size,
    picture_pool,
    print_table,
    run_asyncrec,
    run_plain_pyav,
    to_rgb24,
)
from asyncrec._formats import CODECS, DEFAULT_VIDEO_BITS_PER_SECOND, resolve_format
from asyncrec._video import codec_threads, recording_size

TARGET_RATIO = 0.9
FPS = 30.0
#: Codec name on the command line -> (label, asyncrec MIME type).
CODEC_CHOICES = {
    "h264": ("H.264/MP4", "video/mp4;codecs=avc1"),
    "vp9": ("VP9/WebM", "video/webm;codecs=vp9"),
    "av1": ("AV1/WebM", "video/webm;codecs=av1"),
}
SIDES = ("PyAV", "asyncrec")


@dataclass
class Case:
    name: str
    mime: str
    width: int
    height: int
    pixel_format: str = "yuv420p"
    runs: dict[str, list[Run]] = field(default_factory=lambda: {side: [] for side in SIDES})
    counts: dict[str, list[MediaCounts]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{CODEC_CHOICES[self.name][0]} {self.width}x{self.height} {self.pixel_format}"

    @property
    def codec(self) -> str:
        fmt = resolve_format(self.mime, has_video=True, has_audio=False)
        assert fmt.video is not None
        return fmt.video.id

    @property
    def muxer(self) -> str:
        # The muxer asyncrec picks for this MIME type (e.g. Matroska for H.264 "WebM").
        return resolve_format(self.mime, has_video=True, has_audio=False).muxer

    def fps(self, side: str, frames: int) -> list[float]:
        return [frames / run.wall for run in self.runs[side]]


def run_side(side: str, case: Case, pool: list[PictureArray], frames: int, bps: int, timeslice: int) -> Run:
    if side == "PyAV":
        return run_plain_pyav(pool, frames, FPS, case.codec, case.muxer, bps, case.pixel_format)
    return run_asyncrec(pool, frames, FPS, case.mime, bps, timeslice, case.pixel_format)


def complete(case: Case, frames: int) -> list[str]:
    """What is missing from the case's outputs; empty when every frame of every run is there."""
    problems = []
    for side in SIDES:
        for index, (run, decoded) in enumerate(zip(case.runs[side], case.counts[side], strict=True)):
            where = f"{case.label}, {side} run {index + 1}"
            if decoded.video_frames != frames or decoded.error:
                problems.append(f"{where}: decoded {decoded.video_frames} of {frames} frames {decoded.error or ''}")
            if run.stats is not None:
                track = run.stats.tracks[0]
                if track.frames_in != frames or track.frames_encoded != frames or track.frames_dropped:
                    problems.append(
                        f"{where}: frames in {track.frames_in}, encoded {track.frames_encoded}, "
                        f"dropped {track.frames_dropped}"
                    )
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=150, help="frames per run (default 150)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each side per case, alternating (default 3)")
    parser.add_argument(
        "--codecs", default=",".join(CODEC_CHOICES), help=f"comma-separated, from {','.join(CODEC_CHOICES)}"
    )
    parser.add_argument(
        "--sizes", default="854x480,1280x720", help="comma-separated WIDTHxHEIGHT (default 854x480,1280x720)"
    )
    parser.add_argument(
        "--convert-codec",
        default="h264",
        choices=[*CODEC_CHOICES, "none"],
        help="codec of the rgb24-vs-yuv420p case (default h264; none: skip it)",
    )
    parser.add_argument("--convert-size", type=parse_size, default=(1280, 720), help="its size (default 1280x720)")
    parser.add_argument("--bitrate", type=int, default=DEFAULT_VIDEO_BITS_PER_SECOND, help="video bits per second")
    parser.add_argument("--pool", type=int, default=30, help="distinct pictures cycled through (default 30)")
    parser.add_argument("--noise", type=int, default=3, help="+- luma grain, camera-like (default 3; 0: clean)")
    parser.add_argument("--timeslice", type=int, default=1000, help="asyncrec timeslice in ms (default 1000)")
    parser.add_argument("--no-warmup", action="store_true", help="skip the short untimed run of each codec and side")
    args = parser.parse_args()
    names = [name.strip() for name in args.codecs.split(",") if name.strip()]
    if unknown := set(names) - set(CODEC_CHOICES):
        parser.error(f"unknown codecs: {', '.join(sorted(unknown))}")
    sizes = [parse_size(text) for text in args.sizes.split(",") if text.strip()]
    if not (names and sizes) and args.convert_codec == "none":
        parser.error("nothing to measure")
    check_worker_literals()

    cases = [Case(name, CODEC_CHOICES[name][1], width, height) for name in names for width, height in sizes]
    convert: tuple[Case, Case] | None = None
    if args.convert_codec != "none":
        width, height = args.convert_size
        name = args.convert_codec
        yuv = next((c for c in cases if (c.name, c.width, c.height) == (name, width, height)), None)
        if yuv is None:
            yuv = Case(name, CODEC_CHOICES[name][1], width, height)
            cases.append(yuv)
        rgb = Case(name, CODEC_CHOICES[name][1], width, height, "rgb24")
        cases.append(rgb)
        convert = (yuv, rgb)

    print(
        f"codecs: asyncrec vs a plain PyAV loop, {args.bitrate / 1e6:g} Mb/s, {args.frames} frames/run, "
        f"{args.repeat} runs per side and case"
    )
    print(f"machine: {machine_info()}")
    for name in dict.fromkeys(c.name for c in cases):
        case = next(c for c in cases if c.name == name)
        spec = CODECS[case.codec]
        sizes_used = {(c.width, c.height) for c in cases if c.name == name}
        threads = sorted({codec_threads(spec.encoder, *recording_size(spec, w, h)) for w, h in sizes_used})
        print(
            f"{CODEC_CHOICES[name][0]}: {case.mime} -> {case.muxer} muxer, {spec.encoder} {dict(spec.options)}, "
            f"codec threads {'/'.join(map(str, threads))} (asyncrec's choice, both sides)"
        )

    pools: dict[tuple[int, int, str], list[PictureArray]] = {}
    for case in cases:
        if (case.width, case.height, "yuv420p") not in pools:
            pools[(case.width, case.height, "yuv420p")] = picture_pool(case.width, case.height, args.pool, args.noise)
    for case in cases:
        if case.pixel_format == "rgb24":
            # The same pictures, so both inputs give the encoder the same content.
            pools[(case.width, case.height, "rgb24")] = to_rgb24(pools[(case.width, case.height, "yuv420p")])

    def pool_of(case: Case) -> list[PictureArray]:
        return pools[(case.width, case.height, case.pixel_format)]

    if not args.no_warmup:
        # Page in the libraries and open each encoder once; not timed.
        for name in dict.fromkeys(c.name for c in cases):
            case = next(c for c in cases if c.name == name)
            for side in SIDES:
                run_side(side, case, pool_of(case), 30, args.bitrate, args.timeslice)

    total = len(cases) * len(SIDES) * args.repeat
    done = 0
    for round_index in range(args.repeat):
        # Alternate which side goes first, so neither always runs right after the other.
        order = SIDES if round_index % 2 == 0 else SIDES[::-1]
        for case in cases:
            for side in order:
                case.runs[side].append(run_side(side, case, pool_of(case), args.frames, args.bitrate, args.timeslice))
                done += 1
        print(f"  round {round_index + 1}/{args.repeat} done ({done}/{total} runs)", flush=True)

    # Verify after timing, so decoding never competes with a measurement.
    for case in cases:
        case.counts = {side: [count_media(run.data, FPS) for run in case.runs[side]] for side in SIDES}

    rows = []
    ratios: dict[str, float] = {}
    problems: list[str] = []
    for case in cases:
        base, rec = (case.fps(side, args.frames) for side in SIDES)
        ratio = median(rec) / median(base)
        ratios[case.label] = ratio
        case_problems = complete(case, args.frames)
        problems += case_problems
        cpu = [median([run.cpu / args.frames * 1000 for run in case.runs[side]]) for side in SIDES]
        size = [median([len(run.data) for run in case.runs[side]]) / 1e6 for side in SIDES]
        rows.append(
            [
                case.label,
                f"{median(base):.1f}",
                f"{median(rec):.1f}",
                f"{ratio:.2f}" + ("" if ratio >= TARGET_RATIO else " <"),
                f"{min(base):.0f}-{max(base):.0f}",
                f"{min(rec):.0f}-{max(rec):.0f}",
                f"{cpu[0]:.1f} / {cpu[1]:.1f}",
                f"{size[0]:.2f} / {size[1]:.2f}",
                "all" if not case_problems else "MISSING",
            ]
        )
    print()
    print("fps: frames / wall time of a whole recording (encoder open to file closed), median of the runs")
    headers = ["case", "PyAV fps", "asyncrec fps", "ratio", "PyAV min-max", "asyncrec min-max"]
    print_table([*headers, "CPU ms/frame", "MB", "frames"], rows)

    if convert is not None:
        yuv, rgb = convert
        rows = []
        for side in SIDES:
            yuv_fps, rgb_fps = median(yuv.fps(side, args.frames)), median(rgb.fps(side, args.frames))
            yuv_cpu, rgb_cpu = (median([r.cpu / args.frames * 1000 for r in c.runs[side]]) for c in (yuv, rgb))
            rows.append(
                [
                    side,
                    f"{yuv_fps:.1f}",
                    f"{rgb_fps:.1f}",
                    f"{yuv_fps / rgb_fps:.2f}x",
                    f"{yuv_cpu:.1f}",
                    f"{rgb_cpu:.1f}",
                    f"{rgb_cpu - yuv_cpu:+.1f}",
                ]
            )
        print()
        print(f"conversion: {CODEC_CHOICES[yuv.name][0]} {yuv.width}x{yuv.height}, rgb24 input vs yuv420p input")
        print_table(
            ["", "yuv420p fps", "rgb24 fps", "rgb24 slowdown", "CPU ms/f yuv", "CPU ms/f rgb", "CPU ms/f added"],
            rows,
        )

    print()
    for problem in problems:
        print(f"FRAMES MISSING: {problem}")
    misses = [label for label, ratio in ratios.items() if ratio < TARGET_RATIO]
    verdict = f"all meet the >= {TARGET_RATIO} target"
    if misses:
        verdict = f"MISSES >= {TARGET_RATIO}: {'; '.join(misses)}"
    low, high = min(ratios.values()), max(ratios.values())
    print(f"asyncrec / PyAV: {low:.2f} to {high:.2f} ({verdict}); every frame recorded: {not problems}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
