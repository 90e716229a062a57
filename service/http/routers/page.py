"""The web page at ``/`` (its assets are mounted at ``/static`` by create_app)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, JSONResponse, Response

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
router = APIRouter()


@router.get("/", include_in_schema=False)
async def index() -> Response:
    page = STATIC_DIR / "index.html"
    if not page.is_file():
        return JSONResponse({"error": "no_page", "detail": "service/http/static/index.html is missing"}, status_code=404)
    return FileResponse(page, media_type="text/html")
