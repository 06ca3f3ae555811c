//! Payment drafts on both backends: a draft made once per key (a repeat with other
//! content refused), states moving only along the table with one event per move and the
//! actor named, racing moves of which exactly one wins, lists kept to a user's divisions
//! along the AdmDivCode chain, and bad input refused with nothing written.

mod common;

use std::collections::BTreeSet;

use guoku_domain::AdmDivCode;
use guoku_store::Store;
use guoku_store::access::UserId;
use guoku_store::drafts::{DraftError, DraftFilter, DraftState, NewDraft};
use guoku_voucher::VoucherKey;

fn code(s: &str) -> AdmDivCode {
    s.parse().unwrap()
}

fn key(division: &str, no: &str) -> VoucherKey {
    VoucherKey {
        adm_div_code: division.into(),
        st_year: "2026".into(),
        vt_code: "5201".into(),
        voucher_no: no.into(),
    }
}

fn draft(division: &str, no: &str, body: &str) -> NewDraft {
    let mut sha = [0u8; 32];
    for (i, b) in body.bytes().enumerate() {
        sha[i % 32] ^= b.wrapping_add(u8::try_from(i % 251).unwrap());
    }
    NewDraft {
        key: key(division, no),
        receiver: "102551000015".into(),
        plan_month: Some(3),
        amount_fen: Some(123_456),
        maker: UserId(1),
        body: body.as_bytes().to_vec(),
        content_sha256: sha,
        agency_code: Some(format!("A{division}01")),
    }
}

fn filter(within: &[&str], state: Option<DraftState>) -> DraftFilter {
    DraftFilter {
        state,
        within: within.iter().map(|d| code(d)).collect(),
        units: Vec::new(),
        after: 0,
        limit: 100,
    }
}

async fn numbers(store: &Store, f: &DraftFilter) -> BTreeSet<String> {
    store
        .drafts()
        .list(f)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|d| d.key.voucher_no)
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

both_backends!(a_draft_is_made_once_per_key, |store| {
    let drafts = store.drafts();
    let made = drafts
        .make(draft("430102", "ZF1", "<Voucher>1</Voucher>"), "maker", 100)
        .await
        .unwrap();
    assert!(made.created);
    let record = made.record;
    assert_eq!(record.state, DraftState::Made);
    assert_eq!(record.adm_div, code("430102"));
    assert_eq!(record.receiver, "102551000015");
    assert_eq!(record.plan_month, Some(3));
    assert_eq!(record.amount_fen, Some(123_456));
    assert_eq!(record.maker, UserId(1));
    assert_eq!(record.body, b"<Voucher>1</Voucher>");
    assert_eq!((record.created_at, record.updated_at), (100, 100));
    assert_eq!(record.reason, None);

    // The same again (a double click): the same draft, nothing new.
    let again = drafts
        .make(draft("430102", "ZF1", "<Voucher>1</Voucher>"), "maker", 101)
        .await
        .unwrap();
    assert!(!again.created);
    assert_eq!(again.record, record);
    // The same key with other content is refused and changes nothing.
    let other = drafts
        .make(draft("430102", "ZF1", "<Voucher>2</Voucher>"), "maker", 102)
        .await;
    assert!(
        matches!(other, Err(DraftError::Conflict { .. })),
        "{other:?}"
    );
    assert_eq!(
        drafts.get(&key("430102", "ZF1")).await.unwrap(),
        Some(record)
    );
    let events = drafts.events(&key("430102", "ZF1")).await.unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].from, None);
    assert_eq!(events[0].to, DraftState::Made);
    assert_eq!(events[0].actor, "maker");
    assert_eq!(events[0].at, 100);
    assert_eq!(drafts.get(&key("430102", "NONE")).await.unwrap(), None);
});

