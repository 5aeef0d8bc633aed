"""The WHIP server locked down (issue 11): the token on every route that reveals or changes
anything, signed recording URLs, CORS only for the allowed origins, ``serve`` refusing to
listen on the network without a token, and the inputs that answered 500 on main.

Requests that aiohttp's client would refuse or rewrite (bytes that are not UTF-8 in a
header, dot segments, NUL) go over a raw socket (:func:`raw_request`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiortc import RTCPeerConnection
from yarl import URL

from asyncrec import cli
from asyncrec.whip import WhipEndpoint, create_app
from asyncrec.whip._server import ENDPOINT
from conftest import PeerConnections, Start
from whip_client import SDP, SDP_FRAG, Publisher, asyncrec_command, free_port

TOKEN = "s3cret-Token_42"
ORIGIN = "https://publisher.example"
RECORDING = "20260101T000000Z-abcdef.webm"
CONTENT = bytes(range(256)) * 16


# -- helpers ---------------------------------------------------------------------------------------


async def raw_request(
    port: int,
    method: str | bytes,
    target: str | bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
    body: bytes = b"",
    *,
    within: float = 20.0,
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request sent byte for byte to 127.0.0.1:``port``; (status, headers
    (lowercase names, the last of each), body). ``Content-Length`` is added unless given."""
    verb = method if isinstance(method, bytes) else method.encode()
    lines = [verb + b" " + (target if isinstance(target, bytes) else target.encode()) + b" HTTP/1.1"]
    given = {name.lower() for name, _ in headers or []}
    lines.append(f"Host: 127.0.0.1:{port}".encode())
    for name, value in headers or []:
        lines.append(name + b": " + value)
    if b"content-length" not in given and b"transfer-encoding" not in given:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    lines.append(b"Connection: close")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), within)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    head, _, content = response.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    assert status_line.startswith("HTTP/1."), f"no HTTP response to {method} {target!r}: {response[:200]!r}"
    response_headers: dict[str, str] = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        response_headers[name.strip().lower()] = value.strip()
    return int(status_line.split(" ", 2)[1]), response_headers, content


def bearer(token: str | bytes) -> list[tuple[bytes, bytes]]:
    return [(b"Authorization", b"Bearer " + (token if isinstance(token, bytes) else token.encode()))]


