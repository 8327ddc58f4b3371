-- The relay looks for attempts sent long ago that never started (their message was lost,
-- docs/architecture.md §4.3) once a poll: only the in-flight rows, the oldest sends first.
CREATE INDEX relay_dispatches_sent_idx ON relay_dispatches (sent_at) WHERE sent_at IS NOT NULL;
