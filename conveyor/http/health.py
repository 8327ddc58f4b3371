"""`/health/live` and `/health/ready`: whether to send this process traffic."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import falcon

if TYPE_CHECKING:
    import pika

from conveyor.http.jobs_api import Lags
from conveyor.http.reads import ReadModels
from conveyor.settings import Settings

# Readiness fails when a projection is further behind than this many events; the
# default of CONVEYOR_READY_MAX_LAG, which `create_app` passes in.
MAX_LAG_EVENTS = Settings.ready_max_lag


def quick_amqp(url: str, timeout: float) -> list[pika.URLParameters]:
    """Connection parameters that give up after `timeout`, for probes that must not hang."""
    from conveyor.amqp import pika_parameters

    return pika_parameters(url, timeout)


def amqp_check(url: str, timeout: float = 2.0) -> Callable[[], None]:
    """A short AMQP connection, opened and closed, remembered for a few seconds."""
    last: dict[str, Any] = {"at": -1e9, "error": None}

    def check() -> None:
        if time.monotonic() - last["at"] > 5.0:
            try:
                import pika

                pika.BlockingConnection(quick_amqp(url, timeout)).close()
                last["error"] = None
            except Exception as error:
                last["error"] = f"{type(error).__name__}: {error}"
            last["at"] = time.monotonic()
        if last["error"]:
            raise ConnectionError(last["error"])

    return check


class LiveResource:
    """Liveness: the process answers."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"status": "ok"}


class ReadyResource:
    """Readiness: PostgreSQL and RabbitMQ answer, and the read models are nearly current."""

    def __init__(self, reads: ReadModels, amqp: Callable[[], None], lags: Lags,
                 max_lag: int = MAX_LAG_EVENTS,
                 database: Callable[[], None] | None = None,
                 standby: Callable[[], float] | None = None) -> None:
        self.reads = reads
        # A quick probe of PostgreSQL, so readiness answers at once during an outage.
        self.database = database or reads.ping
        self.amqp = amqp
        self.lags = lags
        self.max_lag = max_lag
        # The read standby's lag in seconds (conveyor/http/standby.py), when the API has one.
        self.standby = standby

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        checks: dict[str, Any] = {}
        down: list[str] = []
        try:
            self.database()
            checks["postgresql"] = "ok"
        except Exception as error:
            checks["postgresql"] = str(error) or type(error).__name__
            down.append("postgresql")
        try:
            self.amqp()
            checks["rabbitmq"] = "ok"
        except Exception as error:
            checks["rabbitmq"] = str(error)
            down.append("rabbitmq")
        if self.standby is not None:
            try:
                checks["standby_lag_seconds"] = round(self.standby(), 3)
            except Exception as error:
                checks["standby_lag_seconds"] = None
                checks["standby"] = str(error) or type(error).__name__
                down.append("standby")
        if "postgresql" not in down:
            try:
                lags = self.lags()
                behind = [lag for lag in lags if lag["events_behind"] > self.max_lag]
                checks["projections"] = "ok" if not behind else lags
                if behind:
                    down.append("projections")
            except Exception as error:
                checks["projections"] = str(error)
                down.append("projections")
        if down:
            resp.status = falcon.HTTP_503
        resp.media = {"status": "unavailable" if down else "ok", "down": down, **checks}
