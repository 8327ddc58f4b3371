-- Issue 12: every job belongs to a tenant, the `organization` it came from (and a `team`
-- below it where the platform has one), so the API can list one organisation's jobs.
-- Jobs enqueued before this have none: their `Job.Enqueued` events are upcast with
-- organization NULL, which is what these columns hold for them, so no backfill is needed
-- (and `conveyor replay verify` agrees).
ALTER TABLE jobs
    ADD COLUMN organization text,
    ADD COLUMN team text;

-- Serves `WHERE organization = $1 ORDER BY created_at, job_id` in either direction.
CREATE INDEX jobs_organization_created_at_idx
    ON jobs (organization, created_at DESC, job_id DESC);
