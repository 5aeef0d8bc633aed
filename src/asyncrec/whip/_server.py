"""``asyncrec serve``: the WHIP endpoint recording every session, a publishing page and
the list of recordings, as one aiohttp application."""

from __future__ import annotations

import asyncio
import os
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web

from ._endpoint import CORS_HEADERS, WhipEndpoint
from ._recording import EXTENSIONS, PARTIAL, record_sessions

PAGE = resources.files(__package__).joinpath("page.html")
#: The application's WhipEndpoint.
ENDPOINT = web.AppKey("endpoint", WhipEndpoint)


def create_app(
    out_dir: str | os.PathLike[str],
    *,
    mimeType: str = "",  # noqa: N803 - W3C spelling
    timeslice: int = 1000,
    token: str | None = None,
    max_sessions: int = 16,
    ice_hosts: list[str] | None = None,
    connect_timeout: float = 30.0,
) -> web.Application:
    """The server's application: ``/whip`` (WHIP), ``/`` (the page), ``/recordings``.

    Raises NotSupportedError for a ``mimeType`` that cannot be recorded.
    """
    folder = Path(out_dir).resolve()
    endpoint = WhipEndpoint(
        record_sessions(folder, mimeType=mimeType, timeslice=timeslice),
        token=token,
        max_sessions=max_sessions,
        ice_hosts=ice_hosts,
        connect_timeout=connect_timeout,
    )
    app = web.Application(client_max_size=endpoint.max_body)
    app[ENDPOINT] = endpoint
    endpoint.add_routes(app)
    page = PAGE.read_text(encoding="utf-8")

    async def index(request: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html")

    async def recordings(request: web.Request) -> web.Response:
        return web.json_response(await asyncio.to_thread(_list, folder), headers=CORS_HEADERS)

    async def recording(request: web.Request) -> web.StreamResponse:
        path = _safe_path(folder, request.match_info["name"])
        if path is None or not await asyncio.to_thread(path.is_file):
            raise web.HTTPNotFound(text="no such recording\n")
        return web.FileResponse(path, headers=CORS_HEADERS)

    async def no_icon(request: web.Request) -> web.Response:
        return web.Response(status=204)

    app.router.add_get("/", index)
    app.router.add_get("/favicon.ico", no_icon)
    app.router.add_get("/recordings", recordings)
    app.router.add_get("/recordings/{name}", recording)
    return app


def _safe_path(folder: Path, name: str) -> Path | None:
    """``folder/name`` if ``name`` is a plain finished recording's name, else None: no
    separators, no dot files, nothing that resolves outside ``folder``."""
    if not name or name.startswith(".") or "/" in name or "\\" in name or "\0" in name or name.endswith(PARTIAL):
        return None
    if os.path.splitext(name)[1] not in EXTENSIONS.values():
        return None
    path = (folder / name).resolve()
    return path if path.parent == folder else None


def _list(folder: Path) -> list[dict[str, Any]]:
    items = []
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if _safe_path(folder, path.name) is not None and path.is_file():
            stat = path.stat()
            items.append(
                {"name": path.name, "size": stat.st_size, "mtime": stat.st_mtime, "url": f"/recordings/{path.name}"}
            )
    return items
