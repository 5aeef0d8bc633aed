"""A WHIP publisher built on aiortc, an ``asyncrec serve`` subprocess, and raw HTTP, for the
WHIP tests (``from whip_client import ...``; pytest puts ``tests/`` on ``sys.path``).

Everything runs on loopback: the publisher's ICE needs the ``loopback_ice`` fixture (or
``use_ice_hosts(["127.0.0.1"])``), the server gets ``--ice-host 127.0.0.1``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, BinaryIO

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from yarl import URL

from asyncrec import FrameTrack, SampleTrack, moving_pattern, sine_tone
from media_check import ffmpeg_decode_errors, ffprobe_duration, ffprobe_streams

SDP = "application/sdp"
SDP_FRAG = "application/trickle-ice-sdpfrag"
CONNECT_TIMEOUT = 15.0
#: How long a server subprocess may take to print its URL line, and to exit after SIGINT.
SERVER_START_TIMEOUT = 30.0
SERVER_STOP_TIMEOUT = 30.0


class Publisher:
    """An aiortc WHIP client sending a moving pattern and a tone (``async with`` closes it)."""

    def __init__(self, *, video: bool = True, audio: bool = True, size: tuple[int, int] = (320, 240)) -> None:
        # No ICE servers: aiortc's default is Google's public STUN server.
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.tracks: list[Any] = []
        if video:
            self.tracks.append(FrameTrack(moving_pattern(*size), fps=30))
        if audio:
            self.tracks.append(SampleTrack(sine_tone(440)))
        for track in self.tracks:
            self.pc.addTransceiver(track, direction="sendonly")
        self.location: str | None = None
        self.etag: str | None = None
        self._connected = asyncio.Event()
        self.pc.on("connectionstatechange", self._on_state)

    def _on_state(self) -> None:
        if self.pc.connectionState == "connected":
            self._connected.set()

    async def __aenter__(self) -> Publisher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def offer(self) -> str:
        """The SDP offer, with every (loopback) candidate: aiortc gathers before it returns."""
        if self.pc.localDescription is None:
            await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def publish(self, http: aiohttp.ClientSession, url: str, *, token: str | None = None) -> str:
        """POST the offer to ``url``, apply the answer; the session's absolute URL."""
        headers = {"Content-Type": SDP}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        async with http.post(url, data=await self.offer(), headers=headers) as response:
            body = await response.text()
            assert response.status == 201, f"POST {url}: {response.status} {body}"
            assert response.content_type == SDP
            location = response.headers["Location"]
            self.etag = response.headers.get("ETag")
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
        self.location = str(URL(url).join(URL(location)))
        return self.location

    async def wait_connected(self, within: float = CONNECT_TIMEOUT) -> None:
        try:
            await asyncio.wait_for(self._connected.wait(), within)
        except TimeoutError:
            raise AssertionError(f"not connected after {within} s: {self.pc.connectionState}") from None

    async def delete(self, http: aiohttp.ClientSession, *, token: str | None = None) -> int:
        """DELETE the session resource; the status."""
        assert self.location is not None, "not published"
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        async with http.delete(self.location, headers=headers) as response:
            await response.read()
            return response.status

    async def close(self) -> None:
        for track in self.tracks:
            track.stop()
        await self.pc.close()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def asyncrec_command() -> list[str]:
    """The ``asyncrec`` console script next to this interpreter, else ``python -m asyncrec``."""
    script = Path(sys.executable).with_name("asyncrec")
    return [str(script)] if script.exists() else [sys.executable, "-m", "asyncrec"]


class ServeProcess:
    """``asyncrec serve`` as a subprocess on 127.0.0.1; ``url`` once it has printed its URL line."""

    def __init__(self, proc: asyncio.subprocess.Process, url: str, log: Path) -> None:
        self.proc = proc
        self.url = url
        self.log = log

    def stderr(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    async def interrupt(self) -> int:
        """SIGINT, then the exit status (bounded)."""
        self.proc.send_signal(signal.SIGINT)
        try:
            return await asyncio.wait_for(self.proc.wait(), SERVER_STOP_TIMEOUT)
        except TimeoutError:
            raise AssertionError(f"asyncrec serve still running {SERVER_STOP_TIMEOUT} s after SIGINT") from None


@contextlib.asynccontextmanager
async def serve_process(out: Path, *args: str, log: Path, own_group: bool = False) -> AsyncIterator[ServeProcess]:
    """Start ``asyncrec serve --out OUT --ice-host 127.0.0.1 ARGS`` on a free port and wait for
    its URL line; always ends the process (SIGTERM, then SIGKILL) on the way out.
    ``own_group``: in a process group of its own (as a service manager starts it), which
    a test may signal whole."""
    port = free_port()
    command = [
        *asyncrec_command(),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--out",
        str(out),
        "--ice-host",
        "127.0.0.1",
        *args,
    ]
    env = {k: v for k, v in os.environ.items() if k != "ASYNCREC_ICE_HOSTS"}
    with _open_log(log) as errors:
        proc = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=errors,
            env=env,
            start_new_session=own_group,
        )
    try:
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), SERVER_START_TIMEOUT)
        except TimeoutError:
            raise AssertionError(f"asyncrec serve printed nothing in {SERVER_START_TIMEOUT} s") from None
        text = line.decode(errors="replace").strip()
        url = f"http://127.0.0.1:{port}/"
        server = ServeProcess(proc, url, log)
        assert url in text, f"asyncrec serve: unexpected first line {text!r}; stderr: {server.stderr()}"
        yield server
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), SERVER_STOP_TIMEOUT)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def raw_get(host: str, port: int, target: str) -> tuple[int, bytes]:
    """GET ``target`` sent byte for byte (no client-side quoting or dot-segment removal)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, body


async def wait_until(predicate: Callable[[], bool], within: float, what: str, interval: float = 0.05) -> float:
    """Poll ``predicate`` until it holds (bounded by ``within`` seconds); the seconds it took."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > within:
            raise AssertionError(f"{what}: not after {within} s")
        await asyncio.sleep(interval)
    return time.monotonic() - started


def _open_log(path: Path) -> BinaryIO:
    return open(path, "wb")


def names(folder: Path) -> list[str]:
    """Every entry of ``folder``, sorted."""
    return sorted(p.name for p in folder.iterdir())


def finished_recordings(folder: Path) -> list[Path]:
    """The finished recordings in ``folder``: no dot files, no ``.part`` files, and not the
    ``.repairing`` copy a ``.part`` file becomes for a moment while it is finished."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix not in (".part", ".repairing")
    )


def check_recording(
    path: Path, *, video: str, audio: str, size: tuple[int, int] | None, duration: tuple[float, float]
) -> None:
    """``path`` holds one ``video`` and one ``audio`` stream (ffprobe codec names) of ``size``,
    lasts within ``duration`` (seconds) and decodes without an error (Debian's ffmpeg)."""
    streams = ffprobe_streams(path)
    assert sorted((s["codec_type"], s["codec_name"]) for s in streams) == [("audio", audio), ("video", video)], streams
    picture = next(s for s in streams if s["codec_type"] == "video")
    if size is not None:
        assert (picture["width"], picture["height"]) == size
    assert picture["nb_read_frames"], f"no video frame decoded: {streams}"
    assert next(s for s in streams if s["codec_type"] == "audio")["nb_read_frames"], f"no audio decoded: {streams}"
    seconds = ffprobe_duration(path)
    assert duration[0] <= seconds <= duration[1], f"{path.name} lasts {seconds:.2f} s, expected {duration}"
    assert ffmpeg_decode_errors(path) == ""
