"""Who may use the server: the bearer token, signed recording URLs, and CORS origins.

One check for every route: :func:`access_middleware` refuses any request to a route of
the application without the token (401 with ``WWW-Authenticate: Bearer``), unless the
route's handler is marked :func:`public` (the page, the favicon, CORS preflights) or takes
a signed URL (:func:`signed_urls`) and the request carries a valid one. A route added
later is private unless marked: forgetting the mark fails closed.

``WhipEndpoint`` uses :class:`BearerToken` itself as well, so it is protected in a user's
own application without the middleware.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

H = TypeVar("H", bound=Callable[..., Any])

#: How long a signed recording URL is valid, in seconds.
SIGNED_URL_TTL = 6 * 3600
#: A token is visible ASCII (no spaces): what an ``Authorization`` header carries as is.
_TOKEN = re.compile(r"[\x21-\x7e]+")
_PUBLIC = "__asyncrec_public__"
_SIGNED = "__asyncrec_signed_urls__"


def public(handler: H) -> H:
    """Mark a route handler as public: :func:`access_middleware` lets it through without
    the token (the page, health checks, CORS preflights)."""
    setattr(handler, _PUBLIC, True)
    return handler


def signed_urls(handler: H) -> H:
    """Mark a ``GET`` route handler as reachable with a signed URL
    (:meth:`BearerToken.sign`) instead of the ``Authorization`` header: what a ``<video
    src>`` or a download link, which cannot send headers, needs."""
    setattr(handler, _SIGNED, True)
    return handler


def is_public(handler: object) -> bool:
    return bool(getattr(handler, _PUBLIC, False))


def check_token(token: str | None) -> str | None:
    """``token`` if usable as a bearer token (visible ASCII, no spaces), else ValueError."""
    if token is not None and not _TOKEN.fullmatch(token):
        raise ValueError("a token is one or more visible ASCII characters, without spaces")
    return token


class BearerToken:
    """The token a server requires (None: none), compared in constant time over bytes."""

    def __init__(self, token: str | None) -> None:
        self.token = check_token(token)
        self._expected = token.encode("ascii") if token is not None else b""
        # Signed URLs use a key of their own, derived from the token.
        self._key = hmac.new(self._expected, b"asyncrec signed URL v1", hashlib.sha256).digest()

    @property
    def required(self) -> bool:
        return self.token is not None

    def authorized(self, request: web.Request) -> bool:
        """Whether ``request`` carries ``Authorization: Bearer TOKEN`` (always, without a
        token). Any header, whatever its bytes, is either right or wrong: never an error."""
        if self.token is None:
            return True
        value = request.headers.get("Authorization")
        if value is None:
            return False
        try:
            # aiohttp keeps bytes that are not UTF-8 as surrogate escapes: get them back.
            raw = value.encode("utf-8", "surrogateescape")
        except UnicodeError:
            return False
        scheme, _, given = raw.strip(b" \t").partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(b" \t"), self._expected)

    def unauthorized(self, **headers: str) -> web.Response:
        """401 with ``WWW-Authenticate: Bearer``."""
        return web.Response(
            status=401,
            text="missing or wrong bearer token\n",
            headers={"WWW-Authenticate": 'Bearer realm="asyncrec"', **headers},
        )

    def sign(self, path: str, *, ttl: float = SIGNED_URL_TTL, now: float | None = None) -> str:
        """The URL of ``path`` (not percent-encoded) with a query that lets ``GET`` reach
        it without the header for ``ttl`` seconds (the plain URL without a token)."""
        url = quote(path)
        if self.token is None:
            return url
        expires = int((time.time() if now is None else now) + ttl)
        return f"{url}?expires={expires}&signature={self._signature(path, expires)}"

    def signed(self, request: web.Request) -> bool:
        """Whether ``request`` (GET or HEAD) carries a valid, unexpired signature of its path."""
        if self.token is None or request.method not in ("GET", "HEAD"):
            return False
        expires = request.query.get("expires", "")
        given = request.query.get("signature", "")
        if not re.fullmatch(r"[0-9]{1,12}", expires) or not re.fullmatch(r"[0-9a-f]{64}", given):
            return False
        if int(expires) < time.time():
            return False
        expected = self._signature(request.path, int(expires))
        return hmac.compare_digest(given.encode("ascii"), expected.encode("ascii"))

    def _signature(self, path: str, expires: int) -> str:
        message = f"{path}\n{expires}".encode("utf-8", "surrogatepass")
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def middleware(self) -> Middleware:
        return access_middleware(self)


def access_middleware(guard: BearerToken) -> Middleware:
    """An aiohttp middleware: every matched route needs ``guard``'s token unless its
    handler is :func:`public`, or takes :func:`signed_urls` and the URL is signed.

    Requests that match no route go on to their 404 or 405: the routes are no secret.
    """

    @web.middleware
    async def check_access(request: web.Request, handler: Handler) -> web.StreamResponse:
        match = request.match_info
        if not guard.required or match.http_exception is not None:
            return await handler(request)
        route_handler = match.route.handler
        if is_public(route_handler) or guard.authorized(request):
            return await handler(request)
        if getattr(route_handler, _SIGNED, False) and guard.signed(request):
            return await handler(request)
        return guard.unauthorized()

    return check_access


# -- CORS ------------------------------------------------------------------------------------------


def normalize_origin(origin: str) -> str:
    """``origin`` as browsers send it in ``Origin`` (``scheme://host[:port]``, lowercase,
    default port left out), or ``"*"``; ValueError for anything else."""
    text = origin.strip()
    if text == "*":
        return text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ValueError(f"{origin!r} is not an origin (scheme://host[:port])") from None
    if (
        parts.scheme.lower() not in ("http", "https")
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username is not None
        or parts.password is not None
    ):
        raise ValueError(f"{origin!r} is not an origin: use scheme://host[:port], e.g. https://example.com")
    scheme = parts.scheme.lower()
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == {"http": 80, "https": 443}[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


class Origins:
    """The origins whose pages may use a route from a browser (CORS); none by default."""

    def __init__(self, origins: Iterable[str] = ()) -> None:
        allowed = {normalize_origin(origin) for origin in origins}
        self.any = "*" in allowed
        self.allowed = frozenset(allowed - {"*"})

    def __bool__(self) -> bool:
        return self.any or bool(self.allowed)

    def allow(self, request: web.Request) -> str | None:
        """The ``Access-Control-Allow-Origin`` value for ``request``, or None."""
        if self.any:
            return "*"
        origin = request.headers.get("Origin")
        return origin if origin is not None and origin in self.allowed else None

    def headers(self, request: web.Request, **extra: str) -> dict[str, str]:
        """CORS headers for a response to ``request`` (with ``extra`` when allowed)."""
        headers: dict[str, str] = {}
        if self.allowed and not self.any:
            headers["Vary"] = "Origin"
        allowed = self.allow(request)
        if allowed is not None:
            headers["Access-Control-Allow-Origin"] = allowed
            headers.update(extra)
        return headers


__all__ = [
    "SIGNED_URL_TTL",
    "BearerToken",
    "Origins",
    "access_middleware",
    "check_token",
    "is_public",
    "normalize_origin",
    "public",
    "signed_urls",
]
