-- guoku payment drafts, SQLite. Kept in step with ../postgres/0004_drafts.sql.
-- A draft is a voucher a maker (经办) made and nobody has issued yet: it waits for its
-- checker (审核) and its signer (签章), who are other people; only the signer's step stamps
-- and issues it into the voucher library. Who took which step, and when, is kept in
-- access_steps (0003); a draft keeps its own state, the unstamped voucher and what issuing
-- it needs, and an append-only log of its state changes.
-- Times are the caller's `now` in unix seconds (the store never reads the clock).

-- state: made -> checked -> signed -> issued, or rejected (by a checker or signer, before
-- signing), or failed (the issuing step was refused, e.g. the plan quota was short).
-- up1 and up2 are the divisions above adm_div_code in its AdmDivCode chain (NULL when
-- there is none), so a list can keep to the divisions a user sees.
-- body is the unstamped voucher as the node wrote it; content_sha256 the SHA-256 of its
-- canonical bytes. receiver is the organisation it goes to when issued; plan_month the
-- plan month a direct payment draws on.
CREATE TABLE drafts (
    id             INTEGER PRIMARY KEY,
    adm_div_code   TEXT    NOT NULL,
    up1            TEXT,
    up2            TEXT,
    st_year        TEXT    NOT NULL,
    vt_code        TEXT    NOT NULL,
    voucher_no     TEXT    NOT NULL,
    state          TEXT    NOT NULL
        CHECK (state IN ('made', 'checked', 'signed', 'issued', 'rejected', 'failed')),
    receiver       TEXT    NOT NULL,
    plan_month     INTEGER CHECK (plan_month BETWEEN 1 AND 12),
    amount_fen     INTEGER,
    maker_id       INTEGER NOT NULL,
    body           BLOB    NOT NULL,
    content_sha256 BLOB    NOT NULL CHECK (length(content_sha256) = 32),
    reason         TEXT,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    UNIQUE (adm_div_code, st_year, vt_code, voucher_no)
);
CREATE INDEX drafts_state ON drafts (state, id);

-- Append-only: every state change of a draft, who caused it and why, written in the
-- transaction that changed it (DESIGN invariant 7). from_state is NULL when it was made.
CREATE TABLE draft_events (
    id         INTEGER PRIMARY KEY,
    draft_id   INTEGER NOT NULL REFERENCES drafts (id),
    from_state TEXT,
    to_state   TEXT    NOT NULL,
    actor      TEXT    NOT NULL,
    reason     TEXT,
    at         INTEGER NOT NULL
);
CREATE INDEX draft_events_draft ON draft_events (draft_id, id);
CREATE TRIGGER draft_events_no_update BEFORE UPDATE ON draft_events
    BEGIN SELECT RAISE(ABORT, 'draft_events is append-only'); END;
CREATE TRIGGER draft_events_no_delete BEFORE DELETE ON draft_events
    BEGIN SELECT RAISE(ABORT, 'draft_events is append-only'); END;
