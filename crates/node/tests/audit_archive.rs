//! Retention of the audit log (`guoku audit archive`), on SQLite and on PostgreSQL: the
//! leaves older than the retention are archived up to a signed head, the younger ones stay;
//! the archive file's leaves re-hash to its frontier and chain from one archive to the next;
//! the log still verifies from the archive point; nothing is archived without a signed head
//! within the old leaves, with a head that does not match, below the configured retention,
//! or over an existing file.

mod common;

use common::both_backends;
use guoku_audit::{Entry, Frontier, HashAlgorithm};
use guoku_node::audit_archive::{
    ArchiveError, ArchiveHeader, ArchiveRequest, ArchivedEntry, archive, read_archive,
};
use guoku_seal::Suite;
use guoku_store::Store;
use guoku_store::audit::SignedHead;
use guoku_store::library::NewVoucher;
use guoku_voucher::lifecycle::Leg;
use guoku_voucher::{Encoding, Envelope, EnvelopeBody, Voucher, VoucherFlag};

const ORG: &str = "11430000006";
const ALG: HashAlgorithm = HashAlgorithm::Sha256;

/// Seconds since the epoch of a UTC date.
fn day(y: i32, m: u8, d: u8) -> u64 {
    let date = time::Date::from_calendar_date(y, time::Month::try_from(m).unwrap(), d).unwrap();
    u64::try_from(date.midnight().assume_utc().unix_timestamp()).unwrap()
}

/// Now: 2026-03-20, so twelve months back is 2025-03-20.
fn now() -> u64 {
    day(2026, 3, 20) + 3600
}

fn new_voucher(no: &str) -> NewVoucher {
    let v = Voucher {
        header: [
            ("AdmDivCode", "430000"),
            ("StYear", "2025"),
            ("VtCode", "5201"),
            ("VoucherNo", no),
            ("PayAmt", "12.00"),
        ]
        .into_iter()
        .collect(),
        details: vec![],
    };
    let body = guoku_voucher::write_envelope(
        &Envelope {
            bodies: vec![EnvelopeBody {
                flag: VoucherFlag::Original,
                attach: "SUCCESS".into(),
                voucher: v.clone(),
                signatures: vec![],
            }],
        },
        Encoding::Gbk,
    );
    NewVoucher::new(&v, Leg::Original, ORG, "102", body)
}

/// Writes a voucher at `at`: one leaf.
async fn leaf(store: &Store, no: &str, at: u64) {
    store
        .library()
        .write(new_voucher(no), "maker", at)
        .await
        .unwrap();
}

/// Signs (with a stand-in signature: archiving checks roots, `guoku audit verify` checks
/// seals) a head over the first `size` leaves, recomputed from the stored rows.
async fn head(store: &Store, size: u64, at: u64) -> SignedHead {
    let log = store.audit();
    let (start, from) = match log.archived().await.unwrap() {
        Some(a) => (a.frontier.clone(), a.size),
        None => (Frontier::new(ALG), 0),
    };
    let mut frontier = start;
    let count = u32::try_from(size - from).unwrap();
    for e in log.entries(from, count.max(1)).await.unwrap() {
        if e.seq < size {
            frontier.push_data(&e.to_bytes());
        }
    }
    assert_eq!(frontier.size(), size);
    let head = SignedHead {
        size,
        at,
        alg: ALG,
        root: frontier.root(),
        frontier: frontier.to_bytes(),
        signature: vec![0x30, 0x00],
        reason: "schedule".into(),
    };
    assert!(log.put_head(&head).await.unwrap());
    head
}

