//! 待补录: a payment the bank cannot pay until a person completes it (issue 6 part 4).
//!
//! A bank configured with `require_payee_bank_no` stops a single 5201 or 8202 that does not
//! name the payee's bank (`PayeeAcctBankNo`) at 待补录 (74) instead of paying it: the sender's
//! status query still says 签收成功, nothing is booked, and neither the worker's read-again
//! sweep nor later ticks touch it. A person completes the number
//! ([`Party::complete_payee_bank`]): a number that is not 12 digits is refused and changes
//! nothing; a good one is recorded in the library's event log and the voucher is paid once
//! by the worker's own step, its sealed receipt carrying the number where the registry has
//! the receipt field (`XPayeeAcctBankNo`); the sender books the receipt. Completing twice
//! pays once. With the rule off nothing changes. Then the bank desk's form (补录收款行行号)
//! does the same from the portal.
//!
//! Every scenario runs on SQLite and on PostgreSQL (each party in its own file or schema).

mod common;
#[path = "common/web.rs"]
mod web;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use guoku_domain::Amount;
use guoku_node::exchange::{
    Clock, ExchangeState, InMemory, InMemoryNetwork, Peer, ReceiveLimits, app,
};
use guoku_node::flows::authorized::{self, UnitAccount};
use guoku_node::flows::batch::RowRules;
use guoku_node::flows::direct::{
    self, Bank, DirectError, PayOutcome, PayeeBankRule, ReceiptOutcome, X_PAYEE_BANK_NO,
    payment_amount,
};
use guoku_node::party::{self, Party, PartyConfig, PartyError, STUCK_AFTER_SECS, Staff};
use guoku_node::status_sync::{SYNC_LIMIT_MAX, Sweep, sync_sent};
use guoku_seal::Suite;
use guoku_seal::pki::Post;
use guoku_seal::voucher::{Signer, StampKind};
use guoku_store::Store;
use guoku_store::books::{BookAccount, BookOp, IndicatorKey, Tenant, UnitCode};
use guoku_store::library::LibraryError;
use guoku_voucher::lifecycle::{Exchange, Leg, Processing, ProcessingEvent};
use guoku_voucher::registry::DEFAULT_REGISTRY_TOML;
use guoku_voucher::sample::{Style, sample};
use guoku_voucher::{EnvelopeBody, Registry, VoucherFlag, VoucherKey};
use time::OffsetDateTime;

use common::*;
use web::*;

/// The payee's bank number the tests complete (CCB Changsha).
const PAYEE_BANK_NO: &str = "105551000011";

// ----- the registry ---------------------------------------------------------------------

/// The shipped registry with the receipt field for a completed payee bank number
/// (`XPayeeAcctBankNo` on 5201 and 8202), as a province's registry would have it; the
/// shipped one itself when it has the field already.
fn registry_with_bank_no() -> Registry {
    let has = |r: &Registry| {
        ["5201", "8202"].iter().all(|vt| {
            r.get(vt)
                .and_then(|t| t.header_field(X_PAYEE_BANK_NO))
                .is_some_and(|f| f.receipt)
        })
    };
    let builtin = Registry::builtin();
    if has(&builtin) {
        return builtin;
    }
    let receipt_fields = r#""XPayeeAcctBankName?", "XPayeeAcctNo?", "XPayeeAcctName?","#;
    assert_eq!(DEFAULT_REGISTRY_TOML.matches(receipt_fields).count(), 2);
    let text = DEFAULT_REGISTRY_TOML
        .replace(
            "XPayeeAcctName = {",
            "XPayeeAcctBankNo = { type = \"bank_no\", zh = \"实际收款银行行号\" }\nXPayeeAcctName = {",
        )
        .replace(
            receipt_fields,
            &format!("{receipt_fields} \"XPayeeAcctBankNo?\","),
        );
    let registry = Registry::from_toml(&text).unwrap();
    assert!(has(&registry));
    registry
}

