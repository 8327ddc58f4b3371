"""Private PostgreSQL and RabbitMQ servers that a test may stop, restart or cut off.

The machine's own servers are shared by every test run on it, so a test that takes a server
down runs on a private one instead: started from the Debian packages' binaries in a temporary
folder, on free ports, and removed afterwards.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pika
import psycopg

from tests.e2e.stack import free_port
from tests.waiting import wait_until

POSTGRES_BINARIES = Path("/usr/lib/postgresql")
RABBITMQ_BINARIES = Path("/usr/lib/rabbitmq/bin")
START_SECONDS = 60.0


def _tail(log: Path, lines: int = 30) -> str:
    if not log.exists():
        return f"(no {log})"
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def _run(command: list[str], folder: Path, log: Path, **options: Any) -> None:
    """Run a server's command in its folder; fail with the command's output and the log."""
    done = subprocess.run(command, cwd=folder, capture_output=True, timeout=START_SECONDS + 10,
                          **options)
    if done.returncode:
        raise AssertionError(f"{' '.join(command)} exited {done.returncode}:\n"
                             f"{(done.stdout + done.stderr).decode(errors='replace')}\n"
                             f"{_tail(log)}")


def _missing(package: str, path: Path) -> AssertionError:
    return AssertionError(f"private {package} needs Debian's {package} package: no {path}")


@dataclass
class PrivatePostgres:
    """A PostgreSQL cluster of the test run's own, with trust authentication."""

    folder: Path
    bin: Path
    port: int
    # initdb and postgres refuse to run as root; as root, they run as the package's user.
    user: str | None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def log(self) -> Path:
        return self.folder / "postgres.log"

    def ctl(self, *args: str) -> None:
        _run([str(self.bin / "pg_ctl"), "--pgdata", str(self.folder / "data"), "--log",
              str(self.log), "--timeout", str(int(START_SECONDS)), *args],
             self.folder, self.log, **self.as_user())

    def as_user(self) -> dict[str, Any]:
        if self.user is None:
            return {}
        return {"user": self.user, "group": self.user, "extra_groups": []}

    def answers(self) -> bool:
        try:
            with psycopg.connect(self.url, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            return False

    def start(self) -> None:
        self.ctl("--wait", "start")
        wait_until(self.answers, timeout=START_SECONDS, interval=0.1)

    def stop(self, mode: str = "fast") -> None:
        self.ctl("--wait", "--mode", mode, "stop")

    def restart(self) -> None:
        """A fast restart, as `pg_ctlcluster restart` does; returns once it answers."""
        self.ctl("--wait", "--mode", "fast", "restart")
        wait_until(self.answers, timeout=START_SECONDS, interval=0.1)

    @contextmanager
    def stopped(self) -> Iterator[None]:
        """PostgreSQL down for the body; started again, and answering, whatever happens."""
        self.stop()
        try:
            yield
        finally:
            self.start()


def _postgres_binaries() -> Path:
    """The newest installed major version's `bin` folder (Debian names them 15, 16, ...)."""
    found = list(POSTGRES_BINARIES.glob("*/bin/initdb"))
    if not found:
        raise _missing("postgresql", POSTGRES_BINARIES / "<version>/bin/initdb")
    return max(found, key=lambda initdb: int(initdb.parents[1].name)).parent


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A new cluster, started and answering; stopped and deleted afterwards."""
    binaries = _postgres_binaries()
    user = "postgres" if os.geteuid() == 0 else None
    folder = Path(tempfile.mkdtemp(prefix="conveyor-postgres-"))
    if user:
        owner = pwd.getpwnam(user)
        os.chown(folder, owner.pw_uid, owner.pw_gid)
    server = PrivatePostgres(folder, binaries, free_port(), user)
    try:
        _run([str(binaries / "initdb"), "--pgdata", str(folder / "data"), "--username",
              "postgres", "--auth", "trust", "--encoding", "UTF8", "--locale", "C.UTF-8",
              "--no-sync"], folder, server.log, **server.as_user())
        with (folder / "data" / "postgresql.conf").open("a") as conf:
            # Durability across a power cut is not under test; a clean restart keeps all.
            conf.write(f"port = {server.port}\nlisten_addresses = '127.0.0.1'\n"
                       f"unix_socket_directories = '{folder}'\nfsync = off\n"
                       "synchronous_commit = off\nfull_page_writes = off\n")
        server.start()
        yield server
    finally:
        if (folder / "data" / "postmaster.pid").exists():
            with suppress(AssertionError, subprocess.TimeoutExpired):
                server.stop("immediate")
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class PrivateRabbitMQ:
    """A RabbitMQ node of the test run's own, registered with the machine's epmd."""

    folder: Path
    node: str
    port: int
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    @property
    def log(self) -> Path:
        return self.folder / "server.log"

    def ctl(self, *args: str) -> None:
        _run([str(RABBITMQ_BINARIES / "rabbitmqctl"), "-n", self.node, *args], self.folder,
             self.log, env=self.env)

    def answers(self) -> bool:
        parameters = pika.URLParameters(self.url)
        parameters.connection_attempts = 1
        parameters.socket_timeout = 2
        try:
            pika.BlockingConnection(parameters).close()
            return True
        except pika.exceptions.AMQPError:
            return False

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(RABBITMQ_BINARIES / "rabbitmq-server")], env=self.env, cwd=self.folder,
                stdout=log, stderr=log, start_new_session=True,
            )

        def up() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"rabbitmq-server exited {self.process.returncode}:\n"
                                     f"{_tail(self.log)}")
            return self.answers()

        try:
            wait_until(up, timeout=START_SECONDS, interval=0.2)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{_tail(self.log)}") from None

    def stop(self) -> None:
        """Stop the node; kill its process group if it does not exit in time (cleanup)."""
        if self.process is None:
            return
        with suppress(AssertionError, subprocess.TimeoutExpired):
            self.ctl("stop")
        try:
            self.process.wait(START_SECONDS)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    @contextmanager
    def stopped(self) -> Iterator[None]:
        """RabbitMQ's app down for the body; started again, and answering, whatever happens."""
        self.ctl("stop_app")
        try:
            yield
        finally:
            self.ctl("start_app")
            wait_until(self.answers, timeout=START_SECONDS, interval=0.2)


def rabbitmq_node() -> PrivateRabbitMQ:
    """A new node's folder, configuration and environment, not started yet."""
    server = RABBITMQ_BINARIES / "rabbitmq-server"
    if not server.exists():
        raise _missing("rabbitmq-server", server)
    folder = Path(tempfile.mkdtemp(prefix="conveyor-rabbitmq-"))
    port, dist_port = free_port(), free_port()
    (folder / "rabbitmq.conf").write_text(f"listeners.tcp.local = 127.0.0.1:{port}\n")
    (folder / "rabbitmq-env.conf").write_text("")
    (folder / "enabled_plugins").write_text("[].\n")
    node = f"conveyor-test-{uuid.uuid4().hex[:8]}@localhost"
    env = {
        **os.environ,
        # The Erlang cookie lives in HOME; server and rabbitmqctl share it.
        "HOME": str(folder),
        "RABBITMQ_NODENAME": node,
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_DIST_PORT": str(dist_port),
        "RABBITMQ_CONFIG_FILE": str(folder / "rabbitmq.conf"),
        "RABBITMQ_CONF_ENV_FILE": str(folder / "rabbitmq-env.conf"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(folder / "enabled_plugins"),
        "RABBITMQ_MNESIA_BASE": str(folder / "mnesia"),
        "RABBITMQ_LOG_BASE": str(folder / "log"),
        "RABBITMQ_PID_FILE": str(folder / "rabbitmq.pid"),
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS":
            "-kernel inet_dist_use_interface {127,0,0,1}",
    }
    return PrivateRabbitMQ(folder, node, port, env)


@contextmanager
def private_rabbitmq() -> Iterator[PrivateRabbitMQ]:
    """A new node, started and answering; stopped and its folder deleted afterwards."""
    broker = rabbitmq_node()
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()
        shutil.rmtree(broker.folder, ignore_errors=True)


def timed_start() -> None:
    """Print how long each private server takes to start (`python -m tests.servers`)."""
    for name, server in (("postgresql", private_postgres), ("rabbitmq", private_rabbitmq)):
        began = time.monotonic()
        with server():
            print(f"{name}: answering after {time.monotonic() - began:.1f}s", flush=True)


if __name__ == "__main__":
    timed_start()
