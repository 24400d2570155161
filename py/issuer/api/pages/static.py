"""``/static/{name}``: the pages' stylesheet and script (the CSP allows only ``'self'``)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from issuer.api.pages.render import static_bytes

router = APIRouter()

STATIC_FILES = {
    "issuer.css": "text/css; charset=utf-8",
    "copy.js": "text/javascript; charset=utf-8",
}


@router.get("/static/{name}")
def static_file(name: str) -> Response:
    media_type = STATIC_FILES.get(name)
    if media_type is None:
        return Response("not found", status_code=404, media_type="text/plain")
    return Response(
        static_bytes(name),
        media_type=media_type,
        headers={"Cache-Control": "public, max-age=3600"},
    )
