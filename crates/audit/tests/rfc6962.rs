//! Known answers: the 8-leaf test tree of the Certificate Transparency reference
//! implementation (SHA-256), and every size 0..=64 (plus some larger ones) against a naive
//! recursive reference written from the text of RFC 6962 §2.1, for both hash functions.

use guoku_audit::{
    Error, Hash, HashAlgorithm, MerkleTree, consistency_proof, inclusion_proof, root,
    root_from_inclusion_proof, tree_head, verify_consistency, verify_inclusion,
};

fn h(hex: &str) -> Hash {
    assert_eq!(hex.len(), 64, "{hex}");
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

fn bytes(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

// ----- the CT reference tree ----------------------------------------------------------------

/// The leaf data of the CT reference implementation's `merkle_tree_test`.
const CT_LEAVES: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

/// Roots of the trees of the first 0..=8 leaves.
const CT_ROOTS: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

/// (leaf index, tree size, audit path).
const CT_INCLUSION: [(u64, u64, &[&str]); 4] = [
    (
        0,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        &[
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        3,
        &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
    ),
    (
        1,
        5,
        &[
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
];

/// (first size, second size, consistency proof).
const CT_CONSISTENCY: [(u64, u64, &[&str]); 4] = [
    (1, 1, &[]),
    (
        1,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        &[
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
];

const SHA: HashAlgorithm = HashAlgorithm::Sha256;

fn ct_leaf_hashes() -> Vec<Hash> {
    CT_LEAVES.iter().map(|d| SHA.leaf_hash(&bytes(d))).collect()
}

#[test]
fn ct_reference_roots_for_every_prefix() {
    let leaves = ct_leaf_hashes();
    for (n, expected) in CT_ROOTS.iter().enumerate() {
        assert_eq!(root(SHA, &leaves[..n]), h(expected), "size {n}");
        let head = tree_head(SHA, &leaves[..n]);
        assert_eq!((head.size, head.root), (n as u64, h(expected)));
        let tree = MerkleTree::new(SHA, leaves[..n].to_vec());
        assert_eq!(tree.head(), head, "size {n}");
    }
}

#[test]
fn ct_reference_inclusion_proofs() {
    let leaves = ct_leaf_hashes();
    for (index, size, path) in CT_INCLUSION {
        let expected: Vec<Hash> = path.iter().map(|p| h(p)).collect();
        let prefix = &leaves[..size as usize];
        assert_eq!(inclusion_proof(SHA, prefix, index).unwrap(), expected);
        let tree = MerkleTree::new(SHA, prefix.to_vec());
        assert_eq!(tree.inclusion_proof(index).unwrap(), expected);
        let root = h(CT_ROOTS[size as usize]);
        let leaf = leaves[index as usize];
        verify_inclusion(SHA, &leaf, index, size, &expected, &root).unwrap();
        assert_eq!(
            root_from_inclusion_proof(SHA, &leaf, index, size, &expected).unwrap(),
            root
        );
    }
}

#[test]
fn ct_reference_consistency_proofs() {
    let leaves = ct_leaf_hashes();
    for (first, second, proof) in CT_CONSISTENCY {
        let expected: Vec<Hash> = proof.iter().map(|p| h(p)).collect();
        let prefix = &leaves[..second as usize];
        assert_eq!(consistency_proof(SHA, prefix, first).unwrap(), expected);
        let tree = MerkleTree::new(SHA, prefix.to_vec());
        assert_eq!(tree.consistency_proof(first).unwrap(), expected);
        let (r1, r2) = (h(CT_ROOTS[first as usize]), h(CT_ROOTS[second as usize]));
        verify_consistency(SHA, first, second, &r1, &r2, &expected).unwrap();
    }
}

/// The corruptions the CT reference verifier tests try, on each known inclusion proof.
#[test]
fn ct_reference_inclusion_corruptions_are_refused() {
    let leaves = ct_leaf_hashes();
    let some_hash = h("abacaba000000000000000000000000000000000000000000060061e00123456");
    for (index, size, path) in CT_INCLUSION {
        let proof: Vec<Hash> = path.iter().map(|p| h(p)).collect();
        let root = h(CT_ROOTS[size as usize]);
        let leaf = leaves[index as usize];
        let empty = SHA.empty_root();
        let mut probes: Vec<(String, u64, u64, Hash, Hash, Vec<Hash>)> = vec![
            (
                "index-1".into(),
                index.wrapping_sub(1),
                size,
                root,
                leaf,
                proof.clone(),
            ),
            ("index+1".into(), index + 1, size, root, leaf, proof.clone()),
            ("index^2".into(), index ^ 2, size, root, leaf, proof.clone()),
            ("size*2".into(), index, size * 2, root, leaf, proof.clone()),
            ("size/2".into(), index, size / 2, root, leaf, proof.clone()),
            (
                "wrong leaf".into(),
                index,
                size,
                root,
                some_hash,
                proof.clone(),
            ),
            ("empty root".into(), index, size, empty, leaf, proof.clone()),
            (
                "random root".into(),
                index,
                size,
                some_hash,
                leaf,
                proof.clone(),
            ),
            (
                "trailing root".into(),
                index,
                size,
                root,
                leaf,
                [&proof[..], &[root]].concat(),
            ),
            (
                "preceding root".into(),
                index,
                size,
                root,
                leaf,
                [&[root], &proof[..]].concat(),
            ),
            (
                "removed".into(),
                index,
                size,
                root,
                leaf,
                proof[..proof.len() - 1].to_vec(),
            ),
        ];
        for i in 0..proof.len() {
            let mut p = proof.clone();
            p[i][0] ^= 8;
            probes.push((format!("flip proof[{i}]"), index, size, root, leaf, p));
        }
        if proof.len() > 1 {
            let p = [&proof[..1], &[some_hash], &proof[1..]].concat();
            probes.push(("inserted".into(), index, size, root, leaf, p));
        }
        for (what, i, n, r, l, p) in probes {
            assert!(
                verify_inclusion(SHA, &l, i, n, &p, &r).is_err(),
                "({index}, {size}): {what} verified"
            );
        }
    }
}

#[test]
fn ct_reference_consistency_corruptions_are_refused() {
    let some_hash = h("abacaba000000000000000000000000000000000000000000060061e00123456");
    for (first, second, path) in CT_CONSISTENCY {
        let proof: Vec<Hash> = path.iter().map(|p| h(p)).collect();
        if proof.is_empty() {
            continue;
        }
        let (r1, r2) = (h(CT_ROOTS[first as usize]), h(CT_ROOTS[second as usize]));
        let mut probes: Vec<(String, u64, u64, Hash, Hash, Vec<Hash>)> = vec![
            ("first-1".into(), first - 1, second, r1, r2, proof.clone()),
            ("first+1".into(), first + 1, second, r1, r2, proof.clone()),
            ("first^2".into(), first ^ 2, second, r1, r2, proof.clone()),
            ("second*2".into(), first, second * 2, r1, r2, proof.clone()),
            ("second/2".into(), first, second / 2, r1, r2, proof.clone()),
            (
                "wrong root1".into(),
                first,
                second,
                some_hash,
                r2,
                proof.clone(),
            ),
            (
                "wrong root2".into(),
                first,
                second,
                r1,
                some_hash,
                proof.clone(),
            ),
            ("swapped".into(), first, second, r2, r1, proof.clone()),
            ("empty proof".into(), first, second, r1, r2, vec![]),
            (
                "trailing root1".into(),
                first,
                second,
                r1,
                r2,
                [&proof[..], &[r1]].concat(),
            ),
            (
                "trailing root2".into(),
                first,
                second,
                r1,
                r2,
                [&proof[..], &[r2]].concat(),
            ),
            (
                "preceding root1".into(),
                first,
                second,
                r1,
                r2,
                [&[r1], &proof[..]].concat(),
            ),
            (
                "preceding root2".into(),
                first,
                second,
                r1,
                r2,
                [&[r2], &proof[..]].concat(),
            ),
            (
                "preceding proof[0]".into(),
                first,
                second,
                r1,
                r2,
                [&proof[..1], &proof[..]].concat(),
            ),
            (
                "truncated".into(),
                first,
                second,
                r1,
                r2,
                proof[..proof.len() - 1].to_vec(),
            ),
        ];
        for i in 0..proof.len() {
            let mut p = proof.clone();
            p[i][0] ^= 16;
            probes.push((format!("flip proof[{i}]"), first, second, r1, r2, p));
        }
        for (what, m, n, a, b, p) in probes {
            assert!(
                verify_consistency(SHA, m, n, &a, &b, &p).is_err(),
                "({first}, {second}): {what} verified"
            );
        }
    }
}

#[test]
fn trivial_and_degenerate_cases() {
    for alg in HashAlgorithm::ALL {
        let empty = alg.empty_root();
        let other = alg.hash(b"other");
        // Empty trees.
        assert_eq!(root(alg, &[]), empty);
        assert_eq!(MerkleTree::new(alg, vec![]).root(), empty);
        assert_eq!(
            inclusion_proof(alg, &[], 0),
            Err(Error::IndexOutOfRange { index: 0, size: 0 })
        );
        assert!(verify_inclusion(alg, &empty, 0, 0, &[], &empty).is_err());
        // One leaf: the root is the leaf hash and the proof is empty.
        let leaf = alg.leaf_hash(b"data");
        assert_eq!(root(alg, &[leaf]), leaf);
        verify_inclusion(alg, &leaf, 0, 1, &[], &leaf).unwrap();
        assert!(verify_inclusion(alg, &leaf, 0, 1, &[], &other).is_err());
        assert!(verify_inclusion(alg, &leaf, 1, 1, &[], &leaf).is_err());
        // Sizes 0 and equal sizes need empty proofs.
        verify_consistency(alg, 0, 0, &empty, &empty, &[]).unwrap();
        assert!(verify_consistency(alg, 0, 0, &empty, &other, &[]).is_err());
        verify_consistency(alg, 0, 5, &empty, &other, &[]).unwrap();
        assert!(verify_consistency(alg, 0, 5, &other, &other, &[]).is_err());
        assert!(verify_consistency(alg, 0, 5, &empty, &other, &[empty]).is_err());
        verify_consistency(alg, 3, 3, &other, &other, &[]).unwrap();
        assert!(verify_consistency(alg, 3, 3, &other, &empty, &[]).is_err());
        assert!(verify_consistency(alg, 3, 3, &other, &other, &[other]).is_err());
        // Going back in time.
        assert_eq!(
            verify_consistency(alg, 2, 1, &other, &other, &[]),
            Err(Error::SizeOutOfRange {
                first: 2,
                second: 1
            })
        );
        assert!(consistency_proof(alg, &[leaf], 2).is_err());
        assert!(
            MerkleTree::new(alg, vec![leaf])
                .consistency_proof(2)
                .is_err()
        );
        // An absurdly long proof is refused without looping far.
        let long = vec![other; 1000];
        assert_eq!(
            verify_inclusion(alg, &leaf, 0, 8, &long, &other),
            Err(Error::ProofTooLong)
        );
        assert_eq!(
            verify_consistency(alg, 3, 8, &other, &other, &long),
            Err(Error::ProofTooLong)
        );
    }
}

// ----- a naive reference, written from RFC 6962 §2.1 --------------------------------------

/// MTH(D[n]) with recursion and fresh byte vectors at every step, hashing only with the
/// plain hash function `H` of the algorithm.
fn naive_mth(alg: HashAlgorithm, data: &[Vec<u8>]) -> Hash {
    match data.len() {
        0 => alg.hash(b""),
        1 => alg.hash(&[&[0u8][..], &data[0]].concat()),
        n => {
            let mut k = 1;
            while k * 2 < n {
                k *= 2;
            }
            let left = naive_mth(alg, &data[..k]);
            let right = naive_mth(alg, &data[k..]);
            alg.hash(&[&[1u8][..], &left, &right].concat())
        }
    }
}

fn largest_power_of_two_below(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// PATH(m, D[n]).
fn naive_path(alg: HashAlgorithm, m: usize, data: &[Vec<u8>]) -> Vec<Hash> {
    let n = data.len();
    if n == 1 {
        return vec![];
    }
    let k = largest_power_of_two_below(n);
    if m < k {
        let mut p = naive_path(alg, m, &data[..k]);
        p.push(naive_mth(alg, &data[k..]));
        p
    } else {
        let mut p = naive_path(alg, m - k, &data[k..]);
        p.push(naive_mth(alg, &data[..k]));
        p
    }
}

/// SUBPROOF(m, D[n], b).
fn naive_subproof(alg: HashAlgorithm, m: usize, data: &[Vec<u8>], b: bool) -> Vec<Hash> {
    let n = data.len();
    if m == n {
        return if b {
            vec![]
        } else {
            vec![naive_mth(alg, data)]
        };
    }
    let k = largest_power_of_two_below(n);
    if m <= k {
        let mut p = naive_subproof(alg, m, &data[..k], b);
        p.push(naive_mth(alg, &data[k..]));
        p
    } else {
        let mut p = naive_subproof(alg, m - k, &data[k..], false);
        p.push(naive_mth(alg, &data[..k]));
        p
    }
}

fn sample_data(n: usize, seed: u8) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let len = (i * 7 + seed as usize) % 40;
            (0..len).map(|j| (i * 31 + j * 17) as u8 ^ seed).collect()
        })
        .collect()
}

fn check_size_against_naive(alg: HashAlgorithm, data: &[Vec<u8>], all_pairs: bool) {
    let n = data.len();
    let leaves: Vec<Hash> = data.iter().map(|d| alg.leaf_hash(d)).collect();
    let expected_root = naive_mth(alg, data);
    assert_eq!(root(alg, &leaves), expected_root, "{alg} size {n}");
    let tree = MerkleTree::new(alg, leaves.clone());
    assert_eq!(tree.root(), expected_root, "{alg} size {n}");
    // All leaves for small trees; for larger ones the naive PATH costs O(n) hashes per leaf,
    // so take the edges, the middle and a stride.
    let indices: Vec<usize> = if all_pairs {
        (0..n).collect()
    } else {
        let mut v: Vec<usize> = (0..n).step_by(n / 16 + 1).collect();
        v.extend([n / 2, n - 2, n - 1]);
        v
    };
    for m in indices {
        let expected = naive_path(alg, m, data);
        assert_eq!(
            tree.inclusion_proof(m as u64).unwrap(),
            expected,
            "{alg} PATH({m}, {n})"
        );
        if all_pairs {
            assert_eq!(inclusion_proof(alg, &leaves, m as u64).unwrap(), expected);
        }
        verify_inclusion(
            alg,
            &leaves[m],
            m as u64,
            n as u64,
            &expected,
            &expected_root,
        )
        .unwrap();
    }
    let firsts: Vec<usize> = if all_pairs {
        (0..=n).collect()
    } else {
        [0, 1, 2, n / 3, n / 2, n.saturating_sub(1), n]
            .into_iter()
            .filter(|m| *m <= n)
            .collect()
    };
    for m in firsts {
        let expected = if m == 0 || m == n {
            vec![]
        } else {
            naive_subproof(alg, m, data, true)
        };
        assert_eq!(
            tree.consistency_proof(m as u64).unwrap(),
            expected,
            "{alg} PROOF({m}, {n})"
        );
        assert_eq!(consistency_proof(alg, &leaves, m as u64).unwrap(), expected);
        let old_root = naive_mth(alg, &data[..m]);
        verify_consistency(
            alg,
            m as u64,
            n as u64,
            &old_root,
            &expected_root,
            &expected,
        )
        .unwrap();
    }
}

#[test]
fn every_size_up_to_64_matches_the_naive_reference() {
    for alg in HashAlgorithm::ALL {
        for n in 0..=64 {
            check_size_against_naive(alg, &sample_data(n, n as u8), true);
        }
    }
}

#[test]
fn larger_sizes_match_the_naive_reference() {
    for alg in HashAlgorithm::ALL {
        for n in [127, 128, 129, 255, 333, 513, 1000, 1025] {
            check_size_against_naive(alg, &sample_data(n, 3), false);
        }
    }
}

#[test]
fn sm3_and_sha256_trees_differ() {
    let data = sample_data(10, 1);
    let sm3: Vec<Hash> = data
        .iter()
        .map(|d| HashAlgorithm::Sm3.leaf_hash(d))
        .collect();
    let sha: Vec<Hash> = data.iter().map(|d| SHA.leaf_hash(d)).collect();
    assert_ne!(root(HashAlgorithm::Sm3, &sm3), root(SHA, &sha));
    // A proof made with one hash does not verify with the other.
    let proof = inclusion_proof(SHA, &sha, 3).unwrap();
    let r = root(SHA, &sha);
    assert!(verify_inclusion(HashAlgorithm::Sm3, &sha[3], 3, 10, &proof, &r).is_err());
}
