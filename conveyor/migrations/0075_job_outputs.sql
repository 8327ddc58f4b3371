-- Issue 13: a job started by API is waited for, and its answer carries what each finished
-- stage returned (`outputs`) and, once COMPLETED, the output of its plan's last stage
-- (`result`). Rows projected before this hold '{}' and NULL until
-- `conveyor replay rebuild jobs` fills them in from the log.
ALTER TABLE jobs
    ADD COLUMN outputs jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN result jsonb;
