//! Valid example vouchers of every registered type, made from the registry alone.
//!
//! `plain` samples read like real documents (for `guoku voucher sample` and the docs);
//! `wild` samples put awkward but valid text in every free-text field — XML
//! metacharacters, line breaks, characters GBK lacks — and vary which optional fields
//! are present. Property tests use them to exercise the codecs. Both are deterministic
//! in their seed.

use guoku_domain::{Amount, BizDate};

use crate::model::{Fields, Voucher, VoucherFlag};
use crate::registry::{DetailRule, FieldSpec, FieldType, SignRule, VoucherType};

/// How a sample's free text looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Plain,
    Wild,
}

/// SplitMix64: a tiny, well-known generator; samples need repeatability, not secrecy.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    fn digits(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'0' + self.below(10) as u8))
            .collect()
    }
}

/// Realistic texts for well-known fields.
fn plain_text(name: &str) -> &'static str {
    match name {
        "PayeeAcctName" | "XPayeeAcctName" => "长沙市芙蓉建筑工程有限公司",
        "PayeeAcctBankName" | "XPayeeAcctBankName" => "中国建设银行长沙芙蓉支行",
        "PayAcctName" => "湖南省财政厅零余额账户",
        "PayAcctBankName" | "PayBankName" | "AgencyBankName" => "中国工商银行长沙分行营业部",
        "AgencyName" | "SupDepName" => "湖南省教育厅",
        "ClearBankName" | "ClearAcctBankName" | "AgentAcctBankName" => "中国人民银行长沙中心支行",
        "ClearAcctName" => "湖南省国库单一账户",
        "AgentAcctName" => "中国工商银行长沙分行清算账户",
        "FundTypeName" => "一般公共预算资金",
        "PayTypeName" => "财政直接支付",
        "BgtTypeName" => "本级预算",
        "ExpFuncName" => "行政运行",
        "ExpEcoName" => "办公费",
        "PaySummaryName" => "采购办公设备",
        "BusinessTypeName" => "单笔业务",
        "SetModeName" => "转账",
        "FundDealModeName" | "XFundDealModeName" => "自助柜面",
        "DepProName" => "教育信息化建设",
        "MOFDepName" => "教科文处",
        "ProCatName" => "一般预算支出",
        "Remark" => "按合同约定支付",
        "XAgentBusinessNo" => "ICBC20250115000001",
        "XAddWord" => "",
        "XCheckReason" => "",
        "Attach" => "SUCCESS",
        _ => "",
    }
}

/// Characters that make codecs work: XML metacharacters, line breaks, tab, a euro sign
/// (one byte in WHATWG GBK), a CJK Extension B character and an emoji (not in GBK).
const WILD: &[char] = &[
    'a', 'Z', '0', ' ', '<', '>', '&', '"', '\'', '\n', '\r', '\t', '国', '库', '支', '付', '€',
    'é', '𠀀', '😀', '－', '・',
];

fn fit_gbk(text: String, max: usize) -> String {
    let mut out = String::new();
    for c in text.chars() {
        let mut next = out.clone();
        next.push(c);
        if guoku_domain::gbk_len(&next) > max {
            break;
        }
        out = next;
    }
    out
}

struct Maker<'a> {
    rng: Rng,
    style: Style,
    ty: &'a VoucherType,
    today: BizDate,
}

