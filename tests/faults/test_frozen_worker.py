"""SIGSTOP a worker past its stage deadline; the stage is recovered elsewhere; SIGCONT it."""

from __future__ import annotations

import os
import signal
import time

from conveyor.aggregates import Job
from conveyor.application import Jobs
from tests.conftest import AMQP_URL
from tests.faults.audit import audit, report
from tests.faults.cluster import Cluster
from tests.faults.supervise import lease_holders
from tests.waiting import wait_until

# RabbitMQ notices a frozen worker by its missed heartbeats and hands its messages on.
HEARTBEAT_URL = f"{AMQP_URL}?heartbeat=2"


def test_a_frozen_worker_woken_after_its_stage_was_recovered_records_no_second_outcome(
    faulty: Cluster, jobs: Jobs,
) -> None:
    # Given two workers and a job whose stage is running on one of them
    faulty.add("relay")
    workers = [faulty.add(f"worker-{n}", "worker", CONVEYOR_AMQP_URL=HEARTBEAT_URL)
               for n in "ab"]
    job_id = jobs.enqueue("effects", "frozen", {"seconds": 1.0}).job_id
    holders = wait_until(lambda: lease_holders(faulty, workers), timeout=30, interval=0.02)
    (pid, frozen), = holders.items()
    stage = faulty.leases()[0][1]

    # When that worker is frozen past its deadline and the relay recovers the stage
    os.kill(pid, signal.SIGSTOP)
    frozen_at = time.monotonic()
    try:
        wait_until(lambda: faulty.terminal_jobs() == 1, timeout=60, interval=0.1)
        recovered_after = time.monotonic() - frozen_at
    finally:
        # Then, woken, the frozen worker finishes its handler and tries to record it
        os.kill(pid, signal.SIGCONT)
    wait_until(lambda: f"{job_id} {stage} #1: discarded" in frozen.log.read_text(),
               timeout=30, interval=0.1)

    # Then exactly one outcome is recorded for the stage, and its effect exists once
    found = audit(faulty, jobs, [job_id])
    events = found.events[job_id]
    outcomes = [e for e in events if isinstance(e, Job.StageCompleted) and e.stage == stage]
    assert len(outcomes) == 1 and outcomes[0].attempt == 2
    assert found.names(job_id).count("Recovered") == 1
    assert found.statuses["COMPLETED"] == 1
    report(
        f"frozen worker: SIGSTOP pid {pid} mid-stage {stage!r} attempt 1; recovered and"
        f" completed elsewhere {recovered_after:.1f}s later; SIGCONT: its late outcome was"
        f" discarded; outcomes for the stage: 1 (attempt 2); effect rows {found.effects},"
        f" late effect writes refused by key {found.conflicts}; events {found.names(job_id)}"
    )