def sdp_headers(*extra: tuple[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    return [(b"Content-Type", SDP.encode()), *extra]


def udp_sockets() -> set[int]:
    """The inodes of this process's UDP sockets (ICE binds one per candidate); empty where
    there is no /proc."""
    if not os.path.isdir("/proc/self/fd"):
        return set()
    inodes = set()
    for name in ("udp", "udp6"):
        with contextlib.suppress(OSError), open(f"/proc/self/net/{name}") as table:
            for line in table.readlines()[1:]:
                inodes.add(int(line.split()[9]))
    ours = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:["):
                ours.add(int(target[8:-1]))
    return inodes & ours


@pytest.fixture
async def endpoint_server(loopback_ice: None) -> AsyncIterator[Callable[..., Awaitable[TestServer]]]:
    """``await endpoint_server(**options)``: a plain aiohttp app with ``WhipEndpoint(**options)``."""
    servers: list[TestServer] = []

    async def start(**options: Any) -> TestServer:
        app = web.Application()
        WhipEndpoint(lambda session: None, **options).add_routes(app)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in servers:
            await server.close()


@pytest.fixture(scope="module")
def offer() -> str:
    """A real aiortc offer (audio and video, loopback candidates)."""

    async def make() -> str:
        import aioice.ice

        saved = aioice.ice.get_host_addresses
        aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=True: ["127.0.0.1"]
        try:
            async with Publisher() as publisher:
                return await publisher.offer()
        finally:
            aioice.ice.get_host_addresses = saved

    return asyncio.run(make())


def out_dir(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    out.mkdir(parents=True)
    (out / RECORDING).write_bytes(CONTENT)
    return out


async def open_session(server: TestServer, offer: str, token: str | None = TOKEN) -> str:
    """POST ``offer``: the session's path."""
    auth = bearer(token) if token else []
    status, headers, body = await raw_request(server.port, "POST", "/whip", sdp_headers(*auth), offer.encode())
    assert status == 201, body
    return headers["location"]


# -- 1. the token on every route -------------------------------------------------------------------

#: Authorization headers that are not the token, as bytes on the wire.
WRONG = {
    "missing": None,
    "wrong": b"Bearer wrong",
    "longer": b"Bearer " + TOKEN.encode() + b"x",
    "prefix": b"Bearer " + TOKEN[:-1].encode(),
    "basic-scheme": b"Basic " + TOKEN.encode(),
    "no-scheme": TOKEN.encode(),
    "empty": b"Bearer ",
    "utf8-non-ascii": "Bearer tökén".encode(),
    "not-utf8": b"Bearer \xff\xfe\xc3",
    "latin1-token": b"Bearer " + TOKEN.encode() + b"\xe9",
}


async def private_requests(
    server: TestServer, session: str, authorization: bytes | None, offer: str
) -> dict[str, tuple[int, dict[str, str]]]:
    """Each private route of create_app, asked with ``authorization``: status and headers."""
    auth = [] if authorization is None else [(b"Authorization", authorization)]
    candidate = next(line for line in offer.splitlines() if line.startswith("a=candidate:"))
    fragment = f"a=mid:0\r\n{candidate}\r\n".encode()
    requests: dict[str, tuple[str, str, list[tuple[bytes, bytes]], bytes]] = {
        "POST /whip": ("POST", "/whip", sdp_headers(*auth), offer.encode()),
        "PATCH session": ("PATCH", session, [(b"Content-Type", SDP_FRAG.encode()), *auth], fragment),
        "GET list": ("GET", "/recordings", auth, b""),
        "HEAD list": ("HEAD", "/recordings", auth, b""),
        "GET file": ("GET", f"/recordings/{RECORDING}", auth, b""),
        "HEAD file": ("HEAD", f"/recordings/{RECORDING}", auth, b""),
        "GET sessions": ("GET", "/sessions", auth, b""),
        "GET thumbnail": ("GET", f"/recordings/{RECORDING}/thumbnail", auth, b""),
        "DELETE session": ("DELETE", session, auth, b""),
        "DELETE file": ("DELETE", f"/recordings/{RECORDING}", auth, b""),
    }
    answers = {}
    for route, (method, target, headers, body) in requests.items():
        status, response_headers, _ = await raw_request(server.port, method, target, headers, body)
        answers[route] = (status, response_headers)
    return answers


@pytest.mark.parametrize("authorization", list(WRONG.values()), ids=list(WRONG))
async def test_every_private_route_needs_the_token(
    app_server: Start, tmp_path: Path, offer: str, authorization: bytes | None
) -> None:
    server = await app_server(out_dir(tmp_path), token=TOKEN)
    session = await open_session(server, offer)
    answers = await private_requests(server, session, authorization, offer)
    for route, (status, headers) in answers.items():
        assert status == 401, f"{route}: {status}"
        assert headers["www-authenticate"].startswith("Bearer"), route
    # Nothing was changed: the session and the recording are still there.
    assert len(server.app[ENDPOINT].sessions) == 1
    assert (tmp_path / "out" / RECORDING).read_bytes() == CONTENT


async def test_the_right_token_opens_every_route(app_server: Start, tmp_path: Path, offer: str) -> None:
    out = out_dir(tmp_path)
    server = await app_server(out, token=TOKEN)
    session = await open_session(server, offer)
    answers = await private_requests(server, session, b"Bearer " + TOKEN.encode(), offer)
    assert {route: status for route, (status, _) in answers.items()} == {
        "POST /whip": 201,
        "PATCH session": 204,
        "GET list": 200,
        "HEAD list": 200,
        "GET file": 200,
        "HEAD file": 200,
        "GET sessions": 200,
        "GET thumbnail": 404,  # CONTENT is no video: it has none
        "DELETE session": 200,
        "DELETE file": 204,
    }
    assert not (out / RECORDING).exists(), "deleted with the token"
    (out / RECORDING).write_bytes(CONTENT)
    # The scheme is case-insensitive and spaces around the token do not matter (RFC 9110).
    for authorization in (b"bearer " + TOKEN.encode(), b"BEARER  " + TOKEN.encode() + b" "):
        status, _, body = await raw_request(server.port, "GET", "/recordings", [(b"Authorization", authorization)])
        assert status == 200, authorization
    status, _, body = await raw_request(server.port, "GET", f"/recordings/{RECORDING}", bearer(TOKEN))
    assert (status, body) == (200, CONTENT)


async def test_every_route_of_the_app_is_private_unless_marked_public(
    app_server: Start, tmp_path: Path, offer: str
) -> None:
    """Whatever routes the application has (later ones too): each answers 401 without the
    token unless its handler is marked public, and only GET, HEAD and OPTIONS may be."""
    server = await app_server(out_dir(tmp_path), token=TOKEN)
    session = await open_session(server, offer)
    values = {"session_id": session.rsplit("/", 1)[1], "name": RECORDING}
    checked = []
    for route in server.app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter", "").format(**values)
        if not path:
            continue
        status, headers, _ = await raw_request(server.port, route.method, path, sdp_headers())
        checked.append(f"{route.method} {path}")
        if getattr(route.handler, "__asyncrec_public__", False):  # _access.public
            assert route.method in ("GET", "HEAD", "OPTIONS"), f"{route.method} {path} is public"
            assert not path.startswith(("/recordings", "/metrics")), f"{path} is public"
            assert status != 401, f"{route.method} {path}"
        else:
            assert status == 401, f"{route.method} {path}: {status}"
            assert headers["www-authenticate"].startswith("Bearer")
    assert {
        "GET /",
        "POST /whip",
        "GET /recordings",
        f"GET /recordings/{RECORDING}",
        "GET /sessions",
        f"GET /recordings/{RECORDING}/thumbnail",
        f"DELETE /recordings/{RECORDING}",
    } <= set(checked)


async def test_the_page_loads_without_the_token_and_asks_for_it(app_server: Start, tmp_path: Path) -> None:
    server = await app_server(out_dir(tmp_path), token=TOKEN)
    status, _headers, body = await raw_request(server.port, "GET", "/")
    assert status == 200
    page = body.decode()
    assert 'id="token"' in page
    assert "sessionStorage" in page, "the page keeps the token for the tab only"
    # Every fetch of the page sends the token: the list of recordings too.
    assert 'fetch("recordings", { headers: headers({}) })' in page
    status, _, _ = await raw_request(server.port, "GET", "/favicon.ico")
    assert status < 400
    # Preflights carry no credentials (browsers never send them): they need no token.
    status, _, _ = await raw_request(server.port, "OPTIONS", "/whip", [(b"Origin", ORIGIN.encode())])
    assert status == 204


async def test_the_token_is_compared_in_constant_time_over_bytes(
    app_server: Start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[type, type]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        compared.append((type(a), type(b)))
        return real(a, b)

    from asyncrec.whip import _access

    monkeypatch.setattr(_access.hmac, "compare_digest", spy)
    server = await app_server(out_dir(tmp_path), token=TOKEN)
    for authorization in (b"Bearer wrong", b"Bearer " + TOKEN.encode(), b"Bearer \xff"):
        await raw_request(server.port, "GET", "/recordings", [(b"Authorization", authorization)])
    assert compared
    assert set(compared) == {(bytes, bytes)}


@pytest.mark.parametrize("token", ["", "two words", "tökén", "tab\there", "new\nline"])
def test_a_token_that_cannot_travel_in_a_header_is_refused(tmp_path: Path, token: str) -> None:
    with pytest.raises(ValueError, match="visible ASCII"):
        WhipEndpoint(lambda session: None, token=token)
    with pytest.raises(ValueError, match="visible ASCII"):
        create_app(tmp_path, token=token)


# -- signed recording URLs -------------------------------------------------------------------------


async def test_the_listing_gives_signed_urls_that_play_without_the_header(app_server: Start, tmp_path: Path) -> None:
    out = out_dir(tmp_path)
    (out / "20260101T000001Z-other.webm").write_bytes(b"other")
    (out / "20260101T000002Z-with space?.webm").write_bytes(b"spaced")
    server = await app_server(out, token=TOKEN)
    status, headers, body = await raw_request(server.port, "GET", "/recordings", bearer(TOKEN))
    assert status == 200
    assert "access-control-allow-origin" not in headers
    items = {item["name"]: item for item in json.loads(body)}
    signed = URL(items[RECORDING]["url"])
    assert signed.path == f"/recordings/{RECORDING}"
    assert set(signed.query) == {"expires", "signature"}
    # A <video src> or a download link: no Authorization header.
    status, _, content = await raw_request(server.port, "GET", str(signed))
    assert (status, content) == (200, CONTENT)
    # A name that needs percent-encoding (put there by the operator) is signed as served.
    spaced = URL(items["20260101T000002Z-with space?.webm"]["url"], encoded=True)
    assert spaced.raw_path == "/recordings/20260101T000002Z-with%20space%3F.webm"
    status, _, content = await raw_request(server.port, "GET", str(spaced))
    assert (status, content) == (200, b"spaced")
    status, _, _ = await raw_request(server.port, "HEAD", str(signed))
    assert status == 200

    other = URL(items["20260101T000001Z-other.webm"]["url"])
    refused = {
        "tampered": signed.update_query(signature="0" * 64),
        "another file": other.with_path(signed.path),
        "later expiry": signed.update_query(expires=str(int(signed.query["expires"]) + 1)),
        "no signature": signed.with_query(None),
        "the listing": URL("/recordings").with_query(signed.query),
        "junk": signed.update_query(expires="9" * 40, signature="zz"),
    }
    for what, target in refused.items():
        status, _, _ = await raw_request(server.port, "GET", str(target))
        assert status == 401, what
    # A signed URL is no token for anything but GET/HEAD of its own path.
    status, _, _ = await raw_request(server.port, "DELETE", str(signed))
    assert status in (401, 405)
    # Expired.
    from asyncrec.whip._server import ACCESS

    expired = server.app[ACCESS].sign(f"/recordings/{RECORDING}", ttl=-1)
    status, _, _ = await raw_request(server.port, "GET", expired)
    assert status == 401


async def test_without_a_token_the_listing_gives_plain_urls(app_server: Start, tmp_path: Path) -> None:
    server = await app_server(out_dir(tmp_path))
    status, _, body = await raw_request(server.port, "GET", "/recordings")
    assert status == 200
    assert b'"url": "/recordings/' + RECORDING.encode() + b'"' in body


# -- 2. CORS -----------------------------------------------------------------------------------------


async def test_recordings_are_never_shared_with_other_origins(app_server: Start, tmp_path: Path) -> None:
    all_options: list[dict[str, Any]] = [
        {},
        {"token": TOKEN},
        {"allow_origins": [ORIGIN]},
        {"allow_origins": ["*"], "token": TOKEN},
    ]
    for number, options in enumerate(all_options):
        server = await app_server(out_dir(tmp_path / str(number)), **options)
        auth = bearer(TOKEN) if "token" in options else []
        for target in ("/recordings", f"/recordings/{RECORDING}"):
            status, headers, _ = await raw_request(server.port, "GET", target, [(b"Origin", ORIGIN.encode()), *auth])
            assert status == 200, (options, target)
            assert "access-control-allow-origin" not in headers, (options, target, headers)
            status, headers, _ = await raw_request(
                server.port,
                "OPTIONS",
                target,
                [(b"Origin", ORIGIN.encode()), (b"Access-Control-Request-Method", b"GET")],
            )
            assert "access-control-allow-origin" not in headers, (options, target)


async def test_by_default_no_origin_may_use_the_whip_endpoint(
    app_server: Start, endpoint_server: Any, tmp_path: Path, offer: str
) -> None:
    for server in (await app_server(out_dir(tmp_path)), await endpoint_server()):
        origin = [(b"Origin", ORIGIN.encode())]
        status, headers, _ = await raw_request(
            server.port, "OPTIONS", "/whip", [*origin, (b"Access-Control-Request-Method", b"POST")]
        )
        assert status == 204
        assert "access-control-allow-origin" not in headers
        assert "access-control-allow-methods" not in headers
        status, headers, _ = await raw_request(server.port, "POST", "/whip", sdp_headers(*origin), offer.encode())
        assert status == 201
        assert "access-control-allow-origin" not in headers
        # A same-origin page needs no CORS: it reads the answer all the same.
        assert headers["location"].startswith("/whip/")


async def test_allowed_origins_are_reflected_with_vary_others_get_nothing(
    app_server: Start, tmp_path: Path, offer: str
) -> None:
    server = await app_server(out_dir(tmp_path), token=TOKEN, allow_origins=[ORIGIN, "http://localhost:3000"])
    preflight = [(b"Access-Control-Request-Method", b"POST"), (b"Access-Control-Request-Headers", b"authorization")]
    for origin, allowed in ((ORIGIN, True), ("http://localhost:3000", True), ("https://evil.example", False)):
        headers_out = [(b"Origin", origin.encode())]
        status, headers, _ = await raw_request(server.port, "OPTIONS", "/whip", [*headers_out, *preflight])
        assert status == 204
        assert "origin" in headers.get("vary", "").lower()
        if allowed:
            assert headers["access-control-allow-origin"] == origin
            assert "authorization" in headers["access-control-allow-headers"].lower()
            assert "POST" in headers["access-control-allow-methods"]
        else:
            assert "access-control-allow-origin" not in headers
            assert "access-control-allow-methods" not in headers
        # The 401 of a wrong token is readable by an allowed page (it can say why).
        status, headers, _ = await raw_request(server.port, "POST", "/whip", sdp_headers(*headers_out), offer.encode())
        assert status == 401
        assert headers.get("access-control-allow-origin") == (origin if allowed else None)
        assert "origin" in headers.get("vary", "").lower()
        status, headers, _ = await raw_request(
            server.port, "POST", "/whip", sdp_headers(*headers_out, *bearer(TOKEN)), offer.encode()
        )
        assert status == 201
        if allowed:
            assert headers["access-control-allow-origin"] == origin
            exposed = {h.strip().lower() for h in headers["access-control-expose-headers"].split(",")}
            assert {"location", "etag"} <= exposed
        else:
            assert "access-control-allow-origin" not in headers
        session = headers["location"]
        status, headers, _ = await raw_request(server.port, "DELETE", session, [*headers_out, *bearer(TOKEN)])
        assert status == 200
        assert headers.get("access-control-allow-origin") == (origin if allowed else None)


async def test_whip_endpoint_allow_origins_star_only_when_given(endpoint_server: Any) -> None:
    server = await endpoint_server(allow_origins=["*"])
    status, headers, _ = await raw_request(
        server.port,
        "OPTIONS",
        "/whip",
        [(b"Origin", b"https://any.example"), (b"Access-Control-Request-Method", b"POST")],
    )
    assert status == 204
    assert headers["access-control-allow-origin"] == "*"


@pytest.mark.parametrize(
    ("given", "normal"),
    [
        ("https://Example.COM", "https://example.com"),
        ("https://example.com/", "https://example.com"),
        ("https://example.com:443", "https://example.com"),
        ("http://localhost:8080", "http://localhost:8080"),
        ("http://[::1]:8080", "http://[::1]:8080"),
        ("*", "*"),
    ],
)
def test_origins_are_normalised(given: str, normal: str) -> None:
    from asyncrec.whip._access import normalize_origin

    assert normalize_origin(given) == normal


@pytest.mark.parametrize(
    "origin", ["", "null", "example.com", "ftp://example.com", "https://example.com/path", "https://u:p@x.example"]
)
def test_an_origin_that_is_not_one_is_refused(tmp_path: Path, origin: str) -> None:
    with pytest.raises(ValueError, match="origin"):
        WhipEndpoint(lambda session: None, allow_origins=[origin])
    with pytest.raises(ValueError, match="origin"):
        create_app(tmp_path, allow_origins=[origin])


# -- 3. serve on the network ---------------------------------------------------------------------------


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """``asyncrec serve ARGS`` in process, which must refuse them (never start serving)."""

    async def no_serving(args: Any) -> int:
        raise AssertionError(f"asyncrec serve started serving on {args.host!r}")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cli, "_serve", no_serving)
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["serve", *args])
    captured = capsys.readouterr()
    assert captured.out == ""
    return int(exit_info.value.code or 0), captured.err


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.com", "fe80::1", ""])
def test_serve_refuses_the_network_without_a_token(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, host: str
) -> None:
    monkeypatch.delenv("ASYNCREC_TOKEN", raising=False)
    status, err = run_main(capsys, "--host", host, "--out", str(tmp_path / "out"))
    assert status == 2
    [line] = err.strip().splitlines()
    assert line.startswith("asyncrec: error:")
    assert "--token" in line, line
    assert "--no-auth" in line, line
    assert not (tmp_path / "out").exists(), "refused before anything was done"


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.1.2.3", "::1", "localhost", "LOCALHOST", "::ffff:127.0.0.1", "0.0.0.0"]
)
def test_loopback_hosts_need_no_token(host: str) -> None:
    assert cli._is_loopback(host) is (host != "0.0.0.0")


@pytest.mark.parametrize(
    "args",
    [
        ["--token", "x", "--no-auth"],
        ["--token", "two words"],
        ["--token", ""],
        ["--allow-origin", "example.com"],
        ["--allow-origin", "https://example.com/page"],
    ],
    ids=["token-and-no-auth", "token-with-space", "empty-token", "origin-without-scheme", "origin-with-path"],
)
def test_serve_security_arguments_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str]
) -> None:
    status, err = run_main(capsys, "--out", str(tmp_path / "out"), *args)
    assert status == 2
    [line] = err.strip().splitlines()
    assert line.startswith("asyncrec: error:"), line


