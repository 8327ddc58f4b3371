"""Fair dispatch: organisation A enqueues a burst, then B a few jobs; how long B waits.

    .venv/bin/python -m bench.tenants [--a 1000] [--b 10]

Runs the real relay and worker (`noop3`: three no-op stages, `bench.noop_workflow`) on a
scratch database three times over the same jobs: without fair dispatch (no window, no
limits: the relay sends everything as it becomes ready, the baseline), with fair dispatch
(the default window of 64), and with fair dispatch and a `max-running` of 8 for each
organisation. For each it prints B's start latency (enqueue to its first stage's start)
p50 and p99, how many of A's jobs had not started when B's last first stage started,
and the throughput (stages a second, enqueue of the first to the end of the last) with
its ratio to the baseline of the same run.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from uuid import UUID

import psycopg

from bench import noop_workflow
from bench.stack import percentile, running, scratch_database
from conveyor.aggregates import Job
from conveyor.application import Jobs
from conveyor.settings import postgres_env
from conveyor.store import datastore_of
from conveyor.store.tenants import TenantStore
from conveyor.tenancy import TenantSettings

STAGES = 3
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Fairness:
    """What one run of the scenario measured."""

    b_waits: list[float]
    a_not_started: int
    stages_per_second: float

    @property
    def p50(self) -> float:
        return percentile(self.b_waits, 50)

    @property
    def p99(self) -> float:
        return percentile(self.b_waits, 99)


def scenario(database_url: str, a_jobs: int, b_jobs: int, *, window: int,
             max_running: int | None = None, timeout: float = 300.0) -> Fairness:
    """A's burst, then B's jobs, through the real relay and worker; measured from the log."""
    jobs = Jobs(env=postgres_env(database_url), workflows={"noop3": noop_workflow.noop3})
    try:
        if max_running is not None:
            store = TenantStore(datastore_of(jobs).get_connection, TenantSettings())
            for org in ("a", "b"):
                store.put(org, TenantSettings(max_running=max_running))
        with running(database_url, ["relay", "worker"], PYTHONPATH=str(ROOT),
                     CONVEYOR_WORKFLOW_MODULES="bench.noop_workflow",
                     CONVEYOR_DISPATCH_WINDOW=str(window)):
            # One job first, so the burst meets a relay and workers that are up.
            _burst(jobs, "warm-up", 1)
            _wait_completed(database_url, 1, timeout)
            a = _burst(jobs, "a", a_jobs)
            b = _burst(jobs, "b", b_jobs)
            _wait_completed(database_url, 1 + a_jobs + b_jobs, timeout)
        firsts = {j: _first_start(jobs, j) for j in a + b}
        b_waits = [(firsts[j] - jobs.get(j).created_on).total_seconds() for j in b]
        last_b = max(firsts[j] for j in b)
        began = min(jobs.get(j).created_on for j in a)
        ended = max(_finished(jobs, j) for j in a + b)
        return Fairness(
            b_waits=b_waits,
            a_not_started=sum(1 for j in a if firsts[j] > last_b),
            stages_per_second=STAGES * (a_jobs + b_jobs) / (ended - began).total_seconds(),
        )
    finally:
        jobs.close()


def _burst(jobs: Jobs, organization: str, n: int) -> list[UUID]:
    """`n` jobs of the organisation, saved 100 to a transaction: at once, as a rebase would."""
    plan = noop_workflow.noop3.plan()
    made = [Job(key=f"{organization}{i}", workflow="noop3", plan=plan, trigger={},
                organization=organization) for i in range(n)]
    for start in range(0, n, 100):
        jobs.save(*made[start:start + 100])
    return [job.id for job in made]


def _first_start(jobs: Jobs, job_id: object) -> datetime:
    return min(a.started_at for a in jobs.get(job_id).attempt_log)  # type: ignore[arg-type]


def _finished(jobs: Jobs, job_id: object) -> datetime:
    finished = jobs.get(job_id).finished_at  # type: ignore[arg-type]
    assert finished is not None
    return finished


def _wait_completed(database_url: str, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with psycopg.connect(database_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute("SELECT count(*) FROM jobs_events"
                               " WHERE topic LIKE '%:Job.Completed'").fetchone()
            if row and row[0] >= n:
                return
            time.sleep(0.2)
    raise TimeoutError(f"{n} jobs did not complete within {timeout}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", type=int, default=1000, help="A's burst of jobs")
    parser.add_argument("--b", type=int, default=10, help="B's jobs, enqueued after A's")
    args = parser.parse_args()
    runs = []
    for label, window, limit in (("no fair dispatch (baseline)", 0, None),
                                 ("fair dispatch, window 64", 64, None),
                                 ("fair, window 64, max-running 8 each", 64, 8)):
        with scratch_database() as database:
            runs.append((label, scenario(database, args.a, args.b, window=window,
                                         max_running=limit)))
    base = runs[0][1].stages_per_second
    print(f"A: {args.a} jobs at once, then B: {args.b} ({STAGES} no-op stages each)")
    print("| run | B start p50 | B start p99 | A not started at B's last start"
          " | stages/s | ratio |")
    print("|---|---|---|---|---|---|")
    for label, run in runs:
        print(f"| {label} | {run.p50 * 1000:.0f} ms | {run.p99 * 1000:.0f} ms"
              f" | {run.a_not_started} | {run.stages_per_second:.0f}"
              f" | {run.stages_per_second / base:.2f} |")


if __name__ == "__main__":
    main()
