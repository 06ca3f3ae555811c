//! Batch lists imported from a spreadsheet: a salary list (工资发放清单) or an official-card
//! reimbursement list (公务卡报销清单), from CSV (UTF-8 with or without BOM, or GBK) or
//! XLSX, into the details of a batch 5201 (business type 3, salary, or 4, batch).
//!
//! Pure: [`import`] takes the file's bytes, the list's kind, "today" (dates may not be
//! later) and the [`Limits`]; it reads the clock, the disk and the network never. Columns are
//! found by their header (Chinese or English, any order, surrounding spaces ignored); every
//! problem of every row is reported with its line and column ([`RowError`]), and the page
//! shows them all before anything is submitted. A file that cannot be read as a table at
//! all (too large, neither UTF-8 nor GBK, a broken workbook) is an [`ImportError`].
//!
//! Limits: the file's size, the number of rows, a cell's size, and for XLSX the declared
//! unpacked size of the workbook's parts (checked before the workbook is opened; the zip
//! reader stops at the declared size, so a part cannot unpack to more than it claims). The
//! first sheet is streamed cell by cell and reading stops at the first row past the limit.

use std::collections::HashMap;
use std::fmt;
use std::io::Cursor;

use calamine::{DataRef, Reader, Xlsx};
use guoku_domain::{AccountNo, Amount, BankNo, BizDate, BusinessType, TextError, check_text};
use guoku_voucher::registry::Registry;

use super::i18n::Lang;

/// Which list a file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ListKind {
    /// 工资发放清单: one row per employee paid.
    Salary,
    /// 公务卡报销清单: one row per official-card purchase reimbursed to the card.
    OfficialCard,
}

impl ListKind {
    /// The 5201's business type (BusinessTypeCode) for this list: 3 salary, 4 batch.
    #[must_use]
    pub fn business_type(self) -> BusinessType {
        match self {
            ListKind::Salary => BusinessType::Salary,
            ListKind::OfficialCard => BusinessType::Batch,
        }
    }
}

/// The bounds of an import; [`Limits::default`] has the default registry's field lengths.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes of the uploaded file.
    pub max_file_bytes: usize,
    /// Most data rows (the header aside).
    pub max_rows: usize,
    /// Most bytes of one cell.
    pub max_cell_bytes: usize,
    /// Most bytes an XLSX's parts may declare unpacked, all together.
    pub max_unpacked_bytes: u64,
    /// PayeeAcctName's length in GBK bytes.
    pub name_max_gbk: usize,
    /// PayeeAcctBankName's length in GBK bytes.
    pub bank_max_gbk: usize,
    /// PaySummaryName's length in GBK bytes.
    pub purpose_max_gbk: usize,
}

impl Default for Limits {
    /// 5 MB, 10,000 rows, 1,000-byte cells, 64 MB unpacked; 60/60/200 GBK bytes as the
    /// default registry's 8207 details have them.
    fn default() -> Limits {
        Limits {
            max_file_bytes: 5 * 1024 * 1024,
            max_rows: 10_000,
            max_cell_bytes: 1_000,
            max_unpacked_bytes: 64 * 1024 * 1024,
            name_max_gbk: 60,
            bank_max_gbk: 60,
            purpose_max_gbk: 200,
        }
    }
}

impl Limits {
    /// The default bounds with the field lengths of `registry`'s batch details (8207's
    /// PayeeAcctName, PayeeAcctBankName, PaySummaryName; 5201's when it has no 8207): the
    /// lengths vary by province, so they come from the registry, not from code.
    #[must_use]
    pub fn for_registry(registry: &Registry) -> Limits {
        let mut limits = Limits::default();
        let text_max = |field: &str| {
            ["8207", "5201"]
                .iter()
                .find_map(|vt| match registry.get(vt)?.detail_field(field)?.ty {
                    guoku_voucher::registry::FieldType::Text { max } => Some(max),
                    _ => None,
                })
        };
        if let Some(max) = text_max("PayeeAcctName") {
            limits.name_max_gbk = max;
        }
        if let Some(max) = text_max("PayeeAcctBankName") {
            limits.bank_max_gbk = max;
        }
        if let Some(max) = text_max("PaySummaryName") {
            limits.purpose_max_gbk = max;
        }
        limits
    }
}

/// A column the import knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Column {
    /// 姓名 (salary): PayeeAcctName.
    Name,
    /// 账号 (salary): PayeeAcctNo.
    Account,
    /// 开户行 (salary) or 发卡行 (card): PayeeAcctBankName.
    Bank,
    /// 行号 (salary, optional): PayeeAcctBankNo.
    BankNo,
    /// 金额: PayAmt.
    Amount,
    /// 摘要/用途 (salary, optional): PaySummaryName.
    Purpose,
    /// 持卡人 (card): PayeeAcctName.
    Cardholder,
    /// 卡号 (card): PayeeAcctNo.
    CardNo,
    /// 消费日期 (card).
    Date,
    /// 商户 (card, optional): PaySummaryName.
    Merchant,
}

impl Column {
    /// The column's name in a message.
    #[must_use]
    pub fn label(self, lang: Lang) -> &'static str {
        let (zh, en) = match self {
            Column::Name => ("姓名", "name"),
            Column::Account => ("账号", "account"),
            Column::Bank => ("开户行", "bank"),
            Column::BankNo => ("行号", "bank_no"),
            Column::Amount => ("金额", "amount"),
            Column::Purpose => ("摘要", "purpose"),
            Column::Cardholder => ("持卡人", "cardholder"),
            Column::CardNo => ("卡号", "card_no"),
            Column::Date => ("消费日期", "date"),
            Column::Merchant => ("商户", "merchant"),
        };
        match lang {
            Lang::Zh => zh,
            Lang::En => en,
        }
    }

    /// The headers that name this column (compared after trimming, ASCII case ignored).
    fn headers(self) -> &'static [&'static str] {
        match self {
            Column::Name => &["姓名", "收款人名称", "name", "payee_name"],
            Column::Account => &["账号", "银行账号", "收款人账号", "account", "account_no"],
            Column::Bank => &[
                "开户行",
                "开户银行",
                "发卡行",
                "发卡银行",
                "bank",
                "bank_name",
            ],
            Column::BankNo => &["行号", "开户行行号", "bank_no"],
            Column::Amount => &["金额", "amount"],
            Column::Purpose => &["摘要", "用途", "purpose"],
            Column::Cardholder => &["持卡人", "cardholder"],
            Column::CardNo => &["卡号", "公务卡号", "card_no"],
            Column::Date => &["消费日期", "交易日期", "date"],
            Column::Merchant => &["商户", "商户名称", "摘要", "merchant"],
        }
    }
}

