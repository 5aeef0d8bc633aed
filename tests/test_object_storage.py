"""ObjectSink and recover against a real S3 server (Ceph's radosgw, tests/s3_server.py).

Every object is read back from the server and checked with Debian's ffprobe/ffmpeg; the
storage faults are real: the gateway is stopped and started under a running upload.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import random
import signal
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from botocore.exceptions import ClientError

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
from asyncrec._object_storage import MIN_PART_SIZE, TAIL_SUFFIX, parse_url, prepare_s3, s3_client
from conftest import EventLog, make_stream
from media_check import ffmpeg_decode_errors, ffprobe_duration, ffprobe_streams, has_cues
from test_repair import damaged_mp4
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
    return list(chunk_stream(total, size, seed))


def chunk_stream(total: int, size: int, seed: int = 1) -> Iterator[bytes]:
    """The chunks of ``chunks``, made one at a time (as a recorder makes them)."""
    rng = random.Random(seed)
    for start in range(0, total, size):
        yield rng.randbytes(min(size, total - start))


async def until(condition: Callable[[], Any], what: str) -> None:
    """Wait until ``condition()`` (awaited if it gives an awaitable) is true; fail after TIMEOUT."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, f"still not {what} after {TIMEOUT} s"
        await asyncio.sleep(0.05)


async def tail_end(bucket: str, key: str) -> int:
    """Where the tail pieces of ``key`` in the storage end (0: there are none)."""
    async with s3_client() as client:
        answer = await client.list_objects_v2(Bucket=bucket, Prefix=f"{key}{TAIL_SUFFIX}/")
    return max((int(item["Key"].rsplit("/", 1)[1]) + item["Size"] for item in answer.get("Contents", [])), default=0)


async def noisy_recording(seconds: float) -> list[bytes]:
    """The chunks of a VP8 + Opus recording of noise: 2.1 MB a second, as a camera's
    full-rate upload would be (a test pattern compresses to almost nothing)."""
    rng = np.random.default_rng(7)
    stream = MediaStream(
        [
            FrameTrack(
                lambda i, t: rng.integers(0, 256, (240, 320, 3), dtype=np.uint8), realtime=False, duration=seconds
            ),
            SampleTrack(sine_tone(440), realtime=False, duration=seconds),
        ]
    )
    recorder = MediaRecorder(stream, mimeType="video/webm;codecs=vp8,opus", videoBitsPerSecond=16_000_000)
    log = EventLog(recorder)
    recorder.start(250)
    await log.wait_stopped()
    return [event.data for event in log.events if event.type == "dataavailable"]


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
    assert sink.finished
    assert await keys(bucket) == ["talks/one.webm"]  # no tail left
    assert await uploads(bucket) == []  # the streaming upload was aborted


