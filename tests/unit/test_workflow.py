"""Declaring workflows, the retry policy's delays, and the code_review reference workflow."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from conveyor.workflows import (
    WORKFLOWS,
    Pause,
    PermanentError,
    RetryPolicy,
    Stage,
    StageContext,
    Workflow,
    WorkflowError,
    code_review,
    skipped_stages,
)


def noop(ctx: StageContext) -> None:
    return None


# Declaration --------------------------------------------------------------------------------


def test_stages_declared_without_after_run_one_after_the_other() -> None:
    # Given a workflow with three stages declared in order
    workflow = Workflow("sequential")
    workflow.stage("a")(noop)
    workflow.stage("b")(noop)
    workflow.stage("c")(noop)

    # When its plan is taken, Then each stage runs after the one declared before it
    assert workflow.plan() == [
        {"stage": "a", "after": []},
        {"stage": "b", "after": ["a"]},
        {"stage": "c", "after": ["b"]},
    ]
    assert [stage.name for stage in workflow] == ["a", "b", "c"]


def test_after_declares_parallel_branches_and_a_join() -> None:
    # Given a workflow a -> [b, c] -> d
    workflow = Workflow("parallel")
    workflow.stage("a")(noop)
    workflow.stage("b", after=["a"])(noop)
    workflow.stage("c", after=["a"])(noop)
    workflow.stage("d", after=("b", "c"))(noop)

    # Then the plan records both branches and the join
    assert workflow.plan() == [
        {"stage": "a", "after": []},
        {"stage": "b", "after": ["a"]},
        {"stage": "c", "after": ["a"]},
        {"stage": "d", "after": ["b", "c"]},
    ]


def test_an_empty_after_declares_another_first_stage() -> None:
    # Given two stages, the second declared with after=[]
    workflow = Workflow("two-roots")
    workflow.stage("a")(noop)
    workflow.stage("b", after=[])(noop)

    # Then both may run first
    assert workflow.plan() == [{"stage": "a", "after": []}, {"stage": "b", "after": []}]


def test_a_stage_is_named_after_its_handler_unless_named_explicitly() -> None:
    # Given a handler registered without a name and one with a name
    workflow = Workflow("named")

    @workflow.stage()
    def fetch(ctx: StageContext) -> str:
        return "fetched"

    workflow.stage("publish", time_limit=5.0)(noop)

    # Then the stages are found by those names, with their handler, policy and time limit
    assert workflow["fetch"] == Stage("fetch", fetch, (), RetryPolicy(), 300.0)
    assert workflow["publish"].after == ("fetch",)
    assert workflow["publish"].time_limit == 5.0


def test_the_decorator_returns_the_handler_unchanged() -> None:
    workflow = Workflow("plain")
    assert workflow.stage("a")(noop) is noop


def test_a_stage_keeps_its_own_retry_policy() -> None:
    policy = RetryPolicy(attempts=5, initial_delay=0.5)
    workflow = Workflow("policies")
    workflow.stage("a", retry=policy)(noop)
    assert workflow["a"].retry is policy


def test_declaring_a_stage_name_twice_is_refused() -> None:
    # Given a workflow with a stage "a"
    workflow = Workflow("dupes")
    workflow.stage("a")(noop)

    # When another stage "a" is declared, Then it is refused and the first one kept
    with pytest.raises(WorkflowError, match="already has a stage 'a'"):
        workflow.stage("a")(noop)
    assert workflow.plan() == [{"stage": "a", "after": []}]


@pytest.mark.parametrize(
    "after",
    [
        pytest.param(["missing"], id="never-declared"),
        pytest.param(["a", "missing"], id="one-of-several"),
        pytest.param(["b"], id="itself"),
    ],
)
def test_running_after_an_undeclared_stage_is_refused(after: list[str]) -> None:
    # Given a workflow with a stage "a"
    workflow = Workflow("unknown")
    workflow.stage("a")(noop)

    # When "b" is declared after a stage not yet declared, Then it is refused
    with pytest.raises(WorkflowError, match="undeclared stages"):
        workflow.stage("b", after=after)(noop)
    with pytest.raises(WorkflowError):
        workflow["b"]


@pytest.mark.parametrize("time_limit", [0.0, -1.0])
def test_a_stage_needs_a_positive_time_limit(time_limit: float) -> None:
    workflow = Workflow("limits")
    with pytest.raises(WorkflowError, match="positive time limit"):
        workflow.stage("a", time_limit=time_limit)(noop)


def test_a_workflow_without_stages_has_no_plan() -> None:
    # Given a workflow with no stage, When its plan is asked for, Then it is refused
    with pytest.raises(WorkflowError, match="has no stages"):
        Workflow("empty").plan()


def test_asking_for_an_unknown_stage_raises_workflow_error() -> None:
    # Given a workflow with a stage "a"
    workflow = Workflow("lookup")
    workflow.stage("a")(noop)

    # When an unknown stage is asked for, Then WorkflowError is raised, not KeyError
    with pytest.raises(WorkflowError, match="has no stage 'zzz'") as raised:
        workflow["zzz"]
    assert raised.value.__suppress_context__


# RetryPolicy --------------------------------------------------------------------------------


def middle() -> float:
    return 0.5


def test_delays_double_from_the_initial_delay_up_to_the_maximum() -> None:
    # Given a policy of 8 attempts, from 1 s doubling to at most 10 s
    policy = RetryPolicy(attempts=8, initial_delay=1.0, multiplier=2.0, max_delay=10.0)

    # When the delay after each failure is asked for without jitter
    delays = [policy.delay(failures, rand=middle) for failures in range(1, 9)]

    # Then the delays double, are capped at 10 s, and stop once the attempts are spent
    assert delays == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0, None]


def test_the_default_policy_retries_twice_after_one_then_two_seconds() -> None:
    policy = RetryPolicy()
    assert [policy.delay(n, rand=middle) for n in (1, 2, 3)] == [1.0, 2.0, None]


@pytest.mark.parametrize("failures", [1, 2, 3, 4])
@pytest.mark.parametrize(("rand", "factor"), [(0.0, 0.75), (0.5, 1.0), (1.0, 1.25)])
def test_jitter_moves_a_delay_by_at_most_a_quarter(
    failures: int, rand: float, factor: float
) -> None:
    # Given the default 25 % jitter and a base delay of 2 ** (failures - 1) seconds
    policy = RetryPolicy(attempts=5, max_delay=60.0)

    # When the random draw is at its bounds, Then the delay is 25 % below or above the base
    delay = policy.delay(failures, rand=lambda: rand)
    assert delay == pytest.approx(2.0 ** (failures - 1) * factor)


def test_the_default_random_draw_stays_within_the_jitter() -> None:
    policy = RetryPolicy(attempts=10, initial_delay=4.0, max_delay=4.0)
    for _ in range(200):
        delay = policy.delay(1)
        assert delay is not None
        assert 3.0 <= delay <= 5.0


def test_a_policy_without_jitter_ignores_the_random_draw() -> None:
    policy = RetryPolicy(jitter=0.0)
    assert policy.delay(2, rand=lambda: 0.0) == policy.delay(2, rand=lambda: 1.0) == 2.0


@pytest.mark.parametrize(("attempts", "failures"), [(1, 1), (3, 3), (3, 4), (5, 5), (5, 50)])
def test_no_delay_is_given_once_the_attempts_are_spent(attempts: int, failures: int) -> None:
    policy = RetryPolicy(attempts=attempts)
    assert policy.delay(failures, rand=middle) is None


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"attempts": 0}, id="no-attempt"),
        pytest.param({"attempts": -1}, id="negative-attempts"),
        pytest.param({"initial_delay": -0.1}, id="negative-initial-delay"),
        pytest.param({"multiplier": 0.5}, id="shrinking-multiplier"),
        pytest.param({"jitter": -0.1}, id="negative-jitter"),
        pytest.param({"jitter": 1.0}, id="jitter-of-a-whole-delay"),
        pytest.param({"initial_delay": 10.0, "max_delay": 5.0}, id="max-below-initial"),
    ],
)
def test_an_inconsistent_retry_policy_is_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(WorkflowError, match="invalid retry policy"):
        RetryPolicy(**kwargs)


def test_the_boundary_retry_policy_is_accepted() -> None:
    # Given the smallest consistent values, Then the policy is built and never retries
    policy = RetryPolicy(attempts=1, initial_delay=0.0, multiplier=1.0, max_delay=0.0, jitter=0.0)
    assert policy.delay(1) is None


# The code_review workflow -------------------------------------------------------------------


def trigger(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "platform": "github",
        "repository": "acme/widgets",
        "pull_request": 7,
        "head_commit": "abc123",
        "base_branch": "main",
    }
    values.update(overrides)
    return {name: value for name, value in values.items() if value is not None}


def run(workflow: Workflow, trigger: dict[str, Any]) -> dict[str, Any]:
    """Run every stage in plan order (AST analysis off), as the workers would."""
    job_id = uuid.UUID(int=7)
    outputs: dict[str, Any] = {}
    for step in workflow.plan(skipped_stages(ast_analysis=False)[workflow.name]):
        name = step["stage"]
        ctx = StageContext(job_id=job_id, stage=name, attempt=1, trigger=trigger, outputs=outputs)
        outputs = {**outputs, name: workflow[name].handler(ctx)}
    return outputs


def test_code_review_reviews_in_two_parallel_branches_after_the_ast_analysis() -> None:
    assert WORKFLOWS["code_review"] is code_review
    assert code_review.plan() == [
        {"stage": "validate", "after": []},
        {"stage": "fetch_changes", "after": ["validate"]},
        {"stage": "ast_analysis", "after": ["fetch_changes"]},
        {"stage": "review_pull_request", "after": ["ast_analysis"]},
        {"stage": "review_files", "after": ["ast_analysis"]},
        {"stage": "publish", "after": ["review_pull_request", "review_files"]},
    ]


def test_without_ast_analysis_the_review_branches_follow_fetch_changes() -> None:
    plan = code_review.plan(skipped_stages(ast_analysis=False)["code_review"])

    assert [step["stage"] for step in plan] == [
        "validate", "fetch_changes", "review_pull_request", "review_files", "publish",
    ]
    assert plan[2]["after"] == plan[3]["after"] == ["fetch_changes"]
    assert skipped_stages(ast_analysis=True)["code_review"] == frozenset()


def test_code_review_handlers_produce_a_deterministic_review() -> None:
    # Given a pull request trigger, When every stage runs, twice
    outputs = run(code_review, trigger(head_commit="9f2c1e7"))

    # Then each stage's output follows from the trigger, the same both times
    assert outputs["validate"] == {"review_of": "acme/widgets#7"}
    assert outputs["fetch_changes"] == {"base": "main", "head": "9f2c1e7"}
    verdict = outputs["review_pull_request"]
    findings = verdict["findings"] + outputs["review_files"]["findings"]
    assert outputs["publish"] == {
        "summary": f"acme/widgets#7: {verdict['verdict']}, {findings} finding(s)"
    }
    assert run(code_review, trigger(head_commit="9f2c1e7")) == outputs


def test_the_ast_stage_requests_an_analysis_pauses_for_it_and_reports_it_when_woken() -> None:
    job_id = uuid.UUID(int=7)
    first = StageContext(job_id=job_id, stage="ast_analysis", attempt=1, trigger=trigger(),
                         outputs={})

    pause = code_review["ast_analysis"].handler(first)

    assert isinstance(pause, Pause)
    assert (pause.event_type, pause.key) == ("ast.task.completed", f"ast-{job_id}")
    assert pause.request is not None and pause.request["type"] == "ast.task.requested"
    assert pause.request["key"] == pause.key
    woken = StageContext(job_id=job_id, stage="ast_analysis", attempt=1, trigger=trigger(),
                         outputs={}, resumed_with={"nodes": 3}, woken="resumed")
    assert code_review["ast_analysis"].handler(woken) == {
        "task_id": pause.key, "analysis": {"nodes": 3}, "outcome": "resumed",
    }


def test_fetch_changes_has_no_base_when_the_trigger_names_none() -> None:
    outputs = run(code_review, trigger(base_branch=None))
    assert outputs["fetch_changes"] == {"base": None, "head": "abc123"}


@pytest.mark.parametrize("missing", ["platform", "repository", "pull_request", "head_commit"])
def test_validate_refuses_a_trigger_lacking_what_a_review_needs(missing: str) -> None:
    # Given a trigger without one required field
    ctx = StageContext(
        job_id=uuid.UUID(int=7),
        stage="validate",
        attempt=1,
        trigger={k: v for k, v in trigger().items() if k != missing},
        outputs={},
    )

    # When validate runs, Then it fails permanently, naming the field
    with pytest.raises(PermanentError, match=f"trigger lacks {missing}"):
        code_review["validate"].handler(ctx)


def test_validate_treats_an_empty_head_commit_as_missing() -> None:
    ctx = StageContext(
        job_id=uuid.UUID(int=7),
        stage="validate",
        attempt=1,
        trigger=trigger(head_commit=""),
        outputs={},
    )
    with pytest.raises(PermanentError, match="head_commit"):
        code_review["validate"].handler(ctx)
