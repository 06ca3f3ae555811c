//! Signing benchmarks, printed by `guoku bench sign`.
//!
//! This is measurement code: unlike the rest of the crate it reads the clock
//! (`std::time::Instant`), and [`openssl_speed_sm2`] runs the `openssl` program. Figures
//! depend on the machine and its load; report the minimum and median of several runs.
//!
//! Per suite ([`run_suite`]):
//!
//! * sign/s and verify/s on one core, each over at least [`BenchConfig::min_duration`], on a
//!   voucher-sized message: sign/s for one signature per call ([`SigningKey::sign`]) and for
//!   chunks of [`SIGN_MANY_CHUNK`] different vouchers per call ([`SigningKey::sign_many`], as
//!   the batch runs sign);
//! * batch sign-and-seal: [`BenchConfig::batch_vouchers`] vouchers each signed at a seal
//!   position with [`crate::batch::sign_vouchers`] on every core (seconds);
//! * batch-signature mode: [`BenchConfig::batch_mode_vouchers`] vouchers through
//!   [`crate::batch::batch_sign`] plus every voucher's encoded [`BatchSignature`] (seconds).
//!
//! [`BatchSignature`]: crate::batch::BatchSignature

use std::fmt;
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use crate::batch::{
    BatchSignature, Parallelism, PositionSigner, VoucherToSign, batch_sign, sign_vouchers,
};
use crate::error::{Error, Result};
use crate::keys::SigningKey;
use crate::pki::{
    CaSubject, Certificate, CertificateAuthority, OrgRole, Organisation, Serial, Sm2CertId,
    Validity, make_root_ca,
};
use crate::suite::{Suite, hash};
use crate::voucher::SignaturePosition;

/// What to measure and for how long.
#[derive(Clone, Copy, Debug)]
pub struct BenchConfig {
    /// Least time each single-core rate is measured over.
    pub min_duration: Duration,
    /// Vouchers in the batch sign-and-seal run.
    pub batch_vouchers: usize,
    /// Vouchers in the batch-signature-mode run.
    pub batch_mode_vouchers: usize,
    /// Size of each voucher's canonical bytes.
    pub voucher_len: usize,
    /// Threads for the batch runs.
    pub parallelism: Parallelism,
    /// How many times each batch run is repeated.
    pub repeats: usize,
}

impl Default for BenchConfig {
    fn default() -> Self {
        Self {
            min_duration: Duration::from_secs(1),
            batch_vouchers: 2_000,
            batch_mode_vouchers: 10_000,
            voucher_len: 1_536,
            parallelism: Parallelism::all_cores(),
            repeats: 3,
        }
    }
}

/// Durations of repeated runs, in seconds.
#[derive(Clone, Debug, PartialEq)]
pub struct Samples(pub Vec<f64>);

impl Samples {
    /// The fastest run.
    pub fn min(&self) -> f64 {
        self.0.iter().copied().fold(f64::INFINITY, f64::min)
    }

    /// The median run (the lower middle one for an even count).
    pub fn median(&self) -> f64 {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        v.get(v.len().saturating_sub(1) / 2)
            .copied()
            .unwrap_or(f64::NAN)
    }
}

/// Figures for one suite.
#[derive(Clone, Debug)]
pub struct SuiteReport {
    /// The suite measured.
    pub suite: Suite,
    /// Size of the message signed, in bytes.
    pub voucher_len: usize,
    /// Signatures per second on one core, one per call ([`SigningKey::sign`]).
    pub sign_per_s: f64,
    /// Signatures per second on one core, [`SIGN_MANY_CHUNK`] different vouchers per call
    /// ([`SigningKey::sign_many`]).
    pub sign_many_per_s: f64,
    /// Verifications per second on one core (with a parsed, cached public key).
    pub verify_per_s: f64,
    /// Threads used by the batch runs.
    pub threads: usize,
    /// Vouchers in the batch sign-and-seal run.
    pub batch_vouchers: usize,
    /// Seconds per batch sign-and-seal run.
    pub batch_sign_s: Samples,
    /// Vouchers in the batch-signature-mode run.
    pub batch_mode_vouchers: usize,
    /// Seconds per batch-signature-mode run (tree, one signature, every encoded signature).
    pub batch_mode_s: Samples,
}

