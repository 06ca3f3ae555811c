//! Daily reconciliation end to end (DOMAIN §3.6): PBOC and finance build the day's request
//! from their libraries, stamp and send it; the bank compares it with its own library and
//! answers with a sealed receipt (or a 2507 for a 3507); the originator takes the answer.
//! A matching day is 相符; a day with one voucher missing, one amount changed and one
//! returned on one side is 不符 with exactly those three differences. In-memory network,
//! SQLite in temporary directories (the daybook query itself runs on both backends in
//! crates/store/tests/daybook.rs), no sleeping.

use guoku_domain::BizDate;
use guoku_node::exchange::InMemory;
use guoku_node::flows::direct::Route;
use guoku_node::flows::reconcile::{
    AnswerOutcome, AnswerTaker, Answerer, CheckKind, CheckOutcome, CheckRequest, DiffKind,
    Originator, PlanNotices, ProState, Sent, business_date, on_check_answer, on_check_request,
    send_check,
};
use guoku_node::outbox::deliver_due;
use guoku_node::stamping::{stamp_next, type_of};
use guoku_seal::Suite;
use guoku_seal::voucher::StampKind;
use guoku_store::library::{NewVoucher, VoucherRecord};
use guoku_store::{Calendar, Store};
use guoku_voucher::lifecycle::{Exchange, Leg, Processing};
use guoku_voucher::{
    Encoding, Envelope, EnvelopeBody, Fields, Registry, Voucher, VoucherFlag, VoucherKey,
    write_envelope,
};

mod common;
use common::*;

const ADM: &str = "430000";
const YEAR: &str = "2025";
const FUNC: &str = "2010101";
const FUNC2: &str = "2010102";

fn envelope(v: &Voucher, flag: VoucherFlag) -> Vec<u8> {
    write_envelope(
        &Envelope {
            bodies: vec![EnvelopeBody {
                flag,
                attach: "SUCCESS".into(),
                voucher: v.clone(),
                signatures: vec![],
            }],
        },
        Encoding::Gbk,
    )
}

fn fields(pairs: &[(&str, &str)]) -> Fields {
    pairs.iter().map(|(n, v)| (*n, *v)).collect()
}

/// A clearing request (2301, or 2302 with a negative amount) of this bank: one detail.
fn clearing(vt: &str, no: &str, amount: &str, func: &str) -> Voucher {
    Voucher {
        header: fields(&[
            ("AdmDivCode", ADM),
            ("StYear", YEAR),
            ("VtCode", vt),
            ("VoucherNo", no),
            ("PayTypeCode", "11"),
            ("PayBankNo", BANK_CODE),
            ("PayAmt", amount),
        ]),
        details: vec![fields(&[
            ("VoucherNo", &format!("P{no}")),
            ("ExpFuncCode", func),
            ("PayAmt", amount),
        ])],
    }
}

/// A payment voucher (5201) and what its receipt adds.
fn payment(no: &str, amount: &str, date: &str, receipt: bool) -> Voucher {
    let mut v = Voucher {
        header: fields(&[
            ("AdmDivCode", ADM),
            ("StYear", YEAR),
            ("VtCode", "5201"),
            ("VoucherNo", no),
            ("AgencyCode", "101001"),
            ("ExpFuncCode", FUNC),
            ("PayAmt", amount),
        ]),
        details: vec![],
    };
    if receipt {
        v.header.set("XPayDate", date);
        v.header.set("XPayAmt", amount);
    }
    v
}

/// A quota notice (5105 to the bank, or 5108 to PBOC) with one detail.
fn notice(vt: &str, no: &str, field: &str, amount: &str) -> Voucher {
    Voucher {
        header: fields(&[
            ("AdmDivCode", ADM),
            ("StYear", YEAR),
            ("VtCode", vt),
            ("VoucherNo", no),
            ("PayBankNo", BANK_CODE),
            (field, amount),
        ]),
        details: vec![fields(&[
            ("AgencyCode", "101001"),
            ("ExpFuncCode", FUNC),
            (field, amount),
        ])],
    }
}

