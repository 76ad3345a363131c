-- Evaluator: the alert event outbox. Runs as pulse_owner.
--
--   * alert_events.published_at: NULL until the event is on pulse:alerts. The evaluator writes
--     the event in the same transaction as the alert change and publishes it afterwards; an
--     event left unpublished by a crash (or written by a user acknowledging in the UI) is sent
--     by the next outbox pass. Events that existed before this migration count as published.
--   * alert_events.seq: insertion order, so that the events of one alert (several may share a
--     timestamp when they come from one batch) are published in the order they happened.
--   * pulse_worker may set published_at, and only that column.

ALTER TABLE alert_events ADD COLUMN published_at timestamptz;
ALTER TABLE alert_events ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY;
UPDATE alert_events SET published_at = at;
CREATE INDEX alert_events_unpublished_idx ON alert_events (seq) WHERE published_at IS NULL;

GRANT UPDATE (published_at) ON alert_events TO pulse_worker;
