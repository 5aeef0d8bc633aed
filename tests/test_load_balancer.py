"""deploy/nginx.conf.template in a real nginx (tests/load_balancer.py) in front of three tiny
in-process workers that answer like `asyncrec serve --worker-id ID`: POST /whip spreads round
robin and skips draining (503) and dead workers, the session URLs reach the worker that made
them with its /w/ID prefix removed, and the headers WHIP needs pass both ways. Also: the
shipped deploy/ files agree with the template and the command line."""

from __future__ import annotations

import os
import re
import shlex
import shutil
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from load_balancer import Nginx, render_site

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
TOKEN = "Bearer test-token"
OFFER = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
LINK = '<stun:stun.example.net>; rel="ice-server"'


@dataclass(frozen=True)
class Seen:
    """A request as the worker saw it."""

    method: str
    path: str  # with the query string
    authorization: str | None
    body: str


@dataclass
class Worker:
    """Answers like a WHIP worker with id ``id``: POST /whip creates session s1 at
    ``/w/ID/whip/s1`` (503 + Retry-After while ``draining``; 401 without the token), and
    PATCH, OPTIONS, DELETE /whip/s1, GET / and /healthz answer with the id."""

    id: str
    draining: bool = False
    seen: list[Seen] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        authorization = request.headers.get("Authorization")
        self.seen.append(Seen(request.method, request.path_qs, authorization, await request.text()))
        if authorization != TOKEN:
            return web.Response(status=401, text="no token\n", headers={"WWW-Authenticate": 'Bearer realm="whip"'})
        route = (request.method, request.path)
        if route == ("POST", "/whip"):
            if self.draining:
                return web.Response(status=503, text=f"{self.id} draining\n", headers={"Retry-After": "5"})
            headers = {"Location": f"/w/{self.id}/whip/s1", "ETag": f'"{self.id}-1"', "Link": LINK}
            return web.Response(status=201, body=self.id.encode(), content_type="application/sdp", headers=headers)
        if route == ("PATCH", "/whip/s1"):
            return web.Response(status=204, headers={"ETag": f'"{self.id}-2"'})
        if route in {("OPTIONS", "/whip/s1"), ("DELETE", "/whip/s1"), ("GET", "/"), ("GET", "/healthz")}:
            return web.Response(text=self.id)
        if request.method == "GET" and request.path == "/sessions":
            return web.Response(text=f"{self.id} {request.query_string}")
        return web.Response(status=404, text="not found\n")

    def posts(self) -> list[Seen]:
        return [s for s in self.seen if s.method == "POST"]


@dataclass
class Cluster:
    workers: dict[str, Worker]
    servers: dict[str, TestServer]
    nginx: Nginx
    client: aiohttp.ClientSession

    async def post(self) -> aiohttp.ClientResponse:
        async with self.client.post("/whip", data=OFFER, headers={"Content-Type": "application/sdp"}) as response:
            await response.read()
            return response


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    """Workers a, b, c on 127.0.0.1 and nginx in front of them; a client that sends the token.
    Skipped where nginx is not installed, except in CI (``CI`` set), which installs it
    (scripts/test.sh) and must run these tests."""
    if shutil.which("nginx") is None:
        message = "no nginx for the load balancer tests: apt-get install --no-install-recommends nginx"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    workers = {worker_id: Worker(worker_id) for worker_id in "abc"}
    servers: dict[str, TestServer] = {}
    try:
        for worker_id, worker in workers.items():
            servers[worker_id] = TestServer(worker.app(), host="127.0.0.1")
            await servers[worker_id].start_server()
        upstreams = [(worker_id, "127.0.0.1", server.port) for worker_id, server in servers.items()]
        async with (
            Nginx(upstreams) as nginx,
            aiohttp.ClientSession(nginx.url, headers={"Authorization": TOKEN}) as client,
        ):
            yield Cluster(workers, servers, nginx, client)
    finally:
        for server in servers.values():
            await server.close()


def winners(responses: list[aiohttp.ClientResponse]) -> Counter[str]:
    """Which worker created each session, from its Location."""
    assert all(r.status == 201 for r in responses), [r.status for r in responses]
    return Counter(r.headers["Location"].split("/")[2] for r in responses)


async def test_posts_go_round_robin(cluster: Cluster) -> None:
    responses = [await cluster.post() for _ in range(9)]
    assert winners(responses) == {"a": 3, "b": 3, "c": 3}


async def test_a_draining_worker_passes_the_post_on(cluster: Cluster) -> None:
    cluster.workers["b"].draining = True
    responses = [await cluster.post() for _ in range(12)]
    counts = winners(responses)
    assert set(counts) == {"a", "c"}
    assert min(counts.values()) >= 4, counts  # spread, not all on one
    # b was asked (nginx cannot know it drains) and the next worker got the same offer.
    assert cluster.workers["b"].posts()
    assert {s.body for w in cluster.workers.values() for s in w.posts()} == {OFFER}
    retried = [line for line in cluster.nginx.access_log() if "upstream_status=[503, 201]" in line]
    assert len(retried) == len(cluster.workers["b"].posts()), cluster.nginx.access_log()


async def test_a_dead_worker_is_skipped(cluster: Cluster) -> None:
    await cluster.servers["c"].close()
    responses = [await cluster.post() for _ in range(8)]
    counts = winners(responses)
    assert set(counts) == {"a", "b"}
    assert min(counts.values()) >= 3, counts


