"""Fair dispatch with the real relay and worker: a burst from one organisation delays no other."""

from __future__ import annotations

from bench.tenants import scenario
from conveyor.settings import Settings

A_JOBS = 1000
B_JOBS = 10


def test_b_starts_while_a_burst_of_a_thousand_still_has_hundreds_queued(
    settings: Settings,
) -> None:
    # Given the relay and a worker, with the default window of 64 and no tenant limits
    assert settings.database_url
    # When A enqueues 1,000 jobs at once, and then B enqueues 10
    found = scenario(settings.database_url, A_JOBS, B_JOBS, window=64)

    # Then every one of B's first stages started while hundreds of A's jobs had not
    print(f"B's start latency p50 {found.p50 * 1000:.0f} ms, p99 {found.p99 * 1000:.0f} ms;"
          f" A's jobs not started at B's last start: {found.a_not_started};"
          f" {found.stages_per_second:.0f} stages/s")
    assert found.a_not_started >= 300, found
    # And B waited no more than a couple of seconds, not for A's burst to drain
    assert found.p99 < 2.0, found
