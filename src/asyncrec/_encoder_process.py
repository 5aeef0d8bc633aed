"""An encoder process: recordings' workers run here, fed frames over a socket.

:mod:`asyncrec._encoder_pool` starts these processes (``python -m
asyncrec`` running :func:`main`; not :mod:`multiprocessing`, whose start methods re-import
the user's ``__main__``). Each gets a control socket; for every recording the parent sends
the recording's own socket over it (``SCM_RIGHTS``) with what the worker needs (format,
tracks, settings), and the process runs an ordinary
:class:`~asyncrec._worker.RecordingWorker` on a thread of its own, reading the hand-off's
items from that socket instead of a :class:`~asyncrec._handoff.HandOff`.

The wire format (both directions, :class:`multiprocessing.connection.Connection`
messages): the parent sends batches, each a pickled list of items whose frames are
replaced by a :class:`FrameHead`, followed by one message per plane of every decoded
frame (the plane's bytes, written straight from the frame: no pickling of pixels); the
child answers with pickled ``(outputs, counters)``: the worker's outputs (chunks, opened,
failure, finished) and a snapshot of its counters.

Why processes: encoders release the GIL, but each frame also costs Python work (the
hand-off, the muxer's write callback, the chunk cutter), and with many recordings in one
process those pieces queue for one GIL and for the event loop's thread. See
``docs/scaling.md`` for the figures.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import pickle
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from multiprocessing.connection import Connection
from typing import Any, Literal, get_args

import av
import numpy as np

from ._container import WorkerSettings
from ._errors import UnknownError
from ._formats import Format
from ._handoff import FrameItem, Item, Stop
from ._logs import formatter
from ._video import share_cores
from ._worker import Failure, Output, RecordingWorker, TrackInfo, WorkerCounters

logger = logging.getLogger(__name__)


#: How much lower than its parent a ``"low"`` encoder process's CPU priority is (``nice``).
NICENESS = 5
#: An encoder process's CPU priority (see :class:`~asyncrec.EncoderPool`).
Priority = Literal["idle", "low", "normal"]
PRIORITIES: tuple[Priority, ...] = get_args(Priority)
#: The most items the worker takes at once (a hand-off's worth of video and more): beyond
#: it, what was sent stays in the socket, and a source faster than the encoder waits.
MAX_BATCH = 64
#: How often a recording's counters go to the parent between its chunks (s).
COUNTERS_EVERY = 0.05
#: What a new process says on its control socket once it can take recordings.
READY = b"ready"


@dataclass(frozen=True, slots=True)
class RecordingSpec:
    """What a recording's worker is made of."""

    fmt: Format
    tracks: list[TrackInfo]
    settings: WorkerSettings


@dataclass(frozen=True, slots=True)
class FrameHead:
    """A decoded frame's description; its planes follow as messages of their own."""

    kind: str  # "video" or "audio"
    format: str
    pts: int | None
    time_base: Fraction | None
    #: Video: (width, height); audio: (sample_rate, samples).
    size: tuple[int, int]
    #: Video: bytes per row of each plane; audio: the channel layout's name.
    layout: tuple[int, ...] | str
    planes: int
    #: Video: (colorspace, color_range).
    color: tuple[int, int] = (0, 0)


# -- the parent's side ---------------------------------------------------------------------
def send_items(conn: Connection, items: list[Item]) -> None:
    """Send one batch of hand-off items (see the module docstring).

    Raises:
        OSError: the process is gone (a broken or reset socket).
    """
    heads: list[Any] = []
    planes: list[Any] = []
    for item in items:
        frame = item.frame if isinstance(item, FrameItem) else None
        if isinstance(frame, av.VideoFrame):
            head = FrameHead(
                "video",
                frame.format.name,
                frame.pts,
                frame.time_base,
                (frame.width, frame.height),
                tuple(p.line_size for p in frame.planes),
                len(frame.planes),
                (int(frame.colorspace), int(frame.color_range)),
            )
        elif isinstance(frame, av.AudioFrame):
            head = FrameHead(
                "audio",
                frame.format.name,
                frame.pts,
                frame.time_base,
                (frame.sample_rate, frame.samples),
                frame.layout.name,
                len(frame.planes),
            )
        else:
            heads.append(item)  # a control message, or an encoded frame (a few bytes)
            continue
        assert isinstance(item, FrameItem)
        heads.append(dataclasses.replace(item, frame=head))  # type: ignore[arg-type] # rebuilt on arrival
        planes.extend(frame.planes)
    conn.send_bytes(pickle.dumps(heads, pickle.HIGHEST_PROTOCOL))
    for plane in planes:
        conn.send_bytes(plane)  # writes from the frame's own buffer


