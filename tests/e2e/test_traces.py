"""End to end: one review that pauses and resumes is one trace, across every process."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from conveyor.settings import Settings
from tests.deliveries import github_pull_request
from tests.e2e.stack import request, running, send
from tests.waiting import wait_until

# The trace of the AST service that answers, which the wait's span must link to.
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


class Receiver:
    """An OTLP/HTTP endpoint: decodes each `ExportTraceServiceRequest` into plain spans."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def take(self, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            service = next(a.value.string_value for a in resource_spans.resource.attributes
                           if a.key == "service.name")
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    with self.lock:
                        self.spans.append({
                            "service": service, "name": span.name,
                            "trace_id": span.trace_id.hex(), "span_id": span.span_id.hex(),
                            "parent": span.parent_span_id.hex() or None,
                            "start": span.start_time_unix_nano, "end": span.end_time_unix_nano,
                            "attributes": {a.key: getattr(a.value, a.value.WhichOneof("value"))
                                           for a in span.attributes},
                            "links": [(link.trace_id.hex(), link.span_id.hex())
                                      for link in span.links],
                        })

    def named(self, prefix: str) -> list[dict[str, Any]]:
        with self.lock:
            return [s for s in self.spans if s["name"].startswith(prefix)]


@contextmanager
def otlp_receiver() -> Iterator[tuple[Receiver, str]]:
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            assert self.path == "/v1/traces"
            assert self.headers["Content-Type"] == "application/x-protobuf"
            receiver.take(body)
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_review_that_pauses_and_resumes_is_one_trace_from_the_webhook_to_its_completion(
    settings: Settings, tmp_path: Path
) -> None:
    with otlp_receiver() as (receiver, endpoint), running(
        settings, tmp_path, CONVEYOR_AST_ANALYSIS="on",
        OTEL_EXPORTER_OTLP_ENDPOINT=endpoint, OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_BSP_SCHEDULE_DELAY="100",
    ) as stack:
        # Given a review that pauses for the AST service
        status, answer = send(stack, github_pull_request("opened"))
        assert status == 202, answer
        job_id = answer["job_id"]
        [wait] = stack.job_when(job_id, "WAITING_FOR_EVENT")["waiting_for"]

        # When the AST service answers, in a trace of its own, and the review completes
        event = {"id": f"done-{job_id}", "type": wait["event_type"], "key": wait["key"],
                 "payload": {"functions": 12}}
        status, _ = request(f"{stack.api}/workflow-queue/events", orjson.dumps(event), {
            "Authorization": "Bearer write-token", "Content-Type": "application/json",
            "traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"})
        assert status == 202
        job = stack.job_when(job_id, "COMPLETED")
        wait_until(lambda: receiver.named("job "), timeout=30)

    # Then the webhook request is the root of one trace ...
    [root] = receiver.named("POST /webhooks/")
    assert (root["service"], root["parent"], root["attributes"]["conveyor.job_id"]) == (
        "conveyor-webhooks", None, job_id)
    trace = [s for s in receiver.spans if s["trace_id"] == root["trace_id"]]

    # ... every stage attempt in the job's history is a span under it, made by the worker,
    # ast_analysis's twice: paused, then resumed and completed
    attempts = sorted((s["attributes"]["conveyor.stage"], s["attributes"]["conveyor.outcome"])
                      for s in trace if s["name"].startswith("stage "))
    assert attempts == sorted((s["stage"], s["status"]) for s in job["stages"])
    assert ("ast_analysis", "paused") in attempts
    for span in (s for s in trace if s["name"].startswith("stage ")):
        assert (span["service"], span["parent"]) == ("conveyor-worker", root["span_id"])
        assert span["attributes"]["conveyor.workflow"] == "code_review"
        assert span["attributes"]["conveyor.job_id"] == job_id

    # ... the wait is a span from the pause to the resume, linked to the AST service's trace
    [waited] = [s for s in trace if s["name"] == "wait ast_analysis"]
    paused = next(s for s in trace if s["name"] == "stage ast_analysis"
                  and s["attributes"]["conveyor.outcome"] == "paused")
    resumed = next(s for s in trace if s["name"] == "stage ast_analysis"
                   and s["attributes"]["conveyor.outcome"] == "completed")
    assert (waited["service"], waited["parent"]) == ("conveyor-relay", root["span_id"])
    assert waited["links"] == [(CALLER_TRACE, CALLER_SPAN)]
    assert paused["start"] <= waited["start"] <= paused["end"] + 10**9
    assert waited["end"] <= resumed["start"]

    # ... and so is the job's run, from its enqueueing to its completion (recorded while the
    # last stage's span is still open: the span ends once the save returns)
    [run] = [s for s in trace if s["name"] == "job code_review"]
    assert (run["service"], run["parent"], run["attributes"]["conveyor.status"]) == (
        "conveyor-relay", root["span_id"], "COMPLETED")
    assert root["start"] <= run["start"] <= root["end"]
    assert run["end"] >= max(s["start"] for s in trace if s["name"].startswith("stage "))
    # No span of the job strayed into another trace.
    assert all(s["trace_id"] == root["trace_id"] for s in receiver.spans
               if s["attributes"].get("conveyor.job_id") == job_id)

    # And the worker's log lines about the job name its trace beside the correlation id
    lines = [orjson.loads(line) for line in (tmp_path / "worker.log").read_text().splitlines()
             if line.startswith("{")]
    assert any(line.get("trace_id") == root["trace_id"] and job_id in line["message"]
               for line in lines)
