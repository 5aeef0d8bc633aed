"""``asyncrec serve`` as a subprocess on 127.0.0.1, published to by an aiortc WHIP client."""

from __future__ import annotations

import asyncio
import subprocess
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
)

PUBLISH_SECONDS = 2.0
DURATION = (1.2, 4.0)


async def test_serve_records_a_publisher_and_exits_0_on_sigint(loopback_ice: None, tmp_path: Path) -> None:
    out = tmp_path / "out"
    async with serve_process(out, log=tmp_path / "serve.log") as server, aiohttp.ClientSession() as http:
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
