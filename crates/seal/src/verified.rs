//! Signatures this process has already verified, so the same certificate or seal is not
//! checked again on every voucher.
//!
//! That an exact byte string carries a valid signature by an exact key is a fact that never
//! changes, so remembering a positive answer is safe: the cache is keyed by the SHA-256 of
//! everything the answer depends on (the signer's certificate or key, the signed bytes, the
//! signature). Only successes are remembered; what can change with time — validity periods,
//! revocation, key usage — is checked on every use by the callers. A certificate path or a
//! seal costs one or more SM2 verifications (~0.3 ms each) that a busy node would otherwise
//! repeat for every voucher its partners send. Bounded: emptied when full.

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};

use sha2::{Digest, Sha256};

/// Most remembered signatures.
const MAX_ENTRIES: usize = 65_536;

static VERIFIED: Mutex<Option<HashSet<[u8; 32]>>> = Mutex::new(None);

/// The cache key of `parts` (each length-prefixed, so no two lists collide).
fn id(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// Runs `verify` unless the signature named by `parts` was verified before; remembers a
/// success.
pub(crate) fn once<E>(parts: &[&[u8]], verify: impl FnOnce() -> Result<(), E>) -> Result<(), E> {
    let id = id(parts);
    let known = VERIFIED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .is_some_and(|set| set.contains(&id));
    if known {
        return Ok(());
    }
    verify()?;
    let mut cache = VERIFIED.lock().unwrap_or_else(PoisonError::into_inner);
    let set = cache.get_or_insert_with(HashSet::new);
    if set.len() >= MAX_ENTRIES {
        set.clear();
    }
    set.insert(id);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_successes_are_remembered_and_keys_do_not_collide() {
        let mut calls = 0;
        let fail: Result<(), ()> = once(&[b"cache-test-a", b"1"], || {
            calls += 1;
            Err(())
        });
        assert!(fail.is_err());
        let ok: Result<(), ()> = once(&[b"cache-test-a", b"1"], || {
            calls += 1;
            Ok(())
        });
        assert!(ok.is_ok());
        let again: Result<(), ()> = once(&[b"cache-test-a", b"1"], || {
            calls += 1;
            Err(())
        });
        assert!(again.is_ok(), "a remembered success is not re-run");
        assert_eq!(calls, 2);
        // "cache-test-a1" split differently is another key.
        let other: Result<(), ()> = once(&[b"cache-test-a1", b""], || Err(()));
        assert!(other.is_err());
    }
}
