"""Retention at scale: 10,000 finished jobs leave the store for files, byte for byte.

The jobs are made through the aggregate and saved 500 to a save, not through HTTP: the
test is about the archive, and 10,000 deliveries would spend its minutes on ingest.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg

from conveyor.aggregates import Job
from conveyor.application import Jobs
from conveyor.replay import verify
from conveyor.retention.archive import archive
from conveyor.retention.files import manifests, read_file
from conveyor.settings import Settings
from tests.integration.projections_support import project, trigger

JOBS = 10_000
SAVE = 500
TENANTS = ("acme", "globex", None)


def finished_long_ago(jobs: Jobs, i: int, at: datetime) -> Job:
    """Job `i`, cancelled (odd) or completed stage by stage (even) around `at`."""
    definition = jobs.workflows["code_review"]
    job = Job(key=f"ha-retention-{i}", workflow="code_review", plan=definition.plan(frozenset()),
              trigger=trigger(i), organization=TENANTS[i % 3],
              workflow_version=definition.version)
    if i % 2:
        job.cancel(reason="superseded", by="ha", at=at)
        return job
    while stages := job.ready_stages():
        for stage in stages:
            attempt = job.runs[stage].attempt
            job.start_stage(stage, attempt, at=at)
            job.complete_stage(stage, attempt, {"ok": i}, at=at + timedelta(seconds=1))
    return job


def rows_of(conn: psycopg.Connection[Any], ids: list[UUID]) -> dict[UUID, list[tuple[Any, ...]]]:
    found: dict[UUID, list[tuple[Any, ...]]] = defaultdict(list)
    for row in conn.execute(
            "SELECT originator_id, originator_version, topic, state, notification_id"
            " FROM jobs_events WHERE originator_id = ANY(%s)"
            " ORDER BY originator_id, originator_version", (ids,)):
        found[row[0]].append(row)
    return found


def one(conn: psycopg.Connection[Any], sql: str, *params: Any) -> int:
    found = conn.execute(sql, params).fetchone()
    assert found is not None
    return int(found[0])


def test_ten_thousand_finished_jobs_are_archived_byte_for_byte_and_removed_once(
    settings: Settings, jobs: Jobs, tmp_path: Path
) -> None:
    # Given 10,000 jobs finished 40 to 54 days ago, and jobs that must stay: finished
    # yesterday, and still running
    archiving = dataclasses.replace(settings, archive_dir=tmp_path / "archive")
    now = datetime.now(UTC)
    first = now - timedelta(days=54)
    old: list[UUID] = []
    saved_events = 0
    for start in range(0, JOBS, SAVE):
        batch = [finished_long_ago(jobs, i, first + timedelta(minutes=2 * i))
                 for i in range(start, start + SAVE)]
        jobs.save(*batch)
        old += [job.id for job in batch]
        saved_events += sum(job.version for job in batch)
    recent = [finished_long_ago(jobs, JOBS + i, now - timedelta(days=1)) for i in range(10)]
    jobs.save(*recent)
    running = [jobs.enqueue("code_review", f"ha-running-{i}", trigger(i)).job_id
               for i in range(10)]
    project(archiving)
    with psycopg.connect(str(archiving.database_url)) as conn:
        before = rows_of(conn, old)
        events_before = one(conn, "SELECT count(*) FROM jobs_events")
    archived_events = sum(len(rows) for rows in before.values())
    assert len(before) == JOBS and archived_events == saved_events

    # When the archive runs with a 30 days' retention, while new jobs keep arriving
    stop = threading.Event()
    arrived: list[UUID] = []
    refused: list[BaseException] = []

    def arrive() -> None:
        while not stop.is_set():
            try:
                arrived.append(jobs.enqueue("code_review", f"ha-during-{len(arrived)}",
                                            trigger(len(arrived))).job_id)
            except Exception as error:  # an append held off past its lock timeout
                refused.append(error)

    writer = threading.Thread(target=arrive)
    writer.start()
    try:
        report = archive(archiving, older_than=timedelta(days=30), out=lambda _: None)
    finally:
        stop.set()
        writer.join()

    # Then no arriving job was refused, exactly the 10,000 went, with exactly their events
    assert refused == [] and len(arrived) > 0
    assert (report.jobs, report.events, report.removed_events) == (
        JOBS, archived_events, archived_events)
    with psycopg.connect(str(archiving.database_url)) as conn:
        assert one(conn, "SELECT count(*) FROM jobs_events") == (
            events_before + len(arrived) - archived_events)
        assert one(conn, "SELECT count(*) FROM jobs_events WHERE originator_id = ANY(%s)",
                   arrived) == len(arrived)
        assert one(conn, "SELECT count(*) FROM jobs_events WHERE originator_id = ANY(%s)",
                   old) == 0
        assert one(conn, "SELECT count(*) FROM jobs WHERE job_id = ANY(%s)", old) == 0
        assert one(conn, "SELECT count(*) FROM job_events WHERE job_id = ANY(%s)", old) == 0
        # (the arrivals are not projected: no projector runs here)
        assert one(conn, "SELECT count(*) FROM jobs") == 20
        assert one(conn, "SELECT count(*) FROM jobs WHERE job_id = ANY(%s)",
                   [j.id for j in recent] + running) == 20
        assert one(conn, "SELECT count(*) FROM archived_jobs") == JOBS

    # And the files, one per finish day, reproduce every stream byte for byte
    assert archiving.archive_dir is not None
    [manifest] = manifests(archiving.archive_dir)
    days = {(first + timedelta(minutes=2 * i)).date() for i in range(JOBS)}
    assert sorted(f.day for f in manifest.files) == sorted(days)
    archived: dict[UUID, list[tuple[Any, ...]]] = defaultdict(list)
    for entry in manifest.files:
        for row in read_file(archiving.archive_dir, entry):
            archived[row.job_id].append(dataclasses.astuple(row))
    assert archived == before

    # And the read models are what the remaining log makes
    assert verify(archiving, ["jobs", "job_history", "metrics"], out=lambda _: None) == []

    # When it runs again, nothing new is archived
    again = archive(archiving, older_than=timedelta(days=30), out=lambda _: None)
    assert (again.jobs, again.events, again.resumed) == (0, 0, 0)
    assert len(manifests(archiving.archive_dir)) == 1
