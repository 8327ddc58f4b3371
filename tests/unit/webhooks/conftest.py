"""Shared webhook fixtures: the recorded deliveries, read in place as raw bytes."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from falcon import testing

from conveyor.http.webhooks.app import create_app
from conveyor.settings import Settings

# tests/unit/webhooks -> repository root -> ../shared/fixtures/webhooks
FIXTURES = Path(__file__).resolve().parents[3].parent / "shared" / "fixtures" / "webhooks"

SECRETS = Settings(
    github_secret="It's a Secret to Everybody",
    gitlab_token="test-webhook-token",
    bitbucket_secret="bitbucket-webhook-test-secret",
    azure_username="test-user",
    azure_password="test-password",
)

# URL segment -> fixture folder.
FOLDERS = {"github": "github", "gitlab": "gitlab", "bitbucket": "bitbucket", "azure-repos": "azure"}


@dataclass(frozen=True)
class Delivery:
    """One recorded delivery: its headers as sent and its body byte for byte."""

    headers: dict[str, str]
    body: bytes

    def with_headers(self, **changes: str | None) -> Delivery:
        """A copy with headers replaced (by name, any case) or removed (None)."""
        names = {name.replace("_", "-").lower(): value for name, value in changes.items()}
        kept = {k: v for k, v in self.headers.items() if k.lower() not in names}
        kept.update({k: v for k, v in names.items() if v is not None})
        return Delivery(kept, self.body)

    def payload(self) -> Any:
        return json.loads(self.body)


def load_delivery(platform: str, name: str) -> Delivery:
    """Read `<name>.json` and `<name>.headers.json` of a platform's fixtures, unchanged."""
    folder = FIXTURES / FOLDERS[platform]
    if not folder.is_dir():
        raise FileNotFoundError(f"webhook fixtures not found at {folder}")
    body = (folder / f"{name}.json").read_bytes()
    headers = json.loads((folder / f"{name}.headers.json").read_text(encoding="utf-8"))
    return Delivery(headers, body)


def no_jobs() -> Any:
    """A `jobs` provider for paths that must never store; Falcon turns the raise into a 500."""
    raise AssertionError("the delivery reached the event store")


@pytest.fixture(scope="session")
def delivery() -> Callable[[str, str], Delivery]:
    return load_delivery


@pytest.fixture(scope="session")
def client() -> testing.TestClient:
    """The app with every platform enabled and a `jobs` provider that must never be called."""
    return testing.TestClient(create_app(SECRETS, no_jobs))


@pytest.fixture
def client_for() -> Iterator[Callable[[Settings], testing.TestClient]]:
    def build(settings: Settings) -> testing.TestClient:
        return testing.TestClient(create_app(settings, no_jobs))

    yield build


@pytest.fixture(scope="session")
def secrets() -> Settings:
    """Settings holding the fixtures' published test secrets for all four platforms."""
    return SECRETS


@pytest.fixture(scope="session")
def all_deliveries() -> list[tuple[str, Delivery]]:
    """Every recorded delivery with the URL segment of its platform."""
    found = []
    for platform, folder in FOLDERS.items():
        for path in sorted((FIXTURES / folder).glob("*.json")):
            if not path.name.endswith(".headers.json"):
                found.append((platform, load_delivery(platform, path.name.removesuffix(".json"))))
    assert len(found) == 22, "the shared webhook fixtures are incomplete"
    return found
