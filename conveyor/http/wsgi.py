"""Factories gunicorn calls in each worker: `conveyor.http.wsgi:webhooks()` and `:api()`."""

from __future__ import annotations

import falcon

from conveyor.bootstrap import build_api_app, build_webhooks_app
from conveyor.settings import Settings


def webhooks(settings: Settings | None = None) -> falcon.App[falcon.Request, falcon.Response]:
    return build_webhooks_app(settings or Settings.from_env())


def api(settings: Settings | None = None) -> falcon.App[falcon.Request, falcon.Response]:
    return build_api_app(settings or Settings.from_env())
