//! A small X.509 PKI for one deployment: a root CA (optionally one level of sub-CA),
//! certificates for organisations, people and nodes' TLS endpoints, CRLs, PEM in and out, and
//! path validation for the one- and two-level chains we issue.
//!
//! # Certificate profiles
//!
//! | kind | subject | key usage (critical) | other |
//! |---|---|---|---|
//! | root CA | `C=CN, O=…, CN=…` | keyCertSign, cRLSign | basicConstraints cA, pathLen 1; self-signed |
//! | sub-CA | `C=CN, O=…, CN=…` | keyCertSign, cRLSign | basicConstraints cA, pathLen 0 |
//! | organisation | `C=CN, O=<name>, OU=<role>, CN=<name>, serialNumber=<org code>` | digitalSignature, nonRepudiation | — |
//! | person | `C=CN, O=<org name>, OU=<role>, title=<post>, CN=<person>, serialNumber=<org code>, UID=<staff id>` | digitalSignature, nonRepudiation | — |
//! | TLS node | `C=CN, O=<org name>, CN=<node>` | digitalSignature | extKeyUsage serverAuth + clientAuth; subjectAltName DNS/IP |
//! | TLS node of an organisation | `C=CN, O=<org name>, OU=<role>, CN=<node>, serialNumber=<org code>` | digitalSignature | as TLS node; see [`CertificateAuthority::issue_tls_for_organisation`] |
//!
//! Every certificate carries a subjectKeyIdentifier, and every issued one an
//! authorityKeyIdentifier (both SHA-1 of the public key bits, RFC 5280 §4.2.1.2 method 1).
//! Signing certificates are SM2-with-SM3 (`sm`) or Ed25519 (`intl`). TLS keys are ECDSA P-256:
//! rustls cannot check SM2 signatures, so an `sm` deployment should issue its TLS certificates
//! from a separate P-256 (or Ed25519) TLS root made with [`make_root_ca`].
//!
//! # The SM2 user ID of certificate signatures
//!
//! GM/T 0015 signs certificates with the default SM2 user ID `1234567812345678`; OpenSSL 3.0
//! instead signs and checks X.509 SM2 signatures with an *empty* ID unless told otherwise, and
//! `openssl verify` has no way to set the ID for every certificate of a chain. A CA therefore
//! chooses with [`Sm2CertId`] (default: the standard ID), and [`validate_path`] accepts SM2
//! certificate and CRL signatures under either ID. Voucher signatures always use the standard ID.
//!
//! # Validation
//!
//! [`validate_path`] checks, at a `now` passed in (the library never reads the clock): the trust
//! anchor is a self-signed CA; each signature by its issuer; the validity period of every
//! certificate; basicConstraints, pathLen and keyCertSign of each issuer; the leaf's key usage
//! for the [`Purpose`]; no unknown critical extension; and revocation against the CRLs given
//! (each CRL's signature, cRLSign, and currency at `now`).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use der::asn1::{BitString, GeneralizedTime, Ia5String, PrintableString, UtcTime};
use der::asn1::{ObjectIdentifier, Uint, Utf8StringRef};
use der::pem::LineEnding;
use der::{Any, Decode, DecodePem, Encode, EncodePem, Tagged};
use spki::SubjectPublicKeyInfoRef;
use time::OffsetDateTime;
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::builder::{Builder, CertificateBuilder};
use x509_cert::certificate::{TbsCertificate, Version};
use x509_cert::crl::{CertificateList, RevokedCert, TbsCertList};
use x509_cert::ext::pkix::name::{DirectoryString, GeneralName};
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, CrlNumber, ExtendedKeyUsage, KeyUsage, KeyUsages,
    SubjectAltName, SubjectKeyIdentifier,
};
use x509_cert::ext::{Extension, ToExtension};
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::Time;

use crate::error::{Error, PathProblem, Result};
use crate::keys::{KeyAlgorithm, Signature, SigningKey, VerifyingKey};

// ----- OIDs ---------------------------------------------------------------------------------

const OID_COUNTRY: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.6");
const OID_ORG: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.10");
const OID_ORG_UNIT: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.11");
const OID_TITLE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.12");
const OID_COMMON_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");
const OID_SERIAL_NUMBER: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.5");
const OID_UID: ObjectIdentifier = ObjectIdentifier::new_unwrap("0.9.2342.19200300.100.1.1");

const OID_KP_SERVER_AUTH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.1");
const OID_KP_CLIENT_AUTH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.2");

const OID_CE_SKI: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.14");
const OID_CE_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.15");
const OID_CE_SAN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.17");
const OID_CE_BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");
const OID_CE_AKI: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.35");
const OID_CE_EKU: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37");

/// Extensions whose meaning [`validate_path`] enforces or that are informational only.
const KNOWN_EXTENSIONS: [ObjectIdentifier; 6] = [
    OID_CE_SKI,
    OID_CE_KEY_USAGE,
    OID_CE_SAN,
    OID_CE_BASIC_CONSTRAINTS,
    OID_CE_AKI,
    OID_CE_EKU,
];

/// At most this many intermediate CAs between a leaf and the trust anchor.
pub const MAX_INTERMEDIATES: usize = 1;

/// Upper bound on the characters of a name attribute (`ub-common-name` etc. of RFC 5280).
const MAX_NAME_CHARS: usize = 64;

// ----- subjects -----------------------------------------------------------------------------

/// The role of an organisation in treasury payment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OrgRole {
    /// The finance department (财政).
    Finance,
    /// The central bank's treasury (人民银行国库).
    Pboc,
    /// An agent bank (代理银行).
    AgentBank,
    /// A budget unit (预算单位).
    BudgetUnit,
}

impl OrgRole {
    /// All roles.
    pub const ALL: [OrgRole; 4] = [
        OrgRole::Finance,
        OrgRole::Pboc,
        OrgRole::AgentBank,
        OrgRole::BudgetUnit,
    ];

    /// The code put in the certificate's OU attribute.
    pub fn code(self) -> &'static str {
        match self {
            OrgRole::Finance => "finance",
            OrgRole::Pboc => "pboc",
            OrgRole::AgentBank => "agent-bank",
            OrgRole::BudgetUnit => "budget-unit",
        }
    }
}

impl fmt::Display for OrgRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for OrgRole {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        OrgRole::ALL
            .into_iter()
            .find(|r| r.code() == s)
            .ok_or_else(|| Error::InvalidArgument(format!("unknown organisation role {s:?}")))
    }
}

/// The post of a person who touches a voucher.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Post {
    /// 经办: makes the voucher.
    Maker,
    /// 审核: checks it.
    Checker,
    /// 签章: signs and seals it.
    Signer,
}

