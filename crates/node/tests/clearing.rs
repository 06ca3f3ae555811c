//! Clearing end to end (DOMAIN §3.2 step 5, §3.3 step 4, DESIGN invariant 3): the bank
//! pays a direct payment (the direct flow), builds a 2301 from its paid and receipted 5201s
//! and sends it to PBOC; PBOC checks it, deducts the clearing quota and returns a sealed
//! receipt. A 2301 listing an unpaid voucher, one listing a voucher already cleared and one
//! beyond the quota are returned (退回) with the reason, nothing deducted. An authorized
//! payment (a unit's 8202 paid against the plan quota of finance's 5105) is cleared by a
//! 2301 of PayTypeCode 12 against the 5106 quota, and the bank's books settle. Every
//! scenario runs on SQLite and on PostgreSQL; in-memory network, no sleeping.

use std::collections::HashMap;

use guoku_domain::{Amount, PayType};
use guoku_node::exchange::InMemory;
use guoku_node::flows::authorized::{self, UnitAccount, VT_8202, check_8202};
use guoku_node::flows::clearing::{
    ClearOutcome, Clearer, Listed, PaidState, Pboc, SettleOutcome, build_authorized_request,
    build_request, clear_received, clearable, clearable_of, request_voucher, send_request,
    settle_receipt,
};
use guoku_node::flows::direct::{Bank, PayOutcome, Route, pay_received, payment_amount, tenant_of};
use guoku_node::flows::quota::{
    BankDesk, NoticeOutcome, UnitQuotaLine, UnitQuotaNotice, UnitQuotaNotifier,
    notice_5105_voucher, on_unit_quota_notice, send_unit_quota_notice,
};
use guoku_node::outbox::deliver_due;
use guoku_node::stamping::{Verification, stamp_next, type_of, verify};
use guoku_seal::Suite;
use guoku_seal::pki::{OrgRole, Post, RevocationPolicy};
use guoku_seal::voucher::{Signer, StampKind, TrustContext};
use guoku_store::Store;
use guoku_store::books::{
    AccountKind, BookAccount, BookFilter, BookOp, ClearingKey, Tenant, UnitCode,
};
use guoku_voucher::lifecycle::{Exchange, Leg, Processing};
use guoku_voucher::sample::{Style, sample};
use guoku_voucher::{EnvelopeBody, Fields, Registry, Voucher, VoucherFlag, VoucherKey};

mod common;
use common::*;

// ----- the parties -------------------------------------------------------------------------

/// Finance, the bank, PBOC and a budget unit on one in-memory network.
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
    // Dropped last: the stores' connections close before their schemas go.
    _nodes: Nodes,
}

/// How the bank makes the 2301 it sends.
enum Build {
    /// [`build_request`]: its paid 5201s, PayTypeCode 11.
    Direct,
    /// [`build_authorized_request`]: its paid 8202s, PayTypeCode 12.
    Authorized,
    /// This voucher, as given.
    Given(Voucher),
}

