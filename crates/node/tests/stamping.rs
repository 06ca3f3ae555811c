//! A 5201 goes through its positions: finance's maker and checker sign, finance seals,
//! the bank fills the receipt and seals it; every stamp checks out, and changes do not.

use guoku_domain::BizDate;
use guoku_node::stamping::{StampingError, Verification, stamp_next, type_of, verify};
use guoku_seal::pki::{
    CaSubject, Certificate, CertificateAuthority, OrgRole, Organisation, Person, Post,
    RevocationPolicy, Serial, Sm2CertId, Validity, make_root_ca,
};
use guoku_seal::ses::{CertListForm, Seal, SealPicture, SealSpec, make_seal};
use guoku_seal::voucher::{Signer, StampKind, TrustContext};
use guoku_seal::{KeyAlgorithm, SigningKey, Suite};
use guoku_voucher::sample::{Style, sample};
use guoku_voucher::{EnvelopeBody, Registry, VoucherFlag};
use time::OffsetDateTime;

struct Holder {
    key: SigningKey,
    cert: Certificate,
}

struct Deployment {
    root: Certificate,
    maker: Holder,
    checker: Holder,
    finance_signer: Holder,
    finance_seal: Seal,
    bank_signer: Holder,
    bank_seal: Seal,
    now: OffsetDateTime,
}

fn org(role: OrgRole, code: &str, name: &str) -> Organisation {
    Organisation {
        role,
        code: code.into(),
        name: name.into(),
    }
}

fn deployment() -> Deployment {
    let mut rng = rand::rng();
    let now = OffsetDateTime::now_utc();
    let ca_validity = Validity::days_from(now - time::Duration::days(2), 400);
    let validity = Validity::days_from(now - time::Duration::days(1), 365);
    let root_key = SigningKey::generate(KeyAlgorithm::Sm2, &mut rng).unwrap();
    let subject = CaSubject {
        organisation: "湖南省财政厅".into(),
        common_name: "测试根CA".into(),
    };
    let root = make_root_ca(
        &root_key,
        &subject,
        &Serial::random(&mut rng),
        ca_validity,
        Sm2CertId::default(),
    )
    .unwrap();
    let ca = CertificateAuthority::new(root.clone(), root_key).unwrap();
    let mut person = |o: &Organisation, post: Post, name: &str| {
        let key = SigningKey::generate(KeyAlgorithm::Sm2, &mut rng).unwrap();
        let p = Person {
            organisation: o.clone(),
            post,
            name: name.into(),
            staff_id: "001".into(),
        };
        let cert = ca
            .issue_person(key.verifying_key(), &p, &Serial::random(&mut rng), validity)
            .unwrap();
        Holder { key, cert }
    };
    let finance = org(OrgRole::Finance, "11430000006", "湖南省财政厅");
    let bank = org(OrgRole::AgentBank, "102551000015", "工商银行长沙分行");
    let maker = person(&finance, Post::Maker, "张三");
    let checker = person(&finance, Post::Checker, "李四");
    let finance_signer = person(&finance, Post::Signer, "王五");
    let bank_signer = person(&bank, Post::Signer, "赵六");
    let mut seal_of = |o: &Organisation, kind: StampKind, name: &str, holder: &Holder| {
        let key = SigningKey::generate(KeyAlgorithm::Sm2, &mut rng).unwrap();
        let cert = ca
            .issue_organisation(key.verifying_key(), o, &Serial::random(&mut rng), validity)
            .unwrap();
        let spec = SealSpec {
            es_id: format!("{}-{}", o.code, kind.code()),
            kind,
            name: name.into(),
            holders: vec![holder.cert.clone()],
            list_form: CertListForm::Certificates,
            picture: SealPicture::demo(&o.name, name, 40),
            created: now,
            validity,
        };
        make_seal(Suite::Sm, &spec, &key, &cert).unwrap()
    };
    let finance_seal = seal_of(
        &finance,
        StampKind::Ywzyz,
        "财政业务专用章",
        &finance_signer,
    );
    let bank_seal = seal_of(&bank, StampKind::Zqz, "转讫章", &bank_signer);
    Deployment {
        root,
        maker,
        checker,
        finance_signer,
        finance_seal,
        bank_signer,
        bank_seal,
        now,
    }
}

fn signature(h: &Holder) -> Signer<'_> {
    Signer::Signature {
        key: &h.key,
        certificate: &h.cert,
    }
}

fn seal<'a>(h: &'a Holder, seal: &'a Seal, now: OffsetDateTime) -> Signer<'a> {
    Signer::Seal {
        seal,
        key: &h.key,
        certificate: &h.cert,
        time: now,
    }
}

