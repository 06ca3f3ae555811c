//! The authorized quota notice to the agent bank end to end (授权额度通知单, 5105, DOMAIN
//! §3.1 step 3): finance builds, stamps and sends a 5105; the bank signs for it, opens and
//! books the unit's plan quota for the month, seals the receipt with its 业务专用章 and
//! returns it; finance takes the receipt (original at 12). The unit's 8202 is then paid
//! against that plan quota. A repeated notice changes nothing; a notice naming a unit
//! whose zero-balance account the bank does not keep is returned (退回) with the reason; a
//! negative adjustment below what payments used is refused by the books (核算失败),
//! nothing changed. Every scenario runs on SQLite and on PostgreSQL; in-memory network, no
//! sleeping.

use guoku_domain::{Amount, BankNo};
use guoku_node::exchange::InMemory;
use guoku_node::flows::authorized::{self, VT_8202, check_8202};
use guoku_node::flows::direct::{Bank, PayOutcome, Route, tenant_of};
use guoku_node::flows::quota::{
    BankDesk, NoticeOutcome, ReceiptOutcome, UnitQuotaLine, UnitQuotaNotice, UnitQuotaNotifier,
    VT_5105, check_unit_quota_notice, notice_5105_voucher, on_unit_quota_notice,
    send_unit_quota_notice, take_receipt, unit_quota_op,
};
use guoku_node::outbox::deliver_due;
use guoku_node::stamping::{Verification, stamp_next, type_of, verify};
use guoku_seal::Suite;
use guoku_seal::pki::{OrgRole, Post, RevocationPolicy};
use guoku_seal::voucher::{Signer, StampKind, TrustContext};
use guoku_store::Store;
use guoku_store::books::{AccountKind, Applied, BookAccount, BookFilter, Tenant, UnitCode};
use guoku_store::library::VoucherRecord;
use guoku_voucher::lifecycle::{Exchange, Leg, Processing};
use guoku_voucher::sample::{Style, sample};
use guoku_voucher::{EnvelopeBody, Registry, VoucherFlag, VoucherKey};

mod common;
use common::*;

const OTHER_UNIT: &str = "A43000199";
const OTHER_ZBA: &str = "1901-430001990001";

// ----- the parties -------------------------------------------------------------------------

/// Finance, the bank and the budget unit on one in-memory network.
struct World {
    pki: Pki,
    registry: Registry,
    finance: Store,
    finance_net: InMemory,
    bank: Store,
    bank_net: InMemory,
    unit: Store,
    unit_net: InMemory,
    now: u64,
    // Dropped last: the stores' connections close before their schemas go.
    _nodes: Nodes,
}

impl World {
    async fn new(backend: Backend) -> Self {
        let pki = Pki::new("测试根CA");
        let mut nodes = Nodes::new(backend);
        let (finance, finance_net) = nodes.join(&pki, "finance", finance_peer()).await;
        let (bank, bank_net) = nodes.join(&pki, "bank", bank_peer()).await;
        let (unit, unit_net) = nodes.join(&pki, "unit", unit_peer()).await;
        let now = unix_now(&pki);
        Self {
            pki,
            registry: Registry::builtin(),
            finance,
            finance_net,
            bank,
            bank_net,
            unit,
            unit_net,
            now,
            _nodes: nodes,
        }
    }

    /// The unit's 8202 `n`, from its zero-balance account, not yet stamped.
    fn voucher_8202(&self, n: u64) -> guoku_voucher::Voucher {
        let ty = self.registry.get(VT_8202).unwrap();
        let mut voucher = sample(ty, today(), VoucherFlag::Original, Style::Plain, n);
        voucher.header.set("PayTypeCode", "12");
        voucher.header.set("AgencyCode", UNIT_CODE);
        voucher.header.set("PayAcctNo", UNIT_ZBA);
        voucher
    }

    /// What the 8202 `n` pays.
    fn amount_8202(&self, n: u64) -> Amount {
        check_8202(&self.voucher_8202(n)).unwrap().amount
    }

    /// The 8202 `n`, stamped by the unit at every original position.
    fn signed_8202(&self, n: u64) -> EnvelopeBody {
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
            voucher: self.voucher_8202(n),
            signatures: Vec::new(),
        };
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

    /// The books' tenant of the sample vouchers.
    fn tenant(&self) -> Tenant {
        tenant_of(&self.voucher_8202(1).key()).unwrap()
    }

