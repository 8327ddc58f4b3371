-- The `jobs` projection: one row per job, and its tracking position. The tracking
-- row '__migration__' tells the library the table is already single-row (DESIGN 7).
CREATE TABLE jobs (
    job_id uuid PRIMARY KEY,
    workflow text NOT NULL,
    status text NOT NULL,
    platform text,
    repository text,
    pull_request text,
    head_commit text,
    trigger jsonb NOT NULL,
    plan jsonb NOT NULL,
    stage_states jsonb NOT NULL,
    current_stages text[] NOT NULL DEFAULT '{}',
    stages jsonb NOT NULL DEFAULT '[]',
    error jsonb,
    next_attempt_at timestamptz,
    version bigint NOT NULL,
    created_at timestamptz NOT NULL,
    started_at timestamptz,
    finished_at timestamptz,
    updated_at timestamptz NOT NULL
);

CREATE INDEX jobs_created_at_idx ON jobs (created_at DESC, job_id DESC);
CREATE INDEX jobs_status_created_at_idx ON jobs (status, created_at DESC, job_id DESC);

CREATE TABLE jobs_tracking (
    application_name text PRIMARY KEY,
    notification_id bigint
);
INSERT INTO jobs_tracking VALUES ('__migration__', 1);
