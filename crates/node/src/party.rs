//! One party at work: its store, its staff's keys and seals, its link to the other parties,
//! and the loop that moves its vouchers (issue 5).
//!
//! A [`Party`] is what `guoku serve --role …` runs, and what `guoku demo` runs four times in
//! one process. Each [`Party::tick`]:
//!
//! 1. delivers what the outbox has due ([`crate::outbox::deliver_due`]);
//! 2. reads the library's unread vouchers, up to [`READ_BATCH`] at a time, and hands each to
//!    the one flow step this party's role has for its type and leg ([`Party::dispatch`]); a
//!    voucher no flow of this role takes is refused (签收失败) with the reason, so the
//!    sender's status shows it;
//! 3. for an agent bank, sends a clearing request (2301) for what it paid and receipted.
//!
//! The originating steps (a 5201 from finance, an 8202 from a unit's counter, a quota
//! notice) are methods the API calls. Every step takes its time from the party's clock,
//! which is passed in, and every book operation's id comes from the voucher key, so a step
//! repeated after a crash is not booked twice.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use guoku_domain::{BankNo, BizDate};
use guoku_seal::SigningKey;
use guoku_seal::Suite;
use guoku_seal::pki::{Certificate, OrgRole};
use guoku_seal::ses::Seal;
use guoku_seal::voucher::Signer;
use guoku_store::Store;
use guoku_store::books::IndicatorKey;
use guoku_store::library::{Backoff, LibraryError, VoucherRecord};
use guoku_voucher::lifecycle::Leg;
use guoku_voucher::{EnvelopeBody, Fields, Registry, Voucher, VoucherFlag, VoucherKey};
use time::{OffsetDateTime, UtcOffset};
use tokio::sync::watch;

use crate::exchange::{Clock, Peer, Transport};
use crate::flows::authorized::{self, UnitAccount};
use crate::flows::batch::{self, PartOutcome, RowRules};
use crate::flows::clearing::{self, ClearOutcome, Clearer, PaidState, Pboc, SettleOutcome};
use crate::flows::direct::{
    self, Bank, DirectError, PayOutcome, PayeeBankRule, ReceiptOutcome, Route,
};
use crate::flows::quota::{self, NoticeOutcome, Notifier, Treasury};
use crate::flows::reconcile::{self, CheckKind};
use crate::flows::{refund, returns};
use crate::outbox::{OutboxError, OutboxReport, deliver_due};
use crate::stamping::{self, StampingError};
use crate::status_sync::{self, Sweep};

/// How often the worker forgets expired idempotency keys and portal sessions.
pub const PURGE_EVERY_SECS: u64 = 3_600;

/// How often a party signs a tree head of its audit log by default (and at every
/// business-day close), in seconds.
pub const AUDIT_HEAD_EVERY_SECS: u64 = 300;

/// How often the worker checks the tree heads the other parties sent, in seconds.
pub const PEER_HEADS_EVERY_SECS: u64 = 10;

/// How long a voucher stays read (已读取) after a failed step before it is tried again.
pub const STUCK_AFTER_SECS: u64 = 30;

/// Most vouchers of a tick handled at once (see [`Party::tick`]).
pub const CONCURRENT_VOUCHERS: usize = 32;
/// Most vouchers read from the library at a time (the standard's limit).
pub const READ_BATCH: u32 = 100;
/// Most outbox entries one pass delivers.
pub const OUTBOX_BATCH: u32 = guoku_store::library::OUTBOX_BATCH_MAX;
/// The actor the party's own worker records its events as.
pub const WORKER_ACTOR: &str = "worker";

/// The business day's time zone (China Standard Time, UTC+8).
pub const BUSINESS_OFFSET_HOURS: i8 = 8;

/// The business date of `t`: its calendar date in China Standard Time.
#[must_use]
pub fn business_date(t: OffsetDateTime) -> BizDate {
    let offset = UtcOffset::from_hms(BUSINESS_OFFSET_HOURS, 0, 0).expect("a valid offset");
    let local = t.to_offset(offset);
    format!(
        "{:04}{:02}{:02}",
        local.year(),
        u8::from(local.month()),
        local.day()
    )
    .parse()
    .expect("a calendar date is a business date")
}

/// A person holding a key and its certificate.
pub struct Holder {
    /// The person's name.
    pub name: String,
    /// The key (zeroized on drop).
    pub key: SigningKey,
    /// The certificate naming them, their organisation and post.
    pub certificate: Certificate,
}

impl Holder {
    /// A plain signature by this person.
    #[must_use]
    pub fn signer(&self) -> Signer<'_> {
        Signer::Signature {
            key: &self.key,
            certificate: &self.certificate,
        }
    }
}

/// The people and seals a party stamps with: maker (经办), checker (复核) and signer (签章),
/// the organisation's business seal (业务专用章) and, for banks and PBOC, its paid seal
/// (转讫章). The signer holds the seals.
pub struct Staff {
    pub maker: Holder,
    pub checker: Holder,
    pub signer: Holder,
    pub business_seal: Seal,
    pub paid_seal: Option<Seal>,
}

impl Staff {
    /// The signer applying `seal` at `time`.
    fn sealer<'a>(&'a self, seal: &'a Seal, time: OffsetDateTime) -> Signer<'a> {
        Signer::Seal {
            seal,
            key: &self.signer.key,
            certificate: &self.signer.certificate,
            time,
        }
    }
}

/// What a party is: who it is and whom it deals with.
#[derive(Clone, Debug)]
pub struct PartyConfig {
    /// This party's role and organisation code.
    pub me: Peer,
    /// Its name.
    pub name: String,
    /// The deployment's signature suite.
    pub suite: Suite,
    /// Finance's organisation code.
    pub finance: String,
    /// PBOC's organisation code.
    pub pboc: String,
    /// This party's bank number (a bank's PayBankNo; PBOC's XPaySndBnkNo).
    pub bank_no: String,
    /// A bank: the unit zero-balance accounts it keeps, (unit code, account number).
    pub unit_accounts: Vec<(String, String)>,
    /// A bank: the 2301 templates' headers (TreCode, accounts, names…), one per division
    /// and year it clears for.
    pub clearing_templates: Vec<Fields>,
    /// The outbox's retry schedule.
    pub backoff: Backoff,
    /// A bank: how often the worker sends clearing requests, in seconds (0: never; the
    /// API or a bench asks instead).
    pub clearing_every_secs: u64,
    /// PBOC and finance: the banks they reconcile with, (organisation code, bank number).
    pub banks: Vec<(String, String)>,
    /// PBOC and finance: the divisions they reconcile.
    pub divisions: Vec<String>,
    /// PBOC and finance: how often the worker reconciles the day so far with every bank, in
    /// seconds (0: only when asked).
    pub reconcile_every_secs: u64,
    /// How often the worker asks receivers what became of the vouchers this party sent
    /// (签收, 签收失败, 退回), in seconds (0: never).
    pub status_every_secs: u64,
    /// How often the worker signs a tree head of the audit log, in seconds (0: only at
    /// each business-day close and when asked, [`Party::issue_head`]).
    pub audit_head_every_secs: u64,
    /// A bank: a single payment (5201 or 8202 of `BusinessTypeCode` 1) without the payee's
    /// bank number (`PayeeAcctBankNo`) waits for a person to complete it (待补录) instead
    /// of being paid ([`Party::complete_payee_bank`]). Off by default.
    pub require_payee_bank_no: bool,
    /// Finance: a salary or batch 5201 with more rows than this travels as a master without
    /// rows and 8207s (财政批量业务支付明细) of at most this many rows each
    /// ([`Party::issue_direct`]); 0: its rows always travel in the 5201. Default
    /// [`batch::ROWS_PER_8207`].
    pub rows_per_8207: usize,
}

