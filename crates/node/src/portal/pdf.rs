//! Receipts as PDF with Chinese text: the payment receipt (支付凭证回单) of a 5201 or 8202
//! and the account notice (入账通知书) for the payee's side.
//!
//! Pure: [`render`] turns a [`ReceiptDoc`] (plain data the caller gathered from the voucher,
//! its receipt and the seal check) into PDF bytes with a [`CjkFont`] the caller loaded once
//! ([`CjkFont::discover`] at start-up). Nothing here reads the clock: the printed time is in
//! the document. The PDF is drawn with `krilla`, which embeds only the glyphs used (a CID
//! font subset), so a receipt stays around 10–20 KB although the font file is megabytes.
//!
//! Chinese is always on the receipt; [`Lang::En`] adds English labels under the Chinese.
//! Amounts show as `¥1,234.50` and in Chinese capitals (大写, [`amount_in_capitals`]).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use guoku_domain::{AdmDivCode, Amount, BizDate, StYear, VoucherNo, VtCode};
use krilla::Document;
use krilla::color::rgb;
use krilla::geom::{PathBuilder, Point, Rect};
use krilla::metadata::Metadata;
use krilla::page::PageSettings;
use krilla::paint::{Fill, Stroke};
use krilla::surface::Surface;
use krilla::text::{Font, TextDirection};
use skrifa::instance::{LocationRef, Size};
use skrifa::{FontRef, MetadataProvider};

use super::i18n::Lang;

/// The environment variable naming the CJK font file, optionally with `#index` for a face
/// of a TrueType collection: `/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc#2`.
pub const FONT_ENV: &str = "GUOKU_CJK_FONT";

/// Where Debian's CJK font packages put their fonts, in the order they are tried, with the
/// face index of a Simplified Chinese face in each.
pub const KNOWN_FONTS: &[(&str, u32)] = &[
    // fonts-wqy-microhei: small (1.6 MB package), TrueType outlines.
    ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", 0),
    // fonts-noto-cjk: Noto Sans CJK SC is face 2 of the collection.
    ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc", 2),
    // fonts-wqy-zenhei.
    ("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc", 0),
];

/// What to tell whoever has no CJK font.
const INSTALL_HINT: &str = "install one with `apt-get install fonts-wqy-microhei` (or \
    fonts-noto-cjk), or set GUOKU_CJK_FONT to a font file (`path` or `path#face-index`)";

/// Most bytes a font file may have (Noto Sans CJK's collection is about 20 MB).
const MAX_FONT_BYTES: u64 = 64 << 20;

/// Why a receipt could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum PdfError {
    /// No CJK font at any known place and none named by [`FONT_ENV`].
    #[error("no CJK font found (looked at {}): {INSTALL_HINT}", .tried.join(", "))]
    NoFont {
        /// The places looked at.
        tried: Vec<String>,
    },
    /// The font file named could not be read.
    #[error("CJK font {path}: {reason}; {INSTALL_HINT}")]
    FontUnreadable {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The file is not a font, has no face at that index, or lacks Chinese characters.
    #[error("CJK font {path}#{index}: {reason}; {INSTALL_HINT}")]
    NotACjkFont {
        /// The file.
        path: PathBuf,
        /// The face index asked for.
        index: u32,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// [`FONT_ENV`] is set to something that is not `path` or `path#index`.
    #[error("{FONT_ENV}={0:?} is not `path` or `path#face-index`")]
    BadFontSetting(String),
    /// The PDF writer refused the document (a bug here, not bad input).
    #[error("PDF writer: {0}")]
    Writer(String),
}

/// A CJK font loaded once and shared by every receipt drawn with it (cloning is cheap).
#[derive(Clone)]
pub struct CjkFont {
    font: Font,
    data: Arc<Vec<u8>>,
    index: u32,
    path: PathBuf,
}

impl std::fmt::Debug for CjkFont {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CjkFont")
            .field("path", &self.path)
            .field("index", &self.index)
            .field("bytes", &self.data.len())
            .finish()
    }
}

impl CjkFont {
    /// The font named by [`FONT_ENV`], else the first of [`KNOWN_FONTS`] present.
    pub fn discover() -> Result<CjkFont, PdfError> {
        let setting = std::env::var_os(FONT_ENV).map(|v| v.to_string_lossy().into_owned());
        Self::discover_with(setting.as_deref())
    }

    /// [`CjkFont::discover`] with the variable's value passed in (`None`: unset or empty).
    pub fn discover_with(setting: Option<&str>) -> Result<CjkFont, PdfError> {
        if let Some(setting) = setting.filter(|s| !s.trim().is_empty()) {
            let (path, index) = parse_font_setting(setting)?;
            return Self::load(Path::new(path), index);
        }
        for &(path, index) in KNOWN_FONTS {
            if Path::new(path).is_file() {
                return Self::load(Path::new(path), index);
            }
        }
        Err(PdfError::NoFont {
            tried: std::iter::once(format!("${FONT_ENV} (unset)"))
                .chain(KNOWN_FONTS.iter().map(|(p, _)| (*p).to_owned()))
                .collect(),
        })
    }

