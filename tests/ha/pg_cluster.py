"""A private PostgreSQL primary with a synchronous streaming standby, for failover tests.

Both servers run from the Debian package's binaries in temporary folders on free ports,
as `tests.servers.private_postgres` does, never touching the machine's own service:
`initdb` makes the primary, `pg_basebackup -R` the standby, and the primary names every
standby synchronous (`synchronous_standby_names = '*'`), so a commit it acknowledges is on
the standby's disk too. `kill_primary` is kill -9 of the primary's every process, as a
crashed host; `promote` is `pg_ctl promote` of the standby. The standby itself names no
synchronous standby, so once promoted it commits alone instead of waiting forever.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tests.e2e.stack import free_port
from tests.servers import START_SECONDS, PrivatePostgres, _postgres_binaries, _run
from tests.waiting import wait_until

# What both servers share: durability across a power cut is not under test (fsync off),
# but a commit must wait for the standby (synchronous_commit on, the default).
SHARED_CONF = ("fsync = off\nfull_page_writes = off\nwal_level = replica\n"
               "max_wal_senders = 4\nhot_standby = on\nwal_receiver_status_interval = 1s\n")


@dataclass
class PgCluster:
    """The primary and its synchronous standby; `url` names both, for Conveyor's processes."""

    primary: PrivatePostgres
    standby: PrivatePostgres

    def multi_host_url(self, database: str = "postgres") -> str:
        """The libpq multi-host URL that finds whichever of the two accepts writes."""
        return (f"postgresql://postgres@127.0.0.1:{self.primary.port},"
                f"127.0.0.1:{self.standby.port}/{database}?target_session_attrs=read-write")

    def standby_url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.standby.port}/{database}"

    def synchronous(self) -> bool:
        """Whether the primary has the standby streaming as its synchronous standby."""
        with psycopg.connect(self.primary.url, connect_timeout=2) as conn:
            row = conn.execute("SELECT count(*) FROM pg_stat_replication"
                               " WHERE sync_state = 'sync' AND state = 'streaming'").fetchone()
        return bool(row and row[0] == 1)

    def replayed(self) -> bool:
        """Whether the standby has replayed everything the primary has written."""
        with psycopg.connect(self.primary.url, connect_timeout=2) as conn:
            row = conn.execute("SELECT count(*) FROM pg_stat_replication"
                               " WHERE replay_lsn = pg_current_wal_lsn()").fetchone()
        return bool(row and row[0] == 1)

    def kill_primary(self) -> None:
        """kill -9 the primary's postmaster and every one of its processes at once."""
        pid = int((self.primary.folder / "data" / "postmaster.pid").read_text().split()[0])
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        for victim in (pid, *map(int, children)):
            with suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)
        wait_until(lambda: not self.primary.answers(), timeout=10, interval=0.05)

    def promote(self) -> None:
        """Promote the standby and return once it accepts writes."""
        self.standby.ctl("--wait", "promote")

        def writable() -> bool:
            with psycopg.connect(self.standby.url, connect_timeout=2) as conn:
                row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
            return bool(row and not row[0])

        wait_until(writable, timeout=START_SECONDS, interval=0.05)


def _server(root: Path, name: str) -> PrivatePostgres:
    folder = root / name
    folder.mkdir()
    user = "postgres" if os.geteuid() == 0 else None
    if user:
        owner = pwd.getpwnam(user)
        os.chown(folder, owner.pw_uid, owner.pw_gid)
    return PrivatePostgres(folder, _postgres_binaries(), free_port(), user)


def _configure(server: PrivatePostgres, extra: str) -> None:
    with (server.folder / "data" / "postgresql.conf").open("a") as conf:
        conf.write(f"port = {server.port}\nlisten_addresses = '127.0.0.1'\n"
                   f"unix_socket_directories = '{server.folder}'\n{extra}")


@contextmanager
def pg_cluster() -> Iterator[PgCluster]:
    """A primary and a synchronous standby, streaming and answering; both removed after."""
    root = Path(tempfile.mkdtemp(prefix="conveyor-pg-cluster-"))
    os.chmod(root, 0o755)
    primary, standby = _server(root, "primary"), _server(root, "standby")
    try:
        _run([str(primary.bin / "initdb"), "--pgdata", str(primary.folder / "data"),
              "--username", "postgres", "--auth", "trust", "--encoding", "UTF8",
              "--locale", "C.UTF-8", "--no-sync"], primary.folder, primary.log,
             **primary.as_user())
        _configure(primary, SHARED_CONF + "synchronous_standby_names = '*'\n")
        primary.start()
        _run([str(standby.bin / "pg_basebackup"), "--pgdata", str(standby.folder / "data"),
              "--host", "127.0.0.1", "--port", str(primary.port), "--username", "postgres",
              "--write-recovery-conf", "--wal-method", "stream", "--checkpoint", "fast",
              "--no-sync"], standby.folder, standby.log, **standby.as_user())
        _configure(standby, SHARED_CONF + "synchronous_standby_names = ''\n")
        standby.start()
        found = PgCluster(primary, standby)
        wait_until(found.synchronous, timeout=START_SECONDS, interval=0.1)
        yield found
    finally:
        for server in (primary, standby):
            if (server.folder / "data" / "postmaster.pid").exists():
                with suppress(AssertionError, subprocess.TimeoutExpired):
                    server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
