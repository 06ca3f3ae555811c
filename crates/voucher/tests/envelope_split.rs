//! A receiver stores each voucher of an envelope as an envelope of its own element as
//! received (`parse_envelope_split`); an outbox puts stored elements into a new envelope
//! without reading them (`body_element`, `join_body_elements`). What comes out reads back
//! as the same vouchers, and anything of another shape is left to be read whole.

use guoku_domain::BizDate;
use guoku_voucher::sample::{Style, sample};
use guoku_voucher::{
    Encoding, Envelope, EnvelopeBody, Limits, Registry, SignatureBlob, SplitBody, VoucherFlag,
    body_element, join_body_elements, parse_envelope, parse_envelope_split,
    parse_envelope_vouchers, write_body_element, write_envelope,
};

mod common;
use common::wrap_base64;

fn today() -> BizDate {
    "20250115".parse().unwrap()
}

/// Three bodies of different types, one a receipt, with a Chinese note and signatures.
fn bodies() -> Vec<EnvelopeBody> {
    let registry = Registry::builtin();
    [
        ("5201", VoucherFlag::Original, 1),
        ("8202", VoucherFlag::Receipt, 2),
        ("2301", VoucherFlag::Original, 3),
    ]
    .into_iter()
    .map(|(vt, flag, seed)| EnvelopeBody {
        flag,
        attach: "已签收".into(),
        voucher: sample(registry.get(vt).unwrap(), today(), flag, Style::Wild, seed),
        signatures: vec![SignatureBlob {
            no: 1,
            data: (0..=255).collect(),
        }],
    })
    .collect()
}

fn read(bytes: &[u8]) -> (Envelope, Encoding) {
    parse_envelope(bytes, &Limits::default()).expect("the envelope reads")
}

/// An envelope of `bodies` in `encoding`.
fn envelope(bodies: &[EnvelopeBody], encoding: Encoding) -> Vec<u8> {
    write_envelope(
        &Envelope {
            bodies: bodies.to_vec(),
        },
        encoding,
    )
}

/// An envelope of `bodies` in UTF-8, as text to edit.
fn envelope_text(bodies: &[EnvelopeBody]) -> String {
    String::from_utf8(envelope(bodies, Encoding::Utf8)).unwrap()
}

#[test]
fn each_body_is_kept_alone_as_it_was_received() {
    let bodies = bodies();
    for encoding in [Encoding::Gbk, Encoding::Utf8] {
        let bytes = envelope(&bodies, encoding);
        let (split, said) = parse_envelope_split(&bytes, &Limits::default()).unwrap();
        assert_eq!(said, encoding);
        assert_eq!(split.len(), bodies.len());
        for (SplitBody { body, alone }, original) in split.iter().zip(&bodies) {
            assert_eq!(body, original);
            let (back, enc) = read(alone);
            assert_eq!(enc, encoding);
            assert_eq!(back.bodies, vec![original.clone()]);
            // The one-body envelope has the shape an outbox takes apart without reading.
            let key = original.voucher.key();
            let range = body_element(alone, &key, original.flag, encoding)
                .expect("a stored envelope's element is found");
            assert!(alone[range].starts_with(b"<VoucherBody"));
            let other = match encoding {
                Encoding::Gbk => Encoding::Utf8,
                Encoding::Utf8 => Encoding::Gbk,
            };
            assert!(body_element(alone, &key, original.flag, other).is_none());
        }
    }
    // The sender's bytes are kept: base64 broken into lines stays broken.
    let text = envelope_text(&bodies);
    let wrapped = wrap_base64(&text, "<Voucher>");
    let (split, _) = parse_envelope_split(wrapped.as_bytes(), &Limits::default()).unwrap();
    let first = String::from_utf8(split[0].alone.clone()).unwrap();
    assert!(first.contains("\r\n"), "{first}");
    assert_eq!(read(first.as_bytes()).0.bodies, vec![bodies[0].clone()]);
    assert!(
        !String::from_utf8(split[1].alone.clone())
            .unwrap()
            .contains("\r\n")
    );
}

#[test]
fn stored_elements_join_into_one_envelope() {
    let bodies = bodies();
    for encoding in [Encoding::Gbk, Encoding::Utf8] {
        // Stored two ways: written by this node, and received with broken lines.
        let written = envelope(&bodies[..1], encoding);
        let text = envelope_text(&bodies[1..]);
        let wrapped = wrap_base64(&text, "<Voucher>");
        let sent = match encoding {
            Encoding::Utf8 => wrapped.into_bytes(),
            Encoding::Gbk => {
                let gbk = wrapped.replace("encoding=\"UTF-8\"", "encoding=\"GBK\"");
                encoding_rs::GBK.encode(&gbk).0.into_owned()
            }
        };
        let (received, _) = parse_envelope_split(&sent, &Limits::default()).unwrap();
        let stored: Vec<&[u8]> = vec![&written, &received[0].alone, &received[1].alone];
        let elements: Vec<&[u8]> = stored
            .iter()
            .zip(&bodies)
            .map(|(bytes, body)| {
                let range = body_element(bytes, &body.voucher.key(), body.flag, encoding)
                    .expect("the element is found");
                &bytes[range]
            })
            .collect();
        let joined = join_body_elements(&elements, encoding);
        let (back, enc) = read(&joined);
        assert_eq!(enc, encoding);
        assert_eq!(back.bodies, bodies);
    }
}