    /// A 5105 for January: one line per (unit, zero-balance account, amount).
    fn notice(&self, lines: &[(&str, &str, Amount)], no: &str) -> guoku_voucher::Voucher {
        let ty = self.registry.get(VT_5105).unwrap();
        let template = sample(ty, today(), VoucherFlag::Original, Style::Plain, 5);
        let notice = UnitQuotaNotice {
            tenant: self.tenant(),
            bank: BANK_CODE.parse::<BankNo>().unwrap(),
            fund: "1".parse().unwrap(),
            month: MONTH,
            lines: lines
                .iter()
                .map(|(unit, zba, amount)| UnitQuotaLine {
                    unit: unit.parse().unwrap(),
                    zba: (*zba).to_owned(),
                    func: "2050101".parse().unwrap(),
                    amount: *amount,
                })
                .collect(),
        };
        notice_5105_voucher(&template, &notice, no, today()).unwrap()
    }

    /// Finance stamps and sends a 5105 to the bank (the outbox delivers it); the record and
    /// how many vouchers the outbox delivered.
    async fn finance_sends(&self, voucher: guoku_voucher::Voucher) -> (VoucherRecord, usize) {
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
        let record =
            send_unit_quota_notice(&self.finance, &self.registry, &notifier, voucher, self.now)
                .await
                .unwrap();
        let sent = deliver_due(&self.finance, &self.finance_net, self.now, 10, BACKOFF)
            .await
            .unwrap();
        (record, sent.delivered)
    }

    /// The bank reads its unread vouchers and hands each to its 5105 desk.
    async fn bank_takes_notices(&self) -> Vec<NoticeOutcome> {
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
        let mut outcomes = Vec::new();
        for record in self
            .bank
            .library()
            .read(100, "quota-desk", self.now)
            .await
            .unwrap()
        {
            outcomes.push(
                on_unit_quota_notice(&self.bank, &self.registry, &desk, &record, self.now)
                    .await
                    .unwrap(),
            );
        }
        outcomes
    }

    /// The unit issues the 8202 `n`; the bank pays it (money accounts opened at
    /// onboarding) and its receipt goes back.
    async fn unit_pays(&self, n: u64) -> (VoucherKey, Amount, PayOutcome) {
        let tenant = self.tenant();
        let unit: UnitCode = UNIT_CODE.parse().unwrap();
        for account in [
            BookAccount::advance(tenant),
            BookAccount::unit_zba(tenant, &unit),
            BookAccount::payees(tenant),
        ] {
            if self.bank.account(account.id()).await.unwrap().is_none() {
                let created = self.bank.create_book_accounts(vec![account]).await.unwrap();
                assert_eq!(created, vec![guoku_ledger::CreateAccountResult::Ok]);
            }
        }
        let body = self.signed_8202(n);
        let amount = check_8202(&body.voucher).unwrap().amount;
        let route = Route {
            me: UNIT_CODE,
            to: BANK_CODE,
            actor: "cashier",
        };
        let account = UNIT_ACCOUNTS[0];
        authorized::issue(&self.unit, &self.registry, account, &body, route, self.now)
            .await
            .unwrap();
        deliver_one(&self.unit, &self.unit_net, self.now).await;
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
        let mut paid = authorized::pay_received(
            &self.bank,
            &self.registry,
            &teller,
            UNIT_ACCOUNTS,
            100,
            self.now,
        )
        .await
        .unwrap();
        assert_eq!(paid.len(), 1, "{paid:?}");
        (body.voucher.key(), amount, paid.remove(0))
    }

    /// The unit's plan quota at the bank: (granted, remaining) in fen.
    async fn plan_quota(&self) -> (u128, u128) {
        let s = self
            .bank
            .quota_summary(BookFilter::all(AccountKind::UnitQuota, self.tenant()))
            .await
            .unwrap();
        (s.granted, s.remaining)
    }

    async fn status(&self, store: &Store, key: &VoucherKey, leg: Leg) -> Option<VoucherRecord> {
        store.library().status(key, leg).await.unwrap()
    }
}

// ----- the scenarios -----------------------------------------------------------------------

both_backends!(
    a_5105_books_the_unit_plan_quota_once_and_its_receipt_reaches_finance,
    books_the_plan_quota_once
);

