//! `/metrics`: Prometheus (OpenMetrics) text with the official client.
//!
//! Two kinds of figures:
//! - **kept in the process** ([`Metrics`]): the HTTP latency histogram by method, route and
//!   status; payments and idempotency outcomes counted as the API handles them;
//! - **read at scrape time** from each party served: vouchers by organisation, type, leg
//!   and status code (the standard's 状态查询 code); unread received vouchers; outbox
//!   entries (sent, not yet taken by the receiver's library) and those due now; the
//!   worker's counters ([`crate::party::PartyCounters`]).
//!
//! The voucher figures come from one grouped query per party
//! ([`guoku_store::library::Library::counts`]) and the outbox's from another
//! ([`guoku_store::library::Library::outbox_counts`]), so a scrape costs the same however
//! many vouchers there are; `guoku_metrics_truncated` stays 0.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use guoku_store::library::LibraryError;
use guoku_voucher::lifecycle::Leg;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::exchange::Transport;
use crate::party::Party;

use super::auth::role_name;

/// The content type of the OpenMetrics text format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: String,
    route: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PaymentLabels {
    org: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OrgLabels {
    org: String,
    role: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VoucherLabels {
    org: String,
    vt_code: String,
    leg: String,
    status: String,
}

type HistogramFamily = Family<HttpLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 1 ms to about 16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// The figures the API keeps in the process.
pub struct Metrics {
    registry: Registry,
    http: HistogramFamily,
    payments: Family<PaymentLabels, Counter>,
    payment_fen: Family<PaymentLabels, Counter>,
    idempotency: Family<OutcomeLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// What a scrape read of one party.
#[derive(Default)]
struct PartyFigures {
    vouchers: BTreeMap<(String, &'static str, i8), u64>,
    unread: u64,
    outbox: u64,
    due: u64,
    audit_leaves: u64,
    audit_alarms: u64,
}

fn leg_name(leg: Leg) -> &'static str {
    match leg {
        Leg::Original => "original",
        Leg::Receipt => "receipt",
    }
}

impl Metrics {
    /// Empty figures, registered.
    #[must_use]
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let http: HistogramFamily = Family::new_with_constructor(latency_histogram);
        registry.register(
            "guoku_http_request_duration_seconds",
            "HTTP API request latency by method, route and status",
            http.clone(),
        );
        let payments = Family::<PaymentLabels, Counter>::default();
        registry.register(
            "guoku_api_payments",
            "Payments issued through the API, by organisation and kind (direct, authorized)",
            payments.clone(),
        );
        let payment_fen = Family::<PaymentLabels, Counter>::default();
        registry.register(
            "guoku_api_payment_amount_fen",
            "Amount of the payments issued through the API, in fen",
            payment_fen.clone(),
        );
        let idempotency = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "guoku_api_idempotency",
            "Requests with an Idempotency-Key, by outcome (proceeded, replayed, in_use, reused)",
            idempotency.clone(),
        );
        Self {
            registry,
            http,
            payments,
            payment_fen,
            idempotency,
        }
    }

    /// One request answered.
    pub(crate) fn observe_http(&self, method: &str, route: &str, status: u16, secs: f64) {
        self.http
            .get_or_create(&HttpLabels {
                method: method.to_owned(),
                route: route.to_owned(),
                status: status.to_string(),
            })
            .observe(secs);
    }

    /// One payment issued.
    pub(crate) fn count_payment(&self, org: &str, kind: &str, fen: i64) {
        let labels = PaymentLabels {
            org: org.to_owned(),
            kind: kind.to_owned(),
        };
        self.payments.get_or_create(&labels).inc();
        self.payment_fen
            .get_or_create(&labels)
            .inc_by(u64::try_from(fen).unwrap_or(0));
    }

    /// One idempotency outcome.
    pub(crate) fn count_idempotency(&self, outcome: &str) {
        self.idempotency
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// The exposition: the kept figures, then what the parties' stores say now.
    ///
    /// # Errors
    /// A store failure while reading (the scrape fails; the caller answers 503).
    pub(crate) async fn render<T: Transport>(
        &self,
        parties: &[&Party<T>],
    ) -> Result<String, LibraryError> {
        let mut figures = Vec::with_capacity(parties.len());
        for party in parties {
            figures.push(read_party(party).await?);
        }

        let mut now = Registry::default();
        let vouchers = Family::<VoucherLabels, Gauge>::default();
        now.register(
            "guoku_vouchers",
            "Voucher legs in the library by organisation, type, leg and status code (状态查询)",
            vouchers.clone(),
        );
        let unread = Family::<OrgLabels, Gauge>::default();
        now.register(
            "guoku_vouchers_unread",
            "Received vouchers the worker has not read yet",
            unread.clone(),
        );
        let outbox = Family::<OrgLabels, Gauge>::default();
        now.register(
            "guoku_outbox_entries",
            "Sent vouchers the receiver's library has not taken yet",
            outbox.clone(),
        );
        let due = Family::<OrgLabels, Gauge>::default();
        now.register(
            "guoku_outbox_due",
            "Outbox entries due for a (re)send now (counted up to 100)",
            due.clone(),
        );
        let audit_leaves = Family::<OrgLabels, Gauge>::default();
        now.register(
            "guoku_audit_leaves",
            "Leaves in the node's audit log (电子审计)",
            audit_leaves.clone(),
        );
        let audit_alarms = Family::<OrgLabels, Gauge>::default();
        now.register(
            "guoku_audit_alarms",
            "Audit alarms raised: a party's tree heads that contradict each other (counted up to 100; alert on > 0)",
            audit_alarms.clone(),
        );
        let counters: [(&str, &str, Family<OrgLabels, Counter>); 6] = [
            ("guoku_worker_ticks", "Worker passes", Family::default()),
            (
                "guoku_worker_vouchers_handled",
                "Received vouchers the worker handed to a flow",
                Family::default(),
            ),
            (
                "guoku_worker_vouchers_failed",
                "Of those, refused, returned or failed",
                Family::default(),
            ),
            (
                "guoku_outbox_delivered",
                "Vouchers delivered to the receiver's library",
                Family::default(),
            ),
            (
                "guoku_outbox_retries",
                "Deliveries that will be tried again",
                Family::default(),
            ),
            (
                "guoku_clearing_requests",
                "Clearing requests (2301) the worker sent",
                Family::default(),
            ),
        ];
        for (name, help, family) in &counters {
            now.register(*name, *help, family.clone());
        }
        let truncated_gauge = Gauge::<i64>::default();
        now.register(
            "guoku_metrics_truncated",
            "1 when this scrape stopped counting vouchers at its page limit",
            truncated_gauge.clone(),
        );
        // Grouped counts read everything at a fixed cost: never truncated. The gauge stays
        // for dashboards that watch it.
        truncated_gauge.set(0);

        for (party, f) in parties.iter().zip(figures) {
            let org = OrgLabels {
                org: party.org_code().to_owned(),
                role: role_name(party.role()).to_owned(),
            };
            for ((vt_code, leg, status), n) in f.vouchers {
                vouchers
                    .get_or_create(&VoucherLabels {
                        org: org.org.clone(),
                        vt_code,
                        leg: leg.to_owned(),
                        status: status.to_string(),
                    })
                    .set(gauge_value(n));
            }
            unread.get_or_create(&org).set(gauge_value(f.unread));
            outbox.get_or_create(&org).set(gauge_value(f.outbox));
            due.get_or_create(&org).set(gauge_value(f.due));
            audit_leaves
                .get_or_create(&org)
                .set(gauge_value(f.audit_leaves));
            audit_alarms
                .get_or_create(&org)
                .set(gauge_value(f.audit_alarms));
            let c = &party.counters;
            let values = [
                c.ticks.load(Ordering::Relaxed),
                c.handled.load(Ordering::Relaxed),
                c.failed.load(Ordering::Relaxed),
                c.delivered.load(Ordering::Relaxed),
                c.delivery_retries.load(Ordering::Relaxed),
                c.clearing_requests.load(Ordering::Relaxed),
            ];
            for ((_, _, family), value) in counters.iter().zip(values) {
                family.get_or_create(&org).inc_by(value);
            }
        }

        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode_registry(&mut text, &self.registry);
        let _ = encode_registry(&mut text, &now);
        let _ = encode_eof(&mut text);
        Ok(text)
    }
}

fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Counts one party's voucher legs by type, leg and status (one grouped query), and its
/// outbox.
/// Alarms counted per scrape at most.
const ALARMS_COUNTED: u32 = 100;

async fn read_party<T: Transport>(party: &Party<T>) -> Result<PartyFigures, LibraryError> {
    let library = party.store.library();
    let mut f = PartyFigures::default();
    for count in library.counts().await? {
        let Some(code) = count.exchange.code(count.leg) else {
            continue;
        };
        *f.vouchers
            .entry((count.vt_code.clone(), leg_name(count.leg), code))
            .or_default() += count.legs;
        f.unread += count.unread;
    }
    let (_, now) = party.now();
    let (due, waiting) = library.outbox_counts(now).await?;
    f.due = due;
    f.outbox = waiting;
    let audit = party.store.audit();
    f.audit_leaves = audit.size().await?;
    f.audit_alarms = audit.alarms(ALARMS_COUNTED).await?.len() as u64;
    Ok(f)
}