/// Whether `registry` gives a completed bank number a place on `vt_code`'s receipt.
fn has_receipt_field(registry: &Registry, vt_code: &str) -> bool {
    registry
        .get(vt_code)
        .and_then(|t| t.header_field(X_PAYEE_BANK_NO))
        .is_some()
}

// ----- the parties ----------------------------------------------------------------------

/// The network and where the parties' stores live; dropped after the stores.
struct Net {
    backend: Backend,
    network: InMemoryNetwork,
    guards: Vec<SchemaGuard>,
    dir: tempfile::TempDir,
}

impl Net {
    /// `peer`'s store, receiving on the network with `registry`, and its side of the network.
    async fn join(
        &mut self,
        pki: &Pki,
        registry: &Registry,
        clock: &Clock,
        name: &str,
        peer: Peer,
    ) -> (Store, InMemory) {
        let (store, guard) = self.backend.party_store(&self.dir, name).await;
        self.guards.extend(guard);
        let state = ExchangeState::new(
            peer.clone(),
            Suite::Sm,
            registry.clone(),
            pki.voucher_trust(),
            store.clone(),
            clock.clone(),
            ReceiveLimits::default(),
        );
        self.network.register(&peer.org_code, app(state));
        (store, InMemory::new(self.network.clone(), peer))
    }
}

/// Finance and a budget unit (their flows driven directly) and an agent bank (a [`Party`]
/// with its worker's tick), on one in-memory network. Fields drop in order: the stores
/// before their schemas.
struct World {
    pki: Pki,
    registry: Registry,
    time: Arc<AtomicI64>,
    bank: Party<InMemory>,
    finance: Store,
    finance_net: InMemory,
    unit: Store,
    unit_net: InMemory,
    _net: Net,
}

fn person(pki: &Pki, post: Post, name: &str) -> party::Holder {
    let h = pki.person(&bank(), post, name);
    party::Holder {
        name: name.into(),
        key: h.key,
        certificate: h.cert,
    }
}

fn bank_staff(pki: &Pki) -> Staff {
    let org = bank();
    let signer = pki.person(&org, Post::Signer, "赵六");
    let business_seal = pki.seal(&org, StampKind::Ywzyz, "业务专用章", &signer);
    let paid_seal = pki.seal(&org, StampKind::Zqz, "转讫章", &signer);
    Staff {
        maker: person(pki, Post::Maker, "钱七"),
        checker: person(pki, Post::Checker, "孙八"),
        signer: party::Holder {
            name: "赵六".into(),
            key: signer.key,
            certificate: signer.cert,
        },
        business_seal,
        paid_seal: Some(paid_seal),
    }
}

impl World {
    async fn new(backend: Backend, registry: Registry, require_payee_bank_no: bool) -> World {
        let pki = Pki::new("测试根CA");
        let time = Arc::new(AtomicI64::new(pki.now.unix_timestamp()));
        let t = time.clone();
        let clock: Clock = Arc::new(move || {
            OffsetDateTime::from_unix_timestamp(t.load(Ordering::SeqCst)).expect("a time")
        });
        let mut net = Net {
            backend,
            network: InMemoryNetwork::new(),
            guards: Vec::new(),
            dir: tempfile::tempdir().unwrap(),
        };
        let (bank_store, bank_net) = net.join(&pki, &registry, &clock, "bank", bank_peer()).await;
        let (finance, finance_net) = net
            .join(&pki, &registry, &clock, "finance", finance_peer())
            .await;
        let (unit, unit_net) = net.join(&pki, &registry, &clock, "unit", unit_peer()).await;
        let config = PartyConfig {
            me: bank_peer(),
            name: "工商银行长沙分行".into(),
            suite: Suite::Sm,
            finance: FINANCE_CODE.into(),
            pboc: PBOC_CODE.into(),
            bank_no: BANK_CODE.into(),
            unit_accounts: vec![(UNIT_CODE.into(), UNIT_ZBA.into())],
            clearing_templates: Vec::new(),
            backoff: BACKOFF,
            clearing_every_secs: 0,
            status_every_secs: 0,
            audit_head_every_secs: 0,
            require_payee_bank_no,
            rows_per_8207: guoku_node::flows::batch::ROWS_PER_8207,
            banks: Vec::new(),
            divisions: Vec::new(),
            reconcile_every_secs: 0,
        };
        let bank = Party::new(
            config,
            Arc::new(registry.clone()),
            bank_store,
            bank_staff(&pki),
            bank_net,
            clock,
        );
        World {
            pki,
            registry,
            time,
            bank,
            finance,
            finance_net,
            unit,
            unit_net,
            _net: net,
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.time.load(Ordering::SeqCst)).unwrap()
    }

