//! What one leaf of a node's audit log says, and its bytes.
//!
//! A leaf's data `d` (hashed as `H(0x00 ‖ d)`) is the canonical encoding of an [`Entry`]:
//! the tag `GKA1`, then the position and the time as 8-byte big-endian numbers, then every
//! text field as a 4-byte big-endian length and its UTF-8 bytes, in a fixed order. The
//! encoding is unambiguous (no separator can be forged inside a field) and the same on every
//! platform and database, so a tree recomputed from stored rows matches the one whose head
//! was signed, and any changed byte of any field changes the leaf hash.

use crate::error::Error;

/// The tag every leaf's data starts with (format version 1).
pub const ENTRY_TAG: &[u8; 4] = b"GKA1";

/// Appends to `out` the leaf data of the entry at position `seq` and time `at` whose text
/// fields, in their encoded order (kind, actor, post, action, object, result, source, request
/// id, detail), are `texts` (their UTF-8 bytes): the bytes [`Entry::to_bytes`] gives. For
/// readers that encode stored rows straight from the database's buffers, without building an
/// [`Entry`].
pub fn encode_leaf(out: &mut Vec<u8>, seq: u64, at: u64, texts: [&[u8]; 9]) {
    out.extend_from_slice(ENTRY_TAG);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&at.to_be_bytes());
    for text in texts {
        // Fields are cut to FIELD_MAX_BYTES before storing, so the length fits.
        let len = u32::try_from(text.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(text);
    }
}

/// Leaf data of many entries in one buffer (one allocation for a whole page of a log, not
/// one per leaf).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeafData {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl LeafData {
    /// Room for `leaves` leaves of about `bytes_each` bytes.
    pub fn with_capacity(leaves: usize, bytes_each: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(leaves * bytes_each),
            ends: Vec::with_capacity(leaves),
        }
    }

    /// Adds a leaf ([`encode_leaf`]).
    pub fn push(&mut self, seq: u64, at: u64, texts: [&[u8]; 9]) {
        encode_leaf(&mut self.bytes, seq, at, texts);
        self.ends.push(self.bytes.len());
    }

    /// How many leaves.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The data of leaf `i` of these, if there is one.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        self.bytes.get(start..end)
    }

    /// Each leaf's data, in order.
    pub fn slices(&self) -> Vec<&[u8]> {
        let mut start = 0;
        self.ends
            .iter()
            .map(|&end| {
                let s = &self.bytes[start..end];
                start = end;
                s
            })
            .collect()
    }
}

/// Longest text field kept in a leaf, in bytes (longer texts are cut at a character
/// boundary before they are stored, so what is stored is what was hashed).
pub const FIELD_MAX_BYTES: usize = 4096;

/// What kind of change a leaf records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A voucher's exchange or processing state changed (or a voucher was written,
    /// received, or refused as a conflict).
    Voucher,
    /// A batch of ledger transfers or accounts was applied.
    Ledger,
    /// An administrative or sign-in action (users, posts, divisions, passwords, sessions).
    Admin,
    /// A payment draft's approval step (made, checked, signed, rejected).
    Draft,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 4] = [Kind::Voucher, Kind::Ledger, Kind::Admin, Kind::Draft];

    /// Its stored name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Voucher => "voucher",
            Kind::Ledger => "ledger",
            Kind::Admin => "admin",
            Kind::Draft => "draft",
        }
    }

    /// The kind whose stored name is the bytes `name`.
    pub fn from_name_bytes(name: &[u8]) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name().as_bytes() == name)
    }

    /// The kind named `name`.
    ///
    /// # Errors
    /// [`Error::Malformed`] for a name that is no kind.
    pub fn parse(name: &str) -> Result<Kind, Error> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == name)
            .ok_or_else(|| Error::Malformed(format!("unknown entry kind {name:?}")))
    }
}

/// One audit record: who did what to which object, when, from where, and with what result.
/// Never a secret: PINs, passwords, keys and one-time codes stay out of every field.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Entry {
    /// Position in the log (the leaf index), from 0.
    pub seq: u64,
    /// When, in seconds since the Unix epoch (UTC).
    pub at: u64,
    /// What kind of change.
    pub kind: Kind,
    /// Who: the user or the node's own process (`system`, `exchange`, `worker`).
    pub actor: String,
    /// The post the actor acted in, when known (`maker`, `checker`, `signer`, …).
    pub post: String,
    /// What was done (`receive`, `acknowledge`, `process:Pay`, `create_user`, …).
    pub action: String,
    /// What it was done to (a voucher key and leg, a user, a ledger batch).
    pub object: String,
    /// `ok`, or what went wrong.
    pub result: String,
    /// The source address of the request, when there was one.
    pub source: String,
    /// The request id, when there was one.
    pub request_id: String,
    /// The rest: states before and after, content fingerprints, amounts.
    pub detail: String,
}

impl Entry {
    /// The text fields in their encoded order.
    fn texts(&self) -> [&str; 9] {
        [
            self.kind.name(),
            &self.actor,
            &self.post,
            &self.action,
            &self.object,
            &self.result,
            &self.source,
            &self.request_id,
            &self.detail,
        ]
    }