async fn books_the_plan_quota_once(backend: Backend) {
    let w = World::new(backend).await;
    let tenant = w.tenant();
    let unit: UnitCode = UNIT_CODE.parse().unwrap();
    assert_eq!(w.plan_quota().await, (0, 0));
    assert!(
        w.bank
            .account(BookAccount::unit_quota(tenant, &unit, MONTH).unwrap().id())
            .await
            .unwrap()
            .is_none(),
        "no plan quota before the notice"
    );

    // 1. Finance builds, stamps and sends the 5105: the 8202 to come, and 8,000.00 more.
    let plan = w.amount_8202(1).checked_add(fen(800_000)).unwrap();
    let p = fen_of(plan);
    let voucher = w.notice(&[(UNIT_CODE, UNIT_ZBA, plan)], "EQ20250115001");
    assert_eq!(voucher.header.get("SetMonth"), Some("01"));
    assert_eq!(
        voucher.header.get("PlanAmt"),
        Some(plan.to_string().as_str())
    );
    let (record, delivered) = w.finance_sends(voucher.clone()).await;
    assert_eq!(delivered, 1);
    assert_eq!(record.exchange, Exchange::NotReceived);
    let key = record.key.clone();
    assert_eq!(key.vt_code, VT_5105);

    // 2. The bank signs for it, opens and books the unit's plan quota, returns the receipt.
    let outcomes = w.bank_takes_notices().await;
    match &outcomes[..] {
        [NoticeOutcome::Booked { key: k, amount }] => {
            assert_eq!(k, &key);
            assert_eq!(*amount, plan);
        }
        other => panic!("not booked: {other:?}"),
    }
    assert_eq!(w.plan_quota().await, (p, p));
    let used = BookAccount::unit_quota_used(tenant, &unit, MONTH).unwrap();
    assert!(
        w.bank.account(used.id()).await.unwrap().is_some(),
        "the notice opened the unit's used-quota account"
    );
    let at_bank = w.status(&w.bank, &key, Leg::Original).await.unwrap();
    assert_eq!(at_bank.exchange, Exchange::Acknowledged);
    assert_eq!(at_bank.processing, Some(Processing::ReceiptSent));

    // 3. The receipt reaches finance, sealed by the bank; the original is at 12.
    let back = deliver_due(&w.bank, &w.bank_net, w.now, 10, BACKOFF)
        .await
        .unwrap();
    assert_eq!(back.delivered, 1, "{back:?}");
    let unread = w
        .finance
        .library()
        .read(100, "quota-clerk", w.now)
        .await
        .unwrap();
    assert_eq!(unread.len(), 1, "{unread:?}");
    assert_eq!(unread[0].leg, Leg::Receipt);
    let taken = take_receipt(&w.finance, "quota-clerk", &unread[0], w.now)
        .await
        .unwrap();
    assert!(
        matches!(&taken, ReceiptOutcome::Received { key: k } if k == &key),
        "{taken:?}"
    );
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

    // A repeat changes nothing: the same notice is not sent again, the bank has nothing to
    // read, and the booking under the notice's id is already done.
    let (again, delivered) = w.finance_sends(voucher).await;
    assert_eq!(again.key, key);
    assert_eq!(again.exchange, Exchange::ReceiptReceived);
    assert_eq!(delivered, 0);
    assert!(w.bank_takes_notices().await.is_empty());
    let stored = w.status(&w.bank, &key, Leg::Original).await.unwrap();
    let change = check_unit_quota_notice(
        &body_of(&stored.body, VoucherFlag::Original).voucher,
        UNIT_ACCOUNTS,
    )
    .unwrap();
    let op = unit_quota_op(&key, &change).unwrap();
    let applied = w.bank.apply_book_ops(w.now, &[op]).await.unwrap();
    assert_eq!(applied, vec![Ok(Applied::AlreadyDone)]);
    assert_eq!(w.plan_quota().await, (p, p));

    // The unit's 8202 is paid against that plan quota.
    let (_, _, paid) = w.unit_pays(1).await;
    assert!(matches!(paid, PayOutcome::Paid { .. }), "{paid:?}");
    assert_eq!(
        w.plan_quota().await,
        (p, 800_000),
        "the 8202 consumed the noticed plan quota"
    );
    assert!(w.bank.nonzero_zbas(tenant).await.unwrap().is_empty());
}

both_backends!(
    a_5105_for_a_unit_whose_account_the_bank_does_not_keep_is_returned,
    an_unknown_unit_is_returned
);