/// What a list of `kind` has, required columns first.
fn columns(kind: ListKind) -> &'static [(Column, bool)] {
    match kind {
        ListKind::Salary => &[
            (Column::Name, true),
            (Column::Account, true),
            (Column::Bank, true),
            (Column::Amount, true),
            (Column::BankNo, false),
            (Column::Purpose, false),
        ],
        ListKind::OfficialCard => &[
            (Column::Cardholder, true),
            (Column::CardNo, true),
            (Column::Bank, true),
            (Column::Amount, true),
            (Column::Date, true),
            (Column::Merchant, false),
        ],
    }
}

/// What is wrong with a row or a cell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The header row lacks this required column.
    MissingColumn,
    /// Two header cells name the same column.
    DuplicateColumn,
    /// A required cell is empty.
    Empty,
    /// Not an amount: yuan with at most two decimals, thousands separators allowed.
    BadAmount,
    /// Zero or negative.
    NotPositive,
    /// Not an account number (digits, A–Z, `-`, at most 32).
    BadAccount,
    /// Not a bank number (12 digits).
    BadBankNo,
    /// Not 13–19 digits.
    BadCardNo,
    /// 13–19 digits whose check digit is wrong (Luhn).
    CardChecksum,
    /// Not a date (yyyyMMdd or yyyy-MM-dd).
    BadDate,
    /// Later than today.
    FutureDate,
    /// Longer than the field allows, in GBK bytes.
    TooLong {
        /// The text's length.
        len: usize,
        /// The field's length.
        max: usize,
    },
    /// A control character in a text.
    ControlCharacter,
    /// A cell larger than [`Limits::max_cell_bytes`].
    CellTooLarge {
        /// The limit.
        max: usize,
    },
    /// A spreadsheet number where digits must be kept as text (an account or card number
    /// Excel has rounded).
    NumberNotText,
    /// The same payee account (card) and amount as an earlier row: a warning.
    Duplicate {
        /// The earlier row's line.
        first_line: usize,
    },
    /// More rows than [`Limits::max_rows`]; reading stopped here.
    TooManyRows {
        /// The limit.
        max: usize,
    },
    /// The total no longer fits an amount.
    TotalOverflow,
}

impl Problem {
    /// The problem in words.
    #[must_use]
    pub fn message(&self, lang: Lang) -> String {
        match (self, lang) {
            (Problem::MissingColumn, Lang::Zh) => "缺少此列".to_owned(),
            (Problem::MissingColumn, Lang::En) => "this column is missing".to_owned(),
            (Problem::DuplicateColumn, Lang::Zh) => "此列出现两次".to_owned(),
            (Problem::DuplicateColumn, Lang::En) => "this column appears twice".to_owned(),
            (Problem::Empty, Lang::Zh) => "不能为空".to_owned(),
            (Problem::Empty, Lang::En) => "must not be empty".to_owned(),
            (Problem::BadAmount, Lang::Zh) => {
                "金额应为元，最多两位小数，如 1234.50 或 1,234.50".to_owned()
            }
            (Problem::BadAmount, Lang::En) => {
                "an amount is yuan with at most two decimals, like 1234.50 or 1,234.50".to_owned()
            }
            (Problem::NotPositive, Lang::Zh) => "金额必须大于零".to_owned(),
            (Problem::NotPositive, Lang::En) => "the amount must be above zero".to_owned(),
            (Problem::BadAccount, Lang::Zh) => "账号应为 1 至 32 位数字、大写字母或“-”".to_owned(),
            (Problem::BadAccount, Lang::En) => {
                "an account number is 1 to 32 digits, capital letters or '-'".to_owned()
            }
            (Problem::BadBankNo, Lang::Zh) => "行号应为 12 位数字".to_owned(),
            (Problem::BadBankNo, Lang::En) => "a bank number is 12 digits".to_owned(),
            (Problem::BadCardNo, Lang::Zh) => "卡号应为 13 至 19 位数字".to_owned(),
            (Problem::BadCardNo, Lang::En) => "a card number is 13 to 19 digits".to_owned(),
            (Problem::CardChecksum, Lang::Zh) => "卡号校验位不正确".to_owned(),
            (Problem::CardChecksum, Lang::En) => {
                "the card number's check digit is wrong".to_owned()
            }
            (Problem::BadDate, Lang::Zh) => {
                "日期应为 yyyyMMdd 或 yyyy-MM-dd，且为真实日期".to_owned()
            }
            (Problem::BadDate, Lang::En) => {
                "a date is yyyyMMdd or yyyy-MM-dd, and a real one".to_owned()
            }
            (Problem::FutureDate, Lang::Zh) => "日期不能晚于今天".to_owned(),
            (Problem::FutureDate, Lang::En) => "the date must not be after today".to_owned(),
            (Problem::TooLong { len, max }, Lang::Zh) => {
                format!("过长：{len} 字节（GBK），最多 {max} 字节")
            }
            (Problem::TooLong { len, max }, Lang::En) => {
                format!("too long: {len} GBK bytes, at most {max}")
            }
            (Problem::ControlCharacter, Lang::Zh) => "含有控制字符".to_owned(),
            (Problem::ControlCharacter, Lang::En) => "contains a control character".to_owned(),
            (Problem::CellTooLarge { max }, Lang::Zh) => {
                format!("单元格超过 {max} 字节")
            }
            (Problem::CellTooLarge { max }, Lang::En) => {
                format!("the cell is larger than {max} bytes")
            }
            (Problem::NumberNotText, Lang::Zh) => {
                "此列须为文本格式（数字格式会丢失位数），请将该列设为文本后重新导入".to_owned()
            }
            (Problem::NumberNotText, Lang::En) => {
                "this column must be formatted as text (as a number it loses digits)".to_owned()
            }
            (Problem::Duplicate { first_line }, Lang::Zh) => {
                format!("与第 {first_line} 行账号和金额相同，请确认是否重复")
            }
            (Problem::Duplicate { first_line }, Lang::En) => {
                format!("same account and amount as line {first_line}: a duplicate?")
            }
            (Problem::TooManyRows { max }, Lang::Zh) => {
                format!("超过 {max} 行，未再读取")
            }
            (Problem::TooManyRows { max }, Lang::En) => {
                format!("more than {max} rows; reading stopped")
            }
            (Problem::TotalOverflow, Lang::Zh) => "合计金额超出范围".to_owned(),
            (Problem::TotalOverflow, Lang::En) => "the total is out of range".to_owned(),
        }
    }
}

/// One problem, where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowError {
    /// The line (CSV) or row (XLSX) number as the user's program shows it, the header's
    /// being 1 when it is the first.
    pub line: usize,
    /// The column, when the problem is a cell's.
    pub column: Option<Column>,
    /// The cell's text (cut to 100 characters), or empty.
    pub value: String,
    /// What is wrong.
    pub problem: Problem,
}

