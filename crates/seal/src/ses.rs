//! GM/T 0031-2014 electronic seals (电子印章, format version 4) and seal signatures (电子签章).
//!
//! # The structures
//!
//! The ASN.1 types follow the v4 module of the standard field by field, DER-encoded with the
//! `der` derive macros:
//!
//! ```text
//! SESeal            ::= SEQUENCE { eSealInfo SES_SealInfo, cert OCTET STRING (制章人证书),
//!                                  signAlgID OBJECT IDENTIFIER, signedValue BIT STRING }
//! SES_SealInfo      ::= SEQUENCE { header SES_Header, esID IA5String, property SES_ESPropertyInfo,
//!                                  picture SES_ESPictrueInfo, extDatas ExtensionDatas OPTIONAL }
//! SES_Header        ::= SEQUENCE { id IA5String ("ES"), version INTEGER (4), vid IA5String }
//! SES_ESPropertyInfo::= SEQUENCE { type INTEGER, name UTF8String, certListType INTEGER,
//!                                  certList SES_CertList, createDate GeneralizedTime,
//!                                  validStart GeneralizedTime, validEnd GeneralizedTime }
//! SES_CertList      ::= CHOICE { certs SEQUENCE OF OCTET STRING,             -- certListType 1
//!                                certDigestList SEQUENCE OF CertDigestObj }  -- certListType 2
//! CertDigestObj     ::= SEQUENCE { type PrintableString, value OCTET STRING }
//! SES_ESPictrueInfo ::= SEQUENCE { type IA5String, data OCTET STRING, width INTEGER, height INTEGER }
//! ExtensionDatas    ::= SEQUENCE OF ExtData
//! ExtData           ::= SEQUENCE { extnID OBJECT IDENTIFIER, critical BOOLEAN DEFAULT FALSE,
//!                                  extnValue OCTET STRING }
//! SES_Signature     ::= SEQUENCE { toSign TBS_Sign, cert OCTET STRING (签章者证书),
//!                                  signatureAlgID OBJECT IDENTIFIER, signature BIT STRING,
//!                                  timeStamp [0] EXPLICIT BIT STRING OPTIONAL }
//! TBS_Sign          ::= SEQUENCE { version INTEGER (4), eseal SESeal, timeInfo GeneralizedTime,
//!                                  dataHash BIT STRING, propertyInfo IA5String,
//!                                  extDatas [0] EXPLICIT ExtensionDatas OPTIONAL }
//! ```
//!
//! The two CHOICE alternatives of `SES_CertList` are both a SEQUENCE, so the preceding
//! `certListType` says which one follows ([`SesEsPropertyInfo`] is coded by hand for that).
//! The standard's module does not declare implicit tagging, so the `[0]` tags are EXPLICIT, as
//! other implementations (OFDRW) write them. The picture type is spelled `SES_ESPictrueInfo`
//! in the standard; the Rust type is [`SesEsPictureInfo`].
//!
//! # What is signed
//!
//! * The **sealmaker** (制章人) signs the DER of `SES_SealInfo` (as OFDRW's v4 code does) with
//!   the suite's algorithm; `signAlgID` names it (SM2-with-SM3 `1.2.156.10197.1.501` for `sm`,
//!   Ed25519 `1.3.101.112` for `intl`). The sealmaker holds an end-entity signing certificate
//!   of the deployment (checked like a voucher signer's, with
//!   [`Purpose::VoucherSigning`](crate::pki::Purpose)): in a guoku deployment that is a
//!   dedicated seal-maker organisation certificate issued by the deployment CA (the role of the
//!   public security bureau's 制章单位 for paper seals), or, where the deployment allows it, the
//!   organisation whose seal it is. A CA's own certificate cannot make seals.
//! * The **signer** (签章人), one of the certificates on the seal's `certList`, signs the DER of
//!   `TBS_Sign`: the whole seal, the signing time, `dataHash` = hash of the signed bytes (SM3
//!   or SHA-256), and `propertyInfo` (what the bytes are; [`crate::voucher`] puts the seal's
//!   position on the voucher and the earlier signatures there).
//!
//! # Strict DER
//!
//! [`Seal::from_der`] and [`SealSignature::from_der`] accept only DER that re-encodes to the
//! very same bytes (and certificates inside that do too), so the bytes a signature covers are
//! exactly the bytes that were received, and decoding then encoding is the identity.
//!
//! Known limit: `der` reads `GeneralizedTime` only as `YYYYMMDDHHMMSSZ`; seals written with
//! fractional seconds (some Java implementations do) are refused as malformed.

pub use crate::error::SealProblem;
use std::fmt;
use std::time::Duration;

use der::asn1::PrintableString;
use der::asn1::{BitString, GeneralizedTime, Ia5String, ObjectIdentifier, OctetString};
use der::{Decode, DecodeValue, Encode, EncodeValue, Header, Length, Reader, Sequence, Writer};
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::keys::{KeyAlgorithm, Signature, SigningKey};
use crate::pki::{Certificate, Serial, SubjectInfo, Validity};
use crate::pki::{PathStatus, TrustContext, path_status};
use crate::suite::{Suite, hash};

/// `SES_Header.id`: always `"ES"`.
pub const SES_ID: &str = "ES";
/// The format version this module reads and writes (GM/T 0031-2014: 4).
pub const SES_VERSION: u32 = 4;
/// The vendor ID (`SES_Header.vid`) guoku writes.
pub const GUOKU_VID: &str = "guoku";
/// `certListType` 1: the certificates themselves.
pub const CERT_LIST_CERTS: u32 = 1;
/// `certListType` 2: digests of the certificates.
pub const CERT_LIST_DIGESTS: u32 = 2;

