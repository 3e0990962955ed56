"""The browser playground: `GET /` serves a page that talks to the public API only
(`POST /execute`, `GET /health`), and `/static/...` its assets, which ship inside the package
(vendored, no build step and no CDN).

The page runs no inline script, so a strict Content-Security-Policy costs nothing: whatever a
script prints is shown as text, and even a slip that rendered it as HTML could not run code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar import MediaType, Response, get
from litestar.datastructures import CacheControlHeader
from litestar.static_files import create_static_files_router
from litestar.types import ControllerRouterHandler

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_PATH = "/static"

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}
# Revalidated on every load (cheap: ETag / Last-Modified), so an upgraded service is never
# paired with a stale script from the browser's cache.
REVALIDATE = CacheControlHeader(no_cache=True)


def _secure(response: Response[Any]) -> Response[Any]:
    response.headers.update(SECURITY_HEADERS)
    return response


def playground_routes() -> list[ControllerRouterHandler]:
    page = (STATIC_DIR / "index.html").read_bytes()

    @get(
        "/",
        sync_to_thread=False,
        media_type=MediaType.HTML,
        include_in_schema=False,
        cache_control=REVALIDATE,
    )
    def playground_page() -> Response[bytes]:
        return Response(content=page, media_type=MediaType.HTML, headers=SECURITY_HEADERS)

    static = create_static_files_router(
        STATIC_PATH,
        [STATIC_DIR],
        name="playground-static",
        include_in_schema=False,
        cache_control=REVALIDATE,
        after_request=_secure,
    )
    return [playground_page, static]
