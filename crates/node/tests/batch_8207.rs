//! The 8207 transport (财政批量业务支付明细, DOMAIN §3.2): finance sends a large salary or
//! batch 5201 as a master without rows and 8207s carrying its rows; the bank waits for the
//! 8207s (whatever order they come in), pays the rows one by one, returns the rows' results
//! on the 8207s' receipts and the sum paid on the master's; finance checks every 8207
//! receipt against the 8207 it sent and restores the unpaid part of its plan once. 8207s
//! that contradict their master return it, nothing booked; a repeated delivery takes
//! effect once.
//!
//! Finance and the bank are [`Party`]s driven by their workers' ticks on one in-memory
//! network; every scenario runs on SQLite and on PostgreSQL.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use bytes::Bytes;
use guoku_domain::Amount;
use guoku_node::exchange::{Clock, InMemory, Received, Transport};
use guoku_node::flows::batch::{
    self, PartsState, ROWS_PER_8207, VT_8207, assess_8207, check_master_receipt, merge_8207,
    part_voucher_no, row_op_id, split_8207,
};
use guoku_node::flows::direct::{self, Route};
use guoku_node::party::{self, Party, PartyConfig, Staff};
use guoku_node::stamping::{stamp_next, type_of};
use guoku_seal::Suite;
use guoku_seal::pki::{Organisation, Post};
use guoku_seal::voucher::{Signer, StampKind};
use guoku_store::books::{AccountKind, BookAccount, BookOp, IndicatorKey, Tenant};
use guoku_store::library::NewVoucher;
use guoku_voucher::lifecycle::{Exchange, Leg, Processing, ProcessingEvent};
use guoku_voucher::sample::{Style, sample};
use guoku_voucher::{
    Encoding, Envelope, EnvelopeBody, Registry, Voucher, VoucherFlag, VoucherKey, write_envelope,
};
use time::OffsetDateTime;

use common::*;

// ----- vouchers -------------------------------------------------------------------------

/// The fen of row `i` (1-based): 100.00 and `i` fen, so every row differs.
fn row_fen(i: usize) -> i64 {
    10_000 + i64::try_from(i).unwrap()
}

/// A salary 5201 (BusinessTypeCode 3), unstamped, of `rows` rows; the rows numbered in
/// `bad_account` have an account number that is not one, those in `no_name` no payee name.
fn salary(n: u64, rows: usize, bad_account: &[usize], no_name: &[usize]) -> Voucher {
    let registry = Registry::builtin();
    let mut v = sample(
        registry.get("5201").unwrap(),
        today(),
        VoucherFlag::Original,
        Style::Plain,
        n,
    );
    let template = v.details[0].clone();
    let func = v.header.get("ExpFuncCode").unwrap().to_owned();
    let agency = v.header.get("AgencyCode").unwrap().to_owned();
    v.header.set("BusinessTypeCode", "3");
    v.details = (1..=rows)
        .map(|i| {
            let mut d = template.clone();
            d.set("Id", i.to_string());
            d.set("ExpFuncCode", func.clone());
            d.set("AgencyCode", agency.clone());
            let acct = if bad_account.contains(&i) {
                "bad account!".to_owned()
            } else {
                format!("6222-{i:08}")
            };
            d.set("PayeeAcctNo", acct);
            d.set(
                "PayeeAcctName",
                if no_name.contains(&i) {
                    String::new()
                } else {
                    format!("职工{i}")
                },
            );
            d.set("PayAmt", fen(row_fen(i)).to_string());
            d
        })
        .collect();
    let total: i64 = (1..=rows).map(row_fen).sum();
    v.header.set("PayAmt", fen(total).to_string());
    v
}

/// The total of rows `1..=rows` except `unpaid`, and of `unpaid`, in fen.
fn sums(rows: usize, unpaid: &[usize]) -> (u128, u128) {
    let (mut paid, mut not) = (0u128, 0u128);
    for i in 1..=rows {
        let f = u128::try_from(row_fen(i)).unwrap();
        if unpaid.contains(&i) {
            not += f;
        } else {
            paid += f;
        }
    }
    (paid, not)
}

fn part_keys(master: &VoucherKey, parts: usize) -> Vec<VoucherKey> {
    (1..=parts)
        .map(|n| VoucherKey {
            adm_div_code: master.adm_div_code.clone(),
            st_year: master.st_year.clone(),
            vt_code: VT_8207.into(),
            voucher_no: part_voucher_no(master, n),
        })
        .collect()
}

