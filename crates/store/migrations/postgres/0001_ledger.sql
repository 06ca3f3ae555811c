-- guoku ledger schema, PostgreSQL. Kept in step with ../sqlite/0001_ledger.sql.
-- u128 ids: 16-byte big-endian BYTEA (memcmp order = numeric order).
-- u128 balances and amounts: two BIGINT halves, hi = bits 127..64, lo = bits 63..0, each
-- the two's-complement reading of its 64 bits (lossless; sums are done exactly in 32-bit limbs).
-- u64 times: the i64 with the same bits; expires_key is the order-preserving key (bits ^ 2^63).
-- Accounts also get a small integer `num` (assigned in creation order from
-- ledger_clock.next_account_num); each transfer stores the nums of its two accounts next to
-- their ids, and the history indexes are keyed by num: an 8-byte integer instead of a 16-byte
-- id in the two busiest indexes (smaller entries, fewer pages dirtied per batch).

CREATE TABLE ledger_clock (
    id       SMALLINT PRIMARY KEY CHECK (id = 1),
    now      BIGINT  NOT NULL,
    next_seq BIGINT  NOT NULL,
    next_account_num BIGINT NOT NULL
);
INSERT INTO ledger_clock (id, now, next_seq, next_account_num) VALUES (1, 0, 1, 1);

CREATE TABLE accounts (
    id                 BYTEA    NOT NULL PRIMARY KEY,
    user_data          BYTEA    NOT NULL,
    ledger             BIGINT  NOT NULL,
    code               BIGINT  NOT NULL,
    flags              BIGINT  NOT NULL,
    debits_pending_hi  BIGINT  NOT NULL,
    debits_pending_lo  BIGINT  NOT NULL,
    debits_posted_hi   BIGINT  NOT NULL,
    debits_posted_lo   BIGINT  NOT NULL,
    credits_pending_hi BIGINT  NOT NULL,
    credits_pending_lo BIGINT  NOT NULL,
    credits_posted_hi  BIGINT  NOT NULL,
    credits_posted_lo  BIGINT  NOT NULL,
    num                BIGINT  NOT NULL UNIQUE
);

CREATE TABLE transfers (
    -- No index on seq, unlike SQLite where it is the rowid and costs nothing: it serves no
    -- query (history pages through the (num, seq) indexes below, a full read sorts) and it
    -- is unique by construction (assigned under the clock row lock from next_seq, which is
    -- updated in the same transaction). An index would cost ~20 bytes and one more B-tree
    -- insert per transfer. The id is the primary key instead (SQLite: UNIQUE).
    seq               BIGINT  NOT NULL,
    id                BYTEA    NOT NULL PRIMARY KEY,
    debit_account_id  BYTEA    NOT NULL,
    credit_account_id BYTEA    NOT NULL,
    amount_hi         BIGINT  NOT NULL,
    amount_lo         BIGINT  NOT NULL,
    pending_id        BYTEA,
    user_data         BYTEA,
    timeout           BIGINT  NOT NULL,
    ledger            BIGINT  NOT NULL,
    code              BIGINT  NOT NULL,
    flags             BIGINT  NOT NULL,
    timestamp         BIGINT  NOT NULL,
    status            BIGINT  NOT NULL,
    expires_key       BIGINT,
    debit_num         BIGINT  NOT NULL,
    credit_num        BIGINT  NOT NULL
);
CREATE INDEX transfers_by_debit ON transfers (debit_num, seq);
CREATE INDEX transfers_by_credit ON transfers (credit_num, seq);
CREATE INDEX transfers_expiring ON transfers (expires_key) WHERE expires_key IS NOT NULL;

CREATE TABLE daily_totals (
    ledger    BIGINT  NOT NULL,
    day       BIGINT  NOT NULL,
    code      BIGINT  NOT NULL,
    transfers BIGINT  NOT NULL,
    amount_hi BIGINT  NOT NULL,
    amount_lo BIGINT  NOT NULL,
    PRIMARY KEY (ledger, day, code)
);

CREATE TABLE book_accounts (
    account_id BYTEA    NOT NULL PRIMARY KEY,
    kind       TEXT    NOT NULL,
    adm_div    TEXT    NOT NULL,
    year       BIGINT  NOT NULL,
    unit       TEXT    NOT NULL,
    func_class TEXT    NOT NULL,
    eco_class  TEXT    NOT NULL,
    fund_type  TEXT    NOT NULL,
    pay_type   TEXT    NOT NULL,
    month      BIGINT  NOT NULL,
    bank       TEXT    NOT NULL
);
CREATE INDEX book_accounts_by_level
    ON book_accounts (adm_div, year, kind, unit, func_class, month);