    /// The face `index` of the font file at `path`; refused unless it has Chinese glyphs.
    pub fn load(path: &Path, index: u32) -> Result<CjkFont, PdfError> {
        let unreadable = |reason: String| PdfError::FontUnreadable {
            path: path.to_owned(),
            reason,
        };
        let meta = std::fs::metadata(path).map_err(|e| unreadable(e.to_string()))?;
        if meta.len() > MAX_FONT_BYTES {
            return Err(unreadable(format!(
                "{} bytes, more than the {MAX_FONT_BYTES} allowed",
                meta.len()
            )));
        }
        let data = Arc::new(std::fs::read(path).map_err(|e| unreadable(e.to_string()))?);
        let not_cjk = |reason| PdfError::NotACjkFont {
            path: path.to_owned(),
            index,
            reason,
        };
        let face = FontRef::from_index(&data, index)
            .map_err(|_| not_cjk("not a font, or no face at this index"))?;
        let charmap = face.charmap();
        if !"国库支付凭证回单零壹贰¥0123456789"
            .chars()
            .all(|c| charmap.map(c).is_some())
        {
            return Err(not_cjk("the face lacks Chinese characters"));
        }
        let font =
            Font::new(data.clone().into(), index).ok_or(not_cjk("the PDF writer cannot use it"))?;
        Ok(CjkFont {
            font,
            data,
            index,
            path: path.to_owned(),
        })
    }

    /// The file the font was read from.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The width of `text` at `size` points (the sum of the glyphs' advances; no kerning,
    /// which CJK text and digits do not use).
    fn width(&self, text: &str, size: f32) -> f32 {
        let Ok(face) = FontRef::from_index(&self.data, self.index) else {
            return 0.0;
        };
        let charmap = face.charmap();
        let metrics = face.glyph_metrics(Size::new(size), LocationRef::default());
        text.chars()
            .filter_map(|c| charmap.map(c))
            .filter_map(|g| metrics.advance_width(g))
            .sum()
    }
}

/// `path` or `path#index`.
fn parse_font_setting(setting: &str) -> Result<(&str, u32), PdfError> {
    match setting.rsplit_once('#') {
        None => Ok((setting, 0)),
        Some((path, index)) => match index.parse() {
            Ok(index) if !path.is_empty() => Ok((path, index)),
            _ => Err(PdfError::BadFontSetting(setting.to_owned())),
        },
    }
}

/// Which document to draw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DocKind {
    /// 支付凭证回单: the payer's receipt that the payment was made.
    PaymentReceipt,
    /// 入账通知书: the payee's notice that money was credited to its account.
    CreditAdvice,
}

/// One side of a payment: an account, its holder and its bank.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountParty {
    /// 账号.
    pub account_no: String,
    /// 全称: the account holder's name.
    pub name: String,
    /// 开户银行.
    pub bank: String,
}

/// The outcome of checking the voucher's signatures and seals, printed on the receipt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SealCheck {
    /// Every signature and seal verified against a valid certificate.
    Verified,
    /// At least one did not verify: the receipt says so in red.
    NotVerified,
}

/// Everything a receipt or account notice shows, gathered by the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiptDoc {
    /// Receipt or account notice.
    pub kind: DocKind,
    /// The voucher's type code (5201, 8202).
    pub vt_code: VtCode,
    /// The voucher type's name (财政直接支付凭证).
    pub vt_name: String,
    /// 凭证号.
    pub voucher_no: VoucherNo,
    /// 行政区划代码.
    pub adm_div: AdmDivCode,
    /// The division's name.
    pub adm_div_name: String,
    /// 业务年度.
    pub year: StYear,
    /// 凭证日期.
    pub voucher_date: BizDate,
    /// 付款人.
    pub payer: AccountParty,
    /// 收款人.
    pub payee: AccountParty,
    /// 金额.
    pub amount: Amount,
    /// 用途.
    pub purpose: String,
    /// 支付日期 (XPayDate).
    pub pay_date: BizDate,
    /// 银行交易流水号 (XAgentBusinessNo).
    pub bank_serial: String,
    /// The agent bank's name, also drawn in the seal.
    pub bank_name: String,
    /// Who sealed the receipt: the seal certificate's subject.
    pub sealed_by: String,
    /// The seal's name (代理银行转讫章).
    pub seal_name: String,
    /// The result of checking the signatures and seals.
    pub seal_check: SealCheck,
    /// When it was printed, as the caller's clock says: `2025-03-01 10:20:30`.
    pub printed_at: String,
    /// Chinese only ([`Lang::Zh`]) or Chinese with English labels ([`Lang::En`]).
    pub lang: Lang,
}

