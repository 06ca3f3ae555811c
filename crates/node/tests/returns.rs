//! Returns (退回) and voids (作废), DOMAIN §3.5, end to end: the bank returns a 5201 it
//! cannot pay and finance's plan quota comes back once, however often it learns of it;
//! finance voids a 5201 not yet acknowledged and its quota comes back, while an
//! acknowledged or paid one cannot be voided; PBOC returning a clearing-quota notice it
//! booked subtracts it again, refused while the quota is used (额度值已经使用不能被退回);
//! PBOC returning a 2301 it booked adds the clearing quota and money back, and the bank
//! turns the receivable back into fronted money. In-memory network; every scenario on
//! SQLite and on PostgreSQL.

use guoku_domain::{Amount, BankNo, PayType};
use guoku_node::exchange::InMemory;
use guoku_node::flows::clearing::{Clearer, build_request, clearable, clearing_op};
use guoku_node::flows::direct::{
    Bank, PayOutcome, ReceiptOutcome as PaymentReceipt, book_receipts, pay_received,
    payment_amount, tenant_of,
};
use guoku_node::flows::quota::{
    NoticeOutcome, Notifier, Treasury, VT_5108, book_record, notice_deltas, notice_op,
    notice_voucher, send_notice,
};
use guoku_node::flows::returns::{
    Restored, ReturnError, ReturnRefusal, ReturnsCtx, Reversed, on_returned, return_received, void,
};
use guoku_node::outbox::deliver_due;
use guoku_seal::Suite;
use guoku_seal::pki::Post;
use guoku_seal::voucher::StampKind;
use guoku_store::Store;
use guoku_store::books::{AccountKind, Applied, BookAccount, BookOp, ClearingKey};
use guoku_store::library::VoucherRecord;
use guoku_voucher::lifecycle::{Exchange, Leg, Processing, ProcessingEvent};
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
    _pboc_net: InMemory,
    now: u64,
    bank_maker: Holder,
    bank_zqz: SealHolder,
    bank_ywzyz: SealHolder,
    finance_ywzyz: SealHolder,
    finance_maker: Holder,
    pboc_ywzyz: SealHolder,
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
        let now = unix_now(&pki);
        let bank_maker = pki.person(&bank_org, Post::Maker, "钱七");
        let bank_zqz = SealHolder::new(&pki, &bank_org, StampKind::Zqz, "转讫章");
        let bank_ywzyz = SealHolder::new(&pki, &bank_org, StampKind::Ywzyz, "代理银行业务专用章");
        let finance_ywzyz = SealHolder::new(&pki, &finance_org, StampKind::Ywzyz, "财政业务专用章");
        let finance_maker = pki.person(&finance_org, Post::Maker, "张三");
        let pboc_ywzyz = SealHolder::new(&pki, &pboc_org(), StampKind::Ywzyz, "国库业务专用章");
        Self {
            pki,
            registry: Registry::builtin(),
            finance,
            finance_net,
            bank,
            bank_net,
            pboc,
            _pboc_net: pboc_net,
            now,
            bank_maker,
            bank_zqz,
            bank_ywzyz,
            finance_ywzyz,
            finance_maker,
            pboc_ywzyz,
            _nodes: nodes,
        }
    }

    /// Finance issues the 5201 `n` from a plan of its amount + `spare`, and the outbox
    /// delivers it to the bank.
    async fn issue_5201(&self, n: u64, spare: Amount) -> EnvelopeBody {
        let body = self.issue_5201_kept(n, spare).await;
        deliver_one(&self.finance, &self.finance_net, self.now).await;
        body
    }

    /// Finance issues the 5201 `n` from a plan of its amount + `spare`; not delivered yet.
    async fn issue_5201_kept(&self, n: u64, spare: Amount) -> EnvelopeBody {
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
        let key = clearing_key(voucher);
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

    async fn deliver(&self, store: &Store, net: &InMemory) -> usize {
        let report = deliver_due(store, net, self.now, 10, BACKOFF)
            .await
            .unwrap();
        assert_eq!(report.refused, 0, "{report:?}");
        report.delivered
    }
}

const CTX: ReturnsCtx<'static> = ReturnsCtx {
    actor: "returns-clerk",
};

