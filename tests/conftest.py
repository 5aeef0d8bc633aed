"""Shared fixtures: small streams of generated media, an event log, loopback ICE, the
server's application on 127.0.0.1, a tracker of aiortc peer connections, and a real S3
server (Ceph's radosgw) with a fresh bucket per test."""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from aiortc import RTCConfiguration, RTCPeerConnection

from asyncrec import FrameTrack, MediaRecorder, MediaStream, SampleTrack, moving_pattern, sine_tone
from s3_server import CephS3, delete_bucket, missing_programs

STOP_TIMEOUT = 20.0
EVENTS = ("start", "stop", "dataavailable", "pause", "resume", "error")


def make_stream(
    *, video: bool = True, audio: bool = True, realtime: bool = False, duration: float | None = 1.0, size=(160, 120)
) -> MediaStream:
    """A stream of a moving pattern and/or a tone; not real time unless asked."""
    tracks: list[Any] = []
    if video:
        tracks.append(FrameTrack(moving_pattern(*size), fps=30, realtime=realtime, duration=duration))
    if audio:
        tracks.append(SampleTrack(sine_tone(440), realtime=realtime, duration=duration))
    return MediaStream(tracks)


class EventLog:
    """Records every event of a recorder, with the recorder's state when it arrived."""

    def __init__(self, recorder: MediaRecorder) -> None:
        self.recorder = recorder
        self.events: list[Any] = []
        self.states: list[str] = []
        self.stopped = asyncio.Event()
        for name in EVENTS:
            recorder.on(name, self._record)

    def _record(self, event: Any) -> None:
        self.events.append(event)
        self.states.append(self.recorder.state)
        if event.type == "stop":
            self.stopped.set()

    @property
    def types(self) -> list[str]:
        return [e.type for e in self.events]

    @property
    def data(self) -> bytes:
        return b"".join(e.data for e in self.events if e.type == "dataavailable")

    async def wait_stopped(self) -> None:
        """Wait for ``stop`` (bounded: a recording that never stops fails the test)."""
        await asyncio.wait_for(self.stopped.wait(), STOP_TIMEOUT)


def worker_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("asyncrec-")]


@pytest.fixture(autouse=True)
def no_leaked_workers() -> Iterator[None]:
    """Every test must leave no recording or source thread behind (a thread still
    finishing its file gets a few seconds)."""
    before = set(worker_threads())
    yield
    for thread in worker_threads():
        if thread not in before:
            thread.join(5.0)
    leaked = [t for t in worker_threads() if t not in before and t.is_alive()]
    assert not leaked, f"recording threads left running: {leaked}"


@pytest.fixture
def loopback_ice(monkeypatch: pytest.MonkeyPatch) -> None:
    """ICE gathers host candidates on 127.0.0.1 only (aioice skips loopback by default).

    aioice's Connection.gather_candidates calls the module-level ``get_host_addresses`` of
    ``aioice.ice``: patch it there.
    """
    import aioice.ice

    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4=True, use_ipv6=True: ["127.0.0.1"])


async def close_peers(*connections: RTCPeerConnection) -> None:
    """Stop the local tracks each connection sends (a ``FrameTrack`` runs until stopped),
    then close it."""
    for pc in connections:
        for sender in pc.getSenders():
            if sender.track is not None:
                sender.track.stop()
        await pc.close()


@pytest.fixture
async def peers(loopback_ice: None) -> AsyncIterator[tuple[RTCPeerConnection, RTCPeerConnection]]:
    """A sending and a receiving peer connection on 127.0.0.1, closed after the test.

    No ICE servers: aiortc's default is Google's public STUN server.
    """
    sender = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    receiver = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        yield sender, receiver
    finally:
        await close_peers(sender, receiver)


#: ``await app_server(out, **options)``
Start = Callable[..., Awaitable[TestServer]]


@pytest.fixture
async def app_server(loopback_ice: None) -> AsyncIterator[Start]:
    """``await app_server(out, **options)``: ``create_app(out, **options)`` on 127.0.0.1,
    closed after the test."""
    from asyncrec.whip import create_app

    servers: list[TestServer] = []

    async def start(out: Path, **options: Any) -> TestServer:
        server = TestServer(create_app(out, **options), host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in servers:
            await server.close()


class PeerConnections:
    """Every RTCPeerConnection created while the fixture is active (strong references: a
    leaked one cannot hide by being collected), and which of them are still open."""

    def __init__(self) -> None:
        self.created: list[RTCPeerConnection] = []

    @staticmethod
    def is_closed(pc: RTCPeerConnection) -> bool:
        """Closed, with every ICE connection closed and its sockets gone (the transports'
        own state is no proof: aiortc marks one "failed" after it closed it while
        connecting)."""
        ice = set(getattr(pc, "_RTCPeerConnection__iceTransports", set()))
        ice |= {t.transport for t in getattr(pc, "_RTCPeerConnection__dtlsTransports", set())}
        connections = [t._connection for t in ice]
        return pc.connectionState == "closed" and all(c._closing and not c._protocols for c in connections)

    def open(self, but: tuple[RTCPeerConnection, ...] = ()) -> list[RTCPeerConnection]:
        return [pc for pc in self.created if pc not in but and not self.is_closed(pc)]


@pytest.fixture
def peer_connections(monkeypatch: pytest.MonkeyPatch) -> PeerConnections:
    tracker = PeerConnections()
    original = RTCPeerConnection.__init__

    def init(self: RTCPeerConnection, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        tracker.created.append(self)

    monkeypatch.setattr(RTCPeerConnection, "__init__", init)
    return tracker


@pytest.fixture(scope="session")
def s3() -> Iterator[CephS3]:
    """A real S3 server for the whole run: Ceph's radosgw on a single-node cluster in a
    temporary directory (tests/s3_server.py), started on first use (about 2 s) and stopped
    at the end. Skipped where Ceph is not installed, except in CI (``CI`` set), which
    installs it (scripts/test.sh) and must run these tests.

    Sync on purpose: a session of its own outlives every test's event loop; its coroutines
    (``stop_gateway()``, ``start_gateway()``) run their blocking part on a worker thread.
    """
    missing = missing_programs()
    if missing:
        packages = " ".join(sorted(set(missing.values())))
        message = (
            f"no Ceph for the S3 tests ({', '.join(missing)} not found): "
            f"apt-get install --no-install-recommends {packages}"
        )
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    with CephS3() as server:
        yield server


@pytest.fixture
def s3_env(s3: CephS3, monkeypatch: pytest.MonkeyPatch) -> None:
    """The standard AWS variables pointing at the test server (as a user configures it)."""
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)


@pytest.fixture
async def bucket(s3: CephS3) -> AsyncIterator[str]:
    """A new, empty bucket on ``s3`` (a unique name); afterwards its multipart uploads are
    aborted, its objects deleted and the bucket with them (the gateway started again first
    if the test left it stopped)."""
    name = f"asyncrec-test-{uuid.uuid4().hex[:16]}"
    async with s3.client() as client:
        await client.create_bucket(Bucket=name)
    try:
        yield name
    finally:
        if not s3.gateway_running:
            await s3.start_gateway()
        async with s3.client() as client:
            await delete_bucket(client, name)
