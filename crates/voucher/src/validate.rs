//! Validation of a voucher against its type in the registry. It reports every broken
//! field at once, each as a [`Problem`] naming the field, the rule and the value.

use std::collections::BTreeSet;
use std::fmt;

use guoku_domain::{
    AccountNo, AdmDivCode, Amount, BankNo, BizDate, BusinessType, EcoClass, FinOrgCode, FuncClass,
    FundType, PayType, StYear, TextError, TreCode, VoucherNo, VtCode, check_text,
};

use crate::model::{Fields, Voucher, VoucherFlag};
use crate::registry::{DetailRule, FieldSpec, FieldType, Registry, SignRule, VoucherType};

/// A rule a voucher can break. The code (`Rule::code`) is stable: tools may match on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    UnknownType,
    Required,
    Format,
    TooLong,
    ControlCharacter,
    UnknownField,
    NotAllowed,
    Sign,
    Sum,
    Count,
    FutureDate,
    ReceiptFieldInOriginal,
    ReceiptFieldMissing,
    DetailsRequired,
    DetailsNotAllowed,
    DuplicateDetailId,
}

impl Rule {
    /// The stable machine-readable code.
    pub fn code(self) -> &'static str {
        match self {
            Rule::UnknownType => "unknown_type",
            Rule::Required => "required",
            Rule::Format => "format",
            Rule::TooLong => "too_long",
            Rule::ControlCharacter => "control_character",
            Rule::UnknownField => "unknown_field",
            Rule::NotAllowed => "not_allowed",
            Rule::Sign => "sign",
            Rule::Sum => "sum",
            Rule::Count => "count",
            Rule::FutureDate => "future_date",
            Rule::ReceiptFieldInOriginal => "receipt_field_in_original",
            Rule::ReceiptFieldMissing => "receipt_field_missing",
            Rule::DetailsRequired => "details_required",
            Rule::DetailsNotAllowed => "details_not_allowed",
            Rule::DuplicateDetailId => "duplicate_detail_id",
        }
    }

    /// The rule's name in Chinese, as the interface shows it.
    pub fn name_zh(self) -> &'static str {
        match self {
            Rule::UnknownType => "未知凭证类型",
            Rule::Required => "必填项为空",
            Rule::Format => "格式错误",
            Rule::TooLong => "超过长度",
            Rule::ControlCharacter => "含控制字符",
            Rule::UnknownField => "未定义的字段",
            Rule::NotAllowed => "本类凭证不允许该值",
            Rule::Sign => "金额符号错误",
            Rule::Sum => "明细合计与主单金额不符",
            Rule::Count => "笔数与明细数不符",
            Rule::FutureDate => "凭证日期晚于当天",
            Rule::ReceiptFieldInOriginal => "原始凭证不应填写回单字段",
            Rule::ReceiptFieldMissing => "回单字段未填写",
            Rule::DetailsRequired => "缺少明细",
            Rule::DetailsNotAllowed => "本类凭证无明细",
            Rule::DuplicateDetailId => "明细ID重复",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// One broken rule: where, which rule, the value found (shortened) and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// `PayAmt`, or `DetailList/Detail[2]/PayAmt` for a detail's field.
    pub path: String,
    pub rule: Rule,
    /// The value found, cut to 40 characters.
    pub value: String,
    /// What was expected, in English.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} ({}) {:?}: {}",
            self.path,
            self.rule,
            self.rule.name_zh(),
            self.value,
            self.message
        )
    }
}

/// What validation needs from outside: the business date today (the clock is read by
/// the caller) and whether the voucher travels as an original or as a receipt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Context {
    pub today: BizDate,
    pub flag: VoucherFlag,
}

fn shorten(value: &str) -> String {
    crate::xml::preview(value)
}

struct Report<'a> {
    problems: Vec<Problem>,
    receipt: bool,
    ty: &'a VoucherType,
}

impl Report<'_> {
    fn push(&mut self, path: &str, rule: Rule, value: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.to_owned(),
            rule,
            value: shorten(value),
            message: message.into(),
        });
    }

    fn record(&mut self, fields: &Fields, specs: &[FieldSpec], prefix: &str) {
        for spec in specs {
            // Formatted only for a problem: most fields of most vouchers have none.
            let path = || format!("{prefix}{}", spec.name);
            let value = fields.get(&spec.name).unwrap_or("");
            if spec.receipt && !self.receipt {
                if !value.is_empty() {
                    self.push(
                        &path(),
                        Rule::ReceiptFieldInOriginal,
                        value,
                        "a receipt field (X*) is filled by the receiver and must be empty in the original",
                    );
                }
                continue;
            }
            if spec.required && value.trim().is_empty() {
                let rule = if spec.receipt {
                    Rule::ReceiptFieldMissing
                } else {
                    Rule::Required
                };
                self.push(
                    &path(),
                    rule,
                    value,
                    "required, but empty, blank or missing",
                );
                continue;
            }
            if value.is_empty() {
                continue;
            }
            if let Some((rule, message)) = check_format(&spec.ty, value) {
                self.push(&path(), rule, value, message);
            }
            if let Some(allowed) = self.ty.allowed.get(&spec.name)
                && !allowed.iter().any(|a| a == value)
            {
                self.push(
                    &path(),
                    Rule::NotAllowed,
                    value,
                    format!("a {} allows only {}", self.ty.vt_code, allowed.join(", ")),
                );
            }
        }
        for (name, value) in fields.iter() {
            if !specs.iter().any(|s| s.name == name) {
                self.push(
                    &format!("{prefix}{name}"),
                    Rule::UnknownField,
                    value,
                    format!("type {} has no field {name}", self.ty.vt_code),
                );
            }
        }
    }
}

