//! Batch signing: many vouchers, one unlocked key, every core.
//!
//! Two modes:
//!
//! * **One signature per voucher** ([`sign_messages`], [`sign_vouchers`]): what the real
//!   treasury system does. The vouchers are cut into chunks that worker threads
//!   (`std::thread::scope`) take in turn, so a slow or busy core does not hold the others
//!   back. [`try_map_parallel`] is the engine, public so that other signing steps (seals)
//!   can run the same way.
//! * **Batch-signature mode** ([`batch_sign`]): one signature over the head of an RFC 6962
//!   Merkle tree of the vouchers, and for each voucher a [`BatchSignature`] (the signer's
//!   certificate, the tree size, the voucher's leaf index, its inclusion proof and the root
//!   signature) that verifies on its own. **This goes beyond the standard**: the real system
//!   signs each voucher, and a counterparty that expects a GM/T signature per voucher will not
//!   accept a batch signature. It is here for bulk internal flows (archiving, re-signing a
//!   day's library), where one SM2 signature for ten thousand vouchers matters.
//!
//! # Batch-signature mode: exactly what is hashed and signed
//!
//! With `H` the suite's hash (SM3 for `sm`, SHA-256 for `intl`):
//!
//! ```text
//! leaf i      = H(0x00 ‖ canonical bytes of voucher i)              (RFC 6962 leaf hash)
//! root        = MTH(leaf 0 … leaf n−1)                              (RFC 6962 §2.1)
//! signed bytes = "guoku-batch-tree-head/1" ‖ 0x00 ‖ suite name ‖ 0x00
//!                ‖ u64be(n) ‖ root (32 bytes) ‖ H(signer certificate DER) (32 bytes)
//! ```
//!
//! The domain string keeps a tree-head signature from being taken for a voucher signature
//! (those start `"guoku-voucher-signature/1"`), and the certificate hash binds the signature
//! to the certificate carried with it. See [`BatchSignature::to_bytes`] for the encoding.

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use guoku_audit::MerkleTree;

use crate::error::{Error, Result};
use crate::keys::{Signature, SigningKey, VerifyingKey};
use crate::pki::{Certificate, ValidatedPath, ValidationOptions, validate_path};
use crate::suite::{Digest, HashAlgorithm, Suite, hash};
#[cfg(doc)]
use crate::voucher::sign_voucher;
use crate::voucher::{SignaturePosition, VoucherSignature, voucher_to_be_signed};

/// A progress callback: `(done, total)`. Calls come from worker threads, one per finished
/// chunk, with `done` strictly increasing; the last call has `done == total`.
pub type Progress<'a> = &'a (dyn Fn(usize, usize) + Sync);

/// Most items one batch call accepts (2^20).
pub const MAX_BATCH: usize = 1 << 20;

/// Most items a worker takes at a time. Small enough for a smooth progress bar and for load
/// balancing on a shared machine, large enough that taking a chunk costs nothing.
const MAX_CHUNK: usize = 64;

/// How many threads a batch uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parallelism {
    /// Worker threads (1 runs everything on the calling thread).
    pub threads: NonZeroUsize,
}

impl Parallelism {
    /// One thread: the calling one.
    pub const SINGLE: Parallelism = Parallelism {
        threads: NonZeroUsize::MIN,
    };

    /// As many threads as the machine has cores (as the standard library reports them).
    pub fn all_cores() -> Self {
        Self {
            threads: std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN),
        }
    }

    /// Exactly `threads` threads (at least 1).
    pub fn threads(threads: usize) -> Self {
        Self {
            threads: NonZeroUsize::new(threads).unwrap_or(NonZeroUsize::MIN),
        }
    }
}

/// What a worker did with one chunk: its number, and the results or the first failure (with
/// the failing item's number).
type ChunkOutcome<R> = (usize, Result<Vec<R>, (usize, Error)>);

fn check_batch_len(len: usize) -> Result<()> {
    if len > MAX_BATCH {
        return Err(Error::InvalidArgument(format!(
            "a batch has at most {MAX_BATCH} items, not {len}"
        )));
    }
    Ok(())
}

