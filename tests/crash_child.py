"""A recording process for tests/test_crash.py to kill with SIGKILL.

Run as ``python tests/crash_child.py MODE PATH MIME TIMESLICE_MS SECONDS [LINGER]``. It records with a
``FileSink(PATH)`` and reports on stdout, one flushed line each:

* ``start T``: the recorder has started (``T`` is ``time.monotonic()``, the same clock in
  every process of the machine);
* ``chunk SEQUENCE END_MS``: the chunk ``SEQUENCE`` is durable, i.e. ``FileSink.write``
  returned for it; ``END_MS`` is the end of its media (``timecode + duration``);
* ``stopped``: the recorder has stopped, every chunk is in the file;
* ``finishing``: ``FileSink.aclose()`` (which finishes the file) is about to be called;
* ``finished SECONDS``: it returned, after that long; the process then lingers ``LINGER``
  seconds (optional, default 0), to be killed still.

MODE ``live`` records the fake camera and microphone (the ones ``asyncrec record --source
fake`` records: FFmpeg test sources paced in real time) for ``SECONDS`` at most (a bound
for a process nobody kills); ``fast`` records ``SECONDS`` of generated frames and tone as
fast as they encode.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time

from asyncrec import BlobEvent, FileSink, FrameTrack, MediaRecorder, MediaStream, SampleTrack, moving_pattern, sine_tone
from asyncrec.sources import getUserMedia


def say(line: str) -> None:
    print(line, flush=True)


async def record(stream: MediaStream, path: str, mime: str, timeslice: int, limit: float) -> None:
    """Record ``stream`` to ``path`` until it ends, or for ``limit`` seconds at most."""
    sink = FileSink(path)
    await sink.open()
    stopped = asyncio.Event()

    async def on_data(event: BlobEvent) -> None:
        await sink.write(event)
        say(f"chunk {event.sequence} {event.timecode + event.duration:.3f}")  # durable now

    recorder = MediaRecorder(stream, mimeType=mime)
    recorder.ondataavailable = on_data
    recorder.onstart = lambda _event: say(f"start {time.monotonic():.6f}")
    recorder.onstop = lambda _event: stopped.set()
    recorder.onerror = lambda event: print(f"error {event.error}", file=sys.stderr, flush=True)
    async with recorder:
        await recorder.start(timeslice)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopped.wait(), limit)
        await recorder.stop()
    say("stopped")
    say("finishing")
    began = time.monotonic()
    await sink.aclose()
    say(f"finished {time.monotonic() - began:.6f}")


async def main(mode: str, path: str, mime: str, timeslice: int, seconds: float, linger: float) -> None:
    if mode == "live":
        # A live source runs until killed, or this long.
        async with await getUserMedia(audio=True, video={"width": 320, "height": 240}, fake=True) as source:
            await record(MediaStream(source.getTracks()), path, mime, timeslice, seconds)
    elif mode == "fast":
        stream = MediaStream(
            [
                FrameTrack(moving_pattern(320, 240), fps=30, realtime=False, duration=seconds, clock_domain="crash"),
                SampleTrack(sine_tone(440), realtime=False, duration=seconds, clock_domain="crash"),
            ]
        )
        # Generated media ends by itself (the limit is a bound for a stuck recording).
        await record(stream, path, mime, timeslice, seconds + 30.0)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    await asyncio.sleep(linger)


if __name__ == "__main__":
    mode, path, mime, timeslice, seconds = sys.argv[1:6]
    linger = float(sys.argv[6]) if len(sys.argv) > 6 else 0.0
    asyncio.run(main(mode, path, mime, int(timeslice), float(seconds), linger))
