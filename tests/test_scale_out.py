"""Three `asyncrec serve` workers behind a real nginx (deploy/nginx.conf.template), recording
aiortc publishers to one bucket of a real Ceph radosgw: sessions spread over the workers,
DELETE reaches the worker that holds the session, a worker killed with SIGKILL takes only
its own sessions (recovered afterwards with `asyncrec recover`), a worker drained with
SIGTERM refuses new publishers, finishes its running ones and exits. Every object is read
back and checked with Debian's ffprobe/ffmpeg."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections import Counter
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from asyncrec import recover
from asyncrec._object_storage import TAIL_SUFFIX, s3_client
from load_balancer import Nginx
from media_check import ffmpeg_decode_errors, ffprobe_duration, ffprobe_streams, has_cues
from test_browser import CHROMIUM_ARGS, chromium  # noqa: F401 - the fixture, requested by name below
from whip_client import Publisher, ServeProcess, serve_process

TIMEOUT = 60.0
WORKERS = ("01", "02", "03")
RECORD_FOR = 4.0


async def behind_nginx(
    stack: contextlib.AsyncExitStack, bucket: str, tmp_path: Path, ids: tuple[str, ...], *args: str
) -> tuple[dict[str, ServeProcess], Nginx]:
    """``asyncrec serve`` workers ``ids`` recording to ``s3://bucket/rec`` (with ``args``),
    and nginx in front of them; all stopped when ``stack`` closes."""
    workers = {}
    for worker in ids:
        process = serve_process(
            f"s3://{bucket}/rec",  # type: ignore[arg-type]
            "--worker-id",
            worker,
            "--timeslice",
            "200",
            *args,
            log=tmp_path / f"worker-{worker}.log",
        )
        workers[worker] = await stack.enter_async_context(process)
    ports = [(worker, "127.0.0.1", URL(server.url).port or 0) for worker, server in workers.items()]
    return workers, await stack.enter_async_context(Nginx(ports))


def worker_of(location: str) -> str:
    path = URL(location).path
    assert path.startswith("/w/"), location
    return path.split("/")[2]


async def objects(bucket: str) -> dict[str, bytes]:
    found = {}
    async with s3_client() as client:
        listing = await client.list_objects_v2(Bucket=bucket)
        for item in listing.get("Contents", []):
            if TAIL_SUFFIX in item["Key"]:
                continue  # a dead recorder's tail: recover's, not a recording
            answer = await client.get_object(Bucket=bucket, Key=item["Key"])
            async with answer["Body"] as body:
                found[item["Key"]] = await body.read()
    return found


async def wait_for_objects(bucket: str, count: int) -> dict[str, bytes]:
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while len(found := await objects(bucket)) < count:
        assert asyncio.get_running_loop().time() < deadline, sorted(found)
        await asyncio.sleep(0.5)  # objects appear when their uploads complete: polled
    return found


async def tail_pieces(bucket: str, worker: str) -> Counter[str]:
    """Per recording of ``worker`` still uploading: how many tail pieces it has put."""
    async with s3_client() as client:
        listing = await client.list_objects_v2(Bucket=bucket)
    keys = [item["Key"] for item in listing.get("Contents", [])]
    return Counter(key.split(TAIL_SUFFIX)[0] for key in keys if TAIL_SUFFIX in key and f"-{worker}-" in key)


def check_recording(tmp_path: Path, key: str, data: bytes, at_least: float) -> None:
    path = tmp_path / key.replace("/", "_")
    path.write_bytes(data)
    assert ffmpeg_decode_errors(path) == "", key
    assert {s["codec_type"] for s in ffprobe_streams(path)} == {"video", "audio"}, key
    assert ffprobe_duration(path) >= at_least, key
    assert has_cues(path), key


@pytest.mark.slow
async def test_workers_behind_nginx_share_a_bucket_and_lose_only_a_killed_workers_tail(
    s3_env: None, bucket: str, tmp_path: Path, loopback_ice: None
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        workers, lb = await behind_nginx(stack, bucket, tmp_path, WORKERS, "--drain-timeout", "30")
        http = await stack.enter_async_context(aiohttp.ClientSession())
        publishers = [await stack.enter_async_context(Publisher()) for _ in range(6)]
        for publisher in publishers:
            await publisher.publish(http, f"{lb.url.rstrip('/')}/whip")
        for publisher in publishers:
            await publisher.wait_connected()
        held = {publisher: worker_of(publisher.location or "") for publisher in publishers}
        assert Counter(held.values()) == dict.fromkeys(WORKERS, 2)  # round robin
        await asyncio.sleep(RECORD_FOR)  # media to record: what is measured
        # A loaded machine may start a session's media late: worker 01's recordings have put
        # a tail piece after their first one (the header) before it dies.
        deadline = asyncio.get_running_loop().time() + TIMEOUT
        while len(pieces := await tail_pieces(bucket, "01")) < 2 or min(pieces.values()) < 2:
            assert asyncio.get_running_loop().time() < deadline, pieces
            await asyncio.sleep(0.2)  # pieces appear every 2 s: polled

        # Worker 01 dies; worker 02 drains.
        workers["01"].proc.send_signal(signal.SIGKILL)
        await workers["01"].proc.wait()
        workers["02"].proc.send_signal(signal.SIGTERM)
        deadline = asyncio.get_running_loop().time() + TIMEOUT
        while True:  # until worker 02 says it drains (its health, asked directly)
            async with http.get(f"{workers['02'].url}healthz") as response:
                if response.status == 503 and (await response.json())["status"] == "draining":
                    break
            assert asyncio.get_running_loop().time() < deadline, "worker 02 never drained"
            await asyncio.sleep(0.05)
        async with Publisher() as late:
            await late.publish(http, f"{lb.url.rstrip('/')}/whip")
            assert worker_of(late.location or "") == "03"  # past the dead and the draining one
            await late.wait_connected()
            await asyncio.sleep(2.0)  # media to record, with room for a loaded machine's start
            assert await late.delete(http) == 200
        for publisher, worker in held.items():
            if worker != "01":
                assert await publisher.delete(http) == 200  # reached the worker holding it
        assert await asyncio.wait_for(workers["02"].proc.wait(), TIMEOUT) == 0  # drained, then exited

    # 02's two, 03's two and the late one are finished objects.
    finished = await wait_for_objects(bucket, 5)
    assert Counter(key.split("-")[1] for key in finished) == {"02": 2, "03": 3}
    for key, data in finished.items():
        check_recording(tmp_path, key, data, at_least=0.8)  # the late one: about 2 s
    # An object appears when its upload completes; its sink then replaces it with the
    # finished file and removes its tail pieces. Once those are gone, only 01's are left.
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while await tail_pieces(bucket, "02") or await tail_pieces(bucket, "03"):
        assert asyncio.get_running_loop().time() < deadline, "a finished recording kept its tail pieces"
        await asyncio.sleep(0.2)  # the sinks' clean-up: polled
    # 01's two were abandoned uploads: recover completes them, losing at most the tail.
    results = await recover(f"s3://{bucket}/rec/", min_age=0)
    summaries = [r.summary() for r in results]
    assert len(results) == 2, summaries
    assert all("-01-" in result.url for result in results), summaries
    assert all(result.finished and result.problems == [] for result in results), [r.summary() for r in results]
    recovered = {key: data for key, data in (await objects(bucket)).items() if "-01-" in key}
    assert len(recovered) == 2
    for key, data in recovered.items():
        # The tail goes up every 2 s, chunks every 0.2 s; the first chunk came after the start.
        check_recording(tmp_path, key, data, at_least=RECORD_FOR - 2.0 - 0.2 - 1.0)
    print(f"recovered: {[r.summary() for r in results]}", file=sys.stderr)


WAIT_MS = 30_000


@pytest.mark.slow
async def test_chromium_publishes_through_nginx_from_a_workers_page(
    s3_env: None,
    bucket: str,
    tmp_path: Path,
    chromium: str,  # noqa: F811 - the fixture
) -> None:
    """The operator's page of worker 02, through the load balancer (/w/02/): a real browser
    publishes, sees its live session, stops (the DELETE reaches worker 02 through nginx),
    then plays the recording from the bucket (a presigned URL)."""
    from playwright.async_api import async_playwright

    async with contextlib.AsyncExitStack() as stack:
        _, lb = await behind_nginx(stack, bucket, tmp_path, ("01", "02"))
        playwright = await stack.enter_async_context(async_playwright())
        args = [*CHROMIUM_ARGS, "--allow-loopback-in-peer-connection"]
        browser = await playwright.chromium.launch(executable_path=chromium, headless=True, args=args)
        stack.push_async_callback(browser.close)
        page = await browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        await page.goto(f"{lb.url.rstrip('/')}/w/02/")
        await page.click("#start")
        await page.wait_for_function("document.getElementById('state').textContent === 'connected'", timeout=WAIT_MS)
        # Its live session, read from worker 02 through /w/02/sessions.
        await page.wait_for_function(
            "(() => { const r = document.querySelector('#sessions tr[data-session]');"
            " return r && Number(r.dataset.seconds) > 2; })()",
            timeout=WAIT_MS,
        )
        await page.click("#stop")
        await page.wait_for_function("document.getElementById('state').textContent === 'stopped'", timeout=WAIT_MS)
        recording = "#recordings tr[data-name]"
        await page.wait_for_selector(recording, timeout=WAIT_MS)
        name = await page.get_attribute(recording, "data-name")
        assert name is not None
        assert "-02-" in name  # recorded by the worker whose page it is
        await page.click(f"{recording} button.play")
        await page.wait_for_function(
            "(() => { const v = document.getElementById('playback');"
            " return v && v.readyState >= 2 && Number.isFinite(v.duration) && v.duration > 1; })()",
            timeout=WAIT_MS,
        )
        assert errors == []
    data = (await objects(bucket))[f"rec/{name}"]
    check_recording(tmp_path, f"rec/{name}", data, at_least=2.0)
