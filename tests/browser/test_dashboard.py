"""The dashboard in headless chromium, against Conveyor's real processes and real webhooks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from playwright.sync_api import Page, expect

from conveyor.bootstrap import build_jobs, load_workflows
from conveyor.settings import Settings
from tests.browser.conftest import (
    READ,
    WRITE,
    answer_wait,
    cancel,
    deliver,
    pull_request_delivery,
    review_command_delivery,
    screenshot,
    sign_in,
    sign_in_to_write,
)
from tests.conftest import ROOT
from tests.e2e import deploy_v1, deploy_v2
from tests.e2e.stack import Stack, request, running
from tests.waiting import wait_until

PROCESSES = ("webhooks", "api", "worker", "relay", "projector")


@pytest.fixture
def stack(settings: Settings, tmp_path: Path) -> Iterator[Stack]:
    """Every process, with reviews slow enough that the parallel branches overlap visibly."""
    with running(settings, tmp_path, PROCESSES, CONVEYOR_REFERENCE_REVIEW_SECONDS="0.3",
                 CONVEYOR_WORKER_THREADS="4") as stack:
        yield stack


@pytest.fixture
def waiting_stack(settings: Settings, tmp_path: Path) -> Iterator[Stack]:
    """As `stack`, with code reviews that wait for an AST analysis (an outside event)."""
    with running(settings, tmp_path, PROCESSES, CONVEYOR_REFERENCE_REVIEW_SECONDS="0.3",
                 CONVEYOR_WORKER_THREADS="4", CONVEYOR_AST_ANALYSIS="on") as stack:
        yield stack


def test_without_a_token_the_dashboard_shows_only_a_sign_in_prompt(
    stack: Stack, page: Page, problems: list[str]
) -> None:
    deliver(stack, pull_request_delivery("acme/api", 1))

    page.goto(f"{stack.api}/#/jobs")

    expect(page.locator("#token")).to_be_visible()
    expect(page.locator("header.topbar")).to_have_count(0)
    expect(page.locator("table")).to_have_count(0)
    page.fill("#token", "not-a-token")
    page.click("button[type=submit]")
    expect(page.get_by_role("alert")).to_contain_text("not known")
    expect(page.locator("table")).to_have_count(0)
    # The refused token is the browser's one logged error, and the only one allowed.
    assert [p for p in problems if "status of 401" not in p] == []
    problems.clear()


def test_the_jobs_page_lists_jobs_from_real_webhooks_filters_them_and_refreshes_live(
    waiting_stack: Stack, page: Page
) -> None:
    stack = waiting_stack
    done = [deliver(stack, pull_request_delivery("acme/api", n)) for n in (101, 102)]
    waiting = deliver(stack, pull_request_delivery("acme/web", 7))
    cancelled = deliver(stack, pull_request_delivery("acme/web", 8))
    failed = deliver(stack, review_command_delivery("acme/mobile", 12))
    for job_id in done:
        answer_wait(stack, job_id)
    stack.job_when(waiting, "WAITING_FOR_EVENT")
    cancel(stack, stack.job_when(cancelled, "WAITING_FOR_EVENT")["job_id"])
    for job_id in done:
        stack.job_when(job_id, "COMPLETED")
    stack.job_when(cancelled, "CANCELLED")
    stack.job_when(failed, "FAILED")

    sign_in(page, stack, "read-token", "#/jobs")

    rows = page.locator("#jobs-table tbody tr[data-job-id]")
    expect(rows).to_have_count(5)
    expect(page.locator(f'tr[data-job-id="{failed}"] .badge')).to_have_text("Failed")
    expect(page.locator(f'tr[data-job-id="{failed}"]')).to_contain_text("trigger lacks")
    expect(page.locator(f'tr[data-job-id="{waiting}"] .badge')).to_have_text("Waiting")
    expect(page.locator(f'tr[data-job-id="{waiting}"]')).to_contain_text(
        "waiting for ast.task.completed")
    screenshot(page, "jobs")

    page.fill("#filter-repository", "acme/web")
    expect(rows).to_have_count(2)
    page.select_option("#filter-status", "WAITING_FOR_EVENT")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-job-id", waiting)
    assert "status=WAITING_FOR_EVENT" in page.url and "repository=acme%2Fweb" in page.url

    # A new job that matches appears by itself; the filters stay as they were.
    newcomer = deliver(stack, pull_request_delivery("acme/web", 9))
    stack.job_when(newcomer, "WAITING_FOR_EVENT")
    expect(rows).to_have_count(2)
    expect(page.locator("#filter-repository")).to_have_value("acme/web")
    expect(page.locator("#filter-status")).to_have_value("WAITING_FOR_EVENT")

    page.fill("#filter-repository", "")
    page.select_option("#filter-status", "")
    page.fill("#filter-pull_request", "12")
    expect(rows).to_have_count(1)
    page.select_option("#filter-platform", "gitlab")
    expect(rows).to_have_count(0)
    expect(page.locator("tr.empty")).to_contain_text("No jobs match")
    page.click("#filters-clear")
    expect(rows).to_have_count(6)
    page.select_option("#filter-range", "1h")
    expect(rows).to_have_count(6)

    rows.filter(has_text="acme/mobile #12").locator("a.job-link").click()
    expect(page.locator("#job-title")).to_have_text("acme/mobile #12")
    expect(page.locator("#job-callout")).to_contain_text("trigger lacks head_commit")
    page.locator('.tl-bar[data-stage="validate"][data-outcome="failed"]').click()
    expect(page.locator("#timeline-detail")).to_contain_text("trigger lacks head_commit")


def test_a_job_page_draws_overlapping_parallel_branches_and_a_labelled_wait(
    waiting_stack: Stack, page: Page
) -> None:
    stack = waiting_stack
    job_id = deliver(stack, pull_request_delivery("acme/api", 42))
    stack.job_when(job_id, "WAITING_FOR_EVENT")

    sign_in(page, stack, "read-token", f"#/jobs/{job_id}")
    expect(page.locator("#job-status .badge")).to_have_text("Waiting")
    wait = page.locator('.tl-wait[data-stage="ast_analysis"]')
    expect(wait).to_contain_text("waiting for ast.task.completed")
    expect(page.locator("#job-pr-link")).to_have_attribute(
        "href", "https://github.com/acme/api/pull/42")

    answer_wait(stack, job_id)

    expect(page.locator("#job-status .badge")).to_have_text("Completed")
    expect(wait).to_contain_text("waited for ast.task.completed")
    reviews = [page.locator(f'.tl-bar[data-stage="{stage}"][data-outcome="completed"]')
               for stage in ("review_pull_request", "review_files")]
    first, second = (r.bounding_box() for r in reviews)
    assert first and second
    assert max(first["x"], second["x"]) < min(first["x"] + first["width"],
                                              second["x"] + second["width"]), (first, second)
    assert abs(first["y"] - second["y"]) >= first["height"], "branches share a lane"
    gap = wait.bounding_box()
    assert gap and gap["width"] > 20
    expect(page.locator('#event-history tr[data-type="Paused"]')).to_have_count(1)
    expect(page.locator('#event-history tr[data-type="Resumed"]')).to_have_count(1)
    expect(page.locator("#job-actions button")).to_have_count(0)

    reviews[0].hover()
    expect(page.locator(".tl-tooltip")).to_contain_text("review_pull_request · attempt 1")
    page.mouse.move(0, 0)
    screenshot(page, "job")


def test_cancel_works_from_the_page_with_a_write_token_and_is_absent_with_a_read_token(
    waiting_stack: Stack, page: Page
) -> None:
    stack = waiting_stack
    job_id = deliver(stack, pull_request_delivery("acme/api", 77))
    stack.job_when(job_id, "WAITING_FOR_EVENT")

    sign_in(page, stack, "read-token", f"#/jobs/{job_id}")
    expect(page.locator("#job-status .badge")).to_have_text("Waiting")
    expect(page.locator(".scope")).to_have_text("read only")
    expect(page.locator("#cancel-job")).to_have_count(0)

    sign_in_to_write(page)
    page.click("#cancel-job")
    expect(page.locator("#confirm-dialog")).to_be_visible()
    page.click("#confirm-back")
    expect(page.locator("#confirm-dialog")).to_be_hidden()
    assert stack.job(job_id)[1]["status"] == "WAITING_FOR_EVENT"

    page.click("#cancel-job")
    page.fill("#confirm-reason", "not needed any more")
    page.click("#confirm-go")

    expect(page.locator("#job-status .badge")).to_have_text("Cancelled")
    expect(page.locator("#cancel-job")).to_have_count(0)
    expect(page.locator("#job-callout")).to_contain_text("not needed any more")
    assert stack.job_when(job_id, "CANCELLED")["error"]["error"] == "not needed any more"


def test_a_repository_name_holding_a_script_tag_is_shown_as_text(
    stack: Stack, page: Page
) -> None:
    name = "acme/<script>alert(1)</script><img src=x onerror=alert(2)>"
    job_id = deliver(stack, pull_request_delivery(name, 5))
    stack.job_when(job_id, "COMPLETED")

    sign_in(page, stack, "read-token", "#/jobs")
    row = page.locator(f'tr[data-job-id="{job_id}"]')
    expect(row.locator("a.job-link")).to_have_text(f"{name} #5")
    row.locator("a.job-link").click()
    expect(page.locator("#job-repository")).to_have_text(name)
    expect(page.locator("#job-title")).to_have_text(f"{name} #5")

    assert page.locator("#app script, #app img").count() == 0
    # The page fixture fails the test if an alert opened or a script error was logged.


def test_the_overview_charts_throughput_and_shows_percentiles_counts_waits_and_lag(
    waiting_stack: Stack, page: Page
) -> None:
    stack = waiting_stack
    done = [deliver(stack, pull_request_delivery("acme/api", n)) for n in (1, 2, 3)]
    waiting = [deliver(stack, pull_request_delivery("acme/web", n)) for n in (4, 5)]
    failed = deliver(stack, review_command_delivery("acme/api", 6))
    for job_id in done:
        answer_wait(stack, job_id)
    for job_id in done:
        stack.job_when(job_id, "COMPLETED")
    for job_id in waiting:
        stack.job_when(job_id, "WAITING_FOR_EVENT")
    stack.job_when(failed, "FAILED")

    sign_in(page, stack, "read-token", "#/overview")

    expect(page.locator('.tile[data-status="COMPLETED"] .tile-number')).to_have_text("3")
    expect(page.locator('.tile[data-status="FAILED"] .tile-number')).to_have_text("1")
    expect(page.locator('.tile[data-status="WAITING_FOR_EVENT"] .tile-number')).to_have_text("2")
    expect(page.locator("#throughput-chart canvas")).to_have_count(1)
    expect(page.locator(".chart-totals")).to_contain_text("3 completed")
    expect(page.locator(".chart-totals")).to_contain_text("1 failed")
    expect(page.locator('#stage-percentiles tr[data-measure="review_files"]')).to_be_visible()
    expect(page.locator("#waiting-summary")).to_contain_text("ast.task.completed")
    expect(page.locator("#waiting-summary .big-number")).to_contain_text("2 jobs waiting")
    expect(page.locator("#projection-lag tbody tr")).to_have_count(3)
    # Nothing runs or is held once every job has finished or paused
    expect(page.locator("#organizations tbody")).to_have_text(
        "No organisation has stages running or held.")
    screenshot(page, "overview")


def test_retry_works_from_the_page_of_a_failed_job_with_a_write_token_and_not_a_read_token(
    stack: Stack, page: Page
) -> None:
    # Given a FAILED job: a review command names no head commit, so validation fails for good
    job_id = deliver(stack, review_command_delivery("acme/api", 31))
    stack.job_when(job_id, "FAILED")

    # And a read token sees it failed, with no way to retry it
    sign_in(page, stack, "read-token", f"#/jobs/{job_id}")
    expect(page.locator("#job-status .badge")).to_have_text("Failed")
    expect(page.locator("#retry-job")).to_have_count(0)

    # When the write token is signed in, and Retry is clicked and confirmed
    sign_in_to_write(page)
    page.click("#retry-job")
    expect(page.locator("#confirm-dialog")).to_be_visible()
    page.click("#confirm-go")

    # Then the job is retried: a Retried event, and validate runs again as attempt 2
    expect(page.locator('#event-history tr[data-type="Retried"]')).to_have_count(1)

    def validated_twice() -> Any:
        _, history = request(f"{stack.api}/workflow-queue/jobs/{job_id}/history",
                             headers=READ)
        attempts = [(a["stage"], a["attempt"]) for a in history["stage_attempts"]]
        return history if ("validate", 2) in attempts else None

    history = wait_until(validated_twice, timeout=30)
    assert [e["type"] for e in history["events"]].count("Retried") == 1
    # The retried validation fails again, as it must: the page shows the job failed anew
    stack.job_when(job_id, "FAILED")
    expect(page.locator('.tl-bar[data-stage="validate"]')).to_have_count(2)
    expect(page.locator("#job-status .badge")).to_have_text("Failed")


def test_the_overview_lists_schedules_with_next_and_last_fire_and_the_last_runs_status(
    settings: Settings, tmp_path: Path, page: Page
) -> None:
    with running(settings, tmp_path, PROCESSES,
                 PYTHONPATH=str(ROOT), CONVEYOR_WORKFLOW_MODULES="tests.e2e.schedule_workflow",
                 ) as stack:
        write = {"Authorization": "Bearer write-token", "Content-Type": "application/json"}
        schedules = f"{stack.api}/workflow-queue/schedules"
        for body in ({"name": "every_second", "cron": "* * * * * *", "workflow": "tick"},
                     {"name": "nightly", "cron": "0 3 * * *", "workflow": "tick",
                      "timezone": "Europe/Paris"}):
            assert request(schedules, orjson.dumps(body), write)[0] == 201

        def every_second() -> Any:
            return request(f"{schedules}/every_second", None, READ)[1]

        wait_until(lambda: every_second()["last_job_id"], timeout=30)
        # Paused, it fires no more: its last run stays the one the page must show.
        assert request(f"{schedules}/every_second/pause", b"", write)[0] == 200
        wait_until(lambda: every_second()["last_status"] == "COMPLETED", timeout=30)
        sign_in(page, stack, "read-token", "#/overview")

        every = page.locator('#schedules tr[data-schedule="every_second"]')
        nightly = page.locator('#schedules tr[data-schedule="nightly"]')
        expect(every).to_contain_text("* * * * * *")
        expect(every.locator("td").nth(3)).to_have_text("paused")
        expect(every.locator("td").nth(4)).not_to_have_text("—")
        expect(every.locator("td").nth(5)).to_have_text("Completed")
        expect(every.locator('td [data-status="COMPLETED"]')).to_have_count(1)
        expect(nightly).to_contain_text("0 3 * * * (Europe/Paris)")
        expect(nightly.locator("td").nth(3)).not_to_have_text("—")
        expect(nightly.locator("td").nth(4)).to_have_text("—")
        expect(nightly.locator("td").nth(5)).to_have_text("—")
        screenshot(page, "overview-schedules")


def test_the_overview_lists_each_workflow_version_with_jobs_in_flight_workers_and_state(
    settings: Settings, tmp_path: Path, page: Page
) -> None:
    v1, v2 = deploy_v1.deploy_review.version, deploy_v2.deploy_review.version
    review = load_workflows(settings)["code_review"].version
    code = {"PYTHONPATH": str(ROOT), "CONVEYOR_API_ADMIN_TOKENS": "admin-token"}
    # Given Conveyor deployed on version 2 of `deploy_review`, with one worker
    with running(settings, tmp_path, ("api", "worker", "relay", "projector"),
                 CONVEYOR_WORKFLOW_MODULES="tests.e2e.deploy_v2", **code) as stack:
        # and two jobs enqueued on version 1 before the deploy, which no worker runs
        jobs = build_jobs(settings, {"deploy_review": deploy_v1.deploy_review})
        try:
            old = [str(jobs.start("deploy_review", f"old-{n}", {"pause": True}, by="test").job_id)
                   for n in (1, 2)]
        finally:
            jobs.close()

        def shows(*rows: tuple[str, str, int, int, str]) -> None:
            """The API answers these rows; the overview, loaded anew, shows exactly them."""
            def answered() -> bool:
                _, body = request(f"{stack.api}/workflow-queue/workflows",
                                  headers={"Authorization": "Bearer admin-token"})
                return [(w["workflow"], w["version"], w["in_flight"], w["workers"], w["state"])
                        for w in body["workflows"]] == list(rows)

            wait_until(answered, timeout=30)
            page.reload()
            expect(page.locator("#workflow-versions tbody td")).to_have_text(
                [text for workflow, version, in_flight, workers, state in rows
                 for text in (workflow, f"v{version}", str(in_flight), str(workers), state)])

        # When an admin token looks at the overview: version 1 waits for a worker
        sign_in(page, stack, "admin-token", "#/overview")
        shows(("code_review", review, 0, 1, "current"), ("deploy_review", v1, 2, 0, "waiting"),
              ("deploy_review", v2, 0, 1, "current"))

        # Then a version-1 worker runs its jobs up to their pause: version 1 is draining
        (tmp_path / "v1").mkdir()
        with running(settings, tmp_path / "v1", ("worker",),
                     CONVEYOR_WORKFLOW_MODULES="tests.e2e.deploy_v1", **code):
            for job_id in old:
                stack.job_when(job_id, "WAITING_FOR_EVENT")
            shows(("code_review", review, 0, 2, "current"),
                  ("deploy_review", v1, 2, 1, "draining"), ("deploy_review", v2, 0, 1, "current"))
            screenshot(page, "overview-versions")

            # and once their events arrive and they complete, version 1 has drained
            for job_id in old:
                assert request(f"{stack.api}/workflow-queue/events", orjson.dumps(
                    {"id": f"analysed-{job_id}", "type": "deploy.analysed", "key": job_id,
                     "payload": {}}), WRITE)[0] == 202
            for job_id in old:
                stack.job_when(job_id, "COMPLETED")
            shows(("code_review", review, 0, 2, "current"),
                  ("deploy_review", v1, 0, 1, "drained"), ("deploy_review", v2, 0, 1, "current"))

        # And a token without the admin scope is told so, without asking (no 403 logged)
        sign_in_to_write(page)
        expect(page.locator("#workflow-versions tbody")).to_have_text(
            "Workflow versions are shown to an admin token.")
