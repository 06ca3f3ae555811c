//! Vouchers from the API's few fields: a [`VoucherBuilder`] turns a payment order (unit,
//! amount, payee, summary) into the unstamped 5201 or 8202 the party stamps and sends.
//!
//! Two builders: the [`Demo`] (its province and helpers) and a [`Catalogue`], the same
//! fields from configuration, for `guoku serve`. Both start from the registry's sample of
//! the type (what no field here names keeps the sample's value; a deployment sets those
//! with [`Catalogue::direct_defaults`] and [`Catalogue::authorized_defaults`]).

use std::sync::Arc;

use guoku_domain::{Amount, BizDate, PayType, StYear};
use guoku_store::books::{IndicatorKey, Tenant};
use guoku_voucher::sample::{Style, sample};
use guoku_voucher::{Registry, Voucher, VoucherFlag};

use crate::demo::{Demo, Payee};

/// What the API asks a builder for.
#[derive(Clone, Debug)]
pub struct PaymentOrder<'a> {
    /// The budget unit paying.
    pub unit: &'a str,
    /// How much (positive).
    pub amount: Amount,
    /// To whom, and what for.
    pub payee: &'a Payee,
    /// The voucher number (also its `Id`).
    pub voucher_no: &'a str,
    /// The voucher date (today's business date).
    pub date: BizDate,
}

/// A direct payment ready to stamp: the 5201, the indicator it draws on, the bank it goes
/// to.
#[derive(Clone, Debug)]
pub struct DirectDraft {
    pub voucher: Voucher,
    pub indicator: IndicatorKey,
    pub bank: String,
}

/// An authorized payment ready to stamp: the 8202 and the bank keeping the unit's
/// zero-balance account.
#[derive(Clone, Debug)]
pub struct AuthorizedDraft {
    pub voucher: Voucher,
    pub bank: String,
}

/// Why a voucher cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// No such budget unit (a caller's mistake).
    #[error("no budget unit {0}")]
    UnknownUnit(String),
    /// The builder's own data is broken (configuration; retrying cannot help).
    #[error("the voucher builder is misconfigured: {0}")]
    Misconfigured(String),
}

/// Builds the vouchers the API issues.
pub trait VoucherBuilder: Send + Sync {
    /// Whether `unit` is a budget unit this builder knows.
    fn knows_unit(&self, unit: &str) -> bool;

