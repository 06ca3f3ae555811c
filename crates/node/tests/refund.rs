//! Refunds end to end (DOMAIN §3.4): finance issues a 5201, the bank pays it, clears it
//! with PBOC, then the payment bounces back: the bank records the refund and sends the
//! refund notice (2203) to finance and the refund request (2302) to PBOC; finance restores
//! its plan quota, PBOC its clearing quota and the TSA, both return sealed receipts, the
//! bank books PBOC's and its zero-balance account is back at zero. A second refund of the
//! same payment, one above what was paid and one of a payment not yet cleared are refused
//! with nothing booked or written; PBOC returns a 2302 for a payment it never cleared.
//! In-memory network; every scenario on SQLite and on PostgreSQL.

use std::collections::HashMap;

use guoku_domain::{Amount, PayType};
use guoku_node::exchange::InMemory;
use guoku_node::flows::authorized::{self, check_8202};
use guoku_node::flows::clearing::{
    ClearOutcome, Clearer, Listed, PaidState, Pboc, SettleOutcome, build_request, clear_received,
    send_request as send_clearing_request, settle_receipt,
};
use guoku_node::flows::direct::{
    Bank, PayOutcome, ReceiptOutcome as PaymentReceipt, Route, book_receipts, pay_received,
    payment_amount, tenant_of,
};
use guoku_node::flows::refund::{
    NoticeDesk, NoticeOutcome, PayMsg, ReceiptOutcome, RefundDesk, RefundError, RefundRefusal,
    RefundRequest, RefundType, Refunded, RequestOutcome, VT_2203, VT_2204, VT_2302,
    on_refund_notice, on_refund_receipt, on_refund_request, record_refund, request_voucher,
    send_request,
};
use guoku_node::flows::returns::Restored;
use guoku_node::outbox::deliver_due;
use guoku_node::stamping::{Verification, type_of, verify};
use guoku_seal::Suite;
use guoku_seal::pki::{Post, RevocationPolicy};
use guoku_seal::voucher::{Signer, StampKind, TrustContext};
use guoku_store::Store;
use guoku_store::books::{AccountKind, Applied, BookAccount, BookOp, ClearingKey, Tenant};
use guoku_voucher::lifecycle::{Exchange, Leg, Processing};
use guoku_voucher::sample::{Style, sample};
use guoku_voucher::{EnvelopeBody, Fields, Registry, Voucher, VoucherFlag, VoucherKey};

mod common;
use common::*;

// ----- the parties -------------------------------------------------------------------------

/// Finance, the bank and PBOC on one in-memory network, each on `backend`.
struct World {
    pki: Pki,
    registry: Registry,
    finance: Store,
    finance_net: InMemory,
    bank: Store,
    bank_net: InMemory,
    pboc: Store,
    pboc_net: InMemory,
    unit: Store,
    unit_net: InMemory,
    now: u64,
    bank_maker: Holder,
    bank_zqz: SealHolder,
    bank_ywzyz: SealHolder,
    finance_ywzyz: SealHolder,
    pboc_zqz: SealHolder,
    _nodes: Nodes,
}

impl World {
    async fn new(backend: Backend) -> Self {
        let pki = Pki::new("测试根CA");
        let (bank_org, finance_org) = (bank(), finance());
        let mut nodes = Nodes::new(backend);
        let (finance, finance_net) = nodes.join(&pki, "finance", finance_peer()).await;
        let (bank, bank_net) = nodes.join(&pki, "bank", bank_peer()).await;
        let (pboc, pboc_net) = nodes.join(&pki, "pboc", pboc_peer()).await;
        let (unit, unit_net) = nodes.join(&pki, "unit", unit_peer()).await;
        let now = unix_now(&pki);
        let bank_maker = pki.person(&bank_org, Post::Maker, "钱七");
        let bank_zqz = SealHolder::new(&pki, &bank_org, StampKind::Zqz, "转讫章");
        let bank_ywzyz = SealHolder::new(&pki, &bank_org, StampKind::Ywzyz, "代理银行业务专用章");
        let finance_ywzyz = SealHolder::new(&pki, &finance_org, StampKind::Ywzyz, "财政业务专用章");
        let pboc_zqz = SealHolder::new(&pki, &pboc_org(), StampKind::Zqz, "国库转讫章");
        Self {
            pki,
            registry: Registry::builtin(),
            finance,
            finance_net,
            bank,
            bank_net,
            pboc,
            pboc_net,
            unit,
            unit_net,
            now,
            bank_maker,
            bank_zqz,
            bank_ywzyz,
            finance_ywzyz,
            pboc_zqz,
            _nodes: nodes,
        }
    }