/// A label: Chinese always, English under it when asked.
struct Label {
    zh: &'static str,
    en: &'static str,
}

const fn l(zh: &'static str, en: &'static str) -> Label {
    Label { zh, en }
}

const TITLE_RECEIPT: Label = l("支付凭证回单", "Payment Receipt");
const TITLE_ADVICE: Label = l("入账通知书", "Credit Advice");
const VOUCHER_TYPE: Label = l("凭证类型", "Voucher type");
const VOUCHER_NO: Label = l("凭证号", "Voucher No.");
const ADM_DIV: Label = l("行政区划", "Division");
const YEAR: Label = l("年度", "Year");
const VOUCHER_DATE: Label = l("凭证日期", "Voucher date");
const PAYER: Label = l("付款人", "Payer");
const PAYEE: Label = l("收款人", "Payee");
const NAME: Label = l("全称", "Name");
const ACCOUNT: Label = l("账号", "Account");
const BANK: Label = l("开户银行", "Bank");
const AMOUNT_WORDS: Label = l("金额（大写）", "Amount in words");
const AMOUNT_FIGURES: Label = l("小写", "Amount");
const PURPOSE: Label = l("用途", "Purpose");
const PAY_DATE: Label = l("支付日期", "Pay date");
const BANK_SERIAL: Label = l("银行流水号", "Bank serial");
const SEALED_BY: Label = l("签章单位", "Sealed by");
const SEAL: Label = l("印章", "Seal");
const CHECK: Label = l("验证结果", "Check");
const VERIFIED: Label = l("签章已验证", "seal verified");
const NOT_VERIFIED: Label = l("签章验证未通过", "seal NOT verified");
const PRINTED: Label = l("打印时间", "Printed");
const NOTE_RECEIPT: Label = l(
    "本回单由代理银行签章，可凭凭证号查验。",
    "Sealed by the agent bank; verify it by its voucher number.",
);
const NOTE_ADVICE: Label = l(
    "上述款项已划入贵单位账户，特此通知。",
    "The amount above has been credited to your account.",
);

/// A4 portrait, in points.
const PAGE_W: f32 = 595.28;
const PAGE_H: f32 = 841.89;
const MARGIN: f32 = 42.0;
const ROW_H: f32 = 28.0;
const RED: (u8, u8, u8) = (200, 16, 32);
const BLACK: (u8, u8, u8) = (0, 0, 0);
const GREY: (u8, u8, u8) = (90, 90, 90);

/// Draws `doc` as a one-page A4 PDF.
pub fn render(doc: &ReceiptDoc, font: &CjkFont) -> Result<Vec<u8>, PdfError> {
    let title = match doc.kind {
        DocKind::PaymentReceipt => &TITLE_RECEIPT,
        DocKind::CreditAdvice => &TITLE_ADVICE,
    };
    let mut document = Document::new();
    document.set_metadata(
        Metadata::new()
            .title(format!("{} {}", title.zh, doc.voucher_no))
            .language("zh-CN".to_owned())
            .creator("guoku".to_owned()),
    );
    let settings = PageSettings::from_wh(PAGE_W, PAGE_H)
        .ok_or_else(|| PdfError::Writer("page size".to_owned()))?;
    let mut page = document.start_page_with(settings);
    {
        let mut canvas = Canvas {
            surface: page.surface(),
            font,
            lang: doc.lang,
        };
        draw(&mut canvas, doc, title);
        canvas.surface.finish();
    }
    page.finish();
    document
        .finish()
        .map_err(|e| PdfError::Writer(format!("{e:?}")))
}

/// Horizontal placement of a text in its cell.
#[derive(Clone, Copy)]
enum Align {
    Left,
    Center,
    Right,
}

/// A page being drawn, with the top-left origin and y growing downwards.
struct Canvas<'a, 'b> {
    surface: Surface<'a>,
    font: &'b CjkFont,
    lang: Lang,
}

impl Canvas<'_, '_> {
    fn text(&mut self, x: f32, baseline: f32, size: f32, text: &str, color: (u8, u8, u8)) {
        if text.is_empty() {
            return;
        }
        self.surface.set_stroke(None);
        self.surface.set_fill(Some(Fill {
            paint: rgb::Color::new(color.0, color.1, color.2).into(),
            ..Fill::default()
        }));
        self.surface.draw_text(
            Point::from_xy(x, baseline),
            self.font.font.clone(),
            size,
            text,
            false,
            TextDirection::Auto,
        );
    }

    /// `text` on one line in the box, shrunk (down to 5 pt) until it fits its width,
    /// vertically centred.
    fn fit(&mut self, cell: (f32, f32, f32, f32), size: f32, text: &str, align: Align) {
        let (x, y, w, h) = cell;
        let pad = 4.0;
        let room = (w - 2.0 * pad).max(1.0);
        let mut size = size;
        let mut width = self.font.width(text, size);
        if width > room {
            size = (size * room / width).max(5.0);
            width = self.font.width(text, size);
        }
        let left = match align {
            Align::Left => x + pad,
            Align::Center => x + (w - width) / 2.0,
            Align::Right => x + w - pad - width,
        };
        self.text(left, y + h / 2.0 + size * 0.36, size, text, BLACK);
    }

