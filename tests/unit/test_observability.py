"""Correlation ids in worker messages and logs, worker metrics, and their settings."""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import dramatiq
import pytest
from dramatiq.broker import MessageProxy
from dramatiq.brokers.stub import StubBroker
from prometheus_client import REGISTRY

from conveyor import gunicorn_conf, logs
from conveyor.actors.broker import stage_message
from conveyor.actors.observe import StageObserver, report_outcome
from conveyor.settings import Settings, SettingsError


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_stage_message_carries_the_options_it_is_given() -> None:
    message = stage_message("q", uuid.uuid4(), "review", 2, {"correlation_id": "req-1"})

    assert message.options == {"correlation_id": "req-1"}
    assert stage_message("q", uuid.uuid4(), "review", 1).options == {}


def test_the_observer_logs_under_the_messages_correlation_id_and_counts_the_outcome() -> None:
    observer = StageObserver()
    broker = StubBroker()
    message = MessageProxy(stage_message("q", uuid.uuid4(), "obs-stage", 1,
                                         {"correlation_id": "req-42"}))
    before = _sample("conveyor_stage_runs_total", stage="obs-stage", outcome="completed")
    seen: list[str | None] = []

    observer.before_process_message(broker, message)
    seen.append(logs.correlation_id.get())
    report_outcome("completed")
    observer.after_process_message(broker, message)

    assert seen == ["req-42"]
    assert logs.correlation_id.get() is None
    assert _sample("conveyor_stage_runs_total", stage="obs-stage",
                   outcome="completed") == before + 1
    assert _sample("conveyor_stage_duration_seconds_count", stage="obs-stage",
                   outcome="completed") >= 1


def test_the_observer_logs_a_stage_message_under_its_jobs_organisation() -> None:
    observer = StageObserver()
    message = MessageProxy(stage_message("q", uuid.uuid4(), "obs-tenant", 1,
                                         {"correlation_id": "req-43", "organization": "acme"}))
    seen: list[str | None] = []

    observer.before_process_message(StubBroker(), message)
    seen.append(logs.organization.get())
    observer.after_process_message(StubBroker(), message)

    assert seen == ["acme"]
    assert logs.organization.get() is None


def test_a_log_line_names_the_organisation_of_its_context_or_the_one_it_is_given() -> None:
    def line(**extra: Any) -> dict[str, Any]:
        record = logging.LogRecord("conveyor.test", logging.INFO, __file__, 1, "job %s", ("j",),
                                   None)
        record.__dict__.update(extra)
        parsed: dict[str, Any] = json.loads(logs.JsonFormatter().format(record))
        return parsed

    token = logs.organization.set("acme")
    try:
        in_context, named = line(), line(organization="globex")
    finally:
        logs.organization.reset(token)

    assert (in_context["organization"], in_context["message"]) == ("acme", "job j")
    assert named["organization"] == "globex"
    assert "organization" not in line()


def test_a_failing_stage_message_is_counted_as_an_error() -> None:
    observer = StageObserver()
    message = MessageProxy(stage_message("q", uuid.uuid4(), "obs-error", 1))
    observer.before_process_message(StubBroker(), message)
    observer.after_process_message(StubBroker(), message, exception=RuntimeError("boom"))

    assert _sample("conveyor_stage_runs_total", stage="obs-error", outcome="error") == 1


def test_the_observer_works_as_dramatiq_middleware_on_a_real_worker() -> None:
    broker = StubBroker()
    broker.add_middleware(StageObserver())
    seen: list[str | None] = []

    def run_stage(job_id: str, stage: str, attempt: int) -> None:
        seen.append(logs.correlation_id.get())
        report_outcome("completed")

    dramatiq.Actor(run_stage, broker=broker, actor_name="run_stage", queue_name="q",
                   priority=0, options={})
    broker.enqueue(stage_message("q", uuid.uuid4(), "obs-worker", 1, {"correlation_id": "c-7"}))
    worker = dramatiq.Worker(broker, worker_threads=1)
    worker.start()
    try:
        broker.join("q")
        worker.join()
    finally:
        worker.stop()

    assert seen == ["c-7"]
    assert _sample("conveyor_stage_runs_total", stage="obs-worker", outcome="completed") == 1


def test_ready_max_lag_and_the_worker_metrics_port_come_from_the_environment() -> None:
    settings = Settings.from_env({"CONVEYOR_READY_MAX_LAG": "250",
                                  "CONVEYOR_WORKER_METRICS_PORT": "9464"})

    assert settings.ready_max_lag == 250
    assert settings.worker_metrics_port == 9464
    assert Settings.from_env({}).worker_metrics_port is None
    assert Settings.from_env({}).ready_max_lag == 10_000
    with pytest.raises(SettingsError):
        Settings.from_env({"CONVEYOR_READY_MAX_LAG": "-1"})


def test_gunicorn_marks_a_dead_worker_in_the_multiprocess_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prometheus_client import multiprocess

    dead: list[Any] = []
    monkeypatch.setattr(multiprocess, "mark_process_dead", dead.append)
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    gunicorn_conf.child_exit(None, SimpleNamespace(pid=111))
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    gunicorn_conf.child_exit(None, SimpleNamespace(pid=222))

    assert dead == [222]


def test_busiest_keeps_the_top_organisations_by_name_and_sums_the_rest_as_other() -> None:
    from conveyor.http.prometheus import busiest

    counts = [("acme", ("FAILED",), 5.0), ("acme", ("COMPLETED",), 20.0),
              ("globex", ("COMPLETED",), 10.0), ("initech", ("COMPLETED",), 3.0),
              ("umbrella", ("FAILED",), 2.0), ("umbrella", (), 7.0)]
    assert busiest(counts, 2) == {
        ("acme", ("FAILED",)): 5.0, ("acme", ("COMPLETED",)): 20.0,
        ("globex", ("COMPLETED",)): 10.0,
        # umbrella (9 in all) ranks above initech (3) but below the two kept
        ("other", ("COMPLETED",)): 3.0, ("other", ("FAILED",)): 2.0, ("other", ()): 7.0,
    }
    assert busiest(counts, 0) == {("other", ("FAILED",)): 7.0, ("other", ("COMPLETED",)): 33.0,
                                  ("other", ()): 7.0}
