//! Property tests over random operation sequences: random accounts with and without limit
//! flags on two ledgers; random batches of single-phase, pending, post, void and linked
//! transfers, resends (identical or changed), and time moving forward.
//!
//! After every batch: money is conserved per ledger, no limit-flagged account is past its
//! limit, every balance equals an independent model fed only the transfers reported `Ok`,
//! linked chains are all or nothing, and the full invariant scan passes. Replaying the same
//! batches from the same state gives equal results and an equal state.

use std::collections::HashMap;

use guoku_ledger::{
    AccountFlags, CreateAccountResult, CreateTransferResult as R, NewAccount, PendingStatus, State,
    Transfer, TransferFlags,
};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Single {
        debit: usize,
        credit: usize,
        amount: u128,
        other_ledger: bool,
    },
    Pending {
        debit: usize,
        credit: usize,
        amount: u128,
        timeout: u64,
    },
    Post {
        target: usize,
        amount: u128,
    },
    Void {
        target: usize,
    },
    Resend {
        target: usize,
        change_amount: bool,
    },
}

#[derive(Clone, Debug)]
struct Scenario {
    /// (ledger, limit kind 0 none / 1 debits / 2 credits) of accounts 1, 2, …
    accounts: Vec<(u32, u8)>,
    /// (time advance, events as (op, linked)).
    batches: Vec<(u64, Vec<(Op, bool)>)>,
}