/// Apply `f` to every item on `parallelism.threads` threads and return the results in item
/// order.
///
/// Workers take chunks in item order. After a failure they take no new chunk, but every
/// chunk already taken is finished up to its own first failure, so the error returned is
/// always the one of the lowest-numbered failing item, whatever the thread count.
pub fn try_map_parallel<T, R, F>(
    items: &[T],
    parallelism: Parallelism,
    progress: Option<Progress<'_>>,
    f: F,
) -> Result<Vec<R>>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> Result<R> + Sync,
{
    try_map_chunks_parallel(items, parallelism, progress, |slice| {
        let mut results = Vec::with_capacity(slice.len());
        for (j, item) in slice.iter().enumerate() {
            results.push(f(item).map_err(|e| (j, e))?);
        }
        Ok(results)
    })
}

/// What a chunk function returns: one result per item of the chunk, or the first failure with
/// the failing item's number within the chunk.
type ChunkResult<R> = Result<Vec<R>, (usize, Error)>;

/// [`try_map_parallel`] with `f` applied to whole chunks (so that it can share work between
/// the items of a chunk, as SM2 batch signing does). `f` must return exactly one result per
/// item of its chunk, in order; a failure carries the failing item's number within the chunk.
fn try_map_chunks_parallel<T, R, F>(
    items: &[T],
    parallelism: Parallelism,
    progress: Option<Progress<'_>>,
    f: F,
) -> Result<Vec<R>>
where
    T: Sync,
    R: Send,
    F: Fn(&[T]) -> ChunkResult<R> + Sync,
{
    check_batch_len(items.len())?;
    let total = items.len();
    let threads = parallelism.threads.get().min(total.max(1));
    // At least ~8 chunks per thread, at most MAX_CHUNK items each.
    let chunk = (total / (threads * 8)).clamp(1, MAX_CHUNK);
    let chunks: Vec<&[T]> = items.chunks(chunk).collect();
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let reported = Mutex::new(0usize);
    let failed = AtomicBool::new(false);

    let work = || {
        let mut out: Vec<ChunkOutcome<R>> = Vec::new();
        while !failed.load(Ordering::Relaxed) {
            let c = next.fetch_add(1, Ordering::Relaxed);
            let Some(slice) = chunks.get(c) else { break };
            let results = match f(slice) {
                Ok(results) => results,
                Err((j, e)) => {
                    failed.store(true, Ordering::Relaxed);
                    out.push((c, Err((c * chunk + j, e))));
                    break;
                }
            };
            assert_eq!(results.len(), slice.len(), "a chunk lost or added items");
            let now_done = done.fetch_add(slice.len(), Ordering::Relaxed) + slice.len();
            out.push((c, Ok(results)));
            if let Some(progress) = progress {
                // A poisoned lock only means another progress call panicked; keep reporting.
                let mut last = reported.lock().unwrap_or_else(|p| p.into_inner());
                if now_done > *last {
                    *last = now_done;
                    progress(now_done, total);
                }
            }
        }
        out
    };

    let per_thread: Vec<Vec<ChunkOutcome<R>>> = if threads == 1 {
        vec![work()]
    } else {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads).map(|_| s.spawn(work)).collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        })
    };

    let mut parts: Vec<(usize, Vec<R>)> = Vec::with_capacity(chunks.len());
    let mut first_error: Option<(usize, Error)> = None;
    for (c, r) in per_thread.into_iter().flatten() {
        match r {
            Ok(v) => parts.push((c, v)),
            Err((i, e)) => {
                if first_error.as_ref().is_none_or(|(j, _)| i < *j) {
                    first_error = Some((i, e));
                }
            }
        }
    }
    if let Some((_, e)) = first_error {
        return Err(e);
    }
    parts.sort_unstable_by_key(|(c, _)| *c);
    let results: Vec<R> = parts.into_iter().flat_map(|(_, v)| v).collect();
    // Every chunk was taken exactly once, so every item has its result.
    assert_eq!(results.len(), total, "batch lost or duplicated items");
    Ok(results)
}

