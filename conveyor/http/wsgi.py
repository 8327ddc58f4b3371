"""Factories gunicorn calls in each worker: `conveyor.http.wsgi:webhooks()` and `:api()`."""

from __future__ import annotations

import functools

import falcon

from conveyor.application import Jobs
from conveyor.http import api as api_app
from conveyor.http.webhooks import app as webhooks_app
from conveyor.settings import Settings


def webhooks(settings: Settings | None = None) -> falcon.App[falcon.Request, falcon.Response]:
    settings = settings or Settings.from_env()
    env = settings.eventsourcing_env()
    return webhooks_app.create_app(settings, functools.cache(lambda: Jobs(env=env)))


def api(settings: Settings | None = None) -> falcon.App[falcon.Request, falcon.Response]:
    return api_app.create_app(settings or Settings.from_env())
