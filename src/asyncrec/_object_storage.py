"""ObjectSink: a recording uploaded to S3-compatible object storage while it is recorded.

The chunks are gathered into parts of a multipart upload (S3 refuses parts under 5 MiB
but the last), uploaded by a task of their own so ``write`` returns once a chunk is
buffered; at most one part waits while another uploads, so memory per recording stays
under about three parts (``part_size * 3``, 24 MiB by default) however slow the storage.

What a crash can cost. A multipart upload keeps its parts when the process that made it
dies, but they are not an object until completed: :func:`recover` completes them. Every
``tail_every`` seconds the bytes written since the last time are also put as a tail piece,
``KEY.asyncrec-tail/OFFSET`` (each byte once; the pieces a part covers are removed once it
is uploaded), which :func:`recover` appends. So a killed worker loses at most the last
``tail_every`` seconds plus one timeslice of media, parts in flight or not; a killed
machine too, as nothing needed for recovery is local.

Finished objects. At :meth:`ObjectSink.aclose` the recording is remuxed into a finished,
seekable file (:func:`~asyncrec.repair`: WebM/Matroska with Duration and Cues, MP4 with its
``moov`` first), from a local copy kept meanwhile (the spool, a temporary file), and that
file is uploaded as the object; the streaming upload is then aborted. ``finish=False``
completes the streaming upload as the object instead, as streamed (no local copy).

Configured the standard way, through botocore: ``AWS_ENDPOINT_URL`` (or
``AWS_ENDPOINT_URL_S3``), ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_DEFAULT_REGION``, ``AWS_PROFILE`` and the AWS config and credentials files.
"""

from __future__ import annotations

