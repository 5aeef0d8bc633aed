"""Fuzzing ``asyncrec serve``'s application (``create_app`` with a token) over HTTP on
127.0.0.1: offers (real aiortc offers with lines dropped, duplicated, swapped or garbled,
numbers made huge, random bytes), headers (Authorization, Content-Type, If-Match,
Content-Length, Transfer-Encoding, Origin, random and huge ones), targets (every route,
random segments, long names, dot segments, encoded slashes, NUL, signed URLs) and
methods and bodies (trickle ICE fragments, random bytes).

What must hold for every request:

- no 5xx, ever, and no handler raising (aiohttp logs "Error handling request" for a
  handler's exception even when the client is gone); every answer is an expected code;
- no handler but a public one (the page, the favicon, CORS preflights) or a signed
  recording URL is reached without the token: a witness middleware records what each
  request reached and with which case;
- no RTCPeerConnection is left open but those of live sessions (each created one is
  tracked), and at the end none at all, and no ICE socket;
- afterwards the server is healthy: the page loads, the listing answers, and a real
  publisher connects and is recorded.

The inputs that answered 500 (or broke a session) on main run first, as Hypothesis's
explicit examples; then 1,000 generated cases (5,000 in the slow variant; the
environment variables ``ASYNCREC_FUZZ_QUICK_EXAMPLES`` and ``ASYNCREC_FUZZ_EXAMPLES`` set
them). Each case starts as a valid request for one route and has a few of its parts
changed, so most get past the early checks. Sessions made by a case are deleted after it
(a live one is kept for PATCH and DELETE to hit). Hypothesis runs derandomised (a fixed
seed) without its example database, and what aiortc draws at random in the offers (ICE
credentials, ports, identifiers) is made constant, so every run tries the same cases.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import http_exceptions, web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from asyncrec.whip import create_app
from asyncrec.whip._server import ENDPOINT
from conftest import PeerConnections
from test_whip_security import raw_request, udp_sockets
from whip_client import SDP, SDP_FRAG, Publisher, check_recording, finished_recordings, wait_until

TOKEN = "fuzz-Token.42~"
ALLOWED_ORIGIN = "https://allowed.example"
RECORDING = "20260101T000000Z-fuzzfile.webm"
OTHER = "20260101T000001Z-other.webm"
#: Files in the output directory before the server starts.
SEEDED = (RECORDING, OTHER)
#: Default run: at least 1,000 cases, in well under a minute.
EXAMPLES = int(os.environ.get("ASYNCREC_FUZZ_QUICK_EXAMPLES", "1000"))
SLOW_EXAMPLES = int(os.environ.get("ASYNCREC_FUZZ_EXAMPLES", "5000"))
#: Every status the application may answer (aiohttp's parser answers 400, 413 and 431).
EXPECTED = {200, 201, 204, 206, 304, 400, 401, 404, 405, 412, 413, 415, 416, 422, 431}
#: A request the fuzzer left incomplete (a Content-Length longer than its body...) may get
#: no answer: this long is waited for one.
INCOMPLETE_WAIT = 0.1
CASE_HEADER = b"X-Fuzz-Case"
#: Not even reaching a private handler without the token: the access check comes first.
STRICT_WITNESS = True

# -- the cases -------------------------------------------------------------------------------------


@dataclass
class Case:
    method: bytes
    target: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    #: The request carries the right token.
    authorized: bool = False
    #: A real offer, the right token and content type: must be 201.
    clean_offer: bool = False
    #: The request may stay incomplete (the server waits for more): no answer is fine.
    incomplete: bool = False
    #: Sent with aiohttp's client rather than byte for byte.
    via_client: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass
class World:
    """What the strategies draw from: real offers, the live session, signed URLs."""

    offers: list[str]
    session: str = "/whip/none"
    signed: list[str] = field(default_factory=list)
    endpoint: Any = None


WORLD = World(offers=[])

METHODS = [b"GET", b"HEAD", b"POST", b"PUT", b"PATCH", b"DELETE", b"OPTIONS", b"TRACE", b"CONNECT"]
JUNK_METHODS = [b"FOO", b"get", b"G\x00T", b"P\xc3\xb6ST", b"", b"PATCH PATCH"]


def ascii_text(max_size: int = 40) -> st.SearchStrategy[str]:
    return st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=max_size)


def header_bytes(max_size: int = 60) -> st.SearchStrategy[bytes]:
    """A header value: mostly printable, sometimes any byte but CR and LF."""
    return st.one_of(
        ascii_text(max_size).map(str.encode),
        st.binary(max_size=max_size).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
        st.text(max_size=max_size // 2).map(lambda t: t.encode("utf-8", "surrogatepass")),
    ).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))


def huge(strategy: st.SearchStrategy[bytes], low: int, high: int) -> st.SearchStrategy[bytes]:
    """A short drawn value repeated up to a size between ``low`` and ``high`` (drawing
    that many bytes one by one would be slow)."""
    sizes = st.one_of(st.integers(low, high), st.sampled_from([low, high, 65_537]))
    return st.tuples(strategy.filter(bool), sizes).map(lambda t: (t[0] * (t[1] // len(t[0]) + 1))[: t[1]])


@st.composite
def offers(draw: st.DrawFn) -> tuple[bytes, bool]:
    """A body for POST /whip; True when it is a real offer, unchanged."""
    base = draw(st.sampled_from(WORLD.offers))
    kind = draw(
        st.sampled_from(["real", "one change", "one change", "one change", "changes", "changes", "bytes", "huge"])
    )
    if kind == "real":
        return base.encode(), True
    if kind == "bytes":
        return draw(st.binary(max_size=300)), False
    if kind == "huge":  # past the 64 KiB bound, or a huge line inside it
        return base.encode() + draw(huge(st.binary(min_size=1, max_size=8), 1000, 100_000)), False
    lines = base.split("\r\n")
    for _ in range(1 if kind == "one change" else draw(st.integers(2, 6))):
        op = draw(
            st.sampled_from(["drop", "duplicate", "swap", "garble", "insert", "huge-number", "truncate", "mid", "mid"])
        )
        index = draw(st.integers(0, len(lines) - 1)) if lines else 0
        if not lines:
            lines.append("")
        if op == "drop":
            del lines[index]
        elif op == "duplicate":
            lines.insert(index, lines[index])
        elif op == "swap":
            other = draw(st.integers(0, len(lines) - 1))
            lines[index], lines[other] = lines[other], lines[index]
        elif op == "garble":
            line = lines[index]
            position = draw(st.integers(0, len(line)))
            junk = draw(st.text(max_size=8))
            lines[index] = line[:position] + junk + line[position + draw(st.integers(0, 8)) :]
        elif op == "insert":
            lines.insert(
                index, draw(st.sampled_from(["a=", "m=", "c=", "a=candidate:", "a=mid:", "b="])) + draw(ascii_text())
            )
        elif op == "huge-number":
            digits = [i for i, c in enumerate(lines[index]) if c.isdigit()]
            if digits:
                at = draw(st.sampled_from(digits))
                lines[index] = lines[index][:at] + "9" * draw(st.integers(10, 400)) + lines[index][at + 1 :]
        elif op == "truncate":
            lines = lines[: index + 1]
        elif op == "mid":  # two a=mid in a section, the case that crashed on main
            mids = [i for i, line in enumerate(lines) if line.startswith("a=mid:")]
            at = draw(st.sampled_from(mids)) + 1 if mids and draw(st.integers(0, 3)) else index
            lines.insert(at, "a=mid:" + draw(st.sampled_from(["x", "x", "1", "0", "", "0 1"])))
    separator = draw(st.sampled_from(["\r\n", "\r\n", "\n", "\r", "\r\n\r\n"]))
    body = separator.join(lines).encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 9)) == 0:  # byte-level damage: bytes that are not UTF-8, NUL
        position = draw(st.integers(0, len(body)))
        body = body[:position] + draw(st.sampled_from([b"\xff", b"\x00", b"\xc3", b"\xed\xa0\x80"])) + body[position:]
    return body, False


@st.composite
def fragments(draw: st.DrawFn) -> bytes:
    """A body for PATCH: a trickle ICE fragment made of the offers' lines, mutated."""
    base = draw(st.sampled_from(WORLD.offers)).split("\r\n")
    pool = [line for line in base if line.startswith(("a=ice-", "a=mid:", "a=candidate:", "m=", "a=end-of"))]
    pool += ["a=ice-ufrag:Othr", "a=ice-pwd:" + "q" * 22]  # an ICE restart: 422
    lines = draw(st.lists(st.sampled_from(pool), max_size=6))
    if draw(st.booleans()):
        candidate = "a=candidate:{} {} {} {} {} {} typ {}".format(
            draw(st.sampled_from(["1", "x", ""])),
            draw(st.sampled_from(["1", "2", "0", "257", "-1", "99999999999"])),
            draw(st.sampled_from(["udp", "UDP", "tcp", "sctp", ""])),
            draw(st.sampled_from(["1", "2130706431", "4294967296", "-1", "9" * 30])),
            draw(st.sampled_from(["127.0.0.1", "::1", "::ffff:127.0.0.1", "x.local", "name", "224.0.0.1", "0.0.0.0"])),
            draw(st.sampled_from(["9", "0", "65535", "65536", "99999999", "-9", "x"])),
            draw(st.sampled_from(["host", "srflx", "prflx", "relay", "nothing"])),
        )
        lines.insert(draw(st.integers(0, len(lines))), candidate)
    body = "\r\n".join(lines).encode()
    if draw(st.integers(0, 5)) == 0:
        body = draw(st.binary(max_size=200))
    return body


