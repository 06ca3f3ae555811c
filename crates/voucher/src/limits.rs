//! Bounds on what a decoder accepts, so that hostile input costs bounded memory and time.

/// Limits applied by every decoder. The defaults suit a salary batch of tens of
/// thousands of rows and refuse anything far beyond.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest input document, in bytes.
    pub max_input_bytes: usize,
    /// Longest field value, in bytes (the registry's own limits are far smaller; this
    /// one only bounds memory before validation).
    pub max_field_bytes: usize,
    /// Most fields in one record (the header or one detail).
    pub max_fields: usize,
    /// Most detail records in one voucher.
    pub max_details: usize,
    /// Most vouchers in one envelope.
    pub max_vouchers: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_input_bytes: 64 * 1024 * 1024,
            max_field_bytes: 8 * 1024,
            max_fields: 512,
            max_details: 100_000,
            max_vouchers: 1_000,
        }
    }
}