/// Sign each message (a voucher's canonical bytes) with `key`, on `parallelism` threads.
/// The signatures are the plain ones of [`SigningKey::sign`], in message order; each chunk is
/// signed with [`SigningKey::sign_many`] (for SM2: one field inversion per 32 signatures).
pub fn sign_messages<M: AsRef<[u8]> + Sync>(
    key: &SigningKey,
    messages: &[M],
    parallelism: Parallelism,
    progress: Option<Progress<'_>>,
) -> Result<Vec<Signature>> {
    try_map_chunks_parallel(messages, parallelism, progress, |chunk| {
        key.sign_many_indexed(chunk)
    })
}

/// Who signs a batch of vouchers, and where.
#[derive(Clone, Copy, Debug)]
pub struct PositionSigner<'a> {
    /// The deployment's suite.
    pub suite: Suite,
    /// The unlocked key.
    pub key: &'a SigningKey,
    /// The key's certificate.
    pub certificate: &'a Certificate,
    /// The vouchers' signature positions (the same for every voucher of the batch).
    pub positions: &'a [SignaturePosition],
    /// The position to sign (the next unfilled one on every voucher).
    pub position: &'a str,
}

/// One voucher of a batch: its canonical bytes and the signatures already on it.
#[derive(Clone, Copy, Debug)]
pub struct VoucherToSign<'a> {
    /// The voucher's canonical bytes.
    pub canonical: &'a [u8],
    /// Signatures already on the voucher, in position order.
    pub existing: &'a [VoucherSignature],
}

