"""A real nginx in front of WHIP workers, for tests (``from load_balancer import Nginx``;
pytest puts ``tests/`` on ``sys.path``).

The site is deploy/nginx.conf.template, the configuration we ship, rendered for the test's
workers; ``render_nginx_conf()`` wraps it in a main configuration that keeps the pid file,
the logs and the temp paths in one temporary directory. nginx runs in the foreground
(``daemon off``) as a child of the test process, in its own process group, and is stopped
by PID.

nginx comes from Debian (``apt-get install --no-install-recommends nginx``: the package
with the binary and its built-in proxy module; scripts/test.sh installs it).

``start()`` and ``stop()`` block (about 50 ms); ``async with Nginx(...)`` runs them on a
worker thread. Every wait is bounded, and an nginx that does not come up fails with the
tail of its error log.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from s3_server import _off_loop, free_port

TEMPLATE = Path(__file__).resolve().parent.parent / "deploy" / "nginx.conf.template"
#: Bounds, in seconds: nginx listening after start; exiting after SIGQUIT, then SIGTERM.
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
LOG_TAIL_LINES = 25
#: A worker id as it may appear in a URL path and an nginx location.
WORKER_ID = re.compile(r"[A-Za-z0-9_-]+")
#: The placeholders of a line repeated once per worker.
PER_WORKER = ("@WORKER_ID@", "@WORKER_ADDRESS@")

MAIN_CONF = """\
# The test load balancer of tests/load_balancer.py:
#   nginx -p {d} -c {d}/nginx.conf -e {d}/error.log -g 'daemon off;'
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;

events {{
    worker_connections 256;
}}

