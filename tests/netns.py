"""A network namespace of the test's own, with only ``lo`` up, for publishers that gather
ICE candidates on every interface but loopback (Firefox): inside it, every candidate is
on 127.0.0.1 and nothing reaches another host.

``async with loopback_namespace() as enter:`` yields a command prefix (``nsenter ... --``)
that runs a program in the namespace; the namespace lives as long as a ``sleep`` process
the context starts and always ends. As root it is ``unshare --net``; otherwise an
unprivileged user namespace (``unshare --user --map-root-user --net``) where the kernel
allows one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator

import pytest

#: Tool -> the Debian package that has it.
TOOLS = {"unshare": "util-linux", "nsenter": "util-linux", "ip": "iproute2"}
START_TIMEOUT = 10.0


def require_tools() -> None:
    """Fail (never skip) when a tool the namespace needs is missing, naming its package."""
    missing = {name: package for name, package in TOOLS.items() if shutil.which(name) is None}
    if missing:
        packages = " ".join(sorted(set(missing.values())))
        pytest.fail(f"{', '.join(missing)} not found: apt-get install {packages}", pytrace=False)


@contextlib.asynccontextmanager
async def loopback_namespace() -> AsyncIterator[list[str]]:
    require_tools()
    rootless = os.geteuid() != 0
    unshare = ["unshare", "--user", "--map-root-user", "--net"] if rootless else ["unshare", "--net"]
    # sh brings lo up, says so, and becomes the sleep that holds the namespace.
    holder = await asyncio.create_subprocess_exec(
        *unshare,
        "--",
        "sh",
        "-c",
        "ip link set lo up && echo up && exec sleep 86400",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert holder.stderr is not None
        try:
            line = await asyncio.wait_for(holder.stdout.readline(), START_TIMEOUT)
        except TimeoutError:
            line = b""
        if line.strip() != b"up":
            errors = (await asyncio.wait_for(holder.stderr.read(), START_TIMEOUT)).decode(errors="replace")
            how = "an unprivileged user namespace (kernel.unprivileged_userns_clone)" if rootless else "root"
            pytest.fail(f"no network namespace ({' '.join(unshare)}, needs {how}): {errors.strip()}", pytrace=False)
        enter = ["nsenter", f"--target={holder.pid}", "--net"]
        if rootless:
            enter += ["--user", "--preserve-credentials"]
        yield [*enter, "--"]
    finally:
        if holder.returncode is None:
            holder.kill()
        await holder.wait()
