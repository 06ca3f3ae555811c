-- guoku: finding what a failed step left read (已读取, processing 10) without scanning the
-- library (Library::read_again). Kept in step with ../sqlite/0006_read_again.sql.
CREATE INDEX library_vouchers_read ON library_vouchers (seq)
    WHERE direction = 'received' AND processing = 10;
