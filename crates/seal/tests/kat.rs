//! Known-answer tests from the published standards.

use guoku_seal::symmetric::sm4_encrypt_block;
use guoku_seal::{
    Error, HashAlgorithm, KeyAlgorithm, Signature, SigningKey, Suite, SymmetricKey, hash,
};
use hex_literal::hex;

// ----- SM3 (GB/T 32905-2016, appendix A) ---------------------------------------------------

#[test]
fn sm3_abc() {
    assert_eq!(
        hash(Suite::Sm, b"abc"),
        hex!("66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0")
    );
}

#[test]
fn sm3_abcd_times_16() {
    let msg = b"abcd".repeat(16);
    assert_eq!(msg.len(), 64);
    assert_eq!(
        HashAlgorithm::Sm3.hash(&msg),
        hex!("debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732")
    );
}

#[test]
fn sha256_abc_for_intl_suite() {
    assert_eq!(
        hash(Suite::Intl, b"abc"),
        hex!("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    );
}

// ----- SM4 (GB/T 32907-2016, appendix A) ---------------------------------------------------

const SM4_KEY: [u8; 16] = hex!("0123456789abcdeffedcba9876543210");

#[test]
fn sm4_single_block() {
    assert_eq!(
        sm4_encrypt_block(&SM4_KEY, &SM4_KEY),
        hex!("681edf34d206965e86b3e94f536e4246")
    );
}

/// The second example of GB/T 32907: encrypt the block 1,000,000 times with the same key
/// (about 16 MB of SM4: a few seconds in a debug build, well under one in release).
#[test]
fn sm4_one_million_iterations() {
    use sm4::cipher::{BlockCipherEncrypt, KeyInit};
    let cipher = sm4::Sm4::new(&SM4_KEY.into());
    let mut block = SM4_KEY.into();
    for _ in 0..1_000_000 {
        cipher.encrypt_block(&mut block);
    }
    assert_eq!(
        <[u8; 16]>::from(block),
        hex!("595298c7c6fd271f0402f804c33d3f66")
    );
}

/// SM4-GCM, RFC 8998 appendix A.1.
#[test]
fn sm4_gcm_rfc8998() {
    let key = SymmetricKey::from_bytes(Suite::Sm, &SM4_KEY).unwrap();
    let nonce = hex!("00001234567800000000abcd");
    let aad = hex!("feedfacedeadbeeffeedfacedeadbeefabaddad2");
    let pt = hex!(
        "aaaaaaaaaaaaaaaabbbbbbbbbbbbbbbbccccccccccccccccdddddddddddddddd"
        "eeeeeeeeeeeeeeeeffffffffffffffffeeeeeeeeeeeeeeeeaaaaaaaaaaaaaaaa"
    );
    let expected = hex!(
        "17f399f08c67d5ee19d0dc9969c4bb7d5fd46fd3756489069157b282bb200735"
        "d82710ca5c22f0ccfa7cbf93d496ac15a56834cbcf98c397b4024a2691233b8d"
        "83de3541e4c2b58177e065a9bf7b62ec"
    );
    let ct = key.encrypt(&nonce, &aad, &pt).unwrap();
    assert_eq!(ct, expected);
    assert_eq!(&key.decrypt(&nonce, &aad, &ct).unwrap()[..], &pt[..]);

    let mut tampered = ct.clone();
    tampered[0] ^= 1;
    assert!(matches!(
        key.decrypt(&nonce, &aad, &tampered),
        Err(Error::DecryptionFailed)
    ));
    assert!(matches!(
        key.decrypt(&nonce, b"other aad", &ct),
        Err(Error::DecryptionFailed)
    ));
}

/// AES-256-GCM, NIST GCM test case 16 (McGrew & Viega).
#[test]
fn aes256_gcm_test_case_16() {
    let key = SymmetricKey::from_bytes(
        Suite::Intl,
        &hex!("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308"),
    )
    .unwrap();
    let nonce = hex!("cafebabefacedbaddecaf888");
    let aad = hex!("feedfacedeadbeeffeedfacedeadbeefabaddad2");
    let pt = hex!(
        "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
        "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39"
    );
    let expected = hex!(
        "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
        "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662"
        "76fc6ece0f4e1768cddf8853bb2d551b"
    );
    let ct = key.encrypt(&nonce, &aad, &pt).unwrap();
    assert_eq!(ct, expected);
    assert_eq!(&key.decrypt(&nonce, &aad, &ct).unwrap()[..], &pt[..]);
}

// ----- SM2 (GB/T 32918.2-2016 example on the recommended curve, default user ID) ------------

const SM2_D: [u8; 32] = hex!("3945208f7b2144b13f36e38ac6d39f95889393692860b51a42fb81ef4df7c5b8");
const SM2_PUB: [u8; 65] = hex!(
    "04"
    "09f9df311e5421a150dd7d161e4bc5c672179fad1833fc076bb08ff356f35020"
    "ccea490ce26775a52dc6ea718cc1aa600aed05fbf35e084a6632f6072da9ad13"
);
const SM2_R: [u8; 32] = hex!("f5a03b0648d2c4630eeac513e1bb81a15944da3827d5b74143ac7eaceee720b3");
const SM2_S: [u8; 32] = hex!("b1b6aa29df212fd8763182bc0d421ca1bb9038fd1f7f42d4840b69c485bbc1aa");

fn der_int(v: &[u8]) -> Vec<u8> {
    let mut body: Vec<u8> = v.iter().copied().skip_while(|b| *b == 0).collect();
    if body.first().is_some_and(|b| b & 0x80 != 0) {
        body.insert(0, 0);
    }
    let mut out = vec![0x02, body.len() as u8];
    out.extend(body);
    out
}

fn der_sig(r: &[u8], s: &[u8]) -> Signature {
    let mut body = der_int(r);
    body.extend(der_int(s));
    let mut out = vec![0x30, body.len() as u8];
    out.extend(body);
    Signature::from_bytes(out)
}

#[test]
fn sm2_public_key_from_standard_private_key() {
    let key = SigningKey::from_secret_bytes(KeyAlgorithm::Sm2, &SM2_D).unwrap();
    assert_eq!(key.verifying_key().to_raw_bytes(), SM2_PUB.to_vec());
}

#[test]
fn sm2_verifies_standard_signature() {
    let key = SigningKey::from_secret_bytes(KeyAlgorithm::Sm2, &SM2_D).unwrap();
    let sig = der_sig(&SM2_R, &SM2_S);
    key.verifying_key().verify(b"message digest", &sig).unwrap();
}

#[test]
fn sm2_rejects_standard_signature_on_other_message() {
    let key = SigningKey::from_secret_bytes(KeyAlgorithm::Sm2, &SM2_D).unwrap();
    let sig = der_sig(&SM2_R, &SM2_S);
    assert!(matches!(
        key.verifying_key().verify(b"message digesT", &sig),
        Err(Error::BadSignature)
    ));
}

#[test]
fn sm2_rejects_raw_r_s_without_der() {
    // GM/T 0009 signatures are DER; 64 raw bytes are refused, not guessed at.
    let key = SigningKey::from_secret_bytes(KeyAlgorithm::Sm2, &SM2_D).unwrap();
    let raw = Signature::from_bytes([SM2_R, SM2_S].concat());
    assert!(matches!(
        key.verifying_key().verify(b"message digest", &raw),
        Err(Error::BadSignature)
    ));
}

#[test]
fn sm2_sign_then_verify_fixed_key() {
    let key = SigningKey::from_secret_bytes(KeyAlgorithm::Sm2, &SM2_D).unwrap();
    let msg = b"guoku voucher 5201 No.000001";
    let sig = key.sign(msg).unwrap();
    assert_eq!(sig.as_bytes()[0], 0x30, "DER SEQUENCE");
    key.verifying_key().verify(msg, &sig).unwrap();
    // Deterministic nonces: the same key and message give the same signature.
    assert_eq!(key.sign(msg).unwrap(), sig);

    let mut other = msg.to_vec();
    other[0] ^= 0x20;
    assert!(matches!(
        key.verifying_key().verify(&other, &sig),
        Err(Error::BadSignature)
    ));
    let mut bad = sig.clone().into_bytes();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(matches!(
        key.verifying_key().verify(msg, &Signature::from_bytes(bad)),
        Err(Error::BadSignature)
    ));
}

// ----- Ed25519 (RFC 8032 §7.1, tests 1–3) ---------------------------------------------------

fn ed25519_case(secret: [u8; 32], public: [u8; 32], msg: &[u8], sig: [u8; 64]) {
    let key = SigningKey::from_secret_bytes(KeyAlgorithm::Ed25519, &secret).unwrap();
    assert_eq!(key.verifying_key().to_raw_bytes(), public.to_vec());
    let made = key.sign(msg).unwrap();
    assert_eq!(made.as_bytes(), &sig[..]);
    key.verifying_key().verify(msg, &made).unwrap();
    let mut other = msg.to_vec();
    other.push(0);
    assert!(matches!(
        key.verifying_key().verify(&other, &made),
        Err(Error::BadSignature)
    ));
}

#[test]
fn ed25519_rfc8032_test_1() {
    ed25519_case(
        hex!("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"),
        hex!("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"),
        b"",
        hex!(
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
            "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        ),
    );
}

#[test]
fn ed25519_rfc8032_test_2() {
    ed25519_case(
        hex!("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb"),
        hex!("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c"),
        &hex!("72"),
        hex!(
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
            "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"
        ),
    );
}

#[test]
fn ed25519_rfc8032_test_3() {
    ed25519_case(
        hex!("c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7"),
        hex!("fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025"),
        &hex!("af82"),
        hex!(
            "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
            "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"
        ),
    );
}