impl RowError {
    /// `第 3 行 金额「abc」：…` / `line 3, amount "abc": …`.
    #[must_use]
    pub fn message(&self, lang: Lang) -> String {
        let mut out = match lang {
            Lang::Zh => format!("第 {} 行", self.line),
            Lang::En => format!("line {}", self.line),
        };
        if let Some(column) = self.column {
            match lang {
                Lang::Zh => out.push_str(&format!(" {}", column.label(lang))),
                Lang::En => out.push_str(&format!(", {}", column.label(lang))),
            }
        }
        if !self.value.is_empty() {
            match lang {
                Lang::Zh => out.push_str(&format!("「{}」", self.value)),
                Lang::En => out.push_str(&format!(" {:?}", self.value)),
            }
        }
        match lang {
            Lang::Zh => out.push('：'),
            Lang::En => out.push_str(": "),
        }
        out.push_str(&self.problem.message(lang));
        out
    }
}

/// One payee row, ready for a batch detail (8207 / 5201 detail).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportedRow {
    /// Where it was in the file.
    pub line: usize,
    /// PayeeAcctName: the employee or the cardholder.
    pub payee_name: String,
    /// PayeeAcctNo: the account or the card number (spaces removed).
    pub payee_account: AccountNo,
    /// PayeeAcctBankName: the bank or the card's issuer.
    pub payee_bank: String,
    /// PayeeAcctBankNo, when the list gives it.
    pub payee_bank_no: Option<BankNo>,
    /// PayAmt.
    pub amount: Amount,
    /// PaySummaryName: the purpose (salary) or the merchant (card), when given.
    pub purpose: Option<String>,
    /// The card purchase's date (official-card lists only).
    pub spent_on: Option<BizDate>,
}

/// What a file held: the good rows, every problem, and the good rows' total. Nothing may be
/// submitted while `errors` is not empty; `warnings` are shown and may be accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Imported {
    /// The list's kind.
    pub kind: ListKind,
    /// The rows without errors.
    pub rows: Vec<ImportedRow>,
    /// Every error, in file order.
    pub errors: Vec<RowError>,
    /// Possible mistakes (a duplicate row) that do not stop the import.
    pub warnings: Vec<RowError>,
    /// The sum of `rows`' amounts.
    pub total: Amount,
}

/// Why a file could not be read as a table at all.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    /// Larger than [`Limits::max_file_bytes`].
    #[error("the file has {size} bytes, at most {max} allowed")]
    TooLarge {
        /// The file's size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A CSV that is neither UTF-8 nor GBK.
    #[error("the file is neither UTF-8 nor GBK text")]
    Encoding,
    /// No header row.
    #[error("the file has no header row")]
    Empty,
    /// A CSV the CSV reader refused.
    #[error("not a readable CSV: {0}")]
    Csv(String),
    /// An XLSX that cannot be read, or one that unpacks to too much.
    #[error("not a readable XLSX workbook: {0}")]
    Xlsx(String),
}

impl ImportError {
    /// The error in words.
    #[must_use]
    pub fn message(&self, lang: Lang) -> String {
        match (self, lang) {
            (_, Lang::En) => self.to_string(),
            (ImportError::TooLarge { size, max }, Lang::Zh) => {
                format!("文件 {size} 字节，最多允许 {max} 字节")
            }
            (ImportError::Encoding, Lang::Zh) => "文件既不是 UTF-8 也不是 GBK 编码".to_owned(),
            (ImportError::Empty, Lang::Zh) => "文件没有表头行".to_owned(),
            (ImportError::Csv(e), Lang::Zh) => format!("无法读取 CSV 文件：{e}"),
            (ImportError::Xlsx(e), Lang::Zh) => format!("无法读取 XLSX 工作簿：{e}"),
        }
    }
}

/// The file's format, from its first bytes: a zip (`PK\3\4`) is XLSX, anything else CSV.
#[must_use]
pub fn is_xlsx(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04")
}

/// Reads a list of `kind` from a CSV or XLSX file (told apart by [`is_xlsx`]).
pub fn import(
    bytes: &[u8],
    kind: ListKind,
    today: BizDate,
    limits: &Limits,
) -> Result<Imported, ImportError> {
    if bytes.len() > limits.max_file_bytes {
        return Err(ImportError::TooLarge {
            size: bytes.len(),
            max: limits.max_file_bytes,
        });
    }
    let records = if is_xlsx(bytes) {
        xlsx_records(bytes, limits)?
    } else {
        csv_records(bytes, limits)?
    };
    let mut records = records.into_iter();
    let header = records.next().ok_or(ImportError::Empty)?;
    Ok(check_records(header, records, kind, today, limits))
}

/// A row of the file: its line and its cells' text. A cell is kept as `Err(len)` when it
/// is larger than the limit (its text is not kept).
type Record = (usize, Vec<Result<String, usize>>);

/// The records read, with reading stopped after the header and `max_rows + 1` non-empty
/// rows (the extra one tells that there were too many).
fn csv_records(bytes: &[u8], limits: &Limits) -> Result<Vec<Record>, ImportError> {
    let text = decode(bytes)?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut records = Vec::new();
    let mut record = csv::StringRecord::new();
    // The reader's own line count skips blank lines; count the line breaks before each
    // record's first byte instead, so the line is the one an editor shows.
    let (mut line, mut counted_to) = (1, 0);
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(ImportError::Csv(e.to_string())),
        }
        let mut start = record.position().map_or(counted_to, |p| {
            (p.byte() as usize).clamp(counted_to, text.len())
        });
        // The position is where reading began, before the blank lines it skipped.
        while matches!(text.as_bytes().get(start), Some(b'\n' | b'\r')) {
            start += 1;
        }
        line += text.as_bytes()[counted_to..start]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        counted_to = start;
        let cells: Vec<_> = record
            .iter()
            .map(|c| {
                if c.len() > limits.max_cell_bytes {
                    Err(c.len())
                } else {
                    Ok(c.to_owned())
                }
            })
            .collect();
        if push_record(&mut records, (line, cells), limits) {
            break;
        }
    }
    Ok(records)
}

/// Keeps a non-empty record; true once enough have been read.
fn push_record(records: &mut Vec<Record>, record: Record, limits: &Limits) -> bool {
    let empty = record
        .1
        .iter()
        .all(|c| matches!(c, Ok(text) if text.trim().is_empty()));
    if !empty {
        records.push(record);
    }
    // The header, max_rows rows, and one more to know there are too many.
    records.len() > limits.max_rows + 1
}

/// UTF-8 (a BOM dropped), else GBK; neither is an error.
fn decode(bytes: &[u8]) -> Result<String, ImportError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if let Ok(text) = std::str::from_utf8(bytes) {
        return Ok(text.to_owned());
    }
    encoding_rs::GBK
        .decode_without_bom_handling_and_without_replacement(bytes)
        .map(|text| text.into_owned())
        .ok_or(ImportError::Encoding)
}

