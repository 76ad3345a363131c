-- pulse:as-admin
-- The admin API's role. Runs as the migrating user: creating a role and granting membership
-- need CREATEROLE; the policies and table grants are then made as pulse_owner, the tables' owner.
--
--   pulse_admin  NOLOGIN, not superuser, no BYPASSRLS. Used only by the ui container's admin API
--                (X-Admin-Key) through services.common.db.Database.admin(), which writes
--                operator_audit_log before anything else in the transaction. Cross-tenant, but
--                only on the tables provisioning needs:
--                  tenants               SELECT, INSERT, UPDATE   create, list, rename, disable
--                  devices               SELECT, INSERT, UPDATE   register, activation codes, revoke
--                  device_token_history  SELECT, INSERT, UPDATE   rotate (retire old, add new), revoke
--                  settings              SELECT, INSERT, UPDATE, DELETE   global and per-tenant settings
--                  operator_audit_log    INSERT                   its own audit rows; never reads or edits them
--                No DELETE on tenants, devices or token history: history is kept; a tenant is disabled.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pulse_admin') THEN
        CREATE ROLE pulse_admin NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
END
$$;

GRANT pulse_admin TO pulse_service;
GRANT USAGE ON SCHEMA public TO pulse_admin;

SET LOCAL ROLE pulse_owner;

-- Row level security is forced on these tables, so pulse_admin sees nothing without a policy.
CREATE POLICY admin_all ON tenants TO pulse_admin USING (true) WITH CHECK (true);
CREATE POLICY admin_all ON devices TO pulse_admin USING (true) WITH CHECK (true);
CREATE POLICY admin_all ON device_token_history TO pulse_admin USING (true) WITH CHECK (true);
CREATE POLICY admin_all ON settings TO pulse_admin USING (true) WITH CHECK (true);

GRANT SELECT, INSERT, UPDATE ON tenants, devices, device_token_history TO pulse_admin;
GRANT SELECT, INSERT, UPDATE, DELETE ON settings TO pulse_admin;
GRANT INSERT ON operator_audit_log TO pulse_admin;

RESET ROLE;
