"""recover: turn what a dead recorder left in object storage into finished objects.

An :class:`~asyncrec.ObjectSink` whose process died leaves a multipart upload that was
never completed (its parts are kept by the storage, invisible as an object) and the last
tail it put (``KEY.asyncrec-tail``, tagged with the upload's id and where it starts).
:func:`recover` completes the upload, appends what of the tail comes after the parts, and
replaces the object with a finished, seekable one (:func:`~asyncrec.repair`), then removes
the tail. What it could not save is said in the result, never silently dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ._errors import NotReadableError
from ._object_storage import TAIL_SUFFIX, _describe, mime_for_key, retrying, s3_client, upload_file
from ._repair import repair

#: How much of an object is read into memory at once while downloading it.
_READ = 1024 * 1024


@dataclass
class Recovered:
    """What :func:`recover` did for one recording."""

    url: str
    #: Parts of the abandoned upload that are now in the object, and their bytes.
    parts: int = 0
    part_bytes: int = 0
    #: Bytes of the tail object appended after the parts.
    tail_bytes: int = 0
    #: The object is finished and seekable (False: kept as it was streamed).
    finished: bool = False
    #: What could not be saved, or was left as it was, and why.
    problems: list[str] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return self.part_bytes + self.tail_bytes

    def summary(self) -> str:
        state = "finished" if self.finished else "as streamed"
        line = f"{self.url}: {self.bytes} bytes recovered ({self.parts} parts + {self.tail_bytes} tail bytes), {state}"
        return "; ".join([line, *self.problems])


def _split(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"not an object URL s3://BUCKET/KEY or s3://BUCKET/PREFIX/: {url!r}")
    return parts.netloc, parts.path.lstrip("/")


async def recover(url: str, *, finish: bool = True, retry_for: float = 60.0, min_age: float = 30.0) -> list[Recovered]:
    """Recover the recordings abandoned at ``url``: ``s3://BUCKET/KEY`` for one,
    ``s3://BUCKET/PREFIX/`` (or ``s3://BUCKET/``) for every one under a prefix.

    For each key with an unfinished upload, the upload its tail pieces name (else the
    oldest: the streaming one) is completed into the object, the tail pieces that
    continue its parts are appended, and the object replaced by a finished one (unless
    ``finish=False`` or it cannot be read as media). A key with only tail pieces (it died
    before the first part) becomes an object of them. Tail pieces are removed only once
    what they hold is in the object.

    An upload with activity (a part or a tail piece, by the storage's clock) in the last
    ``min_age`` seconds is still being recorded, by a live recorder: it is skipped, and
    said so. Other unfinished uploads of the same key are left alone, and said so.

    Returns what was done per recording (empty: nothing to recover); a failure of one
    recording is reported in its result, and the others go on. Raises ValueError for a
    URL that is not ``s3://``, and the storage's error when listing fails. Cancelling
    stops at the next request: what is not yet completed stays for another try.
    """
    bucket, key = _split(url)
    prefix_only = key == "" or key.endswith("/")
    async with s3_client() as client:
        listing = await retrying(lambda: client.list_objects_v2(Bucket=bucket, MaxKeys=1), "listing", retry_for)
        now = _server_time(listing)
        uploads = await _uploads(client, bucket, key)
        tails = await _tails(client, bucket, key)
        keys = {k for k in [*uploads, *tails] if prefix_only or k == key}
        results = []
        for name in sorted(keys):
            result = Recovered(f"s3://{bucket}/{name}")
            # min_age 0: no upload is taken for live (the Date header has 1 s steps).
            live_after = now - min_age if min_age > 0 else None
            try:
                found = (uploads.get(name, []), tails.get(name, []))
                await _recover_one(client, bucket, name, *found, finish, retry_for, live_after, result)
            except Exception as exc:  # noqa: BLE001 - said in its result; the other recordings go on
                result.problems.append(f"failed: {_describe(exc)} (nothing removed: try again)")
            results.append(result)
        return results


def _server_time(answer: dict[str, Any]) -> float:
    """The storage's clock, from a response's Date header (local time if there is none)."""
    date = answer.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    try:
        return email.utils.parsedate_to_datetime(date).timestamp() if date else time.time()
    except (TypeError, ValueError):
        return time.time()


async def _uploads(client: Any, bucket: str, prefix: str) -> dict[str, list[dict[str, Any]]]:
    """The unfinished uploads under ``prefix``, by key, oldest first."""
    found: dict[str, list[dict[str, Any]]] = {}
    paginator = client.get_paginator("list_multipart_uploads")
    async for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for upload in page.get("Uploads", []):
            found.setdefault(upload["Key"], []).append(upload)
    for uploads in found.values():
        uploads.sort(key=lambda upload: upload["Initiated"])
    return found


async def _tails(client: Any, bucket: str, prefix: str) -> dict[str, list[dict[str, Any]]]:
    """The tail pieces under ``prefix``, by the key they belong to, by offset."""
    found: dict[str, list[dict[str, Any]]] = {}
    paginator = client.get_paginator("list_objects_v2")
    async for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            owner, sep, offset = item["Key"].rpartition(TAIL_SUFFIX + "/")
            if sep and offset.isdigit():
                found.setdefault(owner, []).append({**item, "Offset": int(offset)})
    for pieces in found.values():
        pieces.sort(key=lambda piece: piece["Offset"])
    return found


async def _parts(client: Any, bucket: str, key: str, upload_id: str) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    paginator = client.get_paginator("list_parts")
    async for page in paginator.paginate(Bucket=bucket, Key=key, UploadId=upload_id):
        parts.extend(page.get("Parts", []))
    return sorted(parts, key=lambda part: part["PartNumber"])


async def _get(client: Any, bucket: str, key: str) -> tuple[bytes, dict[str, str]]:
    answer = await client.get_object(Bucket=bucket, Key=key)
    body = answer["Body"]  # read, then closed (its "async with" differs between versions)
    try:
        return await body.read(), dict(answer.get("Metadata", {}))
    finally:
        body.close()


async def _exists(client: Any, bucket: str, key: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        await client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0) == 404:
            return False
        raise
    return True


async def _recover_one(
    client: Any,
    bucket: str,
    key: str,
    uploads: list[dict[str, Any]],
    pieces: list[dict[str, Any]],
    finish: bool,
    retry_for: float,
    live_after: float | None,
    result: Recovered,
) -> None:
    # The tail pieces, with the upload they belong to (their metadata).
    tails = []
    for piece in pieces:
        data, meta = await _get(client, bucket, piece["Key"])
        tails.append((piece, data, meta.get("upload-id")))
    named = {upload_id for _, _, upload_id in tails}
    upload = next((u for u in uploads if u["UploadId"] in named), uploads[0] if uploads else None)
    if upload is None and named and await _exists(client, bucket, key):
        # The pieces outlived a finished upload (their removal failed): the object is whole.
        result.problems.append("stale tail pieces of a finished recording removed; the object left as it is")
        await _delete_pieces(client, bucket, pieces)
        return
    parts = await _parts(client, bucket, key, upload["UploadId"]) if upload is not None else []
    activity = [
        *(part["LastModified"].timestamp() for part in parts),
        *(piece["LastModified"].timestamp() for piece, _, _ in tails),
        *([upload["Initiated"].timestamp()] if upload is not None else []),
    ]
    if live_after is not None and activity and max(activity) > live_after:
        result.problems.append("still being recorded (recent activity): skipped")
        return
    for other in uploads:
        if upload is None or other["UploadId"] != upload["UploadId"]:
            result.problems.append(f"another unfinished upload ({other['UploadId']}) was left as it is")
    result.parts = len(parts)
    result.part_bytes = end = sum(int(part["Size"]) for part in parts)
    extra = bytearray()
    for piece, data, upload_id in tails:
        offset = piece["Offset"]
        if upload is not None and upload_id != upload["UploadId"]:
            continue
        if offset + len(data) <= end:
            continue  # inside the parts already
        if offset > end:
            result.problems.append(f"bytes {end} to {offset} were never uploaded: the tail after them is left out")
            break
        extra += data[end - offset :]
        end = offset + len(data)
    result.tail_bytes = len(extra)
    if upload is not None and parts:
        completed = [{"PartNumber": part["PartNumber"], "ETag": part["ETag"]} for part in parts]
        await retrying(
            lambda: client.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload["UploadId"], MultipartUpload={"Parts": completed}
            ),
            "completing the upload",
            retry_for,
        )
    elif upload is not None:
        await client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload["UploadId"])
    if not parts and not extra:
        result.problems.append("nothing had been uploaded")
        return
    rewrite = finish or extra
    if rewrite and not await _rewrite(client, bucket, key, bool(parts), bytes(extra), finish, result, retry_for):
        return  # the pieces stay: what they hold is not in the object
    await _delete_pieces(client, bucket, [piece for piece, _, _ in tails])


async def _delete_pieces(client: Any, bucket: str, pieces: list[dict[str, Any]]) -> None:
    for piece in pieces:
        with contextlib.suppress(Exception):
            await client.delete_object(Bucket=bucket, Key=piece["Key"])


async def _rewrite(
    client: Any,
    bucket: str,
    key: str,
    has_parts: bool,
    extra: bytes,
    finish: bool,
    result: Recovered,
    retry_for: float,
) -> bool:
    """Download the completed object, append ``extra``, finish it, upload it back;
    whether the object now holds everything (else it is as the parts made it)."""
    suffix = os.path.splitext(key)[1]
    folder = await asyncio.to_thread(tempfile.mkdtemp, prefix="asyncrec-recover-")
    try:
        streamed = os.path.join(folder, "streamed" + suffix)
        finished = os.path.join(folder, "finished" + suffix)
        file = await asyncio.to_thread(open, streamed, "wb")
        try:
            if has_parts:
                answer = await client.get_object(Bucket=bucket, Key=key)
                body = answer["Body"]
                try:
                    while data := await body.read(_READ):
                        await asyncio.to_thread(file.write, data)
                finally:
                    body.close()
            await asyncio.to_thread(file.write, extra)
        finally:
            await asyncio.to_thread(file.close)
        upload = streamed
        if finish:
            try:
                await asyncio.to_thread(repair, streamed, finished, sync=False)
            except NotReadableError as exc:
                result.problems.append(f"not finished ({exc}): kept as streamed")
            else:
                upload = finished
                result.finished = True
        try:
            await upload_file(client, upload, bucket, key, mime_for_key(key), retry_for)
        except Exception as exc:  # noqa: BLE001 - reported; the object stays as completed
            result.finished = False
            result.problems.append(f"the repaired object could not be uploaded ({_describe(exc)}): kept as streamed")
            return False
        return True
    finally:
        await asyncio.to_thread(shutil.rmtree, folder, True)


__all__ = ["Recovered", "recover"]
