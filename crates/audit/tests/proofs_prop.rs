//! Properties: every inclusion proof verifies for every leaf and fails for a wrong leaf,
//! index or root; every consistency proof between any (m, n) verifies and fails when either
//! root is altered.

use guoku_audit::{
    Hash, HashAlgorithm, MerkleTree, consistency_proof, inclusion_proof, verify_consistency,
    verify_inclusion,
};
use proptest::prelude::*;

fn alg() -> impl Strategy<Value = HashAlgorithm> {
    prop_oneof![Just(HashAlgorithm::Sm3), Just(HashAlgorithm::Sha256)]
}

fn leaves(alg: HashAlgorithm, n: usize, seed: u64) -> Vec<Hash> {
    (0..n as u64)
        .map(|i| alg.leaf_hash(&(seed ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).to_be_bytes()))
        .collect()
}

fn flip(mut h: Hash, bit: usize) -> Hash {
    h[bit / 8 % 32] ^= 1 << (bit % 8);
    h
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn every_inclusion_proof_verifies_and_wrong_inputs_fail(
        alg in alg(), n in 1usize..300, seed: u64, bit in 0usize..256, delta in 1u64..300,
    ) {
        let leaves = leaves(alg, n, seed);
        let tree = MerkleTree::new(alg, leaves.clone());
        let root = tree.root();
        let size = n as u64;
        for i in 0..size {
            let proof = tree.inclusion_proof(i).unwrap();
            let leaf = leaves[i as usize];
            prop_assert!(verify_inclusion(alg, &leaf, i, size, &proof, &root).is_ok());
            // Wrong leaf.
            prop_assert!(verify_inclusion(alg, &flip(leaf, bit), i, size, &proof, &root).is_err());
            // Wrong index (another leaf's position, or past the end).
            let other = (i + delta) % (size + 1);
            if other != i {
                prop_assert!(verify_inclusion(alg, &leaf, other, size, &proof, &root).is_err(),
                    "leaf {} verified at index {} of {}", i, other, size);
            }
            // Wrong root.
            prop_assert!(verify_inclusion(alg, &leaf, i, size, &proof, &flip(root, bit)).is_err());
            // A flipped proof hash.
            if !proof.is_empty() {
                let mut bad = proof.clone();
                let j = bit % bad.len();
                bad[j] = flip(bad[j], bit);
                prop_assert!(verify_inclusion(alg, &leaf, i, size, &bad, &root).is_err());
            }
        }
        // The slice-based proof agrees with the tree's, for one index.
        let i = seed % size;
        prop_assert_eq!(inclusion_proof(alg, &leaves, i).unwrap(), tree.inclusion_proof(i).unwrap());
    }

    #[test]
    fn every_consistency_proof_verifies_and_altered_roots_fail(
        alg in alg(), n in 0usize..200, seed: u64, bit in 0usize..256,
    ) {
        let leaves = leaves(alg, n, seed);
        let tree = MerkleTree::new(alg, leaves.clone());
        let second_root = tree.root();
        let size = n as u64;
        // Roots of every prefix, computed as trees of their own.
        for m in 0..=size {
            let first_root = MerkleTree::new(alg, leaves[..m as usize].to_vec()).root();
            let proof = tree.consistency_proof(m).unwrap();
            prop_assert!(
                verify_consistency(alg, m, size, &first_root, &second_root, &proof).is_ok(),
                "PROOF({}, {}) does not verify", m, size
            );
            prop_assert!(
                verify_consistency(alg, m, size, &flip(first_root, bit), &second_root, &proof)
                    .is_err()
            );
            // Every tree extends the empty tree, so the second root is free when m = 0.
            if m > 0 {
                prop_assert!(
                    verify_consistency(alg, m, size, &first_root, &flip(second_root, bit), &proof)
                        .is_err()
                );
            }
            if !proof.is_empty() {
                let mut bad = proof.clone();
                let j = bit % bad.len();
                bad[j] = flip(bad[j], bit);
                prop_assert!(
                    verify_consistency(alg, m, size, &first_root, &second_root, &bad).is_err()
                );
            }
        }
        if n > 0 {
            let m = seed % (size + 1);
            prop_assert_eq!(
                consistency_proof(alg, &leaves, m).unwrap(),
                tree.consistency_proof(m).unwrap()
            );
        }
    }
}
