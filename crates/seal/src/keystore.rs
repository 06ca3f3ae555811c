//! A private key at rest, encrypted under its holder's PIN.
//!
//! The key (PKCS#8 DER) is encrypted with the suite's AEAD (SM4-GCM for `sm`, AES-256-GCM for
//! `intl`) under a key derived from the PIN with Argon2id (at least m = 19 MiB, t = 2, p = 1; a
//! random 16-byte salt). After `max_attempts` consecutive wrong PINs the store refuses every
//! further try ([`Error::Locked`]) until [`SealedKey::admin_reset`] / [`KeyStoreFile::admin_reset`].
//!
//! # File format, version 1
//!
//! All integers are big-endian.
//!
//! | offset | length | field |
//! |---:|---:|---|
//! | 0 | 4 | magic `GKKS` |
//! | 4 | 1 | format version, `1` |
//! | 5 | 1 | suite: `1` = sm (SM4-GCM, 16-byte key), `2` = intl (AES-256-GCM, 32-byte key) |
//! | 6 | 1 | `max_attempts`: consecutive wrong PINs allowed (1–255) |
//! | 7 | 1 | `failed_attempts`: consecutive wrong PINs so far (**not** authenticated) |
//! | 8 | 4 | Argon2id memory cost, KiB (≥ 19456) |
//! | 12 | 4 | Argon2id time cost (≥ 2) |
//! | 16 | 4 | Argon2id parallelism (≥ 1) |
//! | 20 | 16 | salt |
//! | 36 | 12 | AEAD nonce |
//! | 48 | n + 16 | AEAD ciphertext of the PKCS#8 DER private key, then the tag |
//!
//! The AEAD's associated data is bytes 0–47 with byte 7 (the counter) set to zero, so the
//! header cannot be altered without the PIN, while the counter can be updated without it.
//!
//! The counter limits guessing *through this code*. Whoever can copy the file can guess
//! offline at the Argon2id cost per guess; file permissions (0600) and the PIN's strength are
//! what stand against that.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use argon2::{Algorithm, Argon2, Params, Version};
use rand_core::CryptoRng;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::keys::SigningKey;
use crate::suite::Suite;
use crate::symmetric::{NONCE_LEN, SymmetricKey, TAG_LEN};

const MAGIC: &[u8; 4] = b"GKKS";
const VERSION: u8 = 1;
const SALT_LEN: usize = 16;
const HEADER_LEN: usize = 48;
const COUNTER_OFFSET: usize = 7;
/// Largest key file we read (a PKCS#8 key is about 150 bytes).
const MAX_FILE_LEN: usize = 4096;

/// Default number of consecutive wrong PINs before the store locks.
pub const DEFAULT_MAX_ATTEMPTS: u8 = 5;

/// A PIN. Wiped on drop; `Debug` prints asterisks; 6 to 64 characters.
pub struct Pin(Zeroizing<String>);

impl Pin {
    /// Shortest PIN accepted.
    pub const MIN_CHARS: usize = 6;
    /// Longest PIN accepted.
    pub const MAX_CHARS: usize = 64;

    /// Wrap a PIN; refused if shorter than [`Pin::MIN_CHARS`] or longer than [`Pin::MAX_CHARS`].
    pub fn new(pin: impl Into<String>) -> Result<Self> {
        let pin = Zeroizing::new(pin.into());
        let n = pin.chars().count();
        if !(Self::MIN_CHARS..=Self::MAX_CHARS).contains(&n) {
            return Err(Error::InvalidArgument(format!(
                "a PIN has {} to {} characters",
                Self::MIN_CHARS,
                Self::MAX_CHARS
            )));
        }
        Ok(Pin(pin))
    }

    fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(****)")
    }
}

