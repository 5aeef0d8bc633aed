"""Play recordings in a real browser: a small static HTTP server, and two page scripts for a
Playwright (async API) ``Browser``: :func:`play_file` loads a file in a ``<video>`` and seeks
to its middle, :func:`append_chunks` appends chunks one by one to a Media Source Extensions
``SourceBuffer`` and plays them to the end.

Both return a report (a dict) of what happened instead of raising, failures included, so
that a test can assert on it and print all of it. Chromium's own media log (the reason
behind a refused append, such as "Got a block with a timecode before the previous block")
is collected through the DevTools protocol's ``Media`` domain, with the console messages.

Files are served over http from 127.0.0.1 (MSE and range requests need http, not
``file://``); the page is the server's blank ``/`` so that every fetch is same-origin.
Import from a test module as ``from browser_media import ...``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote, urlsplit

from aiohttp import web
from playwright.async_api import Browser, CDPSession, Page

#: Milliseconds, for the waits inside the page.
LOAD_TIMEOUT_MS = 15_000
SEEK_TIMEOUT_MS = 10_000
APPEND_TIMEOUT_MS = 10_000
PLAY_TIMEOUT_MS = 30_000
#: Seconds, on top of the page's own timeouts, before the Python side gives up on a script.
SCRIPT_MARGIN = 15.0

CONTENT_TYPES = {
    ".webm": "video/webm",
    ".mkv": "video/x-matroska",
    ".mp4": "video/mp4",
    ".m4s": "video/mp4",
    ".ogg": "audio/ogg",
    ".opus": "audio/ogg",
    ".html": "text/html; charset=utf-8",
}
BLANK_PAGE = b"<!doctype html><html><head><meta charset=utf-8><title>media</title></head><body></body></html>"
#: Media log levels kept in the reports (Chromium logs every append at "info"/"debug").
MEDIA_LOG_LEVELS = ("error", "warning")
#: Seconds to wait for the media log of destroyed players.
MEDIA_LOG_TIMEOUT = 5.0
#: Destroys every player of the page (which sends its last media log); how many there were.
RELEASE_PLAYERS = """() => {
    let players = 0;
    for (const video of document.querySelectorAll('video')) {
        if (video.getAttribute('src') === null) continue;
        players += 1;
        video.removeAttribute('src');
        video.load();
    }
    return players;
}"""


def content_type(name: str) -> str:
    return CONTENT_TYPES.get(PurePosixPath(name).suffix.lower(), "application/octet-stream")


# -- the server -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StaticServer:
    """A running :func:`serve_files`: ``base_url`` is its blank page, ``url(name)`` a file's URL."""

    base_url: str

    def url(self, name: str) -> str:
        return self.base_url + quote(name)


def _bytes_response(request: web.Request, data: bytes, mime: str) -> web.Response:
    """``data`` whole (200) or the one byte range asked for (206), as a media element asks."""
    headers = {"Accept-Ranges": "bytes", "Cache-Control": "no-store"}
    try:
        wanted = request.http_range
    except ValueError:
        wanted = slice(None, None)
    if wanted.start is None and wanted.stop is None:
        return web.Response(body=data, content_type=mime, headers=headers)
    start, stop, _ = wanted.indices(len(data))
    if start >= len(data) or start >= stop:
        return web.Response(status=416, headers={**headers, "Content-Range": f"bytes */{len(data)}"})
    headers["Content-Range"] = f"bytes {start}-{stop - 1}/{len(data)}"
    return web.Response(status=206, body=data[start:stop], content_type=mime, headers=headers)