    /// Finance issues the 5201 `n` from a plan of its amount + `spare`, and the outbox
    /// delivers it to the bank.
    async fn issue_5201(&self, n: u64, spare: Amount) -> EnvelopeBody {
        let body = signed_5201(&self.pki, &self.registry, n);
        let amount = payment_amount(&body.voucher).unwrap();
        let indicator = indicator_of(&body.voucher);
        create_missing(
            &self.finance,
            vec![
                BookAccount::budget_source(indicator.tenant),
                BookAccount::indicator(&indicator),
                BookAccount::plan(&indicator, MONTH).unwrap(),
                BookAccount::plan_used(&indicator, MONTH).unwrap(),
            ],
        )
        .await;
        let plan = amount.checked_add(spare).unwrap();
        let base = u128::from(n) * 10;
        apply(
            &self.finance,
            self.now,
            &[
                BookOp::approve_indicator(base + 1, &indicator, plan).unwrap(),
                BookOp::approve_plan(base + 2, &indicator, MONTH, plan).unwrap(),
            ],
        )
        .await;
        finance_issues(&self.finance, &self.registry, &indicator, &body, self.now).await;
        deliver_one(&self.finance, &self.finance_net, self.now).await;
        body
    }

    /// The bank pays what it received and returns the receipts; finance books them.
    async fn bank_pays(&self, body: &EnvelopeBody) {
        let tenant = tenant_of(&body.voucher.key()).unwrap();
        create_missing(
            &self.bank,
            vec![
                BookAccount::advance(tenant),
                BookAccount::finance_zba(tenant),
                BookAccount::payees(tenant),
                BookAccount::receivable_pboc(tenant),
                BookAccount::pboc_reserve(tenant),
            ],
        )
        .await;
        let sealer = self.bank_zqz.signer(&self.pki);
        let teller = Bank {
            me: BANK_CODE,
            actor: "teller",
            pay_date: today(),
            serial_prefix: "ICBC",
            suite: Suite::Sm,
            sealer: &sealer,
        };
        let paid = pay_received(&self.bank, &self.registry, &teller, 100, self.now)
            .await
            .unwrap();
        assert!(matches!(&paid[..], [PayOutcome::Paid { .. }]), "{paid:?}");
        deliver_one(&self.bank, &self.bank_net, self.now).await;
        let booked = book_receipts(&self.finance, "clerk", 100, self.now)
            .await
            .unwrap();
        assert!(
            matches!(&booked[..], [PaymentReceipt::Done { .. }]),
            "{booked:?}"
        );
    }

    /// PBOC's books: a clearing quota of `quota` for the voucher's key and a funded TSA.
    async fn pboc_books(&self, voucher: &Voucher, quota: Amount, id: u128) {
        self.pboc_books_for(&clearing_key(voucher), quota, id).await;
    }

    /// PBOC's books: a clearing quota of `quota` on `key` and a funded TSA.
    async fn pboc_books_for(&self, key: &ClearingKey, quota: Amount, id: u128) {
        let key = key.clone();
        let t = key.tenant;
        create_missing(
            &self.pboc,
            vec![
                BookAccount::clearing_notice_source(t),
                BookAccount::clearing_quota(&key),
                BookAccount::cleared(&key),
                BookAccount::revenue(t),
                BookAccount::tsa(t),
                BookAccount::bank_clearing(t, &key.bank),
            ],
        )
        .await;
        apply(
            &self.pboc,
            self.now,
            &[
                BookOp::clearing_quota_notice(id, &key, quota).unwrap(),
                BookOp::fund_tsa(id + 1, t, fen(10_000_000_000)).unwrap(),
            ],
        )
        .await;
    }

    /// The 2301 template in the voucher's division, year and fund type, for this bank.
    fn template(&self, like: &Voucher) -> Fields {
        let ty = self.registry.get("2301").unwrap();
        let mut header = sample(ty, today(), VoucherFlag::Original, Style::Plain, 7).header;
        for name in ["AdmDivCode", "StYear", "FundTypeCode"] {
            header.set(name, like.header.get(name).unwrap());
        }
        header.set("PayBankNo", BANK_CODE);
        header
    }

    fn pboc_desk<'a>(&self, sealer: &'a Signer<'a>) -> Pboc<'a> {
        Pboc {
            me: PBOC_CODE,
            bank_no: PBOC_BANK_NO,
            actor: "treasury",
            clear_date: today(),
            suite: Suite::Sm,
            sealer,
        }
    }

