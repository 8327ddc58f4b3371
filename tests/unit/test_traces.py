"""Traces: the traceparent a job records, carries and hands to each span under it."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from dramatiq.broker import MessageProxy
from dramatiq.brokers.stub import StubBroker
from eventsourcing.persistence import StoredEvent

from conveyor import logs, tracing
from conveyor.actors.broker import stage_message
from conveyor.actors.observe import StageObserver, report_outcome
from conveyor.aggregates import Job
from conveyor.application import Jobs
from conveyor.relay.spans import span_of
from conveyor.settings import SettingsError, traces_wanted
from conveyor.tracing import TraceParent, valid_traceparent

MAPPER = Jobs(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}).mapper
ROOT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
PLAN: Any = [{"stage": "a", "after": []}]


def test_a_traceparent_is_read_and_written_as_the_w3c_header_says() -> None:
    parsed = TraceParent.parse(ROOT)

    assert parsed == TraceParent("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", "01")
    assert str(parsed) == ROOT
    # A later version's extra fields are read past, and written as version 00.
    assert valid_traceparent("01" + ROOT[2:] + "-more") == ROOT


@pytest.mark.parametrize("value", [
    None, 42, "", "garbage", ROOT.upper(), ROOT + "-extra",
    "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "00-00000000000000000000000000000000-b7ad6b7169203331-01",
    "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
    "00-0af7651916cd43dd8448eb211c8031-b7ad6b7169203331-01",
])
def test_an_invalid_traceparent_is_ignored_not_an_error(value: object) -> None:
    assert TraceParent.parse(value) is None
    assert valid_traceparent(value) is None


@pytest.mark.parametrize(("env", "wanted"), [
    ({}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
    ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
    ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
    ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
      "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, True),
])
def test_traces_are_exported_when_the_standard_otel_variables_ask_for_otlp(
    env: dict[str, str], wanted: bool
) -> None:
    assert traces_wanted(env) is wanted


@pytest.mark.parametrize(("env", "names"), [
    ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
     "OTEL_EXPORTER_OTLP_PROTOCOL"),
])
def test_an_exporter_conveyor_does_not_ship_is_refused_naming_the_variable(
    env: dict[str, str], names: str
) -> None:
    with pytest.raises(SettingsError, match=names):
        traces_wanted(env)


def test_with_tracing_off_no_span_is_made_and_the_sdk_is_never_imported() -> None:
    # Given a process whose settings turn tracing off, handling a traced stage message
    code = f"""