both_backends!(states_move_along_the_table_with_one_event_each, |store| {
    let drafts = store.drafts();
    let k = key("430000", "ZF2");
    drafts
        .make(draft("430000", "ZF2", "<V/>"), "maker", 10)
        .await
        .unwrap();
    // Signing before checking is refused, and so is issuing.
    for to in [DraftState::Signed, DraftState::Issued, DraftState::Failed] {
        let refused = drafts.transition(&k, to, "x", reason(to), 11).await;
        assert!(
            matches!(
                refused,
                Err(DraftError::State { from: DraftState::Made, to: t, .. }) if t == to
            ),
            "{to}: {refused:?}"
        );
    }
    let checked = drafts
        .transition(&k, DraftState::Checked, "checker", None, 12)
        .await
        .unwrap();
    assert_eq!(checked.state, DraftState::Checked);
    assert_eq!(checked.updated_at, 12);
    // A repeat finds it done and writes nothing.
    let repeat = drafts
        .transition(&k, DraftState::Checked, "checker", None, 13)
        .await
        .unwrap();
    assert_eq!(repeat.updated_at, 12);
    drafts
        .transition(&k, DraftState::Signed, "signer", None, 14)
        .await
        .unwrap();
    // Once signed it cannot be rejected.
    let late = drafts
        .transition(&k, DraftState::Rejected, "checker", Some("金额有误"), 15)
        .await;
    assert!(
        matches!(
            late,
            Err(DraftError::State {
                from: DraftState::Signed,
                ..
            })
        ),
        "{late:?}"
    );
    let issued = drafts
        .transition(&k, DraftState::Issued, "signer", None, 16)
        .await
        .unwrap();
    assert_eq!(issued.state, DraftState::Issued);
    for to in DraftState::ALL
        .into_iter()
        .filter(|s| *s != DraftState::Issued)
    {
        assert!(
            drafts
                .transition(&k, to, "x", reason(to), 17)
                .await
                .is_err(),
            "issued -> {to}"
        );
    }
    let events = drafts.events(&k).await.unwrap();
    let moves: Vec<(Option<DraftState>, DraftState, &str, u64)> = events
        .iter()
        .map(|e| (e.from, e.to, e.actor.as_str(), e.at))
        .collect();
    assert_eq!(
        moves,
        vec![
            (None, DraftState::Made, "maker", 10),
            (Some(DraftState::Made), DraftState::Checked, "checker", 12),
            (Some(DraftState::Checked), DraftState::Signed, "signer", 14),
            (Some(DraftState::Signed), DraftState::Issued, "signer", 16),
        ]
    );

    // Rejected and failed need a reason (kept, cut to 200 GBK bytes); others take none.
    let r = key("430000", "ZF3");
    drafts
        .make(draft("430000", "ZF3", "<V/>"), "maker", 20)
        .await
        .unwrap();
    for bad in [None, Some("   ")] {
        assert!(matches!(
            drafts
                .transition(&r, DraftState::Rejected, "checker", bad, 21)
                .await,
            Err(DraftError::InvalidArgument(_))
        ));
    }
    assert!(matches!(
        drafts
            .transition(&r, DraftState::Checked, "checker", Some("why"), 21)
            .await,
        Err(DraftError::InvalidArgument(_))
    ));
    let long = "收款人".repeat(100);
    let rejected = drafts
        .transition(&r, DraftState::Rejected, "checker", Some(&long), 22)
        .await
        .unwrap();
    assert_eq!(rejected.state, DraftState::Rejected);
    let kept = rejected.reason.unwrap();
    assert!(
        long.starts_with(&kept) && kept.chars().count() == 100,
        "{kept}"
    );
    assert!(
        drafts
            .transition(&r, DraftState::Checked, "checker", None, 23)
            .await
            .is_err()
    );
    assert!(matches!(
        drafts
            .transition(&key("430000", "NONE"), DraftState::Checked, "c", None, 24)
            .await,
        Err(DraftError::NotFound { .. })
    ));
});

fn reason(to: DraftState) -> Option<&'static str> {
    to.needs_reason().then_some("原因")
}

both_backends!(racing_moves_let_exactly_one_win, |store| {
    let drafts = store.drafts();
    for i in 0..12 {
        let no = format!("RACE{i}");
        let k = key("430102", &no);
        drafts
            .make(draft("430102", &no, "<V/>"), "maker", 1)
            .await
            .unwrap();
        drafts
            .transition(&k, DraftState::Checked, "checker", None, 2)
            .await
            .unwrap();
        // A signer signs while another checker rejects.
        let (a, b) = tokio::join!(
            drafts.transition(&k, DraftState::Signed, "signer", None, 3),
            drafts.transition(&k, DraftState::Rejected, "checker2", Some("不同意"), 3),
        );
        assert!(a.is_ok() != b.is_ok(), "exactly one wins: {a:?} / {b:?}");
        let loser = if a.is_ok() { b } else { a };
        assert!(matches!(loser, Err(DraftError::State { .. })), "{loser:?}");
        let events = drafts.events(&k).await.unwrap();
        assert_eq!(
            events.len(),
            3,
            "made, checked and one of the two: {events:?}"
        );
    }
    // Concurrent makes of one key store one draft.
    let (a, b, c) = tokio::join!(
        drafts.make(draft("430102", "SAME", "<V/>"), "maker", 5),
        drafts.make(draft("430102", "SAME", "<V/>"), "maker", 5),
        drafts.make(draft("430102", "SAME", "<V/>"), "maker", 5),
    );
    let created = [a.unwrap(), b.unwrap(), c.unwrap()]
        .iter()
        .filter(|m| m.created)
        .count();
    assert_eq!(created, 1);
    assert_eq!(
        drafts.events(&key("430102", "SAME")).await.unwrap().len(),
        1
    );
});