/// Sign every voucher at `signer.position`, exactly as [`sign_voucher`] does one, on
/// `parallelism` threads. Fails (with the lowest-numbered voucher's error) if any voucher
/// cannot be signed; nothing is returned for the others then.
///
/// Per chunk, [`voucher_to_be_signed`] prepares each voucher's bytes (with all of
/// [`sign_voucher`]'s checks), and [`SigningKey::sign_many`] signs them together; the
/// signatures are the same as [`sign_voucher`]'s.
pub fn sign_vouchers(
    signer: &PositionSigner<'_>,
    vouchers: &[VoucherToSign<'_>],
    parallelism: Parallelism,
    progress: Option<Progress<'_>>,
) -> Result<Vec<VoucherSignature>> {
    try_map_chunks_parallel(vouchers, parallelism, progress, |chunk| {
        let messages = chunk
            .iter()
            .enumerate()
            .map(|(j, v)| {
                voucher_to_be_signed(
                    signer.suite,
                    v.canonical,
                    signer.positions,
                    v.existing,
                    signer.position,
                    signer.key.verifying_key(),
                    signer.certificate,
                )
                .map_err(|e| (j, e))
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let signatures = signer.key.sign_many_indexed(&messages)?;
        Ok(signatures
            .into_iter()
            .map(|signature| VoucherSignature {
                position: signer.position.to_owned(),
                certificate: signer.certificate.clone(),
                signature,
            })
            .collect())
    })
}

// ----- batch-signature mode -----------------------------------------------------------------

const TREE_HEAD_DOMAIN: &[u8] = b"guoku-batch-tree-head/1";
const MAGIC: &[u8; 4] = b"GKBS";
const VERSION: u8 = 1;
/// Most hashes an inclusion proof can have (trees of fewer than 2^64 leaves).
const MAX_PROOF_LEN: usize = 64;
/// Largest certificate a batch signature may carry.
const MAX_CERT_LEN: usize = u16::MAX as usize;
/// Largest signature a batch signature may carry.
const MAX_SIG_LEN: usize = 1024;

fn tree_hash(suite: Suite) -> guoku_audit::HashAlgorithm {
    match suite.hash_algorithm() {
        HashAlgorithm::Sm3 => guoku_audit::HashAlgorithm::Sm3,
        HashAlgorithm::Sha256 => guoku_audit::HashAlgorithm::Sha256,
    }
}

/// The leaf hash of a voucher in batch-signature mode: `H(0x00 ‖ canonical)`.
pub fn batch_leaf_hash(suite: Suite, canonical: &[u8]) -> Digest {
    tree_hash(suite).leaf_hash(canonical)
}

/// The bytes signed in batch-signature mode (see the [module documentation](self)):
/// `"guoku-batch-tree-head/1" ‖ 0x00 ‖ suite name ‖ 0x00 ‖ u64be(size) ‖ root ‖ H(cert DER)`.
pub fn tree_head_message(
    suite: Suite,
    size: u64,
    root: &Digest,
    certificate_der: &[u8],
) -> Vec<u8> {
    let name = suite.name().as_bytes();
    let mut m = Vec::with_capacity(TREE_HEAD_DOMAIN.len() + name.len() + 2 + 8 + 64);
    m.extend_from_slice(TREE_HEAD_DOMAIN);
    m.push(0);
    m.extend_from_slice(name);
    m.push(0);
    m.extend_from_slice(&size.to_be_bytes());
    m.extend_from_slice(root);
    m.extend_from_slice(&hash(suite, certificate_der));
    m
}

/// A voucher's signature in batch-signature mode: enough to verify it alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchSignature {
    /// The suite (it fixes the tree's hash and the signature algorithm).
    pub suite: Suite,
    /// The signer's certificate.
    pub certificate: Certificate,
    /// Number of vouchers in the batch.
    pub tree_size: u64,
    /// This voucher's position in the batch (0-based).
    pub leaf_index: u64,
    /// The RFC 6962 audit path from this voucher's leaf to the root, leaf end first.
    pub inclusion_proof: Vec<Digest>,
    /// The signature over the tree head (see [`tree_head_message`]).
    pub root_signature: Signature,
}

impl BatchSignature {
    /// The root this signature's proof leads to from `canonical`, if the proof fits.
    fn root_for(&self, canonical: &[u8]) -> Result<Digest> {
        let leaf = batch_leaf_hash(self.suite, canonical);
        guoku_audit::root_from_inclusion_proof(
            tree_hash(self.suite),
            &leaf,
            self.leaf_index,
            self.tree_size,
            &self.inclusion_proof,
        )
        .map_err(|_| Error::BadSignature)
    }

    /// Check the signature over `canonical` with `key`: recompute the voucher's leaf, follow
    /// the inclusion proof to the root, and verify the root signature.
    pub fn verify_with_key(
        &self,
        suite: Suite,
        canonical: &[u8],
        key: &VerifyingKey,
    ) -> Result<()> {
        if suite != self.suite {
            return Err(Error::InvalidArgument(format!(
                "a {} batch signature in a {suite} deployment",
                self.suite
            )));
        }
        if key.algorithm() != suite.signature_algorithm() {
            return Err(Error::BadSignature);
        }
        let root = self.root_for(canonical)?;
        let message = tree_head_message(suite, self.tree_size, &root, self.certificate.to_der());
        key.verify(&message, &self.root_signature)
    }

    /// Check the signature over `canonical` with the key of the certificate it carries. This
    /// checks the cryptography only: whether the certificate is trusted is
    /// [`BatchSignature::verify_trusted`]'s business.
    pub fn verify(&self, suite: Suite, canonical: &[u8]) -> Result<()> {
        let key = self.certificate.public_key()?;
        self.verify_with_key(suite, canonical, &key)
    }

    /// Validate the certificate's path for voucher signing (see [`validate_path`]; `options`
    /// should ask for [`crate::pki::Purpose::VoucherSigning`]), then [`BatchSignature::verify`].
    pub fn verify_trusted(
        &self,
        suite: Suite,
        canonical: &[u8],
        intermediates: &[Certificate],
        anchor: &Certificate,
        options: &ValidationOptions<'_>,
    ) -> Result<ValidatedPath> {
        let path = validate_path(&self.certificate, intermediates, anchor, options)?;
        self.verify_with_key(suite, canonical, &path.leaf_key)?;
        Ok(path)
    }

    /// The binary encoding (all integers big-endian, nothing after the last field):
    ///
    /// | bytes | field |
    /// |---|---|
    /// | 4 | magic `"GKBS"` |
    /// | 1 | version, `1` |
    /// | 1 | suite: `1` = `sm`, `2` = `intl` |
    /// | 2 + c | certificate: `u16` length `c` (≥ 1), then its DER |
    /// | 8 | tree size (≥ 1) |
    /// | 8 | leaf index (< tree size) |
    /// | 1 + 32·k | inclusion proof: `u8` count `k` (≤ 64), then `k` hashes |
    /// | 2 + s | root signature: `u16` length `s` (1 to 1024), then the signature bytes |
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        encode(
            self.suite,
            self.certificate.to_der(),
            self.tree_size,
            self.leaf_index,
            &self.inclusion_proof,
            &self.root_signature,
        )
    }

    /// Parse [`BatchSignature::to_bytes`]'s encoding. Refuses anything else, including
    /// trailing bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let bad = |detail: &str| Error::malformed("batch signature", detail);
        let mut r = Reader(bytes);
        if r.take(4).ok_or_else(|| bad("truncated"))? != MAGIC {
            return Err(bad("bad magic"));
        }
        let version = r.u8().ok_or_else(|| bad("truncated"))?;
        if version != VERSION {
            return Err(Error::Unsupported(format!(
                "batch signature version {version}"
            )));
        }
        let suite = Suite::from_byte(r.u8().ok_or_else(|| bad("truncated"))?)?;
        let cert_len = usize::from(r.u16().ok_or_else(|| bad("truncated"))?);
        if cert_len == 0 {
            return Err(bad("empty certificate"));
        }
        let certificate = Certificate::from_der(r.take(cert_len).ok_or_else(|| bad("truncated"))?)?;
        let tree_size = r.u64().ok_or_else(|| bad("truncated"))?;
        let leaf_index = r.u64().ok_or_else(|| bad("truncated"))?;
        if leaf_index >= tree_size {
            return Err(bad("leaf index outside the tree"));
        }
        let proof_len = usize::from(r.u8().ok_or_else(|| bad("truncated"))?);
        if proof_len > MAX_PROOF_LEN {
            return Err(bad("inclusion proof too long"));
        }
        let mut inclusion_proof = Vec::with_capacity(proof_len);
        for _ in 0..proof_len {
            let h = r.take(32).ok_or_else(|| bad("truncated"))?;
            inclusion_proof.push(h.try_into().map_err(|_| bad("truncated"))?);
        }
        let sig_len = usize::from(r.u16().ok_or_else(|| bad("truncated"))?);
        if sig_len == 0 || sig_len > MAX_SIG_LEN {
            return Err(bad("signature length out of range"));
        }
        let root_signature =
            Signature::from_bytes(r.take(sig_len).ok_or_else(|| bad("truncated"))?);
        if !r.0.is_empty() {
            return Err(bad("trailing bytes"));
        }
        Ok(Self {
            suite,
            certificate,
            tree_size,
            leaf_index,
            inclusion_proof,
            root_signature,
        })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = self.0.split_at_checked(n)?;
        self.0 = tail;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes)
    }
}