async fn an_unknown_unit_is_returned(backend: Backend) {
    let w = World::new(backend).await;
    let tenant = w.tenant();
    // One line the bank keeps, one it does not: the whole notice goes back.
    let voucher = w.notice(
        &[
            (UNIT_CODE, UNIT_ZBA, fen(100_000)),
            (OTHER_UNIT, OTHER_ZBA, fen(50_000)),
        ],
        "EQ20250115002",
    );
    let (record, delivered) = w.finance_sends(voucher).await;
    assert_eq!(delivered, 1);
    let key = record.key;
    let outcomes = w.bank_takes_notices().await;
    let reasons = match &outcomes[..] {
        [NoticeOutcome::Returned { key: k, reasons }] if k == &key => reasons.clone(),
        other => panic!("not returned: {other:?}"),
    };
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(reasons[0].contains("detail 2"), "{reasons:?}");
    assert!(reasons[0].contains(OTHER_UNIT), "{reasons:?}");
    assert!(reasons[0].contains(OTHER_ZBA), "{reasons:?}");
    assert!(reasons[0].contains("not kept by this bank"), "{reasons:?}");
    let at_bank = w.status(&w.bank, &key, Leg::Original).await.unwrap();
    assert_eq!(at_bank.exchange, Exchange::Returned);
    assert!(w.status(&w.bank, &key, Leg::Receipt).await.is_none());
    // Nothing booked, not even for the unit it keeps; no account opened.
    assert_eq!(w.plan_quota().await, (0, 0));
    for unit in [UNIT_CODE, OTHER_UNIT] {
        let unit: UnitCode = unit.parse().unwrap();
        let quota = BookAccount::unit_quota(tenant, &unit, MONTH).unwrap();
        assert!(w.bank.account(quota.id()).await.unwrap().is_none());
    }

    // The same unit code with an account number the bank does not keep for it is refused
    // too: the account, not just the unit, must be the bank's.
    let voucher = w.notice(&[(UNIT_CODE, OTHER_ZBA, fen(100_000))], "EQ20250115003");
    let (record, _) = w.finance_sends(voucher).await;
    let outcomes = w.bank_takes_notices().await;
    assert!(
        matches!(&outcomes[..], [NoticeOutcome::Returned { key, reasons }]
            if key == &record.key && reasons[0].contains("detail 1")),
        "{outcomes:?}"
    );
    assert_eq!(w.plan_quota().await, (0, 0));
}

both_backends!(
    a_negative_5105_below_what_was_used_fails_booking_and_changes_nothing,
    a_negative_adjustment_stops_at_what_was_used
);

async fn a_negative_adjustment_stops_at_what_was_used(backend: Backend) {
    let w = World::new(backend).await;
    let plan = w.amount_8202(1).checked_add(fen(800_000)).unwrap();
    let p = fen_of(plan);
    let (first, _) = w
        .finance_sends(w.notice(&[(UNIT_CODE, UNIT_ZBA, plan)], "EQ20250115001"))
        .await;
    assert!(matches!(
        &w.bank_takes_notices().await[..],
        [NoticeOutcome::Booked { key, .. }] if key == &first.key
    ));
    let (_, amount, paid) = w.unit_pays(1).await;
    assert!(matches!(paid, PayOutcome::Paid { .. }), "{paid:?}");
    let used = fen_of(amount);
    let unused = p - used;
    assert_eq!(unused, 800_000);
    assert_eq!(w.plan_quota().await, (p, unused));

    // Lowering the plan by one fen more than is unused would take back used quota.
    let too_much = -i64::try_from(unused + 1).unwrap();
    let (second, _) = w
        .finance_sends(w.notice(&[(UNIT_CODE, UNIT_ZBA, fen(too_much))], "EQ20250115002"))
        .await;
    let outcomes = w.bank_takes_notices().await;
    let reason = match &outcomes[..] {
        [NoticeOutcome::BookingFailed { key, reason }] if key == &second.key => reason.clone(),
        other => panic!("not refused by the books: {other:?}"),
    };
    assert!(reason.contains("额度值已经使用不能被退回"), "{reason}");
    assert!(reason.contains("unit_quota"), "{reason}");
    assert_eq!(w.plan_quota().await, (p, unused), "nothing changed");
    let at_bank = w.status(&w.bank, &second.key, Leg::Original).await.unwrap();
    assert_eq!(at_bank.processing, Some(Processing::BookingFailed));
    assert!(
        w.status(&w.bank, &second.key, Leg::Receipt).await.is_none(),
        "no receipt for a refused notice"
    );

    // Lowering it by exactly what is unused is booked: nothing remains.
    let exactly = -i64::try_from(unused).unwrap();
    let (third, _) = w
        .finance_sends(w.notice(&[(UNIT_CODE, UNIT_ZBA, fen(exactly))], "EQ20250115003"))
        .await;
    assert!(matches!(
        &w.bank_takes_notices().await[..],
        [NoticeOutcome::Booked { key, amount }] if key == &third.key && *amount == fen(exactly)
    ));
    assert_eq!(w.plan_quota().await.1, 0);

    // A lowering notice for a unit with no plan quota for the month opens nothing and is
    // refused by the books.
    let mut no_quota = w.notice(&[(UNIT_CODE, UNIT_ZBA, fen(-100))], "EQ20250115004");
    no_quota.header.set("SetMonth", "02");
    let (fourth, _) = w.finance_sends(no_quota).await;
    let outcomes = w.bank_takes_notices().await;
    assert!(
        matches!(&outcomes[..], [NoticeOutcome::BookingFailed { key, reason }]
            if key == &fourth.key && reason.contains("no plan quota")),
        "{outcomes:?}"
    );
    let unit: UnitCode = UNIT_CODE.parse().unwrap();
    let february = BookAccount::unit_quota(w.tenant(), &unit, 2).unwrap();
    assert!(w.bank.account(february.id()).await.unwrap().is_none());
}

