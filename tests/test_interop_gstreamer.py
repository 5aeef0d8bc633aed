"""GStreamer's webrtcbin (Debian's GStreamer 1.22) publishes VP8 or H.264, with Opus, to
``asyncrec serve`` over WHIP, and the recording decodes.

GStreamer's DTLS serves an RSA certificate, which only the endpoint's widened cipher list
(asyncrec.whip._dtls) accepts. The publisher is tests/gst_whip_publish.py, run by Debian's
python3 with GStreamer's Python bindings; it gathers ICE candidates on 127.0.0.1 only
(webrtcbin's ``add-local-ip-address``: libnice's own discovery skips loopback), so no
network namespace is needed.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
from pathlib import Path

import pytest

from whip_client import check_recording, finished_recordings, names, serve_process, wait_until

SYSTEM_PYTHON = "/usr/bin/python3"
SCRIPT = Path(__file__).with_name("gst_whip_publish.py")
SECONDS = 3.0
#: Sent for SECONDS once connected; the recording also holds what arrived while connecting.
DURATION = (SECONDS - 0.8, SECONDS + 1.5)
PUBLISH_TIMEOUT = 60.0
PACKAGES = (
    "python3-gi gir1.2-gst-plugins-bad-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good "
    "gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-nice"
)
#: Element -> the Debian package that has it.
ELEMENTS = {
    "webrtcbin": "gstreamer1.0-plugins-bad",
    "dtlssrtpenc": "gstreamer1.0-plugins-bad",
    "nicesrc": "gstreamer1.0-nice",
    "vp8enc": "gstreamer1.0-plugins-good",
    "rtpvp8pay": "gstreamer1.0-plugins-good",
    "x264enc": "gstreamer1.0-plugins-ugly",
    "rtph264pay": "gstreamer1.0-plugins-good",
    "opusenc": "gstreamer1.0-plugins-base",
    "rtpopuspay": "gstreamer1.0-plugins-good",
    "videotestsrc": "gstreamer1.0-plugins-base",
    "audiotestsrc": "gstreamer1.0-plugins-base",
}
PROBE = f"""
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
from gi.repository import Gst, GstSdp, GstWebRTC
Gst.init(None)
print(" ".join(name for name in {sorted(ELEMENTS)!r} if Gst.ElementFactory.find(name) is None))
"""


@pytest.fixture(scope="module")
def gstreamer() -> str:
    """Debian's python3 with GStreamer's bindings and every element the publisher uses; a
    missing one fails the test (CI installs them), never skips it."""
    if not Path(SYSTEM_PYTHON).is_file():
        pytest.fail(f"{SYSTEM_PYTHON} not found: apt-get install python3 {PACKAGES}", pytrace=False)
    probe = subprocess.run([SYSTEM_PYTHON, "-c", PROBE], capture_output=True, text=True, timeout=60, check=False)
    if probe.returncode != 0:
        pytest.fail(
            f"GStreamer's Python bindings do not load in {SYSTEM_PYTHON} ({probe.stderr.strip()[-300:]}): "
            f"apt-get install {PACKAGES}",
            pytrace=False,
        )
    if missing := probe.stdout.split():
        wanted = sorted({ELEMENTS[name] for name in missing})
        pytest.fail(f"GStreamer elements missing: {missing}: apt-get install {' '.join(wanted)}", pytrace=False)
    return SYSTEM_PYTHON


async def publish(python: str, url: str, codec: str) -> str:
    """Run the publisher to its end (bounded); its output."""
    command = [python, str(SCRIPT), url, "--codec", codec, "--seconds", str(SECONDS)]
    command += ["--ice-address", "127.0.0.1", "--timeout", str(PUBLISH_TIMEOUT - 10)]
    proc = await asyncio.create_subprocess_exec(
        *command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), PUBLISH_TIMEOUT)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = output.decode(errors="replace")
    assert proc.returncode == 0, f"gst_whip_publish.py exited {proc.returncode}:\n{text}"
    return text


@pytest.mark.slow
@pytest.mark.parametrize(("codec", "rtpmap"), [("vp8", "VP8/90000"), ("h264", "H264/90000")])
async def test_gstreamer_webrtcbin_publishes_to_asyncrec_serve(
    gstreamer: str, codec: str, rtpmap: str, tmp_path: Path
) -> None:
    out = tmp_path / "recordings"
    async with serve_process(out, log=tmp_path / "serve.log") as server:
        text = await publish(gstreamer, server.url + "whip", codec)
        [offer] = [line for line in text.splitlines() if " candidates: " in line]
        addresses = set(re.findall(r"a=candidate:\S+ \d+ \S+ \d+ (\S+) ", offer))
        assert addresses == {"127.0.0.1"}, f"a candidate off loopback: {offer}"
        [answer] = [line for line in text.splitlines() if "answer codecs" in line]
        assert rtpmap in answer, answer
        assert "opus/48000/2" in answer.lower(), answer
        assert "DELETE answered 200" in text, text
        await wait_until(lambda: bool(out.exists() and finished_recordings(out)), 15, "the recording to be final")
        assert await server.interrupt() == 0, server.stderr()
    assert "Traceback" not in server.stderr()
    # VP8 is copied into the default WebM, H.264 transcoded to VP8 (Opus copied either way).
    assert ("copied=video,audio" if codec == "vp8" else "copied=audio") in server.stderr()
    [recording] = finished_recordings(out)
    assert names(out) == [recording.name], "no .part file left"
    check_recording(recording, video="vp8", audio="opus", size=(320, 240), duration=DURATION)
