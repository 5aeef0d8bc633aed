"""ObjectSink: a recording uploaded to S3-compatible object storage while it is recorded.

The chunks are gathered into parts of a multipart upload (S3 refuses parts under 5 MiB
but the last), uploaded by a task of their own so ``write`` returns once a chunk is
buffered; at most one part waits while another uploads, and a write waits while it does.

Memory per recording, however slow or absent the storage: at most ``3 * (part_size +
chunk) + part_size // 4`` bytes held by the sink (the part being filled, the part
uploading, the one waiting, each up to a chunk over ``part_size``, and the tail piece
being put, at most a quarter part): 26 MiB plus three chunks with the default 8 MiB parts
(:attr:`ObjectSink.bytes_held` says how much now). Nothing more is copied whole: request
bodies are read in place (:class:`_Payload`), in pieces of up to 1 MiB: about 2 MiB of
the HTTP client's working memory (measured by tests/test_object_storage.py).

What a crash can cost. A multipart upload keeps its parts when the process that made it
dies, but they are not an object until completed: :func:`recover` completes them. Every
``tail_every`` seconds the bytes written since the last time are also put as a tail piece,
``KEY.asyncrec-tail/OFFSET`` (each byte once; the pieces a part covers are removed once it
is uploaded), which :func:`recover` appends. So a killed worker loses at most the last
``tail_every`` seconds plus one timeslice of media, parts in flight or not; a killed
machine too, as nothing needed for recovery is local. A tail piece holds at most a
quarter part: pieces that fell behind (an outage, a burst of chunks) catch up back to
back, from the end of the uploaded parts.

Finished objects. At :meth:`ObjectSink.aclose` the recording is remuxed into a finished,
seekable file (:func:`~asyncrec.repair`: WebM/Matroska with Duration and Cues, MP4 with its
``moov`` first), from a local copy kept meanwhile (the spool, a temporary file), and that
file is uploaded as the object; the streaming upload is then aborted. ``finish=False``
completes the streaming upload as the object instead, as streamed (no local copy); so
does a finishing that fails or would lose data (a copy cut short at damage: see
:attr:`FileSink.finished <asyncrec.FileSink.finished>`), with a warning.

Configured the standard way, through botocore: ``AWS_ENDPOINT_URL`` (or
``AWS_ENDPOINT_URL_S3``), ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_DEFAULT_REGION``, ``AWS_PROFILE`` and the AWS config and credentials files.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import tempfile
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

from ._errors import SinkError
from ._events import BlobEvent
from ._formats import CONTAINERS
from ._sink import FileSink

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: S3's smallest part but the last.
MIN_PART_SIZE = 5 * 1024 * 1024
#: S3's largest number of parts in one upload.
MAX_PARTS = 10_000
#: The default part size: 8 MiB (33 s of 2 Mbit/s media; 10,000 parts hold 78 GiB).
PART_SIZE = 8 * 1024 * 1024
#: What follows a key in the names of its upload's tail pieces (``KEY.asyncrec-tail/OFFSET``).
TAIL_SUFFIX = ".asyncrec-tail"
#: Errors S3 answers that a retry may cure.
_TRANSIENT_CODES = frozenset(
    {"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "RequestTimeTooSkewed", "503", "500"}
)


def parse_url(url: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> ``(bucket, key)``. Raises ValueError for anything else."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or not parts.path.strip("/"):
        raise ValueError(f"not an object URL s3://BUCKET/KEY: {url!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"an object URL has no query or fragment: {url!r}")
    return parts.netloc, parts.path.lstrip("/")


def mime_for_key(key: str) -> str:
    """The MIME type of a recording by its key's extension (``video/webm``...)."""
    extension = os.path.splitext(key)[1].lower()
    types = {spec.extension: spec.mime for spec in CONTAINERS.values()} | {".opus": "audio/ogg"}
    return types.get(extension, "application/octet-stream")


_LOADER: Any = None


