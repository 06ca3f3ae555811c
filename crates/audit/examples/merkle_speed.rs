//! Throughput of tree heads and proofs on one core: `cargo run --release --example
//! merkle_speed -p guoku-audit`. Figures only; behaviour is checked by the tests.

use std::time::Instant;

use guoku_audit::{HashAlgorithm, MerkleTree, root, verify_inclusion};

fn main() {
    const N: usize = 1_000_000;
    for alg in HashAlgorithm::ALL {
        let t = Instant::now();
        let leaves: Vec<_> = (0..N as u64)
            .map(|i| alg.leaf_hash(&i.to_be_bytes()))
            .collect();
        let leaf_s = t.elapsed().as_secs_f64();

        let mut best_root = f64::MAX;
        let mut r = [0u8; 32];
        for _ in 0..3 {
            let t = Instant::now();
            r = root(alg, &leaves);
            best_root = best_root.min(t.elapsed().as_secs_f64());
        }

        let t = Instant::now();
        let tree = MerkleTree::new(alg, leaves.clone());
        let build_s = t.elapsed().as_secs_f64();
        assert_eq!(tree.root(), r);

        let t = Instant::now();
        let checks = 20_000u64;
        for k in 0..checks {
            let i = k * 49_999 % N as u64;
            let proof = tree.inclusion_proof(i).unwrap();
            verify_inclusion(alg, &leaves[i as usize], i, N as u64, &proof, &r).unwrap();
        }
        let proof_s = t.elapsed().as_secs_f64();

        println!(
            "{alg:>6}: leaf hashes (8-byte data) {:.2} M/s | root of {N} leaf hashes {:.3} s = {:.2} M leaves/s | \
             MerkleTree::new {:.3} s = {:.2} M leaves/s | proof+verify {:.0}/s",
            N as f64 / leaf_s / 1e6,
            best_root,
            N as f64 / best_root / 1e6,
            build_s,
            N as f64 / build_s / 1e6,
            checks as f64 / proof_s,
        );
    }
}