impl World {
    async fn new(backend: Backend) -> Self {
        let pki = Pki::new("测试根CA");
        let mut nodes = Nodes::new(backend);
        let (finance, finance_net) = nodes.join(&pki, "finance", finance_peer()).await;
        let (bank, bank_net) = nodes.join(&pki, "bank", bank_peer()).await;
        let (pboc, pboc_net) = nodes.join(&pki, "pboc", pboc_peer()).await;
        let (unit, unit_net) = nodes.join(&pki, "unit", unit_peer()).await;
        let now = unix_now(&pki);
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
            _nodes: nodes,
        }
    }

    /// Finance issues the 5201 `n` (with plan quota for it) and delivers it to the bank.
    async fn issue_5201(&self, n: u64) -> EnvelopeBody {
        let body = signed_5201(&self.pki, &self.registry, n);
        let amount = payment_amount(&body.voucher).unwrap();
        let indicator = indicator_of(&body.voucher);
        let tenant = indicator.tenant;
        let base = u128::from(n) * 10;
        create(
            &self.finance,
            vec![
                BookAccount::budget_source(tenant),
                BookAccount::indicator(&indicator),
                BookAccount::plan(&indicator, MONTH).unwrap(),
                BookAccount::plan_used(&indicator, MONTH).unwrap(),
            ],
        )
        .await;
        apply(
            &self.finance,
            self.now,
            &[
                BookOp::approve_indicator(base + 1, &indicator, amount).unwrap(),
                BookOp::approve_plan(base + 2, &indicator, MONTH, amount).unwrap(),
            ],
        )
        .await;
        finance_issues(&self.finance, &self.registry, &indicator, &body, self.now).await;
        deliver_one(&self.finance, &self.finance_net, self.now).await;
        body
    }

    /// The bank pays every 5201 it has received and returns the receipts.
    async fn bank_pays(&self) -> Vec<PayOutcome> {
        self.bank_pays_with(None).await
    }

    /// The bank pays every 5201, and every 8202 from the unit zero-balance accounts in
    /// `accounts`, it has received, and returns the receipts.
    async fn bank_pays_with(&self, accounts: Option<&[UnitAccount<'_>]>) -> Vec<PayOutcome> {
        let tenant_accounts = |t: Tenant| {
            vec![
                BookAccount::advance(t),
                BookAccount::finance_zba(t),
                BookAccount::payees(t),
                BookAccount::receivable_pboc(t),
                BookAccount::pboc_reserve(t),
            ]
        };
        let bank_org = bank();
        let signer = self.pki.person(&bank_org, Post::Signer, "赵六");
        let seal = self.pki.seal(&bank_org, StampKind::Zqz, "转讫章", &signer);
        let sealer = Signer::Seal {
            seal: &seal,
            key: &signer.key,
            certificate: &signer.cert,
            time: self.pki.now,
        };
        let teller = Bank {
            me: BANK_CODE,
            actor: "teller",
            pay_date: today(),
            serial_prefix: "ICBC",
            suite: Suite::Sm,
            sealer: &sealer,
        };
        // The money books are per tenant; all test vouchers share one.
        let probe = signed_5201(&self.pki, &self.registry, 1);
        let tenant = tenant_of(&probe.voucher.key()).unwrap();
        if self
            .bank
            .account(BookAccount::advance(tenant).id())
            .await
            .unwrap()
            .is_none()
        {
            create(&self.bank, tenant_accounts(tenant)).await;
        }
        let paid = match accounts {
            None => pay_received(&self.bank, &self.registry, &teller, 100, self.now).await,
            Some(accounts) => {
                authorized::pay_received(
                    &self.bank,
                    &self.registry,
                    &teller,
                    accounts,
                    100,
                    self.now,
                )
                .await
            }
        }
        .unwrap();
        deliver_due(&self.bank, &self.bank_net, self.now, 10, BACKOFF)
            .await
            .unwrap();
        paid
    }

    /// PBOC's books: a clearing quota of `quota` for the voucher's (bank, unit, function
    /// class, fund type, direct), and money in the TSA.
    async fn pboc_books(&self, voucher: &Voucher, quota: Amount) {
        self.pboc_books_of(voucher, PayType::Direct, quota).await;
    }

    /// As [`World::pboc_books`] for the clearing quota of `pay` (5108 for direct, 5106 for
    /// authorized).
    async fn pboc_books_of(&self, voucher: &Voucher, pay: PayType, quota: Amount) {
        let key = clearing_key_of(voucher, pay);
        let t = key.tenant;
        create(
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
                BookOp::clearing_quota_notice(1, &key, quota).unwrap(),
                BookOp::fund_tsa(2, t, fen(100_000_000)).unwrap(),
            ],
        )
        .await;
    }

    /// The 2301 template: the registry's sample header in the vouchers' division and year,
    /// fund type and with this bank's number.
    fn template(&self, like: &Voucher) -> Fields {
        let ty = self.registry.get("2301").unwrap();
        let mut header = sample(ty, today(), VoucherFlag::Original, Style::Plain, 7).header;
        for name in ["AdmDivCode", "StYear", "FundTypeCode"] {
            header.set(name, like.header.get(name).unwrap());
        }
        header.set("PayBankNo", BANK_CODE);
        header
    }

    /// The paid state the bank's library reports for each of `keys` (what PBOC is told).
    async fn paid_states(&self, keys: &[VoucherKey]) -> HashMap<VoucherKey, PaidState> {
        let mut states = HashMap::new();
        for key in keys {
            let state = match self
                .bank
                .library()
                .status(key, Leg::Original)
                .await
                .unwrap()
            {
                None => PaidState::Unknown,
                Some(r) if r.processing == Some(Processing::ReceiptSent) => PaidState::ReceiptSent,
                Some(_) => PaidState::NotReceipted,
            };
            states.insert(key.clone(), state);
        }
        states
    }

    /// The bank sends `voucher` stamped (maker, 业务专用章) and the outbox delivers it.
    async fn bank_sends(&self, build: Build, template: &Fields, no: &str) -> VoucherKey {
        let bank_org = bank();
        let maker = self.pki.person(&bank_org, Post::Maker, "钱七");
        let signer = self.pki.person(&bank_org, Post::Signer, "孙八");
        let seal = self
            .pki
            .seal(&bank_org, StampKind::Ywzyz, "代理银行业务专用章", &signer);
        let maker = sign(&maker);
        let sealer = Signer::Seal {
            seal: &seal,
            key: &signer.key,
            certificate: &signer.cert,
            time: self.pki.now,
        };
        let clearer = Clearer {
            me: BANK_CODE,
            pboc: PBOC_CODE,
            actor: "clearing-clerk",
            suite: Suite::Sm,
            maker: &maker,
            sealer: &sealer,
        };
        let record = match build {
            Build::Direct => build_request(
                &self.bank,
                &self.registry,
                &clearer,
                template,
                no,
                today(),
                self.now,
            )
            .await
            .unwrap()
            .expect("something to clear"),
            Build::Authorized => build_authorized_request(
                &self.bank,
                &self.registry,
                &clearer,
                template,
                no,
                today(),
                self.now,
            )
            .await
            .unwrap()
            .expect("something to clear"),
            Build::Given(v) => send_request(&self.bank, &self.registry, &clearer, v, self.now)
                .await
                .unwrap(),
        };
        assert_eq!(record.exchange, Exchange::NotReceived);
        deliver_one(&self.bank, &self.bank_net, self.now).await;
        record.key
    }

    /// The unit's 8202 `n` from its zero-balance account, stamped at every original
    /// position.
    fn signed_8202(&self, n: u64) -> EnvelopeBody {
        self.signed_8202_with(n, |_| {})
    }

    /// As [`World::signed_8202`], with `edit` applied to the voucher before it is stamped.
    fn signed_8202_with(&self, n: u64, edit: impl FnOnce(&mut Voucher)) -> EnvelopeBody {
        let unit = org(OrgRole::BudgetUnit, UNIT_CODE, "湖南省教育厅");
        let maker = self.pki.person(&unit, Post::Maker, "张三");
        let checker = self.pki.person(&unit, Post::Checker, "李四");
        let signer = self.pki.person(&unit, Post::Signer, "王五");
        let seal = self
            .pki
            .seal(&unit, StampKind::Ywzyz, "单位财务专用章", &signer);
        let ty = self.registry.get(VT_8202).unwrap();
        let mut body = EnvelopeBody {
            flag: VoucherFlag::Original,
            attach: "SUCCESS".into(),
            voucher: sample(ty, today(), VoucherFlag::Original, Style::Plain, n),
            signatures: Vec::new(),
        };
        body.voucher.header.set("PayTypeCode", "12");
        body.voucher.header.set("AgencyCode", UNIT_CODE);
        body.voucher.header.set("PayAcctNo", UNIT_ZBA);
        edit(&mut body.voucher);
        stamp_next(Suite::Sm, ty, &mut body, &sign(&maker)).unwrap();
        stamp_next(Suite::Sm, ty, &mut body, &sign(&checker)).unwrap();
        let sealer = Signer::Seal {
            seal: &seal,
            key: &signer.key,
            certificate: &signer.cert,
            time: self.pki.now,
        };
        stamp_next(Suite::Sm, ty, &mut body, &sealer).unwrap();
        body
    }

    /// Finance's 5105 gives the unit `plan` for January; the bank books it and the receipt
    /// goes back.
    async fn finance_notices_unit_quota(&self, tenant: Tenant, plan: Amount) {
        let ty = self.registry.get("5105").unwrap();
        let template = sample(ty, today(), VoucherFlag::Original, Style::Plain, 5);
        let notice = UnitQuotaNotice {
            tenant,
            bank: BANK_CODE.parse().unwrap(),
            fund: "1".parse().unwrap(),
            month: MONTH,
            lines: vec![UnitQuotaLine {
                unit: UNIT_CODE.parse().unwrap(),
                zba: UNIT_ZBA.into(),
                func: "2050101".parse().unwrap(),
                amount: plan,
            }],
        };
        let voucher = notice_5105_voucher(&template, &notice, "EQ20250115001", today()).unwrap();
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
        let notifier = UnitQuotaNotifier {
            me: FINANCE_CODE,
            bank: BANK_CODE,
            actor: "quota-clerk",
            suite: Suite::Sm,
            maker: &maker,
            sealer: &sealer,
        };
        send_unit_quota_notice(&self.finance, &self.registry, &notifier, voucher, self.now)
            .await
            .unwrap();
        deliver_one(&self.finance, &self.finance_net, self.now).await;
        let bank_org = bank();
        let signer = self.pki.person(&bank_org, Post::Signer, "孙八");
        let seal = self
            .pki
            .seal(&bank_org, StampKind::Ywzyz, "代理银行业务专用章", &signer);
        let sealer = Signer::Seal {
            seal: &seal,
            key: &signer.key,
            certificate: &signer.cert,
            time: self.pki.now,
        };
        let desk = BankDesk {
            me: BANK_CODE,
            actor: "quota-desk",
            suite: Suite::Sm,
            sealer: &sealer,
            accounts: UNIT_ACCOUNTS,
        };
        let read = self
            .bank
            .library()
            .read(100, "quota-desk", self.now)
            .await
            .unwrap();
        assert_eq!(read.len(), 1, "{read:?}");
        let outcome = on_unit_quota_notice(&self.bank, &self.registry, &desk, &read[0], self.now)
            .await
            .unwrap();
        assert!(
            matches!(outcome, NoticeOutcome::Booked { amount, .. } if amount == plan),
            "{outcome:?}"
        );
    }

    /// The unit issues its 8202 `n` and the outbox delivers it to the bank.
    async fn unit_issues(&self, n: u64) -> EnvelopeBody {
        let body = self.signed_8202(n);
        self.unit_sends(&body).await;
        body
    }

    /// The unit issues `body` and the outbox delivers it to the bank.
    async fn unit_sends(&self, body: &EnvelopeBody) {
        let route = Route {
            me: UNIT_CODE,
            to: BANK_CODE,
            actor: "cashier",
        };
        authorized::issue(
            &self.unit,
            &self.registry,
            UNIT_ACCOUNTS[0],
            body,
            route,
            self.now,
        )
        .await
        .unwrap();
        deliver_one(&self.unit, &self.unit_net, self.now).await;
    }

    /// PBOC opens the clearing quota `key` with `quota` (its TSA already funded).
    async fn pboc_quota(&self, key: &ClearingKey, quota: Amount, op: u128) {
        create(
            &self.pboc,
            vec![BookAccount::clearing_quota(key), BookAccount::cleared(key)],
        )
        .await;
        apply(
            &self.pboc,
            self.now,
            &[BookOp::clearing_quota_notice(op, key, quota).unwrap()],
        )
        .await;
    }

    async fn pboc_clears(&self, states: &HashMap<VoucherKey, PaidState>) -> Vec<ClearOutcome> {
        let pboc_org = org(OrgRole::Pboc, PBOC_CODE, "中国人民银行长沙中心支行");
        let signer = self.pki.person(&pboc_org, Post::Signer, "周九");
        let seal = self
            .pki
            .seal(&pboc_org, StampKind::Zqz, "国库转讫章", &signer);
        let sealer = Signer::Seal {
            seal: &seal,
            key: &signer.key,
            certificate: &signer.cert,
            time: self.pki.now,
        };
        let pboc = Pboc {
            me: PBOC_CODE,
            bank_no: PBOC_BANK_NO,
            actor: "treasury",
            clear_date: today(),
            suite: Suite::Sm,
            sealer: &sealer,
        };
        let paid = |k: &VoucherKey| states.get(k).copied().unwrap_or(PaidState::Unknown);
        clear_received(&self.pboc, &self.registry, &pboc, &paid, 100, self.now)
            .await
            .unwrap()
    }
}