/// Largest seal or seal signature accepted, in bytes of DER.
pub const MAX_SEAL_DER_LEN: usize = 512 * 1024;
/// Largest seal picture accepted, in bytes.
pub const MAX_PICTURE_LEN: usize = 256 * 1024;
/// Most certificates a seal's certList may name.
pub const MAX_CERT_LIST: usize = 64;
/// Longest `propertyInfo`, in characters.
pub const MAX_PROPERTY_INFO_LEN: usize = 1024;
/// How far a signing time may lie after the verifier's `now` (clocks of parties differ).
pub const MAX_CLOCK_SKEW: time::Duration = time::Duration::minutes(5);

// ----- ASN.1 --------------------------------------------------------------------------------

/// `SES_Header`.
#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
pub struct SesHeader {
    /// `id`: `"ES"`.
    pub id: Ia5String,
    /// `version`: 4.
    pub version: u32,
    /// `vid`: the vendor's ID.
    pub vid: Ia5String,
}

/// `CertDigestObj`: one certificate named by its digest.
#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
pub struct CertDigestObj {
    /// `type`: the digest algorithm (guoku writes `sm3` or `sha256`).
    pub digest_type: PrintableString,
    /// `value`: the digest of the certificate's DER.
    pub value: OctetString,
}

/// `SES_CertList`: the certificates allowed to sign with the seal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SesCertList {
    /// `certs` (certListType 1): each certificate's DER.
    Certs(Vec<OctetString>),
    /// `certDigestList` (certListType 2): each certificate's digest.
    Digests(Vec<CertDigestObj>),
}

impl SesCertList {
    /// The `certListType` that goes with this list.
    pub fn cert_list_type(&self) -> u32 {
        match self {
            SesCertList::Certs(_) => CERT_LIST_CERTS,
            SesCertList::Digests(_) => CERT_LIST_DIGESTS,
        }
    }

    fn len(&self) -> usize {
        match self {
            SesCertList::Certs(c) => c.len(),
            SesCertList::Digests(d) => d.len(),
        }
    }
}

/// `SES_ESPropertyInfo`: the seal's properties.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SesEsPropertyInfo {
    /// `type`: the seal type. guoku writes [`StampKind::seal_type_code`].
    pub seal_type: u32,
    /// `name`: the seal's name (for example `北京市财政局业务专用章`).
    pub name: String,
    /// `certListType` and `certList`.
    pub cert_list: SesCertList,
    /// `createDate`.
    pub create_date: GeneralizedTime,
    /// `validStart`.
    pub valid_start: GeneralizedTime,
    /// `validEnd`.
    pub valid_end: GeneralizedTime,
}

impl<'a> DecodeValue<'a> for SesEsPropertyInfo {
    type Error = der::Error;

    fn decode_value<R: Reader<'a>>(reader: &mut R, _header: Header) -> der::Result<Self> {
        let seal_type = u32::decode(reader)?;
        let name = String::decode(reader)?;
        let cert_list_type = u32::decode(reader)?;
        let cert_list = match cert_list_type {
            CERT_LIST_CERTS => SesCertList::Certs(Vec::<OctetString>::decode(reader)?),
            CERT_LIST_DIGESTS => SesCertList::Digests(Vec::<CertDigestObj>::decode(reader)?),
            _ => {
                return Err(reader.error(der::ErrorKind::Value {
                    tag: der::Tag::Integer,
                }));
            }
        };
        Ok(Self {
            seal_type,
            name,
            cert_list,
            create_date: GeneralizedTime::decode(reader)?,
            valid_start: GeneralizedTime::decode(reader)?,
            valid_end: GeneralizedTime::decode(reader)?,
        })
    }
}

impl EncodeValue for SesEsPropertyInfo {
    fn value_len(&self) -> der::Result<Length> {
        let list_len = match &self.cert_list {
            SesCertList::Certs(c) => c.encoded_len()?,
            SesCertList::Digests(d) => d.encoded_len()?,
        };
        self.seal_type.encoded_len()?
            + self.name.encoded_len()?
            + self.cert_list.cert_list_type().encoded_len()?
            + list_len
            + self.create_date.encoded_len()?
            + self.valid_start.encoded_len()?
            + self.valid_end.encoded_len()?
    }

    fn encode_value(&self, writer: &mut impl Writer) -> der::Result<()> {
        self.seal_type.encode(writer)?;
        self.name.encode(writer)?;
        self.cert_list.cert_list_type().encode(writer)?;
        match &self.cert_list {
            SesCertList::Certs(c) => c.encode(writer)?,
            SesCertList::Digests(d) => d.encode(writer)?,
        }
        self.create_date.encode(writer)?;
        self.valid_start.encode(writer)?;
        self.valid_end.encode(writer)
    }
}

impl Sequence<'_> for SesEsPropertyInfo {}

/// `SES_ESPictrueInfo` (so spelled in the standard): the seal's picture.
#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
pub struct SesEsPictureInfo {
    /// `type`: the image format (`PNG`, `SVG`, `GIF`, `BMP`, `JPG`, `OFD`, …).
    pub picture_type: Ia5String,
    /// `data`: the image bytes.
    pub data: OctetString,
    /// `width` in millimetres.
    pub width: u32,
    /// `height` in millimetres.
    pub height: u32,
}

