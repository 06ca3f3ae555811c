-- guoku access layer, PostgreSQL. Kept in step with ../sqlite/0003_access.sql, which
-- explains the tables.

CREATE TABLE access_divisions (
    code           TEXT     PRIMARY KEY,
    parent         TEXT     REFERENCES access_divisions (code),
    name           TEXT     NOT NULL,
    open_min       BIGINT   NOT NULL CHECK (open_min BETWEEN 0 AND 1439),
    close_min      BIGINT   NOT NULL CHECK (close_min BETWEEN 1 AND 1440 AND close_min > open_min),
    days           BIGINT   NOT NULL CHECK (days BETWEEN 1 AND 127),
    utc_offset_min BIGINT   NOT NULL CHECK (utc_offset_min BETWEEN -720 AND 840),
    updated_at     BIGINT   NOT NULL
);

CREATE TABLE access_budget_units (
    adm_div    TEXT    NOT NULL REFERENCES access_divisions (code),
    code       TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    active     BOOLEAN NOT NULL,
    updated_at BIGINT  NOT NULL,
    PRIMARY KEY (adm_div, code)
);

CREATE TABLE access_banks (
    adm_div    TEXT   NOT NULL REFERENCES access_divisions (code),
    bank_no    TEXT   NOT NULL,
    name       TEXT   NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (adm_div, bank_no)
);

CREATE TABLE access_users (
    id              BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    login           TEXT    NOT NULL UNIQUE,
    display_name    TEXT    NOT NULL,
    password_hash   TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('active', 'disabled')),
    failed_attempts BIGINT  NOT NULL CHECK (failed_attempts >= 0),
    locked_until    BIGINT,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL
);

CREATE TABLE access_user_posts (
    user_id BIGINT NOT NULL REFERENCES access_users (id),
    post    TEXT   NOT NULL,
    PRIMARY KEY (user_id, post)
);

CREATE TABLE access_user_divisions (
    user_id BIGINT NOT NULL REFERENCES access_users (id),
    adm_div TEXT   NOT NULL REFERENCES access_divisions (code),
    PRIMARY KEY (user_id, adm_div)
);

CREATE TABLE access_approvals (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    adm_div_code TEXT   NOT NULL,
    st_year      TEXT   NOT NULL,
    vt_code      TEXT   NOT NULL,
    voucher_no   TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    UNIQUE (adm_div_code, st_year, vt_code, voucher_no)
);

CREATE TABLE access_steps (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    approval_id BIGINT NOT NULL REFERENCES access_approvals (id),
    step        TEXT   NOT NULL,
    user_id     BIGINT NOT NULL REFERENCES access_users (id),
    at          BIGINT NOT NULL,
    UNIQUE (approval_id, step)
);
CREATE INDEX access_steps_user ON access_steps (user_id, seq);

CREATE TABLE access_events (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    actor   TEXT   NOT NULL,
    action  TEXT   NOT NULL,
    subject TEXT   NOT NULL,
    detail  TEXT,
    at      BIGINT NOT NULL
);

CREATE FUNCTION access_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END $$;
CREATE TRIGGER access_steps_append_only BEFORE UPDATE OR DELETE ON access_steps
    FOR EACH ROW EXECUTE FUNCTION access_append_only();
CREATE TRIGGER access_events_append_only BEFORE UPDATE OR DELETE ON access_events
    FOR EACH ROW EXECUTE FUNCTION access_append_only();

CREATE TABLE idempotency_keys (
    user_id        BIGINT  NOT NULL,
    key            TEXT    NOT NULL,
    request_sha256 BYTEA   NOT NULL CHECK (length(request_sha256) = 32),
    attempt        BIGINT  NOT NULL CHECK (attempt >= 1),
    status         BIGINT  CHECK (status BETWEEN 100 AND 599),
    body           BYTEA,
    created_at     BIGINT  NOT NULL,
    lease_until    BIGINT  NOT NULL,
    expires_at     BIGINT  NOT NULL,
    PRIMARY KEY (user_id, key)
);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);