// ----- the parties ----------------------------------------------------------------------

fn holder(pki: &Pki, org: &Organisation, post: Post, name: &str) -> party::Holder {
    let h = pki.person(org, post, name);
    party::Holder {
        name: name.into(),
        key: h.key,
        certificate: h.cert,
    }
}

fn staff(pki: &Pki, org: &Organisation, paid_seal: bool) -> Staff {
    let signer = pki.person(org, Post::Signer, "赵六");
    let business_seal = pki.seal(org, StampKind::Ywzyz, "业务专用章", &signer);
    let paid_seal = paid_seal.then(|| pki.seal(org, StampKind::Zqz, "转讫章", &signer));
    Staff {
        maker: holder(pki, org, Post::Maker, "钱七"),
        checker: holder(pki, org, Post::Checker, "孙八"),
        signer: party::Holder {
            name: "赵六".into(),
            key: signer.key,
            certificate: signer.cert,
        },
        business_seal,
        paid_seal,
    }
}

fn config(me: guoku_node::exchange::Peer, name: &str, rows_per_8207: usize) -> PartyConfig {
    PartyConfig {
        me,
        name: name.into(),
        suite: Suite::Sm,
        finance: FINANCE_CODE.into(),
        pboc: PBOC_CODE.into(),
        bank_no: BANK_CODE.into(),
        unit_accounts: Vec::new(),
        clearing_templates: Vec::new(),
        backoff: BACKOFF,
        clearing_every_secs: 0,
        status_every_secs: 0,
        audit_head_every_secs: 0,
        require_payee_bank_no: false,
        rows_per_8207,
        banks: Vec::new(),
        divisions: Vec::new(),
        reconcile_every_secs: 0,
    }
}

/// Finance and an agent bank as parties on one in-memory network, their clock stopped at
/// the PKI's time. Fields drop in order: the parties' stores before their schemas.
struct World {
    pki: Pki,
    registry: Registry,
    time: Arc<AtomicI64>,
    finance: Party<InMemory>,
    bank: Party<InMemory>,
    _nodes: Nodes,
}

impl World {
    async fn new(backend: Backend, rows_per_8207: usize) -> World {
        let pki = Pki::new("测试根CA");
        let time = Arc::new(AtomicI64::new(pki.now.unix_timestamp()));
        let t = time.clone();
        let clock: Clock = Arc::new(move || {
            OffsetDateTime::from_unix_timestamp(t.load(Ordering::SeqCst)).expect("a time")
        });
        let mut nodes = Nodes::new(backend);
        let (bank_store, bank_net) = nodes.join(&pki, "bank", bank_peer()).await;
        let (finance_store, finance_net) = nodes.join(&pki, "finance", finance_peer()).await;
        let registry = Registry::builtin();
        let finance = Party::new(
            config(finance_peer(), "湖南省财政厅", rows_per_8207),
            Arc::new(registry.clone()),
            finance_store,
            staff(&pki, &finance(), false),
            finance_net,
            clock.clone(),
        );
        let bank = Party::new(
            config(bank_peer(), "工商银行长沙分行", rows_per_8207),
            Arc::new(registry.clone()),
            bank_store,
            staff(&pki, &bank(), true),
            bank_net,
            clock,
        );
        World {
            pki,
            registry,
            time,
            finance,
            bank,
            _nodes: nodes,
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.time.load(Ordering::SeqCst)).unwrap()
    }

    fn advance(&self, secs: u64) {
        self.time
            .fetch_add(i64::try_from(secs).unwrap(), Ordering::SeqCst);
    }

