//! The voucher type registry: for each `VtCode`, its names, parties, fields, amount rules
//! and seal positions, loaded from a TOML file.
//!
//! Codes and field sets vary by province and by version of the message specification, so
//! they are configuration: `registry/default.toml` ships inside the binary, and a province
//! replaces it with its own file. The file's own comments describe its format.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use guoku_domain::VtCode;
use serde::Deserialize;

/// The registry that ships with guoku (`registry/default.toml`).
pub const DEFAULT_REGISTRY_TOML: &str = include_str!("../registry/default.toml");

/// A party to treasury payment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// 财政
    Finance,
    /// 人民银行国库
    Pboc,
    /// 代理银行
    Bank,
    /// 预算单位
    BudgetUnit,
}

impl Role {
    pub fn name_zh(self) -> &'static str {
        match self {
            Role::Finance => "财政",
            Role::Pboc => "人民银行国库",
            Role::Bank => "代理银行",
            Role::BudgetUnit => "预算单位",
        }
    }

    pub fn name_en(self) -> &'static str {
        match self {
            Role::Finance => "finance",
            Role::Pboc => "pboc",
            Role::Bank => "bank",
            Role::BudgetUnit => "budget_unit",
        }
    }
}

/// The post of a person who signs (经办 / 审核 / 签章).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Post {
    Maker,
    Checker,
    Signer,
}

/// What the sign of a voucher's amount must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignRule {
    /// > 0 (5201, 2301, 5207).
    Positive,
    /// < 0 (2302, 2252).
    Negative,
    /// exactly 0.00 (5253, 5351).
    Zero,
    /// ≠ 0, either sign (5106, 5108: a negative amount is an adjustment).
    NonZero,
    /// no rule.
    Any,
}

impl SignRule {
    pub fn admits(self, amount: guoku_domain::Amount) -> bool {
        match self {
            SignRule::Positive => amount.is_positive(),
            SignRule::Negative => amount.is_negative(),
            SignRule::Zero => amount.is_zero(),
            SignRule::NonZero => !amount.is_zero(),
            SignRule::Any => true,
        }
    }

    pub fn describe_en(self) -> &'static str {
        match self {
            SignRule::Positive => "> 0",
            SignRule::Negative => "< 0",
            SignRule::Zero => "= 0",
            SignRule::NonZero => "≠ 0",
            SignRule::Any => "any",
        }
    }
}

/// Whether a type carries detail records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DetailRule {
    Required,
    Optional,
    None,
}

/// The format of a field's text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldType {
    /// Free text of at most `max` GBK bytes.
    Text {
        max: usize,
    },
    /// Digits only, `min..=max` of them.
    Digits {
        min: usize,
        max: usize,
    },
    /// Yuan with two decimals (`Amount`).
    Amount,
    /// `yyyyMMdd`.
    Date,
    AdmDiv,
    StYear,
    VtCode,
    /// A voucher number of at most `max` bytes (20 unless a type says less).
    VoucherNo {
        max: usize,
    },
    BankNo,
    AccountNo,
    TreCode,
    FinOrg,
    FuncClass,
    EcoClass,
    FundType,
    PayType,
    BusinessType,
    /// `01`–`12`.
    Month,
    /// A non-negative whole number of at most 9 digits.
    Count,
    /// One of a fixed list of codes.
    Enum(Vec<String>),
}

/// One field of a voucher type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldSpec {
    pub name: String,
    pub ty: FieldType,
    /// Must be present and not empty (for a receipt field: in the receipt).
    pub required: bool,
    /// Filled by the receiver in the receipt (回单), empty in the original: the `X*` fields.
    pub receipt: bool,
    /// The field's Chinese label, when the registry gives one.
    pub label_zh: Option<String>,
}

