"""Webhook deliveries and timed requests against a fault test's cluster."""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

from conveyor.http.webhooks.github import sign_github
from tests.conftest import FIXTURES
from tests.e2e.stack import request
from tests.faults.cluster import Cluster


def github_delivery(secret: str, number: int) -> tuple[bytes, dict[str, str]]:
    """A signed `pull_request.opened` delivery for pull request `number`."""
    payload = orjson.loads((FIXTURES / "github" / "pull_request.opened.json").read_bytes())
    headers = orjson.loads(
        (FIXTURES / "github" / "pull_request.opened.headers.json").read_bytes())
    payload["number"] = payload["pull_request"]["number"] = number
    body = orjson.dumps(payload)
    headers = {k: v for k, v in headers.items() if not k.startswith("X-Hub-Signature")}
    headers["X-GitHub-Delivery"] = str(uuid.uuid4())
    return body, {**headers, **sign_github(body, secret)}


def timed(url: str, data: bytes | None = None, headers: dict[str, str] | None = None,
          ) -> tuple[int, Any, float]:
    """A request's status, body and how long the answer took."""
    began = time.monotonic()
    status, body = request(url, data, headers)
    return status, body, time.monotonic() - began


def deliver(cluster: Cluster, number: int) -> tuple[int, Any, float]:
    assert cluster.settings.github_secret
    body, headers = github_delivery(cluster.settings.github_secret, number)
    return timed(f"{cluster.webhooks}/webhooks/github", body, headers)


READ = {"Authorization": "Bearer read-token"}
