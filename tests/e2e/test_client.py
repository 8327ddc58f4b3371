"""`conveyor.client` against the real API: every method, sync and async, and its retries."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conveyor.client import AsyncClient, Client, NotFoundError
from conveyor.settings import Settings
from tests.conftest import migrated_template, scratch_database, settings_for
from tests.e2e.test_api_start import started_stack
from tests.servers import PrivatePostgres
from tests.waiting import wait_until


def counted(client: Client) -> list[int]:
    """The status of every response the client receives, retries included."""
    statuses: list[int] = []
    client.http.event_hooks["response"].append(lambda r: statuses.append(r.status_code))
    return statuses


def test_the_client_starts_waits_lists_reads_commands_and_sends_events(
    settings: Settings, tmp_path: Path,
) -> None:
    with started_stack(settings, tmp_path, CONVEYOR_AST_ANALYSIS="on") as stack, \
            Client(stack.api, "write-token") as client:
        # start and wait: a new job, then the same key's job; its result
        started = client.start("greet", "c1", {"name": "ada"})
        assert started.created and client.start("greet", "c1", {"name": "ada"}) == \
            started.__class__(started.job_id, False, started.location, None)
        job = client.wait(started.job_id, timeout=30)
        assert (job.status, job.result) == ("COMPLETED", {"text": "HELLO ADA"})
        assert job.outputs["compose"] == {"text": "hello ada"}
        # get and history
        assert client.get(started.job_id).status == "COMPLETED"
        history = client.history(started.job_id)
        assert history.events[0]["type"] == "Enqueued"
        assert [a["stage"] for a in history.stage_attempts] == ["compose", "shout"]
        # list: every page, through the cursor
        for n in range(4):
            client.wait(client.start("greet", f"many-{n}", {"name": str(n)}).job_id)
        listed = list(client.list(workflow="greet", status="COMPLETED", limit=2))
        assert len(listed) == 5
        assert len({j.job_id for j in listed}) == 5
        # retry a failed job, cancel a waiting one
        failed = client.wait(client.start("greet", "f1", {"name": "x", "fail": True}).job_id)
        assert failed.status == "FAILED"
        client.retry(failed.job_id)
        # (it fails again, as its input says: the history shows the retry and both failures)
        wait_until(lambda: [e["type"] for e in client.history(failed.job_id).events
                            if e["type"] in ("Retried", "Failed")] == ["Failed", "Retried",
                                                                       "Failed"])
        review = client.start("code_review", "rv", {
            "platform": "github", "repository": "acme/api", "pull_request": "9",
            "head_commit": "abc"})
        assert client.wait(review.job_id).status == "WAITING_FOR_EVENT"
        # send_event resumes a wait; a repeat of its id is a duplicate
        sent = client.send_event("e1", "ast.task.completed", f"ast-{review.job_id}", {"n": 1})
        assert not sent.duplicate
        assert client.send_event("e1", "ast.task.completed", "x").duplicate
        assert stack.job_when(review.job_id, "COMPLETED")
        other = client.start("code_review", "rv2", {
            "platform": "github", "repository": "acme/api", "pull_request": "10",
            "head_commit": "abc"})
        assert client.wait(other.job_id).status == "WAITING_FOR_EVENT"
        client.cancel(other.job_id, reason="not needed")
        assert stack.job_when(other.job_id, "CANCELLED")

        # And the async client does the same through asyncio
        async def asynchronously() -> tuple[str, int]:
            async with AsyncClient(stack.api, "write-token") as aclient:
                again = await aclient.start("greet", "a1", {"name": "bob"})
                done = await aclient.wait(again.job_id)
                assert (await aclient.get(again.job_id)).status == done.status
                assert (await aclient.history(again.job_id)).events
                listed = [j async for j in aclient.list(workflow="greet", limit=3)]
                with pytest.raises(NotFoundError):
                    await aclient.cancel(uuid.uuid4())
                return done.result["text"], len(listed)

        assert asyncio.run(asynchronously()) == ("HELLO BOB", 7)


def test_a_404_is_raised_at_once_and_never_retried(settings: Settings, tmp_path: Path) -> None:
    with started_stack(settings, tmp_path) as stack, Client(stack.api, "read-token") as client:
        statuses = counted(client)
        with pytest.raises(NotFoundError) as raised:
            client.get(uuid.uuid4())
        assert raised.value.status == 404
        assert statuses == [404]


@pytest.fixture
def private_settings(private_postgres: PrivatePostgres, queue_name: str) -> Iterator[Settings]:
    with migrated_template(private_postgres.url) as template, \
            scratch_database("conveyor_test", template, private_postgres.url) as database:
        yield settings_for(database, queue_name)


def test_a_503_while_postgresql_is_stopped_is_retried_until_the_api_answers(
    private_settings: Settings, private_postgres: PrivatePostgres, tmp_path: Path,
) -> None:
    with started_stack(private_settings, tmp_path) as stack, \
            Client(stack.api, "write-token", attempts=30, backoff=0.2) as client:
        job = client.wait(client.start("greet", "before", {"name": "ada"}).job_id)
        assert job.status == "COMPLETED"
        statuses = counted(client)
        # Given PostgreSQL stopped, started again 3 s later
        private_postgres.stop()
        restart = threading.Timer(3.0, private_postgres.start)
        restart.start()
        try:
            # When the client reads the job meanwhile
            found = client.get(job.job_id)
        finally:
            restart.join()
            if not private_postgres.answers():
                private_postgres.start()
        # Then it was answered 503 at first, retried, and finally got the job
        assert found.status == "COMPLETED"
        assert statuses[0] == 503 and statuses[-1] == 200, statuses
        assert set(statuses) <= {503, 200}


def test_connection_errors_are_retried_then_raised_as_unreachable() -> None:
    calls: list[str] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        raise httpx.ConnectError("refused", request=request)

    from conveyor.client import UnreachableError

    with Client("http://127.0.0.1:9", "t", attempts=3, backoff=0.01,
                transport=httpx.MockTransport(refuse)) as client, \
            pytest.raises(UnreachableError):
        client.get(uuid.uuid4())
    assert len(calls) == 3
