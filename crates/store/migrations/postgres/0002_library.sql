-- guoku voucher library (电子凭证库), PostgreSQL. Kept in step with ../sqlite/0002_library.sql,
-- which explains the columns.

CREATE TABLE library_vouchers (
    seq            BIGINT   GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    adm_div_code   TEXT     NOT NULL,
    st_year        TEXT     NOT NULL,
    vt_code        TEXT     NOT NULL,
    voucher_no     TEXT     NOT NULL,
    leg            SMALLINT NOT NULL CHECK (leg IN (0, 1)),
    direction      TEXT     NOT NULL CHECK (direction IN ('sent', 'received')),
    sender         TEXT     NOT NULL,
    receiver       TEXT     NOT NULL,
    body           BYTEA    NOT NULL,
    content_sha256 BYTEA    NOT NULL CHECK (length(content_sha256) = 32),
    exchange       SMALLINT NOT NULL,
    processing     SMALLINT,
    reason         TEXT,
    created_at     BIGINT   NOT NULL,
    updated_at     BIGINT   NOT NULL,
    UNIQUE (adm_div_code, st_year, vt_code, voucher_no, leg)
);
CREATE INDEX library_vouchers_unread ON library_vouchers (seq)
    WHERE direction = 'received' AND processing IS NULL;
CREATE INDEX library_vouchers_status ON library_vouchers (vt_code, leg, exchange, seq);

CREATE TABLE library_events (
    id              BIGINT   GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    voucher_seq     BIGINT   NOT NULL REFERENCES library_vouchers (seq),
    actor           TEXT     NOT NULL,
    action          TEXT     NOT NULL,
    from_exchange   SMALLINT,
    to_exchange     SMALLINT NOT NULL,
    from_processing SMALLINT,
    to_processing   SMALLINT,
    reason          TEXT,
    at              BIGINT   NOT NULL
);
CREATE INDEX library_events_voucher ON library_events (voucher_seq, id);
CREATE FUNCTION library_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'library_events is append-only';
END $$;
CREATE TRIGGER library_events_append_only BEFORE UPDATE OR DELETE ON library_events
    FOR EACH ROW EXECUTE FUNCTION library_events_append_only();

CREATE TABLE library_outbox (
    voucher_seq BIGINT   PRIMARY KEY REFERENCES library_vouchers (seq),
    destination TEXT     NOT NULL,
    attempts    INTEGER  NOT NULL CHECK (attempts >= 0),
    next_at     BIGINT   NOT NULL
);
CREATE INDEX library_outbox_due ON library_outbox (next_at, voucher_seq);
