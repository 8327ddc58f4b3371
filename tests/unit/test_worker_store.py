"""Which workflow versions the live workers run, as the relay asks of a stage it finds lost."""

from __future__ import annotations

from conveyor.store.workers import is_served

SERVED = {("review", "v2"): 2, ("build", "v1"): 0}


def test_a_version_is_served_only_by_live_workers_of_that_workflow_and_version() -> None:
    assert is_served(SERVED, "review", "v2")
    assert not is_served(SERVED, "review", "v1")
    assert not is_served(SERVED, "build", "v1")  # its workers' rows went stale
    assert not is_served(SERVED, "deploy", "v2")


def test_a_job_enqueued_before_versions_is_served_by_any_live_worker_of_its_workflow() -> None:
    assert is_served(SERVED, "review", None)
    assert not is_served(SERVED, "build", None)
