"""WHIP ingest (RFC 9725): an endpoint for aiohttp applications, a recording callback and
the ``asyncrec serve`` application."""

from ._endpoint import WhipEndpoint, WhipSession, use_ice_hosts
from ._recording import record_sessions
from ._server import create_app

__all__ = ["WhipEndpoint", "WhipSession", "create_app", "record_sessions", "use_ice_hosts"]