    /// The 5201 of `order`, with its indicator and bank.
    ///
    /// # Errors
    /// [`BuildError`].
    fn direct(&self, order: &PaymentOrder<'_>) -> Result<DirectDraft, BuildError>;

    /// The 8202 of `order`, with its bank.
    ///
    /// # Errors
    /// [`BuildError`].
    fn authorized(&self, order: &PaymentOrder<'_>) -> Result<AuthorizedDraft, BuildError>;

    /// Every budget unit it knows: (AgencyCode, name, AdmDivCode).
    fn units(&self) -> Vec<(String, String, String)>;

    /// The budget year its vouchers carry.
    fn year(&self) -> u16;
}

fn renumber(voucher: &mut Voucher, no: &str) {
    voucher.header.set("Id", no);
    voucher.header.set("VoucherNo", no);
}

pub use crate::flows::common::single_detail;

impl VoucherBuilder for Demo {
    fn knows_unit(&self, unit: &str) -> bool {
        self.province.units.iter().any(|u| u.code == unit)
    }

    fn direct(&self, order: &PaymentOrder<'_>) -> Result<DirectDraft, BuildError> {
        if !self.knows_unit(order.unit) {
            return Err(BuildError::UnknownUnit(order.unit.to_owned()));
        }
        let mut voucher = self
            .direct_voucher(order.unit, order.amount, order.payee, order.date)
            .map_err(|e| BuildError::Misconfigured(e.to_string()))?;
        renumber(&mut voucher, order.voucher_no);
        single_detail(&self.finance.registry, &mut voucher);
        let indicator = self
            .indicator(order.unit)
            .map_err(|e| BuildError::Misconfigured(e.to_string()))?;
        Ok(DirectDraft {
            voucher,
            indicator,
            bank: self.province.direct_bank().code.to_owned(),
        })
    }

    fn authorized(&self, order: &PaymentOrder<'_>) -> Result<AuthorizedDraft, BuildError> {
        if !self.knows_unit(order.unit) {
            return Err(BuildError::UnknownUnit(order.unit.to_owned()));
        }
        let (mut voucher, bank) = self
            .authorized_voucher(order.unit, order.amount, order.payee, order.date)
            .map_err(|e| BuildError::Misconfigured(e.to_string()))?;
        renumber(&mut voucher, order.voucher_no);
        single_detail(&self.counter.registry, &mut voucher);
        Ok(AuthorizedDraft {
            voucher,
            bank: bank.to_owned(),
        })
    }
    fn units(&self) -> Vec<(String, String, String)> {
        self.province
            .units
            .iter()
            .map(|u| (u.code.clone(), u.name.clone(), u.division.to_owned()))
            .collect()
    }

    fn year(&self) -> u16 {
        self.year.get()
    }
}

/// A bank in a [`Catalogue`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogueBank {
    /// Its organisation code (where its vouchers go).
    pub code: String,
    /// Its name (`PayAcctBankName`).
    pub name: String,
}

/// A budget unit in a [`Catalogue`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogueUnit {
    pub code: String,
    pub name: String,
    /// Its administrative division (AdmDivCode).
    pub adm_div: String,
    /// The function class (ExpFuncCode), economic class (ExpEcoCode) and fund type
    /// (FundTypeCode) of its direct indicator.
    pub func: String,
    pub eco: String,
    pub fund: String,
    /// Its zero-balance account (authorized payments) and the bank keeping it (index into
    /// [`Catalogue::banks`]).
    pub zba: String,
    pub bank: usize,
    /// Finance's zero-balance account its direct payments are paid from.
    pub finance_zba: String,
}

/// The units, banks and defaults a node builds payment vouchers from.
#[derive(Clone, Debug)]
pub struct Catalogue {
    pub registry: Arc<Registry>,
    /// The budget year (StYear).
    pub year: StYear,
    /// Finance's name (its zero-balance account's name).
    pub finance_name: String,
    /// The bank finance pays direct payments through.
    pub direct_bank: CatalogueBank,
    /// The banks keeping units' zero-balance accounts.
    pub banks: Vec<CatalogueBank>,
    pub units: Vec<CatalogueUnit>,
    /// Fields set on every 5201 before the order's own (TreCode, FinOrgCode…).
    pub direct_defaults: Vec<(String, String)>,
    /// Fields set on every 8202 before the order's own.
    pub authorized_defaults: Vec<(String, String)>,
}

impl Catalogue {
    fn unit(&self, code: &str) -> Result<&CatalogueUnit, BuildError> {
        self.units
            .iter()
            .find(|u| u.code == code)
            .ok_or_else(|| BuildError::UnknownUnit(code.to_owned()))
    }

    fn template(&self, vt_code: &str, date: BizDate) -> Result<Voucher, BuildError> {
        let ty = self
            .registry
            .get(vt_code)
            .ok_or_else(|| BuildError::Misconfigured(format!("the registry has no {vt_code}")))?;
        Ok(sample(ty, date, VoucherFlag::Original, Style::Plain, 1))
    }

    fn misconfigured(what: &str, value: &str) -> BuildError {
        BuildError::Misconfigured(format!("bad {what} {value:?}"))
    }
}

/// The fields an order sets on a payment voucher, after the defaults.
fn order_fields<'a>(
    order: &'a PaymentOrder<'a>,
    unit: &'a CatalogueUnit,
    year: &'a str,
    date: &'a str,
    amount: &'a str,
) -> [(&'static str, &'a str); 15] {
    [
        ("Id", order.voucher_no),
        ("VoucherNo", order.voucher_no),
        ("AdmDivCode", &unit.adm_div),
        ("StYear", year),
        ("VouDate", date),
        ("FundTypeCode", &unit.fund),
        ("AgencyCode", &unit.code),
        ("AgencyName", &unit.name),
        ("ExpFuncCode", &unit.func),
        ("ExpEcoCode", &unit.eco),
        ("PayeeAcctNo", &order.payee.account),
        ("PayeeAcctName", &order.payee.name),
        ("PayeeAcctBankName", &order.payee.bank_name),
        ("PayAmt", amount),
        ("PaySummaryName", &order.payee.summary),
    ]
}