    fn advance(&self, secs: u64) {
        self.time
            .fetch_add(i64::try_from(secs).unwrap(), Ordering::SeqCst);
    }

    /// Finance issues 5201 number `n` without the payee's bank number from a plan with room
    /// to spare; its outbox delivers it to the bank. The voucher and its amount.
    async fn finance_sends(&self, n: u64, bank_no: &str) -> (VoucherKey, Amount) {
        let body = signed_5201_with(&self.pki, &self.registry, n, |v| {
            v.header.set("BusinessTypeCode", "1");
            v.header.set("PayeeAcctBankNo", bank_no);
        });
        let amount = payment_amount(&body.voucher).unwrap();
        let indicator = indicator_of(&body.voucher);
        finance_books(&self.finance, &indicator, amount, self.now()).await;
        bank_books(&self.bank.store, indicator.tenant).await;
        finance_issues(&self.finance, &self.registry, &indicator, &body, self.now()).await;
        deliver_one(&self.finance, &self.finance_net, self.now()).await;
        (body.voucher.key(), amount)
    }

    /// The bank's original leg of `key`.
    async fn at_bank(&self, key: &VoucherKey) -> guoku_store::library::VoucherRecord {
        status(&self.bank.store, key, Leg::Original).await.unwrap()
    }

    /// Money paid to payees by the bank in `tenant` (credits on its payees account).
    async fn paid_out(&self, tenant: Tenant) -> u128 {
        posted(&self.bank.store, &BookAccount::payees(tenant))
            .await
            .1
    }

    /// The value of `name` on the receipt of `key` this bank sent.
    async fn receipt_field(&self, key: &VoucherKey, name: &str) -> Option<String> {
        let receipt = status(&self.bank.store, key, Leg::Receipt).await?;
        body_of(&receipt.body, VoucherFlag::Receipt)
            .voucher
            .header
            .get(name)
            .map(str::to_owned)
    }
}

/// Finance's books: the voucher's indicator with a monthly plan of `amount` and more.
async fn finance_books(store: &Store, key: &IndicatorKey, amount: Amount, now: u64) {
    let plan = amount.checked_add(fen(10_000)).unwrap();
    create(
        store,
        vec![
            BookAccount::budget_source(key.tenant),
            BookAccount::indicator(key),
            BookAccount::plan(key, MONTH).unwrap(),
            BookAccount::plan_used(key, MONTH).unwrap(),
        ],
    )
    .await;
    // One voucher per world: its finance books are new.
    let ops = [
        BookOp::approve_indicator(1, key, plan).unwrap(),
        BookOp::approve_plan(2, key, MONTH, plan).unwrap(),
    ];
    apply(store, now, &ops).await;
}

/// The bank's money books for direct payments.
async fn bank_books(store: &Store, tenant: Tenant) {
    create_missing(
        store,
        vec![
            BookAccount::advance(tenant),
            BookAccount::finance_zba(tenant),
            BookAccount::payees(tenant),
        ],
    )
    .await;
}

// ----- a 5201 waits for a person, who completes it ----------------------------------------

