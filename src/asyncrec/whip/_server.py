"""``asyncrec serve``: the WHIP endpoint recording every session, the operator's page (live
sessions, a publishing panel, the recordings) and the routes it reads, as one aiohttp
application.

With a token, every route needs it (:func:`~asyncrec.whip._access.access_middleware`)
except those marked :func:`~asyncrec.whip._access.public`: the page, the favicon and the
CORS preflights. A route added to the application later is private unless marked.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler

from .._encoder_pool import EncoderPool
from .._encoder_process import Priority
from .._object_storage import check_bucket, parse_url, prepare_s3
from ._access import BearerToken, access_middleware, public, signed_urls
from ._endpoint import WhipEndpoint
from ._library import Library
from ._metrics import ServerMetrics
from ._object_library import ObjectLibrary
from ._recording import EXTENSIONS, MAX_PUBLISH_SIZE, MAX_SESSION_MEMORY, record_sessions
from ._sessions import LiveSessions
from ._storage import RETRY_AFTER, StorageGuard

PAGE = resources.files(__package__).joinpath("page.html")
#: The application's WhipEndpoint.
ENDPOINT = web.AppKey("endpoint", WhipEndpoint)
#: The application's token check (the one access_middleware applies to every route).
ACCESS = web.AppKey("access", BearerToken)
#: What a worker id may be: it goes into URLs and object names.
WORKER_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")


def create_app(
    out_dir: str | os.PathLike[str],
    *,
    mimeType: str = "",  # noqa: N803 - W3C spelling
    timeslice: int = 1000,
    token: str | None = None,
    max_sessions: int = 16,
    ice_hosts: list[str] | None = None,
    connect_timeout: float = 30.0,
    allow_origins: Iterable[str] = (),
    max_session_seconds: float | None = None,
    max_video_size: tuple[int, int] | None = None,
    max_publish_size: tuple[int, int] | None = MAX_PUBLISH_SIZE,
    max_session_memory: int | None = MAX_SESSION_MEMORY,
    min_free: int | None = None,
    max_disk: int | None = None,
    worker_id: str | None = None,
    trusted_proxies: Iterable[str] = (),
    passthrough: bool = True,
    encoder_processes: int = 0,
    encoder_priority: Priority = "idle",
) -> web.Application:
    """The server's application: ``/whip`` (WHIP), ``/`` (the operator's page),
    ``/sessions``, ``/recordings``, ``/metrics``, ``/healthz``.

    With ``token``, every route but the page needs ``Authorization: Bearer TOKEN`` (a
    recording also answers a URL signed by ``/recordings``). ``allow_origins``: the
    origins whose pages may publish to ``/whip`` from a browser (CORS); the recordings
    are never shared with other origins.

    Bounds (see docs/operating.md): ``max_session_seconds`` per session, video larger than
    ``max_video_size`` scaled down, larger than ``max_publish_size`` refused (never
    decoded), at most ``max_session_memory`` bytes of media held per session, and the
    disk: below ``min_free`` free bytes or above ``max_disk`` bytes of recordings, running
    sessions end with finished files and new ones get 507. ``/metrics`` (Prometheus;
    private) and ``/healthz`` (public) report.

    The page at ``/`` reads ``/sessions`` (live sessions) and ``/recordings`` (with
    durations and ``/recordings/NAME/thumbnail``); ``DELETE /recordings/NAME`` removes one.

    ``out_dir`` may be ``s3://BUCKET/PREFIX``: recordings are then uploaded as they are
    recorded (:class:`~asyncrec.ObjectSink`), listed from the bucket and played through
    presigned URLs. ``worker_id`` (letters, digits, ``-``, ``_``): this server is one of
    several behind a load balancer; its session URLs are ``/w/WORKER_ID/whip/ID`` and its
    recordings' names carry the id (see docs/scaling.md); ``trusted_proxies``: the load
    balancers whose ``X-Forwarded-For`` gives the publisher's address. ``passthrough``:
    publishers' frames are copied when their codecs fit the container (the default),
    else decoded and encoded (see :func:`~asyncrec.whip.record_sessions`).
    ``encoder_processes``: sessions are encoded and muxed in that many processes (an
    :class:`~asyncrec.EncoderPool`, started with the app and closed after its sessions,
    its processes at ``encoder_priority``), 0 on a thread each in this process.

    Raises NotSupportedError for a ``mimeType`` that cannot be recorded, ValueError for a
    token that is not visible ASCII, an origin that is not ``scheme://host[:port]``, a
    negative disk bound, a disk bound with an ``s3://`` output, a malformed ``s3://`` URL
    or worker id, a negative ``encoder_processes``, an unknown ``encoder_priority``.
    """
    if encoder_processes < 0:
        raise ValueError(f"encoder_processes must be 0 or more, not {encoder_processes}")
    encoder_pool = EncoderPool(encoder_processes, priority=encoder_priority) if encoder_processes else None
    to_objects = str(out_dir).startswith("s3://")
    if worker_id is not None and not WORKER_ID.fullmatch(worker_id):
        raise ValueError(f"a worker id is 1 to 32 letters, digits, '-' or '_', not {worker_id!r}")
    if to_objects and (min_free is not None or max_disk is not None):
        raise ValueError("--min-free and --max-disk bound a local disk: not for an s3:// output")
    folder: Path | str = str(out_dir) if to_objects else Path(out_dir).resolve()
    metrics = ServerMetrics()
    storage = StorageGuard(Path(".") if to_objects else Path(folder), min_free=min_free, max_bytes=max_disk)

    def admit() -> web.Response | None:
        if storage.full is None:
            return None
        return web.Response(
            status=507, text=f"storage full ({storage.full})\n", headers={"Retry-After": str(RETRY_AFTER)}
        )

    endpoint = WhipEndpoint(
        record_sessions(
            folder,
            mimeType=mimeType,
            timeslice=timeslice,
            max_session_seconds=max_session_seconds,
            max_video_size=max_video_size,
            max_publish_size=max_publish_size,
            max_session_memory=max_session_memory,
            storage=storage if storage.enabled else None,
            metrics=metrics,
            worker_id=worker_id,
            passthrough=passthrough,
            encoder_pool=encoder_pool,
        ),
        admit=admit,
        on_refused=metrics.refuse,
        token=token,
        max_sessions=max_sessions,
        ice_hosts=ice_hosts,
        connect_timeout=connect_timeout,
        allow_origins=allow_origins,
        location_prefix=f"/w/{worker_id}" if worker_id else "",
        trusted_proxies=trusted_proxies,
    )
    access = endpoint.access

    @web.middleware
    async def count_unauthorized(request: web.Request, handler: Handler) -> web.StreamResponse:
        # The token check answers before the endpoint sees the request: count it here.
        response = await handler(request)
        if response.status == 401 and request.method == "POST" and request.path == endpoint.path:
            metrics.refuse("unauthorized")
        return response

    app = web.Application(
        client_max_size=endpoint.max_body, middlewares=[count_unauthorized, access_middleware(access)]
    )
    app[ENDPOINT] = endpoint
    app[ACCESS] = access
    endpoint.add_routes(app)
    page = PAGE.read_text(encoding="utf-8")

    @public
    async def index(request: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html")

    library: Library | ObjectLibrary
    if isinstance(folder, str):
        bucket, _, prefix = folder.removeprefix("s3://").partition("/")
        library = ObjectLibrary(bucket, prefix, set(EXTENSIONS.values()))
    else:
        library = Library(folder)
    live = LiveSessions(metrics, endpoint)

    async def sessions(request: web.Request) -> web.Response:
        return web.json_response(live.snapshot(), headers={"Cache-Control": "no-store"})

    async def recordings(request: web.Request) -> web.Response:
        items = []
        for item in await library.recordings():
            path = f"/recordings/{item.name}"
            items.append(
                {
                    "name": item.name,
                    "size": item.size,
                    "mtime": item.mtime,
                    "duration": item.duration,
                    "url": access.sign(path),  # for <video src> and <img src>: no header
                    "thumbnail": access.sign(f"{path}/thumbnail") if item.has_thumbnail else None,
                }
            )
        return web.json_response(items, headers={"Cache-Control": "no-store"})

    @signed_urls
    async def recording(request: web.Request) -> web.StreamResponse:
        if isinstance(library, ObjectLibrary):
            # The storage serves the bytes (ranges included) through a presigned URL.
            url = await library.url(request.match_info["name"])
            if url is None:
                raise web.HTTPNotFound(text="no such recording\n")
            raise web.HTTPTemporaryRedirect(url)
        path = await library.file(request.match_info["name"])
        if path is None:
            raise web.HTTPNotFound(text="no such recording\n")
        return web.FileResponse(path)

    @signed_urls
    async def thumbnail(request: web.Request) -> web.Response:
        jpeg = await library.thumbnail(request.match_info["name"])
        if jpeg is None:
            raise web.HTTPNotFound(text="no such thumbnail\n")
        return web.Response(body=jpeg, content_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    async def delete_recording(request: web.Request) -> web.Response:
        try:
            deleted = await library.delete(request.match_info["name"])
        except PermissionError:
            raise web.HTTPForbidden(text="the server may not delete this file\n") from None
        if not deleted:
            raise web.HTTPNotFound(text="no such recording\n")
        return web.Response(status=204)

    @public
    async def no_icon(request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def metrics_page(request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": metrics.content_type})

    @public
    async def health(request: web.Request) -> web.Response:
        status = "draining" if endpoint.draining else "ok" if storage.full is None else "storage full"
        body = {"status": status, "sessions": len(endpoint.sessions)}
        return web.json_response(body, status=200 if status == "ok" else 503)

    async def start_storage(_app: web.Application) -> None:
        await storage.start()

    async def stop_storage(_app: web.Application) -> None:
        await storage.stop()

    app.on_startup.append(start_storage)
    if to_objects:

        async def prepare_objects(_app: web.Application) -> None:
            await prepare_s3()  # the first session's upload then starts at once
            await check_bucket(parse_url(f"{str(folder).rstrip('/')}/name")[0])

        app.on_startup.append(prepare_objects)
    app.on_cleanup.append(stop_storage)
    if encoder_pool is not None:
        pool = encoder_pool

        async def start_encoders(_app: web.Application) -> None:
            await pool.start()

        async def stop_encoders(_app: web.Application) -> None:
            await pool.close()  # after on_shutdown ended the sessions: nothing left to wait for

        app.on_startup.append(start_encoders)
        app.on_cleanup.append(stop_encoders)
    app.router.add_get("/", index)
    app.router.add_get("/favicon.ico", no_icon)
    app.router.add_get("/metrics", metrics_page)
    app.router.add_get("/healthz", health)
    app.router.add_get("/sessions", sessions)
    app.router.add_get("/recordings", recordings)
    app.router.add_get("/recordings/{name}", recording)
    app.router.add_delete("/recordings/{name}", delete_recording)
    app.router.add_get("/recordings/{name}/thumbnail", thumbnail)
    return app
