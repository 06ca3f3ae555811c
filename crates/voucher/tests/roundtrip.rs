//! Property: for every registered type, a generated valid voucher survives
//! XML(GBK) → JSON → XML(UTF-8) → envelope round trips with equal canonical bytes, and
//! with every field intact.

use guoku_domain::BizDate;
use guoku_voucher::sample::{Style, sample};
use guoku_voucher::{
    Context, Encoding, Envelope, EnvelopeBody, Layout, Limits, Registry, SignatureBlob, Voucher,
    VoucherFlag, canonical_bytes, decode_any, json, parse_envelope, parse_voucher, validate,
    write_envelope, write_voucher,
};
use proptest::prelude::*;

mod common;
use common::wrap_base64;

fn today() -> BizDate {
    "20250115".parse().unwrap()
}

fn through_all_forms(original: &Voucher, flag: VoucherFlag, layout: Layout) -> Voucher {
    let limits = Limits::default();
    let gbk = write_voucher(original, Encoding::Gbk, layout);
    let (v1, enc) = parse_voucher(&gbk, &limits).expect("GBK XML reads back");
    assert_eq!(enc, Encoding::Gbk);
    let text = json::write_json(&v1);
    let v2 = json::parse_json(text.as_bytes(), &limits).expect("JSON reads back");
    assert_eq!(v2.len(), 1);
    let utf8 = write_voucher(&v2[0], Encoding::Utf8, layout);
    let (v3, enc) = parse_voucher(&utf8, &limits).expect("UTF-8 XML reads back");
    assert_eq!(enc, Encoding::Utf8);
    let envelope = Envelope {
        bodies: vec![EnvelopeBody {
            flag,
            attach: "SUCCESS".into(),
            voucher: v3,
            signatures: vec![
                SignatureBlob {
                    no: 1,
                    data: vec![0x30, 0x44, 0x00, 0xFF],
                },
                SignatureBlob {
                    no: 11,
                    data: (0..=255).collect(),
                },
            ],
        }],
    };
    let mut last = None;
    for encoding in [Encoding::Gbk, Encoding::Utf8] {
        let bytes = write_envelope(&envelope, encoding);
        let (back, enc) = parse_envelope(&bytes, &limits).expect("envelope reads back");
        assert_eq!(enc, encoding);
        assert_eq!(back, envelope);
        // decode_any recognises every form.
        let (decoded, _) = decode_any(&bytes, &limits).unwrap();
        assert_eq!(decoded[0].flag, Some(flag));
        last = Some(back.bodies.into_iter().next().unwrap().voucher);
    }
    // Base64 broken into MIME lines (CRLF every 76 characters) reads the same.
    let text = String::from_utf8(write_envelope(&envelope, Encoding::Utf8)).unwrap();
    let wrapped = wrap_base64(&wrap_base64(&text, "<Voucher>"), "<Signature No=\"11\">");
    assert_ne!(wrapped, text);
    let (back, _) = parse_envelope(wrapped.as_bytes(), &limits).expect("wrapped reads back");
    assert_eq!(back, envelope);
    last.unwrap()
}

fn arb_case() -> impl Strategy<Value = (usize, u64, bool, bool)> {
    let types = Registry::builtin().len();
    (0..types, any::<u64>(), any::<bool>(), any::<bool>())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_type_survives_every_form((index, seed, receipt, indented) in arb_case()) {
        let registry = Registry::builtin();
        let ty = registry.types().nth(index).unwrap();
        let flag = if receipt { VoucherFlag::Receipt } else { VoucherFlag::Original };
        let original = sample(ty, today(), flag, Style::Wild, seed);
        let problems = validate(&original, &registry, &Context { today: today(), flag });
        prop_assert!(problems.is_empty(), "{} seed {seed}: sample invalid: {problems:#?}", ty.vt_code);
        let layout = if indented { Layout::Indented } else { Layout::Compact };
        let back = through_all_forms(&original, flag, layout);
        prop_assert_eq!(canonical_bytes(&back), canonical_bytes(&original));
        prop_assert_eq!(&back, &original, "{} seed {}", ty.vt_code, seed);
    }

    #[test]
    fn canonical_bytes_ignore_field_order((index, seed, _r, _i) in arb_case(), rotate in 0usize..64) {
        let registry = Registry::builtin();
        let ty = registry.types().nth(index).unwrap();
        let original = sample(ty, today(), VoucherFlag::Original, Style::Wild, seed);
        let mut shuffled = original.clone();
        let mut header: Vec<(String, String)> = original
            .header
            .iter()
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect();
        let len = header.len();
        header.rotate_left(rotate % len.max(1));
        header.reverse();
        shuffled.header = header.into_iter().collect();
        prop_assert_ne!(&shuffled.header, &original.header);
        prop_assert_eq!(canonical_bytes(&shuffled), canonical_bytes(&original));
        // And so does the encoding the voucher arrived in.
        let limits = Limits::default();
        let (from_gbk, _) = parse_voucher(&write_voucher(&shuffled, Encoding::Gbk, Layout::Compact), &limits).unwrap();
        prop_assert_eq!(canonical_bytes(&from_gbk), canonical_bytes(&original));
    }
}

#[test]
fn characters_gbk_lacks_travel_as_character_references() {
    let voucher = Voucher {
        header: [("VtCode", "5201"), ("PayeeAcctName", "张𠀀😀€")]
            .into_iter()
            .collect(),
        details: vec![],
    };
    let bytes = write_voucher(&voucher, Encoding::Gbk, Layout::Compact);
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("&#131072;&#128512;"), "{text}");
    let (back, _) = parse_voucher(&bytes, &Limits::default()).unwrap();
    assert_eq!(back, voucher);
}