/// Vouchers per [`SigningKey::sign_many`] call in the single-core batch rate: the largest
/// chunk the batch runs hand to one worker.
pub const SIGN_MANY_CHUNK: usize = 64;

/// `openssl speed sm2` figures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OpensslSpeed {
    /// SM2 signatures per second.
    pub sign_per_s: f64,
    /// SM2 verifications per second.
    pub verify_per_s: f64,
}

/// A deterministic voucher-like document of exactly `len` bytes, different for each `index`.
pub fn sample_voucher(index: usize, len: usize) -> Vec<u8> {
    let head = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Voucher><AdmDivCode>110000</AdmDivCode>\
         <StYear>2026</StYear><VtCode>5201</VtCode><VouDate>20260601</VouDate>\
         <VoucherNo>{index:012}</VoucherNo><PayAmt>{}.{:02}</PayAmt>\
         <PayeeAcctNo>6222{index:015}</PayeeAcctNo><PayeeAcctName>北京市某某预算单位</PayeeAcctName>\
         <PayeeAcctBankName>中国工商银行北京分行</PayeeAcctBankName><Details>",
        1000 + index * 37 % 100_000,
        index % 100
    );
    let mut v = head.into_bytes();
    let mut line = 0usize;
    while v.len() < len {
        let detail = format!(
            "<Detail><Seq>{line}</Seq><ExpFuncCode>2010{:03}</ExpFuncCode><Amt>{}.00</Amt></Detail>",
            (index + line) % 1000,
            (index * 7 + line * 13) % 10_000
        );
        v.extend_from_slice(detail.as_bytes());
        line += 1;
    }
    v.truncate(len);
    v
}

/// The key and certificate a benchmark signs with: an organisation certificate under a
/// throwaway root, both keys derived from fixed bytes (no randomness needed).
fn bench_signer(suite: Suite) -> Result<(SigningKey, Certificate)> {
    let alg = suite.signature_algorithm();
    let root_key = SigningKey::from_secret_bytes(alg, &hash(suite, b"guoku bench root key"))?;
    let key = SigningKey::from_secret_bytes(alg, &hash(suite, b"guoku bench signing key"))?;
    let start = OffsetDateTime::from_unix_timestamp(1_767_225_600).map_err(Error::crypto)?;
    let root_cert = make_root_ca(
        &root_key,
        &CaSubject {
            organisation: "guoku bench".into(),
            common_name: "guoku bench root CA".into(),
        },
        &Serial::from_u64(1)?,
        Validity::days_from(start, 3650),
        Sm2CertId::Standard,
    )?;
    let root = CertificateAuthority::new(root_cert, root_key)?;
    let cert = root.issue_organisation(
        key.verifying_key(),
        &Organisation {
            role: OrgRole::Finance,
            code: "11000000000000000X".into(),
            name: "北京市财政局".into(),
        },
        &Serial::from_u64(2)?,
        Validity::days_from(start, 365),
    )?;
    Ok((key, cert))
}

/// Run `op` until at least `min` has passed; return operations per second.
fn rate(min: Duration, mut op: impl FnMut() -> Result<()>) -> Result<f64> {
    let start = Instant::now();
    let mut count = 0u64;
    loop {
        op()?;
        count += 1;
        let elapsed = start.elapsed();
        if elapsed >= min {
            return Ok(count as f64 / elapsed.as_secs_f64());
        }
    }
}

/// One core's rates of the suite's bare operations, one voucher a call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CoreRates {
    /// Signatures per second.
    pub sign_per_s: f64,
    /// Verifications per second.
    pub verify_per_s: f64,
}

/// Signs and then verifies a `voucher_len`-byte voucher, each for at least `min`, on the
/// calling thread: the ceiling any flow that signs and checks vouchers is measured against.
pub fn core_rates(suite: Suite, min: Duration, voucher_len: usize) -> Result<CoreRates> {
    let (key, _) = bench_signer(suite)?;
    core_rates_of(&key, min, &sample_voucher(0, voucher_len))
}

