-- Issue 15, retention (conveyor/retention/, docs/architecture.md §8.4): finished jobs older
-- than the retention are copied to compressed NDJSON files and removed from the store.
-- `archived_jobs` keeps one small row per archived job, the tombstone that lets a
-- repeated key (a redelivered webhook, an API start) still find its job, and tells the
-- archive's re-runs what is done. `archive_runs` records which manifests were applied.
CREATE TABLE archived_jobs (
    job_id uuid PRIMARY KEY,
    organization text,
    version bigint NOT NULL,
    finished_at timestamptz NOT NULL,
    run text NOT NULL,
    file text NOT NULL,
    archived_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE archive_runs (
    run text PRIMARY KEY,
    jobs bigint NOT NULL,
    events bigint NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT now()
);

-- An organisation's own retention (NULL: CONVEYOR_RETENTION_DAYS).
ALTER TABLE tenant_settings ADD COLUMN retention_days integer CHECK (retention_days > 0);

-- A job's first event under an archived id is refused as the unique key would refuse it
-- were the stream still here, so `Jobs.enqueue` answers "already started" as before
-- (docs/architecture.md §2.2). Only version 1 rows pay for the look-up.
CREATE FUNCTION conveyor_refuse_archived() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM archived_jobs WHERE job_id = NEW.originator_id) THEN
        RAISE unique_violation USING MESSAGE = format(
            'job %s was archived; its key is taken', NEW.originator_id);
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER jobs_events_refuse_archived BEFORE INSERT ON jobs_events
    FOR EACH ROW WHEN (NEW.originator_version = 1) EXECUTE FUNCTION conveyor_refuse_archived();

-- The archive's scan for finished jobs past their retention, oldest first.
CREATE INDEX jobs_finished_at_idx ON jobs (finished_at, job_id) WHERE finished_at IS NOT NULL;
