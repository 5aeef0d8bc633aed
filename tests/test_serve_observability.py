"""What ``asyncrec serve`` bounds and reports per session, with generated tracks standing
for a publisher: the session time limit, the storage guard, structured logs (text and
JSON) and Prometheus metrics (parsed back with prometheus_client's own parser)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from pathlib import Path

import pytest
from aiortc import RTCPeerConnection
from prometheus_client.parser import text_string_to_metric_families

from asyncrec import FrameTrack, MediaStream, SampleTrack, moving_pattern, sine_tone
from asyncrec.whip._endpoint import WhipSession
from asyncrec.whip._logs import JsonFormatter, TextFormatter, configure
from asyncrec.whip._metrics import ServerMetrics
from asyncrec.whip._recording import record_sessions
from asyncrec.whip._storage import StorageGuard
from media_check import ffprobe_duration, ffprobe_streams

TIMEOUT = 20.0


def publisher(seconds: float | None = None, size: tuple[int, int] = (320, 240)) -> MediaStream:
    """A live publisher's tracks (real time, as a WebRTC peer's are)."""
    return MediaStream(
        [
            FrameTrack(moving_pattern(*size), fps=30, realtime=True, duration=seconds),
            SampleTrack(sine_tone(440), realtime=True, duration=seconds),
        ]
    )


def webm_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.webm"))


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def logs() -> Captured:
    handler = Captured()
    logger = logging.getLogger("asyncrec.whip")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old)


async def run_session(tmp_path: Path, stream: MediaStream, **options: object) -> WhipSession:
    pc = RTCPeerConnection()
    session = WhipSession("s1", pc, stream)
    record = record_sessions(tmp_path, timeslice=200, **options)  # type: ignore[arg-type]
    try:
        await asyncio.wait_for(record(session), TIMEOUT)
    finally:
        await pc.close()
    return session


async def test_a_session_ends_at_its_time_limit_with_a_finished_file(tmp_path: Path, logs: Captured) -> None:
    metrics = ServerMetrics()
    session = await run_session(
        tmp_path, publisher(), max_session_seconds=1.5, metrics=metrics, max_video_size=(160, 120)
    )
    assert session.closed
    assert session.end_reason == "time limit"
    [path] = webm_files(tmp_path)
    assert ffprobe_duration(path) == pytest.approx(1.5, abs=0.3)
    video = next(s for s in ffprobe_streams(path) if s["codec_type"] == "video")
    assert (video["width"], video["height"]) == (160, 120)  # scaled down to the bound
    started = next(r for r in logs.records if "recording" in r.getMessage())
    assert started.session == "s1"  # type: ignore[attr-defined]
    assert started.resolution == "160x120"  # type: ignore[attr-defined]
    assert started.codecs == "video/webm;codecs=vp8,opus"  # type: ignore[attr-defined]
    ended = next(r for r in logs.records if "ended" in r.getMessage())
    assert ended.reason == "time limit"  # type: ignore[attr-defined]
    assert ended.file == str(path)  # type: ignore[attr-defined]
    assert ended.bytes > 0  # type: ignore[attr-defined]
    assert ended.frames_received > 40  # type: ignore[attr-defined]

    families = {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}
    value = {f"{s.name}{sorted(s.labels.items())}": s.value for f in families.values() for s in f.samples}
    assert value["asyncrec_sessions_total[]"] == 1
    assert value["asyncrec_sessions_active[]"] == 0
    assert value["asyncrec_bytes_written_total[]"] == ended.bytes  # type: ignore[attr-defined]
    # The counts are the file's: every encoded video frame is in it (Debian's ffprobe).
    assert value["asyncrec_frames_encoded_total[('kind', 'video')]"] == video["nb_read_frames"]
    received = value["asyncrec_frames_received_total[('kind', 'video')]"]
    dropped = value["asyncrec_frames_dropped_total[('kind', 'video')]"]
    assert received >= 40
    assert value["asyncrec_frames_encoded_total[('kind', 'video')]"] + dropped <= received
    assert value["asyncrec_frames_received_total[('kind', 'audio')]"] >= 60
    assert value["asyncrec_encoder_busy_seconds_total[]"] > 0


def live(text: str) -> bool:
    return "asyncrec_sessions_active 1.0" in text and 'asyncrec_frames_encoded_total{kind="video"} 0.0' not in text


async def test_metrics_count_running_sessions_live(tmp_path: Path) -> None:
    metrics = ServerMetrics()
    pc = RTCPeerConnection()
    session = WhipSession("live", pc, publisher())
    task = asyncio.ensure_future(record_sessions(tmp_path, metrics=metrics)(session))
    try:
        async with asyncio.timeout(TIMEOUT):
            # Scraped repeatedly, as Prometheus does: there is no event to wait for.
            while not live(metrics.render().decode()):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        session._end("deleted")
        await asyncio.wait_for(task, TIMEOUT)
    finally:
        await pc.close()
    assert "asyncrec_sessions_active 0.0" in metrics.render().decode()
    metrics.refuse("unauthorized")
    assert 'asyncrec_sessions_refused_total{reason="unauthorized"} 1.0' in metrics.render().decode()


async def test_a_full_disk_ends_running_sessions_cleanly(tmp_path: Path) -> None:
    guard = StorageGuard(tmp_path, max_bytes=30_000, interval=0.1)
    await guard.start()
    try:
        session = await run_session(tmp_path, publisher(size=(640, 480)), storage=guard)
    finally:
        await guard.stop()
    assert session.end_reason == "storage full"
    assert guard.full == "quota"
    [path] = webm_files(tmp_path)
    assert ffprobe_duration(path) > 0.2  # finished, whole, decodable


async def test_free_space_below_the_minimum_is_full_at_once(tmp_path: Path) -> None:
    guard = StorageGuard(tmp_path, min_free=1 << 62)
    assert await guard.check() == "free space"
    assert guard.full == "free space"
    await asyncio.wait_for(guard.wait_full(), 1)
    assert await StorageGuard(tmp_path, min_free=0).check() is None


def test_json_logs_carry_the_fields() -> None:
    out = io.StringIO()
    configure("info", "json", stream=out)
    try:
        logging.getLogger("asyncrec.whip.test").info("session %s ended", "x", extra={"session": "x", "bytes": 12})
    finally:
        logging.getLogger().handlers.clear()
    line = json.loads(out.getvalue())
    assert line["message"] == "session x ended"
    assert line["level"] == "info"
    assert line["session"] == "x"
    assert line["bytes"] == 12
    assert line["time"].endswith("+00:00")


def test_text_logs_append_the_fields() -> None:
    record = logging.LogRecord("asyncrec", logging.INFO, "", 0, "hello", (), None)
    record.session = "abc"
    assert TextFormatter().format(record).endswith("hello session=abc")
    assert JsonFormatter().format(record).startswith("{")


@pytest.mark.parametrize(("level", "fmt"), [("loud", "text"), ("info", "xml")])
def test_bad_log_options_are_refused(level: str, fmt: str) -> None:
    with pytest.raises(ValueError, match="log"):
        configure(level, fmt)  # type: ignore[arg-type]


async def test_the_app_serves_metrics_with_the_token_health_without_and_refuses_on_a_full_disk(
    tmp_path: Path,
) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from asyncrec.whip import create_app

    app = create_app(tmp_path, token="s3cret", min_free=1 << 62)  # never that much free: full
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        health = await client.get("/healthz")
        assert health.status == 503
        assert (await health.json())["status"] == "storage full"
        assert (await client.get("/metrics")).status == 401
        bearer = {"Authorization": "Bearer s3cret"}
        offer = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
        refused = await client.post("/whip", data=offer, headers={**bearer, "Content-Type": "application/sdp"})
        assert refused.status == 507
        assert refused.headers["Retry-After"] == "30"
        assert (await client.post("/whip", data=offer, headers={"Content-Type": "application/sdp"})).status == 401
        scrape = await client.get("/metrics", headers=bearer)
        assert scrape.status == 200
        assert scrape.headers["Content-Type"].startswith("text/plain")
        text = await scrape.text()
        assert 'asyncrec_sessions_refused_total{reason="storage"} 1.0' in text
        assert 'asyncrec_sessions_refused_total{reason="unauthorized"} 1.0' in text
        assert "asyncrec_sessions_active 0.0" in text


async def test_health_is_ok_with_room(tmp_path: Path) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from asyncrec.whip import create_app

    async with TestClient(TestServer(create_app(tmp_path, token="s3cret", min_free=0), host="127.0.0.1")) as client:
        health = await client.get("/healthz")
        assert health.status == 200
        assert await health.json() == {"status": "ok", "sessions": 0}