    /// The leaf data `d`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let texts = self.texts();
        let mut out = Vec::with_capacity(20 + texts.iter().map(|t| 4 + t.len()).sum::<usize>());
        encode_leaf(&mut out, self.seq, self.at, texts.map(str::as_bytes));
        out
    }

    /// Reads leaf data back.
    ///
    /// # Errors
    /// [`Error::Malformed`] when the bytes are not one entry exactly.
    pub fn from_bytes(bytes: &[u8]) -> Result<Entry, Error> {
        let malformed = |what: &str| Error::Malformed(format!("audit entry: {what}"));
        let (seq, at, fields) = decode_leaf(bytes)?;
        let mut texts = Vec::with_capacity(9);
        for field in fields {
            texts.push(
                std::str::from_utf8(field)
                    .map_err(|_| malformed("field is not UTF-8"))?
                    .to_owned(),
            );
        }
        let mut texts = texts.into_iter();
        let mut next = || texts.next().unwrap_or_default();
        let kind = Kind::parse(&next())?;
        Ok(Entry {
            seq,
            at,
            kind,
            actor: next(),
            post: next(),
            action: next(),
            object: next(),
            result: next(),
            source: next(),
            request_id: next(),
            detail: next(),
        })
    }
}

/// The position, time and text fields (their bytes, in the order of [`encode_leaf`]) of leaf
/// data, borrowed from it: for readers that look at one field of many leaves without
/// building an [`Entry`] for each.
///
/// # Errors
/// [`Error::Malformed`] when the bytes are not one entry exactly.
pub fn decode_leaf(bytes: &[u8]) -> Result<(u64, u64, [&[u8]; 9]), Error> {
    let malformed = |what: &str| Error::Malformed(format!("audit entry: {what}"));
    let rest = bytes
        .strip_prefix(ENTRY_TAG.as_slice())
        .ok_or_else(|| malformed("no GKA1 tag"))?;
    let (seq, rest) = take_u64(rest).ok_or_else(|| malformed("short position"))?;
    let (at, mut rest) = take_u64(rest).ok_or_else(|| malformed("short time"))?;
    let mut texts: [&[u8]; 9] = [b""; 9];
    for text in &mut texts {
        let (len, tail) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| malformed("short length"))?;
        let len = u32::from_be_bytes(*len) as usize;
        if len > tail.len() {
            return Err(malformed("field runs past the end"));
        }
        (*text, rest) = tail.split_at(len);
    }
    if !rest.is_empty() {
        return Err(malformed("trailing bytes"));
    }
    Ok((seq, at, texts))
}

fn take_u64(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let (head, rest) = bytes.split_first_chunk::<8>()?;
    Some((u64::from_be_bytes(*head), rest))
}

/// `text` cut to at most [`FIELD_MAX_BYTES`] bytes at a character boundary.
pub fn clip(text: &str) -> &str {
    if text.len() <= FIELD_MAX_BYTES {
        return text;
    }
    let mut end = FIELD_MAX_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Entry {
        Entry {
            seq: 7,
            at: 1_790_000_000,
            kind: Kind::Voucher,
            actor: "icbc-checker".into(),
            post: "checker".into(),
            action: "process:Pay".into(),
            object: "430000/2026/5201/00000001#original".into(),
            result: "ok".into(),
            source: "127.0.0.1:5050".into(),
            request_id: "req-1".into(),
            detail: "exchange 1→1, processing 40→50; 支付".into(),
        }
    }

    #[test]
    fn round_trips_and_every_field_counts() {
        let e = sample();
        let bytes = e.to_bytes();
        assert_eq!(Entry::from_bytes(&bytes).unwrap(), e);
        let mut moved = e.clone();
        moved.actor = "icbc-checke".into();
        moved.post = "rchecker".into();
        assert_ne!(
            moved.to_bytes(),
            bytes,
            "moving a byte between fields must show"
        );
        for i in 0..bytes.len() {
            let mut edited = bytes.clone();
            edited[i] ^= 0x01;
            assert_ne!(Entry::from_bytes(&edited).ok(), Some(e.clone()), "byte {i}");
        }
    }

    #[test]
    fn leaf_data_holds_each_leaf_as_to_bytes_gives_it() {
        let first = sample();
        let mut second = sample();
        second.seq = 8;
        second.kind = Kind::Ledger;
        second.detail = String::new();
        let mut data = LeafData::with_capacity(2, 64);
        assert!(data.is_empty());
        for e in [&first, &second] {
            data.push(e.seq, e.at, e.texts().map(str::as_bytes));
        }
        assert_eq!(data.len(), 2);
        assert_eq!(
            data.slices(),
            vec![first.to_bytes().as_slice(), second.to_bytes().as_slice()]
        );
    }

    #[test]
    fn refuses_truncated_and_trailing_bytes() {
        let bytes = sample().to_bytes();
        for cut in 0..bytes.len() {
            assert!(Entry::from_bytes(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(Entry::from_bytes(&long).is_err());
    }

    #[test]
    fn clip_keeps_characters_whole() {
        let text = "国".repeat(FIELD_MAX_BYTES);
        let clipped = clip(&text);
        assert!(clipped.len() <= FIELD_MAX_BYTES);
        assert!(clipped.chars().all(|c| c == '国'));
        assert_eq!(clip("short"), "short");
    }
}
