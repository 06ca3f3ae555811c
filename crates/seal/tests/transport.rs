//! Mutual TLS over loopback between nodes of one deployment PKI, and the handshakes it
//! refuses. Each test runs a server thread and a client on 127.0.0.1 (port 0), synchronously.

mod common;

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::str::FromStr;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::{Deployment, ISSUED, NOW, agent_bank, finance, rng};
use der::asn1::{BitString, Ia5String};
use guoku_seal::pki::{
    CaSubject, Certificate, CertificateAuthority, Crl, OrgRole, Organisation, Revocation,
    RevocationPolicy, Serial, Sm2CertId, TlsNode, Validity, make_root_ca,
};
use guoku_seal::transport::{
    FixedClock, PeerIdentity, PeerTrust, PeerVerifier, TlsIdentity, client_config, crypto_provider,
    server_config,
};
use guoku_seal::{Error, KeyAlgorithm, SigningKey, Suite};
use rustls::pki_types::ServerName;
use rustls::{
    CertificateError, ClientConfig, ClientConnection, ProtocolVersion, ServerConfig,
    ServerConnection, StreamOwned,
};
use time::OffsetDateTime;
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::builder::{Builder, CertificateBuilder};
use x509_cert::certificate::TbsCertificate;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages, SubjectAltName,
};
use x509_cert::ext::{Extension, ToExtension};
use x509_cert::name::Name;

const SERVER_NAME: &str = "finance.guoku.test";
/// A guard against a hung test, not a means of synchronisation.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

// ----- fixtures -------------------------------------------------------------------------------

fn node_of(org: &Organisation, common_name: &str, dns: &str) -> TlsNode {
    TlsNode {
        organisation: org.name.clone(),
        common_name: common_name.into(),
        dns_names: vec![dns.into()],
        ip_addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
    }
}

/// A P-256 key and an organisation TLS certificate from `ca`.
fn tls_cert(
    ca: &CertificateAuthority,
    org: &Organisation,
    dns: &str,
    serial: u64,
    validity: Validity,
) -> (SigningKey, Certificate) {
    let key = SigningKey::generate(KeyAlgorithm::EcdsaP256, &mut rng(1000 + serial)).unwrap();
    let cert = ca
        .issue_tls_for_organisation(
            key.verifying_key(),
            org,
            &node_of(org, &format!("{}-node", org.role), dns),
            &Serial::from_u64(serial).unwrap(),
            validity,
        )
        .unwrap();
    (key, cert)
}

fn year() -> Validity {
    Validity::days_from(ISSUED, 365)
}

/// The node's identity, read back from PEM as a node reads it from disk.
fn identity(key: &SigningKey, leaf: &Certificate, sub: &CertificateAuthority) -> TlsIdentity {
    let chain = format!(
        "{}{}",
        leaf.to_pem().unwrap(),
        sub.certificate().to_pem().unwrap()
    );
    TlsIdentity::from_pem(&chain, &key.to_pkcs8_pem().unwrap()).unwrap()
}

/// CRLs of the root and of the sub-CA, current at [`NOW`]; the sub-CA's lists `revoked`.
fn crls(d: &Deployment, revoked: &[u64], next_update: OffsetDateTime) -> Vec<Crl> {
    let revocations: Vec<Revocation> = revoked
        .iter()
        .map(|s| Revocation {
            serial: Serial::from_u64(*s).unwrap(),
            revoked_at: ISSUED + time::Duration::days(10),
        })
        .collect();
    vec![
        d.root.issue_crl(&[], 1, ISSUED, next_update).unwrap(),
        d.sub
            .issue_crl(&revocations, 1, ISSUED, next_update)
            .unwrap(),
    ]
}

fn trust(d: &Deployment, revoked: &[u64]) -> PeerTrust {
    let next = NOW + time::Duration::days(7);
    let crl_pems: Vec<String> = crls(d, revoked, next)
        .iter()
        .map(|c| c.to_pem().unwrap())
        .collect();
    let crl_refs: Vec<&str> = crl_pems.iter().map(String::as_str).collect();
    PeerTrust::from_pem(
        &d.root.certificate().to_pem().unwrap(),
        &crl_refs,
        RevocationPolicy::RequireCrl,
    )
    .unwrap()
}

fn clock() -> Arc<FixedClock> {
    Arc::new(FixedClock(NOW))
}

/// A deployment with a finance node (serial 100) and an agent bank node (serial 101), both
/// under the sub-CA.
struct Pair {
    d: Deployment,
    server: TlsIdentity,
    client: TlsIdentity,
}

