-- A worker takes a lease on a stage attempt when it starts it; a lease past its
-- deadline with no outcome recorded means the worker vanished, and the relay
-- dispatches the stage again (Recovered).
CREATE TABLE stage_leases (
    job_id uuid NOT NULL,
    stage text NOT NULL,
    attempt integer NOT NULL,
    worker text NOT NULL,
    started_at timestamptz NOT NULL,
    deadline timestamptz NOT NULL,
    PRIMARY KEY (job_id, stage, attempt)
);
CREATE INDEX stage_leases_deadline_idx ON stage_leases (deadline);
