"""The API's waiting requests: woken by the projector's NOTIFY, and bounded per process."""

from __future__ import annotations

import threading
import time
from uuid import UUID

import pytest

from conveyor.application import Jobs
from conveyor.http.waiting import JobWaiter, TooManyWaitersError
from conveyor.settings import Settings
from tests.integration.projections_support import complete_next, project, trigger
from tests.waiting import wait_until


def test_a_waiting_request_wakes_when_the_projector_writes_its_job_finished(
    settings: Settings, jobs: Jobs,
) -> None:
    # Given a job two stages from done, projected as it is, and a request waiting for it
    job_id = jobs.enqueue("code_review", "k", trigger(1)).job_id
    project(settings)
    waiter = JobWaiter(settings.session_url(), limit=1)
    took: list[float] = []
    try:
        waits_for_its_job(settings, jobs, waiter, job_id, took)
    finally:
        waiter.close()


def waits_for_its_job(settings: Settings, jobs: Jobs, waiter: JobWaiter, job_id: UUID,
                      took: list[float]) -> None:

    def wait() -> None:
        began = time.monotonic()
        waiter.wait(job_id, 20, settled=lambda: False)
        took.append(time.monotonic() - began)

    waiting = threading.Thread(target=wait)
    waiting.start()
    # Then a second request of the process is refused at once: the bound is 1
    wait_until(lambda: waiter.waiting == 1)
    with pytest.raises(TooManyWaitersError):
        waiter.wait(job_id, 20, settled=lambda: False)
    # When the job finishes and the projector writes it
    while jobs.get(job_id).status != "COMPLETED":
        complete_next(jobs, job_id)
    project(settings)
    waiting.join(timeout=20)
    # Then the waiting request returned then, long before its 20 s
    assert took and took[0] < 10, took
    # And, its place free again, another may wait (and returns at once for a settled job)
    waiter.wait(job_id, 20, settled=lambda: True)
