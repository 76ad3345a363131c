-- Initial schema of the whole platform. Runs as pulse_owner (see 0001_roles.sql).
--
-- Policy model
--   * Every table with a tenant_id column is tenant-owned: row level security is ENABLED and
--     FORCED (so even the owner, pulse_owner, is bound by it) and carries three policies:
--       tenant_isolation  TO pulse_app       rows of current_setting('app.tenant_id') only, for
--                                             reads and writes (USING + WITH CHECK); with the
--                                             setting unset or empty the customer role sees nothing
--       operator_read     TO pulse_operator  FOR SELECT USING (true): cross-tenant reads; the code
--                                             path (Database.operator) audits every use
--       worker_all        TO pulse_worker    USING (true) WITH CHECK (true): internal workers
--     settings differs: pulse_app also reads the global defaults (tenant_id IS NULL) once
--     app.tenant_id is set, but writes only its own rows.
--   * Policies say WHICH rows; grants say WHAT a role may do. Grants are explicit, per table and
--     least privilege: no TRUNCATE, REFERENCES, TRIGGER or DDL for anyone, nothing to PUBLIC,
--     no default privileges. pulse_operator may not read integrations.secrets.
--   * Children refer to parents by (tenant_id, id), so a row can never point at another tenant's
--     row, whoever writes it. FK checks and cascades run as the owner without forced RLS.
--   * operator_audit_log is not tenant-owned (no tenant_id, no RLS): only pulse_operator may
--     INSERT and SELECT it; customers and workers have no grant at all. It is append-only.
--   * Surrogate bigint keys are identity columns: inserting needs no sequence grant.
--
-- A new tenant-owned table must: have tenant_id, get the three policies and its grants here or
-- in its own migration. The check at the end of this file and tests/db/test_rls.py refuse a
-- tenant table without forced RLS.

-- updated_at maintenance -------------------------------------------------------------------

CREATE FUNCTION pulse_touch_updated_at() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION pulse_touch_updated_at() FROM PUBLIC;

-- tenants -----------------------------------------------------------------------------------

CREATE TABLE tenants (
    tenant_id   text PRIMARY KEY
                CHECK (tenant_id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),  -- = db.validate_tenant_id
    name        text NOT NULL,
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    metadata    jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(metadata) = 'object'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- devices -----------------------------------------------------------------------------------

CREATE TABLE devices (
    tenant_id               text NOT NULL REFERENCES tenants (tenant_id),
    device_id               text NOT NULL CHECK (device_id <> '' AND char_length(device_id) <= 128),
    site_id                 text,
    kind                    text NOT NULL DEFAULT 'iot' CHECK (kind IN ('iot', 'ptp', 'epics', 'energy')),
    status                  text NOT NULL DEFAULT 'provisioned'
                            CHECK (status IN ('provisioned', 'active', 'revoked')),
    -- credentials are stored only as hashes (of high-entropy random values), never in plain
    token_hash              text,
    activation_code_hash    text,
    activation_expires_at   timestamptz,
    activated_at            timestamptz,
    revoked_at              timestamptz,
    fw_version              text,
    metadata                jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(metadata) = 'object'),
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, device_id),
    CONSTRAINT devices_revoked_at_set CHECK (status <> 'revoked' OR revoked_at IS NOT NULL),
    CONSTRAINT devices_activation_expires CHECK (activation_code_hash IS NULL OR activation_expires_at IS NOT NULL)
);
CREATE UNIQUE INDEX devices_token_hash_key ON devices (token_hash) WHERE token_hash IS NOT NULL;
CREATE UNIQUE INDEX devices_activation_code_hash_key ON devices (activation_code_hash)
    WHERE activation_code_hash IS NOT NULL;
CREATE INDEX devices_tenant_site_idx ON devices (tenant_id, site_id);

-- every token a device was given, so rotations and revocations keep their history
CREATE TABLE device_token_history (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id   text NOT NULL,
    device_id   text NOT NULL,
    token_hash  text NOT NULL,
    issued_at   timestamptz NOT NULL DEFAULT now(),
    retired_at  timestamptz,
    reason      text,  -- provisioned | activated | rotated | revoked | ...
    FOREIGN KEY (tenant_id, device_id) REFERENCES devices (tenant_id, device_id) ON DELETE CASCADE
);
CREATE INDEX device_token_history_device_idx ON device_token_history (tenant_id, device_id, issued_at DESC);

