"""Firing schedules: one job per tick, under a key the tick decides (docs/architecture.md §3.8).

The relay calls `fire_due` among its chores, so only the active relay fires; the API and
CLI call `trigger`, `pause` and `resume`. The job's key (`tick_key`) is the guarantee
that a tick starts one job, whichever relay fires it and however often; the
`schedules` row is only the cursor that spares the next poll from firing it again.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from uuid import UUID

from conveyor.aggregates import TransitionError
from conveyor.application import Enqueued, Jobs, JobsError
from conveyor.schedules import Overlap, Schedule, tick_key
from conveyor.store.schedules import ScheduleState, ScheduleStore

log = logging.getLogger(__name__)

__all__ = ["Scheduler"]


class Scheduler:
    """Fires the schedules' due ticks, and triggers, pauses and resumes them."""

    def __init__(self, jobs: Jobs, store: ScheduleStore,
                 declared: Mapping[str, Schedule] | None = None,
                 grace: timedelta = timedelta(seconds=2)) -> None:
        self.jobs = jobs
        self.store = store
        self.declared = dict(declared or {})
        # How late a tick may fire and still be on time, not missed (`Schedule.due`).
        self.grace = grace

    def declare(self) -> None:
        """Store the code's schedules; the active relay does this as it starts."""
        self.store.declare(self.declared.values(), self.jobs.clock())
        for state in self.store.all():
            if self._orphaned(state):
                log.warning("schedule %s was declared in code this relay does not have;"
                            " it fires nothing until that code is back", state.schedule.name)

    def fire_due(self) -> int:
        """Fire every unpaused schedule's due ticks; return how many jobs they started."""
        now = self.jobs.clock()
        started = 0
        for state in self.store.all():
            if state.paused or self._orphaned(state):
                continue
            try:
                started += self._fire_due(state, now)
            except JobsError as error:  # a stored schedule naming a workflow not deployed
                log.error("schedule %s cannot fire: %s", state.schedule.name, error)
        return started

    def _fire_due(self, state: ScheduleState, now: datetime) -> int:
        started = 0
        for tick in self._definition(state).due(state.last_tick, now, self.grace):
            started += self._fire(state, tick)
            state = self.store.get(state.schedule.name)
        latest_passed = state.last_tick
        for tick in self._definition(state).ticks(latest_passed):
            if tick > now:
                break
            latest_passed = tick
        if latest_passed > state.last_tick:
            self.store.passed(state.schedule.name, latest_passed)  # missed, not fired
        return started

    def trigger(self, name: str, by: str) -> Enqueued:
        """Start the schedule's workflow now, once per call, whatever its overlap policy."""
        state = self.store.get(name)
        now = self.jobs.clock()
        schedule = self._definition(state)
        started = self.jobs.enqueue(schedule.workflow, f"{tick_key(name, now)}:triggered-by:{by}",
                                    schedule.input_for(now))
        self.store.fired(name, None, started.job_id, now)
        return started

    def pause(self, name: str) -> ScheduleState:
        return self.store.set_paused(name, True, self.jobs.clock())

    def resume(self, name: str) -> ScheduleState:
        return self.store.set_paused(name, False, self.jobs.clock())

    def create(self, schedule: Schedule) -> ScheduleState:
        """Store a schedule made through the API or CLI; its ticks count from now."""
        self.jobs.check_start(schedule.workflow, schedule.input)
        return self.store.create(schedule, self.jobs.clock())

    def list(self) -> list[tuple[ScheduleState, datetime | None]]:
        """Every schedule with its next fire time (None while paused)."""
        return [(s, self.next_fire(s)) for s in self.store.all()]

    def next_fire(self, state: ScheduleState) -> datetime | None:
        if state.paused:
            return None
        return self._definition(state).next_tick(max(self.jobs.clock(), state.last_tick))

    def get(self, name: str) -> ScheduleState:
        return self.store.get(name)

    def _orphaned(self, state: ScheduleState) -> bool:
        # Declared by code since removed (or not loaded here): its input may need that code,
        # and a schedule deleted from code must stop. Its row keeps its pause and cursor.
        return state.declared and state.schedule.name not in self.declared

    def _definition(self, state: ScheduleState) -> Schedule:
        # A declared schedule's input may be built by its function, known only to code.
        return self.declared.get(state.schedule.name, state.schedule)

    def _fire(self, state: ScheduleState, tick: datetime) -> int:
        schedule = self._definition(state)
        if state.last_job_id is not None and not self._finished(state.last_job_id):
            if schedule.overlap is Overlap.SKIP:
                log.info("schedule %s: tick %s skipped, its previous run is going",
                         schedule.name, tick.isoformat())
                self.store.passed(schedule.name, tick)
                return 0
            if schedule.overlap is Overlap.CANCEL:
                with contextlib.suppress(TransitionError):  # it finished meanwhile
                    self.jobs.cancel(state.last_job_id, reason=f"overlapped by tick {tick}",
                                     by=f"schedule:{schedule.name}")
        try:
            input = schedule.input_for(tick)
        except Exception:  # the team's code: its bug must not stop the relay's other work
            log.exception("schedule %s: its input function failed; tick %s passed",
                          schedule.name, tick.isoformat())
            self.store.passed(schedule.name, tick)
            return 0
        started = self.jobs.enqueue(schedule.workflow, tick_key(schedule.name, tick), input)
        self.store.fired(schedule.name, tick, started.job_id, self.jobs.clock())
        return int(started.created)

    def _finished(self, job_id: UUID) -> bool:
        return self.jobs.get(job_id).status.is_terminal