/// Most columns read from a sheet; cells further right are ignored (a header there would
/// not be found, which is reported as a missing column).
const MAX_COLUMNS: u32 = 64;

/// The first sheet's rows, streamed: reading stops at the first row past the limit, so a
/// sheet claiming a million rows is not read through. The workbook's shared strings are
/// read whole by calamine when it opens the file: they are bounded by the unpacked-size
/// check before it (the zip reader never yields more than an entry declares).
fn xlsx_records(bytes: &[u8], limits: &Limits) -> Result<Vec<Record>, ImportError> {
    let bad = |e: &dyn fmt::Display| ImportError::Xlsx(e.to_string());
    let archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| bad(&e))?;
    match archive.decompressed_size() {
        Some(size) if size <= u128::from(limits.max_unpacked_bytes) => {}
        Some(size) => {
            return Err(ImportError::Xlsx(format!(
                "its parts unpack to {size} bytes, at most {} allowed",
                limits.max_unpacked_bytes
            )));
        }
        None => return Err(ImportError::Xlsx("its unpacked size is unknown".to_owned())),
    }
    drop(archive);
    let mut workbook: Xlsx<_> = Xlsx::new(Cursor::new(bytes)).map_err(|e| bad(&e))?;
    let sheet = workbook
        .sheet_names()
        .into_iter()
        .next()
        .ok_or_else(|| ImportError::Xlsx("no sheet".to_owned()))?;
    let mut cells = workbook
        .worksheet_cells_reader(&sheet)
        .map_err(|e| bad(&e))?;
    let mut records: Vec<Record> = Vec::new();
    let mut current: Option<Record> = None;
    while let Some(cell) = cells.next_cell().map_err(|e| bad(&e))? {
        let (row, col) = cell.get_position();
        let line = row as usize + 1;
        if current.as_ref().is_some_and(|(l, _)| *l != line)
            && let Some(done) = current.take()
            && push_record(&mut records, done, limits)
        {
            return Ok(records);
        }
        if col >= MAX_COLUMNS {
            continue;
        }
        let record = current.get_or_insert_with(|| (line, Vec::new()));
        let col = col as usize;
        if record.1.len() <= col {
            record.1.resize(col + 1, Ok(String::new()));
        }
        let text = cell_text(cell.get_value());
        record.1[col] = if text.len() > limits.max_cell_bytes {
            Err(text.len())
        } else {
            Ok(text)
        };
    }
    if let Some(done) = current {
        push_record(&mut records, done, limits);
    }
    Ok(records)
}

/// A cell's text. Numbers are written in their shortest decimal form, the one that reads
/// back as the same binary number (Rust's `Display` for `f64`), so `1234.5` is "1234.5",
/// never "1234.4999999999998". A date cell is `yyyy-MM-dd`. A number that stands for
/// digits the user must keep (an account) is marked with a leading `#` by
/// [`NUMBER_MARK`], so the checks can tell.
fn cell_text(value: &DataRef<'_>) -> String {
    match value {
        DataRef::String(s) => s.clone(),
        DataRef::SharedString(s) => (*s).to_owned(),
        DataRef::Int(i) => format!("{NUMBER_MARK}{i}"),
        DataRef::Float(f) => format!("{NUMBER_MARK}{f}"),
        DataRef::Bool(b) => b.to_string(),
        DataRef::DateTime(dt) => {
            let (y, m, d, ..) = dt.to_ymd_hms_milli();
            format!("{y:04}-{m:02}-{d:02}")
        }
        DataRef::DateTimeIso(s) => s.split('T').next().unwrap_or_default().to_owned(),
        DataRef::DurationIso(s) => s.clone(),
        DataRef::Error(e) => format!("#{e}"),
        DataRef::Empty => String::new(),
    }
}

/// Marks a spreadsheet number cell's text (a character no typed text has).
const NUMBER_MARK: char = '\u{1}';

/// Where each known column is in the header, and the header's problems.
fn find_columns(
    kind: ListKind,
    line: usize,
    header: &[Result<String, usize>],
    errors: &mut Vec<RowError>,
) -> HashMap<Column, usize> {
    let mut found = HashMap::new();
    for (index, cell) in header.iter().enumerate() {
        let Ok(text) = cell else { continue };
        let name = text
            .trim_start_matches('\u{feff}')
            .trim()
            .to_ascii_lowercase();
        let Some(&(column, _)) = columns(kind)
            .iter()
            .find(|(c, _)| c.headers().contains(&name.as_str()))
        else {
            continue;
        };
        if found.insert(column, index).is_some() {
            errors.push(RowError {
                line,
                column: Some(column),
                value: text.trim().to_owned(),
                problem: Problem::DuplicateColumn,
            });
        }
    }
    for &(column, required) in columns(kind) {
        if required && !found.contains_key(&column) {
            errors.push(RowError {
                line,
                column: Some(column),
                value: String::new(),
                problem: Problem::MissingColumn,
            });
        }
    }
    found
}

/// Checks every row under `header` (the first non-empty row).
fn check_records(
    (header_line, header): Record,
    records: impl Iterator<Item = Record>,
    kind: ListKind,
    today: BizDate,
    limits: &Limits,
) -> Imported {
    let mut imported = Imported {
        kind,
        rows: Vec::new(),
        errors: Vec::new(),
        warnings: Vec::new(),
        total: Amount::ZERO,
    };
    let found = find_columns(kind, header_line, &header, &mut imported.errors);
    if !imported.errors.is_empty() {
        return imported;
    }
    let mut seen: HashMap<(String, Amount), usize> = HashMap::new();
    for (count, (line, cells)) in records.enumerate() {
        if count >= limits.max_rows {
            imported.errors.push(RowError {
                line,
                column: None,
                value: String::new(),
                problem: Problem::TooManyRows {
                    max: limits.max_rows,
                },
            });
            break;
        }
        let mut row = RowCheck {
            line,
            cells: &cells,
            found: &found,
            errors: Vec::new(),
        };
        let parsed = match kind {
            ListKind::Salary => row.salary(limits),
            ListKind::OfficialCard => row.card(limits, today),
        };
        imported.errors.append(&mut row.errors);
        let Some(parsed) = parsed else { continue };
        let key = (parsed.payee_account.as_str().to_owned(), parsed.amount);
        if let Some(&first_line) = seen.get(&key) {
            imported.warnings.push(RowError {
                line,
                column: None,
                value: String::new(),
                problem: Problem::Duplicate { first_line },
            });
        } else {
            seen.insert(key, line);
        }
        match imported.total.checked_add(parsed.amount) {
            Some(total) => {
                imported.total = total;
                imported.rows.push(parsed);
            }
            None => imported.errors.push(RowError {
                line,
                column: Some(Column::Amount),
                value: parsed.amount.to_string(),
                problem: Problem::TotalOverflow,
            }),
        }
    }
    imported
}

