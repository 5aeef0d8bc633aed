"""The server recording to object storage (a real Ceph radosgw), as one worker of several:
session URLs carry the worker's id, recordings' names too, the page's routes read the
bucket, and a draining worker refuses new publishers while its running ones finish."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from asyncrec._object_storage import s3_client
from conftest import Start
from media_check import ffmpeg_decode_errors, ffprobe_duration, has_cues
from whip_client import SDP, Publisher, asyncrec_command, free_port

TIMEOUT = 30.0


async def objects(bucket: str) -> dict[str, int]:
    async with s3_client() as client:
        answer = await client.list_objects_v2(Bucket=bucket)
        return {item["Key"]: int(item["Size"]) for item in answer.get("Contents", [])}


async def wait_for_object(bucket: str, prefix: str) -> str:
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while not (found := [key for key in await objects(bucket) if key.startswith(prefix)]):
        assert asyncio.get_running_loop().time() < deadline, "no object"
        await asyncio.sleep(0.2)  # the upload completes after the session: polled
    [key] = found
    return key


def resource(server: Any, location: str, worker: str) -> str:
    """The session URL as a load balancer passes it on: its /w/WORKER prefix removed."""
    assert location.startswith(f"/w/{worker}/whip/")
    return str(server.make_url(location.removeprefix(f"/w/{worker}")))


async def test_a_worker_records_to_the_bucket_with_its_id(
    s3_env: None, app_server: Start, bucket: str, tmp_path: Path
) -> None:
    server = await app_server(f"s3://{bucket}/rec", worker_id="w1", timeslice=200)  # type: ignore[arg-type]
    async with aiohttp.ClientSession() as http, Publisher() as publisher:
        location = await publisher.publish(http, str(server.make_url("/whip")))
        path = location.removeprefix(str(server.make_url("/")).rstrip("/"))
        await publisher.wait_connected()
        await asyncio.sleep(2.0)  # two seconds of media: what is measured
        async with http.delete(resource(server, path, "w1")) as response:
            assert response.status == 200
        key = await wait_for_object(bucket, "rec/")
        assert "-w1-" in key
        assert key.endswith(".webm")
        # The page's routes read the bucket: listed, played through a presigned URL, deleted.
        async with http.get(server.make_url("/recordings")) as response:
            [item] = await response.json()
        assert item["name"] == key.removeprefix("rec/")
        async with http.get(server.make_url(item["url"])) as response:
            assert response.status == 200
            assert response.url.host == "127.0.0.1"
            assert str(response.url) != str(server.make_url(item["url"]))  # redirected to the storage
            data = await response.read()
        saved = tmp_path / "got.webm"
        saved.write_bytes(data)
        assert ffmpeg_decode_errors(saved) == ""
        assert ffprobe_duration(saved) == pytest.approx(2.0, abs=0.6)
        assert has_cues(saved)
        async with http.delete(server.make_url(f"/recordings/{item['name']}")) as response:
            assert response.status == 204
        assert await objects(bucket) == {}


async def test_a_draining_worker_refuses_new_publishers_and_finishes_its_running_ones(
    s3_env: None, app_server: Start, bucket: str
) -> None:
    from asyncrec.whip._server import ENDPOINT

    server = await app_server(f"s3://{bucket}/rec", worker_id="w2", timeslice=200)  # type: ignore[arg-type]
    endpoint = server.app[ENDPOINT]
    async with aiohttp.ClientSession() as http, Publisher() as publisher, Publisher() as late:
        location = await publisher.publish(http, str(server.make_url("/whip")))
        path = location.removeprefix(str(server.make_url("/")).rstrip("/"))
        await publisher.wait_connected()
        drained = asyncio.ensure_future(endpoint.drain(grace=TIMEOUT))
        await asyncio.sleep(0)  # draining starts
        async with http.post(server.make_url("/whip"), data=await late.offer(), headers={"Content-Type": SDP}) as r:
            assert r.status == 503
            assert r.headers["Retry-After"].isdigit()
        async with http.get(server.make_url("/healthz")) as response:
            assert response.status == 503
            assert (await response.json())["status"] == "draining"
        assert not drained.done()  # the running session goes on
        await asyncio.sleep(1.0)
        async with http.delete(resource(server, path, "w2")) as response:
            assert response.status == 200
        await asyncio.wait_for(drained, TIMEOUT)
    key = await wait_for_object(bucket, "rec/")
    assert "-w2-" in key


async def test_a_worker_the_storage_refuses_says_so_and_exits(
    s3_env: None, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refused credentials or a missing bucket: ``serve`` exits 1 at start with the
    storage's error instead of taking publishers it could not record."""
    monkeypatch.delenv("ASYNCREC_ICE_HOSTS", raising=False)
    for url, expected in (
        (f"s3://{bucket}-missing/rec", "NoSuchBucket"),
        (f"s3://{bucket}/rec", "SignatureDoesNotMatch"),
    ):
        env = dict(os.environ)
        if expected == "SignatureDoesNotMatch":
            env["AWS_SECRET_ACCESS_KEY"] = "wrong"
        serve = await asyncio.create_subprocess_exec(
            *asyncrec_command(), "serve", "--port", str(free_port()), "--out", url, "--no-auth",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        try:
            out, err = await asyncio.wait_for(serve.communicate(), TIMEOUT)
        finally:
            if serve.returncode is None:  # it started after all: the test fails, the server goes
                serve.kill()
                await serve.wait()
        assert serve.returncode == 1, (out, err)
        assert expected in err.decode(), err
        assert b"Traceback" not in err
        assert b"asyncrec serve:" not in out, "it never listened"
