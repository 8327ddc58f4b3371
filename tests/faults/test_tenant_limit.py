"""A tenant's max-running holds at every instant, across worker kills and relay restarts."""

from __future__ import annotations

import random
import time
from collections import Counter

from conveyor.application import Jobs
from conveyor.store import datastore_of
from conveyor.store.tenants import TenantStore
from conveyor.tenancy import TenantSettings
from tests.faults.audit import audit, peak_running, report
from tests.faults.cluster import Cluster
from tests.faults.supervise import kill_mid_stage
from tests.waiting import wait_until

LIMIT = 3
LIMITED_JOBS = 60
OTHER_JOBS = 30


def test_a_tenant_never_runs_more_than_its_limit_across_worker_kills_and_relay_restarts(
    faulty: Cluster, jobs: Jobs,
) -> None:
    # Given acme limited to 3 stages at once, 60 of its jobs and 30 of another's,
    # two supervised workers of 4 threads each, and a relay
    began = time.monotonic()
    TenantStore(datastore_of(jobs).get_connection, TenantSettings()).put(
        "acme", TenantSettings(max_running=LIMIT))
    relay = faulty.add("relay")
    workers = [faulty.add("worker-a", "worker"), faulty.add("worker-b", "worker")]
    limited = [jobs.enqueue("effects", f"acme:{i}", {"seconds": 0.3},
                            organization="acme").job_id for i in range(LIMITED_JOBS)]
    other = [jobs.enqueue("effects", f"other:{i}", {"seconds": 0.3},
                          organization="other").job_id for i in range(OTHER_JOBS)]

    # When workers are killed with SIGKILL mid-stage, the relay is restarted with
    # SIGTERM, then killed with SIGKILL and started again, then workers are killed again
    rng = random.Random(4)
    kills: Counter[str] = Counter()
    for _ in range(3):
        kills[kill_mid_stage(faulty, workers, rng)] += 1
    relay.terminate()
    relay.start()
    for _ in range(2):
        kills[kill_mid_stage(faulty, workers, rng)] += 1
    relay.kill()
    relay.start()
    for _ in range(3):
        kills[kill_mid_stage(faulty, workers, rng)] += 1

    # Then every job completes, each stage's effect once
    wait_until(lambda: faulty.terminal_jobs() == LIMITED_JOBS + OTHER_JOBS,
               timeout=240, interval=0.5)
    found = audit(faulty, jobs, limited + other)
    assert found.statuses == Counter({"COMPLETED": LIMITED_JOBS + OTHER_JOBS})

    # And at no instant of their histories did acme run more than 3 stages, while it
    # did reach 3 (the limit, not a lack of work, bounded it), and the other
    # organisation, unlimited, ran more than 3 at once
    peak, _ = peak_running(jobs, limited)
    other_peak, _ = peak_running(jobs, other)
    assert peak == LIMIT, peak
    assert other_peak > LIMIT, other_peak
    # And nothing is left held or in flight
    assert faulty.count("SELECT count(*) FROM relay_dispatches") == 0
    report(
        f"tenant limit: acme max-running {LIMIT}, {LIMITED_JOBS} acme jobs and {OTHER_JOBS}"
        f" of another organisation; {sum(kills.values())} worker kill -9 mid-stage"
        f" ({dict(kills)}), relay SIGTERM-restarted and kill -9-restarted; all"
        f" {dict(found.statuses)}; acme's peak running from the history {peak} (other's"
        f" {other_peak}); recoveries {found.recoveries}; {time.monotonic() - began:.0f}s"
    )
