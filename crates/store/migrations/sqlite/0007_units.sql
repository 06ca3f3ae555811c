-- guoku: budget-unit users (预算单位) see and act for their own units only. Kept in step with
-- ../postgres/0007_units.sql.
-- A user with rows here is a unit's user: besides their divisions, only the vouchers and
-- drafts of these AgencyCodes are theirs. A user without rows (finance, bank, PBOC staff)
-- is scoped by division alone.
CREATE TABLE access_user_units (
    user_id     INTEGER NOT NULL REFERENCES access_users (id),
    agency_code TEXT    NOT NULL,
    PRIMARY KEY (user_id, agency_code)
);

-- The AgencyCode of a draft's voucher (NULL when it names none), so a unit's drafts list
-- without reading the others.
ALTER TABLE drafts ADD COLUMN agency_code TEXT;
CREATE INDEX drafts_agency ON drafts (agency_code, id) WHERE agency_code IS NOT NULL;