    /// The bank clears what it paid (2301 `no`) and PBOC clears it; PBOC's receipt reaches
    /// the bank, which reads it.
    async fn clear(&self, like: &Voucher, no: &str) -> VoucherKey {
        let maker = sign(&self.bank_maker);
        let sealer = self.bank_ywzyz.signer(&self.pki);
        let clearer = Clearer {
            me: BANK_CODE,
            pboc: PBOC_CODE,
            actor: "clearing-clerk",
            suite: Suite::Sm,
            maker: &maker,
            sealer: &sealer,
        };
        let record = build_request(
            &self.bank,
            &self.registry,
            &clearer,
            &self.template(like),
            no,
            today(),
            self.now,
        )
        .await
        .unwrap()
        .expect("something to clear");
        deliver_one(&self.bank, &self.bank_net, self.now).await;
        let request = body_of(&record.body, VoucherFlag::Original).voucher;
        let mut states = HashMap::new();
        for d in &request.details {
            let key = VoucherKey {
                vt_code: "5201".into(),
                voucher_no: d.get("VoucherNo").unwrap().into(),
                ..record.key.clone()
            };
            states.insert(key, PaidState::ReceiptSent);
        }
        let paid = |k: &VoucherKey| states.get(k).copied().unwrap_or(PaidState::Unknown);
        let pboc_sealer = self.pboc_zqz.signer(&self.pki);
        let pboc = self.pboc_desk(&pboc_sealer);
        let cleared = clear_received(&self.pboc, &self.registry, &pboc, &paid, 100, self.now)
            .await
            .unwrap();
        assert!(
            matches!(&cleared[..], [ClearOutcome::Cleared { .. }]),
            "{cleared:?}"
        );
        deliver_one(&self.pboc, &self.pboc_net, self.now).await;
        // The bank books PBOC's receipt: the receivable is settled.
        let read = self
            .bank
            .library()
            .read(100, "teller", self.now)
            .await
            .unwrap();
        assert_eq!(read.len(), 1);
        let settled = settle_receipt(&self.bank, "teller", &read[0], self.now)
            .await
            .unwrap();
        assert!(
            matches!(settled, SettleOutcome::Settled { .. }),
            "{settled:?}"
        );
        record.key
    }

    fn refund_desk<'a>(&self, maker: &'a Signer<'a>, sealer: &'a Signer<'a>) -> RefundDesk<'a> {
        RefundDesk {
            me: BANK_CODE,
            finance: FINANCE_CODE,
            pboc: PBOC_CODE,
            actor: "refund-clerk",
            suite: Suite::Sm,
            maker,
            sealer,
        }
    }

    async fn record_refund(&self, request: &RefundRequest) -> Result<Refunded, RefundError> {
        let maker = sign(&self.bank_maker);
        let sealer = self.bank_ywzyz.signer(&self.pki);
        let desk = self.refund_desk(&maker, &sealer);
        record_refund(&self.bank, &self.registry, &desk, request, self.now).await
    }

    /// Finance takes what it received, each record by its handler.
    async fn finance_takes(&self) -> Vec<NoticeOutcome> {
        let sealer = self.finance_ywzyz.signer(&self.pki);
        let desk = NoticeDesk {
            me: FINANCE_CODE,
            actor: "clerk",
            suite: Suite::Sm,
            sealer: &sealer,
        };
        let mut outcomes = Vec::new();
        for record in self
            .finance
            .library()
            .read(100, "clerk", self.now)
            .await
            .unwrap()
        {
            outcomes.push(
                on_refund_notice(&self.finance, &self.registry, &desk, &record, self.now)
                    .await
                    .unwrap(),
            );
        }
        outcomes
    }

    /// PBOC takes what it received.
    async fn pboc_takes(&self) -> Vec<RequestOutcome> {
        let sealer = self.pboc_zqz.signer(&self.pki);
        let pboc = self.pboc_desk(&sealer);
        let mut outcomes = Vec::new();
        for record in self
            .pboc
            .library()
            .read(100, "treasury", self.now)
            .await
            .unwrap()
        {
            outcomes.push(
                on_refund_request(&self.pboc, &self.registry, &pboc, &record, self.now)
                    .await
                    .unwrap(),
            );
        }
        outcomes
    }

    /// The bank takes the receipts it received.
    async fn bank_takes(&self) -> Vec<ReceiptOutcome> {
        let mut outcomes = Vec::new();
        for record in self
            .bank
            .library()
            .read(100, "teller", self.now)
            .await
            .unwrap()
        {
            outcomes.push(
                on_refund_receipt(&self.bank, "teller", &record, self.now)
                    .await
                    .unwrap(),
            );
        }
        outcomes
    }

    async fn deliver(&self, store: &Store, net: &InMemory) -> usize {
        let report = deliver_due(store, net, self.now, 10, BACKOFF)
            .await
            .unwrap();
        assert_eq!(report.refused, 0, "{report:?}");
        report.delivered
    }

