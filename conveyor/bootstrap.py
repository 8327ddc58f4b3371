"""The composition root: concrete objects built from settings, in one place."""

from __future__ import annotations

import importlib
from datetime import timedelta

from conveyor.application import Jobs
from conveyor.settings import Settings
from conveyor.workflows import WORKFLOWS, Workflow, skipped_stages


def load_workflows(settings: Settings) -> dict[str, Workflow]:
    """The built-in workflows plus those of `CONVEYOR_WORKFLOW_MODULES`.

    Each named module is imported and every `Workflow` at its top level is registered,
    so a team adds its own workflows without changing Conveyor.
    """
    workflows = dict(WORKFLOWS)
    for name in settings.workflow_modules:
        module = importlib.import_module(name)
        for value in vars(module).values():
            if isinstance(value, Workflow):
                workflows[value.name] = value
    return workflows


def build_jobs(settings: Settings) -> Jobs:
    """The command-side application, configured as the settings say."""
    return Jobs(
        env=settings.eventsourcing_env(),
        workflows=load_workflows(settings),
        skip_stages=skipped_stages(ast_analysis=settings.ast_analysis),
    )


def wait_retention(settings: Settings) -> timedelta:
    return timedelta(seconds=settings.wait_retention_seconds)
