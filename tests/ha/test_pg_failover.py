"""PostgreSQL failover: the primary killed under load, the synchronous standby promoted."""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

from conveyor.aggregates.outside_event import outside_event_id_for
from conveyor.application import Jobs
from conveyor.projections.lag import measure_lag
from conveyor.relay.relay import TRACKING_NAME
from conveyor.store.tracking import TABLE as RELAY_TRACKING
from tests.e2e.stack import CONVEYOR
from tests.faults.audit import audit, report
from tests.ha.failover import failed_over
from tests.waiting import wait_until

TARGET_SECONDS = 10.0


def test_after_the_primary_is_killed_and_the_standby_promoted_no_acknowledged_delivery_is_lost(
    tmp_path: Path,
) -> None:
    # Given Conveyor on a multi-host URL, a synchronous standby and a steady load, when the
    # primary is killed -9 and the standby promoted
    with failed_over(tmp_path) as (_pg, processes, result):
        acknowledged = result.acknowledged

        # Then deliveries sent during the switch were answered 503, never a 2xx
        assert result.first_after_kill is not None, Counter(a.status for a in result.answers)
        assert set(result.during_switch) == {503}, result.during_switch
        assert set(Counter(a.status for a in result.answers)) == {202, 503}

        # And every acknowledged delivery's job is on the new primary and completed, each
        # stage's outcome recorded once
        assert result.lost == []
        assert result.finished == len(acknowledged), (result.finished, len(acknowledged))
        # And the outside event published after the switch was stored by `conveyor events`
        stored = outside_event_id_for(result.outside_event)
        wait_until(lambda: processes.count(
            "SELECT count(*) FROM jobs_events WHERE originator_id = %s", (stored,)) == 1,
            timeout=30)
        jobs = Jobs(env=processes.settings.eventsourcing_env())
        try:
            found = audit(processes, jobs, acknowledged)
            assert found.statuses == Counter({"COMPLETED": len(acknowledged)})

            # And the relay and the projector, never restarted, resumed from their positions
            # to the head of the log on the new primary
            head = jobs.recorder.max_notification_id()
            relayed = processes.count(f"SELECT notification_id FROM {RELAY_TRACKING}"
                                      " WHERE application_name = %s", (TRACKING_NAME,))
            lags = {lag.projection: lag.position for lag in measure_lag(jobs)}
        finally:
            jobs.close()
        assert relayed == head
        assert set(lags.values()) == {head}, (lags, head)
        for name in ("relay", "projector", "webhooks", "api", "worker", "events"):
            assert processes[name].alive() and processes[name].starts == 1, name
        # the relay took its lock again once, on the new primary: the pool's stale sessions
        # were dropped together, not met one interrupted round each
        assert processes["relay"].log.read_text().count('"message":"relay active"') == 2

        # And the read models rebuilt from the log match the live ones
        verify = subprocess.run([CONVEYOR, "replay", "verify"], env=processes.env,
                                capture_output=True, text=True, timeout=120)
        assert verify.returncode == 0, verify.stdout + verify.stderr

    seconds = result.seconds_without_service
    report(f"postgresql failover: {seconds:.2f} s without service (kill to first accepted"
           f" delivery; promoted {result.promoted_at - result.killed_at:.2f} s after the"
           f" kill); {len(acknowledged)} acknowledged, 0 lost; during the switch"
           f" {dict(result.during_switch)}")
    assert seconds < TARGET_SECONDS