impl Maker<'_> {
    fn value(&mut self, spec: &FieldSpec, index: usize) -> String {
        let name = spec.name.as_str();
        if let Some(allowed) = self.ty.allowed.get(name) {
            return match self.style {
                Style::Plain => allowed[0].clone(),
                Style::Wild => self.rng.pick(allowed).clone(),
            };
        }
        match &spec.ty {
            FieldType::Text { max } => match (name, self.style) {
                ("Id", _) => format!("{}", index + 1),
                (_, Style::Plain) => {
                    let text = plain_text(name);
                    if text.is_empty() && !name.ends_with("Name") {
                        fit_gbk(
                            format!("{}{}", &name[..1.min(name.len())], self.rng.digits(8)),
                            *max,
                        )
                    } else {
                        fit_gbk(text.to_owned(), *max)
                    }
                }
                (_, Style::Wild) => {
                    // A letter first, so that a required field is never blank.
                    let len = self.rng.below(12) as usize;
                    let text: String = std::iter::once('Y')
                        .chain((0..len).map(|_| *self.rng.pick(WILD)))
                        .collect();
                    fit_gbk(text, *max)
                }
            },
            FieldType::Digits { min, max } => {
                let n = *min + self.rng.below((*max - *min + 1) as u64) as usize;
                self.rng.digits(n.max(1))
            }
            // Amounts are filled by `amounts`; a stray one gets a positive value.
            FieldType::Amount => Amount::from_fen(1 + self.rng.below(1_000_000) as i64)
                .expect("small")
                .to_string(),
            FieldType::Date => self.today.to_string(),
            FieldType::AdmDiv => self
                .rng
                .pick(&["430000", "430100", "430102", "110000", "310000"])
                .to_string(),
            FieldType::StYear => self.today.year().to_string(),
            FieldType::VtCode if name == "VtCode" => self.ty.vt_code.to_string(),
            FieldType::VtCode => "5201".into(),
            FieldType::VoucherNo { max } => {
                let digits = (*max).min(16).saturating_sub(4).max(1);
                format!("PZ{}", self.rng.digits(digits))
            }
            FieldType::BankNo => format!("102{}", self.rng.digits(9)),
            FieldType::AccountNo => format!("1901-{}", self.rng.digits(12)),
            FieldType::TreCode => "4300000000".into(),
            FieldType::FinOrg => "430000000".into(),
            FieldType::FuncClass => match name {
                "ExpFuncCode1" => "205".into(),
                "ExpFuncCode2" => "20502".into(),
                _ => "2050201".into(),
            },
            FieldType::EcoClass => match name {
                "ExpEcoCode1" => "302".into(),
                _ => "30201".into(),
            },
            FieldType::FundType => "1".into(),
            FieldType::PayType => self.rng.pick(&["11", "12"]).to_string(),
            FieldType::BusinessType => self.rng.pick(&["1", "3", "4"]).to_string(),
            FieldType::Month => format!("{:02}", self.today.month()),
            FieldType::Count => self.rng.below(100).to_string(),
            FieldType::Enum(values) => self.rng.pick(values).clone(),
        }
    }

    fn record(&mut self, specs: &[FieldSpec], index: usize, receipt: bool) -> Fields {
        let mut fields = Fields::new();
        for spec in specs {
            let filled = if spec.receipt && !receipt {
                false
            } else if spec.required {
                true
            } else {
                match self.style {
                    Style::Plain => {
                        !plain_text(&spec.name).is_empty()
                            || !matches!(spec.ty, FieldType::Text { .. })
                            || spec.name.starts_with("Hold")
                    }
                    Style::Wild => self.rng.below(3) != 0,
                }
            };
            if filled {
                let value = self.value(spec, index);
                fields.set(spec.name.clone(), value);
            } else if self.style == Style::Plain || self.rng.below(2) == 0 {
                // The real system writes every field, empty ones as empty elements.
                fields.set(spec.name.clone(), "");
            }
        }
        fields
    }

    fn amount(&mut self, sign: SignRule, negative: bool) -> Amount {
        let fen = 1 + self.rng.below(50_000_000) as i64;
        let fen = match sign {
            SignRule::Zero => 0,
            SignRule::Negative => -fen,
            SignRule::NonZero if negative => -fen,
            _ => fen,
        };
        Amount::from_fen(fen).expect("small amounts")
    }

    /// Fills the amount pairs so that details add up to the header and signs hold.
    fn amounts(&mut self, voucher: &mut Voucher, receipt: bool) {
        let ty = self.ty;
        let negative = self.rng.below(2) == 0;
        for (master, detail) in &ty.sums {
            let sign = if ty.amount.as_deref() == Some(master.as_str()) {
                ty.sign
            } else {
                SignRule::Positive
            };
            let mut total = Amount::ZERO;
            for d in &mut voucher.details {
                let amount = self.amount(sign, negative);
                total = total.checked_add(amount).expect("small amounts");
                d.set(detail.clone(), amount.to_string());
                if receipt && ty.detail_field(&format!("X{detail}")).is_some() {
                    d.set(format!("X{detail}"), amount.to_string());
                }
            }
            if voucher.details.is_empty() {
                total = self.amount(sign, negative);
            }
            voucher.header.set(master.clone(), total.to_string());
            if receipt && ty.header_field(&format!("X{master}")).is_some() {
                voucher.header.set(format!("X{master}"), total.to_string());
            }
        }
        if let Some(count) = &ty.count {
            voucher
                .header
                .set(count.clone(), voucher.details.len().to_string());
        }
    }
}

/// A valid voucher of type `ty`, dated `today`. `flag` chooses an original (receipt
/// fields empty) or a receipt (receipt fields filled).
pub fn sample(
    ty: &VoucherType,
    today: BizDate,
    flag: VoucherFlag,
    style: Style,
    seed: u64,
) -> Voucher {
    let receipt = flag == VoucherFlag::Receipt || ty.reply;
    let mut maker = Maker {
        rng: Rng(seed),
        style,
        ty,
        today,
    };
    let header = maker.record(&ty.header, 0, receipt);
    let count = match (ty.details, style) {
        (DetailRule::None, _) => 0,
        (DetailRule::Required, Style::Plain) | (DetailRule::Optional, Style::Plain) => 2,
        (DetailRule::Required, Style::Wild) => 1 + maker.rng.below(4) as usize,
        (DetailRule::Optional, Style::Wild) => maker.rng.below(4) as usize,
    };
    let details = (0..count)
        .map(|i| maker.record(&ty.detail, i, receipt))
        .collect();
    let mut voucher = Voucher { header, details };
    maker.amounts(&mut voucher, receipt);
    voucher
}