both_backends!(
    a_5201_without_its_payee_bank_waits_for_a_person,
    |backend| {
        let w = World::new(backend, registry_with_bank_no(), true).await;
        let (key, amount) = w.finance_sends(1, "").await;
        let tenant = direct::tenant_of(&key).unwrap();

        // The worker takes it as far as approval and stops at 待补录; that step went through.
        let report = w.bank.tick().await.unwrap();
        assert_eq!((report.handled, report.failed), (1, 0), "{report:?}");
        let held = w.at_bank(&key).await;
        assert_eq!(held.exchange, Exchange::Acknowledged);
        assert_eq!(held.processing, Some(Processing::AwaitingCompletion));
        assert_eq!(held.processing.unwrap().code(), 74);
        assert!(
            held.reason
                .as_deref()
                .unwrap_or("")
                .contains("PayeeAcctBankNo"),
            "{held:?}"
        );
        assert_eq!(w.paid_out(tenant).await, 0, "nothing booked");
        assert!(status(&w.bank.store, &key, Leg::Receipt).await.is_none());

        // Finance's status query says 签收成功.
        let mut sweep = Sweep::for_registry(&w.registry);
        sync_sent(
            &w.finance,
            &w.finance_net,
            &mut sweep,
            "sweep",
            w.now(),
            SYNC_LIMIT_MAX,
        )
        .await
        .unwrap();
        let sent = status(&w.finance, &key, Leg::Original).await.unwrap();
        assert_eq!(sent.exchange, Exchange::Acknowledged);
        assert_eq!(sent.status_code(), 3);

        // The read-again sweep and later ticks leave it to the person.
        w.advance(STUCK_AFTER_SECS + 1);
        let report = w.bank.tick().await.unwrap();
        assert_eq!((report.handled, report.retried), (0, 0), "{report:?}");
        assert_eq!(
            w.at_bank(&key).await.processing,
            Some(Processing::AwaitingCompletion)
        );

        // A number that is not 12 digits is refused and changes nothing.
        let events = w
            .bank
            .store
            .library()
            .events(&key, Leg::Original)
            .await
            .unwrap();
        for bad in ["", "12345", "10555100001X", "1055510000111"] {
            let refused = w.bank.complete_payee_bank(&key, bad, "teller").await;
            assert!(
                matches!(refused, Err(PartyError::Direct(DirectError::Invalid(_)))),
                "{bad:?}: {refused:?}"
            );
        }
        assert_eq!(
            w.bank
                .store
                .library()
                .events(&key, Leg::Original)
                .await
                .unwrap(),
            events
        );
        assert_eq!(
            w.at_bank(&key).await.processing,
            Some(Processing::AwaitingCompletion)
        );

        // A good number: recorded, and the voucher is paid by the worker's own step.
        let paid = w
            .bank
            .complete_payee_bank(&key, PAYEE_BANK_NO, "teller")
            .await
            .unwrap();
        assert!(
            matches!(&paid, PayOutcome::Paid { key: k, amount: a } if *k == key && *a == amount),
            "{paid:?}"
        );
        let done = w.at_bank(&key).await;
        assert_eq!(done.processing, Some(Processing::ReceiptSent));
        assert_eq!(w.paid_out(tenant).await, fen_of(amount));
        let completed: Vec<_> = w
            .bank
            .store
            .library()
            .events(&key, Leg::Original)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.action == format!("process:{:?}", ProcessingEvent::Complete))
            .collect();
        assert_eq!(completed.len(), 1);
        assert_eq!(completed[0].actor, "teller");
        assert!(
            completed[0]
                .reason
                .as_deref()
                .unwrap_or("")
                .contains(PAYEE_BANK_NO),
            "{completed:?}"
        );
        // The original keeps its signed body; the receipt carries what the bank completed.
        let original = body_of(&done.body, VoucherFlag::Original);
        assert_eq!(original.voucher.header.get("PayeeAcctBankNo"), Some(""));
        assert_eq!(
            w.receipt_field(&key, X_PAYEE_BANK_NO).await.as_deref(),
            Some(PAYEE_BANK_NO)
        );

        // A second completion is refused and pays nothing more.
        let again = w
            .bank
            .complete_payee_bank(&key, PAYEE_BANK_NO, "teller")
            .await;
        assert!(
            matches!(again, Err(PartyError::Direct(DirectError::Invalid(_)))),
            "{again:?}"
        );
        assert_eq!(w.paid_out(tenant).await, fen_of(amount));
        assert_eq!(w.at_bank(&key).await, done);

        // The receipt goes back (its stamps verified on arrival) and finance books it.
        let report = w.bank.tick().await.unwrap();
        assert_eq!(report.outbox.delivered, 1, "{report:?}");
        let booked = direct::book_receipts(&w.finance, "clerk", 100, w.now())
            .await
            .unwrap();
        assert!(
            matches!(&booked[..], [ReceiptOutcome::Done { key: k, paid }] if *k == key && *paid == amount),
            "{booked:?}"
        );
        let sent = status(&w.finance, &key, Leg::Original).await.unwrap();
        assert_eq!(sent.exchange, Exchange::ReceiptReceived);
        let receipt = status(&w.finance, &key, Leg::Receipt).await.unwrap();
        assert_eq!(
            body_of(&receipt.body, VoucherFlag::Receipt)
                .voucher
                .header
                .get(X_PAYEE_BANK_NO),
            Some(PAYEE_BANK_NO)
        );
    }
);

