-- guoku voucher library (电子凭证库), SQLite. Kept in step with ../postgres/0002_library.sql.
-- One row per voucher leg this node holds: (AdmDivCode, StYear, VtCode, VoucherNo, leg) is
-- unique (leg 0 = the original, 1 = the receipt 回单, as VoucherFlag). `seq` is the arrival
-- order (read and list oldest first) and the small key events and the outbox refer to.
-- exchange: the standard's status code of the leg (lifecycle::Exchange::code: 13/14 not sent,
-- 0/6 not received, 1/7 received, ... 12 receipt received, -1 voided).
-- processing: the receiver's processing code (lifecycle::Processing::code); NULL while a
-- received voucher is unread, and always NULL on vouchers this node sent.
-- Times are the caller's `now` (the store never reads the clock).

CREATE TABLE library_vouchers (
    seq            INTEGER PRIMARY KEY,
    adm_div_code   TEXT    NOT NULL,
    st_year        TEXT    NOT NULL,
    vt_code        TEXT    NOT NULL,
    voucher_no     TEXT    NOT NULL,
    leg            INTEGER NOT NULL CHECK (leg IN (0, 1)),
    direction      TEXT    NOT NULL CHECK (direction IN ('sent', 'received')),
    sender         TEXT    NOT NULL,
    receiver       TEXT    NOT NULL,
    body           BLOB    NOT NULL,
    content_sha256 BLOB    NOT NULL CHECK (length(content_sha256) = 32),
    exchange       INTEGER NOT NULL,
    processing     INTEGER,
    reason         TEXT,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    UNIQUE (adm_div_code, st_year, vt_code, voucher_no, leg)
);
CREATE INDEX library_vouchers_unread ON library_vouchers (seq)
    WHERE direction = 'received' AND processing IS NULL;
CREATE INDEX library_vouchers_status ON library_vouchers (vt_code, leg, exchange, seq);

-- Append-only: every change of a voucher's state, written in the transaction of the change.
CREATE TABLE library_events (
    id              INTEGER PRIMARY KEY,
    voucher_seq     INTEGER NOT NULL REFERENCES library_vouchers (seq),
    actor           TEXT    NOT NULL,
    action          TEXT    NOT NULL,
    from_exchange   INTEGER,
    to_exchange     INTEGER NOT NULL,
    from_processing INTEGER,
    to_processing   INTEGER,
    reason          TEXT,
    at              INTEGER NOT NULL
);
CREATE INDEX library_events_voucher ON library_events (voucher_seq, id);
CREATE TRIGGER library_events_no_update BEFORE UPDATE ON library_events
    BEGIN SELECT RAISE(ABORT, 'library_events is append-only'); END;
CREATE TRIGGER library_events_no_delete BEFORE DELETE ON library_events
    BEGIN SELECT RAISE(ABORT, 'library_events is append-only'); END;

-- Sent vouchers the receiver's library has not taken yet.
CREATE TABLE library_outbox (
    voucher_seq INTEGER PRIMARY KEY REFERENCES library_vouchers (seq),
    destination TEXT    NOT NULL,
    attempts    INTEGER NOT NULL CHECK (attempts >= 0),
    next_at     INTEGER NOT NULL
);
CREATE INDEX library_outbox_due ON library_outbox (next_at, voucher_seq);