    fn trust(&self) -> TrustContext<'_> {
        TrustContext {
            anchor: &self.pki.root,
            intermediates: &[],
            crls: &[],
            revocation: RevocationPolicy::CheckIfPresent,
            now: self.pki.now,
        }
    }
}

fn request_for(original: &VoucherKey, amount: Amount, n: u32) -> RefundRequest {
    RefundRequest {
        original: original.clone(),
        amount,
        refund_type: RefundType::Single,
        notice_no: format!("TZ2025011500{n}"),
        request_no: format!("TK2025011500{n}"),
        date: today(),
        dictate_no: format!("20250115000{n}"),
        msg: PayMsg::Large,
        entrust_date: today(),
        remark: Some("收款人账号不存在，退汇".into()),
    }
}

/// The refusal of a refund that must be refused.
fn refused(result: Result<Refunded, RefundError>) -> RefundRefusal {
    match result {
        Err(e) => e
            .refusal()
            .cloned()
            .unwrap_or_else(|| panic!("not a refusal: {e}")),
        Ok(done) => panic!("not refused: {done:?}"),
    }
}

/// What the bank's books hold, to show nothing moved.
async fn bank_books(w: &World, tenant: Tenant) -> Vec<(u128, u128)> {
    let mut all = Vec::new();
    for a in [
        BookAccount::advance(tenant),
        BookAccount::finance_zba(tenant),
        BookAccount::payees(tenant),
        BookAccount::receivable_pboc(tenant),
        BookAccount::pboc_reserve(tenant),
    ] {
        all.push(posted(&w.bank, &a).await);
    }
    all
}

// ----- the scenarios -------------------------------------------------------------------------

