"""A stage that always fails, run by the real worker and relay, against the wall clock."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from conveyor.aggregates import Job
from conveyor.application import Jobs
from tests.faults import effects_workflow
from tests.faults.audit import audit, report
from tests.faults.cluster import Cluster
from tests.waiting import wait_until

OTHERS = 30
# How late the relay may fire a due retry on a loaded 2-core machine.
TOLERANCE = timedelta(seconds=1.5)


def test_a_stage_that_always_fails_is_tried_the_configured_times_at_the_configured_times(
    faulty: Cluster, jobs: Jobs,
) -> None:
    # Given a job whose first stage always fails, among jobs that succeed
    faulty.add("relay")
    faulty.add("worker")
    policy = effects_workflow.RETRY
    failing = jobs.enqueue("effects", "always-fails", {"mode": "fail", "seconds": 0.1}).job_id
    others = [jobs.enqueue("effects", f"fine:{i}", {"seconds": 0.1}).job_id
              for i in range(OTHERS)]

    # When they have all run
    wait_until(lambda: faulty.terminal_jobs() == OTHERS + 1, timeout=60, interval=0.2)

    # Then the failing stage was tried exactly `attempts` times, each retry at its due time
    found = audit(faulty, jobs, [failing, *others])
    events = found.events[failing]
    failures = [e for e in events if isinstance(e, Job.StageFailed)]
    starts = [e for e in events if isinstance(e, Job.Started)]
    assert [e.attempt for e in starts] == [1, 2, 3] == [e.attempt for e in failures]
    lateness = []
    for n, (failure, next_start) in enumerate(zip(failures, starts[1:], strict=False), 1):
        expected = timedelta(seconds=policy.initial_delay * policy.multiplier ** (n - 1))
        assert failure.retry_at - failure.at == expected
        assert failure.retry_at <= next_start.at <= failure.retry_at + TOLERANCE
        lateness.append((next_start.at - failure.retry_at).total_seconds())
    assert failures[-1].retry_at is None
    assert found.names(failing)[-1] == "Failed"
    # And the other jobs were not affected
    assert found.statuses == Counter({"COMPLETED": OTHERS, "FAILED": 1})
    report(
        f"always-failing stage: {len(starts)} attempts (policy {policy.attempts}), retries"
        f" due after {[(f.retry_at - f.at).total_seconds() for f in failures[:-1]]}s and"
        f" started {[round(s, 3) for s in lateness]}s after due; then FAILED; the other"
        f" {OTHERS} jobs COMPLETED with {found.effects} effects"
    )