fn core_rates_of(key: &SigningKey, min: Duration, message: &[u8]) -> Result<CoreRates> {
    let sign_per_s = rate(min, || key.sign(message).map(drop))?;
    let signature = key.sign(message)?;
    let verifying = key.verifying_key().clone();
    let verify_per_s = rate(min, || verifying.verify(message, &signature))?;
    Ok(CoreRates {
        sign_per_s,
        verify_per_s,
    })
}

/// Measure one suite.
pub fn run_suite(suite: Suite, config: &BenchConfig) -> Result<SuiteReport> {
    let (key, cert) = bench_signer(suite)?;
    let message = sample_voucher(0, config.voucher_len);

    let CoreRates {
        sign_per_s,
        verify_per_s,
    } = core_rates_of(&key, config.min_duration, &message)?;
    let chunk: Vec<Vec<u8>> = (0..SIGN_MANY_CHUNK)
        .map(|i| sample_voucher(i, config.voucher_len))
        .collect();
    let sign_many_per_s =
        SIGN_MANY_CHUNK as f64 * rate(config.min_duration, || key.sign_many(&chunk).map(drop))?;

    // Batch sign-and-seal: every voucher signed at the organisation's seal position.
    let positions = [SignaturePosition {
        name: "finance.seal".into(),
        role: Some(OrgRole::Finance),
        post: None,
    }];
    let signer = PositionSigner {
        suite,
        key: &key,
        certificate: &cert,
        positions: &positions,
        position: "finance.seal",
    };
    let vouchers: Vec<Vec<u8>> = (0..config.batch_vouchers.max(config.batch_mode_vouchers))
        .map(|i| sample_voucher(i, config.voucher_len))
        .collect();
    let to_sign: Vec<VoucherToSign<'_>> = vouchers[..config.batch_vouchers]
        .iter()
        .map(|v| VoucherToSign {
            canonical: v,
            existing: &[],
        })
        .collect();
    let mut batch_sign_s = Vec::new();
    for _ in 0..config.repeats.max(1) {
        let start = Instant::now();
        let sigs = sign_vouchers(&signer, &to_sign, config.parallelism, None)?;
        batch_sign_s.push(start.elapsed().as_secs_f64());
        if sigs.len() != to_sign.len() {
            return Err(Error::crypto("batch signing lost vouchers"));
        }
    }

    // Batch-signature mode: tree, one signature, and every voucher's encoded signature.
    let batch = &vouchers[..config.batch_mode_vouchers];
    let mut batch_mode_s = Vec::new();
    for _ in 0..config.repeats.max(1) {
        let start = Instant::now();
        let signed = batch_sign(suite, &key, &cert, batch, config.parallelism, None)?;
        let encoded = signed.encoded_signatures(config.parallelism)?;
        batch_mode_s.push(start.elapsed().as_secs_f64());
        // Outside the timing: the last voucher's signature verifies alone.
        if let (Some(last), Some(bytes)) = (batch.last(), encoded.last()) {
            BatchSignature::from_bytes(bytes)?.verify(suite, last)?;
        }
    }

    Ok(SuiteReport {
        suite,
        voucher_len: config.voucher_len,
        sign_per_s,
        sign_many_per_s,
        verify_per_s,
        threads: config.parallelism.threads.get(),
        batch_vouchers: config.batch_vouchers,
        batch_sign_s: Samples(batch_sign_s),
        batch_mode_vouchers: config.batch_mode_vouchers,
        batch_mode_s: Samples(batch_mode_s),
    })
}

/// Measure every suite.
pub fn run(config: &BenchConfig) -> Result<Vec<SuiteReport>> {
    Suite::ALL.iter().map(|s| run_suite(*s, config)).collect()
}

/// Run `openssl speed -seconds <seconds> sm2` and read its sign/s and verify/s. `None` when
/// `openssl` is not on the `PATH`, fails, or prints something we cannot read.
pub fn openssl_speed_sm2(seconds: u32) -> Option<OpensslSpeed> {
    let output = std::process::Command::new("openssl")
        .args(["speed", "-seconds", &seconds.to_string(), "sm2"])
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    parse_openssl_speed_sm2(&String::from_utf8_lossy(&output.stdout))
}

