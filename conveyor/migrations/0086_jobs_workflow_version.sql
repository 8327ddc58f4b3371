-- Issue 14: the workflow version each job runs on, so `conveyor workflows` counts each
-- version's jobs in flight. Rows projected before this hold NULL: their version is the
-- one their plan derives (conveyor.aggregates.stages.plan_version).
ALTER TABLE jobs ADD COLUMN workflow_version text;
CREATE INDEX jobs_in_flight_by_version ON jobs (workflow, workflow_version)
    WHERE status NOT IN ('COMPLETED', 'FAILED', 'CANCELLED');
