"""The API's OpenAPI document, served at `/openapi.json` and checked against the routes."""

from __future__ import annotations

from typing import Any

import falcon

_JSON = {"application/json": {"schema": {"type": "object"}}}
_ERRORS = {code: {"description": text, "content": _JSON} for code, text in (
    ("400", "Malformed parameter, job id or body"), ("401", "No or unknown token"),
    ("403", "Token lacks the scope"), ("503", "A dependency is down"))}
_ORG = {"name": "organization", "in": "path", "required": True,
        "schema": {"type": "string", "pattern": "^[^\\s/]{1,200}$"}}
_TOKEN_NAME = {"name": "name", "in": "path", "required": True,
               "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"}}
_SCHEDULE_NAME = {"name": "name", "in": "path", "required": True,
                  "schema": {"type": "string", "pattern": "^[^\\s/@]{1,200}$"}}
_SCHEDULE = {"type": "object", "required": ["name", "cron", "workflow"],
             "additionalProperties": False, "properties": {
                 "name": {"type": "string", "pattern": "^[^\\s/@]{1,200}$"},
                 "cron": {"type": "string"}, "workflow": {"type": "string"},
                 "input": {"type": "object"}, "timezone": {"type": "string"},
                 "catch_up": {"type": "string", "enum": ["skip", "latest", "all"]},
                 "window_seconds": {"type": "number", "minimum": 0, "exclusiveMinimum": True,
                                    "maximum": 31622400},
                 "overlap": {"type": "string", "enum": ["skip", "allow", "cancel"]}}}
_RATES = {"type": "object", "additionalProperties": {
    "type": "string", "pattern": "^[0-9]{1,13}/[smhd]$"},
    "description": 'Per resource, AMOUNT/PERIOD (PERIOD s, m, h or d): {"llm": "90/m"}.'}
_TENANT = {
    "type": "object", "additionalProperties": False,
    "description": "What the organisation sets; an absent or null field takes the default.",
    "properties": {
        "max_running": {"type": "integer", "minimum": 0, "maximum": 1000000, "nullable": True,
                        "description": "Stages it may run at once; 0 pauses its dispatch."},
        "priority": {"type": "integer", "minimum": 1, "maximum": 100, "nullable": True},
        "rates": {**_RATES, "nullable": True},
    },
}
_NEW_TOKEN = {
    "type": "object", "required": ["name", "scope"], "additionalProperties": False,
    "properties": {
        "name": _TOKEN_NAME["schema"],
        "scope": {"type": "string", "enum": ["read", "write", "admin"]},
        "organizations": {"type": "array", "items": {"type": "string", "minLength": 1},
                          "description": "Limit the token to these; absent: all (admin: must"
                                         " be absent)."},
    },
}
_JOB_ID = {"name": "job_id", "in": "path", "required": True,
           "schema": {"type": "string", "format": "uuid"}}
_SECURED: list[dict[str, list[str]]] = [{"bearer": []}]


