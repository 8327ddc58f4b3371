"""How the projector commits a page: every view in one transaction when it can."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import psycopg
import pytest
from psycopg.sql import SQL, Identifier

from conveyor.application import Jobs
from conveyor.bootstrap import build_projector
from conveyor.projections.batch import APPLICATION, BatchView, PositionMovedError
from conveyor.projections.runner import PROJECTIONS
from conveyor.replay import verify
from conveyor.settings import Settings
from tests.integration.projections_support import complete_next, trigger
from tests.waiting import wait_until

TRACKING = [f"{name}_tracking" for name in PROJECTIONS]


def writers(settings: Settings) -> dict[str, tuple[int, str]]:
    """Each view's tracked position and the id of the transaction that wrote it."""
    assert settings.database_url
    with psycopg.connect(settings.database_url) as conn:
        return {table: row for table in TRACKING if (row := conn.execute(
            SQL("SELECT notification_id, xmin::text FROM {} WHERE application_name = %s")
            .format(Identifier(table)), (APPLICATION,)).fetchone()) is not None}


def enqueue_some(jobs: Jobs, first: int, count: int) -> int:
    for n in range(first, first + count):
        job_id = jobs.enqueue("code_review", f"k{n}", trigger(n)).job_id
        complete_next(jobs, job_id)
    return jobs.recorder.max_notification_id() or 0


def project_to(settings: Settings, head: int, names: Sequence[str] = tuple(PROJECTIONS)) -> None:
    runner = build_projector(settings, names)
    try:
        runner.run_until(head)
    finally:
        runner.app.close()


def test_views_at_one_position_take_a_page_in_one_transaction(
    settings: Settings, jobs: Jobs
) -> None:
    # Given every view at the same position and a page of new events
    head = enqueue_some(jobs, 0, 3)

    # When the projector applies the page
    project_to(settings, head)

    # Then every view tracks the page's end, all written by the same transaction
    found = writers(settings)
    assert {position for position, _ in found.values()} == {head}
    assert len({xid for _, xid in found.values()}) == 1


def test_views_at_different_positions_each_commit_their_own_batch_once(
    settings: Settings, jobs: Jobs
) -> None:
    # Given the jobs view ahead of the others (a rebuilt view swapped in, say)
    project_to(settings, enqueue_some(jobs, 0, 2), ["jobs"])
    head = enqueue_some(jobs, 2, 2)

    # When the projector catches all of them up
    project_to(settings, head)

    # Then each view reached the head once, the jobs view in a transaction of its own
    found = writers(settings)
    assert {position for position, _ in found.values()} == {head}
    assert found["jobs_tracking"][1] != found["job_history_tracking"][1]
    assert verify(settings, list(PROJECTIONS), out=lambda _: None) == []


def test_a_view_held_by_a_rebuild_does_not_hold_back_the_others(
    settings: Settings, jobs: Jobs
) -> None:
    # Given a rebuild's swap holding the metrics view's lock
    head = enqueue_some(jobs, 0, 2)
    assert settings.database_url
    runner = build_projector(settings)
    thread = threading.Thread(target=runner.run_until, args=(head,), daemon=True)
    with psycopg.connect(settings.database_url) as swap:
        swap.execute("SELECT pg_advisory_xact_lock(%s)",
                     (BatchView.lock_key_for("metrics_tracking"),))

        # When the projector applies a page, Then the other views commit meanwhile
        thread.start()
        wait_until(lambda: {t: p for t, (p, _) in writers(settings).items()}
                   == {"jobs_tracking": head, "job_history_tracking": head}, timeout=10)
        swap.rollback()

    # And the metrics view follows once the swap lets go
    thread.join(10)
    runner.app.close()
    assert not thread.is_alive()
    assert {position for position, _ in writers(settings).values()} == {head}
    assert verify(settings, list(PROJECTIONS), out=lambda _: None) == []


def test_a_runner_that_finds_its_position_moved_rereads_and_applies_nothing_twice(
    settings: Settings, jobs: Jobs
) -> None:
    # Given two runners that read the same page from the same positions
    head = enqueue_some(jobs, 0, 2)
    one, two = build_projector(settings), build_projector(settings)
    try:
        one.positions(), two.positions()
        assert one.run_once(head) > 0

        # When the second commits the page too, the first one's commit moved it: refused
        with pytest.raises(PositionMovedError):
            two.run_once(head)

        # Then, rereading its positions, it finds nothing left to apply
        assert two.run_once(head) == 0
    finally:
        one.app.close()
        two.app.close()
    assert verify(settings, list(PROJECTIONS), out=lambda _: None) == []