    /// Finance's plan for the voucher's indicator (its amount and 100.00 more) and the
    /// bank's money books.
    async fn books(&self, voucher: &Voucher) -> IndicatorKey {
        let indicator = indicator_of(voucher);
        let amount = direct::payment_amount(voucher).unwrap();
        let plan = amount.checked_add(fen(10_000)).unwrap();
        create(
            &self.finance.store,
            vec![
                BookAccount::budget_source(indicator.tenant),
                BookAccount::indicator(&indicator),
                BookAccount::plan(&indicator, MONTH).unwrap(),
                BookAccount::plan_used(&indicator, MONTH).unwrap(),
            ],
        )
        .await;
        let ops = [
            BookOp::approve_indicator(1, &indicator, plan).unwrap(),
            BookOp::approve_plan(2, &indicator, MONTH, plan).unwrap(),
        ];
        apply(&self.finance.store, self.now(), &ops).await;
        create(
            &self.bank.store,
            vec![
                BookAccount::advance(indicator.tenant),
                BookAccount::finance_zba(indicator.tenant),
                BookAccount::payees(indicator.tenant),
            ],
        )
        .await;
        indicator
    }

    /// Delivers finance's stored original `key` to the bank straight over the network (not
    /// through the outbox); what the bank answered.
    async fn deliver_directly(&self, key: &VoucherKey) -> Received {
        let stored = status(&self.finance.store, key, Leg::Original)
            .await
            .unwrap();
        let outcome = self
            .finance
            .transport
            .deliver(BANK_CODE, Bytes::from(stored.body))
            .await
            .unwrap();
        assert_eq!(outcome.results.len(), 1);
        outcome.results[0].received.clone()
    }

    /// Money the bank paid to payees in `tenant` (credits on its payees account).
    async fn paid_out(&self, tenant: Tenant) -> u128 {
        posted(&self.bank.store, &BookAccount::payees(tenant))
            .await
            .1
    }

    /// The bank's receipt of `key`.
    async fn receipt(&self, key: &VoucherKey) -> Voucher {
        let r = status(&self.bank.store, key, Leg::Receipt).await.unwrap();
        body_of(&r.body, VoucherFlag::Receipt).voucher
    }
}

// ----- a salary batch of 1,200 rows in three 8207s, end to end ----------------------------

