"""Which async S3 client ObjectSink is built on, chosen by measurement: aiobotocore or obstore.

    python benchmarks/object_upload.py                 # starts a throwaway Ceph radosgw
    python benchmarks/object_upload.py --mib 256 --repeat 5

Both upload the same bytes as a recording does, in 256 KiB chunks gathered into 8 MiB parts
of a multipart upload, one part at a time (aiobotocore: create/upload_part/complete, as
ObjectSink does; obstore: its streaming writer, ``open_writer_async``, with the same
buffer size), to the same server, alternately. Printed per client: throughput (MiB/s),
the process's CPU seconds per GiB, and the event loop's worst lag while uploading (a
10 ms ticker), with ratios to aiobotocore. Uses the AWS_* variables if AWS_ENDPOINT_URL is
set; otherwise starts the tests' Ceph radosgw (tests/s3_server.py; Debian's ceph packages).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from _common import LagProbe

PART = 8 * 1024 * 1024
CHUNK = 256 * 1024
BUCKET = "asyncrec-bench"


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def with_aiobotocore(chunks: list[bytes], key: str) -> None:
    from asyncrec._object_storage import s3_client

    async with s3_client() as client:
        upload = await client.create_multipart_upload(Bucket=BUCKET, Key=key)
        parts, buffer = [], bytearray()

        async def put(data: bytes) -> None:
            answer = await client.upload_part(
                Bucket=BUCKET, Key=key, UploadId=upload["UploadId"], PartNumber=len(parts) + 1, Body=data
            )
            parts.append({"PartNumber": len(parts) + 1, "ETag": answer["ETag"]})

        for chunk in chunks:
            buffer += chunk
            if len(buffer) >= PART:
                await put(bytes(buffer))
                buffer = bytearray()
        if buffer:
            await put(bytes(buffer))
        await client.complete_multipart_upload(
            Bucket=BUCKET, Key=key, UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
        )


async def with_obstore(chunks: list[bytes], key: str) -> None:
    import obstore
    from obstore.store import S3Store

    store = S3Store(
        BUCKET,
        endpoint=os.environ["AWS_ENDPOINT_URL"],
        access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
        region=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        client_options={"allow_http": True},
        virtual_hosted_style_request=False,
    )
    writer = obstore.open_writer_async(store, key, buffer_size=PART, max_concurrency=1)
    for chunk in chunks:
        await writer.write(chunk)
    await writer.close()


Upload = Callable[[list[bytes], str], Awaitable[None]]


async def measure(name: str, run: Upload, chunks: list[bytes]) -> dict[str, float]:
    probe = LagProbe(0.010)
    probe.start()
    started, cpu_before = time.perf_counter(), cpu()
    await run(chunks, f"{name}-{time.monotonic_ns()}")
    elapsed, cpu_used = time.perf_counter() - started, cpu() - cpu_before
    await probe.stop()
    size = sum(map(len, chunks))
    worst = max(probe.lags(), default=0.0)
    return {"mib_s": size / 2**20 / elapsed, "cpu_per_gib": cpu_used / (size / 2**30), "lag_ms": worst * 1000}


async def bench(mib: int, repeat: int) -> None:
    from asyncrec._object_storage import s3_client

    async with s3_client() as client:
        await client.create_bucket(Bucket=BUCKET)
    rng = random.Random(1)
    chunks = [rng.randbytes(CHUNK) for _ in range(mib * 1024 * 1024 // CHUNK)]
    results: dict[str, list[dict[str, float]]] = {"aiobotocore": [], "obstore": []}
    runs: dict[str, Any] = {"aiobotocore": with_aiobotocore, "obstore": with_obstore}
    for round_ in range(repeat):
        for name in list(runs) if round_ % 2 == 0 else list(reversed(runs)):
            results[name].append(await measure(name, runs[name], chunks))
    base = {k: statistics.median(r[k] for r in results["aiobotocore"]) for k in ("mib_s", "cpu_per_gib", "lag_ms")}
    print(f"{mib} MiB in {CHUNK // 1024} KiB chunks, {PART // 2**20} MiB parts, median of {repeat}:")
    print(f"{'client':>12} {'MiB/s':>8} {'ratio':>6} {'CPU s/GiB':>10} {'ratio':>6} {'worst loop lag':>15}")
    for name, rows in results.items():
        row = {k: statistics.median(r[k] for r in rows) for k in base}
        print(
            f"{name:>12} {row['mib_s']:>8.1f} {row['mib_s'] / base['mib_s']:>6.2f} {row['cpu_per_gib']:>10.2f}"
            f" {row['cpu_per_gib'] / base['cpu_per_gib']:>6.2f} {row['lag_ms']:>12.1f} ms"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if os.environ.get("AWS_ENDPOINT_URL"):
        asyncio.run(bench(args.mib, args.repeat))
        return 0
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from s3_server import CephS3

    with CephS3() as ceph:
        os.environ.update(ceph.env())
        asyncio.run(bench(args.mib, args.repeat))
    return 0


if __name__ == "__main__":
    sys.exit(main())
