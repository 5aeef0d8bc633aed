"""A WHIP endpoint (RFC 9725) for a user's own aiohttp application.

Each ``POST`` with an SDP offer builds an aiortc ``RTCPeerConnection``, answers, and hands
the session's remote tracks, as a :class:`~asyncrec.MediaStream`, to a callback of the
user's (record it, process it, both). The session ends on ``DELETE``, when the peer
disconnects or ICE fails, or when it never connects; the callback is then told through
``session.wait_closed()`` and the peer connection is closed after it returns.

Status codes, as RFC 9725 and HTTP prescribe: 201 with ``Location``, ``ETag`` and the SDP
answer; 400 malformed SDP; 401 with ``WWW-Authenticate: Bearer`` for a missing or wrong
token; 404 unknown session; 412 ``If-Match`` mismatch; 413 body too large; 415 wrong
content type; 422 an ICE restart (trickle ICE is supported, restarts are not); 503 over
the session limit. ``OPTIONS`` answers CORS preflights for browsers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import inspect
import logging
import os
import secrets
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp

from .._stream import MediaStream

logger = logging.getLogger(__name__)

SDP = "application/sdp"
SDP_FRAG = "application/trickle-ice-sdpfrag"
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "Location, ETag, Link, Accept-Patch, Accept-Post",
}


class WhipSession:
    """One publisher: its peer connection, its stream, and how it ended."""

    def __init__(self, session_id: str, pc: RTCPeerConnection, stream: MediaStream) -> None:
        self.id = session_id
        self.pc = pc
        self.stream = stream
        self.etag = f'"{secrets.token_hex(8)}"'
        #: Why the session ended: "deleted", "disconnected", "failed", "timeout", "shutdown".
        self.end_reason: str | None = None
        self._closed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def wait_closed(self) -> None:
        """Wait until the session ends (DELETE, disconnect, ICE failure, timeout)."""
        await self._closed.wait()

    def _end(self, reason: str) -> None:
        if not self._closed.is_set():
            self.end_reason = reason
            self._closed.set()


SessionCallback = Callable[[WhipSession], Awaitable[None] | None]


def ice_hosts_from_env() -> list[str] | None:
    """``ASYNCREC_ICE_HOSTS`` (comma-separated addresses), or None when unset."""
    value = os.environ.get("ASYNCREC_ICE_HOSTS", "").strip()
    return [part.strip() for part in value.split(",") if part.strip()] or None


def use_ice_hosts(hosts: Iterable[str]) -> None:
    """Make ICE gather host candidates from ``hosts`` only.

    aiortc offers no per-connection choice, so this sets aioice's host address lookup for
    the whole process.
    """
    import aioice.ice

    chosen = list(hosts)

    def get_host_addresses(use_ipv4: bool = True, use_ipv6: bool = True) -> list[str]:
        return list(chosen)

    aioice.ice.get_host_addresses = get_host_addresses


class WhipEndpoint:
    """WHIP ingest routes for an aiohttp application (see the module docstring).

    ``on_session(session)`` runs as a task for each session; ``session.stream`` holds the
    publisher's tracks and ``await session.wait_closed()`` returns when it ends.
    """

    def __init__(
        self,
        on_session: SessionCallback,
        *,
        path: str = "/whip",
        token: str | None = None,
        max_sessions: int = 16,
        max_body: int = 64 * 1024,
        connect_timeout: float = 30.0,
        ice_hosts: Iterable[str] | None = None,
        ice_servers: Iterable[str] = (),
        finalize_timeout: float = 15.0,
    ) -> None:
        self._on_session = on_session
        self.path = path.rstrip("/")
        self._token = token
        self.max_sessions = max_sessions
        self.max_body = max_body
        self.connect_timeout = connect_timeout
        self.finalize_timeout = finalize_timeout
        self._ice_servers = [RTCIceServer(urls=url) for url in ice_servers]
        hosts = list(ice_hosts) if ice_hosts is not None else ice_hosts_from_env()
        if hosts:
            use_ice_hosts(hosts)
        self.sessions: dict[str, WhipSession] = {}
        self._answering = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def add_routes(self, app: web.Application) -> None:
        """Add the endpoint's routes, and its shutdown, to ``app``."""
        app.router.add_post(self.path, self._post)
        app.router.add_route("OPTIONS", self.path, self._options)
        resource = f"{self.path}/{{session_id}}"
        app.router.add_delete(resource, self._delete)
        app.router.add_patch(resource, self._patch)
        app.router.add_route("OPTIONS", resource, self._options)
        app.on_shutdown.append(lambda _app: self.close())

    async def close(self) -> None:
        """End every session and wait for their callbacks and peer connections."""
        for session in list(self.sessions.values()):
            session._end("shutdown")
        tasks = [t for t in self._tasks if not t.done()]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- HTTP ---------------------------------------------------------------------------------------
    def _error(self, status: int, text: str, **headers: str) -> web.Response:
        return web.Response(status=status, text=text + "\n", headers={**CORS_HEADERS, **headers})

    def _authorized(self, request: web.Request) -> bool:
        if self._token is None:
            return True
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self._token.encode())

    def _unauthorized(self) -> web.Response:
        return self._error(401, "missing or wrong bearer token", **{"WWW-Authenticate": 'Bearer realm="whip"'})

    async def _options(self, request: web.Request) -> web.Response:
        headers = {
            **CORS_HEADERS,
            "Access-Control-Allow-Methods": "POST, PATCH, DELETE, OPTIONS",
            "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
            "Access-Control-Max-Age": "86400",
        }
        if "session_id" in request.match_info:
            headers["Accept-Patch"] = SDP_FRAG
        else:
            headers["Accept-Post"] = SDP
        return web.Response(status=204, headers=headers)

    async def _read_body(self, request: web.Request) -> str | web.Response:
        if request.content_length is not None and request.content_length > self.max_body:
            return self._error(413, f"body larger than {self.max_body} bytes")
        # read(n) returns what has arrived (up to n bytes), not n bytes: read until the end.
        body = b""
        while chunk := await request.content.read(self.max_body + 1 - len(body)):
            body += chunk
            if len(body) > self.max_body:
                return self._error(413, f"body larger than {self.max_body} bytes")
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            return self._error(400, "the body is not UTF-8")

    async def _post(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized()
        if request.content_type != SDP:
            return self._error(415, f"expected {SDP}", **{"Accept-Post": SDP})
        body = await self._read_body(request)
        if isinstance(body, web.Response):
            return body
        if len(self.sessions) + self._answering >= self.max_sessions:
            return self._error(503, "too many sessions", **{"Retry-After": "10"})
        if not body.lstrip().startswith("v=0") or "\nm=" not in body:
            return self._error(400, "not an SDP offer")
        session_id = secrets.token_urlsafe(12)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=self._ice_servers))
        stream = MediaStream()
        pc.on("track", stream.addTrack)
        # Counted while answering, so concurrent offers cannot pass the limit together.
        self._answering += 1
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="offer"))
            if not stream.getTracks():
                raise ValueError("the offer sends neither audio nor video")
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:  # noqa: BLE001 - aiortc raises many types for a bad offer
            await pc.close()
            return self._error(400, f"cannot answer this offer: {exc}")
        finally:
            self._answering -= 1
        session = WhipSession(session_id, pc, stream)
        self.sessions[session_id] = session
        pc.on("connectionstatechange", lambda: self._on_state(session))
        task = asyncio.get_running_loop().create_task(self._run(session), name=f"whip-{session_id}")
        session.task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        location = f"{self.path}/{session_id}"
        headers = {**CORS_HEADERS, "Location": location, "ETag": session.etag, "Accept-Patch": SDP_FRAG}
        return web.Response(status=201, text=pc.localDescription.sdp, content_type=SDP, headers=headers)

    async def _patch(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized()
        session = self.sessions.get(request.match_info["session_id"])
        if session is None:
            return self._error(404, "no such session")
        if request.content_type != SDP_FRAG:
            return self._error(415, f"expected {SDP_FRAG}", **{"Accept-Patch": SDP_FRAG})
        match = request.headers.get("If-Match")
        if match is not None and match.strip() not in ("*", session.etag):
            return self._error(412, "If-Match does not match the session's ETag")
        body = await self._read_body(request)
        if isinstance(body, web.Response):
            return body
        remote = session.pc.remoteDescription.sdp if session.pc.remoteDescription else ""
        mid: str | None = None
        candidates = []
        for line in body.splitlines():
            line = line.strip()
            if line.startswith(("a=ice-ufrag:", "a=ice-pwd:")) and line not in remote.splitlines():
                return self._error(422, "ICE restarts are not supported; trickle ICE is")
            if line.startswith("a=mid:"):
                mid = line[len("a=mid:") :]
            elif line.startswith("a=candidate:"):
                try:
                    candidate = candidate_from_sdp(line[len("a=candidate:") :])
                except Exception:  # noqa: BLE001 - aiortc asserts and indexes on malformed input
                    return self._error(400, f"malformed candidate: {line}")
                candidate.sdpMid = mid
                if mid is None:
                    candidate.sdpMLineIndex = 0
                candidates.append(candidate)
        for candidate in candidates:
            await session.pc.addIceCandidate(candidate)
        return web.Response(status=204, headers=CORS_HEADERS)

    async def _delete(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized()
        session = self.sessions.get(request.match_info["session_id"])
        if session is None:
            return self._error(404, "no such session")
        session._end("deleted")
        if session.task is not None:
            # Answer once the recording is finalised, so the file is complete when a
            # client sees 200 (bounded: a stuck callback does not hold the request).
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(session.task), self.finalize_timeout)
        return web.Response(status=200, headers=CORS_HEADERS)

    # -- sessions -------------------------------------------------------------------------------------
    def _on_state(self, session: WhipSession) -> None:
        state = session.pc.connectionState
        logger.info("session %s: %s", session.id, state)
        if state == "failed":
            session._end("failed")
        elif state == "closed":
            session._end("disconnected")

    async def _run(self, session: WhipSession) -> None:
        """Own one session: the user's callback, the connect timeout, the cleanup."""
        reaper = asyncio.get_running_loop().call_later(self.connect_timeout, self._reap, session)
        try:
            result = self._on_session(session)
            if inspect.isawaitable(result):
                await result
            await session.wait_closed()
        except Exception:
            logger.exception("session %s: callback failed", session.id)
        finally:
            reaper.cancel()
            session._end(session.end_reason or "done")
            self.sessions.pop(session.id, None)
            for track in session.stream.getTracks():
                track.stop()  # type: ignore[attr-defined]
            await session.pc.close()
            logger.info("session %s ended (%s)", session.id, session.end_reason)

    def _reap(self, session: WhipSession) -> None:
        if session.pc.connectionState != "connected" and not session.closed:
            logger.warning("session %s never connected; reaped", session.id)
            session._end("timeout")