def _load_botocore() -> Any:
    """Import aiobotocore and load botocore's S3 model (large JSON files): about a second
    of blocking work the first time, done once per process, on a thread."""
    global _LOADER
    if _LOADER is None:
        from aiobotocore.session import get_session

        loader = get_session().get_component("data_loader")  # caches what it loads
        for name in ("service-2", "endpoint-rule-set-1"):
            loader.load_service_model("s3", name)
        _LOADER = loader
    return _LOADER


async def prepare_s3() -> None:
    """Do the first use's slow part now, off the event loop (a server calls it at start,
    so that its first session's upload does not wait for it). Idempotent."""
    if _LOADER is None:
        await asyncio.to_thread(_load_botocore)


async def check_bucket(bucket: str) -> None:
    """Check that ``bucket`` exists and the configured credentials may list and write it:
    a server calls this at start, so that a worker that could record nothing says so
    instead of taking publishers. A storage that cannot be reached now is only logged:
    it may come back, and the sinks retry.

    Raises:
        SinkError: the bucket is missing, or the credentials are refused (the storage's
            error code in the message).
    """
    async with s3_client() as client:
        try:
            # A GET, not a HEAD: its answer carries the error's code (NoSuchBucket,
            # InvalidAccessKeyId, SignatureDoesNotMatch, AccessDenied).
            await client.list_objects_v2(Bucket=bucket, MaxKeys=1)
        except Exception as exc:
            if _transient(exc):
                logger.warning("object storage: s3://%s cannot be reached now (%s)", bucket, _describe(exc))
                return
            raise SinkError(f"s3://{bucket}", _describe(exc)) from exc


@contextlib.asynccontextmanager
async def s3_client() -> AsyncIterator[Any]:
    """An aiobotocore S3 client configured from the environment and the AWS files (read
    anew for each client, as botocore does for each session).

    aiobotocore's import and botocore's service model are loaded once per process, on a
    thread (:func:`prepare_s3`), and shared, so that creating a client does not hold the
    event loop for long. Retries are botocore's "standard" mode (connection errors,
    throttling, 5xx) on top of which the sink retries for ``retry_for`` seconds.
    """
    await prepare_s3()
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    session = get_session()
    session.register_component("data_loader", _LOADER)
    config = AioConfig(
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=5,
        read_timeout=60,
        # Path-style unless the configuration says otherwise: S3-compatible servers on an
        # address or a plain host name have no per-bucket host names.
        s3={"addressing_style": os.environ.get("AWS_S3_ADDRESSING_STYLE", "path")},
    )
    async with session.create_client("s3", config=config) as client:
        yield client


def _transient(exc: BaseException) -> bool:
    """Whether ``exc`` (from botocore) is worth retrying: connection trouble, 5xx, throttling."""
    from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        return code in _TRANSIENT_CODES or status >= 500
    if isinstance(exc, BotoConnectionError | HTTPClientError | OSError | asyncio.TimeoutError):
        return True
    return isinstance(exc, BotoCoreError) and "timeout" in type(exc).__name__.lower()


async def retrying(call: Callable[[], Awaitable[T]], what: str, retry_for: float) -> T:
    """``await call()``, again with backoff (0.5 s doubling to 8 s) while it fails with a
    transient error, for at most ``retry_for`` seconds from the first failure.

    Raises the last error once ``retry_for`` has passed, or at once for an error a retry
    cannot cure (access denied, no such bucket...). Cancelling stops at once.
    """
    first_failure: float | None = None
    delay = 0.5
    while True:
        try:
            return await call()
        except Exception as exc:
            now = time.monotonic()
            first_failure = first_failure if first_failure is not None else now
            if not _transient(exc) or now - first_failure + delay > retry_for:
                raise
            logger.warning("object storage: %s failed (%s); retrying in %.1f s", what, _describe(exc), delay)
            await asyncio.sleep(delay)  # backoff: the storage is given time to come back
            delay = min(delay * 2, 8.0)


