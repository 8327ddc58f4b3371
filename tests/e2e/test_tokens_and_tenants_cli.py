"""`conveyor tokens ...` and `conveyor tenants ...` as a user runs them, against a real API."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from conveyor.settings import Settings
from tests.e2e.stack import conveyor, request, running


def refused(result: subprocess.CompletedProcess[str], says: str) -> None:
    assert result.returncode == 2, result
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert says in result.stderr and "Traceback" not in result.stderr


def test_tenant_settings_are_set_shown_and_bad_input_changes_nothing(database: str) -> None:
    # Given an organisation's settings
    set_ = conveyor(database, "tenants", "set", "acme", "--max-running", "0", "--priority", "5",
                    "--rate", "github_api=5000/h", "--rate", "llm_tokens=200000/d")
    assert set_.returncode == 0, set_.stderr

    # When malformed settings are given
    refused(conveyor(database, "tenants", "set", "acme", "--max-running", "3",
                     "--rate", "x=fast"), "--rate: 'x=fast' is not NAME=AMOUNT/PERIOD")
    refused(conveyor(database, "tenants", "set", "acme", "--max-running", "-1"),
            "--max-running")

    # Then nothing changed, and an organisation without settings shows the defaults
    shown = conveyor(database, "tenants", "show", "acme")
    assert shown.stdout.splitlines() == [
        "acme:", "  max-running  0", "  priority     5",
        "  rates        github_api=5000/h, llm_tokens=200000/d"]
    other = conveyor(database, "tenants", "show", "globex").stdout.splitlines()
    assert other == ["globex:", "  max-running  no limit (default)", "  priority     10 (default)",
                     "  rates        none"]
    everyone = conveyor(database, "tenants", "show").stdout
    assert everyone.startswith("defaults:\n") and "acme:\n" in everyone


def test_a_cli_token_works_on_the_real_api_until_revoked_then_every_process_refuses_it(
    settings: Settings, tmp_path: Path,
) -> None:
    database = settings.database_url
    assert database
    refused(conveyor(database, "tokens", "create", "--name", "x", "--scope", "root"),
            "unknown scope 'root'")
    refused(conveyor(database, "tokens", "create", "--name", "ops", "--scope", "admin",
                     "--organization", "acme"), "cannot be limited")
    assert conveyor(database, "tokens", "list").stdout.splitlines()[1:] == []

    # Given tokens made with the CLI, and an API of two worker processes
    created = conveyor(database, "tokens", "create", "--name", "acme-ci", "--scope", "read",
                       "--organization", "acme")
    token = created.stdout.strip()
    admin = conveyor(database, "tokens", "create", "--name", "ops", "--scope", "admin")
    assert created.returncode == admin.returncode == 0
    assert conveyor(database, "tenants", "set", "acme", "--max-running", "2").returncode == 0
    with running(settings, tmp_path, processes=("api",), CONVEYOR_WEB_WORKERS="2") as stack:
        def whoami() -> int:
            return request(f"{stack.api}/workflow-queue/whoami",
                           headers={"Authorization": f"Bearer {token}"})[0]

        status, me = request(f"{stack.api}/workflow-queue/whoami",
                             headers={"Authorization": f"Bearer {token}"})
        assert (status, me["name"], me["scope"], me["organizations"]) == (
            200, "acme-ci", "read", ["acme"])
        _, tenant = request(f"{stack.api}/workflow-queue/tenants/acme",
                            headers={"Authorization": f"Bearer {admin.stdout.strip()}"})
        assert tenant["max_running"] == 2
        assert all(whoami() == 200 for _ in range(10))  # both processes have it cached
        listed = conveyor(database, "tokens", "list").stdout
        assert "acme-ci" in listed and token not in listed

        # When it is revoked
        assert conveyor(database, "tokens", "revoke", "acme-ci").returncode == 0
        revoked_at = time.monotonic()

        # Then every API process refuses it within 1 s, and from then on
        answers = []
        while (elapsed := time.monotonic() - revoked_at) < 1.5:
            answers.append((elapsed, whoami()))
        first = min(at for at, status in answers if status == 401)
        assert first < 1.0 and all(s == 401 for at, s in answers if at >= 1.0), answers
    refused(conveyor(database, "tokens", "revoke", "acme-ci"), "no unrevoked token")
