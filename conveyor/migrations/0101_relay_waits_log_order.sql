-- One outside event resumes one wait of a job, its first in the log (docs/architecture.md
-- §5.3): the version of the job's `Paused` orders a job's waits. Waits open at the upgrade
-- keep 0 and are ordered among themselves by paused_at.
ALTER TABLE relay_waits ADD COLUMN paused_version integer NOT NULL DEFAULT 0;