/// A body written alone as an element joins into the envelope `write_envelope` writes of
/// the same bodies, byte for byte, in both encodings.
#[test]
fn written_elements_join_into_the_written_envelope() {
    let bodies = bodies();
    for encoding in [Encoding::Gbk, Encoding::Utf8] {
        let written: Vec<Vec<u8>> = bodies
            .iter()
            .map(|b| write_body_element(b, encoding))
            .collect();
        let elements: Vec<&[u8]> = written.iter().map(Vec::as_slice).collect();
        assert_eq!(
            join_body_elements(&elements, encoding),
            envelope(&bodies, encoding)
        );
        let alone = envelope(&bodies[..1], encoding);
        let range = body_element(&alone, &bodies[0].voucher.key(), bodies[0].flag, encoding)
            .expect("the element is found");
        assert_eq!(&alone[range], written[0].as_slice());
    }
}

/// A GBK envelope may carry a character GBK lacks as a GB 18030 four-byte sequence; in
/// CDATA a reference would not be that character, so such a body is written again and
/// reads back the same.
#[test]
fn a_character_gbk_lacks_survives_the_split() {
    let bodies = bodies();
    let gbk = envelope(&bodies[..1], Encoding::Gbk);
    let attach = encoding_rs::GBK.encode("已签收").0.into_owned();
    let at = gbk
        .windows(attach.len())
        .position(|w| w == attach.as_slice())
        .expect("the note is there");
    let mut sent = gbk[..at].to_vec();
    sent.extend_from_slice(b"<![CDATA[");
    sent.extend_from_slice(&encoding_rs::GB18030.encode("😀").0);
    sent.extend_from_slice(b"]]>");
    sent.extend_from_slice(&gbk[at + attach.len()..]);
    let (split, _) = parse_envelope_split(&sent, &Limits::default()).unwrap();
    let SplitBody { body, alone } = &split[0];
    assert_eq!(body.attach, "😀");
    assert_eq!(read(alone).0.bodies, vec![body.clone()]);
}

#[test]
fn other_shapes_are_left_to_be_read_whole() {
    let bodies = bodies();
    let one = envelope(&bodies[..1], Encoding::Gbk);
    let key = bodies[0].voucher.key();
    let flag = bodies[0].flag;
    let found = |bytes: &[u8], key, flag, encoding| body_element(bytes, key, flag, encoding);
    assert!(found(&one, &key, flag, Encoding::Gbk).is_some());
    // Another voucher, or the other leg.
    let mut other = key.clone();
    other.voucher_no.push('9');
    assert!(found(&one, &other, flag, Encoding::Gbk).is_none());
    assert!(found(&one, &key, VoucherFlag::Receipt, Encoding::Gbk).is_none());
    // Two bodies.
    let two = envelope(&bodies[..2], Encoding::Gbk);
    assert!(found(&two, &key, flag, Encoding::Gbk).is_none());
    // Laid out otherwise: still an envelope, read whole by the caller.
    let text = envelope_text(&bodies[..1]);
    assert!(found(text.as_bytes(), &key, flag, Encoding::Utf8).is_some());
    let indented = text.replace("\n<VoucherBody", "\n  <VoucherBody");
    assert!(found(indented.as_bytes(), &key, flag, Encoding::Utf8).is_none());
    assert_eq!(read(indented.as_bytes()).0.bodies, vec![bodies[0].clone()]);
    // Cut short, or not an envelope at all.
    assert!(found(&one[..one.len() - 3], &key, flag, Encoding::Gbk).is_none());
    assert!(found(b"<?xml version=\"1.0\"?><MOF/>", &key, flag, Encoding::Gbk).is_none());
    assert!(found(b"", &key, flag, Encoding::Gbk).is_none());
}

#[test]
fn vouchers_are_read_without_their_signatures() {
    let bodies = bodies();
    for encoding in [Encoding::Gbk, Encoding::Utf8] {
        let bytes = envelope(&bodies, encoding);
        let read = parse_envelope_vouchers(&bytes, &Limits::default()).unwrap();
        let expected: Vec<(VoucherFlag, _)> =
            bodies.iter().map(|b| (b.flag, b.voucher.clone())).collect();
        assert_eq!(read, expected);
    }
    let text = envelope_text(&bodies[..1]);
    // A signature that is not base64 is passed over here (the full read refuses it)…
    let start = text.find("<Signature No=\"1\">").unwrap() + "<Signature No=\"1\">".len();
    let bad_base64 = format!("{}!!{}", &text[..start], &text[start..]);
    assert!(parse_envelope(bad_base64.as_bytes(), &Limits::default()).is_err());
    assert_eq!(
        parse_envelope_vouchers(bad_base64.as_bytes(), &Limits::default()).unwrap(),
        vec![(bodies[0].flag, bodies[0].voucher.clone())]
    );
    // …but the envelope must still be well-formed and hold what it says.
    let unclosed = text.replacen("</Signature>", "", 1);
    assert!(parse_envelope_vouchers(unclosed.as_bytes(), &Limits::default()).is_err());
    let miscounted = text.replacen("<VoucherCount>1<", "<VoucherCount>2<", 1);
    assert!(parse_envelope_vouchers(miscounted.as_bytes(), &Limits::default()).is_err());
}
