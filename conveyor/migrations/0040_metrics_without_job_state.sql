-- The metrics projection derives what it counts from the Job aggregate's own state
-- (conveyor.changes), so it no longer keeps a copy of each job's state.
DROP TABLE IF EXISTS metrics_jobs;