fn encode(
    suite: Suite,
    certificate_der: &[u8],
    tree_size: u64,
    leaf_index: u64,
    proof: &[Digest],
    signature: &Signature,
) -> Result<Vec<u8>> {
    let sig = signature.as_bytes();
    if certificate_der.is_empty() || certificate_der.len() > MAX_CERT_LEN {
        return Err(Error::InvalidArgument(
            "certificate too large to encode".into(),
        ));
    }
    if proof.len() > MAX_PROOF_LEN || sig.is_empty() || sig.len() > MAX_SIG_LEN {
        return Err(Error::InvalidArgument(
            "batch signature out of range".into(),
        ));
    }
    if leaf_index >= tree_size {
        return Err(Error::InvalidArgument("leaf index outside the tree".into()));
    }
    let mut out = Vec::with_capacity(
        4 + 2 + 2 + certificate_der.len() + 16 + 1 + 32 * proof.len() + 2 + sig.len(),
    );
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.push(suite.to_byte());
    out.extend_from_slice(&(certificate_der.len() as u16).to_be_bytes());
    out.extend_from_slice(certificate_der);
    out.extend_from_slice(&tree_size.to_be_bytes());
    out.extend_from_slice(&leaf_index.to_be_bytes());
    out.push(proof.len() as u8);
    for h in proof {
        out.extend_from_slice(h);
    }
    out.extend_from_slice(&(sig.len() as u16).to_be_bytes());
    out.extend_from_slice(sig);
    Ok(out)
}