async def sending(call: Callable[[Any], Awaitable[T]], payload: _Payload, what: str, retry_for: float) -> T:
    """``retrying(call(body))`` with a new body reading ``payload`` for each attempt; the
    payload lets go of its bytes once this returns. Raises what :func:`retrying` raises."""
    try:
        return await retrying(lambda: call(payload.body()), what, retry_for)
    finally:
        payload.release()


def _describe(exc: BaseException) -> str:
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', '?')}: {error.get('Message', '') or exc}"
    return str(exc) or type(exc).__name__


@dataclass
class _Upload:
    upload_id: str
    parts: list[dict[str, Any]] = field(default_factory=list)
    #: Bytes in the parts uploaded so far.
    uploaded: int = 0


def tail_key(key: str, offset: int) -> str:
    """The object holding an upload's bytes from ``offset`` on (one of its tail pieces)."""
    return f"{key}{TAIL_SUFFIX}/{offset:016d}"


class ObjectSink:
    """Uploads a recording's chunks to ``s3://BUCKET/KEY`` as they come (see the module
    docstring): a :class:`~asyncrec.Sink`, attached as the ``dataavailable`` handler::

        async with ObjectSink("s3://recordings/2026/talk.webm") as sink:
            recorder.ondataavailable = sink.write
            ...

    ``part_size`` (at least 5 MiB): bytes per uploaded part; the memory held stays under
    3¼ parts plus three chunks (see the module docstring). ``tail_every``: seconds between
    uploads of the newest bytes as tail pieces (the crash-loss bound), ``None`` never.
    ``retry_for``: how long transient failures (connection refused, 5xx, throttling) are
    retried before the sink fails. ``finish``: upload a finished, seekable object at the
    end (from a local spool in ``spool_dir``, by default the system's temporary directory).

    Raises SinkError from ``write``/``aclose`` when the storage refuses (credentials,
    missing bucket, quota) or stays unreachable for ``retry_for`` seconds; the recorder
    then stops with an ``"error"`` event. Nothing uploaded is removed then: the parts and
    the tail pieces stay for :func:`recover`, and the local spool (its path is in the
    message) holds everything written.

    Cancelling ``write`` or ``aclose`` stops the wait; a chunk already taken stays taken,
    an upload already running completes in the background, and later calls wait for it,
    so parts stay in order. A first write cancelled while the upload is being created
    fails the sink (nothing was taken).
    """

    def __init__(
        self,
        url: str,
        *,
        part_size: int = PART_SIZE,
        tail_every: float | None = 2.0,
        retry_for: float = 60.0,
        finish: bool = True,
        spool_dir: str | os.PathLike[str] | None = None,
        content_type: str | None = None,
    ) -> None:
        self.bucket, self.key = parse_url(url)
        self.url = url
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes (S3's minimum), not {part_size}")
        if tail_every is not None and tail_every <= 0:
            raise ValueError(f"tail_every must be positive or None, not {tail_every}")
        self.part_size = part_size
        self.tail_every = tail_every
        self.retry_for = retry_for
        self.finish = finish
        self.content_type = content_type or mime_for_key(self.key)
        self._spool_dir = os.fspath(spool_dir) if spool_dir is not None else None
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None
        self._upload: _Upload | None = None  # set last by _start: the sink is started
        #: The chunks not yet cut into a part (kept as written: no copy, no spare capacity).
        self._chunks: list[bytes] = []
        self._buffered = 0
        #: Parts cut from the buffer: the one uploading first, then at most one waiting.
        self._parts: deque[bytes] = deque()
        self._more = asyncio.Event()  # the uploader has a part, or the end, to see
        self._room = asyncio.Event()  # the uploader took a part off, or failed
        self._ending = False
        self._uploader: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[None] | None = None
        self._tail_task: asyncio.Task[None] | None = None
        #: The tail piece being put (a task of its own, so that a close lets it finish).
        self._tail_put: asyncio.Task[bool] | None = None
        #: Where the bytes in no tail piece yet start; the size of the piece being put.
        self._tail_from = 0
        self._tail_held = 0
        self._tail_cap = part_size // 4
        self._written = asyncio.Event()  # bytes came that no tail piece holds
        #: Tail pieces in the storage: (offset, end).
        self._tails: list[tuple[int, int]] = []
        self._spool: FileSink | None = None
        self._error: SinkError | None = None
        self._closed = False
        self._finished = False
        self._starting = asyncio.Lock()
        #: Bytes written so far (whole chunks).
        self.bytes_written = 0

    # -- the Sink protocol -----------------------------------------------------------------------
    async def __aenter__(self) -> ObjectSink:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def error(self) -> SinkError | None:
        """The failure that ended this sink, or None while it works."""
        return self._error

    @property
    def bytes_uploaded(self) -> int:
        """Bytes in the parts uploaded so far (tail pieces not counted)."""
        return self._upload.uploaded if self._upload is not None else 0

    @property
    def bytes_held(self) -> int:
        """Bytes of media held in memory now: the part being filled, the parts cut (one
        uploading, at most one waiting) and the tail piece being put. At most
        ``3 * (part_size + chunk) + part_size // 4`` while writes are awaited (a write whose
        wait is cancelled keeps its chunk, over the bound)."""
        return self._buffered + sum(map(len, self._parts)) + self._tail_held

    @property
    def finished(self) -> bool:
        """Whether the object was made from the finished, seekable local copy (False until
        :meth:`aclose` has done so, and with ``finish=False``)."""
        return self._finished

    @property
    def spool_path(self) -> str | None:
        """The local copy of everything written (while ``finish``), or None."""
        return self._spool.path if self._spool is not None else None

    async def write(self, chunk: BlobEvent | bytes) -> None:
        """Buffer a chunk; a full part goes to the uploader (this waits only while a
        part is already waiting, which bounds memory).

        Raises:
            SinkError: the storage refused or stayed unreachable (now or for an earlier
                part), or the sink is closed. (A local copy that fails only costs the
                finishing: the object is then kept as streamed.)
        """
        self._check()
        data = chunk.data if isinstance(chunk, BlobEvent) else bytes(chunk)
        await self._start()
        # Taken at once: a cancelled write still has its chunk buffered (and counted),
        # and the next write or aclose sends it.
        self._chunks.append(data)
        self._buffered += len(data)
        self.bytes_written += len(data)
        self._written.set()
        if self._spool is not None:
            try:
                await self._spool.write(data)
            except SinkError as exc:
                # The upload goes on (it holds everything); only the finishing is lost.
                logger.warning("%s: the local copy failed (%s): the object will be kept as streamed", self.url, exc)
                spool, self._spool = self._spool, None
                with contextlib.suppress(SinkError):
                    await spool.aclose()
        await self._cut(final=False)
        self._check()

    async def aclose(self) -> None:
        """Upload the rest and make the object (finished unless ``finish=False``).

        Idempotent. Raises SinkError if the storage refused or stayed unreachable; the
        parts, the tail pieces and the local copy are then kept (see the class
        docstring). Cancelling stops the wait; the closing goes on, and a later call
        waits for it.
        """
        if self._closing is None:
            self._closed = True
            self._closing = asyncio.get_running_loop().create_task(self._close())
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        try:
            if self._upload is None:
                if self._error is None:
                    await self._put_empty()
                return
            if self._error is None:
                await self._cut(final=True)
            self._ending = True
            self._more.set()
            assert self._uploader is not None
            await self._uploader
            await self._stop_tails()
            if self._error is not None:
                raise self._error
            if await self._finish_spool():
                assert self._spool is not None
                await self._upload_file(self._spool.path)
                await self._abort(self._upload.upload_id)
                self._finished = True
            else:
                await self._complete()
            await self._remove_tails()
            if self._spool is not None:
                await asyncio.to_thread(_remove, self._spool.path)
        finally:
            if self._spool is not None:
                with contextlib.suppress(SinkError):
                    await self._spool.aclose()  # closed (and kept) after a failure too
            await self._stack.aclose()

    async def _finish_spool(self) -> bool:
        """Finish the local copy; whether it is now a finished file holding everything
        written (else the streamed upload, which does, is to be completed)."""
        if self._spool is None:
            return False
        try:
            await self._spool.aclose()  # finishes the local copy: remuxed, seekable
        except SinkError as exc:
            logger.warning("%s: the local copy cannot be finished (%s): kept as streamed", self.url, exc)
            return False
        if not self._spool.finished:
            # The finishing failed or would have cut the recording (FileSink said why):
            # the streamed upload holds every byte written, so it becomes the object.
            logger.warning("%s: the local copy was not finished: the object is kept as streamed", self.url)
        return self._spool.finished

    # -- the upload ------------------------------------------------------------------------------
    async def _start(self) -> None:
        async with self._starting:
            if self._upload is not None:
                return
            self._check()
            spool = None
            try:
                client = await self._stack.enter_async_context(s3_client())
                created = await retrying(
                    lambda: client.create_multipart_upload(
                        Bucket=self.bucket, Key=self.key, ContentType=self.content_type
                    ),
                    "starting the upload",
                    self.retry_for,
                )
                if self.finish:
                    suffix = os.path.splitext(self.key)[1]
                    spool = FileSink(await asyncio.to_thread(_spool_file, self._spool_dir, suffix), fsync="never")
            except asyncio.CancelledError:
                self._error = SinkError(self.url, "cancelled while the upload was being created")
                raise
            except Exception as exc:  # noqa: BLE001 - any failure of the storage becomes the sink's
                await self._stack.aclose()  # nothing to keep: no upload exists
                self._fail(SinkError(self.url, f"cannot start the upload: {_describe(exc)}"), exc)
            # Started: everything set at once, nothing awaited in between.
            self._client, self._spool = client, spool
            self._upload = _Upload(created["UploadId"])
            loop = asyncio.get_running_loop()
            self._uploader = loop.create_task(self._upload_parts())
            self._uploader.add_done_callback(self._uploader_done)
            if self.tail_every is not None:
                self._tail_task = loop.create_task(self._put_tails())

    def _uploader_done(self, task: asyncio.Task[None]) -> None:
        # A bug or an unexpected answer must fail the sink, not leave a writer waiting.
        if not task.cancelled() and (exc := task.exception()) is not None and self._error is None:
            self._failure("uploading", exc)
        self._room.set()

    async def _cut(self, *, final: bool) -> None:
        """Hand the buffer to the uploader as a part once it is full (whatever is left when
        ``final``), waiting while one part is uploading and another waiting. The data stays
        in the buffer until handed over, so a cancelled wait loses nothing."""
        if self._buffered >= self.part_size or (final and self._buffered):
            while len(self._parts) >= 2 and self._error is None and not self._uploader_gone():
                self._room.clear()
                await self._room.wait()
            if self._error is not None:
                return
            self._parts.append(b"".join(self._chunks))
            self._chunks, self._buffered = [], 0
            self._more.set()

    def _uploader_gone(self) -> bool:
        return self._uploader is None or self._uploader.done()

    async def _upload_parts(self) -> None:
        while True:
            if not self._parts:
                if self._ending:
                    return
                self._more.clear()
                await self._more.wait()
                continue
            await self._upload_part()
            self._parts.popleft()
            self._room.set()

    async def _upload_part(self) -> None:
        """Upload the next part, or fail the sink (nothing is raised)."""
        assert self._upload is not None
        upload = self._upload
        number = len(upload.parts) + 1
        if self._error is None and number > MAX_PARTS:
            self._error = SinkError(self.url, f"more than {MAX_PARTS} parts: use a larger part_size")
        if self._error is not None:
            return
        payload = _Payload(self._parts[0])  # the part is held there and by it alone: see _Payload
        try:
            answer = await sending(
                lambda body: self._client.upload_part(
                    Bucket=self.bucket, Key=self.key, UploadId=upload.upload_id, PartNumber=number, Body=body
                ),
                payload,
                f"part {number}",
                self.retry_for,
            )
        except Exception as exc:  # noqa: BLE001 - kept as the sink's error, raised by the next call
            self._failure(f"uploading part {number}", exc)
            return
        upload.parts.append({"PartNumber": number, "ETag": answer["ETag"], "Size": payload.size})
        upload.uploaded += payload.size
        # Tail pieces wholly inside the uploaded parts are no longer needed.
        await self._delete_tails(until=upload.uploaded)

    async def _put_tails(self) -> None:
        """Put the bytes no tail piece holds yet as tail pieces (``KEY.asyncrec-tail/OFFSET``),
        the first ones at once, then at most every ``tail_every`` seconds (back to back
        while they are more than a piece holds): after a crash, :func:`recover` appends the
        pieces after the uploaded parts. Each byte goes up once as a piece, and the pieces
        a part covers are removed once it is uploaded.

        Each piece is put by a task of its own, which cancelling this loop does not stop:
        a close lets it finish (:meth:`_stop_tails`), so that a piece the storage kept is
        known, and removed."""
        assert self.tail_every is not None
        while True:
            await self._written.wait()
            self._written.clear()
            self._tail_put = asyncio.get_running_loop().create_task(self._put_tail_piece())
            behind = await asyncio.shield(self._tail_put)
            if not behind:
                await asyncio.sleep(self.tail_every)  # periodic by design: the crash-loss bound

    async def _put_tail_piece(self) -> bool:
        """Put the next tail piece; whether more bytes wait than it could hold (the next
        piece then goes at once). A failure is logged: the next try covers its bytes."""
        assert self._upload is not None
        assert self.tail_every is not None
        offset, payload, behind = self._next_tail_piece()
        if not payload.size:
            return False
        metadata = {"upload-id": self._upload.upload_id, "offset": str(offset)}
        self._tail_held = payload.size
        try:
            await sending(
                lambda body: self._client.put_object(
                    Bucket=self.bucket, Key=tail_key(self.key, offset), Body=body, Metadata=metadata
                ),
                payload,
                "a tail piece",
                self.tail_every * 4,
            )
        except Exception as exc:  # noqa: BLE001 - the parts are what counts; the next try covers these bytes
            logger.warning("%s: a tail piece failed (%s); retried with the next", self.url, _describe(exc))
            self._written.set()
            return False
        finally:
            self._tail_held = 0
        self._tail_from = offset + payload.size
        self._tails.append((offset, self._tail_from))
        if behind:
            self._written.set()
        return behind

    def _next_tail_piece(self) -> tuple[int, _Payload, bool]:
        """The next tail piece: where it starts, its bytes (one copy, at most a quarter
        part), and whether more bytes wait after it.

        It starts where the last piece ended, or where the uploaded parts end if that is
        further: the bytes after them are still in memory (in the parts waiting or
        uploading, then the buffer), so the pieces keep covering them while parts upload,
        or fail to."""
        assert self._upload is not None
        start = max(self._tail_from, self._upload.uploaded)
        end = min(self.bytes_written, start + self._tail_cap)
        held = [*self._parts, *self._chunks]
        position = self.bytes_written - sum(map(len, held))  # where the bytes in memory start
        pieces = []
        for data in held:
            if position >= end:
                break
            first, last = max(start - position, 0), min(end - position, len(data))
            if first < last:
                pieces.append(memoryview(data)[first:last])
            position += len(data)
        return start, _Payload(b"".join(pieces)), end < self.bytes_written

    async def _stop_tails(self) -> None:
        """Stop putting tail pieces. A piece being put is let finish (after a failure it
        is stopped: the pieces stay for recover anyway), so that no piece the storage
        keeps is unknown when they are removed."""
        if self._tail_task is None:
            return
        self._tail_task.cancel()
        await asyncio.wait([self._tail_task])  # its own cancellation, not the caller's
        if self._tail_put is not None:
            if self._error is not None:
                self._tail_put.cancel()
            await asyncio.wait([self._tail_put])

    async def _delete_tails(self, *, until: int) -> None:
        """Remove the tail pieces that end at or before ``until``."""
        gone = [(a, b) for a, b in self._tails if b <= until]
        for offset, end in gone:
            with contextlib.suppress(Exception):  # a piece left behind is only storage (_remove_tails tries again)
                await self._client.delete_object(Bucket=self.bucket, Key=tail_key(self.key, offset))
            self._tails.remove((offset, end))

    async def _remove_tails(self) -> None:
        """Remove every tail piece of this upload, once the object holds everything: those
        put, and those the storage kept although the sink does not know them (a put whose
        answer was lost, a removal that failed). A piece left behind would be reported by
        recover as stale."""
        assert self._upload is not None
        keys = {tail_key(self.key, offset) for offset, _ in self._tails}
        self._tails.clear()
        try:
            keys |= await self._unknown_tails(keys)
        except Exception as exc:  # noqa: BLE001 - the object is whole: a piece left is only storage
            logger.warning("%s: cannot list the tail pieces left (%s)", self.url, _describe(exc))
        for key in sorted(keys):
            with contextlib.suppress(Exception):  # likewise
                await self._client.delete_object(Bucket=self.bucket, Key=key)

    async def _unknown_tails(self, known: set[str]) -> set[str]:
        """The tail pieces of this upload in the storage that are not in ``known`` (by
        their metadata: the pieces of another upload of the key are left alone)."""
        assert self._upload is not None
        found = set()
        listing: dict[str, Any] = {"Bucket": self.bucket, "Prefix": f"{self.key}{TAIL_SUFFIX}/"}
        while True:
            # Not botocore's paginator: its model is another file to load, on the loop.
            page = await self._client.list_objects_v2(**listing)
            for item in page.get("Contents", []):
                if item["Key"] in known:
                    continue
                head = await self._client.head_object(Bucket=self.bucket, Key=item["Key"])
                if head.get("Metadata", {}).get("upload-id") == self._upload.upload_id:
                    found.add(item["Key"])
            if not page.get("IsTruncated"):
                return found
            listing["ContinuationToken"] = page["NextContinuationToken"]

    async def _complete(self) -> None:
        assert self._upload is not None
        upload = self._upload
        parts = [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in upload.parts]
        try:
            await retrying(
                lambda: self._client.complete_multipart_upload(
                    Bucket=self.bucket, Key=self.key, UploadId=upload.upload_id, MultipartUpload={"Parts": parts}
                ),
                "completing the upload",
                self.retry_for,
            )
        except Exception as exc:
            raise self._failure("completing the upload", exc) from exc

    async def _upload_file(self, path: str) -> None:
        """Upload a local file as the object (one request, or parts for a large one)."""
        try:
            await upload_file(self._client, path, self.bucket, self.key, self.content_type, self.retry_for)
        except Exception as exc:
            raise self._failure("uploading the finished recording", exc) from exc

    async def _abort(self, upload_id: str) -> None:
        with contextlib.suppress(Exception):  # the object is whole; parts left are only storage
            await self._client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=upload_id)

    async def _put_empty(self) -> None:
        """Nothing was written: the object is empty, as an empty file would be."""
        try:
            async with s3_client() as client:
                await retrying(
                    lambda: client.put_object(
                        Bucket=self.bucket, Key=self.key, Body=b"", ContentType=self.content_type
                    ),
                    "writing an empty object",
                    self.retry_for,
                )
        except Exception as exc:
            raise self._failure("writing an empty object", exc) from exc

    # -- failures --------------------------------------------------------------------------------
    def _failure(self, what: str, exc: BaseException) -> SinkError:
        kept = f"; the local copy is {self.spool_path}" if self.spool_path else ""
        error = SinkError(
            self.url,
            f"{what} failed: {_describe(exc)}. Uploaded parts are kept: "
            f"`asyncrec recover {self.url}` completes them{kept}",
        )
        error.__cause__ = exc
        if self._error is None:
            self._error = error
        self._room.set()  # a writer waiting for room finds the error
        return self._error

    def _fail(self, error: SinkError, cause: BaseException) -> None:
        error.__cause__ = cause
        self._error = self._error or error
        self._room.set()
        raise self._error

    def _check(self) -> None:
        if self._error is not None:
            raise self._error
        if self._closed:
            raise SinkError(self.url, "the sink is closed")