fn listed(body: &EnvelopeBody) -> Listed {
    let h = &body.voucher.header;
    Listed {
        voucher_no: body.voucher.key().voucher_no,
        agency: h.get("AgencyCode").unwrap().into(),
        func: h.get("ExpFuncCode").unwrap().into(),
        amount: payment_amount(&body.voucher).unwrap(),
        summary: None,
    }
}

fn returned(outcomes: &[ClearOutcome], key: &VoucherKey) -> Vec<String> {
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    match &outcomes[0] {
        ClearOutcome::Returned { key: k, reasons } => {
            assert_eq!(k, key);
            reasons.clone()
        }
        other => panic!("not returned: {other:?}"),
    }
}

both_backends!(
    a_paid_payment_is_cleared_once_and_not_again,
    cleared_once_and_not_again
);

async fn cleared_once_and_not_again(backend: Backend) {
    let w = World::new(backend).await;
    let body = w.issue_5201(1).await;
    let key = body.voucher.key();
    let amount = payment_amount(&body.voucher).unwrap();
    let tenant = tenant_of(&key).unwrap();
    let paid = w.bank_pays().await;
    assert!(matches!(&paid[..], [PayOutcome::Paid { .. }]), "{paid:?}");
    let quota_fen = fen_of(amount) + 50_000;
    w.pboc_books(
        &body.voucher,
        Amount::from_fen(i64::try_from(quota_fen).unwrap()).unwrap(),
    )
    .await;
    let template = w.template(&body.voucher);

    // The bank lists its paid, receipted 5201 and sends the 2301.
    let request = w
        .bank_sends(Build::Direct, &template, "QS20250115001")
        .await;
    let sent = body_of(
        &w.bank
            .library()
            .status(&request, Leg::Original)
            .await
            .unwrap()
            .unwrap()
            .body,
        VoucherFlag::Original,
    );
    assert_eq!(sent.voucher.details.len(), 1);
    assert_eq!(
        sent.voucher.details[0].get("VoucherNo"),
        Some(key.voucher_no.as_str())
    );
    assert_eq!(
        sent.voucher.header.get("PayAmt"),
        Some(amount.to_string().as_str())
    );
    assert_eq!(sent.voucher.header.get("PayTypeCode"), Some("11"));
    // Claimed by the pending 2301: nothing more to clear.
    assert!(clearable(&w.bank, &template).await.unwrap().is_empty());

    // PBOC checks, deducts the quota, pays the bank and returns the sealed receipt.
    let states = w.paid_states(std::slice::from_ref(&key)).await;
    assert_eq!(states[&key], PaidState::ReceiptSent);
    let outcomes = w.pboc_clears(&states).await;
    match &outcomes[..] {
        [ClearOutcome::Cleared { key: k, amount: a }] => {
            assert_eq!(k, &request);
            assert_eq!(*a, amount);
        }
        other => panic!("not cleared: {other:?}"),
    }
    assert_eq!(
        quota(&w.pboc, AccountKind::ClearingQuota, tenant).await,
        (quota_fen, 50_000),
        "the clearing quota is deducted by the amount"
    );
    let ck = clearing_key(&body.voucher);
    let cleared = w
        .pboc
        .account(BookAccount::cleared(&ck).id())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cleared.credits_posted, fen_of(amount));
    let to_bank = w
        .pboc
        .account(BookAccount::bank_clearing(tenant, &ck.bank).id())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(to_bank.credits_posted, fen_of(amount));
    let at_pboc = w
        .pboc
        .library()
        .status(&request, Leg::Original)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(at_pboc.processing, Some(Processing::ReceiptSent));

    // The receipt reaches the bank, sealed by PBOC, X fields filled.
    let back = deliver_due(&w.pboc, &w.pboc_net, w.now, 10, BACKOFF)
        .await
        .unwrap();
    assert_eq!(back.delivered, 1, "{back:?}");
    let receipt = w
        .bank
        .library()
        .status(&request, Leg::Receipt)
        .await
        .unwrap()
        .unwrap();
    let receipt = body_of(&receipt.body, VoucherFlag::Receipt);
    let h = &receipt.voucher.header;
    assert_eq!(h.get("XPayAmt"), Some(amount.to_string().as_str()));
    assert_eq!(h.get("XClearDate"), Some("20250115"));
    assert_eq!(h.get("XPaySndBnkNo"), Some(PBOC_BANK_NO));
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

    // A second 2301 listing the same voucher: refused as already cleared, nothing deducted,
    // even though the bank's library still says it was paid and receipted.
    let again = request_voucher(
        &template,
        "QS20250115002",
        today(),
        PayType::Direct,
        &[listed(&body)],
    )
    .unwrap();
    let second = w.bank_sends(Build::Given(again), &template, "").await;
    let outcomes = w.pboc_clears(&states).await;
    let reasons = returned(&outcomes, &second);
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(reasons[0].contains("already cleared"), "{reasons:?}");
    assert!(reasons[0].contains(&key.voucher_no), "{reasons:?}");
    assert!(reasons[0].contains("detail 1"), "{reasons:?}");
    assert_eq!(
        quota(&w.pboc, AccountKind::ClearingQuota, tenant).await,
        (quota_fen, 50_000)
    );
    let at_pboc = w
        .pboc
        .library()
        .status(&second, Leg::Original)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(at_pboc.exchange, Exchange::Returned);
}