def receive_outputs(conn: Connection) -> tuple[list[Output], dict[str, Any]]:
    """The worker's next outputs and counters.

    Raises:
        EOFError, OSError: the process is gone.
    """
    outputs, counters = pickle.loads(conn.recv_bytes())
    return outputs, counters


# -- the child's side ----------------------------------------------------------------------
def _video_frame(head: FrameHead, conn: Connection) -> av.VideoFrame:
    width, height = head.size
    frame = av.VideoFrame(width, height, head.format)
    assert isinstance(head.layout, tuple)
    for plane, line_size in zip(frame.planes, head.layout, strict=True):
        if plane.line_size == line_size:
            conn.recv_bytes_into(plane)
        else:  # other row padding: copy row by row
            data = np.frombuffer(conn.recv_bytes(), np.uint8).reshape(-1, line_size)
            rows = np.frombuffer(memoryview(plane), np.uint8).reshape(-1, plane.line_size)
            used = min(line_size, plane.line_size)
            rows[: data.shape[0], :used] = data[: rows.shape[0], :used]
    frame.colorspace, frame.color_range = head.color
    return frame


def _audio_frame(head: FrameHead, conn: Connection) -> av.AudioFrame:
    rate, samples = head.size
    assert isinstance(head.layout, str)
    frame = av.AudioFrame(format=head.format, layout=head.layout, samples=samples)
    frame.sample_rate = rate
    for plane in frame.planes:
        data = conn.recv_bytes()
        size = min(len(data), plane.buffer_size)
        memoryview(plane)[:size] = data[:size]
    return frame


class ChannelHandOff:
    """The worker's end of the hand-off, read from the recording's socket: ``take`` as
    :meth:`~asyncrec._handoff.HandOff.take`. A closed socket (the parent gone) is a stop."""

    def __init__(self, conn: Connection, before_take: Callable[[], float | None] = lambda: None) -> None:
        self._conn = conn
        self._closed = False
        #: Called as the worker is done with a batch; returns how soon it wants to be
        #: called again (s), or None.
        self._before_take = before_take

    def take(self, timeout: float | None) -> list[Item]:
        again = self._before_take()
        if again is not None:
            timeout = again if timeout is None else min(timeout, again)
        if self._closed:
            return [Stop(None)]
        items: list[Item] = []
        try:
            if not self._conn.poll(timeout):
                return items
            while True:  # what was already sent, in one batch for the worker
                items.extend(self._batch())
                if len(items) >= MAX_BATCH or not self._conn.poll(0):
                    return items  # the rest waits in the socket: the feeder then waits too
        except (EOFError, OSError):
            self._closed = True
            return [*items, Stop(None)]

    def _batch(self) -> list[Item]:
        items: list[Item] = pickle.loads(self._conn.recv_bytes())
        for n, item in enumerate(items):
            if isinstance(item, FrameItem) and isinstance(item.frame, FrameHead):
                head = item.frame
                frame = _video_frame(head, self._conn) if head.kind == "video" else _audio_frame(head, self._conn)
                frame.pts = head.pts
                if head.time_base is not None:
                    frame.time_base = head.time_base
                items[n] = dataclasses.replace(item, frame=frame)
        return items


