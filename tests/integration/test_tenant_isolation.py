"""A token limited to organisations sees, counts and changes only theirs: every endpoint,
across tenants, on the real database, webhook app, token store, projector and relay."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import falcon.testing
import orjson
import psycopg
import pytest
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from psycopg.rows import dict_row

from conveyor.access import Grant, Scope
from conveyor.actors.stages import Outcome, run_stage
from conveyor.aggregates import Status
from conveyor.application import Jobs
from conveyor.bootstrap import build_jobs
from conveyor.http.api import create_app as create_api
from conveyor.http.reads import tenant_clause
from conveyor.http.webhooks.app import create_app as create_webhooks
from conveyor.relay.relay import Relay
from conveyor.settings import Settings
from conveyor.store.tokens import TokenStore
from conveyor.workflows import Pause, StageContext, Workflow
from tests.deliveries import github_pull_request
from tests.integration.projections_support import fail_next, project

ORGS = ("acme", "globex")
REPOSITORY = {"acme": "acme/api", "globex": "globex/web"}
ADMIN = {"Authorization": "Bearer admin-token"}


def bearer(token: str, **more: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **more}


@dataclass
class Tenant:
    """One organisation's token and its three jobs, in the state each was left in."""

    token: str
    paused: UUID  # waiting at ast_analysis for `ast.task.completed`, key `ast-<id>`
    failed: UUID
    pending: UUID

    @property
    def ids(self) -> set[str]:
        return {str(self.paused), str(self.failed), str(self.pending)}


@dataclass
class World:
    settings: Settings
    jobs: Jobs
    api: falcon.testing.TestClient
    relay: Relay
    conn: psycopg.Connection[Any]
    tenants: dict[str, Tenant]

    def drain(self) -> None:
        while self.relay.relay_batch(self.conn):
            pass

    def versions(self) -> dict[UUID, tuple[Status, int]]:
        """Every job's status and version, as the event store holds them."""
        return {job_id: (job.status, job.version) for tenant in self.tenants.values()
                for job_id in (tenant.paused, tenant.failed, tenant.pending)
                for job in [self.jobs.get(job_id)]}


def pause_at_ast_analysis(jobs: Jobs, job_id: UUID) -> None:
    for stage in ("validate", "fetch_changes"):
        assert run_stage(jobs, job_id, stage, 1) is Outcome.COMPLETED
    assert run_stage(jobs, job_id, "ast_analysis", 1) is Outcome.PAUSED


@pytest.fixture
def world(settings: Settings) -> Iterator[World]:
    # Given the real webhook app (AST analysis on, so reviews wait for an outside event),
    # a token of each organisation created through the real token store, and three jobs
    # of each organisation enqueued by deliveries of its repositories
    settings = dataclasses.replace(settings, ast_analysis=True)
    assert settings.database_url
    jobs = build_jobs(settings)
    webhooks = falcon.testing.TestClient(create_webhooks(settings, lambda: jobs))
    conn = psycopg.connect(settings.database_url, autocommit=True, row_factory=dict_row)
    tokens = TokenStore(lambda: psycopg.connect(str(settings.database_url), autocommit=True,
                                                row_factory=dict_row))
    broker = RabbitmqBroker(url=settings.amqp_url, confirm_delivery=True)
    relay = Relay(jobs, broker, settings.queue_name, settings.database_url)
    tenants = {}
    for org in ORGS:
        ids = []
        for number in (1, 2, 3):
            delivery = github_pull_request(repository=REPOSITORY[org], number=number)
            answer = webhooks.simulate_post(delivery.path, headers=delivery.headers,
                                            body=delivery.body)
            assert answer.status_code == 202, answer.text
            ids.append(UUID(answer.json["job_id"]))
        paused, failed, pending = ids
        pause_at_ast_analysis(jobs, paused)
        fail_next(jobs, failed, retry=False)
        token = tokens.create(Grant(f"{org}-bot", Scope.WRITE, frozenset({org})))
        tenants[org] = Tenant(token, paused, failed, pending)
    api = falcon.testing.TestClient(create_api(settings, lambda: jobs, amqp_check=lambda: None))
    found = World(settings, jobs, api, relay, conn, tenants)
    found.drain()
    project(settings)
    yield found
    conn.close()
    broker.close()
    jobs.close()


