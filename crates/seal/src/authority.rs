//! A deployment's certificate authority kept in a directory: what `guoku pki` works on.
//!
//! ```text
//! DIR/ca.crt        the voucher root CA (SM2 for `sm`, Ed25519 for `intl`)
//! DIR/ca.key        its private key in a PIN-protected key store
//! DIR/ca.crl        its current CRL
//! DIR/tls-ca.crt    the TLS root CA (ECDSA P-256: rustls cannot check SM2)
//! DIR/tls-ca.key    its key, under the same PIN
//! DIR/tls-ca.crl    its current CRL
//! DIR/revoked.txt   one revocation a line: serial (hex), RFC 3339 time
//! DIR/issued/SERIAL.crt   every certificate issued, by serial
//! ```
//!
//! The CRLs are derived from `revoked.txt`, which is the record of what was revoked; both
//! CRLs are re-issued on every revocation and by [`Authority::refresh_crls`].
//! This module is the only part of the crate besides the key store that touches files,
//! and it only ever reads and writes inside the directory it is given.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rand_core::CryptoRng;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::{Error, Result};
use crate::keys::{KeyAlgorithm, SigningKey};
use crate::keystore::{DEFAULT_MAX_ATTEMPTS, KdfParams, KeyStoreFile, Pin};
use crate::pki::{
    CaSubject, Certificate, CertificateAuthority, Crl, Organisation, Person, Revocation, Serial,
    Sm2CertId, TlsNode, Validity, make_root_ca,
};
use crate::suite::Suite;

/// How long a CRL is valid before it must be refreshed.
pub const CRL_VALIDITY_DAYS: u32 = 30;

/// What `guoku pki init` needs.
#[derive(Clone, Debug)]
pub struct InitOptions {
    /// The deployment's suite: the voucher root's algorithm.
    pub suite: Suite,
    /// The organisation running the CA (`O`).
    pub organisation: String,
    /// The CA's name (`CN`).
    pub name: String,
    /// How long the roots are valid.
    pub validity_days: u32,
}

/// What a certificate is issued to.
#[derive(Clone, Debug)]
pub enum Subject {
    /// An organisation's signing and sealing certificate (the suite's algorithm).
    Organisation(Organisation),
    /// A person's signing certificate, by post (the suite's algorithm).
    Person(Person),
    /// A node's TLS certificate (ECDSA P-256), from the TLS root.
    Tls(TlsNode),
}

/// A certificate just issued, with its new private key.
#[derive(Debug)]
pub struct Issued {
    /// The certificate.
    pub certificate: Certificate,
    /// Its private key.
    pub key: SigningKey,
}

/// A CA directory.
#[derive(Debug)]
pub struct Authority {
    dir: PathBuf,
    suite: Suite,
    ca: Certificate,
    tls_ca: Certificate,
}

fn io_error(path: &Path, e: std::io::Error) -> Error {
    Error::Io(std::io::Error::new(
        e.kind(),
        format!("{}: {e}", path.display()),
    ))
}

fn read_text(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|e| io_error(path, e))
}

/// Writes `contents` to `path` through a synced temporary file and a rename, so a crash
/// leaves either the old or the new file.
fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = fs::File::create(&tmp).map_err(|e| io_error(&tmp, e))?;
    file.write_all(contents).map_err(|e| io_error(&tmp, e))?;
    file.sync_all().map_err(|e| io_error(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| io_error(path, e))?;
    Ok(())
}

fn suite_of(algorithm: KeyAlgorithm) -> Result<Suite> {
    match algorithm {
        KeyAlgorithm::Sm2 => Ok(Suite::Sm),
        KeyAlgorithm::Ed25519 => Ok(Suite::Intl),
        KeyAlgorithm::EcdsaP256 => Err(Error::InvalidArgument(
            "the voucher CA must be SM2 or Ed25519".into(),
        )),
    }
}

