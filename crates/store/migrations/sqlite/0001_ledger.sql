-- guoku ledger schema, SQLite. Kept in step with ../postgres/0001_ledger.sql.
-- u128 ids: 16-byte big-endian BLOBs (memcmp order = numeric order).
-- u128 balances and amounts: two INTEGER halves, hi = bits 127..64, lo = bits 63..0, each
-- the two's-complement reading of its 64 bits (lossless; sums are done exactly in 32-bit limbs).
-- u64 times: the i64 with the same bits; expires_key is the order-preserving key (bits ^ 2^63).
-- Accounts also get a small integer `num` (assigned in creation order from
-- ledger_clock.next_account_num); each transfer stores the nums of its two accounts next to
-- their ids, and the history indexes are keyed by num: an 8-byte integer instead of a 16-byte
-- id in the two busiest indexes (smaller entries, fewer pages dirtied per batch).

CREATE TABLE ledger_clock (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    now      INTEGER NOT NULL,
    next_seq INTEGER NOT NULL,
    next_account_num INTEGER NOT NULL
);
INSERT INTO ledger_clock (id, now, next_seq, next_account_num) VALUES (1, 0, 1, 1);

CREATE TABLE accounts (
    id                 BLOB    NOT NULL PRIMARY KEY,
    user_data          BLOB    NOT NULL,
    ledger             INTEGER NOT NULL,
    code               INTEGER NOT NULL,
    flags              INTEGER NOT NULL,
    debits_pending_hi  INTEGER NOT NULL,
    debits_pending_lo  INTEGER NOT NULL,
    debits_posted_hi   INTEGER NOT NULL,
    debits_posted_lo   INTEGER NOT NULL,
    credits_pending_hi INTEGER NOT NULL,
    credits_pending_lo INTEGER NOT NULL,
    credits_posted_hi  INTEGER NOT NULL,
    credits_posted_lo  INTEGER NOT NULL,
    num                INTEGER NOT NULL UNIQUE
) WITHOUT ROWID;

CREATE TABLE transfers (
    seq               INTEGER PRIMARY KEY,
    id                BLOB    NOT NULL UNIQUE,
    debit_account_id  BLOB    NOT NULL,
    credit_account_id BLOB    NOT NULL,
    amount_hi         INTEGER NOT NULL,
    amount_lo         INTEGER NOT NULL,
    pending_id        BLOB,
    user_data         BLOB,
    timeout           INTEGER NOT NULL,
    ledger            INTEGER NOT NULL,
    code              INTEGER NOT NULL,
    flags             INTEGER NOT NULL,
    timestamp         INTEGER NOT NULL,
    status            INTEGER NOT NULL,
    expires_key       INTEGER,
    debit_num         INTEGER NOT NULL,
    credit_num        INTEGER NOT NULL
);
CREATE INDEX transfers_by_debit ON transfers (debit_num, seq);
CREATE INDEX transfers_by_credit ON transfers (credit_num, seq);
CREATE INDEX transfers_expiring ON transfers (expires_key) WHERE expires_key IS NOT NULL;

CREATE TABLE daily_totals (
    ledger    INTEGER NOT NULL,
    day       INTEGER NOT NULL,
    code      INTEGER NOT NULL,
    transfers INTEGER NOT NULL,
    amount_hi INTEGER NOT NULL,
    amount_lo INTEGER NOT NULL,
    PRIMARY KEY (ledger, day, code)
) WITHOUT ROWID;

CREATE TABLE book_accounts (
    account_id BLOB    NOT NULL PRIMARY KEY,
    kind       TEXT    NOT NULL,
    adm_div    TEXT    NOT NULL,
    year       INTEGER NOT NULL,
    unit       TEXT    NOT NULL,
    func_class TEXT    NOT NULL,
    eco_class  TEXT    NOT NULL,
    fund_type  TEXT    NOT NULL,
    pay_type   TEXT    NOT NULL,
    month      INTEGER NOT NULL,
    bank       TEXT    NOT NULL
) WITHOUT ROWID;
CREATE INDEX book_accounts_by_level
    ON book_accounts (adm_div, year, kind, unit, func_class, month);
