"""Moving a job onto a new version of its workflow: what each stage becomes, and what blocks it."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from conveyor.aggregates import (
    Classification,
    Job,
    JobFinishedError,
    MigrationBlockedError,
    PlanStep,
    StageState,
    Status,
    TransitionError,
)
from conveyor.aggregates.stages import carried
from conveyor.application import Jobs
from conveyor.workflows import (
    MisdeclaredMigrationError,
    NoMigrationError,
    StageContext,
    Workflow,
    WorkflowError,
)

NOW = datetime.now(UTC)
DEADLINE = NOW + timedelta(hours=1)
MAPPER = Jobs(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}).mapper

# Version 1: fetch -> analyse -> publish. Version 2 renames analyse and adds lint after it.
V1 = [PlanStep(stage="fetch", after=[]), PlanStep(stage="analyse", after=["fetch"]),
      PlanStep(stage="publish", after=["analyse"])]
V2 = [PlanStep(stage="fetch", after=[]), PlanStep(stage="analyse_code", after=["fetch"]),
      PlanStep(stage="lint", after=["analyse_code"]),
      PlanStep(stage="publish", after=["lint"])]
RENAMED = {"analyse": "analyse_code"}


def job_on_v1(*, pause_analyse: bool = True) -> Job:
    """A v1 job whose fetch is done and whose analyse paused for an outside event."""
    job = Job(key="k", workflow="review", plan=list(V1), trigger={}, workflow_version="1")
    job.start_stage("fetch", 1, NOW)
    job.complete_stage("fetch", 1, {"fetched": True}, NOW)
    if pause_analyse:
        job.start_stage("analyse", 1, NOW)
        job.pause("analyse", 1, "deploy.analysed", "k", DEADLINE, NOW)
    return job


def replayed(job: Job) -> Job:
    """The job rebuilt from its events, each stored and read back as the store would."""
    rebuilt: Any = None
    for event in job.collect_events():
        stored: Any = MAPPER.to_domain_event(MAPPER.to_stored_event(event))
        rebuilt = stored.mutate(rebuilt)
    assert isinstance(rebuilt, Job)
    return rebuilt


def test_a_paused_stage_renamed_keeps_its_wait_under_its_new_name_and_a_new_stage_is_pending(
) -> None:
    job = job_on_v1()
    job.migrate("2", V2, RENAMED, at=NOW)
    assert job.workflow_version == "2"
    assert [s["stage"] for s in job.plan] == ["fetch", "analyse_code", "lint", "publish"]
    assert {s: str(r.state) for s, r in job.runs.items()} == {
        "fetch": "done", "analyse_code": "waiting", "lint": "pending", "publish": "pending"}
    wait = job.runs["analyse_code"].wait
    assert wait is not None and (wait["event_type"], wait["attempt"]) == ("deploy.analysed", 1)
    assert job.outputs == {"fetch": {"fetched": True}}
    assert job.status is Status.WAITING_FOR_EVENT


def test_an_event_for_the_old_stage_name_resumes_the_renamed_stage() -> None:
    job = job_on_v1()
    job.migrate("2", V2, RENAMED, at=NOW)
    stage = job.follow("analyse")
    job.check_wait(stage, 1)
    job.resume(stage, "event-1", {"ok": True})
    assert stage == "analyse_code"
    assert job.ready_stages() == ["analyse_code"]
    assert job.runs["analyse_code"].resumed_with == {"ok": True}
    assert job.follow("fetch") == "fetch"


def test_the_history_records_the_migration_and_replay_rebuilds_the_migrated_job() -> None:
    job = job_on_v1()
    job.collect_events()
    job.migrate("2", V2, RENAMED, at=NOW)
    pending = job.collect_events()
    assert [type(e).__name__ for e in pending] == ["Migrated"]
    migrated: Any = pending[0]
    assert (migrated.from_version, migrated.to_version, migrated.renamed) == (
        "1", "2", {"analyse": "analyse_code"})

    again = job_on_v1()
    again.migrate("2", V2, RENAMED, at=NOW)
    rebuilt = replayed(again)
    assert (rebuilt.workflow_version, rebuilt.plan, rebuilt.renamed) == (
        "2", V2, {"analyse": "analyse_code"})
    assert {s: asdict(r) for s, r in rebuilt.runs.items()} == {
        s: asdict(r) for s, r in job.runs.items()}


def test_a_stage_that_may_have_gone_to_old_workers_is_sent_again_with_a_fresh_attempt() -> None:
    job = job_on_v1(pause_analyse=False)  # analyse is ready: its message is on v1's queue
    job.migrate("2", V2, RENAMED, at=NOW)
    assert (job.runs["analyse_code"].state, job.runs["analyse_code"].attempt) == (
        StageState.PENDING, 2)
    assert job.ready_stages() == ["analyse_code"]
    # A v1 worker's late report of the old attempt is refused.
    with pytest.raises(TransitionError):
        job.start_stage("analyse", 1, NOW)
    with pytest.raises(TransitionError):
        job.start_stage("analyse_code", 1, NOW)


def test_a_stage_due_to_be_retried_runs_again_at_once_on_the_new_version() -> None:
    job = job_on_v1(pause_analyse=False)
    job.start_stage("analyse", 1, NOW)
    job.fail_stage("analyse", 1, Classification.RETRYABLE, "boom", NOW, retry_at=DEADLINE)
    job.migrate("2", V2, RENAMED, at=NOW)
    run = job.runs["analyse_code"]
    assert (run.state, run.attempt, run.retry_at, run.failures) == (
        StageState.PENDING, 3, None, 1)


def test_stages_the_new_graph_lacks_are_dropped_when_done_or_pending() -> None:
    job = job_on_v1(pause_analyse=False)
    only_fetch_and_publish = [PlanStep(stage="fetch", after=[]),
                              PlanStep(stage="publish", after=["fetch"])]
    job.migrate("3", only_fetch_and_publish, {}, at=NOW)
    assert {s: str(r.state) for s, r in job.runs.items()} == {
        "fetch": "done", "publish": "pending"}


def test_a_waiting_stage_the_new_graph_lacks_blocks_the_migration_and_changes_nothing() -> None:
    job = job_on_v1()
    job.collect_events()
    with pytest.raises(MigrationBlockedError, match="'analyse' is waiting"):
        job.migrate("2", V2, {}, at=NOW)
    assert job.collect_events() == []
    assert (job.workflow_version, job.plan) == ("1", V1)


def test_a_running_stage_blocks_the_migration() -> None:
    job = job_on_v1(pause_analyse=False)
    job.start_stage("analyse", 1, NOW)
    with pytest.raises(MigrationBlockedError, match="'analyse' is running"):
        job.migrate("2", V2, RENAMED, at=NOW)


def test_a_finished_job_or_one_already_on_the_version_is_not_migrated() -> None:
    job = job_on_v1()
    job.migrate("2", V2, RENAMED, at=NOW)
    with pytest.raises(TransitionError, match="already runs on version 2"):
        job.migrate("2", V2, RENAMED, at=NOW)
    job.cancel("stop", "alice", NOW)
    with pytest.raises(JobFinishedError):
        job.migrate("3", V2, {}, at=NOW)


def test_a_migration_that_leaves_every_stage_done_completes_the_job() -> None:
    job = job_on_v1(pause_analyse=False)
    job.migrate("3", [PlanStep(stage="fetch", after=[])], {}, at=NOW)
    assert job.status is Status.COMPLETED
    assert job.result == {"fetched": True}


def test_renames_compose_across_two_migrations() -> None:
    job = job_on_v1()
    job.migrate("2", V2, RENAMED, at=NOW)
    v3 = [PlanStep(stage="fetch", after=[]), PlanStep(stage="review", after=["fetch"])]
    job.migrate("3", v3, {"analyse_code": "review"}, at=NOW)
    assert job.follow("analyse") == "review"
    assert job.runs["review"].state is StageState.WAITING


def test_renames_take_a_name_before_a_stage_keeps_its_own_and_two_stages_may_swap() -> None:
    plan = [PlanStep(stage="a", after=[]), PlanStep(stage="b", after=["a"])]
    assert carried(["a", "b"], plan, {"a": "b", "b": "a"}) == {"b": "a", "a": "b"}
    assert carried(["a", "b"], plan, {"a": "b"}) == {"b": "a"}
    assert carried(["a", "x"], plan, {"x": "b", "gone": "a"}) == {"a": "a", "b": "x"}


# The declaration on the workflow ---------------------------------------------------------------


def review_v2(migrations: dict[Any, dict[str, str]] | None) -> Workflow:
    workflow = Workflow("review", version=2, migrations=migrations)
    for stage in ("fetch", "analyse_code", "lint", "publish"):
        workflow.stage(stage)(_noop)
    return workflow


def test_a_workflow_gives_the_renames_it_declares_from_a_version() -> None:
    assert review_v2({1: RENAMED}).migration_from("1") == RENAMED
    assert review_v2({"ab12cd34": {}}).migration_from("ab12cd34") == {}


def test_no_migration_is_given_from_a_version_declaring_none_or_from_the_current_one() -> None:
    with pytest.raises(NoMigrationError, match="declares no migration from v1"):
        review_v2(None).migration_from("1")
    with pytest.raises(NoMigrationError, match="is the current version"):
        review_v2({2: {}}).migration_from("2")


@pytest.mark.parametrize("renamed", [{"analyse": "nowhere"},
                                     {"analyse": "lint", "check": "lint"}])
def test_a_migration_naming_an_unknown_stage_or_one_stage_twice_is_refused(
        renamed: dict[str, str]) -> None:
    with pytest.raises(MisdeclaredMigrationError, match="each must be one stage of it once"):
        review_v2({1: renamed}).migration_from("1")


def test_a_migration_that_is_not_a_mapping_of_names_is_refused_when_declared() -> None:
    with pytest.raises(WorkflowError, match="maps old stage names to new ones"):
        review_v2({1: {"analyse": 3}})  # type: ignore[dict-item]


def _noop(ctx: StageContext) -> None:
    return None