async def upload_file(client: Any, path: str, bucket: str, key: str, mime: str, retry_for: float) -> None:
    """Upload a local file as ``bucket/key``: one PUT up to a part, else a multipart upload
    of ``PART_SIZE`` parts read one at a time (memory: one part)."""
    size = await asyncio.to_thread(os.path.getsize, path)
    if size <= PART_SIZE:
        payload = _Payload(await asyncio.to_thread(_read, path, 0, size))
        await sending(
            lambda body: client.put_object(Bucket=bucket, Key=key, Body=body, ContentType=mime),
            payload,
            "uploading",
            retry_for,
        )
        return
    created = await retrying(
        lambda: client.create_multipart_upload(Bucket=bucket, Key=key, ContentType=mime), "uploading", retry_for
    )
    upload_id = created["UploadId"]
    parts = []
    try:
        for number, offset in enumerate(range(0, size, PART_SIZE), start=1):
            payload = _Payload(await asyncio.to_thread(_read, path, offset, PART_SIZE))
            answer = await sending(
                lambda body, number=number: client.upload_part(  # type: ignore[misc]
                    Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
                ),
                payload,
                f"uploading part {number}",
                retry_for,
            )
            parts.append({"PartNumber": number, "ETag": answer["ETag"]})
        await retrying(
            lambda: client.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            ),
            "completing the upload",
            retry_for,
        )
    except BaseException:
        with contextlib.suppress(Exception):
            await client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        raise


