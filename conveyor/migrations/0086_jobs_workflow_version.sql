-- Issue 14: the workflow version each job runs on, so `conveyor workflows` counts each
-- version's jobs in flight. NULL: a job enqueued before versions, run by any worker with
-- its workflow (docs/architecture.md §3.9).
ALTER TABLE jobs ADD COLUMN workflow_version text;
CREATE INDEX jobs_in_flight_by_version ON jobs (workflow, workflow_version)
    WHERE status NOT IN ('COMPLETED', 'FAILED', 'CANCELLED');