/// One data row being checked; every problem found is kept.
struct RowCheck<'a> {
    line: usize,
    cells: &'a [Result<String, usize>],
    found: &'a HashMap<Column, usize>,
    errors: Vec<RowError>,
}

impl RowCheck<'_> {
    fn problem(&mut self, column: Column, value: &str, problem: Problem) {
        let value = value.replace(NUMBER_MARK, "");
        self.errors.push(RowError {
            line: self.line,
            column: Some(column),
            value: value.chars().take(100).collect(),
            problem,
        });
    }

    /// The cell's trimmed text, `None` when the column is absent or the cell is empty (an
    /// error when `required`) or too large (an error).
    fn cell(&mut self, column: Column, required: bool, limits: &Limits) -> Option<String> {
        let cell = self.found.get(&column).and_then(|&i| self.cells.get(i));
        match cell {
            Some(Err(_)) => {
                self.problem(
                    column,
                    "",
                    Problem::CellTooLarge {
                        max: limits.max_cell_bytes,
                    },
                );
                None
            }
            Some(Ok(text)) if !text.trim().is_empty() => Some(text.trim().to_owned()),
            _ => {
                if required {
                    self.problem(column, "", Problem::Empty);
                }
                None
            }
        }
    }

    /// A text field: no control characters, at most `max` GBK bytes.
    fn text(
        &mut self,
        column: Column,
        required: bool,
        max: usize,
        limits: &Limits,
    ) -> Option<String> {
        let text = self.cell(column, required, limits)?;
        // A number typed in a text column is its text.
        let text = text.trim_start_matches(NUMBER_MARK).to_owned();
        match check_text(&text, max) {
            Ok(()) => Some(text),
            Err(TextError::TooLong { len, max }) => {
                self.problem(column, &text, Problem::TooLong { len, max });
                None
            }
            Err(TextError::Control(_)) => {
                self.problem(column, &text, Problem::ControlCharacter);
                None
            }
        }
    }

    /// Digits that must be text: a spreadsheet number is refused when it cannot be the
    /// digits typed (a fraction, or more digits than a double keeps exactly).
    fn digits_text(&mut self, column: Column, required: bool, limits: &Limits) -> Option<String> {
        let text = self.cell(column, required, limits)?;
        if let Some(number) = text.strip_prefix(NUMBER_MARK) {
            if !number.bytes().all(|b| b.is_ascii_digit()) || number.len() > 15 {
                self.problem(column, number, Problem::NumberNotText);
                return None;
            }
            return Some(number.to_owned());
        }
        Some(text.replace([' ', '\u{3000}'], ""))
    }

    fn amount(&mut self, limits: &Limits) -> Option<Amount> {
        let text = self.cell(Column::Amount, true, limits)?;
        let text = text.trim_start_matches(NUMBER_MARK);
        match parse_amount(text) {
            Some(amount) if amount.is_positive() => Some(amount),
            Some(_) => {
                self.problem(Column::Amount, text, Problem::NotPositive);
                None
            }
            None => {
                self.problem(Column::Amount, text, Problem::BadAmount);
                None
            }
        }
    }

    fn salary(&mut self, limits: &Limits) -> Option<ImportedRow> {
        let name = self.text(Column::Name, true, limits.name_max_gbk, limits);
        let account = self
            .digits_text(Column::Account, true, limits)
            .and_then(|text| {
                text.parse::<AccountNo>()
                    .map_err(|_| self.problem(Column::Account, &text, Problem::BadAccount))
                    .ok()
            });
        let bank = self.text(Column::Bank, true, limits.bank_max_gbk, limits);
        let bank_no = match self.digits_text(Column::BankNo, false, limits) {
            None => Ok(None),
            Some(text) => text
                .parse::<BankNo>()
                .map(Some)
                .map_err(|_| self.problem(Column::BankNo, &text, Problem::BadBankNo)),
        };
        let amount = self.amount(limits);
        let purpose = self.text(Column::Purpose, false, limits.purpose_max_gbk, limits);
        Some(ImportedRow {
            line: self.line,
            payee_name: name?,
            payee_account: account?,
            payee_bank: bank?,
            payee_bank_no: bank_no.ok()?,
            amount: amount?,
            purpose,
            spent_on: None,
        })
        .filter(|_| self.errors.is_empty())
    }

    fn card(&mut self, limits: &Limits, today: BizDate) -> Option<ImportedRow> {
        let name = self.text(Column::Cardholder, true, limits.name_max_gbk, limits);
        let card = self
            .digits_text(Column::CardNo, true, limits)
            .and_then(|text| {
                let problem = if !(13..=19).contains(&text.len())
                    || !text.bytes().all(|b| b.is_ascii_digit())
                {
                    Problem::BadCardNo
                } else if !luhn_ok(&text) {
                    Problem::CardChecksum
                } else {
                    return text.parse::<AccountNo>().ok();
                };
                self.problem(Column::CardNo, &text, problem);
                None
            });
        let bank = self.text(Column::Bank, true, limits.bank_max_gbk, limits);
        let amount = self.amount(limits);
        let date = self.cell(Column::Date, true, limits).and_then(|text| {
            let text = text.trim_start_matches(NUMBER_MARK).to_owned();
            match parse_date(&text) {
                Some(date) if date <= today => Some(date),
                Some(_) => {
                    self.problem(Column::Date, &text, Problem::FutureDate);
                    None
                }
                None => {
                    self.problem(Column::Date, &text, Problem::BadDate);
                    None
                }
            }
        });
        let merchant = self.text(Column::Merchant, false, limits.purpose_max_gbk, limits);
        Some(ImportedRow {
            line: self.line,
            payee_name: name?,
            payee_account: card?,
            payee_bank: bank?,
            payee_bank_no: None,
            amount: amount?,
            purpose: merchant,
            spent_on: Some(date?),
        })
        .filter(|_| self.errors.is_empty())
    }
}

