//! Any bytes given to the form-sniffing reader (XML, envelope or JSON): no panic.
#![no_main]

use guoku_voucher::{Limits, decode_any};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_any(data, &Limits::default());
});