impl Post {
    /// All posts.
    pub const ALL: [Post; 3] = [Post::Maker, Post::Checker, Post::Signer];

    /// The code put in the certificate's `title` attribute.
    pub fn code(self) -> &'static str {
        match self {
            Post::Maker => "maker",
            Post::Checker => "checker",
            Post::Signer => "signer",
        }
    }
}

impl fmt::Display for Post {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Post {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Post::ALL
            .into_iter()
            .find(|p| p.code() == s)
            .ok_or_else(|| Error::InvalidArgument(format!("unknown post {s:?}")))
    }
}

/// An organisation to certify.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Organisation {
    /// Its role.
    pub role: OrgRole,
    /// Its organisation code (for example the unified social credit code or bank code):
    /// printable ASCII, put in `serialNumber`.
    pub code: String,
    /// Its name (may be Chinese), put in `O` and `CN`.
    pub name: String,
}

/// A person to certify, by post.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Person {
    /// The organisation the person works for.
    pub organisation: Organisation,
    /// The post.
    pub post: Post,
    /// The person's name, put in `CN`.
    pub name: String,
    /// Staff identifier within the organisation, put in `UID` (printable ASCII).
    pub staff_id: String,
}

/// A CA to certify (root or sub-CA).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaSubject {
    /// The organisation running the CA, put in `O`.
    pub organisation: String,
    /// The CA's name, put in `CN`.
    pub common_name: String,
}

/// A node's TLS endpoint to certify.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsNode {
    /// The organisation running the node, put in `O`.
    pub organisation: String,
    /// The node's name, put in `CN`.
    pub common_name: String,
    /// DNS names for subjectAltName.
    pub dns_names: Vec<String>,
    /// IP addresses for subjectAltName.
    pub ip_addresses: Vec<IpAddr>,
}

/// What the subject of a certificate says, read back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubjectInfo {
    /// `CN`.
    pub common_name: Option<String>,
    /// `O`.
    pub organisation: Option<String>,
    /// `OU`, if it is a known role.
    pub role: Option<OrgRole>,
    /// `serialNumber`: the organisation code.
    pub org_code: Option<String>,
    /// `title`, if it is a known post.
    pub post: Option<Post>,
    /// `UID`: the staff identifier.
    pub staff_id: Option<String>,
}

// ----- small value types --------------------------------------------------------------------

/// A certificate serial number: a positive integer of at most 20 bytes.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Serial(Vec<u8>);

impl Serial {
    /// A serial from a number (must not be zero).
    pub fn from_u64(n: u64) -> Result<Self> {
        if n == 0 {
            return Err(Error::InvalidArgument("serial number 0".into()));
        }
        Self::from_bytes(&n.to_be_bytes())
    }

    /// A random 128-bit positive serial.
    pub fn random(rng: &mut impl rand_core::CryptoRng) -> Self {
        let mut b = [0u8; 16];
        rng.fill_bytes(&mut b);
        b[0] = (b[0] & 0x7f) | 0x40; // positive, and 16 significant bytes
        Serial(b.to_vec())
    }

    /// A serial from big-endian bytes (leading zeros are dropped).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let trimmed: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
        if trimmed.is_empty() || trimmed.len() > 20 {
            return Err(Error::InvalidArgument(
                "serial number must be 1 to 20 non-zero bytes".into(),
            ));
        }
        Ok(Serial(trimmed))
    }

    /// Parse lower- or upper-case hex.
    pub fn from_hex(hex: &str) -> Result<Self> {
        if !hex.len().is_multiple_of(2) || hex.is_empty() {
            return Err(Error::InvalidArgument(
                "serial hex must have an even length".into(),
            ));
        }
        let bytes = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
            .collect::<std::result::Result<Vec<u8>, _>>()
            .map_err(|_| Error::InvalidArgument("serial is not hex".into()))?;
        Self::from_bytes(&bytes)
    }

    /// Big-endian bytes without leading zeros.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    fn to_x509(&self) -> Result<SerialNumber> {
        SerialNumber::new(&self.0).map_err(|e| Error::InvalidArgument(format!("serial: {e}")))
    }

    fn from_x509(s: &SerialNumber) -> Self {
        let trimmed: Vec<u8> = s
            .as_bytes()
            .iter()
            .copied()
            .skip_while(|b| *b == 0)
            .collect();
        Serial(trimmed)
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Serial({self})")
    }
}

/// A validity period (both ends inclusive, second precision).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    /// First instant the certificate is valid.
    pub not_before: OffsetDateTime,
    /// Last instant the certificate is valid.
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// From `start`, for `days` days.
    pub fn days_from(start: OffsetDateTime, days: u32) -> Self {
        Validity {
            not_before: start,
            not_after: start + time::Duration::days(i64::from(days)),
        }
    }

    /// Whether `now` is within the period.
    pub fn contains(&self, now: OffsetDateTime) -> bool {
        self.not_before <= now && now <= self.not_after
    }

    fn to_x509(self) -> Result<x509_cert::time::Validity> {
        if self.not_after < self.not_before {
            return Err(Error::InvalidArgument(
                "validity ends before it starts".into(),
            ));
        }
        Ok(x509_cert::time::Validity::new(
            to_x509_time(self.not_before)?,
            to_x509_time(self.not_after)?,
        ))
    }
}

fn to_x509_time(t: OffsetDateTime) -> Result<Time> {
    let secs = u64::try_from(t.unix_timestamp())
        .map_err(|_| Error::InvalidArgument("times before 1970 are not supported".into()))?;
    let dt = der::DateTime::from_unix_duration(Duration::from_secs(secs))
        .map_err(|e| Error::InvalidArgument(format!("time out of range: {e}")))?;
    // RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050.
    if dt.year() < 2050 {
        UtcTime::from_date_time(dt)
            .map(Time::UtcTime)
            .map_err(|e| Error::InvalidArgument(format!("time out of range: {e}")))
    } else {
        Ok(Time::GeneralTime(GeneralizedTime::from_date_time(dt)))
    }
}

fn from_x509_time(t: &Time) -> OffsetDateTime {
    let secs = i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX);
    OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

// ----- names --------------------------------------------------------------------------------

