"""ObjectSink and recover against a real S3 server (Ceph's radosgw, tests/s3_server.py).

Every object is read back from the server and checked with Debian's ffprobe/ffmpeg; the
storage faults are real: the gateway is stopped and started under a running upload.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from asyncrec import (
    FrameTrack,
    MediaRecorder,
    MediaStream,
    ObjectSegmentSink,
    ObjectSink,
    SampleTrack,
    SinkError,
    moving_pattern,
    recover,
    sine_tone,
)
from asyncrec._object_storage import MIN_PART_SIZE, TAIL_SUFFIX, parse_url, s3_client
from conftest import EventLog, make_stream
from media_check import ffmpeg_decode_errors, ffprobe_duration, ffprobe_streams, has_cues
from whip_client import asyncrec_command

pytestmark = pytest.mark.usefixtures("s3_env")

HERE = Path(__file__).parent
TIMEOUT = 60.0


async def get(bucket: str, key: str) -> tuple[bytes, dict[str, Any]]:
    async with s3_client() as client:
        answer = await client.get_object(Bucket=bucket, Key=key)
        async with answer["Body"] as body:
            return await body.read(), answer


async def keys(bucket: str) -> list[str]:
    async with s3_client() as client:
        answer = await client.list_objects_v2(Bucket=bucket)
        return sorted(item["Key"] for item in answer.get("Contents", []))


async def uploads(bucket: str) -> list[dict[str, Any]]:
    async with s3_client() as client:
        return list((await client.list_multipart_uploads(Bucket=bucket)).get("Uploads", []))


def save(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def chunks(total: int, size: int, seed: int = 1) -> list[bytes]:
    rng = __import__("random").Random(seed)
    return [rng.randbytes(min(size, total - start)) for start in range(0, total, size)]


# -- the sink ------------------------------------------------------------------------------------


def test_urls_are_checked() -> None:
    assert parse_url("s3://bucket/a/b.webm") == ("bucket", "a/b.webm")
    for bad in ("bucket/key", "s3://bucket", "s3://bucket/", "http://bucket/key", "s3://b/k?x=1"):
        with pytest.raises(ValueError, match="object URL"):
            parse_url(bad)
    with pytest.raises(ValueError, match="at least"):
        ObjectSink("s3://b/k.webm", part_size=MIN_PART_SIZE - 1)


async def test_a_recording_becomes_a_finished_seekable_object(bucket: str, tmp_path: Path) -> None:
    recorder = MediaRecorder(make_stream(duration=2.0), mimeType="video/webm;codecs=vp8,opus")
    log = EventLog(recorder)
    async with ObjectSink(f"s3://{bucket}/talks/one.webm") as sink:
        recorder.ondataavailable = sink.write
        recorder.start(200)
        await log.wait_stopped()
        spool = sink.spool_path
    assert spool is not None
    assert not await asyncio.to_thread(os.path.exists, spool)  # the local copy is gone
    data, answer = await get(bucket, "talks/one.webm")
    assert answer["ContentType"] == "video/webm"
    path = save(tmp_path, "one.webm", data)
    assert ffmpeg_decode_errors(path) == ""
    assert ffprobe_duration(path) == pytest.approx(2.0, abs=0.1)
    assert has_cues(path)  # finished: seekable
    assert await keys(bucket) == ["talks/one.webm"]  # no tail left
    assert await uploads(bucket) == []  # the streaming upload was aborted


async def test_chunks_are_gathered_into_parts_and_the_object_is_every_byte(bucket: str) -> None:
    sent = chunks(13 * 1024 * 1024, 300_000)
    sink = ObjectSink(f"s3://{bucket}/raw.bin", part_size=MIN_PART_SIZE, finish=False)
    for chunk in sent:
        await sink.write(chunk)
    await sink.aclose()
    data, _ = await get(bucket, "raw.bin")
    assert data == b"".join(sent)
    assert sink.bytes_written == sink.bytes_uploaded == len(data)  # in 3 parts: 5 + 5 + 3 MiB


async def test_memory_is_bounded_while_the_storage_is_down_and_retries_carry_the_upload_over(
    s3: Any, bucket: str
) -> None:
    sent = chunks(5 * MIN_PART_SIZE, 256 * 1024, seed=2)
    sink = ObjectSink(f"s3://{bucket}/outage.bin", part_size=MIN_PART_SIZE, finish=False, retry_for=60)
    await sink.write(sent[0])  # the upload exists
    await s3.stop_gateway()
    written = 1
    # With the storage gone, a write waits once a part uploads and another waits: the
    # memory held stays about three parts. (A write whose wait is cancelled keeps its
    # chunk, as a file sink's does.)
    waited = False
    while written < len(sent) and not waited:
        try:
            await asyncio.wait_for(sink.write(sent[written]), 3.0)
        except TimeoutError:
            waited = True
        written += 1
    held = sink.bytes_written - sink.bytes_uploaded
    assert waited
    assert written < len(sent)
    assert held <= 3 * MIN_PART_SIZE + len(sent[0])
    await s3.start_gateway()
    for chunk in sent[written:]:
        await asyncio.wait_for(sink.write(chunk), TIMEOUT)  # the retries went through
    await asyncio.wait_for(sink.aclose(), TIMEOUT)
    data, _ = await get(bucket, "outage.bin")
    assert data == b"".join(sent)


async def test_storage_gone_for_good_is_a_clear_error_and_recover_saves_the_parts(
    s3: Any, bucket: str, tmp_path: Path
) -> None:
    url = f"s3://{bucket}/gone.bin"
    sent = chunks(2 * MIN_PART_SIZE + 100_000, 200_000, seed=3)
    sink = ObjectSink(url, part_size=MIN_PART_SIZE, finish=False, retry_for=2.0, tail_every=0.001)
    for chunk in sent:
        await sink.write(chunk)
    await asyncio.sleep(1.0)  # let the parts and the tail go up before the storage goes
    await s3.stop_gateway()
    with pytest.raises(SinkError, match="recover") as raised:
        await asyncio.wait_for(sink.aclose(), TIMEOUT)
    assert url in str(raised.value)
    await s3.start_gateway()
    [result] = await recover(url, finish=False, min_age=0)
    data, _ = await get(bucket, "gone.bin")
    # One part was cut while writing; the rest (under a part) was only ever in the tail.
    assert result.problems == []
    assert result.parts == 1
    assert result.tail_bytes == sum(map(len, sent)) - result.part_bytes > 0
    assert data == b"".join(sent)  # every byte written
    assert await keys(bucket) == ["gone.bin"]
    assert await uploads(bucket) == []


async def test_refused_credentials_and_a_missing_bucket_are_clear_errors(
    bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SinkError, match="NoSuchBucket"):
        await ObjectSink("s3://no-such-bucket-here/x.webm", retry_for=1).write(b"x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    with pytest.raises(SinkError, match=r"SignatureDoesNotMatch|AccessDenied|InvalidAccessKeyId"):
        await ObjectSink(f"s3://{bucket}/x.webm", retry_for=1).write(b"x")


# -- a worker killed mid-recording -----------------------------------------------------------------


async def test_a_killed_recorder_loses_at_most_its_tail_interval(bucket: str, tmp_path: Path) -> None:
    url = f"s3://{bucket}/killed.webm"
    child = await asyncio.create_subprocess_exec(
        sys.executable, str(HERE / "s3_crash_child.py"), url, stdout=asyncio.subprocess.PIPE
    )
    assert child.stdout is not None
    started = time.monotonic()
    recorded = 0.0
    try:
        while time.monotonic() - started < 4.0:
            line = await asyncio.wait_for(child.stdout.readline(), TIMEOUT)
            recorded = float(line.split()[1])  # "chunk SECONDS": media time of each chunk written
    finally:
        child.send_signal(signal.SIGKILL)
        await child.wait()
    [result] = await recover(url, min_age=0)
    assert result.finished
    assert result.problems == []
    data, _ = await get(bucket, "killed.webm")
    path = save(tmp_path, "killed.webm", data)
    assert ffmpeg_decode_errors(path) == ""
    assert {s["codec_type"] for s in ffprobe_streams(path)} == {"video", "audio"}
    # At most the tail interval (0.5 s) and a timeslice (0.2 s) behind what the child wrote.
    assert ffprobe_duration(path) >= recorded - 0.5 - 0.2 - 0.2
    assert has_cues(path)
    assert TAIL_SUFFIX not in "".join(await keys(bucket))


# -- the command line -----------------------------------------------------------------------------


async def run_cli(s3: Any, *args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | s3.env()
    proc = await asyncio.create_subprocess_exec(
        *asyncrec_command(), *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_the_command_line_records_to_an_object_and_recovers(s3: Any, bucket: str, tmp_path: Path) -> None:
    code, out, err = await run_cli(s3, "record", f"s3://{bucket}/cli.webm", "--source", "fake", "--duration", "2")
    assert code == 0, err
    assert f"s3://{bucket}/cli.webm: video/webm" in out
    data, _ = await get(bucket, "cli.webm")
    path = save(tmp_path, "cli.webm", data)
    assert ffprobe_duration(path) == pytest.approx(2.0, abs=0.5)
    assert has_cues(path)
    code, out, err = await run_cli(s3, "recover", f"s3://{bucket}/")
    assert (code, out) == (0, f"s3://{bucket}/: nothing to recover\n"), err
    code, out, err = await run_cli(s3, "record", "s3://no-such-bucket-here/x.webm", "--source", "fake")
    assert code == 1
    assert err.startswith("asyncrec: error: s3://no-such-bucket-here/x.webm: ")
    assert "NoSuchBucket" in err
    assert err.count("\n") == 1
    code, _, err = await run_cli(s3, "recover", "http://x/y")
    assert code == 2
    assert "s3://" in err


# -- segments as objects ---------------------------------------------------------------------------


async def test_segments_go_up_as_separate_objects_that_each_play(bucket: str, tmp_path: Path) -> None:
    recorder = MediaRecorder(make_stream(duration=3.0), mimeType="video/webm;codecs=vp8,opus", independent_chunks=True)
    log = EventLog(recorder)
    uploaded: list[str] = []
    template = f"s3://{bucket}/seg/{{index:03d}}.webm"
    async with ObjectSegmentSink(template, max_duration=1.0, on_segment=lambda s: uploaded.append(s.path)) as sink:
        recorder.ondataavailable = sink.write
        recorder.start(500)
        await log.wait_stopped()
    assert uploaded == [template.format(index=n) for n in range(len(uploaded))]
    assert len(uploaded) >= 3
    assert await keys(bucket) == [f"seg/{n:03d}.webm" for n in range(len(uploaded))]
    for n, segment in enumerate(sink.segments):
        data, answer = await get(bucket, f"seg/{n:03d}.webm")
        assert answer["ContentType"] == "video/webm"
        path = save(tmp_path, f"{n}.webm", data)
        assert ffmpeg_decode_errors(path) == ""
        assert has_cues(path)  # each one seekable on its own
        assert ffprobe_duration(path) == pytest.approx(segment.duration / 1000, abs=0.05)
    last = sink.segments[-1]
    assert last.start + last.duration == pytest.approx(3000, abs=100)  # the whole recording


async def test_a_full_bucket_is_a_clear_error_and_what_fitted_is_recoverable(s3: Any, bucket: str) -> None:
    await asyncio.to_thread(s3.set_bucket_quota, bucket, 6 * 1024 * 1024)
    url = f"s3://{bucket}/full.bin"
    sink = ObjectSink(url, part_size=MIN_PART_SIZE, finish=False, retry_for=5)
    with pytest.raises(SinkError, match="QuotaExceeded") as raised:  # noqa: PT012 - the write or the close meets it
        for chunk in chunks(3 * MIN_PART_SIZE, 256 * 1024, seed=4):
            await sink.write(chunk)
        await sink.aclose()
    assert "recover" in str(raised.value)
    assert sink.bytes_uploaded == MIN_PART_SIZE  # the first part fitted


async def test_a_storage_restarted_mid_recording_loses_nothing(s3: Any, bucket: str, tmp_path: Path) -> None:
    stream = MediaStream(
        [FrameTrack(moving_pattern(320, 240), fps=30, realtime=True), SampleTrack(sine_tone(440), realtime=True)]
    )
    recorder = MediaRecorder(stream, mimeType="video/webm;codecs=vp8,opus", videoBitsPerSecond=12_000_000)
    log = EventLog(recorder)
    async with ObjectSink(f"s3://{bucket}/outage.webm", part_size=MIN_PART_SIZE) as sink:
        recorder.ondataavailable = sink.write
        recorder.start(200)
        await asyncio.sleep(2.0)  # media recorded before the outage
        await s3.stop_gateway()
        await asyncio.sleep(3.0)  # the outage
        await s3.start_gateway()
        await asyncio.sleep(1.0)
        recorder.stop()
        await log.wait_stopped()
    assert "error" not in log.types
    stats = recorder.statistics()
    audio = next(t for t in stats.tracks if t.kind == "audio")
    assert audio.frames_encoded == audio.frames_in
    data, _ = await get(bucket, "outage.webm")
    path = save(tmp_path, "outage.webm", data)
    assert ffmpeg_decode_errors(path) == ""
    assert ffprobe_duration(path) == pytest.approx(stats.recorded_time, abs=0.3)
    assert ffprobe_duration(path) > 5.5
    assert has_cues(path)


async def test_recover_leaves_a_live_recording_alone(bucket: str) -> None:
    # Workers share a prefix: recovering a dead one's recordings must not touch the others'.
    url = f"s3://{bucket}/live/one.bin"
    sent = chunks(MIN_PART_SIZE + 300_000, 100_000, seed=5)
    sink = ObjectSink(url, part_size=MIN_PART_SIZE, finish=False, tail_every=0.2)
    for chunk in sent[:-3]:
        await sink.write(chunk)
    await asyncio.sleep(0.5)  # a part and a tail piece up: recent activity
    [result] = await recover(f"s3://{bucket}/live/")
    assert result.problems == ["still being recorded (recent activity): skipped"]
    for chunk in sent[-3:]:
        await sink.write(chunk)  # the upload is still there, and goes on
    await sink.aclose()
    data, _ = await get(bucket, "live/one.bin")
    assert data == b"".join(sent)
    assert await keys(bucket) == ["live/one.bin"]  # no tail piece left
