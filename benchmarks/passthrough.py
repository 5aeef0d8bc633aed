"""Passthrough: how many WebRTC publishers ``asyncrec serve`` records at once by copying
their frames, against the same publishers transcoded.

    python benchmarks/passthrough.py                      # copy: 10, 20, 30, 40, 50...; transcode: 1, 2, 3...
    python benchmarks/passthrough.py --copy 40 --transcode 2 --seconds 20
    python benchmarks/passthrough.py --quick              # smoke test: 2 and 1 publishers, 5 s
    python benchmarks/passthrough.py --encoder-processes 0  # a thread per session in the server

A 720p30 VP8 + Opus WebM (camera-like: a moving test picture with grain, 2 Mb/s, a key
frame every 2 s) is made once with Debian's ffmpeg. For each step, N aiortc publishers in
this process send it to an ``asyncrec serve`` subprocess on 127.0.0.1 over WHIP without
re-encoding it (aiortc's ``MediaPlayer(decode=False)`` sends the file's packets, so a
publisher costs little), for ``--seconds``. The server copies (its default) or, with
``--transcode``, decodes and re-encodes (VP8 + Opus, its defaults). Each publisher counts
the frames it sent; then it stops sending, waits a second for what is in flight, and
ends its session (DELETE), and the server finishes its file.

A step is held when every publisher connected, and every recording holds every frame its
publisher sent (video and audio packets counted in the file with PyAV; three files per
step are also decoded by Debian's ffmpeg, without an error), but for what aiortc's jitter
buffers still hold when the publisher stops: the last video frame (handed on when the next
one's first packet comes, which never does) and up to 4 audio frames (its prefetch).
``missing`` counts every frame not in the files, ``lost`` those beyond that. Printed per
step: frames sent and missing (all sessions), the server's CPU (cores, from
``/proc/PID/stat``, its encoder processes' included: ``--encoder-processes``, by default
the server's own default of one per core) and this process's (the publishers'), the server's peak RSS, and
frames the server reports lost or dropped (its ``/metrics``). The copy ladder goes on
while steps are held (``--copy`` N values), the transcode ladder likewise; the ratio of
their largest held N is the figure.

Both ladders share the box with the publishers' process (2 cores here): the publishers'
CPU is printed so the server's share can be read.

Exits 1 if a recording is missing or one of the files checked does not decode cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import av

from _common import machine_info, print_table
from _whip import Publisher, ServeProcess, cpu_seconds, make_source, publish, rss
from asyncrec.whip._endpoint import use_ice_hosts

FPS = 30
SIZE = "1280x720"
#: Frames of a recording that may be missing and the step still held, per kind: what
#: aiortc's jitter buffers still hold when the publisher stops (a video frame is handed on
#: when the next one's first packet comes, audio with 4 frames of prefetch). Nothing else.
IN_JITTER_BUFFER = {"video": 1, "audio": 4}


class Server(ServeProcess):
    def __init__(self, out: Path, port: int, transcode: bool, encoder_processes: int | None) -> None:
        options = ["--max-sessions", "200", "--no-auth", "--max-session-memory", "512M"]
        if encoder_processes is not None:
            options += ["--encoder-processes", str(encoder_processes)]
        super().__init__(out, port, *options, *(["--transcode"] if transcode else []))

    def cpu_seconds(self) -> float:
        """The server's CPU seconds so far, its encoder processes' included."""
        return sum(cpu_seconds(pid) for pid in [self.proc.pid, *_children(self.proc.pid)])

    async def metrics(self, http: aiohttp.ClientSession) -> dict[str, float]:
        async with http.get(f"{self.url}/metrics") as response:
            text = await response.text()
        found: dict[str, float] = {}
        for line in text.splitlines():
            match = re.match(r'^(asyncrec_(?:frames_\w+|gaps))_total\{kind="(\w+)"\} ([0-9.e+]+)$', line)
            if match:
                found[f"{match[1]}:{match[2]}"] = float(match[3])
        return found


def _children(pid: int) -> list[int]:
    """The child processes of ``pid``, whichever of its threads started them."""
    found = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(child) for child in children.read_text().split()]
        except OSError:
            continue  # the thread has ended
    return found


def count_packets(path: Path) -> dict[str, int]:
    counts = {"video": 0, "audio": 0}
    with av.open(str(path)) as container:
        for packet in container.demux():
            if packet.size and packet.stream.type in counts:
                counts[packet.stream.type] += 1
    return counts


@dataclass
class Step:
    mode: str
    n: int
    connected: int = 0
    sent: int = 0
    #: Frames sent and not in the file, all sessions, per kind.
    missing: dict[str, int] = field(default_factory=lambda: {"video": 0, "audio": 0})
    #: Frames missing beyond what aiortc's jitter buffers hold at the end, all sessions.
    lost: int = 0
    server_cores: float = 0.0
    publisher_cores: float = 0.0
    peak_rss_mib: float = 0.0
    server_lost: float = 0.0
    decode_errors: str = ""
    #: The server's frame counters (``/metrics``) at the end of the window, non-zero ones.
    server_counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def held(self) -> bool:
        return not self.problems and self.connected == self.n and self.lost == 0


async def run_step(server: Server, source: Path, mode: str, n: int, seconds: float) -> Step:
    step = Step(mode, n)
    async with aiohttp.ClientSession() as http:
        publishers: list[Publisher] = []
        try:
            for _ in range(n):
                try:
                    publishers.append(await publish(http, server.url, source))
                except (AssertionError, TimeoutError, aiohttp.ClientError) as exc:
                    step.problems.append(f"a publisher did not connect: {exc!r}")
                    break
            step.connected = len(publishers)
            cpu0, mine0, wall0, peak = server.cpu_seconds(), time.process_time(), time.monotonic(), 0
            while (elapsed := time.monotonic() - wall0) < seconds:
                peak = max(peak, rss(server.proc.pid))
                await asyncio.sleep(min(0.5, seconds - elapsed))  # sampling the server's memory
            wall = time.monotonic() - wall0
            step.server_cores = (server.cpu_seconds() - cpu0) / wall
            step.publisher_cores = (time.process_time() - mine0) / wall
            step.peak_rss_mib = peak / 2**20
            for publisher in publishers:
                publisher.counting = False
                publisher.stop_sending()
            await asyncio.sleep(1.0)  # what is in flight arrives
            metrics = await server.metrics(http)
            step.server_lost = sum(v for k, v in metrics.items() if "lost" in k or "dropped" in k)
            step.server_counts = {
                k.removeprefix("asyncrec_"): int(v)
                for k, v in metrics.items()
                if v and any(word in k for word in ("lost", "dropped", "gaps"))
            }
            for publisher in publishers:
                async with http.delete(publisher.location) as response:
                    await response.read()
        finally:
            for publisher in publishers:
                await publisher.pc.close()
    await check_files(server.out, publishers, step)
    return step


async def check_files(out: Path, publishers: list[Publisher], step: Step) -> None:
    deadline = time.monotonic() + 60
    ids = {p.location.rstrip("/").rpartition("/")[2]: p for p in publishers}

    def finished() -> list[Path]:
        return sorted(out.glob("*.webm"))

    while time.monotonic() < deadline:
        if len(await asyncio.to_thread(finished)) >= len(ids):
            break
        await asyncio.sleep(0.2)  # the server renames each file once it is finished
    checked = 0
    for path in await asyncio.to_thread(finished):
        session = next((sid for sid in ids if path.stem.endswith(sid)), None)
        if session is None:
            continue
        publisher = ids.pop(session)
        counts = await asyncio.to_thread(count_packets, path)
        for kind in ("video", "audio"):
            step.sent += publisher.sent[kind]
            missing = max(0, publisher.sent[kind] - counts[kind])
            step.missing[kind] += missing
            step.lost += max(0, missing - IN_JITTER_BUFFER[kind])
        if checked < 3:
            result = await asyncio.to_thread(
                subprocess.run, ["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"],
                capture_output=True, text=True,
            )  # fmt: skip
            step.decode_errors += result.stderr.strip()[:200]
            checked += 1
        await asyncio.to_thread(path.unlink)
    if ids:
        step.problems.append(f"{len(ids)} recordings missing")
    if step.decode_errors:
        step.problems.append(f"decode errors: {step.decode_errors}")


async def ladder(
    mode: str, values: list[int], source: Path, out: Path, seconds: float, encoder_processes: int | None
) -> list[Step]:
    port = 19000 + os.getpid() % 500 + (0 if mode == "copy" else 500)
    server = Server(out, port, mode == "transcode", encoder_processes)
    steps = []
    try:
        for n in values:
            step = await run_step(server, source, mode, n, seconds)
            steps.append(step)
            print(
                f"{mode:>9} N={n:<3} held={step.held} sent={step.sent} missing={step.missing} lost={step.lost} "
                f"server {step.server_cores:.2f} cores, publishers {step.publisher_cores:.2f} cores, "
                f"server RSS {step.peak_rss_mib:.0f} MiB; server counts {step.server_counts} "
                + "; ".join(step.problems),
                flush=True,
            )
            if not step.held:
                break
    finally:
        server.stop()
    return steps


def largest_held(steps: list[Step]) -> int:
    held = [s.n for s in steps if s.held]
    return max(held) if held else 0


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copy", type=int, nargs="+", default=[10, 20, 30, 40, 50, 60])
    parser.add_argument("--transcode", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--encoder-processes", type=int, default=None, metavar="N",
        help="the server's --encoder-processes (default: the server's, one per core); their CPU counts as the server's",
    )  # fmt: skip
    args = parser.parse_args()
    if args.quick:
        args.copy, args.transcode, args.seconds = [2], [1], 5.0
    use_ice_hosts(["127.0.0.1"])
    print(machine_info())
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        source = make_source(folder, SIZE, args.seconds + 10, FPS, grain=True)
        out = folder / "out"
        copy = await ladder("copy", args.copy, source, out, args.seconds, args.encoder_processes)
        transcode = await ladder("transcode", args.transcode, source, out, args.seconds, args.encoder_processes)
    rows = [
        [s.mode, str(s.n), "yes" if s.held else "no", str(s.sent), f"{s.missing['video']}+{s.missing['audio']}",
         str(s.lost), f"{s.server_cores:.2f}",
         f"{s.publisher_cores:.2f}", f"{s.peak_rss_mib:.0f}"]
        for s in [*copy, *transcode]
    ]  # fmt: skip
    print()
    print_table(
        ["mode", "N", "held", "frames sent", "missing v+a", "lost", "server cores", "publ. cores", "RSS MiB"], rows
    )
    held_copy, held_transcode = largest_held(copy), largest_held(transcode)
    print(f"\npublishers held: copy {held_copy}, transcode {held_transcode}", end="")
    print(f" (copy / transcode {held_copy / held_transcode:.1f}x)" if held_transcode else "")
    print(f"target: at least 40 copied: {'met' if held_copy >= 40 else 'NOT met'}")
    # Falling behind at a large N is a capacity; a broken or missing file is a bug.
    broken = [s for s in [*copy, *transcode] if s.decode_errors or any("missing" in p for p in s.problems)]
    for step in broken:
        print(f"FAILED: {step.mode} N={step.n}: {'; '.join(step.problems)}")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
