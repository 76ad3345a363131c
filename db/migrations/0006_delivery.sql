-- Indexes for alert routing and delivery (services/dispatcher, services/delivery_worker).
-- Runs as pulse_owner.
--
--   * the dispatcher's throttle check looks up earlier jobs of one alert and integration
--     (repeat_interval_s); without this it scans every job ever created.
--   * the worker's claim takes due PENDING jobs in next_attempt_at order; a partial index keeps
--     that cheap however many DELIVERED/FAILED jobs the table holds.

CREATE INDEX delivery_jobs_alert_integration_idx ON delivery_jobs (alert_id, integration_id, created_at DESC);
CREATE INDEX delivery_jobs_pending_due_idx ON delivery_jobs (next_attempt_at) WHERE state = 'PENDING';
