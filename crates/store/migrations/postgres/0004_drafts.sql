-- guoku payment drafts, PostgreSQL. Kept in step with ../sqlite/0004_drafts.sql, which
-- explains the tables.

CREATE TABLE drafts (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    adm_div_code   TEXT   NOT NULL,
    up1            TEXT,
    up2            TEXT,
    st_year        TEXT   NOT NULL,
    vt_code        TEXT   NOT NULL,
    voucher_no     TEXT   NOT NULL,
    state          TEXT   NOT NULL
        CHECK (state IN ('made', 'checked', 'signed', 'issued', 'rejected', 'failed')),
    receiver       TEXT   NOT NULL,
    plan_month     BIGINT CHECK (plan_month BETWEEN 1 AND 12),
    amount_fen     BIGINT,
    maker_id       BIGINT NOT NULL,
    body           BYTEA  NOT NULL,
    content_sha256 BYTEA  NOT NULL CHECK (length(content_sha256) = 32),
    reason         TEXT,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    UNIQUE (adm_div_code, st_year, vt_code, voucher_no)
);
CREATE INDEX drafts_state ON drafts (state, id);

CREATE TABLE draft_events (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    draft_id   BIGINT NOT NULL REFERENCES drafts (id),
    from_state TEXT,
    to_state   TEXT   NOT NULL,
    actor      TEXT   NOT NULL,
    reason     TEXT,
    at         BIGINT NOT NULL
);
CREATE INDEX draft_events_draft ON draft_events (draft_id, id);

CREATE FUNCTION draft_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END $$;
CREATE TRIGGER draft_events_append_only BEFORE UPDATE OR DELETE ON draft_events
    FOR EACH ROW EXECUTE FUNCTION draft_events_append_only();