fn request(out: &std::path::Path) -> ArchiveRequest<'_> {
    ArchiveRequest {
        org: ORG,
        out,
        months: 12,
        retention_months: 12,
        now: now(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// The file's header and entries, read line by line with no help from the library.
fn read_lines(path: &std::path::Path) -> (ArchiveHeader, Vec<Entry>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: ArchiveHeader = serde_json::from_str(lines.next().unwrap()).unwrap();
    let entries = lines
        .map(|l| {
            serde_json::from_str::<ArchivedEntry>(l)
                .unwrap()
                .to_entry()
                .unwrap()
        })
        .collect();
    (header, entries)
}

/// Re-hashes `entries` from the header's start frontier: the frontier reached.
fn rehash(header: &ArchiveHeader, entries: &[Entry]) -> Frontier {
    let mut frontier =
        Frontier::from_bytes(ALG, header.from, &unhex(&header.start_frontier)).unwrap();
    for e in entries {
        assert_eq!(e.seq, frontier.size(), "leaves in order, none missing");
        frontier.push(ALG.leaf_hash(&e.to_bytes()));
    }
    frontier
}

async fn online(store: &Store) -> Vec<Entry> {
    store.audit().entries(0, 1000).await.unwrap()
}

both_backends!(
    old_leaves_are_archived_to_a_signed_head_and_young_ones_stay,
    |backend| {
        let t = backend.store().await;
        let store = &t.store;
        let dir = tempfile::tempdir().unwrap();
        // Leaves 0..8 are older than the cut-off (January and February 2025), a head at 5;
        // leaves 8..10 are young (2026), a head at 10.
        for i in 0..5u8 {
            leaf(store, &format!("OLD{i}"), day(2025, 1, 10 + i)).await;
        }
        let h5 = head(store, 5, day(2025, 1, 20)).await;
        for i in 5..8u8 {
            leaf(store, &format!("OLD{i}"), day(2025, 2, 10 + i)).await;
        }
        for i in 8..10u8 {
            leaf(store, &format!("NEW{i}"), day(2026, 1, 10 + i)).await;
        }
        let h10 = head(store, 10, day(2026, 1, 25)).await;
        let before = online(store).await;
        assert_eq!(before.len(), 10);

        // The first archive ends at the head of 5: leaves 5..8 are old but no head ends among
        // them, so they wait for the next one.
        let first = dir.path().join("audit-1.jsonl");
        let report = archive(store, &request(&first)).await.unwrap();
        assert_eq!((report.from, report.to, report.removed), (0, 5, 5));
        assert_eq!(report.checked_to, 10);
        assert_eq!(report.heads_checked, 2);
        assert_eq!(report.cutoff, day(2025, 3, 20) + 3600);
        let (header, entries) = read_lines(&first);
        assert_eq!(
            entries,
            before[..5].to_vec(),
            "the file holds the leaves as stored"
        );
        let frontier = rehash(&header, &entries);
        assert_eq!(hex(&frontier.to_bytes()), header.frontier);
        assert_eq!(
            frontier.root(),
            h5.root,
            "they re-hash to the signed head's root"
        );
        assert_eq!(header.head.root, hex(&h5.root));
        assert_eq!(header.checked_to.root, hex(&h10.root));
        assert_eq!((header.org.as_str(), header.alg.as_str()), (ORG, "sha256"));
        assert_eq!(read_archive(&first).unwrap().entries, 5);
        assert!(!dir.path().join("audit-1.jsonl.part").exists());
        // The store: leaves 5.. online, the archive point with the file's frontier.
        let after = online(store).await;
        assert_eq!(after, before[5..].to_vec());
        let point = store.audit().archived().await.unwrap().unwrap();
        assert_eq!(point.size, 5);
        assert_eq!(hex(&point.frontier.to_bytes()), header.frontier);
        // The log still verifies, from the archive point on.
        let verified = guoku_node::audit::verify(store, Suite::Intl, ORG, None)
            .await
            .unwrap();
        assert!(verified.verified(), "{:?}", verified.problems);
        assert_eq!(verified.root, Some(h10.root));

        // A head at 8 lets the next archive take 5..8, chained to the first.
        head(store, 8, day(2025, 3, 1)).await;
        let second = dir.path().join("audit-2.jsonl");
        let report = archive(store, &request(&second)).await.unwrap();
        assert_eq!((report.from, report.to, report.removed), (5, 8, 3));
        let (header2, entries2) = read_lines(&second);
        assert_eq!(header2.start_frontier, header.frontier, "files chain");
        assert_eq!(entries2, before[5..8].to_vec());
        let frontier = rehash(&header2, &entries2);
        assert_eq!(hex(&frontier.to_bytes()), header2.frontier);
        assert_eq!(hex(&frontier.root()), header2.head.root);
        // The young leaves stay, whatever heads there are.
        assert_eq!(online(store).await, before[8..].to_vec());
        let third = dir.path().join("audit-3.jsonl");
        let refused = archive(store, &request(&third)).await.unwrap_err();
        assert!(
            matches!(refused, ArchiveError::NothingOld { from: 8, .. }),
            "{refused}"
        );
        assert!(refused.is_refusal());
        assert!(!third.exists());
        assert_eq!(online(store).await, before[8..].to_vec());
        let verified = guoku_node::audit::verify(store, Suite::Intl, ORG, None)
            .await
            .unwrap();
        assert!(verified.verified(), "{:?}", verified.problems);

        // An archive file edited afterwards no longer re-hashes.
        let text = std::fs::read_to_string(&first).unwrap();
        std::fs::write(&first, text.replacen("\"maker\"", "\"maker2\"", 1)).unwrap();
        assert!(matches!(
            read_archive(&first),
            Err(ArchiveError::BadFile { .. })
        ));
    }
);

both_backends!(
    nothing_is_archived_without_a_signed_head_within_the_old_leaves,
    |backend| {
        let t = backend.store().await;
        let store = &t.store;
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("audit.jsonl");
        // An empty log: nothing to archive.
        let refused = archive(store, &request(&out)).await.unwrap_err();
        assert!(
            matches!(refused, ArchiveError::NothingOld { from: 0, .. }),
            "{refused}"
        );
        for i in 0..4u8 {
            leaf(store, &format!("OLD{i}"), day(2025, 1, 10 + i)).await;
        }
        // No head at all.
        let refused = archive(store, &request(&out)).await.unwrap_err();
        assert!(
            matches!(refused, ArchiveError::NoSignedHead { .. }),
            "{refused}"
        );
        // A head only past the cut-off, over old and young leaves alike: no signed point lies
        // within the old ones.
        leaf(store, "NEW", day(2026, 2, 1)).await;
        head(store, 5, day(2026, 2, 2)).await;
        let refused = archive(store, &request(&out)).await.unwrap_err();
        assert!(
            matches!(refused, ArchiveError::NoSignedHead { older: 4, .. }),
            "{refused}"
        );
        assert!(refused.is_refusal());
        // Fewer months than the configured retention: refused before reading anything.
        let short = ArchiveRequest {
            months: 6,
            ..request(&out)
        };
        assert!(matches!(
            archive(store, &short).await,
            Err(ArchiveError::BelowRetention {
                months: 6,
                retention: 12
            })
        ));
        // A signed head within the old leaves whose root the rows do not give: the log does not
        // verify, so nothing is archived.
        store
            .audit()
            .put_head(&SignedHead {
                size: 2,
                at: day(2025, 1, 20),
                alg: ALG,
                root: [7; 32],
                frontier: vec![7; 32],
                signature: vec![0x30, 0x00],
                reason: "schedule".into(),
            })
            .await
            .unwrap();
        let refused = archive(store, &request(&out)).await.unwrap_err();
        assert!(matches!(refused, ArchiveError::Mismatch(_)), "{refused}");
        assert!(!refused.is_refusal());
        // Nothing was written or removed.
        assert!(!out.exists());
        assert!(!dir.path().join("audit.jsonl.part").exists());
        assert_eq!(online(store).await.len(), 5);
        assert!(store.audit().archived().await.unwrap().is_none());
        // An existing file is never overwritten.
        std::fs::write(&out, b"keep me").unwrap();
        assert!(matches!(
            archive(store, &request(&out)).await,
            Err(ArchiveError::Exists(_))
        ));
        assert_eq!(std::fs::read(&out).unwrap(), b"keep me");
    }
);