-- device_state ------------------------------------------------------------------------------

CREATE TABLE device_state (
    tenant_id           text NOT NULL,
    device_id           text NOT NULL,
    status              text NOT NULL DEFAULT 'OFFLINE' CHECK (status IN ('ONLINE', 'STALE', 'OFFLINE')),
    last_seen_at        timestamptz,
    last_heartbeat_at   timestamptz,
    last_telemetry_at   timestamptz,
    status_changed_at   timestamptz NOT NULL DEFAULT now(),
    stale_after_s       integer CHECK (stale_after_s > 0),  -- NULL: the tenant/global setting
    metrics             jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(metrics) = 'object'),
    states              jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(states) = 'object'),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, device_id),
    FOREIGN KEY (tenant_id, device_id) REFERENCES devices (tenant_id, device_id) ON DELETE CASCADE
);
CREATE INDEX device_state_status_idx ON device_state (status, last_seen_at);

-- alert rules -------------------------------------------------------------------------------

CREATE TABLE alert_rules (
    rule_id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id        text NOT NULL REFERENCES tenants (tenant_id),
    name             text NOT NULL,
    description      text,
    metric           text NOT NULL,
    comparison       text NOT NULL CHECK (comparison IN ('>', '>=', '<', '<=', '==', '!=')),
    threshold        double precision NOT NULL,
    clear_threshold  double precision,  -- hysteresis: resolve only past this value; NULL = threshold
    duration_s       integer NOT NULL DEFAULT 0 CHECK (duration_s >= 0),
    severity         text NOT NULL DEFAULT 'WARNING'
                     CHECK (severity IN ('CRITICAL', 'MAJOR', 'MINOR', 'WARNING', 'INFO')),
    -- device selector: all NULL = every device of the tenant; otherwise every given part must match
    device_ids       text[],
    site_id          text,
    device_glob      text,
    enabled          boolean NOT NULL DEFAULT true,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, rule_id),
    UNIQUE (tenant_id, name)
);

-- alerts ------------------------------------------------------------------------------------

CREATE TABLE alerts (
    alert_id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id        text NOT NULL REFERENCES tenants (tenant_id),
    device_id        text,  -- no FK: an alert outlives its device
    site_id          text,
    rule_id          uuid,
    fingerprint      text NOT NULL,
    alert_type       text NOT NULL,
    severity         text NOT NULL CHECK (severity IN ('CRITICAL', 'MAJOR', 'MINOR', 'WARNING', 'INFO')),
    status           text NOT NULL DEFAULT 'OPEN' CHECK (status IN ('OPEN', 'ACKNOWLEDGED', 'RESOLVED')),
    summary          text NOT NULL DEFAULT '',
    details          jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(details) = 'object'),
    first_seen_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at     timestamptz NOT NULL DEFAULT now(),
    event_count      integer NOT NULL DEFAULT 1 CHECK (event_count >= 1),
    acknowledged_by  text,
    acknowledged_at  timestamptz,
    resolved_at      timestamptz,
    resolved_by      text,  -- NULL: resolved by the evaluator
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, alert_id),
    FOREIGN KEY (tenant_id, rule_id) REFERENCES alert_rules (tenant_id, rule_id) ON DELETE SET NULL (rule_id),
    CONSTRAINT alerts_seen_order CHECK (last_seen_at >= first_seen_at),
    CONSTRAINT alerts_resolved_at_set CHECK (status <> 'RESOLVED' OR resolved_at IS NOT NULL),
    CONSTRAINT alerts_acknowledged_at_set CHECK (status <> 'ACKNOWLEDGED' OR acknowledged_at IS NOT NULL)
);
-- at most one unresolved alert per fingerprint: the evaluator's dedupe key
CREATE UNIQUE INDEX alerts_open_fingerprint_key ON alerts (tenant_id, fingerprint) WHERE status <> 'RESOLVED';
CREATE INDEX alerts_tenant_status_idx ON alerts (tenant_id, status, last_seen_at DESC);
CREATE INDEX alerts_tenant_device_idx ON alerts (tenant_id, device_id, last_seen_at DESC);

