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
the session limit. ``OPTIONS`` answers CORS preflights for browsers of the allowed
origins (none unless ``allow_origins`` names them).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import ipaddress
import logging
import os
import secrets
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web
from aioice.mdns import is_mdns_hostname
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp

from .._stream import MediaStream
from ._access import BearerToken, Origins, public
from ._dtls import widen_dtls
from ._sockets import widen_receive_buffers

logger = logging.getLogger(__name__)

SDP = "application/sdp"
SDP_FRAG = "application/trickle-ice-sdpfrag"
#: What a page of an allowed origin may read of the endpoint's answers.
EXPOSE_HEADERS = "Location, ETag, Link, Accept-Patch, Accept-Post, Retry-After, WWW-Authenticate"
#: More media sections than a publisher sends (one per track): each costs a transport.
MAX_MEDIA_SECTIONS = 16


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
        #: The publisher's address, as the HTTP request came from it.
        self.remote: str | None = None

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


#: The reason counted for a refused POST, by status.
_REFUSALS = {401: "unauthorized", 503: "busy", 507: "storage", 400: "bad_offer"}
#: The reason counted when a draining worker refuses a session (also a 503).
DRAINING = "draining"

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


_CANDIDATE_TYPES = frozenset({"host", "srflx", "prflx", "relay"})


def _number(text: str, low: int, high: int) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 10 and low <= int(text) <= high


def candidate_problem(value: str) -> str | None:
    """Why an ICE candidate (an ``a=candidate:`` value, RFC 8839) is not one aioice can
    use, or None. aioice takes any text: an out-of-range port would later kill the ICE
    socket, a host name would be resolved by a blocking call on the event loop."""
    bits = value.split()
    if len(bits) < 8 or bits[6] != "typ":
        return "fewer than 8 fields"
    _, component, transport, priority, host, port, _, kind, *extensions = bits
    if not _number(component, 1, 256):
        return "component"
    if transport.lower() not in ("udp", "tcp"):
        return "transport"
    if not _number(priority, 0, 2**32 - 1):
        return "priority"
    if not _number(port, 1 if transport.lower() == "udp" else 0, 65535):
        return "port"
    if kind not in _CANDIDATE_TYPES:
        return "type"
    if not is_mdns_hostname(host):
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return "address (an IP address or an mDNS name)"
        if address.is_multicast or address.is_unspecified or address == ipaddress.IPv4Address("255.255.255.255"):
            return "address (multicast, broadcast or unspecified)"
    for name, text in zip(extensions[::2], extensions[1::2], strict=False):
        if name in ("rport", "generation") and not _number(text, 0, 2**32 - 1):
            return name
    return None