http {{
    # Which workers nginx tried for each request, and what each answered.
    log_format upstreams '$request_method $request_uri $status '
                         'upstream=[$upstream_addr] upstream_status=[$upstream_status]';
    access_log {d}/access.log upstreams;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;

    # --- deploy/nginx.conf.template, rendered ---
{site}
}}
"""


class NginxError(RuntimeError):
    """nginx is missing, refused its configuration, exited, or did not listen in time."""


def render_site(workers: Sequence[tuple[str, str, int]], listen: str) -> str:
    """deploy/nginx.conf.template for ``workers`` (``(id, host, port)``, in order) listening
    on ``listen`` (``"8080"``, ``"127.0.0.1:8080"``), less its first paragraph. Raises ValueError for no worker, a
    repeated id, or an id that is not letters, digits, ``_`` and ``-``."""
    if not workers:
        raise ValueError("no worker")
    ids = [worker_id for worker_id, _, _ in workers]
    if len(set(ids)) != len(ids):
        raise ValueError(f"repeated worker ids: {ids}")
    for worker_id in ids:
        if not WORKER_ID.fullmatch(worker_id):
            raise ValueError(f"worker id {worker_id!r}: only letters, digits, '_' and '-'")
    text = TEMPLATE.read_text()
    # The first paragraph is about the template itself.
    body = text.split("\n\n", 1)[1] if text.startswith("#") else text
    lines = []
    for line in body.splitlines():
        if any(placeholder in line for placeholder in PER_WORKER):
            for worker_id, host, port in workers:
                address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
                lines.append(line.replace("@WORKER_ID@", worker_id).replace("@WORKER_ADDRESS@", address))
        else:
            lines.append(line.replace("@LISTEN@", listen))
    return "\n".join(lines) + "\n"


def render_nginx_conf(workers: Sequence[tuple[str, str, int]], listen_port: int, directory: Path) -> str:
    """A complete nginx.conf: the site of ``render_site()`` listening on
    127.0.0.1:``listen_port``, with the pid file, the logs (``error.log``, ``access.log``:
    one line a request with the workers tried and their statuses) and the temp paths in
    ``directory``."""
    site = render_site(workers, f"127.0.0.1:{listen_port}")
    indented = "\n".join(f"    {line}" if line else "" for line in site.splitlines())
    return MAIN_CONF.format(d=directory, site=indented)


class Nginx:
    """nginx on 127.0.0.1:``port`` (a free one unless given) in front of ``workers``
    (``(id, host, port)``): ``url`` is its base URL.

    ``async with Nginx(workers) as lb:`` or ``with``, or ``start()``/``stop()``. Not
    reusable after ``stop()``.
    """

    def __init__(self, workers: Sequence[tuple[str, str, int]], *, port: int | None = None) -> None:
        self.workers = list(workers)
        self.port = port if port is not None else free_port()
        self.directory: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._stopped = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def access_log(self) -> list[str]:
        """The lines of the access log so far (nginx writes each when its request ends)."""
        if self.directory is None:
            return []
        with contextlib.suppress(FileNotFoundError):
            return (self.directory / "access.log").read_text(errors="replace").splitlines()
        return []

    # -- blocking ---------------------------------------------------------------------------

    def start(self) -> None:
        """Write the configuration, start nginx, return once its port accepts connections.
        Raises NginxError (after stopping it) when nginx is missing, refuses the
        configuration, exits, or is not listening after ``START_TIMEOUT`` s."""
        program = shutil.which("nginx")
        if program is None:
            raise NginxError("nginx not found: apt-get install --no-install-recommends nginx")
        with self._lock:
            if self.directory is not None or self._stopped:
                raise NginxError("Nginx.start(): already started")
            self.directory = Path(tempfile.mkdtemp(prefix="asyncrec-nginx-"))
            try:
                self._start(program)
            except BaseException:
                self._stop()
                raise

    def stop(self) -> None:
        """SIGQUIT (finish the requests in flight, then exit), SIGTERM after ``STOP_TIMEOUT``
        s, then SIGKILL to its process group; reaped either way. Removes the directory.
        Idempotent."""
        with self._lock:
            self._stop()

    def __enter__(self) -> Nginx:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> Nginx:
        await _off_loop(self.start)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await _off_loop(self.stop)

    # -- internals (self._lock held) --------------------------------------------------------

    def _start(self, program: str) -> None:
        assert self.directory is not None
        # nginx started as root runs its worker as "nobody": it must be able to reach the
        # temp paths in here (mkdtemp makes the directory 0700).
        self.directory.chmod(0o755)
        conf = self.directory / "nginx.conf"
        conf.write_text(render_nginx_conf(self.workers, self.port, self.directory))
        # -e: the log nginx writes to before it has read error_log from the configuration
        # (else /var/log/nginx/error.log).
        command = [program, "-p", str(self.directory), "-c", str(conf), "-e", str(self.directory / "error.log")]
        with open(self.directory / "nginx.out", "ab") as output:
            self._process = subprocess.Popen(
                [*command, "-g", "daemon off;"],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                # Its own process group: a Ctrl-C meant for pytest does not reach it, and a
                # SIGKILL to the group takes its worker process too.
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not self._listening(self._process.pid):
            if self._process.poll() is not None:
                raise NginxError(f"nginx exited with status {self._process.returncode}{self._logs()}")
            if time.monotonic() > deadline:
                raise NginxError(f"nginx not listening on {self.url} after {START_TIMEOUT} s{self._logs()}")
            time.sleep(0.02)

    def _listening(self, pid: int) -> bool:
        """nginx wrote its pid file, which it does once its port is bound (so the port
        is not someone else's, taken after free_port() chose it), and the port accepts."""
        assert self.directory is not None
        try:
            if (self.directory / "nginx.pid").read_text().strip() != str(pid):
                return False
        except FileNotFoundError:
            return False
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                return True
        except OSError:
            return False

    def _stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            process, self._process = self._process, None
            if process is not None and process.poll() is None:
                self._end(process)
        finally:
            if self.directory is not None:
                shutil.rmtree(self.directory, ignore_errors=True)

    @staticmethod
    def _end(process: subprocess.Popen[bytes]) -> None:
        for sig in (signal.SIGQUIT, signal.SIGTERM):
            process.send_signal(sig)
            try:
                process.wait(STOP_TIMEOUT)
                return
            except subprocess.TimeoutExpired:
                pass
        # The group is the one start_new_session made: nginx's master and its worker.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def _logs(self) -> str:
        """The last lines of the error log and of nginx's own output."""
        if self.directory is None:
            return ""
        parts = []
        for name in ("error.log", "nginx.out"):
            path = self.directory / name
            with contextlib.suppress(OSError):
                lines = path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
                if lines:
                    parts.append(f"\n--- {path} (last {len(lines)} lines) ---\n" + "\n".join(lines))
        return "".join(parts)
