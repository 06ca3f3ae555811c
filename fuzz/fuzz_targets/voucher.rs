//! Any bytes given to the `<Voucher>` reader: it must answer without panicking, and a
//! voucher it accepts must survive being written and read again with the same canonical
//! bytes and a validation that does not panic.
#![no_main]

use guoku_voucher::{
    Context, Encoding, Layout, Limits, Registry, VoucherFlag, canonical_bytes, parse_voucher,
    validate, write_voucher,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let Ok((voucher, _)) = parse_voucher(data, &limits) else {
        return;
    };
    let registry = Registry::builtin();
    let today = "20250115".parse().expect("a date");
    let _ = validate(
        &voucher,
        &registry,
        &Context {
            today,
            flag: VoucherFlag::Original,
        },
    );
    for encoding in [Encoding::Gbk, Encoding::Utf8] {
        let bytes = write_voucher(&voucher, encoding, Layout::Compact);
        let (back, _) = parse_voucher(&bytes, &limits).expect("what we write, we read");
        assert_eq!(canonical_bytes(&back), canonical_bytes(&voucher));
    }
});