both_backends!(two_completions_racing_pay_once, |backend| {
    let w = World::new(backend, registry_with_bank_no(), true).await;
    let (key, amount) = w.finance_sends(2, "").await;
    let tenant = direct::tenant_of(&key).unwrap();
    w.bank.tick().await.unwrap();
    let (a, b) = tokio::join!(
        w.bank.complete_payee_bank(&key, PAYEE_BANK_NO, "teller-a"),
        w.bank.complete_payee_bank(&key, "102551000015", "teller-b"),
    );
    let outcomes = [a, b];
    let paid = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(PayOutcome::Paid { .. })))
        .count();
    assert_eq!(paid, 1, "{outcomes:?}");
    for o in &outcomes {
        assert!(
            matches!(
                o,
                Ok(PayOutcome::Paid { .. })
                    | Err(PartyError::Direct(
                        DirectError::Invalid(_)
                            | DirectError::Library(LibraryError::Illegal { .. })
                    ))
            ),
            "{o:?}"
        );
    }
    assert_eq!(w.paid_out(tenant).await, fen_of(amount));
    let completions = w
        .bank
        .store
        .library()
        .events(&key, Leg::Original)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "process:Complete")
        .count();
    assert_eq!(completions, 1);
    assert_eq!(
        w.at_bank(&key).await.processing,
        Some(Processing::ReceiptSent)
    );
});

both_backends!(with_the_rule_off_nothing_waits, |backend| {
    let w = World::new(backend, registry_with_bank_no(), false).await;
    let (key, amount) = w.finance_sends(3, "").await;
    let tenant = direct::tenant_of(&key).unwrap();
    let report = w.bank.tick().await.unwrap();
    assert_eq!((report.handled, report.failed), (1, 0), "{report:?}");
    assert_eq!(
        w.at_bank(&key).await.processing,
        Some(Processing::ReceiptSent)
    );
    assert_eq!(w.paid_out(tenant).await, fen_of(amount));
    assert_eq!(
        w.receipt_field(&key, X_PAYEE_BANK_NO).await.as_deref(),
        Some("")
    );
    // Nothing to complete.
    let refused = w
        .bank
        .complete_payee_bank(&key, PAYEE_BANK_NO, "teller")
        .await;
    assert!(
        matches!(refused, Err(PartyError::Direct(DirectError::Invalid(_)))),
        "{refused:?}"
    );
});

both_backends!(with_the_rule_on_a_5201_naming_its_bank_is_paid, |backend| {
    let w = World::new(backend, registry_with_bank_no(), true).await;
    let (key, amount) = w.finance_sends(4, PAYEE_BANK_NO).await;
    let tenant = direct::tenant_of(&key).unwrap();
    w.bank.tick().await.unwrap();
    assert_eq!(
        w.at_bank(&key).await.processing,
        Some(Processing::ReceiptSent)
    );
    assert_eq!(w.paid_out(tenant).await, fen_of(amount));
});

