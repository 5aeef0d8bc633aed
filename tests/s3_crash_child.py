"""A recorder to kill: records a live VP8+Opus stream to ``ObjectSink(URL)`` until killed,
printing ``chunk SECONDS`` (the media time written so far) after each chunk is taken by
the sink. Used by tests/test_object_storage.py, which SIGKILLs it and recovers the upload."""

from __future__ import annotations

import asyncio
import sys

from asyncrec import FrameTrack, MediaRecorder, MediaStream, ObjectSink, SampleTrack, moving_pattern, sine_tone
from asyncrec._object_storage import MIN_PART_SIZE


async def main(url: str) -> None:
    stream = MediaStream(
        [FrameTrack(moving_pattern(320, 240), fps=30, realtime=True), SampleTrack(sine_tone(440), realtime=True)]
    )
    # A high bitrate so parts (5 MiB) are cut within the run, not only the tail.
    recorder = MediaRecorder(stream, mimeType="video/webm;codecs=vp8,opus", videoBitsPerSecond=12_000_000)
    sink = ObjectSink(url, part_size=MIN_PART_SIZE, tail_every=0.5)

    async def write(event: object) -> None:
        await sink.write(event)  # type: ignore[arg-type]
        print(f"chunk {recorder.statistics().recorded_time:.3f}", flush=True)

    recorder.ondataavailable = write
    recorder.start(200)
    await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