both_backends!(
    a_request_listing_an_unpaid_voucher_is_returned_and_nothing_deducted,
    an_unpaid_voucher_is_returned
);

async fn an_unpaid_voucher_is_returned(backend: Backend) {
    let w = World::new(backend).await;
    let body = w.issue_5201(1).await;
    let key = body.voucher.key();
    let amount = payment_amount(&body.voucher).unwrap();
    let tenant = tenant_of(&key).unwrap();
    // Received by the bank, not paid.
    w.pboc_books(&body.voucher, amount.checked_add(fen(50_000)).unwrap())
        .await;
    let template = w.template(&body.voucher);
    // The bank's own builder does not list it.
    assert!(clearable(&w.bank, &template).await.unwrap().is_empty());

    let v = request_voucher(
        &template,
        "QS20250115009",
        today(),
        PayType::Direct,
        &[listed(&body)],
    )
    .unwrap();
    let request = w.bank_sends(Build::Given(v), &template, "").await;
    let states = w.paid_states(std::slice::from_ref(&key)).await;
    assert_eq!(states[&key], PaidState::NotReceipted);
    let outcomes = w.pboc_clears(&states).await;
    let reasons = returned(&outcomes, &request);
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(reasons[0].contains("not paid and receipted"), "{reasons:?}");
    assert!(reasons[0].contains(&key.voucher_no), "{reasons:?}");
    let granted = fen_of(amount) + 50_000;
    assert_eq!(
        quota(&w.pboc, AccountKind::ClearingQuota, tenant).await,
        (granted, granted),
        "nothing deducted"
    );
    let at_pboc = w
        .pboc
        .library()
        .status(&request, Leg::Original)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(at_pboc.exchange, Exchange::Returned);
    assert!(
        w.pboc
            .library()
            .status(&request, Leg::Receipt)
            .await
            .unwrap()
            .is_none()
    );
}