-- one row per alert transition; delivery jobs are unique per (event, integration)
CREATE TABLE alert_events (
    event_id    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id   text NOT NULL,
    alert_id    uuid NOT NULL,
    status      text NOT NULL CHECK (status IN ('OPEN', 'ACKNOWLEDGED', 'RESOLVED')),  -- the transition
    severity    text NOT NULL CHECK (severity IN ('CRITICAL', 'MAJOR', 'MINOR', 'WARNING', 'INFO')),
    at          timestamptz NOT NULL DEFAULT now(),
    payload     jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(payload) = 'object'),
    UNIQUE (tenant_id, event_id),
    FOREIGN KEY (tenant_id, alert_id) REFERENCES alerts (tenant_id, alert_id) ON DELETE CASCADE
);
CREATE INDEX alert_events_alert_idx ON alert_events (tenant_id, alert_id, at);

-- integrations and routes -------------------------------------------------------------------

CREATE TABLE integrations (
    integration_id  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id       text NOT NULL REFERENCES tenants (tenant_id),
    name            text NOT NULL,
    type            text NOT NULL CHECK (type IN ('webhook', 'snmp', 'email', 'mqtt')),
    enabled         boolean NOT NULL DEFAULT true,
    -- non-secret settings (url, host, port, topic, recipients, templates, ...)
    config          jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(config) = 'object'),
    -- secret material, kept apart from config so it is never listed, logged or shown to operators
    -- (pulse_operator has no SELECT on this column): webhook {"hmac_secret"}, snmp {"community"}
    -- or {"auth_password", "priv_password"}, email {"smtp_password"}, mqtt {"password"}.
    -- Values are strings; the application may store them encrypted.
    secrets         jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(secrets) = 'object'),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, integration_id),
    UNIQUE (tenant_id, name)
);

CREATE TABLE integration_routes (
    route_id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id           text NOT NULL,
    integration_id      uuid NOT NULL,
    name                text,
    min_severity        text NOT NULL DEFAULT 'INFO'
                        CHECK (min_severity IN ('CRITICAL', 'MAJOR', 'MINOR', 'WARNING', 'INFO')),
    alert_types         text[],  -- NULL: every type
    -- device and site selectors: NULL = any
    device_ids          text[],
    device_glob         text,
    site_ids            text[],
    transitions         text[] NOT NULL DEFAULT '{OPEN}'
                        CHECK (cardinality(transitions) > 0
                               AND transitions <@ ARRAY['OPEN', 'ACKNOWLEDGED', 'RESOLVED']::text[]),
    priority            integer NOT NULL DEFAULT 100,
    repeat_interval_s   integer CHECK (repeat_interval_s > 0),  -- NULL: notify once per transition
    enabled             boolean NOT NULL DEFAULT true,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, route_id),
    FOREIGN KEY (tenant_id, integration_id) REFERENCES integrations (tenant_id, integration_id) ON DELETE CASCADE
);
CREATE INDEX integration_routes_tenant_idx ON integration_routes (tenant_id, enabled, priority);

-- delivery ----------------------------------------------------------------------------------

CREATE TABLE delivery_jobs (
    job_id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id           text NOT NULL,
    event_id            uuid NOT NULL,
    alert_id            uuid NOT NULL,
    integration_id      uuid NOT NULL,
    route_id            uuid,
    state               text NOT NULL DEFAULT 'PENDING'
                        CHECK (state IN ('PENDING', 'IN_PROGRESS', 'DELIVERED', 'FAILED')),
    attempts            integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at     timestamptz NOT NULL DEFAULT now(),
    lease_expires_at    timestamptz,
    leased_by           text,
    last_error          text,
    delivery_id         uuid NOT NULL DEFAULT gen_random_uuid() UNIQUE,  -- sent with every attempt: receivers dedupe on it
    completed_at        timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (event_id, integration_id),
    UNIQUE (tenant_id, job_id),
    FOREIGN KEY (tenant_id, event_id) REFERENCES alert_events (tenant_id, event_id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, alert_id) REFERENCES alerts (tenant_id, alert_id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, integration_id) REFERENCES integrations (tenant_id, integration_id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, route_id) REFERENCES integration_routes (tenant_id, route_id) ON DELETE SET NULL (route_id)
);
CREATE INDEX delivery_jobs_due_idx ON delivery_jobs (state, next_attempt_at);
CREATE INDEX delivery_jobs_lease_idx ON delivery_jobs (lease_expires_at) WHERE state = 'IN_PROGRESS';
CREATE INDEX delivery_jobs_tenant_idx ON delivery_jobs (tenant_id, created_at DESC);