/// Argon2id cost parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost_kib: u32,
    /// Passes over memory.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl KdfParams {
    /// The weakest parameters accepted when creating or reading a store (OWASP's Argon2id
    /// minimum: 19 MiB, 2 passes, 1 lane).
    pub const MINIMUM: KdfParams = KdfParams {
        m_cost_kib: 19_456,
        t_cost: 2,
        p_cost: 1,
    };
    /// The strongest accepted when reading a store (bounds the memory a file can make us use).
    pub const MAXIMUM: KdfParams = KdfParams {
        m_cost_kib: 1 << 20,
        t_cost: 16,
        p_cost: 16,
    };

    fn check(self) -> Result<()> {
        let (lo, hi) = (Self::MINIMUM, Self::MAXIMUM);
        let ok = (lo.m_cost_kib..=hi.m_cost_kib).contains(&self.m_cost_kib)
            && (lo.t_cost..=hi.t_cost).contains(&self.t_cost)
            && (lo.p_cost..=hi.p_cost).contains(&self.p_cost);
        if ok {
            Ok(())
        } else {
            Err(Error::InvalidArgument(format!(
                "Argon2id parameters must lie between {lo:?} and {hi:?}"
            )))
        }
    }
}

impl Default for KdfParams {
    fn default() -> Self {
        Self::MINIMUM
    }
}

fn derive_key(suite: Suite, pin: &Pin, salt: &[u8], params: KdfParams) -> Result<SymmetricKey> {
    let len = SymmetricKey::len_for(suite);
    let argon_params = Params::new(params.m_cost_kib, params.t_cost, params.p_cost, Some(len))
        .map_err(Error::crypto)?;
    let mut out = Zeroizing::new(vec![0u8; len]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, argon_params)
        .hash_password_into(pin.expose(), salt, &mut out)
        .map_err(Error::crypto)?;
    SymmetricKey::from_bytes(suite, &out)
}

/// Whether a store accepts tries, and how many are left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyStoreStatus {
    /// Consecutive wrong PINs so far.
    pub failed_attempts: u8,
    /// Consecutive wrong PINs allowed.
    pub max_attempts: u8,
}

impl KeyStoreStatus {
    /// Whether the store refuses tries until an administrator resets it.
    pub fn is_locked(&self) -> bool {
        self.failed_attempts >= self.max_attempts
    }

    /// Wrong PINs still allowed.
    pub fn remaining(&self) -> u8 {
        self.max_attempts.saturating_sub(self.failed_attempts)
    }
}

/// An encrypted private key in the version-1 format above. A pure value: the caller persists
/// [`SealedKey::as_bytes`] after every call that takes `&mut self` (or uses [`KeyStoreFile`]).
#[derive(Clone, PartialEq, Eq)]
pub struct SealedKey {
    bytes: Vec<u8>,
}

impl SealedKey {
    /// Encrypt `key` under `pin`.
    pub fn seal(
        key: &SigningKey,
        pin: &Pin,
        suite: Suite,
        params: KdfParams,
        max_attempts: u8,
        rng: &mut impl CryptoRng,
    ) -> Result<Self> {
        params.check()?;
        if max_attempts == 0 {
            return Err(Error::InvalidArgument(
                "max_attempts must be at least 1".into(),
            ));
        }
        let mut salt = [0u8; SALT_LEN];
        rng.fill_bytes(&mut salt);
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);

        let mut header = Vec::with_capacity(HEADER_LEN);
        header.extend_from_slice(MAGIC);
        header.push(VERSION);
        header.push(suite.to_byte());
        header.push(max_attempts);
        header.push(0);
        header.extend_from_slice(&params.m_cost_kib.to_be_bytes());
        header.extend_from_slice(&params.t_cost.to_be_bytes());
        header.extend_from_slice(&params.p_cost.to_be_bytes());
        header.extend_from_slice(&salt);
        header.extend_from_slice(&nonce);
        assert_eq!(header.len(), HEADER_LEN);

