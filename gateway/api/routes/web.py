"""The built-in web page: ``/`` and ``/static/...``, served from ``web/`` without an API key.

The page is static and public; it sends the key (typed into the page) on its own ``/v1`` calls. ``web/`` is found
next to the ``gateway`` package (a source checkout or an editable install), else where ``pip install .`` puts it
as data files (``<prefix>/share/vchat/web``, see pyproject.toml).
"""

from __future__ import annotations

import sys
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from gateway.errors import NotFound, excerpt

CANDIDATES = (
    Path(__file__).resolve().parents[3] / "web",  # the repository's web/ (checkout, editable install)
    Path(sys.prefix) / "share" / "vchat" / "web",  # installed by `pip install .` (data files)
)
# Explicit types: module scripts must be served as JavaScript whatever the host's mime.types says.
MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
               ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png"}
# The page is tiny and changes with the gateway: browsers revalidate it every time.
HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}

router = APIRouter(tags=["web"], include_in_schema=False)


def web_dir() -> Path | None:
    """The first candidate holding the page, or None when the gateway was installed without it."""
    return next((path for path in CANDIDATES if (path / "index.html").is_file()), None)


def _serve(root: Path | None, relative: str) -> FileResponse:
    if root is not None:
        base = root.resolve()
        path = (base / relative).resolve()
        if path.is_relative_to(base) and path.suffix in MEDIA_TYPES and path.is_file():
            return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=HEADERS)
    raise NotFound(f"No page asset {excerpt(relative)}.", code="not_found")


@router.get("/", response_model=None)
def index() -> FileResponse:
    """The page itself."""
    return _serve(web_dir(), "index.html")


@router.get("/static/{asset:path}", response_model=None)
def static(asset: str) -> FileResponse:
    """The page's scripts, styles and icons (only files under ``web/static``)."""
    root = web_dir()
    return _serve(root / "static" if root is not None else None, asset)
