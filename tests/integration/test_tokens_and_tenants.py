"""Tokens and tenant settings in PostgreSQL, through their stores and the API."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any

import falcon.testing
import psycopg
import pytest
from psycopg.rows import dict_row

from conveyor.access import Grant, Scope, TokenNameTakenError, TokenNotFoundError
from conveyor.application import Jobs
from conveyor.http.api import create_app
from conveyor.settings import Settings
from conveyor.store.tenants import TenantStore
from conveyor.store.tokens import TokenStore
from conveyor.tenancy import Rate, TenantSettings
from tests.integration.projections_support import project, trigger

ADMIN = {"Authorization": "Bearer admin-token"}
WRITE = {"Authorization": "Bearer write-token"}
DEFAULTS = TenantSettings(max_running=20, priority=10, rates={"github_api": Rate(5000, "h")})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def connect(database: str) -> Any:
    def connect() -> AbstractContextManager[psycopg.Connection[Any]]:
        return psycopg.connect(database, autocommit=True, row_factory=dict_row)  # type: ignore[arg-type]

    return connect


@pytest.fixture
def tokens(connect: Any) -> TokenStore:
    return TokenStore(connect)


@pytest.fixture
def api_settings(settings: Settings) -> Settings:
    import dataclasses

    return dataclasses.replace(settings, tenant_defaults=DEFAULTS)


def app_client(settings: Settings, jobs: Jobs) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_app(settings, lambda: jobs, amqp_check=lambda: None))


@pytest.fixture
def client(api_settings: Settings, jobs: Jobs) -> Iterator[falcon.testing.TestClient]:
    yield app_client(api_settings, jobs)


def test_a_created_token_is_found_by_its_value_and_only_its_hash_is_stored(
    tokens: TokenStore, connect: Any
) -> None:
    token = tokens.create(Grant("ci", Scope.WRITE, frozenset({"acme"})))

    assert tokens.find(token) == Grant("ci", Scope.WRITE, frozenset({"acme"}))
    assert tokens.find(token + "x") is None
    with connect() as conn:
        stored = conn.execute("SELECT * FROM api_tokens").fetchall()
    assert len(stored) == 1 and token.encode() not in bytes(stored[0]["token_hash"])
    assert token not in repr(stored)
    assert len(token) > 40 and token.startswith("cvy_")


def test_a_revoked_token_is_not_found_and_its_name_may_be_used_again(
    tokens: TokenStore,
) -> None:
    old = tokens.create(Grant("ci", Scope.READ, None))
    with pytest.raises(TokenNameTakenError):
        tokens.create(Grant("ci", Scope.ADMIN, None))

    tokens.revoke("ci")
    new = tokens.create(Grant("ci", Scope.READ, None))

    assert tokens.find(old) is None and tokens.find(new) is not None
    listed = tokens.list()
    assert [(t.grant.name, t.revoked_at is None) for t in listed] == [("ci", True), ("ci", False)]
    with pytest.raises(TokenNotFoundError):
        tokens.revoke("nobody")


def test_tenant_settings_take_the_defaults_for_what_an_organisation_did_not_set(
    connect: Any,
) -> None:
    store = TenantStore(connect, DEFAULTS)
    assert store.effective("acme") == DEFAULTS

    store.update("acme", TenantSettings(max_running=0, rates={"llm": Rate(9, "m")}))
    store.update("acme", TenantSettings(priority=50), removed_rates=["nothing"])

    assert store.effective("acme") == TenantSettings(
        max_running=0, priority=50, rates={"github_api": Rate(5000, "h"), "llm": Rate(9, "m")})
    assert store.effective("globex") == DEFAULTS
    assert [t.organization for t in store.all()] == ["acme"]
    store.update("acme", TenantSettings(), removed_rates=["llm"])
    assert store.get("acme").configured == TenantSettings(max_running=0, priority=50)
    assert store.reset("acme") and store.effective("acme") == DEFAULTS


def test_a_database_token_reads_and_commands_within_its_scope_only(
    tokens: TokenStore, jobs: Jobs, client: falcon.testing.TestClient, api_settings: Settings
) -> None:
    reader = tokens.create(Grant("dash", Scope.READ, None))
    writer = tokens.create(Grant("bot", Scope.WRITE, frozenset({"acme"})))
    job_id = jobs.enqueue("code_review", "c", trigger(1), organization="acme").job_id
    project(api_settings)  # a token limited to organisations sees projected jobs only
    cancel = f"/workflow-queue/jobs/{job_id}/cancel"

    read = client.simulate_get(f"/workflow-queue/jobs/{job_id}", headers=bearer(reader))
    refused = client.simulate_post(cancel, headers=bearer(reader))
    not_admin = client.simulate_get("/workflow-queue/tenants", headers=bearer(writer))
    not_admin_put = client.simulate_put("/workflow-queue/tenants/acme", headers=bearer(writer),
                                        json={"max_running": 1000})
    cancelled = client.simulate_post(cancel, headers=bearer(writer))

    assert read.status_code == 200
    assert (refused.status_code, refused.json["title"]) == (403, "Write scope required")
    assert (not_admin.status_code, not_admin.json["title"]) == (403, "Admin scope required")
    assert not_admin_put.status_code == 403
    assert cancelled.status_code == 202
    assert jobs.get(job_id).status == "CANCELLED"
    assert client.simulate_get("/workflow-queue/tenants/acme", headers=ADMIN).json[
        "configured"]["max_running"] is None


def test_whoami_answers_the_tokens_name_scope_and_organisations(
    tokens: TokenStore, client: falcon.testing.TestClient
) -> None:
    token = tokens.create(Grant("acme-bot", Scope.WRITE, frozenset({"globex", "acme"})))

    answer = client.simulate_get("/workflow-queue/whoami", headers=bearer(token)).json
    admin = client.simulate_get("/workflow-queue/whoami", headers=ADMIN).json

    assert {k: answer[k] for k in ("name", "scope", "scopes", "organizations")} == {
        "name": "acme-bot", "scope": "write", "scopes": ["read", "write"],
        "organizations": ["acme", "globex"]}
    assert answer["principal"] == tokens.list()[0].principal
    assert (admin["scope"], admin["organizations"]) == ("admin", None)


def test_a_revoked_token_is_refused_by_another_api_instance_within_a_second(
    tokens: TokenStore, api_settings: Settings, jobs: Jobs, client: falcon.testing.TestClient
) -> None:
    # Given two API instances (two processes' worth of caches) that both accepted a token
    other = app_client(api_settings, jobs)
    token = tokens.create(Grant("leaving", Scope.READ, None))
    for api in (client, other):
        assert api.simulate_get("/workflow-queue/whoami", headers=bearer(token)).status_code \
            == 200

    # When one of them revokes it
    revoked = client.simulate_delete("/workflow-queue/tokens/leaving", headers=ADMIN)
    revoked_at = time.monotonic()
    assert revoked.status_code == 204

    # Then the other refuses it within 1 s, and from then on
    statuses = []
    while (elapsed := time.monotonic() - revoked_at) < 1.2:
        status = other.simulate_get("/workflow-queue/whoami", headers=bearer(token)).status_code
        statuses.append((elapsed, status))
    first_refusal = min(at for at, status in statuses if status == 401)
    assert first_refusal < 1.0, statuses[:5]
    assert all(status == 401 for at, status in statuses if at >= first_refusal)


def test_tokens_are_created_listed_and_revoked_through_the_api(
    client: falcon.testing.TestClient,
) -> None:
    created = client.simulate_post("/workflow-queue/tokens", headers=ADMIN, json={
        "name": "ci", "scope": "read", "organizations": ["acme"]})
    token = created.json["token"]
    duplicate = client.simulate_post("/workflow-queue/tokens", headers=ADMIN,
                                     json={"name": "ci", "scope": "read"})
    bad = client.simulate_post("/workflow-queue/tokens", headers=ADMIN,
                               json={"name": "x", "scope": "root"})
    listed = client.simulate_get("/workflow-queue/tokens", headers=ADMIN)

    assert created.status_code == 201
    assert (duplicate.status_code, bad.status_code) == (409, 400)
    assert "unknown scope 'root'" in bad.json["description"]
    assert [(t["name"], t["scope"], t["organizations"]) for t in listed.json["tokens"]] == [
        ("ci", "read", ["acme"])]
    assert token not in listed.text
    assert client.simulate_get("/workflow-queue/whoami", headers=bearer(token)).status_code \
        == 200
    assert client.simulate_delete("/workflow-queue/tokens/ci", headers=ADMIN).status_code \
        == 204
    assert client.simulate_delete("/workflow-queue/tokens/ci", headers=ADMIN).status_code \
        == 404


def test_tenant_settings_are_put_and_read_through_the_api_with_the_defaults(
    client: falcon.testing.TestClient,
) -> None:
    put = client.simulate_put("/workflow-queue/tenants/acme", headers=ADMIN, json={
        "max_running": 0, "rates": {"llm_tokens": "200000/d"}})
    acme = client.simulate_get("/workflow-queue/tenants/acme", headers=ADMIN)
    unset = client.simulate_get("/workflow-queue/tenants/globex", headers=ADMIN)
    listed = client.simulate_get("/workflow-queue/tenants", headers=ADMIN)

    assert put.status_code == 200 and put.json == acme.json
    assert {k: acme.json[k] for k in ("organization", "max_running", "priority", "rates")} == {
        "organization": "acme", "max_running": 0, "priority": 10,
        "rates": {"github_api": "5000/h", "llm_tokens": "200000/d"}}
    assert acme.json["configured"] == {"max_running": 0, "priority": None,
                                       "rates": {"llm_tokens": "200000/d"}}
    assert (unset.json["max_running"], unset.json["updated_at"]) == (20, None)
    assert listed.json["defaults"] == {"max_running": 20, "priority": 10,
                                       "rates": {"github_api": "5000/h"}}
    assert [t["organization"] for t in listed.json["tenants"]] == ["acme"]


@pytest.mark.parametrize("body, field", [
    ({"max_running": -1}, "max_running"), ({"priority": "high"}, "priority"),
    ({"rates": {"github_api": "fast"}}, "rates"), ({"limit": 3}, "limit"),
])
def test_a_bad_tenant_body_is_a_400_naming_the_field_and_changes_nothing(
    client: falcon.testing.TestClient, body: dict[str, Any], field: str
) -> None:
    path = "/workflow-queue/tenants/acme"
    client.simulate_put(path, headers=ADMIN, json={"max_running": 5})

    answer = client.simulate_put(path, headers=ADMIN, json=body)

    assert (answer.status_code, answer.json["title"]) == (400, "Invalid tenant settings")
    assert answer.json["description"].startswith(f"{field}: ")
    assert client.simulate_get(path, headers=ADMIN).json["configured"] == {
        "max_running": 5, "priority": None, "rates": {}}


def test_the_admin_routes_refuse_a_write_token(client: falcon.testing.TestClient) -> None:
    for method, path in (("GET", "/workflow-queue/tokens"), ("POST", "/workflow-queue/tokens"),
                         ("DELETE", "/workflow-queue/tokens/x"),
                         ("GET", "/workflow-queue/tenants/acme")):
        answer = client.simulate_request(method, path, headers=WRITE, json={})
        assert (answer.status_code, answer.json["title"]) == (403, "Admin scope required")