/// `ExtData`: one vendor extension.
#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
pub struct ExtData {
    /// `extnID`.
    pub extn_id: ObjectIdentifier,
    /// `critical` (DEFAULT FALSE).
    #[asn1(default = "Default::default")]
    pub critical: bool,
    /// `extnValue`.
    pub extn_value: OctetString,
}

/// `SES_SealInfo`: what the sealmaker signs.
#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
pub struct SesSealInfo {
    /// `header`.
    pub header: SesHeader,
    /// `esID`: the seal's identifier.
    pub es_id: Ia5String,
    /// `property`.
    pub property: SesEsPropertyInfo,
    /// `picture`.
    pub picture: SesEsPictureInfo,
    /// `extDatas` (OPTIONAL).
    #[asn1(optional = "true")]
    pub ext_datas: Option<Vec<ExtData>>,
}

/// `SESeal`: an electronic seal (电子印章).
#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
pub struct SESeal {
    /// `eSealInfo`.
    pub e_seal_info: SesSealInfo,
    /// `cert`: the sealmaker's certificate (DER).
    pub cert: OctetString,
    /// `signAlgID`.
    pub sign_alg_id: ObjectIdentifier,
    /// `signedValue`: the sealmaker's signature over the DER of `eSealInfo`.
    pub signed_value: BitString,
}

/// `TBS_Sign`: what the signer signs.
#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
pub struct TbsSign {
    /// `version`: 4, as the seal's.
    pub version: u32,
    /// `eseal`: the seal used.
    pub eseal: SESeal,
    /// `timeInfo`: the signing time.
    pub time_info: GeneralizedTime,
    /// `dataHash`: the hash of the signed bytes (原文杂凑值).
    pub data_hash: BitString,
    /// `propertyInfo`: what the signed bytes are (原文数据的属性).
    pub property_info: Ia5String,
    /// `extDatas` (`[0] EXPLICIT`, OPTIONAL).
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub ext_datas: Option<Vec<ExtData>>,
}

/// `SES_Signature`: a seal signature (电子签章).
#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
pub struct SesSignature {
    /// `toSign`.
    pub to_sign: TbsSign,
    /// `cert`: the signer's certificate (DER).
    pub cert: OctetString,
    /// `signatureAlgID`.
    pub signature_alg_id: ObjectIdentifier,
    /// `signature`: the signer's signature over the DER of `toSign`.
    pub signature: BitString,
    /// `timeStamp` (`[0] EXPLICIT`, OPTIONAL): a time stamp over the signature. guoku does
    /// not write or check one.
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub time_stamp: Option<BitString>,
}

// ----- helpers ------------------------------------------------------------------------------

fn encode<T: Encode>(value: &T) -> Result<Vec<u8>> {
    value.to_der().map_err(Error::crypto)
}

/// Decode `bytes` as DER and insist that re-encoding gives the same bytes.
fn decode_strict<'a, T>(what: &'static str, bytes: &'a [u8]) -> Result<T>
where
    T: Decode<'a, Error = der::Error> + Encode,
{
    if bytes.len() > MAX_SEAL_DER_LEN {
        return Err(Error::malformed(
            what,
            format!("longer than {MAX_SEAL_DER_LEN} bytes"),
        ));
    }
    let value = T::from_der(bytes).map_err(|e| Error::malformed(what, e))?;
    if value.to_der().map_err(Error::crypto)? != bytes {
        return Err(Error::malformed(what, "not in canonical DER"));
    }
    Ok(value)
}

/// Parse a certificate carried in a seal, insisting on canonical DER.
fn certificate_strict(what: &'static str, bytes: &[u8]) -> Result<Certificate> {
    let cert = Certificate::from_der(bytes).map_err(|e| Error::malformed(what, e))?;
    if cert.x509().to_der().map_err(Error::crypto)? != bytes {
        return Err(Error::malformed(what, "not in canonical DER"));
    }
    Ok(cert)
}

fn to_generalized_time(t: OffsetDateTime) -> Result<GeneralizedTime> {
    let secs = u64::try_from(t.unix_timestamp())
        .map_err(|_| Error::InvalidArgument("times before 1970 are not supported".into()))?;
    let dt = der::DateTime::from_unix_duration(Duration::from_secs(secs))
        .map_err(|e| Error::InvalidArgument(format!("time out of range: {e}")))?;
    Ok(GeneralizedTime::from_date_time(dt))
}

fn from_generalized_time(t: &GeneralizedTime) -> OffsetDateTime {
    let secs = i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX);
    OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn ia5(what: &str, value: &str, max: usize) -> Result<Ia5String> {
    if value.is_empty() || value.len() > max || !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(Error::InvalidArgument(format!(
            "{what} must be 1 to {max} printable ASCII characters"
        )));
    }
    Ia5String::new(value).map_err(Error::crypto)
}

fn octets(bytes: &[u8]) -> Result<OctetString> {
    OctetString::new(bytes.to_vec()).map_err(Error::crypto)
}

fn digest_name(suite: Suite) -> &'static str {
    match suite {
        Suite::Sm => "sm3",
        Suite::Intl => "sha256",
    }
}

// ----- pictures -----------------------------------------------------------------------------