    /// A label cell: the Chinese, and the English under it in English mode.
    fn label(&mut self, cell: (f32, f32, f32, f32), label: &Label) {
        let (x, y, w, h) = cell;
        match self.lang {
            Lang::Zh => self.fit(cell, 10.0, label.zh, Align::Center),
            Lang::En => {
                self.fit((x, y + 1.0, w, h / 2.0), 9.5, label.zh, Align::Center);
                self.fit(
                    (x, y + h / 2.0 - 1.0, w, h / 2.0),
                    6.5,
                    label.en,
                    Align::Center,
                );
            }
        }
    }

    /// The label's text on one line: `凭证号` or `凭证号 Voucher No.`.
    fn inline(&self, label: &Label) -> String {
        match self.lang {
            Lang::Zh => label.zh.to_owned(),
            Lang::En => format!("{} {}", label.zh, label.en),
        }
    }

    fn stroke(&mut self, path: PathBuilder, width: f32, color: (u8, u8, u8)) {
        let Some(path) = path.finish() else { return };
        self.surface.set_fill(None);
        self.surface.set_stroke(Some(Stroke {
            paint: rgb::Color::new(color.0, color.1, color.2).into(),
            width,
            ..Stroke::default()
        }));
        self.surface.draw_path(&path);
        self.surface.set_stroke(None);
    }

    fn rect(&mut self, x: f32, y: f32, w: f32, h: f32, width: f32) {
        let mut path = PathBuilder::new();
        if let Some(rect) = Rect::from_xywh(x, y, w, h) {
            path.push_rect(rect);
        }
        self.stroke(path, width, BLACK);
    }

    fn hline(&mut self, x1: f32, x2: f32, y: f32) {
        let mut path = PathBuilder::new();
        path.move_to(x1, y);
        path.line_to(x2, y);
        self.stroke(path, 0.6, BLACK);
    }

    fn vline(&mut self, x: f32, y1: f32, y2: f32) {
        let mut path = PathBuilder::new();
        path.move_to(x, y1);
        path.line_to(x, y2);
        self.stroke(path, 0.6, BLACK);
    }

    fn circle(&mut self, cx: f32, cy: f32, r: f32, width: f32, color: (u8, u8, u8)) {
        // Four cubic Béziers, the usual approximation of a circle.
        let k = 0.552_284_8 * r;
        let mut p = PathBuilder::new();
        p.move_to(cx + r, cy);
        p.cubic_to(cx + r, cy + k, cx + k, cy + r, cx, cy + r);
        p.cubic_to(cx - k, cy + r, cx - r, cy + k, cx - r, cy);
        p.cubic_to(cx - r, cy - k, cx - k, cy - r, cx, cy - r);
        p.cubic_to(cx + k, cy - r, cx + r, cy - k, cx + r, cy);
        p.close();
        self.stroke(p, width, color);
    }
}

