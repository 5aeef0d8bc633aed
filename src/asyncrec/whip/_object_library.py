"""The recordings of a server that records to object storage (``serve --out s3://...``).

The same interface as :class:`~asyncrec.whip._library.Library`, over the objects under the
server's prefix: listed with ``ListObjectsV2``, played and downloaded through presigned
URLs (the storage serves the bytes, ranges included), deleted with ``DeleteObject``.
Durations and thumbnails would mean downloading every object: they are left out (None).
"""

from __future__ import annotations

import os
from typing import Any

from .._object_storage import TAIL_SUFFIX, s3_client
from ._library import Recording

#: How long a presigned URL handed to a browser is valid (s).
PRESIGNED_TTL = 3600


class ObjectLibrary:
    """Finished recordings under ``s3://bucket/prefix/`` (uploads in progress are not
    objects yet, and tails are skipped)."""

    def __init__(self, bucket: str, prefix: str, extensions: set[str]) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self._extensions = extensions

    def _key(self, name: str) -> str | None:
        if not name or "/" in name or "\\" in name or "\0" in name or name.startswith("."):
            return None
        if len(name.encode("utf-8", "surrogatepass")) > 255 or os.path.splitext(name)[1] not in self._extensions:
            return None
        return self.prefix + name

    async def recordings(self) -> list[Recording]:
        found = []
        async with s3_client() as client:
            paginator = client.get_paginator("list_objects_v2")
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
                for item in page.get("Contents", []):
                    name = item["Key"][len(self.prefix) :]
                    if TAIL_SUFFIX in item["Key"] or self._key(name) is None:
                        continue
                    mtime = item["LastModified"].timestamp()
                    found.append(Recording(name, int(item["Size"]), mtime, None, False))
        return sorted(found, key=lambda recording: recording.name)

    async def url(self, name: str) -> str | None:
        """A presigned GET URL of the recording, or None for a name that is not one."""
        key = self._key(name)
        if key is None or not await self._exists(key):
            return None
        async with s3_client() as client:
            url: str = await client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=PRESIGNED_TTL
            )
            return url

    async def thumbnail(self, name: str) -> bytes | None:
        return None

    async def delete(self, name: str) -> bool:
        key = self._key(name)
        if key is None or not await self._exists(key):
            return False
        async with s3_client() as client:
            await client.delete_object(Bucket=self.bucket, Key=key)
        return True

    async def _exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        async with s3_client() as client:
            try:
                await client.head_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if _status(exc) == 404:
                    return False
                raise
        return True


def _status(exc: Any) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


__all__ = ["ObjectLibrary"]
