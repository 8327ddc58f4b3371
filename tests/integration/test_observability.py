"""Correlation ids through the webhook app and the relay, queue depth, and readiness lag."""

from __future__ import annotations

import dataclasses
from typing import Any

import dramatiq
import falcon.testing
import pika
from dramatiq.brokers.stub import StubBroker
from prometheus_client.parser import text_string_to_metric_families

from conveyor.actors.broker import version_queue
from conveyor.application import Jobs
from conveyor.http.api import create_app as create_api
from conveyor.http.prometheus import QueueDepthCollector
from conveyor.http.webhooks.app import create_app as create_webhooks
from conveyor.http.webhooks.github import sample_github_delivery
from conveyor.settings import Settings
from conveyor.workflows import WORKFLOWS
from tests.conftest import AMQP_URL
from tests.integration.projections_support import trigger


def versioned(settings: Settings) -> str:
    """The queue the relay sends code_review's current version's stages to."""
    return version_queue(settings.queue_name, "code_review", WORKFLOWS["code_review"].version)

def test_a_webhook_delivery_carries_its_request_id_into_the_job_and_the_response(
    settings: Settings, jobs: Jobs
) -> None:
    client = falcon.testing.TestClient(create_webhooks(settings, lambda: jobs))
    headers, body = sample_github_delivery(str(settings.github_secret), pull_request=7)

    answer = client.simulate_post("/webhooks/github", headers={**headers,
                                  "X-Request-ID": "req-webhook-1"}, body=body)

    assert answer.status_code == 202, answer.text
    assert answer.headers["X-Request-ID"] == "req-webhook-1"
    assert jobs.get(answer.json["job_id"]).correlation_id == "req-webhook-1"


def test_a_webhook_delivery_without_a_request_id_is_correlated_by_its_delivery_id(
    settings: Settings, jobs: Jobs
) -> None:
    client = falcon.testing.TestClient(create_webhooks(settings, lambda: jobs))
    headers, body = sample_github_delivery(str(settings.github_secret), pull_request=8)

    answer = client.simulate_post("/webhooks/github", headers=headers, body=body)

    assert answer.status_code == 202, answer.text
    delivery = headers["X-GitHub-Delivery"]
    assert answer.headers["X-Request-ID"] == delivery
    assert jobs.get(answer.json["job_id"]).correlation_id == delivery


def test_the_relay_puts_the_jobs_correlation_id_and_organisation_in_the_messages_it_sends(
    settings: Settings, jobs: Jobs
) -> None:
    from conveyor.relay.relay import Relay

    job_id = jobs.enqueue("code_review", "corr", trigger(1), correlation_id="req-relay",
                          organization="acme").job_id
    broker = StubBroker()
    broker.declare_queue(versioned(settings))
    relay = Relay(jobs, broker, settings.queue_name, str(settings.database_url))
    events: list[Any] = list(jobs.repository.event_store.get(job_id))
    dispatches, _ = relay.decide(events[0])
    relay.send(dispatches)

    sent: list[dramatiq.Message[Any]] = [dramatiq.Message.decode(body)
                                         for body in broker.queues[versioned(settings)].queue]
    assert sent and all(m.options == {"correlation_id": "req-relay", "organization": "acme"}
                        for m in sent)


def test_a_webhook_request_is_the_root_of_its_jobs_trace_and_the_relay_carries_it(
    settings: Settings, jobs: Jobs, spans: Any
) -> None:
    from conveyor.relay.relay import Relay

    # Given tracing on, a delivery that asks for a review
    client = falcon.testing.TestClient(create_webhooks(settings, lambda: jobs))
    headers, body = sample_github_delivery(str(settings.github_secret), pull_request=9)

    # When it is received and the relay dispatches the job's first stage
    answer = client.simulate_post("/webhooks/github", headers=headers, body=body)
    job_id = answer.json["job_id"]
    broker = StubBroker()
    broker.declare_queue(versioned(settings))
    relay = Relay(jobs, broker, settings.queue_name, str(settings.database_url))
    dispatches, _ = relay.decide(next(iter(jobs.repository.event_store.get(job_id))))
    relay.send(dispatches)

    # Then the request's span is a root, the job records it, and the message carries it
    assert answer.status_code == 202, answer.text
    (root,) = spans.get_finished_spans()
    assert (root.name, root.parent, root.attributes["http.response.status_code"],
            root.attributes["conveyor.job_id"]) == ("POST /webhooks/{platform}", None, 202,
                                                    job_id)
    ids = root.context
    recorded = f"00-{ids.trace_id:032x}-{ids.span_id:016x}-{ids.trace_flags:02x}"
    assert jobs.get(job_id).traceparent == recorded
    sent = [dramatiq.Message.decode(body) for body in broker.queues[versioned(settings)].queue]
    assert sent and all(m.options["traceparent"] == recorded for m in sent)


def test_queue_depth_counts_the_stage_messages_waiting_and_is_absent_without_the_queue(
    queue_name: str,
) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        channel = connection.channel()
        channel.queue_declare(queue_name, durable=True)
        for n in range(3):
            channel.basic_publish("", queue_name, f"m{n}".encode())
    finally:
        connection.close()

    depth = QueueDepthCollector(AMQP_URL, queue_name, ttl=0.0)
    missing = QueueDepthCollector(AMQP_URL, queue_name + ".missing", ttl=0.0)

    assert depth.depth() == 3
    assert missing.depth() is None
    families = list(depth.collect())
    assert families[0].samples[0].value == 3


def test_readiness_uses_the_configured_lag_bound_and_metrics_show_queue_depth(
    settings: Settings, jobs: Jobs
) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        channel = connection.channel()
        channel.queue_declare(settings.queue_name, durable=True)
        for n in range(2):
            channel.basic_publish("", settings.queue_name, f"m{n}".encode())
    finally:
        connection.close()
    jobs.enqueue("code_review", "behind", trigger(1))
    strict = dataclasses.replace(settings, ready_max_lag=0)
    client = falcon.testing.TestClient(create_api(strict, lambda: jobs, amqp_check=lambda: None))

    ready = client.simulate_get("/health/ready")
    metrics = client.simulate_get("/metrics")

    assert ready.status_code == 503
    assert ready.json["down"] == ["projections"]
    depths = [(s.labels, s.value) for family in text_string_to_metric_families(metrics.text)
              for s in family.samples if s.name == "conveyor_queue_depth"]
    assert depths == [({"queue": settings.queue_name}, 2)]
