-- Cron schedules (docs/architecture.md §3.8): those declared in code (`declared`, written
-- by the active relay from the registered modules) and those created through the API.
-- `last_tick` is the cursor: the latest tick fired (or, for a schedule just seen or
-- resumed, the time from which its ticks count). The exactly-once guarantee is the
-- job's key (schedule and tick), not this row: a relay that fires a tick and stops
-- before moving the cursor fires it again, onto the same job.
CREATE TABLE schedules (
    name text PRIMARY KEY,
    cron text NOT NULL,
    workflow text NOT NULL,
    input jsonb NOT NULL DEFAULT '{}',
    timezone text NOT NULL DEFAULT 'UTC',
    catch_up text NOT NULL DEFAULT 'skip',
    window_seconds double precision,
    overlap text NOT NULL DEFAULT 'skip',
    declared boolean NOT NULL DEFAULT false,
    paused boolean NOT NULL DEFAULT false,
    last_tick timestamptz NOT NULL DEFAULT now(),
    last_fired_at timestamptz,
    last_job_id uuid,
    created_at timestamptz NOT NULL DEFAULT now()
);