/// The result of [`batch_sign`]: the tree, its signed head, and each voucher's
/// [`BatchSignature`] on demand.
#[derive(Debug)]
pub struct SignedBatch {
    suite: Suite,
    certificate: Certificate,
    tree: MerkleTree,
    root_signature: Signature,
}

impl SignedBatch {
    /// Number of vouchers.
    pub fn len(&self) -> usize {
        self.tree.leaves().len()
    }

    /// Whether the batch is empty (never, for a batch that [`batch_sign`] returned).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The signed tree head.
    pub fn head(&self) -> guoku_audit::TreeHead {
        self.tree.head()
    }

    /// The signature over the tree head.
    pub fn root_signature(&self) -> &Signature {
        &self.root_signature
    }

    /// The batch signature of voucher `index`.
    pub fn signature(&self, index: usize) -> Result<BatchSignature> {
        let leaf_index = index as u64;
        let inclusion_proof = self
            .tree
            .inclusion_proof(leaf_index)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        Ok(BatchSignature {
            suite: self.suite,
            certificate: self.certificate.clone(),
            tree_size: self.tree.size(),
            leaf_index,
            inclusion_proof,
            root_signature: self.root_signature.clone(),
        })
    }

    /// The encoded batch signature of voucher `index` (as [`BatchSignature::to_bytes`], without
    /// copying the parsed certificate).
    pub fn encoded_signature(&self, index: usize) -> Result<Vec<u8>> {
        let leaf_index = index as u64;
        let proof = self
            .tree
            .inclusion_proof(leaf_index)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        encode(
            self.suite,
            self.certificate.to_der(),
            self.tree.size(),
            leaf_index,
            &proof,
            &self.root_signature,
        )
    }

    /// Every voucher's encoded batch signature, in order, on `parallelism` threads.
    pub fn encoded_signatures(&self, parallelism: Parallelism) -> Result<Vec<Vec<u8>>> {
        let indices: Vec<usize> = (0..self.len()).collect();
        try_map_parallel(&indices, parallelism, None, |&i| self.encoded_signature(i))
    }
}

/// Batch-signature mode: hash every voucher's canonical bytes into an RFC 6962 leaf (on
/// `parallelism` threads; `progress` follows this step), build the tree, and sign its head
/// once with `key`. Beyond the standard: see the [module documentation](self).
///
/// Refused for an empty batch, more than [`MAX_BATCH`] vouchers, a key of another algorithm
/// than the suite's, or a key that does not match `certificate`.
pub fn batch_sign<M: AsRef<[u8]> + Sync>(
    suite: Suite,
    key: &SigningKey,
    certificate: &Certificate,
    canonicals: &[M],
    parallelism: Parallelism,
    progress: Option<Progress<'_>>,
) -> Result<SignedBatch> {
    if canonicals.is_empty() {
        return Err(Error::InvalidArgument(
            "a batch needs at least one voucher".into(),
        ));
    }
    check_batch_len(canonicals.len())?;
    crate::pki::check_signing_key(suite, key.verifying_key(), certificate, "signer")?;
    let leaves = try_map_parallel(canonicals, parallelism, progress, |c| {
        Ok(batch_leaf_hash(suite, c.as_ref()))
    })?;
    let tree = MerkleTree::new(tree_hash(suite), leaves);
    let head = tree.head();
    let root_signature = key.sign(&tree_head_message(
        suite,
        head.size,
        &head.root,
        certificate.to_der(),
    ))?;
    Ok(SignedBatch {
        suite,
        certificate: certificate.clone(),
        tree,
        root_signature,
    })
}
