//! SM2 verification with precomputed tables for the keys a node sees again and again, and
//! the signer-ID hash `Z_A` ([`sm2_z_a`]) that signing and verifying share.
//!
//! # Why this is written here
//!
//! [`sm2::dsa::VerifyingKey`] computes `s·G + t·P` (GB/T 32918.2 §7.1, step B6) with the
//! crate's constant-time `lincomb`: 256 point doublings and 128 additions, with a fresh window
//! table for each point, on every signature. Verification only handles public values (the
//! key, the message, the signature), so constant time buys nothing there, and a node verifies
//! the stamps of the same few partner keys for every voucher they send. No crate offers a
//! fixed-base table for an arbitrary point, so this module builds one per key, once, and
//! verifies with table lookups and additions only: about 120 mixed additions and no
//! doublings per signature.
//!
//! Only the algorithm (signed radix-16 windows, one table of affine multiples per window) is
//! written here. Every field and point operation is the crate's own (`ProjectivePoint`
//! additions and doublings, `AffinePoint` negation, `BatchNormalize`), and the result is
//! checked exactly as the crate checks it (the same steps B1–B7). `tests/sm2_fast.rs` and the
//! tests below compare every answer with the crate's, for valid and for altered signatures.
//!
//! A key's table is built the second time the key is seen (the first verification goes
//! through the crate), so a key checked once, such as a certificate's issuer at start-up,
//! costs nothing extra. A table is 520 affine points (about 37 KB); at most
//! [`MAX_KEYS`] keys are remembered and the cache is emptied when full.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use signature::Verifier;
use sm2::elliptic_curve::BatchNormalize;
use sm2::elliptic_curve::ff::PrimeField;
use sm2::elliptic_curve::group::Group;
use sm2::elliptic_curve::ops::Reduce;
use sm2::elliptic_curve::point::AffineCoordinates;
use sm2::{AffinePoint, ProjectivePoint, Scalar};
use sm3::Digest;

use crate::error::{Error, Result};

/// Signed radix-16 digits of a scalar: 64 nibbles plus the carry of re-centring them.
const DIGITS: usize = 65;
/// Affine multiples kept per window: `1·B … 8·B` (digits lie in `[-8, 8]`).
const PER_WINDOW: usize = 8;
/// Most keys whose tables are remembered.
const MAX_KEYS: usize = 256;

/// The multiples `j·16ⁱ·B` of one base point `B`, for `j = 1..=8` and every digit position
/// `i`, in affine form (so that each addition is the cheaper mixed one).
struct FixedBase {
    points: Vec<AffinePoint>,
}

impl FixedBase {
    fn new(base: ProjectivePoint) -> Self {
        let mut projective = Vec::with_capacity(DIGITS * PER_WINDOW);
        let mut window_base = base;
        for _ in 0..DIGITS {
            let mut multiple = window_base;
            projective.push(multiple);
            for _ in 1..PER_WINDOW {
                multiple += window_base;
                projective.push(multiple);
            }
            for _ in 0..4 {
                window_base = window_base.double();
            }
        }
        let points =
            <ProjectivePoint as BatchNormalize<[_]>>::batch_normalize(projective.as_slice());
        Self { points }
    }

    /// `acc += k·B`, in variable time (only for public scalars).
    fn add_mul_vartime(&self, acc: &mut ProjectivePoint, k: &Scalar) {
        for (i, digit) in signed_digits(k).into_iter().enumerate() {
            let magnitude = usize::from(digit.unsigned_abs());
            if magnitude == 0 {
                continue;
            }
            let point = &self.points[i * PER_WINDOW + magnitude - 1];
            if digit > 0 {
                *acc += point;
            } else {
                *acc -= point;
            }
        }
    }
}

/// `k = Σ dᵢ·16ⁱ` with every `dᵢ` in `[-8, 8]` (`d₆₄` in `{0, 1}`).
fn signed_digits(k: &Scalar) -> [i8; DIGITS] {
    let bytes = k.to_repr(); // big-endian
    let mut digits = [0i8; DIGITS];
    for (i, byte) in bytes.iter().rev().enumerate() {
        digits[2 * i] = (byte & 0x0f) as i8;
        digits[2 * i + 1] = (byte >> 4) as i8;
    }
    for i in 0..DIGITS - 1 {
        let carry = (digits[i] + 8) >> 4;
        digits[i] -= carry << 4;
        digits[i + 1] += carry;
    }
    digits
}