async fn salary_of_1200_rows(backend: Backend) {
    let w = World::new(backend, ROWS_PER_8207).await;
    let (bad_account, no_name) = ([7, 1_111], [600]);
    let unpaid = [7, 600, 1_111];
    let voucher = salary(1, 1_200, &bad_account, &no_name);
    let key = voucher.key();
    let total = direct::payment_amount(&voucher).unwrap();
    let indicator = w.books(&voucher).await;
    let tenant = indicator.tenant;
    let (paid, not_paid) = sums(1_200, &unpaid);
    assert_eq!(paid + not_paid, fen_of(total));

    // Finance sends it as a master and three 8207s (500, 500, 200 rows).
    let master = w
        .finance
        .issue_direct(voucher, &indicator, MONTH, BANK_CODE, "clerk")
        .await
        .unwrap();
    assert_eq!(master.key, key);
    let sent = body_of(&master.body, VoucherFlag::Original).voucher;
    assert!(sent.details.is_empty(), "the master travels without rows");
    let parts = part_keys(&key, 3);
    let mut counts = Vec::new();
    for pk in &parts {
        let part = status(&w.finance.store, pk, Leg::Original).await.unwrap();
        assert_eq!(part.exchange, Exchange::NotReceived);
        let part = body_of(&part.body, VoucherFlag::Original);
        assert_eq!(
            part.voucher.header.get("OriVoucherNo"),
            Some(key.voucher_no.as_str())
        );
        assert_eq!(part.voucher.header.get("OriginalVtCode"), Some("5201"));
        assert_eq!(
            part.signatures.len(),
            1,
            "stamped at the 8207's one position"
        );
        counts.push(part.voucher.details.len());
    }
    assert_eq!(counts, [500, 500, 200]);
    assert!(
        status(&w.finance.store, &part_keys(&key, 4)[3], Leg::Original)
            .await
            .is_none()
    );
    // The plan is consumed once, by the whole batch.
    let used = BookAccount::plan_used(&indicator, MONTH).unwrap();
    assert_eq!(posted(&w.finance.store, &used).await, (0, fen_of(total)));

    // The master reaches the bank first: it waits, read and not acknowledged.
    assert_eq!(w.deliver_directly(&key).await, Received::Taken);
    let report = w.bank.tick().await.unwrap();
    assert_eq!((report.handled, report.failed), (1, 0), "{report:?}");
    let waiting = status(&w.bank.store, &key, Leg::Original).await.unwrap();
    assert_eq!(waiting.exchange, Exchange::Received);
    assert_eq!(waiting.processing, Some(Processing::Read));
    assert_eq!(w.paid_out(tenant).await, 0);

    // Finance's worker delivers the rest; the bank's tick reads the 8207s and pays.
    let report = w.finance.tick().await.unwrap();
    assert_eq!(report.outbox.delivered, 4, "{report:?}");
    let report = w.bank.tick().await.unwrap();
    assert_eq!((report.handled, report.failed), (3, 0), "{report:?}");
    let at_bank = status(&w.bank.store, &key, Leg::Original).await.unwrap();
    assert_eq!(at_bank.processing, Some(Processing::ReceiptSent));
    for pk in &parts {
        let part = status(&w.bank.store, pk, Leg::Original).await.unwrap();
        assert_eq!(part.processing, Some(Processing::ReceiptSent), "{pk}");
    }
    assert_eq!(w.paid_out(tenant).await, paid);
    let ids: Vec<u128> = (1..=1_200)
        .map(|row| BookOp::transfer_id(row_op_id(&key, row), 0))
        .collect();
    let booked = w.bank.store.transfers(ids).await.unwrap();
    assert_eq!(booked.len(), 1_197, "one operation per paid row");

    // The master's receipt: the sum paid; the rows' results on the 8207s' receipts.
    let receipt = w.receipt(&key).await;
    assert!(receipt.details.is_empty());
    let paid_amount = Amount::from_fen(i64::try_from(paid).unwrap()).unwrap();
    assert_eq!(
        receipt.header.get("XPayAmt"),
        Some(paid_amount.to_string().as_str())
    );
    let pay_date = party::business_date(w.pki.now).to_string();
    assert_eq!(receipt.header.get("XPayDate"), Some(pay_date.as_str()));
    let mut rows = Vec::new();
    for pk in &parts {
        rows.extend(w.receipt(pk).await.details);
    }
    assert_eq!(rows.len(), 1_200);
    for (i, row) in rows.iter().enumerate() {
        let n = i + 1;
        if unpaid.contains(&n) {
            assert_eq!(row.get("XPayAmt"), Some("0.00"), "row {n}");
            assert!(row.value("XAddWord").is_some(), "row {n} says why");
        } else {
            assert_eq!(row.get("XPayAmt"), row.get("PayAmt"), "row {n}");
            assert_eq!(row.value("XAddWord"), None, "row {n}");
        }
    }
    assert!(rows[6].get("XAddWord").unwrap().contains("PayeeAcctNo"));
    assert!(rows[599].get("XAddWord").unwrap().contains("PayeeAcctName"));

    // Finance books the receipts: the master's completes the payment, the unpaid part of
    // the plan comes back once.
    let report = w.finance.tick().await.unwrap();
    assert_eq!((report.handled, report.failed), (4, 0), "{report:?}");
    assert_eq!(report.completed, std::slice::from_ref(&key));
    let original = status(&w.finance.store, &key, Leg::Original).await.unwrap();
    assert_eq!(original.exchange, Exchange::ReceiptReceived);
    for k in std::iter::once(&key).chain(&parts) {
        let r = status(&w.finance.store, k, Leg::Receipt).await.unwrap();
        assert_eq!(r.processing, Some(Processing::Processed), "{k}");
    }
    for pk in &parts {
        let sent = status(&w.finance.store, pk, Leg::Original).await.unwrap();
        assert_eq!(sent.exchange, Exchange::ReceiptReceived, "{pk}");
    }
    assert_eq!(
        posted(&w.finance.store, &used).await,
        (not_paid, fen_of(total))
    );
    let remaining = 10_000 + not_paid;
    assert_eq!(
        quota(&w.finance.store, AccountKind::Plan, tenant).await.1,
        remaining
    );

    // Paid once: further ticks and a repeated restore change nothing.
    let report = w.bank.tick().await.unwrap();
    assert_eq!(report.handled, 0, "{report:?}");
    let report = w.finance.tick().await.unwrap();
    assert_eq!(report.handled, 0, "{report:?}");
    let unpaid_amount = Amount::from_fen(i64::try_from(not_paid).unwrap()).unwrap();
    batch::restore_unpaid(&w.finance.store, &key, unpaid_amount, w.now())
        .await
        .unwrap();
    assert_eq!(w.paid_out(tenant).await, paid);
    assert_eq!(
        quota(&w.finance.store, AccountKind::Plan, tenant).await.1,
        remaining
    );
}
both_backends!(
    a_salary_of_1200_rows_travels_in_three_8207s,
    salary_of_1200_rows
);

