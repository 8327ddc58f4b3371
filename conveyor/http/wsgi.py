"""Factories gunicorn calls in each worker: `conveyor.http.wsgi:webhooks()` and `:api()`."""

from __future__ import annotations

import functools

import falcon

from conveyor.bootstrap import build_jobs
from conveyor.http import api as api_app
from conveyor.http.webhooks import app as webhooks_app
from conveyor.settings import Settings


def webhooks(settings: Settings | None = None) -> falcon.App[falcon.Request, falcon.Response]:
    settings = settings or Settings.from_env()
    jobs = functools.cache(functools.partial(build_jobs, settings))
    return webhooks_app.create_app(settings, jobs)


def api(settings: Settings | None = None) -> falcon.App[falcon.Request, falcon.Response]:
    return api_app.create_app(settings or Settings.from_env())
