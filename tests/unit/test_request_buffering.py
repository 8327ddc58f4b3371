"""When the buffering worker holds a request back and when it hands it to a thread."""

from __future__ import annotations

from conveyor.http.worker import HEAD_LIMIT, request_complete

HEAD = b"POST /webhooks/github HTTP/1.1\r\nHost: x\r\n"
LIMIT = 1000


def test_a_request_with_its_whole_declared_body_is_complete_and_one_byte_short_is_not() -> None:
    request = HEAD + b"Content-Length: 5\r\n\r\n"
    assert request_complete(request + b"hello", LIMIT)
    assert not request_complete(request + b"hell", LIMIT)


def test_a_head_not_yet_ended_waits_unless_it_is_over_the_head_limit() -> None:
    assert not request_complete(HEAD + b"Content-Le", LIMIT)
    assert request_complete(HEAD + b"X: " + b"a" * HEAD_LIMIT, LIMIT)


def test_a_request_without_a_body_is_complete_at_the_end_of_its_head() -> None:
    assert request_complete(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n", LIMIT)


def test_a_declared_length_over_the_limit_or_malformed_goes_to_a_thread_to_be_refused() -> None:
    assert request_complete(HEAD + b"Content-Length: 1001\r\n\r\n", LIMIT)
    assert request_complete(HEAD + b"Content-Length: many\r\n\r\n", LIMIT)


def test_a_chunked_body_is_complete_only_after_its_last_chunk_and_trailers() -> None:
    request = HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
    assert not request_complete(request, LIMIT)
    assert not request_complete(request + b"0\r\n", LIMIT)
    assert request_complete(request + b"0\r\n\r\n", LIMIT)
    assert not request_complete(request + b"0\r\nX-Trailer: 1\r\n", LIMIT)
    assert request_complete(request + b"0\r\nX-Trailer: 1\r\n\r\n", LIMIT)


def test_a_chunked_body_past_the_limit_or_malformed_goes_to_a_thread_to_be_refused() -> None:
    chunked = HEAD + b"Transfer-Encoding: chunked\r\n\r\n"
    assert request_complete(chunked + b"3e9\r\n", LIMIT)
    assert request_complete(chunked + b"zz\r\n", LIMIT)