both_backends!(
    a_request_beyond_the_clearing_quota_is_returned,
    beyond_the_quota_is_returned
);

async fn beyond_the_quota_is_returned(backend: Backend) {
    let w = World::new(backend).await;
    let body = w.issue_5201(1).await;
    let key = body.voucher.key();
    let amount = payment_amount(&body.voucher).unwrap();
    let tenant = tenant_of(&key).unwrap();
    assert!(matches!(
        &w.bank_pays().await[..],
        [PayOutcome::Paid { .. }]
    ));
    let short = amount.checked_sub(fen(1)).unwrap();
    w.pboc_books(&body.voucher, short).await;
    let template = w.template(&body.voucher);
    let request = w
        .bank_sends(Build::Direct, &template, "QS20250115003")
        .await;
    let states = w.paid_states(std::slice::from_ref(&key)).await;
    let outcomes = w.pboc_clears(&states).await;
    let reasons = returned(&outcomes, &request);
    assert!(reasons[0].contains("超出清算范围"), "{reasons:?}");
    assert_eq!(
        quota(&w.pboc, AccountKind::ClearingQuota, tenant).await,
        (fen_of(short), fen_of(short)),
        "nothing deducted"
    );
    let tsa = w
        .pboc
        .account(BookAccount::tsa(tenant).id())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(tsa.debits_posted, 0, "no money moved");
}