def chance(draw: st.DrawFn, percent: int) -> bool:
    return draw(st.integers(0, 99)) < percent


#: Where each kind of request goes, unchanged.
ROUTES = {
    "publish": (b"POST", "/whip"),
    "trickle": (b"PATCH", "SESSION"),
    "end": (b"DELETE", "SESSION"),
    "list": (b"GET", "/recordings"),
    "file": (b"GET", f"/recordings/{RECORDING}"),
    "signed": (b"GET", "SIGNED"),
    "page": (b"GET", "/"),
    "icon": (b"GET", "/favicon.ico"),
    "preflight": (b"OPTIONS", "/whip"),
    "session-preflight": (b"OPTIONS", "SESSION"),
    "elsewhere": (b"GET", "ELSEWHERE"),
    "long name": (b"GET", "LONG"),
    "thumbnail": (b"GET", f"/recordings/{RECORDING}/thumbnail"),
    "delete": (b"DELETE", f"/recordings/{OTHER}"),
    "sessions": (b"GET", "/sessions"),
}


@st.composite
def targets(draw: st.DrawFn, base: str) -> bytes:
    """``base`` (a route), or a damaged, lengthened or other one."""
    if base == "SESSION":
        base = WORLD.session if chance(draw, 90) else "/whip/no-such-session"
    elif base == "SIGNED":
        base = draw(st.sampled_from(WORLD.signed))
    elif base == "LONG":
        length = draw(st.one_of(st.sampled_from([250, 256, 300, 1000, 5000]), st.integers(200, 9000)))
        base = "/recordings/" + "a" * length + draw(st.sampled_from([".webm", ".webm", ".mp4", "", ".part"]))
    elif base == "ELSEWHERE":
        base = draw(st.sampled_from(["/metrics", "/healthz", "/page.html", "/whip/", "/recordings/", "/robots.txt"]))
    op = (
        "as-is"
        if chance(draw, 70)
        else draw(st.sampled_from(["segment", "dots", "encoded", "long", "nul", "query", "bytes", "case", "signature"]))
    )
    if op == "segment":
        base = base.rstrip("/") + "/" + draw(ascii_text(30)).replace(" ", "%20").replace("?", "%3F").replace("#", "%23")
    elif op == "dots":
        prefix = draw(st.sampled_from(["/recordings/../", "/whip/../recordings/", "/recordings/..%2F", "/./", "//"]))
        base = prefix + base.lstrip("/")
    elif op == "encoded":
        base = base.replace("/", draw(st.sampled_from(["%2F", "%2f", "%5C", "/%2e%2e/"])), draw(st.integers(1, 3)))
        if not base.startswith("/"):
            base = "/" + base
    elif op == "long":  # past the file system's 255 bytes, up to aiohttp's 8 KiB request line
        length = draw(st.one_of(st.sampled_from([250, 256, 300, 1000, 5000]), st.integers(200, 9000)))
        base = "/recordings/" + "a" * length + draw(st.sampled_from([".webm", ".webm", ".mp4", "", ".part"]))
    elif op == "nul":
        base = base + draw(st.sampled_from(["%00", "%00.webm", "\x00"]))
    elif op == "query":
        queries = [
            "expires=1&signature=" + "a" * 64,
            "expires=99999999999&signature=zz",
            "token=" + TOKEN,
            "a=%ff",
            "=",
        ]
        base = base + "?" + draw(st.sampled_from(queries))
    elif op == "case":
        base = base.upper()
    elif op == "signature":  # a signed URL with its signature or expiry changed, or moved
        url = draw(st.sampled_from(WORLD.signed))
        path, _, query = url.partition("?")
        if draw(st.booleans()):
            base = path.replace(RECORDING, OTHER) + "?" + query
        elif query:
            base = path + "?" + query.replace(query[-1], draw(st.sampled_from("0af")), 1)
    target = base.encode("utf-8", "surrogatepass")
    if op == "bytes":
        target = b"/" + draw(st.binary(max_size=40)).replace(b"\r", b"").replace(b"\n", b"").replace(b" ", b"%20")
    return target