// ----- 8207s before their master; repeated deliveries -------------------------------------

async fn parts_before_master(backend: Backend) {
    // Five rows, two a part: three 8207s.
    let w = World::new(backend, 2).await;
    let voucher = salary(2, 5, &[], &[]);
    let key = voucher.key();
    let total = direct::payment_amount(&voucher).unwrap();
    let indicator = w.books(&voucher).await;
    let tenant = indicator.tenant;
    w.finance
        .issue_direct(voucher, &indicator, MONTH, BANK_CODE, "clerk")
        .await
        .unwrap();
    let parts = part_keys(&key, 3);

    // The 8207s arrive first, the first one twice: stored once, they wait.
    for pk in &parts {
        assert_eq!(w.deliver_directly(pk).await, Received::Taken);
    }
    assert_eq!(w.deliver_directly(&parts[0]).await, Received::AlreadyHad);
    let report = w.bank.tick().await.unwrap();
    assert_eq!((report.handled, report.failed), (3, 0), "{report:?}");
    for pk in &parts {
        let part = status(&w.bank.store, pk, Leg::Original).await.unwrap();
        assert_eq!(part.processing, Some(Processing::Read), "{pk} waits");
        assert_eq!(part.exchange, Exchange::Received);
    }
    assert!(status(&w.bank.store, &key, Leg::Original).await.is_none());
    assert_eq!(w.paid_out(tenant).await, 0);

    // The master comes (with the 8207s again, from finance's outbox): paid.
    let report = w.finance.tick().await.unwrap();
    assert_eq!(report.outbox.delivered, 4, "{report:?}");
    let report = w.bank.tick().await.unwrap();
    assert_eq!((report.handled, report.failed), (1, 0), "{report:?}");
    let at_bank = status(&w.bank.store, &key, Leg::Original).await.unwrap();
    assert_eq!(at_bank.processing, Some(Processing::ReceiptSent));
    assert_eq!(w.paid_out(tenant).await, fen_of(total));

    // An 8207 delivered again after the payment takes no effect.
    assert_eq!(w.deliver_directly(&parts[1]).await, Received::AlreadyHad);
    let report = w.bank.tick().await.unwrap();
    assert_eq!(report.handled, 0, "{report:?}");
    assert_eq!(w.paid_out(tenant).await, fen_of(total));

    // An 8207 that comes after its master was paid is not one of its parts: refused, and
    // nothing more is paid.
    let (_, extra) = split_8207(&salary(2, 5, &[], &[]), 2).unwrap();
    let mut extra = extra[0].clone();
    extra.header.set("VoucherNo", "EXTRA-001");
    extra.header.set("Id", "EXTRA-001");
    let extra = stamp(&w, extra);
    let bytes = write_envelope(
        &Envelope {
            bodies: vec![extra.clone()],
        },
        Encoding::Gbk,
    );
    let outcome = w
        .finance
        .transport
        .deliver(BANK_CODE, Bytes::from(bytes))
        .await
        .unwrap();
    assert_eq!(outcome.results[0].received, Received::Taken);
    let report = w.bank.tick().await.unwrap();
    assert_eq!((report.handled, report.failed), (1, 1), "{report:?}");
    let refused = status(&w.bank.store, &extra.voucher.key(), Leg::Original)
        .await
        .unwrap();
    assert_eq!(refused.exchange, Exchange::AckFailed);
    let reason = refused.reason.unwrap();
    assert!(
        reason.contains(&key.voucher_no) && reason.contains("without this 8207"),
        "{reason}"
    );
    assert_eq!(w.paid_out(tenant).await, fen_of(total));

    // Finance books the receipts; nothing was unpaid, so the plan keeps its 100.00.
    let report = w.finance.tick().await.unwrap();
    assert_eq!(report.failed, 0, "{report:?}");
    assert_eq!(report.completed, std::slice::from_ref(&key));
    assert_eq!(
        quota(&w.finance.store, AccountKind::Plan, tenant).await.1,
        10_000
    );
}
both_backends!(
    eight_207s_before_their_master_wait_for_it,
    parts_before_master
);

