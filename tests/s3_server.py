"""A real S3 server for tests: Ceph's radosgw (the gateway that serves S3 in production Ceph
clusters) on a throwaway single-node cluster (``from s3_server import CephS3``; pytest puts
``tests/`` on ``sys.path``; the ``s3`` and ``bucket`` fixtures of conftest.py use it).

One monitor, one OSD keeping its data in RAM (memstore), no manager, and radosgw on
127.0.0.1, all in a temporary directory with no authentication between the daemons (S3
requests are still signed, with the user's keys). Nothing under /etc/ceph, no systemd: the
daemons run in the foreground as children of the test process, stopped by PID. A cold
start takes about 2 s (the paxos settings below; 13 s without them).

The daemons come from Debian: ``apt-get install --no-install-recommends ceph-mon ceph-osd
radosgw ceph-common`` (scripts/test.sh installs them). Measured quirks of radosgw 16.2
(Debian 12): ``CompleteMultipartUpload`` answers an empty ``<ETag>`` (``HEAD`` gives the
right one); ``ListParts`` on an aborted upload answers ``NoSuchKey`` where AWS says
``NoSuchUpload``. memstore does not enforce its size: tests delete what they write (the
``bucket`` fixture empties its bucket).

``start()`` and ``stop()`` block (a session fixture calls them outside the event loop; ``async
with CephS3()`` runs them on a worker thread); ``stop_gateway()`` and ``start_gateway()``,
for storage outages in the middle of a test, are coroutines. Every wait is bounded, and a
daemon that does not come up fails with the tail of its log.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

#: Program -> the Debian package that has it.
PROGRAMS = {
    "monmaptool": "ceph-mon",
    "ceph-mon": "ceph-mon",
    "ceph-osd": "ceph-osd",
    "radosgw": "radosgw",
    "radosgw-admin": "radosgw",
    "ceph": "ceph-common",
}
PACKAGES = "ceph-mon ceph-osd radosgw ceph-common"
#: Bounds, in seconds: one command, the cluster coming up, radosgw answering, a daemon exiting.
COMMAND_TIMEOUT = 30.0
CLUSTER_TIMEOUT = 60.0
GATEWAY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
LOG_TAIL_LINES = 25
#: The gateway's name in ceph.conf (its log: ``log/client.rgw.log``).
RGW = "client.rgw"

CEPH_CONF = """\
[global]
fsid = {fsid}
mon host = v2:127.0.0.1:{mon_port}
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind msgr1 = false
auth cluster required = none
auth service required = none
auth client required = none
run dir = {d}/run
crash dir = {d}/crash
log file = {d}/log/$name.log
admin socket = {d}/run/$name.$pid.asok
pid file = {d}/run/$name.pid
mon cluster log file = {d}/log/cluster.log
# One OSD: one replica, few placement groups (radosgw makes about 8 pools; 32 PGs each
# would pass the per-OSD limit).
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon max pg per osd = 1000
osd crush chooseleaf type = 0
# In this order (nearfull < backfillfull < full), or the cluster is HEALTH_ERR.
mon osd nearfull ratio = .97
mon osd backfillfull ratio = .98
mon osd full ratio = .99
# A single monitor commits at once: about 2 s to the first S3 answer instead of 13 s.
paxos propose interval = 0.05
paxos min wait = 0.01
[mon]
mon data = {d}/mon.$id
[osd]
osd data = {d}/osd.$id
osd objectstore = memstore
memstore device bytes = 2147483648
[client.rgw]
# Without these two lines radosgw retries "get_initial_auth_request returned -13" for 300 s.
auth client required = none
ms mon client mode = crc secure
rgw frontends = beast endpoint=127.0.0.1:{rgw_port}
rgw data = {d}/rgw
# Bucket quotas checked against fresh statistics (by default cached for 10 minutes).
rgw bucket quota ttl = 0
rgw user quota bucket sync interval = 0
"""


class CephError(RuntimeError):
    """A daemon or command of the test cluster failed, or did not come up in time."""


def missing_programs() -> dict[str, str]:
    """The Ceph programs not on ``PATH`` -> the Debian package that has each."""
    return {name: package for name, package in PROGRAMS.items() if shutil.which(name) is None}


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _off_loop(function: Callable[[], T]) -> T:
    """``function()`` on a worker thread. Cancelled, it waits for the call (each is bounded)
    rather than leave a daemon half started, then re-raises."""
    task = asyncio.ensure_future(asyncio.to_thread(function))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait({task})
        if not task.cancelled():
            task.exception()  # retrieved: the cancellation is what propagates
        raise


class CephS3:
    """A single-node Ceph cluster with radosgw on ``endpoint_url``, and one S3 user whose keys
    are ``access_key`` and ``secret_key``.

    ``with CephS3() as s3:`` or ``async with CephS3() as s3:`` (start, then stop), or
    ``start()``/``stop()``. Not reusable after ``stop()``.
    """

    def __init__(
        self,
        *,
        access_key: str = "ASYNCRECTESTACCESS00",
        secret_key: str = "asyncrec-test-secret-key-0000000000000000",
        region: str = "us-east-1",
    ) -> None:
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region
        self.port = free_port()
        self.directory: Path | None = None
        self._mon_port = free_port()
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()
        self._stopped = False
        self._session: Any = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def gateway_running(self) -> bool:
        """Whether radosgw is running (between ``start_gateway()`` and ``stop_gateway()``)."""
        process = self._processes.get(RGW)
        return process is not None and process.poll() is None

    def env(self) -> dict[str, str]:
        """The variables that point an AWS SDK (botocore, the AWS CLI) at this server, for
        subprocesses: ``{**os.environ, **s3.env()}`` (less any other ``AWS_*`` variable of
        the caller's, such as a profile or a session token, which the SDK would use too)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
        }

    def client(self, **config: Any) -> Any:
        """An aiobotocore S3 client for this server (``async with s3.client() as client:``);
        ``config`` goes to ``botocore.config.Config`` (e.g. ``retries={"total_max_attempts": 1}``)."""
        from aiobotocore.session import get_session
        from botocore.config import Config

        # One session for every client: each new one loads S3's service model again (0.3 s).
        if self._session is None:
            self._session = get_session()
        return self._session.create_client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(**config),
        )

    # -- the whole cluster (blocking) ------------------------------------------------------

    def start(self) -> None:
        """Create and start the cluster and the S3 user; return once radosgw answers
        (blocks about 2 s). Raises CephError, after stopping what it started, when a
        command fails or a daemon does not come up in time."""
        missing = missing_programs()
        if missing:
            packages = " ".join(sorted(set(missing.values())))
            raise CephError(f"{', '.join(missing)} not found: apt-get install --no-install-recommends {packages}")
        with self._lock:
            if self.directory is not None or self._stopped:
                raise CephError("CephS3.start(): already started")
            self.directory = Path(tempfile.mkdtemp(prefix="asyncrec-ceph-"))
            try:
                self._start_cluster()
                self._start_gateway()
            except BaseException:
                self._stop_all()
                raise

    def stop(self) -> None:
        """Stop radosgw, the OSD and the monitor (SIGTERM by PID, SIGKILL after
        ``STOP_TIMEOUT`` s, each reaped) and remove the directory; the data goes with them.
        Idempotent."""
        with self._lock:
            self._stop_all()

    def __enter__(self) -> CephS3:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> CephS3:
        await _off_loop(self.start)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await _off_loop(self.stop)

    # -- the gateway alone (storage outages) -------------------------------------------------

    async def stop_gateway(self) -> None:
        """SIGTERM radosgw and wait until it has exited: requests then fail with a connection
        error (connection refused). The cluster and its data stay."""
        await _off_loop(self._locked(self._stop_gateway))

    async def start_gateway(self) -> None:
        """Start radosgw again on the same port and wait until it answers (bounded by
        ``GATEWAY_TIMEOUT``; CephError with its log otherwise)."""
        await _off_loop(self._locked(self._start_gateway))

    def _locked(self, function: Callable[[], None]) -> Callable[[], None]:
        def call() -> None:
            with self._lock:
                if self.directory is None or self._stopped:
                    raise CephError("the cluster is not running")
                function()

        return call

    # -- internals (worker thread or a sync fixture; self._lock held) ------------------------

    def _path(self, *parts: str) -> Path:
        assert self.directory is not None
        return self.directory.joinpath(*parts)

    def _start_cluster(self) -> None:
        started = time.monotonic()
        for sub in ("run", "crash", "log", "rgw", "mon.a", "osd.0"):
            self._path(sub).mkdir()
        fsid = str(uuid.uuid4())
        conf = CEPH_CONF.format(fsid=fsid, mon_port=self._mon_port, rgw_port=self.port, d=self.directory)
        self._path("ceph.conf").write_text(conf)
        monmap = str(self._path("monmap"))
        self._run("monmaptool", "--create", "--fsid", fsid, "--addv", "a", f"[v2:127.0.0.1:{self._mon_port}]", monmap)
        self._run("ceph-mon", "-i", "a", "--mkfs", "--monmap", monmap)
        self._spawn("mon.a", "ceph-mon", "-i", "a", "-f")
        osd_uuid = str(uuid.uuid4())
        # `ceph` waits for the monitor to come up (bounded by --connect-timeout).
        osd_id = self._run("ceph", "--connect-timeout", str(int(CLUSTER_TIMEOUT)), "osd", "new", osd_uuid).strip()
        if osd_id != "0":
            raise CephError(f"ceph osd new: expected id 0, got {osd_id!r}")
        self._run("ceph-osd", "-i", "0", "--mkfs", "--osd-uuid", osd_uuid)
        self._spawn("osd.0", "ceph-osd", "-i", "0", "-f")
        deadline = started + CLUSTER_TIMEOUT
        while "osd.0 up" not in self._run("ceph", "osd", "dump"):
            self._check_deadline(deadline, "osd.0 up", "osd.0")
            time.sleep(0.1)
        self._run(
            "radosgw-admin",
            "-n",
            RGW,
            "user",
            "create",
            "--uid=asyncrec-tester",
            "--display-name=asyncrec tester",
            f"--access-key={self.access_key}",
            f"--secret={self.secret_key}",
        )

    def set_bucket_quota(self, bucket: str, max_bytes: int) -> None:
        """Limit ``bucket`` to ``max_bytes`` (radosgw answers ``QuotaExceeded`` past it).
        Blocking: from async code, call it with ``asyncio.to_thread``."""
        self._run("radosgw-admin", "-n", RGW, "quota", "set", "--quota-scope=bucket", f"--bucket={bucket}",
                  f"--max-size={max_bytes}")  # fmt: skip
        self._run("radosgw-admin", "-n", RGW, "quota", "enable", "--quota-scope=bucket", f"--bucket={bucket}")

    def _start_gateway(self) -> None:
        if self.gateway_running:
            return
        self._spawn(RGW, "radosgw", "-n", RGW, "-f")
        deadline = time.monotonic() + GATEWAY_TIMEOUT
        while not self._answers():
            self._check_deadline(deadline, f"radosgw answering on {self.endpoint_url}", RGW)
            time.sleep(0.05)

    def _answers(self) -> bool:
        """GET / answers 200 (an anonymous ListBuckets). http.client: no proxy from the environment."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2.0)
        try:
            connection.request("GET", "/")
            return connection.getresponse().status == 200
        except OSError:
            return False
        finally:
            connection.close()

    def _stop_gateway(self) -> None:
        self._terminate(RGW)

    def _stop_all(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            for name in (RGW, "osd.0", "mon.a"):
                self._terminate(name)
        finally:
            if self.directory is not None:
                shutil.rmtree(self.directory, ignore_errors=True)

    def _terminate(self, name: str) -> None:
        """SIGTERM the daemon, SIGKILL it after STOP_TIMEOUT s; reaped either way."""
        process = self._processes.pop(name, None)
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def _spawn(self, name: str, program: str, *args: str) -> None:
        """Start a daemon in the foreground as our child; its stdout and stderr go to
        ``log/NAME.out`` (its own log is ``log/NAME.log``)."""
        with open(self._path("log", f"{name}.out"), "ab") as output:
            self._processes[name] = subprocess.Popen(
                [program, "-c", str(self._path("ceph.conf")), *args],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                # Its own process group: a Ctrl-C meant for pytest does not reach it, so the
                # fixture's teardown stops the daemons in order.
                start_new_session=True,
            )

    def _run(self, program: str, *args: str) -> str:
        """Run a command to completion (bounded by COMMAND_TIMEOUT); its stdout."""
        command = [program, "-c", str(self._path("ceph.conf")), *args]
        try:
            result = subprocess.run(
                command, stdin=subprocess.DEVNULL, capture_output=True, timeout=COMMAND_TIMEOUT, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise CephError(f"{' '.join(command)}: no exit after {COMMAND_TIMEOUT} s{self._logs()}") from exc
        if result.returncode != 0:
            output = (result.stdout + result.stderr).decode(errors="replace").strip()
            raise CephError(f"{' '.join(command)}: exit status {result.returncode}: {output}{self._logs()}")
        return result.stdout.decode(errors="replace")

    def _check_deadline(self, deadline: float, what: str, name: str) -> None:
        """Raise when the daemon ``name`` has exited or ``deadline`` has passed."""
        process = self._processes.get(name)
        if process is not None and process.poll() is not None:
            raise CephError(f"{name} exited with status {process.returncode} before {what}{self._logs(name)}")
        if time.monotonic() > deadline:
            raise CephError(f"not {what} after the time allowed{self._logs(name)}")

    def _logs(self, *names: str) -> str:
        """The last lines of the daemons' logs (all of them when no name is given)."""
        if self.directory is None:
            return ""
        parts = []
        for name in names or (RGW, "osd.0", "mon.a"):
            for path in (self._path("log", f"{name}.log"), self._path("log", f"{name}.out")):
                with contextlib.suppress(OSError):
                    lines = path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
                    if lines:
                        parts.append(f"\n--- {path} (last {len(lines)} lines) ---\n" + "\n".join(lines))
        return "".join(parts)


async def delete_bucket(client: Any, bucket: str) -> None:
    """Abort every multipart upload in ``bucket``, delete every object (and every version and
    delete marker, if versioning was turned on), then the bucket; ``client`` is an aiobotocore
    S3 client."""
    uploads = client.get_paginator("list_multipart_uploads")
    async for page in uploads.paginate(Bucket=bucket):
        for upload in page.get("Uploads", []):
            await client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    versioning = await client.get_bucket_versioning(Bucket=bucket)
    if versioning.get("Status"):
        pages = client.get_paginator("list_object_versions").paginate(Bucket=bucket)
        kinds = ("Versions", "DeleteMarkers")
    else:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        kinds = ("Contents",)
    async for page in pages:
        objects = [
            {"Key": entry["Key"], **({"VersionId": entry["VersionId"]} if "VersionId" in entry else {})}
            for kind in kinds
            for entry in page.get(kind, [])
        ]
        if objects:  # at most 1000 a page, as DeleteObjects allows
            result = await client.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
            if result.get("Errors"):
                raise CephError(f"deleting the objects of {bucket}: {result['Errors']}")
    await client.delete_bucket(Bucket=bucket)
