//! Salary and batch direct payments (5201 with BusinessTypeCode 3/4, DOMAIN §3.2): the bank
//! pays row by row, unpaid rows get XPayAmt 0.00 and a reason, finance restores the unpaid
//! part to its plan once, the 2301 lists what was paid; a batch with no payable row is
//! returned; 8207 rows merge into their 5201. SQLite and PostgreSQL, in-memory network.

use guoku_domain::{Amount, PayType};
use guoku_node::exchange::InMemory;
use guoku_node::flows::batch::{RowRules, VT_8207, check_batch_receipt, merge_8207, row_op_id};
use guoku_node::flows::clearing::{clearable, request_template, request_voucher};
use guoku_node::flows::direct::{
    Bank, PayOutcome, ReceiptOutcome, book_receipt, pay_record_with, payment_amount,
};
use guoku_seal::Suite;
use guoku_seal::voucher::StampKind;
use guoku_store::Store;
use guoku_store::books::{AccountKind, BookAccount, BookOp, IndicatorKey, Tenant};
use guoku_voucher::lifecycle::{Exchange, Leg, Processing};
use guoku_voucher::sample::{Style, sample};
use guoku_voucher::{Fields, Registry, Voucher, VoucherFlag};

mod common;
use common::*;

/// The closed account the bank refuses in these tests.
const CLOSED: &str = "6222-0000-0004";

/// Finance's books: an indicator with a monthly plan of `plan` for the voucher's unit.
async fn finance_books(store: &Store, key: &IndicatorKey, plan: Amount, now: u64) {
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
    let ops = [
        BookOp::approve_indicator(1, key, plan).unwrap(),
        BookOp::approve_plan(2, key, MONTH, plan).unwrap(),
    ];
    apply(store, now, &ops).await;
}

/// The bank's money books for direct payments.
async fn bank_books(store: &Store, tenant: Tenant) {
    create(
        store,
        vec![
            BookAccount::advance(tenant),
            BookAccount::finance_zba(tenant),
            BookAccount::payees(tenant),
        ],
    )
    .await;
}

/// A salary 5201 (BusinessTypeCode 3) whose rows are `(account, name, fen)`.
fn salary_rows(v: &mut Voucher, rows: &[(&str, &str, i64)]) {
    let template = v.details[0].clone();
    v.header.set("BusinessTypeCode", "3");
    v.details = rows
        .iter()
        .enumerate()
        .map(|(i, (acct, name, amount))| {
            let mut d = template.clone();
            d.set("Id", (i + 1).to_string());
            d.set("PayeeAcctNo", *acct);
            d.set("PayeeAcctName", *name);
            d.set("PayAmt", fen(*amount).to_string());
            d
        })
        .collect();
    let total: i64 = rows.iter().map(|r| r.2).sum();
    v.header.set("PayAmt", fen(total).to_string());
}

/// Finance and the bank on `backend`, the 5201 issued and delivered to the bank, read
/// there; the bank pays it refusing [`CLOSED`].
struct World {
    _nodes: Nodes,
    pki: Pki,
    registry: Registry,
    bank: Store,
    bank_net: InMemory,
    finance: Store,
    finance_net: InMemory,
    now: u64,
}

impl World {
    async fn new(backend: Backend) -> Self {
        let pki = Pki::new("测试根CA");
        let mut nodes = Nodes::new(backend);
        let (bank, bank_net) = nodes.join(&pki, "bank", bank_peer()).await;
        let (finance, finance_net) = nodes.join(&pki, "finance", finance_peer()).await;
        let now = unix_now(&pki);
        Self {
            _nodes: nodes,
            pki,
            registry: Registry::builtin(),
            bank,
            bank_net,
            finance,
            finance_net,
            now,
        }
    }