/// A seal's picture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealPicture {
    /// The image format as the standard names it (`PNG`, `SVG`, …).
    pub format: String,
    /// The image bytes.
    pub data: Vec<u8>,
    /// Display width in millimetres.
    pub width_mm: u32,
    /// Display height in millimetres.
    pub height_mm: u32,
}

impl SealPicture {
    /// A round red demonstration seal (SVG) with `organisation` along the rim and `caption`
    /// (for example `业务专用章`) under the star, `diameter_mm` across.
    pub fn demo(organisation: &str, caption: &str, diameter_mm: u32) -> Self {
        SealPicture {
            format: "SVG".into(),
            data: demo_seal_svg(organisation, caption, diameter_mm).into_bytes(),
            width_mm: diameter_mm,
            height_mm: diameter_mm,
        }
    }
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// The SVG text of a round red demonstration seal: a double rim, `organisation` along the
/// upper arc, a five-pointed star and `caption` below it. Not a legal seal: for demos and
/// tests only.
pub fn demo_seal_svg(organisation: &str, caption: &str, diameter_mm: u32) -> String {
    // A star of outer radius 30 and inner radius 12 around (100, 100), pointing up.
    let mut star = String::new();
    for i in 0..10u32 {
        let r = if i % 2 == 0 { 30.0 } else { 12.0 };
        let angle = std::f64::consts::PI * (f64::from(i) / 5.0 - 0.5);
        if i > 0 {
            star.push(' ');
        }
        star.push_str(&format!(
            "{:.1},{:.1}",
            100.0 + r * angle.cos(),
            100.0 + r * angle.sin()
        ));
    }
    format!(
        concat!(
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="{d}mm" height="{d}mm" viewBox="0 0 200 200">"##,
            r##"<defs><path id="rim" d="M 39.4 135 A 70 70 0 1 1 160.6 135"/></defs>"##,
            r##"<g fill="none" stroke="#d40000"><circle cx="100" cy="100" r="95" stroke-width="6"/>"##,
            r##"<circle cx="100" cy="100" r="88" stroke-width="1.5"/></g>"##,
            r##"<g fill="#d40000" font-family="serif" text-anchor="middle">"##,
            r##"<text font-size="22"><textPath href="#rim" startOffset="50%">{org}</textPath></text>"##,
            r##"<polygon points="{star}"/>"##,
            r##"<text x="100" y="162" font-size="18">{caption}</text></g></svg>"##,
        ),
        d = diameter_mm,
        org = xml_escape(organisation),
        star = star,
        caption = xml_escape(caption),
    )
}

// ----- seals --------------------------------------------------------------------------------

/// How a seal names the certificates allowed to use it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertListForm {
    /// The certificates themselves (certListType 1).
    Certificates,
    /// Their digests with the suite's hash (certListType 2): smaller, and the seal does not
    /// disclose the holders' certificates.
    Digests,
}

/// Everything [`make_seal`] needs besides the sealmaker's key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealSpec {
    /// The seal's identifier (`esID`): printable ASCII, unique in the deployment.
    pub es_id: String,
    /// What kind of seal it is (must be a seal kind, not a signature kind).
    pub kind: StampKind,
    /// The seal's name (`name`).
    pub name: String,
    /// The certificates allowed to sign with the seal (`certList`).
    pub holders: Vec<Certificate>,
    /// How `certList` names them.
    pub list_form: CertListForm,
    /// The picture.
    pub picture: SealPicture,
    /// When the seal was made (`createDate`).
    pub created: OffsetDateTime,
    /// When the seal may be used (`validStart`, `validEnd`).
    pub validity: Validity,
}

/// An electronic seal (`SESeal`), parsed, with its DER and its sealmaker's certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seal {
    asn1: SESeal,
    der: Vec<u8>,
    /// The DER of `SES_SealInfo`: what the sealmaker signed.
    info_der: Vec<u8>,
    maker: Certificate,
}

impl Seal {
    /// Parse a seal: strict DER, format version 4, and a well-formed sealmaker certificate.
    /// Nothing is verified here: see [`verify_seal`].
    pub fn from_der(bytes: &[u8]) -> Result<Self> {
        let asn1: SESeal = decode_strict("SESeal", bytes)?;
        Self::from_asn1(asn1, bytes.to_vec())
    }

    fn from_asn1(asn1: SESeal, der: Vec<u8>) -> Result<Self> {
        let header = &asn1.e_seal_info.header;
        if header.id.as_str() != SES_ID || header.version != SES_VERSION {
            return Err(Error::Unsupported(format!(
                "seal format {:?} version {}",
                header.id.as_str(),
                header.version
            )));
        }
        if asn1.e_seal_info.property.cert_list.len() > MAX_CERT_LIST {
            return Err(Error::malformed(
                "SESeal",
                format!("more than {MAX_CERT_LIST} certificates on the list"),
            ));
        }
        let maker = certificate_strict("sealmaker certificate", asn1.cert.as_bytes())?;
        let info_der = encode(&asn1.e_seal_info)?;
        Ok(Self {
            asn1,
            der,
            info_der,
            maker,
        })
    }

    /// The DER bytes.
    pub fn to_der(&self) -> &[u8] {
        &self.der
    }

    /// The ASN.1 structure.
    pub fn asn1(&self) -> &SESeal {
        &self.asn1
    }

    /// The seal's identifier (`esID`).
    pub fn es_id(&self) -> &str {
        self.asn1.e_seal_info.es_id.as_str()
    }

