"""End to end: version 1's jobs in flight, some paused for an outside event, moved explicitly onto
version 2 with `conveyor workflows migrate` after every version-1 worker stopped (issue 14's
second deploy test, docs/architecture.md §3.9)."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path
from typing import Any

import orjson
import psycopg

from conveyor.settings import Settings
from tests.e2e import deploy_v1, deploy_v2_migrating
from tests.e2e.stack import CONVEYOR, request
from tests.e2e.test_rolling_deploy import (
    WRITE,
    Fleet,
    fleet,
    line_of,
    start_jobs,
    workflows_listing,
)
from tests.waiting import wait_until


def jobs_read(settings: Settings) -> dict[str, dict[str, Any]]:
    with psycopg.connect(settings.require_database_url()) as conn:
        rows = conn.execute("SELECT job_id::text, status, workflow_version, outputs FROM jobs"
                            " WHERE workflow = 'deploy_review'").fetchall()
    return {job_id: {"status": status, "version": version, "outputs": outputs}
            for job_id, status, version, outputs in rows}


V1, V2 = deploy_v1.deploy_review, deploy_v2_migrating.deploy_review
CODE = "v2_migrating"
PAUSED, QUEUED = 10, 5


def migrate(processes: Fleet, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CONVEYOR, "workflows", "migrate", "deploy_review", "--from",
                           V1.version, *options], env=processes.env(CODE),
                          capture_output=True, text=True, timeout=120)


def attempts(settings: Settings, job_id: str) -> list[tuple[str, str]]:
    with psycopg.connect(settings.require_database_url()) as conn:
        return [(stage, outcome) for stage, outcome in conn.execute(
            "SELECT stage, outcome FROM job_stage_attempts WHERE job_id = %s"
            " ORDER BY started_version", (job_id,))]


def migrations_of(settings: Settings, job_id: str) -> list[dict[str, object]]:
    with psycopg.connect(settings.require_database_url()) as conn:
        return [data for (data,) in conn.execute(
            "SELECT data FROM job_events WHERE job_id = %s AND type = 'Migrated'", (job_id,))]


def test_paused_and_queued_jobs_moved_onto_version_2_finish_on_its_graph(
    settings: Settings, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:6]
    with fleet(settings, tmp_path) as processes:
        # Given workers on version 1 and 10 jobs paused for an outside event
        for label in ("relay", "projector", "worker-v1-a", "worker-v1-b"):
            processes.start(label, label.split("-")[0], "v1")
        api = processes.start("api-v1", "api", "v1")
        paused = start_jobs(api, [f"{run}-paused-{n}" for n in range(PAUSED)], True)
        wait_until(lambda: all(jobs_read(settings).get(job_id, {}).get("status")
                               == "WAITING_FOR_EVENT" for job_id in paused), timeout=60)
        # and, once every version-1 worker stopped, 5 more queued on version 1
        processes.stop("worker-v1-a")
        processes.stop("worker-v1-b")
        queued = start_jobs(api, [f"{run}-queued-{n}" for n in range(QUEUED)], False)

        # When version 2 is deployed with its declared migration
        processes.stop("api-v1")
        api = processes.start("api-v2", "api", CODE)
        processes.start("worker-v2-a", "worker", CODE)
        processes.start("worker-v2-b", "worker", CODE)
        wait_until(lambda: len(jobs_read(settings)) == PAUSED + QUEUED, timeout=60)
        listing = workflows_listing(processes, CODE)
        assert line_of(listing, V1.version).split()[2:] == [
            "15", "0", "waiting:", "no", "worker", "runs", "this", "version"], listing

        # and the operator looks first, then migrates
        dry = migrate(processes, "--dry-run")
        assert (dry.returncode, dry.stdout.count("would migrate ")) == (0, 15), dry
        assert {job["version"] for job in jobs_read(settings).values()} == {V1.version}
        done = migrate(processes)
        assert done.returncode == 0, done
        assert done.stdout.splitlines()[-1] == (
            f"deploy_review v{V1.version} -> v2: 15 migrated, 0 skipped, 0 blocked"), done
        # (a second run moves nothing)
        wait_until(lambda: {job["version"] for job in jobs_read(settings).values()} == {"2"},
                   timeout=60)
        again = migrate(processes)
        assert (again.returncode, again.stdout.splitlines()[-1]) == (
            0, f"deploy_review v{V1.version} -> v2: 0 migrated, 0 skipped, 0 blocked"), again

        # and the paused jobs' events arrive
        for job_id in paused:
            code, answer = request(f"{api}/workflow-queue/events", orjson.dumps(
                {"id": f"analysed-{job_id}", "type": "deploy.analysed", "key": job_id,
                 "payload": {}}), WRITE)
            assert code == 202, answer

        # Then every job completes on version 2's graph, none fails
        wait_until(lambda: {job["status"] for job in jobs_read(settings).values()}
                   == {"COMPLETED"}, timeout=120)
        jobs = jobs_read(settings)
        v2 = {"code": "v2"}
        assert {job_id: (jobs[job_id]["version"], jobs[job_id]["outputs"])
                for job_id in paused} == {job_id: ("2", {
                    "fetch": {"code": "v1"}, "analyse_code": v2, "lint": v2, "publish": v2})
                    for job_id in paused}
        assert {job_id: (jobs[job_id]["version"], jobs[job_id]["outputs"])
                for job_id in queued} == {job_id: ("2", {
                    stage["stage"]: v2 for stage in V2.plan()}) for job_id in queued}
        # the paused stage completed under its new name, the new stage ran, as the history says
        assert attempts(settings, paused[0]) == [
            ("fetch", "completed"), ("analyse", "paused"), ("analyse_code", "completed"),
            ("lint", "completed"), ("publish", "completed")]
        assert [(m["from_version"], m["to_version"], m["renamed"])
                for m in migrations_of(settings, paused[0])] == [
            (V1.version, "2", {"analyse": "analyse_code"})]

        # And `conveyor workflows` lists version 1 no more: drained, with no worker left
        listing = workflows_listing(processes, CODE)
        assert f"v{V1.version}" not in listing, listing
        assert line_of(listing, "2").split()[2:] == ["0", "2", "current"], listing
