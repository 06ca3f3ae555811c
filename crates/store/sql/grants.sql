-- guoku on PostgreSQL with two roles (docs/audit.md):
--
--   * the owner role (:owner) owns the schema and every table in it, runs the migrations
--     (the first `guoku serve` with its URL, or any store opened with it) and archives old
--     audit leaves (`guoku audit archive`);
--   * the application's role (:app), which `guoku serve` runs with, may read and write the
--     business tables but never update or delete an audit row, and runs no DDL.
--
-- Run it as the owner (or a superuser) after every migration, with psql:
--
--   psql "postgres://guoku_owner@db/guoku" \
--        -v owner=guoku_owner -v app=guoku_app -v schema=guoku -f crates/store/sql/grants.sql
--
-- It is idempotent: it first takes back everything the application's role had in the
-- schema, then grants what it needs, in one transaction. A table a later migration adds is
-- closed to the application's role until this runs again (the application then fails
-- loudly with "permission denied"; it never gets more than this script gives).

BEGIN;

-- The schema: the owner's; the application may use it but create nothing in it.
ALTER SCHEMA :"schema" OWNER TO :"owner";
REVOKE ALL ON SCHEMA :"schema" FROM PUBLIC;
REVOKE ALL ON SCHEMA :"schema" FROM :"app";
GRANT USAGE ON SCHEMA :"schema" TO :"app";

-- Ordinary DML on every table (never TRUNCATE, REFERENCES or TRIGGER) ...
REVOKE ALL ON ALL TABLES IN SCHEMA :"schema" FROM :"app";
REVOKE ALL ON ALL TABLES IN SCHEMA :"schema" FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA :"schema" TO :"app";
REVOKE ALL ON ALL SEQUENCES IN SCHEMA :"schema" FROM :"app";
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA :"schema" TO :"app";

-- ... except where the record must stay as written.
-- The migrations applied: read only (the owner migrates).
REVOKE INSERT, UPDATE, DELETE ON :"schema".schema_migrations FROM :"app";
-- A voucher leg's envelope body, byte for byte as signed: written once with the leg.
-- SELECT, INSERT only.
REVOKE UPDATE, DELETE ON :"schema".library_bodies FROM :"app";
-- The audit log: one row per leaf, appended in the transaction of the change it records.
-- SELECT, INSERT only: no UPDATE, no DELETE (the triggers refuse them too, for every role).
REVOKE UPDATE, DELETE ON :"schema".audit_log FROM :"app";
-- The next leaf position: counted up by one in each appending transaction. SELECT, INSERT,
-- UPDATE; no DELETE.
REVOKE DELETE ON :"schema".audit_counter FROM :"app";
-- This node's signed tree heads: SELECT, INSERT only.
REVOKE UPDATE, DELETE ON :"schema".audit_heads FROM :"app";
-- Archive points: read only (archiving, which deletes rows below a new point, is the
-- owner's).
REVOKE INSERT, UPDATE, DELETE ON :"schema".audit_archived FROM :"app";
-- The other parties' heads: SELECT, INSERT, and UPDATE of what checking them found; no
-- DELETE.
REVOKE DELETE ON :"schema".audit_peer_heads FROM :"app";
-- Alarms: SELECT, INSERT only.
REVOKE UPDATE, DELETE ON :"schema".audit_alarms FROM :"app";

COMMIT;