async def test_a_finishing_that_would_lose_data_keeps_the_streamed_upload(
    bucket: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The finished copy would stop at the damage (FFmpeg reads no further): the object
    # must be every byte written, which the streamed upload holds, not the copy.
    recorder = MediaRecorder(make_stream(duration=12.0), mimeType="video/mp4;codecs=avc1,mp4a.40.2")
    log = EventLog(recorder)
    recorder.start(250)
    await log.wait_stopped()
    written = damaged_mp4(log.data)
    async with ObjectSink(f"s3://{bucket}/damaged.mp4", spool_dir=tmp_path) as sink:
        for start in range(0, len(written), 64 * 1024):
            await sink.write(written[start : start + 64 * 1024])
    assert not sink.finished
    data, _ = await get(bucket, "damaged.mp4")
    assert data == written
    assert "a copy would lose the rest" in caplog.text
    assert "the object is kept as streamed" in caplog.text
    assert await keys(bucket) == ["damaged.mp4"]
    assert await uploads(bucket) == []
    assert await asyncio.to_thread(lambda: list(tmp_path.iterdir())) == []  # the local copy is removed too


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
    part, size = MIN_PART_SIZE, 256 * 1024
    total = 8 * part  # more than the sink may hold: the writer must wait for the storage
    bound = 3 * (part + size) + part // 4  # what the sink may hold, as the docs state
    working = 4 * 2**20  # the HTTP client's own (about 2 MiB: bodies read in 1 MiB pieces), the test's
    first = b"the upload exists"
    sink = ObjectSink(f"s3://{bucket}/outage.bin", part_size=part, finish=False, retry_for=60, tail_every=0.2)
    await prepare_s3()  # botocore's model, loaded once per process: not the sink's memory
    await sink.write(first)
    await until(lambda: tail_end(bucket, "outage.bin"), "a first tail piece up")

    async def write_all() -> None:  # as a recorder writes: each chunk made, written, let go
        for chunk in chunk_stream(total, size, seed=2):
            await sink.write(chunk)

    # Every byte allocated from now on and not yet freed is counted: the sink's buffers,
    # the copies it makes for tail pieces, and what the requests it retries hold.
    tracemalloc.start()
    try:
        await s3.stop_gateway()
        writer = asyncio.create_task(write_all())
        await until(lambda: sink.bytes_written >= 3 * part, "three parts written")
        # Down for longer: the writer waits for room while the tail pieces and the first
        # part are tried again and again.
        await asyncio.sleep(4.0)
        _, peak_down = tracemalloc.get_traced_memory()
        held, waiting, written = sink.bytes_held, not writer.done(), sink.bytes_written
        tracemalloc.reset_peak()
        await s3.start_gateway()
        await asyncio.wait_for(writer, TIMEOUT)  # the retries went through
        await asyncio.wait_for(sink.aclose(), TIMEOUT)
        _, peak_up = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert waiting
    assert written < total
    assert held <= bound
    mib = 2**20
    assert peak_down <= bound + working, f"{peak_down / mib:.1f} MiB while down, bound {bound / mib:.1f} MiB"
    assert peak_up <= bound + working, f"{peak_up / mib:.1f} MiB once back, bound {bound / mib:.1f} MiB"
    data, _ = await get(bucket, "outage.bin")
    assert data == first + b"".join(chunk_stream(total, size, seed=2))
    assert await keys(bucket) == ["outage.bin"]


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


async def test_storage_gone_for_good_keeps_a_playable_local_copy_and_recover_saves_what_went_up(
    s3: Any, bucket: str, tmp_path: Path
) -> None:
    url = f"s3://{bucket}/gone.webm"
    recorded = await noisy_recording(4.0)  # about 8.5 MB: one part and a rest
    written = sum(map(len, recorded))
    spool = tmp_path / "spool"
    spool.mkdir()
    sink = ObjectSink(url, part_size=MIN_PART_SIZE, retry_for=2.0, tail_every=0.1, spool_dir=spool)
    for chunk in recorded:
        await sink.write(chunk)
    await until(lambda: sink.bytes_uploaded > 0, "a part uploaded")
    await until(lambda: _tails_reach(bucket, "gone.webm", written), "every byte in a tail piece")
    await s3.stop_gateway()  # for good: the last part never goes up
    with pytest.raises(SinkError, match="recover") as raised:
        await asyncio.wait_for(sink.aclose(), TIMEOUT)
    local = sink.spool_path
    assert local is not None
    assert local in str(raised.value)
    # The local copy is every byte written, finished: it plays, to the end, and seeks.
    assert ffmpeg_decode_errors(local) == ""
    assert ffprobe_duration(local) == pytest.approx(4.0, abs=0.1)
    assert has_cues(local)
    assert {s["codec_type"] for s in ffprobe_streams(local)} == {"video", "audio"}
    await s3.start_gateway()
    [result] = await recover(url, min_age=0)
    assert result.problems == []
    assert result.parts == 1
    assert result.bytes == written  # the part and the tail pieces: all of it
    assert result.finished
    data, _ = await get(bucket, "gone.webm")
    path = save(tmp_path, "recovered.webm", data)
    assert ffmpeg_decode_errors(path) == ""
    assert ffprobe_duration(path) == pytest.approx(ffprobe_duration(local), abs=0.05)
    assert has_cues(path)
    assert await keys(bucket) == ["gone.webm"]
    assert await uploads(bucket) == []


async def _tails_reach(bucket: str, key: str, end: int) -> bool:
    return await tail_end(bucket, key) >= end


# -- tail pieces left behind -----------------------------------------------------------------------


async def test_tail_pieces_hold_the_bytes_of_parts_still_uploading(
    bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A crash while parts upload must cost no more than the tail interval: the pieces go
    # on covering every byte after the uploaded parts, those of the parts on their way too.
    url = f"s3://{bucket}/slow.bin"
    sent = chunks(2 * MIN_PART_SIZE + 300_000, 256 * 1024, seed=7)
    sink = ObjectSink(url, part_size=MIN_PART_SIZE, finish=False, tail_every=0.05)
    await sink.write(sent[0])
    storage_answers = asyncio.Event()
    upload_part = sink._client.upload_part

    async def slow_upload_part(**request: Any) -> Any:
        await storage_answers.wait()
        return await upload_part(**request)

    monkeypatch.setattr(sink._client, "upload_part", slow_upload_part)
    for chunk in sent[1:]:
        await sink.write(chunk)  # two parts cut: one uploading, one waiting
    written = sum(map(len, sent))
    await until(lambda: _tails_reach(bucket, "slow.bin", written), "every byte in a tail piece")
    assert sink.bytes_uploaded == 0
    async with s3_client() as client:
        listed = await client.list_objects_v2(Bucket=bucket, Prefix=f"slow.bin{TAIL_SUFFIX}/")
    pieces = sorted((int(item["Key"].rsplit("/", 1)[1]), item["Size"]) for item in listed["Contents"])
    ends = [0] + [offset + size for offset, size in pieces]
    assert [offset for offset, _ in pieces] == ends[:-1]  # from 0 on, each byte once
    assert max(size for _, size in pieces) <= MIN_PART_SIZE // 4
    storage_answers.set()
    await asyncio.wait_for(sink.aclose(), TIMEOUT)
    data, _ = await get(bucket, "slow.bin")
    assert data == b"".join(sent)
    assert await keys(bucket) == ["slow.bin"]


@pytest.mark.parametrize("answer", ["late", "lost"])
async def test_no_tail_piece_outlives_a_close_that_meets_one_being_put(
    bucket: str, monkeypatch: pytest.MonkeyPatch, answer: str
) -> None:
    """The storage kept a tail piece whose answer the sink had not seen when it closed:
    late (still on its way), or lost (the put failed after the storage kept it). Such a
    piece must go with the others, or recover reports stale pieces of a finished recording."""
    url = f"s3://{bucket}/closing.bin"
    sent = chunks(300_000, 100_000, seed=6)
    sink = ObjectSink(url, part_size=MIN_PART_SIZE, finish=False, tail_every=0.05)
    await sink.write(sent[0])
    await until(lambda: _tails_reach(bucket, "closing.bin", len(sent[0])), "a first tail piece up")
    stored = asyncio.Event()
    put_object = sink._client.put_object

    async def put_kept_unanswered(**request: Any) -> Any:
        response = await put_object(**request)  # the storage keeps the piece
        stored.set()
        if answer == "late":
            await asyncio.sleep(1.0)  # the answer is still on its way when the close begins
            return response
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "the answer was lost"}}, "PutObject")

    monkeypatch.setattr(sink._client, "put_object", put_kept_unanswered)
    for chunk in sent[1:]:
        await sink.write(chunk)
    await asyncio.wait_for(stored.wait(), TIMEOUT)
    await asyncio.wait_for(sink.aclose(), TIMEOUT)
    data, _ = await get(bucket, "closing.bin")
    assert data == b"".join(sent)
    assert await keys(bucket) == ["closing.bin"]  # no tail piece left
    assert await recover(f"s3://{bucket}/", min_age=0) == []


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
    sent = chunks(3 * MIN_PART_SIZE, 256 * 1024, seed=4)
    # No tail pieces: they would race the first part for the room left.
    sink = ObjectSink(url, part_size=MIN_PART_SIZE, finish=False, retry_for=5, tail_every=None)
    with pytest.raises(SinkError, match="QuotaExceeded") as raised:  # noqa: PT012 - the write or the close meets it
        for chunk in sent:
            await sink.write(chunk)
        await sink.aclose()
    assert "recover" in str(raised.value)
    assert sink.bytes_uploaded == MIN_PART_SIZE  # the first part fitted
    # The bucket still full: completing the upload adds no byte, so what fitted is saved.
    [result] = await recover(url, finish=False, min_age=0)
    assert result.problems == []
    assert (result.parts, result.part_bytes, result.tail_bytes) == (1, MIN_PART_SIZE, 0)
    data, _ = await get(bucket, "full.bin")
    assert data == b"".join(sent)[:MIN_PART_SIZE]
    assert await keys(bucket) == ["full.bin"]
    assert await uploads(bucket) == []


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
