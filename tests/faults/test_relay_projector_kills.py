"""kill -9 the relay mid-dispatch and the projector mid-batch, over and over."""

from __future__ import annotations

import random
import time
from collections import Counter

from conveyor.application import Jobs
from tests.faults.audit import audit, report, verify_read_models
from tests.faults.cluster import Cluster
from tests.waiting import wait_until

ROUNDS = 20
JOBS_PER_ROUND = 15


def test_killing_the_relay_and_projector_repeatedly_loses_nothing_and_applies_nothing_twice(
    faulty: Cluster, jobs: Jobs,
) -> None:
    # Given two relays (one active, one standby), a projector and two workers
    relays = [faulty.add("relay-a", "relay"), faulty.add("relay-b", "relay")]
    projector = faulty.add("projector")
    faulty.add("worker-a", "worker")
    faulty.add("worker-b", "worker")

    # When jobs keep arriving and the relays and projector are killed with SIGKILL
    rng = random.Random(20)
    job_ids = []
    kills: Counter[str] = Counter()
    for round_ in range(ROUNDS):
        job_ids += [jobs.enqueue("effects", f"relay:{round_}:{i}", {"seconds": 0.05}).job_id
                    for i in range(JOBS_PER_ROUND)]
        time.sleep(rng.uniform(0.05, 0.4))  # the fault schedule: mid-dispatch, mid-batch
        relay = rng.choice(relays)
        relay.kill()
        kills["relay"] += 1
        if round_ % 2 == 0:
            projector.kill()
            kills["projector"] += 1
        time.sleep(rng.uniform(0.0, 0.5))
        relay.start()
        if not projector.alive():
            projector.start()

    # Then every job completes, each stage once
    wait_until(lambda: faulty.terminal_jobs() == len(job_ids), timeout=120, interval=0.5)
    found = audit(faulty, jobs, job_ids)
    assert found.statuses == Counter({"COMPLETED": len(job_ids)})

    # And the read model, once caught up, equals the fold of the log and a rebuild from it
    def projected() -> bool:
        rows = faulty.query("SELECT job_id, status, version FROM jobs")
        return {r[0]: (r[1], r[2]) for r in rows} == {
            job_id: ("COMPLETED", len(found.events[job_id])) for job_id in job_ids}

    wait_until(projected, timeout=60, interval=0.5)
    verified = verify_read_models(faulty)
    report(
        f"relay/projector kills: {kills['relay']} kill -9 of a relay (2 running, one active),"
        f" {kills['projector']} of the projector, while {len(job_ids)} jobs arrived; jobs"
        f" {dict(found.statuses)}; effects {found.effects} for {2 * len(job_ids)} stages"
        f" (re-runs refused by key {found.conflicts}); jobs table equals the log's fold;"
        f" replay verify: {verified}"
    )
