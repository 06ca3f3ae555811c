//! Hostile and broken input: each gets a clear error naming what is wrong, never a panic,
//! with bounded memory and time.

use base64::Engine;
use guoku_voucher::{DecodeError, Limits, decode_any, parse_envelope, parse_voucher};

fn voucher_error(bytes: &[u8]) -> DecodeError {
    parse_voucher(bytes, &Limits::default()).expect_err("must be refused")
}

fn any_error(bytes: &[u8]) -> String {
    decode_any(bytes, &Limits::default())
        .expect_err("must be refused")
        .to_string()
}

const GOOD: &str = "<Voucher><VtCode>5201</VtCode><PayeeAcctName>长沙</PayeeAcctName></Voucher>";

#[test]
fn malformed_xml_names_the_place() {
    let err = voucher_error(b"<Voucher><A>1</B></Voucher>");
    assert!(matches!(err, DecodeError::Xml { .. }), "{err}");
    assert!(err.to_string().contains("not well-formed at byte"), "{err}");
}

#[test]
fn an_unclosed_document_is_truncated() {
    let err = voucher_error(b"<Voucher><A>1</A>");
    assert!(
        matches!(err, DecodeError::Truncated(ref e) if e == "Voucher"),
        "{err}"
    );
    let err = voucher_error(b"<Voucher><A>1");
    assert!(
        matches!(err, DecodeError::Truncated(ref e) if e == "A"),
        "{err}"
    );
}

#[test]
fn gbk_bytes_declared_as_utf8_are_refused_with_their_offset() {
    let mut bytes = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Voucher><A>".to_vec();
    let at = bytes.len();
    bytes.extend(encoding_rs::GBK.encode("国库").0.iter());
    bytes.extend(b"</A></Voucher>");
    assert_eq!(
        voucher_error(&bytes),
        DecodeError::BadBytes {
            encoding: "UTF-8",
            offset: at
        }
    );
}

#[test]
fn invalid_gbk_bytes_are_refused_not_replaced() {
    let mut bytes = b"<?xml version=\"1.0\" encoding=\"GBK\"?><Voucher><A>".to_vec();
    let at = bytes.len();
    bytes.extend([0x81, 0x20]);
    bytes.extend(b"</A></Voucher>");
    assert_eq!(
        voucher_error(&bytes),
        DecodeError::BadBytes {
            encoding: "GBK",
            offset: at
        }
    );
}

#[test]
fn unsupported_encodings_are_named() {
    let err = voucher_error(b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><Voucher/>");
    assert_eq!(err, DecodeError::UnsupportedEncoding("ISO-8859-1".into()));
    let err = voucher_error(b"\xFF\xFE<\0V\0");
    assert_eq!(err, DecodeError::UnsupportedEncoding("UTF-16".into()));
    let err = voucher_error(b"<?xml version=\"1.0\" encoding=GBK?><Voucher/>");
    assert!(
        err.to_string().contains("malformed encoding declaration"),
        "{err}"
    );
}

#[test]
fn gb2312_and_gb18030_declarations_read_as_gbk() {
    for label in ["GB2312", "gb18030", "gbk"] {
        let mut bytes =
            format!("<?xml version=\"1.0\" encoding=\"{label}\"?><Voucher><A>").into_bytes();
        bytes.extend(encoding_rs::GBK.encode("国库").0.iter());
        bytes.extend(b"</A></Voucher>");
        let (voucher, _) = parse_voucher(&bytes, &Limits::default()).unwrap();
        assert_eq!(voucher.header.get("A"), Some("国库"), "{label}");
    }
}

fn envelope_with(voucher_base64: &str, count: usize, no: &str) -> Vec<u8> {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><MOF><VoucherCount>{count}</VoucherCount>\
         <VoucherBody AdmDivCode=\"430000\" StYear=\"2025\" VtCode=\"5201\" VoucherNo=\"{no}\">\
         <VoucherFlag>0</VoucherFlag><Attach>SUCCESS</Attach><Voucher>{voucher_base64}</Voucher>\
         </VoucherBody></MOF>"
    )
    .into_bytes()
}

