"""Slow clients for the ingest benchmark: headers and one byte of a body, then nothing."""

from __future__ import annotations

import selectors
import socket
import threading
import time
from types import TracebackType
from urllib.parse import urlsplit

DECLARED_BYTES = 100_000


class SlowClients:
    """`count` connections that each send a request's head and one byte of its body, then wait.

    A thread notes, for each, how long after its byte the server answered and with what
    status line (or closed without answering); `answers` holds (seconds, status or None).
    """

    def __init__(self, url: str, count: int) -> None:
        self.url = urlsplit(url)
        self.count = count
        self.answers: list[tuple[float, int | None]] = []
        self.sockets: list[socket.socket] = []
        self.sent_at: dict[socket.socket, float] = {}
        self.watcher = threading.Thread(target=self.watch, daemon=True)

    def __enter__(self) -> SlowClients:
        head = (f"POST {self.url.path} HTTP/1.1\r\nHost: {self.url.netloc}\r\n"
                f"Content-Type: application/json\r\nX-GitHub-Event: pull_request\r\n"
                f"Content-Length: {DECLARED_BYTES}\r\n\r\n{{").encode()
        for _ in range(self.count):
            sock = socket.create_connection((self.url.hostname, self.url.port or 80))
            sock.sendall(head)
            self.sent_at[sock] = time.monotonic()
            self.sockets.append(sock)
        self.watcher.start()
        return self

    def watch(self) -> None:
        with selectors.DefaultSelector() as selector:
            for sock in self.sockets:
                selector.register(sock, selectors.EVENT_READ)
            deadline = time.monotonic() + 120
            while len(self.answers) < self.count and time.monotonic() < deadline:
                for key, _ in selector.select(timeout=0.5):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    try:
                        first = sock.recv(4096)
                    except OSError:
                        first = b""
                    status = int(first.split()[1]) if first.startswith(b"HTTP/") else None
                    self.answers.append((time.monotonic() - self.sent_at[sock], status))
                    selector.unregister(sock)

    def wait(self, timeout: float) -> None:
        """Wait until every connection was answered or closed, or `timeout` passed."""
        self.watcher.join(timeout)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        for sock in self.sockets:
            sock.close()
