-- guoku: a voucher leg's envelope body in a table of its own, written once with the leg.
-- Kept in step with ../sqlite/0010_bodies.sql, which says why.
CREATE TABLE library_bodies (
    voucher_seq BIGINT PRIMARY KEY REFERENCES library_vouchers (seq),
    body        BYTEA  NOT NULL
);
INSERT INTO library_bodies (voucher_seq, body) SELECT seq, body FROM library_vouchers;
ALTER TABLE library_vouchers DROP COLUMN body;
