//! The daybook on both backends: one day's vouchers between this node and one counterparty,
//! by type and leg, with their states, paged; third parties, other types, other legs and
//! other days left out; bad arguments refused.

mod common;

use guoku_store::Store;
use guoku_store::daybook::{DAYBOOK_PAGE_MAX, DayQuery, Window};
use guoku_store::library::{Direction, LibraryError, NewVoucher, VoucherRecord};
use guoku_voucher::lifecycle::{Exchange, Leg, Processing};
use guoku_voucher::{Encoding, Envelope, EnvelopeBody, Voucher, VoucherFlag};

const ME: &str = "011430000001";
const BANK: &str = "102551000015";
const OTHER_BANK: &str = "103551000016";

/// Midnight of the day and the day after (any span works: the store knows no calendar).
const DAY: Window = Window {
    from: 1_736_870_400,
    to: 1_736_956_800,
};

fn voucher(vt: &str, no: &str, amount: &str) -> Voucher {
    Voucher {
        header: [
            ("AdmDivCode", "430000"),
            ("StYear", "2025"),
            ("VtCode", vt),
            ("VoucherNo", no),
            ("PayAmt", amount),
        ]
        .into_iter()
        .collect(),
        details: vec![],
    }
}

fn new(vt: &str, no: &str, leg: Leg, sender: &str, receiver: &str) -> NewVoucher {
    let v = voucher(vt, no, "1.00");
    let flag = match leg {
        Leg::Original => VoucherFlag::Original,
        Leg::Receipt => VoucherFlag::Receipt,
    };
    let body = guoku_voucher::write_envelope(
        &Envelope {
            bodies: vec![EnvelopeBody {
                flag,
                attach: "SUCCESS".into(),
                voucher: v.clone(),
                signatures: vec![],
            }],
        },
        Encoding::Gbk,
    );
    NewVoucher::new(&v, leg, sender, receiver, body)
}

/// Received from `sender` at `at`.
async fn received(store: &Store, vt: &str, no: &str, sender: &str, at: u64) {
    store
        .library()
        .receive(new(vt, no, Leg::Original, sender, ME), "test", at)
        .await
        .unwrap();
}

/// Written here at `at` for `receiver`, and sent.
async fn sent(store: &Store, vt: &str, no: &str, leg: Leg, receiver: &str, at: u64) {
    let library = store.library();
    let stored = library
        .write(new(vt, no, leg, ME, receiver), "test", at)
        .await
        .unwrap();
    library
        .send(&stored.record.key, leg, "test", at)
        .await
        .unwrap();
}

async fn day(store: &Store, query: &DayQuery<'_>) -> Vec<VoucherRecord> {
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let page = store.daybook().vouchers(query, after, 2).await.unwrap();
        assert!(page.items.len() <= 2);
        all.extend(page.items);
        match page.next {
            Some(next) => after = next,
            None => return all,
        }
    }
}

fn nos(records: &[VoucherRecord]) -> Vec<&str> {
    records.iter().map(|r| r.key.voucher_no.as_str()).collect()
}

fn query(vt: &'static str, leg: Leg, counterparty: &'static str) -> DayQuery<'static> {
    DayQuery {
        vt_code: vt,
        leg,
        counterparty,
        window: DAY,
    }
}