def _query(name: str, schema: dict[str, Any], text: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": text}


def _op(summary: str, *, secured: bool = True, parameters: list[dict[str, Any]] | None = None,
        extra: dict[str, str] | None = None, ok: str = "200",
        body: dict[str, Any] | None = None,
        content: dict[str, Any] = _JSON) -> dict[str, Any]:
    responses = {ok: {"description": "OK", "content": content}, **_ERRORS}
    for code, text in (extra or {}).items():
        responses[code] = {"description": text, "content": _JSON}
    op: dict[str, Any] = {"summary": summary, "parameters": parameters or [],
                          "responses": responses}
    if secured:
        op["security"] = _SECURED
    if body is not None:
        op["requestBody"] = {"required": False, "content": {"application/json": {
            "schema": body}}}
    return op


_STATUSES = ["PENDING", "PROCESSING", "WAITING_FOR_EVENT", "RETRYING", "COMPLETED", "FAILED",
             "CANCELLED"]
_LIST_PARAMETERS = [
    _query("status", {"type": "string", "enum": _STATUSES}, "Only jobs in this status."),
    _query("workflow", {"type": "string"}, "Only jobs of this workflow."),
    _query("organization", {"type": "string"},
           "Only jobs of this organisation (GitHub organisation or owner, GitLab top-level"
           " namespace, Bitbucket workspace, Azure DevOps organisation)."),
    _query("platform", {"type": "string"}, "Only jobs from this Git platform."),
    _query("repository", {"type": "string"}, "Only jobs of this repository."),
    _query("pull_request", {"type": "string"}, "Only jobs of this pull request."),
    _query("created_after", {"type": "string", "format": "date-time"}, "Created at or after."),
    _query("created_before", {"type": "string", "format": "date-time"}, "Created before."),
    _query("order", {"type": "string", "enum": ["desc", "asc"]}, "By created time."),
    _query("limit", {"type": "integer", "minimum": 1, "maximum": 200}, "Page size."),
    _query("cursor", {"type": "string"}, "The `next_cursor` of the previous page."),
]
_CANCEL_BODY = {"type": "object", "properties": {"reason": {
    "type": "string", "minLength": 1, "maxLength": 500,
    "description": "Why; without it, 'cancelled through the API by <the token's principal>'."}}}
_TENANT = {
    "organization": {"type": "string", "nullable": True,
                     "description": "The organisation the job belongs to; null for jobs"
                                    " enqueued before tenants were recorded."},
    "team": {"type": "string", "nullable": True,
             "description": "The team below the organisation, where the platform has one:"
                            " a GitLab subgroup path, a Bitbucket project key, an Azure"
                            " DevOps project."},
}
# Read-your-writes: a job just acknowledged (a webhook's 202 `Location`) is readable at once.
_JOB = {"application/json": {"schema": {
    "type": "object",
    "required": ["job_id", "status", "organization", "team", "view", "held_stages"],
    "properties": {**_TENANT, "held_stages": {
        "type": "array", "items": {"type": "string"},
        "description": "Stages ready to run but held by fair dispatch: the organisation runs"
                       " its `max_running` (0: paused) or the dispatch window is full."},
        "view": {
        "type": "string", "enum": ["projection", "log"],
        "description": "Where the job was read: `projection`, the `jobs` read model; `log`,"
                       " the job's own events folded into the same fields, because the read"
                       " model has not caught up with a job the system just acknowledged."}}}}}
_OUTSIDE_EVENT = {
    "type": "object",
    "required": ["id", "type", "key"],
    "properties": {
        "id": {"type": "string", "minLength": 1, "maxLength": 200},
        "type": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,200}$"},
        "key": {"type": "string", "minLength": 1, "maxLength": 500},
        "payload": {},
    },
}

_START = {
    "type": "object", "required": ["workflow", "key"], "additionalProperties": False,
    "properties": {
        "workflow": {"type": "string", "minLength": 1, "maxLength": 200},
        "key": {"type": "string", "minLength": 1, "maxLength": 200,
                "description": "Idempotency key: the same key (of the workflow and"
                               " organisation) answers 200 with the job it started."},
        "input": {"type": "object", "description": "Checked against the workflow's declared"
                  " input; reaches its stages as `ctx.input`. For code_review: platform,"
                  " repository, pull_request, head_commit, and optionally base_branch, url."},
        "organization": {"type": "string", "pattern": "^[^\\s/]{1,200}$", "description":
                         "The organisation to start it in; a token limited to several must"
                         " name one of its own, another answers 404."},
        "priority": {"type": "integer", "minimum": 1, "maximum": 100, "nullable": True,
                     "description": "Raises this job above its tenant's priority in fair"
                                    " dispatch; absent: the tenant's."},
    },
}
_WAIT = _query("wait", {"type": "integer", "minimum": 0, "maximum": 30},
               "Seconds to wait for the job to finish or to wait for an outside event;"
               " answered then, or at the deadline with its state (503 when too many"
               " requests of the process wait already).")

# A job of an organisation the token is not limited to is answered exactly the same.
_NO_JOB = "No such job (or not of the token's organisations)"