/// The SM2 signer-ID hash of GM/T 0003.2 (GB/T 32918.2 §5.5), from the curve constants the
/// `sm2` crate publishes: `Z_A = SM3(ENTL_A ‖ ID_A ‖ a ‖ b ‖ x_G ‖ y_G ‖ x_A ‖ y_A)`, with
/// `ENTL_A` the ID's length in bits as two big-endian bytes. `public_sec1` is the
/// uncompressed point `04 ‖ x_A ‖ y_A`.
pub(crate) fn sm2_z_a(user_id: &str, public_sec1: &[u8]) -> Result<[u8; 32]> {
    use primeorder::PrimeCurveParams;
    use sm2::Sm2;
    let entl = user_id
        .len()
        .checked_mul(8)
        .and_then(|bits| u16::try_from(bits).ok())
        .ok_or_else(|| Error::InvalidArgument("SM2 user ID too long".into()))?;
    let [0x04, xy @ ..] = public_sec1 else {
        return Err(Error::crypto("SM2 public key is not an uncompressed point"));
    };
    if xy.len() != 64 {
        return Err(Error::crypto("SM2 public key is not an uncompressed point"));
    }
    Ok(sm3::Sm3::new()
        .chain_update(entl.to_be_bytes())
        .chain_update(user_id.as_bytes())
        .chain_update(Sm2::EQUATION_A.to_repr())
        .chain_update(Sm2::EQUATION_B.to_repr())
        .chain_update(Sm2::GENERATOR.0.to_repr())
        .chain_update(Sm2::GENERATOR.1.to_repr())
        .chain_update(xy)
        .finalize()
        .into())
}

/// The generator's table, shared by every verification.
static GENERATOR: LazyLock<FixedBase> =
    LazyLock::new(|| FixedBase::new(ProjectivePoint::generator()));

/// What is kept for one key under one user ID.
struct Prepared {
    /// `Z_A` of the key under its user ID.
    z_a: [u8; 32],
    table: FixedBase,
}

/// Keys seen: `None` once, the prepared table from the second time on. Keyed by the user ID
/// and the uncompressed point.
static KEYS: LazyLock<Mutex<KeyCache>> = LazyLock::new(Mutex::default);

type KeyCache = HashMap<Vec<u8>, Option<Arc<Prepared>>>;

/// The cache key of a key under its user ID (length-prefixed, so no two collide).
fn cache_key(key: &sm2::dsa::VerifyingKey) -> Vec<u8> {
    let id = key.distid().as_bytes();
    let point = key.to_sec1_bytes();
    let mut out = Vec::with_capacity(8 + id.len() + point.len());
    out.extend_from_slice(&(id.len() as u64).to_be_bytes());
    out.extend_from_slice(id);
    out.extend_from_slice(&point);
    out
}

/// The table for `key`, if it was seen before; builds it the second time.
fn prepared(key: &sm2::dsa::VerifyingKey) -> Option<Arc<Prepared>> {
    let id = cache_key(key);
    {
        let mut keys = KEYS.lock().unwrap_or_else(PoisonError::into_inner);
        match keys.get(&id) {
            Some(Some(table)) => return Some(table.clone()),
            Some(None) => {}
            None => {
                if keys.len() >= MAX_KEYS {
                    keys.clear();
                }
                keys.insert(id, None);
                return None;
            }
        }
    }
    // Built outside the lock; two threads may both build it, and either result is right.
    let z_a = sm2_z_a(key.distid(), &key.to_sec1_bytes()).ok()?;
    let table = Arc::new(Prepared {
        z_a,
        table: FixedBase::new(ProjectivePoint::from(*key.as_affine())),
    });
    let mut keys = KEYS.lock().unwrap_or_else(PoisonError::into_inner);
    keys.insert(id, Some(table.clone()));
    Some(table)
}