// ----- an 8202, on the shipped registry -----------------------------------------------------

/// An 8202 of the unit from its zero-balance account without the payee's bank number,
/// stamped by its maker, checker and seal.
fn signed_8202_without_bank_no(pki: &Pki, registry: &Registry, n: u64) -> EnvelopeBody {
    let unit = unit_org();
    let maker = pki.person(&unit, Post::Maker, "张三");
    let checker = pki.person(&unit, Post::Checker, "李四");
    let seal = SealHolder::new(pki, &unit, StampKind::Ywzyz, "单位财务专用章");
    let ty = registry.get(authorized::VT_8202).unwrap();
    let mut body = EnvelopeBody {
        flag: VoucherFlag::Original,
        attach: "SUCCESS".into(),
        voucher: sample(ty, today(), VoucherFlag::Original, Style::Plain, n),
        signatures: Vec::new(),
    };
    for (name, value) in [
        ("PayTypeCode", "12"),
        ("AgencyCode", UNIT_CODE),
        ("PayAcctNo", UNIT_ZBA),
        ("BusinessTypeCode", "1"),
        ("PayeeAcctBankNo", ""),
    ] {
        body.voucher.header.set(name, value);
    }
    guoku_node::stamping::stamp_next(Suite::Sm, ty, &mut body, &sign(&maker)).unwrap();
    guoku_node::stamping::stamp_next(Suite::Sm, ty, &mut body, &sign(&checker)).unwrap();
    guoku_node::stamping::stamp_next(Suite::Sm, ty, &mut body, &seal.signer(pki)).unwrap();
    body
}

both_backends!(
    an_8202_without_its_payee_bank_waits_for_a_person,
    |backend| {
        let w = World::new(backend, Registry::builtin(), true).await;
        let body = signed_8202_without_bank_no(&w.pki, &w.registry, 5);
        let key = body.voucher.key();
        let asked = authorized::check_8202(&body.voucher).unwrap();
        let tenant = asked.tenant;
        let unit: UnitCode = UNIT_CODE.parse().unwrap();
        create(
            &w.bank.store,
            vec![
                BookAccount::quota_notice_source(tenant),
                BookAccount::unit_quota(tenant, &unit, asked.month).unwrap(),
                BookAccount::unit_quota_used(tenant, &unit, asked.month).unwrap(),
                BookAccount::advance(tenant),
                BookAccount::unit_zba(tenant, &unit),
                BookAccount::payees(tenant),
            ],
        )
        .await;
        let quota = asked.amount.checked_add(fen(10_000)).unwrap();
        let op = BookOp::notice_unit_quota(1, tenant, &unit, asked.month, quota).unwrap();
        apply(&w.bank.store, 0, &[op]).await;
        let route = direct::Route {
            me: UNIT_CODE,
            to: BANK_CODE,
            actor: "cashier",
        };
        let account = UnitAccount {
            unit: UNIT_CODE,
            acct_no: UNIT_ZBA,
        };
        authorized::issue(&w.unit, &w.registry, account, &body, route, w.now())
            .await
            .unwrap();
        deliver_one(&w.unit, &w.unit_net, w.now()).await;

        w.bank.tick().await.unwrap();
        assert_eq!(
            w.at_bank(&key).await.processing,
            Some(Processing::AwaitingCompletion)
        );
        assert_eq!(w.paid_out(tenant).await, 0);

        let paid = w
            .bank
            .complete_payee_bank(&key, PAYEE_BANK_NO, "teller")
            .await
            .unwrap();
        assert!(matches!(paid, PayOutcome::Paid { .. }), "{paid:?}");
        assert_eq!(w.paid_out(tenant).await, fen_of(asked.amount));
        // The number is in the event log; on the receipt only where the registry has the field.
        let events = w
            .bank
            .store
            .library()
            .events(&key, Leg::Original)
            .await
            .unwrap();
        assert!(
            events.iter().any(|e| e.action == "process:Complete"
                && e.reason.as_deref().unwrap_or("").contains(PAYEE_BANK_NO)),
            "{events:?}"
        );
        let on_receipt = w.receipt_field(&key, X_PAYEE_BANK_NO).await;
        if has_receipt_field(&w.registry, authorized::VT_8202) {
            assert_eq!(on_receipt.as_deref(), Some(PAYEE_BANK_NO));
        } else {
            assert_eq!(on_receipt, None);
        }

        // The unit books the receipt.
        w.bank.tick().await.unwrap();
        let booked = authorized::book_receipts(&w.unit, "cashier", 100, w.now())
            .await
            .unwrap();
        assert!(
            matches!(&booked[..], [ReceiptOutcome::Done { key: k, .. }] if *k == key),
            "{booked:?}"
        );
    }
);

