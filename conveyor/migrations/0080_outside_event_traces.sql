-- The trace an outside event was sent in (its W3C traceparent, when it carried one), kept
-- with the event so that a pause coming after it links its wait's span to that trace
-- (conveyor/store/waits.py, docs/architecture.md §13).
ALTER TABLE relay_outside_events ADD COLUMN traceparent text;