/// Finance, the bank and PBOC on one in-memory network, each on SQLite.
struct World {
    pki: Pki,
    registry: Registry,
    calendar: Calendar,
    finance: Store,
    finance_net: InMemory,
    bank: Store,
    bank_net: InMemory,
    pboc: Store,
    pboc_net: InMemory,
    finance_seal: SealHolder,
    bank_seal: SealHolder,
    pboc_seal: SealHolder,
    now: u64,
    date: BizDate,
    _nodes: Nodes,
}

impl World {
    async fn new() -> Self {
        let pki = Pki::new("测试根CA");
        let mut nodes = Nodes::new(Backend::Sqlite);
        let (finance, finance_net) = nodes.join(&pki, "finance", finance_peer()).await;
        let (bank, bank_net) = nodes.join(&pki, "bank", bank_peer()).await;
        let (pboc, pboc_net) = nodes.join(&pki, "pboc", pboc_peer()).await;
        let now = unix_now(&pki);
        let calendar = Calendar::default();
        let date = business_date(calendar, now).unwrap();
        let finance_seal =
            SealHolder::new(&pki, &common::finance(), StampKind::Ywzyz, "财政业务专用章");
        let bank_seal = SealHolder::new(
            &pki,
            &common::bank(),
            StampKind::Ywzyz,
            "代理银行业务专用章",
        );
        let pboc_seal = SealHolder::new(&pki, &pboc_org(), StampKind::Ywzyz, "国库业务专用章");
        Self {
            pki,
            registry: Registry::builtin(),
            calendar,
            finance,
            finance_net,
            bank,
            bank_net,
            pboc,
            pboc_net,
            finance_seal,
            bank_seal,
            pboc_seal,
            now,
            date,
            _nodes: nodes,
        }
    }

    fn date(&self) -> String {
        self.date.to_string()
    }

    /// `v` as `sender` wrote and sent it, and as `receiver` holds it; `delivered` says
    /// whether the sender heard it arrived (else it is still in transit, 对方未接收).
    #[allow(clippy::too_many_arguments)]
    async fn exchanged(
        &self,
        (sender, sender_code): (&Store, &str),
        (receiver, receiver_code): (&Store, &str),
        sent: &Voucher,
        held: Option<&Voucher>,
        leg: Leg,
    ) {
        let flag = match leg {
            Leg::Original => VoucherFlag::Original,
            Leg::Receipt => VoucherFlag::Receipt,
        };
        let new =
            |v: &Voucher| NewVoucher::new(v, leg, sender_code, receiver_code, envelope(v, flag));
        let library = sender.library();
        library.write(new(sent), "fixture", self.now).await.unwrap();
        let key = sent.key();
        library.send(&key, leg, "fixture", self.now).await.unwrap();
        if let Some(held) = held {
            library
                .delivered(&key, leg, "fixture", self.now)
                .await
                .unwrap();
            receiver
                .library()
                .receive(new(held), "fixture", self.now)
                .await
                .unwrap();
        }
    }

    /// The receiver reads what it holds and signs for it, returning (退回) `returned`.
    async fn settle(&self, store: &Store, returned: &[&str]) {
        let library = store.library();
        for r in library.read(100, "fixture", self.now).await.unwrap() {
            library
                .acknowledge(&r.key, r.leg, "fixture", self.now)
                .await
                .unwrap();
            if returned.contains(&r.key.voucher_no.as_str()) {
                library
                    .return_voucher(&r.key, r.leg, "超出清算范围", "fixture", self.now)
                    .await
                    .unwrap();
            }
        }
    }

    fn template(&self) -> Fields {
        fields(&[
            ("AdmDivCode", ADM),
            ("StYear", YEAR),
            ("TreCode", "0900000000"),
            ("PayBankCode", BANK_CODE),
            ("ClearBankCode", "001551000017"),
            ("ClearAccNo", "270000000001"),
        ])
    }