impl World {
    /// The bank reads what it received and acknowledges each (签收), as before paying.
    async fn bank_acknowledges(&self) -> Vec<VoucherKey> {
        let library = self.bank.library();
        let mut keys = Vec::new();
        for record in library.read(100, "teller", self.now).await.unwrap() {
            library
                .acknowledge(&record.key, Leg::Original, "teller", self.now)
                .await
                .unwrap();
            keys.push(record.key);
        }
        keys
    }

    /// Finance sends a 5108 of `amount` on the clearing quota `key`; the outbox delivers it.
    async fn finance_sends_5108(&self, key: &ClearingKey, amount: Amount, no: &str) -> VoucherKey {
        let ty = self.registry.get(VT_5108).unwrap();
        let template = sample(ty, today(), VoucherFlag::Original, Style::Plain, 3);
        let voucher = notice_voucher(&template, key, amount, no, today()).unwrap();
        let maker = sign(&self.finance_maker);
        let sealer = self.finance_ywzyz.signer(&self.pki);
        let notifier = Notifier {
            me: FINANCE_CODE,
            pboc: PBOC_CODE,
            actor: "quota-clerk",
            suite: Suite::Sm,
            maker: &maker,
            sealer: &sealer,
        };
        let record = send_notice(&self.finance, &self.registry, &notifier, voucher, self.now)
            .await
            .unwrap();
        assert_eq!(self.deliver(&self.finance, &self.finance_net).await, 1);
        record.key
    }

    /// PBOC reads one voucher and takes it through validation, booking `op` there (ITFE
    /// adds a notice's quota, or deducts a clearing, while it validates): booked, not yet
    /// processed, so it may still be returned.
    async fn pboc_validates_and_books(&self, op: impl FnOnce(&Voucher) -> BookOp) -> VoucherRecord {
        let library = self.pboc.library();
        let read = library.read(100, "treasury", self.now).await.unwrap();
        assert_eq!(read.len(), 1, "{read:?}");
        let record = &read[0];
        library
            .acknowledge(&record.key, Leg::Original, "treasury", self.now)
            .await
            .unwrap();
        for event in [
            ProcessingEvent::StartValidation,
            ProcessingEvent::PassValidation,
        ] {
            library
                .process(
                    &record.key,
                    Leg::Original,
                    event,
                    None,
                    "treasury",
                    self.now,
                )
                .await
                .unwrap();
        }
        let voucher = body_of(&record.body, VoucherFlag::Original).voucher;
        apply(&self.pboc, self.now, &[op(&voucher)]).await;
        status(&self.pboc, &record.key, Leg::Original)
            .await
            .unwrap()
    }
}

/// PBOC's accounts for the clearing quota `key`, with a funded TSA.
async fn pboc_accounts(w: &World, key: &ClearingKey) {
    let t = key.tenant;
    create_missing(
        &w.pboc,
        vec![
            BookAccount::clearing_notice_source(t),
            BookAccount::clearing_quota(key),
            BookAccount::cleared(key),
            BookAccount::revenue(t),
            BookAccount::tsa(t),
            BookAccount::bank_clearing(t, &key.bank),
        ],
    )
    .await;
}

fn refused(result: Result<impl std::fmt::Debug, ReturnError>) -> ReturnRefusal {
    match result {
        Err(ReturnError::Refused(refusal)) => refusal,
        other => panic!("not refused: {other:?}"),
    }
}

// ----- the scenarios -------------------------------------------------------------------------

