"""A Python client of Conveyor's API: start jobs, wait for them, read and command them.

    from conveyor.client import Client

    with Client() as conveyor:  # CONVEYOR_API_URL, CONVEYOR_API_TOKEN
        started = conveyor.start("code_review", key="acme/api#7@abc123", input={...})
        job = conveyor.wait(started.job_id)
        print(job.status, job.result)

`AsyncClient` has the same methods, awaited (`list` is an async iterator). A 503 or a
connection error is retried with backoff (honouring `Retry-After`) up to `attempts` times,
then raised as `UnreachableError`; any other 4xx or 5xx is raised at once as `ApiError`
(`NotFoundError` for 404). Every call is safe to retry: starts are idempotent by key,
outside events by id.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import httpx

from conveyor.errors import ConveyorError

DEFAULT_URL = "http://127.0.0.1:3331"
FINISHED = frozenset({"COMPLETED", "FAILED", "CANCELLED"})
# Seconds one `?wait=` request asks the API to hold (its maximum); `wait` repeats it.
WAIT_STEP = 30
JobId = UUID | str


@dataclass(frozen=True)
class Job:
    """A job as the API shows it; `fields` holds every field the API answered."""

    job_id: str
    workflow: str
    status: str
    organization: str | None
    outputs: dict[str, Any]
    result: Any
    error: dict[str, Any] | None
    waiting_for: list[dict[str, Any]]
    created_at: str | None
    finished_at: str | None
    fields: dict[str, Any] = field(repr=False)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def settled(self) -> bool:
        """Finished, or paused for an outside event: what `wait` returns at."""
        return self.finished or self.status == "WAITING_FOR_EVENT"

    @classmethod
    def of(cls, body: dict[str, Any]) -> Job:
        return cls(job_id=body["job_id"], workflow=body["workflow"], status=body["status"],
                   organization=body.get("organization"), outputs=body.get("outputs") or {},
                   result=body.get("result"), error=body.get("error"),
                   waiting_for=body.get("waiting_for") or [],
                   created_at=body.get("created_at"), finished_at=body.get("finished_at"),
                   fields=body)


@dataclass(frozen=True)
class Started:
    """A start's answer: `created` is False when the key had started the job before."""

    job_id: str
    created: bool
    location: str
    superseded: str | None


@dataclass(frozen=True)
class History:
    """A job's events in order and its stage attempts in the order they started."""

    job_id: str
    events: list[dict[str, Any]]
    stage_attempts: list[dict[str, Any]]


@dataclass(frozen=True)
class Sent:
    """An outside event's answer: `duplicate` when its id was recorded before."""

    event_id: str
    duplicate: bool


@dataclass(frozen=True)
class _Call:
    method: str
    path: str
    params: dict[str, Any] | None = None
    json: Any = None
    wait: float = 0


