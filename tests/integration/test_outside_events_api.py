"""`POST /workflow-queue/events`: the HTTP door for outside events, on the real database."""

from __future__ import annotations

import falcon.testing
import orjson
import psycopg
import pytest

from conveyor.application import Jobs
from conveyor.http.api import create_app
from conveyor.settings import Settings

WRITE = {"Authorization": "Bearer write-token", "Content-Type": "application/json"}


@pytest.fixture
def client(settings: Settings, jobs: Jobs) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_app(settings, lambda: jobs, amqp_check=lambda: None))


def stored(settings: Settings) -> int:
    assert settings.database_url
    with psycopg.connect(settings.database_url) as conn:
        row = conn.execute("SELECT count(*) FROM jobs_events").fetchone()
        return int(row[0]) if row else 0


def post(client: falcon.testing.TestClient, body: bytes,
         headers: dict[str, str] = WRITE) -> falcon.testing.Result:
    return client.simulate_post("/workflow-queue/events", body=body, headers=headers)


EVENT = orjson.dumps({"id": "e-1", "type": "ast.task.completed", "key": "t-91",
                      "payload": {"functions": 12}})


def test_a_new_event_is_accepted_and_a_repeat_of_its_id_changes_nothing(
    client: falcon.testing.TestClient, settings: Settings
) -> None:
    first = post(client, EVENT)
    second = post(client, EVENT)

    assert (first.status_code, first.json) == (202, {"status": "accepted", "id": "e-1"})
    assert (second.status_code, second.json) == (200, {"status": "duplicate", "id": "e-1"})
    assert stored(settings) == 1


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{not json",
        b"[1, 2]",
        b'{"type": "ast.task.completed", "key": "k"}',
        b'{"id": "e", "key": "k"}',
        b'{"id": "e", "type": "has spaces", "key": "k"}',
        b'{"id": "e", "type": "t", "key": ""}',
        b'{"id": 7, "type": "t", "key": "k"}',
        b'\xff\xfe',
    ],
)
def test_a_malformed_event_is_refused_with_400_and_stores_nothing(
    client: falcon.testing.TestClient, settings: Settings, body: bytes
) -> None:
    result = post(client, body)

    assert result.status_code == 400, result.text
    assert result.json["title"]
    assert stored(settings) == 0


def test_an_oversized_event_a_wrong_content_type_or_a_read_token_store_nothing(
    client: falcon.testing.TestClient, settings: Settings
) -> None:
    huge = orjson.dumps({"id": "e", "type": "t", "key": "k", "payload": "x" * (1 << 20)})
    assert post(client, huge).status_code == 413
    assert post(client, EVENT, {**WRITE, "Content-Type": "text/plain"}).status_code == 415
    assert post(client, EVENT, {**WRITE, "Authorization": "Bearer read-token"}).status_code == 403
    assert post(client, EVENT, {"Content-Type": "application/json"}).status_code == 401
    assert stored(settings) == 0