fn amount() -> impl Strategy<Value = u128> {
    prop_oneof![
        8 => 1..=1_000u128,
        1 => Just(0u128),
        1 => (u128::MAX - 1_000)..=u128::MAX,
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let index = 0..64usize;
    prop_oneof![
        4 => (index.clone(), index.clone(), amount(), prop::bool::weighted(0.05)).prop_map(
            |(debit, credit, amount, other_ledger)| Op::Single { debit, credit, amount, other_ledger }
        ),
        3 => (index.clone(), index.clone(), amount(), 0..6u64).prop_map(
            |(debit, credit, amount, timeout)| Op::Pending { debit, credit, amount, timeout }
        ),
        2 => (index.clone(), prop_oneof![Just(0u128), 1..=1_000u128])
            .prop_map(|(target, amount)| Op::Post { target, amount }),
        1 => index.clone().prop_map(|target| Op::Void { target }),
        2 => (index, prop::bool::weighted(0.3))
            .prop_map(|(target, change_amount)| Op::Resend { target, change_amount }),
    ]
}

fn scenario() -> impl Strategy<Value = Scenario> {
    let accounts = prop::collection::vec((1..=2u32, 0..3u8), 2..8);
    let event = (op(), prop::bool::weighted(0.25));
    let batch = (0..4u64, prop::collection::vec(event, 0..14));
    (accounts, prop::collection::vec(batch, 1..10))
        .prop_map(|(accounts, batches)| Scenario { accounts, batches })
}

/// Turns ops into transfers, choosing ids and targets deterministically.
#[derive(Default)]
struct Driver {
    next_id: u128,
    sent: Vec<Transfer>,
    pending_ids: Vec<u128>,
}

impl Driver {
    /// The transfer for `op`. Targets are chosen with a look at `state` (as of the previous
    /// batch), so that most posts and voids name a reservation that is still open.
    fn transfer(
        &mut self,
        op: &Op,
        linked: bool,
        accounts: &[(u32, u8)],
        state: &State,
    ) -> Transfer {
        let n = accounts.len();
        let ledger_of = |id: u128| accounts[(id - 1) as usize].0;
        // The debit account, and mostly a credit account on the same ledger.
        let pair = |debit: usize, credit: usize, any_ledger: bool| {
            let debit = (debit % n) as u128 + 1;
            let candidates: Vec<u128> = (1..=n as u128)
                .filter(|&id| any_ledger || (id != debit && ledger_of(id) == ledger_of(debit)))
                .collect();
            if candidates.is_empty() {
                // Alone on its ledger: any account (refused as another ledger or the same).
                (debit, (credit % n) as u128 + 1)
            } else {
                (debit, candidates[credit % candidates.len()])
            }
        };
        self.next_id += 1;
        let id = self.next_id;
        let mut t = match *op {
            Op::Single {
                debit,
                credit,
                amount,
                other_ledger,
            } => {
                let (debit, credit) = pair(debit, credit, credit.is_multiple_of(8));
                Transfer {
                    id,
                    debit_account_id: debit,
                    credit_account_id: credit,
                    amount,
                    ledger: ledger_of(debit) + u32::from(other_ledger),
                    code: 1,
                    user_data: id,
                    ..Transfer::default()
                }
            }
            Op::Pending {
                debit,
                credit,
                amount,
                timeout,
            } => {
                let (debit, credit) = pair(debit, credit, credit.is_multiple_of(8));
                self.pending_ids.push(id);
                Transfer {
                    id,
                    debit_account_id: debit,
                    credit_account_id: credit,
                    amount,
                    ledger: ledger_of(debit),
                    code: 1,
                    timeout,
                    flags: TransferFlags::PENDING,
                    ..Transfer::default()
                }
            }
            Op::Post { target, amount } => Transfer {
                id,
                pending_id: self.pick_pending(target, state),
                amount,
                flags: TransferFlags::POST_PENDING_TRANSFER,
                ..Transfer::default()
            },
            Op::Void { target } => Transfer {
                id,
                pending_id: self.pick_pending(target, state),
                flags: TransferFlags::VOID_PENDING_TRANSFER,
                ..Transfer::default()
            },
            Op::Resend {
                target,
                change_amount,
            } => {
                if self.sent.is_empty() {
                    self.next_id -= 1;
                    let single = Op::Single {
                        debit: 0,
                        credit: 1,
                        amount: 1,
                        other_ledger: false,
                    };
                    return self.transfer(&single, linked, accounts, state);
                }
                let mut t = self.sent[target % self.sent.len()];
                if change_amount {
                    t.amount = t.amount.wrapping_add(1);
                }
                self.next_id -= 1;
                t.flags = t.flags.difference(TransferFlags::LINKED);
                t
            }
        };
        if linked {
            t.flags |= TransferFlags::LINKED;
        }
        self.sent.push(t);
        t
    }

    fn pick_pending(&self, target: usize, state: &State) -> u128 {
        let open: Vec<u128> = self
            .pending_ids
            .iter()
            .copied()
            .filter(|&id| {
                state
                    .transfer(id)
                    .is_some_and(|r| r.status == PendingStatus::Pending)
            })
            .collect();
        if !open.is_empty() && !target.is_multiple_of(4) {
            open[target % open.len()]
        } else if !self.pending_ids.is_empty() {
            // Any reservation asked for: refused, closed, still open, or made in this batch.
            self.pending_ids[target % self.pending_ids.len()]
        } else {
            // None asked for yet: name one that does not exist.
            u128::from(u64::MAX)
        }
    }
}

/// An independent model of the balances, fed only transfers the engine reported `Ok`.
#[derive(Default)]
struct Model {
    /// [debits_pending, debits_posted, credits_pending, credits_posted]
    balances: HashMap<u128, [u128; 4]>,
    /// Open reservations: id → (debit, credit, amount, expires_at).
    open: HashMap<u128, (u128, u128, u128, Option<u64>)>,
}

impl Model {
    fn add(&mut self, account: u128, index: usize, amount: u128) {
        let b = self.balances.entry(account).or_default();
        b[index] = b[index]
            .checked_add(amount)
            .expect("engine accepted an overflowing transfer");
    }

    fn sub(&mut self, account: u128, index: usize, amount: u128) {
        let b = self.balances.entry(account).or_default();
        b[index] = b[index]
            .checked_sub(amount)
            .expect("engine released more than was reserved");
    }

    fn release(&mut self, id: u128) -> Option<(u128, u128, u128)> {
        let (debit, credit, amount, _) = self.open.remove(&id)?;
        self.sub(debit, 0, amount);
        self.sub(credit, 2, amount);
        Some((debit, credit, amount))
    }

    fn begin_batch(&mut self, now: u64) {
        let mut due: Vec<u128> = self
            .open
            .iter()
            .filter(|(_, (_, _, _, at))| at.is_some_and(|at| at <= now))
            .map(|(&id, _)| id)
            .collect();
        due.sort_unstable();
        for id in due {
            self.release(id);
        }
    }

    fn apply_ok(&mut self, now: u64, t: &Transfer) -> Result<(), TestCaseError> {
        if t.flags.contains(TransferFlags::PENDING) {
            self.add(t.debit_account_id, 0, t.amount);
            self.add(t.credit_account_id, 2, t.amount);
            let expires_at = (t.timeout != 0).then(|| now + t.timeout);
            self.open.insert(
                t.id,
                (
                    t.debit_account_id,
                    t.credit_account_id,
                    t.amount,
                    expires_at,
                ),
            );
        } else if t.flags.contains(TransferFlags::POST_PENDING_TRANSFER) {
            let Some((debit, credit, reserved)) = self.release(t.pending_id) else {
                return Err(TestCaseError::fail(format!(
                    "posted a closed reservation: {t:?}"
                )));
            };
            let amount = if t.amount == 0 { reserved } else { t.amount };
            prop_assert!(amount <= reserved);
            self.add(debit, 1, amount);
            self.add(credit, 3, amount);
        } else if t.flags.contains(TransferFlags::VOID_PENDING_TRANSFER) {
            prop_assert!(
                self.release(t.pending_id).is_some(),
                "voided a closed reservation"
            );
        } else {
            self.add(t.debit_account_id, 1, t.amount);
            self.add(t.credit_account_id, 3, t.amount);
        }
        Ok(())
    }
}

/// Adds into a 256-bit (high, low) pair, so test sums cannot overflow either.
fn wide_add(sum: &mut (u128, u128), amount: u128) {
    let (low, carry) = sum.1.overflowing_add(amount);
    sum.1 = low;
    sum.0 += u128::from(carry);
}

fn check_state(state: &State, model: &Model) -> Result<(), TestCaseError> {
    // Money is conserved per ledger, computed here from the accounts alone.
    let mut sums: HashMap<u32, [(u128, u128); 4]> = HashMap::new();
    for a in state.accounts() {
        let s = sums.entry(a.ledger).or_default();
        wide_add(&mut s[0], a.debits_pending);
        wide_add(&mut s[1], a.debits_posted);
        wide_add(&mut s[2], a.credits_pending);
        wide_add(&mut s[3], a.credits_posted);

        // No limit-flagged account past its limit.
        if a.flags
            .contains(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS)
        {
            let debits = a.debits_pending.checked_add(a.debits_posted);
            prop_assert!(debits.is_some_and(|d| d <= a.credits_posted), "{a:?}");
        }
        if a.flags
            .contains(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS)
        {
            let credits = a.credits_pending.checked_add(a.credits_posted);
            prop_assert!(credits.is_some_and(|c| c <= a.debits_posted), "{a:?}");
        }

        // Balances are exactly what the transfers reported `Ok` add up to.
        let expected = model.balances.get(&a.id).copied().unwrap_or_default();
        prop_assert_eq!(
            [
                a.debits_pending,
                a.debits_posted,
                a.credits_pending,
                a.credits_posted
            ],
            expected,
            "account {}",
            a.id
        );
    }
    for (ledger, s) in &sums {
        prop_assert_eq!(s[0], s[2], "ledger {} pending debits != credits", ledger);
        prop_assert_eq!(s[1], s[3], "ledger {} posted debits != credits", ledger);
    }
    prop_assert_eq!(state.check_invariants(), Ok(()));
    Ok(())
}

/// Linked chains are all or nothing, and a failed chain names exactly one reason.
fn check_chains(batch: &[Transfer], results: &[R]) -> Result<(), TestCaseError> {
    let mut start = 0;
    while start < batch.len() {
        let mut end = start;
        while end + 1 < batch.len() && batch[end].flags.contains(TransferFlags::LINKED) {
            end += 1;
        }
        let chain = &results[start..=end];
        if chain.iter().any(|r| !r.is_success()) {
            prop_assert!(
                chain.iter().all(|r| !r.is_success()),
                "half a chain applied: {chain:?}"
            );
            let reasons = chain.iter().filter(|&&r| r != R::LinkedEventFailed).count();
            prop_assert_eq!(reasons, 1, "chain {:?}", chain);
        }
        start = end + 1;
    }
    Ok(())
}

fn setup(scenario: &Scenario) -> State {
    let mut state = State::new();
    let accounts: Vec<NewAccount> = scenario
        .accounts
        .iter()
        .enumerate()
        .map(|(i, &(ledger, kind))| NewAccount {
            id: i as u128 + 1,
            user_data: 0,
            ledger,
            code: 1,
            flags: match kind {
                1 => AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS,
                2 => AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS,
                _ => AccountFlags::NONE,
            },
        })
        .collect();
    let results = state.create_accounts(&accounts).expect("small batch");
    assert!(results.iter().all(|&r| r == CreateAccountResult::Ok));
    state
}

/// Runs a scenario from `state`, calling `each` after every batch with the batch, its
/// results and the state; returns the batches as (now, transfers) for replaying.
fn run(
    scenario: &Scenario,
    state: &mut State,
    mut each: impl FnMut(u64, &[Transfer], &[R], &State) -> Result<(), TestCaseError>,
) -> Result<Vec<(u64, Vec<Transfer>)>, TestCaseError> {
    let mut driver = Driver::default();
    let mut now = 0;
    let mut batches = Vec::new();
    for (advance, ops) in &scenario.batches {
        now += advance;
        let batch: Vec<Transfer> = ops
            .iter()
            .map(|(op, linked)| driver.transfer(op, *linked, &scenario.accounts, state))
            .collect();
        let results = state.create_transfers(now, &batch).expect("valid batch");
        prop_assert_eq!(results.len(), batch.len());
        each(now, &batch, &results, state)?;
        batches.push((now, batch));
    }
    Ok(batches)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_operations_keep_every_invariant(scenario in scenario()) {
        let mut state = setup(&scenario);
        let mut model = Model::default();
        run(&scenario, &mut state, |now, batch, results, state| {
            model.begin_batch(now);
            check_chains(batch, results)?;
            for (t, r) in batch.iter().zip(results) {
                if *r == R::Ok {
                    let stored = state.transfer(t.id).map(|record| record.transfer);
                    prop_assert!(stored.is_some(), "applied but not stored: {t:?}");
                    model.apply_ok(now, &stored.unwrap_or_default())?;
                }
            }
            check_state(state, &model)
        })?;
    }

    #[test]
    fn replaying_the_same_batches_gives_an_equal_state(scenario in scenario()) {
        let initial = setup(&scenario);
        let mut recorded = initial.clone();
        let mut recorded_results = Vec::new();
        let batches = run(&scenario, &mut recorded, |_, _, results, _| {
            recorded_results.push(results.to_vec());
            Ok(())
        })?;
        let mut first = initial.clone();
        let mut second = initial;
        let mut snapshot = None;
        for (i, (now, batch)) in batches.iter().enumerate() {
            let a = first.create_transfers(*now, batch).expect("valid batch");
            let b = second.create_transfers(*now, batch).expect("valid batch");
            prop_assert_eq!(&a, &b);
            prop_assert_eq!(&a, &recorded_results[i]);
            prop_assert_eq!(&first, &second);
            if i == batches.len() / 2 {
                snapshot = Some((i, first.clone()));
            }
        }
        // A snapshot taken half-way and replayed from there ends equal too.
        if let Some((i, mut resumed)) = snapshot {
            for (now, batch) in &batches[i + 1..] {
                resumed.create_transfers(*now, batch).expect("valid batch");
            }
            prop_assert_eq!(&resumed, &first);
        }
        prop_assert_eq!(&first, &recorded);
    }
}