// ----- the pure parts ----------------------------------------------------------------------

#[test]
fn the_builder_refuses_every_bad_line_at_once() {
    let ty = Registry::builtin();
    let template = sample(
        ty.get(VT_5105).unwrap(),
        today(),
        VoucherFlag::Original,
        Style::Plain,
        5,
    );
    let notice = UnitQuotaNotice {
        tenant: Tenant {
            adm_div: "430000".parse().unwrap(),
            year: "2025".parse().unwrap(),
        },
        bank: BANK_CODE.parse().unwrap(),
        fund: "1".parse().unwrap(),
        month: 13,
        lines: vec![UnitQuotaLine {
            unit: UNIT_CODE.parse().unwrap(),
            zba: String::new(),
            func: "2050101".parse().unwrap(),
            amount: Amount::ZERO,
        }],
    };
    let error = notice_5105_voucher(&template, &notice, "EQ1", today())
        .unwrap_err()
        .to_string();
    for part in ["SetMonth", "PlanAmt must not be zero", "AgencyAccoCode"] {
        assert!(error.contains(part), "{error}");
    }
}

#[test]
fn the_bank_check_reports_every_problem_and_groups_by_unit() {
    let registry = Registry::builtin();
    let template = sample(
        registry.get(VT_5105).unwrap(),
        today(),
        VoucherFlag::Original,
        Style::Plain,
        5,
    );
    let notice = UnitQuotaNotice {
        tenant: Tenant {
            adm_div: "430000".parse().unwrap(),
            year: "2025".parse().unwrap(),
        },
        bank: BANK_CODE.parse().unwrap(),
        fund: "1".parse().unwrap(),
        month: 3,
        lines: vec![
            UnitQuotaLine {
                unit: UNIT_CODE.parse().unwrap(),
                zba: UNIT_ZBA.into(),
                func: "2050101".parse().unwrap(),
                amount: fen(300),
            },
            UnitQuotaLine {
                unit: UNIT_CODE.parse().unwrap(),
                zba: UNIT_ZBA.into(),
                func: "2050102".parse().unwrap(),
                amount: fen(-100),
            },
        ],
    };
    let voucher = notice_5105_voucher(&template, &notice, "EQ1", today()).unwrap();
    assert_eq!(voucher.header.get("PlanAmt"), Some("2.00"));
    let change = check_unit_quota_notice(&voucher, UNIT_ACCOUNTS).unwrap();
    assert_eq!(change.month, 3);
    assert_eq!(change.total, fen(200));
    assert_eq!(
        change.deltas,
        vec![(UNIT_CODE.parse::<UnitCode>().unwrap(), fen(200))]
    );

    let mut bad = voucher.clone();
    bad.header.set("SetMonth", "13");
    bad.header.set("PlanAmt", "9.99");
    bad.header.set("PayTypeCode", "11");
    bad.details[1].set("AgencyAccoCode", OTHER_ZBA);
    let reasons = check_unit_quota_notice(&bad, UNIT_ACCOUNTS).unwrap_err();
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("SetMonth")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("PayTypeCode")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("detail 2") && r.contains(OTHER_ZBA)),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("not the master PlanAmt 9.99")),
        "{reasons:?}"
    );

    // Lines of one unit netting to zero change nothing: refused.
    let mut zero = voucher;
    zero.details[1].set("PlanAmt", "-3.00");
    zero.header.set("PlanAmt", "0.00");
    let reasons = check_unit_quota_notice(&zero, UNIT_ACCOUNTS).unwrap_err();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("PlanAmt must not be zero")),
        "{reasons:?}"
    );
}