async fn a_refund_restores_both_quotas_and_zeroes_the_zba(backend: Backend) {
    let w = World::new(backend).await;
    let body = w.issue_5201(1, fen(10_000)).await;
    let key = body.voucher.key();
    let amount = payment_amount(&body.voucher).unwrap();
    let a = fen_of(amount);
    let tenant = tenant_of(&key).unwrap();
    w.bank_pays(&body).await;
    w.pboc_books(&body.voucher, amount.checked_add(fen(50_000)).unwrap(), 1)
        .await;
    let clearing = w.clear(&body.voucher, "QS20250115001").await;

    // Before: finance's plan used, PBOC's clearing quota used, the ZBA at zero.
    assert_eq!(
        quota(&w.finance, AccountKind::Plan, tenant).await,
        (a + 10_000, 10_000)
    );
    assert_eq!(
        quota(&w.pboc, AccountKind::ClearingQuota, tenant).await,
        (a + 50_000, 50_000)
    );
    let tsa_before = posted(&w.pboc, &BookAccount::tsa(tenant)).await;
    assert_eq!(tsa_before.0, a, "the TSA paid the clearing");
    assert!(w.bank.nonzero_zbas(tenant).await.unwrap().is_empty());

    // 1. The bank records the refund: money back in the ZBA, two vouchers sent.
    let mut all = request_for(&key, amount, 1);
    all.refund_type = RefundType::All;
    let refunded = w.record_refund(&all).await.unwrap();
    assert_eq!(refunded.booked, Applied::Done);
    assert_eq!(refunded.amount, amount);
    assert_eq!(refunded.notice.key.vt_code, VT_2203);
    assert_eq!(refunded.request.key.vt_code, VT_2302);
    let original = status(&w.bank, &key, Leg::Original).await.unwrap();
    assert_eq!(original.processing, Some(Processing::Bounced));
    assert_eq!(posted(&w.bank, &BookAccount::payees(tenant)).await, (a, a));
    assert_eq!(
        posted(&w.bank, &BookAccount::finance_zba(tenant)).await,
        (a, 2 * a),
        "the refund waits in the ZBA"
    );
    assert_eq!(w.bank.nonzero_zbas(tenant).await.unwrap().len(), 1);
    let notice = body_of(&refunded.notice.body, VoucherFlag::Original).voucher;
    let h = &notice.header;
    assert_eq!(h.get("OriVoucherNo"), Some(key.voucher_no.as_str()));
    assert_eq!(h.get("RefundType"), Some("2"));
    assert_eq!(h.get("PayAmt"), Some(amount.to_string().as_str()));
    assert_eq!(h.get("AgencyCode"), body.voucher.header.get("AgencyCode"));
    let request2302 = body_of(&refunded.request.body, VoucherFlag::Original).voucher;
    let h = &request2302.header;
    assert_eq!(h.get("PayAmt"), Some(amount.negated().to_string().as_str()));
    assert_eq!(h.get("TKLX"), Some("1"));
    assert_eq!(h.get("PayMsgNo"), Some("100"));
    assert_eq!(h.get("PayBankNo"), Some(BANK_CODE));
    assert_eq!(
        request2302.details[0].get("VoucherNo"),
        Some(key.voucher_no.as_str())
    );
    // Repeating the same request finishes nothing new and books nothing twice.
    let again = w.record_refund(&all).await.unwrap();
    assert_eq!(again.booked, Applied::AlreadyDone);
    assert_eq!(again.notice.key, refunded.notice.key);
    assert_eq!(posted(&w.bank, &BookAccount::payees(tenant)).await, (a, a));
    assert_eq!(w.deliver(&w.bank, &w.bank_net).await, 2);

    // 2. Finance restores its plan quota and returns a sealed receipt.
    let taken = w.finance_takes().await;
    match &taken[..] {
        [
            NoticeOutcome::Accepted {
                key: k,
                original: o,
                amount: got,
                restored,
            },
        ] => {
            assert_eq!(k, &refunded.notice.key);
            assert_eq!(o, &key);
            assert_eq!(*got, amount);
            assert_eq!(
                *restored,
                Restored::Plan {
                    amount,
                    applied: Applied::Done
                }
            );
        }
        other => panic!("not accepted: {other:?}"),
    }
    assert_eq!(
        quota(&w.finance, AccountKind::Plan, tenant).await.1,
        a + 10_000,
        "the plan quota is whole again"
    );
    assert_eq!(quota(&w.finance, AccountKind::PlanUsed, tenant).await.1, 0);

    // 3. PBOC restores the clearing quota and the TSA, and returns a sealed receipt.
    let taken = w.pboc_takes().await;
    match &taken[..] {
        [
            RequestOutcome::Refunded {
                key: k,
                amount: got,
            },
        ] => {
            assert_eq!(k, &refunded.request.key);
            assert_eq!(*got, amount);
        }
        other => panic!("not refunded: {other:?}"),
    }
    assert_eq!(
        quota(&w.pboc, AccountKind::ClearingQuota, tenant).await.1,
        a + 50_000,
        "the clearing quota is whole again"
    );
    let tsa = posted(&w.pboc, &BookAccount::tsa(tenant)).await;
    assert_eq!(
        tsa,
        (tsa_before.0, tsa_before.1 + a),
        "the money is back in the TSA"
    );
    let ck = clearing_key(&body.voucher);
    assert_eq!(posted(&w.pboc, &BookAccount::cleared(&ck)).await, (a, a));
    assert_eq!(w.deliver(&w.finance, &w.finance_net).await, 1);
    assert_eq!(w.deliver(&w.pboc, &w.pboc_net).await, 1);

    // 4. The bank takes both receipts; the 2302's sends the money on: the ZBA is at zero.
    let taken = w.bank_takes().await;
    assert_eq!(taken.len(), 2, "{taken:?}");
    let mut cleared = Vec::new();
    for outcome in &taken {
        match outcome {
            ReceiptOutcome::Booked { cleared: c, .. } => cleared.push(*c),
            other => panic!("not booked: {other:?}"),
        }
    }
    cleared.sort();
    assert_eq!(cleared, vec![None, Some(amount)]);
    assert!(w.bank.nonzero_zbas(tenant).await.unwrap().is_empty());
    assert_eq!(
        posted(&w.bank, &BookAccount::finance_zba(tenant)).await,
        (2 * a, 2 * a)
    );
    // The reserve paid the clearing in and the refund out: back where it started.
    assert_eq!(
        posted(&w.bank, &BookAccount::pboc_reserve(tenant)).await,
        (a, a)
    );
    for sent in [&refunded.notice.key, &refunded.request.key] {
        let record = status(&w.bank, sent, Leg::Original).await.unwrap();
        assert_eq!(record.exchange, Exchange::ReceiptReceived, "{sent}");
        let receipt = status(&w.bank, sent, Leg::Receipt).await.unwrap();
        assert_eq!(receipt.processing, Some(Processing::Processed));
        let receipt = body_of(&receipt.body, VoucherFlag::Receipt);
        let ty = type_of(&w.registry, &receipt.voucher).unwrap();
        let verification = verify(Suite::Sm, ty, &receipt, &w.trust()).unwrap();
        assert!(matches!(verification, Verification::Receipt(_)));
        assert!(verification.is_complete_and_valid(), "{verification}");
    }
    let receipt = status(&w.bank, &refunded.request.key, Leg::Receipt)
        .await
        .unwrap();
    let receipt = body_of(&receipt.body, VoucherFlag::Receipt).voucher;
    assert_eq!(
        receipt.header.get("XPayAmt"),
        Some(amount.negated().to_string().as_str())
    );
    assert_eq!(receipt.header.get("XPaySndBnkNo"), Some(PBOC_BANK_NO));
    assert!(status(&w.bank, &clearing, Leg::Receipt).await.is_some());

    // A second refund of the same payment: refused, nothing booked or written.
    let books = bank_books(&w, tenant).await;
    let second = request_for(&key, fen(1), 2);
    match refused(w.record_refund(&second).await) {
        RefundRefusal::AlreadyRefunded { key: k, .. } => assert_eq!(*k, key),
        other => panic!("not refused as already refunded: {other}"),
    }
    assert_eq!(bank_books(&w, tenant).await, books);
    let second_notice = VoucherKey {
        vt_code: VT_2203.into(),
        voucher_no: second.notice_no.clone(),
        ..key.clone()
    };
    assert!(
        status(&w.bank, &second_notice, Leg::Original)
            .await
            .is_none()
    );
    assert_eq!(w.deliver(&w.bank, &w.bank_net).await, 0);
    assert_eq!(
        quota(&w.finance, AccountKind::Plan, tenant).await,
        (2 * a + 10_000, a + 10_000)
    );
}