async fn a_returned_5201_restores_finance_quota_once(backend: Backend) {
    let w = World::new(backend).await;
    let body = w.issue_5201(1, fen(10_000)).await;
    let key = body.voucher.key();
    let a = fen_of(payment_amount(&body.voucher).unwrap());
    let tenant = tenant_of(&key).unwrap();
    assert_eq!(quota(&w.finance, AccountKind::Plan, tenant).await.1, 10_000);

    // The bank signs for it, cannot pay it and returns it, before any money moved.
    assert_eq!(w.bank_acknowledges().await, vec![key.clone()]);
    let reason = "收款人账号有误 (payee account wrong)";
    let here = return_received(&w.bank, &w.registry, &CTX, &key, reason, w.now)
        .await
        .unwrap();
    assert_eq!(here.reversed, Reversed::Nothing);
    assert!(!here.already);
    let at_bank = status(&w.bank, &key, Leg::Original).await.unwrap();
    assert_eq!(at_bank.exchange, Exchange::Returned);
    assert_eq!(at_bank.processing, Some(Processing::Returned));
    assert_eq!(at_bank.reason.as_deref(), Some(reason));
    let again = return_received(&w.bank, &w.registry, &CTX, &key, reason, w.now)
        .await
        .unwrap();
    assert!(again.already);

    // Finance learns of it (the status sync calls this): its quota comes back, once.
    let first = on_returned(&w.finance, &w.registry, &CTX, &key, reason, w.now)
        .await
        .unwrap();
    assert_eq!(first.exchange, Exchange::Returned);
    let amount = payment_amount(&body.voucher).unwrap();
    assert_eq!(
        first.restored,
        Restored::Plan {
            amount,
            applied: Applied::Done
        }
    );
    let sent = status(&w.finance, &key, Leg::Original).await.unwrap();
    assert_eq!(sent.exchange, Exchange::Returned);
    assert_eq!(sent.status_code(), 5);
    assert_eq!(
        quota(&w.finance, AccountKind::Plan, tenant).await.1,
        a + 10_000
    );
    assert_eq!(quota(&w.finance, AccountKind::PlanUsed, tenant).await.1, 0);
    let second = on_returned(&w.finance, &w.registry, &CTX, &key, reason, w.now)
        .await
        .unwrap();
    assert_eq!(
        second.restored,
        Restored::Plan {
            amount,
            applied: Applied::AlreadyDone
        }
    );
    assert_eq!(
        quota(&w.finance, AccountKind::Plan, tenant).await.1,
        a + 10_000
    );
    // Voiding the returned voucher afterwards restores nothing more.
    let voided = void(&w.finance, &w.registry, &CTX, &key, None, w.now)
        .await
        .unwrap();
    assert_eq!(voided.exchange, Exchange::Voided);
    assert!(matches!(
        voided.restored,
        Restored::Plan {
            applied: Applied::AlreadyDone,
            ..
        }
    ));
    assert_eq!(
        quota(&w.finance, AccountKind::Plan, tenant).await.1,
        a + 10_000
    );

    // A 5201 the bank paid cannot be returned: nothing changes.
    let paid = w.issue_5201(2, fen(0)).await;
    let paid_key = paid.voucher.key();
    w.bank_pays(&paid).await;
    let refusal =
        refused(return_received(&w.bank, &w.registry, &CTX, &paid_key, reason, w.now).await);
    assert!(
        matches!(refusal, ReturnRefusal::NotReturnable { .. }),
        "{refusal}"
    );
    let at_bank = status(&w.bank, &paid_key, Leg::Original).await.unwrap();
    assert_eq!(at_bank.processing, Some(Processing::ReceiptSent));
    // Nor can finance take a return of a voucher whose receipt it booked.
    let refusal =
        refused(on_returned(&w.finance, &w.registry, &CTX, &paid_key, reason, w.now).await);
    assert!(
        matches!(refusal, ReturnRefusal::NotReturnable { .. }),
        "{refusal}"
    );
    let paid_tenant = tenant_of(&paid_key).unwrap();
    assert_eq!(
        quota(&w.finance, AccountKind::Plan, paid_tenant).await.1,
        if paid_tenant == tenant { a + 10_000 } else { 0 }
    );
    // A return needs a reason.
    let other = w.issue_5201(3, fen(0)).await.voucher.key();
    w.bank_acknowledges().await;
    let refusal = refused(return_received(&w.bank, &w.registry, &CTX, &other, "  ", w.now).await);
    assert_eq!(refusal, ReturnRefusal::NoReason);
}

