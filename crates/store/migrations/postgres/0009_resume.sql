-- guoku: what a process killed between two steps left behind, found without scanning the
-- library: received vouchers stopped on the normal processing path (Library::read_again)
-- and vouchers written but never sent (Library::unsent). Each index's WHERE is the query's
-- own, term for term, so both databases use it. Kept in step with ../sqlite/0009_resume.sql.
DROP INDEX library_vouchers_read;
CREATE INDEX library_vouchers_resume ON library_vouchers (seq)
    WHERE direction = 'received'
      AND (processing IN (10, 15, 17, 20, 40, 50) OR (leg = 0 AND processing IN (71, 73)));
CREATE INDEX library_vouchers_unsent ON library_vouchers (seq)
    WHERE direction = 'sent' AND ((leg = 0 AND exchange = 13) OR (leg = 1 AND exchange = 14));