async def test_every_worker_draining_passes_503_and_retry_after(cluster: Cluster) -> None:
    for worker in cluster.workers.values():
        worker.draining = True
    for _ in range(2):  # the second time too: no worker was marked down by the first
        response = await cluster.post()
        assert response.status == 503
        assert response.headers["Retry-After"] == "5"
    assert [len(w.posts()) for w in cluster.workers.values()] == [2, 2, 2]


async def test_session_requests_reach_their_worker_without_the_prefix(cluster: Cluster) -> None:
    responses = [await cluster.post() for _ in range(3)]
    locations = {r.headers["Location"].split("/")[2]: r.headers["Location"] for r in responses}
    assert locations == {worker_id: f"/w/{worker_id}/whip/s1" for worker_id in "abc"}
    for worker_id, location in locations.items():
        async with cluster.client.patch(
            location, data="a=ice-ufrag:x\r\n", headers={"If-Match": f'"{worker_id}-1"'}
        ) as patch:
            assert (patch.status, patch.headers["ETag"]) == (204, f'"{worker_id}-2"')
        for method in ("OPTIONS", "DELETE"):
            async with cluster.client.request(method, location) as response:
                assert (response.status, await response.text()) == (200, worker_id)
    for worker in cluster.workers.values():
        session_requests = [(s.method, s.path) for s in worker.seen if s.method != "POST"]
        assert session_requests == [("PATCH", "/whip/s1"), ("OPTIONS", "/whip/s1"), ("DELETE", "/whip/s1")]


async def test_worker_pages_and_any_worker_pages(cluster: Cluster) -> None:
    async with cluster.client.get("/w/b/sessions?limit=5") as response:
        assert (response.status, await response.text()) == (200, "b limit=5")
    async with cluster.client.get("/w/c/healthz") as response:
        assert (response.status, await response.text()) == (200, "c")
    for path in ("/", "/healthz"):
        async with cluster.client.get(path) as response:
            assert response.status == 200
            assert await response.text() in cluster.workers
    # A session URL without its worker, or an unknown worker: nginx's own 404, no worker asked.
    asked = sum(len(w.seen) for w in cluster.workers.values())
    for path in ("/whip/s1", "/w/zz/whip/s1"):
        async with cluster.client.delete(path) as response:
            assert response.status == 404
    assert sum(len(w.seen) for w in cluster.workers.values()) == asked


async def test_headers_pass_both_ways(cluster: Cluster) -> None:
    response = await cluster.post()
    worker_id = response.headers["Location"].split("/")[2]
    assert response.headers["ETag"] == f'"{worker_id}-1"'
    assert response.headers["Link"] == LINK
    assert response.headers["Content-Type"] == "application/sdp"
    assert cluster.workers[worker_id].posts()[-1].authorization == TOKEN
    # Without the token: the worker's 401 and its WWW-Authenticate come back as they were.
    async with aiohttp.ClientSession(cluster.nginx.url) as anonymous, anonymous.post("/whip", data=OFFER) as refused:
        assert refused.status == 401
        assert refused.headers["WWW-Authenticate"] == 'Bearer realm="whip"'
    assert [s.authorization for w in cluster.workers.values() for s in w.seen] == [TOKEN, None]


async def test_offers_larger_than_64_kib_are_refused_by_nginx(cluster: Cluster) -> None:
    async with cluster.client.post("/whip", data="a" * (64 * 1024 + 1)) as response:
        assert response.status == 413
    assert not any(w.seen for w in cluster.workers.values())


def test_render_site_refuses_bad_worker_lists() -> None:
    with pytest.raises(ValueError, match="no worker"):
        render_site([], "8080")
    with pytest.raises(ValueError, match="repeated"):
        render_site([("1", "127.0.0.1", 8101), ("1", "127.0.0.1", 8102)], "8080")
    with pytest.raises(ValueError, match="only letters"):
        render_site([("a/b", "127.0.0.1", 8101)], "8080")


def directives(text: str) -> list[str]:
    """The configuration without its comments and blank lines."""
    return [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_the_example_is_the_template_for_three_workers() -> None:
    workers = [(f"0{n}", "127.0.0.1", 8100 + n) for n in (1, 2, 3)]
    example = (DEPLOY / "nginx.conf").read_text()
    assert directives(example) == directives(render_site(workers, "8080"))


def test_the_worker_unit_runs_a_valid_command_line() -> None:
    from asyncrec.cli import build_parser

    unit = (DEPLOY / "asyncrec-worker@.service").read_text().replace("\\\n", " ")
    match = re.search(r"^ExecStart=(\S+) (.*)$", unit, re.MULTILINE)
    assert match is not None
    args = build_parser().parse_args(shlex.split(match[2].replace("%i", "01")))
    assert (args.command, args.host, args.port, args.worker_id) == ("serve", "127.0.0.1", 8101, "01")
    assert args.out.startswith("s3://")
    # systemd sends SIGTERM (the worker drains) and waits longer than the drain may take.
    assert "\nKillSignal=SIGTERM\n" in unit
    stop_timeout = re.search(r"^TimeoutStopSec=(\d+)$", unit, re.MULTILINE)
    assert stop_timeout is not None
    assert float(stop_timeout[1]) > args.drain_timeout
