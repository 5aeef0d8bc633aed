"""The operator's page of ``asyncrec serve`` and the routes it reads: ``GET /sessions`` (live
sessions with codecs, resolution, frame rate, bitrate, duration and drops), the duration and
thumbnail of each recording in ``GET /recordings``, ``GET /recordings/NAME/thumbnail`` and
``DELETE /recordings/NAME``, with the token where they reveal or change anything.

The fast tests publish with aiortc to ``create_app`` on 127.0.0.1 or write recordings with
asyncrec itself; the slow one drives the page in Debian's headless Chromium (Playwright),
publishing its fake camera and microphone to ``asyncrec serve --token``, and writes a
screenshot of each state to ``ASYNCREC_SCREENSHOTS`` (default ``artifacts/screenshots/``).
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import av
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from asyncrec import FileSink, FrameTrack, MediaRecorder, MediaStream, SampleTrack, moving_pattern, sine_tone
from asyncrec.whip import _library
from asyncrec.whip._access import BearerToken, access_middleware, signed_urls
from asyncrec.whip._library import THUMBNAIL_WIDTH, Library
from asyncrec.whip._sessions import LiveSessions
from conftest import Start
from media_check import ffprobe_duration
from test_browser import CHROMIUM_ARGS, chromium  # noqa: F401 - the fixture, requested by name below
from test_whip_security import bearer, raw_request
from whip_client import Publisher, check_recording, finished_recordings, names, serve_process

TOKEN = "operator-Token_7"
#: Seconds of media in the files the listing tests write (faster than real time).
SECONDS = 2.5
#: Seconds: PyAV's duration of a file against Debian's ffprobe.
DURATION_TOLERANCE = 0.15
TIMEOUT = 20.0


async def record_file(path: Path, *, video: bool = True, mime: str = "", size: tuple[int, int] = (320, 240)) -> Path:
    """SECONDS of a moving pattern (unless not ``video``) and a tone, recorded to ``path``."""
    tracks: list[Any] = []
    if video:
        tracks.append(FrameTrack(moving_pattern(*size), fps=30, duration=SECONDS))
    tracks.append(SampleTrack(sine_tone(440), duration=SECONDS))
    stopped = asyncio.Event()
    async with FileSink(path) as sink, MediaRecorder(MediaStream(tracks), mimeType=mime) as recorder:
        recorder.ondataavailable = sink.write
        recorder.onstop = lambda event: stopped.set()
        recorder.start(500)
        await asyncio.wait_for(stopped.wait(), TIMEOUT)
    return path


def jpeg_size(data: bytes) -> tuple[int, int]:
    """The picture size of a JPEG, decoded by PyAV (FFmpeg's mjpeg decoder)."""
    assert data[:2] == b"\xff\xd8", data[:8]
    with av.open(io.BytesIO(data)) as container:
        frame = next(container.decode(video=0))
        return frame.width, frame.height


async def get_json(port: int, target: str, token: str | None = TOKEN) -> Any:
    status, headers, body = await raw_request(port, "GET", target, bearer(token) if token else [])
    assert status == 200, (target, status, body[:200])
    assert headers["content-type"].startswith("application/json")
    return json.loads(body)


async def poll(what: str, probe: Callable[[], Awaitable[Any]], within: float = TIMEOUT, every: float = 0.2) -> Any:
    """``await probe()`` until it returns something true (bounded); that value."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within} s (last {value!r})")
        await asyncio.sleep(every)


# -- /sessions ---------------------------------------------------------------------------------------


async def test_a_live_publish_shows_in_sessions_then_as_a_recording(app_server: Start, tmp_path: Path) -> None:
    out = tmp_path / "out"
    server = await app_server(out, token=TOKEN)
    port = server.port
    assert port is not None
    status, _, _ = await raw_request(port, "GET", "/sessions")
    assert status == 401
    status, headers, body = await raw_request(port, "GET", "/sessions", bearer(TOKEN))
    assert (status, json.loads(body)) == (200, [])
    assert headers["cache-control"] == "no-store"

    before = time.time()
    async with aiohttp.ClientSession() as http, Publisher() as publisher:
        await publisher.publish(http, str(server.make_url("/whip")), token=TOKEN)
        await publisher.wait_connected()

        async def recording_with_bytes() -> dict[str, Any] | None:
            items = await get_json(port, "/sessions")
            return items[0] if items and items[0]["bytes"] > 0 and items[0]["resolution"] else None

        first = await poll("a live session with bytes written", recording_with_bytes)
        assert publisher.location is not None
        assert first["id"] == publisher.location.rsplit("/", 1)[1]
        assert first["remote"] == "127.0.0.1"
        assert before - 1 <= first["started"] <= time.time()
        assert first["connection"] == "connected"
        assert first["codecs"].startswith("video/webm;codecs=vp8"), first
        assert "opus" in first["codecs"]
        assert first["resolution"] == "320x240"
        assert set(first["frames"]) == {"video", "audio"}
        assert first["frames"]["video"]["encoded"] > 0
        assert first["frames"]["audio"]["encoded"] > 0
        assert first["dropped"] == sum(counts["dropped"] for counts in first["frames"].values())
        await asyncio.sleep(1.5)
        [second] = await get_json(port, "/sessions")
        # Rates over the time between the two requests: the publisher sends 30 frames/s.
        assert second["seconds"] > first["seconds"] + 1.0, (first, second)
        assert 15 <= second["fps"] <= 45, second
        assert second["bitrate"] > 20_000, second
        assert second["bytes"] >= first["bytes"]
        last_seconds = second["seconds"]
        assert await publisher.delete(http, token=TOKEN) == 200

    assert await get_json(port, "/sessions") == []
    [item] = await get_json(port, "/recordings")
    [path] = finished_recordings(out)
    assert item["name"] == path.name
    assert abs(item["duration"] - ffprobe_duration(path)) <= DURATION_TOLERANCE
    assert item["duration"] >= last_seconds - 0.5
    thumbnail = URL(item["thumbnail"])
    assert thumbnail.path == f"/recordings/{path.name}/thumbnail"
    assert set(thumbnail.query) == {"expires", "signature"}
    status, headers, jpeg = await raw_request(port, "GET", item["thumbnail"])  # signed: no header
    assert status == 200
    assert headers["content-type"] == "image/jpeg"
    assert jpeg_size(jpeg) == (THUMBNAIL_WIDTH, 120)


class FakeRecorder:
    """What LiveSessions reads of a MediaRecorder: ``mimeType`` and ``statistics()``."""

    def __init__(self) -> None:
        self.mimeType = "video/webm;codecs=vp8,opus"
        self.frames = 0
        self.bytes = 0
        self.seconds = 0.0

    def statistics(self) -> Any:
        tracks = (
            SimpleNamespace(
                kind="video",
                frames_in=self.frames,
                frames_encoded=self.frames,
                frames_dropped=2,
                copied=False,
                frames_lost=0,
                gaps=0,
            ),
            SimpleNamespace(
                kind="audio", frames_in=50, frames_encoded=50, frames_dropped=0, copied=True, frames_lost=0, gaps=0
            ),
        )
        return SimpleNamespace(
            tracks=tracks,
            bytes_out=self.bytes,
            recorded_time=self.seconds,
            video_size=(640, 480),
            encoder_busy_time=0.0,
        )


def test_frame_rate_and_bitrate_are_measured_over_the_last_seconds() -> None:
    from asyncrec.whip._metrics import ServerMetrics

    now = [100.0]
    metrics = ServerMetrics()
    recorder = FakeRecorder()
    metrics.session_started("abc", recorder)  # type: ignore[arg-type]
    endpoint = SimpleNamespace(sessions={})
    live = LiveSessions(metrics, endpoint, window=5.0, clock=lambda: now[0])  # type: ignore[arg-type]

    # First seen after 2 s at 25 frames/s and 800 kbit/s: the averages since the start.
    recorder.frames, recorder.bytes, recorder.seconds = 50, 200_000, 2.0
    [item] = live.snapshot()
    assert (item["fps"], item["bitrate"]) == (25.0, 800_000.0)
    assert item["resolution"] == "640x480"
    assert item["dropped"] == 2
    assert item["remote"] is None
    assert item["frames"]["video"] == {"received": 50, "encoded": 50, "dropped": 2}
    assert item["copied"] == ["audio"]
    # Then the rate since the earlier sample: 30 frames/s, 400 kbit/s.
    for _ in range(8):
        now[0] += 1.0
        recorder.frames += 30
        recorder.bytes += 50_000
        recorder.seconds += 1.0
        [item] = live.snapshot()
        assert item["fps"] == pytest.approx(30.0)
        assert item["bitrate"] == pytest.approx(400_000.0)
    # Polls closer than MIN_SPACING share a sample; a stall shows within the window.
    now[0] += 0.1
    [item] = live.snapshot()
    for _ in range(6):
        now[0] += 1.0
        [item] = live.snapshot()
    assert item["fps"] == 0.0
    assert item["bitrate"] == 0.0
    # An ended session's samples go with it.
    metrics.session_ended("abc", recorder.bytes)
    assert live.snapshot() == []
    assert live._samples == {}


# -- /recordings: duration and thumbnail ----------------------------------------------------------------


async def test_the_listing_gives_each_recordings_duration_and_thumbnail(app_server: Start, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    video = await record_file(out / "20260101T000000Z-video.webm")
    audio = await record_file(out / "20260101T000001Z-audio.webm", video=False, mime="audio/webm")
    mp4 = await record_file(out / "20260101T000002Z-video.mp4", mime="video/mp4", size=(320, 180))
    broken = out / "20260101T000003Z-broken.webm"
    broken.write_bytes(b"\x1a\x45\xdf\xa3" + bytes(1000))
    (out / "20260101T000004Z-live.webm.part").write_bytes(video.read_bytes())
    server = await app_server(out)
    port = server.port
    assert port is not None

    items = {item["name"]: item for item in await get_json(port, "/recordings", token=None)}
    assert list(items) == [video.name, audio.name, mp4.name, broken.name]
    for path in (video, audio, mp4):
        assert abs(items[path.name]["duration"] - ffprobe_duration(path)) <= DURATION_TOLERANCE, path.name
        assert abs(items[path.name]["duration"] - SECONDS) <= 0.3
    assert items[broken.name]["duration"] is None
    # Without a token the URLs are plain.
    assert items[video.name]["thumbnail"] == f"/recordings/{video.name}/thumbnail"
    assert items[audio.name]["thumbnail"] is None
    assert items[broken.name]["thumbnail"] is None
    for path, size in ((video, (160, 120)), (mp4, (160, 90))):
        status, headers, jpeg = await raw_request(port, "GET", items[path.name]["thumbnail"])
        assert status == 200, path.name
        assert headers["content-type"] == "image/jpeg"
        assert jpeg_size(jpeg) == size
        status, headers, body = await raw_request(port, "HEAD", items[path.name]["thumbnail"])
        assert (status, body) == (200, b"")
    for path in (audio, broken):
        status, _, _ = await raw_request(port, "GET", f"/recordings/{path.name}/thumbnail")
        assert status == 404, path.name
    status, _, _ = await raw_request(port, "GET", "/recordings/20260101T000009Z-none.webm/thumbnail")
    assert status == 404


async def test_files_are_probed_off_the_loop_once_per_version(
    app_server: Start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    first = await record_file(out / "20260101T000000Z-a.webm")
    second = out / "20260101T000001Z-b.webm"
    second.write_bytes(first.read_bytes())
    probed: list[tuple[str, bool]] = []
    real = _library.probe_file

    def spy(path: Path) -> Any:
        probed.append((path.name, threading.current_thread() is threading.main_thread()))
        return real(path)

    monkeypatch.setattr(_library, "probe_file", spy)
    server = await app_server(out)
    port = server.port
    assert port is not None
    for _ in range(3):
        await get_json(port, "/recordings", token=None)
        status, _, _ = await raw_request(port, "GET", f"/recordings/{first.name}/thumbnail")
        assert status == 200
    assert sorted(probed) == [(first.name, False), (second.name, False)]
    # A file that changes (size, mtime) is probed again.
    with second.open("ab") as file:
        file.write(b"\0" * 10)
    await get_json(port, "/recordings", token=None)
    assert [name for name, _ in probed].count(second.name) == 2
    assert not any(on_main for _, on_main in probed), "PyAV ran on the event loop's thread"


def test_the_cache_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path.resolve()
    for number in range(5):
        (folder / f"20260101T00000{number}Z-x.webm").write_bytes(b"not media")
    library = Library(folder, cache_size=3)
    calls = []
    monkeypatch.setattr(_library, "probe_file", lambda path: calls.append(path.name) or _library._Probe(None, None))
    assert [item.duration for item in asyncio.run(library.recordings())] == [None] * 5
    assert len(library._cache) == 3
    asyncio.run(library.recordings())
    assert len(calls) == 10, "least recently used first out: a full scan finds none cached"


def resolved(path: Path) -> Path:
    return path.resolve()


async def test_cancelling_a_listing_waits_for_its_worker_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = resolved(tmp_path)
    (folder / "20260101T000000Z-x.webm").write_bytes(b"not media")
    entered, release, finished = threading.Event(), threading.Event(), threading.Event()

    def slow(path: Path) -> Any:
        entered.set()
        release.wait(10)
        finished.set()
        return _library._Probe(None, None)

    monkeypatch.setattr(_library, "probe_file", slow)
    task = asyncio.ensure_future(Library(folder).recordings())
    assert await asyncio.to_thread(entered.wait, 10)
    task.cancel()
    await asyncio.sleep(0.2)
    assert not task.done(), "cancelled while its thread still reads a file"
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert finished.is_set()


# -- DELETE /recordings/NAME --------------------------------------------------------------------------


async def test_delete_needs_the_token_and_removes_the_file(app_server: Start, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    path = await record_file(out / "20260101T000000Z-gone.webm")
    server = await app_server(out, token=TOKEN)
    port = server.port
    assert port is not None
    [item] = await get_json(port, "/recordings")
    target = f"/recordings/{path.name}"
    for headers in ([], bearer("wrong"), [(b"Authorization", b"Basic " + TOKEN.encode())]):
        status, response_headers, _ = await raw_request(port, "DELETE", target, headers)
        assert status == 401, headers
        assert response_headers["www-authenticate"].startswith("Bearer")
    # A signed URL opens the file and its thumbnail for GET and HEAD, and nothing else.
    for url in (item["url"], item["thumbnail"]):
        status, _, _ = await raw_request(port, "GET", url)
        assert status == 200, url
        for method in ("DELETE", "POST", "PUT", "PATCH"):
            status, _, _ = await raw_request(port, method, url)
            assert status in (401, 405), (method, url, status)
    assert path.exists()

    status, _, body = await raw_request(port, "DELETE", target, bearer(TOKEN))
    assert (status, body) == (204, b"")
    assert not path.exists()
    assert await get_json(port, "/recordings") == []
    status, _, _ = await raw_request(port, "DELETE", target, bearer(TOKEN))
    assert status == 404
    for url in (item["url"], item["thumbnail"]):
        status, _, _ = await raw_request(port, "GET", url)
        assert status == 404, url


def test_access_middleware_lets_signed_urls_through_for_get_and_head_only() -> None:
    """Even a handler marked ``signed_urls`` that also answers DELETE: a signed URL is no
    token for it."""

    async def run() -> None:
        guard = BearerToken(TOKEN)
        reached: list[str] = []

        @signed_urls
        async def handler(request: web.Request) -> web.Response:
            reached.append(request.method)
            return web.Response(text="ok")

        app = web.Application(middlewares=[access_middleware(guard)])
        app.router.add_route("*", "/thing", handler)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        try:
            assert server.port is not None
            url = guard.sign("/thing")
            for method in ("GET", "HEAD"):
                status, _, _ = await raw_request(server.port, method, url)
                assert status == 200, method
            for method in ("DELETE", "POST", "PUT", "PATCH", "OPTIONS"):
                status, _, _ = await raw_request(server.port, method, url)
                assert status == 401, method
            assert reached == ["GET", "HEAD"]
        finally:
            await server.close()

    asyncio.run(run())


#: Names the new routes must answer with 404 (or the router's 4xx), never a 5xx, as raw targets.
ODD_NAMES = [
    "20260101T000000Z-live.webm.part",
    ".hidden.webm",
    "..%2Fescape.webm",
    "%2e%2e",
    "..",
    "a" * 300 + ".webm",
    "%C3%A9" * 200 + ".webm",
    "%FF%FE.webm",
    "%ED%A0%80.webm",
    "nul%00.webm",
    "notes.txt",
    "dir.webm",
    "link-out.webm",
    "loop.webm",
    "20260101T000009Z-missing.webm",
    "x%5C..%5Cy.webm",
    "%20.webm",
]


@pytest.mark.parametrize("token", [None, TOKEN], ids=["no-token", "token"])
async def test_odd_names_get_4xx_from_the_new_routes(app_server: Start, tmp_path: Path, token: str | None) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "20260101T000000Z-live.webm.part").write_bytes(b"in progress")
    (out / ".hidden.webm").write_bytes(b"hidden")
    (out / "notes.txt").write_bytes(b"notes")
    (out / "dir.webm").mkdir()
    outside = tmp_path / "escape.webm"
    outside.write_bytes(b"outside")
    (out / "link-out.webm").symlink_to(outside)
    (out / "loop.webm").symlink_to(out / "loop.webm")
    before = names(out)
    server = await app_server(out, token=token)
    port = server.port
    assert port is not None
    auth = bearer(token) if token else []
    for name in ODD_NAMES:
        for method, target in (
            ("GET", f"/recordings/{name}/thumbnail"),
            ("HEAD", f"/recordings/{name}/thumbnail"),
            ("DELETE", f"/recordings/{name}"),
            ("DELETE", f"/recordings/{name}/thumbnail"),
        ):
            status, _, body = await raw_request(port, method, target, auth)
            assert 400 <= status < 500, (method, target[:60], status, body[:200])
            if method == "DELETE" and not target.endswith("/thumbnail"):
                assert status == 404, (target[:60], status)
    for target in ("/sessions?x=%FF", "/sessions/", "/sessions/%FF"):
        status, _, _ = await raw_request(port, "GET", target, auth)
        assert status in (200, 404), target
    assert names(out) == before, "nothing was deleted"
    assert outside.exists()


# -- the page in Chromium ------------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parent.parent
#: Seconds the browser publishes before Stop (after the live duration was seen rising).
PUBLISH_SECONDS = 2.0
#: Milliseconds, for Playwright's waits.
WAIT_MS = 30_000


def screenshot_dir() -> Path:
    folder = Path(os.environ.get("ASYNCREC_SCREENSHOTS") or REPO / "artifacts" / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.mark.slow
async def test_the_operator_page_in_chromium(chromium: str, tmp_path: Path) -> None:  # noqa: F811 - the fixture
    """Publish from the page's own panel to ``asyncrec serve --token``; see it live, then
    recorded (checked by Debian's ffprobe too); play and seek it; delete it. A screenshot
    of each state."""
    from playwright.async_api import async_playwright

    out = tmp_path / "out"
    shots = screenshot_dir()
    written: list[Path] = []

    async def shoot(page: Any, name: str) -> None:
        path = shots / f"operator-{len(written) + 1}-{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        written.append(path)
        print(f"screenshot: {path}")

    args = [*CHROMIUM_ARGS, "--allow-loopback-in-peer-connection"]
    async with (
        serve_process(out, "--token", TOKEN, log=tmp_path / "serve.log") as server,
        async_playwright() as playwright,
    ):
        browser = await playwright.chromium.launch(executable_path=chromium, headless=True, args=args)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            console: list[str] = []
            page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
            page.on("pageerror", lambda error: console.append(f"pageerror: {error}"))

            def context() -> str:
                return f"console {console}; server stderr {server.stderr()[-3000:]!r}"

            # The page loads without the token, and asks for it.
            await page.goto(server.url)
            await page.wait_for_function("document.getElementById('error').textContent.includes('token')")
            await page.fill("#token", TOKEN)
            await page.press("#token", "Enter")
            await page.wait_for_function(
                "document.getElementById('server-status').dataset.status === 'online'"
                " && document.getElementById('error').textContent === ''",
                timeout=WAIT_MS,
            )
            # The two refused requests before the token (401) are the browser's console errors.
            console.clear()
            assert await page.is_visible("#sessions-empty")
            assert await page.is_visible("#recordings-empty")
            await shoot(page, "empty")

            # Publish: the pickers list the fake devices once permission is given.
            await page.click("#start")
            try:
                await page.wait_for_function(
                    "document.getElementById('state').textContent === 'connected'", timeout=WAIT_MS
                )
            except Exception as exc:
                error = await page.text_content("#error")
                raise AssertionError(f"not connected: error {error!r}; {context()}") from exc
            cameras = await page.eval_on_selector_all(
                "#camera option", "options => options.map(o => [o.value, o.textContent])"
            )
            microphones = await page.eval_on_selector_all(
                "#microphone option", "options => options.map(o => [o.value, o.textContent])"
            )
            assert [label for value, label in cameras if value not in ("", "none")], cameras
            assert [label for value, label in microphones if value not in ("", "none")], microphones
            assert all(label for _, label in cameras + microphones)
            assert await page.is_disabled("#camera"), "no device change while publishing"

            # The live session, with its duration rising, and the level meter moving (a beep).
            row = "#sessions tr[data-session]"
            await page.wait_for_function(
                f"(() => {{ const r = document.querySelector({row!r}); return r && Number(r.dataset.seconds) > 0.5"
                " && r.dataset.resolution === '640x480' && Number(r.dataset.fps) > 5; })()",
                timeout=WAIT_MS,
            )
            first = float(await page.get_attribute(row, "data-seconds") or 0)
            await page.wait_for_function(
                f"Number(document.querySelector({row!r}).dataset.seconds) >= {first + 1.0}", timeout=WAIT_MS
            )
            second = float(await page.get_attribute(row, "data-seconds") or 0)
            assert second > first
            cells = await page.eval_on_selector(
                row, "r => Object.fromEntries([...r.cells].map(c => [c.className, c.textContent]))"
            )
            assert "vp8" in cells["codecs"], cells
            assert "opus" in cells["codecs"], cells
            assert cells["num resolution"] == "640x480", cells
            assert "this page" in cells["publisher"], cells
            assert "kbit/s" in cells["num bitrate"] or "Mbit/s" in cells["num bitrate"], cells
            await page.wait_for_function(
                "Number(document.getElementById('level').dataset.peak) > 0.05", timeout=WAIT_MS
            )
            assert await page.get_attribute("#live-badge", "data-count") == "1"
            await shoot(page, "publishing")

            await asyncio.sleep(PUBLISH_SECONDS)
            last = float(await page.get_attribute(row, "data-seconds") or 0)
            await page.click("#stop")
            await page.wait_for_function("document.getElementById('state').textContent === 'stopped'", timeout=WAIT_MS)

            # The recording, with its duration and a loaded thumbnail; the session is gone.
            recording = "#recordings tr[data-name]"
            await page.wait_for_selector(recording, timeout=WAIT_MS)
            await page.wait_for_function("document.querySelectorAll('#sessions tr').length === 0", timeout=WAIT_MS)
            await page.wait_for_function(
                "(() => { const img = document.querySelector('#recordings img.thumb');"
                " return img && img.complete && img.naturalWidth > 0; })()",
                timeout=WAIT_MS,
            )
            name = await page.get_attribute(recording, "data-name")
            duration = float(await page.get_attribute(recording, "data-duration") or "nan")
            assert abs(duration - last) <= 2.5, (duration, last)
            assert name is not None
            # The file itself, by an FFmpeg other than the server's: the duration the page shows.
            await asyncio.to_thread(
                check_recording,
                out / name,
                video="vp8",
                audio="opus",
                size=(640, 480),
                duration=(duration - 0.3, duration + 0.3),
            )
            assert await page.text_content(f"{recording} td.duration") not in ("", "\u2013")
            assert await page.eval_on_selector("#recordings img.thumb", "img => img.naturalWidth") == THUMBNAIL_WIDTH
            await shoot(page, "recorded")

            # Play it, and seek: the server answers byte ranges.
            await page.click(f"{recording} button.play")
            await page.wait_for_function(
                "(() => { const v = document.getElementById('playback');"
                " return v.readyState >= 1 && Number.isFinite(v.duration) && v.seekable.length > 0; })()",
                timeout=WAIT_MS,
            )
            played = await page.evaluate("document.getElementById('playback').duration")
            assert abs(played - duration) <= 0.5, (played, duration)
            await page.evaluate(
                "target => { const v = document.getElementById('playback'); v.pause(); v.currentTime = target; }",
                played / 2,
            )
            await page.wait_for_function(
                "target => { const v = document.getElementById('playback');"
                " return !v.seeking && v.readyState >= 2 && Math.abs(v.currentTime - target) < 0.5; }",
                arg=played / 2,
                timeout=WAIT_MS,
            )
            await shoot(page, "playing")

            # Delete it (confirming the dialog): the row and the file go.
            dialogs: list[str] = []

            async def accept(dialog: Any) -> None:
                dialogs.append(dialog.message)
                await dialog.accept()

            page.once("dialog", accept)
            await page.click(f"{recording} button.delete")
            await page.wait_for_function("document.querySelectorAll('#recordings tr').length === 0", timeout=WAIT_MS)
            assert dialogs, "no confirm()"
            assert name in dialogs[0]
            assert await page.is_hidden("#player")
            assert await page.text_content("#error") == ""
            assert not [line for line in console if line.startswith(("error", "pageerror"))], console
        finally:
            await browser.close()
        assert await server.interrupt() == 0, server.stderr()
    assert "Traceback" not in server.stderr()
    assert names(out) == [], "the file is gone, and no .part is left"
    assert [path.name for path in written] == [
        "operator-1-empty.png",
        "operator-2-publishing.png",
        "operator-3-recorded.png",
        "operator-4-playing.png",
    ]
    for path in written:
        assert path.stat().st_size > 10_000, path