impl Pair {
    fn new(suite: Suite, seed: u64) -> Self {
        let d = Deployment::new(suite, seed);
        let (skey, scert) = tls_cert(&d.sub, &finance(), SERVER_NAME, 100, year());
        let (ckey, ccert) = tls_cert(&d.sub, &agent_bank(), "bank.guoku.test", 101, year());
        let server = identity(&skey, &scert, &d.sub);
        let client = identity(&ckey, &ccert, &d.sub);
        Self { d, server, client }
    }

    fn server_config(&self, revoked: &[u64]) -> ServerConfig {
        server_config(&self.server, &trust(&self.d, revoked), clock()).unwrap()
    }

    fn client_config(&self) -> ClientConfig {
        client_config(&self.client, &trust(&self.d, &[]), clock()).unwrap()
    }
}

// ----- running a handshake ------------------------------------------------------------------

/// What one end saw of a successful exchange.
#[derive(Debug)]
struct Seen {
    peer: PeerIdentity,
    version: Option<ProtocolVersion>,
}

fn invalid(e: impl std::error::Error + Send + Sync + 'static) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Run a server thread and a client over loopback; the client sends `ping`, the server
/// answers `pong`. Returns what each end saw, or its error.
fn exchange(
    server: ServerConfig,
    client: ClientConfig,
    server_name: &str,
) -> (io::Result<Seen>, io::Result<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Arc::new(server);
    let server_end = thread::spawn(move || -> io::Result<Seen> {
        let (sock, _) = listener.accept()?;
        sock.set_read_timeout(Some(IO_TIMEOUT))?;
        sock.set_write_timeout(Some(IO_TIMEOUT))?;
        let conn = ServerConnection::new(server).map_err(invalid)?;
        let mut tls = StreamOwned::new(conn, sock);
        let mut buf = [0u8; 5];
        tls.read_exact(&mut buf)?;
        assert_eq!(&buf, b"ping\n");
        let peer = PeerIdentity::of(&tls.conn).map_err(invalid)?;
        tls.write_all(b"pong\n")?;
        tls.conn.send_close_notify();
        tls.flush()?;
        Ok(Seen {
            peer,
            version: tls.conn.protocol_version(),
        })
    });

    let client_end = (|| -> io::Result<Seen> {
        let sock = TcpStream::connect(addr)?;
        sock.set_read_timeout(Some(IO_TIMEOUT))?;
        sock.set_write_timeout(Some(IO_TIMEOUT))?;
        let name = ServerName::try_from(server_name.to_owned()).map_err(invalid)?;
        let conn = ClientConnection::new(Arc::new(client), name).map_err(invalid)?;
        let mut tls = StreamOwned::new(conn, sock);
        tls.write_all(b"ping\n")?;
        tls.flush()?;
        let mut buf = [0u8; 5];
        tls.read_exact(&mut buf)?;
        assert_eq!(&buf, b"pong\n");
        let peer = PeerIdentity::of(&tls.conn).map_err(invalid)?;
        Ok(Seen {
            peer,
            version: tls.conn.protocol_version(),
        })
    })();
    let server_result = server_end.join().expect("server thread panicked");
    (server_result, client_end)
}

/// The rustls error inside an I/O error, if any.
fn tls_error(result: &io::Result<Seen>) -> Option<&rustls::Error> {
    result
        .as_ref()
        .err()?
        .get_ref()?
        .downcast_ref::<rustls::Error>()
}

/// Assert that the server refused the client's certificate with `expected`, and that the
/// client did not get through either.
#[track_caller]
fn assert_server_refused(
    (server, client): (io::Result<Seen>, io::Result<Seen>),
    expected: CertificateError,
) {
    assert_eq!(
        tls_error(&server),
        Some(&rustls::Error::InvalidCertificate(expected)),
        "server: {server:?}"
    );
    assert!(client.is_err(), "the client got through: {client:?}");
}

// ----- tests --------------------------------------------------------------------------------

#[test]
fn nodes_of_one_deployment_handshake_and_see_each_others_identity() {
    // The `sm` deployment's root and sub-CA are SM2: our verifier checks SM2 chains, only the
    // node keys are P-256.
    for (suite, seed) in [(Suite::Intl, 7001), (Suite::Sm, 7002)] {
        let pair = Pair::new(suite, seed);
        let (server, client) = exchange(pair.server_config(&[]), pair.client_config(), SERVER_NAME);
        let server = server.unwrap_or_else(|e| panic!("{suite}: server: {e}"));
        let client = client.unwrap_or_else(|e| panic!("{suite}: client: {e}"));

        assert_eq!(server.version, Some(ProtocolVersion::TLSv1_3));
        assert_eq!(client.version, Some(ProtocolVersion::TLSv1_3));

        // The server sees the agent bank, the client sees the finance department.
        let bank = agent_bank();
        assert_eq!(server.peer.role(), Some(OrgRole::AgentBank));
        assert_eq!(server.peer.org_code(), Some(bank.code.as_str()));
        assert_eq!(server.peer.serial(), Serial::from_u64(101).unwrap());
        assert_eq!(
            server.peer.subject().organisation.as_deref(),
            Some(bank.name.as_str())
        );
        assert!(server.peer.speaks_for(OrgRole::AgentBank, &bank.code));
        assert!(!server.peer.speaks_for(OrgRole::Finance, &bank.code));
        assert!(!server.peer.speaks_for(OrgRole::AgentBank, &finance().code));

        assert_eq!(client.peer.role(), Some(OrgRole::Finance));
        assert_eq!(client.peer.org_code(), Some(finance().code.as_str()));
        assert_eq!(client.peer.serial(), Serial::from_u64(100).unwrap());
        assert!(client.peer.speaks_for(OrgRole::Finance, &finance().code));
    }
}

#[test]
fn client_without_a_certificate_is_refused() {
    let pair = Pair::new(Suite::Intl, 7010);
    let verifier = PeerVerifier::new(trust(&pair.d, &[])).unwrap();
    let anonymous = ClientConfig::builder_with_details(crypto_provider(), clock())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    let (server, client) = exchange(pair.server_config(&[]), anonymous, SERVER_NAME);
    assert_eq!(
        tls_error(&server),
        Some(&rustls::Error::NoCertificatesPresented),
        "server: {server:?}"
    );
    assert!(client.is_err());
}

#[test]
fn client_from_a_foreign_root_is_refused() {
    let pair = Pair::new(Suite::Intl, 7020);

    // A foreign PKI with names of its own.
    let mut r = rng(7021);
    let root_key = SigningKey::generate(KeyAlgorithm::Ed25519, &mut r).unwrap();
    let root_cert = make_root_ca(
        &root_key,
        &CaSubject {
            organisation: "某外部机构".into(),
            common_name: "foreign root CA".into(),
        },
        &Serial::from_u64(1).unwrap(),
        Validity::days_from(ISSUED, 3650),
        Sm2CertId::Standard,
    )
    .unwrap();
    let foreign_root = CertificateAuthority::new(root_cert, root_key).unwrap();
    let (key, cert) = tls_cert(&foreign_root, &agent_bank(), "bank.guoku.test", 101, year());
    let intruder = TlsIdentity::new(&[cert], &key).unwrap();
    // The intruder trusts our root, so the handshake gets as far as its certificate.
    let client = client_config(&intruder, &trust(&pair.d, &[]), clock()).unwrap();
    assert_server_refused(
        exchange(pair.server_config(&[]), client, SERVER_NAME),
        CertificateError::UnknownIssuer,
    );

    // A foreign PKI that copies our CA names: its sub-CA is found by name, and its signature
    // does not verify under our root's key.
    let lookalike = Deployment::new(Suite::Intl, 7022);
    assert_eq!(
        lookalike.root.certificate().subject(),
        pair.d.root.certificate().subject()
    );
    let (key, cert) = tls_cert(
        &lookalike.sub,
        &agent_bank(),
        "bank.guoku.test",
        101,
        year(),
    );
    let intruder = identity(&key, &cert, &lookalike.sub);
    let client = client_config(&intruder, &trust(&pair.d, &[]), clock()).unwrap();
    assert_server_refused(
        exchange(pair.server_config(&[]), client, SERVER_NAME),
        CertificateError::BadSignature,
    );
}

#[test]
fn revoked_client_is_refused() {
    for (suite, seed) in [(Suite::Intl, 7030), (Suite::Sm, 7031)] {
        let pair = Pair::new(suite, seed);
        // The same client passes when the CRL does not list it …
        let (server, _) = exchange(pair.server_config(&[]), pair.client_config(), SERVER_NAME);
        assert!(server.is_ok(), "{suite}: {server:?}");
        // … and is refused once its serial is on the sub-CA's CRL.
        assert_server_refused(
            exchange(
                pair.server_config(&[101]),
                pair.client_config(),
                SERVER_NAME,
            ),
            CertificateError::Revoked,
        );
    }
}

#[test]
fn stale_crls_refuse_every_client() {
    let pair = Pair::new(Suite::Intl, 7040);
    let stale: Vec<Crl> = crls(&pair.d, &[], NOW - time::Duration::days(1));
    let trust = PeerTrust::new(
        pair.d.root.certificate().clone(),
        stale,
        RevocationPolicy::RequireCrl,
    )
    .unwrap();
    let server = server_config(&pair.server, &trust, clock()).unwrap();
    assert_server_refused(
        exchange(server, pair.client_config(), SERVER_NAME),
        CertificateError::UnknownRevocationStatus,
    );
}

#[test]
fn expired_client_certificate_is_refused() {
    let pair = Pair::new(Suite::Intl, 7050);
    // Valid for the first 30 days of 2026; NOW is in June.
    let (key, cert) = tls_cert(
        &pair.d.sub,
        &agent_bank(),
        "bank.guoku.test",
        102,
        Validity::days_from(ISSUED, 30),
    );
    let expired = identity(&key, &cert, &pair.d.sub);
    let client = client_config(&expired, &trust(&pair.d, &[]), clock()).unwrap();
    assert_server_refused(
        exchange(pair.server_config(&[]), client, SERVER_NAME),
        CertificateError::Expired,
    );

    // And a certificate that is not valid yet.
    let (key, cert) = tls_cert(
        &pair.d.sub,
        &agent_bank(),
        "bank.guoku.test",
        103,
        Validity::days_from(NOW + time::Duration::days(1), 30),
    );
    let early = identity(&key, &cert, &pair.d.sub);
    let client = client_config(&early, &trust(&pair.d, &[]), clock()).unwrap();
    assert_server_refused(
        exchange(pair.server_config(&[]), client, SERVER_NAME),
        CertificateError::NotValidYet,
    );
}

#[test]
fn server_whose_name_does_not_match_is_refused() {
    let pair = Pair::new(Suite::Intl, 7060);
    let (server, client) = exchange(
        pair.server_config(&[]),
        pair.client_config(),
        "pboc.guoku.test",
    );
    assert!(
        matches!(
            tls_error(&client),
            Some(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
            ))
        ),
        "client: {client:?}"
    );
    assert!(server.is_err(), "server: {server:?}");
}