async fn a_void_restores_quota_only_before_acknowledgement(backend: Backend) {
    let w = World::new(backend).await;
    // Issued, not yet delivered: voided, the quota comes back once, nothing is delivered.
    let body = w.issue_5201_kept(1, fen(10_000)).await;
    let key = body.voucher.key();
    let amount = payment_amount(&body.voucher).unwrap();
    let a = fen_of(amount);
    let tenant = tenant_of(&key).unwrap();
    assert_eq!(quota(&w.finance, AccountKind::Plan, tenant).await.1, 10_000);
    let voided = void(
        &w.finance,
        &w.registry,
        &CTX,
        &key,
        Some("开错收款人"),
        w.now,
    )
    .await
    .unwrap();
    assert_eq!(voided.exchange, Exchange::Voided);
    assert_eq!(
        voided.restored,
        Restored::Plan {
            amount,
            applied: Applied::Done
        }
    );
    assert_eq!(
        quota(&w.finance, AccountKind::Plan, tenant).await.1,
        a + 10_000
    );
    let again = void(&w.finance, &w.registry, &CTX, &key, None, w.now)
        .await
        .unwrap();
    assert_eq!(
        again.restored,
        Restored::Plan {
            amount,
            applied: Applied::AlreadyDone
        }
    );
    assert_eq!(
        quota(&w.finance, AccountKind::Plan, tenant).await.1,
        a + 10_000
    );
    assert_eq!(w.deliver(&w.finance, &w.finance_net).await, 0);
    assert!(status(&w.bank, &key, Leg::Original).await.is_none());
    assert_eq!(
        status(&w.finance, &key, Leg::Original)
            .await
            .unwrap()
            .status_code(),
        -1
    );

    // Taken by the bank's library, then acknowledged: refused, the quota stays used.
    let body = w.issue_5201(2, fen(0)).await;
    let key = body.voucher.key();
    let tenant = tenant_of(&key).unwrap();
    let used = quota(&w.finance, AccountKind::PlanUsed, tenant).await;
    let refusal = refused(void(&w.finance, &w.registry, &CTX, &key, None, w.now).await);
    assert!(
        matches!(refusal, ReturnRefusal::NotVoidable { .. }),
        "{refusal}"
    );
    w.bank_acknowledges().await;
    // The status sync records the bank's acknowledgement on finance's leg.
    w.finance
        .library()
        .acknowledge(&key, Leg::Original, "status-sync", w.now)
        .await
        .unwrap();
    let refusal = refused(void(&w.finance, &w.registry, &CTX, &key, None, w.now).await);
    assert!(
        matches!(refusal, ReturnRefusal::NotVoidable { .. }),
        "{refusal}"
    );
    assert!(refusal.to_string().contains("acknowledged"), "{refusal}");
    assert_eq!(quota(&w.finance, AccountKind::PlanUsed, tenant).await, used);
    let sent = status(&w.finance, &key, Leg::Original).await.unwrap();
    assert_eq!(sent.exchange, Exchange::Acknowledged);

    // Paid and receipted: refused as well.
    let body = w.issue_5201(3, fen(0)).await;
    let key = body.voucher.key();
    w.bank_pays(&body).await;
    assert_eq!(
        status(&w.finance, &key, Leg::Original)
            .await
            .unwrap()
            .exchange,
        Exchange::ReceiptReceived
    );
    let refusal = refused(void(&w.finance, &w.registry, &CTX, &key, None, w.now).await);
    assert!(
        matches!(refusal, ReturnRefusal::NotVoidable { .. }),
        "{refusal}"
    );
    let tenant = tenant_of(&key).unwrap();
    assert!(quota(&w.finance, AccountKind::PlanUsed, tenant).await.1 > 0);
}