    /// Issues `edit`'s 5201 from a plan 100.00 above it and delivers it to the bank.
    async fn issue(
        &self,
        edit: impl FnOnce(&mut Voucher),
    ) -> (guoku_voucher::EnvelopeBody, IndicatorKey) {
        let body = signed_5201_with(&self.pki, &self.registry, 1, edit);
        let indicator = indicator_of(&body.voucher);
        let plan = payment_amount(&body.voucher)
            .unwrap()
            .checked_add(fen(10_000))
            .unwrap();
        finance_books(&self.finance, &indicator, plan, self.now).await;
        bank_books(&self.bank, indicator.tenant).await;
        finance_issues(&self.finance, &self.registry, &indicator, &body, self.now).await;
        deliver_one(&self.finance, &self.finance_net, self.now).await;
        (body, indicator)
    }

    /// The bank reads its one unread voucher and pays it.
    async fn bank_pays(&self) -> PayOutcome {
        let holder = SealHolder::new(&self.pki, &bank(), StampKind::Zqz, "转讫章");
        let sealer = holder.signer(&self.pki);
        let teller = Bank {
            me: BANK_CODE,
            actor: "teller",
            pay_date: today(),
            serial_prefix: "ICBC",
            suite: Suite::Sm,
            sealer: &sealer,
        };
        let rules = RowRules {
            refused_accounts: &[CLOSED],
        };
        let read = self
            .bank
            .library()
            .read(100, "teller", self.now)
            .await
            .unwrap();
        assert_eq!(read.len(), 1, "{read:?}");
        pay_record_with(
            &self.bank,
            &self.registry,
            &teller,
            &rules,
            &read[0],
            self.now,
        )
        .await
        .unwrap()
    }
}

async fn salary_rows_paid_one_by_one(backend: Backend) {
    let w = World::new(backend).await;
    let rows = [
        ("6222-0000-0001", "张一", 10_000),
        ("bad account!", "张二", 20_000),
        ("6222-0000-0003", "张三", 30_000),
        (CLOSED, "张四", 40_000),
        ("6222-0000-0005", "张五", 50_000),
    ];
    let (body, indicator) = w.issue(|v| salary_rows(v, &rows)).await;
    let key = body.voucher.key();
    let tenant = indicator.tenant;
    let used = BookAccount::plan_used(&indicator, MONTH).unwrap();
    let plan = BookAccount::plan(&indicator, MONTH).unwrap();
    // At issue, finance's plan is consumed by the whole PayAmt.
    assert_eq!(posted(&w.finance, &used).await, (0, 150_000));
    assert_eq!(quota(&w.finance, AccountKind::Plan, tenant).await.1, 10_000);

    // The bank pays rows 1, 3 and 5.
    let paid = fen(90_000);
    match w.bank_pays().await {
        PayOutcome::Paid { key: k, amount } => {
            assert_eq!(k, key);
            assert_eq!(amount, paid);
        }
        other => panic!("not paid: {other:?}"),
    }
    assert_eq!(
        posted(&w.bank, &BookAccount::payees(tenant)).await,
        (0, 90_000)
    );
    assert_eq!(
        posted(&w.bank, &BookAccount::advance(tenant)).await,
        (90_000, 0)
    );
    let ids: Vec<u128> = (1..=5)
        .map(|row| BookOp::transfer_id(row_op_id(&key, row), 0))
        .collect();
    let booked = w.bank.transfers(ids).await.unwrap();
    assert_eq!(booked.len(), 3, "one operation per paid row");
    let receipt = status(&w.bank, &key, Leg::Receipt).await.unwrap();
    let receipt = body_of(&receipt.body, VoucherFlag::Receipt).voucher;
    assert_eq!(receipt.header.get("XPayAmt"), Some("900.00"));
    let x: Vec<(&str, Option<&str>)> = receipt
        .details
        .iter()
        .map(|d| (d.get("XPayAmt").unwrap(), d.value("XAddWord")))
        .collect();
    assert_eq!(x[0], ("100.00", None));
    assert_eq!(x[2], ("300.00", None));
    assert_eq!(x[4], ("500.00", None));
    assert_eq!(x[1].0, "0.00");
    assert!(x[1].1.unwrap().contains("PayeeAcctNo"), "{x:?}");
    assert_eq!(x[3].0, "0.00");
    assert!(x[3].1.unwrap().contains(CLOSED), "{x:?}");

    // Finance books the receipt twice: the 600.00 unpaid comes back to the plan once.
    deliver_one(&w.bank, &w.bank_net, w.now).await;
    let read = w.finance.library().read(100, "clerk", w.now).await.unwrap();
    assert_eq!(read.len(), 1, "{read:?}");
    for _ in 0..2 {
        match book_receipt(&w.finance, "clerk", &read[0], w.now)
            .await
            .unwrap()
        {
            ReceiptOutcome::Done { key: k, paid: p } => {
                assert_eq!(k, key);
                assert_eq!(p, paid);
            }
            other => panic!("not booked: {other:?}"),
        }
    }
    assert_eq!(posted(&w.finance, &used).await, (60_000, 150_000));
    // Granted 1600.00, consumed 1500.00 at issue, 600.00 restored.
    assert_eq!(posted(&w.finance, &plan).await, (150_000, 220_000));
    assert_eq!(
        quota(&w.finance, AccountKind::Plan, tenant).await.1,
        10_000 + 60_000
    );
    let at_finance = status(&w.finance, &key, Leg::Receipt).await.unwrap();
    assert_eq!(at_finance.processing, Some(Processing::Processed));

    // The bank's 2301 lists the batch with what it paid.
    let mut template = request_template(
        &w.registry,
        &key.adm_div_code,
        &key.st_year,
        BANK_CODE,
        today(),
    );
    template.set(
        "FundTypeCode",
        body.voucher.header.get("FundTypeCode").unwrap(),
    );
    let listed = clearable(&w.bank, &template).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].voucher_no, key.voucher_no);
    assert_eq!(listed[0].amount, paid);
    let request = request_voucher(
        &template,
        "QS20250115001",
        today(),
        PayType::Direct,
        &listed,
    )
    .unwrap();
    assert_eq!(request.header.get("PayAmt"), Some("900.00"));
    assert_eq!(request.details[0].get("PayAmt"), Some("900.00"));
}
both_backends!(salary_rows_are_paid_one_by_one, salary_rows_paid_one_by_one);