impl Authority {
    /// Makes a new CA directory: both roots, their keys under `pin`, empty CRLs.
    /// Refused when `dir` already holds a CA.
    pub fn init(
        dir: &Path,
        options: &InitOptions,
        pin: &Pin,
        now: OffsetDateTime,
        rng: &mut impl CryptoRng,
    ) -> Result<Authority> {
        if dir.join("ca.crt").exists() {
            return Err(Error::InvalidArgument(format!(
                "{} already holds a CA",
                dir.display()
            )));
        }
        fs::create_dir_all(dir.join("issued")).map_err(|e| io_error(dir, e))?;
        let validity = Validity::days_from(now, options.validity_days);
        let algorithm = match options.suite {
            Suite::Sm => KeyAlgorithm::Sm2,
            Suite::Intl => KeyAlgorithm::Ed25519,
        };
        let roots = [
            ("ca", algorithm, options.name.clone()),
            (
                "tls-ca",
                KeyAlgorithm::EcdsaP256,
                format!("{} TLS", options.name),
            ),
        ];
        for (stem, algorithm, name) in roots {
            let key = SigningKey::generate(algorithm, rng)?;
            let subject = CaSubject {
                organisation: options.organisation.clone(),
                common_name: name,
            };
            let cert = make_root_ca(
                &key,
                &subject,
                &Serial::random(rng),
                validity,
                Sm2CertId::default(),
            )?;
            KeyStoreFile::create(
                dir.join(format!("{stem}.key")),
                &key,
                pin,
                options.suite,
                KdfParams::MINIMUM,
                DEFAULT_MAX_ATTEMPTS,
                rng,
            )?;
            write_atomic(&dir.join(format!("{stem}.crt")), cert.to_pem()?.as_bytes())?;
        }
        write_atomic(&dir.join("revoked.txt"), b"")?;
        let authority = Authority::open(dir)?;
        authority.refresh_crls(pin, now)?;
        Ok(authority)
    }

    /// Opens an existing CA directory (no PIN needed to read it).
    pub fn open(dir: &Path) -> Result<Authority> {
        let ca = Certificate::from_pem(&read_text(&dir.join("ca.crt"))?)?;
        let tls_ca = Certificate::from_pem(&read_text(&dir.join("tls-ca.crt"))?)?;
        Ok(Authority {
            dir: dir.to_owned(),
            suite: suite_of(ca.public_key()?.algorithm())?,
            ca,
            tls_ca,
        })
    }

    /// The deployment's suite.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// The voucher root certificate.
    pub fn ca(&self) -> &Certificate {
        &self.ca
    }

    /// The TLS root certificate.
    pub fn tls_ca(&self) -> &Certificate {
        &self.tls_ca
    }

    /// The voucher root's current CRL.
    pub fn crl(&self) -> Result<Crl> {
        Crl::from_pem(&read_text(&self.dir.join("ca.crl"))?)
    }

    /// The TLS root's current CRL.
    pub fn tls_crl(&self) -> Result<Crl> {
        Crl::from_pem(&read_text(&self.dir.join("tls-ca.crl"))?)
    }

    fn unlock(&self, stem: &str, pin: &Pin) -> Result<CertificateAuthority> {
        let key = KeyStoreFile::open(self.dir.join(format!("{stem}.key"))).unlock(pin)?;
        let cert = if stem == "ca" { &self.ca } else { &self.tls_ca };
        CertificateAuthority::new(cert.clone(), key)
    }

    /// Issues a certificate with a new key: the suite's algorithm for organisations and
    /// people, P-256 for TLS. The certificate is recorded under `issued/`; the key is
    /// returned for the caller to put in the holder's own key store.
    pub fn issue(
        &self,
        pin: &Pin,
        subject: &Subject,
        validity_days: u32,
        now: OffsetDateTime,
        rng: &mut impl CryptoRng,
    ) -> Result<Issued> {
        let (stem, algorithm) = match subject {
            Subject::Tls(_) => ("tls-ca", KeyAlgorithm::EcdsaP256),
            _ => (
                "ca",
                match self.suite {
                    Suite::Sm => KeyAlgorithm::Sm2,
                    Suite::Intl => KeyAlgorithm::Ed25519,
                },
            ),
        };
        let authority = self.unlock(stem, pin)?;
        let key = SigningKey::generate(algorithm, rng)?;
        let serial = Serial::random(rng);
        let validity = Validity::days_from(now, validity_days);
        let public = key.verifying_key();
        let certificate = match subject {
            Subject::Organisation(o) => {
                authority.issue_organisation(public, o, &serial, validity)?
            }
            Subject::Person(p) => authority.issue_person(public, p, &serial, validity)?,
            Subject::Tls(t) => authority.issue_tls(public, t, &serial, validity)?,
        };
        write_atomic(
            &self.dir.join("issued").join(format!("{serial}.crt")),
            certificate.to_pem()?.as_bytes(),
        )?;
        Ok(Issued { certificate, key })
    }

