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
import os
import shutil
import tempfile
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


async def recover(url: str, *, finish: bool = True, retry_for: float = 60.0) -> list[Recovered]:
    """Recover the recordings abandoned at ``url``: ``s3://BUCKET/KEY`` for one,
    ``s3://BUCKET/PREFIX/`` (or ``s3://BUCKET/``) for every one under a prefix.

    For each key with an unfinished upload (the latest, if several), its parts are
    completed into the object, the tail appended where it continues them, and the object
    replaced by a finished one (unless ``finish=False`` or it cannot be read as media).
    A key with only a tail (it died before the first part) becomes an object of its tail.

    Returns what was done per recording (empty: nothing to recover). Raises ValueError
    for a URL that is not ``s3://``, and the storage's error when it refuses or stays
    unreachable for ``retry_for`` seconds. Cancelling stops at the next request: parts
    not yet completed stay for another try.
    """
    bucket, key = _split(url)
    prefix_only = key == "" or key.endswith("/")
    async with s3_client() as client:
        uploads = await _uploads(client, bucket, key, retry_for)
        tails = await _tails(client, bucket, key, retry_for)
        keys = {k for k in [*uploads, *tails] if prefix_only or k == key}
        results = []
        for name in sorted(keys):
            results.append(await _recover_one(client, bucket, name, uploads.get(name, []), finish, retry_for))
        return results


async def _uploads(client: Any, bucket: str, prefix: str, retry_for: float) -> dict[str, list[dict[str, Any]]]:
    """The unfinished uploads under ``prefix``, by key, latest first."""
    found: dict[str, list[dict[str, Any]]] = {}
    paginator = client.get_paginator("list_multipart_uploads")
    async for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for upload in page.get("Uploads", []):
            found.setdefault(upload["Key"], []).append(upload)
    for uploads in found.values():
        uploads.sort(key=lambda upload: upload.get("Initiated", 0), reverse=True)
    return found


async def _tails(client: Any, bucket: str, prefix: str, retry_for: float) -> set[str]:
    """Keys under ``prefix`` that have a tail object."""
    keys = set()
    paginator = client.get_paginator("list_objects_v2")
    async for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            if item["Key"].endswith(TAIL_SUFFIX):
                keys.add(item["Key"].removesuffix(TAIL_SUFFIX))
    return keys


async def _parts(client: Any, bucket: str, key: str, upload_id: str) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    paginator = client.get_paginator("list_parts")
    async for page in paginator.paginate(Bucket=bucket, Key=key, UploadId=upload_id):
        parts.extend(page.get("Parts", []))
    return sorted(parts, key=lambda part: part["PartNumber"])


async def _tail(client: Any, bucket: str, key: str) -> tuple[bytes, dict[str, str]] | None:
    from botocore.exceptions import ClientError

    try:
        answer = await client.get_object(Bucket=bucket, Key=key + TAIL_SUFFIX)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise
    async with answer["Body"] as body:
        return await body.read(), dict(answer.get("Metadata", {}))


async def _recover_one(
    client: Any, bucket: str, key: str, uploads: list[dict[str, Any]], finish: bool, retry_for: float
) -> Recovered:
    result = Recovered(f"s3://{bucket}/{key}")
    tail = await _tail(client, bucket, key)
    upload = uploads[0] if uploads else None
    for older in uploads[1:]:
        result.problems.append(f"an older unfinished upload ({older['UploadId']}) was left as it is")
    parts = await _parts(client, bucket, key, upload["UploadId"]) if upload is not None else []
    result.parts = len(parts)
    result.part_bytes = sum(int(part["Size"]) for part in parts)
    extra = b""
    if tail is not None:
        data, meta = tail
        offset = int(meta.get("offset", "-1")) if meta.get("offset", "").isdigit() else -1
        same = upload is None or meta.get("upload-id") == upload["UploadId"]
        if not same:
            result.problems.append("the tail belongs to another upload: not appended")
        elif offset < 0 or offset > result.part_bytes:
            result.problems.append(f"the tail starts at byte {offset}, after the parts end: not appended")
        else:
            extra = data[result.part_bytes - offset :]
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
        await _delete_tail(client, bucket, key)
        return result
    if finish or extra:
        await _rewrite(client, bucket, key, bool(parts), extra, finish, result, retry_for)
    await _delete_tail(client, bucket, key)
    return result


async def _rewrite(
    client: Any,
    bucket: str,
    key: str,
    has_parts: bool,
    extra: bytes,
    finish: bool,
    result: Recovered,
    retry_for: float,
) -> None:
    """Download the completed object, append ``extra``, finish it, upload it back."""
    suffix = os.path.splitext(key)[1]
    folder = await asyncio.to_thread(tempfile.mkdtemp, prefix="asyncrec-recover-")
    try:
        streamed = os.path.join(folder, "streamed" + suffix)
        finished = os.path.join(folder, "finished" + suffix)
        file = await asyncio.to_thread(open, streamed, "wb")
        try:
            if has_parts:
                answer = await client.get_object(Bucket=bucket, Key=key)
                async with answer["Body"] as body:
                    while data := await body.read(_READ):
                        await asyncio.to_thread(file.write, data)
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
    finally:
        await asyncio.to_thread(shutil.rmtree, folder, True)


async def _delete_tail(client: Any, bucket: str, key: str) -> None:
    with contextlib.suppress(Exception):
        await client.delete_object(Bucket=bucket, Key=key + TAIL_SUFFIX)


__all__ = ["Recovered", "recover"]