    /// The seal's name.
    pub fn name(&self) -> &str {
        &self.asn1.e_seal_info.property.name
    }

    /// The kind of seal, if its `type` is one of guoku's codes.
    pub fn kind(&self) -> Option<StampKind> {
        StampKind::from_seal_type_code(self.asn1.e_seal_info.property.seal_type)
    }

    /// When the seal may be used.
    pub fn validity(&self) -> Validity {
        let p = &self.asn1.e_seal_info.property;
        Validity {
            not_before: from_generalized_time(&p.valid_start),
            not_after: from_generalized_time(&p.valid_end),
        }
    }

    /// When the seal was made.
    pub fn created(&self) -> OffsetDateTime {
        from_generalized_time(&self.asn1.e_seal_info.property.create_date)
    }

    /// The sealmaker's certificate.
    pub fn maker(&self) -> &Certificate {
        &self.maker
    }

    /// The picture.
    pub fn picture(&self) -> SealPicture {
        let p = &self.asn1.e_seal_info.picture;
        SealPicture {
            format: p.picture_type.as_str().to_string(),
            data: p.data.as_bytes().to_vec(),
            width_mm: p.width,
            height_mm: p.height,
        }
    }

    /// Whether the seal's certList names `certificate` (by DER, or by its digest under the
    /// suite's hash).
    pub fn lists(&self, suite: Suite, certificate: &Certificate) -> bool {
        match &self.asn1.e_seal_info.property.cert_list {
            SesCertList::Certs(certs) => certs.iter().any(|c| c.as_bytes() == certificate.to_der()),
            SesCertList::Digests(digests) => {
                let digest = hash(suite, certificate.to_der());
                digests.iter().any(|d| {
                    d.digest_type.as_str() == digest_name(suite) && d.value.as_bytes() == digest
                })
            }
        }
    }

    /// Check the sealmaker's signature over `SES_SealInfo`, and that the seal uses the suite's
    /// algorithm.
    fn check_maker_signature(&self, suite: Suite) -> std::result::Result<(), SealProblem> {
        check_algorithm(suite, &self.asn1.sign_alg_id)?;
        let key = self
            .maker
            .public_key()
            .map_err(|_| SealProblem::MakerSignatureInvalid)?;
        if key.algorithm() != suite.signature_algorithm() {
            return Err(SealProblem::MakerSignatureInvalid);
        }
        let sig = self
            .asn1
            .signed_value
            .as_bytes()
            .ok_or(SealProblem::MakerSignatureInvalid)?;
        crate::verified::once(&[b"seal", self.maker.to_der(), &self.info_der, sig], || {
            key.verify(&self.info_der, &Signature::from_bytes(sig))
        })
        .map_err(|_| SealProblem::MakerSignatureInvalid)
    }
}

fn check_algorithm(suite: Suite, oid: &ObjectIdentifier) -> std::result::Result<(), SealProblem> {
    if KeyAlgorithm::from_signature_oid(oid) == Some(suite.signature_algorithm()) {
        Ok(())
    } else {
        Err(SealProblem::UnexpectedAlgorithm(oid.to_string()))
    }
}

fn check_key(suite: Suite, key: &SigningKey, certificate: &Certificate, who: &str) -> Result<()> {
    crate::pki::check_signing_key(suite, key.verifying_key(), certificate, who)
}

/// Make an electronic seal: the sealmaker (`maker_key`, `maker_certificate`) signs the DER of
/// `SES_SealInfo` built from `spec`.
///
/// The sealmaker is an end-entity signing certificate of the deployment: typically a
/// dedicated seal-maker organisation certificate issued by the deployment CA, or the
/// organisation whose seal it is (see the [module documentation](self)). Refused if the key
/// is not the suite's or does not match the certificate, or `spec` is out of bounds.
pub fn make_seal(
    suite: Suite,
    spec: &SealSpec,
    maker_key: &SigningKey,
    maker_certificate: &Certificate,
) -> Result<Seal> {
    check_key(suite, maker_key, maker_certificate, "sealmaker")?;
    let Some(seal_type) = spec.kind.seal_type_code() else {
        return Err(Error::InvalidArgument(format!(
            "{} is a signature, not a seal",
            spec.kind
        )));
    };
    let name_chars = spec.name.chars().count();
    if name_chars == 0 || name_chars > 128 || spec.name.chars().any(char::is_control) {
        return Err(Error::InvalidArgument(
            "a seal name has 1 to 128 characters and no control characters".into(),
        ));
    }
    if spec.holders.is_empty() || spec.holders.len() > MAX_CERT_LIST {
        return Err(Error::InvalidArgument(format!(
            "a seal lists 1 to {MAX_CERT_LIST} certificates"
        )));
    }
    if spec.validity.not_after < spec.validity.not_before {
        return Err(Error::InvalidArgument(
            "the seal's validity ends before it starts".into(),
        ));
    }
    let picture = &spec.picture;
    if picture.data.is_empty() || picture.data.len() > MAX_PICTURE_LEN {
        return Err(Error::InvalidArgument(format!(
            "a seal picture has 1 to {MAX_PICTURE_LEN} bytes"
        )));
    }
    if !(1..=1000).contains(&picture.width_mm) || !(1..=1000).contains(&picture.height_mm) {
        return Err(Error::InvalidArgument(
            "a seal picture is 1 to 1000 mm wide and high".into(),
        ));
    }
    let cert_list = match spec.list_form {
        CertListForm::Certificates => SesCertList::Certs(
            spec.holders
                .iter()
                .map(|c| octets(c.to_der()))
                .collect::<Result<_>>()?,
        ),
        CertListForm::Digests => SesCertList::Digests(
            spec.holders
                .iter()
                .map(|c| {
                    Ok(CertDigestObj {
                        digest_type: PrintableString::new(digest_name(suite))
                            .map_err(Error::crypto)?,
                        value: octets(&hash(suite, c.to_der()))?,
                    })
                })
                .collect::<Result<_>>()?,
        ),
    };
    let info = SesSealInfo {
        header: SesHeader {
            id: Ia5String::new(SES_ID).map_err(Error::crypto)?,
            version: SES_VERSION,
            vid: Ia5String::new(GUOKU_VID).map_err(Error::crypto)?,
        },
        es_id: ia5("a seal ID", &spec.es_id, 64)?,
        property: SesEsPropertyInfo {
            seal_type,
            name: spec.name.clone(),
            cert_list,
            create_date: to_generalized_time(spec.created)?,
            valid_start: to_generalized_time(spec.validity.not_before)?,
            valid_end: to_generalized_time(spec.validity.not_after)?,
        },
        picture: SesEsPictureInfo {
            picture_type: ia5("a picture format", &picture.format, 16)?,
            data: octets(&picture.data)?,
            width: picture.width_mm,
            height: picture.height_mm,
        },
        ext_datas: None,
    };
    let signed = maker_key.sign(&encode(&info)?)?;
    let asn1 = SESeal {
        e_seal_info: info,
        cert: octets(maker_certificate.to_der())?,
        sign_alg_id: suite.signature_algorithm().signature_oid(),
        signed_value: BitString::from_bytes(signed.as_bytes()).map_err(Error::crypto)?,
    };
    let der = encode(&asn1)?;
    if der.len() > MAX_SEAL_DER_LEN {
        return Err(Error::InvalidArgument(format!(
            "the seal would exceed {MAX_SEAL_DER_LEN} bytes"
        )));
    }
    Seal::from_asn1(asn1, der)
}