    /// PBOC (3502, 3507) or finance (5501–5503) sends the day's request; it is delivered.
    async fn originate(
        &self,
        kind: CheckKind,
        e_voucher_type: Option<&str>,
        check_no: &str,
        packet_details: usize,
    ) -> Sent {
        let by_pboc = matches!(kind, CheckKind::Vouchers | CheckKind::Clearing);
        let (store, net, sealer, me) = if by_pboc {
            (&self.pboc, &self.pboc_net, &self.pboc_seal, PBOC_CODE)
        } else {
            (
                &self.finance,
                &self.finance_net,
                &self.finance_seal,
                FINANCE_CODE,
            )
        };
        let signer = sealer.signer(&self.pki);
        let origin = Originator {
            suite: Suite::Sm,
            sealer: &signer,
            route: Route {
                me,
                to: BANK_CODE,
                actor: "reconciler",
            },
            calendar: self.calendar,
        };
        let template = self.template();
        let request = CheckRequest {
            kind,
            template: &template,
            date: self.date,
            e_voucher_type,
            check_no,
            packet_details,
            plan_notices: (kind == CheckKind::Clearing).then_some(PlanNotices {
                from: FINANCE_CODE,
                bank_no: BANK_CODE,
            }),
        };
        let sent = send_check(store, &self.registry, &origin, &request, self.now)
            .await
            .unwrap();
        let report = deliver_due(store, net, self.now, 100, BACKOFF)
            .await
            .unwrap();
        assert_eq!(report.delivered, sent.records.len(), "{report:?}");
        sent
    }

    /// The bank reads its unread vouchers and answers each reconciliation request; the
    /// answers are delivered.
    async fn bank_answers(&self) -> Vec<CheckOutcome> {
        let signer = self.bank_seal.signer(&self.pki);
        let ctx = Answerer {
            suite: Suite::Sm,
            sealer: &signer,
            me: BANK_CODE,
            actor: "bank-reconciler",
            calendar: self.calendar,
        };
        let mut outcomes = Vec::new();
        for record in self
            .bank
            .library()
            .read(100, ctx.actor, self.now)
            .await
            .unwrap()
        {
            outcomes.push(
                on_check_request(&self.bank, &self.registry, &ctx, &record, self.now)
                    .await
                    .unwrap(),
            );
        }
        deliver_due(&self.bank, &self.bank_net, self.now, 100, BACKOFF)
            .await
            .unwrap();
        outcomes
    }

    /// The originator reads and takes the answers.
    async fn answers_taken(&self, store: &Store) -> Vec<AnswerOutcome> {
        let ctx = AnswerTaker {
            actor: "reconciler",
        };
        let mut outcomes = Vec::new();
        for record in store
            .library()
            .read(100, ctx.actor, self.now)
            .await
            .unwrap()
        {
            outcomes.push(
                on_check_answer(store, &ctx, &record, self.now)
                    .await
                    .unwrap(),
            );
        }
        outcomes
    }

    async fn record(&self, store: &Store, key: &VoucherKey, leg: Leg) -> VoucherRecord {
        store.library().status(key, leg).await.unwrap().unwrap()
    }

    /// 2301s Q1..Qn of 100.00, 200.00… held alike by the bank and PBOC.
    async fn matching_2301s(&self, n: usize) {
        for i in 1..=n {
            let v = clearing("2301", &format!("Q{i}"), &format!("{i}00.00"), FUNC);
            self.exchanged(
                (&self.bank, BANK_CODE),
                (&self.pboc, PBOC_CODE),
                &v,
                Some(&v),
                Leg::Original,
            )
            .await;
        }
        self.settle(&self.pboc, &[]).await;
    }
}

fn answered(outcomes: &[CheckOutcome]) -> (&[VoucherKey], &guoku_node::flows::reconcile::Summary) {
    match outcomes.last() {
        Some(CheckOutcome::Answered { keys, summary }) => (keys, summary),
        other => panic!("not answered: {other:?}"),
    }
}