fn check_chars(what: &str, value: &str) -> Result<()> {
    let n = value.chars().count();
    if n == 0 || n > MAX_NAME_CHARS {
        return Err(Error::InvalidArgument(format!(
            "{what} must have 1 to {MAX_NAME_CHARS} characters"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::InvalidArgument(format!(
            "{what} contains control characters"
        )));
    }
    Ok(())
}

fn printable(what: &str, value: &str) -> Result<Any> {
    check_chars(what, value)?;
    let s = PrintableString::new(value).map_err(|_| {
        Error::InvalidArgument(format!(
            "{what} must use only letters, digits, space and '()+,-./:=?"
        ))
    })?;
    Any::encode_from(&s).map_err(Error::crypto)
}

fn utf8(what: &str, value: &str) -> Result<Any> {
    check_chars(what, value)?;
    let s = Utf8StringRef::new(value).map_err(Error::crypto)?;
    Any::encode_from(&s).map_err(Error::crypto)
}

fn build_name(attrs: Vec<(ObjectIdentifier, Any)>) -> Result<Name> {
    let mut seq = RdnSequence::default();
    for (oid, value) in attrs {
        let rdn = RelativeDistinguishedName::try_from(vec![AttributeTypeAndValue { oid, value }])
            .map_err(Error::crypto)?;
        seq.push(rdn);
    }
    let der_bytes = seq.to_der().map_err(Error::crypto)?;
    Name::from_der(&der_bytes).map_err(Error::crypto)
}

fn ca_name(s: &CaSubject) -> Result<Name> {
    build_name(vec![
        (OID_COUNTRY, printable("country", "CN")?),
        (OID_ORG, utf8("organisation", &s.organisation)?),
        (OID_COMMON_NAME, utf8("common name", &s.common_name)?),
    ])
}

fn org_name(o: &Organisation) -> Result<Name> {
    build_name(vec![
        (OID_COUNTRY, printable("country", "CN")?),
        (OID_ORG, utf8("organisation name", &o.name)?),
        (OID_ORG_UNIT, utf8("role", o.role.code())?),
        (OID_COMMON_NAME, utf8("organisation name", &o.name)?),
        (OID_SERIAL_NUMBER, printable("organisation code", &o.code)?),
    ])
}

fn person_name(p: &Person) -> Result<Name> {
    build_name(vec![
        (OID_COUNTRY, printable("country", "CN")?),
        (OID_ORG, utf8("organisation name", &p.organisation.name)?),
        (OID_ORG_UNIT, utf8("role", p.organisation.role.code())?),
        (OID_TITLE, utf8("post", p.post.code())?),
        (OID_COMMON_NAME, utf8("person name", &p.name)?),
        (
            OID_SERIAL_NUMBER,
            printable("organisation code", &p.organisation.code)?,
        ),
        (OID_UID, utf8("staff id", &p.staff_id)?),
    ])
}

fn tls_name(n: &TlsNode) -> Result<Name> {
    build_name(vec![
        (OID_COUNTRY, printable("country", "CN")?),
        (OID_ORG, utf8("organisation", &n.organisation)?),
        (OID_COMMON_NAME, utf8("node name", &n.common_name)?),
    ])
}

fn tls_org_name(o: &Organisation, n: &TlsNode) -> Result<Name> {
    build_name(vec![
        (OID_COUNTRY, printable("country", "CN")?),
        (OID_ORG, utf8("organisation name", &o.name)?),
        (OID_ORG_UNIT, utf8("role", o.role.code())?),
        (OID_COMMON_NAME, utf8("node name", &n.common_name)?),
        (OID_SERIAL_NUMBER, printable("organisation code", &o.code)?),
    ])
}

fn subject_info(name: &Name) -> SubjectInfo {
    let mut info = SubjectInfo::default();
    for atv in name.iter() {
        let Ok(value) = DirectoryString::try_from(&atv.value).map(String::from) else {
            continue;
        };
        match atv.oid {
            o if o == OID_COMMON_NAME => info.common_name = Some(value),
            o if o == OID_ORG => info.organisation = Some(value),
            o if o == OID_ORG_UNIT => info.role = value.parse().ok(),
            o if o == OID_SERIAL_NUMBER => info.org_code = Some(value),
            o if o == OID_TITLE => info.post = value.parse().ok(),
            o if o == OID_UID => info.staff_id = Some(value),
            _ => {}
        }
    }
    info
}

// ----- SM2 user ID for certificate signatures ----------------------------------------------

/// The SM2 user ID that a CA signs certificates and CRLs with (ignored for other algorithms).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sm2CertId {
    /// The GM/T 0009 / GM/T 0015 default ID `1234567812345678`, as Chinese CAs, GmSSL and
    /// Tongsuo use.
    #[default]
    Standard,
    /// The empty ID, which OpenSSL 3.0 uses for X.509 signatures when none is set: choose it
    /// when `openssl verify` (3.0) must accept the chain.
    Empty,
}

fn ca_sign(key: &SigningKey, id: Sm2CertId, tbs: &[u8]) -> Result<Signature> {
    match (key.algorithm(), id) {
        (KeyAlgorithm::Sm2, Sm2CertId::Empty) => key.sign_sm2_with_id("", tbs),
        _ => key.sign(tbs),
    }
}

/// Check a certificate or CRL signature; SM2 ones under the standard or the empty user ID.
fn ca_verify(key: &VerifyingKey, tbs: &[u8], sig: &Signature) -> Result<()> {
    match key.verify(tbs, sig) {
        Err(Error::BadSignature) if key.algorithm() == KeyAlgorithm::Sm2 => {
            key.verify_sm2_with_id("", tbs, sig)
        }
        other => other,
    }
}

// ----- certificates -------------------------------------------------------------------------

/// An X.509 certificate.
#[derive(Clone, PartialEq, Eq)]
pub struct Certificate {
    inner: x509_cert::Certificate,
    der: Vec<u8>,
}

impl Certificate {
    /// Parse DER.
    pub fn from_der(der_bytes: &[u8]) -> Result<Self> {
        let inner = x509_cert::Certificate::from_der(der_bytes)
            .map_err(|e| Error::malformed("certificate", e))?;
        Ok(Self {
            inner,
            der: der_bytes.to_vec(),
        })
    }

    /// Parse one `CERTIFICATE` PEM block.
    pub fn from_pem(pem: &str) -> Result<Self> {
        let inner = x509_cert::Certificate::from_pem(pem.trim().as_bytes())
            .map_err(|e| Error::malformed("certificate PEM", e))?;
        Self::from_x509(inner)
    }

    /// Parse every `CERTIFICATE` PEM block in `pem`, in order.
    pub fn chain_from_pem(pem: &str) -> Result<Vec<Self>> {
        x509_cert::Certificate::load_pem_chain(pem.as_bytes())
            .map_err(|e| Error::malformed("certificate PEM chain", e))?
            .into_iter()
            .map(Self::from_x509)
            .collect()
    }

    fn from_x509(inner: x509_cert::Certificate) -> Result<Self> {
        let der = inner.to_der().map_err(Error::crypto)?;
        Ok(Self { inner, der })
    }

    /// The DER bytes.
    pub fn to_der(&self) -> &[u8] {
        &self.der
    }

    /// A `CERTIFICATE` PEM block.
    pub fn to_pem(&self) -> Result<String> {
        self.inner.to_pem(LineEnding::LF).map_err(Error::crypto)
    }

    /// The parsed certificate, for anything this API does not cover.
    pub fn x509(&self) -> &x509_cert::Certificate {
        &self.inner
    }

    fn tbs(&self) -> &TbsCertificate {
        self.inner.tbs_certificate()
    }

    /// The serial number.
    pub fn serial(&self) -> Serial {
        Serial::from_x509(self.tbs().serial_number())
    }

    /// The subject as an RFC 4514 string.
    pub fn subject(&self) -> String {
        self.tbs().subject().to_string()
    }

    /// The issuer as an RFC 4514 string.
    pub fn issuer(&self) -> String {
        self.tbs().issuer().to_string()
    }

    /// The role, organisation code, post and names in the subject.
    pub fn subject_info(&self) -> SubjectInfo {
        subject_info(self.tbs().subject())
    }

    /// The validity period.
    pub fn validity(&self) -> Validity {
        let v = self.tbs().validity();
        Validity {
            not_before: from_x509_time(&v.not_before),
            not_after: from_x509_time(&v.not_after),
        }
    }

    /// The subject's public key.
    pub fn public_key(&self) -> Result<VerifyingKey> {
        let spki_der = self
            .tbs()
            .subject_public_key_info()
            .to_der()
            .map_err(Error::crypto)?;
        VerifyingKey::from_spki_der(&spki_der)
    }

    /// Whether basicConstraints marks this as a CA certificate.
    pub fn is_ca(&self) -> bool {
        self.basic_constraints()
            .ok()
            .flatten()
            .is_some_and(|b| b.ca)
    }

    fn basic_constraints(&self) -> Result<Option<BasicConstraints>> {
        self.extension::<BasicConstraints>()
    }

    fn key_usage(&self) -> Result<Option<KeyUsage>> {
        self.extension::<KeyUsage>()
    }

    fn extension<'a, T: Decode<'a> + der::oid::AssociatedOid>(&'a self) -> Result<Option<T>> {
        self.tbs()
            .get_extension::<T>()
            .map(|o| o.map(|(_, v)| v))
            .map_err(|e| Error::malformed("certificate extension", e))
    }

    /// The DNS names in subjectAltName.
    pub fn dns_names(&self) -> Vec<String> {
        self.subject_alt_names()
            .into_iter()
            .filter_map(|g| match g {
                GeneralName::DnsName(s) => Some(s.to_string()),
                _ => None,
            })
            .collect()
    }

    /// The IP addresses in subjectAltName.
    pub fn ip_addresses(&self) -> Vec<IpAddr> {
        self.subject_alt_names()
            .into_iter()
            .filter_map(|g| match g {
                GeneralName::IpAddress(o) => match o.as_bytes().len() {
                    4 => <[u8; 4]>::try_from(o.as_bytes()).ok().map(IpAddr::from),
                    16 => <[u8; 16]>::try_from(o.as_bytes()).ok().map(IpAddr::from),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    fn subject_alt_names(&self) -> Vec<GeneralName> {
        self.extension::<SubjectAltName>()
            .ok()
            .flatten()
            .map(|s| s.0)
            .unwrap_or_default()
    }

    /// Check this certificate's signature with `issuer_key`.
    fn verify_signature(&self, issuer_key: &VerifyingKey) -> Result<()> {
        check_signature_algorithm(
            &self.inner.signature_algorithm().oid,
            self.inner.signature_algorithm().parameters.as_ref(),
            &self.tbs().signature().oid,
            issuer_key,
        )?;
        let tbs = self.tbs().to_der().map_err(Error::crypto)?;
        let sig = self
            .inner
            .signature()
            .as_bytes()
            .ok_or(Error::BadSignature)?;
        ca_verify(issuer_key, &tbs, &Signature::from_bytes(sig))
    }
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("serial", &self.serial())
            .field("subject", &self.subject())
            .field("issuer", &self.issuer())
            .finish()
    }
}

fn check_signature_algorithm(
    outer: &ObjectIdentifier,
    params: Option<&Any>,
    inner: &ObjectIdentifier,
    issuer_key: &VerifyingKey,
) -> Result<()> {
    if outer != inner {
        return Err(Error::malformed(
            "signature algorithm",
            "outer and signed algorithm identifiers differ",
        ));
    }
    // Absent parameters are what we write; NULL is tolerated.
    if params.is_some_and(|p| p.tag() != der::Tag::Null) {
        return Err(Error::malformed(
            "signature algorithm",
            "unexpected parameters",
        ));
    }
    match KeyAlgorithm::from_signature_oid(outer) {
        Some(a) if a == issuer_key.algorithm() => Ok(()),
        Some(_) => Err(Error::BadSignature),
        None => Err(Error::Unsupported(format!("signature algorithm {outer}"))),
    }
}

// ----- issuing ------------------------------------------------------------------------------

/// What kind of certificate a profile makes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Root,
    SubCa,
    Signing,
    Tls,
}

struct Profile {
    issuer: Option<Name>,
    subject: Name,
    kind: Kind,
    san: Vec<GeneralName>,
}

impl BuilderProfile for Profile {
    fn get_issuer(&self, subject: &Name) -> Name {
        self.issuer.clone().unwrap_or_else(|| subject.clone())
    }

    fn get_subject(&self) -> Name {
        self.subject.clone()
    }

    fn build_extensions(
        &self,
        spk: SubjectPublicKeyInfoRef<'_>,
        issuer_spk: SubjectPublicKeyInfoRef<'_>,
        tbs: &TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        let subject = tbs.subject();
        let mut exts: Vec<Extension> = Vec::new();
        let (ca, path_len, usages) = match self.kind {
            Kind::Root => (true, Some(1), KeyUsages::KeyCertSign | KeyUsages::CRLSign),
            Kind::SubCa => (true, Some(0), KeyUsages::KeyCertSign | KeyUsages::CRLSign),
            Kind::Signing => (
                false,
                None,
                KeyUsages::DigitalSignature | KeyUsages::NonRepudiation,
            ),
            Kind::Tls => (false, None, KeyUsages::DigitalSignature.into()),
        };
        let bc = BasicConstraints {
            ca,
            path_len_constraint: path_len,
        };
        exts.push((true, &bc).to_extension(subject, &exts)?);
        exts.push((true, &KeyUsage(usages)).to_extension(subject, &exts)?);
        if self.kind == Kind::Tls {
            let eku = ExtendedKeyUsage(vec![OID_KP_SERVER_AUTH, OID_KP_CLIENT_AUTH]);
            exts.push((false, &eku).to_extension(subject, &exts)?);
            if !self.san.is_empty() {
                let san = SubjectAltName(self.san.clone());
                exts.push((false, &san).to_extension(subject, &exts)?);
            }
        }
        let ski = SubjectKeyIdentifier::try_from(spk)?;
        exts.push((false, &ski).to_extension(subject, &exts)?);
        if self.kind != Kind::Root {
            let issuer_ski = SubjectKeyIdentifier::try_from(issuer_spk)?;
            let aki = AuthorityKeyIdentifier {
                key_identifier: Some(issuer_ski.0),
                ..Default::default()
            };
            exts.push((false, &aki).to_extension(subject, &exts)?);
        }
        Ok(exts)
    }
}

fn build_cert(
    profile: Profile,
    serial: &Serial,
    validity: Validity,
    subject_key: &VerifyingKey,
    issuer_key: &SigningKey,
    sm2_id: Sm2CertId,
) -> Result<Certificate> {
    let spki_der = subject_key.to_spki_der()?;
    let spki = spki::SubjectPublicKeyInfoOwned::from_der(&spki_der).map_err(Error::crypto)?;
    let mut builder =
        CertificateBuilder::new(profile, serial.to_x509()?, validity.to_x509()?, spki)
            .map_err(Error::crypto)?;
    let tbs = builder.finalize(issuer_key).map_err(Error::crypto)?;
    let sig = ca_sign(issuer_key, sm2_id, &tbs)?;
    let bits = BitString::from_bytes(sig.as_bytes()).map_err(Error::crypto)?;
    let cert = builder.assemble(bits, issuer_key).map_err(Error::crypto)?;
    let cert = Certificate::from_x509(cert)?;
    debug_assert_eq!(cert.inner.tbs_certificate().version(), Version::V3);
    Ok(cert)
}

/// Make a self-signed root CA certificate for `key` (SM2 for `sm`, Ed25519 for `intl`, or
/// P-256 for a TLS-only root). `sm2_id` matters only for SM2 keys.
pub fn make_root_ca(
    key: &SigningKey,
    subject: &CaSubject,
    serial: &Serial,
    validity: Validity,
    sm2_id: Sm2CertId,
) -> Result<Certificate> {
    let profile = Profile {
        issuer: None,
        subject: ca_name(subject)?,
        kind: Kind::Root,
        san: Vec::new(),
    };
    build_cert(profile, serial, validity, key.verifying_key(), key, sm2_id)
}

/// A certificate authority: its certificate and its private key.
#[derive(Debug)]
pub struct CertificateAuthority {
    certificate: Certificate,
    key: SigningKey,
    sm2_id: Sm2CertId,
}

impl CertificateAuthority {
    /// Pair a CA certificate with its key. Refused if the key does not match the certificate
    /// or the certificate is not a CA allowed to sign certificates.
    pub fn new(certificate: Certificate, key: SigningKey) -> Result<Self> {
        if certificate.public_key()? != *key.verifying_key() {
            return Err(Error::InvalidArgument(
                "the key does not match the CA certificate".into(),
            ));
        }
        let ku = certificate.key_usage()?;
        if !certificate.is_ca() || !ku.is_some_and(|k| k.key_cert_sign()) {
            return Err(Error::InvalidArgument(
                "the certificate is not a CA certificate".into(),
            ));
        }
        Ok(Self {
            certificate,
            key,
            sm2_id: Sm2CertId::default(),
        })
    }

    /// Sign with this SM2 user ID from now on (the default is [`Sm2CertId::Standard`]).
    pub fn with_sm2_cert_id(mut self, sm2_id: Sm2CertId) -> Self {
        self.sm2_id = sm2_id;
        self
    }

    /// The CA's certificate.
    pub fn certificate(&self) -> &Certificate {
        &self.certificate
    }

    /// The CA's key.
    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    fn profile(&self, subject: Name, kind: Kind, san: Vec<GeneralName>) -> Profile {
        Profile {
            issuer: Some(self.certificate.tbs().subject().clone()),
            subject,
            kind,
            san,
        }
    }

    fn issue(
        &self,
        profile: Profile,
        subject_key: &VerifyingKey,
        serial: &Serial,
        validity: Validity,
    ) -> Result<Certificate> {
        let ca_validity = self.certificate.validity();
        if validity.not_before < ca_validity.not_before
            || validity.not_after > ca_validity.not_after
        {
            return Err(Error::InvalidArgument(
                "the validity period exceeds the CA's".into(),
            ));
        }
        build_cert(
            profile,
            serial,
            validity,
            subject_key,
            &self.key,
            self.sm2_id,
        )
    }

    /// Issue a sub-CA certificate (pathLen 0: it may issue only end-entity certificates).
    pub fn issue_sub_ca(
        &self,
        subject_key: &VerifyingKey,
        subject: &CaSubject,
        serial: &Serial,
        validity: Validity,
    ) -> Result<Certificate> {
        if self
            .certificate
            .basic_constraints()?
            .and_then(|b| b.path_len_constraint)
            == Some(0)
        {
            return Err(Error::InvalidArgument(
                "this CA may not issue CA certificates (pathLen 0)".into(),
            ));
        }
        let p = self.profile(ca_name(subject)?, Kind::SubCa, Vec::new());
        self.issue(p, subject_key, serial, validity)
    }

    /// Issue an organisation's signing certificate (digitalSignature + nonRepudiation).
    pub fn issue_organisation(
        &self,
        subject_key: &VerifyingKey,
        organisation: &Organisation,
        serial: &Serial,
        validity: Validity,
    ) -> Result<Certificate> {
        let p = self.profile(org_name(organisation)?, Kind::Signing, Vec::new());
        self.issue(p, subject_key, serial, validity)
    }

    /// Issue a person's signing certificate (digitalSignature + nonRepudiation).
    pub fn issue_person(
        &self,
        subject_key: &VerifyingKey,
        person: &Person,
        serial: &Serial,
        validity: Validity,
    ) -> Result<Certificate> {
        let p = self.profile(person_name(person)?, Kind::Signing, Vec::new());
        self.issue(p, subject_key, serial, validity)
    }

    /// Issue a node's TLS certificate (serverAuth + clientAuth). The key must be ECDSA P-256
    /// or Ed25519, which rustls can check; at least one DNS name or IP address is required.
    pub fn issue_tls(
        &self,
        subject_key: &VerifyingKey,
        node: &TlsNode,
        serial: &Serial,
        validity: Validity,
    ) -> Result<Certificate> {
        self.issue_tls_named(tls_name(node)?, subject_key, node, serial, validity)
    }

    /// Issue the TLS certificate of a node that speaks for `organisation`: as
    /// [`issue_tls`](Self::issue_tls), but the subject also carries the organisation's role
    /// (`OU`) and code (`serialNumber`), so that a peer can read them after the handshake
    /// ([`Certificate::subject_info`]). `node.organisation` must be the organisation's name.
    pub fn issue_tls_for_organisation(
        &self,
        subject_key: &VerifyingKey,
        organisation: &Organisation,
        node: &TlsNode,
        serial: &Serial,
        validity: Validity,
    ) -> Result<Certificate> {
        if node.organisation != organisation.name {
            return Err(Error::InvalidArgument(
                "the node's organisation is not the organisation's name".into(),
            ));
        }
        let subject = tls_org_name(organisation, node)?;
        self.issue_tls_named(subject, subject_key, node, serial, validity)
    }

    fn issue_tls_named(
        &self,
        subject: Name,
        subject_key: &VerifyingKey,
        node: &TlsNode,
        serial: &Serial,
        validity: Validity,
    ) -> Result<Certificate> {
        if subject_key.algorithm() == KeyAlgorithm::Sm2 {
            return Err(Error::InvalidArgument(
                "TLS certificates take a P-256 or Ed25519 key".into(),
            ));
        }
        if node.dns_names.is_empty() && node.ip_addresses.is_empty() {
            return Err(Error::InvalidArgument(
                "a TLS certificate needs a DNS name or an IP address".into(),
            ));
        }
        let mut san = Vec::new();
        for dns in &node.dns_names {
            let valid = !dns.is_empty()
                && dns.len() <= 253
                && dns
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'*');
            if !valid {
                return Err(Error::InvalidArgument(format!("not a DNS name: {dns:?}")));
            }
            san.push(GeneralName::DnsName(
                Ia5String::new(dns).map_err(Error::crypto)?,
            ));
        }
        for ip in &node.ip_addresses {
            san.push(GeneralName::from(*ip));
        }
        let p = self.profile(subject, Kind::Tls, san);
        self.issue(p, subject_key, serial, validity)
    }

    /// Issue a CRL listing `revoked`, numbered `crl_number` (which must grow with every CRL),
    /// current from `this_update` until `next_update`.
    pub fn issue_crl(
        &self,
        revoked: &[Revocation],
        crl_number: u64,
        this_update: OffsetDateTime,
        next_update: OffsetDateTime,
    ) -> Result<Crl> {
        if next_update <= this_update {
            return Err(Error::InvalidArgument(
                "nextUpdate must be after thisUpdate".into(),
            ));
        }
        if !self.certificate.key_usage()?.is_some_and(|k| k.crl_sign()) {
            return Err(Error::InvalidArgument("this CA may not sign CRLs".into()));
        }
        let issuer = self.certificate.tbs().subject().clone();
        let number_bytes = crl_number.to_be_bytes();
        let number = CrlNumber(Uint::new(&number_bytes).map_err(Error::crypto)?);
        let spki = self.certificate.tbs().subject_public_key_info();
        let spki_der = spki.to_der().map_err(Error::crypto)?;
        let ski = SubjectKeyIdentifier::try_from(
            SubjectPublicKeyInfoRef::from_der(&spki_der).map_err(Error::crypto)?,
        )
        .map_err(Error::crypto)?;
        let aki = AuthorityKeyIdentifier {
            key_identifier: Some(ski.0),
            ..Default::default()
        };
        let number_ext = (false, &number)
            .to_extension(&issuer, &[])
            .map_err(Error::crypto)?;
        let aki_ext = (false, &aki)
            .to_extension(&issuer, std::slice::from_ref(&number_ext))
            .map_err(Error::crypto)?;
        let exts = vec![number_ext, aki_ext];
        let entries = revoked
            .iter()
            .map(|r| {
                Ok(RevokedCert {
                    serial_number: r.serial.to_x509()?,
                    revocation_date: to_x509_time(r.revoked_at)?,
                    crl_entry_extensions: None,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let tbs = TbsCertList {
            version: Version::V2,
            signature: spki::AlgorithmIdentifierOwned {
                oid: self.key.algorithm().signature_oid(),
                parameters: None,
            },
            issuer,
            this_update: to_x509_time(this_update)?,
            next_update: Some(to_x509_time(next_update)?),
            revoked_certificates: if entries.is_empty() {
                None
            } else {
                Some(entries)
            },
            crl_extensions: Some(exts),
        };
        let tbs_der = tbs.to_der().map_err(Error::crypto)?;
        let sig = ca_sign(&self.key, self.sm2_id, &tbs_der)?;
        let list = CertificateList {
            signature_algorithm: tbs.signature.clone(),
            tbs_cert_list: tbs,
            signature: BitString::from_bytes(sig.as_bytes()).map_err(Error::crypto)?,
        };
        Crl::from_x509(list)
    }
}

/// One revoked certificate, for [`CertificateAuthority::issue_crl`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revocation {
    /// Serial of the revoked certificate.
    pub serial: Serial,
    /// When it was revoked.
    pub revoked_at: OffsetDateTime,
}

// ----- CRLs ---------------------------------------------------------------------------------

/// A certificate revocation list.
#[derive(Clone, PartialEq, Eq)]
pub struct Crl {
    inner: CertificateList,
    der: Vec<u8>,
}

impl Crl {
    fn from_x509(inner: CertificateList) -> Result<Self> {
        let der = inner.to_der().map_err(Error::crypto)?;
        Ok(Self { inner, der })
    }

    /// Parse DER.
    pub fn from_der(der_bytes: &[u8]) -> Result<Self> {
        let inner = CertificateList::from_der(der_bytes).map_err(|e| Error::malformed("CRL", e))?;
        Ok(Self {
            inner,
            der: der_bytes.to_vec(),
        })
    }

    /// Parse an `X509 CRL` PEM block.
    pub fn from_pem(pem: &str) -> Result<Self> {
        let inner = CertificateList::from_pem(pem.trim().as_bytes())
            .map_err(|e| Error::malformed("CRL PEM", e))?;
        Self::from_x509(inner)
    }

    /// The DER bytes.
    pub fn to_der(&self) -> &[u8] {
        &self.der
    }

    /// An `X509 CRL` PEM block.
    pub fn to_pem(&self) -> Result<String> {
        self.inner.to_pem(LineEnding::LF).map_err(Error::crypto)
    }

    /// The issuer as an RFC 4514 string.
    pub fn issuer(&self) -> String {
        self.inner.tbs_cert_list.issuer.to_string()
    }

    /// When this CRL was issued.
    pub fn this_update(&self) -> OffsetDateTime {
        from_x509_time(&self.inner.tbs_cert_list.this_update)
    }

    /// When the next CRL is due, if stated.
    pub fn next_update(&self) -> Option<OffsetDateTime> {
        self.inner
            .tbs_cert_list
            .next_update
            .as_ref()
            .map(from_x509_time)
    }

    /// The serials listed.
    pub fn revoked_serials(&self) -> Vec<Serial> {
        self.inner
            .tbs_cert_list
            .revoked_certificates
            .iter()
            .flatten()
            .map(|r| Serial::from_x509(&r.serial_number))
            .collect()
    }

    /// Whether `serial` is listed.
    pub fn lists(&self, serial: &Serial) -> bool {
        self.inner
            .tbs_cert_list
            .revoked_certificates
            .iter()
            .flatten()
            .any(|r| Serial::from_x509(&r.serial_number) == *serial)
    }

    /// Whether the CRL is current at `now`: issued, and not past nextUpdate.
    pub fn is_current(&self, now: OffsetDateTime) -> bool {
        self.this_update() <= now && self.next_update().is_none_or(|n| now <= n)
    }

    /// Check the CRL's signature against its issuer's certificate (and that the issuer may
    /// sign CRLs).
    pub fn verify_signature(&self, issuer: &Certificate) -> Result<()> {
        if self.inner.tbs_cert_list.issuer != *issuer.tbs().subject() {
            return Err(Error::InvalidArgument(
                "the CRL was not issued by this certificate's subject".into(),
            ));
        }
        if !issuer.key_usage()?.is_some_and(|k| k.crl_sign()) {
            return Err(Error::WrongKeyUsage {
                serial: issuer.serial().to_string(),
                purpose: "signing CRLs",
            });
        }
        let key = issuer.public_key()?;
        check_signature_algorithm(
            &self.inner.signature_algorithm.oid,
            self.inner.signature_algorithm.parameters.as_ref(),
            &self.inner.tbs_cert_list.signature.oid,
            &key,
        )?;
        let tbs = self.inner.tbs_cert_list.to_der().map_err(Error::crypto)?;
        let sig = self.inner.signature.as_bytes().ok_or(Error::BadSignature)?;
        ca_verify(&key, &tbs, &Signature::from_bytes(sig))
    }
}

impl fmt::Debug for Crl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Crl")
            .field("issuer", &self.issuer())
            .field("this_update", &self.this_update())
            .field("revoked", &self.revoked_serials())
            .finish()
    }
}

// ----- validation ---------------------------------------------------------------------------

/// What a leaf certificate is to be used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Signing vouchers and seals: keyUsage digitalSignature and nonRepudiation.
    VoucherSigning,
    /// A TLS server: digitalSignature and extKeyUsage serverAuth.
    TlsServer,
    /// A TLS client: digitalSignature and extKeyUsage clientAuth.
    TlsClient,
}

impl Purpose {
    fn describe(self) -> &'static str {
        match self {
            Purpose::VoucherSigning => "voucher signing",
            Purpose::TlsServer => "TLS server authentication",
            Purpose::TlsClient => "TLS client authentication",
        }
    }
}

/// How to treat revocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RevocationPolicy {
    /// Every issuing CA in the path must have a current CRL among those given.
    RequireCrl,
    /// Check the CRLs that are given; an issuer without one is not an error.
    CheckIfPresent,
}

