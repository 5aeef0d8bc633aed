"""The publishing page of ``asyncrec serve`` in headless Chromium (Playwright), fake camera and
microphone: start, publish a few seconds, stop, and the recording it leaves."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest
from playwright.async_api import TimeoutError as PlaywrightTimeoutError
from playwright.async_api import async_playwright

from whip_client import check_recording, finished_recordings, names, serve_process

#: Chromium from the distribution (CI installs Debian's): never Playwright's own download.
CHROMIUM = os.environ.get("ASYNCREC_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-gpu",
    "--disable-quic",
]
PUBLISH_SECONDS = 3.0
DURATION = (1.5, 5.0)
#: Milliseconds, for Playwright's waits.
CONNECT_TIMEOUT_MS = 30_000
STOP_TIMEOUT_MS = 30_000


def state_is(state: str) -> str:
    return f"document.getElementById('state').textContent === {state!r}"


@pytest.fixture
def chromium() -> str:
    """Chromium's path; a missing Chromium fails the test (CI installs it), never skips it."""
    if not Path(CHROMIUM).is_file():
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: the browser test needs it (apt-get install chromium, "
            "or set ASYNCREC_CHROMIUM)",
            pytrace=False,
        )
    return CHROMIUM


@pytest.mark.slow
async def test_page_publishes_fake_camera_and_microphone_and_lists_the_recording(chromium: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    async with serve_process(out, log=tmp_path / "serve.log") as server, async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            console: list[str] = []
            page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
            page.on("pageerror", lambda error: console.append(f"pageerror: {error}"))
            await page.goto(server.url)
            assert await page.text_content("#state") == "idle"
            await page.click("#start")
            try:
                await page.wait_for_function(state_is("connected"), timeout=CONNECT_TIMEOUT_MS)
            except PlaywrightTimeoutError as exc:
                state = await page.text_content("#state")
                error = await page.text_content("#error")
                raise AssertionError(
                    f"page not connected: state {state!r}, error {error!r}, console {console}, "
                    f"server stderr {server.stderr()!r}"
                ) from exc
            await asyncio.sleep(PUBLISH_SECONDS)
            assert await page.text_content("#timer") != "00:00", "the timer does not run"
            assert await page.is_enabled("#stop")
            await page.click("#stop")
            await page.wait_for_function(state_is("stopped"), timeout=STOP_TIMEOUT_MS)
            await page.wait_for_selector("#recordings tr", timeout=STOP_TIMEOUT_MS)
            rows = await page.locator("#recordings tr td:first-child").all_text_contents()
            assert await page.text_content("#error") == ""
            assert not [line for line in console if line.startswith(("error", "pageerror"))], console
        finally:
            await browser.close()
        assert await server.interrupt() == 0, server.stderr()
    assert "Traceback" not in server.stderr()
    # Chromium's VP8 and Opus, written as it sent them (passthrough).
    assert "copied=video,audio" in server.stderr(), server.stderr()
    [path] = finished_recordings(out)
    assert rows == [path.name]
    assert names(out) == [path.name], "no .part file left"
    check_recording(path, video="vp8", audio="opus", size=(640, 480), duration=DURATION)