/// One signature or seal a voucher needs, in the order they are applied.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealPosition {
    /// The position number (the standard's `<Stamp No="…">`).
    pub position: u32,
    /// The seal type code of the standard: `qm` signature, `ywzyz` 业务专用章, `zqz`
    /// 转讫章, `gz` 公章, `fjz` 附件章, `sz` 私章, `jzysz`/`fhysz` 记账员/复核员私章,
    /// `jzyqm`/`fhyqm` 记账员/复核员签名.
    pub kind: String,
    /// The party whose key makes it.
    pub party: Role,
    /// For a person's signature, their post.
    #[serde(default)]
    pub post: Option<Post>,
    pub name_zh: String,
    pub name_en: String,
}

const SEAL_KINDS: &[&str] = &[
    "zqz", "gz", "ywzyz", "fjz", "sz", "qm", "jzysz", "fhysz", "jzyqm", "fhyqm",
];

/// One voucher type of the standard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoucherType {
    pub vt_code: VtCode,
    pub name_zh: String,
    pub name_en: String,
    pub senders: Vec<Role>,
    pub receivers: Vec<Role>,
    pub header: Vec<FieldSpec>,
    pub detail: Vec<FieldSpec>,
    pub details: DetailRule,
    /// Header codes under which a type whose details are required may come without them
    /// (5201: `BusinessTypeCode` 3 or 4, a salary or batch master whose rows travel in
    /// 8207s). Empty for most types.
    pub details_optional_when: BTreeMap<String, Vec<String>>,
    /// The header field holding the voucher's amount, checked against `sign`.
    pub amount: Option<String>,
    pub sign: SignRule,
    /// (header field, detail field): the header amount equals the sum over the details.
    pub sums: Vec<(String, String)>,
    /// A header field that must equal the number of details.
    pub count: Option<String>,
    /// Fields restricted to some codes in this type (5201: `PayTypeCode` 11).
    pub allowed: BTreeMap<String, Vec<String>>,
    /// Replies (2507, 5507) travel with their `X*` fields filled: always a receipt.
    pub reply: bool,
    /// Signatures and seals of the sender, in order.
    pub seals: Vec<SealPosition>,
    /// Signatures and seals the receiver adds to its receipt, in order.
    pub receipt_seals: Vec<SealPosition>,
}

impl VoucherType {
    pub fn header_field(&self, name: &str) -> Option<&FieldSpec> {
        self.header.iter().find(|f| f.name == name)
    }

    pub fn detail_field(&self, name: &str) -> Option<&FieldSpec> {
        self.detail.iter().find(|f| f.name == name)
    }
}

/// The registry: every known voucher type by code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registry {
    types: BTreeMap<String, VoucherType>,
}

/// Why a registry file was refused. The message names the place in the file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("voucher type registry: {0}")]
pub struct RegistryError(String);

impl Registry {
    /// The registry that ships with guoku.
    pub fn builtin() -> Registry {
        Registry::from_toml(DEFAULT_REGISTRY_TOML).expect("the shipped registry is valid")
    }

    /// Parses and checks a registry file's text.
    pub fn from_toml(text: &str) -> Result<Registry, RegistryError> {
        let raw: RawRegistry = toml::from_str(text).map_err(|e| RegistryError(e.to_string()))?;
        raw.resolve()
    }

    pub fn get(&self, vt_code: &str) -> Option<&VoucherType> {
        self.types.get(vt_code)
    }

    /// All types in code order.
    pub fn types(&self) -> impl Iterator<Item = &VoucherType> {
        self.types.values()
    }

    pub fn len(&self) -> usize {
        self.types.len()
    }

    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name_en())
    }
}

