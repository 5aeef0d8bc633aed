"""SIGKILL at any moment: a FileSink recording survives its process.

* Killed while recording (real-time fake camera and microphone, WebM VP8+Opus, 200 ms
  timeslice, at a dozen seeded moments): the file decodes to its end and holds every chunk
  the process said was durable (``FileSink.write`` had returned), so at most the chunk in
  flight (one timeslice) of what was recorded is lost; ``asyncrec.repair`` makes it a
  finished file (numeric duration, Cues in mkvinfo) that decodes cleanly.
* Killed while finishing (``FileSink.aclose()`` remuxing the streamed file): the path holds
  either the intact streamed file or the complete finished one, with the whole recording;
  nothing left beside it but, at most, the remux's clearly named ``<name>.repairing``, and a
  new recording to the same path finishes normally.
* Not killed: a finished WebM/Matroska file has a numeric duration and Cues (mkvinfo), a
  finished MP4 its ``moov`` before its ``mdat``.

The recording process is ``tests/crash_child.py``; it says on stdout what is durable. Debian's
ffprobe/ffmpeg and mkvtoolnix's mkvinfo check the files; a missing tool fails the test.
"""

from __future__ import annotations

import asyncio
import os
import queue
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest

from asyncrec import FileSink, MediaRecorder, repair
from conftest import EventLog, make_stream
from media_check import _run, _tool, ffmpeg_decode_errors, ffprobe_packet_spans, has_cues
from media_probe import iso_boxes

CHILD = Path(__file__).with_name("crash_child.py")
WEBM = "video/webm;codecs=vp8,opus"
TIMESLICE_MS = 200
#: A live child nobody kills stops by itself after this long (s).
LIVE_LIMIT = 30.0
#: Starting Python and importing PyAV and aiortc, then the first chunk, on a busy machine (s).
LINE_TIMEOUT = 30.0
#: For the kill and the end of the child's stdout (s).
REAP_TIMEOUT = 10.0
#: Matroska stores times in whole milliseconds (s).
MS = 0.0015


def spread(seed: int, count: int, low: float, high: float) -> list[float]:
    """``count`` seeded pseudo-random values of [low, high], one in each of its ``count`` equal parts."""
    draw = random.Random(seed)
    width = (high - low) / count
    return [round(low + (part + draw.random()) * width, 4) for part in range(count)]


#: A dozen moments to kill at (s after the first durable chunk), spread over 0.3-4 s.
KILL_MOMENTS = spread(20240611, 12, 0.3, 4.0)
#: Wall time a live recording's media may lag behind (s): capture, encoding, the open cluster.
LATENCY = 0.15
#: ffmpeg's only complaint about a file whose last cluster was cut by the kill.
TORN_END = "File ended prematurely"


# -- the child process --------------------------------------------------------------------------------


@dataclass
class Child:
    """A running ``crash_child.py``; its stdout lines are read on a thread, with arrival times."""

    process: subprocess.Popen[str]
    log: Path
    lines: list[tuple[float, str]] = field(default_factory=list)
    _queue: queue.Queue[tuple[float, str] | None] = field(default_factory=queue.Queue)
    _eof: bool = False

    def read(self, stdout: IO[str]) -> None:
        for line in stdout:
            self._queue.put((time.monotonic(), line.rstrip("\n")))
        self._queue.put(None)

    def next_line(self, deadline: float) -> tuple[float, str] | None:
        """The next line, or None at the end of stdout; fails the test past ``deadline``."""
        if self._eof:
            return None
        try:
            item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            pytest.fail(f"no line from the child in time; its stderr:\n{self.stderr()}", pytrace=False)
        if item is None:
            self._eof = True
            return None
        self.lines.append(item)
        return item

    def wait_for(self, word: str, timeout: float = LINE_TIMEOUT) -> tuple[float, str]:
        """The next line starting with ``word`` (lines before it are kept too)."""
        deadline = time.monotonic() + timeout
        while (item := self.next_line(deadline)) is not None:
            if item[1].split()[0] == word:
                return item
        pytest.fail(f"the child ended before saying {word!r}; its stderr:\n{self.stderr()}", pytrace=False)

    def read_until(self, moment: float) -> None:
        """Take the lines that arrive until ``moment`` (monotonic)."""
        while time.monotonic() < moment:
            try:
                item = self._queue.get(timeout=max(0.0, moment - time.monotonic()))
            except queue.Empty:
                return
            if item is None:
                self._eof = True
                pytest.fail(f"the child ended before it was killed; its stderr:\n{self.stderr()}", pytrace=False)
            self.lines.append(item)

    def kill(self) -> float:
        """SIGKILL it (it must still be running) and reap it; the moment of the kill."""
        assert self.process.poll() is None, f"the child exited early; its stderr:\n{self.stderr()}"
        moment = time.monotonic()
        self.process.kill()
        self.process.wait(REAP_TIMEOUT)
        return moment

    def drain(self) -> None:
        """Take what the child wrote before it died (the end of stdout is near once it is dead)."""
        deadline = time.monotonic() + REAP_TIMEOUT
        while self.next_line(deadline) is not None:
            pass

    def durable_end(self) -> float:
        """End (s) of the media of the last chunk the child said was durable."""
        ends = [float(line.split()[2]) / 1000 for _, line in self.lines if line.startswith("chunk ")]
        assert ends, "no chunk was durable"
        return max(ends)

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