/// An amount as people and spreadsheets write it: yuan with at most two decimals, an
/// optional `¥`/`￥`, optional thousands separators in their right places (`1,234.5`).
/// The result is rebuilt in the standard's form and parsed by [`Amount`]'s strict parser,
/// which checks the digits and the range.
#[must_use]
pub fn parse_amount(text: &str) -> Option<Amount> {
    let text = text.trim();
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let text = text.trim_start_matches(['¥', '￥']);
    let (integer, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 2 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let integer = if integer.contains(',') {
        let groups: Vec<&str> = integer.split(',').collect();
        let first_ok = (1..=3).contains(&groups[0].len());
        if !first_ok || groups[1..].iter().any(|g| g.len() != 3) {
            return None;
        }
        groups.concat()
    } else {
        integer.to_owned()
    };
    if integer.is_empty() || !integer.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let integer = integer.trim_start_matches('0');
    let integer = if integer.is_empty() { "0" } else { integer };
    let sign = if negative { "-" } else { "" };
    format!("{sign}{integer}.{fraction:0<2}").parse().ok()
}

/// `yyyyMMdd` or `yyyy-MM-dd`.
fn parse_date(text: &str) -> Option<BizDate> {
    let compact = match text.as_bytes() {
        [_, _, _, _, b'-', _, _, b'-', _, _] => text.replace('-', ""),
        _ => text.to_owned(),
    };
    compact.parse().ok()
}

/// The Luhn check (ISO/IEC 7812) that bank card numbers carry in their last digit. Written
/// here: a few lines, not worth a dependency.
fn luhn_ok(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let d = d * 2;
                if d > 9 { d - 9 } else { d }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn today() -> BizDate {
        "20250315".parse().unwrap()
    }

    fn yuan(text: &str) -> Amount {
        text.parse().unwrap()
    }

    fn csv(text: &str, kind: ListKind) -> Imported {
        import(text.as_bytes(), kind, today(), &Limits::default()).unwrap()
    }

    /// The errors as `(line, column, problem)`.
    fn problems(imported: &Imported) -> Vec<(usize, Option<Column>, Problem)> {
        imported
            .errors
            .iter()
            .map(|e| (e.line, e.column, e.problem.clone()))
            .collect()
    }

    const SALARY: &str = "\u{feff}姓名,账号,开户行,行号,金额,摘要\n\
        张三,6222020200001234567,中国工商银行北京分行,102100099996,\"1,234.50\",三月工资\n\
        李四,6222020200007654321,中国工商银行北京分行,,8000,三月工资\n\
        王五,6217000010001234,中国建设银行北京分行,, 0.05 ,\n";

    #[test]
    fn a_utf8_salary_list_with_bom_reads_every_row_and_the_exact_total() {
        let got = csv(SALARY, ListKind::Salary);
        assert_eq!(got.errors, vec![]);
        assert_eq!(got.warnings, vec![]);
        assert_eq!(got.kind.business_type(), BusinessType::Salary);
        assert_eq!(got.rows.len(), 3);
        let first = &got.rows[0];
        assert_eq!(first.line, 2);
        assert_eq!(first.payee_name, "张三");
        assert_eq!(first.payee_account.as_str(), "6222020200001234567");
        assert_eq!(first.payee_bank, "中国工商银行北京分行");
        assert_eq!(
            first.payee_bank_no.as_ref().unwrap().as_str(),
            "102100099996"
        );
        assert_eq!(first.amount, yuan("1234.50"));
        assert_eq!(first.purpose.as_deref(), Some("三月工资"));
        assert_eq!(got.rows[1].amount, yuan("8000.00"));
        assert_eq!(got.rows[1].payee_bank_no, None);
        assert_eq!(got.rows[2].amount, yuan("0.05"));
        assert_eq!(got.rows[2].purpose, None);
        assert_eq!(got.total, yuan("9234.55"));
    }

    #[test]
    fn a_gbk_list_reads_like_its_utf8_twin() {
        let text = SALARY.trim_start_matches('\u{feff}');
        let (gbk, _, unmappable) = encoding_rs::GBK.encode(text);
        assert!(!unmappable);
        assert!(std::str::from_utf8(&gbk).is_err(), "really not UTF-8");
        let got = import(&gbk, ListKind::Salary, today(), &Limits::default()).unwrap();
        assert_eq!(got, csv(SALARY, ListKind::Salary));
    }

    #[test]
    fn english_headers_in_any_order_with_spaces() {
        let got = csv(
            " amount , Name ,bank, account\n100.5,Zhang San,ICBC,6222020200001234567\n",
            ListKind::Salary,
        );
        assert_eq!(got.errors, vec![]);
        assert_eq!(got.rows[0].payee_name, "Zhang San");
        assert_eq!(got.rows[0].amount, yuan("100.50"));
    }

    #[test]
    fn neither_utf8_nor_gbk_is_refused() {
        let err = import(
            b"a,b\n\xff\xff\xff\n",
            ListKind::Salary,
            today(),
            &Limits::default(),
        );
        assert_eq!(err, Err(ImportError::Encoding));
        assert!(ImportError::Encoding.message(Lang::Zh).contains("GBK"));
    }

    #[test]
    fn a_file_without_a_header_is_refused() {
        for text in ["", "\n , \n\n"] {
            let got = import(
                text.as_bytes(),
                ListKind::Salary,
                today(),
                &Limits::default(),
            );
            assert_eq!(got, Err(ImportError::Empty), "{text:?}");
        }
    }

    #[test]
    fn a_file_over_the_size_limit_is_refused() {
        let limits = Limits {
            max_file_bytes: 10,
            ..Limits::default()
        };
        let err = import(b"0123456789A", ListKind::Salary, today(), &limits).unwrap_err();
        assert_eq!(err, ImportError::TooLarge { size: 11, max: 10 });
    }

    #[test]
    fn missing_and_duplicate_columns_are_reported_on_the_header_line() {
        let got = csv("\n姓名,金额,Amount\n张三,1.00,2.00\n", ListKind::Salary);
        assert_eq!(
            problems(&got),
            vec![
                (2, Some(Column::Amount), Problem::DuplicateColumn),
                (2, Some(Column::Account), Problem::MissingColumn),
                (2, Some(Column::Bank), Problem::MissingColumn),
            ]
        );
        assert!(got.rows.is_empty());
        assert_eq!(got.total, Amount::ZERO);
    }

    #[test]
    fn every_salary_problem_of_every_row_is_reported() {
        let long_name = "国".repeat(31);
        let text = format!(
            "姓名,账号,开户行,行号,金额,摘要\n\
             ,62220202 0000 1234,工行,12345,abc,\n\
             {long_name},acct-1,工行,102100099996,0.00,\n\
             张三,6222,,102100099996,-5.00,\n\
             李四,6222,工行,,1.234,\n\
             王五,6222,工行,,\"1,23.00\",\n\
             赵六,6222,工行,,12.30,\"a\u{7}b\"\n"
        );
        let got = csv(&text, ListKind::Salary);
        use Column as C;
        use Problem as P;
        assert_eq!(
            problems(&got),
            vec![
                (2, Some(C::Name), P::Empty),
                (2, Some(C::BankNo), P::BadBankNo),
                (2, Some(C::Amount), P::BadAmount),
                (3, Some(C::Name), P::TooLong { len: 62, max: 60 }),
                (3, Some(C::Account), P::BadAccount),
                (3, Some(C::Amount), P::NotPositive),
                (4, Some(C::Bank), P::Empty),
                (4, Some(C::Amount), P::NotPositive),
                (5, Some(C::Amount), P::BadAmount),
                (6, Some(C::Amount), P::BadAmount),
                (7, Some(C::Purpose), P::ControlCharacter),
            ]
        );
        // The spaces inside an account are dropped, so line 2's account was fine.
        assert!(
            !got.errors
                .iter()
                .any(|e| e.line == 2 && e.column == Some(C::Account))
        );
        assert_eq!(got.errors[2].value, "abc");
        assert!(got.rows.is_empty());
        assert_eq!(got.total, Amount::ZERO);
    }

    #[test]
    fn lines_are_counted_as_an_editor_shows_them() {
        // A blank line, and a quoted cell over two lines.
        let text = "姓名,账号,开户行,金额\n\n\"张\n三\",6222,工行,abc\n李四,6222,工行,x\n";
        let got = csv(text, ListKind::Salary);
        assert_eq!(
            problems(&got),
            vec![
                (3, Some(Column::Amount), Problem::BadAmount),
                (5, Some(Column::Amount), Problem::BadAmount),
            ]
        );
    }

    #[test]
    fn messages_name_the_line_the_column_and_the_value() {
        let err = RowError {
            line: 3,
            column: Some(Column::Amount),
            value: "abc".to_owned(),
            problem: Problem::BadAmount,
        };
        assert_eq!(
            err.message(Lang::Zh),
            "第 3 行 金额「abc」：金额应为元，最多两位小数，如 1234.50 或 1,234.50"
        );
        assert_eq!(
            err.message(Lang::En),
            "line 3, amount \"abc\": an amount is yuan with at most two decimals, \
             like 1234.50 or 1,234.50"
        );
    }

    #[test]
    fn a_duplicate_account_and_amount_is_a_warning() {
        let got = csv(
            "姓名,账号,开户行,金额\n张三,6222,工行,10.00\n张三,6222,工行,10\n张三,6222,工行,11\n",
            ListKind::Salary,
        );
        assert_eq!(got.errors, vec![]);
        assert_eq!(got.rows.len(), 3);
        assert_eq!(got.total, yuan("31.00"));
        assert_eq!(got.warnings.len(), 1);
        assert_eq!(got.warnings[0].line, 3);
        assert_eq!(
            got.warnings[0].problem,
            Problem::Duplicate { first_line: 2 }
        );
    }

    #[test]
    fn an_oversized_cell_is_an_error_not_kept() {
        let text = format!(
            "姓名,账号,开户行,金额\n{},6222,工行,1.00\n",
            "a".repeat(1001)
        );
        let got = csv(&text, ListKind::Salary);
        assert_eq!(
            problems(&got),
            vec![(2, Some(Column::Name), Problem::CellTooLarge { max: 1000 })]
        );
    }

    fn salary_rows(n: usize) -> String {
        let mut text = String::from("姓名,账号,开户行,金额\n");
        for i in 0..n {
            text.push_str(&format!("员工{i},6222{i:08},工行,1.01\n"));
        }
        text
    }

    #[test]
    fn ten_thousand_rows_pass_and_the_total_is_exact() {
        let got = csv(&salary_rows(10_000), ListKind::Salary);
        assert_eq!(got.errors, vec![]);
        assert_eq!(got.rows.len(), 10_000);
        assert_eq!(got.total, yuan("10100.00"));
    }

    #[test]
    fn ten_thousand_and_one_rows_are_refused() {
        let got = csv(&salary_rows(10_001), ListKind::Salary);
        assert_eq!(
            problems(&got),
            vec![(10_002, None, Problem::TooManyRows { max: 10_000 })]
        );
    }

    /// Card numbers with a right check digit.
    const CARD: &str = "6225880137001237";
    const CARD2: &str = "4111111111111111";

    #[test]
    fn luhn() {
        assert!(luhn_ok(CARD));
        assert!(luhn_ok(CARD2));
        assert!(!luhn_ok("4111111111111112"));
        assert!(luhn_ok("79927398713"));
    }

    #[test]
    fn an_official_card_list_reads_dates_and_merchants() {
        let text = format!(
            "持卡人,卡号,发卡行,金额,消费日期,商户\n\
             张三,{CARD},招商银行,268.00,20250301,某某酒店\n\
             李四,{CARD2},工商银行,\"1,000\",2025-03-15,\n"
        );
        let got = csv(&text, ListKind::OfficialCard);
        assert_eq!(got.errors, vec![]);
        assert_eq!(got.kind.business_type(), BusinessType::Batch);
        assert_eq!(got.rows[0].payee_account.as_str(), CARD);
        assert_eq!(got.rows[0].spent_on, Some("20250301".parse().unwrap()));
        assert_eq!(got.rows[0].purpose.as_deref(), Some("某某酒店"));
        assert_eq!(got.rows[1].spent_on, Some(today()));
        assert_eq!(got.total, yuan("1268.00"));
    }

    #[test]
    fn every_card_problem_is_reported() {
        let text = format!(
            "cardholder,card_no,bank,amount,date\n\
             张三,12345,招行,1.00,20250301\n\
             张三,4111111111111112,招行,1.00,20250230\n\
             张三,{CARD},招行,1.00,20250316\n\
             张三,{CARD},招行,1.00,2025/03/01\n"
        );
        let got = csv(&text, ListKind::OfficialCard);
        assert_eq!(
            problems(&got),
            vec![
                (2, Some(Column::CardNo), Problem::BadCardNo),
                (3, Some(Column::CardNo), Problem::CardChecksum),
                (3, Some(Column::Date), Problem::BadDate),
                (4, Some(Column::Date), Problem::FutureDate),
                (5, Some(Column::Date), Problem::BadDate),
            ]
        );
    }

    #[test]
    fn amounts_as_people_and_spreadsheets_write_them() {
        for (text, fen) in [
            ("1234.5", Some(123_450)),
            ("1234.50", Some(123_450)),
            ("1,234.50", Some(123_450)),
            ("1,234", Some(123_400)),
            ("¥12.30", Some(1230)),
            ("0.05", Some(5)),
            ("007", Some(700)),
            ("-5", Some(-500)),
            ("999999999999999.99", Some(99_999_999_999_999_999)),
            ("1000000000000000", None),
            ("1234.567", None),
            ("12,34.00", None),
            ("1,2345", None),
            (",123", None),
            ("1e3", None),
            ("", None),
            (".5", None),
            ("0.30000000000000004", None),
        ] {
            assert_eq!(parse_amount(text).map(Amount::fen), fen, "{text:?}");
        }
    }

    #[test]
    fn the_default_lengths_are_the_registrys() {
        assert_eq!(
            Limits::for_registry(&Registry::builtin()),
            Limits::default()
        );
    }

    // XLSX fixtures are built here from their XML parts, so a test states exactly what a
    // cell holds (a number's stored text, a shared or inline string) and what the sheet
    // declares; a spreadsheet writer would choose those itself.

    enum X<'a> {
        /// A shared string.
        S(&'a str),
        /// A number as stored in the sheet's XML.
        N(&'a str),
        /// A date: the serial number with a date format (style 1).
        D(u32),
    }

    fn xlsx(rows: &[Vec<X<'_>>]) -> Vec<u8> {
        let mut strings: Vec<&str> = Vec::new();
        let mut sheet = String::from(
            r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>"#,
        );
        for (r, row) in rows.iter().enumerate() {
            sheet.push_str(&format!(r#"<row r="{}">"#, r + 1));
            for (c, cell) in row.iter().enumerate() {
                let at = format!("{}{}", char::from(b'A' + c as u8), r + 1);
                match cell {
                    X::S(s) => {
                        let i = strings.iter().position(|x| x == s).unwrap_or_else(|| {
                            strings.push(s);
                            strings.len() - 1
                        });
                        sheet.push_str(&format!(r#"<c r="{at}" t="s"><v>{i}</v></c>"#));
                    }
                    X::N(n) => sheet.push_str(&format!(r#"<c r="{at}"><v>{n}</v></c>"#)),
                    X::D(d) => sheet.push_str(&format!(r#"<c r="{at}" s="1"><v>{d}</v></c>"#)),
                }
            }
            sheet.push_str("</row>");
        }
        sheet.push_str("</sheetData></worksheet>");
        let mut shared = format!(
            r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="{0}" uniqueCount="{0}">"#,
            strings.len()
        );
        for s in &strings {
            shared.push_str(&format!("<si><t>{s}</t></si>"));
        }
        shared.push_str("</sst>");
        zip_parts(&[
            (
                "[Content_Types].xml",
                r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/><Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/><Override PartName="/xl/styles.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/></Types>"#,
            ),
            (
                "_rels/.rels",
                r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>"#,
            ),
            (
                "xl/workbook.xml",
                r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="清单" sheetId="1" r:id="rId1"/></sheets></workbook>"#,
            ),
            (
                "xl/_rels/workbook.xml.rels",
                r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/><Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings" Target="sharedStrings.xml"/><Relationship Id="rId3" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/styles" Target="styles.xml"/></Relationships>"#,
            ),
            (
                "xl/styles.xml",
                r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<styleSheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><cellXfs count="2"><xf numFmtId="0"/><xf numFmtId="14" applyNumberFormat="1"/></cellXfs></styleSheet>"#,
            ),
            ("xl/sharedStrings.xml", &shared),
            ("xl/worksheets/sheet1.xml", &sheet),
        ])
    }

    fn zip_parts(parts: &[(&str, &str)]) -> Vec<u8> {
        let mut out = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, text) in parts {
            out.start_file(*name, options).unwrap();
            out.write_all(text.as_bytes()).unwrap();
        }
        out.finish().unwrap().into_inner()
    }

    #[test]
    fn an_xlsx_salary_list_converts_numbers_without_binary_rounding() {
        use X::{N, S};
        let bytes = xlsx(&[
            vec![S("姓名"), S("账号"), S("开户行"), S("金额")],
            vec![S("张三"), S("6222020200001234567"), S("工行"), N("1234.5")],
            vec![S("李四"), N("62220202"), S("工行"), N("0.1")],
            vec![S("王五"), S("6222"), S("工行"), N("0.2")],
            vec![S("赵六"), S("6223"), S("工行"), N("8000")],
        ]);
        assert!(is_xlsx(&bytes));
        let got = import(&bytes, ListKind::Salary, today(), &Limits::default()).unwrap();
        assert_eq!(got.errors, vec![]);
        let amounts: Vec<i64> = got.rows.iter().map(|r| r.amount.fen()).collect();
        assert_eq!(amounts, [123_450, 10, 20, 800_000]);
        assert_eq!(got.rows[1].payee_account.as_str(), "62220202");
        assert_eq!(got.rows[0].line, 2);
        // 0.1 + 0.2 in binary floating point is 0.30000000000000004; in fen it is exact.
        assert_eq!(got.total, yuan("9234.80"));
    }

    #[test]
    fn an_xlsx_card_list_with_date_cells_and_a_rounded_card_number() {
        use X::{D, N, S};
        let bytes = xlsx(&[
            vec![
                S("持卡人"),
                S("卡号"),
                S("发卡行"),
                S("金额"),
                S("消费日期"),
            ],
            // 45717 is 2025-03-01 in the 1900 date system.
            vec![S("张三"), S(CARD), S("招行"), N("268"), D(45717)],
            // A 16-digit card number stored as a number has lost its last digit.
            vec![
                S("李四"),
                N("6.22588013700123E+15"),
                S("招行"),
                N("1.5"),
                S("2025-03-20"),
            ],
        ]);
        let got = import(&bytes, ListKind::OfficialCard, today(), &Limits::default()).unwrap();
        assert_eq!(got.rows.len(), 1);
        assert_eq!(got.rows[0].spent_on, Some("20250301".parse().unwrap()));
        assert_eq!(got.total, yuan("268.00"));
        assert_eq!(
            problems(&got),
            vec![
                (3, Some(Column::CardNo), Problem::NumberNotText),
                (3, Some(Column::Date), Problem::FutureDate),
            ]
        );
    }

    #[test]
    fn an_xlsx_with_too_many_rows_is_refused_without_reading_them_all() {
        use X::{N, S};
        let mut rows = vec![vec![S("姓名"), S("账号"), S("开户行"), S("金额")]];
        for _ in 0..10_005 {
            rows.push(vec![S("张三"), S("6222"), S("工行"), N("1")]);
        }
        let got = import(&xlsx(&rows), ListKind::Salary, today(), &Limits::default()).unwrap();
        assert_eq!(
            problems(&got),
            vec![(10_002, None, Problem::TooManyRows { max: 10_000 })]
        );
        // Every row up to the limit was read; none after the first one past it.
        assert_eq!(got.rows.len(), 10_000);
        assert_eq!(got.warnings.len(), 9_999);
    }

    #[test]
    fn an_xlsx_that_unpacks_to_too_much_is_refused_before_it_is_opened() {
        use X::S;
        let bytes = xlsx(&[vec![S("姓名"), S("账号"), S("开户行"), S("金额")]]);
        let limits = Limits {
            max_unpacked_bytes: 1_000,
            ..Limits::default()
        };
        let err = import(&bytes, ListKind::Salary, today(), &limits).unwrap_err();
        assert!(
            matches!(&err, ImportError::Xlsx(m) if m.contains("unpack")),
            "{err:?}"
        );
        // A zip that is no workbook.
        let bytes = zip_parts(&[("hello.txt", "hello")]);
        let err = import(&bytes, ListKind::Salary, today(), &Limits::default()).unwrap_err();
        assert!(matches!(err, ImportError::Xlsx(_)), "{err:?}");
    }
}