/// Whether `signature` is `key`'s SM2 signature over `message` (GB/T 32918.2 §7.1), the
/// same answer as the crate's verifier.
pub(crate) fn verify(
    key: &sm2::dsa::VerifyingKey,
    message: &[u8],
    signature: &sm2::dsa::Signature,
) -> bool {
    match prepared(key) {
        Some(prepared) => verify_with(&prepared, message, signature),
        None => key.verify(message, signature).is_ok(),
    }
}

/// Steps B1–B7 with the key's table.
fn verify_with(prepared: &Prepared, message: &[u8], signature: &sm2::dsa::Signature) -> bool {
    // B1, B2: r and s in [1, n − 1] (checked when the signature was parsed).
    let (r, s) = (*signature.r(), *signature.s());
    // B3, B4: e = SM3(Z_A ‖ M).
    let prehash = sm3::Sm3::new_with_prefix(prepared.z_a)
        .chain_update(message)
        .finalize();
    let e = <Scalar as Reduce<sm2::FieldBytes>>::reduce(&prehash);
    // B5: t = r + s mod n, not zero.
    let t = r + s;
    if bool::from(t.is_zero()) {
        return false;
    }
    // B6: (x₁, y₁) = s·G + t·P, not the point at infinity.
    let mut point = ProjectivePoint::IDENTITY;
    GENERATOR.add_mul_vartime(&mut point, &s);
    prepared.table.add_mul_vartime(&mut point, &t);
    if bool::from(point.is_identity()) {
        return false;
    }
    // B7: R = e + x₁ mod n equals r.
    let x = point.to_affine().x();
    r == e + <Scalar as Reduce<sm2::FieldBytes>>::reduce(&x)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[allow(unused_imports)]
    use rand::RngExt;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn random_scalar(rng: &mut StdRng) -> Scalar {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        <Scalar as Reduce<sm2::FieldBytes>>::reduce(&bytes.into())
    }

    /// Scalars at the edges: 0, 1, 15, 16, 8, n − 1, n − 8, and 2²⁵⁵ reduced.
    fn edge_scalars() -> Vec<Scalar> {
        let mut top = [0u8; 32];
        top[0] = 0x80;
        vec![
            Scalar::ZERO,
            Scalar::ONE,
            Scalar::from(15u64),
            Scalar::from(16u64),
            Scalar::from(8u64),
            -Scalar::ONE,
            -Scalar::from(8u64),
            <Scalar as Reduce<sm2::FieldBytes>>::reduce(&top.into()),
        ]
    }

    #[test]
    fn signed_digits_add_back_up_to_the_scalar_and_stay_in_range() {
        let mut rng = StdRng::seed_from_u64(0x5a_0101);
        let mut scalars = edge_scalars();
        scalars.extend((0..500).map(|_| random_scalar(&mut rng)));
        for k in scalars {
            let digits = signed_digits(&k);
            let mut sum = Scalar::ZERO;
            for digit in digits.iter().rev() {
                sum *= Scalar::from(16u64);
                let magnitude = Scalar::from(u64::from(digit.unsigned_abs()));
                sum += if *digit < 0 { -magnitude } else { magnitude };
            }
            assert_eq!(sum, k);
            assert!(digits[..DIGITS - 1].iter().all(|d| (-8..=8).contains(d)));
            assert!((0..=1).contains(&digits[DIGITS - 1]));
        }
    }

    #[test]
    fn a_table_multiplies_as_the_crate_does() {
        let mut rng = StdRng::seed_from_u64(0x5a_0102);
        let base = ProjectivePoint::generator() * random_scalar(&mut rng);
        let table = FixedBase::new(base);
        let mut scalars = edge_scalars();
        scalars.extend((0..200).map(|_| random_scalar(&mut rng)));
        for k in scalars {
            let mut ours = ProjectivePoint::IDENTITY;
            table.add_mul_vartime(&mut ours, &k);
            assert_eq!(ours, base * k);
            let mut from_g = ProjectivePoint::IDENTITY;
            GENERATOR.add_mul_vartime(&mut from_g, &k);
            assert_eq!(from_g, ProjectivePoint::generator() * k);
        }
    }
}
