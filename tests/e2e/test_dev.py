"""The README's first command: `conveyor dev` runs a job to completion with no services set."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.e2e.stack import free_port
from tests.e2e.test_pipeline import STEPS
from tests.waiting import in_plan_order

CONVEYOR = str(Path(sys.executable).parent / "conveyor")


def test_the_dev_command_completes_a_demo_job_on_the_embedded_database(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env["CONVEYOR_WEBHOOKS_BIND"] = f"127.0.0.1:{free_port()}"
    env["CONVEYOR_API_BIND"] = f"127.0.0.1:{free_port()}"

    result = subprocess.run(
        [CONVEYOR, "dev", "--demo", "--exit-after-demo"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    assert "demo job finished: COMPLETED" in result.stdout
    stages = [line.split()[0] for line in result.stdout.splitlines() if "attempt 1" in line]
    assert in_plan_order(stages, STEPS)
    assert (tmp_path / ".conveyor" / "pgdata").is_dir()
    # A person reads Conveyor's own lines: the embedded server's go to a file,
    # and no stage warns about a discarded return value.
    assert '"logger":"pgserver"' not in result.stderr
    assert "pg_ctl" in (tmp_path / ".conveyor" / "pgserver.log").read_text()
    assert "not None" not in result.stderr