// ---- the file format -------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistry {
    common: RawCommon,
    fields: BTreeMap<String, RawField>,
    #[serde(rename = "type")]
    types: Vec<RawType>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommon {
    header_first: Vec<String>,
    header_last: Vec<String>,
    detail_first: Vec<String>,
    detail_last: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    max: Option<usize>,
    #[serde(default)]
    min: Option<usize>,
    #[serde(default)]
    values: Option<Vec<String>>,
    #[serde(default)]
    zh: Option<String>,
    #[serde(default)]
    receipt: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawType {
    vt_code: String,
    name_zh: String,
    name_en: String,
    senders: Vec<Role>,
    receivers: Vec<Role>,
    header: Vec<String>,
    #[serde(default)]
    detail: Vec<String>,
    details: DetailRule,
    #[serde(default)]
    details_optional_when: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    amount: Option<String>,
    #[serde(default = "any_sign")]
    sign: SignRule,
    #[serde(default)]
    sums: Vec<(String, String)>,
    #[serde(default)]
    count: Option<String>,
    #[serde(default)]
    allowed: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    reply: bool,
    #[serde(default)]
    voucher_no_max: Option<usize>,
    #[serde(default)]
    seals: Vec<SealPosition>,
    #[serde(default)]
    receipt_seals: Vec<SealPosition>,
}

fn any_sign() -> SignRule {
    SignRule::Any
}

impl RawField {
    fn field_type(&self, name: &str) -> Result<FieldType, RegistryError> {
        let need_max = || {
            self.max
                .ok_or_else(|| RegistryError(format!("field {name}: type {} needs max", self.ty)))
        };
        Ok(match self.ty.as_str() {
            "text" => FieldType::Text { max: need_max()? },
            "digits" => FieldType::Digits {
                min: self.min.unwrap_or(1),
                max: need_max()?,
            },
            "amount" => FieldType::Amount,
            "date" => FieldType::Date,
            "adm_div" => FieldType::AdmDiv,
            "st_year" => FieldType::StYear,
            "vt_code" => FieldType::VtCode,
            "voucher_no" => FieldType::VoucherNo {
                max: self.max.unwrap_or(guoku_domain::VoucherNo::MAX_LEN),
            },
            "bank_no" => FieldType::BankNo,
            "account_no" => FieldType::AccountNo,
            "tre_code" => FieldType::TreCode,
            "fin_org" => FieldType::FinOrg,
            "func_class" => FieldType::FuncClass,
            "eco_class" => FieldType::EcoClass,
            "fund_type" => FieldType::FundType,
            "pay_type" => FieldType::PayType,
            "business_type" => FieldType::BusinessType,
            "month" => FieldType::Month,
            "count" => FieldType::Count,
            "enum" => FieldType::Enum(
                self.values
                    .clone()
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| {
                        RegistryError(format!("field {name}: type enum needs values"))
                    })?,
            ),
            other => {
                return Err(RegistryError(format!(
                    "field {name}: unknown type {other:?}"
                )));
            }
        })
    }
}

impl RawRegistry {
    fn resolve(self) -> Result<Registry, RegistryError> {
        let mut dictionary = BTreeMap::new();
        for (name, raw) in &self.fields {
            if !crate::model::is_field_name(name) {
                return Err(RegistryError(format!("{name:?} is not a field name")));
            }
            let is_x =
                name.len() > 1 && name.starts_with('X') && name.as_bytes()[1].is_ascii_uppercase();
            let spec = FieldSpec {
                name: name.clone(),
                ty: raw.field_type(name)?,
                required: true,
                receipt: raw.receipt.unwrap_or(is_x),
                label_zh: raw.zh.clone(),
            };
            dictionary.insert(name.clone(), spec);
        }
        let mut types = BTreeMap::new();
        for raw in self.types {
            let code = raw.vt_code.clone();
            let ty = resolve_type(raw, &self.common, &dictionary)
                .map_err(|RegistryError(e)| RegistryError(format!("type {code}: {e}")))?;
            if types.insert(code.clone(), ty).is_some() {
                return Err(RegistryError(format!("type {code} is defined twice")));
            }
        }
        Ok(Registry { types })
    }
}