fn with_message<E: fmt::Display>(result: Result<(), E>) -> Option<(Rule, String)> {
    result.err().map(|e| (Rule::Format, e.to_string()))
}

fn parses<T: std::str::FromStr>(value: &str) -> Result<(), T::Err> {
    value.parse::<T>().map(drop)
}

/// The format check of one non-empty value.
fn check_format(ty: &FieldType, value: &str) -> Option<(Rule, String)> {
    match ty {
        FieldType::Text { max } => match check_text(value, *max) {
            Ok(()) => None,
            Err(e @ TextError::TooLong { .. }) => Some((Rule::TooLong, e.to_string())),
            Err(e @ TextError::Control(_)) => Some((Rule::ControlCharacter, e.to_string())),
        },
        FieldType::Digits { min, max } => {
            let ok =
                value.bytes().all(|b| b.is_ascii_digit()) && (*min..=*max).contains(&value.len());
            (!ok).then(|| (Rule::Format, format!("expected {min} to {max} digits")))
        }
        FieldType::Amount => with_message(parses::<Amount>(value)),
        FieldType::Date => with_message(parses::<BizDate>(value)),
        FieldType::AdmDiv => with_message(parses::<AdmDivCode>(value)),
        FieldType::StYear => with_message(parses::<StYear>(value)),
        FieldType::VtCode => with_message(parses::<VtCode>(value)),
        FieldType::VoucherNo { max } => with_message(parses::<VoucherNo>(value)).or_else(|| {
            (value.len() > *max).then(|| (Rule::TooLong, format!("at most {max} characters")))
        }),
        FieldType::BankNo => with_message(parses::<BankNo>(value)),
        FieldType::AccountNo => with_message(parses::<AccountNo>(value)),
        FieldType::TreCode => with_message(parses::<TreCode>(value)),
        FieldType::FinOrg => with_message(parses::<FinOrgCode>(value)),
        FieldType::FuncClass => with_message(parses::<FuncClass>(value)),
        FieldType::EcoClass => with_message(parses::<EcoClass>(value)),
        FieldType::FundType => with_message(parses::<FundType>(value)),
        FieldType::PayType => with_message(parses::<PayType>(value)),
        FieldType::BusinessType => with_message(parses::<BusinessType>(value)),
        FieldType::Month => {
            let ok = value.len() == 2 && matches!(value.parse::<u8>(), Ok(1..=12));
            (!ok).then(|| (Rule::Format, "expected a month 01 to 12".into()))
        }
        FieldType::Count => {
            let ok = (1..=9).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_digit());
            (!ok).then(|| {
                (
                    Rule::Format,
                    "expected a whole number of 1 to 9 digits".into(),
                )
            })
        }
        FieldType::Enum(values) => (!values.iter().any(|v| v == value)).then(|| {
            (
                Rule::Format,
                format!("expected one of {}", values.join(", ")),
            )
        }),
    }
}

fn amount_of(fields: &Fields, name: &str) -> Option<Amount> {
    fields.value(name)?.parse().ok()
}