fn taken(outcomes: &[AnswerOutcome]) -> Vec<&guoku_node::flows::reconcile::CheckResult> {
    outcomes
        .iter()
        .map(|o| match o {
            AnswerOutcome::Taken { result, .. } => result,
            other => panic!("not taken: {other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn a_matching_day_agrees_and_the_receipt_reaches_pboc() {
    let w = World::new().await;
    w.matching_2301s(3).await;
    let sent = w
        .originate(CheckKind::Vouchers, Some("2301"), "DZ2301A", 100)
        .await;
    assert_eq!(sent.details, 3);
    assert_eq!(sent.records.len(), 1);
    let request = sent.records[0].key.clone();
    assert_eq!(request.voucher_no, "DZ2301A0001");
    let body = body_of(&sent.records[0].body, VoucherFlag::Original);
    let h = &body.voucher.header;
    assert_eq!(h.get("AllNum"), Some("3"));
    assert_eq!(h.get("AllAmt"), Some("600.00"));
    assert_eq!(h.get("CheckDate"), Some(w.date().as_str()));
    assert_eq!(h.get("EVoucherType"), Some("2301"));
    assert_eq!(h.get("ChildPackNum"), Some("1"));

    let outcomes = w.bank_answers().await;
    let (keys, summary) = answered(&outcomes);
    assert_eq!(keys, std::slice::from_ref(&request));
    assert!(summary.agrees(), "{summary:?}");
    assert_eq!(summary.matched, 3);
    assert_eq!(summary.ours.count, 3);
    assert_eq!(summary.ours.sum_fen, 60_000);
    assert_eq!(summary.ours, summary.theirs);
    let at_bank = w.record(&w.bank, &request, Leg::Original).await;
    assert_eq!(at_bank.processing, Some(Processing::ReceiptSent));

    let taken_outcomes = w.answers_taken(&w.pboc).await;
    let results = taken(&taken_outcomes);
    assert_eq!(results.len(), 1);
    assert!(results[0].agrees);
    assert_eq!(results[0].diff_num, 0);
    let request_at_pboc = w.record(&w.pboc, &request, Leg::Original).await;
    assert_eq!(request_at_pboc.exchange, Exchange::ReceiptReceived);
    let receipt = w.record(&w.pboc, &request, Leg::Receipt).await;
    assert_eq!(receipt.processing, Some(Processing::Processed));
    let r = body_of(&receipt.body, VoucherFlag::Receipt);
    assert_eq!(r.voucher.header.get("XCheckResult"), Some("0"));
    assert_eq!(r.voucher.header.get("XDiffNum"), Some("0"));
}

#[tokio::test]
async fn one_missing_one_changed_one_returned_are_exactly_the_three_differences() {
    let w = World::new().await;
    w.matching_2301s(2).await;
    // Q3: the bank sent it, PBOC never got it (still in transit).
    let q3 = clearing("2301", "Q3", "300.00", FUNC);
    w.exchanged(
        (&w.bank, BANK_CODE),
        (&w.pboc, PBOC_CODE),
        &q3,
        None,
        Leg::Original,
    )
    .await;
    // Q4: PBOC holds another amount.
    let q4_bank = clearing("2301", "Q4", "400.00", FUNC);
    let q4_pboc = clearing("2301", "Q4", "400.01", FUNC);
    w.exchanged(
        (&w.bank, BANK_CODE),
        (&w.pboc, PBOC_CODE),
        &q4_bank,
        Some(&q4_pboc),
        Leg::Original,
    )
    .await;
    // Q5: PBOC returned it; the bank has not heard.
    let q5 = clearing("2301", "Q5", "500.00", FUNC);
    w.exchanged(
        (&w.bank, BANK_CODE),
        (&w.pboc, PBOC_CODE),
        &q5,
        Some(&q5),
        Leg::Original,
    )
    .await;
    w.settle(&w.pboc, &["Q5"]).await;

    let sent = w
        .originate(CheckKind::Vouchers, Some("2301"), "DZ2301B", 100)
        .await;
    let body = body_of(&sent.records[0].body, VoucherFlag::Original);
    assert_eq!(body.voucher.header.get("AllNum"), Some("4"));
    let q5_detail = body
        .voucher
        .details
        .iter()
        .find(|d| d.get("VoucherNo") == Some("Q5"))
        .unwrap();
    assert_eq!(q5_detail.get("ProState"), Some("1"));

    let outcomes = w.bank_answers().await;
    let (_, summary) = answered(&outcomes);
    let got: Vec<(&str, DiffKind)> = summary
        .differences
        .iter()
        .map(|d| (d.no.as_str(), d.kind))
        .collect();
    assert_eq!(
        got,
        [
            ("Q3", DiffKind::MissingTheirs),
            ("Q4", DiffKind::AmountDiffers),
            ("Q5", DiffKind::StateDiffers),
        ]
    );
    assert_eq!(summary.matched, 2);
    assert_eq!((summary.ours.count, summary.theirs.count), (5, 4));
    let q4 = &summary.differences[1];
    assert_eq!(q4.ours.unwrap().amount.to_string(), "400.00");
    assert_eq!(q4.theirs.unwrap().amount.to_string(), "400.01");
    let q5d = &summary.differences[2];
    assert_eq!(q5d.ours.unwrap().state, ProState::Normal);
    assert_eq!(q5d.theirs.unwrap().state, ProState::Returned);

    let taken_outcomes = w.answers_taken(&w.pboc).await;
    let results = taken(&taken_outcomes);
    assert_eq!(results.len(), 1);
    let result = results[0];
    assert!(!result.agrees);
    assert_eq!(result.diff_num, 3);
    for line in [
        "Q3 对方无",
        "Q4 金额不符(本方400.00 对方400.01)",
        "Q5 状态不符(本方正常 对方退回)",
    ] {
        assert!(result.reason.contains(line), "{line}: {}", result.reason);
    }
}

#[tokio::test]
async fn a_day_in_three_packets_is_compared_once_all_have_arrived() {
    let w = World::new().await;
    w.matching_2301s(5).await;
    let sent = w
        .originate(CheckKind::Vouchers, Some("2301"), "DZ2301C", 2)
        .await;
    let nos: Vec<&str> = sent
        .records
        .iter()
        .map(|r| r.key.voucher_no.as_str())
        .collect();
    assert_eq!(nos, ["DZ2301C0001", "DZ2301C0002", "DZ2301C0003"]);
    for (i, r) in sent.records.iter().enumerate() {
        let h = body_of(&r.body, VoucherFlag::Original).voucher.header;
        assert_eq!(h.get("ChildPackNum"), Some("3"));
        assert_eq!(h.get("CurPackNo"), Some((i + 1).to_string().as_str()));
        assert_eq!(h.get("VoucherCheckNo"), Some("DZ2301C"));
        assert_eq!(h.get("AllNum"), Some(if i < 2 { "2" } else { "1" }));
    }

    let outcomes = w.bank_answers().await;
    assert_eq!(outcomes.len(), 3);
    assert!(
        matches!(outcomes[0], CheckOutcome::Waiting { have: 1, of: 3, .. }),
        "{:?}",
        outcomes[0]
    );
    assert!(
        matches!(outcomes[1], CheckOutcome::Waiting { have: 2, of: 3, .. }),
        "{:?}",
        outcomes[1]
    );
    let (keys, summary) = answered(&outcomes);
    assert_eq!(keys.len(), 3);
    assert!(summary.agrees(), "{summary:?}");
    assert_eq!(summary.matched, 5);
    assert_eq!(summary.theirs.sum_fen, 150_000);
    for r in &sent.records {
        let at_bank = w.record(&w.bank, &r.key, Leg::Original).await;
        assert_eq!(at_bank.processing, Some(Processing::ReceiptSent));
    }
    let taken_outcomes = w.answers_taken(&w.pboc).await;
    let results = taken(&taken_outcomes);
    assert_eq!(results.len(), 3);
    assert!(results.iter().all(|r| r.agrees));
}

#[tokio::test]
async fn an_empty_day_agrees() {
    let w = World::new().await;
    w.matching_2301s(1).await;
    // Nothing of 2302 was exchanged today.
    let sent = w
        .originate(CheckKind::Vouchers, Some("2302"), "DZ2302A", 100)
        .await;
    let h = body_of(&sent.records[0].body, VoucherFlag::Original)
        .voucher
        .header;
    assert_eq!(
        (h.get("AllNum"), h.get("AllAmt")),
        (Some("0"), Some("0.00"))
    );
    let outcomes = w.bank_answers().await;
    let (_, summary) = answered(&outcomes);
    assert!(summary.agrees());
    assert_eq!(summary.matched, 0);
    assert!(taken(&w.answers_taken(&w.pboc).await)[0].agrees);
}

#[tokio::test]
async fn clearing_information_is_answered_with_a_2507() {
    let w = World::new().await;
    for (no, amount, func) in [
        ("C1", "100.00", FUNC),
        ("C2", "50.00", FUNC),
        ("C3", "70.00", FUNC2),
    ] {
        let v = clearing("2301", no, amount, func);
        w.exchanged(
            (&w.bank, BANK_CODE),
            (&w.pboc, PBOC_CODE),
            &v,
            Some(&v),
            Leg::Original,
        )
        .await;
    }
    let refund = clearing("2302", "R1", "-20.00", FUNC);
    w.exchanged(
        (&w.bank, BANK_CODE),
        (&w.pboc, PBOC_CODE),
        &refund,
        Some(&refund),
        Leg::Original,
    )
    .await;
    // A refund PBOC never got: its RefundAmt differs.
    let lost = clearing("2302", "R2", "-5.00", FUNC2);
    w.exchanged(
        (&w.bank, BANK_CODE),
        (&w.pboc, PBOC_CODE),
        &lost,
        None,
        Leg::Original,
    )
    .await;
    // Finance's clearing-quota notice for this bank gives PBOC its PlanAmt.
    let plan = notice("5108", "N1", "PayAmt", "1000.00");
    w.exchanged(
        (&w.finance, FINANCE_CODE),
        (&w.pboc, PBOC_CODE),
        &plan,
        Some(&plan),
        Leg::Original,
    )
    .await;
    w.settle(&w.pboc, &[]).await;

    let sent = w.originate(CheckKind::Clearing, None, "QSDZ01", 100).await;
    let request = sent.records[0].key.clone();
    let body = body_of(&sent.records[0].body, VoucherFlag::Original);
    let row = |func: &str| {
        body.voucher
            .details
            .iter()
            .find(|d| d.get("ExpFuncCode") == Some(func))
            .unwrap()
            .clone()
    };
    let first = row(FUNC);
    assert_eq!(first.get("PayBankCode"), Some(BANK_CODE));
    assert_eq!(first.get("PayTypeCode"), Some("11"));
    assert_eq!(first.get("PayAmt"), Some("150.00"));
    assert_eq!(first.get("RefundAmt"), Some("-20.00"));
    assert_eq!(first.get("PlanAmt"), Some("1000.00"));
    assert_eq!(first.get("PlanRemainAmt"), Some("870.00"));
    assert_eq!(row(FUNC2).get("RefundAmt"), Some("0.00"));
    assert_eq!(body.voucher.header.get("AllAmt"), Some("220.00"));

    let outcomes = w.bank_answers().await;
    let (keys, summary) = answered(&outcomes);
    assert_eq!(keys, std::slice::from_ref(&request));
    let got: Vec<(&str, DiffKind)> = summary
        .differences
        .iter()
        .map(|d| (d.no.as_str(), d.kind))
        .collect();
    let lost_key = format!("{BANK_CODE}/{FUNC2}/11/RefundAmt");
    assert_eq!(got, [(lost_key.as_str(), DiffKind::MissingTheirs)]);
    assert_eq!(summary.matched, 3);
    // The 3507 is processed at the bank; its answer is a 2507 of the same number.
    let at_bank = w.record(&w.bank, &request, Leg::Original).await;
    assert_eq!(at_bank.processing, Some(Processing::Processed));
    let reply_key = VoucherKey {
        vt_code: "2507".into(),
        ..request.clone()
    };
    let reply = w.record(&w.pboc, &reply_key, Leg::Original).await;
    let reply_body = body_of(&reply.body, VoucherFlag::Original);
    assert_eq!(reply_body.voucher.header.get("XCheckResult"), Some("1"));
    assert_eq!(reply_body.voucher.details, body.voucher.details);

    let taken_outcomes = w.answers_taken(&w.pboc).await;
    match &taken_outcomes[..] {
        [AnswerOutcome::Taken { request: r, result }] => {
            assert_eq!(r, &request);
            assert!(!result.agrees);
            assert_eq!(result.diff_num, 1);
            assert!(result.reason.contains(&lost_key), "{}", result.reason);
        }
        other => panic!("{other:?}"),
    }
    let at_pboc = w.record(&w.pboc, &request, Leg::Original).await;
    assert_eq!(at_pboc.exchange, Exchange::ReceiptReceived);
}

#[tokio::test]
async fn finance_and_the_bank_reconcile_quota_payment_details_and_payment_vouchers() {
    let w = World::new().await;
    let date = w.date();
    for (no, amount) in [("F1", "10.00"), ("F2", "20.00")] {
        let original = payment(no, amount, &date, false);
        w.exchanged(
            (&w.finance, FINANCE_CODE),
            (&w.bank, BANK_CODE),
            &original,
            Some(&original),
            Leg::Original,
        )
        .await;
        let receipt = payment(no, amount, &date, true);
        w.exchanged(
            (&w.bank, BANK_CODE),
            (&w.finance, FINANCE_CODE),
            &receipt,
            Some(&receipt),
            Leg::Receipt,
        )
        .await;
    }
    // The bank returned F3 and finance heard of it: both say 退回.
    let f3 = payment("F3", "30.00", &date, false);
    w.exchanged(
        (&w.finance, FINANCE_CODE),
        (&w.bank, BANK_CODE),
        &f3,
        Some(&f3),
        Leg::Original,
    )
    .await;
    let quota = notice("5105", "E1", "PlanAmt", "500.00");
    w.exchanged(
        (&w.finance, FINANCE_CODE),
        (&w.bank, BANK_CODE),
        &quota,
        Some(&quota),
        Leg::Original,
    )
    .await;
    w.settle(&w.bank, &["F3"]).await;
    w.finance
        .library()
        .return_voucher(&f3.key(), Leg::Original, "账号有误", "fixture", w.now)
        .await
        .unwrap();
    w.settle(&w.finance, &[]).await;

    for (kind, e_type, no, details) in [
        (CheckKind::PaymentVouchers, Some("5201"), "ZFPZ01", 3),
        (CheckKind::PaymentDetails, None, "ZFMX01", 2),
        (CheckKind::Quota, None, "EDDZ01", 1),
    ] {
        let sent = w.originate(kind, e_type, no, 100).await;
        assert_eq!(sent.details, details, "{kind:?}");
        let outcomes = w.bank_answers().await;
        let (keys, summary) = answered(&outcomes);
        assert_eq!(keys, [sent.records[0].key.clone()], "{kind:?}");
        assert!(summary.agrees(), "{kind:?}: {summary:?}");
        assert_eq!(summary.matched, details as u64, "{kind:?}");
        let results = w.answers_taken(&w.finance).await;
        assert!(taken(&results)[0].agrees, "{kind:?}");
    }
    let f3_line = w
        .record(
            &w.finance,
            &VoucherKey {
                voucher_no: "ZFPZ010001".into(),
                vt_code: "5503".into(),
                ..f3.key()
            },
            Leg::Original,
        )
        .await;
    let details = body_of(&f3_line.body, VoucherFlag::Original)
        .voucher
        .details;
    let f3_detail = details
        .iter()
        .find(|d| d.get("VoucherNo") == Some("F3"))
        .unwrap();
    assert_eq!(f3_detail.get("ProState"), Some("1"));
}

#[tokio::test]
async fn a_request_listing_a_voucher_twice_is_returned_with_the_reason() {
    let w = World::new().await;
    w.matching_2301s(1).await;
    let date = w.date();
    let ty = w.registry.get("3502").unwrap();
    let mut header = w.template();
    header.remove("ClearBankCode");
    header.remove("ClearAccNo");
    for (n, v) in [
        ("Id", "DZBAD0001"),
        ("VtCode", "3502"),
        ("VouDate", date.as_str()),
        ("VoucherNo", "DZBAD0001"),
        ("CheckDate", date.as_str()),
        ("EVoucherType", "2301"),
        ("AllNum", "2"),
        ("AllAmt", "200.00"),
    ] {
        header.set(n, v);
    }
    let detail = |id: &str| {
        fields(&[
            ("Id", id),
            ("VoucherNo", "Q1"),
            ("Amt", "100.00"),
            ("ProState", "0"),
        ])
    };
    let mut body = EnvelopeBody {
        flag: VoucherFlag::Original,
        attach: "SUCCESS".into(),
        voucher: Voucher {
            header,
            details: vec![detail("1"), detail("2")],
        },
        signatures: Vec::new(),
    };
    stamp_next(Suite::Sm, ty, &mut body, &w.pboc_seal.signer(&w.pki)).unwrap();
    assert!(type_of(&w.registry, &body.voucher).is_ok());
    let key = body.voucher.key();
    let library = w.pboc.library();
    let new = NewVoucher::new(
        &body.voucher,
        Leg::Original,
        PBOC_CODE,
        BANK_CODE,
        write_envelope(
            &Envelope {
                bodies: vec![body.clone()],
            },
            Encoding::Gbk,
        ),
    );
    library.write(new, "reconciler", w.now).await.unwrap();
    library
        .send(&key, Leg::Original, "reconciler", w.now)
        .await
        .unwrap();
    let report = deliver_due(&w.pboc, &w.pboc_net, w.now, 10, BACKOFF)
        .await
        .unwrap();
    assert_eq!(report.delivered, 1, "{report:?}");

    let outcomes = w.bank_answers().await;
    match &outcomes[..] {
        [CheckOutcome::Returned { keys, reasons }] => {
            assert_eq!(keys, std::slice::from_ref(&key));
            assert!(
                reasons
                    .iter()
                    .any(|r| r.contains("voucher Q1 is listed 2 times")),
                "{reasons:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    let at_bank = w.record(&w.bank, &key, Leg::Original).await;
    assert_eq!(at_bank.exchange, Exchange::Returned);
    assert_eq!(at_bank.processing, Some(Processing::Returned));
    assert!(at_bank.reason.unwrap().contains("Q1"));
}

#[tokio::test]
async fn other_vouchers_are_not_taken_as_requests_or_answers() {
    let w = World::new().await;
    let v = clearing("2301", "Q1", "1.00", FUNC);
    w.exchanged(
        (&w.bank, BANK_CODE),
        (&w.pboc, PBOC_CODE),
        &v,
        Some(&v),
        Leg::Original,
    )
    .await;
    let record = w
        .pboc
        .library()
        .read(1, "x", w.now)
        .await
        .unwrap()
        .remove(0);
    let signer = w.bank_seal.signer(&w.pki);
    let ctx = Answerer {
        suite: Suite::Sm,
        sealer: &signer,
        me: BANK_CODE,
        actor: "x",
        calendar: w.calendar,
    };
    assert!(matches!(
        on_check_request(&w.pboc, &w.registry, &ctx, &record, w.now)
            .await
            .unwrap(),
        CheckOutcome::NotMine { .. }
    ));
    assert!(matches!(
        on_check_answer(&w.pboc, &AnswerTaker { actor: "x" }, &record, w.now)
            .await
            .unwrap(),
        AnswerOutcome::NotMine { .. }
    ));
    // Untouched: still only read.
    let after = w.record(&w.pboc, &record.key, Leg::Original).await;
    assert_eq!(after.processing, Some(Processing::Read));
}

#[tokio::test]
async fn packets_handled_in_any_order_are_compared_once() {
    let w = World::new().await;
    w.matching_2301s(3).await;
    let sent = w
        .originate(CheckKind::Vouchers, Some("2301"), "DZ2301D", 1)
        .await;
    assert_eq!(sent.records.len(), 3);
    let signer = w.bank_seal.signer(&w.pki);
    let ctx = Answerer {
        suite: Suite::Sm,
        sealer: &signer,
        me: BANK_CODE,
        actor: "bank-reconciler",
        calendar: w.calendar,
    };
    let mut read = w.bank.library().read(100, ctx.actor, w.now).await.unwrap();
    read.reverse();
    let mut outcomes = Vec::new();
    for record in &read {
        outcomes.push(
            on_check_request(&w.bank, &w.registry, &ctx, record, w.now)
                .await
                .unwrap(),
        );
    }
    assert!(matches!(
        outcomes[0],
        CheckOutcome::Waiting { have: 1, of: 3, .. }
    ));
    assert!(matches!(
        outcomes[1],
        CheckOutcome::Waiting { have: 2, of: 3, .. }
    ));
    let (keys, summary) = answered(&outcomes);
    let nos: Vec<&str> = keys.iter().map(|k| k.voucher_no.as_str()).collect();
    assert_eq!(nos, ["DZ2301D0001", "DZ2301D0002", "DZ2301D0003"]);
    assert!(summary.agrees());
    assert_eq!(summary.matched, 3);
    deliver_due(&w.bank, &w.bank_net, w.now, 100, BACKOFF)
        .await
        .unwrap();
    let results = w.answers_taken(&w.pboc).await;
    assert_eq!(taken(&results).len(), 3);
}
