"""Headless Debian chromium driven by Playwright, and signed deliveries made to order."""

from __future__ import annotations

import secrets
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from conveyor.http.webhooks.github import sign_github
from tests.conftest import ROOT
from tests.e2e.stack import Stack, request

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ARTIFACTS = ROOT / "artifacts"
SECRET = "It's a Secret to Everybody"  # the `settings` fixture's GitHub secret
READ = {"Authorization": "Bearer read-token"}
WRITE = {"Authorization": "Bearer write-token", "Content-Type": "application/json"}


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
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


def pull_request_delivery(repository: str, number: int) -> tuple[bytes, dict[str, str]]:
    """A signed `pull_request` `opened` delivery for any repository name, however odd."""
    head = secrets.token_hex(20)
    payload = {
        "action": "opened", "number": number,
        "pull_request": {
            "number": number, "state": "open", "draft": False,
            "title": f"Tighten validation ({number})",
            "html_url": f"https://github.com/{repository}/pull/{number}",
            "user": {"login": "octocat"},
            "head": {"ref": f"feature-{number}", "sha": head},
            "base": {"ref": "main", "sha": "0" * 40},
        },
        "repository": {"full_name": repository},
        "sender": {"login": "octocat"},
    }
    return _signed("pull_request", payload)


def review_command_delivery(repository: str, number: int) -> tuple[bytes, dict[str, str]]:
    """A signed comment asking for a review: it names no head commit, so validation fails."""
    payload = {
        "action": "created",
        "issue": {"number": number, "pull_request": {
            "html_url": f"https://github.com/{repository}/pull/{number}"}},
        "comment": {"id": secrets.randbelow(10**9), "body": "@conveyor review",
                    "user": {"login": "hubot"}},
        "repository": {"full_name": repository},
        "sender": {"login": "hubot"},
    }
    return _signed("issue_comment", payload)


def _signed(event: str, payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    body = orjson.dumps(payload)
    headers = {"Content-Type": "application/json", "X-GitHub-Event": event,
               "X-GitHub-Delivery": str(uuid.uuid4()), **sign_github(body, SECRET)}
    return body, headers


def deliver(stack: Stack, delivery: tuple[bytes, dict[str, str]]) -> str:
    """Post a delivery to the real webhook process; return the job's id."""
    status, answer = request(f"{stack.webhooks}/webhooks/github", *delivery)
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
