-- The wait matcher's state, kept by the relay from the log in the same transaction
-- as its position: open waits, and outside events kept for the retention window so
-- that one arriving before its pause still resumes it.
CREATE TABLE relay_waits (
    job_id uuid NOT NULL,
    stage text NOT NULL,
    attempt integer NOT NULL,
    event_type text NOT NULL,
    key text NOT NULL,
    deadline timestamptz NOT NULL,
    paused_at timestamptz NOT NULL,
    PRIMARY KEY (job_id, stage)
);
CREATE INDEX relay_waits_match_idx ON relay_waits (event_type, key);

CREATE TABLE relay_outside_events (
    event_id text PRIMARY KEY,
    event_type text NOT NULL,
    key text NOT NULL,
    payload jsonb,
    received_at timestamptz NOT NULL
);
CREATE INDEX relay_outside_events_match_idx ON relay_outside_events (event_type, key, received_at);

-- Timers of several kinds: 'dispatch' (a retry falling due) and 'wait' (a wait's deadline).
ALTER TABLE relay_timers ADD COLUMN kind text NOT NULL DEFAULT 'dispatch';
ALTER TABLE relay_timers DROP CONSTRAINT relay_timers_pkey;
ALTER TABLE relay_timers ADD PRIMARY KEY (job_id, stage, attempt, kind);