/// Read the SM2 line of `openssl speed sm2`'s table (OpenSSL 3.0):
///
/// ```text
///                               sign    verify    sign/s verify/s
///  256 bits SM2 (CurveSM2)   0.0004s   0.0005s   2833.8   2122.8
/// ```
pub fn parse_openssl_speed_sm2(stdout: &str) -> Option<OpensslSpeed> {
    stdout.lines().find_map(|line| {
        if !line.contains("SM2") {
            return None;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [.., sign_time, verify_time, sign, verify] = fields.as_slice() else {
            return None;
        };
        if !sign_time.ends_with('s') || !verify_time.ends_with('s') {
            return None;
        }
        let sign_per_s: f64 = sign.parse().ok()?;
        let verify_per_s: f64 = verify.parse().ok()?;
        (sign_per_s > 0.0 && verify_per_s > 0.0).then_some(OpensslSpeed {
            sign_per_s,
            verify_per_s,
        })
    })
}

impl fmt::Display for SuiteReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let alg = self.suite.signature_algorithm();
        writeln!(
            f,
            "suite {} ({alg}, {}-byte vouchers)",
            self.suite, self.voucher_len
        )?;
        writeln!(f, "  sign, 1 core        {:>10.0} /s", self.sign_per_s)?;
        writeln!(
            f,
            "  sign_many, 1 core   {:>10.0} /s ({SIGN_MANY_CHUNK} vouchers per call)",
            self.sign_many_per_s
        )?;
        writeln!(f, "  verify, 1 core      {:>10.0} /s", self.verify_per_s)?;
        writeln!(
            f,
            "  sign+seal {:>6} vouchers, {} threads: min {:.3} s, median {:.3} s ({:.0} vouchers/s)",
            self.batch_vouchers,
            self.threads,
            self.batch_sign_s.min(),
            self.batch_sign_s.median(),
            self.batch_vouchers as f64 / self.batch_sign_s.median()
        )?;
        write!(
            f,
            "  batch-signature mode {:>6} vouchers: min {:.3} s, median {:.3} s",
            self.batch_mode_vouchers,
            self.batch_mode_s.min(),
            self.batch_mode_s.median()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_openssl_3_0_speed_output() {
        let out = "version: 3.0.19\nbuilt on: Fri Apr  3 12:29:32 2026 UTC\n\
                   options: bn(64,64)\n\
                   \x20                             sign    verify    sign/s verify/s\n\
                   \x20256 bits SM2 (CurveSM2)   0.0004s   0.0005s   2833.8   2122.8\n";
        assert_eq!(
            parse_openssl_speed_sm2(out),
            Some(OpensslSpeed {
                sign_per_s: 2833.8,
                verify_per_s: 2122.8
            })
        );
        assert_eq!(parse_openssl_speed_sm2("version: 3.0.19\n"), None);
        assert_eq!(
            parse_openssl_speed_sm2(" 256 bits SM2 (CurveSM2)   0.0004s   0.0005s   x   2122.8\n"),
            None
        );
    }

    #[test]
    fn sample_vouchers_have_the_length_asked_and_differ() {
        let a = sample_voucher(1, 1536);
        let b = sample_voucher(2, 1536);
        assert_eq!((a.len(), b.len()), (1536, 1536));
        assert_ne!(a, b);
    }

    #[test]
    fn samples_min_and_median() {
        let s = Samples(vec![0.3, 0.1, 0.2, 0.5]);
        assert_eq!(s.min(), 0.1);
        assert_eq!(s.median(), 0.2);
    }

    #[test]
    fn a_tiny_run_produces_consistent_figures() {
        let config = BenchConfig {
            min_duration: Duration::from_millis(1),
            batch_vouchers: 5,
            batch_mode_vouchers: 7,
            voucher_len: 300,
            parallelism: Parallelism::threads(2),
            repeats: 2,
        };
        for suite in Suite::ALL {
            let r = run_suite(suite, &config).unwrap();
            assert!(r.sign_per_s > 0.0 && r.sign_many_per_s > 0.0 && r.verify_per_s > 0.0);
            assert_eq!(r.batch_sign_s.0.len(), 2);
            assert_eq!(r.batch_mode_s.0.len(), 2);
            assert!(r.to_string().contains(suite.name()));
        }
    }
}