CREATE TABLE delivery_attempts (
    attempt_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id    text NOT NULL,
    job_id       uuid NOT NULL,
    attempt_no   integer NOT NULL CHECK (attempt_no >= 1),
    started_at   timestamptz NOT NULL DEFAULT now(),
    duration_ms  integer CHECK (duration_ms >= 0),
    outcome      text NOT NULL CHECK (outcome IN ('success', 'retry', 'failed')),
    status_code  integer,
    error        text,
    UNIQUE (job_id, attempt_no),
    FOREIGN KEY (tenant_id, job_id) REFERENCES delivery_jobs (tenant_id, job_id) ON DELETE CASCADE
);
CREATE INDEX delivery_attempts_tenant_idx ON delivery_attempts (tenant_id, started_at DESC);

-- quarantine: rejected device messages ------------------------------------------------------

-- tenant_id is NULL when the message named no known tenant: such rows are visible to workers
-- and operators only (the customer policy never matches NULL). No FK: rejects may name anything.
CREATE TABLE quarantine_events (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id        text,
    device_id        text,
    received_at      timestamptz NOT NULL DEFAULT now(),
    source           text NOT NULL CHECK (source IN ('mqtt', 'http')),
    reason           text NOT NULL,  -- a reason code, e.g. bad_token, invalid_payload, rate_limited
    topic            text,
    payload_excerpt  text  -- DEV only: PULSE_MODE=PROD stores no payload of rejected messages
);
CREATE INDEX quarantine_events_received_idx ON quarantine_events (received_at);
CREATE INDEX quarantine_events_tenant_idx ON quarantine_events (tenant_id, received_at DESC);

-- per-minute reject counts (kept in PROD too); tenant_id NULL = unknown tenant, counted as one
CREATE TABLE quarantine_counters (
    tenant_id  text,
    minute     timestamptz NOT NULL,
    reason     text NOT NULL,
    count      bigint NOT NULL DEFAULT 0 CHECK (count >= 0),
    CONSTRAINT quarantine_counters_key UNIQUE NULLS NOT DISTINCT (tenant_id, minute, reason)
);
CREATE INDEX quarantine_counters_minute_idx ON quarantine_counters (minute);

-- operator audit log (not tenant-owned) -----------------------------------------------------

CREATE TABLE operator_audit_log (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at                timestamptz NOT NULL DEFAULT now(),
    actor             text NOT NULL,
    action            text NOT NULL,
    target_tenant_id  text,  -- no FK: the log outlives tenants
    detail            jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX operator_audit_log_at_idx ON operator_audit_log (at DESC);
CREATE INDEX operator_audit_log_target_idx ON operator_audit_log (target_tenant_id, at DESC);

-- settings ----------------------------------------------------------------------------------

-- tenant_id NULL: the global default of `key`; a tenant row overrides it for that tenant
CREATE TABLE settings (
    tenant_id   text REFERENCES tenants (tenant_id),
    key         text NOT NULL CHECK (key <> ''),
    value       jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT settings_key UNIQUE NULLS NOT DISTINCT (tenant_id, key)
);

-- updated_at triggers -----------------------------------------------------------------------

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['tenants', 'devices', 'device_state', 'alert_rules', 'alerts', 'integrations',
                             'integration_routes', 'delivery_jobs', 'settings'] LOOP
        EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE ON %I FOR EACH ROW EXECUTE FUNCTION pulse_touch_updated_at()',
                       t || '_touch_updated_at', t);
    END LOOP;
