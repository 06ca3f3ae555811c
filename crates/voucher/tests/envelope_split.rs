//! A receiver stores each voucher of an envelope as an envelope of its own element as
//! received (`parse_envelope_split`); an outbox puts stored elements into a new envelope
//! without reading them (`body_element`, `join_body_elements`). What comes out reads back
//! as the same vouchers, and anything of another shape is left to be read whole.

use guoku_domain::BizDate;
use guoku_voucher::sample::{Style, sample};
use guoku_voucher::{
    Encoding, Envelope, EnvelopeBody, Limits, Registry, SignatureBlob, VoucherFlag, body_element,
    join_body_elements, parse_envelope, parse_envelope_split, parse_envelope_vouchers,
    write_envelope,
};

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

/// `text` with the base64 after the first `open` broken into CRLF lines of 76.
fn wrap_base64(text: &str, open: &str) -> String {
    let start = text.find(open).expect("the element is there") + open.len();
    let end = start + text[start..].find('<').expect("the element ends");
    let lines: Vec<&str> = text.as_bytes()[start..end]
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!("{}{}{}", &text[..start], lines.join("\r\n"), &text[end..])
}

#[test]
fn each_body_is_kept_alone_as_it_was_received() {
    let bodies = bodies();
    for encoding in [Encoding::Gbk, Encoding::Utf8] {
        let bytes = write_envelope(
            &Envelope {
                bodies: bodies.clone(),
            },
            encoding,
        );
        let (split, said) = parse_envelope_split(&bytes, &Limits::default()).unwrap();
        assert_eq!(said, encoding);
        assert_eq!(split.len(), bodies.len());
        for ((body, alone), original) in split.iter().zip(&bodies) {
            assert_eq!(body, original);
            let (back, enc) = read(alone);
            assert_eq!(enc, encoding);
            assert_eq!(back.bodies, vec![original.clone()]);
            // The one-body envelope has the shape an outbox takes apart without reading.
            let (enc, range) = body_element(alone, &original.voucher.key(), original.flag)
                .expect("a stored envelope's element is found");
            assert_eq!(enc, encoding);
            assert!(alone[range].starts_with(b"<VoucherBody"));
        }
    }
    // The sender's bytes are kept: base64 broken into lines stays broken.
    let text = String::from_utf8(write_envelope(
        &Envelope {
            bodies: bodies.clone(),
        },
        Encoding::Utf8,
    ))
    .unwrap();
    let wrapped = wrap_base64(&text, "<Voucher>");
    let (split, _) = parse_envelope_split(wrapped.as_bytes(), &Limits::default()).unwrap();
    let first = String::from_utf8(split[0].1.clone()).unwrap();
    assert!(first.contains("\r\n"), "{first}");
    assert_eq!(read(first.as_bytes()).0.bodies, vec![bodies[0].clone()]);
    assert!(
        !String::from_utf8(split[1].1.clone())
            .unwrap()
            .contains("\r\n")
    );
}

#[test]
fn stored_elements_join_into_one_envelope() {
    let bodies = bodies();
    // Stored three ways: written by this node in GBK, received in UTF-8 with broken
    // lines, received in GBK.
    let gbk = write_envelope(
        &Envelope {
            bodies: vec![bodies[0].clone()],
        },
        Encoding::Gbk,
    );
    let text = String::from_utf8(write_envelope(
        &Envelope {
            bodies: bodies[1..].to_vec(),
        },
        Encoding::Utf8,
    ))
    .unwrap();
    let (received, _) = parse_envelope_split(
        wrap_base64(&text, "<Voucher>").as_bytes(),
        &Limits::default(),
    )
    .unwrap();
    let stored: Vec<&[u8]> = vec![&gbk, &received[0].1, &received[1].1];
    let elements: Vec<(Encoding, &[u8])> = stored
        .iter()
        .zip(&bodies)
        .map(|(bytes, body)| {
            let (encoding, range) =
                body_element(bytes, &body.voucher.key(), body.flag).expect("the element is found");
            (encoding, &bytes[range])
        })
        .collect();
    assert_eq!(elements[1].0, Encoding::Utf8);
    for encoding in [Encoding::Gbk, Encoding::Utf8] {
        let joined = join_body_elements(&elements, encoding);
        let (back, enc) = read(&joined);
        assert_eq!(enc, encoding);
        assert_eq!(back.bodies, bodies);
    }
}

#[test]
fn other_shapes_are_left_to_be_read_whole() {
    let bodies = bodies();
    let one = write_envelope(
        &Envelope {
            bodies: vec![bodies[0].clone()],
        },
        Encoding::Gbk,
    );
    let key = bodies[0].voucher.key();
    let flag = bodies[0].flag;
    assert!(body_element(&one, &key, flag).is_some());
    // Another voucher, or the other leg.
    let mut other = key.clone();
    other.voucher_no.push('9');
    assert!(body_element(&one, &other, flag).is_none());
    assert!(body_element(&one, &key, VoucherFlag::Receipt).is_none());
    // Two bodies.
    let two = write_envelope(
        &Envelope {
            bodies: vec![bodies[0].clone(), bodies[1].clone()],
        },
        Encoding::Gbk,
    );
    assert!(body_element(&two, &key, flag).is_none());
    // Laid out otherwise: still an envelope, read whole by the caller.
    let text = String::from_utf8(write_envelope(
        &Envelope {
            bodies: vec![bodies[0].clone()],
        },
        Encoding::Utf8,
    ))
    .unwrap();
    let indented = text.replace("\n<VoucherBody", "\n  <VoucherBody");
    assert!(body_element(indented.as_bytes(), &key, flag).is_none());
    assert_eq!(read(indented.as_bytes()).0.bodies, vec![bodies[0].clone()]);
    // Cut short, or not an envelope at all.
    assert!(body_element(&one[..one.len() - 3], &key, flag).is_none());
    assert!(body_element(b"<?xml version=\"1.0\"?><MOF/>", &key, flag).is_none());
    assert!(body_element(b"", &key, flag).is_none());
}

#[test]
fn vouchers_are_read_without_their_signatures() {
    let bodies = bodies();
    for encoding in [Encoding::Gbk, Encoding::Utf8] {
        let bytes = write_envelope(
            &Envelope {
                bodies: bodies.clone(),
            },
            encoding,
        );
        let read = parse_envelope_vouchers(&bytes, &Limits::default()).unwrap();
        let expected: Vec<(VoucherFlag, _)> =
            bodies.iter().map(|b| (b.flag, b.voucher.clone())).collect();
        assert_eq!(read, expected);
    }
    let text = String::from_utf8(write_envelope(
        &Envelope {
            bodies: vec![bodies[0].clone()],
        },
        Encoding::Utf8,
    ))
    .unwrap();
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
