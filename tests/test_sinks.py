"""Failing sinks fail loudly: FileSink turns every OSError into one SinkError naming the
path and stays failed; a recorder whose sink fails reports "error", then the data so
far, then "stop"; ``asyncrec record`` exits 1 with one line.

/dev/full stands for a full disk (every write fails with ENOSPC); a path under a missing
directory for a permission problem, since the tests run as root.
"""

from __future__ import annotations

import asyncio
import errno
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import asyncrec
from asyncrec import FileSink, MediaRecorder
from conftest import EventLog, make_stream
from media_check import _run, _tool, ffmpeg_decode_errors
from test_repair import damaged_mp4

#: Looked up, not imported: against a copy without SinkError the tests fail one by one.
SinkError: Any = getattr(asyncrec, "SinkError", None)
FULL = "/dev/full"
RUN_TIMEOUT = 30.0


def sink_error() -> Any:
    assert SinkError is not None, "asyncrec has no SinkError"
    assert issubclass(SinkError, asyncrec.AsyncrecError)
    return SinkError


def assert_names(error: BaseException, path: str, errnum: int) -> None:
    """A SinkError naming ``path`` and the strerror, raised from the OSError."""
    assert isinstance(error, sink_error())
    assert error.path == path
    assert str(error) == f"{path}: {os.strerror(errnum)}"
    assert isinstance(error.__cause__, OSError)
    assert error.__cause__.errno == errnum


# -- FileSink --------------------------------------------------------------------------------


@pytest.mark.skipif(not os.path.exists(FULL), reason="no /dev/full")
@pytest.mark.parametrize("size", [100_000, 10], ids=["large", "small"])
async def test_a_full_disk_fails_the_chunk_once_and_close_is_quiet(size: int, monkeypatch: pytest.MonkeyPatch) -> None:
    sink = FileSink(FULL)
    # The small chunk fails too: nothing waits in a buffer until the close.
    with pytest.raises(sink_error()) as first:
        await sink.write(b"x" * size)
    assert_names(first.value, FULL, errno.ENOSPC)
    assert sink.error is first.value
    assert sink.bytes_written == 0

    # Failed for good: the next chunk raises the same error without going to a thread.
    async def no_thread(*args: object) -> None:
        raise AssertionError("a failed sink touched the file again")

    monkeypatch.setattr(asyncio, "to_thread", no_thread)
    with pytest.raises(sink_error()) as second:
        await sink.write(b"y" * size)
    assert second.value is first.value
    monkeypatch.undo()

    await sink.aclose()  # the failure was reported once: no second report
    await sink.aclose()


@pytest.mark.parametrize("case", ["missing-directory", "a-directory", "read-only-directory"])
async def test_a_file_that_cannot_be_created_fails_the_open(tmp_path: Path, case: str) -> None:
    if case == "missing-directory":
        path, errnum = tmp_path / "missing" / "out.webm", errno.ENOENT
    elif case == "a-directory":
        path, errnum = tmp_path, errno.EISDIR
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only directories")
        (tmp_path / "ro").mkdir(mode=0o500)
        path, errnum = tmp_path / "ro" / "out.webm", errno.EACCES
    with pytest.raises(sink_error()) as opened:
        async with FileSink(path):
            pytest.fail("the sink opened")
    assert_names(opened.value, str(path), errnum)

    # The write that opens the file lazily fails the same way, and only once.
    sink = FileSink(path)
    with pytest.raises(sink_error()) as written:
        await sink.write(b"chunk")
    assert_names(written.value, str(path), errnum)
    with pytest.raises(sink_error()) as again:
        await sink.write(b"chunk")
    assert again.value is written.value
    await sink.aclose()


#: Runs FileSink with a 1000-byte file size limit: the second 600-byte chunk half fits.
FILE_SIZE_LIMIT = textwrap.dedent(
    """
    import asyncio, resource, signal, sys
    from asyncrec import FileSink

    async def main(path):
        sink = FileSink(path)
        await sink.write(b"a" * 600)
        try:
            await sink.write(b"b" * 600)
        except Exception as exc:
            print(type(exc).__name__, exc, sep=": ")
        await sink.aclose()
        print(sink.bytes_written)

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death
    resource.setrlimit(resource.RLIMIT_FSIZE, (1000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    asyncio.run(main(sys.argv[1]))
    """
)


