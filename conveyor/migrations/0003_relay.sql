-- The relay's position in the log and its durable timers (retry due times).
CREATE TABLE relay_tracking (
    application_name text PRIMARY KEY,
    notification_id bigint
);
INSERT INTO relay_tracking VALUES ('__migration__', 1);

CREATE TABLE relay_timers (
    job_id uuid NOT NULL,
    stage text NOT NULL,
    attempt integer NOT NULL,
    due_at timestamptz NOT NULL,
    PRIMARY KEY (job_id, stage, attempt)
);
CREATE INDEX relay_timers_due_at_idx ON relay_timers (due_at);