@contextmanager
def child(mode: str, path: Path, seconds: float, logs: Path, linger: float = 0.0) -> Iterator[Child]:
    """``crash_child.py`` recording to ``path``; killed and reaped on the way out in any case."""
    logs.mkdir(exist_ok=True)
    log = logs / f"{path.name}.stderr"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, str(CHILD), mode, str(path), WEBM, str(TIMESLICE_MS), str(seconds), str(linger)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            bufsize=1,
        )
    assert process.stdout is not None
    running = Child(process, log)
    reader = threading.Thread(target=running.read, args=(process.stdout,), name="crash-child-stdout", daemon=True)
    reader.start()
    try:
        yield running
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(REAP_TIMEOUT)
        reader.join(REAP_TIMEOUT)
        process.stdout.close()


# -- the files ----------------------------------------------------------------------------------------


def format_duration(path: Path) -> float | None:
    """ffprobe's format duration of ``path`` (s); None when the file does not state one."""
    result = _run([_tool("ffprobe"), "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)])
    assert result.returncode == 0, f"ffprobe failed on {path}: {result.stderr.strip()}"
    text = result.stdout.strip()
    return None if text in ("", "N/A") else float(text)


def media_end(path: Path) -> tuple[float, dict[int, float]]:
    """End (s) of the last packet of ``path`` (pts + duration), and per stream index."""
    spans = ffprobe_packet_spans(path)
    assert spans, f"no packets in {path}"
    ends = {index: last for index, (_first, last) in spans.items()}
    return max(ends.values()), ends


def assert_decodes_to_its_end(path: Path) -> str:
    """Debian's ffmpeg decodes every stream of ``path``; the only complaint allowed is that of a
    last cluster cut by the kill (a chunk being written). Returns the complaint ('' if none)."""
    errors = ffmpeg_decode_errors(path)
    assert all(TORN_END in line for line in errors.splitlines()), f"{path} does not decode:\n{errors}"
    return errors


# -- killed while recording ------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", KILL_MOMENTS, ids=[f"{moment:.2f}s" for moment in KILL_MOMENTS])
def test_sigkill_while_recording_loses_at_most_the_chunk_in_flight(kill_after: float, tmp_path: Path) -> None:
    killed = tmp_path / "killed.webm"
    with child("live", killed, LIVE_LIMIT, tmp_path / "logs") as running:
        started = float(running.wait_for("start")[1].split()[1])
        first, _line = running.wait_for("chunk")
        running.read_until(first + kill_after)
        killed_at = running.kill()
        running.drain()
    durable = running.durable_end()
    recorded = killed_at - started  # wall time recorded before the kill: the media of a live source

    assert sorted(p.name for p in tmp_path.iterdir()) == ["killed.webm", "logs"], "nothing beside the recording"
    torn = assert_decodes_to_its_end(killed)
    end, ends = media_end(killed)
    repaired = tmp_path / "repaired.webm"
    result = repair(killed, repaired)
    stated = format_duration(repaired)
    last_line = max(arrival for arrival, line in running.lines if line.startswith("chunk "))
    print(
        f"kill {kill_after:.3f}s after the first chunk, {killed_at - last_line:.3f}s after the last durable one: "
        f"recorded {recorded:.3f}s, durable {durable:.3f}s (said {last_line - started:.3f}s in), "
        f"in the file {end:.3f}s (per stream {', '.join(f'{e:.3f}' for e in ends.values())}), "
        f"lost {recorded - end:.3f}s; repaired {stated}s, truncated={result.truncated}, torn={torn!r}"
    )

    # Everything the child said was durable is in the file, decodable, in every stream.
    assert end >= durable - MS, f"the file ends at {end:.3f}s, before the durable {durable:.3f}s"
    assert min(ends.values()) >= durable - TIMESLICE_MS / 1000, f"a stream stops early: {ends}"
    # So at most one timeslice of what was recorded is missing (the chunk in flight), give or
    # take the latency between the source and the muxer.
    lost = recorded - end
    assert lost <= TIMESLICE_MS / 1000 + LATENCY, f"recorded {recorded:.3f}s, the file holds {end:.3f}s"

    # Repaired: finished, seekable, clean, and all of it kept.
    assert ffmpeg_decode_errors(repaired) == ""
    assert stated is not None, "a repaired file states its duration"
    assert stated >= durable - MS
    assert result.duration >= durable - MS
    assert has_cues(repaired), "a repaired file has Cues"
    if not torn:
        assert not result.truncated, "a file cut between chunks ends cleanly"


# -- killed while finishing -------------------------------------------------------------------------

#: Seconds of generated media the finishing child records (faster than real time).
FINISH_MEDIA = 9.0
#: How long the finishing child stays after aclose() returned, to be killed still (s).
LINGER = 10.0
#: A kill ``delay`` s after the "finishing" line, or as soon as the remux's temporary file exists.
FINISH_KILLS = [
    pytest.param("line", 0.0, id="at-the-line"),
    pytest.param("temporary", 0.0, id="when-the-temporary-appears"),
    # Finishing 9 s takes some 10-15 ms here: before, during and after the remux.
    *(pytest.param("line", delay, id=f"{delay * 1000:.1f}ms-after") for delay in spread(7, 4, 0.001, 0.03)),
]


@pytest.mark.slow
@pytest.mark.parametrize(("when", "delay"), FINISH_KILLS)
def test_sigkill_while_finishing_leaves_the_streamed_or_the_finished_file(
    when: str, delay: float, tmp_path: Path
) -> None:
    out = tmp_path / "rec" / "out.webm"
    out.parent.mkdir()
    temporary = out.with_name(out.name + ".repairing")
    # The child lingers after finishing: every kill lands in a running process.
    with child("fast", out, FINISH_MEDIA, tmp_path / "logs", linger=LINGER) as running:
        running.wait_for("stopped")
        durable = running.durable_end()
        finishing, _line = running.wait_for("finishing")
        if when == "temporary":
            deadline = finishing + 1.0  # past the remux: it was over before the first look
            while not temporary.exists() and running.process.poll() is None and time.monotonic() < deadline:
                pass  # spin: the remux takes some 10 ms
        else:
            running.read_until(finishing + delay)
        killed_at = running.kill()
        running.drain()
    said = [line.split()[0] for _, line in running.lines]
    leftovers = sorted(p.name for p in out.parent.iterdir() if p != out)
    finished = has_cues(out)
    stated = format_duration(out)
    end, _ends = media_end(out)
    print(
        f"kill {when} +{delay * 1000:.1f}ms ({(killed_at - finishing) * 1000:.1f}ms after the line): "
        f"{'finished' if finished else 'streamed'} file, duration {stated}, media {end:.3f}s "
        f"(durable {durable:.3f}s), child said {said[-2:]}, leftovers {leftovers}"
    )

    # The path holds the whole recording, decodable to its end: nothing torn.
    assert ffmpeg_decode_errors(out) == ""
    assert end >= durable - MS
    assert end == pytest.approx(FINISH_MEDIA, abs=0.1)
    if finished:
        assert stated == pytest.approx(end, abs=0.05), "a finished file states its duration"
    else:
        assert "finished" not in said, "aclose() returned but the file is not finished"
    # Beside it, at most the remux's own, clearly named temporary file.
    assert set(leftovers) <= {temporary.name}, leftovers
    if temporary.exists():
        assert not finished, "killed while remuxing, yet the path holds a finished file"

    # A streamed file left by the kill is finished by repairing it in place, stale temporary
    # file or not.
    if not finished:
        repair(out, out)
        assert has_cues(out)
        assert format_duration(out) == pytest.approx(end, abs=0.05)
        assert not temporary.exists()
    # The path still works: the next recording to it is finished normally.
    asyncio.run(record_to(out, "video/webm", 1.0))
    assert has_cues(out)
    assert format_duration(out) == pytest.approx(1.0, abs=0.1)
    assert ffmpeg_decode_errors(out) == ""
    assert not temporary.exists()


async def record_to(path: Path, mime: str, seconds: float) -> None:
    recorder = MediaRecorder(make_stream(duration=seconds), mimeType=mime)
    log = EventLog(recorder)
    async with FileSink(path) as sink:
        recorder.ondataavailable = sink.write
        recorder.start(250)
        await log.wait_stopped()


# -- not killed -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mime", "ext"), [("video/webm", ".webm"), ("video/x-matroska", ".mkv"), ("video/mp4", ".mp4")]
)
async def test_a_finished_file_states_its_duration_and_has_its_index(mime: str, ext: str, tmp_path: Path) -> None:
    path = tmp_path / f"finished{ext}"
    await record_to(path, mime, 2.0)
    stated = await asyncio.to_thread(format_duration, path)
    assert stated is not None, "a finished file states its duration"
    assert stated == pytest.approx(2.0, abs=0.1)
    if ext == ".mp4":
        boxes = [kind for kind, _size in iso_boxes(await asyncio.to_thread(path.read_bytes))]
        assert "moov" in boxes, boxes
        assert "mdat" in boxes, boxes
        assert boxes.index("moov") < boxes.index("mdat"), f"the index first (faststart): {boxes}"
    else:
        assert await asyncio.to_thread(has_cues, path), "Cues, the index players seek with"
    assert await asyncio.to_thread(ffmpeg_decode_errors, path) == ""
    assert os.listdir(tmp_path) == [path.name]
