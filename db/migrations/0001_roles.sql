-- pulse:as-admin
-- Roles of the Pulse database. Runs as the migrating user (a superuser, or a role with
-- CREATEROLE that is a member of pulse_owner). Every later migration runs as pulse_owner.
--
--   pulse_owner     owns the schema objects; no login; subject to forced RLS like everyone
--   pulse_app       customer-facing; RLS binds every row to current_setting('app.tenant_id')
--   pulse_operator  cross-tenant SELECT for operators; every use is written to operator_audit_log
--   pulse_worker    internal cross-tenant workers; NOT a superuser, no BYPASSRLS, only its grants
--   pulse_service   the services' login role: no rights of its own (NOINHERIT); each
--                   transaction switches to app, worker or operator with SET LOCAL ROLE

DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['pulse_owner', 'pulse_app', 'pulse_operator', 'pulse_worker'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE', r);
        END IF;
    END LOOP;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pulse_service') THEN
        CREATE ROLE pulse_service LOGIN NOINHERIT NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
END
$$;

GRANT pulse_app, pulse_operator, pulse_worker TO pulse_service;
GRANT pulse_owner TO CURRENT_USER;

-- The schema belongs to the owner; nobody else may create objects in it.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE, CREATE ON SCHEMA public TO pulse_owner;
GRANT USAGE ON SCHEMA public TO pulse_app, pulse_operator, pulse_worker;