/// A certificate profile the PKI does not issue: a TLS leaf with the given EKUs (or none).
struct OddProfile {
    issuer: Name,
    eku: Option<Vec<der::asn1::ObjectIdentifier>>,
}

const KP_SERVER_AUTH: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.1");
const KP_CLIENT_AUTH: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.2");

impl BuilderProfile for OddProfile {
    fn get_issuer(&self, _subject: &Name) -> Name {
        self.issuer.clone()
    }

    fn get_subject(&self) -> Name {
        Name::from_str("CN=odd-node,O=guoku,C=CN").unwrap()
    }

    fn build_extensions(
        &self,
        _spk: spki::SubjectPublicKeyInfoRef<'_>,
        _issuer_spk: spki::SubjectPublicKeyInfoRef<'_>,
        tbs: &TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        let subject = tbs.subject();
        let mut exts = Vec::new();
        let bc = BasicConstraints {
            ca: false,
            path_len_constraint: None,
        };
        exts.push((true, &bc).to_extension(subject, &exts)?);
        let ku = KeyUsage(KeyUsages::DigitalSignature.into());
        exts.push((true, &ku).to_extension(subject, &exts)?);
        if let Some(eku) = &self.eku {
            let eku = ExtendedKeyUsage(eku.clone());
            exts.push((false, &eku).to_extension(subject, &exts)?);
        }
        let san = SubjectAltName(vec![GeneralName::DnsName(
            Ia5String::new(SERVER_NAME).unwrap(),
        )]);
        exts.push((false, &san).to_extension(subject, &exts)?);
        Ok(exts)
    }
}