fn inner() -> String {
    let xml = "<Voucher><AdmDivCode>430000</AdmDivCode><StYear>2025</StYear><VtCode>5201</VtCode><VoucherNo>A1</VoucherNo></Voucher>";
    base64::engine::general_purpose::STANDARD.encode(xml)
}

#[test]
fn a_well_formed_envelope_reads() {
    let (envelope, _) =
        parse_envelope(&envelope_with(&inner(), 1, "A1"), &Limits::default()).unwrap();
    assert_eq!(envelope.bodies.len(), 1);
    assert_eq!(envelope.bodies[0].voucher.key().voucher_no, "A1");
}

#[test]
fn truncated_base64_is_refused() {
    let full = inner();
    let cut = &full[..full.len() - 3];
    let err = any_error(&envelope_with(cut, 1, "A1"));
    assert!(err.contains("base64 is invalid"), "{err}");
    let err = any_error(&envelope_with("not base64!", 1, "A1"));
    assert!(err.contains("base64 is invalid"), "{err}");
}

#[test]
fn envelope_count_and_attributes_must_match() {
    let err = any_error(&envelope_with(&inner(), 2, "A1"));
    assert!(
        err.contains("VoucherCount says 2 but the envelope holds 1"),
        "{err}"
    );
    let err = any_error(&envelope_with(&inner(), 1, "B2"));
    assert!(
        err.contains("VoucherNo=\"B2\" but the voucher says \"A1\""),
        "{err}"
    );
    let err = any_error(b"<MOF><VoucherBody/></MOF>");
    assert!(err.contains("empty"), "{err}");
    let err = any_error(b"<MOF><VoucherCount>x</VoucherCount></MOF>");
    assert!(err.contains("not a number"), "{err}");
}

#[test]
fn a_doctype_is_refused_so_no_entity_can_expand() {
    let laughs = "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">\
                  <!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">]>\
                  <Voucher><A>&lol2;</A></Voucher>";
    assert_eq!(voucher_error(laughs.as_bytes()), DecodeError::DocType);
    let err = voucher_error(b"<Voucher><A>&lol;</A></Voucher>");
    assert_eq!(err, DecodeError::UnknownEntity("lol".into()));
}

#[test]
fn a_ten_megabyte_field_is_refused_without_being_kept() {
    let mut doc = b"<Voucher><PayeeAcctName>".to_vec();
    doc.extend(std::iter::repeat_n(b'A', 10 * 1024 * 1024));
    doc.extend(b"</PayeeAcctName></Voucher>");
    let err = voucher_error(&doc);
    assert_eq!(
        err,
        DecodeError::FieldTooLong {
            field: "PayeeAcctName".into(),
            limit: Limits::default().max_field_bytes
        }
    );
}

#[test]
fn deep_nesting_stops_at_the_first_extra_level() {
    let depth = 100_000;
    let doc = format!(
        "<Voucher>{}{}</Voucher>",
        "<A>".repeat(depth),
        "</A>".repeat(depth)
    );
    let err = voucher_error(doc.as_bytes());
    assert_eq!(
        err,
        DecodeError::TooDeep {
            element: "A".into()
        }
    );
    let err = voucher_error(
        b"<Voucher><DetailList><Detail><DetailList/></Detail></DetailList></Voucher>",
    );
    assert_eq!(
        err,
        DecodeError::TooDeep {
            element: "DetailList".into()
        }
    );
}

