"""``asyncrec serve`` as a subprocess on 127.0.0.1, published to by an aiortc WHIP client."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from whip_client import (
    SDP,
    Publisher,
    asyncrec_command,
    check_recording,
    finished_recordings,
    names,
    serve_process,
    wait_until,
)

PUBLISH_SECONDS = 2.0
DURATION = (1.2, 4.0)


async def test_serve_records_a_publisher_and_exits_0_on_sigint(loopback_ice: None, tmp_path: Path) -> None:
    out = tmp_path / "out"
    async with serve_process(out, log=tmp_path / "serve.log") as server, aiohttp.ClientSession() as http:
        encoders = child_pids(server.proc.pid)
        assert len(encoders) == len(os.sched_getaffinity(0)), server.stderr()  # the default: one per core
        assert [os.sched_getscheduler(pid) for pid in encoders] == [os.SCHED_IDLE] * len(encoders)
        async with http.get(server.url) as response:
            assert response.status == 200
            assert 'id="start"' in await response.text()
        async with Publisher() as publisher:
            await publisher.publish(http, server.url + "whip")
            await publisher.wait_connected()
            await asyncio.sleep(PUBLISH_SECONDS)
            assert await publisher.delete(http) == 200
        [path] = finished_recordings(out)
        assert path.suffix == ".webm"
        assert names(out) == [path.name]
        async with http.get(server.url + "recordings") as response:
            assert [item["name"] for item in await response.json()] == [path.name]
        assert await server.interrupt() == 0, server.stderr()
    assert "Traceback" not in server.stderr()
    check_recording(path, video="vp8", audio="opus", size=(320, 240), duration=DURATION)


async def test_sigint_finalises_a_live_session(loopback_ice: None, tmp_path: Path) -> None:
    out = tmp_path / "out"
    async with (
        serve_process(out, log=tmp_path / "serve.log") as server,
        aiohttp.ClientSession() as http,
        Publisher() as publisher,
    ):
        await publisher.publish(http, server.url + "whip")
        await publisher.wait_connected()
        await asyncio.sleep(PUBLISH_SECONDS)
        # No DELETE: stopping the server ends the session and finalises its recording.
        assert await server.interrupt() == 0, server.stderr()
    assert "Traceback" not in server.stderr()
    [path] = finished_recordings(out)
    assert names(out) == [path.name], "no .part file left"
    check_recording(path, video="vp8", audio="opus", size=(320, 240), duration=DURATION)


async def test_serve_enforces_token_and_session_limit(loopback_ice: None, tmp_path: Path) -> None:
    out = tmp_path / "out"
    token = "let-me-in"
    args = ("--token", token, "--max-sessions", "1")
    async with serve_process(out, *args, log=tmp_path / "serve.log") as server, aiohttp.ClientSession() as http:
        whip = server.url + "whip"
        async with Publisher() as publisher, Publisher() as other:
            offer = await publisher.offer()
            for headers in ({}, {"Authorization": "Bearer nope"}):
                async with http.post(whip, data=offer, headers={"Content-Type": SDP, **headers}) as response:
                    assert response.status == 401
                    assert response.headers["WWW-Authenticate"].startswith("Bearer")
            await publisher.publish(http, whip, token=token)
            async with http.post(
                whip, data=await other.offer(), headers={"Content-Type": SDP, "Authorization": f"Bearer {token}"}
            ) as response:
                assert response.status == 503
            assert await publisher.delete(http) == 401
            assert await publisher.delete(http, token=token) == 200
        assert await server.interrupt() == 0, server.stderr()


@pytest.mark.parametrize(
    "args",
    [["--mime", "video/nope"], ["--port", "70000"], ["--max-sessions", "0"]],
    ids=["unsupported-mime", "bad-port", "zero-sessions"],
)
def test_serve_bad_arguments_exit_2_with_one_line(tmp_path: Path, args: list[str]) -> None:
    result = subprocess.run(
        [*asyncrec_command(), "serve", "--out", str(tmp_path / "out"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("asyncrec: error:")
    assert result.stdout == ""


CRASHING_PUBLISHER = """
import asyncio, sys
import aioice.ice
import aiohttp
sys.path.insert(0, sys.argv[2])
aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=True: ["127.0.0.1"]
from whip_client import Publisher