fn draw(c: &mut Canvas<'_, '_>, doc: &ReceiptDoc, title: &Label) {
    let left = MARGIN;
    let right = PAGE_W - MARGIN;
    let width = right - left;
    let mut y = MARGIN + 10.0;

    // Title, centred, with the English under it in English mode.
    c.fit((left, y, width, 30.0), 20.0, title.zh, Align::Center);
    y += 30.0;
    if c.lang == Lang::En {
        c.fit((left, y - 4.0, width, 16.0), 10.0, title.en, Align::Center);
        y += 12.0;
    }
    c.hline(left + width * 0.3, right - width * 0.3, y);
    y += 8.0;

    // Voucher identification, above the table.
    let line1 = format!(
        "{}：{} {}",
        c.inline(&VOUCHER_TYPE),
        doc.vt_code,
        doc.vt_name
    );
    let line1_right = format!("{}：{}", c.inline(&VOUCHER_NO), doc.voucher_no);
    c.fit((left, y, width * 0.6, 18.0), 9.5, &line1, Align::Left);
    c.fit(
        (left + width * 0.6, y, width * 0.4, 18.0),
        9.5,
        &line1_right,
        Align::Right,
    );
    y += 18.0;
    let line2 = format!(
        "{}：{} {}",
        c.inline(&ADM_DIV),
        doc.adm_div,
        doc.adm_div_name
    );
    let line2_right = format!(
        "{}：{}  {}：{}",
        c.inline(&YEAR),
        doc.year,
        c.inline(&VOUCHER_DATE),
        iso_date(doc.voucher_date)
    );
    c.fit((left, y, width * 0.5, 18.0), 9.5, &line2, Align::Left);
    c.fit(
        (left + width * 0.5, y, width * 0.5, 18.0),
        9.5,
        &line2_right,
        Align::Right,
    );
    y += 20.0;

    // The table: payer and payee side by side, three rows each, a narrow vertical label.
    let top = y;
    let half = width / 2.0;
    let side_w = 22.0;
    let label_w = 58.0;
    for (i, (who, party)) in [(&PAYER, &doc.payer), (&PAYEE, &doc.payee)]
        .into_iter()
        .enumerate()
    {
        let x = left + half * i as f32;
        // The side's name, one character a line, in the narrow column.
        let chars: Vec<char> = who.zh.chars().collect();
        let step = 3.0 * ROW_H / (chars.len() as f32 + 1.0);
        for (k, ch) in chars.iter().enumerate() {
            let mut buf = [0u8; 4];
            c.fit(
                (x, y + step * (k as f32 + 0.5), side_w, step),
                10.0,
                ch.encode_utf8(&mut buf),
                Align::Center,
            );
        }
        if c.lang == Lang::En {
            c.fit(
                (x, y + 3.0 * ROW_H - 12.0, side_w, 10.0),
                5.5,
                who.en,
                Align::Center,
            );
        }
        c.vline(x + side_w, y, y + 3.0 * ROW_H);
        c.vline(x + side_w + label_w, y, y + 3.0 * ROW_H);
        for (row, (label, value)) in [
            (&NAME, &party.name),
            (&ACCOUNT, &party.account_no),
            (&BANK, &party.bank),
        ]
        .into_iter()
        .enumerate()
        {
            let ry = y + ROW_H * row as f32;
            c.label((x + side_w, ry, label_w, ROW_H), label);
            c.fit(
                (x + side_w + label_w, ry, half - side_w - label_w, ROW_H),
                10.0,
                value,
                Align::Left,
            );
            if row > 0 {
                c.hline(x + side_w, x + half, ry);
            }
        }
    }
    c.vline(left + half, y, y + 3.0 * ROW_H);
    y += 3.0 * ROW_H;
    c.hline(left, right, y);

    // Amount: in capitals, then in figures.
    let words_label_w = side_w + label_w;
    c.label((left, y, words_label_w, ROW_H), &AMOUNT_WORDS);
    c.vline(left + words_label_w, y, y + ROW_H);
    c.fit(
        (left + words_label_w, y, half + 40.0 - words_label_w, ROW_H),
        10.5,
        &format!("人民币{}", amount_in_capitals(doc.amount)),
        Align::Left,
    );
    let fig_x = left + half + 40.0;
    c.vline(fig_x, y, y + ROW_H);
    c.label((fig_x, y, 40.0, ROW_H), &AMOUNT_FIGURES);
    c.vline(fig_x + 40.0, y, y + ROW_H);
    c.fit(
        (fig_x + 40.0, y, right - fig_x - 40.0, ROW_H),
        11.0,
        &amount_in_figures(doc.amount),
        Align::Right,
    );
    y += ROW_H;
    c.hline(left, right, y);

    // Purpose, one full row.
    c.label((left, y, words_label_w, ROW_H), &PURPOSE);
    c.vline(left + words_label_w, y, y + ROW_H);
    c.fit(
        (left + words_label_w, y, width - words_label_w, ROW_H),
        10.0,
        &doc.purpose,
        Align::Left,
    );
    y += ROW_H;
    c.hline(left, right, y);

    // Two label/value pairs a row.
    let pair_rows: [[(&Label, String); 2]; 2] = [
        [
            (&PAY_DATE, iso_date(doc.pay_date)),
            (&BANK_SERIAL, doc.bank_serial.clone()),
        ],
        [
            (&SEALED_BY, doc.sealed_by.clone()),
            (&SEAL, doc.seal_name.clone()),
        ],
    ];
    for pair in pair_rows {
        for (i, (label, value)) in pair.iter().enumerate() {
            let x = left + half * i as f32;
            c.label((x, y, words_label_w, ROW_H), label);
            c.vline(x + words_label_w, y, y + ROW_H);
            c.fit(
                (x + words_label_w, y, half - words_label_w, ROW_H),
                10.0,
                value,
                Align::Left,
            );
        }
        c.vline(left + half, y, y + ROW_H);
        y += ROW_H;
        c.hline(left, right, y);
    }

    // The seal check, in red when it failed.
    c.label((left, y, words_label_w, ROW_H), &CHECK);
    c.vline(left + words_label_w, y, y + ROW_H);
    let (check, colour) = match doc.seal_check {
        SealCheck::Verified => (&VERIFIED, BLACK),
        SealCheck::NotVerified => (&NOT_VERIFIED, RED),
    };
    let check_text = match c.lang {
        Lang::Zh => check.zh.to_owned(),
        Lang::En => format!("{} / {}", check.zh, check.en),
    };
    c.text(
        left + words_label_w + 4.0,
        y + ROW_H / 2.0 + 3.6,
        10.0,
        &check_text,
        colour,
    );
    y += ROW_H;
    let bottom = y;
    c.rect(left, top, width, bottom - top, 1.2);

    // Below the table: the note and the printed time.
    let note = match doc.kind {
        DocKind::PaymentReceipt => &NOTE_RECEIPT,
        DocKind::CreditAdvice => &NOTE_ADVICE,
    };
    y += 6.0;
    c.fit((left, y, width * 0.65, 16.0), 9.0, note.zh, Align::Left);
    if c.lang == Lang::En {
        y += 13.0;
        c.fit((left, y, width * 0.65, 14.0), 7.5, note.en, Align::Left);
    }
    y += 16.0;
    let printed = format!("{}：{}", c.inline(&PRINTED), doc.printed_at);
    let mut grey_size = 8.5;
    let room = width * 0.65;
    let w = c.font.width(&printed, grey_size);
    if w > room {
        grey_size *= room / w;
    }
    c.text(left + 4.0, y + 10.0, grey_size, &printed, GREY);

    // The bank's seal: a red ring with the bank's name, the seal's name and the pay date,
    // at the table's lower right as a stamp would be. Only over a verified seal: a red
    // ring must not vouch for a seal that did not verify.
    if doc.seal_check != SealCheck::Verified {
        return;
    }
    let r = 48.0;
    let (cx, cy) = (right - r - 14.0, bottom + 22.0);
    c.circle(cx, cy, r, 2.2, RED);
    c.circle(cx, cy, r - 4.0, 0.6, RED);
    let date = iso_date(doc.pay_date);
    for (text, dy, size) in [
        (doc.bank_name.as_str(), -12.0, 10.0),
        (doc.seal_name.as_str(), 6.0, 9.0),
        (date.as_str(), 22.0, 8.0),
    ] {
        let room = 2.0 * (r - 10.0);
        let mut size: f32 = size;
        let mut w = c.font.width(text, size);
        if w > room {
            size = (size * room / w).max(4.0);
            w = c.font.width(text, size);
        }
        c.text(cx - w / 2.0, cy + dy + size * 0.36, size, text, RED);
    }
}

