"""WHIP ingest (RFC 9725): an endpoint for aiohttp applications, a recording callback and
the ``asyncrec serve`` application.

Needs aiohttp, which the ``server`` extra installs: ``pip install 'asyncrec[server]'``.
"""

# Without aiohttp, say what is missing and how to get it (tests/test_packaging.py).
try:
    import aiohttp as _aiohttp  # noqa: F401
except ModuleNotFoundError as exc:
    if exc.name != "aiohttp":
        raise
    raise ModuleNotFoundError(
        "asyncrec.whip (WhipEndpoint, WhipSession, record_sessions, asyncrec serve) needs aiohttp: "
        "pip install 'asyncrec[server]'",
        name="aiohttp",
    ) from exc

from ._endpoint import WhipEndpoint, WhipSession, use_ice_hosts
from ._recording import record_sessions
from ._server import create_app

__all__ = ["WhipEndpoint", "WhipSession", "create_app", "record_sessions", "use_ice_hosts"]
