"""Benchmark: PostgreSQL failover under a steady load of webhook deliveries.

Usage: .venv/bin/python -m bench.ha_failover [--runs 1]

Method: the scenario of the ha tier's failover test (`tests.ha.failover`): a primary and
a synchronous standby, Conveyor's processes on the multi-host URL, one delivery every
0.1 s; the primary's processes killed with SIGKILL, the standby promoted 2 s later (a
failover manager's detection), then every acknowledged job must finish.

*Seconds without service*: from the kill to the answer of the first delivery accepted
after it. *Lost*: acknowledged deliveries whose job has no events on the new primary, or
never finished. Target: under 10 s, 0 lost.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from tests.ha.failover import failed_over


def measure(logs: Path | None = None) -> tuple[float, int]:
    """One failover: the seconds without service, and the acknowledged deliveries lost
    (no events on the new primary, or never finished)."""
    with tempfile.TemporaryDirectory() as scratch, \
            failed_over(logs or Path(scratch)) as (_, _, result):
        unfinished = len(result.acknowledged) - len(result.lost) - result.finished
        return result.seconds_without_service, len(result.lost) + unfinished


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args(argv)
    rows: list[tuple[Any, ...]] = []
    for run in range(1, args.runs + 1):
        seconds, lost = measure()
        rows.append((run, seconds, lost))
        print(f"run {run}: {seconds:.2f} s without service, {lost} acknowledged lost",
              flush=True)
    print("\n| run | seconds without service (target < 10) | acknowledged lost (target 0) |")
    print("|---|---|---|")
    for run, seconds, lost in rows:
        print(f"| {run} | {seconds:.2f} | {lost} |")


if __name__ == "__main__":
    main()
