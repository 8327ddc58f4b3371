"""A gunicorn worker that gives a thread to a request only once the whole request is in.

gunicorn's `gthread` worker hands a connection to a thread as soon as it is readable; the
thread then blocks in the body read for as long as the client takes. A webhook receiver
faces the internet: 64 clients that sent their headers and one byte of a body held every
thread of the default topology (4 workers x 2 threads) and no real delivery got an answer.
A read deadline alone does not fix it: 200 such clients each holding one of 8 threads for
`CONVEYOR_BODY_TIMEOUT` seconds still starve everyone for minutes.

So this worker reads each request's bytes in its main loop, non-blocking, next to the
accepting socket, and submits the connection to the thread pool only when the request
line, the headers and the whole body (by `Content-Length`, or to the last chunk) are
buffered; the thread then parses and answers it without touching the socket until the
response. A request not complete within `CONVEYOR_BODY_TIMEOUT` of its first byte (of the
connection's accept, for a new connection) is answered 408 and closed. A request whose
declared length is over `CONVEYOR_MAX_BODY_BYTES`, or whose head is over 64 KiB, goes to a
thread at once so the app or gunicorn's parser refuses it (413, 400) without reading more.
Measured with `bench/ingest.py` (see the README, "Facing the internet").
"""

from __future__ import annotations

import contextlib
import errno
import selectors
import time
from collections import deque
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from gunicorn.workers.gthread import TConn, ThreadWorker

from conveyor.settings import Settings

HEAD_LIMIT = 64 * 1024
RECV_BYTES = 256 * 1024
_LATE = b'{"title": "Request Timeout", "description": "The request did not arrive in time."}'
TIMED_OUT = (b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n"
             b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
             % (len(_LATE), _LATE))
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def request_complete(data: bytes | bytearray, max_body: int) -> bool:
    """Whether `data` holds a whole request, or enough for a thread to refuse it at once."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return len(data) > HEAD_LIMIT
    fields = head_fields(bytes(data[:end]))
    if "chunked" in fields.get("transfer-encoding", ""):
        return chunks_complete(data, end + 4, max_body)
    declared = fields.get("content-length")
    if declared is None:
        return True
    try:
        length = int(declared)
    except ValueError:
        return True  # gunicorn's parser answers 400
    return length > max_body or len(data) - (end + 4) >= length


def head_fields(head: bytes) -> dict[str, str]:
    """The header fields of a request head, names lowered (the last of a repeated one)."""
    fields = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        fields[name.strip().lower().decode("latin-1")] = value.strip().lower().decode("latin-1")
    return fields


def chunks_complete(data: bytes | bytearray, at: int, max_body: int) -> bool:
    """Whether a chunked body starting at `at` has reached its last chunk and trailers."""
    size_total = 0
    while True:
        line_end = data.find(b"\r\n", at)
        if line_end < 0:
            return False
        try:
            size = int(bytes(data[at:line_end]).split(b";")[0].strip(), 16)
        except ValueError:
            return True  # malformed: the parser refuses it
        if size == 0:
            trailers = line_end + 2
            return (data.startswith(b"\r\n", trailers)
                    or data.find(b"\r\n\r\n", trailers) >= 0)
        size_total += size
        if size_total > max_body:
            return True  # the app refuses it at the limit (413)
        at = line_end + 2 + size + 2
        if at > len(data):
            return False


@dataclass
class Incoming:
    """A connection whose next request is being buffered by the main loop."""

    conn: TConn
    deadline: float
    data: bytearray = field(default_factory=bytearray)
    continued: bool = False
    done: bool = False


class BufferingThreadWorker(ThreadWorker):  # type: ignore[misc]
    """gthread, with every request read whole by the main loop before it gets a thread."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = Settings.from_env()
        self.body_timeout = settings.body_timeout
        self.max_body = settings.max_body_bytes
        self.incoming: deque[Incoming] = deque()

    def enqueue_req(self, conn: TConn) -> None:
        """Buffer the connection's next request; it reaches a thread when whole."""
        if self.cfg.is_ssl:
            super().enqueue_req(conn)  # TLS is read in the thread, as gthread does
            return
        pending = conn.parser.unreader.take_buffered() if conn.parser is not None else b""
        incoming = Incoming(conn, time.monotonic() + self.body_timeout, bytearray(pending))
        if pending and request_complete(incoming.data, self.max_body):
            self.dispatch(incoming)
            return
        conn.sock.setblocking(False)
        self.incoming.append(incoming)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_bytes, incoming))
        # A kept-alive connection is here because it became readable: read it now rather
        # than after another turn of the loop (each turn waits for the GIL).
        self.on_bytes(incoming, conn.sock)

    def on_bytes(self, incoming: Incoming, sock: Any) -> None:
        try:
            data = sock.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.drop(incoming)  # the client went away
            return
        incoming.data += data
        if request_complete(incoming.data, self.max_body):
            self.poller.unregister(sock)
            incoming.done = True
            self.dispatch(incoming)
        elif not incoming.continued and b"\r\n\r\n" in incoming.data:
            incoming.continued = True
            head = bytes(incoming.data[:incoming.data.find(b"\r\n\r\n")])
            if head_fields(head).get("expect") == "100-continue":
                # The client waits for this before it sends the body. gunicorn sends it
                # again when the app starts: a client reads any number of 1xx answers.
                self.send_quietly(sock, CONTINUE)

    def dispatch(self, incoming: Incoming) -> None:
        conn = incoming.conn
        conn.init()  # the HTTP/1 parser, reading from the socket once the buffer is spent
        conn.parser.unreader.unread(bytes(incoming.data))
        incoming.data = bytearray()
        super().enqueue_req(conn)

    def drop(self, incoming: Incoming, answer: bytes | None = None) -> None:
        incoming.done = True
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(incoming.conn.sock)
        if answer is not None:
            self.send_quietly(incoming.conn.sock, answer)
        self.nr_conns -= 1
        incoming.conn.close()

    @staticmethod
    def send_quietly(sock: Any, data: bytes) -> None:
        """Send a short answer on a non-blocking socket; a client that cannot take it loses it."""
        try:
            sock.send(data)
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EPIPE, errno.ECONNRESET):
                raise

    def murder_pending(self) -> None:
        """Answer 408 to requests past their deadline (silently close a silent connection)."""
        super().murder_pending()
        now = time.monotonic()
        while self.incoming and (self.incoming[0].done or self.incoming[0].deadline <= now):
            incoming = self.incoming.popleft()
            if not incoming.done:
                self.drop(incoming, TIMED_OUT if incoming.data else None)

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        # Wake up for the next deadline, so a 408 comes at the bound, not up to 1 s late.
        while self.incoming and self.incoming[0].done:
            self.incoming.popleft()
        if self.incoming:
            timeout = max(0.0, min(timeout, self.incoming[0].deadline - time.monotonic()))
        super().wait_for_and_dispatch_events(timeout)
