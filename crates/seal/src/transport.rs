//! Mutual TLS between the parties' nodes, configured from the deployment PKI.
//!
//! [`server_config`] and [`client_config`] build rustls configurations in which **both** ends
//! present a certificate and **both** check the other's against the deployment's TLS root and
//! its current CRLs; [`PeerIdentity`] reads, after the handshake, which organisation (role and
//! organisation code) is at the other end, so that the exchange protocol can check that a
//! voucher comes from the party it claims to come from.
//!
//! # What the configurations enforce
//!
//! * TLS 1.3 only, with the `ring` provider's suites (AES-GCM, ChaCha20-Poly1305) and key
//!   exchange groups. rustls is built without its TLS 1.2 code.
//! * The peer's chain must lead to the deployment root (at most one sub-CA), every certificate
//!   in it must be within its validity period at the configuration's clock, the leaf must
//!   carry the extended key usage for its side (serverAuth for a server, clientAuth for a
//!   client) and keyUsage digitalSignature, no certificate may be revoked, and (by default)
//!   every issuer must have a current CRL among those given — see [`PeerTrust`].
//! * A client also checks that the server's certificate names the host it dialled
//!   (subjectAltName DNS name or IP address, via webpki's name matching).
//! * Session resumption is off on both sides, so that every connection is checked against the
//!   CRLs and the clock of that moment (a resumed TLS 1.3 session skips certificate checks).
//!   A full handshake costs about a millisecond here, and links are long-lived anyway.
//!
//! # Why a custom verifier rather than `WebPkiClientVerifier`
//!
//! The verifiers ([`PeerVerifier`]) call [`pki::validate_path`] — the same validator that
//! checks the certificates of signed vouchers — instead of rustls' `WebPkiClientVerifier` /
//! `WebPkiServerVerifier` with their built-in CRL support:
//!
//! * **One policy.** webpki accepts an end-entity certificate *without* an extendedKeyUsage
//!   extension for any purpose. In an `intl` deployment the same root issues organisations'
//!   and people's signing certificates (no EKU), and with webpki their keys would pass as TLS
//!   clients and servers. [`pki::validate_path`] requires the EKU, refuses CA certificates as
//!   leaves, unknown critical extensions and paths longer than ours, and (with
//!   [`RevocationPolicy::RequireCrl`]) a missing or stale CRL — exactly what it refuses for
//!   voucher certificates.
//! * **SM2 roots.** Our validator checks SM2-with-SM3 certificate and CRL signatures; webpki
//!   cannot. So an `sm` deployment may issue its nodes' P-256 TLS certificates from its SM2
//!   root; only the nodes' own keys must be P-256 or Ed25519, because rustls signs and checks
//!   the handshake itself with them (that part still uses rustls' and ring's code:
//!   [`rustls::crypto::verify_tls13_signature`]).
//! * **The clock is passed in.** The time rustls hands the verifier comes from the
//!   configuration's [`TimeProvider`], so tests and replays can fix it ([`FixedClock`]); in
//!   production pass [`rustls::time_provider::DefaultTimeProvider`].
//!
//! The price is that the path validation is our own code rather than webpki's well-reviewed
//! one; it is short, restricted to the one- and two-level paths we issue, and tested by the
//! PKI tests and by the handshake refusals in `tests/transport.rs`.
//!
//! Refusals reach rustls as the closest [`CertificateError`] (so the peer gets a meaningful
//! alert: `certificate_revoked`, `certificate_expired`, `unknown_ca`, …); where none fits, the
//! crate's [`Error`] travels inside `CertificateError::Other`.
//!
//! # SM cipher suites and TLCP
//!
//! rustls has no SM cipher suites (RFC 8998) and no Rust stack speaks TLCP (GB/T 38636), so
//! the wire is protected with ECDHE, AES-GCM/ChaCha20 and P-256/Ed25519 node certificates.
//! Confidentiality and authenticity of the vouchers **under SM algorithms** come from the
//! application layer, end to end and whatever carries them: SM2 signatures and seals on every
//! voucher ([`crate::voucher`]) and, where a voucher must stay secret beyond the link, the
//! SM2/SM4 digital envelope of [`crate::envelope`]. A deployment that must run TLCP on the
//! wire can terminate it in a gateway (Tongsuo, GmSSL) in front of the node.
//!
//! # CRL updates
//!
//! A configuration holds the CRLs it was built with. When the CA publishes a new CRL, build
//! new configurations (cheap) and use them for new connections.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{NoServerSessionStorage, ParsedCertificate};
use rustls::time_provider::TimeProvider;
use rustls::{
    CertificateError, ClientConfig, CommonState, DigitallySignedStruct, DistinguishedName,
    OtherError, ServerConfig, SignatureScheme,
};
use time::OffsetDateTime;