/// Everything [`validate_path`] needs besides the certificates.
#[derive(Clone, Copy, Debug)]
pub struct ValidationOptions<'a> {
    /// The time at which the path must be valid.
    pub now: OffsetDateTime,
    /// What the leaf is to be used for.
    pub purpose: Purpose,
    /// CRLs to check against (for the root and any sub-CA).
    pub crls: &'a [Crl],
    /// Whether a current CRL from every issuer is required.
    pub revocation: RevocationPolicy,
}

/// A path that [`validate_path`] accepted.
#[derive(Clone, Debug)]
pub struct ValidatedPath {
    /// The leaf's public key, ready to verify with.
    pub leaf_key: VerifyingKey,
    /// The leaf's subject.
    pub subject: SubjectInfo,
    /// The leaf's serial.
    pub serial: Serial,
    /// Serials from the leaf up to (not including) the trust anchor.
    pub path_serials: Vec<Serial>,
}

fn untrusted(cert: &Certificate, problem: PathProblem) -> Error {
    Error::Untrusted {
        serial: cert.serial().to_string(),
        problem,
    }
}

fn check_critical_extensions(cert: &Certificate) -> Result<()> {
    for ext in cert.tbs().extensions().into_iter().flatten() {
        if ext.critical && !KNOWN_EXTENSIONS.contains(&ext.extn_id) {
            return Err(untrusted(
                cert,
                PathProblem::UnknownCriticalExtension(ext.extn_id.to_string()),
            ));
        }
    }
    Ok(())
}