#[test]
fn oversized_inputs_and_counts_are_refused() {
    let limits = Limits {
        max_input_bytes: 64,
        max_details: 2,
        max_fields: 2,
        ..Limits::default()
    };
    let err = parse_voucher(&[b' '; 65], &limits).unwrap_err();
    assert_eq!(err, DecodeError::TooLarge { len: 65, limit: 64 });
    let limits = Limits {
        max_details: 2,
        max_fields: 2,
        ..Limits::default()
    };
    let details = "<Detail/>".repeat(3);
    let err = parse_voucher(
        format!("<Voucher><DetailList>{details}</DetailList></Voucher>").as_bytes(),
        &limits,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::TooMany {
                what: "details in one voucher",
                ..
            }
        ),
        "{err}"
    );
    let err = parse_voucher(b"<Voucher><A/><B/><C/></Voucher>", &limits).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::TooMany {
                what: "fields in one record",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn structure_errors_name_the_element() {
    assert_eq!(
        voucher_error(b"<Voucher><A>1</A><A>2</A></Voucher>"),
        DecodeError::DuplicateField {
            field: "A".into(),
            record: "Voucher".into()
        }
    );
    assert_eq!(
        voucher_error(b"<MOF/>"),
        DecodeError::WrongRoot {
            expected: "Voucher",
            found: "MOF".into()
        }
    );
    assert_eq!(
        voucher_error(b"<Voucher/><Voucher/>"),
        DecodeError::TrailingContent
    );
    assert!(matches!(
        voucher_error(b"<Voucher>loose text<A/></Voucher>"),
        DecodeError::UnexpectedText { .. }
    ));
    assert!(matches!(
        voucher_error(b"<Voucher><DetailList><Row/></DetailList></Voucher>"),
        DecodeError::UnexpectedElement { .. }
    ));
    assert_eq!(voucher_error(b""), DecodeError::Empty);
    assert_eq!(voucher_error(b"  \n "), DecodeError::Empty);
}

#[test]
fn json_must_hold_strings() {
    let err = any_error(br#"{"VtCode":"5201","PayAmt":100.5}"#);
    assert!(err.contains("Voucher.PayAmt must be a string"), "{err}");
    let err = any_error(br#"{"VtCode":"5201","DetailList":[1]}"#);
    assert!(err.contains("Detail[1] must be an object"), "{err}");
    let err = any_error(br#"{"VtCode":"5201""#);
    assert!(err.starts_with("JSON:"), "{err}");
    let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let err = any_error(nested.as_bytes());
    assert!(err.starts_with("JSON:"), "{err}");
}

#[test]
fn a_good_document_still_reads() {
    let (voucher, _) = parse_voucher(GOOD.as_bytes(), &Limits::default()).unwrap();
    assert_eq!(voucher.header.get("PayeeAcctName"), Some("长沙"));
    let cdata = "<Voucher><A><![CDATA[<&>]]>&#x56FD;&amp;</A><!-- note --></Voucher>";
    let (voucher, _) = parse_voucher(cdata.as_bytes(), &Limits::default()).unwrap();
    assert_eq!(voucher.header.get("A"), Some("<&>国&"));
}

#[test]
fn field_names_are_checked_on_every_way_in() {
    let err = any_error(br#"{"VtCode":"5201","a<b":"1"}"#);
    assert!(err.contains("\"a<b\" is not a field name"), "{err}");
    let err = any_error(br#"{"VtCode":"5201","DetailList":[{"":"1"}]}"#);
    assert!(err.contains("is not a field name"), "{err}");
    let err = voucher_error("<Voucher><金额>1.00</金额></Voucher>".as_bytes());
    assert_eq!(
        err,
        DecodeError::BadFieldName {
            name: "金额".into()
        }
    );
}

#[test]
fn signatures_travel_in_the_envelope_and_bad_ones_are_named() {
    let body = |signatures: &str| {
        let text = String::from_utf8(envelope_with(&inner(), 1, "A1")).unwrap();
        text.replace(
            "</Voucher></VoucherBody>",
            &format!("</Voucher>{signatures}</VoucherBody>"),
        )
        .into_bytes()
    };
    let (envelope, _) = parse_envelope(
        &body(r#"<Signature No="3">AQID</Signature>"#),
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(envelope.bodies[0].signatures[0].no, 3);
    assert_eq!(envelope.bodies[0].signatures[0].data, [1, 2, 3]);
    let err = any_error(&body(r#"<Signature>AQID</Signature>"#));
    assert!(err.contains("numeric No"), "{err}");
    let err = any_error(&body(
        r#"<Signature No="1">AQID</Signature><Signature No="1">AQID</Signature>"#,
    ));
    assert!(err.contains("two signatures at position 1"), "{err}");
    let err = any_error(&body(r#"<Signature No="1">AQI</Signature>"#));
    assert!(err.contains("Signature: base64 is invalid"), "{err}");
}