async fn a_refund_above_what_was_paid_or_not_cleared_is_refused(backend: Backend) {
    let w = World::new(backend).await;
    let body = w.issue_5201(1, fen(10_000)).await;
    let key = body.voucher.key();
    let amount = payment_amount(&body.voucher).unwrap();
    let tenant = tenant_of(&key).unwrap();
    w.bank_pays(&body).await;

    // Paid but not cleared yet: refused.
    let books = bank_books(&w, tenant).await;
    assert_eq!(
        refused(w.record_refund(&request_for(&key, amount, 1)).await),
        RefundRefusal::NotCleared(Box::new(key.clone()))
    );
    assert_eq!(bank_books(&w, tenant).await, books);
    w.pboc_books(&body.voucher, amount, 1).await;
    w.clear(&body.voucher, "QS20250115001").await;
    let books = bank_books(&w, tenant).await;

    // One fen above what was paid: refused with the amounts.
    let above = request_for(&key, amount.checked_add(fen(1)).unwrap(), 2);
    let e = w.record_refund(&above).await.unwrap_err();
    assert!(!e.is_retryable());
    assert!(e.to_string().contains(&amount.to_string()), "{e}");
    assert!(
        matches!(e.refusal(), Some(RefundRefusal::AbovePaid { .. })),
        "{e}"
    );
    // RefundType 2 (全部) for less than all: refused.
    let mut part = request_for(&key, fen(1), 3);
    part.refund_type = RefundType::All;
    assert!(matches!(
        refused(w.record_refund(&part).await),
        RefundRefusal::NotAll { .. }
    ));
    // A voucher the bank never received, and one that is not a payment.
    let unknown = VoucherKey {
        voucher_no: "PZ0000000001".into(),
        ..key.clone()
    };
    assert_eq!(
        refused(w.record_refund(&request_for(&unknown, fen(1), 4)).await),
        RefundRefusal::Unknown(Box::new(unknown.clone()))
    );
    let not_payment = VoucherKey {
        vt_code: "5108".into(),
        ..key.clone()
    };
    assert_eq!(
        refused(w.record_refund(&request_for(&not_payment, fen(1), 5)).await),
        RefundRefusal::NotAPayment(Box::new(not_payment.clone()))
    );

    // Nothing booked, written or sent by any of them; the payment is still refundable.
    assert_eq!(bank_books(&w, tenant).await, books);
    let original = status(&w.bank, &key, Leg::Original).await.unwrap();
    assert_eq!(original.processing, Some(Processing::ReceiptSent));
    for n in 1..=5 {
        let r = request_for(&key, fen(1), n);
        for (vt, no) in [(VT_2203, &r.notice_no), (VT_2302, &r.request_no)] {
            let k = VoucherKey {
                vt_code: vt.into(),
                voucher_no: no.clone(),
                ..key.clone()
            };
            assert!(status(&w.bank, &k, Leg::Original).await.is_none(), "{k}");
        }
    }
    assert_eq!(w.deliver(&w.bank, &w.bank_net).await, 0);
    // A partial refund within what was paid goes through.
    let refunded = w
        .record_refund(&request_for(&key, fen(1), 6))
        .await
        .unwrap();
    assert_eq!(refunded.booked, Applied::Done);
    assert_eq!(
        posted(&w.bank, &BookAccount::payees(tenant)).await,
        (1, fen_of(amount))
    );
}