    /// Every certificate issued, with whether it is revoked.
    pub fn issued(&self) -> Result<Vec<(Certificate, bool)>> {
        let revoked = self.revocations()?;
        let dir = self.dir.join("issued");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| io_error(&dir, e))? {
            let path = entry.map_err(|e| io_error(&dir, e))?.path();
            if path.extension().is_some_and(|e| e == "crt") {
                let cert = Certificate::from_pem(&read_text(&path)?)?;
                let is_revoked = revoked.iter().any(|r| r.serial == cert.serial());
                out.push((cert, is_revoked));
            }
        }
        out.sort_by_key(|(c, _)| c.validity().not_before);
        Ok(out)
    }

    fn revocations(&self) -> Result<Vec<Revocation>> {
        let path = self.dir.join("revoked.txt");
        let mut out = Vec::new();
        for (n, line) in read_text(&path)?.lines().enumerate() {
            let bad =
                || Error::InvalidArgument(format!("{}:{}: malformed line", path.display(), n + 1));
            let (serial, at) = line.split_once(' ').ok_or_else(bad)?;
            out.push(Revocation {
                serial: Serial::from_hex(serial)?,
                revoked_at: OffsetDateTime::parse(at, &Rfc3339).map_err(|_| bad())?,
            });
        }
        Ok(out)
    }

    /// Revokes an issued certificate and re-issues the CRLs. Refused for a serial this CA
    /// never issued or one already revoked.
    pub fn revoke(&self, pin: &Pin, serial: &Serial, now: OffsetDateTime) -> Result<()> {
        if !self
            .dir
            .join("issued")
            .join(format!("{serial}.crt"))
            .exists()
        {
            return Err(Error::InvalidArgument(format!(
                "no certificate {serial} was issued here"
            )));
        }
        let mut revoked = self.revocations()?;
        if revoked.iter().any(|r| &r.serial == serial) {
            return Err(Error::InvalidArgument(format!(
                "{serial} is already revoked"
            )));
        }
        // Unlock before writing anything, so a wrong PIN changes nothing.
        let authorities = [self.unlock("ca", pin)?, self.unlock("tls-ca", pin)?];
        revoked.push(Revocation {
            serial: serial.clone(),
            revoked_at: now,
        });
        let text: String = revoked
            .iter()
            .map(|r| {
                let at = r
                    .revoked_at
                    .format(&Rfc3339)
                    .map_err(|e| Error::InvalidArgument(e.to_string()))?;
                Ok(format!("{} {at}\n", r.serial))
            })
            .collect::<Result<_>>()?;
        write_atomic(&self.dir.join("revoked.txt"), text.as_bytes())?;
        self.write_crls(&authorities, &revoked, now)
    }

    /// Re-issues both CRLs (for example before the current ones expire).
    pub fn refresh_crls(&self, pin: &Pin, now: OffsetDateTime) -> Result<()> {
        let authorities = [self.unlock("ca", pin)?, self.unlock("tls-ca", pin)?];
        self.write_crls(&authorities, &self.revocations()?, now)
    }

    fn write_crls(
        &self,
        authorities: &[CertificateAuthority; 2],
        revoked: &[Revocation],
        now: OffsetDateTime,
    ) -> Result<()> {
        // CRL numbers must grow: seconds since the epoch do, for one CA directory.
        let number = u64::try_from(now.unix_timestamp()).unwrap_or(0);
        let next = now + time::Duration::days(i64::from(CRL_VALIDITY_DAYS));
        for (authority, stem) in authorities.iter().zip(["ca", "tls-ca"]) {
            // Each CRL lists the revoked certificates its own root issued.
            let own: Vec<Revocation> = revoked
                .iter()
                .filter(|r| self.issued_by(&r.serial, authority.certificate()))
                .cloned()
                .collect();
            let crl = authority.issue_crl(&own, number, now, next)?;
            write_atomic(
                &self.dir.join(format!("{stem}.crl")),
                crl.to_pem()?.as_bytes(),
            )?;
        }
        Ok(())
    }

    fn issued_by(&self, serial: &Serial, issuer: &Certificate) -> bool {
        let path = self.dir.join("issued").join(format!("{serial}.crt"));
        read_text(&path)
            .and_then(|pem| Certificate::from_pem(&pem))
            .is_ok_and(|c| c.issuer() == issuer.subject())
    }
}
