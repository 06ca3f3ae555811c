//! PBOC and a budget unit beside finance and the bank, seals with their holders, and
//! parties' nodes on one in-memory network, each with a store on a backend.

use std::sync::Arc;

use guoku_node::exchange::{ExchangeState, InMemory, InMemoryNetwork, Peer, ReceiveLimits, app};
use guoku_node::flows::authorized::{UnitAccount, VT_8202};
use guoku_node::flows::direct::{Route, issue};
use guoku_node::outbox::deliver_due;
use guoku_node::stamping::stamp_next;
use guoku_seal::Suite;
use guoku_seal::pki::{OrgRole, Organisation, Post};
use guoku_seal::ses::Seal;
use guoku_seal::voucher::{Signer, StampKind};
use guoku_store::Store;
use guoku_store::books::IndicatorKey;
use guoku_voucher::sample::{Style, sample};
use guoku_voucher::{EnvelopeBody, Registry, VoucherFlag};

use super::{
    BACKOFF, BANK_CODE, Backend, FINANCE_CODE, Holder, MONTH, Pki, SchemaGuard, org, sign, today,
};

pub const PBOC_CODE: &str = "011430000001";
pub const PBOC_BANK_NO: &str = "001551000017";
pub const UNIT_CODE: &str = "A43000101";
pub const UNIT_ZBA: &str = "1901-430001010001";
/// The zero-balance accounts the bank keeps: the unit's.
pub const UNIT_ACCOUNTS: &[UnitAccount<'static>] = &[UnitAccount {
    unit: UNIT_CODE,
    acct_no: UNIT_ZBA,
}];

pub fn pboc_org() -> Organisation {
    org(OrgRole::Pboc, PBOC_CODE, "中国人民银行长沙中心支行")
}

pub fn pboc_peer() -> Peer {
    Peer {
        role: OrgRole::Pboc,
        org_code: PBOC_CODE.into(),
    }
}

pub fn unit_org() -> Organisation {
    org(OrgRole::BudgetUnit, UNIT_CODE, "湖南省教育厅")
}

pub fn unit_peer() -> Peer {
    Peer {
        role: OrgRole::BudgetUnit,
        org_code: UNIT_CODE.into(),
    }
}

/// The unix seconds of the PKI's clock.
pub fn unix_now(pki: &Pki) -> u64 {
    u64::try_from(pki.now.unix_timestamp()).unwrap()
}

/// A signer and the seal it holds.
pub struct SealHolder {
    pub holder: Holder,
    pub seal: Seal,
}

impl SealHolder {
    pub fn new(pki: &Pki, o: &Organisation, kind: StampKind, name: &str) -> Self {
        let holder = pki.person(o, Post::Signer, "印章管理员");
        let seal = pki.seal(o, kind, name, &holder);
        Self { holder, seal }
    }

    pub fn signer<'a>(&'a self, pki: &Pki) -> Signer<'a> {
        Signer::Seal {
            seal: &self.seal,
            key: &self.holder.key,
            certificate: &self.holder.cert,
            time: pki.now,
        }
    }
}

/// An 8202 of the unit from its zero-balance account, stamped by its maker, checker and
/// seal.
pub fn signed_8202(pki: &Pki, registry: &Registry, n: u64) -> EnvelopeBody {
    let unit = unit_org();
    let maker = pki.person(&unit, Post::Maker, "张三");
    let checker = pki.person(&unit, Post::Checker, "李四");
    let seal = SealHolder::new(pki, &unit, StampKind::Ywzyz, "单位财务专用章");
    let ty = registry.get(VT_8202).unwrap();
    let mut body = EnvelopeBody {
        flag: VoucherFlag::Original,
        attach: "SUCCESS".into(),
        voucher: sample(ty, today(), VoucherFlag::Original, Style::Plain, n),
        signatures: Vec::new(),
    };
    body.voucher.header.set("PayTypeCode", "12");
    body.voucher.header.set("AgencyCode", UNIT_CODE);
    body.voucher.header.set("PayAcctNo", UNIT_ZBA);
    stamp_next(Suite::Sm, ty, &mut body, &sign(&maker)).unwrap();
    stamp_next(Suite::Sm, ty, &mut body, &sign(&checker)).unwrap();
    stamp_next(Suite::Sm, ty, &mut body, &seal.signer(pki)).unwrap();
    body
}

/// The receiving side of `peer`'s node on `store`, trusting the PKI's root, its clock
/// stopped at the PKI's time.
pub fn exchange_state(pki: &Pki, peer: Peer, store: &Store) -> ExchangeState {
    let now = pki.now;
    ExchangeState::new(
        peer,
        Suite::Sm,
        Registry::builtin(),
        pki.voucher_trust(),
        store.clone(),
        Arc::new(move || now),
        ReceiveLimits::default(),
    )
}

/// Parties' nodes on one in-memory network, each with a store of its own on one backend.
/// Keep it after the stores in a struct: fields drop in order, the stores' connections
/// before their schemas go.
pub struct Nodes {
    backend: Backend,
    pub network: InMemoryNetwork,
    guards: Vec<SchemaGuard>,
    dir: tempfile::TempDir,
}

impl Nodes {
    pub fn new(backend: Backend) -> Self {
        Self {
            backend,
            network: InMemoryNetwork::new(),
            guards: Vec::new(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// The party `peer`: its store (`{name}.db`, or a schema), receiving on the network,
    /// and its side of the network.
    pub async fn join(&mut self, pki: &Pki, name: &str, peer: Peer) -> (Store, InMemory) {
        let (store, guard) = self.backend.party_store(&self.dir, name).await;
        self.guards.extend(guard);
        self.network.register(
            &peer.org_code,
            app(exchange_state(pki, peer.clone(), &store)),
        );
        (store, InMemory::new(self.network.clone(), peer))
    }
}

/// Finance writes the stamped 5201 `body` to the bank from `indicator`'s plan for
/// [`MONTH`], as its clerk; its outbox is to deliver it.
pub async fn finance_issues(
    finance: &Store,
    registry: &Registry,
    indicator: &IndicatorKey,
    body: &EnvelopeBody,
    now: u64,
) {
    let route = Route {
        me: FINANCE_CODE,
        to: BANK_CODE,
        actor: "clerk",
    };
    issue(finance, registry, indicator, MONTH, body, route, now)
        .await
        .unwrap();
}

/// The outbox of `store` delivers exactly one voucher now.
pub async fn deliver_one(store: &Store, net: &InMemory, now: u64) {
    let sent = deliver_due(store, net, now, 10, BACKOFF).await.unwrap();
    assert_eq!(sent.delivered, 1, "{sent:?}");
}