fn check(d: &Deployment, registry: &Registry, body: &EnvelopeBody) -> Verification {
    let trust = TrustContext {
        anchor: &d.root,
        intermediates: &[],
        crls: &[],
        revocation: RevocationPolicy::CheckIfPresent,
        now: d.now,
    };
    verify(
        Suite::Sm,
        type_of(registry, &body.voucher).unwrap(),
        body,
        &trust,
    )
    .unwrap()
}

#[test]
fn a_direct_payment_is_stamped_at_every_position_and_its_receipt_too() {
    let d = deployment();
    let registry = Registry::builtin();
    let ty = registry.get("5201").unwrap();
    let today: BizDate = "20250115".parse().unwrap();
    let mut body = EnvelopeBody {
        flag: VoucherFlag::Original,
        attach: "SUCCESS".into(),
        voucher: sample(ty, today, VoucherFlag::Original, Style::Plain, 1),
        signatures: Vec::new(),
    };
    assert!(!check(&d, &registry, &body).is_complete_and_valid());
    assert_eq!(
        stamp_next(Suite::Sm, ty, &mut body, &signature(&d.maker)).unwrap(),
        1
    );
    // The maker cannot also check: the next position wants a checker.
    assert!(stamp_next(Suite::Sm, ty, &mut body, &signature(&d.maker)).is_err());
    assert_eq!(
        stamp_next(Suite::Sm, ty, &mut body, &signature(&d.checker)).unwrap(),
        2
    );
    let report = check(&d, &registry, &body);
    assert!(
        !report.is_complete_and_valid(),
        "position 3 is missing:\n{report}"
    );
    assert_eq!(
        stamp_next(
            Suite::Sm,
            ty,
            &mut body,
            &seal(&d.finance_signer, &d.finance_seal, d.now)
        )
        .unwrap(),
        3
    );
    let report = check(&d, &registry, &body);
    assert!(report.is_complete_and_valid(), "{report}");
    assert!(matches!(report, Verification::Original(_)));

    // The bank pays: it fills the receipt fields and seals the receipt.
    let mut receipt = body.clone();
    receipt.flag = VoucherFlag::Receipt;
    let total = receipt.voucher.header.get("PayAmt").unwrap().to_owned();
    receipt.voucher.header.set("XPayAmt", total);
    receipt.voucher.header.set("XPayDate", "20250115");
    receipt.voucher.header.set("XAgentBusinessNo", "ICBC0001");
    for detail in &mut receipt.voucher.details {
        let amount = detail.get("PayAmt").unwrap().to_owned();
        detail.set("XPayAmt", amount);
    }
    assert_eq!(
        stamp_next(
            Suite::Sm,
            ty,
            &mut receipt,
            &seal(&d.bank_signer, &d.bank_seal, d.now)
        )
        .unwrap(),
        11
    );
    let report = check(&d, &registry, &receipt);
    assert!(report.is_complete_and_valid(), "{report}");
    assert!(matches!(report, Verification::Receipt(_)));

    // A changed payee, in the original or in the receipt, breaks the stamps.
    for target in [&mut body, &mut receipt] {
        target.voucher.header.set("PayeeAcctName", "别人的公司");
        assert!(!check(&d, &registry, target).is_complete_and_valid());
    }
}

#[test]
fn a_receipt_cannot_be_stamped_on_an_incomplete_original_nor_carry_stray_stamps() {
    let d = deployment();
    let registry = Registry::builtin();
    let ty = registry.get("5201").unwrap();
    let today: BizDate = "20250115".parse().unwrap();
    let mut body = EnvelopeBody {
        flag: VoucherFlag::Receipt,
        attach: String::new(),
        voucher: sample(ty, today, VoucherFlag::Receipt, Style::Plain, 2),
        signatures: Vec::new(),
    };
    let err = stamp_next(Suite::Sm, ty, &mut body, &signature(&d.maker)).unwrap_err();
    assert!(matches!(err, StampingError::OriginalIncomplete), "{err}");
    body.flag = VoucherFlag::Original;
    stamp_next(Suite::Sm, ty, &mut body, &signature(&d.maker)).unwrap();
    body.flag = VoucherFlag::Receipt;
    let bank = seal(&d.bank_signer, &d.bank_seal, d.now);
    let err = stamp_next(Suite::Sm, ty, &mut body, &bank).unwrap_err();
    assert!(matches!(err, StampingError::OriginalIncomplete), "{err}");
    assert_eq!(body.signatures.len(), 1, "a refused stamp adds nothing");
    body.signatures.push(guoku_voucher::SignatureBlob {
        no: 7,
        data: vec![1, 2, 3],
    });
    let trust = TrustContext {
        anchor: &d.root,
        intermediates: &[],
        crls: &[],
        revocation: RevocationPolicy::CheckIfPresent,
        now: d.now,
    };
    let err = verify(Suite::Sm, ty, &body, &trust).unwrap_err();
    assert!(err.to_string().contains("position 7"), "{err}");
}