both_backends!(
    lists_one_days_vouchers_with_one_counterparty_in_arrival_order,
    |store| {
        // In the day, with the bank: two received, one sent, one received then returned.
        received(store, "2301", "R1", BANK, DAY.from).await;
        sent(store, "2301", "S1", Leg::Original, BANK, DAY.from + 10).await;
        received(store, "2301", "R2", BANK, DAY.to - 1).await;
        received(store, "2301", "R3", BANK, DAY.from + 20).await;
        // Left out: the day before and the day after (the window's end is excluded), another
        // bank, another type, the receipt leg.
        received(store, "2301", "EARLY", BANK, DAY.from - 1).await;
        received(store, "2301", "LATE", BANK, DAY.to).await;
        received(store, "2301", "OTHER", OTHER_BANK, DAY.from + 5).await;
        received(store, "2302", "REFUND", BANK, DAY.from + 5).await;
        sent(store, "2301", "R1", Leg::Receipt, BANK, DAY.from + 30).await;

        let library = store.library();
        let read = library.read(100, "clerk", DAY.from + 40).await.unwrap();
        assert_eq!(read.len(), 7);
        let r3 = read.iter().find(|r| r.key.voucher_no == "R3").unwrap();
        library
            .acknowledge(&r3.key, Leg::Original, "clerk", DAY.from + 41)
            .await
            .unwrap();
        library
            .return_voucher(
                &r3.key,
                Leg::Original,
                "超出清算范围",
                "clerk",
                DAY.from + 42,
            )
            .await
            .unwrap();

        let records = day(store, &query("2301", Leg::Original, BANK)).await;
        assert_eq!(nos(&records), ["R1", "S1", "R2", "R3"]);
        let by = |no: &str| records.iter().find(|r| r.key.voucher_no == no).unwrap();
        assert_eq!(by("R1").direction, Direction::Received);
        assert_eq!(by("R1").exchange, Exchange::Received);
        assert_eq!(by("R1").processing, Some(Processing::Read));
        assert_eq!(by("S1").direction, Direction::Sent);
        assert_eq!(by("S1").exchange, Exchange::NotReceived);
        assert_eq!(by("S1").processing, None);
        assert_eq!(by("R3").exchange, Exchange::Returned);
        assert_eq!(by("R3").processing, Some(Processing::Returned));
        assert_eq!(by("R3").reason.as_deref(), Some("超出清算范围"));
        assert_eq!(by("R2").created_at, DAY.to - 1);
        assert!(records.windows(2).all(|w| w[0].seq < w[1].seq));
        // The body comes back byte for byte.
        let stored = library
            .status(&by("R1").key, Leg::Original)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(by("R1").body, stored.body);

        let receipts = day(store, &query("2301", Leg::Receipt, BANK)).await;
        assert_eq!(nos(&receipts), ["R1"]);
        assert_eq!(receipts[0].direction, Direction::Sent);
        assert_eq!(
            nos(&day(store, &query("2301", Leg::Original, OTHER_BANK)).await),
            ["OTHER"]
        );
        assert_eq!(
            nos(&day(store, &query("2302", Leg::Original, BANK)).await),
            ["REFUND"]
        );
        let mut later = query("2301", Leg::Original, BANK);
        later.window = Window {
            from: DAY.to,
            to: DAY.to + 86_400,
        };
        assert_eq!(nos(&day(store, &later).await), ["LATE"]);
    }
);

both_backends!(an_empty_day_is_one_empty_last_page, |store| {
    received(store, "2301", "R1", BANK, DAY.from - 100).await;
    let page = store
        .daybook()
        .vouchers(&query("2301", Leg::Original, BANK), 0, DAYBOOK_PAGE_MAX)
        .await
        .unwrap();
    assert!(page.items.is_empty());
    assert_eq!(page.next, None);
    let nobody = store
        .daybook()
        .vouchers(&query("2301", Leg::Original, "999"), 0, 10)
        .await
        .unwrap();
    assert!(nobody.items.is_empty());
});

both_backends!(a_full_page_names_the_next_cursor, |store| {
    for n in 0..5 {
        received(store, "2301", &format!("R{n}"), BANK, DAY.from + n).await;
    }
    let daybook = store.daybook();
    let q = query("2301", Leg::Original, BANK);
    let first = daybook.vouchers(&q, 0, 3).await.unwrap();
    assert_eq!(nos(&first.items), ["R0", "R1", "R2"]);
    let next = first.next.expect("a full page has a next cursor");
    assert_eq!(next, first.items[2].seq);
    let second = daybook.vouchers(&q, next, 3).await.unwrap();
    assert_eq!(nos(&second.items), ["R3", "R4"]);
    assert_eq!(second.next, None);
});

both_backends!(bad_arguments_are_refused, |store| {
    let daybook = store.daybook();
    let q = query("2301", Leg::Original, BANK);
    for limit in [0, DAYBOOK_PAGE_MAX + 1] {
        assert!(matches!(
            daybook.vouchers(&q, 0, limit).await,
            Err(LibraryError::InvalidArgument(_))
        ));
    }
    let mut backwards = q;
    backwards.window = Window { from: 10, to: 9 };
    assert!(matches!(
        daybook.vouchers(&backwards, 0, 10).await,
        Err(LibraryError::InvalidArgument(_))
    ));
    let mut huge = q;
    huge.window = Window {
        from: 0,
        to: u64::MAX,
    };
    assert!(matches!(
        daybook.vouchers(&huge, 0, 10).await,
        Err(LibraryError::InvalidArgument(_))
    ));
    for (vt, cp) in [("", BANK), ("2301", "")] {
        let q = DayQuery {
            vt_code: vt,
            leg: Leg::Original,
            counterparty: cp,
            window: DAY,
        };
        assert!(matches!(
            daybook.vouchers(&q, 0, 10).await,
            Err(LibraryError::InvalidArgument(_))
        ));
    }
    let err = daybook.vouchers(&q, 0, 0).await.unwrap_err();
    assert!(!err.is_retryable());
});
