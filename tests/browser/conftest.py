"""Headless Debian chromium driven by Playwright, and helpers that set up jobs to look at."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.conftest import ROOT
from tests.deliveries import Delivery, github_comment, github_pull_request
from tests.e2e.stack import Stack, request, send

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ARTIFACTS = ROOT / "artifacts"
READ = {"Authorization": "Bearer read-token"}
WRITE = {"Authorization": "Bearer write-token", "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One browser per module, not per session: Playwright's sync API keeps an event loop
    running in the main thread while it is open, and `asyncio.run` in any later test fails."""
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.fail("Debian's chromium is not installed (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def problems() -> list[str]:
    """Script errors, console errors and dialogs seen in the tab; a test may expect some."""
    return []


@pytest.fixture
def page(browser: Browser, problems: list[str]) -> Iterator[Page]:
    """A fresh tab (so a fresh sessionStorage) that fails the test on any script error."""
    context = browser.new_context(viewport={"width": 1440, "height": 900},
                                  device_scale_factor=1)
    tab = context.new_page()
    tab.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    tab.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error"
           else None)
    tab.on("dialog", lambda d: problems.append(f"a dialog opened: {d.message}"))
    expect.set_options(timeout=20_000)
    yield tab
    context.close()
    assert not problems, problems


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"dashboard-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def sign_in(page: Page, stack: Stack, token: str, where: str = "") -> None:
    """Open the dashboard (at a hash route, if given) and sign in with the token."""
    page.goto(f"{stack.api}/{where}")
    page.fill("#token", token)
    page.click("button[type=submit]")
    expect(page.locator("header.topbar")).to_be_visible()


def sign_in_to_write(page: Page) -> None:
    """Sign out, then in again with the write token, on the page shown."""
    page.click("#sign-out")
    page.fill("#token", "write-token")
    page.click("button[type=submit]")
    expect(page.locator(".scope")).to_have_text("read & write")


def pull_request_delivery(repository: str, number: int) -> Delivery:
    """A signed `pull_request` `opened` delivery for any repository name, however odd."""
    return github_pull_request("opened", repository=repository, number=number)


def review_command_delivery(repository: str, number: int) -> Delivery:
    """A signed comment asking for a review: it names no head commit, so validation fails."""
    return github_comment("@conveyor review", repository=repository, number=number)


def deliver(stack: Stack, delivery: Delivery) -> str:
    """Post a delivery to the real webhook process; return the job's id."""
    status, answer = send(stack, delivery)
    assert status == 202, answer
    return str(answer["job_id"])


def answer_wait(stack: Stack, job_id: str) -> None:
    """Play the AST service: record the outside event the waiting job asked for."""
    job = stack.job_when(job_id, "WAITING_FOR_EVENT")
    [wait] = job["waiting_for"]
    event = {"id": f"done-{wait['key']}", "type": wait["event_type"], "key": wait["key"],
             "payload": {"functions": 12}}
    status, answer = request(f"{stack.api}/workflow-queue/events", orjson.dumps(event), WRITE)
    assert status == 202, answer


def cancel(stack: Stack, job_id: str) -> None:
    status, answer = request(f"{stack.api}/workflow-queue/jobs/{job_id}/cancel",
                             orjson.dumps({"reason": "superseded"}), WRITE)
    assert status == 202, answer