def test_a_chunk_that_does_not_fit_is_cut_off_and_the_chunks_before_stay(tmp_path: Path) -> None:
    """A full disk takes part of a chunk, then fails: the file keeps the whole chunks."""
    out = tmp_path / "out.webm"
    # In a process of its own: the limit applies to every file of the process.
    result = subprocess.run(
        [sys.executable, "-c", FILE_SIZE_LIMIT, str(out)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"SinkError: {out}: {os.strerror(errno.EFBIG)}", "600"]
    assert out.read_bytes() == b"a" * 600


async def test_a_cancelled_write_completes_before_the_next_one(tmp_path: Path) -> None:
    out = tmp_path / "out.bin"
    first, second = b"a" * 8_000_000, b"b" * 1000
    async with FileSink(out) as sink:
        writing = asyncio.ensure_future(sink.write(first))
        await asyncio.sleep(0)  # handed to its thread
        writing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await writing
        await sink.write(second)
    assert out.read_bytes() == first + second
    assert sink.bytes_written == len(first) + len(second)


async def test_a_closed_sink_refuses_chunks_and_keeps_its_file(tmp_path: Path) -> None:
    out = tmp_path / "out.bin"
    async with FileSink(out) as sink:
        await sink.write(b"recorded")
    with pytest.raises(sink_error()) as late:
        await sink.write(b"late")  # reopening would truncate the recording
    assert late.value.path == str(out)
    assert out.read_bytes() == b"recorded"


# -- a recorder with a failing sink --------------------------------------------------------


@pytest.mark.skipif(not os.path.exists(FULL), reason="no /dev/full")
async def test_a_failing_sink_ends_the_recording_with_one_error() -> None:
    # Long enough (about a second to encode here) to be still recording when the first
    # chunk fails: the error, not the end of the stream, must stop it.
    recorder = MediaRecorder(make_stream(duration=60.0), mimeType="video/webm")
    log = EventLog(recorder)
    sink = FileSink(FULL)
    async with recorder:
        recorder.ondataavailable = sink.write
        recorder.start(timeslice=100)
        await log.wait_stopped()
        assert recorder.state == "inactive"
        await recorder.stop()  # already stopped by the error: does nothing, raises nothing
    await sink.aclose()

    types = log.types
    assert types[0] == "start"
    assert types[-1] == "stop"
    assert types.count("error") == 1, types
    assert set(types[1:-1]) == {"dataavailable", "error"}, types
    # The error, then the data so far (the final chunk), then "stop".
    error_at = types.index("error")
    assert "dataavailable" in types[error_at + 1 : -1], types
    assert_names(log.events[error_at].error, FULL, errno.ENOSPC)
    assert recorder.state == "inactive"


# -- asyncrec record --------------------------------------------------------------------------


def record(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ASYNCREC_FAKE_DEVICES"}
    try:
        return subprocess.run(
            [sys.executable, "-m", "asyncrec", "record", *args],
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            env=env,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"asyncrec record {' '.join(args)} did not finish: {exc.stderr!r}", pytrace=False)


def assert_one_error_line(result: subprocess.CompletedProcess[str], path: str) -> None:
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("asyncrec: error:"), lines[0]
    assert path in lines[0]


@pytest.mark.skipif(not os.path.exists(FULL), reason="no /dev/full")
def test_record_to_a_full_disk_exits_1_with_one_line() -> None:
    result = record("--mime", "video/webm", "--source", "fake", "--duration", "2", FULL)
    assert_one_error_line(result, FULL)
    assert os.strerror(errno.ENOSPC) in result.stderr


def test_record_into_a_missing_directory_exits_1_with_one_line(tmp_path: Path) -> None:
    out = tmp_path / "missing" / "out.webm"
    result = record("--source", "fake", "--duration", "1", str(out))
    assert_one_error_line(result, str(out))
    assert not out.parent.exists()


@pytest.mark.parametrize(
    ("mime", "ext"), [("video/webm", ".webm"), ("video/mp4", ".mp4"), ("video/x-matroska", ".mkv")]
)
async def test_file_sink_leaves_a_finished_seekable_file_at_close(mime: str, ext: str, tmp_path: Path) -> None:
    path = tmp_path / f"finished{ext}"
    recorder = MediaRecorder(make_stream(duration=2.0), mimeType=mime)
    log = EventLog(recorder)
    async with FileSink(path) as sink:
        recorder.ondataavailable = sink.write
        recorder.start(250)
        await log.wait_stopped()
    probed = await asyncio.to_thread(
        _run, [_tool("ffprobe"), "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)]
    )
    assert sink.finished
    assert float(probed.stdout.strip()) == pytest.approx(2.0, abs=0.1), "a numeric duration"
    data = await asyncio.to_thread(path.read_bytes)
    if ext == ".mp4":
        assert data.index(b"moov") < data.index(b"mdat"), "the index first (faststart)"
    else:
        assert b"\x1c\x53\xbb\x6b" in data, "Cues, the index players seek with"
    assert await asyncio.to_thread(ffmpeg_decode_errors, path) == ""
    assert not await asyncio.to_thread(lambda: list(tmp_path.glob("*.repairing")))


async def test_file_sink_keeps_a_damaged_recording_as_streamed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The finished copy would stop at the damage: it must not replace what was written.
    recorder = MediaRecorder(make_stream(duration=12.0), mimeType="video/mp4;codecs=avc1,mp4a.40.2")
    log = EventLog(recorder)
    recorder.start(250)
    await log.wait_stopped()
    data = damaged_mp4(log.data)
    path = tmp_path / "damaged.mp4"
    async with FileSink(path, fsync="never") as sink:
        await sink.write(data)
    assert not sink.finished
    assert await asyncio.to_thread(path.read_bytes) == data
    assert "kept as streamed" in caplog.text
    assert "a copy would lose the rest" in caplog.text


async def test_file_sink_can_keep_the_streamed_file(tmp_path: Path) -> None:
    path = tmp_path / "streamed.webm"
    recorder = MediaRecorder(make_stream(duration=1.0))
    log = EventLog(recorder)
    async with FileSink(path, finish=False, fsync="never") as sink:
        recorder.ondataavailable = sink.write
        recorder.start(250)
        await log.wait_stopped()
    assert await asyncio.to_thread(path.read_bytes) == log.data
    with pytest.raises(ValueError, match="fsync"):
        FileSink(path, fsync="sometimes")  # type: ignore[arg-type]