async fn batch_with_no_payable_row(backend: Backend) {
    let w = World::new(backend).await;
    let rows = [("6222-0000-0001", "", 10_000), (CLOSED, "李四", 20_000)];
    let (body, indicator) = w
        .issue(|v| {
            salary_rows(v, &rows);
            v.header.set("BusinessTypeCode", "4");
        })
        .await;
    let key = body.voucher.key();
    match w.bank_pays().await {
        PayOutcome::Failed { key: k, reason } => {
            assert_eq!(k, key);
            assert!(
                reason.contains("row 1") && reason.contains("PayeeAcctName"),
                "{reason}"
            );
            assert!(
                reason.contains("row 2") && reason.contains(CLOSED),
                "{reason}"
            );
        }
        other => panic!("not returned: {other:?}"),
    }
    let at_bank = status(&w.bank, &key, Leg::Original).await.unwrap();
    assert_eq!(at_bank.exchange, Exchange::Returned);
    assert!(status(&w.bank, &key, Leg::Receipt).await.is_none());
    let tenant = indicator.tenant;
    for account in [
        BookAccount::advance(tenant),
        BookAccount::finance_zba(tenant),
        BookAccount::payees(tenant),
    ] {
        assert_eq!(posted(&w.bank, &account).await, (0, 0), "nothing booked");
    }
}
both_backends!(
    a_batch_with_no_payable_row_is_returned,
    batch_with_no_payable_row
);

/// An 8207 of `rows` (fen) for the 5201 `master_no`.
fn detail_8207(registry: &Registry, no: &str, master_no: &str, rows: &[i64]) -> Voucher {
    let ty = registry.get(VT_8207).unwrap();
    let mut v = sample(ty, today(), VoucherFlag::Original, Style::Plain, 3);
    let template = v.details[0].clone();
    v.header.set("VoucherNo", no);
    v.header.set("OriVoucherNo", master_no);
    v.header.set("OriginalVtCode", "5201");
    v.header.set("AllNum", rows.len().to_string());
    v.details = rows
        .iter()
        .enumerate()
        .map(|(i, amount)| {
            let mut d: Fields = template.clone();
            d.set("PayeeAcctNo", format!("6222-1000-{i:04}"));
            d.set("PayAmt", fen(*amount).to_string());
            d
        })
        .collect();
    v.header.set("PayAmt", fen(rows.iter().sum()).to_string());
    v
}

