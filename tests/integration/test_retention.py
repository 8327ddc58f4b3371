"""`conveyor archive`: finished jobs leave the store for files, and nothing is lost or doubled."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest

from conveyor.application import Jobs
from conveyor.cli import main
from conveyor.replay import show_job, verify
from conveyor.retention import archive as archive_module
from conveyor.retention.archive import archive
from conveyor.retention.files import find_job, manifests
from conveyor.settings import Settings
from conveyor.store import datastore_of
from conveyor.store.tenants import TenantStore
from conveyor.tenancy import TenantSettings
from tests.integration.projections_support import fail_next, project, trigger, varied_history

ALL = ["jobs", "job_history", "metrics"]


def count(settings: Settings, sql: str, *params: Any) -> int:
    with psycopg.connect(str(settings.database_url)) as conn:
        found = conn.execute(sql, params).fetchone()
    assert found is not None
    return int(found[0])


def finished(settings: Settings) -> list[UUID]:
    with psycopg.connect(str(settings.database_url)) as conn:
        return [r[0] for r in conn.execute(
            "SELECT job_id FROM jobs WHERE finished_at IS NOT NULL ORDER BY job_id")]


def stored(settings: Settings, job_id: UUID) -> list[tuple[Any, ...]]:
    with psycopg.connect(str(settings.database_url)) as conn:
        return conn.execute(
            "SELECT originator_id, originator_version, topic, state, notification_id"
            " FROM jobs_events WHERE originator_id = %s ORDER BY originator_version",
            (job_id,)).fetchall()


@pytest.fixture
def archiving(settings: Settings, tmp_path: Path) -> Settings:
    return dataclasses.replace(settings, archive_dir=tmp_path / "archive")


def history_of(settings: Settings, job_id: UUID, archive_dir: Path | None = None) -> list[str]:
    lines: list[str] = []
    assert show_job(settings, job_id, None, None, out=lines.append, archive=archive_dir) == 0
    return lines


def test_finished_jobs_are_archived_removed_and_still_shown_and_a_rerun_adds_nothing(
    archiving: Settings, jobs: Jobs
) -> None:
    # Given jobs of every kind, some finished, some not, and one enqueued last
    varied_history(jobs, n=24)
    jobs.enqueue("code_review", "still-running", trigger(99))
    project(archiving)
    done = finished(archiving)
    events_before = count(archiving, "SELECT count(*) FROM jobs_events")
    streams = {j: stored(archiving, j) for j in done}
    histories = {j: history_of(archiving, j) for j in done}
    assert len(done) == 4

    # When they are archived with a retention of zero
    report = archive(archiving, older_than=timedelta(0), out=lambda _: None)

    # Then every finished job went, with exactly its events, and the running one stayed
    assert (report.jobs, report.events) == (4, sum(len(s) for s in streams.values()))
    assert report.removed_events == report.events
    assert count(archiving, "SELECT count(*) FROM jobs_events") == events_before - report.events
    assert finished(archiving) == []
    assert count(archiving, "SELECT count(*) FROM jobs") == 25 - 4
    for table in ("jobs", "job_events", "job_stage_attempts"):
        assert count(archiving, f"SELECT count(*) FROM {table} WHERE job_id = ANY(%s)",
                     done) == 0
    assert count(archiving, "SELECT count(*) FROM archived_jobs") == 4
    # And the files hold each stream byte for byte, and show the same history
    assert archiving.archive_dir is not None
    for job_id, rows in streams.items():
        assert [dataclasses.astuple(r) for r in find_job(archiving.archive_dir, job_id)] == rows
        assert history_of(archiving, job_id, archiving.archive_dir) == histories[job_id]
    # And the read models are what the remaining log makes, metrics included
    assert verify(archiving, ALL, out=lambda _: None) == []

    # When it runs again
    again = archive(archiving, older_than=timedelta(0), out=lambda _: None)

    # Then nothing new is archived, and no manifest is added
    assert (again.jobs, again.events, again.runs) == (0, 0, [])
    assert len(manifests(archiving.archive_dir)) == 1


def test_a_redelivered_key_of_an_archived_job_finds_it_and_starts_nothing(
    archiving: Settings, jobs: Jobs
) -> None:
    # Given a cancelled job, archived
    job_id = jobs.enqueue("code_review", "old-key", trigger(1)).job_id
    jobs.cancel(job_id, reason="superseded", by="tester")
    jobs.enqueue("code_review", "newer", trigger(2))
    project(archiving)
    assert archive(archiving, older_than=timedelta(0), out=lambda _: None).jobs == 1
    events = count(archiving, "SELECT count(*) FROM jobs_events")

    # When its key is enqueued again
    again = jobs.enqueue("code_review", "old-key", trigger(1))

    # Then the archived job answers and nothing is stored
    assert (again.job_id, again.created) == (job_id, False)
    assert count(archiving, "SELECT count(*) FROM jobs_events") == events


def test_a_run_cut_short_after_its_files_is_finished_by_the_next_without_a_second_copy(
    archiving: Settings, jobs: Jobs, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given finished jobs, and a run that dies once its files and manifest are written
    varied_history(jobs, n=24)
    jobs.enqueue("code_review", "last", trigger(50))
    project(archiving)
    events_before = count(archiving, "SELECT count(*) FROM jobs_events")
    remove = archive_module._remove

    def die(*args: Any) -> int:
        raise SystemExit("killed")

    monkeypatch.setattr(archive_module, "_remove", die)
    with pytest.raises(SystemExit):
        archive(archiving, older_than=timedelta(0), out=lambda _: None)
    assert count(archiving, "SELECT count(*) FROM jobs_events") == events_before
    monkeypatch.setattr(archive_module, "_remove", remove)

    # When the archive runs again
    said: list[str] = []
    report = archive(archiving, older_than=timedelta(0), out=said.append)

    # Then it finishes the first run's removal and finds nothing new to write
    assert report.resumed == 1 and report.jobs == 0
    assert archiving.archive_dir is not None
    [manifest] = manifests(archiving.archive_dir)
    assert manifest.jobs == 4
    assert events_before - count(archiving, "SELECT count(*) FROM jobs_events") == manifest.events
    assert finished(archiving) == []
    assert said[0] == f"finished the removal of run {manifest.run}, cut short before"
    assert verify(archiving, ALL, out=lambda _: None) == []


def test_each_organisation_keeps_its_own_retention_and_the_others_the_default(
    archiving: Settings, jobs: Jobs
) -> None:
    # Given jobs of acme (1 day retention), globex (set to none: the default) and of none
    ids = {org: jobs.enqueue("code_review", f"k-{org}", trigger(i), organization=org).job_id
           for i, org in enumerate(["acme", "globex", None])}
    for job_id in ids.values():
        jobs.cancel(job_id, reason="superseded", by="tester")
    jobs.enqueue("code_review", "last", trigger(9))
    project(archiving)
    tenants = TenantStore(datastore_of(jobs).get_connection, archiving.tenant_defaults)
    assert tenants.set_retention("acme", 1).retention_days == 1
    tenants.update("globex", TenantSettings(priority=20))
    two_days_on = datetime.now(UTC) + timedelta(days=2)

    # When archived two days on with the default retention of forever
    dry = archive(dataclasses.replace(archiving, archive_dir=None), dry_run=True,
                  now=two_days_on, out=lambda _: None)
    forever = archive(archiving, now=two_days_on, out=lambda _: None)
    # and then with a default of 3 days, then 1 day
    three = archive(dataclasses.replace(archiving, retention_days=3), now=two_days_on,
                    out=lambda _: None)
    one = archive(dataclasses.replace(archiving, retention_days=1), now=two_days_on,
                  out=lambda _: None)

    # Then acme's job goes first, the others only once the default is passed
    assert (dry.jobs, forever.jobs, three.jobs, one.jobs) == (1, 1, 0, 2)
    assert count(archiving, "SELECT count(*) FROM archived_jobs WHERE organization = 'acme'") == 1
    assert count(archiving, "SELECT count(*) FROM archived_jobs") == 3


def test_a_job_retried_after_its_archive_was_written_stays_in_the_store(
    archiving: Settings, jobs: Jobs, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given two failed jobs, one of which is retried once the run's files are written
    failed = [jobs.enqueue("code_review", f"fails-{i}", trigger(i)).job_id for i in range(2)]
    for job_id in failed:
        fail_next(jobs, job_id, retry=False)
    jobs.enqueue("code_review", "last", trigger(9))
    project(archiving)
    retried, gone = failed
    versions = len(stored(archiving, retried))
    remove = archive_module._remove

    def retry_then_remove(*args: Any) -> int:
        jobs.retry(retried, by="tester")
        return remove(*args)

    monkeypatch.setattr(archive_module, "_remove", retry_then_remove)

    # When the archive runs
    report = archive(archiving, older_than=timedelta(0), out=lambda _: None)

    # Then both were written, but only the one not retried left the store
    assert report.jobs == 2
    assert len(stored(archiving, retried)) == versions + 1 and stored(archiving, gone) == []
    assert count(archiving, "SELECT count(*) FROM jobs WHERE job_id = %s", retried) == 1
    assert count(archiving, "SELECT count(*) FROM archived_jobs") == 1
    assert report.removed_events == report.events - versions
    assert verify(archiving, ALL, out=lambda _: None) == []


def test_the_commands_archive_and_then_show_a_job_from_its_file(
    settings: Settings, jobs: Jobs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a cancelled job, projected, and the settings in the environment
    job_id = jobs.enqueue("code_review", "by-cli", trigger(1)).job_id
    jobs.cancel(job_id, reason="superseded", by="tester")
    jobs.enqueue("code_review", "last", trigger(2))
    project(settings)
    live = history_of(settings, job_id)
    monkeypatch.setenv("CONVEYOR_DATABASE_URL", str(settings.database_url))
    monkeypatch.setenv("CONVEYOR_ARCHIVE_DIR", str(tmp_path))

    # When it is counted, archived, then shown
    assert main(["archive", "--older-than", "0d", "--dry-run"]) == 0
    dry = capsys.readouterr().out.splitlines()
    assert main(["archive", "--older-than", "0d"]) == 0
    done = capsys.readouterr().out.splitlines()
    assert main(["replay", "job", str(job_id)]) == 1
    missing = capsys.readouterr().out.splitlines()
    assert main(["replay", "job", str(job_id), "--archive", str(tmp_path)]) == 0
    shown = capsys.readouterr().out.splitlines()

    # Then each says what it did, and the archived history is the live one
    assert dry[-1] == "would archive 1 job(s), 2 event(s)"
    [file] = [p.name for p in tmp_path.glob("*.ndjson.gz")]
    [manifest] = manifests(tmp_path)
    assert done == [f"run {manifest.run}: 1 job(s), 2 event(s), 1 file(s)",
                    f"archived 1 job(s), 2 event(s), in 1 run(s) to {tmp_path}"]
    assert missing == [f"job {job_id} was archived to {file}: add --archive DIR"]
    assert shown == live


def test_a_large_archive_is_cut_into_runs_each_written_then_removed(
    archiving: Settings, jobs: Jobs, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given five finished jobs and runs of at most two jobs
    for i in range(5):
        job_id = jobs.enqueue("code_review", f"many-{i}", trigger(i)).job_id
        jobs.cancel(job_id, reason="superseded", by="tester")
    jobs.enqueue("code_review", "last", trigger(9))
    project(archiving)
    monkeypatch.setattr(archive_module, "RUN_JOBS", 2)

    # When archived
    report = archive(archiving, older_than=timedelta(0), out=lambda _: None)

    # Then three runs took them, two, two and one, each removed before the next
    assert archiving.archive_dir is not None
    assert [m.jobs for m in manifests(archiving.archive_dir)] == [2, 2, 1]
    assert (report.jobs, len(report.runs)) == (5, 3)
    assert finished(archiving) == []
    assert count(archiving, "SELECT count(*) FROM archive_runs") == 3


def test_a_schedules_last_run_stays_until_another_run_replaces_it(
    archiving: Settings, jobs: Jobs
) -> None:
    # Given two finished runs of a schedule, the later one its last
    runs = [jobs.enqueue("code_review", f"schedule:nightly@{i}", trigger(i)).job_id
            for i in range(2)]
    for job_id in runs:
        jobs.cancel(job_id, reason="superseded", by="tester")
    jobs.enqueue("code_review", "last", trigger(9))
    project(archiving)
    with psycopg.connect(str(archiving.database_url)) as conn:
        conn.execute("INSERT INTO schedules (name, cron, workflow, last_job_id)"
                     " VALUES ('nightly', '0 3 * * *', 'code_review', %s)", (runs[1],))

    # When archived
    report = archive(archiving, older_than=timedelta(0), out=lambda _: None)

    # Then only the earlier run went: the scheduler still reads the last one
    assert report.jobs == 1
    assert finished(archiving) == [runs[1]]
    assert jobs.get(runs[1]).status.is_terminal