async def main():
    async with aiohttp.ClientSession() as http:
        publisher = Publisher()
        await publisher.publish(http, sys.argv[1])
        await publisher.wait_connected()
        print("connected", flush=True)
        await asyncio.sleep(60)  # killed long before: no DELETE, no DTLS close, nothing

asyncio.run(main())
"""


@pytest.mark.slow
async def test_a_publisher_that_vanishes_still_gives_a_playable_file(tmp_path: Path) -> None:
    """A peer that dies without DELETE or DTLS close (a crashed browser): ICE consent
    freshness fails after about 30 s, the session ends and its file is final."""
    out = tmp_path / "out"
    async with serve_process(out, log=tmp_path / "serve.log") as server:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CRASHING_PUBLISHER,
            server.url + "whip",
            str(Path(__file__).parent),
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            assert line.strip() == b"connected"
            await asyncio.sleep(PUBLISH_SECONDS)  # media to record before the peer vanishes
        finally:
            proc.kill()
            await proc.wait()
        await wait_until(lambda: bool(out.exists() and finished_recordings(out)), 60, "the session to be reaped")
        [path] = finished_recordings(out)
        check_recording(path, video="vp8", audio="opus", size=(320, 240), duration=DURATION)
        assert await server.interrupt() == 0


def child_pids(pid: int) -> list[int]:
    """The processes ``pid`` started, from any of its threads."""
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as children:
            found += [int(p) for p in children.read().split()]
    return sorted(found)


async def test_serve_transcodes_in_encoder_processes(loopback_ice: None, tmp_path: Path) -> None:
    """``--encoder-processes 2``: two processes start with the server, a transcoded
    session is encoded in one of them, and they exit with the server."""
    out = tmp_path / "out"
    async with (
        serve_process(out, "--transcode", "--encoder-processes", "2", log=tmp_path / "serve.log") as server,
        aiohttp.ClientSession() as http,
    ):
        encoders = child_pids(server.proc.pid)
        assert len(encoders) == 2, server.stderr()
        async with Publisher() as publisher:
            await publisher.publish(http, server.url + "whip")
            await publisher.wait_connected()
            await asyncio.sleep(PUBLISH_SECONDS)
            assert await publisher.delete(http) == 200
        [path] = finished_recordings(out)
        assert child_pids(server.proc.pid) == encoders
        assert await server.interrupt() == 0, server.stderr()
    for pid in encoders:
        assert not os.path.exists(f"/proc/{pid}"), "an encoder process outlived the server"  # noqa: ASYNC240
    assert "Traceback" not in server.stderr()
    assert "copied=none" in server.stderr(), server.stderr()
    check_recording(path, video="vp8", audio="opus", size=(320, 240), duration=DURATION)


async def test_sigterm_to_the_whole_group_drains_with_the_encoder_processes(loopback_ice: None, tmp_path: Path) -> None:
    """A service manager's stop signals every process of the service (systemd's default
    KillMode): the encoder processes must outlive the drain, so the session still ends
    with a finished recording and the server exits 0."""
    out = tmp_path / "out"
    async with (
        serve_process(
            out, "--transcode", "--encoder-processes", "1", "--drain-timeout", "1",
            log=tmp_path / "serve.log", own_group=True,
        ) as server,
        aiohttp.ClientSession() as http,
        Publisher() as publisher,
    ):  # fmt: skip
        await publisher.publish(http, server.url + "whip")
        await publisher.wait_connected()
        await asyncio.sleep(PUBLISH_SECONDS)  # media to record
        os.killpg(server.proc.pid, signal.SIGTERM)
        assert await asyncio.wait_for(server.proc.wait(), 30) == 0, server.stderr()
    assert "encoder process ended" not in server.stderr(), server.stderr()
    assert "Traceback" not in server.stderr()
    [path] = finished_recordings(out)
    check_recording(path, video="vp8", audio="opus", size=(320, 240), duration=(2.0, 5.5))
