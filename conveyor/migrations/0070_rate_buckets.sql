-- Rate limits shared by every worker (conveyor/store/rates.py, docs/architecture.md §4.5):
-- one token bucket per organisation and resource, kept as the time it is full again (the
-- generic cell rate algorithm's TAT) and moved by one atomic upsert per take.
CREATE TABLE rate_buckets (
    organization text NOT NULL,
    resource text NOT NULL,
    tat timestamptz NOT NULL,
    -- Until when a service's Retry-After said to wait: stages that took their tokens
    -- earlier and wake before it take them again.
    blocked_until timestamptz,
    PRIMARY KEY (organization, resource)
);
