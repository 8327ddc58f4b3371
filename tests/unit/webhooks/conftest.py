"""Webhook fixtures of the unit tier: deliveries built in `tests.deliveries`, no files read."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from falcon import testing

from conveyor.http.webhooks.app import create_app
from conveyor.settings import Settings
from tests.deliveries import BUILDERS, SECRETS, Delivery, build


def no_jobs() -> Any:
    """A `jobs` provider for paths that must never store; Falcon turns the raise into a 500."""
    raise AssertionError("the delivery reached the event store")


@pytest.fixture(scope="session")
def delivery() -> Callable[[str, str], Delivery]:
    """A fresh delivery of the kind named by (platform, recorded fixture name)."""
    return build


@pytest.fixture(scope="session")
def client() -> testing.TestClient:
    """The app with every platform enabled and a `jobs` provider that must never be called."""
    return testing.TestClient(create_app(SECRETS, no_jobs))


@pytest.fixture
def client_for() -> Iterator[Callable[[Settings], testing.TestClient]]:
    def build_client(settings: Settings) -> testing.TestClient:
        return testing.TestClient(create_app(settings, no_jobs))

    yield build_client


@pytest.fixture(scope="session")
def secrets() -> Settings:
    """Settings holding the test secrets of all four platforms."""
    return SECRETS


@pytest.fixture(scope="session")
def all_deliveries() -> list[tuple[str, Delivery]]:
    """One built delivery of every kind, with the URL segment of its platform."""
    return [(platform, build(platform, name)) for platform, name in BUILDERS]