        let aead_key = derive_key(suite, pin, &salt, params)?;
        let plaintext = key.to_pkcs8_der()?;
        let ciphertext = aead_key.encrypt(&nonce, &header, &plaintext)?;
        let mut bytes = header;
        bytes.extend_from_slice(&ciphertext);
        let sealed = Self { bytes };
        // Read back what was written, as a reader would.
        let parsed = Self::from_bytes(sealed.bytes.clone())?;
        debug_assert!(parsed == sealed);
        Ok(sealed)
    }

    /// Parse and check the header of a stored key.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
        let bad = |detail: &str| Error::malformed("key store", detail);
        if bytes.len() > MAX_FILE_LEN {
            return Err(bad("too long"));
        }
        if bytes.len() < HEADER_LEN + TAG_LEN + 1 {
            return Err(bad("too short"));
        }
        if &bytes[0..4] != MAGIC {
            return Err(bad("not a guoku key store"));
        }
        if bytes[4] != VERSION {
            return Err(Error::Unsupported(format!(
                "key store format version {}",
                bytes[4]
            )));
        }
        Suite::from_byte(bytes[5])?;
        if bytes[6] == 0 {
            return Err(bad("max_attempts is 0"));
        }
        let sealed = Self { bytes };
        sealed
            .params()
            .check()
            .map_err(|_| bad("Argon2id parameters out of range"))?;
        Ok(sealed)
    }

    /// The stored bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The suite whose AEAD protects the key.
    pub fn suite(&self) -> Suite {
        Suite::from_byte(self.bytes[5]).unwrap_or(Suite::Intl)
    }

    /// The Argon2id parameters.
    pub fn params(&self) -> KdfParams {
        let word = |at: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&self.bytes[at..at + 4]);
            u32::from_be_bytes(b)
        };
        KdfParams {
            m_cost_kib: word(8),
            t_cost: word(12),
            p_cost: word(16),
        }
    }

    /// The attempt counter.
    pub fn status(&self) -> KeyStoreStatus {
        KeyStoreStatus {
            failed_attempts: self.bytes[COUNTER_OFFSET],
            max_attempts: self.bytes[6],
        }
    }

    fn set_failed(&mut self, n: u8) {
        self.bytes[COUNTER_OFFSET] = n;
    }

    fn aad(&self) -> [u8; HEADER_LEN] {
        let mut aad = [0u8; HEADER_LEN];
        aad.copy_from_slice(&self.bytes[..HEADER_LEN]);
        aad[COUNTER_OFFSET] = 0;
        aad
    }

    /// Try `pin`. A wrong PIN counts one failed attempt and is [`Error::WrongPin`]; once the
    /// limit is reached every try is [`Error::Locked`]. The right PIN resets the counter.
    /// Either way the counter changes: persist [`SealedKey::as_bytes`] afterwards.
    pub fn unlock(&mut self, pin: &Pin) -> Result<SigningKey> {
        let status = self.status();
        if status.is_locked() {
            return Err(Error::Locked);
        }
        let failed = status.failed_attempts.saturating_add(1);
        self.set_failed(failed);
        let result = self.decrypt(pin);
        match result {
            Ok(key) => {
                self.set_failed(0);
                Ok(key)
            }
            Err(Error::DecryptionFailed) => Err(Error::WrongPin {
                remaining: u32::from(status.max_attempts.saturating_sub(failed)),
            }),
            Err(other) => {
                // Not the PIN's fault: do not count it.
                self.set_failed(status.failed_attempts);
                Err(other)
            }
        }
    }

    fn decrypt(&self, pin: &Pin) -> Result<SigningKey> {
        let suite = self.suite();
        let salt = &self.bytes[20..20 + SALT_LEN];
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&self.bytes[36..36 + NONCE_LEN]);
        let key = derive_key(suite, pin, salt, self.params())?;
        let der = key.decrypt(&nonce, &self.aad(), &self.bytes[HEADER_LEN..])?;
        SigningKey::from_pkcs8_der(&der)
    }

    /// Clear the counter of wrong PINs (an administrator's action: the caller checks who may).
    pub fn admin_reset(&mut self) {
        self.set_failed(0);
    }

    /// Re-encrypt under `new_pin` (fresh salt and nonce), after checking `old_pin` as
    /// [`SealedKey::unlock`] does.
    pub fn change_pin(
        &mut self,
        old_pin: &Pin,
        new_pin: &Pin,
        rng: &mut impl CryptoRng,
    ) -> Result<()> {
        let key = self.unlock(old_pin)?;
        let status = self.status();
        *self = Self::seal(
            &key,
            new_pin,
            self.suite(),
            self.params(),
            status.max_attempts,
            rng,
        )?;
        Ok(())
    }
}

impl fmt::Debug for SealedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedKey")
            .field("suite", &self.suite())
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

/// A [`SealedKey`] in a file. Every change is written to a temporary file, synced and renamed
/// over the old one; a `<path>.lock` file serialises processes that use the same store.
#[derive(Clone, Debug)]
pub struct KeyStoreFile {
    path: PathBuf,
}

