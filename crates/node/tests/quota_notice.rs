//! Clearing-quota notices end to end (DOMAIN §3.1 step 2): finance builds and stamps a
//! 5108, sends it to PBOC; PBOC checks it, books it on its clearing quota, seals the
//! receipt with its 国库业务专用章 and returns it; finance takes the receipt (original at 12).
//! A negative 5108 beyond the unused quota is refused by the books (核算失败), nothing
//! changed. In-memory network, SQLite in temporary directories, no sleeping.

use guoku_domain::{Amount, BankNo, PayType};
use guoku_node::exchange::InMemory;
use guoku_node::flows::direct::tenant_of;
use guoku_node::flows::quota::{
    NoticeOutcome, Notifier, ReceiptOutcome, Treasury, VT_5108, book_notices, notice_voucher,
    receive_receipts, send_notice,
};
use guoku_node::outbox::deliver_due;
use guoku_node::stamping::{Verification, type_of, verify};
use guoku_seal::Suite;
use guoku_seal::pki::{OrgRole, Post, RevocationPolicy};
use guoku_seal::voucher::{Signer, StampKind, TrustContext};
use guoku_store::Store;
use guoku_store::books::{AccountKind, BookAccount, BookFilter, BookOp, ClearingKey};
use guoku_voucher::lifecycle::{Exchange, Leg, Processing};
use guoku_voucher::sample::{Style, sample};
use guoku_voucher::{Registry, VoucherFlag, VoucherKey};

mod common;
use common::*;

struct World {
    pki: Pki,
    registry: Registry,
    finance: Store,
    finance_net: InMemory,
    pboc: Store,
    pboc_net: InMemory,
    now: u64,
    _nodes: Nodes,
}

impl World {
    async fn new() -> Self {
        let pki = Pki::new("测试根CA");
        let mut nodes = Nodes::new(Backend::Sqlite);
        let (finance, finance_net) = nodes.join(&pki, "finance", finance_peer()).await;
        let (pboc, pboc_net) = nodes.join(&pki, "pboc", pboc_peer()).await;
        let now = unix_now(&pki);
        Self {
            pki,
            registry: Registry::builtin(),
            finance,
            finance_net,
            pboc,
            pboc_net,
            now,
            _nodes: nodes,
        }
    }

    /// The registry's sample 5108.
    fn template(&self) -> guoku_voucher::Voucher {
        let ty = self.registry.get(VT_5108).unwrap();
        sample(ty, today(), VoucherFlag::Original, Style::Plain, 3)
    }

    /// The direct clearing quota the sample 5108 names, for this bank.
    fn key(&self) -> ClearingKey {
        let t = self.template();
        let d = &t.details[0];
        ClearingKey {
            tenant: tenant_of(&t.key()).unwrap(),
            bank: BANK_CODE.parse::<BankNo>().unwrap(),
            unit: d.get("AgencyCode").unwrap().parse().unwrap(),
            func: d.get("ExpFuncCode").unwrap().parse().unwrap(),
            fund: t.header.get("FundTypeCode").unwrap().parse().unwrap(),
            pay: PayType::Direct,
        }
    }

    /// Finance builds a 5108 of `amount`, stamps it (maker, 财政业务专用章) and the outbox
    /// delivers it to PBOC.
    async fn finance_sends(&self, amount: Amount, no: &str) -> VoucherKey {
        let finance_org = finance();
        let maker = self.pki.person(&finance_org, Post::Maker, "张三");
        let signer = self.pki.person(&finance_org, Post::Signer, "王五");
        let seal = self
            .pki
            .seal(&finance_org, StampKind::Ywzyz, "财政业务专用章", &signer);
        let maker = sign(&maker);
        let sealer = Signer::Seal {
            seal: &seal,
            key: &signer.key,
            certificate: &signer.cert,
            time: self.pki.now,
        };
        let notifier = Notifier {
            me: FINANCE_CODE,
            pboc: PBOC_CODE,
            actor: "quota-clerk",
            suite: Suite::Sm,
            maker: &maker,
            sealer: &sealer,
        };
        let voucher = notice_voucher(&self.template(), &self.key(), amount, no, today()).unwrap();
        assert_eq!(voucher.vt_code(), VT_5108);
        let record = send_notice(&self.finance, &self.registry, &notifier, voucher, self.now)
            .await
            .unwrap();
        assert_eq!(record.exchange, Exchange::NotReceived);
        deliver_one(&self.finance, &self.finance_net, self.now).await;
        record.key
    }

    async fn pboc_books(&self) -> Vec<NoticeOutcome> {
        let pboc_org = org(OrgRole::Pboc, PBOC_CODE, "中国人民银行长沙中心支行");
        let signer = self.pki.person(&pboc_org, Post::Signer, "周九");
        let seal = self
            .pki
            .seal(&pboc_org, StampKind::Ywzyz, "国库业务专用章", &signer);
        let sealer = Signer::Seal {
            seal: &seal,
            key: &signer.key,
            certificate: &signer.cert,
            time: self.pki.now,
        };
        let treasury = Treasury {
            me: PBOC_CODE,
            actor: "treasury",
            suite: Suite::Sm,
            sealer: &sealer,
        };
        book_notices(&self.pboc, &self.registry, &treasury, 100, self.now)
            .await
            .unwrap()
    }

    /// Clearing quota (granted, remaining) at PBOC.
    async fn quota(&self) -> (u128, u128) {
        let s = self
            .pboc
            .quota_summary(BookFilter::all(
                AccountKind::ClearingQuota,
                self.key().tenant,
            ))
            .await
            .unwrap();
        (s.granted, s.remaining)
    }

