//! Snapshot table of `validate` over broken vouchers: each case starts from a valid
//! sample, breaks it, and records every problem reported.

use guoku_domain::BizDate;
use guoku_voucher::sample::{Style, sample};
use guoku_voucher::{Context, Registry, Voucher, VoucherFlag, validate};

fn today() -> BizDate {
    "20250115".parse().unwrap()
}

fn base(vt_code: &str, flag: VoucherFlag) -> Voucher {
    let registry = Registry::builtin();
    sample(
        registry.get(vt_code).unwrap(),
        today(),
        flag,
        Style::Plain,
        7,
    )
}

/// Validates `voucher` and renders the problems one a line.
fn check(voucher: &Voucher, flag: VoucherFlag) -> String {
    let problems = validate(
        voucher,
        &Registry::builtin(),
        &Context {
            today: today(),
            flag,
        },
    );
    if problems.is_empty() {
        return "valid\n".into();
    }
    problems.iter().map(|p| format!("{p}\n")).collect()
}

type Edit = fn(&mut Voucher);

const ORIGINAL: VoucherFlag = VoucherFlag::Original;
const RECEIPT: VoucherFlag = VoucherFlag::Receipt;

fn set(v: &mut Voucher, field: &str, value: &str) {
    v.header.set(field, value);
}

fn set_detail(v: &mut Voucher, index: usize, field: &str, value: &str) {
    v.details[index].set(field, value);
}

