"""What the WHIP benchmarks share: an ``asyncrec serve`` subprocess, pre-encoded sources,
and aiortc publishers that send them without encoding."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaPlayer


def make_source(folder: Path, size: str, seconds: float, fps: int = 30, *, grain: bool = False) -> Path:
    """A VP8 + Opus WebM of a moving test picture and a 440 Hz tone (Debian's ffmpeg): 2 Mb/s,
    a key frame every 2 s; ``grain`` adds sensor-like noise, so it costs a decoder what
    camera video does. Made once per folder."""
    path = folder / f"source-{size}{'-grain' if grain else ''}.webm"
    if not path.exists():
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}",
             "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", str(seconds),
             *(["-vf", "noise=alls=8:allf=t"] if grain else []),
             "-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "2M", "-g", str(2 * fps),
             "-c:a", "libopus", "-ac", "2", str(path)],
            check=True,
        )  # fmt: skip
    return path


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (``/proc/PID/stat``)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss(pid: int) -> int:
    """A process's resident memory in bytes (``VmRSS``)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


class ServeProcess:
    """``asyncrec serve --out OUT`` on 127.0.0.1:PORT with ``options``, started at once;
    returns once it prints its URL (it listens then)."""

    def __init__(self, out: Path, port: int, *options: str) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.out = out
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "asyncrec", "serve", "--out", str(out), "--port", str(port),
             "--ice-host", "127.0.0.1", "--log-level", "warning", *options],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        self.proc.stdout.readline()  # its URL line: listening

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)


@dataclass
class Publisher:
    """An aiortc peer connection sending a file's packets as they are (no encoding), and
    the frames it sent per kind while ``counting``."""

    pc: RTCPeerConnection
    player: MediaPlayer
    location: str = ""
    sent: dict[str, int] = field(default_factory=lambda: {"video": 0, "audio": 0})
    counting: bool = True

    def count(self, track: Any) -> None:
        recv = track.recv

        async def counted() -> Any:
            packet = await recv()
            if self.counting:
                self.sent[track.kind] += 1
            return packet

        track.recv = counted

    def stop_sending(self) -> None:
        for track in (self.player.video, self.player.audio):
            if track is not None:
                track.stop()


async def publish(http: aiohttp.ClientSession, url: str, source: Path, *, connected: bool = True) -> Publisher:
    """Publish ``source`` to the WHIP endpoint at ``url``/whip; with ``connected``, returns
    once the peer connection is up (30 s at most).

    Raises:
        AssertionError: the server did not answer 201.
        TimeoutError: the connection did not come up in time.
    """
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    player = MediaPlayer(str(source), decode=False)
    publisher = Publisher(pc, player)
    up = asyncio.Event()
    pc.on("connectionstatechange", lambda: up.set() if pc.connectionState == "connected" else None)
    for track in (player.video, player.audio):
        if track is not None:
            publisher.count(track)
            pc.addTransceiver(track, direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    headers = {"Content-Type": "application/sdp"}
    async with http.post(f"{url}/whip", data=pc.localDescription.sdp, headers=headers) as response:
        answer = await response.text()
        assert response.status == 201, (response.status, answer)
        location = response.headers["Location"]
    publisher.location = f"{url}{location}" if location.startswith("/") else location
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    if connected:
        await asyncio.wait_for(up.wait(), 30)
    return publisher
