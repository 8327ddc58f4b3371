"""`conveyor jobs ...` and `conveyor events send` against the real API: output and exit codes."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import orjson

from conveyor.settings import Settings
from tests.e2e.stack import CONVEYOR, Stack, free_port
from tests.e2e.test_api_start import started_stack


def cli(stack: Stack | None, *args: str, api: str | None = None
        ) -> subprocess.CompletedProcess[str]:
    """Run `conveyor` as an operator would: the API's URL and token, nothing else."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env |= {"CONVEYOR_API_URL": api or (stack.api if stack else ""),
            "CONVEYOR_API_TOKEN": "write-token"}
    return subprocess.run([CONVEYOR, *args], env=env, capture_output=True, text=True,
                          timeout=60)


def test_each_command_prints_a_table_or_json_and_exits_as_documented(
    settings: Settings, tmp_path: Path,
) -> None:
    ok_input = tmp_path / "ok.json"
    ok_input.write_bytes(orjson.dumps({"name": "ada"}))
    with started_stack(settings, tmp_path, CONVEYOR_AST_ANALYSIS="on") as stack:
        # start --wait: the job's fields, exit 0 when it completes
        done = cli(stack, "jobs", "start", "greet", "--key", "k1", "--input", f"@{ok_input}",
                   "--wait", "--json")
        assert done.returncode == 0, done.stderr
        job = orjson.loads(done.stdout)
        assert (job["status"], job["result"]) == ("COMPLETED", {"text": "HELLO ADA"})
        # start again, human: the same job, already started
        again = cli(stack, "jobs", "start", "greet", "--key", "k1", "--input", f"@{ok_input}")
        assert (again.returncode, again.stdout) == (0, f"already started {job['job_id']}\n")
        # show: a table of fields; exit 1 for a failed job
        shown = cli(stack, "jobs", "show", job["job_id"])
        assert shown.returncode == 0
        assert f"job_id:        {job['job_id']}" in shown.stdout
        assert "status:        COMPLETED" in shown.stdout
        assert 'result:        {"text":"HELLO ADA"}' in shown.stdout
        failed = cli(stack, "jobs", "start", "greet", "--key", "f1", "--input",
                     '{"name": "x", "fail": true}', "--wait")
        assert failed.returncode == 1, failed.stderr
        assert "status:        FAILED" in failed.stdout
        failed_id = failed.stdout.split("job_id:")[1].split()[0]
        # list: a table by default, JSON parsed back; filtered by status
        table = cli(stack, "jobs", "list", "--status", "FAILED")
        assert table.returncode == 0
        header, *rows = table.stdout.splitlines()
        assert header.split() == ["JOB_ID", "WORKFLOW", "STATUS", "ORGANIZATION", "CREATED_AT"]
        assert [r.split()[:3] for r in rows] == [[failed_id, "greet", "FAILED"]]
        listed = orjson.loads(cli(stack, "jobs", "list", "--json").stdout)
        assert {j["job_id"] for j in listed} == {job["job_id"], failed_id}
        # retry: accepted; cancel of a job that cannot be: refused, exit 2
        retried = cli(stack, "jobs", "retry", failed_id, "--json")
        assert retried.returncode == 0, retried.stderr
        assert orjson.loads(retried.stdout) == {"job_id": failed_id, "status": "retry accepted"}
        refused = cli(stack, "jobs", "cancel", job["job_id"])
        assert refused.returncode == 2
        assert "409" in refused.stderr
        # A review waits for its AST: `events send` resumes it; cancel of a running one
        review = orjson.loads(cli(stack, "jobs", "start", "code_review", "--key", "r1",
                                  "--input", '{"platform": "github", "repository": "a/b",'
                                  ' "pull_request": "1", "head_commit": "abc"}',
                                  "--wait", "--json").stdout)
        assert review["status"] == "WAITING_FOR_EVENT"
        sent = cli(stack, "events", "send", "ast.task.completed", f"ast-{review['job_id']}",
                   "--payload", '{"functions": 1}', "--id", "ev-1", "--json")
        assert sent.returncode == 0, sent.stderr
        assert orjson.loads(sent.stdout) == {"id": "ev-1", "duplicate": False}
        resent = cli(stack, "events", "send", "ast.task.completed", "k", "--id", "ev-1")
        assert (resent.returncode, resent.stdout) == (0, "event ev-1 was sent before\n")
        assert stack.job_when(review["job_id"], "COMPLETED")
        other = orjson.loads(cli(stack, "jobs", "start", "code_review", "--key", "r2",
                                 "--input", '{"platform": "github", "repository": "a/b",'
                                 ' "pull_request": "2", "head_commit": "abc"}',
                                 "--json").stdout)
        cancelled = cli(stack, "jobs", "cancel", other["job_id"])
        assert (cancelled.returncode, cancelled.stdout) == (
            0, f"cancel of {other['job_id']} accepted\n")
        # not found: 3; usage: 2 (a bad option, a file not there, input refused by the API)
        missing = cli(stack, "jobs", "show", str(uuid.uuid4()))
        assert missing.returncode == 3
        assert "No job" in missing.stderr
        assert cli(stack, "jobs", "show").returncode == 2
        assert cli(stack, "jobs", "start", "greet", "--key", "x", "--input",
                   "@/nonexistent.json").returncode == 2
        invalid = cli(stack, "jobs", "start", "greet", "--key", "x", "--input", "{}")
        assert invalid.returncode == 2
        assert "'input.name' is required." in invalid.stderr
        assert cli(stack, "jobs", "start", "nope", "--key", "x").returncode == 3
    # unreachable: 4
    down = cli(None, "jobs", "list", api=f"http://127.0.0.1:{free_port()}")
    assert down.returncode == 4
    assert "unreachable" in down.stderr