both_backends!(
    an_authorized_payment_is_cleared_by_a_2301_of_pay_type_12_once,
    authorized_cleared_once
);

async fn authorized_cleared_once(backend: Backend) {
    let w = World::new(backend).await;
    let tenant = tenant_of(&w.signed_8202(1).voucher.key()).unwrap();
    let unit: UnitCode = UNIT_CODE.parse().unwrap();

    // Finance's 5105 gives the unit its plan quota; the unit's 8202 is paid against it.
    let probe = w.signed_8202(1);
    let amount = check_8202(&probe.voucher).unwrap().amount;
    w.finance_notices_unit_quota(tenant, amount.checked_add(fen(10_000)).unwrap())
        .await;
    create(&w.bank, vec![BookAccount::unit_zba(tenant, &unit)]).await;
    let body = w.unit_issues(1).await;
    let key = body.voucher.key();
    let paid = w.bank_pays_with(Some(UNIT_ACCOUNTS)).await;
    assert!(
        matches!(&paid[..], [PayOutcome::Paid { key: k, .. }] if k == &key),
        "{paid:?}"
    );
    let a = fen_of(amount);
    let zba = BookAccount::unit_zba(tenant, &unit);
    assert_eq!(posted(&w.bank, &zba).await, (a, a));

    // PBOC: an authorized (5106) clearing quota for the unit, and a direct one that an
    // authorized clearing must not touch.
    let quota_fen = a + 50_000;
    w.pboc_books_of(
        &body.voucher,
        PayType::Authorized,
        Amount::from_fen(i64::try_from(quota_fen).unwrap()).unwrap(),
    )
    .await;
    let direct = clearing_key_of(&body.voucher, PayType::Direct);
    w.pboc_quota(&direct, amount, 3).await;

    // The bank lists the paid 8202 for authorized clearing only: no direct 2301 takes it.
    let template = w.template(&body.voucher);
    assert!(clearable(&w.bank, &template).await.unwrap().is_empty());
    let listed = clearable_of(&w.bank, &template, PayType::Authorized)
        .await
        .unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|l| l.voucher_no.as_str())
            .collect::<Vec<_>>(),
        [key.voucher_no.as_str()]
    );
    let request = w
        .bank_sends(Build::Authorized, &template, "QS20250115012")
        .await;
    let sent = body_of(
        &w.bank
            .library()
            .status(&request, Leg::Original)
            .await
            .unwrap()
            .unwrap()
            .body,
        VoucherFlag::Original,
    );
    assert_eq!(sent.voucher.header.get("PayTypeCode"), Some("12"));
    assert_eq!(
        sent.voucher.header.get("PayAmt"),
        Some(amount.to_string().as_str())
    );
    assert_eq!(sent.voucher.details.len(), 1);
    assert_eq!(
        sent.voucher.details[0].get("VoucherNo"),
        Some(key.voucher_no.as_str())
    );
    // Claimed by the pending 2301; the fronted money is now a receivable from PBOC.
    assert!(
        clearable_of(&w.bank, &template, PayType::Authorized)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        posted(&w.bank, &BookAccount::receivable_pboc(tenant)).await,
        (a, 0)
    );
    assert_eq!(posted(&w.bank, &BookAccount::advance(tenant)).await, (a, a));
    // PBOC checks it against the 5106 quota, pays the bank and returns the sealed receipt.
    let states = w.paid_states(std::slice::from_ref(&key)).await;
    assert_eq!(states[&key], PaidState::ReceiptSent);
    let outcomes = w.pboc_clears(&states).await;
    assert!(
        matches!(&outcomes[..], [ClearOutcome::Cleared { key: k, amount: c }]
            if k == &request && *c == amount),
        "{outcomes:?}"
    );
    let authorized_key = clearing_key_of(&body.voucher, PayType::Authorized);
    let quota_left = w
        .pboc
        .account(BookAccount::clearing_quota(&authorized_key).id())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (quota_left.credits_posted, quota_left.debits_posted),
        (quota_fen, a),
        "the 5106 quota is deducted by the amount"
    );
    assert_eq!(
        posted(&w.pboc, &BookAccount::clearing_quota(&direct)).await,
        (0, fen_of(amount)),
        "the direct quota is untouched"
    );
    assert_eq!(
        posted(
            &w.pboc,
            &BookAccount::bank_clearing(tenant, &authorized_key.bank)
        )
        .await,
        (0, a)
    );

    // The bank settles the receipt: its books for the payment are square.
    let back = deliver_due(&w.pboc, &w.pboc_net, w.now, 10, BACKOFF)
        .await
        .unwrap();
    assert_eq!(back.delivered, 1, "{back:?}");
    let read = w
        .bank
        .library()
        .read(100, "clearing-clerk", w.now)
        .await
        .unwrap();
    assert_eq!(read.len(), 1, "{read:?}");
    let settled = settle_receipt(&w.bank, "clearing-clerk", &read[0], w.now)
        .await
        .unwrap();
    assert!(
        matches!(&settled, SettleOutcome::Settled { key: k, amount: s } if k == &request && *s == amount),
        "{settled:?}"
    );
    assert_eq!(
        posted(&w.bank, &BookAccount::receivable_pboc(tenant)).await,
        (a, a),
        "the receivable is settled"
    );
    assert_eq!(
        posted(&w.bank, &BookAccount::pboc_reserve(tenant)).await,
        (a, 0)
    );
    assert!(
        w.bank.nonzero_zbas(tenant).await.unwrap().is_empty(),
        "the unit's zero-balance account ends at zero"
    );
    assert_eq!(
        w.bank
            .library()
            .status_code(&request, Leg::Original)
            .await
            .unwrap(),
        12
    );

    // A second 2301 listing the same 8202: refused as already cleared, nothing deducted.
    let again = request_voucher(
        &template,
        "QS20250115014",
        today(),
        PayType::Authorized,
        &[listed[0].clone()],
    )
    .unwrap();
    let second = w.bank_sends(Build::Given(again), &template, "").await;
    let outcomes = w.pboc_clears(&states).await;
    let reasons = returned(&outcomes, &second);
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(reasons[0].contains("already cleared"), "{reasons:?}");
    assert!(reasons[0].contains(&key.voucher_no), "{reasons:?}");
    let quota_after = w
        .pboc
        .account(BookAccount::clearing_quota(&authorized_key).id())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(quota_after.debits_posted, a, "nothing more deducted");
}