class _Base:
    """What both clients share: settings, requests as values, and answers parsed."""

    def __init__(self, url: str | None, token: str | None, *, attempts: int,
                 backoff: float, timeout: float) -> None:
        self.url = (url or os.environ.get("CONVEYOR_API_URL") or DEFAULT_URL).rstrip("/")
        token = token if token is not None else os.environ.get("CONVEYOR_API_TOKEN")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.attempts = attempts
        self.backoff = backoff
        self.timeout = timeout

    def _delay(self, attempt: int, response: httpx.Response | None) -> float:
        """Seconds before try `attempt + 1`: doubling from `backoff`, jittered, at most
        10 s, or the server's `Retry-After` when it asks for longer."""
        delay = min(self.backoff * 2.0 ** (attempt - 1), 10.0) * (0.75 + random.random() / 2)
        after = response.headers.get("Retry-After") if response is not None else None
        if after is not None and after.isdigit():
            delay = max(delay, min(float(after), 30.0))
        return delay

    def _send_args(self, call: _Call) -> dict[str, Any]:
        return {"method": call.method, "url": call.path, "params": call.params,
                "json": call.json, "timeout": httpx.Timeout(self.timeout,
                                                           read=self.timeout + call.wait)}

    @staticmethod
    def _retryable(response: httpx.Response) -> bool:
        return response.status_code == 503

    @staticmethod
    def _answer(response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise ApiError.of(response)
        return response.json() if response.content else None

    @staticmethod
    def _start(workflow: str, key: str, input: dict[str, Any] | None,
               organization: str | None) -> _Call:
        body: dict[str, Any] = {"workflow": workflow, "key": key, "input": input or {}}
        if organization is not None:
            body["organization"] = organization
        return _Call("POST", "/workflow-queue/jobs", json=body)

    @staticmethod
    def _get(job_id: JobId, wait: float = 0) -> _Call:
        return _Call("GET", f"/workflow-queue/jobs/{job_id}",
                     params={"wait": int(wait)} if wait else None, wait=wait)

    @staticmethod
    def _page(filters: dict[str, Any], cursor: str | None) -> _Call:
        params = {k: v for k, v in filters.items() if v is not None}
        if cursor is not None:
            params["cursor"] = cursor
        return _Call("GET", "/workflow-queue/jobs", params=params)

    @staticmethod
    def _command(job_id: JobId, command: str, reason: str | None = None) -> _Call:
        return _Call("POST", f"/workflow-queue/jobs/{job_id}/{command}",
                     json={"reason": reason} if reason is not None else {})

    @staticmethod
    def _event(event_id: str, event_type: str, key: str, payload: Any) -> _Call:
        return _Call("POST", "/workflow-queue/events",
                     json={"id": event_id, "type": event_type, "key": key, "payload": payload})

    @staticmethod
    def _started(body: dict[str, Any]) -> Started:
        return Started(job_id=body["job_id"], created=body["created"],
                       location=body["location"], superseded=body.get("superseded"))

    @staticmethod
    def _sent(body: dict[str, Any]) -> Sent:
        return Sent(event_id=body["id"], duplicate=body["status"] == "duplicate")

    @staticmethod
    def _history(body: dict[str, Any]) -> History:
        return History(job_id=body["job_id"], events=body["events"],
                       stage_attempts=body["stage_attempts"])

    @staticmethod
    def _wait_step(deadline: float | None) -> float:
        if deadline is None:
            return WAIT_STEP
        return max(0.0, min(WAIT_STEP, deadline - time.monotonic()))


class Client(_Base):
    """Conveyor's API, synchronously; a context manager that closes its connections."""

    def __init__(self, url: str | None = None, token: str | None = None, *, attempts: int = 8,
                 backoff: float = 0.2, timeout: float = 10.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(url, token, attempts=attempts, backoff=backoff, timeout=timeout)
        self.http = httpx.Client(base_url=self.url, headers=self.headers, transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def _call(self, call: _Call) -> Any:
        for attempt in range(1, self.attempts + 1):
            response = None
            try:
                response = self.http.request(**self._send_args(call))
            except httpx.TransportError as error:
                if attempt == self.attempts:
                    raise UnreachableError(f"{self.url}: {error}") from error
            else:
                if not self._retryable(response) or attempt == self.attempts:
                    break
            time.sleep(self._delay(attempt, response))
        assert response is not None
        if self._retryable(response):
            raise UnreachableError(f"{self.url}: {ApiError.of(response)}")
        return self._answer(response)

    def start(self, workflow: str, key: str, input: dict[str, Any] | None = None, *,
              organization: str | None = None) -> Started:
        """Start `workflow` under the idempotency `key`, or find the job the key started."""
        return self._started(self._call(self._start(workflow, key, input, organization)))

    def get(self, job_id: JobId) -> Job:
        return Job.of(self._call(self._get(job_id)))

    def wait(self, job_id: JobId, timeout: float | None = None) -> Job:
        """The job once finished or paused for an outside event, or as it is at `timeout`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            step = self._wait_step(deadline)
            job = Job.of(self._call(self._get(job_id, step)))
            if job.settled or step == 0:
                return job

    def list(self, *, status: str | None = None, organization: str | None = None,
             workflow: str | None = None, limit: int = 50) -> Iterator[Job]:
        """Every matching job, newest first, read a page (of `limit`) at a time."""
        filters = {"status": status, "organization": organization, "workflow": workflow,
                   "limit": limit}
        cursor = None
        while True:
            page = self._call(self._page(filters, cursor))
            yield from map(Job.of, page["jobs"])
            cursor = page["next_cursor"]
            if cursor is None:
                return

    def cancel(self, job_id: JobId, reason: str | None = None) -> None:
        self._call(self._command(job_id, "cancel", reason))

    def retry(self, job_id: JobId) -> None:
        self._call(self._command(job_id, "retry"))

    def send_event(self, event_id: str, event_type: str, key: str, payload: Any = None) -> Sent:
        """Send an outside event, stored once per id; it resumes the waits it matches."""
        return self._sent(self._call(self._event(event_id, event_type, key, payload)))

    def history(self, job_id: JobId) -> History:
        return self._history(self._call(_Call("GET", f"/workflow-queue/jobs/{job_id}/history")))


class AsyncClient(_Base):
    """Conveyor's API for asyncio: `Client`'s methods, awaited."""

    def __init__(self, url: str | None = None, token: str | None = None, *, attempts: int = 8,
                 backoff: float = 0.2, timeout: float = 10.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(url, token, attempts=attempts, backoff=backoff, timeout=timeout)
        self.http = httpx.AsyncClient(base_url=self.url, headers=self.headers,
                                      transport=transport)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.http.aclose()

    async def _call(self, call: _Call) -> Any:
        for attempt in range(1, self.attempts + 1):
            response = None
            try:
                response = await self.http.request(**self._send_args(call))
            except httpx.TransportError as error:
                if attempt == self.attempts:
                    raise UnreachableError(f"{self.url}: {error}") from error
            else:
                if not self._retryable(response) or attempt == self.attempts:
                    break
            await asyncio.sleep(self._delay(attempt, response))
        assert response is not None
        if self._retryable(response):
            raise UnreachableError(f"{self.url}: {ApiError.of(response)}")
        return self._answer(response)

    async def start(self, workflow: str, key: str, input: dict[str, Any] | None = None, *,
                    organization: str | None = None) -> Started:
        return self._started(await self._call(self._start(workflow, key, input, organization)))

    async def get(self, job_id: JobId) -> Job:
        return Job.of(await self._call(self._get(job_id)))

    async def wait(self, job_id: JobId, timeout: float | None = None) -> Job:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            step = self._wait_step(deadline)
            job = Job.of(await self._call(self._get(job_id, step)))
            if job.settled or step == 0:
                return job

    async def list(self, *, status: str | None = None, organization: str | None = None,
                   workflow: str | None = None, limit: int = 50) -> AsyncIterator[Job]:
        filters = {"status": status, "organization": organization, "workflow": workflow,
                   "limit": limit}
        cursor = None
        while True:
            page = await self._call(self._page(filters, cursor))
            for body in page["jobs"]:
                yield Job.of(body)
            cursor = page["next_cursor"]
            if cursor is None:
                return

    async def cancel(self, job_id: JobId, reason: str | None = None) -> None:
        await self._call(self._command(job_id, "cancel", reason))

    async def retry(self, job_id: JobId) -> None:
        await self._call(self._command(job_id, "retry"))

    async def send_event(self, event_id: str, event_type: str, key: str,
                         payload: Any = None) -> Sent:
        return self._sent(await self._call(self._event(event_id, event_type, key, payload)))

    async def history(self, job_id: JobId) -> History:
        return self._history(
            await self._call(_Call("GET", f"/workflow-queue/jobs/{job_id}/history")))


class ClientError(ConveyorError):
    """Base of the client's errors."""


class ApiError(ClientError):
    """Raised when the API refuses a request (a 4xx, or a 5xx other than 503)."""

    def __init__(self, status: int, title: str, description: str) -> None:
        super().__init__(f"{status} {title}: {description}" if description else
                         f"{status} {title}")
        self.status = status
        self.title = title
        self.description = description

    @classmethod
    def of(cls, response: httpx.Response) -> ApiError:
        try:
            body = response.json()
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        kind = NotFoundError if response.status_code == 404 else cls
        return kind(response.status_code, str(body.get("title") or response.reason_phrase),
                    str(body.get("description") or ""))


class NotFoundError(ApiError):
    """Raised when the API answers 404: no such job, workflow or organisation (for this token)."""


class UnreachableError(ClientError):
    """Raised when the API cannot be reached, or answered 503, through every attempt."""