async def close_peer_connection(pc: RTCPeerConnection) -> None:
    """Close ``pc``, even one that aiortc left half-built.

    ``RTCPeerConnection.close()`` stops at the first transport it cannot reach (an offer
    aiortc failed to answer can leave a transceiver without one), leaving the rest open
    and any later ``close()`` waiting forever. Then stop every transport here and mark the
    connection closed.
    """
    try:
        await pc.close()
        return
    except Exception:
        logger.debug("RTCPeerConnection.close() failed; closing its transports one by one", exc_info=True)
    # Closed first: aiortc's pending connect task and any later close() return at once.
    closing = getattr(pc, "_RTCPeerConnection__isClosed", None)
    if not isinstance(closing, asyncio.Future):
        closing = asyncio.get_running_loop().create_future()
        pc._RTCPeerConnection__isClosed = closing  # type: ignore[attr-defined]
    for transceiver in pc.getTransceivers():
        with contextlib.suppress(Exception):
            await transceiver.stop()
    sctp = pc.sctp
    if sctp is not None:
        with contextlib.suppress(Exception):
            await sctp.stop()
    # The transports aiortc created, whichever transceiver holds them (or none).
    dtls_transports = set(getattr(pc, "_RTCPeerConnection__dtlsTransports", ()))
    ice_transports = set(getattr(pc, "_RTCPeerConnection__iceTransports", ()))
    for transport in dtls_transports:
        with contextlib.suppress(Exception):
            await transport.stop()
        ice_transports.add(transport.transport)
    for ice in ice_transports:
        with contextlib.suppress(Exception):
            await ice.stop()
    if not closing.done():
        closing.set_result(True)
    update = getattr(pc, "_RTCPeerConnection__updateConnectionState", None)
    if update is not None:
        with contextlib.suppress(Exception):
            update()  # connectionState "closed"
    pc.remove_all_listeners()


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
        allow_origins: Iterable[str] = (),
        admit: Callable[[], web.Response | None] | None = None,
        on_refused: Callable[[str], None] | None = None,
        location_prefix: str = "",
        trusted_proxies: Iterable[str] = (),
    ) -> None:
        """``token``: the bearer token every request but ``OPTIONS`` needs (visible ASCII,
        no spaces; ValueError otherwise), or None for none. ``allow_origins``: the origins
        (``https://host[:port]``) whose pages may publish from a browser (CORS), ``"*"``
        for any; none by default, which non-browser publishers and same-origin pages do
        not need. ``admit()``, if given, is asked before each new session: a response it
        returns (507 when the disk is full...) refuses the session. ``on_refused(reason)``
        is told of every refused POST: ``unauthorized``, ``busy``, ``draining``,
        ``storage``, ``bad_offer`` or ``bad_request``. ``location_prefix`` goes before the
        session's path in ``Location`` (``/w/2``: ``/w/2/whip/ID``), for a load balancer
        that sends each worker's prefix to it (RFC 9725 lets the session URL name the
        worker that holds the session). ``trusted_proxies``: addresses of load balancers
        whose ``X-Forwarded-For`` names the publisher (its last entry, the address the
        proxy saw); anyone else's is ignored."""
        self._on_session = on_session
        self.path = path.rstrip("/")
        self.access = BearerToken(token)
        self.origins = Origins(allow_origins)
        self._admit = admit
        self._on_refused = on_refused
        self.max_sessions = max_sessions
        self.max_body = max_body
        self.connect_timeout = connect_timeout
        self.finalize_timeout = finalize_timeout
        self._ice_servers = [RTCIceServer(urls=url) for url in ice_servers]
        hosts = list(ice_hosts) if ice_hosts is not None else ice_hosts_from_env()
        if hosts:
            use_ice_hosts(hosts)
        self.location_prefix = location_prefix.rstrip("/")
        self.trusted_proxies = frozenset(str(ipaddress.ip_address(address)) for address in trusted_proxies)
        #: New sessions are refused (503 with Retry-After): the worker is about to exit.
        self.draining = False
        self._idle = asyncio.Event()
        self._idle.set()
        self.sessions: dict[str, WhipSession] = {}
        self._answering = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def add_routes(self, app: web.Application) -> None:
        """Add the endpoint's routes, and its shutdown, to ``app``."""
        app.router.add_post(self.path, self._post)
        app.router.add_route("OPTIONS", self.path, self._options)
        resources = [f"{self.path}/{{session_id}}"]
        if self.location_prefix:
            # The URL in Location works straight to this worker too, not only through a
            # load balancer that strips the prefix.
            resources.append(f"{self.location_prefix}{self.path}/{{session_id}}")
        for resource in resources:
            app.router.add_delete(resource, self._delete)
            app.router.add_patch(resource, self._patch)
            app.router.add_route("OPTIONS", resource, self._options)
        app.on_response_prepare.append(self._add_cors_headers)
        app.on_shutdown.append(lambda _app: self.close())

    async def drain(self, grace: float | None = None) -> None:
        """Refuse new sessions from now on (503 with ``Retry-After``, which a load
        balancer takes as "try another worker"), and wait until the running ones end by
        themselves, for at most ``grace`` seconds; those still running then end
        ("shutdown") and their callbacks are awaited. Cancelling stops the wait; the
        endpoint stays draining."""
        self.draining = True
        if self.sessions:
            self._idle.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), grace)
        await self.close()

    async def close(self) -> None:
        """End every session and wait for their callbacks and peer connections."""
        for session in list(self.sessions.values()):
            session._end("shutdown")
        tasks = [t for t in self._tasks if not t.done()]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- HTTP ---------------------------------------------------------------------------------------
    def _error(self, status: int, text: str, **headers: str) -> web.Response:
        return web.Response(status=status, text=text + "\n", headers=headers)

    def _authorized(self, request: web.Request) -> bool:
        return self.access.authorized(request)

    def _unauthorized(self) -> web.Response:
        return self.access.unauthorized()

    def _owns(self, request: web.Request) -> bool:
        path = request.path
        if self.location_prefix and path.startswith(self.location_prefix + "/"):
            path = path.removeprefix(self.location_prefix)
        return path == self.path or path.startswith(self.path + "/")

    async def _add_cors_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        """CORS headers on every answer of the endpoint (errors too, so a page of an allowed
        origin can read them): ``Access-Control-Allow-Origin`` for an allowed origin only."""
        if not self.origins or not self._owns(request) or "Access-Control-Allow-Origin" in response.headers:
            return
        headers = self.origins.headers(request, **{"Access-Control-Expose-Headers": EXPOSE_HEADERS})
        vary = headers.pop("Vary", None)
        if vary is not None:
            present = {part.strip().lower() for part in response.headers.get("Vary", "").split(",")}
            if vary.lower() not in present:
                response.headers["Vary"] = ", ".join(filter(None, [response.headers.get("Vary"), vary]))
        response.headers.update(headers)

    @public
    async def _options(self, request: web.Request) -> web.Response:
        headers = self.origins.headers(
            request,
            **{
                "Access-Control-Allow-Methods": "POST, PATCH, DELETE, OPTIONS",
                "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
                "Access-Control-Max-Age": "86400",
            },
        )
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
        response = await self._answer_offer(request)
        if response.status >= 400 and self._on_refused is not None:
            draining = self.draining and response.status == 503
            reason = DRAINING if draining else _REFUSALS.get(response.status, "bad_request")
            self._on_refused(reason)
        return response

    async def _answer_offer(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized()
        if self.draining:
            return self._error(503, "draining: this worker takes no new session", **{"Retry-After": "5"})
        if self._admit is not None and (refusal := self._admit()) is not None:
            return refusal
        if request.content_type != SDP:
            return self._error(415, f"expected {SDP}", **{"Accept-Post": SDP})
        body = await self._read_body(request)
        if isinstance(body, web.Response):
            return body
        if len(self.sessions) + self._answering >= self.max_sessions:
            return self._error(503, "too many sessions", **{"Retry-After": "10"})
        if not body.lstrip().startswith("v=0") or "\nm=" not in body:
            return self._error(400, "not an SDP offer")
        lines = [line.strip() for line in body.splitlines()]
        if sum(line.startswith("m=") for line in lines) > MAX_MEDIA_SECTIONS:
            return self._error(400, f"more than {MAX_MEDIA_SECTIONS} media sections")
        for line in lines:
            if line.startswith("a=candidate:") and (problem := candidate_problem(line[len("a=candidate:") :])):
                return self._error(400, f"malformed candidate ({problem}): {line[:200]}")
        session_id = secrets.token_urlsafe(12)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=self._ice_servers))
        widen_dtls(pc)  # GStreamer's RSA and FFmpeg's P-224 certificates (see _dtls)
        stream = MediaStream()
        pc.on("track", stream.addTrack)
        # Counted while answering, so concurrent offers cannot pass the limit together.
        self._answering += 1
        answered = False
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="offer"))
            if not stream.getTracks():
                raise ValueError("the offer sends neither audio nor video")
            await pc.setLocalDescription(await pc.createAnswer())
            widen_receive_buffers(pc)  # a busy moment must not drop the publisher's packets
            answered = True
        except Exception as exc:  # noqa: BLE001 - aiortc raises many types for a bad offer
            return self._error(400, f"cannot answer this offer: {_first_line(exc)}")
        finally:
            self._answering -= 1
            if answered and self.draining:
                answered = False  # the worker began draining meanwhile: no new session
            if not answered:  # a bad offer, the request cancelled, or draining: never left open
                for track in stream.getTracks():
                    track.stop()  # type: ignore[attr-defined]
                await close_peer_connection(pc)
        if self.draining:
            return self._error(503, "draining: this worker takes no new session", **{"Retry-After": "5"})
        session = WhipSession(session_id, pc, stream)
        session.remote = self._publisher(request)
        self.sessions[session_id] = session
        pc.on("connectionstatechange", lambda: self._on_state(session))
        task = asyncio.get_running_loop().create_task(self._run(session), name=f"whip-{session_id}")
        session.task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        location = f"{self.location_prefix}{self.path}/{session_id}"
        headers = {"Location": location, "ETag": session.etag, "Accept-Patch": SDP_FRAG}
        return web.Response(status=201, text=pc.localDescription.sdp, content_type=SDP, headers=headers)

    async def _patch(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized()
        session = self.sessions.get(request.match_info["session_id"])
        if session is None or session.closed:
            return self._error(404, "no such session")
        if request.content_type != SDP_FRAG:
            return self._error(415, f"expected {SDP_FRAG}", **{"Accept-Patch": SDP_FRAG})
        match = request.headers.get("If-Match")
        if match is not None and match.strip() not in ("*", session.etag):
            return self._error(412, "If-Match does not match the session's ETag")
        body = await self._read_body(request)
        if isinstance(body, web.Response):
            return body
        remote = set(session.pc.remoteDescription.sdp.splitlines()) if session.pc.remoteDescription else set()
        mid: str | None = None
        candidates = []
        for line in body.splitlines():
            line = line.strip()
            if line.startswith(("a=ice-ufrag:", "a=ice-pwd:")) and line not in remote:
                return self._error(422, "ICE restarts are not supported; trickle ICE is")
            if line.startswith("a=mid:"):
                mid = line[len("a=mid:") :]
            elif line.startswith("a=candidate:"):
                problem = candidate_problem(line[len("a=candidate:") :])
                try:
                    if problem is not None:
                        raise ValueError(problem)
                    candidate = candidate_from_sdp(line[len("a=candidate:") :])
                except Exception as exc:  # noqa: BLE001 - aiortc asserts and indexes on malformed input
                    return self._error(400, f"malformed candidate ({_first_line(exc)}): {line[:200]}")
                candidate.sdpMid = mid
                if mid is None:
                    candidate.sdpMLineIndex = 0
                candidates.append(candidate)
        if session.closed:
            return self._error(404, "no such session")
        try:
            for candidate in candidates:
                await session.pc.addIceCandidate(candidate)
        except Exception as exc:  # noqa: BLE001 - aioice rejects addresses and states in many ways
            return self._error(400, f"cannot add this candidate: {_first_line(exc)}")
        return web.Response(status=204)

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
        return web.Response(status=200)

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
            await close_peer_connection(session.pc)
            logger.info("session %s ended (%s)", session.id, session.end_reason)
            if not self.sessions:
                self._idle.set()

    def _publisher(self, request: web.Request) -> str | None:
        """The publisher's address: the peer's, or what a trusted proxy says it saw."""
        forwarded = request.headers.get("X-Forwarded-For", "")
        if request.remote in self.trusted_proxies and forwarded:
            last = forwarded.split(",")[-1].strip()
            with contextlib.suppress(ValueError):
                return str(ipaddress.ip_address(last))
        return request.remote

    def _reap(self, session: WhipSession) -> None:
        if session.pc.connectionState != "connected" and not session.closed:
            logger.warning("session %s never connected; reaped", session.id)
            session._end("timeout")


def _first_line(exc: BaseException) -> str:
    """An exception's message for a client: one line, bounded."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]