/// A P-256 key and a certificate from `ca` with the given EKUs.
fn odd_cert(
    ca: &CertificateAuthority,
    eku: Option<Vec<der::asn1::ObjectIdentifier>>,
    serial: u64,
) -> (SigningKey, Certificate) {
    let key = SigningKey::generate(KeyAlgorithm::EcdsaP256, &mut rng(2000 + serial)).unwrap();
    let profile = OddProfile {
        issuer: ca.certificate().x509().tbs_certificate().subject().clone(),
        eku,
    };
    let spki_der = key.verifying_key().to_spki_der().unwrap();
    let spki = spki::SubjectPublicKeyInfoOwned::try_from(spki_der.as_slice()).unwrap();
    let validity = x509_cert::time::Validity::new(
        x509_cert::time::Time::from_str("2026-01-01T00:00:00Z").unwrap(),
        x509_cert::time::Time::from_str("2026-12-31T00:00:00Z").unwrap(),
    );
    let serial = x509_cert::serial_number::SerialNumber::from(serial);
    let mut builder = CertificateBuilder::new(profile, serial, validity, spki).unwrap();
    let tbs = builder.finalize(ca.key()).unwrap();
    let sig = ca.key().sign(&tbs).unwrap();
    let cert = builder
        .assemble(BitString::from_bytes(sig.as_bytes()).unwrap(), ca.key())
        .unwrap();
    let cert = Certificate::from_der(&der::Encode::to_der(&cert).unwrap()).unwrap();
    (key, cert)
}

