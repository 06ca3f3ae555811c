-- guoku: a voucher leg's envelope body in a table of its own, written once with the leg.
-- A body is several KiB (stamps, seals and their certificates; a salary batch far more),
-- so beside the state it filled overflow pages that SQLite wrote again on every state
-- change (a record that changes size is rewritten whole): a payment's dozen steps each
-- wrote its bodies again. Now a step writes the small row only. Kept in step with
-- ../postgres/0010_bodies.sql.
CREATE TABLE library_bodies (
    voucher_seq INTEGER PRIMARY KEY REFERENCES library_vouchers (seq),
    body        BLOB    NOT NULL
);
INSERT INTO library_bodies (voucher_seq, body) SELECT seq, body FROM library_vouchers;
ALTER TABLE library_vouchers DROP COLUMN body;
