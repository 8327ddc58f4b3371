"""Schemathesis against the API's own `/openapi.json`, in-process on the real database."""

from __future__ import annotations

from collections import Counter
from typing import Any

import falcon
import hypothesis
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok

from conveyor.application import Jobs
from conveyor.http.api import create_app
from conveyor.settings import Settings
from tests.integration.projections_support import complete_next, project, trigger

# The widest scope, so the admin routes' bodies are fuzzed too.
WRITE = {"Authorization": "Bearer admin-token"}
EXAMPLES = 30


def _fuzz(operation: Any, mode: GenerationMode, statuses: list[int]) -> list[str]:
    """Run one operation's generated cases; return the server errors they caused."""
    errors: list[str] = []

    @hypothesis.settings(max_examples=EXAMPLES, deadline=None, database=None,
                         derandomize=True, suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        try:
            response = case.call_and_validate(headers=WRITE, checks=[not_a_server_error])
            statuses.append(response.status_code)
        except (AssertionError, FailureGroup) as failure:
            errors.append(f"{operation.label} [{mode.value}]: {failure}"[:800])

    try:
        run()
    except Unsatisfiable:
        # An operation with no parameters or body has no invalid request to make.
        if mode is GenerationMode.POSITIVE:
            raise
    return errors


def test_no_generated_request_gets_a_server_error(settings: Settings, jobs: Jobs) -> None:
    job_id = jobs.enqueue("code_review", "fuzz", trigger(1)).job_id
    complete_next(jobs, job_id)
    project(settings)
    app: falcon.App[falcon.Request, falcon.Response] = create_app(
        settings, lambda: jobs, amqp_check=lambda: None)
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)

    errors: list[str] = []
    statuses: list[int] = []
    operations: list[Any] = [result.ok() for result in schema.get_all_operations()
                             if isinstance(result, Ok)]
    assert len(operations) >= 8
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            errors += _fuzz(operation, mode, statuses)

    assert errors == []
    assert len(statuses) > 10 * len(operations)
    seen = Counter(statuses)
    assert seen[200] and seen[400] and seen[404], seen