#[test]
fn client_certificate_without_client_auth_eku_is_refused() {
    for (suite, seed) in [(Suite::Intl, 7070), (Suite::Sm, 7071)] {
        let pair = Pair::new(suite, seed);
        // The control: the same construction with clientAuth is accepted, so the refusals
        // below are about the EKU and nothing else.
        let (key, cert) = odd_cert(&pair.d.sub, Some(vec![KP_CLIENT_AUTH]), 110);
        let good = identity(&key, &cert, &pair.d.sub);
        let client = client_config(&good, &trust(&pair.d, &[]), clock()).unwrap();
        let (server, _) = exchange(pair.server_config(&[]), client, SERVER_NAME);
        assert!(server.is_ok(), "{suite}: {server:?}");

        // serverAuth only.
        let (key, cert) = odd_cert(&pair.d.sub, Some(vec![KP_SERVER_AUTH]), 111);
        let server_only = identity(&key, &cert, &pair.d.sub);
        let client = client_config(&server_only, &trust(&pair.d, &[]), clock()).unwrap();
        assert_server_refused(
            exchange(pair.server_config(&[]), client, SERVER_NAME),
            CertificateError::InvalidPurpose,
        );

        // No EKU at all, like an organisation's signing certificate (webpki would accept
        // this one for any purpose).
        let (key, cert) = odd_cert(&pair.d.sub, None, 112);
        let no_eku = identity(&key, &cert, &pair.d.sub);
        let client = client_config(&no_eku, &trust(&pair.d, &[]), clock()).unwrap();
        assert_server_refused(
            exchange(pair.server_config(&[]), client, SERVER_NAME),
            CertificateError::InvalidPurpose,
        );
    }
}

#[test]
fn organisation_signing_certificate_is_not_a_tls_client_certificate() {
    // An `intl` root issues organisations' Ed25519 signing certificates too; one of them, with
    // its key, must not open a TLS link.
    let pair = Pair::new(Suite::Intl, 7080);
    let (key, cert) = pair.d.org_under_root(&mut rng(7081), 120);
    let signer = TlsIdentity::new(&[cert], &key).unwrap();
    let client = client_config(&signer, &trust(&pair.d, &[]), clock()).unwrap();
    assert_server_refused(
        exchange(pair.server_config(&[]), client, SERVER_NAME),
        CertificateError::InvalidPurpose,
    );
}

#[test]
fn server_certificate_without_server_auth_eku_is_refused() {
    let pair = Pair::new(Suite::Intl, 7090);
    let (key, cert) = odd_cert(&pair.d.sub, Some(vec![KP_CLIENT_AUTH]), 130);
    let client_only = identity(&key, &cert, &pair.d.sub);
    let server = server_config(&client_only, &trust(&pair.d, &[]), clock()).unwrap();
    let (server, client) = exchange(server, pair.client_config(), SERVER_NAME);
    assert_eq!(
        tls_error(&client),
        Some(&rustls::Error::InvalidCertificate(
            CertificateError::InvalidPurpose
        )),
        "client: {client:?}"
    );
    assert!(server.is_err());
}

#[test]
fn identity_refuses_a_key_that_does_not_match_or_cannot_do_tls() {
    let pair = Pair::new(Suite::Intl, 7100);
    let (_, cert) = tls_cert(&pair.d.sub, &finance(), SERVER_NAME, 140, year());
    let other = SigningKey::generate(KeyAlgorithm::EcdsaP256, &mut rng(7101)).unwrap();
    assert!(matches!(
        TlsIdentity::new(std::slice::from_ref(&cert), &other),
        Err(Error::InvalidArgument(_))
    ));
    let sm2 = SigningKey::generate(KeyAlgorithm::Sm2, &mut rng(7102)).unwrap();
    assert!(matches!(
        TlsIdentity::new(&[cert], &sm2),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        TlsIdentity::new(&[], &other),
        Err(Error::InvalidArgument(_))
    ));
    // A leaf is not a trust anchor.
    let (_, leaf) = tls_cert(&pair.d.sub, &finance(), SERVER_NAME, 141, year());
    assert!(matches!(
        PeerTrust::new(leaf, vec![], RevocationPolicy::RequireCrl),
        Err(Error::Untrusted { .. })
    ));
}
