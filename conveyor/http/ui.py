"""The dashboard: a static single-page app shipped inside the package, served by the API app.

It reads the same `/workflow-queue/...` endpoints that scripts use, with the token a person
types in, so serving its files needs no token and grants nothing.
"""

from __future__ import annotations

from pathlib import Path

import falcon

ASSETS = Path(__file__).resolve().parent / "dashboard"
ASSETS_PREFIX = "/dashboard"
# The page loads only its own files and talks only to its own origin; anything that slipped
# past escaping could neither run inline nor send data elsewhere.
_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
           " connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none';"
           " frame-ancestors 'none'")


class DashboardResource:
    """`GET /`: the dashboard's page; its scripts and styles come from `/dashboard/...`."""

    def __init__(self, assets: Path = ASSETS) -> None:
        self.page = (assets / "index.html").read_bytes()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_HTML
        resp.cache_control = ["no-cache"]
        resp.set_header("Content-Security-Policy", _POLICY)
        resp.set_header("X-Content-Type-Options", "nosniff")
        resp.set_header("Referrer-Policy", "no-referrer")
        resp.data = self.page


def add_dashboard(app: falcon.App[falcon.Request, falcon.Response]) -> None:
    """Serve the page at `/` and its assets (scripts, styles, vendored uPlot) below it."""
    app.add_route("/", DashboardResource())
    app.add_static_route(ASSETS_PREFIX, str(ASSETS))