both_backends!(lists_keep_to_the_divisions_a_user_sees, |store| {
    let drafts = store.drafts();
    for (division, no) in [
        ("430000", "P1"),
        ("430100", "C1"),
        ("430102", "F1"),
        ("430102", "F2"),
        ("430200", "Z1"),
        ("430202", "H1"),
        ("440000", "G1"),
    ] {
        drafts
            .make(draft(division, no, no), "maker", 1)
            .await
            .unwrap();
    }
    drafts
        .transition(
            &key("430102", "F2"),
            DraftState::Checked,
            "checker",
            None,
            2,
        )
        .await
        .unwrap();

    assert_eq!(
        numbers(store, &filter(&["430102"], None)).await,
        set(&["F1", "F2"])
    );
    assert_eq!(
        numbers(store, &filter(&["430100"], None)).await,
        set(&["C1", "F1", "F2"])
    );
    assert_eq!(
        numbers(store, &filter(&["430000"], None)).await,
        set(&["P1", "C1", "F1", "F2", "Z1", "H1"])
    );
    assert_eq!(
        numbers(store, &filter(&["430102", "430202"], None)).await,
        set(&["F1", "F2", "H1"])
    );
    assert_eq!(
        numbers(store, &filter(&["430102"], Some(DraftState::Checked))).await,
        set(&["F2"])
    );
    assert_eq!(
        numbers(store, &filter(&["430202"], Some(DraftState::Checked))).await,
        set(&[])
    );
    assert!(numbers(store, &filter(&[], None)).await.is_empty());

    // Pages: oldest first, the cursor continues where the last page ended.
    let mut f = filter(&["430000"], None);
    f.limit = 4;
    let first = drafts.list(&f).await.unwrap();
    let got: Vec<&str> = first
        .items
        .iter()
        .map(|d| d.key.voucher_no.as_str())
        .collect();
    assert_eq!(got, ["P1", "C1", "F1", "F2"]);
    f.after = first.next.unwrap();
    let second = drafts.list(&f).await.unwrap();
    let got: Vec<&str> = second
        .items
        .iter()
        .map(|d| d.key.voucher_no.as_str())
        .collect();
    assert_eq!(got, ["Z1", "H1"]);
    assert_eq!(second.next, None);

    for limit in [0, 101] {
        let mut f = filter(&["430000"], None);
        f.limit = limit;
        assert!(matches!(
            drafts.list(&f).await,
            Err(DraftError::InvalidArgument(_))
        ));
    }
});

both_backends!(bad_drafts_are_refused_and_write_nothing, |store| {
    let drafts = store.drafts();
    let mut bad = Vec::new();
    let mut d = draft("430102", "B1", "<V/>");
    d.body = Vec::new();
    bad.push(d);
    let mut d = draft("430102", "B2", "<V/>");
    d.plan_month = Some(13);
    bad.push(d);
    let mut d = draft("430102", "B3", "<V/>");
    d.receiver = "r".repeat(65);
    bad.push(d);
    let mut d = draft("430102", "B4", "<V/>");
    d.key.adm_div_code = "999999".into();
    bad.push(d);
    let mut d = draft("430102", "B5", "<V/>");
    d.key.voucher_no = String::new();
    bad.push(d);
    let mut d = draft("430102", "B6", "<V/>");
    d.body = vec![b'x'; guoku_store::drafts::BODY_MAX_BYTES + 1];
    bad.push(d);
    for d in bad {
        let what = format!("{d:?}");
        assert!(
            matches!(
                drafts.make(d, "maker", 1).await,
                Err(DraftError::InvalidArgument(_))
            ),
            "{what}"
        );
    }
    assert!(matches!(
        drafts.make(draft("430102", "B7", "<V/>"), "", 1).await,
        Err(DraftError::InvalidArgument(_))
    ));
    assert!(numbers(store, &filter(&["430000"], None)).await.is_empty());
});
