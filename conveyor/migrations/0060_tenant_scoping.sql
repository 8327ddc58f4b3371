-- The metrics read model counts per organisation too, so a scoped token's metrics are the
-- sum of its organisations' buckets. organization '' holds every job's counts together
-- (no platform names an organisation '', and no token can be limited to it): what an
-- unscoped token reads, in as few rows as before. The counts kept until now are exactly
-- that, so they stay as they are; the per-organisation buckets count from this migration
-- on, and `conveyor replay rebuild metrics` fills them in from the whole log.
ALTER TABLE metrics_status ADD COLUMN organization text NOT NULL DEFAULT '';
ALTER TABLE metrics_status DROP CONSTRAINT metrics_status_pkey;
ALTER TABLE metrics_status ADD PRIMARY KEY (organization, workflow, status);

ALTER TABLE metrics_totals ADD COLUMN organization text NOT NULL DEFAULT '';
ALTER TABLE metrics_totals DROP CONSTRAINT metrics_totals_pkey;
ALTER TABLE metrics_totals ADD PRIMARY KEY (organization, workflow, kind);

ALTER TABLE metrics_hourly ADD COLUMN organization text NOT NULL DEFAULT '';
ALTER TABLE metrics_hourly DROP CONSTRAINT metrics_hourly_pkey;
ALTER TABLE metrics_hourly ADD PRIMARY KEY (organization, hour, workflow, kind);

ALTER TABLE metrics_durations ADD COLUMN organization text NOT NULL DEFAULT '';
ALTER TABLE metrics_durations DROP CONSTRAINT metrics_durations_pkey;
ALTER TABLE metrics_durations ADD PRIMARY KEY (organization, hour, workflow, measure, bin);

-- A wait belongs to its job's organisation; an outside event sent with a scoped token
-- resumes only waits of the organisations it was sent for. Waits open now take their
-- job's organisation from the jobs read model.
ALTER TABLE relay_waits ADD COLUMN organization text;
UPDATE relay_waits w SET organization = j.organization FROM jobs j WHERE j.job_id = w.job_id;

-- A kept outside event records the organisations it was sent for (NULL: every one, as the
-- AMQP door and unscoped tokens send). One id may be sent once per set of organisations,
-- so the key is the id and that set.
ALTER TABLE relay_outside_events ADD COLUMN organizations text[];
ALTER TABLE relay_outside_events DROP CONSTRAINT relay_outside_events_pkey;
CREATE UNIQUE INDEX relay_outside_events_id_idx
    ON relay_outside_events (event_id, organizations) NULLS NOT DISTINCT;
