//! Any bytes given to the `<MOF>` envelope reader: no panic; an accepted envelope is
//! written and read back unchanged.
#![no_main]

use guoku_voucher::{Encoding, Limits, parse_envelope, write_envelope};
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
});