// ----- a master's step cut short, resumed ---------------------------------------------------

async fn resumed_after_a_crash(backend: Backend) {
    let w = World::new(backend, 2).await;
    let voucher = salary(6, 5, &[3], &[]);
    let key = voucher.key();
    let indicator = w.books(&voucher).await;
    let tenant = indicator.tenant;
    w.finance
        .issue_direct(voucher, &indicator, MONTH, BANK_CODE, "clerk")
        .await
        .unwrap();
    let report = w.finance.tick().await.unwrap();
    assert_eq!(report.outbox.delivered, 4, "{report:?}");
    let parts = part_keys(&key, 3);

    // The bank's worker read everything, took the master as far as approval and the first
    // 8207 as far as its booking, and died.
    let library = w.bank.store.library();
    assert_eq!(library.read(100, "worker", w.now()).await.unwrap().len(), 4);
    for k in [&key, &parts[0]] {
        library
            .acknowledge(k, Leg::Original, "worker", w.now())
            .await
            .unwrap();
        for event in [
            ProcessingEvent::StartValidation,
            ProcessingEvent::PassValidation,
            ProcessingEvent::Check,
            ProcessingEvent::Approve,
        ] {
            library
                .process(k, Leg::Original, event, None, "worker", w.now())
                .await
                .unwrap();
        }
    }
    library
        .process(
            &parts[0],
            Leg::Original,
            ProcessingEvent::Book,
            None,
            "worker",
            w.now(),
        )
        .await
        .unwrap();
    assert_eq!(w.paid_out(tenant).await, 0);

    // The read-again sweep resumes it: paid once, every receipt sent.
    w.advance(party::STUCK_AFTER_SECS);
    let retried = w.bank.retry_stuck().await.unwrap();
    assert_eq!(retried, 4);
    let (paid, not_paid) = sums(5, &[3]);
    assert_eq!(w.paid_out(tenant).await, paid);
    for k in std::iter::once(&key).chain(&parts) {
        let r = status(&w.bank.store, k, Leg::Original).await.unwrap();
        assert_eq!(r.processing, Some(Processing::ReceiptSent), "{k}");
    }
    let row3 = &w.receipt(&parts[1]).await.details[0];
    assert_eq!(row3.get("XPayAmt"), Some("0.00"));

    // Resumed again: nothing more. Finance books the receipts.
    w.advance(party::STUCK_AFTER_SECS);
    assert_eq!(w.bank.retry_stuck().await.unwrap(), 0);
    assert_eq!(w.paid_out(tenant).await, paid);
    let report = w.bank.tick().await.unwrap();
    assert_eq!(report.outbox.delivered, 4, "{report:?}");
    let report = w.finance.tick().await.unwrap();
    assert_eq!(report.completed, std::slice::from_ref(&key));
    let used = BookAccount::plan_used(&indicator, MONTH).unwrap();
    assert_eq!(posted(&w.finance.store, &used).await.0, not_paid);
}
both_backends!(a_master_cut_short_is_resumed_once, resumed_after_a_crash);

// ----- 8207s that contradict their master -------------------------------------------------

/// `body` stamped by finance's staff at every original position of its type, by post.
fn stamp(w: &World, voucher: Voucher) -> EnvelopeBody {
    let ty = type_of(&w.registry, &voucher).unwrap();
    let staff = &w.finance.staff;
    let mut body = EnvelopeBody {
        flag: VoucherFlag::Original,
        attach: "SUCCESS".into(),
        voucher,
        signatures: Vec::new(),
    };
    for seal in &ty.seals {
        let signer = match seal.post {
            Some(guoku_voucher::registry::Post::Maker) => staff.maker.signer(),
            Some(guoku_voucher::registry::Post::Checker) => staff.checker.signer(),
            _ => Signer::Seal {
                seal: &staff.business_seal,
                key: &staff.signer.key,
                certificate: &staff.signer.certificate,
                time: w.pki.now,
            },
        };
        stamp_next(Suite::Sm, ty, &mut body, &signer).unwrap();
    }
    body
}