// ----- the flow step on its own --------------------------------------------------------------

#[test]
fn the_rule_holds_only_what_lacks_the_number() {
    let registry = Registry::builtin();
    let ty = registry.get("5201").unwrap();
    let mut voucher = sample(ty, today(), VoucherFlag::Original, Style::Plain, 1);
    voucher.header.set("PayeeAcctBankNo", PAYEE_BANK_NO);
    assert!(!PayeeBankRule::Required.holds(&voucher));
    voucher.header.set("PayeeAcctBankNo", " ");
    assert!(PayeeBankRule::Required.holds(&voucher));
    assert!(!PayeeBankRule::Optional.holds(&voucher));
    assert_eq!(PayeeBankRule::required_if(true), PayeeBankRule::Required);
    assert_eq!(PayeeBankRule::default(), PayeeBankRule::Optional);
}

// ----- the bank's desk --------------------------------------------------------------------

fn key_path(key: &VoucherKey) -> String {
    format!(
        "{}/{}/{}/{}",
        key.adm_div_code, key.st_year, key.vt_code, key.voucher_no
    )
}

/// Finance issues a 5201 without the payee's bank number to ICBC, which reads it and (as a
/// bank with the rule on does) stops it at 待补录: its key.
async fn awaiting_at_icbc(env: &Env) -> VoucherKey {
    let demo = &env.demo;
    let unit = demo.province.units[0].clone();
    let (t, _) = demo.finance.now();
    let mut voucher = demo
        .direct_voucher(
            &unit.code,
            "88.00".parse().unwrap(),
            &guoku_node::demo::Payee::demo(1),
            party::business_date(t),
        )
        .unwrap();
    voucher.header.set("PayeeAcctBankNo", "");
    let key = voucher.key();
    let indicator = demo.indicator(&unit.code).unwrap();
    demo.finance
        .issue_direct(
            voucher,
            &indicator,
            u8::from(t.month()),
            demo.province.direct_bank().code,
            "maker",
        )
        .await
        .unwrap();
    demo.finance.tick().await.unwrap();
    // The demo's banks pay without the number: take the read voucher through the bank's
    // step with the rule on, as a bank configured so does.
    let icbc = env.party(ICBC);
    let (t, now) = icbc.now();
    let read = icbc.store.library().read(100, "worker", now).await.unwrap();
    let record = read.into_iter().find(|r| r.key == key).unwrap();
    let staff = &icbc.staff;
    let sealer = Signer::Seal {
        seal: staff.paid_seal.as_ref().unwrap(),
        key: &staff.signer.key,
        certificate: &staff.signer.certificate,
        time: t,
    };
    let prefix = format!("{}-", icbc.config.bank_no);
    let bank = Bank {
        me: ICBC,
        actor: "worker",
        pay_date: party::business_date(t),
        serial_prefix: &prefix,
        suite: icbc.config.suite,
        sealer: &sealer,
    };
    let outcome = direct::pay_or_hold(
        &icbc.store,
        &icbc.registry,
        &bank,
        &RowRules::default(),
        PayeeBankRule::Required,
        &record,
        now,
    )
    .await
    .unwrap();
    assert!(
        matches!(outcome, PayOutcome::AwaitingCompletion { .. }),
        "{outcome:?}"
    );
    key
}