def _picklable(output: Output) -> Output:
    """A worker's failure carries an exception; one that would not unpickle in the parent
    (a constructor with other arguments) goes as an UnknownError with its message."""
    if isinstance(output, Failure):
        try:
            pickle.loads(pickle.dumps(output.error))
        except Exception:  # noqa: BLE001 - whatever stops the round trip
            return Failure(UnknownError(str(output.error)))
    return output


def record(conn: Connection, spec: RecordingSpec) -> None:
    """Run one recording's worker until it finishes, its outputs sent back on ``conn``."""
    counters = WorkerCounters([0] * len(spec.tracks), [0] * len(spec.tracks))
    lost = False
    sent: dict[str, Any] = {}
    sent_at = 0.0

    def post(outputs: list[Output]) -> None:
        nonlocal lost, sent, sent_at
        if lost:
            return
        snapshot = dataclasses.asdict(counters)
        try:
            conn.send_bytes(pickle.dumps(([_picklable(o) for o in outputs], snapshot), pickle.HIGHEST_PROTOCOL))
        except OSError:  # the parent is gone: nobody is left to take the recording
            lost = True
        sent, sent_at = snapshot, time.monotonic()

    def sync() -> float | None:
        # Counters change with every batch, outputs only with each chunk: statistics()
        # in the parent must not lag a timeslice behind, nor wake the parent's reader
        # (and its GIL) for every frame.
        if dataclasses.asdict(counters) == sent:
            return None
        wait = sent_at + COUNTERS_EVERY - time.monotonic()
        if wait > 0:
            return wait
        post([])
        return None

    handoff = ChannelHandOff(conn, sync)
    worker = RecordingWorker(spec.fmt, spec.tracks, spec.settings, handoff, post, counters)  # type: ignore[arg-type]
    worker.start()
    worker.join()
    conn.close()


def serve(control: socket.socket) -> None:
    """Take recordings from the parent until it closes the control socket, then finish
    the running ones."""
    running: list[threading.Thread] = []
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(control, 1 << 20, 1)
        except OSError:
            break
        if not message or not fds:
            break
        spec = pickle.loads(message)
        thread = threading.Thread(target=record, args=(Connection(fds[0]), spec), name="asyncrec-worker")
        thread.start()
        running = [t for t in running if t.is_alive()]
        running.append(thread)
    for thread in running:
        thread.join()


def set_priority(priority: str) -> None:
    """This process's CPU priority (before its threads start: they inherit it).

    When the machine is short of CPU, the process with the event loop (the network, the
    sources) goes first: an encoder that falls behind drops live video, counted, while a
    loop that falls behind loses packets and stalls every recording. Measured with 9-10
    recordings on 2 cores (``benchmarks/capacity.py``), p99 loop lag: 23 ms at the same
    priority, 15 ms with nice +5 and SCHED_BATCH (a waking loop preempts them, once their
    time slice allows), 4-5 ms with SCHED_IDLE (a waking loop preempts them at once).
    """
    # A sandbox or another system may refuse: priorities are a preference.
    with contextlib.suppress(OSError, AttributeError):
        if priority == "idle":
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        elif priority == "low":
            os.nice(NICENESS)
            os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))


def main() -> None:
    # Ctrl-C, and a service manager's SIGTERM, reach the whole process group: the parent
    # stops (or drains) its recordings, which then finish here; this process must not die
    # first. It exits when the parent closes its control socket.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    set_priority(sys.argv[3])
    # The parent's level and format (a JSON log stays JSON lines, whichever process wrote them).
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(os.environ.get("ASYNCREC_LOG_FORMAT", "text")))
    logging.basicConfig(level=int(os.environ.get("ASYNCREC_LOG_LEVEL", logging.WARNING)), handlers=[handler])
    share_cores(int(sys.argv[2]))
    logger.info("encoder process %d ready: %s cores, %s priority", os.getpid(), sys.argv[2], sys.argv[3])
    control = socket.socket(fileno=int(sys.argv[1]))
    control.send(READY)  # imported: the pool's start() returns
    serve(control)