/// A salary 5201 without rows of its own, of `total` fen, in the 8207 samples' division
/// and year.
fn master(registry: &Registry, like: &Voucher, total: i64) -> Voucher {
    let ty = registry.get("5201").unwrap();
    let mut m = sample(ty, today(), VoucherFlag::Original, Style::Plain, 1);
    m.header
        .set("AdmDivCode", like.header.get("AdmDivCode").unwrap());
    m.header.set("StYear", like.header.get("StYear").unwrap());
    m.header.set("BusinessTypeCode", "3");
    m.header.set("PayAmt", fen(total).to_string());
    m.details.clear();
    m
}

#[test]
fn rows_of_8207s_merge_into_their_5201() {
    let registry = Registry::builtin();
    let probe = detail_8207(&registry, "P", "M", &[1]);
    let m = master(&registry, &probe, 60_000);
    let no = m.key().voucher_no;
    let a = detail_8207(&registry, "PL0001", &no, &[10_000, 20_000]);
    let b = detail_8207(&registry, "PL0002", &no, &[30_000]);
    let merged = merge_8207(&m, &[a, b]).unwrap();
    assert_eq!(merged.details.len(), 3);
    let amounts: Vec<&str> = merged
        .details
        .iter()
        .map(|d| d.get("PayAmt").unwrap())
        .collect();
    assert_eq!(amounts, ["100.00", "200.00", "300.00"]);
    assert_eq!(merged.details[2].get("VoucherBillNo"), Some("PL0002"));
    assert_eq!(
        merged.details[0].get("ExpFuncCode"),
        m.header.get("ExpFuncCode")
    );
    assert_eq!(merged.header, m.header);
}

#[test]
fn an_8207_that_does_not_add_up_is_refused_with_every_problem() {
    let registry = Registry::builtin();
    let probe = detail_8207(&registry, "P", "M", &[1]);
    let m = master(&registry, &probe, 60_000);
    let no = m.key().voucher_no;
    // AllNum wrong, and the rows do not add up to its PayAmt.
    let mut a = detail_8207(&registry, "PL0001", &no, &[10_000, 20_000]);
    a.header.set("AllNum", "3");
    a.header.set("PayAmt", "350.00");
    // Another 5201's rows.
    let b = detail_8207(&registry, "PL0002", "OTHER0001", &[30_000]);
    let problems = merge_8207(&m, &[a, b]).unwrap_err();
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(problems[0].contains("PL0001") && problems[0].contains("AllNum"));
    assert!(problems[1].contains("PL0001") && problems[1].contains("350.00"));
    assert!(problems[2].contains("PL0002") && problems[2].contains("OTHER0001"));
    // The sums fit but fall short of the master: refused.
    let c = detail_8207(&registry, "PL0003", &no, &[10_000]);
    let problems = merge_8207(&m, &[c]).unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(
        problems[0].contains("not the master's PayAmt 600.00"),
        "{problems:?}"
    );
}

#[test]
fn a_receipt_paying_part_of_a_row_is_refused() {
    let pki = Pki::new("测试根CA");
    let registry = Registry::builtin();
    let body = signed_5201_with(&pki, &registry, 1, |v| {
        salary_rows(
            v,
            &[
                ("6222-0000-0001", "张一", 10_000),
                ("6222-0000-0002", "张二", 20_000),
            ],
        );
    });
    let mut receipt = body.voucher.clone();
    receipt.header.set("XPayAmt", "150.00");
    receipt.details[0].set("XPayAmt", "100.00");
    receipt.details[1].set("XPayAmt", "50.00");
    receipt.details[1].set("PayeeAcctName", "王五");
    let problems = check_batch_receipt(&body.voucher, &receipt).unwrap_err();
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(problems[0].contains("row 2: PayeeAcctName differs"));
    assert!(problems[1].contains("row 2: XPayAmt 50.00"));
    assert!(problems[2].contains("header's XPayAmt 150.00"));
}