/// Resolves a list of names (`"Hold1?"` marks an optional field) against the dictionary.
fn resolve_fields(
    names: impl Iterator<Item = String>,
    dictionary: &BTreeMap<String, FieldSpec>,
    voucher_no_max: Option<usize>,
) -> Result<Vec<FieldSpec>, RegistryError> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for entry in names {
        let (name, required) = match entry.strip_suffix('?') {
            Some(n) => (n, false),
            None => (entry.as_str(), true),
        };
        if !seen.insert(name.to_owned()) {
            return Err(RegistryError(format!("field {name} is listed twice")));
        }
        let mut spec = dictionary
            .get(name)
            .cloned()
            .ok_or_else(|| RegistryError(format!("field {name} is not in [fields]")))?;
        spec.required = required;
        if let (FieldType::VoucherNo { max }, Some(limit)) = (&mut spec.ty, voucher_no_max)
            && name == "VoucherNo"
        {
            *max = limit;
        }
        out.push(spec);
    }
    Ok(out)
}

fn resolve_type(
    raw: RawType,
    common: &RawCommon,
    dictionary: &BTreeMap<String, FieldSpec>,
) -> Result<VoucherType, RegistryError> {
    let vt_code: VtCode = raw
        .vt_code
        .parse()
        .map_err(|e| RegistryError(format!("vt_code: {e}")))?;
    let header = resolve_fields(
        common
            .header_first
            .iter()
            .chain(&raw.header)
            .chain(&common.header_last)
            .cloned(),
        dictionary,
        raw.voucher_no_max,
    )?;
    let detail = match raw.details {
        DetailRule::None if !raw.detail.is_empty() => {
            return Err(RegistryError(
                "details = \"none\" but detail fields listed".into(),
            ));
        }
        DetailRule::None => Vec::new(),
        _ => resolve_fields(
            common
                .detail_first
                .iter()
                .chain(&raw.detail)
                .chain(&common.detail_last)
                .cloned(),
            dictionary,
            None,
        )?,
    };
    let ty = VoucherType {
        vt_code,
        name_zh: raw.name_zh,
        name_en: raw.name_en,
        senders: raw.senders,
        receivers: raw.receivers,
        header,
        detail,
        details: raw.details,
        details_optional_when: raw.details_optional_when,
        amount: raw.amount,
        sign: raw.sign,
        sums: raw.sums,
        count: raw.count,
        allowed: raw.allowed,
        reply: raw.reply,
        seals: raw.seals,
        receipt_seals: raw.receipt_seals,
    };
    check_type(&ty)?;
    Ok(ty)
}