def listed(client: falcon.testing.TestClient, token: str, **params: str) -> list[str]:
    """Every job id the list shows `token` for `params`, a page of one at a time."""
    seen: list[str] = []
    cursor = None
    while True:
        page = client.simulate_get("/workflow-queue/jobs", headers=bearer(token), params={
            **params, "limit": "1", **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.text
        seen += [job["job_id"] for job in page.json["jobs"]]
        cursor = page.json["next_cursor"]
        if cursor is None:
            return seen


def shown(client: falcon.testing.TestClient, token: str, **params: str) -> set[str]:
    """The job ids listed to `token`, checked to be the same, each once, in either order."""
    ids = {order: listed(client, token, order=order, **params) for order in ("desc", "asc")}
    assert ids["desc"] == ids["asc"][::-1] and len(set(ids["desc"])) == len(ids["desc"])
    return set(ids["desc"])


def answers(client: falcon.testing.TestClient, token: str,
            job_id: UUID) -> list[tuple[int, Any]]:
    """Get, history, cancel and retry of `job_id` with `token`, as (status, body)."""
    headers, path = bearer(token), f"/workflow-queue/jobs/{job_id}"
    found = [
        client.simulate_get(path, headers=headers),
        client.simulate_get(f"{path}/history", headers=headers),
        client.simulate_post(f"{path}/cancel", headers=headers, json={"reason": "cross"}),
        client.simulate_post(f"{path}/retry", headers=headers),
    ]
    return [(r.status_code, r.json) for r in found]


ACROSS = pytest.mark.parametrize("me, other", [("acme", "globex"), ("globex", "acme")])


@ACROSS
def test_a_token_of_one_organisation_lists_only_its_jobs_under_every_filter(
    world: World, me: str, other: str
) -> None:
    mine, theirs = world.tenants[me], world.tenants[other]
    assert not mine.ids & theirs.ids

    def shown_to_me(**params: str) -> set[str]:
        return shown(world.api, mine.token, **params)

    assert shown_to_me() == mine.ids
    assert shown_to_me(status="FAILED") == {str(mine.failed)}
    assert shown_to_me(status="WAITING_FOR_EVENT") == {str(mine.paused)}
    assert shown_to_me(status="PENDING") == {str(mine.pending)}
    assert shown_to_me(workflow="code_review") == mine.ids
    assert shown_to_me(platform="github") == mine.ids
    assert shown_to_me(organization=me) == mine.ids
    assert shown_to_me(organization=other) == set()
    assert shown_to_me(repository=REPOSITORY[me]) == mine.ids
    assert shown_to_me(repository=REPOSITORY[other]) == set()
    # Both organisations have a pull request 2: only the token's own is listed
    assert shown_to_me(pull_request="2") == {str(mine.failed)}
    assert shown_to_me(created_after="2000-01-01T00:00:00Z") == mine.ids
    assert shown_to_me(created_before="2999-01-01T00:00:00Z") == mine.ids

    # And an unscoped token lists both organisations' jobs
    assert shown(world.api, "read-token") == mine.ids | theirs.ids


def test_another_organisations_job_answers_exactly_as_a_job_that_does_not_exist(
    world: World,
) -> None:
    before = world.versions()
    nowhere = uuid.uuid4()
    for me, other in (("acme", "globex"), ("globex", "acme")):
        mine, theirs = world.tenants[me], world.tenants[other]
        api, headers = world.api, bearer(mine.token)
        # When the token reads and commands each of the other organisation's jobs
        for job_id in (theirs.paused, theirs.failed, theirs.pending):
            # Then every answer is the 404 of a job that does not exist, but for its id
            missing = [(status, {**body, "description": body["description"].replace(
                str(nowhere), str(job_id))})
                for status, body in answers(api, mine.token, nowhere)]
            assert answers(api, mine.token, job_id) == missing
            assert {status for status, _ in missing} == {404}
            assert {body["title"] for _, body in missing} == {"Job not found"}

        # While its own jobs are there to read
        own = api.simulate_get(f"/workflow-queue/jobs/{mine.failed}", headers=headers)
        history = api.simulate_get(f"/workflow-queue/jobs/{mine.failed}/history",
                                   headers=headers)
        assert (own.status_code, own.json["organization"], own.json["status"]) == (
            200, me, "FAILED")
        assert history.status_code == 200 and history.json["events"][0]["type"] == "Enqueued"

    # And no job of either organisation was changed by the other's cancels and retries
    assert world.versions() == before


def test_a_limited_token_sees_a_new_job_once_projected_and_only_if_it_is_its_own(
    world: World,
) -> None:
    # Given a job of acme just enqueued, which the jobs read model does not hold yet
    job_id = world.jobs.enqueue("code_review", "fresh", {"repository": "acme/api"},
                                organization="acme").job_id
    path = f"/workflow-queue/jobs/{job_id}"

    def read(org: str) -> tuple[int, str]:
        answer = world.api.simulate_get(path, headers=bearer(world.tenants[org].token))
        return answer.status_code, answer.json.get("description") or answer.json["view"]

    # When each organisation's token reads it before and after it is projected
    before = {org: read(org) for org in ORGS}
    project(world.settings)
    after = {org: read(org) for org in ORGS}

    # Then neither learns of it from the log (read-your-writes is the webhook sender's,
    # and a lookup that may read the log would take longer for a job that is not there),
    # and once projected acme reads it while globex is told it does not exist
    missing = (404, f"No job {job_id}.")
    assert before == {"acme": missing, "globex": missing}
    assert after == {"acme": (200, "projection"), "globex": missing}
    # An unscoped token reads it from the log all along
    assert world.api.simulate_get(path, headers=ADMIN).status_code == 200


def test_metrics_count_only_the_tokens_organisation(world: World) -> None:
    for me in ORGS:
        for params in ({}, {"workflow": "code_review"}, {"hours": "1"}):
            metrics = world.api.simulate_get("/workflow-queue/metrics",
                                             headers=bearer(world.tenants[me].token),
                                             params=params)
            assert metrics.status_code == 200, metrics.text
            body = metrics.json
            assert body["jobs_by_status"] == {"WAITING_FOR_EVENT": 1, "FAILED": 1, "PENDING": 1}
            assert body["jobs_by_workflow"] == {"code_review": body["jobs_by_status"]}
            assert (body["totals"]["enqueued"], body["totals"]["failed"],
                    body["totals"]["paused"]) == (3, 1, 1)
            assert body["totals"]["stage_completed"] == 2  # validate, fetch_changes
            assert (body["window"]["enqueued"], body["window"]["failed"]) == (3, 1)
            assert [p["failed"] for p in body["per_hour"]] == [1]
            assert body["durations_ms"]["queue_wait"]["count"] == 2
            # The log's positions count every organisation's events: not shown
            assert {frozenset(lag) for lag in body["projection_lag"]} == {
                frozenset({"projection", "events_behind", "seconds_behind"})}

    every = world.api.simulate_get("/workflow-queue/metrics", headers=ADMIN).json
    assert every["jobs_by_status"] == {"WAITING_FOR_EVENT": 2, "FAILED": 2, "PENDING": 2}
    assert every["totals"]["enqueued"] == 6
    assert "head" in every["projection_lag"][0]


def test_the_organisations_overview_shows_only_the_tokens_own(world: World) -> None:
    # The relay's table, read directly: each organisation's attempts in flight and held
    table = {row["organization"]: (row["running"], row["held"]) for row in world.conn.execute(
        "SELECT organization, count(sent_at) AS running, count(*) - count(sent_at) AS held"
        " FROM relay_dispatches GROUP BY organization").fetchall()}
    assert set(table) == set(ORGS)  # both have work the relay dispatched or holds
    for me in ORGS:
        shown = world.api.simulate_get("/workflow-queue/organizations",
                                       headers=bearer(world.tenants[me].token))
        assert shown.status_code == 200, shown.text
        assert shown.json == {"organizations": [
            {"organization": me, "running": table[me][0], "held": table[me][1],
             "max_running": None, "deferred": 0}]}
    every = world.api.simulate_get("/workflow-queue/organizations", headers=ADMIN).json
    assert [o["organization"] for o in every["organizations"]] == sorted(ORGS)


def test_metrics_name_organisations_only_behind_the_metrics_token(world: World) -> None:
    # Given no metrics token: /metrics answers anyone, and names no organisation
    open_metrics = world.api.simulate_get("/metrics")
    assert open_metrics.status_code == 200
    assert "conveyor_tenant_jobs" not in open_metrics.text
    assert not any(org in open_metrics.text for org in ORGS)

    # Given a metrics token and room for one organisation by name
    guarded = falcon.testing.TestClient(create_api(
        dataclasses.replace(world.settings, metrics_token="metrics-secret",
                            metrics_organizations=1),
        lambda: world.jobs, amqp_check=lambda: None))
    # Then nobody else is answered, not even with an API token
    for headers in ({}, ADMIN, bearer("not-it")):
        refused = guarded.simulate_get("/metrics", headers=headers)
        assert refused.status_code == 401, refused.text
        assert "acme" not in refused.text
    # And the token's bearer gets each organisation's jobs by status: the busiest by name
    # (a tie goes to the first name), the rest summed as `other`
    lines = guarded.simulate_get("/metrics", headers=bearer("metrics-secret")).text.splitlines()
    tenant_lines = sorted(line for line in lines if line.startswith("conveyor_tenant_jobs{"))
    assert tenant_lines == sorted(
        f'conveyor_tenant_jobs{{organization="{org}",status="{status}"}} 1.0'
        for org in ("acme", "other") for status in ("FAILED", "PENDING", "WAITING_FOR_EVENT"))


def test_an_event_sent_with_one_organisations_token_leaves_the_others_wait_alone(
    world: World,
) -> None:
    before = world.versions()
    for me, other in (("acme", "globex"), ("globex", "acme")):
        theirs = world.tenants[other]
        # When a token sends the event the other organisation's paused job waits for
        sent = world.api.simulate_post("/workflow-queue/events", body=orjson.dumps({
            "id": f"from-{me}", "type": "ast.task.completed", "key": f"ast-{theirs.paused}",
            "payload": {"functions": 1}}), headers=bearer(
                world.tenants[me].token, **{"Content-Type": "application/json"}))
        assert (sent.status_code, sent.json) == (202, {"status": "accepted", "id": f"from-{me}"})
        world.drain()

    # Then both jobs still wait, unchanged, and the waits are still open
    assert world.versions() == before
    with world.conn.cursor() as curs:
        open_waits = curs.execute("SELECT job_id, organization FROM relay_waits").fetchall()
    assert sorted((row["job_id"], row["organization"]) for row in open_waits) == sorted(
        (world.tenants[org].paused, org) for org in ORGS)

    # And an unscoped sender (the dev token, as the AMQP door) resumes either
    sent = world.api.simulate_post("/workflow-queue/events", body=orjson.dumps({
        "id": "internal", "type": "ast.task.completed",
        "key": f"ast-{world.tenants['globex'].paused}"}),
        headers={**ADMIN, "Content-Type": "application/json"})
    assert sent.status_code == 202
    world.drain()
    assert world.jobs.get(world.tenants["globex"].paused).status is Status.PROCESSING


def test_whoami_names_only_the_tokens_own_organisation(world: World) -> None:
    for org in ORGS:
        who = world.api.simulate_get("/workflow-queue/whoami",
                                     headers=bearer(world.tenants[org].token))
        assert (who.status_code, who.json["name"], who.json["organizations"]) == (
            200, f"{org}-bot", [org])


# A workflow whose jobs of every organisation wait for one and the same event type and key.
approval = Workflow("approval")


@approval.stage()
def wait_for_approval(ctx: StageContext) -> Any:
    if ctx.woken is None:
        return Pause("release.approved", key=ctx.trigger["key"], timeout=3600)
    return {"approved_with": ctx.resumed_with}


@dataclass
class Approvals:
    jobs: Jobs
    api: falcon.testing.TestClient
    relay: Relay
    conn: psycopg.Connection[Any]
    tokens: dict[str, str]

    def paused(self, org: str, key: str) -> UUID:
        job_id = self.jobs.enqueue("approval", f"{org}:{key}", {"key": key},
                                   organization=org).job_id
        assert run_stage(self.jobs, job_id, "wait_for_approval", 1) is Outcome.PAUSED
        return job_id

    def send(self, org: str, event_id: str, key: str) -> falcon.testing.Result:
        return self.api.simulate_post("/workflow-queue/events", body=orjson.dumps({
            "id": event_id, "type": "release.approved", "key": key, "payload": {"by": org}}),
            headers=bearer(self.tokens[org], **{"Content-Type": "application/json"}))

    def drain(self) -> None:
        while self.relay.relay_batch(self.conn):
            pass

    def status(self, job_id: UUID) -> Status:
        return self.jobs.get(job_id).status


@pytest.fixture
def approvals(settings: Settings, tokens_store: TokenStore) -> Iterator[Approvals]:
    assert settings.database_url
    jobs = Jobs(env=settings.eventsourcing_env(), workflows={"approval": approval})
    api = falcon.testing.TestClient(create_api(settings, lambda: jobs, amqp_check=lambda: None))
    broker = RabbitmqBroker(url=settings.amqp_url, confirm_delivery=True)
    relay = Relay(jobs, broker, settings.queue_name, settings.database_url)
    tokens = {org: tokens_store.create(Grant(f"{org}-bot", Scope.WRITE, frozenset({org})))
              for org in ORGS}
    with psycopg.connect(settings.database_url, autocommit=True, row_factory=dict_row) as conn:
        yield Approvals(jobs, api, relay, conn, tokens)
    broker.close()
    jobs.close()


@pytest.fixture
def tokens_store(database: str) -> TokenStore:
    return TokenStore(lambda: psycopg.connect(database, autocommit=True, row_factory=dict_row))


def test_an_event_resumes_the_senders_organisations_wait_and_not_anothers_of_the_same_key(
    approvals: Approvals,
) -> None:
    # Given a job of each organisation waiting for the same event type and key
    acme, globex = approvals.paused("acme", "release-1"), approvals.paused("globex", "release-1")
    approvals.drain()

    # When acme's token sends that event
    sent = approvals.send("acme", "approved-1", "release-1")
    approvals.drain()

    # Then acme's job resumes with it, and globex's still waits
    assert sent.status_code == 202
    assert approvals.status(acme) is Status.PROCESSING
    assert approvals.jobs.get(acme).runs["wait_for_approval"].resumed_with == {"by": "acme"}
    assert approvals.status(globex) is Status.WAITING_FOR_EVENT

    # And globex may send an event of the same id: its own, not a duplicate of acme's
    again = approvals.send("globex", "approved-1", "release-1")
    repeated = approvals.send("globex", "approved-1", "release-1")
    approvals.drain()
    assert (again.status_code, again.json["status"]) == (202, "accepted")
    assert (repeated.status_code, repeated.json["status"]) == (200, "duplicate")
    assert approvals.status(globex) is Status.PROCESSING
    assert approvals.jobs.get(globex).runs["wait_for_approval"].resumed_with == {"by": "globex"}


def test_an_event_kept_from_before_a_pause_resumes_only_its_organisations_later_wait(
    approvals: Approvals,
) -> None:
    # Given acme's token sent an event before anyone waited for it
    assert approvals.send("acme", "early-1", "release-2").status_code == 202
    approvals.drain()

    # When a globex job and then an acme job pause for that type and key
    globex = approvals.paused("globex", "release-2")
    acme = approvals.paused("acme", "release-2")
    approvals.drain()

    # Then the kept event resumes acme's job only
    assert approvals.status(acme) is Status.PROCESSING
    assert approvals.status(globex) is Status.WAITING_FOR_EVENT


def test_a_one_organisation_tokens_list_is_read_in_index_order(database: str) -> None:
    # Given the clause that narrows a list to a token of one organisation
    clauses, params = tenant_clause(frozenset({"acme"}))

    # When PostgreSQL plans a page of the list with it
    with psycopg.connect(database) as conn:
        conn.execute("SET enable_seqscan = off")
        plan = "\n".join(row[0] for row in conn.execute(
            f"EXPLAIN SELECT job_id FROM jobs WHERE {' AND '.join(clauses)}"
            " ORDER BY created_at DESC, job_id DESC LIMIT 50", params))

    # Then the page comes from the organisation's index, without sorting its every job
    assert "jobs_organization_created_at_idx" in plan
    assert "Sort" not in plan
