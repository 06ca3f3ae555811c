//! Any bytes given to the `<MOF>` envelope reader: no panic; an accepted envelope is
//! written and read back unchanged; split into one-voucher envelopes (what a receiver
//! stores), each reads back as its body; its vouchers read without signatures are the same.
#![no_main]

use guoku_voucher::{
    Encoding, Limits, parse_envelope, parse_envelope_split, parse_envelope_vouchers, write_envelope,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let Ok((envelope, _)) = parse_envelope(data, &limits) else {
        return;
    };
    let bytes = write_envelope(&envelope, Encoding::Gbk);
    let (back, _) = parse_envelope(&bytes, &limits).expect("what we write, we read");
    assert_eq!(back.bodies.len(), envelope.bodies.len());
    for (a, b) in back.bodies.iter().zip(&envelope.bodies) {
        assert_eq!(
            guoku_voucher::canonical_bytes(&a.voucher),
            guoku_voucher::canonical_bytes(&b.voucher)
        );
    }
    let (split, _) = parse_envelope_split(data, &limits).expect("read once, split too");
    assert_eq!(split.len(), envelope.bodies.len());
    for (part, body) in split.iter().zip(&envelope.bodies) {
        assert_eq!(&part.body, body);
        let (alone, _) = parse_envelope(&part.alone, &limits).expect("a stored part reads");
        assert_eq!(alone.bodies.as_slice(), std::slice::from_ref(body));
    }
    let vouchers = parse_envelope_vouchers(data, &limits).expect("read once, read without seals");
    assert!(
        vouchers
            .iter()
            .map(|(_, v)| v)
            .eq(envelope.bodies.iter().map(|b| &b.voucher))
    );
});
