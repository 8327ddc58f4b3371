"""The Falcon app both HTTP processes start from: JSON by orjson in and out, errors mapped."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

import falcon
import falcon.media
import orjson

from conveyor.http.errors import register_error_handlers

# orjson, several times faster than the json module; naive datetimes are taken as UTC.
JSON = falcon.media.JSONHandler(
    dumps=functools.partial(orjson.dumps, option=orjson.OPT_NAIVE_UTC), loads=orjson.loads
)


def create_json_app(middleware: Iterable[Any]) -> falcon.App[falcon.Request, falcon.Response]:
    """A Falcon app whose `req.get_media()` and `resp.media` use orjson, errors mapped once."""
    app = falcon.App(media_type=falcon.MEDIA_JSON, middleware=list(middleware))
    app.req_options.media_handlers[falcon.MEDIA_JSON] = JSON
    app.resp_options.media_handlers[falcon.MEDIA_JSON] = JSON
    register_error_handlers(app)
    return app