use crate::error::{Error, PathProblem, Result};
use crate::keys::{KeyAlgorithm, SigningKey};
use crate::pki::{
    self, Certificate, Crl, OrgRole, Purpose, RevocationPolicy, Serial, SubjectInfo,
    ValidationOptions,
};

/// At most this many certificates are accepted from a peer: the leaf, one sub-CA, and
/// possibly the root (which is ignored). Longer lists are refused before anything is parsed.
pub const MAX_PEER_CERTIFICATES: usize = 3;

/// The `ring` crypto provider, which is the only one this crate builds rustls with.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

// ----- our own certificate and key ----------------------------------------------------------

/// A node's TLS certificate chain and private key, as [`pki`] issues them.
pub struct TlsIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivatePkcs8KeyDer<'static>,
    leaf: Certificate,
}

impl TlsIdentity {
    /// A chain (the node's certificate first, then any sub-CA) and its private key. The key
    /// must be ECDSA P-256 or Ed25519 and match the first certificate.
    pub fn new(chain: &[Certificate], key: &SigningKey) -> Result<Self> {
        let Some(leaf) = chain.first() else {
            return Err(Error::InvalidArgument(
                "a TLS certificate chain needs at least the node's certificate".into(),
            ));
        };
        if !matches!(
            key.algorithm(),
            KeyAlgorithm::EcdsaP256 | KeyAlgorithm::Ed25519
        ) {
            return Err(Error::InvalidArgument(format!(
                "a TLS key must be ECDSA P-256 or Ed25519, not {}",
                key.algorithm()
            )));
        }
        if leaf.public_key()? != *key.verifying_key() {
            return Err(Error::InvalidArgument(
                "the private key does not match the TLS certificate".into(),
            ));
        }
        let pkcs8 = key.to_pkcs8_der()?;
        Ok(Self {
            chain: chain
                .iter()
                .map(|c| CertificateDer::from(c.to_der().to_vec()))
                .collect(),
            key: PrivatePkcs8KeyDer::from(pkcs8.to_vec()),
            leaf: leaf.clone(),
        })
    }

    /// Read the chain from `CERTIFICATE` PEM blocks (node certificate first) and the key from
    /// a PKCS#8 `PRIVATE KEY` PEM block.
    pub fn from_pem(chain_pem: &str, key_pem: &str) -> Result<Self> {
        let chain = Certificate::chain_from_pem(chain_pem)?;
        let key = SigningKey::from_pkcs8_pem(key_pem)?;
        Self::new(&chain, &key)
    }

    /// The node's own certificate.
    pub fn certificate(&self) -> &Certificate {
        &self.leaf
    }

    fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }
}

impl fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("certificate", &self.leaf)
            .field("chain_len", &self.chain.len())
            .field("key", &format_args!("****"))
            .finish()
    }
}

// ----- whom we trust -----------------------------------------------------------------------

/// What a node trusts in its peers: the deployment's TLS root, the current CRLs (of the root
/// and of any sub-CA) and whether a current CRL is required from every issuer.
#[derive(Clone, Debug)]
pub struct PeerTrust {
    root: Certificate,
    crls: Vec<Crl>,
    revocation: RevocationPolicy,
}

impl PeerTrust {
    /// Trust peers whose chains lead to `root`, checking them against `crls`.
    ///
    /// [`RevocationPolicy::RequireCrl`] is the policy for production: a node then refuses every
    /// peer once its CRLs are stale, rather than accepting revoked ones.
    pub fn new(root: Certificate, crls: Vec<Crl>, revocation: RevocationPolicy) -> Result<Self> {
        if !root.is_ca() || root.subject() != root.issuer() {
            return Err(Error::Untrusted {
                serial: root.serial().to_string(),
                problem: PathProblem::BadTrustAnchor,
            });
        }
        Ok(Self {
            root,
            crls,
            revocation,
        })
    }

    /// Read the root from a `CERTIFICATE` PEM block and each CRL from an `X509 CRL` PEM block.
    pub fn from_pem(
        root_pem: &str,
        crl_pems: &[&str],
        revocation: RevocationPolicy,
    ) -> Result<Self> {
        let root = Certificate::from_pem(root_pem)?;
        let crls = crl_pems
            .iter()
            .map(|p| Crl::from_pem(p))
            .collect::<Result<Vec<_>>>()?;
        Self::new(root, crls, revocation)
    }