async fn pboc_returns_a_notice_only_while_its_quota_is_unused(backend: Backend) {
    let w = World::new(backend).await;
    let template = sample(
        w.registry.get(VT_5108).unwrap(),
        today(),
        VoucherFlag::Original,
        Style::Plain,
        3,
    );
    let d = &template.details[0];
    let ck = ClearingKey {
        tenant: tenant_of(&template.key()).unwrap(),
        bank: BANK_CODE.parse::<BankNo>().unwrap(),
        unit: d.get("AgencyCode").unwrap().parse().unwrap(),
        func: d.get("ExpFuncCode").unwrap().parse().unwrap(),
        fund: template
            .header
            .get("FundTypeCode")
            .unwrap()
            .parse()
            .unwrap(),
        pay: PayType::Direct,
    };
    let tenant = ck.tenant;
    pboc_accounts(&w, &ck).await;
    let book_notice = |v: &Voucher| notice_op(v, &notice_deltas(v).unwrap()).unwrap();

    // A notice of 1000.00, booked while PBOC validates; 300.00 of it is then cleared.
    let used = w
        .finance_sends_5108(&ck, fen(100_000), "QE20250115001")
        .await;
    let record = w.pboc_validates_and_books(book_notice).await;
    assert_eq!(record.key, used);
    apply(
        &w.pboc,
        w.now,
        &[
            BookOp::fund_tsa(900, tenant, fen(10_000_000)).unwrap(),
            BookOp::clear(901, &ck, fen(30_000)).unwrap(),
        ],
    )
    .await;
    assert_eq!(
        quota(&w.pboc, AccountKind::ClearingQuota, tenant).await,
        (100_000, 70_000)
    );
    // Returning it would take the quota below what is used: refused, nothing changes.
    let refusal =
        refused(return_received(&w.pboc, &w.registry, &CTX, &used, "额度有误", w.now).await);
    assert!(matches!(refusal, ReturnRefusal::QuotaUsed(_)), "{refusal}");
    assert!(
        refusal.to_string().contains("额度值已经使用不能被退回"),
        "{refusal}"
    );
    assert_eq!(
        quota(&w.pboc, AccountKind::ClearingQuota, tenant).await,
        (100_000, 70_000)
    );
    let at_pboc = status(&w.pboc, &used, Leg::Original).await.unwrap();
    assert_eq!(at_pboc.processing, Some(Processing::Validated));
    assert_eq!(at_pboc.exchange, Exchange::Acknowledged);

    // A second notice of 500.00, unused: its return subtracts it, once.
    let unused = w
        .finance_sends_5108(&ck, fen(50_000), "QE20250115002")
        .await;
    w.pboc_validates_and_books(book_notice).await;
    assert_eq!(
        quota(&w.pboc, AccountKind::ClearingQuota, tenant).await.1,
        120_000
    );
    let here = return_received(&w.pboc, &w.registry, &CTX, &unused, "重复下达", w.now)
        .await
        .unwrap();
    assert_eq!(
        here.reversed,
        Reversed::NoticeSubtracted {
            applied: Applied::Done
        }
    );
    assert_eq!(
        quota(&w.pboc, AccountKind::ClearingQuota, tenant).await.1,
        70_000
    );
    let at_pboc = status(&w.pboc, &unused, Leg::Original).await.unwrap();
    assert_eq!(at_pboc.processing, Some(Processing::Returned));
    let again = return_received(&w.pboc, &w.registry, &CTX, &unused, "重复下达", w.now)
        .await
        .unwrap();
    assert!(again.already);
    assert_eq!(
        quota(&w.pboc, AccountKind::ClearingQuota, tenant).await.1,
        70_000
    );
    // Finance learns of it; it keeps no clearing quota, so nothing is restored there.
    let told = on_returned(&w.finance, &w.registry, &CTX, &unused, "重复下达", w.now)
        .await
        .unwrap();
    assert_eq!(told.restored, Restored::Nothing);
    assert_eq!(
        status(&w.finance, &unused, Leg::Original)
            .await
            .unwrap()
            .exchange,
        Exchange::Returned
    );

    // A notice PBOC booked and receipted in full can no longer be returned.
    let done = w
        .finance_sends_5108(&ck, fen(10_000), "QE20250115003")
        .await;
    let read = w.pboc.library().read(100, "treasury", w.now).await.unwrap();
    let sealer = w.pboc_ywzyz.signer(&w.pki);
    let treasury = Treasury {
        me: PBOC_CODE,
        actor: "treasury",
        suite: Suite::Sm,
        sealer: &sealer,
    };
    let booked = book_record(&w.pboc, &w.registry, &treasury, &read[0], w.now)
        .await
        .unwrap();
    assert!(matches!(booked, NoticeOutcome::Booked { .. }), "{booked:?}");
    let before = quota(&w.pboc, AccountKind::ClearingQuota, tenant).await;
    let refusal = refused(return_received(&w.pboc, &w.registry, &CTX, &done, "迟了", w.now).await);
    assert!(
        matches!(refusal, ReturnRefusal::NotReturnable { .. }),
        "{refusal}"
    );
    assert_eq!(
        quota(&w.pboc, AccountKind::ClearingQuota, tenant).await,
        before
    );
}

