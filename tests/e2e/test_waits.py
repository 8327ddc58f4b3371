"""End to end: a code review pauses for the AST service, resumes, and reviews in parallel."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pika

from conveyor.settings import Settings
from tests.deliveries import github_pull_request
from tests.e2e.stack import running, send
from tests.waiting import wait_until


class FakeAstService:
    """Plays the AST service: takes `ast.task.requested`, answers `ast.task.completed`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.connection = pika.BlockingConnection(pika.URLParameters(settings.amqp_url))
        self.channel = self.connection.channel()
        self.channel.exchange_declare(settings.events_exchange, exchange_type="topic",
                                      durable=True)
        self.queue = f"fake-ast-{uuid.uuid4().hex[:8]}"
        self.channel.queue_declare(self.queue, exclusive=True)
        self.channel.queue_bind(self.queue, settings.events_exchange, "ast.task.requested")

    def next_request(self) -> Any:
        def take() -> Any:
            method, _, body = self.channel.basic_get(self.queue, auto_ack=True)
            return orjson.loads(body) if method else None

        return wait_until(take, timeout=30)

    def complete(self, task_id: str, payload: Any) -> None:
        self.channel.confirm_delivery()
        body = orjson.dumps({"id": f"done-{task_id}", "key": task_id, "payload": payload})
        self.channel.basic_publish(self.settings.events_exchange, "ast.task.completed", body,
                                   properties=pika.BasicProperties(delivery_mode=2))

    def close(self) -> None:
        self.connection.close()


def overlap(a: dict[str, Any], b: dict[str, Any]) -> bool:
    start = max(datetime.fromisoformat(a["started_at"]), datetime.fromisoformat(b["started_at"]))
    end = min(datetime.fromisoformat(a["finished_at"]), datetime.fromisoformat(b["finished_at"]))
    return start < end


def test_a_code_review_waits_for_the_ast_service_then_reviews_in_parallel(
    settings: Settings, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:8]
    settings = dataclasses.replace(settings, events_exchange=f"test.events.{suffix}",
                                   events_queue=f"conveyor-test-events-{suffix}")
    ast = FakeAstService(settings)
    processes = ("webhooks", "api", "worker", "relay", "projector", "events")
    try:
        with running(settings, tmp_path, processes,
                     CONVEYOR_AST_ANALYSIS="on",
                     CONVEYOR_REFERENCE_REVIEW_SECONDS="0.5",
                     CONVEYOR_WORKER_THREADS="4",
                     CONVEYOR_EVENTS_EXCHANGE=settings.events_exchange,
                     CONVEYOR_EVENTS_QUEUE=settings.events_queue) as stack:
            status, answer = send(stack, github_pull_request("opened"))
            assert status == 202, answer

            # The job pauses at ast_analysis, and the AST service is asked for a task.
            asked = ast.next_request()
            waiting = stack.job_when(answer["job_id"], "WAITING_FOR_EVENT")
            [wait] = waiting["waiting_for"]
            assert (wait["stage"], wait["event_type"], wait["key"]) == (
                "ast_analysis", "ast.task.completed", asked["key"])
            assert wait["deadline"]

            ast.complete(asked["key"], {"functions": 12})

            job = stack.job_when(answer["job_id"], "COMPLETED")
    finally:
        ast.close()
    stages = {s["stage"]: s for s in job["stages"] if s["status"] == "completed"}
    assert list(stages)[:3] == ["validate", "fetch_changes", "ast_analysis"]
    assert overlap(stages["review_pull_request"], stages["review_files"])
    assert list(stages)[-1] == "publish"
