"""A recording nobody stopped does not outlive its event loop (wpt-style tests leave
recorders running): the worker finishes its file and exits when the loop shuts down."""

from __future__ import annotations

import asyncio
import threading

from asyncrec import MediaRecorder
from conftest import make_stream


def test_a_running_recorder_is_cleaned_up_when_its_loop_ends() -> None:
    async def leave_it_running() -> MediaRecorder:
        recorder = MediaRecorder(make_stream(duration=None, realtime=True))
        await recorder.start(100)
        return recorder

    before = {t for t in threading.enumerate() if t.name == "asyncrec-worker"}
    recorder = asyncio.run(leave_it_running())  # the loop ends with the recording running
    for thread in threading.enumerate():
        if thread.name == "asyncrec-worker" and thread not in before:
            thread.join(5.0)
            assert not thread.is_alive()
    assert recorder.state == "inactive"  # its track readers were cancelled with the loop: it stopped


async def test_a_test_that_leaves_its_recorder_running_leaks_no_thread() -> None:
    # As MediaRecorder-error.html does: start, check, and walk away. The autouse fixture
    # checks, after this test's loop has closed, that the worker thread has ended.
    recorder = MediaRecorder(make_stream(duration=None, realtime=True))
    recorder.start()
    assert recorder.state == "recording"
