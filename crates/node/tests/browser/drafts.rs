//! Many direct payments (5201) waiting at finance for a signature, made straight in
//! finance's store as the API's make and check steps leave them (the step records that
//! segregation of duties reads, and the draft moved to checked), for a journey that starts
//! where a day's approvals end: the batch signing page.

use std::sync::Arc;

use futures_util::StreamExt;
use guoku_domain::Amount;
use guoku_node::demo::{Demo, Payee};
use guoku_node::exchange::InMemory;
use guoku_node::party::{Party, business_date};
use guoku_store::drafts::{DraftState, NewDraft};
use guoku_store::library::content_hash;
use guoku_voucher::{Encoding, Layout, VoucherKey, write_voucher};

/// Drafts made and checked at once: the store's writer commits the jobs waiting together
/// in one transaction, so many in flight make thousands quickly.
const IN_FLIGHT: usize = 128;

/// `n` direct payments of `fen` each for `unit`, made by `maker` and checked by
/// `checker` (finance's logins): their keys.
pub async fn checked_drafts(
    demo: &Demo,
    maker: &str,
    checker: &str,
    unit: &str,
    fen: i64,
    n: usize,
) -> Vec<VoucherKey> {
    let finance = &demo.finance;
    let maker_id = user_id(finance, maker).await;
    let checker_id = user_id(finance, checker).await;
    let (t, _) = finance.now();
    let date = business_date(t);
    let amount = Amount::from_fen(fen).expect("an amount");
    let bank = demo.province.direct_bank().code.to_owned();
    let vouchers: Vec<_> = (0..n)
        .map(|_| {
            demo.direct_voucher(unit, amount, &Payee::demo(1), date)
                .expect("a direct payment of a demo unit")
        })
        .collect();
    futures_util::stream::iter(vouchers)
        .map(|voucher| {
            let bank = bank.clone();
            async move {
                let key = voucher.key();
                let (_, now) = finance.now();
                let access = finance.store.access();
                access
                    .record_step::<(), _>(&key, "make", maker_id, now, |_| Ok(()))
                    .await
                    .expect("the make step")
                    .expect("the make step allowed");
                let new = NewDraft {
                    key: key.clone(),
                    receiver: bank,
                    plan_month: Some(u8::from(t.month())),
                    amount_fen: Some(fen),
                    maker: maker_id,
                    body: write_voucher(&voucher, Encoding::Utf8, Layout::Compact),
                    content_sha256: content_hash(&voucher),
                    agency_code: Some(unit.to_owned()),
                };
                let drafts = finance.store.drafts();
                drafts.make(new, maker, now).await.expect("a draft");
                access
                    .record_step::<(), _>(&key, "check", checker_id, now, |_| Ok(()))
                    .await
                    .expect("the check step")
                    .expect("the check step allowed");
                drafts
                    .transition(&key, DraftState::Checked, checker, None, now)
                    .await
                    .expect("checked");
                key
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await
}

async fn user_id(party: &Arc<Party<InMemory>>, login: &str) -> guoku_store::access::UserId {
    party
        .store
        .access()
        .user_by_login(login)
        .await
        .expect("the users")
        .unwrap_or_else(|| panic!("no user {login}"))
        .id
}
