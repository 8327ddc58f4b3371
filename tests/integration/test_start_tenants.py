"""Starting a job with a token limited to organisations: only in its own, keys its own."""

from __future__ import annotations

import falcon.testing
import psycopg
from psycopg.rows import dict_row

from conveyor.access import Grant, Scope
from conveyor.application import Jobs
from conveyor.http.api import create_app
from conveyor.settings import Settings
from conveyor.store.tokens import TokenStore

REVIEW = {"platform": "github", "repository": "acme/api", "pull_request": "7",
          "head_commit": "abc"}


def test_a_limited_token_starts_in_its_own_organisations_only(
    settings: Settings, jobs: Jobs,
) -> None:
    # Given a token of acme, one of acme and globex, and the API
    tokens = TokenStore(lambda: psycopg.connect(str(settings.database_url), autocommit=True,
                                                row_factory=dict_row))
    acme = tokens.create(Grant("acme-bot", Scope.WRITE, frozenset({"acme"})))
    both = tokens.create(Grant("both-bot", Scope.WRITE, frozenset({"acme", "globex"})))
    api = falcon.testing.TestClient(create_app(settings, lambda: jobs, amqp_check=lambda: None))

    def start(token: str, **body: object) -> falcon.testing.Result:
        return api.simulate_post("/workflow-queue/jobs", headers={
            "Authorization": f"Bearer {token}"}, json={"workflow": "code_review",
                                                       "input": REVIEW, **body})

    # When acme's token names no organisation, the job is acme's
    started = start(acme, key="k")
    assert started.status_code == 202, started.json
    assert jobs.get(started.json["job_id"]).organization == "acme"
    # And naming another is answered 404, storing nothing, as a list of it finds nothing
    other = start(acme, key="k2", organization="globex")
    assert (other.status_code, other.json["title"]) == (404, "Organization not found")
    # And a token of two must name one
    unnamed = start(both, key="k3")
    assert (unnamed.status_code, unnamed.json["title"]) == (400, "Organization required")
    # And the same key in another organisation is another job, not acme's
    globex_only = tokens.create(Grant("globex-bot", Scope.WRITE, frozenset({"globex"})))
    globex = start(globex_only, key="k")
    assert globex.status_code == 202, globex.json
    assert globex.json["job_id"] != started.json["job_id"]
    # which does not supersede acme's review of the same pull request: not globex's to cancel
    assert globex.json["superseded"] is None
    assert jobs.get(started.json["job_id"]).status == "PENDING"
    # And the same key in acme's is acme's job again
    again = start(both, key="k", organization="acme")
    assert (again.status_code, again.json["job_id"]) == (200, started.json["job_id"])
    # And only those two starts stored jobs
    with psycopg.connect(str(settings.database_url)) as conn:
        row = conn.execute("SELECT count(*) FROM jobs_events"
                           " WHERE topic LIKE '%:Job.Enqueued'").fetchone()
    assert row is not None and row[0] == 2


def test_a_start_may_raise_its_jobs_priority_and_a_bad_one_stores_nothing(
    settings: Settings, jobs: Jobs,
) -> None:
    api = falcon.testing.TestClient(create_app(settings, lambda: jobs, amqp_check=lambda: None))
    admin = {"Authorization": f"Bearer {next(iter(settings.api_admin_tokens))}"}

    def start(**body: object) -> falcon.testing.Result:
        return api.simulate_post("/workflow-queue/jobs", headers=admin, json={
            "workflow": "code_review", "input": REVIEW, "organization": "acme", **body})

    # When a review is started with a priority, its job carries it (fair dispatch's weight)
    raised = start(key="urgent", priority=90)
    assert raised.status_code == 202, raised.json
    assert jobs.get(raised.json["job_id"]).priority == 90
    # And one started without takes its tenant's
    plain = start(key="plain", input={**REVIEW, "pull_request": "8"})
    assert jobs.get(plain.json["job_id"]).priority is None
    # And a priority out of range is a 400 naming it, and nothing more is stored
    for bad in (0, 101, "high"):
        refused = start(key=f"bad-{bad}", priority=bad)
        assert refused.status_code == 400, refused.json
        assert "priority" in refused.json["description"]
    with psycopg.connect(str(settings.database_url)) as conn:
        row = conn.execute("SELECT count(*) FROM jobs_events"
                           " WHERE topic LIKE '%:Job.Enqueued'").fetchone()
    assert row is not None and row[0] == 2