RIGHT_AUTH = [b"Bearer " + TOKEN.encode(), b"bearer " + TOKEN.encode(), b"BEARER  " + TOKEN.encode() + b" "]
WRONG_AUTH = [
    b"Bearer wrong",
    b"Bearer " + TOKEN.encode() + b"x",
    b"Bearer " + TOKEN[:-1].encode(),
    b"Basic " + TOKEN.encode(),
    TOKEN.encode(),
    b"Bearer ",
    b"Bearer \xff\xfe",
    "Bearer tökén".encode(),
    b"Bearer " + TOKEN.encode() + b"\x80",
]
CONTENT_TYPES = [None, SDP, SDP_FRAG, "text/plain", "application/sdp; charset=utf-8", "APPLICATION/SDP", "JUNK"]


@st.composite
def cases(draw: st.DrawFn) -> Case:
    """A request for one of the routes as a client would send it, then a few of its parts
    changed: each case is near a valid request, so it gets past the early checks."""
    route = draw(st.sampled_from([*ROUTES, "publish", "publish", "trickle"]))
    method, base = ROUTES[route]
    if chance(draw, 10):
        method = draw(st.sampled_from(METHODS)) if chance(draw, 70) else draw(st.sampled_from(JUNK_METHODS))
    target = draw(targets(base))
    headers: list[tuple[bytes, bytes]] = []

    # Authorization: the token, most of the time (else only the 401 path is tried).
    signed = route == "signed"
    auth_kind = "none" if signed else "right"
    if chance(draw, 30):
        auth_kind = draw(st.sampled_from(["right", "wrong", "none", "random"]))
    authorized = auth_kind == "right"
    if auth_kind == "right":
        headers.append((b"Authorization", draw(st.sampled_from(RIGHT_AUTH))))
    elif auth_kind == "wrong":
        headers.append((b"Authorization", draw(st.sampled_from(WRONG_AUTH))))
    elif auth_kind == "random":
        headers.append((b"Authorization", draw(st.sampled_from([b"", b"Bearer "])) + draw(header_bytes())))

    content_type = {"publish": SDP, "trickle": SDP_FRAG}.get(route)
    if chance(draw, 15):
        content_type = draw(st.sampled_from(CONTENT_TYPES))
    if content_type == "JUNK":
        headers.append((b"Content-Type", draw(header_bytes())))
    elif content_type is not None:
        headers.append((b"Content-Type", content_type.encode()))

    if route == "trickle" and chance(draw, 30):
        etag = b"*"
        session = WORLD.session.rsplit("/", 1)[1]
        live = WORLD.endpoint.sessions.get(session) if WORLD.endpoint is not None else None
        if live is not None and chance(draw, 50):
            etag = live.etag.encode()
        headers.append((b"If-Match", etag))
    if chance(draw, 15):
        headers.append((b"If-Match", draw(st.one_of(st.sampled_from([b"*", b'"x"', b'W/"x"']), header_bytes()))))
    if route.endswith("preflight") or chance(draw, 15):
        origins = [ALLOWED_ORIGIN.encode(), b"https://evil.example", b"null"]
        headers.append((b"Origin", draw(st.one_of(st.sampled_from(origins), header_bytes()))))
        if route.endswith("preflight"):
            headers.append((b"Access-Control-Request-Method", draw(st.sampled_from([b"POST", b"PATCH", b"DELETE"]))))
    for _ in range(draw(st.integers(0, 2)) if chance(draw, 20) else 0):
        name = draw(st.from_regex(rb"\A[A-Za-z][A-Za-z0-9-]{0,20}\Z"))
        if name.lower() not in (b"content-length", b"transfer-encoding", b"host", b"connection", b"expect", b"upgrade"):
            headers.append((name, draw(header_bytes())))
    if chance(draw, 3):  # one huge header
        headers.append((b"X-Huge", draw(huge(st.sampled_from([b"x", b"\xff", b"ab"]), 8000, 70_000))))

    clean_offer = False
    if method == b"POST":
        body, real = draw(offers())
        clean_headers = all(all(0x20 <= b < 0x7F for b in value) and len(value) < 8000 for _, value in headers)
        clean_offer = real and authorized and content_type == SDP and target == b"/whip" and clean_headers
    elif method == b"PATCH":
        body = draw(fragments())
    else:
        body = b"" if chance(draw, 80) else draw(st.binary(max_size=100))
    case = Case(method, target, headers, body, authorized=authorized)
    case.clean_offer = clean_offer

    framing = "auto"
    if chance(draw, 12):
        framing = draw(st.sampled_from(["cl-junk", "cl-short", "cl-long", "chunked", "chunked-junk", "te-junk"]))
    if framing == "cl-junk":
        value = draw(st.sampled_from([b"-1", b"abc", b"1e3", b"99999999999999999999", b" 5", b""]))
        case.headers.append((b"Content-Length", value))
        case.incomplete = True
    elif framing == "cl-short" and body:
        case.headers.append((b"Content-Length", str(draw(st.integers(0, len(body) - 1))).encode()))
    elif framing == "cl-long":
        case.headers.append((b"Content-Length", str(len(body) + draw(st.integers(1, 100))).encode()))
        case.incomplete = True
    elif framing == "chunked":
        case.headers.append((b"Transfer-Encoding", b"chunked"))
        case.body = (f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n") if body else b"0\r\n\r\n"
    elif framing in ("chunked-junk", "te-junk"):
        junk = [b"gzip", b"chunked, chunked", b"identity", b"x"]
        value = b"chunked" if framing == "chunked-junk" else draw(st.sampled_from(junk))
        case.headers.append((b"Transfer-Encoding", value))
        case.body = draw(st.binary(max_size=30))
        case.incomplete = True
    if framing != "auto":
        case.clean_offer = False
    case.via_client = (
        framing == "auto"
        and method in METHODS
        and method not in (b"CONNECT", b"TRACE")
        and all(0x21 <= b < 0x7F for b in target)
        and not target.startswith(b"//")  # the client would take it for a host
        and all(all(0x20 <= b < 0x7F for b in value) for _, value in headers)
        and len(b"".join(value for _, value in headers)) < 4000
        and draw(st.booleans())
    )
    return case


# -- running them -------------------------------------------------------------------------------------


class Witness:
    """A middleware appended after the access check: what each request reached."""

    def __init__(self) -> None:
        self.reached: list[tuple[str, str, Any, str | None, str]] = []

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.match_info.http_exception is None:  # not a 404 or 405 of the router
            self.reached.append(
                (
                    request.method,
                    request.path,
                    request.match_info.route.handler,
                    request.headers.get(CASE_HEADER.decode()),
                    request.query_string,
                )
            )
        return await handler(request)


class Errors(logging.Handler):
    """ERROR records: a handler that raised (not aiohttp's parser refusing a request)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, http_exceptions.HttpProcessingError):
            return  # a malformed request: aiohttp answered 400/413/431 and logged it
        self.records.append(record)

    def text(self) -> str:
        return "\n".join(f"{r.name}: {r.getMessage()}\n{self.format(r)}" for r in self.records[:3])


@contextlib.contextmanager
def capture_errors() -> Iterator[Errors]:
    errors = Errors()
    errors.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    root.addHandler(errors)
    try:
        yield errors
    finally:
        root.removeHandler(errors)


class Fuzz:
    def __init__(self, out: Path, peer_connections: PeerConnections) -> None:
        self.out = out
        self.pcs = peer_connections
        self.witness = Witness()
        self.statuses: Counter[int | str] = Counter()
        self.count = 0
        self.server: TestServer | None = None
        self.client: TestClient[Any, Any] | None = None
        self.current: Case | None = None
        self.origins: dict[int, Case | None] = {}

    async def start(self) -> None:
        app = create_app(self.out, token=TOKEN, allow_origins=[ALLOWED_ORIGIN], connect_timeout=3600)
        app.middlewares.append(self.witness.middleware)
        self.server = TestServer(app, host="127.0.0.1")
        self.client = TestClient(self.server)
        await self.client.start_server()
        WORLD.endpoint = self.endpoint
        await self.renew_session()
        status, _, body = await raw_request(self.port, "GET", "/recordings", [(b"Authorization", RIGHT_AUTH[0])])
        assert status == 200
        WORLD.signed = [item["url"] for item in json.loads(body)]
        assert any("signature=" in url for url in WORLD.signed)

    @property
    def port(self) -> int:
        assert self.server is not None
        assert self.server.port is not None
        return self.server.port

    @property
    def endpoint(self) -> Any:
        assert self.server is not None
        return self.server.app[ENDPOINT]

    def live_task(self) -> asyncio.Task[None] | None:
        session = self.endpoint.sessions.get(WORLD.session.rsplit("/", 1)[1])
        return session.task if session is not None else None

    async def renew_session(self) -> None:
        """The live session PATCH and DELETE aim at (a trickle offer: no candidates)."""
        offer = "\r\n".join(
            line for line in WORLD.offers[0].split("\r\n") if not line.startswith(("a=candidate:", "a=end-of"))
        )
        headers = [(b"Authorization", RIGHT_AUTH[0]), (b"Content-Type", SDP.encode()), (CASE_HEADER, b"setup")]
        status, response_headers, body = await raw_request(self.port, "POST", "/whip", headers, offer.encode())
        assert status == 201, body
        WORLD.session = response_headers["location"]

    async def send(self, case: Case) -> tuple[int | None, bytes]:
        headers = [*case.headers, (CASE_HEADER, str(self.count).encode())]
        if case.via_client:
            assert self.client is not None
            async with self.client.request(
                case.method.decode(),
                case.target.decode(),
                headers=[(name.decode(), value.decode()) for name, value in headers],
                data=case.body,
                skip_auto_headers=["Content-Type"],
                allow_redirects=False,
            ) as response:
                return response.status, await response.read()
        try:
            status, _, body = await raw_request(
                self.port,
                case.method,
                case.target,
                headers,
                case.body,
                within=INCOMPLETE_WAIT if case.incomplete else 20.0,
            )
        except TimeoutError:
            assert case.incomplete, f"no answer in 20 s: {case}"
            return None, b""
        except (AssertionError, ConnectionError):  # the server closed without an answer
            assert case.incomplete or _malformed(case), f"no answer: {case}"
            return None, b""
        return status, body

    async def run(self, case: Case, errors: Errors) -> None:
        self.count += 1
        reached_before = len(self.witness.reached)
        status, body = await self.send(case)
        self.statuses[status if status is not None else "none"] += 1
        if status is not None:
            assert status < 500, f"{status} {body[:300]!r} for {case}"
            assert status in EXPECTED, f"unexpected {status} {body[:300]!r} for {case}"
        if case.clean_offer and case.target == b"/whip":
            assert status == 201, f"{status} {body[:300]!r}: a real offer with the token"
        self.check_reached(self.witness.reached[reached_before:], status)
        await self.cleanup()
        assert not errors.records, f"after {case}:\n{errors.text()}"

    def check_reached(self, reached: list[tuple[str, str, Any, str | None, str]], status: int | None) -> None:
        """A handler that needs the token was reached only by a case that had it (or a
        signed URL the listing gave), and never answered 2xx without it."""
        for method, path, handler, case_id, query in reached:
            if getattr(handler, "__asyncrec_public__", False) or case_id in ("setup", "cleanup"):
                continue
            if case_id == str(self.count) and self.current is not None and self.current.authorized:
                continue
            if method in ("GET", "HEAD") and f"{path}?{query}" in WORLD.signed:
                continue
            what = f"{method} {path}?{query} (case {case_id}) reached {handler} without the token"
            assert status is None or not 200 <= status < 300, f"{what}, and answered {status}"
            assert not STRICT_WITNESS, what

    async def cleanup(self) -> None:
        """Delete the sessions the case made; renew the live one if the case ended it."""
        live = WORLD.session.rsplit("/", 1)[1]
        for session_id in list(self.endpoint.sessions):
            if session_id != live:
                headers = [(b"Authorization", RIGHT_AUTH[0]), (CASE_HEADER, b"cleanup")]
                status, _, _ = await raw_request(self.port, "DELETE", f"/whip/{session_id}", headers)
                assert status in (200, 404)
        if live not in self.endpoint.sessions:
            await self.renew_session()
        # A session that ended by itself (ICE failed: these offers' publishers are gone) is
        # closing its peer connection in its task: wait for it.
        ending = [task for task in self.endpoint._tasks if task is not self.live_task()]
        if ending:
            await asyncio.wait_for(asyncio.gather(*ending, return_exceptions=True), 20)
        live_pcs = {id(session.pc) for session in self.endpoint.sessions.values()}
        leaked = [pc for pc in self.pcs.open() if id(pc) not in live_pcs]
        if leaked:
            pc = leaked[0]
            origin = self.origins.get(id(pc))
            raise AssertionError(
                f"{len(leaked)} peer connections open, the first ({pc.connectionState}, signaling "
                f"{pc.signalingState}) made by case {origin}; ice "
                f"{[t.state for t in pc._RTCPeerConnection__iceTransports]} dtls "
                f"{[(t.state, t.transport.state) for t in pc._RTCPeerConnection__dtlsTransports]}"
            )
        for pc in self.pcs.created[len(self.origins) :]:
            self.origins.setdefault(id(pc), self.current)

    async def healthy_and_stop(self) -> None:
        """The page, the listing, a real publisher recorded; then no connection, no socket."""
        status, _, page = await raw_request(self.port, "GET", "/")
        assert status == 200
        assert b'id="token"' in page
        status, _, _ = await raw_request(self.port, "GET", "/recordings", [(b"Authorization", RIGHT_AUTH[0])])
        assert status == 200
        assert self.client is not None
        async with Publisher() as publisher:
            await publisher.publish(self.client.session, str(self.client.make_url("/whip")), token=TOKEN)
            await publisher.wait_connected()
            await asyncio.sleep(1.5)
            assert await publisher.delete(self.client.session, token=TOKEN) == 200
        [path] = [p for p in finished_recordings(self.out) if p.name not in SEEDED]
        check_recording(path, video="vp8", audio="opus", size=(320, 240), duration=(0.8, 3.5))
        await self.client.close()
        await wait_until(lambda: self.pcs.open() == [], 10, "every peer connection closed")


def _malformed(case: Case) -> bool:
    """A request aiohttp may drop without an answer (a request line it cannot read)."""
    return case.method not in METHODS or b"\x00" in case.target or any(b"\x00" in v for _, v in case.headers)


def known_crashers() -> list[Case]:
    """What answered 500 or broke a session on main, tried first (Hypothesis's explicit
    examples), then the generated cases; and a 413, which the draws may miss."""
    right = [(b"Authorization", RIGHT_AUTH[0])]
    lines = WORLD.offers[0].split("\r\n")
    mid = next(i for i, line in enumerate(lines) if line.startswith("a=mid:"))
    two_mids = "\r\n".join([*lines[: mid + 1], "a=mid:x", *lines[mid + 1 :]]).encode()
    sdp = [(b"Content-Type", SDP.encode())]
    return [
        Case(b"POST", b"/whip", [*right, *sdp], two_mids, authorized=True, notes=["aiortc fails in createAnswer"]),
        Case(b"POST", b"/whip", [(b"Authorization", b"Bearer \xff\xfe"), *sdp], WORLD.offers[0].encode()),
        Case(b"GET", b"/recordings/" + b"a" * 5000 + b".webm", right, b"", authorized=True),
        Case(
            b"PATCH",
            WORLD.session.encode(),
            [*right, (b"Content-Type", SDP_FRAG.encode())],
            b"a=mid:0\r\na=candidate:1 1 udp 1 127.0.0.1 99999999 typ host\r\n",
            authorized=True,
            notes=["aioice takes the port, the ICE socket dies on sending"],
        ),
        # Not a crasher: an offer past the body bound, so a 413 is seen whatever the draws.
        Case(b"POST", b"/whip", [*right, *sdp], WORLD.offers[0].encode() + b"a" * 70_000, authorized=True),
    ]


def make_offers() -> list[str]:
    """Real aiortc offers: audio and video, audio, video (loopback candidates), with what
    aiortc draws at random made fixed, so every run fuzzes the same cases."""

    async def make() -> list[str]:
        made = []
        for options in ({}, {"video": False}, {"audio": False}):
            async with Publisher(**options) as publisher:
                made.append(fixed(await publisher.offer()))
        return made

    return asyncio.run(make())


def fixed(offer: str) -> str:
    """``offer`` with its time, ports, identifiers, ICE credentials and fingerprints
    replaced by constants of the same form."""
    uuids: dict[str, str] = {}
    ssrcs: dict[str, str] = {}

    def uuid(match: re.Match[str]) -> str:
        return uuids.setdefault(match.group(0), f"00000000-0000-4000-8000-{len(uuids):012d}")

    def ssrc(match: re.Match[str]) -> str:
        return ssrcs.setdefault(match.group(0), str(1_000_000_000 + len(ssrcs)))

    offer = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", uuid, offer)
    offer = re.sub(r"(?m)^a=ssrc-group:FID .*$", lambda m: re.sub(r"\d+", ssrc, m.group(0)), offer)
    offer = re.sub(r"(?<=a=ssrc:)\d+", ssrc, offer)
    offer = re.sub(r"(?m)^o=- \d+ \d+", "o=- 4000000000 4000000000", offer)
    offer = re.sub(r"(?m)^(m=\w+) \d+", r"\1 50000", offer)
    offer = re.sub(r"(?m)^a=candidate:[0-9a-f]+ (\d+) (\w+) (\d+) (\S+) \d+", r"a=candidate:1 \1 \2 \3 \4 50000", offer)
    offer = re.sub(r"(?m)^a=ice-ufrag:\S+", "a=ice-ufrag:Ufrg", offer)
    offer = re.sub(r"(?m)^a=ice-pwd:\S+", "a=ice-pwd:" + "p" * 22, offer)
    return re.sub(r"(?<=[ :])[0-9A-F]{2}(?=[:\r\n])", "AB", offer)


def fuzz(examples: int, tmp_path: Path, peer_connections: PeerConnections, monkeypatch: pytest.MonkeyPatch) -> None:
    import aioice.ice

    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4=True, use_ipv6=True: ["127.0.0.1"])
    WORLD.offers = make_offers()
    out = tmp_path / "out"
    out.mkdir()
    for name in SEEDED:
        (out / name).write_bytes(b"\x1a\x45\xdf\xa3" + bytes(1000))
    peer_connections.created.clear()
    sockets_before = udp_sockets()
    runner = asyncio.Runner()
    state = Fuzz(out, peer_connections)
    started = time.monotonic()
    with runner, capture_errors() as errors:
        runner.run(state.start())

        explicit = known_crashers()

        @settings(
            max_examples=examples,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate, Phase.shrink],
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
        )
        @given(case=cases())
        @example(case=explicit[0])
        @example(case=explicit[1])
        @example(case=explicit[2])
        @example(case=explicit[3])
        @example(case=explicit[4])
        def one(case: Case) -> None:
            state.current = case
            runner.run(state.run(case, errors))

        one()
        runner.run(state.healthy_and_stop())
    elapsed = time.monotonic() - started
    print(f"\nfuzz: {state.count} cases in {elapsed:.1f} s; statuses {dict(sorted(state.statuses.items(), key=str))}")
    assert state.count >= examples
    assert not errors.records, errors.text()
    assert peer_connections.open() == []
    assert udp_sockets() <= sockets_before, "an ICE socket left open"
    # The cases reached every kind of answer, so the fuzzer is not stuck in one corner.
    for status in (200, 201, 204, 400, 401, 404, 405, 412, 413, 415, 422):
        assert state.statuses[status] > 0, f"no {status} in {dict(state.statuses)}"


@pytest.mark.timeout(300)
def test_fuzz_offers_headers_paths_and_bodies(
    tmp_path: Path, peer_connections: PeerConnections, monkeypatch: pytest.MonkeyPatch
) -> None:
    fuzz(EXAMPLES, tmp_path, peer_connections, monkeypatch)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_fuzz_longer(tmp_path: Path, peer_connections: PeerConnections, monkeypatch: pytest.MonkeyPatch) -> None:
    fuzz(SLOW_EXAMPLES, tmp_path, peer_connections, monkeypatch)
