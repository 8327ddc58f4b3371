"""Webhook deliveries and timed requests against a fault test's cluster."""

from __future__ import annotations

import time
from typing import Any

from tests.deliveries import github_pull_request
from tests.e2e.stack import request
from tests.faults.cluster import Cluster


def timed(url: str, data: bytes | None = None, headers: dict[str, str] | None = None,
          ) -> tuple[int, Any, float]:
    """A request's status, body and how long the answer took."""
    began = time.monotonic()
    status, body = request(url, data, headers)
    return status, body, time.monotonic() - began


def deliver(cluster: Cluster, number: int) -> tuple[int, Any, float]:
    sent = github_pull_request("opened", number=number)
    return timed(f"{cluster.webhooks}{sent.path}", sent.body, sent.headers)


READ = {"Authorization": "Bearer read-token"}