/// Why a party's step failed.
#[derive(Debug, thiserror::Error)]
pub enum PartyError {
    /// A payment flow refused or failed.
    #[error(transparent)]
    Direct(#[from] DirectError),
    /// A clearing flow refused or failed.
    #[error(transparent)]
    Clearing(#[from] clearing::ClearingError),
    /// A quota flow refused or failed.
    #[error(transparent)]
    Quota(#[from] quota::QuotaError),
    /// The outbox failed.
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    /// The library failed.
    #[error(transparent)]
    Library(#[from] LibraryError),
    /// A stamp cannot be applied.
    #[error(transparent)]
    Stamping(#[from] StampingError),
    /// A refund refused or failed.
    #[error(transparent)]
    Refund(#[from] refund::RefundError),
    /// A return or void refused or failed.
    #[error(transparent)]
    Return(#[from] returns::ReturnError),
    /// The status sweep failed.
    #[error(transparent)]
    Sync(#[from] status_sync::SyncError),
    /// A reconciliation failed.
    #[error(transparent)]
    Reconcile(#[from] reconcile::ReconcileError),
    /// Forgetting expired keys or sessions failed.
    #[error("housekeeping: {0}")]
    Housekeeping(String),
    /// Signing or checking tree heads failed.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// This party's role does not do that.
    #[error("a {role:?} party does not {what}")]
    WrongRole { role: OrgRole, what: &'static str },
}

impl PartyError {
    /// Whether the same step may succeed later (a store or network failure).
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Library(e) => e.is_retryable(),
            Self::Outbox(OutboxError::Library(e)) => e.is_retryable(),
            Self::Refund(e) => e.is_retryable(),
            Self::Return(e) => e.is_retryable(),
            Self::Sync(e) => e.is_retryable(),
            Self::Reconcile(e) => e.is_retryable(),
            _ => false,
        }
    }
}

/// What one tick did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TickReport {
    /// The outbox pass.
    pub outbox: OutboxReport,
    /// Vouchers read and handed to a flow.
    pub handled: usize,
    /// Of those, refused, returned or failed (with a reason on the voucher).
    pub failed: usize,
    /// Clearing requests sent.
    pub clearing_requests: usize,
    /// Reconciliation requests sent.
    pub reconciliations: usize,
    /// Vouchers a failed step had left read, handed to their flows again.
    pub retried: usize,
    /// Expired idempotency keys and portal sessions forgotten.
    pub purged: u64,
    /// Sent vouchers whose receiver's answer (签收, 签收失败, 退回) was recorded.
    pub status_changes: usize,
    /// Payments whose receipt this party booked in this tick (finance: 5201; a unit's
    /// counter: 8202): their life cycle up to the receipt is complete.
    pub completed: Vec<VoucherKey>,
}

impl TickReport {
    /// Whether the tick did nothing (nothing delivered, read or sent).
    #[must_use]
    pub fn is_idle(&self) -> bool {
        self.outbox.delivered + self.outbox.refused + self.outbox.retried == 0
            && self.handled == 0
            && self.clearing_requests == 0
            && self.status_changes == 0
            && self.reconciliations == 0
            && self.retried == 0
    }
}

/// What became of one dispatched voucher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handled {
    /// Its step went through.
    Done,
    /// Its step went through and completed a payment (the payment's receipt was booked).
    Completed,
    /// Refused, returned or failed; the reason is on the voucher.
    Failed,
}

impl Handled {
    fn of(ok: bool) -> Self {
        if ok { Self::Done } else { Self::Failed }
    }
}

/// Counters a party keeps for `/metrics`.
#[derive(Debug, Default)]
pub struct PartyCounters {
    pub ticks: AtomicU64,
    pub handled: AtomicU64,
    pub failed: AtomicU64,
    pub delivered: AtomicU64,
    pub delivery_retries: AtomicU64,
    pub clearing_requests: AtomicU64,
}

/// One party: its configuration, registry, store, staff, link and clock.
pub struct Party<T> {
    pub config: PartyConfig,
    pub registry: Arc<Registry>,
    pub store: Store,
    pub staff: Staff,
    pub transport: T,
    pub clock: Clock,
    pub counters: PartyCounters,
    clearing_serial: AtomicU64,
    last_clearing: AtomicU64,
    /// One clearing round at a time (the worker's, a person's at the desk, the API's): each
    /// lists the paid vouchers no 2301 claims yet, so two at once would claim the same ones
    /// and PBOC would return the second request as already cleared.
    clearing_round: tokio::sync::Mutex<()>,
    last_sync: AtomicU64,
    last_reconcile: AtomicU64,
    last_retry: AtomicU64,
    /// Where the next sweep of stopped vouchers goes on from ([`Party::retry_stuck`]).
    retry_after: AtomicU64,
    last_purge: AtomicU64,
    last_head: AtomicU64,
    /// The business day (days since the epoch, China Standard Time) of the last tick.
    head_day: AtomicU64,
    last_peer_check: AtomicU64,
    head_announced: std::sync::atomic::AtomicBool,
    sweep: tokio::sync::Mutex<Sweep>,
}

impl<T: Transport> Party<T> {
    /// A party; nothing runs until [`Party::tick`] is called.
    pub fn new(
        config: PartyConfig,
        registry: Arc<Registry>,
        store: Store,
        staff: Staff,
        transport: T,
        clock: Clock,
    ) -> Self {
        let started = u64::try_from(clock().unix_timestamp()).unwrap_or(0);
        Self {
            config,
            store,
            staff,
            transport,
            clock,
            counters: PartyCounters::default(),
            clearing_serial: AtomicU64::new(0),
            last_clearing: AtomicU64::new(0),
            clearing_round: tokio::sync::Mutex::new(()),
            last_sync: AtomicU64::new(0),
            // The first round comes `reconcile_every_secs` after the start, not at once.
            last_reconcile: AtomicU64::new(started),
            last_retry: AtomicU64::new(started),
            retry_after: AtomicU64::new(0),
            last_purge: AtomicU64::new(started),
            last_head: AtomicU64::new(started),
            head_day: AtomicU64::new(cst_day(started)),
            last_peer_check: AtomicU64::new(0),
            head_announced: std::sync::atomic::AtomicBool::new(false),
            sweep: tokio::sync::Mutex::new(Sweep::for_registry(&registry)),
            registry,
        }
    }

    /// The organisation code.
    pub fn org_code(&self) -> &str {
        &self.config.me.org_code
    }

    /// The role.
    pub fn role(&self) -> OrgRole {
        self.config.me.role
    }

    /// Now, from the party's clock: the time and its unix seconds.
    pub fn now(&self) -> (OffsetDateTime, u64) {
        let t = (self.clock)();
        (t, u64::try_from(t.unix_timestamp()).unwrap_or(0))
    }

    /// The business date of `t` (China Standard Time); see [`business_date`].
    #[must_use]
    pub fn business_date(t: OffsetDateTime) -> BizDate {
        business_date(t)
    }

    /// Signs a tree head over everything this party logged so far (unless nothing was
    /// logged since the last one), and puts it on every delivery from now on.
    ///
    /// # Errors
    /// [`PartyError::Audit`].
    pub async fn issue_head(
        &self,
        reason: &str,
    ) -> Result<Option<guoku_store::audit::SignedHead>, PartyError> {
        let (t, _) = self.now();
        let head = crate::audit::issue_head(
            &self.store,
            self.config.suite,
            self.org_code(),
            &self.staff,
            t,
            reason,
        )
        .await?;
        if let Some(head) = &head {
            self.announce(head);
        }
        Ok(head)
    }

    fn announce(&self, head: &guoku_store::audit::SignedHead) {
        match crate::audit::WireHead::of(self.org_code(), head).to_header() {
            Ok(value) => {
                self.transport.announce_head(value);
                self.head_announced.store(true, Ordering::Relaxed);
            }
            Err(e) => tracing::warn!(error = %e, "cannot announce the tree head"),
        }
    }

    /// The audit log's part of a tick: announce the last head after a start, sign a head
    /// on schedule and at the business-day close, check the parties' heads.
    async fn audit_round(&self, now: u64) -> Result<(), PartyError> {
        if !self.head_announced.load(Ordering::Relaxed) {
            match self
                .store
                .audit()
                .latest_head()
                .await
                .map_err(crate::audit::AuditError::from)?
            {
                Some(head) => self.announce(&head),
                None => {
                    self.issue_head("start").await?;
                }
            }
            self.head_announced.store(true, Ordering::Relaxed);
        }
        let day = cst_day(now);
        if day != self.head_day.swap(day, Ordering::Relaxed) {
            self.last_head.store(now, Ordering::Relaxed);
            self.issue_head("day-close").await?;
        }
        let every = self.config.audit_head_every_secs;
        if every > 0 && now >= self.last_head.load(Ordering::Relaxed) + every {
            self.last_head.store(now, Ordering::Relaxed);
            self.issue_head("schedule").await?;
        }
        if now >= self.last_peer_check.load(Ordering::Relaxed) + PEER_HEADS_EVERY_SECS {
            self.last_peer_check.store(now, Ordering::Relaxed);
            let (t, _) = self.now();
            crate::audit::check_peer_heads(&self.store, &self.transport, t).await?;
        }
        Ok(())
    }

    fn wrong_role(&self, what: &'static str) -> PartyError {
        PartyError::WrongRole {
            role: self.role(),
            what,
        }
    }

    // ----- originating steps -------------------------------------------------------------

    /// Finance issues a direct payment: `voucher` (a 5201, unstamped) is stamped by the
    /// maker, the checker and the business seal, the indicator's monthly plan is consumed,
    /// and it is written and sent to the bank `to`.
    ///
    /// # Errors
    /// [`PartyError::WrongRole`] off finance; the flow's refusals (quota short, invalid).
    pub async fn issue_direct(
        &self,
        voucher: Voucher,
        indicator: &IndicatorKey,
        month: u8,
        to: &str,
        actor: &str,
    ) -> Result<VoucherRecord, PartyError> {
        if self.role() != OrgRole::Finance {
            return Err(self.wrong_role("issue direct payments"));
        }
        let rows = self.config.rows_per_8207;
        if rows > 0 && voucher.details.len() > rows && batch::is_batch(&voucher)? {
            return Ok(self
                .issue_direct_8207(voucher, indicator, month, to, actor)
                .await?
                .0);
        }
        let (t, now) = self.now();
        let body = self.stamp_original(voucher, t)?;
        let route = Route {
            me: self.org_code(),
            to,
            actor,
        };
        Ok(direct::issue(
            &self.store,
            &self.registry,
            indicator,
            month,
            &body,
            route,
            now,
        )
        .await?)
    }

    /// Finance issues a salary or batch payment as a master and 8207s: `voucher` (a 5201 of
    /// `BusinessTypeCode` 3 or 4 with its rows, unstamped) is split into a master without
    /// rows and 8207s of at most [`PartyConfig::rows_per_8207`] rows
    /// ([`batch::split_8207`]; [`batch::ROWS_PER_8207`] when that is 0); the master is
    /// stamped as [`Party::issue_direct`] stamps a 5201, each 8207 at its own positions by
    /// the post each names; the plan's quota is consumed once and all are sent to the bank
    /// `to` ([`batch::issue_with_8207s`]). The master's record and the 8207s'.
    ///
    /// # Errors
    /// [`PartyError::WrongRole`] off finance; the flow's refusals.
    pub async fn issue_direct_8207(
        &self,
        voucher: Voucher,
        indicator: &IndicatorKey,
        month: u8,
        to: &str,
        actor: &str,
    ) -> Result<(VoucherRecord, Vec<VoucherRecord>), PartyError> {
        if self.role() != OrgRole::Finance {
            return Err(self.wrong_role("issue direct payments"));
        }
        let rows = match self.config.rows_per_8207 {
            0 => batch::ROWS_PER_8207,
            n => n,
        };
        let (master, parts) = batch::split_8207(&voucher, rows)?;
        let (t, now) = self.now();
        let master = self.stamp_original(master, t)?;
        let parts = parts
            .into_iter()
            .map(|part| self.stamp_by_post(part, t))
            .collect::<Result<Vec<_>, _>>()?;
        let route = Route {
            me: self.org_code(),
            to,
            actor,
        };
        Ok(batch::issue_with_8207s(
            &self.store,
            &self.registry,
            indicator,
            month,
            &master,
            &parts,
            route,
            now,
        )
        .await?)
    }

    /// Stamps an original at every original position with the holder of the post the
    /// position names (maker, checker), and the business seal where it names none or the
    /// signer.
    fn stamp_by_post(
        &self,
        voucher: Voucher,
        t: OffsetDateTime,
    ) -> Result<EnvelopeBody, PartyError> {
        let ty = stamping::type_of(&self.registry, &voucher)?;
        let mut body = EnvelopeBody {
            flag: VoucherFlag::Original,
            attach: "SUCCESS".into(),
            voucher,
            signatures: Vec::new(),
        };
        for seal in &ty.seals {
            let signer = match seal.post {
                Some(guoku_voucher::registry::Post::Maker) => self.staff.maker.signer(),
                Some(guoku_voucher::registry::Post::Checker) => self.staff.checker.signer(),
                Some(guoku_voucher::registry::Post::Signer) | None => {
                    self.staff.sealer(&self.staff.business_seal, t)
                }
            };
            stamping::stamp_next(self.config.suite, ty, &mut body, &signer)?;
        }
        Ok(body)
    }

    /// A budget unit's counter sends an authorized payment: `voucher` (an 8202, unstamped)
    /// is stamped by the unit's maker, checker and seal and sent to its bank `to`.
    ///
    /// # Errors
    /// [`PartyError::WrongRole`] off a unit's counter; the flow's refusals.
    pub async fn issue_authorized(
        &self,
        voucher: Voucher,
        to: &str,
        actor: &str,
    ) -> Result<VoucherRecord, PartyError> {
        if self.role() != OrgRole::BudgetUnit {
            return Err(self.wrong_role("issue authorized payments"));
        }
        let (t, now) = self.now();
        let unit = voucher.header.get("AgencyCode").unwrap_or("").to_owned();
        let acct_no = voucher.header.get("PayAcctNo").unwrap_or("").to_owned();
        let body = self.stamp_original(voucher, t)?;
        let route = Route {
            me: self.org_code(),
            to,
            actor,
        };
        let account = UnitAccount {
            unit: &unit,
            acct_no: &acct_no,
        };
        Ok(authorized::issue(&self.store, &self.registry, account, &body, route, now).await?)
    }

    /// Finance sends a clearing-quota notice (5106/5108) to PBOC.
    ///
    /// # Errors
    /// [`PartyError::WrongRole`] off finance; the flow's refusals.
    pub async fn send_quota_notice(
        &self,
        voucher: Voucher,
        actor: &str,
    ) -> Result<VoucherRecord, PartyError> {
        if self.role() != OrgRole::Finance {
            return Err(self.wrong_role("send quota notices"));
        }
        let (t, now) = self.now();
        let maker = self.staff.maker.signer();
        let sealer = self.staff.sealer(&self.staff.business_seal, t);
        let notifier = Notifier {
            me: self.org_code(),
            pboc: &self.config.pboc,
            actor,
            suite: self.config.suite,
            maker: &maker,
            sealer: &sealer,
        };
        Ok(quota::send_notice(&self.store, &self.registry, &notifier, voucher, now).await?)
    }

    /// Finance sends an agent bank an authorized quota notice (5105, 授权额度通知单): the
    /// units' monthly plan quota the bank pays their 8202s from.
    ///
    /// # Errors
    /// [`PartyError::WrongRole`] off finance; the flow's refusals.
    pub async fn send_unit_quota_notice(
        &self,
        voucher: Voucher,
        bank: &str,
        actor: &str,
    ) -> Result<VoucherRecord, PartyError> {
        if self.role() != OrgRole::Finance {
            return Err(self.wrong_role("send authorized quota notices"));
        }
        let (t, now) = self.now();
        let maker = self.staff.maker.signer();
        let sealer = self.staff.sealer(&self.staff.business_seal, t);
        let notifier = quota::UnitQuotaNotifier {
            me: self.org_code(),
            bank,
            actor,
            suite: self.config.suite,
            maker: &maker,
            sealer: &sealer,
        };
        Ok(
            quota::send_unit_quota_notice(&self.store, &self.registry, &notifier, voucher, now)
                .await?,
        )
    }

    /// An agent bank sends PBOC clearing requests (2301) for every paid and receipted 5201
    /// (PayTypeCode 11) and 8202 (12) of each template's division, year and fund type not yet
    /// claimed; the requests sent.
    ///
    /// # Errors
    /// [`PartyError::WrongRole`] off a bank; the flow's failures.
    pub async fn request_clearing(&self, actor: &str) -> Result<Vec<VoucherRecord>, PartyError> {
        if self.role() != OrgRole::AgentBank {
            return Err(self.wrong_role("send clearing requests"));
        }
        let _one_round = self.clearing_round.lock().await;
        let (t, now) = self.now();
        let maker = self.staff.maker.signer();
        let sealer = self.staff.sealer(&self.staff.business_seal, t);
        let clearer = Clearer {
            me: self.org_code(),
            pboc: &self.config.pboc,
            actor,
            suite: self.config.suite,
            maker: &maker,
            sealer: &sealer,
        };
        let mut sent = Vec::new();
        // Unique per bank: the millisecond and a serial, for up to 1,000 requests a
        // millisecond. Never a number used before a restart: a 2301's receivable is booked
        // under its number before it is written, so a number used again after a kill in the
        // same second found that booking done (with the first list's sum) and left the
        // second list's sum unbooked.
        let millis = t.unix_timestamp_nanos() / 1_000_000;
        for template in &self.config.clearing_templates {
            let serial = self.clearing_serial.fetch_add(1, Ordering::Relaxed);
            let voucher_no = format!("QS{millis}{:03}", serial % 1000);
            if let Some(record) = clearing::build_request(
                &self.store,
                &self.registry,
                &clearer,
                template,
                &voucher_no,
                Self::business_date(t),
                now,
            )
            .await?
            {
                sent.push(record);
            }
            let serial = self.clearing_serial.fetch_add(1, Ordering::Relaxed);
            let voucher_no = format!("QS{millis}{:03}", serial % 1000);
            if let Some(record) = clearing::build_authorized_request(
                &self.store,
                &self.registry,
                &clearer,
                template,
                &voucher_no,
                Self::business_date(t),
                now,
            )
            .await?
            {
                sent.push(record);
            }
        }
        Ok(sent)
    }

    /// Stamps an original at every original position: maker, checker (where asked) and the
    /// business seal, in the type's order.
    fn stamp_original(
        &self,
        voucher: Voucher,
        t: OffsetDateTime,
    ) -> Result<EnvelopeBody, PartyError> {
        let ty = stamping::type_of(&self.registry, &voucher)?;
        let positions = stamping::Positions::of(ty)?;
        let mut body = EnvelopeBody {
            flag: VoucherFlag::Original,
            attach: "SUCCESS".into(),
            voucher,
            signatures: Vec::new(),
        };
        let count = positions.original.len();
        for i in 0..count {
            // Signatures first (maker, then checker), the seal last.
            let signer = if i + 1 == count {
                self.staff.sealer(&self.staff.business_seal, t)
            } else if i == 0 {
                self.staff.maker.signer()
            } else {
                self.staff.checker.signer()
            };
            stamping::stamp_next(self.config.suite, ty, &mut body, &signer)?;
        }
        Ok(body)
    }

    // ----- the worker --------------------------------------------------------------------

    /// One pass of the worker (see the module documentation).
    ///
    /// # Errors
    /// A store failure stops the pass; what was recorded stays and the rest is picked up
    /// by the next tick.
    pub async fn tick(&self) -> Result<TickReport, PartyError> {
        let mut report = TickReport::default();
        self.deliver(&mut report).await?;
        loop {
            let (_, now) = self.now();
            let records = self
                .store
                .library()
                .read(READ_BATCH, WORKER_ACTOR, now)
                .await?;
            let n = records.len();
            // Payments and their receipts touch only their own voucher and book rows, so
            // they are handled concurrently and their commits share fsyncs; everything
            // else (clearing requests, notices, refunds, reconciliation) runs one at a time,
            // in arrival order, after them.
            let (concurrent, in_order): (Vec<&VoucherRecord>, Vec<&VoucherRecord>) =
                records.iter().partition(|r| self.is_independent(r));
            let mut outcomes: Vec<(VoucherKey, Handled)> = Vec::with_capacity(n);
            let mut pending = FuturesUnordered::new();
            let mut waiting = concurrent.into_iter();
            loop {
                while pending.len() < CONCURRENT_VOUCHERS {
                    match waiting.next() {
                        Some(record) => pending.push(self.dispatch_keyed(record)),
                        None => break,
                    }
                }
                match pending.next().await {
                    Some(done) => outcomes.push(self.survive(done)?),
                    None => break,
                }
            }
            for record in in_order {
                let done = self.dispatch_keyed(record).await;
                outcomes.push(self.survive(done)?);
            }
            for (key, handled) in outcomes {
                report.handled += 1;
                match handled {
                    Handled::Done => {}
                    Handled::Completed => report.completed.push(key),
                    Handled::Failed => report.failed += 1,
                }
            }
            if n < READ_BATCH as usize {
                break;
            }
        }
        let every = self.config.clearing_every_secs;
        let (_, now) = self.now();
        if self.role() == OrgRole::AgentBank
            && every > 0
            && now >= self.last_clearing.load(Ordering::Relaxed) + every
        {
            self.last_clearing.store(now, Ordering::Relaxed);
            report.clearing_requests += self.request_clearing(WORKER_ACTOR).await?.len();
        }
        if now >= self.last_purge.load(Ordering::Relaxed) + PURGE_EVERY_SECS {
            self.last_purge.store(now, Ordering::Relaxed);
            report.purged = self.purge_expired().await?;
        }
        if now >= self.last_retry.load(Ordering::Relaxed) + STUCK_AFTER_SECS {
            self.last_retry.store(now, Ordering::Relaxed);
            report.retried = self.retry_stuck().await?;
        }
        let every = self.config.reconcile_every_secs;
        if every > 0
            && matches!(self.role(), OrgRole::Pboc | OrgRole::Finance)
            && now >= self.last_reconcile.load(Ordering::Relaxed) + every
        {
            self.last_reconcile.store(now, Ordering::Relaxed);
            report.reconciliations += self.reconcile_day(WORKER_ACTOR).await?;
        }
        let every = self.config.status_every_secs;
        if every > 0 && now >= self.last_sync.load(Ordering::Relaxed) + every {
            self.last_sync.store(now, Ordering::Relaxed);
            report.status_changes = self.sync_statuses().await?;
        }
        self.audit_round(now).await?;
        if report.clearing_requests > 0 || report.handled > 0 {
            // What this tick wrote may be due now: deliver it without waiting for the next.
            self.deliver(&mut report).await?;
        }
        let c = &self.counters;
        c.ticks.fetch_add(1, Ordering::Relaxed);
        c.handled
            .fetch_add(report.handled as u64, Ordering::Relaxed);
        c.failed.fetch_add(report.failed as u64, Ordering::Relaxed);
        c.delivered
            .fetch_add(report.outbox.delivered as u64, Ordering::Relaxed);
        c.delivery_retries
            .fetch_add(report.outbox.retried as u64, Ordering::Relaxed);
        c.clearing_requests
            .fetch_add(report.clearing_requests as u64, Ordering::Relaxed);
        Ok(report)
    }

    /// The worker: ticks until `stop` turns true; right away again while there is work,
    /// else every `idle` (the outbox's retries and the bank's clearing rounds come due with
    /// time). A failed tick is logged and retried after `idle`: nothing it recorded is lost
    /// and the rest is picked up again.
    pub async fn run(self: Arc<Self>, idle: Duration, mut stop: watch::Receiver<bool>)
    where
        T: 'static,
    {
        loop {
            if *stop.borrow() {
                return;
            }
            let busy = match self.tick().await {
                Ok(report) => !report.is_idle(),
                Err(e) => {
                    tracing::error!(org = %self.org_code(), error = %e, retryable = e.is_retryable(), "tick failed");
                    false
                }
            };
            if busy {
                tokio::task::yield_now().await;
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(idle) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// Asks receivers about the vouchers this party sent that wait on them and records
    /// their answers; a returned voucher's quota is restored (once). The changes recorded.
    ///
    /// # Errors
    /// A store failure.
    pub async fn sync_statuses(&self) -> Result<usize, PartyError> {
        let (_, now) = self.now();
        let report = {
            let mut sweep = self.sweep.lock().await;
            status_sync::sync_sent(
                &self.store,
                &self.transport,
                &mut sweep,
                WORKER_ACTOR,
                now,
                status_sync::SYNC_LIMIT_MAX,
            )
            .await?
        };
        for change in &report.changes {
            if change.status == guoku_voucher::lifecycle::Exchange::Returned
                && change.leg == Leg::Original
            {
                let reason = change.reason.as_deref().unwrap_or("");
                let ctx = returns::ReturnsCtx {
                    actor: WORKER_ACTOR,
                };
                returns::on_returned(&self.store, &self.registry, &ctx, &change.key, reason, now)
                    .await?;
            }
        }
        Ok(report.changes.len())
    }

    /// Reconciles the business day so far with every bank, per division: PBOC sends a 3502
    /// of the day's clearing requests (2301), finance a 5503 of the day's direct payments
    /// (5201); the banks compare with their own libraries and answer. The requests sent.
    ///
    /// # Errors
    /// [`PartyError::WrongRole`] off PBOC and finance; the flow's failures.
    pub async fn reconcile_day(&self, actor: &str) -> Result<usize, PartyError> {
        let (kind, vt, prefix) = match self.role() {
            OrgRole::Pboc => (CheckKind::Vouchers, clearing::VT_2301, 'P'),
            OrgRole::Finance => (CheckKind::PaymentVouchers, direct::VT_5201, 'F'),
            _ => return Err(self.wrong_role("reconcile")),
        };
        let (t, now) = self.now();
        let date = Self::business_date(t);
        let year = date.to_string()[..4].to_owned();
        let sealer = self.staff.sealer(&self.staff.business_seal, t);
        let calendar = guoku_store::Calendar::default();
        // Unique per round within the budget year (the voucher key holds the year): the day
        // of the year, the second of the day, the division and the bank — 16 characters, so
        // the packet number still fits VoucherNo's 20.
        let day = date.as_date().ordinal();
        let slot = now % 86_400;
        let mut sent = 0;
        for (b, (bank, bank_no)) in self.config.banks.iter().enumerate() {
            for division in &self.config.divisions {
                let mut template = Fields::new();
                for (name, value) in [
                    ("AdmDivCode", division.as_str()),
                    ("StYear", year.as_str()),
                    ("TreCode", "4300000000"),
                    ("PayBankCode", bank_no.as_str()),
                ] {
                    template.set(name, value);
                }
                let check_no = format!("{prefix}{day:03}{slot:05}{division}{b}");
                let origin = reconcile::Originator {
                    suite: self.config.suite,
                    sealer: &sealer,
                    route: Route {
                        me: self.org_code(),
                        to: bank,
                        actor,
                    },
                    calendar,
                };
                let request = reconcile::CheckRequest {
                    kind,
                    template: &template,
                    date,
                    e_voucher_type: Some(vt),
                    check_no: &check_no,
                    packet_details: 1_000,
                    plan_notices: None,
                };
                reconcile::send_check(&self.store, &self.registry, &origin, &request, now).await?;
                sent += 1;
            }
        }
        Ok(sent)
    }

    /// The sender voids (作废) a voucher it has not had acknowledged; a 5201's quota is
    /// restored.
    ///
    /// # Errors
    /// The flow's refusals (acknowledged already, unknown).
    pub async fn void(
        &self,
        key: &VoucherKey,
        reason: Option<&str>,
        actor: &str,
    ) -> Result<returns::SenderOutcome, PartyError> {
        let (_, now) = self.now();
        let ctx = returns::ReturnsCtx { actor };
        Ok(returns::void(&self.store, &self.registry, &ctx, key, reason, now).await?)
    }

    /// The receiver returns (退回) a voucher it received, with a reason.
    ///
    /// # Errors
    /// The flow's refusals (paid already, no reason, unknown).
    pub async fn return_received(
        &self,
        key: &VoucherKey,
        reason: &str,
        actor: &str,
    ) -> Result<returns::ReturnedHere, PartyError> {
        let (_, now) = self.now();
        let ctx = returns::ReturnsCtx { actor };
        Ok(returns::return_received(&self.store, &self.registry, &ctx, key, reason, now).await?)
    }

    /// An agent bank records a refund (退汇) of a payment it paid and had cleared: the
    /// notice (2203/2204) to finance and the request (2302) to PBOC.
    ///
    /// # Errors
    /// [`PartyError::WrongRole`] off a bank; the flow's refusals.
    pub async fn record_refund(
        &self,
        request: &refund::RefundRequest,
        actor: &str,
    ) -> Result<refund::Refunded, PartyError> {
        if self.role() != OrgRole::AgentBank {
            return Err(self.wrong_role("record refunds"));
        }
        let (t, now) = self.now();
        let maker = self.staff.maker.signer();
        let sealer = self.staff.sealer(&self.staff.business_seal, t);
        let desk = refund::RefundDesk {
            me: self.org_code(),
            finance: &self.config.finance,
            pboc: &self.config.pboc,
            actor,
            suite: self.config.suite,
            maker: &maker,
            sealer: &sealer,
        };
        Ok(refund::record_refund(&self.store, &self.registry, &desk, request, now).await?)
    }

    /// An agent bank's person completes the payee's bank number (补录收款行行号) of a
    /// received single payment (5201 or 8202) waiting at 待补录: the number is recorded in
    /// the library's event log and the voucher is paid by the same step the worker takes,
    /// its sealed receipt carrying the number where the registry has the field
    /// ([`direct::X_PAYEE_BANK_NO`]). A second completion of the same voucher is refused and
    /// changes nothing.
    ///
    /// # Errors
    /// [`PartyError::WrongRole`] off a bank; [`PartyError::Direct`] with
    /// [`DirectError::Invalid`] for a number that is not 12 digits or a voucher not waiting
    /// at 待补录, or with [`LibraryError::Illegal`] inside when another completion won;
    /// the flow's failures.
    pub async fn complete_payee_bank(
        &self,
        key: &VoucherKey,
        bank_no: &str,
        actor: &str,
    ) -> Result<PayOutcome, PartyError> {
        if self.role() != OrgRole::AgentBank {
            return Err(self.wrong_role("complete payee bank numbers"));
        }
        let bank_no: BankNo = bank_no.trim().parse().map_err(|_| {
            DirectError::Invalid("PayeeAcctBankNo (收款银行行号) must be 12 digits".into())
        })?;
        let record = self
            .store
            .library()
            .status(key, Leg::Original)
            .await?
            .ok_or_else(|| direct::not_awaiting(key))?;
        let Some(paid_seal) = self.staff.paid_seal.as_ref() else {
            return Err(DirectError::Invalid("this bank has no paid seal (转讫章)".into()).into());
        };
        let (t, now) = self.now();
        let sealer = self.staff.sealer(paid_seal, t);
        let serial_prefix = format!("{}-", self.config.bank_no);
        let bank = Bank {
            me: self.org_code(),
            actor,
            pay_date: Self::business_date(t),
            serial_prefix: &serial_prefix,
            suite: self.config.suite,
            sealer: &sealer,
        };
        let (store, registry) = (&self.store, &self.registry);
        let outcome = match key.vt_code.as_str() {
            direct::VT_5201 => {
                let rules = RowRules::default();
                direct::complete_payee_bank(store, registry, &bank, &rules, &record, &bank_no, now)
                    .await?
            }
            authorized::VT_8202 => {
                let accounts = self.unit_accounts();
                authorized::complete_payee_bank(
                    store, registry, &bank, &accounts, &record, &bank_no, now,
                )
                .await?
            }
            _ => return Err(direct::not_awaiting(key).into()),
        };
        tracing::info!(key = %key, actor, outcome = ?outcome, "payee bank number completed");
        Ok(outcome)
    }

    /// A bank's unit zero-balance accounts, as the flows take them.
    fn unit_accounts(&self) -> Vec<UnitAccount<'_>> {
        self.config
            .unit_accounts
            .iter()
            .map(|(unit, acct_no)| UnitAccount { unit, acct_no })
            .collect()
    }

    async fn dispatch_keyed(
        &self,
        record: &VoucherRecord,
    ) -> Result<(VoucherKey, Handled), PartyError> {
        self.dispatch(record)
            .await
            .map(|handled| (record.key.clone(), handled))
            .map_err(|error| {
                tracing::error!(
                    org = %self.org_code(),
                    key = %record.key,
                    leg = ?record.leg,
                    error = %error,
                    retryable = error.is_retryable(),
                    "a voucher's step failed; it stays read (已读取) and is handed to its flow again later"
                );
                error
            })
    }

    /// A failed step of one voucher stops the tick only when the store is unreachable (the
    /// rest would fail too); otherwise the voucher counts as failed, stays read (已读取) and
    /// [`Party::retry_stuck`] hands it to its flow again later, while the others go on.
    fn survive(
        &self,
        done: Result<(VoucherKey, Handled), PartyError>,
    ) -> Result<(VoucherKey, Handled), PartyError> {
        match done {
            Ok(done) => Ok(done),
            Err(error) if error.is_retryable() => Err(error),
            Err(_) => Ok((VoucherKey::default(), Handled::Failed)),
        }
    }

    /// Forgets the idempotency keys and portal sessions that have expired (up to their
    /// stores' limit per call); how many.
    ///
    /// # Errors
    /// [`PartyError::Housekeeping`] if a store fails.
    pub async fn purge_expired(&self) -> Result<u64, PartyError> {
        let (_, now) = self.now();
        let failed = |e: &dyn std::fmt::Display| PartyError::Housekeeping(e.to_string());
        let keys = self
            .store
            .idempotency(guoku_store::idempotency::IdempotencyConfig::default())
            .map_err(|e| failed(&e))?
            .purge_expired(now, guoku_store::idempotency::PURGE_MAX)
            .await
            .map_err(|e| failed(&e))?;
        let sessions = self
            .store
            .sessions()
            .purge_expired(now, guoku_store::sessions::PURGE_MAX)
            .await
            .map_err(|e| failed(&e))?;
        Ok(keys + sessions)
    }

    /// Hands the vouchers a failed step left read (已读取) for at least
    /// [`STUCK_AFTER_SECS`] to their flows again (重新读取); how many.
    ///
    /// # Errors
    /// A store failure.
    pub async fn retry_stuck(&self) -> Result<usize, PartyError> {
        let (_, now) = self.now();
        // Each sweep goes on after the last voucher the one before handed over, and starts
        // from the beginning again once it reaches the end, so vouchers that stay stopped
        // for long (a master waiting for its 8207s) do not take every turn.
        let after = self.retry_after.load(Ordering::Relaxed);
        let stuck = self
            .store
            .library()
            .read_again(READ_BATCH, now.saturating_sub(STUCK_AFTER_SECS), after)
            .await?;
        let next = match stuck.last() {
            Some(last) if stuck.len() == READ_BATCH as usize => last.seq,
            _ => 0,
        };
        self.retry_after.store(next, Ordering::Relaxed);
        for record in &stuck {
            let done = self.dispatch_keyed(record).await;
            self.survive(done)?;
        }
        // Written but never sent (the process died in between): send them now.
        let library = self.store.library();
        let unsent = library
            .unsent(READ_BATCH, now.saturating_sub(STUCK_AFTER_SECS))
            .await?;
        for record in &unsent {
            // A 2301 whose receivable the books refuse stays unsent (and is tried again),
            // said in the log; the other vouchers go on.
            match crate::flows::clearing::book_unsent_request(&self.store, record, now).await {
                Ok(()) => {}
                Err(e @ crate::flows::clearing::ClearingError::Invalid(_)) => {
                    tracing::error!(key = %record.key, error = %e, "clearing request not sent");
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
            library
                .send(&record.key, record.leg, WORKER_ACTOR, now)
                .await?;
        }
        Ok(stuck.len() + unsent.len())
    }

    /// Whether `record` may be handled concurrently with others of its tick: a payment
    /// original at a bank, or a payment receipt at its sender.
    fn is_independent(&self, record: &VoucherRecord) -> bool {
        let vt = record.key.vt_code.as_str();
        matches!(
            (self.role(), vt, record.leg),
            (
                OrgRole::AgentBank,
                direct::VT_5201 | authorized::VT_8202,
                Leg::Original
            ) | (OrgRole::Finance, direct::VT_5201, Leg::Receipt)
                | (OrgRole::BudgetUnit, authorized::VT_8202, Leg::Receipt)
        )
    }

    /// Delivers everything due, a batch at a time, until a batch comes back short.
    async fn deliver(&self, report: &mut TickReport) -> Result<(), PartyError> {
        loop {
            let (_, now) = self.now();
            let pass = deliver_due(
                &self.store,
                &self.transport,
                now,
                OUTBOX_BATCH,
                self.config.backoff,
            )
            .await?;
            report.outbox.delivered += pass.delivered;
            report.outbox.refused += pass.refused;
            report.outbox.retried += pass.retried;
            report.outbox.skipped += pass.skipped;
            let n = pass.delivered + pass.refused + pass.retried + pass.skipped;
            if n < OUTBOX_BATCH as usize {
                return Ok(());
            }
        }
    }

    /// Hands one read voucher to the flow step this role has for its type and leg.
    ///
    /// # Errors
    /// A store failure.
    pub async fn dispatch(&self, record: &VoucherRecord) -> Result<Handled, PartyError> {
        let (t, now) = self.now();
        let vt = record.key.vt_code.as_str();
        let store = &self.store;
        let registry = &self.registry;
        let actor = WORKER_ACTOR;
        match (self.role(), vt, record.leg) {
            (
                OrgRole::AgentBank,
                direct::VT_5201 | authorized::VT_8202 | batch::VT_8207,
                Leg::Original,
            ) => {
                let Some(paid_seal) = self.staff.paid_seal.as_ref() else {
                    return self
                        .refuse(record, "this bank has no paid seal (转讫章)")
                        .await;
                };
                let sealer = self.staff.sealer(paid_seal, t);
                let serial_prefix = format!("{}-", self.config.bank_no);
                let bank = Bank {
                    me: self.org_code(),
                    actor,
                    pay_date: Self::business_date(t),
                    serial_prefix: &serial_prefix,
                    suite: self.config.suite,
                    sealer: &sealer,
                };
                if vt == batch::VT_8207 {
                    let rules = RowRules::default();
                    let outcome =
                        batch::pay_part(store, registry, &bank, &rules, record, now).await?;
                    return Ok(Handled::of(!matches!(outcome, PartOutcome::Refused { .. })));
                }
                let payee_bank = PayeeBankRule::required_if(self.config.require_payee_bank_no);
                let outcome = if vt == direct::VT_5201 {
                    let rules = RowRules::default();
                    direct::pay_or_hold(store, registry, &bank, &rules, payee_bank, record, now)
                        .await?
                } else {
                    let accounts = self.unit_accounts();
                    authorized::pay_or_hold(
                        store, registry, &bank, &accounts, payee_bank, record, now,
                    )
                    .await?
                };
                // A payment waiting for a person (待补录) took its step: the person's
                // completion pays it, not the worker.
                Ok(Handled::of(matches!(
                    outcome,
                    PayOutcome::Paid { .. }
                        | PayOutcome::AwaitingCompletion { .. }
                        | PayOutcome::Waiting { .. }
                )))
            }
            (OrgRole::Finance, batch::VT_8207, Leg::Receipt) => Ok(match batch::book_8207_receipt(
                store, actor, record, now,
            )
            .await?
            {
                ReceiptOutcome::Done { .. } | ReceiptOutcome::Waiting { .. } => Handled::Done,
                _ => Handled::Failed,
            }),
            (OrgRole::AgentBank, quota::VT_5105, Leg::Original) => {
                let sealer = self.staff.sealer(&self.staff.business_seal, t);
                let accounts: Vec<UnitAccount<'_>> = self
                    .config
                    .unit_accounts
                    .iter()
                    .map(|(unit, acct_no)| UnitAccount { unit, acct_no })
                    .collect();
                let desk = quota::BankDesk {
                    me: self.org_code(),
                    actor,
                    suite: self.config.suite,
                    sealer: &sealer,
                    accounts: &accounts,
                };
                Ok(Handled::of(matches!(
                    quota::on_unit_quota_notice(store, registry, &desk, record, now).await?,
                    NoticeOutcome::Booked { .. }
                )))
            }
            (OrgRole::Finance, quota::VT_5105, Leg::Receipt) => Ok(Handled::of(matches!(
                quota::take_receipt(store, actor, record, now).await?,
                quota::ReceiptOutcome::Received { .. }
            ))),
            (OrgRole::AgentBank, clearing::VT_2301, Leg::Receipt) => Ok(Handled::of(matches!(
                clearing::settle_receipt(store, actor, record, now).await?,
                SettleOutcome::Settled { .. }
            ))),
            (OrgRole::AgentBank, "2203" | "2204" | "2302", Leg::Receipt) => {
                Ok(Handled::of(matches!(
                    refund::on_refund_receipt(store, actor, record, now).await?,
                    refund::ReceiptOutcome::Booked { .. }
                )))
            }
            (OrgRole::Finance, "2203" | "2204", Leg::Original) => {
                let sealer = self.staff.sealer(&self.staff.business_seal, t);
                let desk = refund::NoticeDesk {
                    me: self.org_code(),
                    actor,
                    suite: self.config.suite,
                    sealer: &sealer,
                };
                Ok(Handled::of(matches!(
                    refund::on_refund_notice(store, registry, &desk, record, now).await?,
                    refund::NoticeOutcome::Accepted { .. }
                )))
            }
            (OrgRole::Pboc, "2302", Leg::Original) => {
                let Some(paid_seal) = self.staff.paid_seal.as_ref() else {
                    return self.refuse(record, "PBOC has no paid seal (转讫章)").await;
                };
                let sealer = self.staff.sealer(paid_seal, t);
                let pboc = Pboc {
                    me: self.org_code(),
                    bank_no: &self.config.bank_no,
                    actor,
                    clear_date: Self::business_date(t),
                    suite: self.config.suite,
                    sealer: &sealer,
                };
                Ok(Handled::of(matches!(
                    refund::on_refund_request(store, registry, &pboc, record, now).await?,
                    refund::RequestOutcome::Refunded { .. }
                )))
            }
            (OrgRole::AgentBank, _, Leg::Original) if CheckKind::of(vt).is_some() => {
                let sealer = self.staff.sealer(&self.staff.business_seal, t);
                let answerer = reconcile::Answerer {
                    suite: self.config.suite,
                    sealer: &sealer,
                    me: self.org_code(),
                    actor,
                    calendar: guoku_store::Calendar::default(),
                };
                Ok(Handled::of(matches!(
                    reconcile::on_check_request(store, registry, &answerer, record, now).await?,
                    reconcile::CheckOutcome::Answered { .. }
                        | reconcile::CheckOutcome::Waiting { .. }
                )))
            }
            (OrgRole::Pboc | OrgRole::Finance, "3502" | "5501" | "5502" | "5503", Leg::Receipt)
            | (OrgRole::Pboc, "2507", Leg::Original) => Ok(Handled::of(matches!(
                reconcile::on_check_answer(store, &reconcile::AnswerTaker { actor }, record, now)
                    .await?,
                reconcile::AnswerOutcome::Taken { .. }
            ))),
            (OrgRole::Finance, direct::VT_5201, Leg::Receipt)
            | (OrgRole::BudgetUnit, authorized::VT_8202, Leg::Receipt) => Ok(
                match direct::book_receipt(store, actor, record, now).await? {
                    ReceiptOutcome::Done { .. } => Handled::Completed,
                    ReceiptOutcome::Waiting { .. } => Handled::Done,
                    _ => Handled::Failed,
                },
            ),
            (OrgRole::Finance, _, Leg::Receipt) if quota::notice_kind(vt).is_some() => {
                Ok(Handled::of(matches!(
                    quota::take_receipt(store, actor, record, now).await?,
                    quota::ReceiptOutcome::Received { .. }
                )))
            }
            (OrgRole::Pboc, _, Leg::Original) if quota::notice_kind(vt).is_some() => {
                let sealer = self.staff.sealer(&self.staff.business_seal, t);
                let treasury = Treasury {
                    me: self.org_code(),
                    actor,
                    suite: self.config.suite,
                    sealer: &sealer,
                };
                Ok(Handled::of(matches!(
                    quota::book_record(store, registry, &treasury, record, now).await?,
                    NoticeOutcome::Booked { .. }
                )))
            }
            (OrgRole::Pboc, clearing::VT_2301, Leg::Original) => {
                let Some(paid_seal) = self.staff.paid_seal.as_ref() else {
                    return self.refuse(record, "PBOC has no paid seal (转讫章)").await;
                };
                let sealer = self.staff.sealer(paid_seal, t);
                let pboc = Pboc {
                    me: self.org_code(),
                    bank_no: &self.config.bank_no,
                    actor,
                    clear_date: Self::business_date(t),
                    suite: self.config.suite,
                    sealer: &sealer,
                };
                // What PBOC can know of a listed voucher is what the bank's sealed 2301
                // attests: paid and receipted. Vouchers PBOC already cleared are found in
                // its own library by the flow, whatever this says.
                let paid = |_: &guoku_voucher::VoucherKey| PaidState::ReceiptSent;
                Ok(Handled::of(matches!(
                    clearing::clear_record(store, registry, &pboc, &paid, record, now).await?,
                    ClearOutcome::Cleared { .. }
                )))
            }
            _ => {
                let reason = format!(
                    "no flow takes a {vt} {} at a {:?} party",
                    match record.leg {
                        Leg::Original => "original",
                        Leg::Receipt => "receipt",
                    },
                    self.role()
                );
                self.refuse(record, &reason).await
            }
        }
    }

    async fn refuse(&self, record: &VoucherRecord, reason: &str) -> Result<Handled, PartyError> {
        let (_, now) = self.now();
        tracing::warn!(key = %record.key, reason, "voucher refused");
        self.store
            .library()
            .refuse(&record.key, record.leg, reason, WORKER_ACTOR, now)
            .await?;
        Ok(Handled::Failed)
    }
}

/// The day number of `unix` seconds in China Standard Time (UTC+8), the business day.
fn cst_day(unix: u64) -> u64 {
    (unix + 8 * 3_600) / 86_400
}