fn check_time(cert: &Certificate, now: OffsetDateTime) -> Result<()> {
    if cert.validity().contains(now) {
        Ok(())
    } else {
        Err(Error::NotValidAtTime {
            serial: cert.serial().to_string(),
        })
    }
}

/// Check that `issuer` may issue `depth` more levels of CA below it and sign certificates.
fn check_issuer(issuer: &Certificate, cas_below: usize) -> Result<()> {
    let bc = issuer.basic_constraints()?;
    let Some(bc) = bc.filter(|b| b.ca) else {
        return Err(untrusted(issuer, PathProblem::IssuerNotCa));
    };
    if !issuer.key_usage()?.is_some_and(|k| k.key_cert_sign()) {
        return Err(untrusted(issuer, PathProblem::IssuerNotCa));
    }
    if let Some(limit) = bc.path_len_constraint
        && cas_below > usize::from(limit)
    {
        return Err(untrusted(issuer, PathProblem::TooLong));
    }
    Ok(())
}

fn check_leaf_usage(leaf: &Certificate, purpose: Purpose) -> Result<()> {
    let wrong = || Error::WrongKeyUsage {
        serial: leaf.serial().to_string(),
        purpose: purpose.describe(),
    };
    if leaf.is_ca() {
        return Err(untrusted(leaf, PathProblem::LeafIsCa));
    }
    let ku = leaf.key_usage()?.ok_or_else(wrong)?;
    let eku = leaf.extension::<ExtendedKeyUsage>()?;
    let has_eku = |oid: ObjectIdentifier| eku.as_ref().is_some_and(|e| e.0.contains(&oid));
    let ok = match purpose {
        Purpose::VoucherSigning => {
            ku.digital_signature() && ku.non_repudiation() && !ku.key_cert_sign()
        }
        Purpose::TlsServer => ku.digital_signature() && has_eku(OID_KP_SERVER_AUTH),
        Purpose::TlsClient => ku.digital_signature() && has_eku(OID_KP_CLIENT_AUTH),
    };
    if ok { Ok(()) } else { Err(wrong()) }
}