async fn pboc_returns_a_refund_request_for_a_payment_it_did_not_clear(backend: Backend) {
    let w = World::new(backend).await;
    let body = w.issue_5201(1, fen(10_000)).await;
    let key = body.voucher.key();
    let amount = payment_amount(&body.voucher).unwrap();
    let tenant = tenant_of(&key).unwrap();
    w.bank_pays(&body).await;
    w.pboc_books(&body.voucher, amount, 1).await;
    // A 2302 shaped like the one a clearing would give, but PBOC never cleared the payment.
    let mut listing = w.template(&body.voucher);
    listing.set("VtCode", "2301");
    listing.set("VoucherNo", "QS20250115009");
    listing.set("PayTypeCode", "11");
    let mut line = Fields::new();
    line.set("VoucherNo", key.voucher_no.clone());
    line.set("AgencyCode", body.voucher.header.get("AgencyCode").unwrap());
    line.set(
        "ExpFuncCode",
        body.voucher.header.get("ExpFuncCode").unwrap(),
    );
    let fake = Voucher {
        header: listing,
        details: vec![line],
    };
    let voucher = request_voucher(&fake, &request_for(&key, amount, 1)).unwrap();
    let maker = sign(&w.bank_maker);
    let sealer = w.bank_ywzyz.signer(&w.pki);
    let desk = w.refund_desk(&maker, &sealer);
    let sent = send_request(&w.bank, &w.registry, &desk, voucher, w.now)
        .await
        .unwrap();
    assert_eq!(w.deliver(&w.bank, &w.bank_net).await, 1);
    let quota_before = quota(&w.pboc, AccountKind::ClearingQuota, tenant).await;
    let tsa_before = posted(&w.pboc, &BookAccount::tsa(tenant)).await;

    let taken = w.pboc_takes().await;
    match &taken[..] {
        [RequestOutcome::Returned { key: k, reasons }] => {
            assert_eq!(k, &sent.key);
            assert!(
                reasons
                    .iter()
                    .any(|r| r.contains("not listed in a clearing request")),
                "{reasons:?}"
            );
        }
        other => panic!("not returned: {other:?}"),
    }
    assert_eq!(
        quota(&w.pboc, AccountKind::ClearingQuota, tenant).await,
        quota_before
    );
    assert_eq!(posted(&w.pboc, &BookAccount::tsa(tenant)).await, tsa_before);
    let at_pboc = status(&w.pboc, &sent.key, Leg::Original).await.unwrap();
    assert_eq!(at_pboc.exchange, Exchange::Returned);
    assert_eq!(at_pboc.processing, Some(Processing::Returned));
    assert!(status(&w.pboc, &sent.key, Leg::Receipt).await.is_none());
}

