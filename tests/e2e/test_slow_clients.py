"""End to end: slow or hostile clients against the webhook server's production topology."""

from __future__ import annotations

import http.client
import selectors
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.settings import Settings
from tests.deliveries import Delivery, github_pull_request
from tests.e2e.stack import Stack, running

pytestmark = pytest.mark.e2e

BODY_TIMEOUT = 3.0
SLOW_CLIENTS = 200
# The issue asks for 50 ms; the bound is looser because this 2-core machine is shared with
# other test runs. The measured p99 (about 10 ms) is in bench/ingest.py's table.
P99_BOUND = 0.1


@pytest.fixture
def stack(settings: Settings, tmp_path: Path) -> Iterator[Stack]:
    with running(settings, tmp_path, ("webhooks",), CONVEYOR_WEB_WORKERS="4",
                 CONVEYOR_WEB_THREADS="2", CONVEYOR_BODY_TIMEOUT=str(BODY_TIMEOUT)) as stack:
        yield stack


def address(stack: Stack) -> tuple[str, int]:
    host, _, port = stack.webhooks.removeprefix("http://").partition(":")
    return host, int(port)


def head(delivery: Delivery, length: int, **extra: str) -> bytes:
    fields = {**delivery.headers, "Host": "conveyor", **extra}
    if "Transfer-Encoding" not in extra:
        fields["Content-Length"] = str(length)
    lines = "".join(f"{name}: {value}\r\n" for name, value in fields.items())
    return f"POST {delivery.path} HTTP/1.1\r\n{lines}\r\n".encode()


def open_slow_clients(stack: Stack, count: int) -> dict[socket.socket, float]:
    """Connections that each send a head and 1 byte of a 100,000-byte body, then nothing."""
    sent = {}
    for _ in range(count):
        sock = socket.create_connection(address(stack))
        sock.sendall(head(github_pull_request(), 100_000) + b"{")
        sent[sock] = time.monotonic()
    return sent


def answers(sent: dict[socket.socket, float], timeout: float) -> list[tuple[float, bytes]]:
    """For each connection, the seconds from its byte to the server's answer, and the answer."""
    got = []
    with selectors.DefaultSelector() as selector:
        for sock in sent:
            selector.register(sock, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while len(got) < len(sent) and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=0.2):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                got.append((time.monotonic() - sent[sock], sock.recv(4096)))
                selector.unregister(sock)
    for sock in sent:
        sock.close()
    return got


def test_two_hundred_slow_clients_get_408_and_starve_no_real_delivery(stack: Stack) -> None:
    # Given 200 connections holding a request's head and one byte of its body
    slow = open_slow_clients(stack, SLOW_CLIENTS)

    # When one client posts 500 real deliveries back to back meanwhile
    conn = http.client.HTTPConnection(*address(stack), timeout=10)
    latencies, statuses = [], []
    for number in range(1, 501):
        delivery = github_pull_request("opened", number=number)
        began = time.perf_counter()
        conn.request("POST", delivery.path, body=delivery.body, headers=delivery.headers)
        response = conn.getresponse()
        response.read()
        latencies.append(time.perf_counter() - began)
        statuses.append(response.status)
    conn.close()

    # Then every real one is answered 202, quickly
    assert statuses == [202] * 500
    p99 = sorted(latencies)[int(0.99 * (len(latencies) - 1))]
    assert p99 < P99_BOUND, f"p99 {1000 * p99:.1f} ms"
    assert stack.count_jobs() == 500
    # And every slow one gets 408 once its request is late, not before, and not much after
    got = answers(slow, timeout=BODY_TIMEOUT + 10)
    assert len(got) == SLOW_CLIENTS
    assert all(answer.startswith(b"HTTP/1.1 408 ") for _, answer in got)
    seconds = [s for s, _ in got]
    assert min(seconds) > BODY_TIMEOUT - 0.5, seconds
    assert max(seconds) < BODY_TIMEOUT + 2, seconds


def test_a_delivery_sent_in_pieces_within_the_bound_is_accepted(stack: Stack) -> None:
    # Given a delivery whose chunked body comes in two pieces, the second a moment later
    delivery = github_pull_request("opened", number=7)
    body = delivery.body
    first, rest = body[:100], body[100:]
    with socket.create_connection(address(stack)) as sock:
        sock.sendall(head(delivery, 0, **{"Transfer-Encoding": "chunked"})
                     + b"%x\r\n%s\r\n" % (len(first), first))
        time.sleep(0.3)  # the client's own pace, well within the bound
        sock.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(rest), rest))
        # Then it is answered 202 like any other
        assert sock.recv(4096).startswith(b"HTTP/1.1 202 ")


def test_a_client_that_expects_100_continue_is_told_to_send_its_body(stack: Stack) -> None:
    # Given a client that sends its head and waits for 100 Continue before its body
    delivery = github_pull_request("opened", number=8)
    with socket.create_connection(address(stack)) as sock:
        sock.settimeout(BODY_TIMEOUT - 1)
        sock.sendall(head(delivery, len(delivery.body), Expect="100-continue"))
        # When the server says continue, the client sends it
        assert sock.recv(4096).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(delivery.body)
        # Then the delivery is accepted (after any further 1xx answers)
        answer = b""
        while b" 202 " not in answer and (piece := sock.recv(4096)):
            answer += piece
        assert b"HTTP/1.1 202 " in answer