fn iso_date(date: BizDate) -> String {
    format!("{:04}-{:02}-{:02}", date.year(), date.month(), date.day())
}

/// The amount in figures with thousands separators: `¥1,234.50` (`-¥5.00` below zero).
#[must_use]
pub fn amount_in_figures(amount: Amount) -> String {
    let fen = amount.fen().unsigned_abs();
    let yuan = (fen / 100).to_string();
    let mut out = String::with_capacity(yuan.len() + 8);
    if amount.is_negative() {
        out.push('-');
    }
    out.push('¥');
    for (i, d) in yuan.chars().enumerate() {
        if i > 0 && (yuan.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    let _ = write!(out, ".{:02}", fen % 100);
    out
}

const DIGITS: [char; 10] = ['零', '壹', '贰', '叁', '肆', '伍', '陆', '柒', '捌', '玖'];

/// The amount in Chinese capitals (大写) as payment documents write it: `1234.50` is
/// 壹仟贰佰叁拾肆元伍角整, `100010.00` is 壹拾万零壹拾元整, `1000000.01` is 壹佰万元零壹分,
/// `0.05` is 伍分, `0.00` is 零元整; a negative amount starts with 负.
///
/// The rules (中国人民银行《支付结算办法》's for filling in amounts): 整 after 元 or 角 when
/// nothing follows, never after 分; one 零 for any run of zeros between digits, and before
/// 分 when 角 is zero after some yuan; 壹拾 always written out. Written here because no
/// well-kept crate does money capitals with these rules.
#[must_use]
pub fn amount_in_capitals(amount: Amount) -> String {
    let fen = amount.fen().unsigned_abs();
    let (yuan, jiao, fen) = (fen / 100, (fen / 10 % 10) as usize, (fen % 10) as usize);
    let mut out = String::new();
    if amount.is_negative() {
        out.push('负');
    }
    if yuan == 0 && jiao == 0 && fen == 0 {
        out.push_str("零元整");
        return out;
    }
    if yuan > 0 {
        integer_in_capitals(yuan, &mut out);
        out.push('元');
    }
    match (jiao, fen) {
        (0, 0) => out.push('整'),
        (0, f) => {
            if yuan > 0 {
                out.push('零');
            }
            out.push(DIGITS[f]);
            out.push('分');
        }
        (j, 0) => {
            out.push(DIGITS[j]);
            out.push_str("角整");
        }
        (j, f) => {
            out.push(DIGITS[j]);
            out.push('角');
            out.push(DIGITS[f]);
            out.push('分');
        }
    }
    out
}

/// A whole number above zero in capitals, in groups of four digits (个, 万, 亿 and 万亿).
fn integer_in_capitals(n: u64, out: &mut String) {
    const YI: u64 = 100_000_000;
    const WAN: u64 = 10_000;
    let (unit, name) = if n >= YI {
        (YI, '亿')
    } else if n >= WAN {
        (WAN, '万')
    } else {
        group_in_capitals(n, out);
        return;
    };
    integer_in_capitals(n / unit, out);
    out.push(name);
    let rest = n % unit;
    if rest > 0 {
        // A zero right after the unit (like 10,0010) is read as one 零.
        if rest < unit / 10 {
            out.push('零');
        }
        integer_in_capitals(rest, out);
    }
}

/// 1–9999: 仟, 佰, 拾 and the units, one 零 for inner zeros, none at the end.
fn group_in_capitals(n: u64, out: &mut String) {
    const UNITS: [&str; 4] = ["仟", "佰", "拾", ""];
    let ds = [n / 1000 % 10, n / 100 % 10, n / 10 % 10, n % 10];
    let first = ds.iter().position(|&d| d != 0).unwrap_or(3);
    let mut zero = false;
    for (i, &d) in ds.iter().enumerate().skip(first) {
        if d == 0 {
            zero = true;
        } else {
            if zero {
                out.push('零');
                zero = false;
            }
            out.push(DIGITS[d as usize]);
            out.push_str(UNITS[i]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yuan(text: &str) -> Amount {
        text.parse().unwrap()
    }

    #[test]
    fn capitals_follow_the_payment_rules() {
        for (amount, words) in [
            ("0.00", "零元整"),
            ("0.05", "伍分"),
            ("0.50", "伍角整"),
            ("0.55", "伍角伍分"),
            ("1.00", "壹元整"),
            ("10.00", "壹拾元整"),
            ("15.00", "壹拾伍元整"),
            ("101.00", "壹佰零壹元整"),
            ("1001.00", "壹仟零壹元整"),
            ("1010.00", "壹仟零壹拾元整"),
            ("1234.50", "壹仟贰佰叁拾肆元伍角整"),
            ("1680.32", "壹仟陆佰捌拾元叁角贰分"),
            ("10000.00", "壹万元整"),
            ("100010.00", "壹拾万零壹拾元整"),
            ("107000.53", "壹拾万柒仟元伍角叁分"),
            ("1000000.01", "壹佰万元零壹分"),
            ("100000001.00", "壹亿零壹元整"),
            ("100100000.00", "壹亿零壹拾万元整"),
            ("1000000000000.00", "壹万亿元整"),
            (
                "999999999999999.99",
                "玖佰玖拾玖万玖仟玖佰玖拾玖亿玖仟玖佰玖拾玖万玖仟玖佰玖拾玖元玖角玖分",
            ),
            ("-3.20", "负叁元贰角整"),
        ] {
            assert_eq!(amount_in_capitals(yuan(amount)), words, "{amount}");
        }
        assert_eq!(
            amount_in_capitals(Amount::MAX),
            amount_in_capitals(yuan("999999999999999.99"))
        );
    }

    #[test]
    fn figures_have_thousands_separators() {
        for (amount, text) in [
            ("0.00", "¥0.00"),
            ("0.05", "¥0.05"),
            ("999.00", "¥999.00"),
            ("1000.00", "¥1,000.00"),
            ("1234.50", "¥1,234.50"),
            ("1000000.01", "¥1,000,000.01"),
            ("999999999999999.99", "¥999,999,999,999,999.99"),
            ("-1234.50", "-¥1,234.50"),
        ] {
            assert_eq!(amount_in_figures(yuan(amount)), text, "{amount}");
        }
    }

    #[test]
    fn font_setting_is_a_path_and_an_optional_index() {
        assert_eq!(parse_font_setting("/a/b.ttc").unwrap(), ("/a/b.ttc", 0));
        assert_eq!(parse_font_setting("/a/b.ttc#2").unwrap(), ("/a/b.ttc", 2));
        assert!(matches!(
            parse_font_setting("/a/b.ttc#x"),
            Err(PdfError::BadFontSetting(_))
        ));
        assert!(matches!(
            parse_font_setting("#2"),
            Err(PdfError::BadFontSetting(_))
        ));
    }

    #[test]
    fn a_missing_font_file_names_the_package_and_the_variable() {
        let err = CjkFont::load(Path::new("/nonexistent/guoku/no-font.ttc"), 0).unwrap_err();
        assert!(matches!(err, PdfError::FontUnreadable { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("/nonexistent/guoku/no-font.ttc"), "{text}");
        assert!(text.contains("fonts-wqy-microhei"), "{text}");
        assert!(text.contains(FONT_ENV), "{text}");
        // The variable's value goes through the same loader.
        let err = CjkFont::discover_with(Some("/nonexistent/guoku/no-font.ttc#1")).unwrap_err();
        assert!(matches!(err, PdfError::FontUnreadable { .. }), "{err:?}");
    }

    #[test]
    fn a_file_that_is_no_cjk_font_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("not-a-font.ttf");
        std::fs::write(&path, b"this is not a font").unwrap();
        let err = CjkFont::load(&path, 0).unwrap_err();
        assert!(matches!(err, PdfError::NotACjkFont { .. }), "{err:?}");
        assert!(err.to_string().contains("fonts-wqy-microhei"));
    }

    /// The machine's CJK font; a missing one fails the test with the install hint (CI
    /// installs it), it is never skipped.
    fn font() -> CjkFont {
        CjkFont::discover().unwrap_or_else(|e| panic!("{e}"))
    }

    fn sample(kind: DocKind, lang: Lang) -> ReceiptDoc {
        ReceiptDoc {
            kind,
            vt_code: "5201".parse().unwrap(),
            vt_name: "财政直接支付凭证".to_owned(),
            voucher_no: "ZF2025000123".parse().unwrap(),
            adm_div: "110000".parse().unwrap(),
            adm_div_name: "北京市".to_owned(),
            year: "2025".parse().unwrap(),
            voucher_date: "20250314".parse().unwrap(),
            payer: AccountParty {
                account_no: "110060149018000000001".to_owned(),
                name: "北京市财政局零余额账户".to_owned(),
                bank: "中国工商银行北京分行营业部".to_owned(),
            },
            payee: AccountParty {
                account_no: "0200001009000123456".to_owned(),
                name: "北京朝阳办公用品有限公司".to_owned(),
                bank: "中国建设银行北京朝阳支行".to_owned(),
            },
            amount: yuan("1234.50"),
            purpose: "办公用品采购".to_owned(),
            pay_date: "20250315".parse().unwrap(),
            bank_serial: "ICBC20250315000042".to_owned(),
            bank_name: "中国工商银行北京分行".to_owned(),
            sealed_by: "CN=中国工商银行北京分行, O=ICBC".to_owned(),
            seal_name: "代理银行转讫章".to_owned(),
            seal_check: SealCheck::Verified,
            printed_at: "2025-03-16 09:30:00".to_owned(),
            lang,
        }
    }

    /// The text of every page, as a reader extracting it would see it (through the
    /// fonts' ToUnicode maps), without the spaces and line breaks extraction adds.
    fn extract(pdf: &[u8]) -> String {
        let doc = lopdf::Document::load_mem(pdf).expect("a readable PDF");
        let pages: Vec<u32> = doc.get_pages().keys().copied().collect();
        assert_eq!(pages.len(), 1, "one page");
        doc.extract_text(&pages)
            .expect("text extraction")
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect()
    }

    #[test]
    fn a_receipt_carries_the_payee_the_amount_and_the_voucher_number() {
        let font = font();
        let doc = sample(DocKind::PaymentReceipt, Lang::Zh);
        let pdf = render(&doc, &font).unwrap();
        assert!(pdf.starts_with(b"%PDF-"));
        assert!(
            pdf.len() < 200 * 1024,
            "{} bytes: the font is not subset",
            pdf.len()
        );
        let text = extract(&pdf);
        for needle in [
            "支付凭证回单",
            "北京朝阳办公用品有限公司",
            "壹仟贰佰叁拾肆元伍角整",
            "¥1,234.50",
            "ZF2025000123",
            "ICBC20250315000042",
            "签章已验证",
            "代理银行转讫章",
        ] {
            assert!(text.contains(needle), "{needle:?} not in {text:?}");
        }
        assert!(!text.contains("Payee"), "no English in a Chinese receipt");
        // The bank's name: in the payer's bank, the sealer, and the red seal.
        assert_eq!(text.matches("中国工商银行北京分行").count(), 3, "{text:?}");
    }

    #[test]
    fn an_account_notice_in_english_mode_keeps_the_chinese() {
        let font = font();
        let mut doc = sample(DocKind::CreditAdvice, Lang::En);
        doc.seal_check = SealCheck::NotVerified;
        let pdf = render(&doc, &font).unwrap();
        assert!(pdf.len() < 200 * 1024, "{} bytes", pdf.len());
        let text = extract(&pdf);
        for needle in [
            "入账通知书",
            "CreditAdvice",
            "收款人",
            "Payee",
            "北京朝阳办公用品有限公司",
            "壹仟贰佰叁拾肆元伍角整",
            "签章验证未通过",
        ] {
            assert!(text.contains(needle), "{needle:?} not in {text:?}");
        }
        assert!(!text.contains("签章已验证"));
        // No red seal vouches for a seal that did not verify: the bank's name is only in
        // the payer's bank and the sealer, not in a ring.
        assert_eq!(text.matches("中国工商银行北京分行").count(), 2, "{text:?}");
    }

    #[test]
    fn the_same_receipt_renders_to_the_same_bytes() {
        let font = font();
        let doc = sample(DocKind::PaymentReceipt, Lang::Zh);
        assert_eq!(render(&doc, &font).unwrap(), render(&doc, &font).unwrap());
    }
}