async fn an_authorized_refund_restores_the_units_plan_quota_at_the_bank(backend: Backend) {
    let w = World::new(backend).await;
    let body = signed_8202(&w.pki, &w.registry, 1);
    let key = body.voucher.key();
    let asked = check_8202(&body.voucher).unwrap();
    let (tenant, unit, month, amount) = (asked.tenant, asked.unit, asked.month, asked.amount);
    let a = fen_of(amount);
    // The bank keeps the unit's plan quota (amount + 100.00) and its zero-balance account.
    create_missing(
        &w.bank,
        vec![
            BookAccount::quota_notice_source(tenant),
            BookAccount::unit_quota(tenant, &unit, month).unwrap(),
            BookAccount::unit_quota_used(tenant, &unit, month).unwrap(),
            BookAccount::advance(tenant),
            BookAccount::unit_zba(tenant, &unit),
            BookAccount::payees(tenant),
            BookAccount::pboc_reserve(tenant),
        ],
    )
    .await;
    let plan = amount.checked_add(fen(10_000)).unwrap();
    apply(
        &w.bank,
        w.now,
        &[BookOp::notice_unit_quota(1, tenant, &unit, month, plan).unwrap()],
    )
    .await;

    // The unit sends the 8202, the bank pays it, the unit books the receipt.
    let route = Route {
        me: UNIT_CODE,
        to: BANK_CODE,
        actor: "cashier",
    };
    authorized::issue(&w.unit, &w.registry, UNIT_ACCOUNTS[0], &body, route, w.now)
        .await
        .unwrap();
    assert_eq!(w.deliver(&w.unit, &w.unit_net).await, 1);
    let sealer = w.bank_zqz.signer(&w.pki);
    let teller = Bank {
        me: BANK_CODE,
        actor: "teller",
        pay_date: today(),
        serial_prefix: "ICBC",
        suite: Suite::Sm,
        sealer: &sealer,
    };
    let paid = authorized::pay_received(&w.bank, &w.registry, &teller, UNIT_ACCOUNTS, 100, w.now)
        .await
        .unwrap();
    assert!(matches!(&paid[..], [PayOutcome::Paid { .. }]), "{paid:?}");
    assert_eq!(w.deliver(&w.bank, &w.bank_net).await, 1);
    let booked = authorized::book_receipts(&w.unit, "cashier", 100, w.now)
        .await
        .unwrap();
    assert!(
        matches!(&booked[..], [PaymentReceipt::Done { .. }]),
        "{booked:?}"
    );
    assert_eq!(
        quota(&w.bank, AccountKind::UnitQuota, tenant).await.1,
        10_000
    );

    // Cleared under PayTypeCode 12 against PBOC's authorized clearing quota.
    let ck = clearing_key_of(&body.voucher, PayType::Authorized);
    w.pboc_books_for(&ck, amount, 1).await;
    let listed = Listed {
        voucher_no: key.voucher_no.clone(),
        agency: UNIT_CODE.into(),
        func: body.voucher.header.get("ExpFuncCode").unwrap().into(),
        amount,
        summary: None,
    };
    let request = guoku_node::flows::clearing::request_voucher(
        &w.template(&body.voucher),
        "QS20250115001",
        today(),
        PayType::Authorized,
        &[listed],
    )
    .unwrap();
    let maker = sign(&w.bank_maker);
    let seal = w.bank_ywzyz.signer(&w.pki);
    let clearer = Clearer {
        me: BANK_CODE,
        pboc: PBOC_CODE,
        actor: "clearing-clerk",
        suite: Suite::Sm,
        maker: &maker,
        sealer: &seal,
    };
    send_clearing_request(&w.bank, &w.registry, &clearer, request, w.now)
        .await
        .unwrap();
    assert_eq!(w.deliver(&w.bank, &w.bank_net).await, 1);
    let pboc_sealer = w.pboc_zqz.signer(&w.pki);
    let pboc = w.pboc_desk(&pboc_sealer);
    let paid_state = |k: &VoucherKey| {
        if k == &key {
            PaidState::ReceiptSent
        } else {
            PaidState::Unknown
        }
    };
    let cleared = clear_received(&w.pboc, &w.registry, &pboc, &paid_state, 100, w.now)
        .await
        .unwrap();
    assert!(
        matches!(&cleared[..], [ClearOutcome::Cleared { .. }]),
        "{cleared:?}"
    );
    assert_eq!(w.deliver(&w.pboc, &w.pboc_net).await, 1);
    assert_eq!(
        w.bank
            .library()
            .read(100, "teller", w.now)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        quota(&w.pboc, AccountKind::ClearingQuota, tenant).await.1,
        0
    );

    // The refund: the unit's plan quota is restored at the bank, a 2204 goes to finance.
    let refunded = w
        .record_refund(&request_for(&key, amount, 1))
        .await
        .unwrap();
    assert_eq!(refunded.notice.key.vt_code, VT_2204);
    assert_eq!(refunded.notice.receiver, FINANCE_CODE);
    assert_eq!(
        quota(&w.bank, AccountKind::UnitQuota, tenant).await.1,
        a + 10_000,
        "the unit's plan quota is whole again"
    );
    assert_eq!(
        posted(&w.bank, &BookAccount::unit_zba(tenant, &unit)).await,
        (a, 2 * a)
    );
    assert_eq!(w.deliver(&w.bank, &w.bank_net).await, 2);
    // Finance keeps no quota for authorized payments: it takes the notice, restores nothing.
    match &w.finance_takes().await[..] {
        [NoticeOutcome::Accepted { restored, .. }] => assert_eq!(*restored, Restored::Nothing),
        other => panic!("not accepted: {other:?}"),
    }
    match &w.pboc_takes().await[..] {
        [RequestOutcome::Refunded { amount: got, .. }] => assert_eq!(*got, amount),
        other => panic!("not refunded: {other:?}"),
    }
    assert_eq!(
        quota(&w.pboc, AccountKind::ClearingQuota, tenant).await.1,
        a
    );
    assert_eq!(w.deliver(&w.finance, &w.finance_net).await, 1);
    assert_eq!(w.deliver(&w.pboc, &w.pboc_net).await, 1);
    let taken = w.bank_takes().await;
    assert_eq!(taken.len(), 2, "{taken:?}");
    assert!(
        taken
            .iter()
            .all(|t| matches!(t, ReceiptOutcome::Booked { .. })),
        "{taken:?}"
    );
    assert!(w.bank.nonzero_zbas(tenant).await.unwrap().is_empty());
    assert_eq!(
        posted(&w.bank, &BookAccount::unit_zba(tenant, &unit)).await,
        (2 * a, 2 * a)
    );
}

both_backends!(
    refund_end_to_end,
    a_refund_restores_both_quotas_and_zeroes_the_zba
);
both_backends!(
    refund_refusals,
    a_refund_above_what_was_paid_or_not_cleared_is_refused
);
both_backends!(
    authorized_refund,
    an_authorized_refund_restores_the_units_plan_quota_at_the_bank
);
both_backends!(
    pboc_refund_check,
    pboc_returns_a_refund_request_for_a_payment_it_did_not_clear
);