// ----- seal signatures ----------------------------------------------------------------------

/// A seal signature (`SES_Signature`), parsed, with its DER, its seal and its signer's
/// certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealSignature {
    // Boxed: a seal signature is large, and it sits in enums next to small values.
    inner: Box<SealSignatureParts>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct SealSignatureParts {
    asn1: SesSignature,
    der: Vec<u8>,
    /// The DER of `TBS_Sign`: what the signer signed.
    tbs_der: Vec<u8>,
    seal: Seal,
    signer: Certificate,
}

impl SealSignature {
    /// Parse a seal signature: strict DER, format version 4, well-formed certificates.
    /// Nothing is verified here: see [`verify_seal_signature`].
    pub fn from_der(bytes: &[u8]) -> Result<Self> {
        let asn1: SesSignature = decode_strict("SES_Signature", bytes)?;
        Self::from_asn1(asn1, bytes.to_vec())
    }

    fn from_asn1(asn1: SesSignature, der: Vec<u8>) -> Result<Self> {
        if asn1.to_sign.version != SES_VERSION {
            return Err(Error::Unsupported(format!(
                "seal signature version {}",
                asn1.to_sign.version
            )));
        }
        let seal_der = encode(&asn1.to_sign.eseal)?;
        let seal = Seal::from_asn1(asn1.to_sign.eseal.clone(), seal_der)?;
        let signer = certificate_strict("signer certificate", asn1.cert.as_bytes())?;
        let tbs_der = encode(&asn1.to_sign)?;
        Ok(Self {
            inner: Box::new(SealSignatureParts {
                asn1,
                der,
                tbs_der,
                seal,
                signer,
            }),
        })
    }

    /// The DER bytes.
    pub fn to_der(&self) -> &[u8] {
        &self.inner.der
    }

    /// The ASN.1 structure.
    pub fn asn1(&self) -> &SesSignature {
        &self.inner.asn1
    }

    /// The seal used.
    pub fn seal(&self) -> &Seal {
        &self.inner.seal
    }

    /// The signer's certificate.
    pub fn signer(&self) -> &Certificate {
        &self.inner.signer
    }

    /// The signing time the signer states.
    pub fn signing_time(&self) -> OffsetDateTime {
        from_generalized_time(&self.inner.asn1.to_sign.time_info)
    }

    /// `propertyInfo`: what the signed bytes are.
    pub fn property_info(&self) -> &str {
        self.inner.asn1.to_sign.property_info.as_str()
    }
}