impl KeyStoreFile {
    /// Write a new store at `path` (refused if the file exists).
    pub fn create(
        path: impl Into<PathBuf>,
        key: &SigningKey,
        pin: &Pin,
        suite: Suite,
        params: KdfParams,
        max_attempts: u8,
        rng: &mut impl CryptoRng,
    ) -> Result<Self> {
        let store = Self { path: path.into() };
        let _lock = store.lock()?;
        if store.path.exists() {
            return Err(Error::InvalidArgument(format!(
                "{} already exists",
                store.path.display()
            )));
        }
        let sealed = SealedKey::seal(key, pin, suite, params, max_attempts, rng)?;
        store.write(&sealed)?;
        Ok(store)
    }

    /// A store at `path` (nothing is read until used).
    pub fn open(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Read the stored key.
    pub fn load(&self) -> Result<SealedKey> {
        let bytes = fs::read(&self.path)?;
        SealedKey::from_bytes(bytes)
    }

    /// The attempt counter.
    pub fn status(&self) -> Result<KeyStoreStatus> {
        Ok(self.load()?.status())
    }

    /// Try `pin`, as [`SealedKey::unlock`]. The failed attempt is written to disk *before* the
    /// PIN is checked, so stopping the process midway cannot save a guess.
    pub fn unlock(&self, pin: &Pin) -> Result<SigningKey> {
        let _lock = self.lock()?;
        let mut sealed = self.load()?;
        let status = sealed.status();
        if status.is_locked() {
            tracing::error!(key_store = %self.path.display(), "key store locked after too many wrong PINs: refused");
            return Err(Error::Locked);
        }
        let mut pessimistic = sealed.clone();
        pessimistic.set_failed(status.failed_attempts.saturating_add(1));
        self.write(&pessimistic)?;
        let result = sealed.unlock(pin);
        if sealed != pessimistic {
            self.write(&sealed)?;
        }
        // Every refusal is logged, with what is left; never the PIN.
        match &result {
            Err(Error::WrongPin { .. }) => tracing::warn!(
                key_store = %self.path.display(),
                remaining = sealed.status().remaining(),
                "wrong PIN"
            ),
            Err(Error::Locked) => tracing::error!(
                key_store = %self.path.display(),
                "wrong PIN: the key store is now locked until an administrator resets it"
            ),
            _ => {}
        }
        result
    }

    /// Clear the counter of wrong PINs (an administrator's action: the caller checks who may).
    pub fn admin_reset(&self) -> Result<()> {
        let _lock = self.lock()?;
        let mut sealed = self.load()?;
        sealed.admin_reset();
        self.write(&sealed)
    }

    /// Re-encrypt under `new_pin`, as [`SealedKey::change_pin`].
    pub fn change_pin(&self, old_pin: &Pin, new_pin: &Pin, rng: &mut impl CryptoRng) -> Result<()> {
        let _lock = self.lock()?;
        let mut sealed = self.load()?;
        let mut pessimistic = sealed.clone();
        if !pessimistic.status().is_locked() {
            let n = pessimistic.status().failed_attempts.saturating_add(1);
            pessimistic.set_failed(n);
            self.write(&pessimistic)?;
        }
        let result = sealed.change_pin(old_pin, new_pin, rng);
        if sealed != pessimistic {
            self.write(&sealed)?;
        }
        result
    }

    fn lock(&self) -> Result<File> {
        let mut lock_path = self.path.clone().into_os_string();
        lock_path.push(".lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(lock_path)?;
        file.lock()?;
        Ok(file)
    }

    fn write(&self, sealed: &SealedKey) -> Result<()> {
        let mut tmp_path = self.path.clone().into_os_string();
        tmp_path.push(".tmp");
        let tmp_path = PathBuf::from(tmp_path);
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp_path)?;
        file.write_all(sealed.as_bytes())?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp_path, &self.path)?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)?.sync_all()?;
        }
        // Read back what was written.
        let back = fs::read(&self.path)?;
        if back != sealed.as_bytes() {
            return Err(Error::Io(std::io::Error::other(
                "key store read back differs from what was written",
            )));
        }
        Ok(())
    }
}