/// Check `cert` (issued by `issuer`) against the CRLs.
fn check_revocation(
    cert: &Certificate,
    issuer: &Certificate,
    options: &ValidationOptions<'_>,
) -> Result<()> {
    let mut found_current = false;
    for crl in options.crls {
        if crl.inner.tbs_cert_list.issuer != *issuer.tbs().subject() {
            continue;
        }
        crl.verify_signature(issuer)?;
        if !crl.is_current(options.now) {
            continue;
        }
        found_current = true;
        if crl.lists(&cert.serial()) {
            return Err(Error::Revoked {
                serial: cert.serial().to_string(),
            });
        }
    }
    if !found_current && options.revocation == RevocationPolicy::RequireCrl {
        return Err(Error::NoCurrentCrl {
            issuer: issuer.subject(),
        });
    }
    Ok(())
}

/// Validate `leaf` up to `anchor` (a trusted self-signed root), through at most
/// [`MAX_INTERMEDIATES`] certificates taken from `intermediates`.
pub fn validate_path(
    leaf: &Certificate,
    intermediates: &[Certificate],
    anchor: &Certificate,
    options: &ValidationOptions<'_>,
) -> Result<ValidatedPath> {
    // The trust anchor: a self-signed CA, valid now.
    if anchor.tbs().subject() != anchor.tbs().issuer() || verify_issued_by(anchor, anchor).is_err()
    {
        return Err(untrusted(anchor, PathProblem::BadTrustAnchor));
    }
    check_critical_extensions(anchor)?;
    check_time(anchor, options.now)?;

    // Build the path leaf → … → anchor by issuer name.
    let mut path: Vec<&Certificate> = vec![leaf];
    loop {
        let Some(&current) = path.last() else {
            unreachable!("the path starts with the leaf");
        };
        if current.tbs().issuer() == anchor.tbs().subject() {
            break;
        }
        if path.len() > MAX_INTERMEDIATES {
            return Err(untrusted(current, PathProblem::TooLong));
        }
        let next = intermediates.iter().find(|c| {
            c.tbs().subject() == current.tbs().issuer() && !path.iter().any(|p| p.der == c.der)
        });
        match next {
            Some(c) => path.push(c),
            None => return Err(untrusted(current, PathProblem::UnknownIssuer)),
        }
    }

    // Check each certificate against its issuer, from the top down.
    let n = path.len();
    for i in (0..n).rev() {
        let cert = path[i];
        let issuer = if i + 1 < n { path[i + 1] } else { anchor };
        let cas_below = i; // CA certificates below `issuer` in the path
        check_issuer(issuer, cas_below)?;
        check_critical_extensions(cert)?;
        verify_issued_by(cert, issuer)?;
        check_time(cert, options.now)?;
        if i > 0 {
            check_issuer(cert, i - 1)?;
        }
    }
    check_leaf_usage(leaf, options.purpose)?;
    // Revocation last, so that an expired or misused certificate is reported as such.
    for i in (0..n).rev() {
        let issuer = if i + 1 < n { path[i + 1] } else { anchor };
        check_revocation(path[i], issuer, options)?;
    }

    Ok(ValidatedPath {
        leaf_key: leaf.public_key()?,
        subject: leaf.subject_info(),
        serial: leaf.serial(),
        path_serials: path.iter().map(|c| c.serial()).collect(),
    })
}