class _Payload:
    """The bytes of one request, however many attempts it takes, held here alone until
    :meth:`release`. Each attempt reads them in place through a body of its own
    (:class:`_Body`): given bytes, botocore would wrap them in a BytesIO whose buffer
    aiohttp copies whole, once per attempt.

    Alone, because a failed attempt leaves reference cycles (the exception, its
    traceback, the frames of every call that awaited it) that keep whatever those frames
    hold until the next garbage collection: a part held by a local variable would outlive
    its upload, beyond the memory bound."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.size = len(data)

    def body(self) -> _Body:
        return _Body(self)

    def release(self) -> None:
        """Let go of the bytes: the request is over."""
        self.data = b""


class _Body(io.RawIOBase):
    """A request body reading a payload in place, in pieces: botocore reads it for its
    checksum (1 MiB at a time), aiohttp to send it (256 KiB at a time)."""

    def __init__(self, payload: _Payload) -> None:
        super().__init__()
        self._payload = payload
        self._at = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True  # botocore seeks back to the start after its checksum, and to retry

    def tell(self) -> int:
        return self._at

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._at, os.SEEK_END: self._payload.size}[whence]
        self._at = max(0, base + offset)
        return self._at

    def read(self, size: int = -1) -> bytes:
        data = self._payload.data
        end = len(data) if size is None or size < 0 else min(len(data), self._at + size)
        piece = data[self._at : end] if end > self._at else b""
        self._at = max(self._at, end)
        return piece

    def readinto(self, buffer: Any) -> int:
        piece = self.read(len(buffer))
        buffer[: len(piece)] = piece
        return len(piece)


def _spool_file(folder: str | None, suffix: str) -> str:
    fd, path = tempfile.mkstemp(prefix="asyncrec-", suffix=suffix, dir=folder)
    os.close(fd)
    return path


def _read(path: str, offset: int, size: int) -> bytes:
    with open(path, "rb") as file:
        file.seek(offset)
        return file.read(size)


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


__all__ = [
    "MIN_PART_SIZE",
    "prepare_s3",
    "tail_key",
    "PART_SIZE",
    "TAIL_SUFFIX",
    "ObjectSink",
    "mime_for_key",
    "parse_url",
    "retrying",
    "s3_client",
    "upload_file",
]