impl VoucherBuilder for Catalogue {
    fn knows_unit(&self, unit: &str) -> bool {
        self.units.iter().any(|u| u.code == unit)
    }

    fn units(&self) -> Vec<(String, String, String)> {
        self.units
            .iter()
            .map(|u| (u.code.clone(), u.name.clone(), u.adm_div.clone()))
            .collect()
    }

    fn year(&self) -> u16 {
        self.year.get()
    }

    fn direct(&self, order: &PaymentOrder<'_>) -> Result<DirectDraft, BuildError> {
        let unit = self.unit(order.unit)?;
        let mut voucher = self.template("5201", order.date)?;
        for (name, value) in &self.direct_defaults {
            voucher.header.set(name, value);
        }
        let (year, date, amount) = (
            self.year.get().to_string(),
            order.date.to_string(),
            order.amount.to_string(),
        );
        for (name, value) in order_fields(order, unit, &year, &date, &amount) {
            voucher.header.set(name, value);
        }
        let finance_acct_name = format!("{}零余额账户", self.finance_name);
        for (name, value) in [
            ("PayTypeCode", "11"),
            ("BusinessTypeCode", "1"),
            ("PayAcctNo", unit.finance_zba.as_str()),
            ("PayAcctName", finance_acct_name.as_str()),
            ("PayAcctBankName", self.direct_bank.name.as_str()),
        ] {
            voucher.header.set(name, value);
        }
        single_detail(&self.registry, &mut voucher);
        let indicator = IndicatorKey {
            tenant: Tenant {
                adm_div: unit
                    .adm_div
                    .parse()
                    .map_err(|_| Self::misconfigured("AdmDivCode", &unit.adm_div))?,
                year: self.year,
            },
            unit: unit
                .code
                .parse()
                .map_err(|_| Self::misconfigured("unit code", &unit.code))?,
            func: unit
                .func
                .parse()
                .map_err(|_| Self::misconfigured("ExpFuncCode", &unit.func))?,
            eco: unit
                .eco
                .parse()
                .map_err(|_| Self::misconfigured("ExpEcoCode", &unit.eco))?,
            fund: unit
                .fund
                .parse()
                .map_err(|_| Self::misconfigured("FundTypeCode", &unit.fund))?,
            pay: PayType::Direct,
        };
        Ok(DirectDraft {
            voucher,
            indicator,
            bank: self.direct_bank.code.clone(),
        })
    }

    fn authorized(&self, order: &PaymentOrder<'_>) -> Result<AuthorizedDraft, BuildError> {
        let unit = self.unit(order.unit)?;
        let bank = self.banks.get(unit.bank).ok_or_else(|| {
            BuildError::Misconfigured(format!("unit {} names no bank", unit.code))
        })?;
        let mut voucher = self.template("8202", order.date)?;
        for (name, value) in &self.authorized_defaults {
            voucher.header.set(name, value);
        }
        let (year, date, amount) = (
            self.year.get().to_string(),
            order.date.to_string(),
            order.amount.to_string(),
        );
        for (name, value) in order_fields(order, unit, &year, &date, &amount) {
            voucher.header.set(name, value);
        }
        let acct_name = format!("{}零余额账户", unit.name);
        for (name, value) in [
            ("PayTypeCode", "12"),
            ("PayAcctNo", unit.zba.as_str()),
            ("PayAcctName", acct_name.as_str()),
            ("PayAcctBankName", bank.name.as_str()),
        ] {
            voucher.header.set(name, value);
        }
        single_detail(&self.registry, &mut voucher);
        Ok(AuthorizedDraft {
            voucher,
            bank: bank.code.clone(),
        })
    }
}