SPEC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "Conveyor workflow-queue API", "version": "1"},
    "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    "paths": {
        "/workflow-queue/jobs": {
            "get": _op("List jobs", parameters=_LIST_PARAMETERS),
            "post": _op("Start a job (write scope); 202 with `Location` when new", ok="202",
                        body=_START,
                        extra={"200": "The key started this job before",
                               "404": "No such workflow (or organisation, for the token)",
                               "409": "The key started a job with another input",
                               "413": "Body too large", "415": "Not JSON"})},
        "/workflow-queue/jobs/{job_id}": {"get": _op(
            "One job, with its stages' outputs and result", parameters=[_JOB_ID, _WAIT],
            extra={"404": _NO_JOB}, content=_JOB)},
        "/workflow-queue/jobs/{job_id}/history": {"get": _op(
            "A job's events and stage attempts", parameters=[_JOB_ID],
            extra={"404": _NO_JOB})},
        "/workflow-queue/jobs/{job_id}/cancel": {"post": _op(
            "Cancel a job", parameters=[_JOB_ID], ok="202", body=_CANCEL_BODY,
            extra={"404": _NO_JOB, "409": "The job's state forbids it",
                   "413": "Body too large"})},
        "/workflow-queue/jobs/{job_id}/retry": {"post": _op(
            "Retry a failed job", parameters=[_JOB_ID], ok="202",
            extra={"404": _NO_JOB, "409": "The job is not FAILED"})},
        "/workflow-queue/metrics": {"get": _op(
            "Counts, rates, percentiles, lag (of the token's organisations' jobs)",
            parameters=[
                _query("workflow", {"type": "string"}, "Only this workflow."),
                _query("hours", {"type": "integer", "minimum": 1, "maximum": 2160}, "Window."),
                _query("days", {"type": "integer", "minimum": 1, "maximum": 366},
                       "Daily series."),
            ])},
        "/workflow-queue/events": {"post": _op(
            "Record an outside event (stored once per id) that may resume waiting jobs"
            " (of the token's organisations only, for a limited token)",
            ok="202", body=_OUTSIDE_EVENT,
            extra={"200": "An event with this id was recorded before",
                   "413": "Event too large", "415": "Not JSON"})},
        "/health/live": {"get": _op("The process answers", secured=False)},
        "/health/ready": {"get": _op("Dependencies answer", secured=False)},
        "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {
            "200": {"description": "OK", "content": {"text/plain": {"schema": {
                "type": "string"}}}}}}},
        "/openapi.json": {"get": _op("This document", secured=False)},
        "/workflow-queue/whoami": {"get": _op(
            "The asking token's name, scope (and the scopes it covers) and organisations")},
        "/workflow-queue/tokens": {
            "get": _op("List the tokens (admin; never the tokens themselves)"),
            "post": _op("Create a token (admin); the answer holds it, shown only then",
                        ok="201", body=_NEW_TOKEN, extra={"409": "The name is taken"})},
        "/workflow-queue/tokens/{name}": {"delete": _op(
            "Revoke the token of this name (admin)", parameters=[_TOKEN_NAME], ok="204",
            extra={"404": "No unrevoked token of this name"})},
        "/workflow-queue/organizations": {"get": _op(
            "Each organisation the token may see: stages running against its limit, held back"
            " by fair dispatch, and deferred by its rate limits")},
        "/workflow-queue/workflows": {"get": _op(
            "Each workflow's versions: jobs in flight and live workers on each, and its state"
            " (current, draining, waiting for a worker, drained: its workers may stop) (admin)")},
        "/workflow-queue/workflows/{workflow}/migrate": {"post": _op(
            "Move the jobs in flight on version 'from' onto the current version, as the"
            " workflow declares; 'dry_run' lists what would move and what cannot (admin)",
            parameters=[{"name": "workflow", "in": "path", "required": True,
                         "schema": {"type": "string"}}],
            body={"type": "object", "required": ["from"], "additionalProperties": False,
                  "properties": {"from": {"type": "string", "minLength": 1},
                                 "dry_run": {"type": "boolean"}}},
            extra={"404": "No such workflow",
                   "409": "No migration declared from that version"})},
        "/workflow-queue/tenants": {"get": _op(
            "The tenant defaults, every organisation's settings, and each organisation's"
            " stages in flight and held by fair dispatch (admin)")},
        "/workflow-queue/tenants/{organization}": {
            "get": _op("An organisation's settings in effect, and what it set (admin)",
                       parameters=[_ORG]),
            "put": _op("Replace what the organisation sets (admin)", parameters=[_ORG],
                       body=_TENANT, extra={"413": "Body too large"})},
        "/workflow-queue/schedules": {
            "get": _op("Every schedule with its next and last fire times and last run's status"),
            "post": _op("Create a schedule; its ticks count from now", ok="201",
                        body=_SCHEDULE, extra={"409": "The name is taken"})},
        "/workflow-queue/schedules/{name}": {"get": _op(
            "One schedule", parameters=[_SCHEDULE_NAME], extra={"404": "No such schedule"})},
        **{f"/workflow-queue/schedules/{{name}}/{action}": {"post": _op(
            summary, parameters=[_SCHEDULE_NAME], ok=ok, extra={"404": "No such schedule"})}
           for action, summary, ok in (
               ("pause", "Pause the schedule: its ticks fire nothing", "200"),
               ("resume", "Resume the schedule; ticks count from now", "200"),
               ("trigger", "Start the schedule's workflow now", "202"))},
        "/": {"get": {"summary": "The dashboard's page (its data needs a token)", "responses": {
            "200": {"description": "OK", "content": {"text/html": {"schema": {
                "type": "string"}}}}}}},
    },
}


class OpenApiResource:
    """`GET /openapi.json`."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = SPEC
