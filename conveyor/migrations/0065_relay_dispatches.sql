-- Fair dispatch (docs/architecture.md §3.7): every stage attempt the relay has made
-- ready and not yet seen end. `sent_at` NULL: held (ready, not yet sent, waiting for
-- its tenant's limit or the dispatch window); set: in flight (sent, outcome not yet
-- relayed). Written only in the relay's batch transactions, with its position, so a
-- relay that starts rebuilds its held queue and in-flight counts from this table.
CREATE TABLE relay_dispatches (
    job_id uuid NOT NULL,
    stage text NOT NULL,
    attempt integer NOT NULL,
    organization text NOT NULL,
    priority integer NOT NULL,
    held_at timestamptz NOT NULL,
    sent_at timestamptz,
    PRIMARY KEY (job_id, stage, attempt)
);
CREATE INDEX relay_dispatches_organization_idx ON relay_dispatches (organization);
