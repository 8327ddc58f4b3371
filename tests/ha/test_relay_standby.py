"""A second relay on another "host" takes over within 5 s when the active one is SIGKILLed.

Each relay is its own process with its own connection settings: its own PostgreSQL
`application_name` (which names the session holding the relay's advisory lock, so the test
sees which relay is active from `pg_locks`) and its own spelling of the broker's address.
The standby polls for the lock every `CONVEYOR_RELAY_POLL_SECONDS`, left at its default here.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

from conveyor.application import Jobs
from conveyor.relay.relay import RELAY_LOCK_KEY
from tests.faults.audit import audit, report
from tests.faults.cluster import Cluster
from tests.faults.conftest import faulty, jobs  # noqa: F401  (the fault tier's fixtures)
from tests.faults.load import Load
from tests.waiting import wait_until

TAKEOVER_SECONDS = 5.0

HOLDER = ("SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
          " WHERE l.locktype = 'advisory' AND l.granted AND l.objid::bigint = %s")


def on_host(url: str, name: str) -> str:
    """The database URL as a relay on host `name` spells it: its own application_name."""
    parts = urlsplit(url)
    query = "&".join(p for p in (parts.query, f"application_name={name}") if p)
    return urlunsplit(parts._replace(query=query))


def holder(cluster: Cluster) -> str | None:
    """The application_name of the session holding the relay's lock, if any."""
    rows = cluster.query(HOLDER, (RELAY_LOCK_KEY,))
    return str(rows[0][0]) if rows else None


def test_a_standby_relay_takes_over_within_5_s_of_the_active_ones_sigkill_and_runs_nothing_twice(
    faulty: Cluster, jobs: Jobs,  # noqa: F811
) -> None:
    # Given two relays on two "hosts", each with its own connection settings, and workers
    poll = "1"  # the default: the standby's poll is what bounds the takeover
    broker = urlsplit(faulty.settings.amqp_url)
    active = faulty.add("relay-a", "relay", CONVEYOR_RELAY_POLL_SECONDS=poll,
                        CONVEYOR_DATABASE_URL=on_host(faulty.url, "relay-a"))
    wait_until(lambda: holder(faulty) == "relay-a", timeout=30, interval=0.05)
    faulty.add("relay-b", "relay", CONVEYOR_RELAY_POLL_SECONDS=poll,
               CONVEYOR_DATABASE_URL=on_host(faulty.url, "relay-b"),
               CONVEYOR_AMQP_URL=urlunsplit(broker._replace(
                   netloc=broker.netloc.replace("127.0.0.1", "localhost"))))
    faulty.add("worker-a", "worker")
    faulty.add("worker-b", "worker")

    with Load(faulty, jobs, "standby", interval=0.05) as load:
        # When jobs flow, and the active relay is killed with SIGKILL mid-flow
        wait_until(lambda: faulty.terminal_jobs() >= 20, timeout=60, interval=0.1)
        assert holder(faulty) == "relay-a"
        killed_at = datetime.now(UTC)
        began = time.monotonic()
        active.kill()

        # Then the standby holds the lock within 5 s, and sends its first messages
        wait_until(lambda: holder(faulty) == "relay-b", timeout=30, interval=0.02)
        locked = time.monotonic() - began
        wait_until(lambda: faulty.count(
            "SELECT count(*) FROM relay_dispatches WHERE sent_at > %s", (killed_at,)) > 0,
            timeout=30, interval=0.02)
        first_send = faulty.query(
            "SELECT min(sent_at) FROM relay_dispatches WHERE sent_at > %s", (killed_at,))
        sent = (first_send[0][0] - killed_at).total_seconds()
        assert locked < TAKEOVER_SECONDS, f"standby took the lock {locked:.2f} s after the kill"
        assert sent < TAKEOVER_SECONDS, f"standby's first send {sent:.2f} s after the kill"
        time.sleep(3)  # and jobs go on arriving under the new relay

    # And every accepted job completes, every stage's handler having run once
    accepted = load.accepted
    wait_until(lambda: faulty.terminal_jobs() == len(accepted), timeout=120, interval=0.5)
    found = audit(faulty, jobs, accepted)
    assert found.statuses == Counter({"COMPLETED": len(accepted)})
    assert (found.effects, found.conflicts) == (2 * len(accepted), 0)
    report(
        f"relay standby: relay-a SIGKILLed under load; relay-b (own application_name and"
        f" broker address, poll {poll} s) held the lock {locked:.2f} s and sent {sent:.2f} s"
        f" after the kill; {len(accepted)} jobs {dict(found.statuses)}, effects"
        f" {found.effects}, handlers run twice {found.conflicts}"
    )