    /// The trust anchor.
    pub fn root(&self) -> &Certificate {
        &self.root
    }

    /// Validate a peer's chain for `purpose` at `now`.
    fn validate(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        purpose: Purpose,
        now: UnixTime,
    ) -> std::result::Result<pki::ValidatedPath, rustls::Error> {
        if intermediates.len() + 1 > MAX_PEER_CERTIFICATES {
            return Err(other(Error::Untrusted {
                serial: String::from("(peer chain)"),
                problem: PathProblem::TooLong,
            }));
        }
        let leaf = Certificate::from_der(end_entity).map_err(|_| bad_encoding())?;
        let intermediates = intermediates
            .iter()
            .map(|c| Certificate::from_der(c).map_err(|_| bad_encoding()))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let now = unix_to_datetime(now)?;
        let options = ValidationOptions {
            now,
            purpose,
            crls: &self.crls,
            revocation: self.revocation,
        };
        pki::validate_path(&leaf, &intermediates, &self.root, &options).map_err(|e| {
            let mut involved: Vec<&Certificate> = vec![&leaf, &self.root];
            involved.extend(intermediates.iter());
            to_rustls_error(e, &involved, now)
        })
    }
}

fn unix_to_datetime(now: UnixTime) -> std::result::Result<OffsetDateTime, rustls::Error> {
    i64::try_from(now.as_secs())
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .ok_or(rustls::Error::FailedToGetCurrentTime)
}

fn bad_encoding() -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::BadEncoding)
}

fn other(e: Error) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
}

/// The closest rustls certificate error (and so TLS alert) for a refusal of ours.
fn to_rustls_error(e: Error, involved: &[&Certificate], now: OffsetDateTime) -> rustls::Error {
    let ce = match &e {
        Error::Revoked { .. } => CertificateError::Revoked,
        Error::NotValidAtTime { serial } => {
            let not_yet = involved
                .iter()
                .find(|c| c.serial().to_string() == *serial)
                .is_some_and(|c| now < c.validity().not_before);
            if not_yet {
                CertificateError::NotValidYet
            } else {
                CertificateError::Expired
            }
        }
        Error::WrongKeyUsage { .. } => CertificateError::InvalidPurpose,
        Error::Untrusted {
            problem: PathProblem::UnknownIssuer,
            ..
        } => CertificateError::UnknownIssuer,
        Error::Untrusted {
            problem: PathProblem::UnknownCriticalExtension(_),
            ..
        } => CertificateError::UnhandledCriticalExtension,
        Error::BadSignature => CertificateError::BadSignature,
        Error::NoCurrentCrl { .. } => CertificateError::UnknownRevocationStatus,
        Error::Malformed { .. } => CertificateError::BadEncoding,
        _ => return other(e),
    };
    rustls::Error::InvalidCertificate(ce)
}

// ----- the verifier -------------------------------------------------------------------------

/// A rustls certificate verifier, for either side, that checks the peer's chain with
/// [`pki::validate_path`] against a [`PeerTrust`], and the handshake signature with the
/// `ring` provider. [`server_config`] and [`client_config`] install it; it is public so that
/// other configurations (for example with tokio-rustls) can be built the same way.
#[derive(Debug)]
pub struct PeerVerifier {
    trust: PeerTrust,
    algorithms: WebPkiSupportedAlgorithms,
    root_hints: Vec<DistinguishedName>,
}

impl PeerVerifier {
    /// A verifier for peers trusted by `trust`.
    pub fn new(trust: PeerTrust) -> Result<Self> {
        let subject = der::Encode::to_der(trust.root.x509().tbs_certificate().subject())
            .map_err(Error::crypto)?;
        Ok(Self {
            algorithms: rustls::crypto::ring::default_provider().signature_verification_algorithms,
            root_hints: vec![DistinguishedName::from(subject)],
            trust,
        })
    }

    fn check_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        self.trust
            .validate(end_entity, intermediates, Purpose::TlsServer, now)?;
        let parsed = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_name(&parsed, server_name)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_disabled())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.check_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }

    fn root_hint_subjects(&self) -> Option<&[DistinguishedName]> {
        Some(&self.root_hints)
    }
}

impl ClientCertVerifier for PeerVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.root_hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> std::result::Result<ClientCertVerified, rustls::Error> {
        self.trust
            .validate(end_entity, intermediates, Purpose::TlsClient, now)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_disabled())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.check_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

// ----- configurations -----------------------------------------------------------------------

