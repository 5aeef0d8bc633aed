"""Encoder processes: recordings encoded and muxed in other processes, every core used.

An :class:`EncoderPool` keeps a few encoder processes (one per core by default, see
:mod:`asyncrec._encoder_process`). A recorder given one (``MediaRecorder(stream,
encoder_pool=pool)``) runs its worker there instead of on a thread of its own: a feeder
thread here takes what the tracks hand off and writes it to the recording's socket, and a
reader thread takes the chunks and counters back to the loop. Everything else (the tracks'
inputs, the clock, events, sinks) stays in this process, so a recording behaves the same
either way; the event loop only loses the encoders' and muxer's Python work, and the
process's GIL no longer serialises many recordings.

A process that dies (a crash inside a codec) fails only its own recordings, through
``"error"``, with the chunks already delivered kept; the next recording starts a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pickle
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, fields
from multiprocessing.connection import Connection
from types import TracebackType

from ._container import WorkerSettings
from ._encoder_process import PRIORITIES, READY, Priority, RecordingSpec, receive_outputs, send_items
from ._errors import InvalidStateError, UnknownError
from ._formats import Format
from ._handoff import FrameItem, HandOff, Stop
from ._logs import root_format
from ._video import usable_cores
from ._worker import OUTFLOW_RECHECK, Failure, Finished, Output, TrackInfo, WorkerCounters

logger = logging.getLogger(__name__)

#: How long a new process may take to import PyAV and asyncrec (s).
START_TIMEOUT = 60.0
#: How often the feeder looks whether its process has gone (s).
FEED_RECHECK = 0.5


@dataclass
class _Process:
    popen: subprocess.Popen[bytes]
    #: SOCK_SEQPACKET: one message per recording, with its socket attached.
    control: socket.socket
    recordings: int = 0


class EncoderPool:
    """Processes that encode and mux recordings (see the module docstring).

    ``processes``: how many (default: one per core). They start on :meth:`start` (or with
    the first recording), and each serves any number of recordings, one thread each.
    Use as ``async with EncoderPool() as pool:``; one pool serves many recorders.

    ``priority``: the processes' share of a busy machine.

    * ``"idle"`` (the default): Linux's ``SCHED_IDLE``. The encoders take only the CPU that
      nothing else wants, and a waking event loop preempts them at once: at capacity the
      loop's p99 lag stays a few milliseconds, and an encoder that falls behind drops live
      video (counted) rather than the loop losing packets. Other busy programs on the
      machine come first too, so give a box that runs more than recordings ``"low"``.
    * ``"low"``: ``nice`` +5 and ``SCHED_BATCH``: a waking loop usually preempts them, after
      a few milliseconds at worst.
    * ``"normal"``: the same as this process.

    Where the system refuses (not Linux, a sandbox), the processes run as this one does.

    Raises:
        ValueError: ``processes`` is below 1, or ``priority`` is none of the above.
    """

    def __init__(self, processes: int | None = None, *, priority: Priority = "idle") -> None:
        if processes is not None and processes < 1:
            raise ValueError("processes must be at least 1")
        if priority not in PRIORITIES:
            raise ValueError(f"priority must be one of {', '.join(PRIORITIES)}, not {priority!r}")
        #: How many encoder processes the pool keeps.
        self.processes = processes or usable_cores()
        #: Their CPU priority (see above).
        self.priority: Priority = priority
        self._lock = threading.Lock()
        self._pool: list[_Process | None] = [None] * self.processes
        self._closed = False

    async def start(self) -> None:
        """Start the processes (off the event loop; they finish importing on their own).

        Raises:
            InvalidStateError: the pool is closed.
            OSError: a process could not be started.
        """
        await asyncio.to_thread(self._start_all)

    async def close(self) -> None:
        """Let the processes go: each finishes the recordings it is running, then exits.
        Waits for them (off the event loop), so stop the pool's recorders first (``async
        with MediaRecorder(...)`` inside ``async with EncoderPool()`` does): a recording
        never stopped keeps its process, and this waits for it. Recorders given the pool afterwards fail
        with ``InvalidStateError`` at ``start``. Idempotent.

        On cancellation the processes still finish their recordings and exit.
        """
        self._closed = True  # at once: a recorder started from now on is refused
        await asyncio.to_thread(self._close_all)

    async def __aenter__(self) -> EncoderPool:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def closed(self) -> bool:
        """:meth:`close` was called."""
        return self._closed

    @property
    def pids(self) -> list[int]:
        """The running processes' ids."""
        return [p.popen.pid for p in list(self._pool) if p is not None and p.popen.poll() is None]

    # -- used by the feeder threads (blocking) -----------------------------------------------
    def _close_all(self) -> None:
        with self._lock:  # a process being started by a feeder is waited for
            processes = [p for p in self._pool if p is not None]
            self._pool = [None] * self.processes
        for process in processes:
            process.control.close()  # end of file for the process: no more recordings
        for process in processes:
            process.popen.wait()

    def _start_all(self) -> None:
        with self._lock:
            self._check_open()
            for n in range(self.processes):
                self._running(n)

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidStateError("the encoder pool is closed")

    def open_channel(self, spec: RecordingSpec) -> tuple[Connection, _Process]:
        """A socket to a new recording's worker in the least busy process (started if it
        is not running). Blocking: call it off the event loop.

        Raises:
            InvalidStateError: the pool is closed.
            OSError: no process could take the recording.
        """
        with self._lock:
            self._check_open()
            ours, theirs = socket.socketpair()
            try:
                for attempt in range(2):
                    n = min(range(self.processes), key=lambda i: _load(self._pool[i]))
                    process = self._running(n)
                    try:
                        socket.send_fds(process.control, [pickle.dumps(spec)], [theirs.fileno()])
                    except OSError:
                        if attempt:
                            raise
                        process.popen.kill()  # it stopped reading: a new one takes its place
                        process.popen.wait()
                        continue
                    process.recordings += 1
                    return Connection(ours.detach()), process
                raise AssertionError("unreachable")
            except BaseException:
                ours.close()
                raise
            finally:
                theirs.close()

    def _running(self, n: int) -> _Process:
        """Process ``n``, started anew if it is not running (never started, or died)."""
        process = self._pool[n]
        if process is not None and process.popen.poll() is None:
            return process
        if process is not None:
            process.control.close()
            process.popen.wait()
        self._pool[n] = process = _spawn(max(1, usable_cores() // self.processes), self.priority)
        return process

    def release(self, process: _Process) -> None:
        with self._lock:
            process.recordings -= 1


def _load(process: _Process | None) -> int:
    return -1 if process is None else process.recordings


#: What an encoder process runs: the parent's import path, then the process's main.
_BOOT = (
    "import json, os, sys; sys.path[:] = json.loads(os.environ['ASYNCREC_SYS_PATH']); "
    "from asyncrec._encoder_process import main; main()"
)


def _spawn(cores: int, priority: Priority) -> _Process:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    env = dict(os.environ)
    # The child imports what this process imports, from where it does: its sys.path as
    # it is now (-P: nothing prepended, not the current directory).
    env["ASYNCREC_SYS_PATH"] = json.dumps(sys.path)
    env["ASYNCREC_LOG_LEVEL"] = str(logging.getLogger("asyncrec").getEffectiveLevel())
    env["ASYNCREC_LOG_FORMAT"] = root_format()
    try:
        popen = subprocess.Popen(
            # Not ``-m``: the module would run as __main__, a second copy of its classes.
            [sys.executable, "-P", "-c", _BOOT, str(theirs.fileno()), str(cores), priority],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
            env=env,
        )
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    # Wait until it has imported PyAV and asyncrec: frames sent before would wait for it,
    # and live video that waits goes stale.
    ours.settimeout(START_TIMEOUT)
    try:
        ready = ours.recv(len(READY))
    except OSError:
        ready = b""
    if ready != READY:
        popen.kill()
        popen.wait()
        ours.close()
        raise OSError(f"an encoder process did not start (exit status {popen.returncode})")
    ours.settimeout(None)
    return _Process(popen, ours)


class ProcessWorker:
    """A recording's worker in an encoder process, seen from here: the same life as
    :class:`~asyncrec._worker.RecordingWorker` (``start``, ``join``, ``counters``)."""

    def __init__(
        self,
        pool: EncoderPool,
        fmt: Format,
        tracks: list[TrackInfo],
        settings: WorkerSettings,
        handoff: HandOff,
        post: Callable[[list[Output]], None],
        counters: WorkerCounters,
        outflow: threading.Event | None = None,
    ) -> None:
        self._pool = pool
        self._spec = RecordingSpec(fmt, tracks, settings)
        self._handoff = handoff
        self._post = post
        self.counters = counters
        self._outflow = outflow
        self._gone = threading.Event()  # the process reported Finished, or died
        self._ended = False  # Finished was posted (exactly once, whatever happens)
        self._ended_lock = threading.Lock()
        self._failed = False  # ended by a failure on this side or the process's death
        #: Frames sent to the process per track: those it never reported on are counted
        #: as dropped if it dies.
        self._sent = [0] * len(tracks)
        #: The id of the process the recording runs in, once it has one.
        self.pid: int | None = None
        self._feeder = threading.Thread(target=self._feed, name="asyncrec-encoder-feed", daemon=True)

    def start(self) -> None:
        self._feeder.start()

    def join(self) -> None:
        """Nothing to wait for once Finished was reported (the loop calls this then, and
        must not block): the feeder thread notices within ``FEED_RECHECK`` and ends, its
        socket closed."""

    def _end(self, error: str) -> None:
        """Report ``error`` and Finished, unless Finished was already reported."""
        with self._ended_lock:
            if self._ended:
                return
            self._ended = self._failed = True
        logger.error("a recording in an encoder process failed: %s", error)
        self._count_lost()
        self._post([Failure(UnknownError(error)), Finished()])

    def _count_lost(self) -> None:
        """Frames the process took and never reported on, and those still waiting in the
        hand-off (nobody will take them now), are counted as dropped: statistics() must
        account for every frame that came in."""
        for item in self._handoff.take(0):
            if isinstance(item, FrameItem):
                self._sent[item.track] += 1
        for track, sent in enumerate(self._sent):
            unseen = sent - self.counters.encoded[track] - self.counters.dropped[track]
            if unseen > 0:
                self.counters.dropped[track] += unseen

    # -- the feeder thread ------------------------------------------------------------------
    def _feed(self) -> None:
        try:
            conn, process = self._pool.open_channel(self._spec)
        except Exception as exc:  # noqa: BLE001 - whatever it is, the recording must end
            self._end(f"no encoder process could take the recording: {exc!r}")
            return
        self.pid = process.popen.pid
        reader = threading.Thread(target=self._read, args=(conn, process), name="asyncrec-encoder-read", daemon=True)
        reader.start()
        try:
            self._send_until_stop(conn)
        except OSError:
            pass  # the process is gone: the reader reports it
        except Exception as exc:
            logger.exception("feeding an encoder process failed")
            self._end(f"feeding the encoder process failed: {exc!r}")
        finally:
            # The process sees the end of its input (if it has not finished), finishes,
            # and the reader sees it go.
            with contextlib.suppress(OSError), socket.socket(fileno=os.dup(conn.fileno())) as end:
                end.shutdown(socket.SHUT_WR)
            reader.join()
            conn.close()
            if self._failed:
                self._count_lost()  # again: a batch this thread was sending as it died

    def _send_until_stop(self, conn: Connection) -> None:
        realtime = False
        while not self._gone.is_set():
            # Backpressure as the thread worker does it: sources that can wait are not
            # taken while the loop has too many chunks undelivered.
            while self._outflow is not None and not self._outflow.is_set() and not realtime:
                if self._gone.is_set():
                    return
                self._outflow.wait(OUTFLOW_RECHECK)
            items = self._handoff.take(FEED_RECHECK)
            if not items:
                continue
            frames = [item for item in items if isinstance(item, FrameItem)]
            if frames:
                realtime = any(item.realtime for item in frames)
            for item in frames:  # counted first: a batch the process dies taking is its too
                self._sent[item.track] += 1
            send_items(conn, items)
            if any(isinstance(item, Stop) for item in items):
                return

    # -- the reader thread ------------------------------------------------------------------
    def _read(self, conn: Connection, process: _Process) -> None:
        try:
            while True:
                try:
                    outputs, counters = receive_outputs(conn)
                except (EOFError, OSError):
                    code = process.popen.poll()
                    reason = "" if code is None else f" (exit status {code})"
                    self._end(f"the encoder process ended during the recording{reason}")
                    return
                for f in fields(self.counters):
                    value = counters[f.name]
                    if isinstance(value, list):
                        getattr(self.counters, f.name)[:] = value
                    else:
                        setattr(self.counters, f.name, value)
                if any(isinstance(output, Finished) for output in outputs):
                    with self._ended_lock:
                        if self._ended:
                            return
                        self._ended = True
                if outputs:  # a message may bring counters only: the loop need not wake
                    self._post(outputs)
                if self._ended:
                    return
        except Exception as exc:
            logger.exception("reading from an encoder process failed")
            self._end(f"reading from the encoder process failed: {exc!r}")
        finally:
            self._gone.set()
            self._pool.release(process)