import asyncio
import contextlib
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

    ``part_size`` (at least 5 MiB): bytes per uploaded part, and a third of the memory
    bound. ``tail_every``: seconds between uploads of the newest bytes as tail pieces (the
    crash-loss bound), ``None`` never. ``retry_for``: how long transient failures
    (connection refused, 5xx, throttling) are retried before the sink fails. ``finish``:
    upload a finished, seekable object at the end (from a local spool in ``spool_dir``,
    by default the system's temporary directory).

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
        self._buffer = bytearray()
        #: Parts cut from the buffer: the one uploading first, then at most one waiting.
        self._parts: deque[bytes] = deque()
        self._more = asyncio.Event()  # the uploader has a part, or the end, to see
        self._room = asyncio.Event()  # the uploader took a part off, or failed
        self._ending = False
        self._uploader: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[None] | None = None
        self._tail_task: asyncio.Task[None] | None = None
        #: Bytes written since the last tail piece, and where they start.
        self._unsaved = bytearray()
        self._unsaved_from = 0
        self._unsaved_written = asyncio.Event()
        #: Tail pieces in the storage: (offset, end).
        self._tails: list[tuple[int, int]] = []
        self._spool: FileSink | None = None
        self._error: SinkError | None = None
        self._closed = False
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
        self._buffer += data
        if self.tail_every is not None:
            self._unsaved += data
            self._unsaved_written.set()
        self.bytes_written += len(data)
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
            if self._tail_task is not None:
                self._tail_task.cancel()
                await asyncio.wait([self._tail_task])  # its own cancellation, not the caller's
            if self._error is not None:
                raise self._error
            finished = False
            if self._spool is not None:
                try:
                    await self._spool.aclose()  # finishes the local copy: remuxed, seekable
                    finished = True
                except SinkError as exc:
                    logger.warning("%s: the local copy cannot be finished (%s): uploaded as streamed", self.url, exc)
            if finished:
                assert self._spool is not None
                await self._upload_file(self._spool.path)
                await self._abort(self._upload.upload_id)
            else:
                await self._complete()
            await self._delete_tails(until=None)
            if self._spool is not None:
                await asyncio.to_thread(_remove, self._spool.path)
        finally:
            if self._spool is not None:
                with contextlib.suppress(SinkError):
                    await self._spool.aclose()  # closed (and kept) after a failure too
            await self._stack.aclose()

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
        """Hand the buffer to the uploader as parts: each full part (all that is left when
        ``final``), waiting while one part is uploading and another waiting. The data stays
        in the buffer until handed over, so a cancelled wait loses nothing."""
        while len(self._buffer) >= self.part_size or (final and self._buffer):
            while len(self._parts) >= 2 and self._error is None and not self._uploader_gone():
                self._room.clear()
                await self._room.wait()
            if self._error is not None:
                return
            self._parts.append(bytes(self._buffer))
            self._buffer = bytearray()
            self._more.set()

    def _uploader_gone(self) -> bool:
        return self._uploader is None or self._uploader.done()

    async def _upload_parts(self) -> None:
        assert self._upload is not None
        upload = self._upload
        while True:
            if not self._parts:
                if self._ending:
                    return
                self._more.clear()
                await self._more.wait()
                continue
            part = self._parts[0]
            number = len(upload.parts) + 1
            if self._error is None and number > MAX_PARTS:
                self._error = SinkError(self.url, f"more than {MAX_PARTS} parts: use a larger part_size")
            if self._error is None:
                try:
                    answer = await retrying(
                        lambda part=part, number=number: self._client.upload_part(  # type: ignore[misc]
                            Bucket=self.bucket, Key=self.key, UploadId=upload.upload_id, PartNumber=number, Body=part
                        ),
                        f"part {number}",
                        self.retry_for,
                    )
                except Exception as exc:  # noqa: BLE001 - kept as the sink's error, raised by the next call
                    self._failure(f"uploading part {number}", exc)
                else:
                    upload.parts.append({"PartNumber": number, "ETag": answer["ETag"], "Size": len(part)})
                    upload.uploaded += len(part)
                    # Tail pieces wholly inside the uploaded parts are no longer needed.
                    await self._delete_tails(until=upload.uploaded)
            self._parts.popleft()
            self._room.set()

    async def _put_tails(self) -> None:
        """Put the bytes written since the last piece as a tail piece
        (``KEY.asyncrec-tail/OFFSET``), the first ones at once, then at most every
        ``tail_every`` seconds: after a crash, :func:`recover` appends the pieces after the
        uploaded parts. Each byte goes up once as a piece, and the pieces a part covers are
        removed once it is uploaded."""
        assert self._upload is not None
        assert self.tail_every is not None
        upload = self._upload
        while True:
            # As soon as there are bytes to save (the first ones at once), then at most one
            # piece per tail_every: the crash-loss bound.
            await self._unsaved_written.wait()
            self._unsaved_written.clear()
            offset, data = self._unsaved_from, bytes(self._unsaved)
            metadata = {"upload-id": upload.upload_id, "offset": str(offset)}
            try:
                await retrying(
                    lambda offset=offset, data=data, metadata=metadata: self._client.put_object(  # type: ignore[misc]
                        Bucket=self.bucket, Key=tail_key(self.key, offset), Body=data, Metadata=metadata
                    ),
                    "a tail piece",
                    self.tail_every * 4,
                )
            except Exception as exc:  # noqa: BLE001 - the parts are what counts; the next try covers these bytes
                logger.warning("%s: a tail piece failed (%s); retried with the next", self.url, _describe(exc))
                self._unsaved_written.set()
            else:
                del self._unsaved[: len(data)]  # what came meanwhile stays for the next piece
                self._unsaved_from = offset + len(data)
                self._tails.append((offset, offset + len(data)))
            await asyncio.sleep(self.tail_every)  # periodic by design: the crash-loss bound

    async def _delete_tails(self, *, until: int | None) -> None:
        """Remove the tail pieces that end at or before ``until`` (all: None)."""
        gone = [(a, b) for a, b in self._tails if until is None or b <= until]
        for offset, end in gone:
            with contextlib.suppress(Exception):  # a piece left behind is only storage
                await self._client.delete_object(Bucket=self.bucket, Key=tail_key(self.key, offset))
            self._tails.remove((offset, end))

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
        body = await asyncio.to_thread(_read, path, 0, size)
        await retrying(
            lambda: client.put_object(Bucket=bucket, Key=key, Body=body, ContentType=mime), "uploading", retry_for
        )
        return
    created = await retrying(
        lambda: client.create_multipart_upload(Bucket=bucket, Key=key, ContentType=mime), "uploading", retry_for
    )
    upload_id = created["UploadId"]
    parts = []
    try:
        for number, offset in enumerate(range(0, size, PART_SIZE), start=1):
            body = await asyncio.to_thread(_read, path, offset, PART_SIZE)
            answer = await retrying(
                lambda body=body, number=number: client.upload_part(  # type: ignore[misc]
                    Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
                ),
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
