"""Serve the built web app: ``/`` (never cached) and ``/assets/*`` (hashed, cached a year).

The page may talk to its own origin only: the Content-Security-Policy forbids inline and
foreign scripts, foreign connections, fonts, images and frames. Style *attributes* are
allowed because KaTeX sizes its glyphs with them; model output never carries raw HTML
(the Markdown renderer escapes it), so no attacker-written attribute reaches the page.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, Response

from llm_api.auth.guard import public_access

STATIC_DIR = Path(__file__).parent / "static"

CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "style-src-attr 'unsafe-inline'",
        "font-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "manifest-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
# nosniff, no-referrer and DENY framing come from auth.setup.SecurityHeaders, which keeps
# this policy instead of its API one.
SECURITY_HEADERS = {"Content-Security-Policy": CSP}
_IMMUTABLE = "public, max-age=31536000, immutable"

router = APIRouter(include_in_schema=False, dependencies=[Depends(public_access)])

_MISSING = (
    "<!doctype html><title>Web app not built</title>"
    "<p>The web app is not built. Run <code>./start-api.sh setup</code> (needs Node 20).</p>"
)


@router.get("/")
async def index() -> Response:
    page = STATIC_DIR / "index.html"
    if not page.is_file():
        return Response(_MISSING, 503, media_type="text/html", headers=SECURITY_HEADERS)
    headers = {**SECURITY_HEADERS, "Cache-Control": "no-cache"}
    return FileResponse(page, media_type="text/html; charset=utf-8", headers=headers)


@router.get("/assets/{name}")
async def asset(name: str, request: Request) -> Response:
    # One flat folder of hashed names: no sub-paths, so no way out of it.
    path = STATIC_DIR / "assets" / name
    if "/" in name or name.startswith(".") or name.endswith(".gz") or not path.is_file():
        return Response(status_code=404, headers=SECURITY_HEADERS)
    headers = {**SECURITY_HEADERS, "Cache-Control": _IMMUTABLE, "Vary": "Accept-Encoding"}
    packed = path.with_name(name + ".gz")  # written by web/scripts/compress.mjs at build
    if "gzip" in request.headers.get("accept-encoding", "") and packed.is_file():
        media_type = _MEDIA_TYPES.get(path.suffix, "application/octet-stream")
        headers["Content-Encoding"] = "gzip"
        return FileResponse(packed, media_type=media_type, headers=headers)
    return FileResponse(path, headers=headers)


_MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
}