/// The cross-references inside one type must point at fields of the right kind.
fn check_type(ty: &VoucherType) -> Result<(), RegistryError> {
    let header_amount = |name: &str| match ty.header_field(name) {
        Some(f) if f.ty == FieldType::Amount => Ok(()),
        _ => Err(RegistryError(format!(
            "{name} is not an amount field of the header"
        ))),
    };
    if let Some(amount) = &ty.amount {
        header_amount(amount)?;
    }
    for (master, detail) in &ty.sums {
        header_amount(master)?;
        match ty.detail_field(detail) {
            Some(f) if f.ty == FieldType::Amount => {}
            _ => {
                return Err(RegistryError(format!(
                    "{detail} is not an amount field of the details"
                )));
            }
        }
    }
    if let Some(count) = &ty.count
        && !matches!(ty.header_field(count), Some(f) if f.ty == FieldType::Count)
    {
        return Err(RegistryError(format!(
            "{count} is not a count field of the header"
        )));
    }
    for name in ty.allowed.keys() {
        if ty.header_field(name).is_none() && ty.detail_field(name).is_none() {
            return Err(RegistryError(format!(
                "allowed: {name} is not a field of this type"
            )));
        }
    }
    if !ty.details_optional_when.is_empty() && ty.details != DetailRule::Required {
        return Err(RegistryError(
            "details_optional_when needs details = \"required\"".into(),
        ));
    }
    for (name, values) in &ty.details_optional_when {
        if ty.header_field(name).is_none() || values.is_empty() {
            return Err(RegistryError(format!(
                "details_optional_when: {name} is not a header field of this type, or lists no code"
            )));
        }
    }
    if ty.senders.is_empty() || ty.receivers.is_empty() {
        return Err(RegistryError(
            "senders and receivers must not be empty".into(),
        ));
    }
    for (list, which) in [(&ty.seals, "seals"), (&ty.receipt_seals, "receipt_seals")] {
        let mut positions = BTreeSet::new();
        for seal in list {
            if !SEAL_KINDS.contains(&seal.kind.as_str()) {
                return Err(RegistryError(format!(
                    "{which}: unknown seal kind {:?}",
                    seal.kind
                )));
            }
            if !positions.insert(seal.position) {
                return Err(RegistryError(format!(
                    "{which}: position {} is used twice",
                    seal.position
                )));
            }
        }
    }
    for required in ["AdmDivCode", "StYear", "VtCode", "VoucherNo", "VouDate"] {
        if ty.header_field(required).is_none() {
            return Err(RegistryError(format!("the header lacks {required}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_registry_loads_with_the_required_types() {
        let registry = Registry::builtin();
        for code in [
            "5201", "8202", "8207", "5105", "5106", "5108", "2301", "2302", "2203", "2204", "2206",
            "3502", "3507", "2507", "5501", "5502", "5503",
        ] {
            assert!(registry.get(code).is_some(), "missing {code}");
        }
        let t5106 = registry.get("5106").unwrap();
        assert_eq!(
            t5106.header_field("VoucherNo").unwrap().ty,
            FieldType::VoucherNo { max: 17 }
        );
        assert!(
            registry
                .get("5201")
                .unwrap()
                .header_field("XPayAmt")
                .unwrap()
                .receipt
        );
        assert!(
            !registry
                .get("5201")
                .unwrap()
                .header_field("PayAmt")
                .unwrap()
                .receipt
        ); // A salary or batch 5201 may come without rows (they travel in 8207s); no other
        // type's details are optional by a code.
        let t5201 = registry.get("5201").unwrap();
        assert_eq!(t5201.details, DetailRule::Required);
        assert_eq!(
            t5201.details_optional_when.get("BusinessTypeCode"),
            Some(&vec!["3".to_owned(), "4".to_owned()])
        );
        assert!(
            registry
                .types()
                .filter(|t| t.vt_code.as_str() != "5201")
                .all(|t| t.details_optional_when.is_empty())
        );
    }

    fn edited(from: &str, to: &str) -> Result<Registry, RegistryError> {
        assert!(
            DEFAULT_REGISTRY_TOML.contains(from),
            "fixture lacks {from:?}"
        );
        Registry::from_toml(&DEFAULT_REGISTRY_TOML.replacen(from, to, 1))
    }

    #[test]
    fn refuses_broken_files_naming_the_place() {
        let cases = [
            (r#"vt_code = "5201""#, r#"vt_code = "52A1""#, "vt_code"),
            (
                "PayAmt = { type = \"amount\"",
                "PayAmt = { type = \"money\"",
                "unknown type",
            ),
            (
                r#"amount = "PayAmt""#,
                r#"amount = "PayeeAcctName""#,
                "not an amount field",
            ),
            (r#"kind = "zqz""#, r#"kind = "xyz""#, "unknown seal kind"),
            (
                r#"senders = ["finance"]"#,
                r#"senders = ["ministry"]"#,
                "unknown variant",
            ),
            (
                r#"details_optional_when = { BusinessTypeCode = ["3", "4"] }"#,
                r#"details_optional_when = { NoSuchField = ["3"] }"#,
                "details_optional_when: NoSuchField",
            ),
            (
                r#"details_optional_when = { BusinessTypeCode = ["3", "4"] }"#,
                r#"details_optional_when = { BusinessTypeCode = [] }"#,
                "lists no code",
            ),
        ];
        for (from, to, expect) in cases {
            let err = edited(from, to).unwrap_err().to_string();
            assert!(err.contains(expect), "{to}: {err}");
        }
        let err = Registry::from_toml("nonsense = [").unwrap_err();
        assert!(err.to_string().starts_with("voucher type registry"));
    }
}