/// Validates `voucher` against its type. An empty list means valid.
pub fn validate(voucher: &Voucher, registry: &Registry, context: &Context) -> Vec<Problem> {
    let vt_code = voucher.vt_code();
    let Some(ty) = registry.get(vt_code) else {
        let (rule, message) = if vt_code.is_empty() {
            (
                Rule::Required,
                "VtCode is missing: the voucher's type cannot be known".to_owned(),
            )
        } else {
            (
                Rule::UnknownType,
                format!(
                    "no voucher type {vt_code} in the registry ({} types)",
                    registry.len()
                ),
            )
        };
        return vec![Problem {
            path: "VtCode".into(),
            rule,
            value: shorten(vt_code),
            message,
        }];
    };
    let mut report = Report {
        problems: Vec::new(),
        receipt: ty.reply || context.flag == VoucherFlag::Receipt,
        ty,
    };
    report.record(&voucher.header, &ty.header, "");
    match ty.details {
        DetailRule::Required if voucher.details.is_empty() && !details_optional(ty, voucher) => {
            report.push(
                "DetailList",
                Rule::DetailsRequired,
                "",
                if ty.details_optional_when.is_empty() {
                    format!("a {vt_code} needs at least one detail")
                } else {
                    format!(
                        "a {vt_code} needs at least one detail unless {}",
                        describe_optional_when(ty)
                    )
                },
            );
        }
        DetailRule::None if !voucher.details.is_empty() => report.push(
            "DetailList",
            Rule::DetailsNotAllowed,
            &voucher.details.len().to_string(),
            format!("a {vt_code} has no details"),
        ),
        _ => {}
    }
    let mut ids = BTreeSet::new();
    for (i, detail) in voucher.details.iter().enumerate() {
        let prefix = format!("DetailList/Detail[{}]/", i + 1);
        report.record(detail, &ty.detail, &prefix);
        if let Some(id) = detail.value("Id")
            && !ids.insert(id)
        {
            report.push(
                &format!("{prefix}Id"),
                Rule::DuplicateDetailId,
                id,
                "detail Ids must be unique within a voucher",
            );
        }
    }
    check_amounts(&mut report, voucher);
    if let Some(count) = &ty.count
        && let Some(said) = voucher.header.value(count)
        && let Ok(said) = said.parse::<usize>()
        && said != voucher.details.len()
    {
        report.push(
            count,
            Rule::Count,
            &said.to_string(),
            format!(
                "says {said} but the voucher has {} details",
                voucher.details.len()
            ),
        );
    }
    if let Some(date) = voucher.header.value("VouDate")
        && let Ok(date) = date.parse::<BizDate>()
        && date > context.today
    {
        report.push(
            "VouDate",
            Rule::FutureDate,
            &date.to_string(),
            format!("the voucher date is after today ({})", context.today),
        );
    }
    report.problems
}

/// Whether the voucher's header has one of the codes under which its type lets it come
/// without details (`details_optional_when`: a 5201 of `BusinessTypeCode` 3 or 4, whose
/// rows travel in 8207s).
fn details_optional(ty: &VoucherType, voucher: &Voucher) -> bool {
    ty.details_optional_when.iter().any(|(name, codes)| {
        voucher
            .header
            .value(name)
            .is_some_and(|v| codes.iter().any(|c| c == v))
    })
}

/// `BusinessTypeCode is 3 or 4`, for a message.
fn describe_optional_when(ty: &VoucherType) -> String {
    ty.details_optional_when
        .iter()
        .map(|(name, codes)| format!("{name} is {}", codes.join(" or ")))
        .collect::<Vec<_>>()
        .join(", or ")
}

fn check_amounts(report: &mut Report<'_>, voucher: &Voucher) {
    let ty = report.ty;
    if let Some(field) = &ty.amount
        && let Some(amount) = amount_of(&voucher.header, field)
        && !ty.sign.admits(amount)
    {
        report.push(
            field,
            Rule::Sign,
            &amount.to_string(),
            format!("a {} amount must be {}", ty.vt_code, ty.sign.describe_en()),
        );
    }
    for (master, detail) in &ty.sums {
        // Details of a type whose amount has a fixed sign carry the same sign.
        if matches!(
            ty.sign,
            SignRule::Positive | SignRule::Negative | SignRule::Zero
        ) && ty.amount.as_deref() == Some(master.as_str())
        {
            for (i, d) in voucher.details.iter().enumerate() {
                if let Some(amount) = amount_of(d, detail)
                    && !ty.sign.admits(amount)
                {
                    report.push(
                        &format!("DetailList/Detail[{}]/{detail}", i + 1),
                        Rule::Sign,
                        &amount.to_string(),
                        format!(
                            "a {} detail amount must be {}",
                            ty.vt_code,
                            ty.sign.describe_en()
                        ),
                    );
                }
            }
        }
        check_sum(report, voucher, master, detail);
        if report.receipt {
            let (x_master, x_detail) = (format!("X{master}"), format!("X{detail}"));
            if ty.header_field(&x_master).is_some() && ty.detail_field(&x_detail).is_some() {
                check_sum(report, voucher, &x_master, &x_detail);
            }
        }
    }
}

/// Σ detail amounts = master amount, when the master and every detail amount parse (a
/// malformed one is already reported by its field).
fn check_sum(report: &mut Report<'_>, voucher: &Voucher, master: &str, detail: &str) {
    if voucher.details.is_empty() {
        return;
    }
    let Some(total) = amount_of(&voucher.header, master) else {
        return;
    };
    let mut sum = Some(Amount::ZERO);
    for d in &voucher.details {
        let Some(amount) = amount_of(d, detail) else {
            return;
        };
        sum = sum.and_then(|s| s.checked_add(amount));
    }
    match sum {
        Some(sum) if sum == total => {}
        Some(sum) => report.push(
            master,
            Rule::Sum,
            &total.to_string(),
            format!("the details' {detail} add up to {sum}"),
        ),
        None => report.push(
            master,
            Rule::Sum,
            &total.to_string(),
            format!("the details' {detail} add up to more than an amount can hold"),
        ),
    }
}