/// A rustls server configuration for a node: TLS 1.3 only, presents `identity`, **requires** a
/// client certificate and accepts only those [`PeerTrust`] accepts (purpose: TLS client), at
/// the time `clock` gives. No session resumption.
pub fn server_config(
    identity: &TlsIdentity,
    trust: &PeerTrust,
    clock: Arc<dyn TimeProvider>,
) -> Result<ServerConfig> {
    let verifier = Arc::new(PeerVerifier::new(trust.clone())?);
    let mut config = ServerConfig::builder_with_details(crypto_provider(), clock)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_setup)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.chain.clone(), identity.key_der())
        .map_err(tls_setup)?;
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(config)
}

/// A rustls client configuration for a node: TLS 1.3 only, presents `identity` as its client
/// certificate, accepts only servers whose certificates [`PeerTrust`] accepts (purpose: TLS
/// server) and that name the host dialled, at the time `clock` gives. No session resumption.
pub fn client_config(
    identity: &TlsIdentity,
    trust: &PeerTrust,
    clock: Arc<dyn TimeProvider>,
) -> Result<ClientConfig> {
    let verifier = Arc::new(PeerVerifier::new(trust.clone())?);
    let mut config = ClientConfig::builder_with_details(crypto_provider(), clock)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_setup)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(identity.chain.clone(), identity.key_der())
        .map_err(tls_setup)?;
    config.resumption = rustls::client::Resumption::disabled();
    Ok(config)
}

/// Only TLS 1.3 is enabled, so rustls never asks for a TLS 1.2 signature check.
fn tls12_disabled() -> rustls::Error {
    rustls::Error::General("TLS 1.2 is not enabled".into())
}

fn tls_setup(e: rustls::Error) -> Error {
    Error::InvalidArgument(format!("TLS configuration: {e}"))
}

// ----- the clock ----------------------------------------------------------------------------

/// A clock that always says the same time: for tests and deterministic replays. Production
/// passes [`rustls::time_provider::DefaultTimeProvider`].
#[derive(Clone, Copy, Debug)]
pub struct FixedClock(pub OffsetDateTime);

impl TimeProvider for FixedClock {
    fn current_time(&self) -> Option<UnixTime> {
        u64::try_from(self.0.unix_timestamp())
            .ok()
            .map(|s| UnixTime::since_unix_epoch(std::time::Duration::from_secs(s)))
    }
}

// ----- who is at the other end -------------------------------------------------------------

/// The party at the other end of a connection, read from its certificate after the handshake.
///
/// It means something only for connections made with [`server_config`] or [`client_config`],
/// whose verifiers have validated that certificate against the deployment PKI.
#[derive(Clone, Debug)]
pub struct PeerIdentity {
    certificate: Certificate,
    subject: SubjectInfo,
}

impl PeerIdentity {
    /// The identity of the peer of a connection whose handshake is complete
    /// (`ServerConnection` and `ClientConnection` dereference to [`CommonState`]).
    pub fn of(connection: &CommonState) -> Result<Self> {
        if connection.is_handshaking() {
            return Err(Error::InvalidArgument(
                "the TLS handshake is not complete".into(),
            ));
        }
        let leaf = connection
            .peer_certificates()
            .and_then(|c| c.first())
            .ok_or_else(|| Error::InvalidArgument("the peer presented no certificate".into()))?;
        let certificate = Certificate::from_der(leaf)?;
        Ok(Self {
            subject: certificate.subject_info(),
            certificate,
        })
    }

    /// The peer's certificate.
    pub fn certificate(&self) -> &Certificate {
        &self.certificate
    }

    /// The serial of the peer's certificate.
    pub fn serial(&self) -> Serial {
        self.certificate.serial()
    }

    /// Everything the peer's certificate subject says.
    pub fn subject(&self) -> &SubjectInfo {
        &self.subject
    }

    /// The organisation's role (`OU`), for certificates from
    /// [`pki::CertificateAuthority::issue_tls_for_organisation`].
    pub fn role(&self) -> Option<OrgRole> {
        self.subject.role
    }

    /// The organisation code (`serialNumber`), for certificates from
    /// [`pki::CertificateAuthority::issue_tls_for_organisation`].
    pub fn org_code(&self) -> Option<&str> {
        self.subject.org_code.as_deref()
    }

    /// Whether the peer's certificate names this role and organisation code: the check that a
    /// voucher received on this connection comes from the party it claims.
    pub fn speaks_for(&self, role: OrgRole, org_code: &str) -> bool {
        self.role() == Some(role) && self.org_code() == Some(org_code)
    }
}