/// Sign `data` with `seal`: the signer (`key`, `certificate`, which must be on the seal's
/// certList) signs `TBS_Sign` with the hash of `data`, `property_info` and the signing `time`
/// (kept to the second).
///
/// Refused with [`Error::SealRefused`] if the sealmaker's signature does not verify, the seal
/// is not valid at `time`, or the signer is not listed; with [`Error::InvalidArgument`] if the
/// key is not the suite's or does not match the certificate.
pub fn sign_with_seal(
    suite: Suite,
    seal: &Seal,
    data: &[u8],
    property_info: &str,
    key: &SigningKey,
    certificate: &Certificate,
    time: OffsetDateTime,
) -> Result<SealSignature> {
    check_key(suite, key, certificate, "signer")?;
    seal.check_maker_signature(suite)
        .map_err(Error::SealRefused)?;
    let time = time
        .replace_nanosecond(0)
        .map_err(|e| Error::InvalidArgument(e.to_string()))?;
    if !seal.validity().contains(time) {
        return Err(Error::SealRefused(SealProblem::NotValidAtSigning));
    }
    if !seal.lists(suite, certificate) {
        return Err(Error::SealRefused(SealProblem::SignerNotListed));
    }
    let to_sign = TbsSign {
        version: SES_VERSION,
        eseal: seal.asn1.clone(),
        time_info: to_generalized_time(time)?,
        data_hash: BitString::from_bytes(&hash(suite, data)).map_err(Error::crypto)?,
        property_info: ia5("propertyInfo", property_info, MAX_PROPERTY_INFO_LEN)?,
        ext_datas: None,
    };
    let tbs_der = encode(&to_sign)?;
    let signature = key.sign(&tbs_der)?;
    let asn1 = SesSignature {
        to_sign,
        cert: octets(certificate.to_der())?,
        signature_alg_id: suite.signature_algorithm().signature_oid(),
        signature: BitString::from_bytes(signature.as_bytes()).map_err(Error::crypto)?,
        time_stamp: None,
    };
    let der = encode(&asn1)?;
    if der.len() > MAX_SEAL_DER_LEN {
        return Err(Error::InvalidArgument(format!(
            "the seal signature would exceed {MAX_SEAL_DER_LEN} bytes"
        )));
    }
    Ok(SealSignature {
        inner: Box::new(SealSignatureParts {
            asn1,
            der,
            tbs_der,
            seal: seal.clone(),
            signer: certificate.clone(),
        }),
    })
}

// ----- verification -------------------------------------------------------------------------

/// What was found about a seal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealReport {
    /// `esID`.
    pub es_id: String,
    /// The seal's name.
    pub name: String,
    /// The seal's kind, if its type is one of guoku's codes.
    pub kind: Option<StampKind>,
    /// Who made the seal, as the sealmaker's certificate says.
    pub maker: SubjectInfo,
    /// The sealmaker's certificate serial.
    pub maker_serial: Serial,
    /// The sealmaker's certificate path at the time of the check.
    pub maker_path: PathStatus,
    /// When the seal may be used.
    pub validity: Validity,
    /// What is wrong with the seal; empty if nothing.
    pub problems: Vec<SealProblem>,
}

impl SealReport {
    /// Whether the seal is fully acceptable.
    pub fn is_valid(&self) -> bool {
        self.problems.is_empty() && self.maker_path == PathStatus::Valid
    }
}

/// Check a seal at `trust.now`: the sealmaker's signature and algorithm, the seal's validity,
/// and the sealmaker's certificate path.
pub fn verify_seal(suite: Suite, seal: &Seal, trust: &TrustContext<'_>) -> SealReport {
    let mut problems = Vec::new();
    if let Err(p) = seal.check_maker_signature(suite) {
        problems.push(p);
    }
    if !seal.validity().contains(trust.now) {
        problems.push(SealProblem::NotValidNow);
    }
    SealReport {
        es_id: seal.es_id().to_string(),
        name: seal.name().to_string(),
        kind: seal.kind(),
        maker: seal.maker.subject_info(),
        maker_serial: seal.maker.serial(),
        maker_path: path_status(&seal.maker, trust),
        validity: seal.validity(),
        problems,
    }
}

/// What was found about a seal signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealSignatureReport {
    /// The seal's own findings.
    pub seal: SealReport,
    /// Who signed, as the signer's certificate says.
    pub signer: SubjectInfo,
    /// The signer's certificate serial.
    pub signer_serial: Serial,
    /// The signer's certificate path at the time of the check.
    pub signer_path: PathStatus,
    /// The signing time the signer states.
    pub signing_time: OffsetDateTime,
    /// What is wrong with the signature (the seal's own problems are in `seal`); empty if
    /// nothing.
    pub problems: Vec<SealProblem>,
}

impl SealSignatureReport {
    /// Whether the seal signature is fully acceptable.
    pub fn is_valid(&self) -> bool {
        self.problems.is_empty() && self.signer_path == PathStatus::Valid && self.seal.is_valid()
    }

    /// Every problem, the seal's first, with the certificate paths.
    pub fn reasons(&self) -> Vec<String> {
        let mut out: Vec<String> = self.seal.problems.iter().map(ToString::to_string).collect();
        if self.seal.maker_path != PathStatus::Valid {
            out.push(format!("sealmaker certificate: {}", self.seal.maker_path));
        }
        out.extend(self.problems.iter().map(ToString::to_string));
        if self.signer_path != PathStatus::Valid {
            out.push(format!("signer certificate: {}", self.signer_path));
        }
        out
    }
}