both!(a_checker_completes_the_payee_bank_at_the_desk, |env| {
    env.demo.settle(30).await.unwrap();
    let app = &env.app;
    let key = awaiting_at_icbc(env).await;
    let icbc = env.party(ICBC);
    let detail = format!("/o/{ICBC}/bank/v/{}", key_path(&key));
    let action = format!("{detail}/complete");

    // The exceptions page offers the form to the checker.
    let mut teller = sign_in(env, app, &checker(ICBC)).await;
    let exceptions = teller.get(app, &format!("/o/{ICBC}/bank/exceptions")).await;
    assert_eq!(exceptions.status, StatusCode::OK, "{}", exceptions.body);
    assert!(exceptions.body.contains("待补录"), "{}", exceptions.body);
    assert!(exceptions.has_form(&action), "{}", exceptions.body);
    let from_list = exceptions.form_id(&action);

    // A signer sees the voucher, not the form, and may not post it.
    let mut sealer = sign_in(env, app, &signer(ICBC)).await;
    let page = sealer.get(app, &detail).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(!page.has_form(&action));
    let csrf = page.csrf("/logout");
    let forbidden = sealer
        .post(
            app,
            &action,
            &[
                ("csrf", &csrf),
                ("form_id", &from_list),
                ("bank_no", PAYEE_BANK_NO),
            ],
        )
        .await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);

    // The voucher's page has the form too; a bad number is an error next to the field.
    let page = teller.get(app, &detail).await;
    assert!(page.body.contains("补录收款行行号"), "{}", page.body);
    let (csrf, id) = (page.csrf(&action), page.form_id(&action));
    for bad in ["", "12345", "1055510000ab"] {
        let answer = teller
            .post(
                app,
                &action,
                &[("csrf", &csrf), ("form_id", &id), ("bank_no", bad)],
            )
            .await;
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}");
        assert!(answer.body.contains("class=\"error\""), "{}", answer.body);
        assert!(answer.has_form(&action));
    }
    let record = icbc
        .store
        .library()
        .status(&key, Leg::Original)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.processing, Some(Processing::AwaitingCompletion));

    // A good number: the voucher is paid and its page shows it processed.
    let done = teller
        .post(
            app,
            &action,
            &[
                ("csrf", &csrf),
                ("form_id", &id),
                ("bank_no", PAYEE_BANK_NO),
            ],
        )
        .await;
    assert_eq!(
        done.status,
        StatusCode::SEE_OTHER,
        "{}",
        done.body
            .split("class=\"error\"")
            .nth(1)
            .unwrap_or(&done.body)
    );
    assert_eq!(done.location(), detail);
    let page = teller.get(app, &detail).await;
    assert!(page.body.contains("80 回单成功"), "{}", page.body);
    assert!(!page.has_form(&action));
    let paid = icbc
        .store
        .library()
        .status(&key, Leg::Original)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(paid.processing, Some(Processing::ReceiptSent));

    // The same form again (a double click) and the list's form do nothing more.
    let again = teller
        .post(
            app,
            &action,
            &[
                ("csrf", &csrf),
                ("form_id", &id),
                ("bank_no", PAYEE_BANK_NO),
            ],
        )
        .await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
    let late = teller
        .post(
            app,
            &action,
            &[
                ("csrf", &csrf),
                ("form_id", &from_list),
                ("bank_no", PAYEE_BANK_NO),
            ],
        )
        .await;
    assert_eq!(late.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(late.body.contains("已不在待补录状态"), "{}", late.body);
    let completions = icbc
        .store
        .library()
        .events(&key, Leg::Original)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "process:Complete")
        .count();
    assert_eq!(completions, 1);
    let unchanged = icbc
        .store
        .library()
        .status(&key, Leg::Original)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(unchanged, paid);
});