async fn contradicting_part(backend: Backend) {
    let w = World::new(backend, 2).await;
    let voucher = salary(3, 5, &[], &[]);
    let key = voucher.key();
    let indicator = w.books(&voucher).await;
    let tenant = indicator.tenant;
    // The second 8207 says 1.00 more than its share: it adds up to itself, not to the master.
    let (master, mut parts) = split_8207(&voucher, 2).unwrap();
    let row = &mut parts[1].details[0];
    let more = row
        .get("PayAmt")
        .unwrap()
        .parse::<Amount>()
        .unwrap()
        .checked_add(fen(100))
        .unwrap();
    row.set("PayAmt", more.to_string());
    let part_total = parts[1].details.iter().fold(Amount::ZERO, |s, d| {
        s.checked_add(d.get("PayAmt").unwrap().parse().unwrap())
            .unwrap()
    });
    parts[1].header.set("PayAmt", part_total.to_string());
    assert!(
        merge_8207(&master, &parts).is_err(),
        "finance's own check refuses it"
    );

    // A faulty sender: the master issued, the 8207s written and sent as they are.
    let route = Route {
        me: FINANCE_CODE,
        to: BANK_CODE,
        actor: "clerk",
    };
    let master = stamp(&w, master);
    direct::issue(
        &w.finance.store,
        &w.registry,
        &indicator,
        MONTH,
        &master,
        route,
        w.now(),
    )
    .await
    .unwrap();
    let library = w.finance.store.library();
    for part in parts {
        let body = stamp(&w, part);
        let bytes = write_envelope(
            &Envelope {
                bodies: vec![body.clone()],
            },
            Encoding::Gbk,
        );
        let new = NewVoucher::new(&body.voucher, Leg::Original, FINANCE_CODE, BANK_CODE, bytes);
        library.write(new, "clerk", w.now()).await.unwrap();
        library
            .send(&body.voucher.key(), Leg::Original, "clerk", w.now())
            .await
            .unwrap();
    }
    let report = w.finance.tick().await.unwrap();
    assert_eq!(report.outbox.delivered, 4, "{report:?}");

    // The bank returns the master with the reason and refuses the 8207s; nothing booked.
    let report = w.bank.tick().await.unwrap();
    assert_eq!((report.handled, report.failed), (4, 1), "{report:?}");
    let at_bank = status(&w.bank.store, &key, Leg::Original).await.unwrap();
    assert_eq!(at_bank.exchange, Exchange::Returned);
    let reason = at_bank.reason.unwrap();
    assert!(reason.contains("8207"), "{reason}");
    assert!(reason.contains("more than the master's PayAmt"), "{reason}");
    for pk in part_keys(&key, 3) {
        let part = status(&w.bank.store, &pk, Leg::Original).await.unwrap();
        assert_eq!(part.exchange, Exchange::AckFailed, "{pk}");
        assert!(part.reason.unwrap().contains(&key.voucher_no));
        assert!(status(&w.bank.store, &pk, Leg::Receipt).await.is_none());
    }
    assert!(status(&w.bank.store, &key, Leg::Receipt).await.is_none());
    for account in [
        BookAccount::advance(tenant),
        BookAccount::finance_zba(tenant),
        BookAccount::payees(tenant),
    ] {
        assert_eq!(
            posted(&w.bank.store, &account).await,
            (0, 0),
            "nothing booked"
        );
    }

    // Finance learns of the return with its reason and gets its whole plan back.
    w.finance.sync_statuses().await.unwrap();
    let sent = status(&w.finance.store, &key, Leg::Original).await.unwrap();
    assert_eq!(sent.exchange, Exchange::Returned);
    assert!(
        sent.reason
            .unwrap()
            .contains("more than the master's PayAmt")
    );
    let plan = direct::payment_amount(&voucher)
        .unwrap()
        .checked_add(fen(10_000))
        .unwrap();
    assert_eq!(
        quota(&w.finance.store, AccountKind::Plan, tenant).await.1,
        fen_of(plan)
    );
}
both_backends!(
    an_8207_contradicting_its_master_returns_it,
    contradicting_part
);

// ----- pure: splitting, assessing, checking -----------------------------------------------