@contextlib.asynccontextmanager
async def serve_files(files: Path | Mapping[str, bytes]) -> AsyncIterator[StaticServer]:
    """Serve a directory's files (by name, not its subdirectories) or a dict ``name -> bytes``
    on ``http://127.0.0.1:<free port>/``, with a Content-Type from the name's extension and
    byte ranges; ``/`` is a blank page. The server is stopped on the way out."""
    directory = files if isinstance(files, Path) else None
    contents = {} if isinstance(files, Path) else dict(files)

    async def blank(_request: web.Request) -> web.Response:
        return web.Response(body=BLANK_PAGE, content_type="text/html", charset="utf-8")

    async def no_icon(_request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def serve(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        mime = content_type(name)
        if directory is not None:
            path = directory / name
            if "/" in name or name.startswith(".") or not path.is_file():
                raise web.HTTPNotFound()
            return web.FileResponse(path, headers={"Content-Type": mime, "Cache-Control": "no-store"})
        if name not in contents:
            raise web.HTTPNotFound()
        return _bytes_response(request, contents[name], mime)

    app = web.Application()
    app.router.add_get("/", blank)
    app.router.add_get("/favicon.ico", no_icon)
    app.router.add_get("/{name}", serve)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield StaticServer(f"http://{host}:{port}/")
    finally:
        await runner.cleanup()


# -- pages ----------------------------------------------------------------------------------------


class _PageLog:
    """Console messages, page errors and Chromium's media log of one page.

    Chromium sends its media log in batches (about one a second), and all that is left when a
    player is destroyed: :meth:`flush` destroys the page's players and waits for that.
    """

    def __init__(self) -> None:
        self.console: list[str] = []
        self.media: list[str] = []
        self.destroyed = 0
        self._changed = asyncio.Event()

    async def attach(self, page: Page) -> CDPSession:
        page.on("console", lambda message: self.console.append(f"{message.type}: {message.text}"))
        page.on("pageerror", lambda error: self.console.append(f"pageerror: {error}"))
        session = await page.context.new_cdp_session(page)
        session.on("Media.playerMessagesLogged", self._messages)
        session.on("Media.playerErrorsRaised", self._errors)
        session.on("Media.playerEventsAdded", self._events)
        await session.send("Media.enable")
        return session

    async def flush(self, page: Page) -> None:
        """Destroy the page's media players and wait (bounded) for their last log messages."""
        players = await page.evaluate(RELEASE_PLAYERS)
        try:
            async with asyncio.timeout(MEDIA_LOG_TIMEOUT):
                while self.destroyed < players:
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            self.media.append(
                f"(media log incomplete: {self.destroyed} of {players} players reported destroyed "
                f"within {MEDIA_LOG_TIMEOUT} s)"
            )

    def _messages(self, params: dict[str, Any]) -> None:
        for message in params.get("messages", []):
            if message.get("level") in MEDIA_LOG_LEVELS:
                self.media.append(f"{message.get('level')}: {message.get('message')}")

    def _errors(self, params: dict[str, Any]) -> None:
        for error in params.get("errors", []):
            causes = "; ".join(str(cause.get("data") or cause.get("code")) for cause in error.get("cause", []))
            data = error.get("data") or {}
            self.media.append(
                f"player error: {error.get('errorType')} {error.get('code')} {data or ''} {causes}".rstrip()
            )

    def _events(self, params: dict[str, Any]) -> None:
        for event in params.get("events", []):
            if "kWebMediaPlayerDestroyed" in str(event.get("value")):
                self.destroyed += 1
                self._changed.set()


async def _run_script(
    browser: Browser, base_url: str, script: str, arg: dict[str, Any], limit: float
) -> dict[str, Any]:
    """Run ``script`` (an async JS function of ``arg``) on a new page at ``base_url``; its report,
    with ``console`` and ``media_log`` added. A script that does not return within ``limit``
    seconds gives a report saying so (the page is closed either way)."""
    page = await browser.new_page()
    log = _PageLog()
    try:
        await log.attach(page)
        await page.goto(base_url, timeout=LOAD_TIMEOUT_MS)
        try:
            report: dict[str, Any] = await asyncio.wait_for(page.evaluate(script, arg), limit)
        except TimeoutError:
            report = {"script_timeout": f"the page script did not return within {limit:.0f} s"}
        await log.flush(page)
    finally:
        await page.context.close()
    report["console"] = log.console
    report["media_log"] = log.media
    return report


#: Shared by both scripts: waiting for events with a timeout, and time ranges as lists.
_JS_HELPERS = """
    const ranges = (r) => Array.from({length: r.length}, (_, i) => [r.start(i), r.end(i)]);
    const number = (x) => (Number.isFinite(x) ? x : String(x));
    const mediaError = (v) => (v.error ? {code: v.error.code, message: v.error.message} : null);
    // Resolves to the name of the first of `names` fired on `target`, or 'timeout'.
    const firstOf = (target, names, ms) => new Promise((resolve) => {
        const handlers = [];
        const done = (name) => {
            clearTimeout(timer);
            for (const [n, h] of handlers) target.removeEventListener(n, h);
            resolve(name);
        };
        const timer = setTimeout(() => done('timeout'), ms);
        for (const name of names) {
            const handler = () => done(name);
            handlers.push([name, handler]);
            target.addEventListener(name, handler);
        }
    });
    const watch = (video, events) => {
        for (const name of ['loadedmetadata', 'canplay', 'playing', 'waiting', 'stalled', 'seeking', 'seeked',
                            'pause', 'ended', 'error']) {
            video.addEventListener(name, () => {
                if (events.length < 200) events.push(`${name} @${video.currentTime.toFixed(3)}`);
            });
        }
    };
"""

_PLAY_FILE = (
    "async ({url, loadMs, seekMs}) => {"
    + _JS_HELPERS
    + """
    const report = {url, loadedmetadata: false, duration: null, seekable: [], seek_target: null, seeked: false,
                    current_time: null, error: null, events: []};
    const video = document.createElement('video');
    video.muted = true;
    video.preload = 'auto';
    watch(video, report.events);
    document.body.appendChild(video);
    const loaded = firstOf(video, ['loadedmetadata', 'error'], loadMs);
    video.src = url;
    const first = await loaded;
    report.loadedmetadata = first === 'loadedmetadata';
    if (report.loadedmetadata) {
        report.duration = number(video.duration);
        report.seekable = ranges(video.seekable);
        if (Number.isFinite(video.duration)) {
            report.seek_target = video.duration / 2;
            const seeked = firstOf(video, ['seeked', 'error'], seekMs);
            video.currentTime = report.seek_target;
            report.seeked = (await seeked) === 'seeked';
        }
    }
    report.current_time = video.currentTime;
    report.ready_state = video.readyState;
    report.error = mediaError(video);
    return report;
}"""
)

_APPEND_CHUNKS = (
    "async ({urls, mime, openMs, appendMs, playMs, rate}) => {"
    + _JS_HELPERS
    + """
    const report = {mime, is_type_supported: MediaSource.isTypeSupported(mime), chunks: urls.length, appended: 0,
                    append_errors: [], end_of_stream: null, source_buffered: [], buffered: [], duration: null,
                    play_error: null, ended: false, current_time: null, error: null, events: []};
    const fail = (index, stage, e) => report.append_errors.push(
        {index, stage, error: e && e.name ? `${e.name}: ${e.message}` : String(e),
         media_error: mediaError(video)});
    const video = document.createElement('video');
    video.muted = true;
    watch(video, report.events);
    document.body.appendChild(video);
    const source = new MediaSource();
    const opened = firstOf(source, ['sourceopen'], openMs);
    video.src = URL.createObjectURL(source);
    if ((await opened) !== 'sourceopen') {
        fail(-1, 'sourceopen', 'timeout');
        report.error = mediaError(video);
        return report;
    }
    let buffer;
    try {
        buffer = source.addSourceBuffer(mime);
        buffer.mode = 'segments';
    } catch (e) {
        fail(-1, 'addSourceBuffer', e);
        report.error = mediaError(video);
        return report;
    }
    for (let i = 0; i < urls.length; i++) {
        let data;
        try {
            const response = await fetch(urls[i], {cache: 'no-store'});
            if (!response.ok) throw new Error(`HTTP ${response.status}`);
            data = await response.arrayBuffer();
        } catch (e) {
            fail(i, 'fetch', e);
            break;
        }
        const updated = firstOf(buffer, ['updateend', 'error'], appendMs);
        try {
            buffer.appendBuffer(data);
        } catch (e) {
            fail(i, 'appendBuffer', e);
            break;
        }
        const outcome = await updated;
        if (outcome !== 'updateend') {
            fail(i, `${outcome} event`, outcome === 'timeout' ? 'no updateend' : 'append error');
            break;
        }
        // 'error' is followed by 'updateend' too: a decode error shows on the element.
        if (video.error) {
            fail(i, 'media element error', 'after updateend');
            break;
        }
        report.appended = i + 1;
    }
    try {
        report.source_buffered = ranges(buffer.buffered);
    } catch (e) {
        report.source_buffered = String(e);
    }
    if (source.readyState === 'open' && !buffer.updating) {
        try {
            source.endOfStream();
            report.end_of_stream = 'ok';
        } catch (e) {
            report.end_of_stream = `${e.name}: ${e.message}`;
        }
    } else {
        report.end_of_stream = `not called: MediaSource ${source.readyState}`;
    }
    report.buffered = ranges(video.buffered);
    report.duration = number(video.duration);
    if (report.append_errors.length === 0 && !video.error) {
        const finished = firstOf(video, ['ended', 'error'], playMs);
        video.playbackRate = rate;
        try {
            await video.play();
        } catch (e) {
            report.play_error = `${e.name}: ${e.message}`;
        }
        report.ended = (await finished) === 'ended';
    }
    report.current_time = video.currentTime;
    report.ready_state = video.readyState;
    report.source_ready_state = source.readyState;
    report.error = mediaError(video);
    return report;
}"""
)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/"


async def play_file(
    browser: Browser, url: str, *, load_ms: int = LOAD_TIMEOUT_MS, seek_ms: int = SEEK_TIMEOUT_MS
) -> dict[str, Any]:
    """Load ``url`` in a muted ``<video>`` (on a page of the same origin), then seek to the middle.

    The report: ``loadedmetadata`` (fired within ``load_ms``), ``duration`` (seconds, or
    ``'Infinity'``/``'NaN'`` when not finite), ``seekable`` ranges, ``seek_target`` (the middle,
    None when the duration is not finite), ``seeked`` (fired within ``seek_ms``),
    ``current_time`` after it, ``error`` (``{code, message}`` of ``video.error`` or None),
    ``events`` (the element's events in order), ``console`` and ``media_log``.
    """
    arg = {"url": url, "loadMs": load_ms, "seekMs": seek_ms}
    return await _run_script(browser, _origin(url), _PLAY_FILE, arg, (load_ms + seek_ms) / 1000 + SCRIPT_MARGIN)


async def append_chunks(
    browser: Browser,
    base_url: str,
    chunk_urls: Sequence[str],
    mime: str,
    *,
    playback_rate: float = 4.0,
    append_ms: int = APPEND_TIMEOUT_MS,
    play_ms: int = PLAY_TIMEOUT_MS,
) -> dict[str, Any]:
    """Append ``chunk_urls`` in order, one ``appendBuffer`` each, to a ``SourceBuffer`` of ``mime``
    on a muted ``<video>``, end the stream, and play it at ``playback_rate`` until ``ended``.

    The page is ``base_url`` (the chunks' origin). The report: ``is_type_supported``
    (``MediaSource.isTypeSupported(mime)``), ``append_errors`` (``{index, stage, error,
    media_error}``; index -1 for the set-up; appending stops at the first), ``appended``
    (chunks taken), ``end_of_stream``, ``source_buffered`` and ``buffered`` (``[start, end]``
    ranges of the SourceBuffer and the element), ``duration``, ``play_error``, ``ended``
    (fired within ``play_ms``), ``current_time``, ``error`` (``video.error``), ``events``,
    ``console`` and ``media_log``.
    """
    arg = {
        "urls": list(chunk_urls),
        "mime": mime,
        "openMs": LOAD_TIMEOUT_MS,
        "appendMs": append_ms,
        "playMs": play_ms,
        "rate": playback_rate,
    }
    limit = (LOAD_TIMEOUT_MS + append_ms * max(1, len(chunk_urls)) + play_ms) / 1000 + SCRIPT_MARGIN
    return await _run_script(browser, base_url, _APPEND_CHUNKS, arg, limit)