async fn a_returned_clearing_request_gives_quota_money_and_the_claim_back(backend: Backend) {
    let w = World::new(backend).await;
    let body = w.issue_5201(1, fen(0)).await;
    let key = body.voucher.key();
    let amount = payment_amount(&body.voucher).unwrap();
    let a = fen_of(amount);
    let tenant = tenant_of(&key).unwrap();
    w.bank_pays(&body).await;
    w.pboc_books(&body.voucher, amount.checked_add(fen(100)).unwrap(), 1)
        .await;
    let template = w.template(&body.voucher);

    // The bank claims the payment in a 2301; PBOC deducts the clearing while validating.
    let maker = sign(&w.bank_maker);
    let sealer = w.bank_ywzyz.signer(&w.pki);
    let clearer = Clearer {
        me: BANK_CODE,
        pboc: PBOC_CODE,
        actor: "clearing-clerk",
        suite: Suite::Sm,
        maker: &maker,
        sealer: &sealer,
    };
    let request = build_request(
        &w.bank,
        &w.registry,
        &clearer,
        &template,
        "QS20250115001",
        today(),
        w.now,
    )
    .await
    .unwrap()
    .unwrap()
    .key;
    assert_eq!(w.deliver(&w.bank, &w.bank_net).await, 1);
    assert_eq!(
        posted(&w.bank, &BookAccount::receivable_pboc(tenant)).await,
        (a, 0)
    );
    w.pboc_validates_and_books(|v| clearing_op(v).unwrap().0)
        .await;
    assert_eq!(
        quota(&w.pboc, AccountKind::ClearingQuota, tenant).await.1,
        100
    );
    let tsa = posted(&w.pboc, &BookAccount::tsa(tenant)).await;

    // PBOC returns it: quota and money come back, once.
    let here = return_received(&w.pboc, &w.registry, &CTX, &request, "收款账号不符", w.now)
        .await
        .unwrap();
    assert_eq!(
        here.reversed,
        Reversed::ClearingAddedBack {
            amount,
            applied: Applied::Done
        }
    );
    assert_eq!(
        quota(&w.pboc, AccountKind::ClearingQuota, tenant).await.1,
        a + 100
    );
    assert_eq!(
        posted(&w.pboc, &BookAccount::tsa(tenant)).await,
        (tsa.0, tsa.1 + a)
    );
    let ck = clearing_key(&body.voucher);
    assert_eq!(
        posted(&w.pboc, &BookAccount::bank_clearing(tenant, &ck.bank)).await,
        (a, a)
    );
    assert!(
        return_received(&w.pboc, &w.registry, &CTX, &request, "x", w.now)
            .await
            .unwrap()
            .already
    );
    assert_eq!(
        quota(&w.pboc, AccountKind::ClearingQuota, tenant).await.1,
        a + 100
    );

    // The bank learns of it: the receivable is fronted money again, and the payment may
    // be claimed by another 2301.
    assert!(clearable(&w.bank, &template).await.unwrap().is_empty());
    let told = on_returned(&w.bank, &w.registry, &CTX, &request, "收款账号不符", w.now)
        .await
        .unwrap();
    assert_eq!(
        told.restored,
        Restored::Receivable {
            amount,
            applied: Applied::Done
        }
    );
    assert_eq!(
        posted(&w.bank, &BookAccount::receivable_pboc(tenant)).await,
        (a, a)
    );
    let again = on_returned(&w.bank, &w.registry, &CTX, &request, "收款账号不符", w.now)
        .await
        .unwrap();
    assert!(matches!(
        again.restored,
        Restored::Receivable {
            applied: Applied::AlreadyDone,
            ..
        }
    ));
    assert_eq!(
        posted(&w.bank, &BookAccount::receivable_pboc(tenant)).await,
        (a, a)
    );
    let listed = clearable(&w.bank, &template).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].voucher_no, key.voucher_no);
}

both_backends!(
    return_of_a_5201,
    a_returned_5201_restores_finance_quota_once
);
both_backends!(
    void_of_a_5201,
    a_void_restores_quota_only_before_acknowledgement
);
both_backends!(
    return_of_a_notice,
    pboc_returns_a_notice_only_while_its_quota_is_unused
);
both_backends!(
    return_of_a_clearing_request,
    a_returned_clearing_request_gives_quota_money_and_the_claim_back
);
