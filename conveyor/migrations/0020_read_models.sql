-- Issue 6: the read side. `jobs` gains what the API filters and shows; `job_history`
-- keeps every event and every stage attempt; `metrics` keeps bucketed counters and
-- duration histograms so a request never scans every job. Each projection has its
-- own tracking table with the row ('__migration__', 1) (DESIGN 7).
ALTER TABLE jobs
    ADD COLUMN stage_attempts jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN retry_at jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN attempt integer NOT NULL DEFAULT 1,
    ADD COLUMN waiting_for jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN retries integer NOT NULL DEFAULT 0,
    ADD COLUMN recoveries integer NOT NULL DEFAULT 0,
    ADD COLUMN correlation_id text;

CREATE INDEX jobs_workflow_created_at_idx ON jobs (workflow, created_at DESC, job_id DESC);
CREATE INDEX jobs_platform_created_at_idx ON jobs (platform, created_at DESC, job_id DESC);
CREATE INDEX jobs_repository_created_at_idx
    ON jobs (repository, pull_request, created_at DESC, job_id DESC);

CREATE TABLE job_events (
    job_id uuid NOT NULL,
    version bigint NOT NULL,
    type text NOT NULL,
    at timestamptz NOT NULL,
    correlation_id text,
    data jsonb NOT NULL,
    PRIMARY KEY (job_id, version)
);

CREATE TABLE job_stage_attempts (
    job_id uuid NOT NULL,
    started_version bigint NOT NULL,
    stage text NOT NULL,
    attempt integer NOT NULL,
    started_at timestamptz NOT NULL,
    finished_at timestamptz,
    duration_ms double precision,
    outcome text NOT NULL,
    classification text,
    error text,
    PRIMARY KEY (job_id, started_version)
);

CREATE TABLE job_history_tracking (
    application_name text PRIMARY KEY,
    notification_id bigint
);
INSERT INTO job_history_tracking VALUES ('__migration__', 1);

-- The metrics projection's own compact state per job, so it never reads another
-- projection's tables (each projection can be rebuilt alone).
CREATE TABLE metrics_jobs (
    job_id uuid PRIMARY KEY,
    state jsonb NOT NULL
);

CREATE TABLE metrics_status (
    workflow text NOT NULL,
    status text NOT NULL,
    jobs bigint NOT NULL,
    PRIMARY KEY (workflow, status)
);

CREATE TABLE metrics_totals (
    workflow text NOT NULL,
    kind text NOT NULL,
    n bigint NOT NULL,
    PRIMARY KEY (workflow, kind)
);

CREATE TABLE metrics_hourly (
    hour timestamptz NOT NULL,
    workflow text NOT NULL,
    kind text NOT NULL,
    n bigint NOT NULL,
    PRIMARY KEY (hour, workflow, kind)
);

-- Log-spaced duration bins (eight a doubling of milliseconds) per hour and measure.
CREATE TABLE metrics_durations (
    hour timestamptz NOT NULL,
    workflow text NOT NULL,
    measure text NOT NULL,
    bin integer NOT NULL,
    n bigint NOT NULL,
    PRIMARY KEY (hour, workflow, measure, bin)
);

CREATE TABLE metrics_tracking (
    application_name text PRIMARY KEY,
    notification_id bigint
);
INSERT INTO metrics_tracking VALUES ('__migration__', 1);