/// Check a seal signature over `data` at `trust.now`: the seal ([`verify_seal`]), the seal's
/// validity at the signing time, the signer on the certList, the signer's signature over
/// `TBS_Sign`, the data hash, the signing time against the signer's certificate and `now`,
/// and both certificate paths. Never fails: everything found is in the report.
pub fn verify_seal_signature(
    suite: Suite,
    signature: &SealSignature,
    data: &[u8],
    trust: &TrustContext<'_>,
) -> SealSignatureReport {
    let seal = verify_seal(suite, signature.seal(), trust);
    let signing_time = signature.signing_time();
    let mut problems = Vec::new();
    if let Err(p) = check_algorithm(suite, &signature.asn1().signature_alg_id) {
        problems.push(p);
    }
    if !signature.seal().validity().contains(signing_time) {
        problems.push(SealProblem::NotValidAtSigning);
    }
    if !signature.seal().lists(suite, signature.signer()) {
        problems.push(SealProblem::SignerNotListed);
    }
    if !signer_signature_ok(suite, signature) {
        problems.push(SealProblem::SignatureInvalid);
    }
    let expected = hash(suite, data);
    if signature.asn1().to_sign.data_hash.as_bytes() != Some(&expected[..]) {
        problems.push(SealProblem::DataHashMismatch);
    }
    if !signature.signer().validity().contains(signing_time) {
        problems.push(SealProblem::SignerNotValidAtSigning);
    }
    if signing_time > trust.now + MAX_CLOCK_SKEW {
        problems.push(SealProblem::SignedInFuture);
    }
    SealSignatureReport {
        seal,
        signer: signature.signer().subject_info(),
        signer_serial: signature.signer().serial(),
        signer_path: path_status(signature.signer(), trust),
        signing_time,
        problems,
    }
}

fn signer_signature_ok(suite: Suite, signature: &SealSignature) -> bool {
    let Ok(key) = signature.signer().public_key() else {
        return false;
    };
    if key.algorithm() != suite.signature_algorithm() {
        return false;
    }
    let Some(sig) = signature.asn1().signature.as_bytes() else {
        return false;
    };
    key.verify(&signature.inner.tbs_der, &Signature::from_bytes(sig))
        .is_ok()
}

// ----- kinds of stamp ------------------------------------------------------------------------

/// The kind of a position: the seal type codes of the standard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StampKind {
    /// `qm` 签名: a signature.
    Qm,
    /// `ywzyz` 业务专用章: business seal.
    Ywzyz,
    /// `zqz` 转讫章: "paid" seal.
    Zqz,
    /// `gz` 公章: official seal.
    Gz,
    /// `fjz` 附件章: attachment seal.
    Fjz,
    /// `sz` 私章: personal seal.
    Sz,
    /// `jzysz` 记账员私章: book-keeper's personal seal.
    Jzysz,
    /// `fhysz` 复核员私章: reviewer's personal seal.
    Fhysz,
    /// `jzyqm` 记账员签名: book-keeper's signature.
    Jzyqm,
    /// `fhyqm` 复核员签名: reviewer's signature.
    Fhyqm,
}

impl StampKind {
    /// Every kind.
    pub const ALL: [StampKind; 10] = [
        StampKind::Qm,
        StampKind::Ywzyz,
        StampKind::Zqz,
        StampKind::Gz,
        StampKind::Fjz,
        StampKind::Sz,
        StampKind::Jzysz,
        StampKind::Fhysz,
        StampKind::Jzyqm,
        StampKind::Fhyqm,
    ];

    /// The standard's code (`qm`, `ywzyz`, …).
    pub fn code(self) -> &'static str {
        match self {
            StampKind::Qm => "qm",
            StampKind::Ywzyz => "ywzyz",
            StampKind::Zqz => "zqz",
            StampKind::Gz => "gz",
            StampKind::Fjz => "fjz",
            StampKind::Sz => "sz",
            StampKind::Jzysz => "jzysz",
            StampKind::Fhysz => "fhysz",
            StampKind::Jzyqm => "jzyqm",
            StampKind::Fhyqm => "fhyqm",
        }
    }

    /// The Chinese name.
    pub fn name_zh(self) -> &'static str {
        match self {
            StampKind::Qm => "签名",
            StampKind::Ywzyz => "业务专用章",
            StampKind::Zqz => "转讫章",
            StampKind::Gz => "公章",
            StampKind::Fjz => "附件章",
            StampKind::Sz => "私章",
            StampKind::Jzysz => "记账员私章",
            StampKind::Fhysz => "复核员私章",
            StampKind::Jzyqm => "记账员签名",
            StampKind::Fhyqm => "复核员签名",
        }
    }

    /// Whether the position takes an electronic seal (`true`) or a plain signature.
    pub fn is_seal(self) -> bool {
        self.seal_type_code().is_some()
    }

    /// The `type` guoku writes in a seal of this kind (`None` for signature kinds): 1 `gz`,
    /// 2 `ywzyz`, 3 `zqz`, 4 `fjz`, 5 `sz`, 6 `jzysz`, 7 `fhysz`. This numbering is guoku's
    /// convention; it lets a verifier refuse a seal of the wrong kind at a position.
    pub fn seal_type_code(self) -> Option<u32> {
        match self {
            StampKind::Gz => Some(1),
            StampKind::Ywzyz => Some(2),
            StampKind::Zqz => Some(3),
            StampKind::Fjz => Some(4),
            StampKind::Sz => Some(5),
            StampKind::Jzysz => Some(6),
            StampKind::Fhysz => Some(7),
            StampKind::Qm | StampKind::Jzyqm | StampKind::Fhyqm => None,
        }
    }

    /// The seal kind with this `type` code, if any.
    pub fn from_seal_type_code(code: u32) -> Option<Self> {
        StampKind::ALL
            .into_iter()
            .find(|k| k.seal_type_code() == Some(code))
    }
}

impl fmt::Display for StampKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl std::str::FromStr for StampKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        StampKind::ALL
            .into_iter()
            .find(|k| k.code() == s)
            .ok_or_else(|| Error::InvalidArgument(format!("unknown seal kind {s:?}")))
    }
}
