"""The web page at ``/``: a wallet sign-in that makes a token, and the user's pins.

The page is static files shipped in the package (``w3gate/web``, built by ``web/build.sh``); it talks to
the Pinning Service API and ``/auth`` with the token from the browser, so nothing of it runs or is stored
here. Files are read once, at start, from the package (or the one-file binary's unpacked data).
"""

from __future__ import annotations

import re
from importlib import resources

from quart import Response
from quart_trio import QuartTrio

from w3gate.errors import ApiError

ASSETS = "/web"
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,80}")
# script-src: only the page's own files ('wasm-unsafe-eval': the polkadot chunk's SS58 hashing compiles
# WebAssembly); connect-src: the API on this origin; no frames (the page asks for signatures)
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidated: an upgrade's new page is seen at once
}


def load_assets() -> dict[str, tuple[bytes, str]]:
    """Every shipped file of ``w3gate/web`` by name, with its content type."""
    assets = {}
    for entry in resources.files("w3gate").joinpath("web").iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in TYPES and NAME.fullmatch(entry.name):
            assets[entry.name] = (entry.read_bytes(), TYPES[suffix])
    return assets


def install_webpage(app: QuartTrio) -> None:
    """Serve ``/`` (the page) and ``/web/<name>`` (its scripts and style)."""
    assets = load_assets()

    def _file(name: str) -> Response:
        found = assets.get(name)
        if found is None:
            raise ApiError(404, "NOT_FOUND", f"no such file: {ASSETS}/{name[:100]}")
        body, content_type = found
        response = Response(body, status=200, content_type=content_type)
        response.headers.update(HEADERS)
        return response

    @app.get("/")
    async def page() -> Response:
        return _file("index.html")

    @app.get(f"{ASSETS}/<name>")
    async def asset(name: str) -> Response:
        return _file(name)
