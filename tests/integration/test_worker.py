"""The worker as bootstrap builds it: its actor's time limit, and what it logs per stage."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from uuid import UUID

import dramatiq
import pytest

from conveyor.actors.broker import stage_message
from conveyor.aggregates import Status
from conveyor.application import Jobs
from conveyor.bootstrap import build_jobs, build_worker_broker
from conveyor.settings import Settings
from conveyor.workflows import Workflow
from tests.conftest import ROOT
from tests.integration import custom_workflows
from tests.waiting import wait_until

RunFirstStage = Callable[[Workflow], tuple[Jobs, UUID]]
TRIGGER = {"platform": "github", "repository": "acme/api", "pull_request": "7",
           "head_commit": "sha7", "base_branch": "main"}


def test_a_registered_workflows_long_stage_sets_the_real_workers_time_limit() -> None:
    # Given a workflow module whose stage may run 900 s, registered through the setting
    env = {**os.environ, "PYTHONPATH": str(ROOT),
           "CONVEYOR_WORKFLOW_MODULES": "tests.integration.custom_workflows"}

    # When `conveyor worker`'s module builds its broker
    found = subprocess.run(
        [sys.executable, "-c", "from conveyor.actors.worker import broker;"
         " print(broker.get_actor('run_stage').options['time_limit'])"],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )

    # Then run_stage is not cut at the built-in stages' 300 s
    assert int(found.stdout) == int(custom_workflows.LONG_TIME_LIMIT * 1000)


@pytest.fixture
def run_on_rabbitmq(settings: Settings) -> Iterator[RunFirstStage]:
    started: list[tuple[Jobs, dramatiq.Broker, dramatiq.Worker]] = []

    def run(workflow: Workflow) -> tuple[Jobs, UUID]:
        """Run the workflow's first stage under a real worker over RabbitMQ."""
        workflows = {workflow.name: workflow}
        jobs = build_jobs(settings, workflows)
        broker = build_worker_broker(settings, lambda: jobs, workflows)
        broker.emit_after("process_boot")  # as `dramatiq` does in each worker process
        worker = dramatiq.Worker(broker, worker_threads=1,
                                 worker_timeout=100)
        worker.start()
        started.append((jobs, broker, worker))
        job_id = jobs.enqueue(workflow.name, "k", TRIGGER).job_id
        broker.enqueue(stage_message(settings.queue_name, job_id, "overrun", 1))
        return jobs, job_id

    custom_workflows.interrupted.clear()
    yield run
    for jobs, broker, worker in started:
        worker.stop()
        broker.close()
        jobs.close()


def test_a_stage_overrunning_the_registered_time_limit_is_interrupted(
    run_on_rabbitmq: RunFirstStage,
) -> None:
    # Given only a workflow whose stage may run 1 s, and a handler that runs 4 s
    # When the worker runs it
    run_on_rabbitmq(custom_workflows.cut_short)

    # Then Dramatiq interrupts it at the registered limit, not 300 s later
    assert custom_workflows.interrupted.wait(custom_workflows.OVERRUN_SECONDS)


def test_a_stage_within_its_registered_time_limit_runs_to_completion(
    run_on_rabbitmq: RunFirstStage,
) -> None:
    # Given the same handler in a workflow whose stage may run 30 s
    # When the worker runs it
    jobs, job_id = run_on_rabbitmq(custom_workflows.given_time)

    # Then it finishes and its outcome is recorded
    wait_until(lambda: jobs.get(job_id).status is Status.COMPLETED, timeout=20)
    assert not custom_workflows.interrupted.is_set()


def test_a_stage_run_logs_no_warning_about_its_return_value(
    jobs: Jobs, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    # Given the worker's broker and actor, in process
    broker = build_worker_broker(settings, lambda: jobs, in_process=True)
    job_id = jobs.enqueue("code_review", "k", TRIGGER).job_id
    broker.enqueue(stage_message(settings.queue_name, job_id, "validate", 1))
    worker = dramatiq.Worker(broker, worker_threads=1)

    # When a stage runs
    with caplog.at_level(logging.INFO):
        worker.start()
        try:
            broker.join(settings.queue_name)
            worker.join()
        finally:
            worker.stop()

    # Then it completed, and nothing warned about a discarded return value
    recorded = [type(e).__name__ for e in jobs.repository.event_store.get(job_id)]
    assert "StageCompleted" in recorded
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
