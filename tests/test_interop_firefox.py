"""Firefox ESR (Debian's ``firefox-esr``), headless, with fake camera and microphone,
publishes VP8 + Opus to ``asyncrec serve`` over WHIP, and the recording decodes.

Playwright cannot drive a stock Firefox, so Firefox loads tests/firefox_publish.html, which
publishes by itself for a few seconds, DELETEs its session and logs each step to the
console; ``devtools.console.stdout.content`` puts those lines on Firefox's stdout. The page
comes from its own origin (Python's http.server), so it also exercises the server's CORS
(``--allow-origin``).

Firefox gathers ICE candidates on every interface it may (only its default-route address
until the page holds a camera/microphone permission, hence ``permissions.default.*`` in
``user.js``; loopback only with ``media.peerconnection.ice.loopback``), so the server, the
page's server and Firefox all run in a network namespace of the test's own with only
``lo`` (tests/netns.py): every candidate is on loopback, and nothing Firefox does reaches
another host.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlencode

import pytest

import whip_client
from netns import loopback_namespace
from whip_client import check_recording, finished_recordings, free_port, names, serve_process, wait_until

FIREFOX = os.environ.get("ASYNCREC_FIREFOX") or shutil.which("firefox-esr") or "/usr/bin/firefox-esr"
PAGE = Path(__file__).with_name("firefox_publish.html")
SECONDS = 3.0
DURATION = (SECONDS - 0.8, SECONDS + 1.5)
#: From Firefox's start to the page's last line (Firefox's own start takes a few seconds).
PAGE_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
PREFIX = "asyncrec-test: "
USER_JS = {
    "media.navigator.streams.fake": True,
    "media.navigator.permission.disabled": True,
    # Without a held permission Firefox gathers its default-route address only.
    "permissions.default.camera": 1,
    "permissions.default.microphone": 1,
    "media.peerconnection.ice.loopback": True,
    "media.peerconnection.ice.obfuscate_host_addresses": False,
    "devtools.console.stdout.content": True,
    # Quiet: no first-run pages, updates, reports or remote settings.
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "browser.aboutwelcome.enabled": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "datareporting.healthreport.uploadEnabled": False,
    "toolkit.telemetry.enabled": False,
    "toolkit.telemetry.reportingpolicy.firstRun": False,
    "app.update.enabled": False,
    "app.normandy.enabled": False,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
}


@pytest.fixture
def firefox() -> str:
    """Firefox ESR's path; a missing one fails the test (CI installs it), never skips it."""
    if not Path(FIREFOX).is_file():
        pytest.fail(
            f"Firefox not found at {FIREFOX}: apt-get install firefox-esr (or set ASYNCREC_FIREFOX)",
            pytrace=False,
        )
    return FIREFOX


def write_profile(folder: Path) -> Path:
    """A fresh profile whose user.js holds USER_JS."""
    folder.mkdir()
    lines = [f"user_pref({json.dumps(name)}, {json.dumps(value)});" for name, value in USER_JS.items()]
    (folder / "user.js").write_text("\n".join(lines) + "\n")
    return folder


@contextlib.asynccontextmanager
async def process_group(*command: str, **options: object) -> AsyncIterator[asyncio.subprocess.Process]:
    """``command`` in a session of its own; on the way out its whole process group (Firefox's
    content processes too) gets SIGTERM, then SIGKILL."""
    proc = await asyncio.create_subprocess_exec(*command, start_new_session=True, **options)  # type: ignore[arg-type]
    try:
        yield proc
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
                break
            except TimeoutError:
                continue
        # The group may outlive its leader for a moment: make sure none of it is left.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


async def page_lines(proc: asyncio.subprocess.Process, lines: list[str], output: list[str]) -> None:
    """Collect Firefox's stdout, and the page's lines, until the page is done or fails."""
    assert proc.stdout is not None
    while raw := await proc.stdout.readline():
        text = raw.decode(errors="replace").rstrip()
        output.append(text)
        if PREFIX in text:
            line = text.split(PREFIX, 1)[1].rstrip('"')
            lines.append(line)
            if line == "done" or line.startswith("error"):
                return


@pytest.mark.slow
async def test_firefox_publishes_vp8_and_opus_to_asyncrec_serve(
    firefox: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "recordings"
    www = tmp_path / "www"
    www.mkdir()
    shutil.copy(PAGE, www / PAGE.name)
    profile = write_profile(tmp_path / "profile")
    page_port = free_port()
    origin = f"http://127.0.0.1:{page_port}"
    async with loopback_namespace() as enter:
        command = whip_client.asyncrec_command()
        monkeypatch.setattr(whip_client, "asyncrec_command", lambda: [*enter, *command])
        async with (
            serve_process(out, "--allow-origin", origin, log=tmp_path / "serve.log") as server,
            process_group(
                *enter,
                sys.executable,
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                "--directory",
                str(www),
                str(page_port),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            ),
        ):
            url = f"{origin}/{PAGE.name}?" + urlencode({"whip": server.url + "whip", "seconds": SECONDS})
            env = {**os.environ, "HOME": str(tmp_path), "MOZ_HEADLESS": "1", "MOZ_CRASHREPORTER_DISABLE": "1"}
            lines: list[str] = []
            output: list[str] = []
            started = time.monotonic()
            async with process_group(
                *enter,
                firefox,
                "--headless",
                "--no-remote",
                "--profile",
                str(profile),
                url,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
            ) as browser:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(page_lines(browser, lines, output), PAGE_TIMEOUT)
            took = time.monotonic() - started
            report = f"page lines {lines}; Firefox output (last 40 lines):\n" + "\n".join(output[-40:])
            assert lines, f"the page said nothing in {took:.1f} s: {report}"
            assert lines[-1] == "done", f"the page did not finish in {took:.1f} s: {report}"
            [candidates] = [line for line in lines if line.startswith("candidates ")]
            addresses = {candidate.split()[4] for candidate in candidates.removeprefix("candidates ").split(" | ")}
            assert "127.0.0.1" in addresses, candidates
            assert addresses <= {"127.0.0.1", "::1"}, f"a candidate off loopback: {candidates}"
            [answer] = [line for line in lines if line.startswith("answer codecs ")]
            assert "VP8/90000" in answer, answer
            assert "opus/48000/2" in answer, answer
            assert "DELETE answered 200" in lines, report
            await wait_until(lambda: bool(out.exists() and finished_recordings(out)), 15, "the recording to be final")
            assert await server.interrupt() == 0, server.stderr()
    assert "Traceback" not in server.stderr()
    assert "copied=video,audio" in server.stderr(), "Firefox's VP8 and Opus are copied"
    [recording] = finished_recordings(out)
    assert names(out) == [recording.name], "no .part file left"
    check_recording(recording, video="vp8", audio="opus", size=(640, 480), duration=DURATION)
