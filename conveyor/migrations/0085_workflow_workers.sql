-- Issue 14: the workflow versions each running worker can run, with a heartbeat, so
-- `conveyor workflows` and the API know which versions are served (and which jobs wait
-- for a version nobody serves). A worker's rows go when it stops, or go stale with it.
CREATE TABLE workflow_workers (
    worker_id text NOT NULL,
    workflow text NOT NULL,
    version text NOT NULL,
    seen_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (worker_id, workflow)
);
CREATE INDEX workflow_workers_version ON workflow_workers (workflow, version, seen_at);
