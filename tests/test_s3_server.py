"""The tests' real S3 server (tests/s3_server.py, the ``s3`` and ``bucket`` fixtures): radosgw
answers what the object storage tests rely on, as AWS S3 does, and its outages are real
connection errors."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from s3_server import CephS3, delete_bucket

MiB = 1024 * 1024


@pytest.fixture
async def client(s3: CephS3) -> AsyncIterator[Any]:
    async with s3.client() as c:
        yield c


def error_code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


async def test_put_get_head_list(client: Any, bucket: str) -> None:
    await client.put_object(Bucket=bucket, Key="a/one.webm", Body=b"first", ContentType="video/webm")
    await client.put_object(Bucket=bucket, Key="a/two.webm", Body=b"second")
    response = await client.get_object(Bucket=bucket, Key="a/one.webm")
    async with response["Body"] as body:
        assert await body.read() == b"first"
    head = await client.head_object(Bucket=bucket, Key="a/one.webm")
    assert (head["ContentLength"], head["ContentType"]) == (5, "video/webm")
    listing = await client.list_objects_v2(Bucket=bucket, Prefix="a/")
    assert [(o["Key"], o["Size"]) for o in listing["Contents"]] == [("a/one.webm", 5), ("a/two.webm", 6)]
    with pytest.raises(ClientError) as missing:
        await client.head_object(Bucket=bucket, Key="a/none.webm")
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


async def test_multipart_upload_and_ranged_get(client: Any, bucket: str) -> None:
    first, last = os.urandom(5 * MiB), os.urandom(1000)
    upload = await client.create_multipart_upload(Bucket=bucket, Key="rec.webm")
    upload_id = upload["UploadId"]
    listed = await client.list_multipart_uploads(Bucket=bucket)
    assert [(u["Key"], u["UploadId"]) for u in listed["Uploads"]] == [("rec.webm", upload_id)]
    parts = []
    for number, data in enumerate((first, last), start=1):
        part = await client.upload_part(Bucket=bucket, Key="rec.webm", UploadId=upload_id, PartNumber=number, Body=data)
        parts.append({"PartNumber": number, "ETag": part["ETag"]})
    listed_parts = await client.list_parts(Bucket=bucket, Key="rec.webm", UploadId=upload_id)
    assert [(p["PartNumber"], p["Size"]) for p in listed_parts["Parts"]] == [(1, 5 * MiB), (2, 1000)]
    await client.complete_multipart_upload(
        Bucket=bucket, Key="rec.webm", UploadId=upload_id, MultipartUpload={"Parts": parts}
    )
    # radosgw 16.2 answers the completion with an empty ETag; HEAD has the multipart one.
    head = await client.head_object(Bucket=bucket, Key="rec.webm")
    assert head["ContentLength"] == 5 * MiB + 1000
    assert head["ETag"].endswith('-2"'), head["ETag"]
    # Across the boundary of the parts, and the last bytes.
    ranged = await client.get_object(Bucket=bucket, Key="rec.webm", Range=f"bytes={5 * MiB - 10}-{5 * MiB + 9}")
    assert ranged["ResponseMetadata"]["HTTPStatusCode"] == 206
    async with ranged["Body"] as body:
        assert await body.read() == first[-10:] + last[:10]
    tail = await client.get_object(Bucket=bucket, Key="rec.webm", Range="bytes=-100")
    async with tail["Body"] as body:
        assert await body.read() == last[-100:]
    assert (await client.list_multipart_uploads(Bucket=bucket)).get("Uploads", []) == []


async def test_abort_multipart_upload(client: Any, bucket: str) -> None:
    upload = await client.create_multipart_upload(Bucket=bucket, Key="gone.webm")
    upload_id = upload["UploadId"]
    await client.upload_part(Bucket=bucket, Key="gone.webm", UploadId=upload_id, PartNumber=1, Body=b"x" * 100)
    await client.abort_multipart_upload(Bucket=bucket, Key="gone.webm", UploadId=upload_id)
    assert (await client.list_multipart_uploads(Bucket=bucket)).get("Uploads", []) == []
    with pytest.raises(ClientError) as aborted:
        await client.list_parts(Bucket=bucket, Key="gone.webm", UploadId=upload_id)
    # AWS says NoSuchUpload; radosgw 16.2 NoSuchKey.
    assert error_code(aborted) in {"NoSuchUpload", "NoSuchKey"}
    assert "Contents" not in await client.list_objects_v2(Bucket=bucket)


async def test_a_small_part_before_the_last_is_entity_too_small(client: Any, bucket: str) -> None:
    upload = await client.create_multipart_upload(Bucket=bucket, Key="small.webm")
    upload_id = upload["UploadId"]
    parts = []
    for number in (1, 2):
        part = await client.upload_part(
            Bucket=bucket, Key="small.webm", UploadId=upload_id, PartNumber=number, Body=b"y" * 1000
        )
        parts.append({"PartNumber": number, "ETag": part["ETag"]})
    with pytest.raises(ClientError) as small:
        await client.complete_multipart_upload(
            Bucket=bucket, Key="small.webm", UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
    assert error_code(small) == "EntityTooSmall"
    # The upload is still there (the bucket fixture aborts it).
    listed = await client.list_multipart_uploads(Bucket=bucket)
    assert [u["UploadId"] for u in listed["Uploads"]] == [upload_id]


async def test_stopped_gateway_refuses_connections_and_comes_back_with_the_data(s3: CephS3, bucket: str) -> None:
    async with s3.client(retries={"total_max_attempts": 1}) as client:
        await client.put_object(Bucket=bucket, Key="kept.webm", Body=b"still here")
        await s3.stop_gateway()
        assert not s3.gateway_running
        try:
            with pytest.raises(EndpointConnectionError):
                await client.get_object(Bucket=bucket, Key="kept.webm")
        finally:
            await s3.start_gateway()
        assert s3.gateway_running
        response = await client.get_object(Bucket=bucket, Key="kept.webm")
        async with response["Body"] as body:
            assert await body.read() == b"still here"


async def test_env_points_a_subprocess_sdk_at_the_server(s3: CephS3, client: Any, bucket: str) -> None:
    await client.put_object(Bucket=bucket, Key="seen.webm", Body=b"abc")
    code = (
        "import sys, botocore.session\n"
        "s3 = botocore.session.get_session().create_client('s3')\n"
        "print(s3.get_object(Bucket=sys.argv[1], Key='seen.webm')['Body'].read().decode())\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        bucket,
        env={**env, **s3.env()},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    assert out.decode().strip() == "abc"


async def test_delete_bucket_removes_objects_and_uploads(s3: CephS3, client: Any) -> None:
    name = "asyncrec-test-delete-bucket"
    await client.create_bucket(Bucket=name)
    for key in ("a", "b/c", "d"):
        await client.put_object(Bucket=name, Key=key, Body=key.encode())
    await client.create_multipart_upload(Bucket=name, Key="pending")
    await delete_bucket(client, name)
    with pytest.raises(ClientError) as gone:
        await client.head_bucket(Bucket=name)
    assert gone.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