import sys, uuid
from dramatiq.broker import MessageProxy
from dramatiq.brokers.stub import StubBroker
from conveyor import tracing
from conveyor.actors.broker import stage_message
from conveyor.actors.observe import StageObserver
from conveyor.settings import Settings
tracing.configure(Settings.from_env({{}}).traces, "conveyor-test")
message = MessageProxy(stage_message("q", uuid.uuid4(), "a", 1, {{"traceparent": "{ROOT}"}}))
StageObserver().before_process_message(StubBroker(), message)
assert tracing.current() is tracing.NO_SPAN
StageObserver().after_process_message(StubBroker(), message)
print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))
"""
    # When it runs, Then nothing of OpenTelemetry was loaded
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert ran.stdout.strip() == "[]", ran.stderr


def test_a_job_records_the_traceparent_of_the_request_that_enqueued_it() -> None:
    job = Job(key="k", workflow="w", plan=PLAN, trigger={}, traceparent=ROOT)
    (enqueued,) = job.collect_events()

    loaded = MAPPER.to_domain_event(MAPPER.to_stored_event(enqueued)).mutate(None)

    assert loaded.traceparent == ROOT


def test_a_job_enqueued_before_traces_loads_with_none() -> None:
    # Given an Enqueued as version 2 stored it: no priority, no traceparent
    (enqueued,) = Job(key="k", workflow="w", plan=PLAN, trigger={}).collect_events()
    stored = MAPPER.to_stored_event(enqueued)
    state = orjson.loads(stored.state)
    state["class_version"] = 2
    del state["priority"], state["traceparent"]
    old = StoredEvent(originator_id=stored.originator_id,
                      originator_version=stored.originator_version, topic=stored.topic,
                      state=orjson.dumps(state))

    # When it is read back, Then the job is untraced and otherwise whole
    job = MAPPER.to_domain_event(old).mutate(None)
    assert (job.traceparent, job.key, job.workflow) == (None, "k", "w")


def test_a_stage_message_is_a_span_under_its_jobs_traceparent_and_logs_carry_its_ids(
    spans: Any,
) -> None:
    # Given the relay's message for attempt 2 of a traced job
    job_id = uuid.uuid4()
    message = MessageProxy(stage_message("q", job_id, "review", 2, {
        "correlation_id": "req-7", "traceparent": ROOT}))
    observer = StageObserver()
    record = logging.LogRecord("conveyor.test", logging.INFO, __file__, 1, "working", (), None)

    # When a worker handles it and the stage fails
    observer.before_process_message(StubBroker(), message)
    line = json.loads(logs.JsonFormatter().format(record))
    tracing.current().fail("TimeoutError: slow")
    report_outcome("retrying")
    observer.after_process_message(StubBroker(), message)

    # Then one span, a child of the job's root, says which attempt, how it ended and why
    (span,) = spans.get_finished_spans()
    assert span.name == "stage review"
    assert (f"{span.context.trace_id:032x}", f"{span.parent.span_id:016x}") == (
        "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")
    assert {k: span.attributes[k] for k in ("conveyor.job_id", "conveyor.stage",
                                            "conveyor.attempt", "conveyor.outcome",
                                            "conveyor.error")} == {
        "conveyor.job_id": str(job_id), "conveyor.stage": "review", "conveyor.attempt": 2,
        "conveyor.outcome": "retrying", "conveyor.error": "TimeoutError: slow"}
    assert span.status.status_code.name == "ERROR"
    # ... and the log line written meanwhile names the trace and span beside the request
    assert (line["correlation_id"], line["trace_id"], line["span_id"]) == (
        "req-7", "0af7651916cd43dd8448eb211c80319c", f"{span.context.span_id:016x}")
    assert logs.trace.get() is None


def test_a_stage_message_of_an_untraced_job_makes_no_span(spans: Any) -> None:
    message = MessageProxy(stage_message("q", uuid.uuid4(), "review", 1, {}))

    StageObserver().before_process_message(StubBroker(), message)
    StageObserver().after_process_message(StubBroker(), message)

    assert spans.get_finished_spans() == ()


def paused_job() -> Job:
    job = Job(key="k", workflow="w", plan=PLAN, trigger={}, traceparent=ROOT)
    job.start_stage("a", 1, at=T0)
    job.pause("a", 1, "ast.task.completed", "ast-1", deadline=T0 + timedelta(hours=1),
              at=T0 + timedelta(seconds=1))
    return job


def test_a_wait_is_a_span_from_its_pause_to_its_resume_linked_to_the_events_trace(
    spans: Any,
) -> None:
    # Given a job paused at stage a, resumed by an event sent in the caller's trace
    job = paused_job()
    job.resume("a", "done-1", {"functions": 3}, traceparent=CALLER)
    resumed = job.collect_events()[-1]

    # When the relay handles the Resumed event
    ended = span_of(job, resumed)
    assert ended is not None
    ended.export()

    # Then the wait is a span under the job's root, from the pause, linked to the caller
    (span,) = spans.get_finished_spans()
    assert span.name == "wait a"
    assert f"{span.parent.span_id:016x}" == "b7ad6b7169203331"
    assert span.start_time == int((T0 + timedelta(seconds=1)).timestamp() * 1e9)
    assert span.end_time == int(resumed.timestamp.timestamp() * 1e9)
    assert span.attributes["conveyor.outcome"] == "resumed"
    assert [(f"{link.context.trace_id:032x}", f"{link.context.span_id:016x}")
            for link in span.links] == [("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")]


def test_a_timed_out_wait_and_a_failed_job_are_spans_and_the_failure_is_their_error(
    spans: Any,
) -> None:
    job = paused_job()
    job.time_out_wait("a", at=T0 + timedelta(hours=1), fail_job=True)
    timed_out, failed = job.collect_events()[-2:]

    for event in (timed_out, failed):
        ended = span_of(job, event)
        assert ended is not None
        ended.export()

    wait, run = spans.get_finished_spans()
    assert (wait.name, wait.attributes["conveyor.outcome"], wait.links) == (
        "wait a", "timed_out", ())
    assert (run.name, run.attributes["conveyor.status"]) == ("job w", "FAILED")
    assert run.status.description == "a: wait_timed_out"


def test_the_relay_makes_no_span_with_tracing_off() -> None:
    job = paused_job()
    job.resume("a", "done-1", None)

    assert span_of(job, job.collect_events()[-1]) is None


def test_the_relay_makes_no_span_for_a_job_enqueued_untraced(spans: Any) -> None:
    job = Job(key="k", workflow="w", plan=PLAN, trigger={})
    job.start_stage("a", 1, at=T0)
    job.complete_stage("a", 1, None, at=T0)

    assert span_of(job, job.collect_events()[-1]) is None