#[test]
fn a_batch_splits_into_8207s_that_merge_back() {
    let voucher = salary(4, 1_200, &[], &[]);
    let (master, parts) = split_8207(&voucher, 500).unwrap();
    assert!(master.details.is_empty());
    assert_eq!(master.header, voucher.header);
    let alls: Vec<&str> = parts
        .iter()
        .map(|p| p.header.get("AllNum").unwrap())
        .collect();
    assert_eq!(alls, ["500", "500", "200"]);
    let no = &voucher.key().voucher_no;
    assert_eq!(
        parts[2].header.get("VoucherNo"),
        Some(format!("{no}-003").as_str())
    );
    let merged = merge_8207(&master, &parts).unwrap();
    assert_eq!(merged.details.len(), 1_200);
    for (a, b) in merged.details.iter().zip(&voucher.details) {
        for name in ["PayeeAcctNo", "PayeeAcctName", "PayAmt", "ExpFuncCode"] {
            assert_eq!(a.get(name), b.get(name), "{name}");
        }
    }
    // Two of three: short; all three: complete; one more: contradicts.
    assert!(matches!(
        assess_8207(&master, &parts[..2]),
        PartsState::Incomplete { .. }
    ));
    assert!(matches!(
        assess_8207(&master, &[]),
        PartsState::Incomplete { .. }
    ));
    assert!(matches!(
        assess_8207(&master, &parts),
        PartsState::Complete(_)
    ));
    let mut extra = parts[2].clone();
    extra.header.set("VoucherNo", "EXTRA-1");
    let mut four = parts.clone();
    four.push(extra);
    match assess_8207(&master, &four) {
        PartsState::Contradicts(p) => assert!(p[0].contains("more than"), "{p:?}"),
        other => panic!("{other:?}"),
    }
    // The same 8207 twice.
    let twice = [parts[0].clone(), parts[0].clone(), parts[1].clone()];
    match assess_8207(&master, &twice) {
        PartsState::Contradicts(p) => assert!(p[0].contains("given twice"), "{p:?}"),
        other => panic!("{other:?}"),
    }
    // A row of another unit cannot travel in an 8207.
    let mut other = voucher.clone();
    other.details[3].set("AgencyCode", "B99");
    let e = split_8207(&other, 500).unwrap_err().to_string();
    assert!(e.contains("row 4: AgencyCode"), "{e}");
}

#[test]
fn long_master_numbers_still_number_their_8207s() {
    let key = VoucherKey {
        adm_div_code: "430000".into(),
        st_year: "2025".into(),
        vt_code: "5201".into(),
        voucher_no: "ZF2025ABCDEFGHJKLMNP".into(),
    };
    let a = part_voucher_no(&key, 1);
    let b = part_voucher_no(&key, 2);
    assert_eq!(a.len(), 20);
    assert!(a.starts_with('B') && a.ends_with("001"), "{a}");
    assert_ne!(a, b);
    assert_eq!(a, part_voucher_no(&key, 1), "the same number every time");
}

#[test]
fn a_master_receipt_whose_8207_receipts_disagree_is_refused() {
    let voucher = salary(5, 4, &[], &[]);
    let (master, parts) = split_8207(&voucher, 2).unwrap();
    let mut receipt = master.clone();
    receipt.header.set("XPayDate", today().to_string());
    receipt.header.set("XAgentBusinessNo", "ICBC-1");
    receipt
        .header
        .set("XPayAmt", master.header.get("PayAmt").unwrap());
    let paid = |p: &Voucher| {
        let mut r = p.clone();
        for d in &mut r.details {
            let amount = d.get("PayAmt").unwrap().to_owned();
            d.set("XPayAmt", amount);
        }
        r
    };
    let good: Vec<(Voucher, Voucher)> = parts.iter().map(|p| (p.clone(), paid(p))).collect();
    let checked = check_master_receipt(&master, &receipt, &good).unwrap();
    assert_eq!(checked.unpaid, None);
    // The second 8207's receipt pays part of a row.
    let mut bad = good.clone();
    bad[1].1.details[0].set("XPayAmt", "1.00");
    let e = check_master_receipt(&master, &receipt, &bad)
        .unwrap_err()
        .to_string();
    let no = part_voucher_no(&master.key(), 2);
    assert!(
        e.contains(&format!("8207 {no}: row 1: XPayAmt 1.00")),
        "{e}"
    );
    // A row unpaid on its 8207 but the master says all was paid.
    let mut short = good;
    short[0].1.details[1].set("XPayAmt", "0.00");
    short[0].1.details[1].set("XAddWord", "收款人账户已销户");
    let e = check_master_receipt(&master, &receipt, &short)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not what its 8207s' receipts say"), "{e}");
}
