"""Running the projections: eventsourcing's ProjectionRunner per read model."""

from __future__ import annotations

from typing import Any

from eventsourcing.projection import ProjectionRunner

from conveyor.application import Jobs
from conveyor.projections.jobs import JobsProjection, JobsView
from conveyor.settings import Settings


def jobs_runner(settings: Settings) -> ProjectionRunner[Any, JobsView]:
    """Start following the log into the `jobs` table, from its tracked position."""
    return ProjectionRunner(
        application_class=Jobs,
        projection_class=JobsProjection,
        view_class=JobsView,
        env=settings.eventsourcing_env(),
    )