@contextlib.contextmanager
def serve_on(host: str, *args: str, env: dict[str, str] | None = None) -> Iterator[tuple[subprocess.Popen[str], int]]:
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if k not in ("ASYNCREC_TOKEN", "ASYNCREC_ICE_HOSTS")}
    environment.update(env or {})
    with subprocess.Popen(
        [*asyncrec_command(), "serve", "--host", host, "--port", str(port), "--ice-host", "127.0.0.1", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    ) as proc:
        try:
            yield proc, port
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


async def test_serve_on_all_interfaces_with_no_auth_or_a_token(tmp_path: Path) -> None:
    cases = [
        (["--no-auth"], {}, 200),
        ([], {"ASYNCREC_TOKEN": TOKEN}, 401),  # the token from the environment (not in ps)
        (["--token", TOKEN], {}, 401),
    ]
    for args, env, unauthenticated in cases:
        with serve_on("0.0.0.0", "--out", str(tmp_path / "out"), *args, env=env) as (proc, port):
            assert proc.stdout is not None
            line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
            assert f":{port}/" in line, (line, proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
            status, _, _ = await raw_request(port, "GET", "/recordings")
            assert status == unauthenticated, args
            if unauthenticated == 401:
                status, _, _ = await raw_request(port, "GET", "/recordings", bearer(TOKEN))
                assert status == 200
            proc.send_signal(signal.SIGINT)
            assert await asyncio.to_thread(proc.wait, 30) == 0


# -- 4. what answered 500 on main ------------------------------------------------------------------------


def with_duplicate_mid(offer: str) -> str:
    """Two ``a=mid`` lines in the first media section: aiortc fails in createAnswer."""
    lines = offer.split("\r\n")
    index = next(i for i, line in enumerate(lines) if line.startswith("a=mid:"))
    return "\r\n".join([*lines[: index + 1], "a=mid:duplicate", *lines[index + 1 :]])


async def test_an_offer_aiortc_cannot_answer_is_400_and_its_peer_connection_closed(
    app_server: Start, tmp_path: Path, offer: str, peer_connections: PeerConnections
) -> None:
    server = await app_server(out_dir(tmp_path))
    sockets = udp_sockets()
    status, _, body = await raw_request(server.port, "POST", "/whip", sdp_headers(), with_duplicate_mid(offer).encode())
    assert status == 400, body
    assert body.startswith(b"cannot answer this offer")
    assert len(peer_connections.created) == 1
    assert peer_connections.open() == []
    # A later close() returns at once (aiortc's own would wait forever on a failed close).
    await asyncio.wait_for(peer_connections.created[0].close(), 5)
    assert udp_sockets() <= sockets
    assert server.app[ENDPOINT].sessions == {}


async def test_a_peer_connection_is_closed_even_when_close_raises(
    app_server: Start,
    tmp_path: Path,
    offer: str,
    peer_connections: PeerConnections,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The offer fails after ICE gathered (sockets open), and aiortc's close() raises."""
    server = await app_server(out_dir(tmp_path))

    async def broken_close(self: RTCPeerConnection) -> None:
        raise RuntimeError("close failed")

    async def failing_answer(self: RTCPeerConnection, description: Any = None) -> None:
        await original_set_local(self, description)  # gathers: binds UDP sockets
        raise RuntimeError("setLocalDescription failed")

    original_set_local = RTCPeerConnection.setLocalDescription
    monkeypatch.setattr(RTCPeerConnection, "close", broken_close)
    monkeypatch.setattr(RTCPeerConnection, "setLocalDescription", failing_answer)
    sockets = udp_sockets()
    status, _, body = await raw_request(server.port, "POST", "/whip", sdp_headers(), offer.encode())
    assert status == 400, body
    assert len(peer_connections.created) == 1
    assert peer_connections.open() == []
    assert udp_sockets() <= sockets, "the ICE sockets of the half-built connection are closed"


@pytest.mark.parametrize("token", [None, TOKEN])
async def test_authorization_that_is_not_utf8_is_401_or_ignored_never_500(
    app_server: Start, endpoint_server: Any, tmp_path: Path, offer: str, token: str | None
) -> None:
    for server in (await app_server(out_dir(tmp_path / "app"), token=token), await endpoint_server(token=token)):
        for value in (b"Bearer \xff\xfe", b"\xff\xfe", b"Bearer " + TOKEN.encode() + b"\x80", "Bearer ö".encode()):
            status, _, _ = await raw_request(
                server.port, "POST", "/whip", sdp_headers((b"Authorization", value)), offer.encode()
            )
            assert status == (401 if token else 201), value
            status, _, _ = await raw_request(server.port, "DELETE", "/whip/x", [(b"Authorization", value)])
            assert status == (401 if token else 404), value


@pytest.mark.parametrize("token", [None, TOKEN])
async def test_a_recording_name_too_long_for_the_system_is_404(
    app_server: Start, tmp_path: Path, token: str | None
) -> None:
    server = await app_server(out_dir(tmp_path), token=token)
    auth = bearer(TOKEN) if token else []
    for name in ("a" * 5000 + ".webm", "a" * 251 + ".webm", "%C3%A9" * 200 + ".webm", "a%2F" * 1500 + "b.webm"):
        status, _, _ = await raw_request(server.port, "GET", f"/recordings/{name}", auth)
        assert status == 404, name[:20]


def without_candidates(offer: str) -> str:
    """The offer of a trickle ICE publisher: candidates follow by PATCH."""
    lines = offer.split("\r\n")
    return "\r\n".join(line for line in lines if not line.startswith(("a=candidate:", "a=end-of-candidates")))


BAD_CANDIDATES = {
    "host name": "1 1 udp 1 not-an-address 9 typ host",
    "port out of range": "1 1 udp 1 127.0.0.1 99999999 typ host",
    "negative": "1 1 udp -5 127.0.0.1 -9 typ host",
    "unknown type": "1 1 udp 1 127.0.0.1 9 typ nothing",
    "priority out of range": "1 1 udp 99999999999999999999 127.0.0.1 9 typ host",
    "component": "1 999 udp 1 127.0.0.1 9 typ host",
    "transport": "1 1 sctp 1 127.0.0.1 9 typ host",
    "broadcast": "1 1 udp 1 255.255.255.255 9 typ host",
    "multicast": "1 1 udp 1 224.0.0.1 9 typ host",
    "too few fields": "1 1 udp 1 127.0.0.1 9",
    "rport": "1 1 udp 1 127.0.0.1 9 typ srflx raddr 0.0.0.0 rport x",
}


async def test_candidates_aioice_cannot_use_are_400_in_patch_and_in_offers(
    app_server: Start, tmp_path: Path, offer: str, peer_connections: PeerConnections, caplog: pytest.LogCaptureFixture
) -> None:
    """aioice takes any candidate; a port out of range then kills the session's ICE socket
    ("Fatal write error on datagram transport"), a host name is resolved by a blocking
    call on the event loop."""
    server = await app_server(out_dir(tmp_path))
    session = await open_session(server, without_candidates(offer), token=None)
    frag = [(b"Content-Type", SDP_FRAG.encode())]
    for what, candidate in BAD_CANDIDATES.items():
        body = f"a=mid:0\r\na=candidate:{candidate}\r\n".encode()
        status, _, text = await raw_request(server.port, "PATCH", session, frag, body)
        assert status == 400, f"PATCH {what}: {status} {text[:200]!r}"
        lines = without_candidates(offer).split("\r\n")
        index = next(i for i, line in enumerate(lines) if line.startswith("a=mid:"))
        bad_offer = "\r\n".join([*lines[: index + 1], f"a=candidate:{candidate}", *lines[index + 1 :]])
        status, _, text = await raw_request(server.port, "POST", "/whip", sdp_headers(), bad_offer.encode())
        assert status == 400, f"POST {what}: {status} {text[:200]!r}"
    # Good ones still go in: IPv4, IPv6, mDNS, TCP.
    for candidate in (
        "1 1 udp 2130706431 127.0.0.1 40000 typ host",
        "2 1 UDP 2130706431 ::1 40000 typ host generation 0",
        "3 1 udp 2130706431 0a1b2c3d-aaaa-bbbb-cccc-0123456789ab.local 40000 typ host",
        "4 1 tcp 1518280447 127.0.0.1 9 typ host tcptype active",
    ):
        body = f"a=mid:0\r\na=candidate:{candidate}\r\n".encode()
        status, _, text = await raw_request(server.port, "PATCH", session, frag, body)
        assert status == 204, f"{candidate}: {text!r}"
    await asyncio.sleep(0.5)  # ICE checks towards them
    assert "Fatal write error" not in caplog.text
    status, _, _ = await raw_request(server.port, "DELETE", session)
    assert status == 200
    assert peer_connections.open() == []


async def test_patch_and_if_match_junk_is_4xx(app_server: Start, tmp_path: Path, offer: str) -> None:
    server = await app_server(out_dir(tmp_path))
    session = await open_session(server, without_candidates(offer), token=None)
    frag = [(b"Content-Type", SDP_FRAG.encode())]
    bodies = {
        "unknown mid": b"a=mid:nope\r\na=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\n",
        "no component": b"a=mid:0\r\na=candidate:1 x udp 1 127.0.0.1 9 typ host\r\n",
        "not utf8": b"a=mid:0\r\na=candidate:\xff\xfe\r\n",
        "nul": b"a=mid:\x00\r\na=candidate:1 1 udp 1 127.0.0.1 9 typ host\x00\r\n",
        "binary": bytes(range(256)) * 4,
    }
    for what, body in bodies.items():
        status, _, text = await raw_request(server.port, "PATCH", session, frag, body)
        assert status in (204, 400), f"{what}: {status} {text[:200]!r}"
    for value in (b"\xff\xfe", b"W/" + b"x" * 4000, b'"' * 100, b'*, "a"', b""):
        status, _, _ = await raw_request(server.port, "PATCH", session, [*frag, (b"If-Match", value)], b"a=mid:0\r\n")
        assert status in (204, 412), value[:20]
    # A header too large for aiohttp: it answers 4xx itself.
    status, _, _ = await raw_request(server.port, "PATCH", session, [*frag, (b"If-Match", b"x" * 100_000)], b"")
    assert 400 <= status < 500
    status, _, _ = await raw_request(server.port, "DELETE", session)
    assert status == 200
    # PATCH of a session that has ended: 404.
    status, _, _ = await raw_request(server.port, "PATCH", session, frag, b"a=mid:0\r\n")
    assert status == 404


async def test_too_many_media_sections_are_400_before_any_transport(
    app_server: Start, tmp_path: Path, offer: str, peer_connections: PeerConnections
) -> None:
    server = await app_server(out_dir(tmp_path))
    head, _, rest = without_candidates(offer).partition("\r\nm=")
    section = "m=" + rest.split("\r\nm=")[-1]  # audio: the shorter one
    body = head + ("\r\n" + section) * 20 + "\r\n"
    assert len(body) < 64 * 1024
    status, _, text = await raw_request(server.port, "POST", "/whip", sdp_headers(), body.encode())
    assert status == 400, text
    assert peer_connections.created == []


async def test_a_listing_survives_files_that_vanish_meanwhile(
    app_server: Start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = out_dir(tmp_path)
    vanishing = out / "20260101T000002Z-gone.webm"
    vanishing.write_bytes(b"x")
    server = await app_server(out)
    real_stat = Path.stat

    def stat(self: Path, *args: Any, **kwargs: Any) -> os.stat_result:
        if self.name == vanishing.name:
            raise FileNotFoundError(2, "No such file or directory", str(self))
        return real_stat(self, *args, **kwargs)

    monkeypatch.setattr(Path, "stat", stat)
    status, _, body = await raw_request(server.port, "GET", "/recordings")
    assert status == 200, body
    assert vanishing.name.encode() not in body


# -- the page with a token, in Chromium -------------------------------------------------------------------


@pytest.mark.slow
async def test_the_page_asks_for_the_token_then_lists_and_plays_recordings(app_server: Start, tmp_path: Path) -> None:
    from playwright.async_api import async_playwright

    from test_browser import CHROMIUM, CHROMIUM_ARGS

    server = await app_server(out_dir(tmp_path), token=TOKEN)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            await page.goto(str(server.make_url("/")))
            # Without the token the page says it needs one, and lists nothing.
            await page.wait_for_function("document.getElementById('error').textContent.includes('token')")
            assert await page.locator("#recordings tr").count() == 0
            await page.fill("#token", TOKEN)
            await page.press("#token", "Enter")
            await page.wait_for_selector("#recordings tr")
            assert await page.locator("#recordings tr td:first-child").all_text_contents() == [RECORDING]
            # The download link is signed: it works without the header.
            # (Relative to the page, resolved here as the browser does: a.href.)
            href = await page.locator("#recordings a").first.evaluate("a => a.href")
            assert "signature=" in href
            status, _, body = await raw_request(server.port, "GET", URL(href).raw_path_qs)
            assert (status, body) == (200, CONTENT)
            # The token is kept for the tab: a reload lists at once.
            await page.reload()
            await page.wait_for_selector("#recordings tr")
            assert await page.evaluate("sessionStorage.getItem('asyncrec-token')") == TOKEN
        finally:
            await browser.close()
