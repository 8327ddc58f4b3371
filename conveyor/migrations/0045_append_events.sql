-- A save's whole transaction in one statement (conveyor/store/postgres.py): the leases its
-- outcomes release, then its events under the events table's EXCLUSIVE lock, which is
-- what keeps notification ids in commit order for the relay and the projector. Run in
-- autocommit, the statement's Bind, Execute and Sync travel in one message: the server
-- takes the lock only once it has the whole message, and commits as soon as the INSERT
-- is done, so the lock is held for the server's own work and its flush, never across a
-- round trip to a client that may be frozen (the server arms
-- idle_in_transaction_session_timeout only at a Sync).

CREATE FUNCTION conveyor_release_leases(jobs uuid[], stages text[], attempts integer[])
RETURNS void LANGUAGE sql AS $$
    DELETE FROM stage_leases WHERE (job_id, stage, attempt) IN
        (SELECT * FROM unnest(jobs, stages, attempts));
$$;

CREATE FUNCTION conveyor_append_events(
    originator_ids uuid[], versions bigint[], topics text[], states bytea[],
    lease_jobs uuid[], lease_stages text[], lease_attempts integer[]
) RETURNS SETOF bigint LANGUAGE plpgsql AS $$
BEGIN
    IF cardinality(lease_jobs) > 0 THEN
        PERFORM conveyor_release_leases(lease_jobs, lease_stages, lease_attempts);
    END IF;
    IF cardinality(originator_ids) > 0 THEN
        LOCK TABLE jobs_events IN EXCLUSIVE MODE;
        NOTIFY jobs_events;
        RETURN QUERY
            INSERT INTO jobs_events (originator_id, originator_version, topic, state)
            SELECT * FROM unnest(originator_ids, versions, topics, states)
            RETURNING notification_id;
    END IF;
END
$$;