/// Verifies that `issuer`'s key signed `cert`, once per pair per process (see
/// [`crate::verified`]).
fn verify_issued_by(cert: &Certificate, issuer: &Certificate) -> Result<()> {
    crate::verified::once(&[b"certificate", &issuer.der, &cert.der], || {
        cert.verify_signature(&issuer.public_key()?)
    })
}

/// Refuses a signing key that is not the suite's algorithm or does not match the
/// certificate it signs under: every signing path (voucher signatures, seals, batches)
/// checks this first. `who` names the key in the error ("signer", "sealmaker").
pub(crate) fn check_signing_key(
    suite: crate::suite::Suite,
    key: &crate::keys::VerifyingKey,
    certificate: &Certificate,
    who: &str,
) -> Result<()> {
    if key.algorithm() != suite.signature_algorithm() {
        return Err(Error::InvalidArgument(format!(
            "the {suite} suite signs with {}, not {}",
            suite.signature_algorithm(),
            key.algorithm()
        )));
    }
    if certificate.public_key()? != *key {
        return Err(Error::InvalidArgument(format!(
            "the {who}'s key does not match the certificate"
        )));
    }
    Ok(())
}

// ----- trust in certificate paths, for signatures and seals ------------------------------

/// What the verifier trusts, and when it checks.
#[derive(Clone, Copy, Debug)]
pub struct TrustContext<'a> {
    /// The deployment's root certificate.
    pub anchor: &'a Certificate,
    /// Sub-CA certificates that may appear in paths.
    pub intermediates: &'a [Certificate],
    /// CRLs to check revocation against.
    pub crls: &'a [Crl],
    /// Whether every issuer must have a current CRL.
    pub revocation: RevocationPolicy,
    /// The time of the check.
    pub now: OffsetDateTime,
}

