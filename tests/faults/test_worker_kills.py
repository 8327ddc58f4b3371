"""kill -9 workers mid-stage, over and over, while hundreds of jobs run."""

from __future__ import annotations

import random
import time
from collections import Counter

from conveyor.application import Jobs
from tests.faults.audit import audit, report
from tests.faults.cluster import Cluster
from tests.faults.supervise import kill_mid_stage
from tests.waiting import wait_until

JOBS = 500
KILLS = 50


def test_killing_workers_mid_stage_fifty_times_loses_no_job_and_repeats_no_effect(
    faulty: Cluster, jobs: Jobs,
) -> None:
    # Given two supervised workers and a relay, and 500 jobs of two stages each
    began = time.monotonic()
    faulty.add("relay")
    workers = [faulty.add("worker-a", "worker"), faulty.add("worker-b", "worker")]
    job_ids = [jobs.enqueue("effects", f"kill:{i}", {"seconds": 0.3}).job_id
               for i in range(JOBS)]

    # When a worker holding a stage lease is killed with SIGKILL, 50 times
    rng = random.Random(50)
    kills: Counter[str] = Counter()
    while sum(kills.values()) < KILLS:
        kills[kill_mid_stage(faulty, workers, rng)] += 1
        time.sleep(rng.uniform(0.1, 0.6))  # the fault schedule, not a synchronisation
    killed_at = faulty.terminal_jobs()

    # Then every job reaches a terminal state, with each stage's effect and outcome once
    wait_until(lambda: faulty.terminal_jobs() == JOBS, timeout=240, interval=0.5)
    found = audit(faulty, jobs, job_ids)
    assert found.statuses == Counter({"COMPLETED": JOBS})
    assert found.effects == 2 * JOBS
    report(
        f"worker kills: {sum(kills.values())} kill -9 mid-stage ({kills['child']} of a"
        f" Dramatiq child, {kills['group']} of a whole `conveyor worker`), {killed_at} of"
        f" {JOBS} jobs done when the kills ended; jobs {dict(found.statuses)}; effects"
        f" {found.effects} rows for {2 * JOBS} stages, {found.conflicts} re-run stages found"
        f" their effect already written; recoveries {found.recoveries}; versions contiguous;"
        f" {time.monotonic() - began:.0f}s"
    )
