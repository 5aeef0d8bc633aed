"""Memory per session of ``asyncrec serve``: what the README's figures come from.

    python benchmarks/session_memory.py                  # 480p, 720p, 1080p, then 4K
    python benchmarks/session_memory.py --sizes 640x480 --sessions 4 --seconds 10

For each picture size, a VP8 + Opus WebM is made once with Debian's ffmpeg, then
``--sessions`` aiortc publishers in this process send it to an ``asyncrec serve``
subprocess on 127.0.0.1 without re-encoding it (aiortc's ``MediaPlayer(decode=False)``), so
the publishers cost little and the server does the work a real one does when it
transcodes (``--transcode``, the figures in the docs): aiortc decodes, asyncrec encodes
and writes. ``--copy`` measures the server's default instead, the frames copied as they
came (see ``passthrough.py``). The server's resident memory (``VmRSS``) is sampled every
0.2 s; per session = (median RSS over the second half of the sessions - RSS just before
they started) / sessions, and the peak likewise. Every file is checked with ffprobe.

The worst case a publisher can cause is bounded by the server's options, not measured
here: ``--max-session-memory`` (media held, 128 MiB by default) on top of the codec state
for the largest picture ``--max-publish-size`` accepts (the 4K row shows that state).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from _whip import ServeProcess, make_source, publish, rss
from asyncrec.whip._endpoint import use_ice_hosts

SIZES = ("640x480", "1280x720", "1920x1080", "3840x2160")
SAMPLE = 0.2


async def measure(server: ServeProcess, source: Path, sessions: int, seconds: float) -> dict[str, float]:
    before = rss(server.proc.pid)
    samples: list[tuple[float, int]] = []
    async with aiohttp.ClientSession() as http:
        started = time.monotonic()
        publishers = [await publish(http, server.url, source, connected=False) for _ in range(sessions)]
        while (now := time.monotonic()) - started < seconds:
            samples.append((now - started, rss(server.proc.pid)))
            await asyncio.sleep(SAMPLE)  # a sampling period, not a wait for an event
        for publisher in publishers:
            async with http.delete(publisher.location) as response:
                await response.read()
            await publisher.pc.close()
    steady = [value for at, value in samples if at >= seconds / 2]
    return {
        "before_mib": before / 2**20,
        "per_session_mib": (statistics.median(steady) - before) / sessions / 2**20,
        "peak_per_session_mib": (max(value for _, value in samples) - before) / sessions / 2**20,
    }


def check_files(out: Path, count: int) -> list[str]:
    """ffprobe each finished recording: its video size and frame count."""
    deadline = time.monotonic() + 30
    while len(files := sorted(out.glob("*.webm"))) < count and time.monotonic() < deadline:
        time.sleep(0.2)  # the server renames each file once it is finished
    found = []
    for path in files:
        probe = subprocess.run(
            ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
             "stream=width,height,nb_read_frames", "-of", "json", str(path)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        [stream] = json.loads(probe.stdout)["streams"]
        found.append(f"{stream['width']}x{stream['height']} {stream['nb_read_frames']} frames")
        path.unlink()
    return found


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES))
    parser.add_argument("--sessions", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=12.0, help="how long each size's sessions run")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--copy", action="store_true", help="the server copies (its default) instead of transcoding")
    args = parser.parse_args()
    use_ice_hosts(["127.0.0.1"])
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        out = folder / "out"
        sources = {size: make_source(folder, size, args.seconds + 5, args.fps) for size in ["320x240", *args.sizes]}
        port = 18000 + os.getpid() % 1000
        server = ServeProcess(out, port, "--max-sessions", "32", *([] if args.copy else ["--transcode"]))
        try:
            await measure(server, sources["320x240"], 1, 3.0)  # warm-up: codec libraries loaded
            check_files(out, 1)
            print(f"{'size':>10} {'sessions':>8} {'server before':>14} {'per session':>12} {'peak':>8}  files")
            for size in args.sizes:
                figures = await measure(server, sources[size], args.sessions, args.seconds)
                files = check_files(out, args.sessions)
                print(
                    f"{size:>10} {args.sessions:>8} {figures['before_mib']:>10.1f} MiB"
                    f" {figures['per_session_mib']:>8.1f} MiB {figures['peak_per_session_mib']:>4.1f} MiB  "
                    + "; ".join(files),
                    flush=True,
                )
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