/// The outcome of checking one certificate path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathStatus {
    /// The path is valid at the time of the check and nothing in it is revoked.
    Valid,
    /// A certificate in the path is revoked.
    Revoked,
    /// A certificate in the path is expired or not yet valid.
    NotValidAtTime,
    /// No current CRL was available where one is required.
    NoCurrentCrl,
    /// Any other refusal (untrusted issuer, bad certificate signature, wrong key usage, …).
    Refused(String),
}

impl fmt::Display for PathStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathStatus::Valid => f.write_str("valid"),
            PathStatus::Revoked => f.write_str("revoked"),
            PathStatus::NotValidAtTime => f.write_str("expired or not yet valid"),
            PathStatus::NoCurrentCrl => f.write_str("no current CRL"),
            PathStatus::Refused(why) => f.write_str(why),
        }
    }
}

/// Validate `cert`'s path for signing vouchers and seals, as `trust` says.
pub(crate) fn path_status(cert: &Certificate, trust: &TrustContext<'_>) -> PathStatus {
    let options = ValidationOptions {
        now: trust.now,
        purpose: Purpose::VoucherSigning,
        crls: trust.crls,
        revocation: trust.revocation,
    };
    match validate_path(cert, trust.intermediates, trust.anchor, &options) {
        Ok(_) => PathStatus::Valid,
        Err(Error::Revoked { .. }) => PathStatus::Revoked,
        Err(Error::NotValidAtTime { .. }) => PathStatus::NotValidAtTime,
        Err(Error::NoCurrentCrl { .. }) => PathStatus::NoCurrentCrl,
        Err(e) => PathStatus::Refused(e.to_string()),
    }
}