both_backends!(
    a_5201_and_an_8202_sharing_a_voucher_no_are_claimed_and_cleared_apart,
    shared_voucher_no_cleared_apart
);

/// Regression: claims and clearings were keyed by VoucherNo alone, so a cleared 5201 made
/// an 8202 of the same number "already cleared", and a pending direct 2301 hid it from the
/// authorized one.
async fn shared_voucher_no_cleared_apart(backend: Backend) {
    let w = World::new(backend).await;
    let direct_body = w.issue_5201(1).await;
    let direct_key = direct_body.voucher.key();
    assert!(matches!(
        &w.bank_pays().await[..],
        [PayOutcome::Paid { .. }]
    ));
    let tenant = tenant_of(&direct_key).unwrap();
    let unit: UnitCode = UNIT_CODE.parse().unwrap();
    let shared = direct_key.voucher_no.clone();
    let body = w.signed_8202_with(1, |v| {
        v.header.set("VoucherNo", shared.clone());
        v.header.set("Id", shared.clone());
    });
    let key = body.voucher.key();
    assert_eq!(key.voucher_no, direct_key.voucher_no);
    assert_eq!(tenant_of(&key).unwrap(), tenant);
    let amount = check_8202(&body.voucher).unwrap().amount;
    w.finance_notices_unit_quota(tenant, amount).await;
    create(&w.bank, vec![BookAccount::unit_zba(tenant, &unit)]).await;
    w.unit_sends(&body).await;
    assert!(matches!(
        &w.bank_pays_with(Some(UNIT_ACCOUNTS)).await[..],
        [PayOutcome::Paid { key: k, .. }] if k == &key
    ));
    let direct_amount = payment_amount(&direct_body.voucher).unwrap();
    w.pboc_books(&direct_body.voucher, direct_amount).await;
    let authorized_key = clearing_key_of(&body.voucher, PayType::Authorized);
    w.pboc_quota(&authorized_key, amount, 3).await;
    let states = w.paid_states(&[direct_key.clone(), key.clone()]).await;

    // The direct 2301 claims the 5201 only; the 8202 stays clearable.
    let template = w.template(&direct_body.voucher);
    let first = w
        .bank_sends(Build::Direct, &template, "QS20250115021")
        .await;
    assert!(clearable(&w.bank, &template).await.unwrap().is_empty());
    let template_12 = w.template(&body.voucher);
    assert_eq!(
        clearable_of(&w.bank, &template_12, PayType::Authorized)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(matches!(
        &w.pboc_clears(&states).await[..],
        [ClearOutcome::Cleared { key, .. }] if key == &first
    ));

    // PBOC has cleared the 5201, not the 8202 of the same number.
    let second = w
        .bank_sends(Build::Authorized, &template_12, "QS20250115022")
        .await;
    let outcomes = w.pboc_clears(&states).await;
    assert!(
        matches!(&outcomes[..], [ClearOutcome::Cleared { key: k, amount: a }]
            if k == &second && *a == amount),
        "{outcomes:?}"
    );
    assert_eq!(
        w.pboc
            .quota_summary(BookFilter::all(AccountKind::ClearingQuota, tenant))
            .await
            .unwrap()
            .remaining,
        0,
        "both quotas used, each by its own payment"
    );
}