#[test]
fn broken_vouchers() {
    let cases: Vec<(&str, &str, VoucherFlag, Edit)> = vec![
        ("valid_5201", "5201", ORIGINAL, |_| {}),
        ("valid_5201_receipt", "5201", RECEIPT, |_| {}),
        ("missing_pay_amt", "5201", ORIGINAL, |v| {
            v.header.remove("PayAmt");
        }),
        ("blank_payee_name", "5201", ORIGINAL, |v| {
            set(v, "PayeeAcctName", "   ")
        }),
        ("amount_one_decimal", "5201", ORIGINAL, |v| {
            set(v, "PayAmt", "1.5")
        }),
        ("amount_thousands_separator", "5201", ORIGINAL, |v| {
            set(v, "PayAmt", "1,000.00")
        }),
        ("amount_exponent", "5201", ORIGINAL, |v| {
            set(v, "PayAmt", "1e3")
        }),
        ("amount_nan", "5201", ORIGINAL, |v| set(v, "PayAmt", "NaN")),
        ("amount_overflow", "5201", ORIGINAL, |v| {
            set(v, "PayAmt", "1000000000000000.00")
        }),
        ("amount_leading_zero", "5201", ORIGINAL, |v| {
            set(v, "PayAmt", "0100.00")
        }),
        ("amount_negative_5201", "5201", ORIGINAL, |v| {
            set(v, "PayAmt", "-1.00");
            set_detail(v, 0, "PayAmt", "-1.00");
            v.details.truncate(1);
        }),
        ("amount_zero_5201", "5201", ORIGINAL, |v| {
            set(v, "PayAmt", "0.00");
            set_detail(v, 0, "PayAmt", "0.00");
            v.details.truncate(1);
        }),
        ("details_do_not_add_up", "5201", ORIGINAL, |v| {
            set_detail(v, 1, "PayAmt", "0.01")
        }),
        ("detail_amount_negative", "5201", ORIGINAL, |v| {
            set(v, "PayAmt", "1.00");
            set_detail(v, 0, "PayAmt", "2.00");
            set_detail(v, 1, "PayAmt", "-1.00");
        }),
        ("adm_div_five_digits", "5201", ORIGINAL, |v| {
            set(v, "AdmDivCode", "43000")
        }),
        ("adm_div_unknown_province", "5201", ORIGINAL, |v| {
            set(v, "AdmDivCode", "990000")
        }),
        ("st_year_two_digits", "5201", ORIGINAL, |v| {
            set(v, "StYear", "25")
        }),
        ("vou_date_in_future", "5201", ORIGINAL, |v| {
            set(v, "VouDate", "20250116")
        }),
        ("vou_date_no_such_day", "5201", ORIGINAL, |v| {
            set(v, "VouDate", "20250230")
        }),
        ("vou_date_with_dashes", "5201", ORIGINAL, |v| {
            set(v, "VouDate", "2025-01-15")
        }),
        ("voucher_no_too_long", "5201", ORIGINAL, |v| {
            set(v, "VoucherNo", "PZ0123456789012345678")
        }),
        ("voucher_no_chinese", "5201", ORIGINAL, |v| {
            set(v, "VoucherNo", "凭证001")
        }),
        ("payee_name_31_hanzi", "5201", ORIGINAL, |v| {
            set(v, "PayeeAcctName", &"国".repeat(31));
        }),
        ("control_character_in_name", "5201", ORIGINAL, |v| {
            set(v, "PayeeAcctName", "长沙\u{7}公司")
        }),
        ("account_no_lowercase", "5201", ORIGINAL, |v| {
            set(v, "PayeeAcctNo", "abc-123")
        }),
        ("bank_no_eleven_digits", "5201", ORIGINAL, |v| {
            set(v, "PayeeAcctBankNo", "10210009999")
        }),
        ("pay_type_authorized_in_direct", "5201", ORIGINAL, |v| {
            set(v, "PayTypeCode", "12")
        }),
        ("pay_type_unknown", "5201", ORIGINAL, |v| {
            set(v, "PayTypeCode", "13")
        }),
        ("business_type_unknown", "5201", ORIGINAL, |v| {
            set(v, "BusinessTypeCode", "2")
        }),
        ("function_class_eight_digits", "5201", ORIGINAL, |v| {
            set(v, "ExpFuncCode", "20101010")
        }),
        ("economic_class_four_digits", "5201", ORIGINAL, |v| {
            set(v, "ExpEcoCode", "3010")
        }),
        ("fund_type_unknown", "5201", ORIGINAL, |v| {
            set(v, "FundTypeCode", "4")
        }),
        ("unknown_field", "5201", ORIGINAL, |v| set(v, "Foo", "bar")),
        ("receipt_field_in_original", "5201", ORIGINAL, |v| {
            set(v, "XPayAmt", "1.00")
        }),
        ("receipt_without_receipt_fields", "5201", RECEIPT, |v| {
            for f in ["XPayDate", "XAgentBusinessNo", "XPayAmt"] {
                v.header.remove(f);
            }
            set_detail(v, 0, "XPayAmt", "");
        }),
        ("receipt_paid_amounts_do_not_add_up", "5201", RECEIPT, |v| {
            set_detail(v, 0, "XPayAmt", "0.00");
        }),
        ("unknown_vt_code", "5201", ORIGINAL, |v| {
            set(v, "VtCode", "9999")
        }),
        ("missing_vt_code", "5201", ORIGINAL, |v| {
            v.header.remove("VtCode");
        }),
        ("no_details", "5201", ORIGINAL, |v| {
            set(v, "BusinessTypeCode", "1");
            v.details.clear();
        }),
        // A salary or batch master whose rows travel in 8207s.
        ("salary_master_without_details", "5201", ORIGINAL, |v| {
            set(v, "BusinessTypeCode", "3");
            v.details.clear();
        }),
        ("batch_master_without_details", "5201", ORIGINAL, |v| {
            set(v, "BusinessTypeCode", "4");
            v.details.clear();
        }),
        ("duplicate_detail_id", "5201", ORIGINAL, |v| {
            set_detail(v, 1, "Id", "1")
        }),
        ("detail_missing_function_class", "5201", ORIGINAL, |v| {
            v.details[1].remove("ExpFuncCode");
        }),
        ("many_problems_at_once", "5201", ORIGINAL, |v| {
            set(v, "AdmDivCode", "4300");
            set(v, "PayAmt", "12.3");
            set(v, "PayeeAcctNo", "账号");
            set(v, "XPayDate", "20250115");
            set_detail(v, 0, "PayeeAcctName", "");
        }),
        ("refund_clearing_positive", "2302", ORIGINAL, |v| {
            let total = v
                .header
                .get("PayAmt")
                .unwrap()
                .trim_start_matches('-')
                .to_owned();
            set(v, "PayAmt", &total);
        }),
        ("refund_clearing_bad_codes", "2302", ORIGINAL, |v| {
            set(v, "TKLX", "3");
            set(v, "PayMsgNo", "002");
            set(v, "PayEntrustDate", "20251301");
        }),
        (
            "clearing_request_bad_treasury_code",
            "2301",
            ORIGINAL,
            |v| set(v, "TreCode", "09000000"),
        ),
        ("clearing_quota_zero", "5106", ORIGINAL, |v| {
            set(v, "PlanAmt", "0.00");
            v.details.truncate(1);
            set_detail(v, 0, "PlanAmt", "0.00");
        }),
        ("clearing_quota_voucher_no_18", "5106", ORIGINAL, |v| {
            set(v, "VoucherNo", "PZ0123456789012345")
        }),
        ("clearing_quota_month_13", "5106", ORIGINAL, |v| {
            set(v, "SetMonth", "13")
        }),
        ("batch_count_mismatch", "8207", ORIGINAL, |v| {
            set(v, "AllNum", "3")
        }),
        ("batch_wrong_original_type", "8207", ORIGINAL, |v| {
            set(v, "OriginalVtCode", "2301")
        }),
        ("reconciliation_bad_state", "3502", ORIGINAL, |v| {
            set_detail(v, 0, "ProState", "2")
        }),
        ("authorized_bad_deal_mode", "8202", ORIGINAL, |v| {
            set(v, "FundDealModeCode", "3")
        }),
        ("reconciliation_result_in_original", "3507", ORIGINAL, |v| {
            set(v, "XCheckResult", "0")
        }),
        ("reply_without_result", "2507", ORIGINAL, |v| {
            set(v, "XCheckResult", "")
        }),
    ];
    assert!(cases.len() >= 40);
    let mut names = std::collections::BTreeSet::new();
    for (name, vt_code, flag, edit) in cases {
        assert!(names.insert(name), "case {name} twice");
        let mut voucher = base(vt_code, flag);
        edit(&mut voucher);
        insta::assert_snapshot!(name, check(&voucher, flag));
    }
}