    async fn status(
        &self,
        store: &Store,
        key: &VoucherKey,
        leg: Leg,
    ) -> Option<guoku_store::library::VoucherRecord> {
        store.library().status(key, leg).await.unwrap()
    }
}

#[tokio::test]
async fn a_5108_adds_clearing_quota_and_its_receipt_reaches_finance() {
    let w = World::new().await;
    assert_eq!(w.quota().await, (0, 0));
    let key = w.finance_sends(fen(100_000), "QE20250115001").await;

    let outcomes = w.pboc_books().await;
    match &outcomes[..] {
        [NoticeOutcome::Booked { key: k, amount }] => {
            assert_eq!(k, &key);
            assert_eq!(*amount, fen(100_000));
        }
        other => panic!("not booked: {other:?}"),
    }
    assert_eq!(w.quota().await, (100_000, 100_000));
    let quota = w
        .pboc
        .account(BookAccount::clearing_quota(&w.key()).id())
        .await
        .unwrap()
        .expect("the notice opened the clearing quota row");
    assert_eq!(quota.credits_posted, 100_000);
    let at_pboc = w.status(&w.pboc, &key, Leg::Original).await.unwrap();
    assert_eq!(at_pboc.exchange, Exchange::Acknowledged);
    assert_eq!(at_pboc.processing, Some(Processing::ReceiptSent));

    // The receipt reaches finance, sealed by PBOC at its receipt position.
    let back = deliver_due(&w.pboc, &w.pboc_net, w.now, 10, BACKOFF)
        .await
        .unwrap();
    assert_eq!(back.delivered, 1, "{back:?}");
    let taken = receive_receipts(&w.finance, "quota-clerk", 10, w.now)
        .await
        .unwrap();
    assert!(
        matches!(&taken[..], [ReceiptOutcome::Received { key: k }] if k == &key),
        "{taken:?}"
    );
    let original = w.status(&w.finance, &key, Leg::Original).await.unwrap();
    assert_eq!(original.exchange, Exchange::ReceiptReceived);
    assert_eq!(
        w.finance
            .library()
            .status_code(&key, Leg::Original)
            .await
            .unwrap(),
        12
    );
    let receipt = w.status(&w.finance, &key, Leg::Receipt).await.unwrap();
    let receipt = body_of(&receipt.body, VoucherFlag::Receipt);
    let trust = TrustContext {
        anchor: &w.pki.root,
        intermediates: &[],
        crls: &[],
        revocation: RevocationPolicy::CheckIfPresent,
        now: w.pki.now,
    };
    let ty = type_of(&w.registry, &receipt.voucher).unwrap();
    let verification = verify(Suite::Sm, ty, &receipt, &trust).unwrap();
    assert!(matches!(verification, Verification::Receipt(_)));
    assert!(verification.is_complete_and_valid(), "{verification}");
}

#[tokio::test]
async fn a_negative_5108_beyond_the_unused_quota_fails_booking_and_changes_nothing() {
    let w = World::new().await;
    let first = w.finance_sends(fen(100_000), "QE20250115001").await;
    assert!(matches!(
        &w.pboc_books().await[..],
        [NoticeOutcome::Booked { key, .. }] if key == &first
    ));
    // PBOC clears 600.00 against it: 400.00 unused.
    let ck = w.key();
    let t = ck.tenant;
    let created = w
        .pboc
        .create_book_accounts(vec![
            BookAccount::revenue(t),
            BookAccount::tsa(t),
            BookAccount::bank_clearing(t, &ck.bank),
        ])
        .await
        .unwrap();
    assert!(
        created
            .iter()
            .all(|r| *r == guoku_ledger::CreateAccountResult::Ok),
        "{created:?}"
    );
    for outcome in w
        .pboc
        .apply_book_ops(
            w.now,
            &[
                BookOp::fund_tsa(900_001, t, fen(10_000_000)).unwrap(),
                BookOp::clear(900_002, &ck, fen(60_000)).unwrap(),
            ],
        )
        .await
        .unwrap()
    {
        outcome.unwrap();
    }
    assert_eq!(w.quota().await, (100_000, 40_000));

    // Lowering it by 500.00 would take back quota already used.
    let second = w.finance_sends(fen(-50_000), "QE20250115002").await;
    let outcomes = w.pboc_books().await;
    let reason = match &outcomes[..] {
        [NoticeOutcome::BookingFailed { key, reason }] if key == &second => reason.clone(),
        other => panic!("not refused by the books: {other:?}"),
    };
    assert!(reason.contains("额度值已经使用不能被退回"), "{reason}");
    assert_eq!(w.quota().await, (100_000, 40_000), "the quota is unchanged");
    let at_pboc = w.status(&w.pboc, &second, Leg::Original).await.unwrap();
    assert_eq!(at_pboc.processing, Some(Processing::BookingFailed));
    assert!(
        w.status(&w.pboc, &second, Leg::Receipt).await.is_none(),
        "no receipt for a refused notice"
    );

    // Within the unused quota the adjustment is booked.
    let third = w.finance_sends(fen(-40_000), "QE20250115003").await;
    assert!(matches!(
        &w.pboc_books().await[..],
        [NoticeOutcome::Booked { key, amount }] if key == &third && *amount == fen(-40_000)
    ));
    assert_eq!(w.quota().await.1, 0);
}