END
$$;

-- row level security ------------------------------------------------------------------------

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['tenants', 'devices', 'device_token_history', 'device_state', 'alert_rules', 'alerts',
                             'alert_events', 'integrations', 'integration_routes', 'delivery_jobs',
                             'delivery_attempts', 'quarantine_events', 'quarantine_counters'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format($p$CREATE POLICY tenant_isolation ON %I TO pulse_app
                           USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), ''))
                           WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), ''))$p$, t);
        EXECUTE format('CREATE POLICY operator_read ON %I FOR SELECT TO pulse_operator USING (true)', t);
        EXECUTE format('CREATE POLICY worker_all ON %I TO pulse_worker USING (true) WITH CHECK (true)', t);
    END LOOP;
END
$$;

-- settings: the customer reads its own rows and the global defaults, and writes only its own
ALTER TABLE settings ENABLE ROW LEVEL SECURITY;
ALTER TABLE settings FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON settings TO pulse_app
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), ''))
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), ''));
CREATE POLICY tenant_read_global ON settings FOR SELECT TO pulse_app  -- only once a tenant is set
    USING (tenant_id IS NULL AND NULLIF(current_setting('app.tenant_id', true), '') IS NOT NULL);
CREATE POLICY operator_read ON settings FOR SELECT TO pulse_operator USING (true);
CREATE POLICY worker_all ON settings TO pulse_worker USING (true) WITH CHECK (true);

-- grants ------------------------------------------------------------------------------------

-- pulse_app: the customer (UI, JSON API; the admin API acting for one tenant), bound by RLS
GRANT SELECT ON tenants, device_state, delivery_jobs, delivery_attempts, quarantine_events, quarantine_counters
    TO pulse_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON devices, alert_rules, integrations, integration_routes, settings
    TO pulse_app;
GRANT SELECT, INSERT, UPDATE ON device_token_history TO pulse_app;  -- provisioning, rotation, revocation
GRANT SELECT ON alerts TO pulse_app;
GRANT UPDATE (status, acknowledged_by, acknowledged_at, resolved_at, resolved_by) ON alerts TO pulse_app;
GRANT SELECT, INSERT ON alert_events TO pulse_app;  -- an acknowledgement or manual resolve is an event

-- pulse_operator: cross-tenant reads (never integrations.secrets); writes only its audit log
GRANT SELECT ON tenants, devices, device_token_history, device_state, alert_rules, alerts, alert_events,
    integration_routes, delivery_jobs, delivery_attempts, quarantine_events, quarantine_counters, settings,
    operator_audit_log
    TO pulse_operator;
GRANT SELECT (integration_id, tenant_id, name, type, enabled, config, created_at, updated_at) ON integrations
    TO pulse_operator;
GRANT INSERT ON operator_audit_log TO pulse_operator;

-- pulse_worker: ingest, evaluator, dispatcher, delivery worker, ptp-consumer, ca-gateway
GRANT SELECT ON tenants, alert_rules, integrations, integration_routes, settings TO pulse_worker;
GRANT SELECT, UPDATE ON devices TO pulse_worker;  -- ingest: activation, last firmware
GRANT SELECT, INSERT, UPDATE ON device_token_history TO pulse_worker;  -- ingest: activation issues a token
GRANT SELECT, INSERT, UPDATE ON device_state, alerts, delivery_jobs TO pulse_worker;
GRANT SELECT, INSERT ON alert_events, delivery_attempts TO pulse_worker;
GRANT INSERT ON quarantine_events TO pulse_worker;
GRANT SELECT, INSERT, UPDATE ON quarantine_counters TO pulse_worker;  -- upsert reads the old count

-- every tenant-owned table must have forced row level security -------------------------------

DO $$
DECLARE
    missing text;
BEGIN
    SELECT string_agg(c.relname, ', ' ORDER BY c.relname) INTO missing
      FROM pg_class c
      JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
       AND EXISTS (SELECT 1 FROM pg_attribute a
                    WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)
       AND NOT (c.relrowsecurity AND c.relforcerowsecurity);
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'tenant tables without forced row level security: %', missing;
    END IF;
END
$$;
