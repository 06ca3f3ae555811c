-- guoku access layer, SQLite. Kept in step with ../postgres/0003_access.sql.
-- Divisions (行政区划) of the deployment with their business windows, the agent banks and
-- budget units of each division, users with their posts (岗位) and divisions, the steps
-- (经办/审核/复核/签章) taken on each voucher and who took them, an append-only log of
-- administrative actions, and the idempotency keys of the HTTP API.
-- Posts and steps are stored as their codes (node::access::Post::code, Step::code): the
-- policy lives in code, the store keeps what was granted and done.
-- Times are the caller's `now` in unix seconds (the store never reads the clock).
-- SQLite connections run with foreign_keys=OFF, so references are checked by the store in
-- the writing transaction; they are declared for the reader.

-- A division and its business window: open_min..close_min minutes after local midnight
-- (local = UTC + utc_offset_min) on the days of the `days` mask (bit 0 = Monday ... bit 6 =
-- Sunday). `parent` is a division above it in its AdmDivCode chain, NULL for the top.
CREATE TABLE access_divisions (
    code           TEXT    PRIMARY KEY,
    parent         TEXT    REFERENCES access_divisions (code),
    name           TEXT    NOT NULL,
    open_min       INTEGER NOT NULL CHECK (open_min BETWEEN 0 AND 1439),
    close_min      INTEGER NOT NULL CHECK (close_min BETWEEN 1 AND 1440 AND close_min > open_min),
    days           INTEGER NOT NULL CHECK (days BETWEEN 1 AND 127),
    utc_offset_min INTEGER NOT NULL CHECK (utc_offset_min BETWEEN -720 AND 840),
    updated_at     INTEGER NOT NULL
);

-- Budget units (预算单位) of a division, by AgencyCode.
CREATE TABLE access_budget_units (
    adm_div    TEXT    NOT NULL REFERENCES access_divisions (code),
    code       TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    active     INTEGER NOT NULL CHECK (active IN (0, 1)),
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (adm_div, code)
);

-- Agent banks (代理银行) serving a division, by bank number (行号).
CREATE TABLE access_banks (
    adm_div    TEXT    NOT NULL REFERENCES access_divisions (code),
    bank_no    TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (adm_div, bank_no)
);

-- Users. password_hash is an Argon2id PHC string. failed_attempts counts consecutive wrong
-- passwords since the last success or lock; locked_until is NULL when not locked.
CREATE TABLE access_users (
    id              INTEGER PRIMARY KEY,
    login           TEXT    NOT NULL UNIQUE,
    display_name    TEXT    NOT NULL,
    password_hash   TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('active', 'disabled')),
    failed_attempts INTEGER NOT NULL CHECK (failed_attempts >= 0),
    locked_until    INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);

CREATE TABLE access_user_posts (
    user_id INTEGER NOT NULL REFERENCES access_users (id),
    post    TEXT    NOT NULL,
    PRIMARY KEY (user_id, post)
);

CREATE TABLE access_user_divisions (
    user_id INTEGER NOT NULL REFERENCES access_users (id),
    adm_div TEXT    NOT NULL REFERENCES access_divisions (code),
    PRIMARY KEY (user_id, adm_div)
);

-- One row per voucher that has steps; the row a step's transaction locks.
CREATE TABLE access_approvals (
    id           INTEGER PRIMARY KEY,
    adm_div_code TEXT    NOT NULL,
    st_year      TEXT    NOT NULL,
    vt_code      TEXT    NOT NULL,
    voucher_no   TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    UNIQUE (adm_div_code, st_year, vt_code, voucher_no)
);

-- Append-only: who took which step on a voucher, when. Each step once per voucher.
CREATE TABLE access_steps (
    seq         INTEGER PRIMARY KEY,
    approval_id INTEGER NOT NULL REFERENCES access_approvals (id),
    step        TEXT    NOT NULL,
    user_id     INTEGER NOT NULL REFERENCES access_users (id),
    at          INTEGER NOT NULL,
    UNIQUE (approval_id, step)
);
CREATE INDEX access_steps_user ON access_steps (user_id, seq);
CREATE TRIGGER access_steps_no_update BEFORE UPDATE ON access_steps
    BEGIN SELECT RAISE(ABORT, 'access_steps is append-only'); END;
CREATE TRIGGER access_steps_no_delete BEFORE DELETE ON access_steps
    BEGIN SELECT RAISE(ABORT, 'access_steps is append-only'); END;

-- Append-only: every administrative change (DESIGN invariant 7), written in its transaction.
CREATE TABLE access_events (
    id      INTEGER PRIMARY KEY,
    actor   TEXT    NOT NULL,
    action  TEXT    NOT NULL,
    subject TEXT    NOT NULL,
    detail  TEXT,
    at      INTEGER NOT NULL
);
CREATE TRIGGER access_events_no_update BEFORE UPDATE ON access_events
    BEGIN SELECT RAISE(ABORT, 'access_events is append-only'); END;
CREATE TRIGGER access_events_no_delete BEFORE DELETE ON access_events
    BEGIN SELECT RAISE(ABORT, 'access_events is append-only'); END;

-- Idempotency keys of the HTTP API, per user. While the first request runs, status is NULL
-- and lease_until bounds how long a repeat is told "in progress"; `attempt` grows each time
-- a request proceeds under the key, so only the latest one may complete it.
CREATE TABLE idempotency_keys (
    user_id        INTEGER NOT NULL,
    key            TEXT    NOT NULL,
    request_sha256 BLOB    NOT NULL CHECK (length(request_sha256) = 32),
    attempt        INTEGER NOT NULL CHECK (attempt >= 1),
    status         INTEGER CHECK (status BETWEEN 100 AND 599),
    body           BLOB,
    created_at     INTEGER NOT NULL,
    lease_until    INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    PRIMARY KEY (user_id, key)
);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);
