-- Telemetry time series for the Postgres telemetry store (services/common/telemetry/postgres.py).
-- Runs as pulse_owner.
--
--   * telemetry is partitioned by RANGE (ts), one partition per UTC day, named telemetry_pYYYYMMDD,
--     plus telemetry_default for rows no day partition covers (far past or future device clocks):
--     nothing is ever refused for want of a partition.
--   * Day partitions are created by pulse_ensure_telemetry_partitions(first_day, days), a SECURITY
--     DEFINER function owned by pulse_owner that only pulse_worker may execute: the writer calls it
--     for the days it is about to write; workers get no DDL rights of their own. Rows that landed in
--     the default partition for a day are moved into that day's partition when it is created.
--   * UNIQUE (tenant_id, device_id, ts, obs_id) makes writes idempotent (INSERT ... ON CONFLICT DO
--     NOTHING); it includes ts because a unique index on a partitioned table must hold the key.
--   * Row level security as on every tenant table (see 0002_schema.sql), on the parent and also on
--     each partition. Nobody but the owner has a grant on a partition, so partitions are reached
--     only through the parent; their own policies are a second lock on the same door.
--   * Grants: customers (pulse_app, bound by RLS) and operators read; workers read and insert.
--     No UPDATE or DELETE for anyone: readings are immutable.

CREATE TABLE telemetry (
    tenant_id    text NOT NULL,
    device_id    text NOT NULL,
    site_id      text,
    kind         text NOT NULL CHECK (kind IN ('heartbeat', 'telemetry', 'event')),
    ts           timestamptz NOT NULL,
    received_at  timestamptz NOT NULL,
    obs_id       text NOT NULL,
    seq          bigint,
    metrics      jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(metrics) = 'object'),
    CONSTRAINT telemetry_obs_key UNIQUE (tenant_id, device_id, ts, obs_id)
) PARTITION BY RANGE (ts);

-- RLS and the three policies on one partition (or the parent); used by the functions below.
CREATE FUNCTION pulse_protect_telemetry_partition(part regclass) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', part);
    EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', part);
    EXECUTE format($p$CREATE POLICY tenant_isolation ON %s TO pulse_app
                       USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), ''))
                       WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), ''))$p$, part);
    EXECUTE format('CREATE POLICY operator_read ON %s FOR SELECT TO pulse_operator USING (true)', part);
    EXECUTE format('CREATE POLICY worker_all ON %s TO pulse_worker USING (true) WITH CHECK (true)', part);
END
$$;
REVOKE ALL ON FUNCTION pulse_protect_telemetry_partition(regclass) FROM PUBLIC;

SELECT pulse_protect_telemetry_partition('public.telemetry');

CREATE TABLE telemetry_default PARTITION OF telemetry DEFAULT;
SELECT pulse_protect_telemetry_partition('public.telemetry_default');

-- Create the missing day partitions of [first_day, first_day + days); returns how many were created.
CREATE FUNCTION pulse_ensure_telemetry_partitions(first_day date, days integer) RETURNS integer
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
    SET TimeZone = 'UTC'
    SET lock_timeout = '10s'
AS $$
DECLARE
    d date;
    part text;
    lo timestamptz;
    hi timestamptz;
    created integer := 0;
BEGIN
    IF first_day IS NULL OR days IS NULL OR days < 1 OR days > 366 THEN
        RAISE EXCEPTION 'pulse_ensure_telemetry_partitions: days must be 1..366, got %', days
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF first_day < date '1900-01-01' OR first_day > date '9999-01-01' THEN
        RAISE EXCEPTION 'pulse_ensure_telemetry_partitions: first_day % is out of range', first_day
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- one creator at a time; the others find the partition made when they get the lock
    PERFORM pg_advisory_xact_lock(hashtext('pulse_ensure_telemetry_partitions'));
    FOR i IN 0 .. days - 1 LOOP
        d := first_day + i;
        part := 'telemetry_p' || to_char(d, 'YYYYMMDD');
        CONTINUE WHEN to_regclass('public.' || part) IS NOT NULL;
        lo := d::timestamp AT TIME ZONE 'UTC';
        hi := (d + 1)::timestamp AT TIME ZONE 'UTC';
        EXECUTE format('CREATE TABLE public.%I (LIKE public.telemetry INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                       part);
        -- Rows already in the default partition for this day move into the new one (ATTACH would
        -- refuse otherwise). The owner is bound by forced RLS and has no policy, so it lifts the
        -- force on the default partition for this transaction only; nobody else sees the change.
        ALTER TABLE public.telemetry_default NO FORCE ROW LEVEL SECURITY;
        EXECUTE format('WITH moved AS (DELETE FROM public.telemetry_default WHERE ts >= $1 AND ts < $2 RETURNING *)'
                       ' INSERT INTO public.%I SELECT * FROM moved', part)
            USING lo, hi;
        ALTER TABLE public.telemetry_default FORCE ROW LEVEL SECURITY;
        EXECUTE format('ALTER TABLE public.telemetry ATTACH PARTITION public.%I FOR VALUES FROM (%L) TO (%L)',
                       part, lo, hi);
        PERFORM pulse_protect_telemetry_partition(format('public.%I', part)::regclass);
        created := created + 1;
    END LOOP;
    RETURN created;
END
$$;
REVOKE ALL ON FUNCTION pulse_ensure_telemetry_partitions(date, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pulse_ensure_telemetry_partitions(date, integer) TO pulse_worker;

GRANT SELECT ON telemetry TO pulse_app, pulse_operator;
GRANT SELECT, INSERT ON telemetry TO pulse_worker;

-- every tenant-owned table (partitions included) must have forced row level security
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
