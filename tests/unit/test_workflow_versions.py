"""Workflow versions: declared or derived from the stage graph, recorded on each job."""

from __future__ import annotations

import orjson
import pytest
from eventsourcing.persistence import StoredEvent

from conveyor.aggregates.job import Job
from conveyor.aggregates.stages import plan_version
from conveyor.application import Jobs
from conveyor.workflows import StageContext, Workflow, WorkflowError

MAPPER = Jobs(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}).mapper


def noop(ctx: StageContext) -> None:
    return None


def review(*names: str, after: dict[str, list[str]] | None = None,
           version: int | None = None) -> Workflow:
    workflow = Workflow("review", version=version)
    for name in names:
        workflow.stage(name, after=(after or {}).get(name))(noop)
    return workflow


def test_an_undeclared_version_is_the_same_for_the_same_graph_whatever_the_handlers() -> None:
    first, second = review("fetch", "analyse", "post"), review("fetch", "analyse", "post")
    second.stage("extra")(noop)
    third = review("fetch", "analyse", "post")

    assert first.version == third.version
    assert len(first.version) == 8
    assert second.version != first.version


@pytest.mark.parametrize("changed", [
    review("fetch", "analyse_ast", "post"),  # a stage renamed
    review("fetch", "post", "analyse"),  # reordered
    review("fetch", "analyse", "post", after={"post": ["fetch"]}),  # another `after`
])
def test_a_changed_graph_derives_a_new_version(changed: Workflow) -> None:
    assert changed.version != review("fetch", "analyse", "post").version


def test_a_declared_version_holds_whatever_the_graph() -> None:
    assert review("fetch", version=3).version == review("fetch", "post", version=3).version == "3"


@pytest.mark.parametrize("bad", [0, -1, True, "3"])
def test_a_declared_version_is_a_whole_number_from_one(bad: object) -> None:
    with pytest.raises(WorkflowError, match="whole number"):
        Workflow("review", version=bad)  # type: ignore[arg-type]


def test_a_job_records_the_version_it_was_enqueued_on() -> None:
    workflow = review("fetch", "post", version=2)
    job = Job(key="k", workflow="review", plan=workflow.plan(), trigger={},
              workflow_version=workflow.version)
    (enqueued,) = job.collect_events()

    loaded = MAPPER.to_domain_event(MAPPER.to_stored_event(enqueued)).mutate(None)

    assert loaded.workflow_version == "2"


def test_a_job_enqueued_before_versions_has_no_version() -> None:
    # Given an Enqueued as version 4 stored it: no workflow_version
    workflow = review("fetch", "analyse", "post")
    (enqueued,) = Job(key="k", workflow="review", plan=workflow.plan(), trigger={},
                      workflow_version="9").collect_events()
    stored = MAPPER.to_stored_event(enqueued)
    state = orjson.loads(stored.state)
    state["class_version"] = 4
    del state["workflow_version"]
    old = StoredEvent(originator_id=stored.originator_id,
                      originator_version=stored.originator_version, topic=stored.topic,
                      state=orjson.dumps(state))

    # When it is read back, Then it has no version: any worker with its workflow runs it
    assert MAPPER.to_domain_event(old).mutate(None).workflow_version is None


def test_a_job_records_its_workflows_version_not_its_plans_after_skipped_stages() -> None:
    # Given a deployment that skips a stage of the workflow
    workflow = review("fetch", "analyse", "post")
    app = Jobs(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, workflows={"review": workflow},
               skip_stages={"review": frozenset({"analyse"})})

    # When a job is enqueued
    job = app.get(app.enqueue("review", "k", {}).job_id)
    app.close()

    # Then its plan lacks the stage, and its version is the whole workflow's all the same
    assert [step["stage"] for step in job.plan] == ["fetch", "post"]
    assert job.workflow_version == workflow.version != plan_version(job.plan)
