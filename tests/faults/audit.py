"""What every fault test checks afterwards, read from the log itself and the effects table."""

from __future__ import annotations

import subprocess
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from conveyor.aggregates import Job
from conveyor.application import Jobs
from tests.e2e.stack import CONVEYOR
from tests.faults.cluster import Cluster

# Lines every fault test reports; the faults conftest prints them in the terminal summary.
REPORT: list[str] = []


def report(line: str) -> None:
    """Print what a test injected or checked, and keep it for the run's summary."""
    print(line, flush=True)
    REPORT.append(line)


@dataclass
class Audit:
    """The log folded per job, against the effects the stages left."""

    events: dict[UUID, list[Any]] = field(default_factory=dict)
    statuses: Counter[str] = field(default_factory=Counter)
    effects: int = 0
    conflicts: int = 0
    recoveries: int = 0
    failures: int = 0
    # Each handler run that found its effect made: (job_id, stage, attempt, worker pid,
    # when), then the same of the run that made it.
    conflicted: list[tuple[Any, ...]] = field(default_factory=list)

    def names(self, job_id: UUID) -> list[str]:
        return [type(e).__name__ for e in self.events[job_id]]

    def twice(self) -> str:
        """Each handler run twice, with its job's history timed from the first run's
        effect: what a failed check shows."""
        return "; ".join(
            f"{job_id} {stage} attempt {attempt} (pid {pid}) ran again"
            f" {(at - made_at).total_seconds():+.3f} s after attempt {made} (pid {maker})"
            f" made the effect: {self.timed(job_id, made_at)}"
            for job_id, stage, attempt, pid, at, made, maker, made_at in self.conflicted)

    def timed(self, job_id: UUID, since: datetime) -> list[str]:
        return [f"{type(e).__name__} {(e.timestamp - since).total_seconds():+.3f}"
                for e in self.events[job_id]]


def fold_log(jobs: Jobs) -> dict[UUID, list[Any]]:
    """Every aggregate's events, read from the notification log in order."""
    found: dict[UUID, list[Any]] = defaultdict(list)
    position = 0
    while True:
        batch = jobs.recorder.select_notifications(start=position, limit=2000,
                                                   inclusive_of_start=False)
        if not batch:
            return dict(found)
        for notification in batch:
            event = jobs.mapper.to_domain_event(notification)
            found[event.originator_id].append(event)
        position = batch[-1].id


def audit(cluster: Cluster, jobs: Jobs, job_ids: list[UUID]) -> Audit:
    """Assert every job is terminal, versions contiguous, one outcome and one effect a stage."""
    result = Audit(events=fold_log(jobs))
    effects = Counter((r[0], r[1]) for r in cluster.query("SELECT job_id, stage FROM effects"))
    result.effects = sum(effects.values())
    result.conflicted = cluster.query(
        "SELECT c.job_id, c.stage, c.attempt, c.worker, c.at, e.attempt, e.worker, e.at"
        " FROM effect_conflicts c JOIN effects e USING (job_id, stage)")
    result.conflicts = len(result.conflicted)
    missing = [job_id for job_id in job_ids if job_id not in result.events]
    assert not missing, f"{len(missing)} accepted jobs have no events, e.g. {missing[:3]}"
    for job_id in job_ids:
        events = result.events[job_id]
        versions = [e.originator_version for e in events]
        assert versions == list(range(1, len(events) + 1)), f"{job_id}: versions {versions}"
        job: Job | None = None
        for event in events:
            job = event.mutate(job)
        assert job is not None
        result.statuses[str(job.status)] += 1
        assert job.status.is_terminal, f"{job_id} ended {job.status}: {result.names(job_id)}"
        completed = Counter(e.stage for e in events if isinstance(e, Job.StageCompleted))
        assert all(n == 1 for n in completed.values()), f"{job_id}: {completed}"
        if job.workflow == "effects":
            for stage in completed:
                assert effects[(job_id, stage)] == 1, f"{job_id} {stage}: no effect"
        result.recoveries += sum(isinstance(e, Job.Recovered) for e in events)
        result.failures += sum(isinstance(e, Job.StageFailed) for e in events)
    # The primary key already forbids a second effect; this says none was lost either.
    completed_stages = sum(
        isinstance(e, Job.StageCompleted) and e.stage in ("first", "second")
        for job_id in job_ids for e in result.events[job_id]
    )
    assert result.effects >= completed_stages
    return result


def verify_read_models(cluster: Cluster) -> str:
    """`conveyor replay verify`: the read models equal a rebuild from the log."""
    done = subprocess.run([CONVEYOR, "replay", "verify"], env=cluster.env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, f"read models differ from the log:\n{done.stdout}{done.stderr}"
    return " ".join(line.strip() for line in done.stdout.splitlines() if line.strip())


def peak_running(jobs: Jobs, job_ids: list[UUID]) -> tuple[int, datetime | None]:
    """The most stage attempts of these jobs running at one instant, from Started.at to the
    outcome's at of every attempt in their histories, and when it was first reached."""
    edges: list[tuple[datetime, int]] = []
    for job_id in job_ids:
        for attempt in jobs.get(job_id).attempt_log:
            assert attempt.finished_at is not None, (job_id, attempt)
            edges += [(attempt.started_at, 1), (attempt.finished_at, -1)]
    running = peak = 0
    when = None
    # An attempt that ends at the instant another starts did not overlap it.
    for at, change in sorted(edges):
        running += change
        if running > peak:
            peak, when = running, at
    return peak, when
